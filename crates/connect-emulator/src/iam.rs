//! IAM as the emulator enforces it when configured ([`IamConfig`]): identities (users by access key, roles
//! and their sessions), identity-based policies, role trust policies, and their evaluation the way AWS
//! evaluates them for one account:
//!
//! - a matching `Deny` statement wins (explicit deny); else a matching `Allow` is needed; else the request is
//!   denied implicitly;
//! - a statement matches when its `Action` (or `NotAction`) matches the action (case-insensitive, `*` and `?`
//!   wildcards), its `Resource` (or `NotResource`) the resource ARN (case-sensitive, wildcards, policy
//!   variables), in a trust policy its `Principal` the caller, and every condition of its `Condition` block
//!   holds (operators AND, keys AND, the values of one key OR; for a negated operator every value must
//!   differ);
//! - condition operators: `StringEquals`, `StringNotEquals`, `StringEqualsIgnoreCase`,
//!   `StringNotEqualsIgnoreCase`, `StringLike`, `StringNotLike`, `ArnEquals`, `ArnLike`, `ArnNotEquals`,
//!   `ArnNotLike` (the `Arn` ones as `StringLike`/`StringNotLike`), `Bool`, `Null`; the `IfExists` suffix;
//!   the `ForAllValues:` and `ForAnyValue:` set qualifiers for multi-valued keys (`aws:TagKeys`);
//! - a key absent from the request: a positive operator is false, a negated one true, `...IfExists` true,
//!   `ForAllValues:` true, `ForAnyValue:` false (AWS's rules);
//! - condition key names are case-insensitive (`aws:ResourceTag/Team` matches the tag `team`);
//! - policy variables `${aws:PrincipalTag/<key>}`, `${aws:username}`, `${aws:userid}`, `${aws:PrincipalArn}`
//!   (any single-valued key of the request), with a default (`${aws:PrincipalTag/x, 'none'}`) and the
//!   escapes `${*}`, `${?}`, `${$}`, in `Resource` and condition values; a variable that cannot be resolved
//!   makes that value match nothing (for a negated operator too: the condition is then false).
//!
//! Anything the emulator does not understand (another operator, a malformed statement) is refused when the
//! configuration is set rather than silently ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The identities the emulator knows, and their policies. Policies are AWS IAM policy documents (JSON).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IamConfig {
    #[serde(default)]
    pub users: Vec<IamUser>,
    #[serde(default)]
    pub roles: Vec<IamRole>,
}

/// A long-term identity: the requests signed with its access key are its.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IamUser {
    pub access_key_id: String,
    /// Its ARN: an IAM user's (`arn:aws:iam::<account>:user/<name>`), or a role's when it stands for a
    /// workload's role credentials (IRSA, Pod Identity) without going through the emulator's STS.
    pub arn: String,
    #[serde(default)]
    pub policies: Vec<Value>,
}

/// A role: who may assume it (its trust policy) and what its sessions may do (its policies).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IamRole {
    pub arn: String,
    pub trust_policy: Value,
    #[serde(default)]
    pub policies: Vec<Value>,
    /// The longest session (DurationSeconds) AssumeRole grants: 3600 to 43200, default 3600.
    #[serde(default = "default_max_session")]
    pub max_session_duration: u32,
}

fn default_max_session() -> u32 {
    3600
}

impl IamConfig {
    /// Parses every policy: a configuration the engine cannot evaluate exactly is refused.
    pub fn validate(&self) -> Result<(), String> {
        for u in &self.users {
            for (i, p) in u.policies.iter().enumerate() {
                Policy::parse(p).map_err(|e| format!("user {}: policies[{i}]: {e}", u.arn))?;
            }
        }
        for r in &self.roles {
            if !(3600..=43200).contains(&r.max_session_duration) {
                return Err(format!("role {}: maxSessionDuration must be 3600..=43200", r.arn));
            }
            Policy::parse(&r.trust_policy).map_err(|e| format!("role {}: trustPolicy: {e}", r.arn))?;
            for (i, p) in r.policies.iter().enumerate() {
                Policy::parse(p).map_err(|e| format!("role {}: policies[{i}]: {e}", r.arn))?;
            }
        }
        Ok(())
    }

    pub fn user(&self, access_key: &str) -> Option<&IamUser> {
        self.users.iter().find(|u| !access_key.is_empty() && u.access_key_id == access_key)
    }

    pub fn role(&self, arn: &str) -> Option<&IamRole> {
        self.roles.iter().find(|r| r.arn == arn)
    }
}

/// The outcome of evaluating policies for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// No statement allows it.
    ImplicitDeny,
    /// A `Deny` statement matches.
    ExplicitDeny,
}

/// How a trust policy's `Principal` matched the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalMatch {
    /// The caller's own ARN, or `*`: the trust policy alone grants access.
    Specific,
    /// The caller's account (`123456789012`, `arn:aws:iam::123456789012:root`): the caller's identity
    /// policies must allow the action too.
    Account,
}

/// The request context: condition keys (lower-cased) and their values; multi-valued keys (`aws:TagKeys`)
/// have several, an absent key none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    keys: BTreeMap<String, Vec<String>>,
}

impl Context {
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.keys.insert(key.to_lowercase(), vec![value.into()]);
    }

    pub fn set_multi(&mut self, key: &str, values: impl IntoIterator<Item = String>) {
        self.keys.insert(key.to_lowercase(), values.into_iter().collect());
    }

    /// `<prefix>/<key>` = value for each tag (e.g. `aws:ResourceTag`).
    pub fn set_tags<'a>(&mut self, prefix: &str, tags: impl IntoIterator<Item = (&'a String, &'a String)>) {
        for (k, v) in tags {
            self.set(&format!("{prefix}/{k}"), v.clone());
        }
    }

    /// The values of a key; `None` when it is absent (or has no values).
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.keys.get(&key.to_lowercase()).map(Vec::as_slice).filter(|v| !v.is_empty())
    }

    /// The value of a single-valued key, for a policy variable.
    fn single(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some([v]) => Some(v),
            _ => None,
        }
    }
}

/// A parsed policy document.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    statements: Vec<Statement>,
}

#[derive(Debug, Clone, PartialEq)]
struct Statement {
    deny: bool,
    action: Names,
    resource: Option<Names>,
    principal: Option<Principals>,
    conditions: Vec<Condition>,
}

/// `Action`/`NotAction`, `Resource`/`NotResource`.
#[derive(Debug, Clone, PartialEq)]
struct Names {
    not: bool,
    values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct Principals {
    not: bool,
    any: bool,
    aws: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Equals,
    EqualsIgnoreCase,
    Like,
    Bool,
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetQualifier {
    ForAllValues,
    ForAnyValue,
}

#[derive(Debug, Clone, PartialEq)]
struct Condition {
    op: Op,
    negated: bool,
    if_exists: bool,
    qualifier: Option<SetQualifier>,
    key: String,
    values: Vec<String>,
}

fn strings(v: &Value, what: &str) -> Result<Vec<String>, String> {
    let one = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(format!("{what}: {other} is not a string")),
    };
    match v {
        Value::Array(a) if a.is_empty() => Err(format!("{what}: an empty list")),
        Value::Array(a) => a.iter().map(one).collect(),
        other => Ok(vec![one(other)?]),
    }
}

fn names(st: &serde_json::Map<String, Value>, key: &str, what: &str) -> Result<Option<Names>, String> {
    let not_key = format!("Not{key}");
    match (st.get(key), st.get(&not_key)) {
        (Some(_), Some(_)) => Err(format!("{what}: both {key} and {not_key}")),
        (Some(v), None) => Ok(Some(Names { not: false, values: strings(v, key)? })),
        (None, Some(v)) => Ok(Some(Names { not: true, values: strings(v, &not_key)? })),
        (None, None) => Ok(None),
    }
}

fn principals(v: &Value, not: bool) -> Result<Principals, String> {
    match v {
        Value::String(s) if s == "*" => Ok(Principals { not, any: true, aws: vec![] }),
        Value::Object(o) => {
            let mut p = Principals { not, any: false, aws: vec![] };
            for (kind, values) in o {
                let values = strings(values, &format!("Principal.{kind}"))?;
                match kind.as_str() {
                    "AWS" => {
                        p.any |= values.iter().any(|v| v == "*");
                        p.aws.extend(values.into_iter().filter(|v| v != "*"));
                    }
                    // Service and federated principals never call the emulator.
                    "Service" | "Federated" | "CanonicalUser" => {}
                    other => return Err(format!("unknown principal type {other:?}")),
                }
            }
            Ok(p)
        }
        other => Err(format!("Principal: {other} is neither \"*\" nor an object")),
    }
}

fn conditions(v: &Value) -> Result<Vec<Condition>, String> {
    let Value::Object(block) = v else { return Err("Condition is not an object".into()) };
    let mut out = Vec::new();
    for (operator, keys) in block {
        let (qualifier, rest) = match operator.split_once(':') {
            Some(("ForAllValues", rest)) => (Some(SetQualifier::ForAllValues), rest),
            Some(("ForAnyValue", rest)) => (Some(SetQualifier::ForAnyValue), rest),
            Some((q, _)) => return Err(format!("unknown set qualifier {q:?}")),
            None => (None, operator.as_str()),
        };
        let (name, if_exists) = match rest.strip_suffix("IfExists") {
            Some(name) => (name, true),
            None => (rest, false),
        };
        let (op, negated) = match name {
            "StringEquals" => (Op::Equals, false),
            "StringNotEquals" => (Op::Equals, true),
            "StringEqualsIgnoreCase" => (Op::EqualsIgnoreCase, false),
            "StringNotEqualsIgnoreCase" => (Op::EqualsIgnoreCase, true),
            "StringLike" | "ArnEquals" | "ArnLike" => (Op::Like, false),
            "StringNotLike" | "ArnNotEquals" | "ArnNotLike" => (Op::Like, true),
            "Bool" => (Op::Bool, false),
            "Null" if !if_exists && qualifier.is_none() => (Op::Null, false),
            other => return Err(format!("condition operator {other:?} is not supported by the emulator")),
        };
        let Value::Object(keys) = keys else { return Err(format!("{operator}: not an object")) };
        for (key, values) in keys {
            let values = strings(values, &format!("{operator}.{key}"))?;
            if op == Op::Null && values.iter().any(|v| v != "true" && v != "false") {
                return Err(format!("Null.{key}: the values are \"true\" or \"false\""));
            }
            out.push(Condition { op, negated, if_exists, qualifier, key: key.to_lowercase(), values });
        }
    }
    Ok(out)
}

impl Policy {
    pub fn parse(doc: &Value) -> Result<Self, String> {
        let Value::Object(doc) = doc else { return Err("a policy is a JSON object".into()) };
        if let Some(v) = doc.get("Version")
            && v != "2012-10-17"
            && v != "2008-10-17"
        {
            return Err(format!("unknown Version {v}"));
        }
        let list = match doc.get("Statement") {
            Some(Value::Array(a)) => a.clone(),
            Some(o @ Value::Object(_)) => vec![o.clone()],
            _ => return Err("Statement is missing".into()),
        };
        let mut statements = Vec::new();
        for (i, st) in list.iter().enumerate() {
            let what = format!("Statement[{i}]");
            let Value::Object(st) = st else { return Err(format!("{what} is not an object")) };
            let known = [
                "Sid",
                "Effect",
                "Action",
                "NotAction",
                "Resource",
                "NotResource",
                "Principal",
                "NotPrincipal",
                "Condition",
            ];
            if let Some(k) = st.keys().find(|k| !known.contains(&k.as_str())) {
                return Err(format!("{what}: unknown element {k:?}"));
            }
            let deny = match st.get("Effect").and_then(Value::as_str) {
                Some("Allow") => false,
                Some("Deny") => true,
                _ => return Err(format!("{what}: Effect is Allow or Deny")),
            };
            let action = names(st, "Action", &what)?.ok_or_else(|| format!("{what}: no Action"))?;
            let resource = names(st, "Resource", &what)?;
            let principal = match (st.get("Principal"), st.get("NotPrincipal")) {
                (Some(_), Some(_)) => return Err(format!("{what}: both Principal and NotPrincipal")),
                (Some(p), None) => Some(principals(p, false)?),
                (None, Some(p)) => Some(principals(p, true)?),
                (None, None) => None,
            };
            let conditions = st.get("Condition").map(conditions).transpose()?.unwrap_or_default();
            statements.push(Statement { deny, action, resource, principal, conditions });
        }
        Ok(Self { statements })
    }
}

/// One token of a pattern: a literal character, or a wildcard (`*` any run, `?` any one character).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    Lit(char),
    Star,
    One,
}

/// A policy string with its variables resolved, as a pattern (`wildcards`: `*` and `?` are wildcards;
/// else literal). `None` when a variable cannot be resolved.
fn expand(s: &str, ctx: &Context, wildcards: bool) -> Option<Vec<Tok>> {
    let mut out = Vec::new();
    let mut rest = s;
    let literal = |out: &mut Vec<Tok>, text: &str, wild: bool| {
        for c in text.chars() {
            out.push(match c {
                '*' if wild => Tok::Star,
                '?' if wild => Tok::One,
                c => Tok::Lit(c),
            });
        }
    };
    while let Some(start) = rest.find("${") {
        literal(&mut out, &rest[..start], wildcards);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            literal(&mut out, &rest[start..], wildcards);
            return Some(out);
        };
        let inner = &after[..end];
        match inner {
            "*" => out.push(Tok::Lit('*')),
            "?" => out.push(Tok::Lit('?')),
            "$" => out.push(Tok::Lit('$')),
            _ => {
                let (key, default) = match inner.split_once(',') {
                    Some((k, d)) => {
                        let d = d.trim();
                        let d = d.strip_prefix('\'').and_then(|d| d.strip_suffix('\''));
                        (k.trim(), d)
                    }
                    None => (inner.trim(), None),
                };
                // Resolved values are literal text: a `*` in a tag value is not a wildcard.
                literal(&mut out, ctx.single(key).or(default)?, false);
            }
        }
        rest = &after[end + 1..];
    }
    literal(&mut out, rest, wildcards);
    Some(out)
}

/// Whether `value` matches `pattern` (wildcards as tokens).
fn matches(pattern: &[Tok], value: &str, ignore_case: bool) -> bool {
    let v: Vec<char> = value.chars().collect();
    let eq = |a: char, b: char| if ignore_case { a.to_lowercase().eq(b.to_lowercase()) } else { a == b };
    let (mut p, mut i) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while i < v.len() {
        match pattern.get(p) {
            Some(Tok::Star) => {
                backtrack = Some((p, i));
                p += 1;
            }
            Some(Tok::One) => {
                p += 1;
                i += 1;
            }
            Some(Tok::Lit(c)) if eq(*c, v[i]) => {
                p += 1;
                i += 1;
            }
            _ => match backtrack {
                Some((bp, bi)) => {
                    backtrack = Some((bp, bi + 1));
                    p = bp + 1;
                    i = bi + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|t| *t == Tok::Star)
}

/// A wildcard match without variables (actions, principals).
fn like(pattern: &str, value: &str, ignore_case: bool) -> bool {
    matches(&expand_literal(pattern), value, ignore_case)
}

fn expand_literal(s: &str) -> Vec<Tok> {
    s.chars()
        .map(|c| match c {
            '*' => Tok::Star,
            '?' => Tok::One,
            c => Tok::Lit(c),
        })
        .collect()
}

impl Condition {
    /// The positive comparison of one request value with one policy value; `false` when the policy value
    /// has an unresolvable variable.
    fn compare(&self, value: &str, policy_value: &str, ctx: &Context) -> bool {
        let (wild, ignore_case) = match self.op {
            Op::Like => (true, false),
            Op::EqualsIgnoreCase | Op::Bool => (false, true),
            _ => (false, false),
        };
        expand(policy_value, ctx, wild).is_some_and(|p| matches(&p, value, ignore_case))
    }

    /// Whether one request value satisfies the condition's values: one of them for a positive operator;
    /// none of them for a negated one (every policy value must resolve and differ).
    fn value_ok(&self, value: &str, ctx: &Context) -> bool {
        if self.negated {
            self.values.iter().all(|p| expand(p, ctx, self.op == Op::Like).is_some() && !self.compare(value, p, ctx))
        } else {
            self.values.iter().any(|p| self.compare(value, p, ctx))
        }
    }

    fn holds(&self, ctx: &Context) -> bool {
        let present = ctx.get(&self.key);
        if self.op == Op::Null {
            return self.values.iter().any(|v| (v == "true") == present.is_none());
        }
        let Some(values) = present else {
            return self.if_exists
                || match self.qualifier {
                    Some(SetQualifier::ForAllValues) => true,
                    Some(SetQualifier::ForAnyValue) => false,
                    None => self.negated,
                };
        };
        match self.qualifier {
            Some(SetQualifier::ForAllValues) => values.iter().all(|v| self.value_ok(v, ctx)),
            Some(SetQualifier::ForAnyValue) => values.iter().any(|v| self.value_ok(v, ctx)),
            // A single-valued key (a multi-valued one without a qualifier: any of its values).
            None if self.negated => values.iter().all(|v| self.value_ok(v, ctx)),
            None => values.iter().any(|v| self.value_ok(v, ctx)),
        }
    }
}

/// Who calls, as a trust policy's `Principal` sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    /// The user's ARN, or for a role session the role's ARN.
    pub arn: String,
    /// For a role session, `arn:aws:sts::<account>:assumed-role/<name>/<session>`.
    pub session_arn: Option<String>,
}

impl Caller {
    fn account(&self) -> &str {
        self.arn.split(':').nth(4).unwrap_or_default()
    }
}

impl Principals {
    fn matching(&self, caller: &Caller) -> Option<PrincipalMatch> {
        let m = if self.any || self.aws.iter().any(|p| *p == caller.arn || Some(p) == caller.session_arn.as_ref()) {
            Some(PrincipalMatch::Specific)
        } else if self.aws.iter().any(|p| {
            let account = p.strip_prefix("arn:aws:iam::").and_then(|r| r.strip_suffix(":root")).unwrap_or(p);
            !caller.account().is_empty() && account == caller.account()
        }) {
            Some(PrincipalMatch::Account)
        } else {
            None
        };
        match (self.not, m) {
            (false, m) => m,
            (true, None) => Some(PrincipalMatch::Specific),
            (true, Some(_)) => None,
        }
    }
}

impl Statement {
    fn applies(&self, action: &str, resource: &str, ctx: &Context) -> bool {
        let action_hit = self.action.values.iter().any(|a| like(a, action, true));
        if action_hit == self.action.not {
            return false;
        }
        if let Some(r) = &self.resource {
            let hit = r.values.iter().any(|p| expand(p, ctx, true).is_some_and(|p| matches(&p, resource, false)));
            if hit == r.not {
                return false;
            }
        }
        self.conditions.iter().all(|c| c.holds(ctx))
    }
}

/// Evaluates identity-based policies for `action` on `resource`.
pub fn evaluate(policies: &[Policy], action: &str, resource: &str, ctx: &Context) -> Decision {
    let mut allowed = false;
    for st in policies.iter().flat_map(|p| &p.statements) {
        if st.principal.is_some() || !st.applies(action, resource, ctx) {
            continue;
        }
        if st.deny {
            return Decision::ExplicitDeny;
        }
        allowed = true;
    }
    if allowed { Decision::Allow } else { Decision::ImplicitDeny }
}

/// Evaluates a resource-based policy (a role's trust policy): the decision, and how the allowing
/// statement's `Principal` matched the caller.
pub fn evaluate_resource_policy(
    policy: &Policy,
    caller: &Caller,
    action: &str,
    resource: &str,
    ctx: &Context,
) -> (Decision, Option<PrincipalMatch>) {
    let mut best: Option<PrincipalMatch> = None;
    for st in &policy.statements {
        let Some(m) = st.principal.as_ref().and_then(|p| p.matching(caller)) else { continue };
        if !st.applies(action, resource, ctx) {
            continue;
        }
        if st.deny {
            return (Decision::ExplicitDeny, None);
        }
        if best != Some(PrincipalMatch::Specific) {
            best = Some(m);
        }
    }
    match best {
        Some(m) => (Decision::Allow, Some(m)),
        None => (Decision::ImplicitDeny, None),
    }
}

/// Parses policies that [`IamConfig::validate`] accepted.
pub fn parse_all(docs: &[Value]) -> Vec<Policy> {
    docs.iter().filter_map(|d| Policy::parse(d).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PROFILE: &str = "arn:aws:connect:us-east-1:123456789012:instance/i-1/security-profile/p-1";

    fn policy(statements: Value) -> Vec<Policy> {
        vec![Policy::parse(&json!({"Version": "2012-10-17", "Statement": statements})).expect("valid policy")]
    }

    fn allow_if(condition: Value) -> Vec<Policy> {
        policy(json!({"Effect": "Allow", "Action": "connect:*", "Resource": "*", "Condition": condition}))
    }

    fn ctx(pairs: &[(&str, &str)]) -> Context {
        let mut c = Context::default();
        for (k, v) in pairs {
            c.set(k, *v);
        }
        c
    }

    fn tag_keys(keys: &[&str]) -> Context {
        let mut c = Context::default();
        c.set_multi("aws:TagKeys", keys.iter().map(|k| k.to_string()));
        c
    }

    fn allowed(p: &[Policy], c: &Context) -> bool {
        evaluate(p, "connect:UpdateSecurityProfile", PROFILE, c) == Decision::Allow
    }

    #[test]
    fn no_statement_is_an_implicit_deny_and_a_deny_beats_an_allow() {
        let p = policy(json!([{"Effect": "Allow", "Action": "connect:Describe*", "Resource": "*"}]));
        assert_eq!(evaluate(&p, "connect:UpdateSecurityProfile", PROFILE, &ctx(&[])), Decision::ImplicitDeny);
        let p = policy(json!([
            {"Effect": "Allow", "Action": "connect:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "connect:UpdateSecurityProfile", "Resource": PROFILE}
        ]));
        assert_eq!(evaluate(&p, "connect:UpdateSecurityProfile", PROFILE, &ctx(&[])), Decision::ExplicitDeny);
        assert_eq!(evaluate(&p, "connect:DeleteSecurityProfile", PROFILE, &ctx(&[])), Decision::Allow);
    }

    #[test]
    fn actions_match_without_case_and_with_wildcards_resources_with_case() {
        let p = policy(json!({"Effect": "Allow", "Action": ["CONNECT:update?ecurityProfile"],
            "Resource": "arn:aws:connect:*:*:instance/i-1/security-profile/*"}));
        assert!(allowed(&p, &ctx(&[])));
        assert_eq!(
            evaluate(&p, "connect:UpdateSecurityProfile", &PROFILE.replace("i-1", "I-1"), &ctx(&[])),
            Decision::ImplicitDeny
        );
        let p =
            policy(json!({"Effect": "Allow", "NotAction": "connect:Delete*", "NotResource": "arn:*:instance/i-2/*"}));
        assert!(allowed(&p, &ctx(&[])));
        assert_eq!(evaluate(&p, "connect:DeleteSecurityProfile", PROFILE, &ctx(&[])), Decision::ImplicitDeny);
        assert_eq!(
            evaluate(&p, "connect:UpdateSecurityProfile", &PROFILE.replace("i-1", "i-2"), &ctx(&[])),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn string_equals_and_its_negation_and_case() {
        let p = allow_if(json!({"StringEquals": {"aws:ResourceTag/team": ["a", "b"]}}));
        assert!(allowed(&p, &ctx(&[("aws:ResourceTag/team", "b")])));
        assert!(allowed(&p, &ctx(&[("aws:ResourceTag/TEAM", "a")])), "key names ignore case");
        assert!(!allowed(&p, &ctx(&[("aws:ResourceTag/team", "A")])), "values do not");
        assert!(!allowed(&p, &ctx(&[])), "absent key: false");
        let p = allow_if(json!({"StringNotEquals": {"aws:ResourceTag/team": ["a", "b"]}}));
        assert!(allowed(&p, &ctx(&[("aws:ResourceTag/team", "c")])));
        assert!(!allowed(&p, &ctx(&[("aws:ResourceTag/team", "b")])), "negated: every value must differ");
        assert!(allowed(&p, &ctx(&[])), "absent key: a negated operator is true");
        let p = allow_if(json!({"StringEqualsIgnoreCase": {"aws:ResourceTag/team": "A"}}));
        assert!(allowed(&p, &ctx(&[("aws:ResourceTag/team", "a")])));
        let p = allow_if(json!({"StringNotEqualsIgnoreCase": {"aws:ResourceTag/team": "A"}}));
        assert!(!allowed(&p, &ctx(&[("aws:ResourceTag/team", "a")])));
        assert!(allowed(&p, &ctx(&[("aws:ResourceTag/team", "b")])));
    }

    #[test]
    fn string_like_and_not_like_and_arn_operators() {
        let p = allow_if(json!({"StringLike": {"sts:RoleSessionName": "csp-?eam-*"}}));
        assert!(allowed(&p, &ctx(&[("sts:RoleSessionName", "csp-team-a")])));
        assert!(!allowed(&p, &ctx(&[("sts:RoleSessionName", "csp-tteam-a")])));
        let p = allow_if(json!({"StringNotLike": {"sts:RoleSessionName": ["csp-*", "x"]}}));
        assert!(!allowed(&p, &ctx(&[("sts:RoleSessionName", "csp-team-a")])));
        assert!(allowed(&p, &ctx(&[("sts:RoleSessionName", "other")])));
        let p = allow_if(json!({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/op*"}}));
        assert!(allowed(&p, &ctx(&[("aws:PrincipalArn", "arn:aws:iam::123456789012:role/operator")])));
        let p = allow_if(json!({"ArnNotEquals": {"aws:PrincipalArn": "arn:aws:iam::123456789012:role/operator"}}));
        assert!(!allowed(&p, &ctx(&[("aws:PrincipalArn", "arn:aws:iam::123456789012:role/operator")])));
        assert!(allowed(&p, &ctx(&[("aws:PrincipalArn", "arn:aws:iam::123456789012:role/other")])));
        let p = allow_if(json!({"StringEquals": {"aws:ResourceTag/x": "a*"}}));
        assert!(!allowed(&p, &ctx(&[("aws:ResourceTag/x", "ab")])), "StringEquals has no wildcards");
        assert!(allowed(&p, &ctx(&[("aws:ResourceTag/x", "a*")])));
    }

    #[test]
    fn null_and_if_exists() {
        let p = allow_if(json!({"Null": {"aws:ResourceTag/owner": "false"}}));
        assert!(allowed(&p, &ctx(&[("aws:ResourceTag/owner", "")])), "present, even empty");
        assert!(!allowed(&p, &ctx(&[])));
        let p = allow_if(json!({"Null": {"aws:ResourceTag/owner": true}}));
        assert!(allowed(&p, &ctx(&[])));
        assert!(!allowed(&p, &ctx(&[("aws:ResourceTag/owner", "x")])));
        let p = allow_if(json!({"StringEqualsIfExists": {"aws:ResourceTag/team": "a"}}));
        assert!(allowed(&p, &ctx(&[])));
        assert!(allowed(&p, &ctx(&[("aws:ResourceTag/team", "a")])));
        assert!(!allowed(&p, &ctx(&[("aws:ResourceTag/team", "b")])));
        assert!(
            Policy::parse(&json!({"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*",
            "Condition": {"NullIfExists": {"k": "true"}}}}))
            .is_err()
        );
    }

    #[test]
    fn for_all_values_and_for_any_value() {
        let p = allow_if(json!({"ForAllValues:StringEquals": {"aws:TagKeys": ["namespace", "binding"]}}));
        assert!(allowed(&p, &tag_keys(&["namespace", "binding"])));
        assert!(allowed(&p, &tag_keys(&["namespace"])));
        assert!(!allowed(&p, &tag_keys(&["namespace", "other"])));
        assert!(allowed(&p, &tag_keys(&[])), "ForAllValues of nothing is true");
        let p = allow_if(json!({"ForAllValues:StringNotEquals": {"aws:TagKeys": ["owner", "namespace"]}}));
        assert!(allowed(&p, &tag_keys(&["team", "cost"])));
        assert!(!allowed(&p, &tag_keys(&["team", "owner"])));
        let p = allow_if(json!({"ForAnyValue:StringEquals": {"aws:TagKeys": ["owner", "namespace"]}}));
        assert!(allowed(&p, &tag_keys(&["team", "owner"])));
        assert!(!allowed(&p, &tag_keys(&["team"])));
        assert!(!allowed(&p, &tag_keys(&[])), "ForAnyValue of nothing is false");
        let p = allow_if(json!({"ForAnyValue:StringLike": {"aws:TagKeys": "own*"}}));
        assert!(allowed(&p, &tag_keys(&["team", "owner"])));
    }

    #[test]
    fn values_of_a_key_or_keys_and_operators_and() {
        let p = allow_if(json!({
            "StringEquals": {"aws:PrincipalTag/namespace": ["a", "b"], "aws:ResourceTag/namespace": "a"},
            "Null": {"aws:ResourceTag/owner": "false"}
        }));
        let mut c = ctx(&[("aws:PrincipalTag/namespace", "b"), ("aws:ResourceTag/namespace", "a")]);
        assert!(!allowed(&p, &c), "the owner tag is missing");
        c.set("aws:ResourceTag/owner", "uid");
        assert!(allowed(&p, &c));
        c.set("aws:ResourceTag/namespace", "b");
        assert!(!allowed(&p, &c));
    }

    #[test]
    fn policy_variables_in_conditions_and_resources() {
        let p = allow_if(json!({"StringEquals": {"aws:ResourceTag/namespace": "${aws:PrincipalTag/namespace}"}}));
        assert!(allowed(&p, &ctx(&[("aws:ResourceTag/namespace", "a"), ("aws:PrincipalTag/namespace", "a")])));
        assert!(!allowed(&p, &ctx(&[("aws:ResourceTag/namespace", "a"), ("aws:PrincipalTag/namespace", "b")])));
        assert!(!allowed(&p, &ctx(&[("aws:ResourceTag/namespace", "a")])), "unresolvable: no match");
        assert!(
            !allowed(&p, &ctx(&[("aws:ResourceTag/namespace", "${aws:PrincipalTag/namespace}")])),
            "not compared as text"
        );
        let p = allow_if(json!({"StringNotEquals": {"aws:ResourceTag/namespace": "${aws:PrincipalTag/namespace}"}}));
        assert!(!allowed(&p, &ctx(&[("aws:ResourceTag/namespace", "a")])), "unresolvable: false when negated too");
        let p = allow_if(json!({"StringEquals": {"aws:ResourceTag/n": "${aws:PrincipalTag/n, 'none'}"}}));
        assert!(allowed(&p, &ctx(&[("aws:ResourceTag/n", "none")])), "a default value");
        let p = allow_if(json!({"StringLike": {"aws:ResourceTag/n": "${aws:username}-*"}}));
        assert!(allowed(&p, &ctx(&[("aws:ResourceTag/n", "bob-1"), ("aws:username", "bob")])));
        let p = allow_if(json!({"StringLike": {"aws:ResourceTag/n": "${aws:userid}"}}));
        assert!(!allowed(&p, &ctx(&[("aws:ResourceTag/n", "xyz"), ("aws:userid", "x*")])), "resolved text is literal");
        let p = allow_if(json!({"StringEquals": {"aws:ResourceTag/n": "a${*}b${?}${$}"}}));
        assert!(allowed(&p, &ctx(&[("aws:ResourceTag/n", "a*b?$")])));
        let p = policy(json!({"Effect": "Allow", "Action": "connect:*",
            "Resource": "arn:aws:connect:*:*:instance/${aws:PrincipalTag/instance}/security-profile/*"}));
        assert!(allowed(&p, &ctx(&[("aws:PrincipalTag/instance", "i-1")])));
        assert!(!allowed(&p, &ctx(&[("aws:PrincipalTag/instance", "i-2")])));
        assert!(!allowed(&p, &ctx(&[])), "an unresolvable variable in Resource matches nothing");
    }

    #[test]
    fn trust_policies_match_principals() {
        let trust = Policy::parse(&json!({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::123456789012:role/operator"]},
             "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:ExternalId": "x"}}},
            {"Effect": "Allow", "Principal": {"AWS": "123456789012"}, "Action": "sts:TagSession"}
        ]}))
        .unwrap();
        let role = "arn:aws:iam::123456789012:role/team-a";
        let op = Caller { arn: "arn:aws:iam::123456789012:role/operator".into(), session_arn: None };
        let other = Caller { arn: "arn:aws:iam::123456789012:user/bob".into(), session_arn: None };
        let foreign = Caller { arn: "arn:aws:iam::999999999999:user/eve".into(), session_arn: None };
        let with_id = ctx(&[("sts:ExternalId", "x")]);
        assert_eq!(
            evaluate_resource_policy(&trust, &op, "sts:AssumeRole", role, &with_id),
            (Decision::Allow, Some(PrincipalMatch::Specific))
        );
        assert_eq!(evaluate_resource_policy(&trust, &op, "sts:AssumeRole", role, &ctx(&[])).0, Decision::ImplicitDeny);
        assert_eq!(
            evaluate_resource_policy(&trust, &other, "sts:AssumeRole", role, &with_id).0,
            Decision::ImplicitDeny
        );
        assert_eq!(
            evaluate_resource_policy(&trust, &other, "sts:TagSession", role, &with_id),
            (Decision::Allow, Some(PrincipalMatch::Account))
        );
        assert_eq!(
            evaluate_resource_policy(&trust, &foreign, "sts:TagSession", role, &with_id).0,
            Decision::ImplicitDeny
        );
        let deny = Policy::parse(&json!({"Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "sts:*"},
            {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "sts:TagSession",
             "Condition": {"StringNotEquals": {"aws:RequestTag/namespace": "a"}}}
        ]}))
        .unwrap();
        let tagged = ctx(&[("aws:RequestTag/namespace", "b")]);
        assert_eq!(evaluate_resource_policy(&deny, &other, "sts:TagSession", role, &tagged).0, Decision::ExplicitDeny);
        assert_eq!(evaluate_resource_policy(&deny, &other, "sts:AssumeRole", role, &tagged).0, Decision::Allow);
    }

    #[test]
    fn unsupported_or_malformed_policies_are_refused() {
        for bad in [
            json!({"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"NumericLessThan": {"k": "1"}}}}),
            json!({"Statement": {"Effect": "Permit", "Action": "*", "Resource": "*"}}),
            json!({"Statement": {"Effect": "Allow", "Resource": "*"}}),
            json!({"Statement": {"Effect": "Allow", "Action": "*", "Resources": "*"}}),
            json!({"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"Sometimes:StringEquals": {"k": "v"}}}}),
            json!({"Version": "2020-01-01", "Statement": []}),
        ] {
            assert!(Policy::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wildcard_matching() {
        assert!(like("a*b*c", "aXXbYc", false));
        assert!(!like("a*b*c", "aXXbYcd", false));
        assert!(like("*", "", false));
        assert!(like("a?c", "abc", false));
        assert!(!like("a?c", "ac", false));
        assert!(like("**a", "ba", false));
    }
}
