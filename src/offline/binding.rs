//! InstanceBindings in the checked files: the group's second kind. They are checked against their own
//! CRD's openAPIV3Schema (no CEL rules, no controller rules beyond what the schema says), so that a
//! manifest set that carries its bindings validates as a whole.

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
}
