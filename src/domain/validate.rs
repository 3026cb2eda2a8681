//! Pure validation of a SecurityProfile spec: every constraint of the CRD schema and of its CEL rules,
//! checked again in the controller. Objects written on clusters that ignore CEL (Kubernetes < 1.25),
//! or stored before a schema change, must still never reach Connect with invalid parameters.

use std::collections::BTreeMap;

use crate::api::SecurityProfileSpec;
use crate::constraints::{self as c, RuleId, char_len};

/// One broken rule: the field's path, what is wrong with the value, and the kind(s) of rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
    /// What the message is about (one message may state two rules, such as a name's length and pattern).
    pub rules: &'static [RuleId],
}

/// Joins field errors into one status message.
pub fn describe(errors: &[FieldError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

#[derive(Default)]
struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    fn fail(&mut self, field: impl Into<String>, message: impl Into<String>, rules: &'static [RuleId]) {
        self.errors.push(FieldError { field: field.into(), message: message.into(), rules });
    }

    fn length(&mut self, field: &str, value: &str, min: usize, max: usize) {
        let len = char_len(value);
        if len < min || len > max {
            let rule = if min == 0 { format!("at most {max}") } else { format!("{min} to {max}") };
            self.fail(field, format!("must be {rule} characters long, is {len}"), &[RuleId::Length]);
        }
    }

    fn items<T>(&mut self, field: &str, items: &[T], min: usize, max: usize) {
        if items.len() < min || items.len() > max {
            let rule = if min == 0 { format!("at most {max}") } else { format!("{min} to {max}") };
            self.fail(field, format!("must have {rule} items, has {}", items.len()), &[RuleId::Items]);
        }
    }

    fn strings(&mut self, field: &str, items: &[String], max_items: usize, min_len: usize, max_len: usize) {
        self.items(field, items, 0, max_items);
        for (i, s) in items.iter().enumerate() {
            self.length(&format!("{field}[{i}]"), s, min_len, max_len);
        }
    }

    fn string_map(&mut self, field: &str, map: &BTreeMap<String, String>, max_entries: usize) {
        if map.len() > max_entries {
            let message = format!("must have at most {max_entries} entries, has {}", map.len());
            self.fail(field, message, &[RuleId::Entries]);
        }
        for (k, v) in map {
            self.length(&format!("{field}[{k:?}]"), v, 0, c::TAG_VALUE_MAX);
        }
    }
}

/// The operator's own tag-key prefix: users may not set these keys themselves.
pub fn reserved_operator_prefix() -> String {
    crate::api::operator_tag_prefix()
}

/// Checks `spec`; `current_instance` is the instance of the existing profile (from its ARN), if any.
pub fn validate_spec(spec: &SecurityProfileSpec, current_instance: Option<&str>) -> Result<(), Vec<FieldError>> {
    let mut ch = Checker::default();
    check_identity(&mut ch, spec, current_instance);
    check_scalars(&mut ch, spec);
    check_members(&mut ch, spec);
    check_granular(&mut ch, spec);
    check_tags_and_region(&mut ch, spec);
    if ch.errors.is_empty() { Ok(()) } else { Err(ch.errors) }
}

/// instanceId (and that it did not move) and securityProfileName.
fn check_identity(ch: &mut Checker, spec: &SecurityProfileSpec, current_instance: Option<&str>) {
    ch.length("spec.instanceId", &spec.instance_id, 1, c::INSTANCE_ID_MAX);
    if let Some(current) = current_instance
        && current != spec.instance_id
    {
        ch.fail(
            "spec.instanceId",
            format!(
                "is immutable: the profile exists in instance {current:?}, the spec now says {:?}; create a new SecurityProfile to move it",
                spec.instance_id
            ),
            &[RuleId::Immutable],
        );
    }
    if !c::is_valid_profile_name(&spec.security_profile_name) {
        ch.fail(
            "spec.securityProfileName",
            format!(
                "{:?} must be 1 to {} characters matching {}",
                spec.security_profile_name,
                c::PROFILE_NAME_MAX,
                c::PROFILE_NAME_PATTERN
            ),
            &[RuleId::Length, RuleId::Pattern],
        );
    }
}

/// description, permissions, access-control tags, tag-restricted resources.
fn check_scalars(ch: &mut Checker, spec: &SecurityProfileSpec) {
    if let Some(d) = &spec.description {
        ch.length("spec.description", d, 0, c::DESCRIPTION_MAX);
    }
    if let Some(p) = &spec.permissions {
        ch.strings("spec.permissions", p, c::PERMISSIONS_MAX_ITEMS, 1, c::PERMISSION_MAX);
    }
    if let Some(tags) = &spec.allowed_access_control_tags {
        ch.string_map("spec.allowedAccessControlTags", tags, c::ACCESS_CONTROL_TAGS_MAX_ENTRIES);
        for k in tags.keys() {
            ch.length(&format!("spec.allowedAccessControlTags key {k:?}"), k, 1, c::TAG_KEY_MAX);
        }
    }
    if let Some(r) = &spec.tag_restricted_resources {
        ch.items("spec.tagRestrictedResources", r, 0, c::TAG_RESTRICTED_RESOURCES_MAX_ITEMS);
    }
}

/// applications, flow modules, AI agents.
fn check_members(ch: &mut Checker, spec: &SecurityProfileSpec) {
    if let Some(apps) = &spec.applications {
        ch.items("spec.applications", apps, 0, c::APPLICATIONS_MAX_ITEMS);
        for (i, app) in apps.iter().enumerate() {
            let f = format!("spec.applications[{i}]");
            ch.length(&format!("{f}.namespace"), &app.namespace, 1, c::APPLICATION_NAMESPACE_MAX);
            ch.items(
                &format!("{f}.applicationPermissions"),
                &app.application_permissions,
                1,
                c::APPLICATION_PERMISSIONS_MAX_ITEMS,
            );
            for (j, p) in app.application_permissions.iter().enumerate() {
                ch.length(&format!("{f}.applicationPermissions[{j}]"), p, 1, c::PERMISSION_MAX);
            }
        }
    }
    if let Some(modules) = &spec.allowed_flow_modules {
        ch.items("spec.allowedFlowModules", modules, 0, c::FLOW_MODULES_MAX_ITEMS);
        for (i, m) in modules.iter().enumerate() {
            if let Some(id) = &m.flow_module_id {
                ch.length(&format!("spec.allowedFlowModules[{i}].flowModuleId"), id, 1, c::FLOW_MODULE_ID_MAX);
            }
        }
    }
    if let Some(agents) = &spec.allowed_ai_agents {
        ch.items("spec.allowedAIAgents", agents, 0, c::AI_AGENTS_MAX_ITEMS);
    }
}

/// granularAccessControlConfiguration's primary attribute values.
fn check_granular(ch: &mut Checker, spec: &SecurityProfileSpec) {
    let values = spec
        .granular_access_control_configuration
        .as_ref()
        .and_then(|g| g.data_table_access_control_configuration.as_ref())
        .and_then(|d| d.primary_attribute_access_control_configuration.as_ref())
        .and_then(|p| p.primary_attribute_values.as_ref());
    if let Some(values) = values {
        let f = "spec.granularAccessControlConfiguration.dataTableAccessControlConfiguration.primaryAttributeAccessControlConfiguration.primaryAttributeValues";
        ch.items(f, values, 0, c::PRIMARY_ATTRIBUTE_VALUES_MAX_ITEMS);
        for (i, v) in values.iter().enumerate() {
            if let Some((rule, problem)) = v.attribute_name.as_deref().and_then(c::attribute_name_violation) {
                ch.fail(format!("{f}[{i}].attributeName"), problem, rule.slice());
            }
            let vals = v.values.as_deref().unwrap_or_default();
            ch.items(&format!("{f}[{i}].values"), vals, 0, c::PRIMARY_VALUES_MAX_ITEMS);
            for (j, s) in vals.iter().enumerate() {
                if !c::is_latin1_printable(s) {
                    ch.fail(
                        format!("{f}[{i}].values[{j}]"),
                        "must be non-empty printable Latin-1 text",
                        &[RuleId::Pattern],
                    );
                }
            }
        }
    }
}

/// The profile's tags (not the operator's) and the Region.
fn check_tags_and_region(ch: &mut Checker, spec: &SecurityProfileSpec) {
    if let Some(tags) = &spec.tags {
        ch.string_map("spec.tags", tags, c::SPEC_TAGS_MAX_ENTRIES);
        let reserved = reserved_operator_prefix();
        for k in tags.keys() {
            if let Some((rule, problem)) = c::tag_key_violation(k) {
                ch.fail(format!("spec.tags key {k:?}"), problem, rule.slice());
            } else if k.starts_with(&reserved) {
                ch.fail(
                    format!("spec.tags key {k:?}"),
                    format!("keys under {reserved:?} are reserved for the operator"),
                    &[RuleId::OperatorReserved],
                );
            }
        }
    }
    if let Some(region) = &spec.region
        && !c::is_region_name(region)
    {
        ch.fail("spec.region", format!("{region:?} is not an AWS Region name such as us-east-1"), &[RuleId::Pattern]);
    }
}
