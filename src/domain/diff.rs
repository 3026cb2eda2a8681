//! The difference between the spec and what Connect holds, field by field, in a bounded and stable form
//! for the status (`status.diff`) and the Events of a repair.

use std::collections::BTreeMap;

use serde::Serialize;

use super::plan::{Field, plan_tags, plan_update};
use super::profile::ObservedProfile;
use super::state::{ListedMembers, ProfileState};
use crate::api::{DiffEntry, SecurityProfileSpec};

/// At most this many entries are listed (`diffCount` has the total).
pub const MAX_ENTRIES: usize = 20;
/// Values are shortened to this many characters.
pub const MAX_VALUE: usize = 120;

fn show<T: Serialize>(value: &T) -> String {
    let text = serde_json::to_string(value).unwrap_or_default();
    if text.chars().count() <= MAX_VALUE {
        return text;
    }
    let mut short: String = text.chars().take(MAX_VALUE - 3).collect();
    short.push_str("...");
    short
}

/// Every field in which `observed` differs from `spec` (with `desired_tags` as the tags it should
/// carry), sorted by field; the members only the List* calls return are compared when they were read.
pub fn diff(
    spec: &SecurityProfileSpec,
    desired_tags: &BTreeMap<String, String>,
    observed: &ObservedProfile,
) -> Vec<DiffEntry> {
    let want = ProfileState::desired(spec);
    let have = &observed.state;
    let mut out = Vec::new();
    // The plan compares the listed members only when both sides have them.
    let unread = ListedMembers::default();
    let (h, w) = (have.listed.as_ref().unwrap_or(&unread), want.listed.as_ref().unwrap_or(&unread));
    for field in plan_update(spec, have).changed {
        let (connect, spec) = match field {
            Field::Description => (show(&have.description), show(&want.description)),
            Field::AllowedAccessControlTags => {
                (show(&have.allowed_access_control_tags), show(&want.allowed_access_control_tags))
            }
            Field::AllowedAccessControlHierarchyGroupId => (
                show(&have.allowed_access_control_hierarchy_group_id),
                show(&want.allowed_access_control_hierarchy_group_id),
            ),
            Field::TagRestrictedResources => {
                (show(&have.tag_restricted_resources), show(&want.tag_restricted_resources))
            }
            Field::HierarchyRestrictedResources => {
                (show(&have.hierarchy_restricted_resources), show(&want.hierarchy_restricted_resources))
            }
            Field::GranularAccessControlConfiguration => {
                (show(&have.granular_access_control_configuration), show(&want.granular_access_control_configuration))
            }
            Field::Permissions => (show(&h.permissions), show(&w.permissions)),
            Field::Applications => (show(&h.applications), show(&w.applications)),
            Field::AllowedFlowModules => (show(&h.allowed_flow_modules), show(&w.allowed_flow_modules)),
            Field::AllowedAiAgents => (show(&h.allowed_ai_agents), show(&w.allowed_ai_agents)),
        };
        out.push(DiffEntry { field: field.to_string(), connect, spec });
    }
    let tags = plan_tags(desired_tags, &observed.tags);
    for (key, value) in &tags.set {
        let connect = observed.tags.get(key).map(show).unwrap_or_else(|| "(absent)".into());
        out.push(DiffEntry { field: format!("tags[{key}]"), connect, spec: show(value) });
    }
    for key in &tags.remove {
        out.push(DiffEntry {
            field: format!("tags[{key}]"),
            connect: show(&observed.tags[key]),
            spec: "(absent)".into(),
        });
    }
    out.sort_by(|a, b| a.field.cmp(&b.field));
    out
}

/// One line for an Event: `field: connect -> spec; ...` (at most [`MAX_ENTRIES`] fields).
pub fn describe(entries: &[DiffEntry]) -> String {
    let mut parts: Vec<String> =
        entries.iter().take(MAX_ENTRIES).map(|e| format!("{}: {} -> {}", e.field, e.connect, e.spec)).collect();
    if entries.len() > MAX_ENTRIES {
        parts.push(format!("and {} more", entries.len() - MAX_ENTRIES));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::state::ProfileState;

    fn spec(description: &str, permissions: &[&str]) -> SecurityProfileSpec {
        serde_json::from_value(serde_json::json!({
            "instanceId": "i", "securityProfileName": "p", "description": description, "permissions": permissions,
        }))
        .unwrap()
    }

    #[test]
    fn each_differing_field_once_with_both_values() {
        let held = spec("from the console", &["A", "B"]);
        let observed = ObservedProfile {
            name: "p".into(),
            arn: "arn".into(),
            last_modified: None,
            tags: BTreeMap::from([("team".into(), "x".into()), ("extra".into(), "1".into())]),
            state: ProfileState::desired(&held),
        };
        let want = spec("declared", &["A"]);
        let tags = BTreeMap::from([("team".to_string(), "a".to_string())]);
        let d = diff(&want, &tags, &observed);
        let fields: Vec<&str> = d.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["description", "permissions", "tags[extra]", "tags[team]"]);
        assert_eq!((d[0].connect.as_str(), d[0].spec.as_str()), ("\"from the console\"", "\"declared\""));
        assert_eq!(d[2].spec, "(absent)");
        assert!(describe(&d).starts_with("description: \"from the console\" -> \"declared\"; "));
        assert!(
            diff(
                &want,
                &tags,
                &ObservedProfile { tags: tags.clone(), state: ProfileState::desired(&want), ..observed }
            )
            .is_empty()
        );
    }

    #[test]
    fn long_values_are_shortened() {
        let long = "x".repeat(500);
        assert_eq!(show(&long).chars().count(), MAX_VALUE);
        assert!(show(&long).ends_with("..."));
    }
}
