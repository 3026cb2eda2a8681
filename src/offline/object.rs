//! The checks every document gets before its spec: is it a Kubernetes object, of this group's kind and
//! version (a `v1` List: each item), with valid metadata.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use super::{API_VERSION, Check, KIND, Location, Problem, ValidationReport, check_profile};
use crate::api::GROUP;
use crate::constraints::RuleId;

/// `text` is the document's source text (or the whole file's, when it cannot be split reliably).
pub(super) fn check_document(doc: Value, text: &str, mut loc: Location<'_>, report: &mut ValidationReport) {
    let Value::Object(obj) = &doc else {
        report.problems.push(loc.problem(
            "",
            format!("a manifest must be a mapping (a Kubernetes object), this document is a {}", type_name(&doc)),
            RuleId::Type,
            Check::Object,
        ));
        return;
    };
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_string();
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or_default();
    // InstanceBindings are cluster-scoped: no namespace in their name.
    loc.resource = resource_name(obj, (kind == KIND || group == GROUP) && kind != super::binding::KIND);
    if kind.is_empty() {
        if group == GROUP {
            report.problems.push(loc.problem("kind", format!("is required: {KIND}"), RuleId::Required, Check::Object));
        } else {
            // Not a Kubernetes object: Helm values, a JSON schema, a kustomization...
            report.notes.push(loc.note("skipped: not a Kubernetes object (no kind)"));
        }
        return;
    }
    loc.kind = Some(kind.clone());
    if kind.ends_with("List")
        && (api_version == "v1" || api_version == API_VERSION)
        && let Some(Value::Array(items)) = obj.get("items")
    {
        for (i, item) in items.iter().enumerate() {
            let item_loc = Location { item: Some(i), kind: None, resource: None, ..loc.clone() };
            check_document(item.clone(), text, item_loc, report);
        }
        return;
    }
    if kind == super::binding::KIND && api_version == API_VERSION {
        report.bindings_checked += 1;
        super::binding::check_binding(&doc, &loc, report);
        return;
    }
    if kind != KIND {
        if group == GROUP {
            report.problems.push(loc.problem(
                "kind",
                format!("{kind:?} is not a kind of {GROUP}; the group serves {KIND} and InstanceBinding"),
                RuleId::Enum,
                Check::Object,
            ));
        } else {
            report.notes.push(loc.note(format!("skipped: not a {KIND}")));
        }
        return;
    }
    report.checked += 1;
    if api_version != API_VERSION {
        let message = if api_version.is_empty() {
            format!("is required: {API_VERSION}")
        } else {
            format!("must be {API_VERSION} for kind {KIND}, is {api_version:?}")
        };
        report.problems.push(loc.problem("apiVersion", message, RuleId::Enum, Check::Object));
    }
    check_profile(doc, text, &loc, report);
}

/// `namespace/name`; a namespaced object without a namespace is in `default` (as far as a file says).
fn resource_name(obj: &Map<String, Value>, namespaced: bool) -> Option<String> {
    let meta = obj.get("metadata")?.as_object()?;
    let name = meta.get("name")?.as_str()?;
    match meta.get("namespace").and_then(Value::as_str) {
        Some(ns) => Some(format!("{ns}/{name}")),
        None if namespaced => Some(format!("default/{name}")),
        None => Some(name.to_string()),
    }
}

static DNS_SUBDOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$").expect("valid regex")
});
static DNS_LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").expect("valid regex"));

/// The metadata rules the API server applies to every custom resource: a name that is a DNS subdomain,
/// a namespace that is a DNS label.
pub(super) fn check_metadata(doc: &Value, loc: &Location<'_>, out: &mut Vec<Problem>) {
    let meta = doc.get("metadata");
    match meta {
        None | Some(Value::Null) => {
            out.push(loc.problem("metadata.name", "is required", RuleId::Required, Check::Object));
            return;
        }
        Some(Value::Object(_)) => {}
        Some(other) => {
            out.push(loc.problem(
                "metadata",
                format!("must be of type object, is {}", type_name(other)),
                RuleId::Type,
                Check::Object,
            ));
            return;
        }
    }
    match meta.and_then(|m| m.get("name")) {
        None | Some(Value::Null) => {
            out.push(loc.problem("metadata.name", "is required", RuleId::Required, Check::Object))
        }
        Some(Value::String(name)) => {
            if name.len() > 253 || !DNS_SUBDOMAIN.is_match(name) {
                out.push(loc.problem(
                    "metadata.name",
                    format!("{name:?} must be a lowercase RFC 1123 subdomain: at most 253 characters of a-z, 0-9, - and ., starting and ending with a letter or digit"),
                    RuleId::Pattern,
                    Check::Object,
                ));
            }
        }
        Some(other) => out.push(loc.problem(
            "metadata.name",
            format!("must be of type string, is {}", type_name(other)),
            RuleId::Type,
            Check::Object,
        )),
    }
    match meta.and_then(|m| m.get("namespace")) {
        None | Some(Value::Null) => {}
        Some(Value::String(ns)) => {
            if ns.len() > 63 || !DNS_LABEL.is_match(ns) {
                out.push(loc.problem(
                    "metadata.namespace",
                    format!("{ns:?} must be a lowercase RFC 1123 label: at most 63 characters of a-z, 0-9 and -, starting and ending with a letter or digit"),
                    RuleId::Pattern,
                    Check::Object,
                ));
            }
        }
        Some(other) => out.push(loc.problem(
            "metadata.namespace",
            format!("must be of type string, is {}", type_name(other)),
            RuleId::Type,
            Check::Object,
        )),
    }
}

/// The JSON type of `v`, in the API server's words.
pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
