//! InstanceBindings in the checked files: the group's second kind. They are checked against their own
//! CRD's openAPIV3Schema, plus the controller's own reading of them (what the CEL rules also say, and
//! the shape of allowAdoption, which no schema can type), so that a manifest set that carries its
//! bindings validates as a whole.

use std::sync::LazyLock;

use serde_json::{Value, json};

use super::object::check_metadata;
use super::{Check, Location, ValidationReport};
use crate::constraints::RuleId;

pub(super) const KIND: &str = "InstanceBinding";

static VALIDATOR: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let crd = serde_json::to_value(crate::api::binding_crd()).expect("CRD serializes");
    let mut schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    let properties = schema["properties"].as_object_mut().expect("the root schema has properties");
    properties.insert("apiVersion".into(), json!({"type": "string"}));
    properties.insert("kind".into(), json!({"type": "string"}));
    properties.insert("metadata".into(), json!({}));
    properties.insert("status".into(), json!({}));
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(false)
        .build(&schema)
        .expect("the InstanceBinding CRD's schema is a valid JSON Schema")
});

/// Checks one InstanceBinding document.
pub(super) fn check_binding(doc: &Value, loc: &Location<'_>, report: &mut ValidationReport) {
    check_metadata(doc, loc, &mut report.problems);
    for e in VALIDATOR.iter_errors(doc) {
        let field = e.instance_path().as_str().trim_start_matches('/').replace('/', ".");
        report.problems.push(loc.problem(field, e.to_string(), RuleId::Other, Check::Schema));
    }
    let Ok(binding) = serde_json::from_value::<crate::api::InstanceBinding>(doc.clone()) else { return };
    for (field, message) in controller_problems(&binding.spec) {
        report.problems.push(loc.problem(field, message, RuleId::Other, Check::Controller));
    }
}

/// What the operator refuses in a binding that parses.
fn controller_problems(spec: &crate::api::InstanceBindingSpec) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    if spec.namespaces.is_none() && spec.namespace_selector.is_none() {
        problems.push(("spec", "set namespaces (recommended), namespaceSelector, or both".to_string()));
    }
    if let crate::api::AdoptionGrant::Invalid(raw) = &spec.allow_adoption {
        problems.push(("spec.allowAdoption", format!("must be true, false or a list of profile names; got {raw}")));
    }
    for (field, list) in [
        ("spec.allowedPermissions", &spec.allowed_permissions),
        ("spec.deniedPermissions", &spec.denied_permissions),
        ("spec.allowedFlowModules", &spec.allowed_flow_modules),
        ("spec.allowedAIAgents", &spec.allowed_ai_agents),
    ] {
        for p in list.iter().flatten().filter(|p| p.trim_end_matches('*').contains('*')) {
            problems.push((field, format!("{p:?}: a * may only end a pattern (a prefix), as in Users.*")));
        }
    }
    problems
}
