//! Where the emulator's Connect and STS meet its IAM ([`crate::iam`]): who a caller is, the request context
//! of each Connect operation (resource ARNs, `aws:ResourceTag`, `aws:RequestTag`, `aws:TagKeys`,
//! `aws:PrincipalTag`, ...), and STS AssumeRole's parameters, their validation, and the trust policy.
//!
//! Connect operations and the resources they are authorized on:
//!
//! | Operation | Resource(s) |
//! |---|---|
//! | Describe/Update/Delete a profile, `ListSecurityProfile*` of a profile | `arn:aws:connect:<region>:<account>:instance/<instance>/security-profile/<profile>` (its true tags: no read lag) |
//! | CreateSecurityProfile | the instance ARN **and** `<instance ARN>/security-profile/*` (both must be allowed) |
//! | ListSecurityProfiles, SearchSecurityProfiles, DescribeInstance | the instance ARN |
//! | TagResource, UntagResource, ListTagsForResource | the `resourceArn` of the path |
//!
//! Request tags: Create's `Tags` and TagResource's `tags` (`aws:RequestTag/<key>`, `aws:TagKeys`);
//! UntagResource's `tagKeys` (`aws:TagKeys`). A resource that does not exist is authorized with no tags.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

use serde_json::Value;

use crate::iam::{self, Caller as PolicyCaller, Context, Decision, IamConfig, IamRole, IamUser, PrincipalMatch};
use crate::input::Object;
use crate::{ApiError, Caller, Connect, Session};

/// The identity a request's signature stands for.
enum Identity<'a> {
    User(&'a IamUser),
    Session(&'a IamRole, &'a Session),
}

fn identity<'a>(iam: &'a IamConfig, caller: &'a Caller) -> Option<Identity<'a>> {
    match &caller.session {
        Some(s) => iam.role(&s.role_arn).map(|r| Identity::Session(r, s)),
        None => iam.user(&caller.access_key).map(Identity::User),
    }
}

fn unique_id(prefix: &str, arn: &str) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    arn.hash(&mut h);
    format!("{prefix}{:016X}", h.finish())
}

impl Identity<'_> {
    /// The ARN AWS names in an AccessDenied message: the user's, or the session's assumed-role ARN.
    fn arn(&self) -> &str {
        match self {
            Identity::User(u) => &u.arn,
            Identity::Session(_, s) => &s.arn,
        }
    }

    fn policies(&self) -> Vec<iam::Policy> {
        match self {
            Identity::User(u) => iam::parse_all(&u.policies),
            Identity::Session(r, _) => iam::parse_all(&r.policies),
        }
    }

    fn policy_caller(&self) -> PolicyCaller {
        match self {
            Identity::User(u) => PolicyCaller { arn: u.arn.clone(), session_arn: None },
            Identity::Session(r, s) => PolicyCaller { arn: r.arn.clone(), session_arn: Some(s.arn.clone()) },
        }
    }

    /// The principal's condition keys: `aws:PrincipalArn`, `aws:PrincipalAccount`, `aws:PrincipalType`,
    /// `aws:userid`, `aws:username` (IAM users), `aws:PrincipalTag/<key>` (session tags).
    fn context(&self) -> Context {
        let mut ctx = Context::default();
        match self {
            Identity::User(u) => {
                ctx.set("aws:PrincipalArn", &u.arn);
                ctx.set("aws:PrincipalAccount", u.arn.split(':').nth(4).unwrap_or_default());
                if let Some((_, name)) = u.arn.split_once(":user/") {
                    ctx.set("aws:PrincipalType", "User");
                    ctx.set("aws:username", name.rsplit('/').next().unwrap_or_default());
                    ctx.set("aws:userid", unique_id("AIDA", &u.arn));
                } else {
                    ctx.set("aws:PrincipalType", "AssumedRole");
                    ctx.set("aws:userid", format!("{}:emulator", unique_id("AROA", &u.arn)));
                }
            }
            Identity::Session(r, s) => {
                ctx.set("aws:PrincipalArn", &r.arn);
                ctx.set("aws:PrincipalAccount", r.arn.split(':').nth(4).unwrap_or_default());
                ctx.set("aws:PrincipalType", "AssumedRole");
                ctx.set("aws:userid", format!("{}:{}", unique_id("AROA", &r.arn), s.name));
                ctx.set_tags("aws:PrincipalTag", &s.tags);
            }
        }
        ctx
    }
}

fn access_denied(who: &str, action: &str, resource: &str, decision: Decision) -> ApiError {
    let why = match decision {
        Decision::ExplicitDeny => "with an explicit deny in an identity-based policy".to_string(),
        _ => format!("because no identity-based policy allows the {action} action"),
    };
    ApiError::new(
        "AccessDeniedException",
        403,
        format!("User: {who} is not authorized to perform: {action} on resource: {resource} {why}"),
    )
}

/// The tags of the resource an ARN names (an instance or a profile), as stored: no read lag.
fn tags_by_arn(connect: &Connect, arn: &str) -> BTreeMap<String, String> {
    for instance in connect.instances.values() {
        if instance.arn == arn {
            return instance.tags.clone();
        }
        if let Some(p) = instance.profiles.iter().find(|p| p.arn == arn) {
            return p.tags.clone();
        }
    }
    BTreeMap::new()
}

fn string_map(v: Option<&Value>) -> Option<BTreeMap<String, String>> {
    let obj = v?.as_object()?;
    Some(obj.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
}

/// Authorizes a Connect call before it runs (and before its input is validated, as AWS does).
pub(crate) fn authorize_connect(
    iam: &IamConfig,
    caller: &Caller,
    operation: &str,
    labels: &[String],
    query: &BTreeMap<String, Vec<String>>,
    body: Option<&Object>,
    connect: &Connect,
) -> Result<(), ApiError> {
    let action = format!("connect:{operation}");
    let label = |i: usize| labels.get(i).cloned().unwrap_or_default();
    // An instance of another account never gets here (ResourceNotFoundException first).
    let instance_arn = |id: &str| match connect.instances.get(id) {
        Some(i) => i.arn.clone(),
        None => format!("arn:aws:connect:{}:{}:instance/{id}", connect.region, caller.account(&connect.account)),
    };
    let instance_tags = |id: &str| connect.instances.get(id).map(|i| i.tags.clone()).unwrap_or_default();
    let resources: Vec<(String, BTreeMap<String, String>)> = match operation {
        "CreateSecurityProfile" => vec![
            (instance_arn(&label(0)), instance_tags(&label(0))),
            (format!("{}/security-profile/*", instance_arn(&label(0))), BTreeMap::new()),
        ],
        "ListSecurityProfiles" | "DescribeInstance" => vec![(instance_arn(&label(0)), instance_tags(&label(0)))],
        "SearchSecurityProfiles" => {
            let id = body.and_then(|b| b.get("InstanceId")).and_then(Value::as_str).unwrap_or_default();
            vec![(instance_arn(id), instance_tags(id))]
        }
        "TagResource" | "UntagResource" | "ListTagsForResource" => vec![(label(0), tags_by_arn(connect, &label(0)))],
        _ => {
            let (instance, profile) = (label(0), label(1));
            let tags = connect
                .instances
                .get(&instance)
                .and_then(|i| i.profiles.iter().find(|p| p.id == profile))
                .map(|p| p.tags.clone())
                .unwrap_or_default();
            vec![(format!("{}/security-profile/{profile}", instance_arn(&instance)), tags)]
        }
    };
    let Some(id) = identity(iam, caller) else {
        let who = if caller.access_key.is_empty() { "anonymous" } else { caller.access_key.as_str() };
        return Err(access_denied(who, &action, &resources[0].0, Decision::ImplicitDeny));
    };
    if let Identity::Session(_, s) = &id
        && s.expires <= jiff::Timestamp::now()
    {
        return Err(ApiError::new(
            "ExpiredTokenException",
            403,
            "The security token included in the request is expired",
        ));
    }
    let mut ctx = id.context();
    let request_tags = match operation {
        "CreateSecurityProfile" => string_map(body.and_then(|b| b.get("Tags"))),
        "TagResource" => string_map(body.and_then(|b| b.get("tags"))),
        _ => None,
    };
    if let Some(tags) = &request_tags {
        ctx.set_tags("aws:RequestTag", tags);
        ctx.set_multi("aws:TagKeys", tags.keys().cloned());
    }
    if operation == "UntagResource" {
        ctx.set_multi("aws:TagKeys", query.get("tagKeys").cloned().unwrap_or_default());
    }
    let policies = id.policies();
    for (resource, tags) in &resources {
        let mut ctx = ctx.clone();
        ctx.set_tags("aws:ResourceTag", tags);
        let decision = iam::evaluate(&policies, &action, resource, &ctx);
        if decision != Decision::Allow {
            return Err(access_denied(id.arn(), &action, resource, decision));
        }
    }
    Ok(())
}

/// An STS error: its code and message (the status is 400, 403 for AccessDenied).
pub(crate) type StsError = (&'static str, String);

/// AssumeRole's parameters beyond RoleArn and RoleSessionName, validated.
#[derive(Debug, Default)]
pub(crate) struct AssumeRoleParams {
    pub external_id: Option<String>,
    pub duration: Option<u32>,
    /// Session tags in request order.
    pub tags: Vec<(String, String)>,
    pub transitive: Vec<String>,
}

static TAG_KEY: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(r"^[\p{L}\p{Z}\p{N}_.:/=+\-@]+$").expect("valid regex"));
static TAG_VALUE: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(r"^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$").expect("valid regex"));
static EXTERNAL_ID: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(r"^[\w+=,.@:/-]*$").expect("valid regex"));

fn validation(message: String) -> StsError {
    ("ValidationError", message)
}

/// Parses and validates `ExternalId`, `DurationSeconds`, `Tags.member.N.Key`/`.Value` and
/// `TransitiveTagKeys.member.N` as STS does.
pub(crate) fn assume_role_params(form: &BTreeMap<String, Vec<String>>) -> Result<AssumeRoleParams, StsError> {
    let field = |k: &str| form.get(k).and_then(|v| v.first()).cloned();
    let mut out = AssumeRoleParams { external_id: field("ExternalId"), ..Default::default() };
    if let Some(id) = &out.external_id {
        let len = id.chars().count();
        if !(2..=1224).contains(&len) || !EXTERNAL_ID.is_match(id) {
            return Err(validation(format!(
                "1 validation error detected: Value '{id}' at 'externalId' failed to satisfy constraint: \
                 Member must have length between 2 and 1224 and match [\\w+=,.@:\\/-]*"
            )));
        }
    }
    if let Some(d) = field("DurationSeconds") {
        match d.parse::<u32>() {
            Ok(d) if (900..=43200).contains(&d) => out.duration = Some(d),
            _ => {
                return Err(validation(format!(
                    "1 validation error detected: Value '{d}' at 'durationSeconds' failed to satisfy constraint: \
                     Member must have value between 900 and 43200"
                )));
            }
        }
    }
    // Tags.member.N.Key / .Value, ordered by N.
    let mut tags: BTreeMap<u32, (Option<String>, Option<String>)> = BTreeMap::new();
    let mut transitive: BTreeMap<u32, String> = BTreeMap::new();
    for (k, v) in form {
        let v = v.first().cloned().unwrap_or_default();
        if let Some(rest) = k.strip_prefix("Tags.member.") {
            let (n, part) = rest.split_once('.').unwrap_or((rest, ""));
            let n: u32 = n.parse().map_err(|_| validation(format!("malformed parameter {k}")))?;
            let entry = tags.entry(n).or_default();
            match part {
                "Key" => entry.0 = Some(v),
                "Value" => entry.1 = Some(v),
                _ => return Err(validation(format!("malformed parameter {k}"))),
            }
        } else if let Some(n) = k.strip_prefix("TransitiveTagKeys.member.") {
            let n: u32 = n.parse().map_err(|_| validation(format!("malformed parameter {k}")))?;
            transitive.insert(n, v);
        } else if k == "Tags" || k == "TransitiveTagKeys" {
            // An empty list is sent as `Tags=`.
        }
    }
    if tags.len() > 50 {
        return Err(validation(format!(
            "1 validation error detected: Value at 'tags' failed to satisfy constraint: Member must have length \
             less than or equal to 50 (got {})",
            tags.len()
        )));
    }
    let mut seen = BTreeSet::new();
    for (n, (key, value)) in tags {
        let (Some(key), Some(value)) = (key, value) else {
            return Err(validation(format!("Tags.member.{n}: both Key and Value are required")));
        };
        let key_len = key.chars().count();
        if !(1..=128).contains(&key_len) || !TAG_KEY.is_match(&key) {
            return Err(validation(format!(
                "1 validation error detected: Value '{key}' at 'tags.{n}.member.key' failed to satisfy constraint: \
                 Member must have length between 1 and 128 and match [\\p{{L}}\\p{{Z}}\\p{{N}}_.:/=+\\-@]+"
            )));
        }
        if value.chars().count() > 256 || !TAG_VALUE.is_match(&value) {
            return Err(validation(format!(
                "1 validation error detected: Value '{value}' at 'tags.{n}.member.value' failed to satisfy \
                 constraint: Member must have length less than or equal to 256 and match [\\p{{L}}\\p{{Z}}\\p{{N}}_.:/=+\\-@]*"
            )));
        }
        if !seen.insert(key.to_lowercase()) {
            return Err((
                "InvalidParameterValue",
                "Duplicate tag keys found. Please note that Tag keys are case insensitive.".into(),
            ));
        }
        out.tags.push((key, value));
    }
    if transitive.len() > 50 {
        return Err(validation("TransitiveTagKeys: at most 50".into()));
    }
    for key in transitive.into_values() {
        if !seen.contains(&key.to_lowercase()) {
            return Err((
                "InvalidParameterValue",
                format!("The transitive tag key {key} is not one of the session tags passed in the request"),
            ));
        }
        out.transitive.push(key);
    }
    Ok(out)
}

/// The session an AssumeRole by `caller` would get: the caller's transitive tags (role chaining) and the
/// tags passed; a passed tag may not replace a transitive one.
pub(crate) fn new_session(
    caller: &Caller,
    role_arn: &str,
    name: &str,
    params: &AssumeRoleParams,
) -> Result<Session, StsError> {
    let mut tags = BTreeMap::new();
    let mut transitive = BTreeSet::new();
    if let Some(s) = &caller.session {
        for k in &s.transitive {
            if let Some(v) = s.tags.get(k) {
                tags.insert(k.clone(), v.clone());
                transitive.insert(k.clone());
            }
        }
    }
    for (k, v) in &params.tags {
        if tags.keys().any(|t: &String| t.eq_ignore_ascii_case(k)) {
            return Err((
                "InvalidParameterValue",
                format!(
                    "One or more of the specified transitive tag keys can't be set because it conflicts with a transitive tag key of the calling session: {k}"
                ),
            ));
        }
        tags.insert(k.clone(), v.clone());
    }
    for k in &params.transitive {
        if let Some((key, _)) = params.tags.iter().find(|(t, _)| t.eq_ignore_ascii_case(k)) {
            transitive.insert(key.clone());
        }
    }
    let account = role_arn.split(':').nth(4).unwrap_or_default();
    let role_name = role_arn.rsplit('/').next().unwrap_or_default();
    let duration = params.duration.unwrap_or(3600);
    Ok(Session {
        role_arn: role_arn.into(),
        name: name.into(),
        arn: format!("arn:aws:sts::{account}:assumed-role/{role_name}/{name}"),
        tags,
        transitive,
        expires: jiff::Timestamp::now() + jiff::SignedDuration::from_secs(duration.into()),
    })
}

/// The role's unique ID and the session's (`AROA...:<session name>`), as AssumedRoleId.
pub(crate) fn assumed_role_id(session: &Session) -> String {
    format!("{}:{}", unique_id("AROA", &session.role_arn), session.name)
}

/// Authorizes `caller`'s AssumeRole of `role_arn` (the trust policy, and the caller's identity policies
/// when the trust policy trusts the caller's account rather than the caller), `sts:TagSession` too when
/// session tags are passed.
pub(crate) fn authorize_assume_role(
    iam: &IamConfig,
    caller: &Caller,
    role_arn: &str,
    session_name: &str,
    params: &AssumeRoleParams,
) -> Result<(), StsError> {
    let denied = |who: &str, action: &str| {
        ("AccessDenied", format!("User: {who} is not authorized to perform: {action} on resource: {role_arn}"))
    };
    let Some(id) = identity(iam, caller) else {
        let who = if caller.access_key.is_empty() { "anonymous" } else { caller.access_key.as_str() };
        return Err(denied(who, "sts:AssumeRole"));
    };
    if let Identity::Session(_, s) = &id
        && s.expires <= jiff::Timestamp::now()
    {
        return Err(("ExpiredToken", "The security token included in the request is expired".into()));
    }
    let Some(role) = iam.role(role_arn) else { return Err(denied(id.arn(), "sts:AssumeRole")) };
    let max = if matches!(id, Identity::Session(..)) { 3600 } else { role.max_session_duration };
    if params.duration.is_some_and(|d| d > max) {
        return Err(validation(format!(
            "The requested DurationSeconds exceeds the {} set for this role.",
            if max == 3600 && matches!(id, Identity::Session(..)) {
                "1 hour session limit for roles assumed by role chaining"
            } else {
                "MaxSessionDuration"
            }
        )));
    }
    let mut ctx = id.context();
    ctx.set("sts:RoleSessionName", session_name);
    if let Some(e) = &params.external_id {
        ctx.set("sts:ExternalId", e);
    }
    if !params.tags.is_empty() {
        for (k, v) in &params.tags {
            ctx.set(&format!("aws:RequestTag/{k}"), v.clone());
        }
        ctx.set_multi("aws:TagKeys", params.tags.iter().map(|(k, _)| k.clone()));
    }
    if !params.transitive.is_empty() {
        ctx.set_multi("sts:TransitiveTagKeys", params.transitive.iter().cloned());
    }
    let trust =
        iam::Policy::parse(&role.trust_policy).map_err(|e| denied(id.arn(), &format!("sts:AssumeRole ({e})")))?;
    let identity_policies = id.policies();
    let mut actions = vec!["sts:AssumeRole"];
    if !params.tags.is_empty() {
        actions.push("sts:TagSession");
    }
    for action in actions {
        let (decision, how) = iam::evaluate_resource_policy(&trust, &id.policy_caller(), action, role_arn, &ctx);
        let own = iam::evaluate(&identity_policies, action, role_arn, &ctx);
        let allowed = decision == Decision::Allow
            && own != Decision::ExplicitDeny
            && (how == Some(PrincipalMatch::Specific) || own == Decision::Allow);
        if !allowed {
            return Err(denied(id.arn(), action));
        }
    }
    Ok(())
}
