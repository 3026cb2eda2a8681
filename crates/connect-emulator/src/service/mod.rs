//! The emulated Connect service: instances, security profiles, tags, and the operations on them.
//! Pure state transitions: no I/O, no clocks other than the timestamp passed in.
//!
//! This file holds the state ([`Connect`], [`Instance`]), the operation dispatch ([`Connect::call`]) and the
//! profile operations; the private submodules hold the rest: `profile.rs` the [`Profile`] model and the
//! members Create and Update share, `pages.rs` the pagination tokens, `search.rs` SearchSecurityProfiles
//! and its criteria matching, `tags.rs` the tag operations, `console.rs` the edits a person makes in the
//! Connect console (the control API's, outside the Connect API).
//!
//! Reads are eventually consistent the way the `readLagMs` fault says ([`Request::read_lag`]): a profile
//! created less than that long ago is not found by DescribeSecurityProfile, ListSecurityProfiles,
//! SearchSecurityProfiles, the List*Members operations or ListTagsForResource. Writes see it at once:
//! CreateSecurityProfile's name check (DuplicateResourceException) and quota, Update, Delete, TagResource
//! and UntagResource, as a store whose writes go to the primary and whose reads to lagging replicas.

pub(crate) mod console;
mod pages;
mod profile;
mod search;
mod tags;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::ApiError;
use super::input::{self, Object};
use crate::limits as c;
use pages::{decode_token, page};
use profile::{ProfileFields, describe_json};

pub use crate::limits::DEFAULT_PROFILE_NAMES;
pub use profile::Profile;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Instance {
    pub id: String,
    /// The AWS account the instance is in.
    #[serde(default)]
    pub account: String,
    pub arn: String,
    pub instance_alias: String,
    pub created_time: f64,
    pub tags: BTreeMap<String, String>,
    /// `ACTIVE`, `CREATION_IN_PROGRESS` or `CREATION_FAILED`; only an active instance serves profile calls.
    pub instance_status: String,
    /// Profiles in creation order.
    pub profiles: Vec<Profile>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Connect {
    pub region: String,
    pub account: String,
    pub profile_limit: usize,
    pub instances: BTreeMap<String, Instance>,
}

/// A decoded request: the path's labels, the query string and the JSON body.
#[derive(Debug, Default)]
pub struct Request {
    pub labels: Vec<String>,
    pub query: BTreeMap<String, Vec<String>>,
    pub body: Object,
    /// Seconds a new profile stays invisible to this request if it is a read (the `readLagMs` fault).
    pub read_lag: f64,
}

/// What a read at `now` with `read_lag` sees: a profile created at least `read_lag` seconds before.
#[derive(Clone, Copy)]
struct ReadView {
    now: f64,
    read_lag: f64,
}

impl ReadView {
    fn sees(self, p: &Profile) -> bool {
        self.read_lag <= 0.0 || self.now - p.created_time >= self.read_lag
    }
}

fn not_found(what: &str, id: &str) -> ApiError {
    ApiError::new("ResourceNotFoundException", 404, format!("{what} not found: {id}"))
}

impl Connect {
    pub fn new(region: &str, account: &str, profile_limit: usize) -> Self {
        Self { region: region.into(), account: account.into(), profile_limit, instances: BTreeMap::new() }
    }

    /// Adds an instance: `spec` is its ID, in the emulator's account, or `ACCOUNT:ID`, in that account.
    /// Returns the instance's ID.
    pub fn add_instance(&mut self, spec: &str, with_default_profiles: bool, now: f64) -> String {
        let (account, id) = spec.split_once(':').unwrap_or((self.account.as_str(), spec));
        let arn = format!("arn:aws:connect:{}:{account}:instance/{id}", self.region);
        let alias = format!("emulated-{}", id.chars().take(8).collect::<String>());
        let mut instance = Instance {
            id: id.into(),
            account: account.into(),
            arn,
            instance_alias: alias,
            created_time: now,
            tags: BTreeMap::new(),
            instance_status: "ACTIVE".into(),
            profiles: vec![],
        };
        if with_default_profiles {
            for name in DEFAULT_PROFILE_NAMES {
                let mut profile = self.new_profile(&instance, name, now);
                profile.created_time = 0.0; // there from the start: no read lag
                instance.profiles.push(profile);
            }
        }
        self.instances.insert(id.into(), instance);
        id.to_string()
    }

    fn new_profile(&self, instance: &Instance, name: &str, now: f64) -> Profile {
        let id = uuid::Uuid::new_v4().to_string();
        Profile {
            arn: format!("{}/security-profile/{id}", instance.arn),
            id,
            security_profile_name: name.into(),
            last_modified_time: now,
            last_modified_region: self.region.clone(),
            created_time: now,
            ..Profile::default()
        }
    }

    /// An instance that can serve profile operations: known and `ACTIVE`.
    fn instance(&self, id: &str) -> Result<&Instance, ApiError> {
        let instance = self.any_instance(id)?;
        if instance.instance_status != "ACTIVE" {
            return Err(ApiError::new(
                "InvalidRequestException",
                400,
                format!("Instance {id} is not active (status {})", instance.instance_status),
            ));
        }
        Ok(instance)
    }

    /// The account of the instance a Connect call addresses (for the tag operations, the account of the
    /// resource ARN), when there is one: a caller of another account sees no such resource.
    pub fn call_account(&self, operation: &str, labels: &[String], body: Option<&Object>) -> Option<String> {
        let instance = match operation {
            "SearchSecurityProfiles" => body?.get("InstanceId")?.as_str()?,
            "TagResource" | "UntagResource" | "ListTagsForResource" => {
                return labels.first()?.split(':').nth(4).map(str::to_string);
            }
            _ => labels.first()?.as_str(),
        };
        self.instances.get(instance).map(|i| i.account.clone())
    }

    fn any_instance(&self, id: &str) -> Result<&Instance, ApiError> {
        input::string_len("InstanceId", id, 1, c::INSTANCE_ID_MAX)?;
        self.instances.get(id).ok_or_else(|| not_found("Instance", id))
    }

    fn instance_mut(&mut self, id: &str) -> Result<&mut Instance, ApiError> {
        self.instance(id)?;
        Ok(self.instances.get_mut(id).expect("checked"))
    }

    fn profile(&self, instance_id: &str, profile_id: &str) -> Result<&Profile, ApiError> {
        self.instance(instance_id)?
            .profiles
            .iter()
            .find(|p| p.id == profile_id)
            .ok_or_else(|| not_found("Security profile", profile_id))
    }

    /// A profile as a read sees it: one created too recently is not found yet.
    fn visible_profile(&self, instance_id: &str, profile_id: &str, view: ReadView) -> Result<&Profile, ApiError> {
        self.profile(instance_id, profile_id)
            .and_then(|p| if view.sees(p) { Ok(p) } else { Err(not_found("Security profile", profile_id)) })
    }

    fn profile_mut(&mut self, instance_id: &str, profile_id: &str) -> Result<&mut Profile, ApiError> {
        self.profile(instance_id, profile_id)?;
        let instance = self.instances.get_mut(instance_id).expect("checked");
        Ok(instance.profiles.iter_mut().find(|p| p.id == profile_id).expect("checked"))
    }

    /// Runs one operation. `labels` are the URI labels in path order.
    pub fn call(&mut self, operation: &str, req: &Request, now: f64) -> Result<Value, ApiError> {
        let label = |i: usize| req.labels.get(i).map(String::as_str).unwrap_or_default();
        let view = ReadView { now, read_lag: req.read_lag };
        match operation {
            "CreateSecurityProfile" => self.create_security_profile(label(0), &req.body, now),
            "DescribeSecurityProfile" => {
                let p = self.visible_profile(label(0), label(1), view)?;
                Ok(json!({ "SecurityProfile": describe_json(label(0), p) }))
            }
            "UpdateSecurityProfile" => self.update_security_profile(label(0), label(1), &req.body, now),
            "DeleteSecurityProfile" => self.delete_security_profile(label(0), label(1)),
            "ListSecurityProfiles" => self.list_security_profiles(label(0), &req.query, view),
            "ListSecurityProfilePermissions" => {
                self.list_profile_member(label(0), label(1), &req.query, view, "Permissions", |p| {
                    p.permissions.iter().map(|s| json!(s)).collect()
                })
            }
            "ListSecurityProfileApplications" => {
                self.list_profile_member(label(0), label(1), &req.query, view, "Applications", |p| {
                    p.applications.clone()
                })
            }
            "ListSecurityProfileFlowModules" => {
                self.list_profile_member(label(0), label(1), &req.query, view, "AllowedFlowModules", |p| {
                    p.allowed_flow_modules.clone()
                })
            }
            "ListSecurityProfileAIAgents" => {
                self.list_profile_member(label(0), label(1), &req.query, view, "AllowedAIAgents", |p| {
                    p.allowed_ai_agents.clone()
                })
            }
            "SearchSecurityProfiles" => self.search_security_profiles(&req.body, view),
            "TagResource" => self.tag_resource(label(0), &req.body),
            "UntagResource" => self.untag_resource(label(0), &req.query),
            "ListTagsForResource" => {
                let tags = self.visible_tags_of(label(0), view)?;
                Ok(json!({ "tags": tags }))
            }
            "DescribeInstance" => {
                // DescribeInstance's model lists no InvalidParameterException: bad input is an InvalidRequest.
                let i = self.any_instance(label(0)).map_err(|e| match e.code {
                    "InvalidParameterException" => ApiError::new("InvalidRequestException", 400, e.message),
                    _ => e,
                })?;
                Ok(json!({"Instance": {
                    "Id": i.id, "Arn": i.arn, "IdentityManagementType": "CONNECT_MANAGED",
                    "InstanceAlias": i.instance_alias, "CreatedTime": i.created_time,
                    "ServiceRole": format!("arn:aws:iam::{}:role/aws-service-role/connect.amazonaws.com/AWSServiceRoleForAmazonConnect", i.account),
                    "InstanceStatus": i.instance_status, "InboundCallsEnabled": true, "OutboundCallsEnabled": true,
                    "InstanceAccessUrl": format!("https://{}.my.connect.aws", i.instance_alias),
                    "Tags": i.tags,
                }}))
            }
            other => Err(ApiError::new("UnknownOperationException", 404, format!("unknown operation {other}"))),
        }
    }

    fn create_security_profile(&mut self, instance_id: &str, body: &Object, now: f64) -> Result<Value, ApiError> {
        self.instance(instance_id)?;
        let name = input::required_string(body, "SecurityProfileName", 1, c::PROFILE_NAME_MAX)?;
        if !c::is_valid_profile_name(&name) {
            return Err(ApiError::invalid_parameter(format!(
                "SecurityProfileName: {name:?} does not match pattern {}",
                c::PROFILE_NAME_PATTERN
            )));
        }
        let fields = ProfileFields::parse(body)?;
        let tags = input::tag_map(body, "Tags")?;
        let instance = &self.instances[instance_id];
        if instance.profiles.iter().any(|p| p.security_profile_name == name) {
            return Err(ApiError::new(
                "DuplicateResourceException",
                409,
                format!("A security profile named {name:?} already exists in instance {instance_id}"),
            ));
        }
        if instance.profiles.len() >= self.profile_limit {
            return Err(ApiError::new(
                "LimitExceededException",
                429,
                format!("The quota of {} security profiles per instance has been reached", self.profile_limit),
            ));
        }
        let mut profile = self.new_profile(instance, &name, now);
        fields.apply_to(&mut profile);
        profile.tags = tags.unwrap_or_default();
        let out = json!({"SecurityProfileId": profile.id, "SecurityProfileArn": profile.arn});
        self.instances.get_mut(instance_id).expect("checked").profiles.push(profile);
        Ok(out)
    }

    fn update_security_profile(
        &mut self,
        instance_id: &str,
        profile_id: &str,
        body: &Object,
        now: f64,
    ) -> Result<Value, ApiError> {
        for refused in ["SecurityProfileName", "Tags"] {
            if body.contains_key(refused) {
                return Err(ApiError::serialization(format!(
                    "{refused} is not a member of UpdateSecurityProfileRequest"
                )));
            }
        }
        self.profile(instance_id, profile_id)?;
        let fields = ProfileFields::parse(body)?;
        let region = self.region.clone();
        let profile = self.profile_mut(instance_id, profile_id)?;
        fields.apply_to(profile);
        profile.last_modified_time = now;
        profile.last_modified_region = region;
        Ok(json!({}))
    }

    fn delete_security_profile(&mut self, instance_id: &str, profile_id: &str) -> Result<Value, ApiError> {
        let p = self.profile(instance_id, profile_id)?;
        if p.delete_denied {
            return Err(ApiError::new(
                "AccessDeniedException",
                403,
                format!("You do not have sufficient access to delete security profile {profile_id}"),
            ));
        }
        if p.in_use {
            let mut e = ApiError::new(
                "ResourceInUseException",
                409,
                format!("Security profile {profile_id} is assigned to one or more users"),
            );
            e.extra = Some(json!({"ResourceType": "USER", "ResourceId": p.arn}));
            return Err(e);
        }
        self.instance_mut(instance_id)?.profiles.retain(|p| p.id != profile_id);
        Ok(json!({}))
    }

    fn list_security_profiles(
        &self,
        instance_id: &str,
        query: &BTreeMap<String, Vec<String>>,
        view: ReadView,
    ) -> Result<Value, ApiError> {
        let instance = self.instance(instance_id)?;
        let max = input::max_results(query, "maxResults", c::LIST_MAX_RESULTS, 100)?;
        let offset = decode_token(query.get("nextToken").and_then(|v| v.first()), "list")?;
        let summaries: Vec<Value> = instance
            .profiles
            .iter()
            .filter(|p| view.sees(p))
            .map(|p| {
                json!({"Id": p.id, "Arn": p.arn, "Name": p.security_profile_name,
                "LastModifiedTime": p.last_modified_time, "LastModifiedRegion": p.last_modified_region})
            })
            .collect();
        let (items, next) = page(&summaries, offset, max, "list");
        Ok(json!({"SecurityProfileSummaryList": items, "NextToken": next}))
    }

    fn list_profile_member(
        &self,
        instance_id: &str,
        profile_id: &str,
        query: &BTreeMap<String, Vec<String>>,
        view: ReadView,
        member: &str,
        items: impl Fn(&Profile) -> Vec<Value>,
    ) -> Result<Value, ApiError> {
        let p = self.visible_profile(instance_id, profile_id, view)?;
        let max = input::max_results(query, "maxResults", c::LIST_MAX_RESULTS, 100)?;
        let offset = decode_token(query.get("nextToken").and_then(|v| v.first()), member)?;
        let (items, next) = page(&items(p), offset, max, member);
        Ok(json!({member: items, "NextToken": next,
            "LastModifiedTime": p.last_modified_time, "LastModifiedRegion": p.last_modified_region}))
    }
}
