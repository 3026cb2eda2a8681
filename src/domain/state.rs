//! The state of a profile, normalised so that equal meaning compares equal: what the spec asks for
//! ([`ProfileState::desired`]) and what Connect holds (built by the Connect seam) are the same type.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::{self, SecurityProfileSpec};

/// The members of a profile that UpdateSecurityProfile can change, normalised so that equal meaning
/// compares equal (absent == empty; lists whose order Connect does not keep are sets or sorted).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProfileState {
    pub description: String,
    pub allowed_access_control_tags: BTreeMap<String, String>,
    pub allowed_access_control_hierarchy_group_id: String,
    pub tag_restricted_resources: BTreeSet<String>,
    pub hierarchy_restricted_resources: BTreeSet<String>,
    pub granular_access_control_configuration: Option<api::GranularAccessControlConfiguration>,
    /// Members only the List* calls return; `None` when they were not read.
    pub listed: Option<ListedMembers>,
}

/// The members DescribeSecurityProfile does not return.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListedMembers {
    pub permissions: BTreeSet<String>,
    pub applications: Vec<api::Application>,
    pub allowed_flow_modules: Vec<api::FlowModule>,
    pub allowed_ai_agents: Vec<api::AiAgent>,
}

fn enum_names<T: serde::Serialize>(items: &Option<Vec<T>>) -> BTreeSet<String> {
    items
        .iter()
        .flatten()
        .filter_map(|i| serde_json::to_value(i).ok().and_then(|v| v.as_str().map(str::to_string)))
        .collect()
}

fn normalize_applications(apps: &[api::Application]) -> Vec<api::Application> {
    let mut apps: Vec<api::Application> = apps
        .iter()
        .map(|a| {
            let mut a = a.clone();
            a.application_permissions.sort();
            a.application_permissions.dedup();
            a
        })
        .collect();
    apps.sort_by(|a, b| a.namespace.cmp(&b.namespace));
    apps
}

fn sorted_by_json<T: serde::Serialize + Clone>(items: &[T]) -> Vec<T> {
    let mut keyed: Vec<(String, T)> =
        items.iter().map(|i| (serde_json::to_string(i).unwrap_or_default(), i.clone())).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed.dedup_by(|a, b| a.0 == b.0);
    keyed.into_iter().map(|(_, i)| i).collect()
}

/// `None` for a configuration that says nothing.
pub fn normalize_granular(
    g: Option<&api::GranularAccessControlConfiguration>,
) -> Option<api::GranularAccessControlConfiguration> {
    let values = g?
        .data_table_access_control_configuration
        .as_ref()?
        .primary_attribute_access_control_configuration
        .as_ref()?
        .primary_attribute_values
        .clone()?;
    if values.is_empty() {
        return None;
    }
    g.cloned()
}

impl ListedMembers {
    pub fn new(
        permissions: impl IntoIterator<Item = String>,
        applications: &[api::Application],
        allowed_flow_modules: &[api::FlowModule],
        allowed_ai_agents: &[api::AiAgent],
    ) -> Self {
        Self {
            permissions: permissions.into_iter().collect(),
            applications: normalize_applications(applications),
            allowed_flow_modules: sorted_by_json(allowed_flow_modules),
            allowed_ai_agents: sorted_by_json(allowed_ai_agents),
        }
    }
}

impl ProfileState {
    /// What the spec asks for.
    pub fn desired(spec: &SecurityProfileSpec) -> Self {
        Self {
            description: spec.description.clone().unwrap_or_default(),
            allowed_access_control_tags: spec.allowed_access_control_tags.clone().unwrap_or_default(),
            allowed_access_control_hierarchy_group_id: spec
                .allowed_access_control_hierarchy_group_id
                .clone()
                .unwrap_or_default(),
            tag_restricted_resources: enum_names(&spec.tag_restricted_resources),
            hierarchy_restricted_resources: enum_names(&spec.hierarchy_restricted_resources),
            granular_access_control_configuration: normalize_granular(
                spec.granular_access_control_configuration.as_ref(),
            ),
            listed: Some(ListedMembers::new(
                spec.permissions.clone().unwrap_or_default(),
                spec.applications.as_deref().unwrap_or_default(),
                spec.allowed_flow_modules.as_deref().unwrap_or_default(),
                spec.allowed_ai_agents.as_deref().unwrap_or_default(),
            )),
        }
    }
}
