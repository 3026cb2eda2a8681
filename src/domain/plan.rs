//! Pure planning: the difference between the spec and the profile Connect holds, as the smallest set of
//! calls that removes it. UpdateSecurityProfile gets only the members that differ (an empty value clears
//! a member the spec no longer has); tags go through TagResource/UntagResource, key by key.

use std::collections::BTreeMap;

use super::state::ProfileState;
use crate::api::{self, SecurityProfileSpec};

/// The members an UpdateSecurityProfile call sends; `None` leaves a member as it is.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProfileUpdate {
    pub description: Option<String>,
    pub permissions: Option<Vec<String>>,
    pub allowed_access_control_tags: Option<BTreeMap<String, String>>,
    pub allowed_access_control_hierarchy_group_id: Option<String>,
    pub tag_restricted_resources: Option<Vec<String>>,
    pub hierarchy_restricted_resources: Option<Vec<String>>,
    pub applications: Option<Vec<api::Application>>,
    pub allowed_flow_modules: Option<Vec<api::FlowModule>>,
    pub allowed_ai_agents: Option<Vec<api::AiAgent>>,
    /// `Some(None)` clears the configuration (sends an empty object).
    pub granular_access_control_configuration: Option<Option<api::GranularAccessControlConfiguration>>,
}

/// A member of the spec that UpdateSecurityProfile sets: what a plan changes and a diff lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    Description,
    AllowedAccessControlTags,
    AllowedAccessControlHierarchyGroupId,
    TagRestrictedResources,
    HierarchyRestrictedResources,
    GranularAccessControlConfiguration,
    Permissions,
    Applications,
    AllowedFlowModules,
    AllowedAiAgents,
}

impl Field {
    /// The field's name in the spec (and in `status.diff`, Events and logs).
    pub fn name(self) -> &'static str {
        match self {
            Field::Description => "description",
            Field::AllowedAccessControlTags => "allowedAccessControlTags",
            Field::AllowedAccessControlHierarchyGroupId => "allowedAccessControlHierarchyGroupId",
            Field::TagRestrictedResources => "tagRestrictedResources",
            Field::HierarchyRestrictedResources => "hierarchyRestrictedResources",
            Field::GranularAccessControlConfiguration => "granularAccessControlConfiguration",
            Field::Permissions => "permissions",
            Field::Applications => "applications",
            Field::AllowedFlowModules => "allowedFlowModules",
            Field::AllowedAiAgents => "allowedAIAgents",
        }
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An update, with the spec fields that differ (for Events and logs).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UpdatePlan {
    pub changed: Vec<Field>,
    pub update: ProfileUpdate,
}

impl UpdatePlan {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty()
    }
}

/// The update that makes `observed` equal `desired`. Members of `observed.listed` that were not read
/// are not compared.
pub fn plan_update(spec: &SecurityProfileSpec, observed: &ProfileState) -> UpdatePlan {
    let desired = ProfileState::desired(spec);
    let mut plan = UpdatePlan::default();
    let u = &mut plan.update;
    if desired.description != observed.description {
        plan.changed.push(Field::Description);
        u.description = Some(desired.description.clone());
    }
    if desired.allowed_access_control_tags != observed.allowed_access_control_tags {
        plan.changed.push(Field::AllowedAccessControlTags);
        u.allowed_access_control_tags = Some(desired.allowed_access_control_tags.clone());
    }
    if desired.allowed_access_control_hierarchy_group_id != observed.allowed_access_control_hierarchy_group_id {
        plan.changed.push(Field::AllowedAccessControlHierarchyGroupId);
        u.allowed_access_control_hierarchy_group_id = Some(desired.allowed_access_control_hierarchy_group_id.clone());
    }
    if desired.tag_restricted_resources != observed.tag_restricted_resources {
        plan.changed.push(Field::TagRestrictedResources);
        u.tag_restricted_resources = Some(desired.tag_restricted_resources.iter().cloned().collect());
    }
    if desired.hierarchy_restricted_resources != observed.hierarchy_restricted_resources {
        plan.changed.push(Field::HierarchyRestrictedResources);
        u.hierarchy_restricted_resources = Some(desired.hierarchy_restricted_resources.iter().cloned().collect());
    }
    if desired.granular_access_control_configuration != observed.granular_access_control_configuration {
        plan.changed.push(Field::GranularAccessControlConfiguration);
        u.granular_access_control_configuration = Some(desired.granular_access_control_configuration.clone());
    }
    if let (Some(want), Some(have)) = (&desired.listed, &observed.listed) {
        if want.permissions != have.permissions {
            plan.changed.push(Field::Permissions);
            u.permissions = Some(spec.permissions.clone().unwrap_or_default());
        }
        if want.applications != have.applications {
            plan.changed.push(Field::Applications);
            u.applications = Some(spec.applications.clone().unwrap_or_default());
        }
        if want.allowed_flow_modules != have.allowed_flow_modules {
            plan.changed.push(Field::AllowedFlowModules);
            u.allowed_flow_modules = Some(spec.allowed_flow_modules.clone().unwrap_or_default());
        }
        if want.allowed_ai_agents != have.allowed_ai_agents {
            plan.changed.push(Field::AllowedAiAgents);
            u.allowed_ai_agents = Some(spec.allowed_ai_agents.clone().unwrap_or_default());
        }
    }
    plan
}

/// Tag changes: keys to set (new or different value) and keys to remove.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TagPlan {
    pub set: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

impl TagPlan {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }
}

/// `desired` is authoritative: keys Connect holds that it lacks are removed (except `aws:` keys, which
/// AWS manages and no caller may change).
pub fn plan_tags(desired: &BTreeMap<String, String>, observed: &BTreeMap<String, String>) -> TagPlan {
    TagPlan {
        set: desired.iter().filter(|(k, v)| observed.get(*k) != Some(v)).map(|(k, v)| (k.clone(), v.clone())).collect(),
        remove: observed
            .keys()
            .filter(|k| !desired.contains_key(*k) && !k.starts_with(crate::constraints::RESERVED_TAG_PREFIX))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixtures: tests/fixtures/plan/*.yaml, each `{spec, observed, expectChanged}` where `observed` is a
    /// spec-shaped description of what Connect holds.
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Fixture {
        spec: SecurityProfileSpec,
        observed: SecurityProfileSpec,
        expect_changed: Vec<String>,
        #[serde(default)]
        expect_update: Option<serde_json::Value>,
    }

    /// The spec-shaped profile Connect holds once `update` is applied to `held`: each member the update
    /// sends replaces the held one (an empty value clears it), the others stay.
    fn updated(held: &SecurityProfileSpec, update: &ProfileUpdate) -> SecurityProfileSpec {
        fn set<T: serde::Serialize>(held: &mut serde_json::Value, member: &str, value: &Option<T>) {
            if let Some(v) = value {
                held[member] = serde_json::to_value(v).unwrap();
            }
        }
        let mut after = serde_json::to_value(held).unwrap();
        set(&mut after, "description", &update.description);
        set(&mut after, "permissions", &update.permissions);
        set(&mut after, "allowedAccessControlTags", &update.allowed_access_control_tags);
        set(&mut after, "allowedAccessControlHierarchyGroupId", &update.allowed_access_control_hierarchy_group_id);
        set(&mut after, "tagRestrictedResources", &update.tag_restricted_resources);
        set(&mut after, "hierarchyRestrictedResources", &update.hierarchy_restricted_resources);
        set(&mut after, "applications", &update.applications);
        set(&mut after, "allowedFlowModules", &update.allowed_flow_modules);
        set(&mut after, "allowedAIAgents", &update.allowed_ai_agents);
        set(&mut after, "granularAccessControlConfiguration", &update.granular_access_control_configuration);
        serde_json::from_value(after).unwrap()
    }

    #[test]
    fn plans_from_yaml_fixtures() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/plan");
        let mut count = 0;
        for entry in std::fs::read_dir(dir).expect("fixture dir") {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let f: Fixture = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let observed = ProfileState::desired(&f.observed);
            let plan = plan_update(&f.spec, &observed);
            let changed: Vec<&str> = plan.changed.iter().map(|f| f.name()).collect();
            assert_eq!(changed, f.expect_changed, "{}", path.display());
            if let Some(expect) = f.expect_update {
                let got = serde_json::json!({
                    "description": plan.update.description,
                    "permissions": plan.update.permissions,
                    "tagRestrictedResources": plan.update.tag_restricted_resources,
                    "allowedAccessControlTags": plan.update.allowed_access_control_tags,
                });
                for (k, v) in expect.as_object().unwrap() {
                    assert_eq!(&got[k], v, "{}: update.{k}", path.display());
                }
            }
            // Once Connect applied the update, it holds what the spec asks for: nothing is left to do.
            let after = ProfileState::desired(&updated(&f.observed, &plan.update));
            assert_eq!(after, ProfileState::desired(&f.spec), "{}: after the update", path.display());
            assert!(plan_update(&f.spec, &after).is_empty(), "{}: planned again", path.display());
            count += 1;
        }
        assert!(count >= 5, "expected the plan fixtures, found {count}");
    }

    #[test]
    fn unread_members_are_not_compared() {
        let spec: SecurityProfileSpec = serde_json::from_value(
            serde_json::json!({"instanceId": "i", "securityProfileName": "n", "permissions": ["A"]}),
        )
        .unwrap();
        let mut observed = ProfileState::desired(&spec);
        observed.listed = None;
        assert!(plan_update(&spec, &observed).is_empty());
    }

    #[test]
    fn tags_are_diffed_key_by_key() {
        let m = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let plan =
            plan_tags(&m(&[("a", "1"), ("b", "2")]), &m(&[("a", "1"), ("b", "old"), ("c", "3"), ("aws:x", "y")]));
        assert_eq!(plan.set, m(&[("b", "2")]));
        assert_eq!(plan.remove, vec!["c".to_string()]);
        assert!(plan_tags(&m(&[("a", "1")]), &m(&[("a", "1")])).is_empty());
    }
}
