//! The security-profile model and the members Create and Update share.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::ApiError;
use crate::input::{self, Object};
use crate::limits as c;

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
    /// Emulator-only: when the profile was created (Unix seconds; 0 for an instance's default profiles,
    /// which are there from the start). Reads do not see it until the `readLagMs` fault has passed.
    #[serde(default)]
    pub created_time: f64,
    /// Emulator-only: assigned to users, so DeleteSecurityProfile answers ResourceInUseException.
    #[serde(default)]
    pub in_use: bool,
    /// Emulator-only: the caller may not delete it (AccessDeniedException).
    #[serde(default)]
    pub delete_denied: bool,
}

pub(super) fn describe_json(instance_id: &str, p: &Profile) -> Value {
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
pub(super) struct ProfileFields {
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
    pub(super) fn parse(body: &Object) -> Result<Self, ApiError> {
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
    pub(super) fn apply_to(self, p: &mut Profile) {
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
