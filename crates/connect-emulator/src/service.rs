//! The emulated Connect service: instances, security profiles, tags, and the operations on them.
//! Pure state transitions: no I/O, no clocks other than the timestamp passed in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::ApiError;
use super::input::{self, Object};
use crate::limits as c;

pub use crate::limits::DEFAULT_PROFILE_NAMES;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Profile {
    pub id: String,
    pub arn: String,
    pub security_profile_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub permissions: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub allowed_access_control_tags: BTreeMap<String, String>,
    #[serde(default)]
    pub tag_restricted_resources: Vec<String>,
    #[serde(default)]
    pub hierarchy_restricted_resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_access_control_hierarchy_group_id: Option<String>,
    #[serde(default)]
    pub applications: Vec<Value>,
    #[serde(default)]
    pub allowed_flow_modules: Vec<Value>,
    #[serde(default, rename = "AllowedAIAgents")]
    pub allowed_ai_agents: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granular_access_control_configuration: Option<Value>,
    pub last_modified_time: f64,
    pub last_modified_region: String,
    /// Emulator-only: assigned to users, so DeleteSecurityProfile answers ResourceInUseException.
    #[serde(default)]
    pub in_use: bool,
    /// Emulator-only: the caller may not delete it (AccessDeniedException).
    #[serde(default)]
    pub delete_denied: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Instance {
    pub id: String,
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
}

fn not_found(what: &str, id: &str) -> ApiError {
    ApiError::new("ResourceNotFoundException", 404, format!("{what} not found: {id}"))
}

/// Opaque pagination tokens; anything else is refused like Connect refuses a forged token.
fn encode_token(kind: &str, offset: usize) -> String {
    format!("{kind}.{offset:08x}.emu")
}

fn decode_token(token: Option<&String>, kind: &str) -> Result<usize, ApiError> {
    let Some(token) = token else { return Ok(0) };
    token
        .strip_prefix(&format!("{kind}."))
        .and_then(|rest| rest.strip_suffix(".emu"))
        .and_then(|hex| usize::from_str_radix(hex, 16).ok())
        .ok_or_else(|| {
            ApiError::invalid_parameter(format!("NextToken: {token:?} is not a token this operation issued"))
        })
}

fn page<T: Clone>(items: &[T], offset: usize, max: usize, kind: &str) -> (Vec<T>, Option<String>) {
    let end = (offset + max).min(items.len());
    let slice = items.get(offset..end).unwrap_or(&[]).to_vec();
    let next = (end < items.len()).then(|| encode_token(kind, end));
    (slice, next)
}

fn describe_json(instance_id: &str, p: &Profile) -> Value {
    let mut out = json!({
        "Id": p.id, "OrganizationResourceId": instance_id, "Arn": p.arn,
        "SecurityProfileName": p.security_profile_name,
        "LastModifiedTime": p.last_modified_time, "LastModifiedRegion": p.last_modified_region,
    });
    let o = out.as_object_mut().expect("object");
    if let Some(d) = &p.description {
        o.insert("Description".into(), json!(d));
    }
    if !p.tags.is_empty() {
        o.insert("Tags".into(), json!(p.tags));
    }
    if !p.allowed_access_control_tags.is_empty() {
        o.insert("AllowedAccessControlTags".into(), json!(p.allowed_access_control_tags));
    }
    if !p.tag_restricted_resources.is_empty() {
        o.insert("TagRestrictedResources".into(), json!(p.tag_restricted_resources));
    }
    if !p.hierarchy_restricted_resources.is_empty() {
        o.insert("HierarchyRestrictedResources".into(), json!(p.hierarchy_restricted_resources));
    }
    if let Some(h) = &p.allowed_access_control_hierarchy_group_id {
        o.insert("AllowedAccessControlHierarchyGroupId".into(), json!(h));
    }
    if let Some(g) = &p.granular_access_control_configuration {
        o.insert("GranularAccessControlConfiguration".into(), g.clone());
    }
    out
}

/// The members Create and Update share, validated; `None` where the request leaves a member out.
#[derive(Default)]
struct ProfileFields {
    description: Option<String>,
    permissions: Option<Vec<String>>,
    allowed_access_control_tags: Option<BTreeMap<String, String>>,
    tag_restricted_resources: Option<Vec<String>>,
    hierarchy_restricted_resources: Option<Vec<String>>,
    allowed_access_control_hierarchy_group_id: Option<String>,
    applications: Option<Vec<Value>>,
    allowed_flow_modules: Option<Vec<Value>>,
    allowed_ai_agents: Option<Vec<Value>>,
    granular_access_control_configuration: Option<Value>,
}

impl ProfileFields {
    fn parse(body: &Object) -> Result<Self, ApiError> {
        Ok(Self {
            description: input::opt_string(body, "Description", 0, c::DESCRIPTION_MAX)?,
            permissions: input::opt_string_list(
                body,
                "Permissions",
                c::PERMISSIONS_MAX_ITEMS,
                1,
                c::PERMISSION_MAX,
                None,
            )?,
            allowed_access_control_tags: input::access_control_tags(body)?,
            tag_restricted_resources: input::opt_string_list(
                body,
                "TagRestrictedResources",
                c::TAG_RESTRICTED_RESOURCES_MAX_ITEMS,
                1,
                c::RESOURCE_NAME_MAX,
                Some(c::TAG_RESTRICTED_RESOURCE_NAMES),
            )?,
            hierarchy_restricted_resources: input::opt_string_list(
                body,
                "HierarchyRestrictedResources",
                usize::MAX,
                1,
                c::RESOURCE_NAME_MAX,
                Some(c::HIERARCHY_RESTRICTED_RESOURCE_NAMES),
            )?,
            allowed_access_control_hierarchy_group_id: input::opt_string(
                body,
                "AllowedAccessControlHierarchyGroupId",
                0,
                usize::MAX,
            )?,
            applications: input::applications(body)?,
            allowed_flow_modules: input::flow_modules(body)?,
            allowed_ai_agents: input::ai_agents(body)?,
            granular_access_control_configuration: input::granular_access_control(body)?,
        })
    }

    /// Members present in the request replace the stored ones; an empty value clears them.
    fn apply_to(self, p: &mut Profile) {
        if let Some(v) = self.description {
            p.description = (!v.is_empty()).then_some(v);
        }
        if let Some(v) = self.permissions {
            p.permissions = v;
        }
        if let Some(v) = self.allowed_access_control_tags {
            p.allowed_access_control_tags = v;
        }
        if let Some(v) = self.tag_restricted_resources {
            p.tag_restricted_resources = v;
        }
        if let Some(v) = self.hierarchy_restricted_resources {
            p.hierarchy_restricted_resources = v;
        }
        if let Some(v) = self.allowed_access_control_hierarchy_group_id {
            p.allowed_access_control_hierarchy_group_id = (!v.is_empty()).then_some(v);
        }
        if let Some(v) = self.applications {
            p.applications = v;
        }
        if let Some(v) = self.allowed_flow_modules {
            p.allowed_flow_modules = v;
        }
        if let Some(v) = self.allowed_ai_agents {
            p.allowed_ai_agents = v;
        }
        if let Some(v) = self.granular_access_control_configuration {
            let empty = v.as_object().is_some_and(|o| o.is_empty());
            p.granular_access_control_configuration = (!empty).then_some(v);
        }
    }
}

impl Connect {
    pub fn new(region: &str, account: &str, profile_limit: usize) -> Self {
        Self { region: region.into(), account: account.into(), profile_limit, instances: BTreeMap::new() }
    }

    pub fn add_instance(&mut self, id: &str, with_default_profiles: bool, now: f64) {
        let arn = format!("arn:aws:connect:{}:{}:instance/{id}", self.region, self.account);
        let alias = format!("emulated-{}", id.chars().take(8).collect::<String>());
        let mut instance = Instance {
            id: id.into(),
            arn,
            instance_alias: alias,
            created_time: now,
            tags: BTreeMap::new(),
            instance_status: "ACTIVE".into(),
            profiles: vec![],
        };
        if with_default_profiles {
            for name in DEFAULT_PROFILE_NAMES {
                let profile = self.new_profile(&instance, name, now);
                instance.profiles.push(profile);
            }
        }
        self.instances.insert(id.into(), instance);
    }

    fn new_profile(&self, instance: &Instance, name: &str, now: f64) -> Profile {
        let id = uuid::Uuid::new_v4().to_string();
        Profile {
            arn: format!("{}/security-profile/{id}", instance.arn),
            id,
            security_profile_name: name.into(),
            last_modified_time: now,
            last_modified_region: self.region.clone(),
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

    fn profile_mut(&mut self, instance_id: &str, profile_id: &str) -> Result<&mut Profile, ApiError> {
        self.profile(instance_id, profile_id)?;
        let instance = self.instances.get_mut(instance_id).expect("checked");
        Ok(instance.profiles.iter_mut().find(|p| p.id == profile_id).expect("checked"))
    }

    /// Runs one operation. `labels` are the URI labels in path order.
    pub fn call(&mut self, operation: &str, req: &Request, now: f64) -> Result<Value, ApiError> {
        let label = |i: usize| req.labels.get(i).map(String::as_str).unwrap_or_default();
        match operation {
            "CreateSecurityProfile" => self.create_security_profile(label(0), &req.body, now),
            "DescribeSecurityProfile" => {
                let p = self.profile(label(0), label(1))?;
                Ok(json!({ "SecurityProfile": describe_json(label(0), p) }))
            }
            "UpdateSecurityProfile" => self.update_security_profile(label(0), label(1), &req.body, now),
            "DeleteSecurityProfile" => self.delete_security_profile(label(0), label(1)),
            "ListSecurityProfiles" => self.list_security_profiles(label(0), &req.query),
            "ListSecurityProfilePermissions" => {
                self.list_profile_member(label(0), label(1), &req.query, "Permissions", |p| {
                    p.permissions.iter().map(|s| json!(s)).collect()
                })
            }
            "ListSecurityProfileApplications" => {
                self.list_profile_member(label(0), label(1), &req.query, "Applications", |p| p.applications.clone())
            }
            "ListSecurityProfileFlowModules" => {
                self.list_profile_member(label(0), label(1), &req.query, "AllowedFlowModules", |p| {
                    p.allowed_flow_modules.clone()
                })
            }
            "ListSecurityProfileAIAgents" => {
                self.list_profile_member(label(0), label(1), &req.query, "AllowedAIAgents", |p| {
                    p.allowed_ai_agents.clone()
                })
            }
            "SearchSecurityProfiles" => self.search_security_profiles(&req.body),
            "TagResource" => self.tag_resource(label(0), &req.body),
            "UntagResource" => self.untag_resource(label(0), &req.query),
            "ListTagsForResource" => {
                let tags = self.tags_of(label(0))?;
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
                    "ServiceRole": format!("arn:aws:iam::{}:role/aws-service-role/connect.amazonaws.com/AWSServiceRoleForAmazonConnect", self.account),
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
    ) -> Result<Value, ApiError> {
        let instance = self.instance(instance_id)?;
        let max = input::max_results(query, "maxResults", c::LIST_MAX_RESULTS, 100)?;
        let offset = decode_token(query.get("nextToken").and_then(|v| v.first()), "list")?;
        let summaries: Vec<Value> = instance
            .profiles
            .iter()
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
        member: &str,
        items: impl Fn(&Profile) -> Vec<Value>,
    ) -> Result<Value, ApiError> {
        let p = self.profile(instance_id, profile_id)?;
        let max = input::max_results(query, "maxResults", c::LIST_MAX_RESULTS, 100)?;
        let offset = decode_token(query.get("nextToken").and_then(|v| v.first()), member)?;
        let (items, next) = page(&items(p), offset, max, member);
        Ok(json!({member: items, "NextToken": next,
            "LastModifiedTime": p.last_modified_time, "LastModifiedRegion": p.last_modified_region}))
    }

    fn search_security_profiles(&self, body: &Object) -> Result<Value, ApiError> {
        let instance_id = input::required_string(body, "InstanceId", 1, c::INSTANCE_ID_MAX)?;
        let instance = self.instance(&instance_id)?;
        let max = match body.get("MaxResults") {
            None | Some(Value::Null) => 100,
            Some(v) => match v.as_i64() {
                Some(n) if (1..=c::SEARCH_MAX_RESULTS).contains(&n) => n as usize,
                _ => {
                    return Err(ApiError::invalid_parameter(format!(
                        "MaxResults: must be an integer between 1 and 100, got {v}"
                    )));
                }
            },
        };
        let token = input::opt_string(body, "NextToken", 1, c::SEARCH_NEXT_TOKEN_MAX)?;
        let offset = decode_token(token.as_ref(), "search")?;
        let criteria = body.get("SearchCriteria");
        let tag_filter = body.get("SearchFilter").and_then(|f| f.get("TagFilter"));
        let mut hits = Vec::new();
        for p in &instance.profiles {
            let by_criteria = match criteria {
                Some(c) => matches_criteria(c, p)?,
                None => true,
            };
            if by_criteria && tag_filter.is_none_or(|f| matches_tag_filter(f, p)) {
                let mut summary = json!({"Id": p.id, "OrganizationResourceId": instance.id, "Arn": p.arn,
                    "SecurityProfileName": p.security_profile_name, "Tags": p.tags});
                if let Some(d) = &p.description {
                    summary["Description"] = json!(d);
                }
                hits.push(summary);
            }
        }
        let total = hits.len();
        let (items, next) = page(&hits, offset, max, "search");
        Ok(json!({"SecurityProfiles": items, "NextToken": next, "ApproximateTotalCount": total}))
    }

    /// The tag map of the resource an ARN names: an instance or one of its security profiles.
    fn tags_of(&self, arn: &str) -> Result<&BTreeMap<String, String>, ApiError> {
        if !arn.starts_with("arn:") || arn.split(':').count() < 6 {
            return Err(ApiError::invalid_parameter(format!("resourceArn: {arn:?} is not a valid ARN")));
        }
        for instance in self.instances.values() {
            if instance.arn == arn {
                return Ok(&instance.tags);
            }
            if let Some(p) = instance.profiles.iter().find(|p| p.arn == arn) {
                return Ok(&p.tags);
            }
        }
        Err(not_found("Resource", arn))
    }

    fn tags_of_mut(&mut self, arn: &str) -> Result<&mut BTreeMap<String, String>, ApiError> {
        self.tags_of(arn)?;
        for instance in self.instances.values_mut() {
            if instance.arn == arn {
                return Ok(&mut instance.tags);
            }
            if let Some(p) = instance.profiles.iter_mut().find(|p| p.arn == arn) {
                return Ok(&mut p.tags);
            }
        }
        unreachable!("tags_of found the resource")
    }

    fn tag_resource(&mut self, arn: &str, body: &Object) -> Result<Value, ApiError> {
        let tags = input::tag_map(body, "tags")?.ok_or_else(|| ApiError::invalid_parameter("tags: is required"))?;
        let current = self.tags_of(arn)?;
        let merged = current.keys().chain(tags.keys()).collect::<std::collections::BTreeSet<_>>().len();
        if merged > c::TAGS_MAX_ENTRIES {
            return Err(ApiError::new(
                "InvalidRequestException",
                400,
                format!("A resource can have at most {} tags; this request would leave {merged}", c::TAGS_MAX_ENTRIES),
            ));
        }
        self.tags_of_mut(arn)?.extend(tags);
        Ok(json!({}))
    }

    fn untag_resource(&mut self, arn: &str, query: &BTreeMap<String, Vec<String>>) -> Result<Value, ApiError> {
        let keys = query.get("tagKeys").cloned().unwrap_or_default();
        if keys.is_empty() || keys.len() > c::TAGS_MAX_ENTRIES {
            return Err(ApiError::invalid_parameter(format!(
                "tagKeys: must have between 1 and 50 items, got {}",
                keys.len()
            )));
        }
        for k in &keys {
            if let Some(problem) = c::tag_key_problem(k) {
                return Err(ApiError::invalid_parameter(format!("tagKeys {k:?}: {problem}")));
            }
        }
        let tags = self.tags_of_mut(arn)?;
        for k in keys {
            tags.remove(&k);
        }
        Ok(json!({}))
    }
}

fn string_condition_matches(cond: &Value, p: &Profile) -> Result<bool, ApiError> {
    let field = cond.get("FieldName").and_then(Value::as_str).unwrap_or_default();
    let value = cond.get("Value").and_then(Value::as_str).unwrap_or_default();
    let subject = match field.to_ascii_lowercase().as_str() {
        "name" | "securityprofilename" => p.security_profile_name.as_str(),
        "description" => p.description.as_deref().unwrap_or_default(),
        _ => {
            return Err(ApiError::invalid_parameter(format!(
                "SearchCriteria.StringCondition.FieldName: {field:?} is not searchable (use name or description)"
            )));
        }
    };
    match cond.get("ComparisonType").and_then(Value::as_str) {
        Some("EXACT") => Ok(subject == value),
        Some("STARTS_WITH") => Ok(subject.starts_with(value)),
        Some("CONTAINS") => Ok(subject.to_lowercase().contains(&value.to_lowercase())),
        other => Err(ApiError::invalid_parameter(format!(
            "SearchCriteria.StringCondition.ComparisonType: must be one of STARTS_WITH, CONTAINS, EXACT, got {other:?}"
        ))),
    }
}

fn matches_criteria(criteria: &Value, p: &Profile) -> Result<bool, ApiError> {
    if let Some(cond) = criteria.get("StringCondition") {
        return string_condition_matches(cond, p);
    }
    if let Some(Value::Array(all)) = criteria.get("AndConditions") {
        for c in all {
            if !matches_criteria(c, p)? {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    if let Some(Value::Array(any)) = criteria.get("OrConditions") {
        for c in any {
            if matches_criteria(c, p)? {
                return Ok(true);
            }
        }
        return Ok(false);
    }
    Ok(true)
}

fn tag_condition_matches(cond: &Value, p: &Profile) -> bool {
    let key = cond.get("TagKey").and_then(Value::as_str).unwrap_or_default();
    match (p.tags.get(key), cond.get("TagValue").and_then(Value::as_str)) {
        (Some(v), Some(want)) => v == want,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

fn matches_tag_filter(filter: &Value, p: &Profile) -> bool {
    if let Some(cond) = filter.get("TagCondition") {
        return tag_condition_matches(cond, p);
    }
    if let Some(Value::Array(all)) = filter.get("AndConditions") {
        return all.iter().all(|c| tag_condition_matches(c, p));
    }
    if let Some(Value::Array(any)) = filter.get("OrConditions") {
        return any.iter().any(|group| group.as_array().is_some_and(|g| g.iter().all(|c| tag_condition_matches(c, p))));
    }
    true
}
