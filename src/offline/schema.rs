//! The CRD's `openAPIV3Schema`, applied by the `jsonschema` crate, after a pre-pass that does what the
//! API server does with the Kubernetes extensions before it validates:
//!
//! - pruning: members the schema does not declare are dropped, unless
//!   `x-kubernetes-preserve-unknown-fields` (reported here: the API server drops them silently);
//! - a `null` member that is not `nullable` is dropped, and then counts as missing (reported for map
//!   entries, which the API server drops silently);
//! - `nullable: true` becomes a `null` type (and enum value) in the JSON Schema given to the validator.
//!
//! The pre-pass also reports the plain scalars that kubectl reads as booleans or numbers where a string
//! belongs ([`super::read::yaml11_scalars`]), and notes empty strings that Kubernetes 1.20 refuses. The
//! validator's findings get the field paths and wording of the rest of `validate`.

use std::sync::LazyLock;

use jsonschema::error::ValidationErrorKind as Kind;
use jsonschema::paths::LocationSegment;
use serde_json::{Map, Value, json};

use super::merge::Found;
use super::object::type_name;
use super::{Check, KIND};
use crate::constraints::RuleId;

/// The CRD's openAPIV3Schema, with the members every object has (apiVersion, kind, metadata) declared,
/// and status left unchecked (the API server ignores status in a create or update of the resource).
static OBJECT_SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    let mut schema = super::CRD_SCHEMA.clone();
    let properties = schema["properties"].as_object_mut().expect("the root schema has properties");
    properties.insert("apiVersion".into(), json!({"type": "string"}));
    properties.insert("kind".into(), json!({"type": "string"}));
    properties.insert("metadata".into(), json!({"x-kubernetes-preserve-unknown-fields": true}));
    properties.insert("status".into(), json!({"x-kubernetes-preserve-unknown-fields": true}));
    schema
});

/// OpenAPI v3.0 schemas are JSON Schema draft 4 with extensions; formats are not checked (the API
/// server checks few, and none that this CRD's spec uses).
static VALIDATOR: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(false)
        .build(&with_nullable_as_type(&OBJECT_SCHEMA))
        .expect("the CRD's schema is a valid JSON Schema")
});

/// `schema` with `nullable: true` said the JSON Schema way: `null` is one more type and enum value.
fn with_nullable_as_type(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out: Map<String, Value> = map.iter().map(|(k, v)| (k.clone(), with_nullable_as_type(v))).collect();
            if map.get("nullable") == Some(&Value::Bool(true)) {
                if let Some(Value::String(t)) = map.get("type") {
                    out.insert("type".into(), json!([t, "null"]));
                }
                if let Some(Value::Array(values)) = out.get_mut("enum") {
                    values.push(Value::Null);
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(with_nullable_as_type).collect()),
        other => other.clone(),
    }
}

/// What the schema says about one object.
#[derive(Default)]
pub(super) struct SchemaCheck {
    pub found: Vec<Found>,
    /// Things to point out that are not problems.
    pub notes: Vec<String>,
}

/// Checks `doc` (a whole SecurityProfile) against the CRD's schema, pruning it as the API server would.
/// `yaml11_scalars` are the plain scalars of its source that kubectl reads as booleans or numbers.
pub(super) fn check(doc: &mut Value, yaml11_scalars: &[String]) -> SchemaCheck {
    let mut pre = Prepass { yaml11_scalars, out: SchemaCheck::default(), reported: Vec::new() };
    pre.walk(&OBJECT_SCHEMA, doc, "", "");
    let mut out = pre.out;
    // (where, finding, whether the value is an empty string)
    let mut found: Vec<(String, Found, bool)> = VALIDATOR
        .iter_errors(doc)
        .filter(|e| {
            let at = e.instance_path().as_str();
            !pre.reported.iter().any(|r| at == r || at.starts_with(&format!("{r}/")))
        })
        .map(|e| (e.instance_path().as_str().to_string(), finding(&e, doc), e.instance().as_str() == Some("")))
        .collect();
    // A value of the wrong type breaks only that rule (the API server reports no more about it); an empty
    // string that is too short says all there is to say about it.
    let at_with = |found: &[(String, Found, bool)], rule: RuleId, only_empty: bool| -> Vec<String> {
        found
            .iter()
            .filter(|(_, f, empty)| f.rules == [rule] && (*empty || !only_empty))
            .map(|(at, ..)| at.clone())
            .collect()
    };
    let of_wrong_type = at_with(&found, RuleId::Type, false);
    found.retain(|(at, f, _)| f.rules == [RuleId::Type] || !of_wrong_type.contains(at));
    let empty_and_too_short = at_with(&found, RuleId::Length, true);
    found.retain(|(at, f, _)| f.rules != [RuleId::Pattern] || !empty_and_too_short.contains(at));
    found.sort_by(|a, b| (&a.1.field, a.1.rules).cmp(&(&b.1.field, b.1.rules)));
    out.found.extend(found.into_iter().map(|(_, f, _)| f));
    out
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

/// `pointer` (a JSON pointer) with `key` appended.
fn pointer(pointer: &str, key: &str) -> String {
    format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"))
}

fn schema_type(schema: &Value) -> Option<&str> {
    schema.get("type").and_then(Value::as_str)
}

fn is_true(schema: &Value, keyword: &str) -> bool {
    schema.get(keyword) == Some(&Value::Bool(true))
}

struct Prepass<'a> {
    yaml11_scalars: &'a [String],
    out: SchemaCheck,
    /// JSON pointers of the values reported here; the validator's findings about them are dropped.
    reported: Vec<String>,
}

impl Prepass<'_> {
    fn fail(&mut self, field: &str, message: String, rule: RuleId) {
        self.out.found.push(Found { field: field.to_string(), message, rules: rule.slice(), check: Check::Schema });
    }

    fn walk(&mut self, schema: &Value, value: &mut Value, path: &str, at: &str) {
        match (schema_type(schema), value) {
            (Some("string"), Value::String(s)) => {
                if self.yaml11_scalars.contains(s) {
                    let read_as = if s.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
                        "a boolean"
                    } else {
                        "a number"
                    };
                    let message = format!(
                        "must be of type string: kubectl reads the unquoted {s} as {read_as} (YAML 1.1); quote it: \"{s}\""
                    );
                    self.fail(path, message, RuleId::Type);
                    self.reported.push(at.to_string());
                } else if s.is_empty()
                    && schema.get("minLength").and_then(Value::as_u64).is_none_or(|m| m == 0)
                    && !is_true(schema, "nullable")
                {
                    self.out.notes.push(format!(
                        "{path} is an empty string, which the Kubernetes 1.20 API server refuses here: its OpenAPI validator takes an empty string for null (\"must be of type string\")"
                    ));
                }
            }
            (Some("array"), Value::Array(items)) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter_mut().enumerate() {
                        // Null items are not dropped: they fail the item's type.
                        self.walk(item_schema, item, &format!("{path}[{i}]"), &format!("{at}/{i}"));
                    }
                }
            }
            (Some("object"), Value::Object(map)) => self.walk_object(schema, map, path, at),
            _ => {}
        }
    }

    fn walk_object(&mut self, schema: &Value, map: &mut Map<String, Value>, path: &str, at: &str) {
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties").filter(|a| a.is_object());
        let preserve =
            is_true(schema, "x-kubernetes-preserve-unknown-fields") || is_true(schema, "additionalProperties");
        let keys: Vec<String> = map.keys().cloned().collect();
        for key in keys {
            let (sub, field) = match properties.and_then(|p| p.get(&key)) {
                Some(sub) => (Some(sub), child(path, &key)),
                None => (additional, format!("{path}[{key:?}]")),
            };
            let Some(sub) = sub else {
                if !preserve {
                    let message = "unknown field (the API server would drop it)".to_string();
                    self.fail(&child(path, &key), message, RuleId::Unknown);
                    map.remove(&key);
                }
                continue;
            };
            if map[&key].is_null() && !is_true(sub, "nullable") {
                // The API server drops null values of non-nullable members before validating.
                map.remove(&key);
                if additional.is_some() && properties.is_none_or(|p| !p.contains_key(&key)) {
                    self.fail(&field, "is null (the API server would drop the entry)".into(), RuleId::Null);
                }
                continue;
            }
            if let Some(v) = map.get_mut(&key) {
                self.walk(sub, v, &field, &pointer(at, &key));
            }
        }
    }
}

/// The field path (`spec.tags["a"]`, `spec.permissions[3]`) and the CRD schema of the value at
/// `location` in `doc`.
fn locate(location: &jsonschema::paths::Location, doc: &Value) -> (String, &'static Value) {
    const NONE: &Value = &Value::Null;
    let (mut field, mut schema, mut value) = (String::new(), &*OBJECT_SCHEMA, Some(doc));
    for segment in location.segments() {
        let key = match segment {
            LocationSegment::Property(p) => p.into_owned(),
            LocationSegment::Index(i) => i.to_string(),
        };
        match value {
            Some(Value::Array(items)) => {
                field = format!("{field}[{key}]");
                schema = schema.get("items").unwrap_or(NONE);
                value = key.parse().ok().and_then(|i: usize| items.get(i));
            }
            Some(Value::Object(map)) => {
                let declared = schema.get("properties").and_then(|p| p.get(&key));
                let additional = schema.get("additionalProperties").filter(|a| a.is_object());
                (field, schema) = match (declared, additional) {
                    (Some(sub), _) => (child(&field, &key), sub),
                    (None, Some(sub)) => (format!("{field}[{key:?}]"), sub),
                    (None, None) => (child(&field, &key), NONE),
                };
                value = map.get(&key);
            }
            _ => break,
        }
    }
    (field, schema)
}

/// "1 to 128", "at most 250", "at least 1".
fn range(schema: &Value, min: &str, max: &str) -> String {
    match (schema.get(min).and_then(Value::as_u64), schema.get(max).and_then(Value::as_u64)) {
        (Some(min), Some(max)) if min > 0 => format!("{min} to {max}"),
        (_, Some(max)) => format!("at most {max}"),
        (Some(min), None) => format!("at least {min}"),
        (None, None) => String::new(),
    }
}

/// The validator's finding, with the field path and wording of `validate`.
fn finding(error: &jsonschema::ValidationError<'_>, doc: &Value) -> Found {
    let (mut field, schema) = locate(error.instance_path(), doc);
    let value = error.instance().as_ref();
    let count = |v: &Value| match v {
        Value::Array(items) => items.len(),
        Value::Object(map) => map.len(),
        Value::String(s) => s.chars().count(),
        _ => 0,
    };
    let (rule, message) = match error.kind() {
        Kind::Type { .. } => {
            let expected = schema_type(schema).unwrap_or("the schema's type");
            (RuleId::Type, format!("must be of type {expected}, is {}", type_name(value)))
        }
        Kind::Required { property } => {
            field = child(&field, property.as_str().unwrap_or_default());
            (RuleId::Required, "is required".to_string())
        }
        Kind::Enum { .. } => {
            let allowed: Vec<String> = schema["enum"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| a.as_str().map(str::to_string).unwrap_or_else(|| a.to_string()))
                .collect();
            (RuleId::Enum, format!("{value} is not one of: {}", allowed.join(", ")))
        }
        Kind::MinLength { .. } | Kind::MaxLength { .. } => {
            let rule = range(schema, "minLength", "maxLength");
            (RuleId::Length, format!("must be {rule} characters long, is {}", count(value)))
        }
        Kind::MinItems { .. } | Kind::MaxItems { .. } => {
            (RuleId::Items, format!("must have {} items, has {}", range(schema, "minItems", "maxItems"), count(value)))
        }
        Kind::MinProperties { .. } | Kind::MaxProperties { .. } => {
            let rule = range(schema, "minProperties", "maxProperties");
            (RuleId::Entries, format!("must have {rule} entries, has {}", count(value)))
        }
        Kind::Pattern { pattern } => {
            let shown = value.as_str().map_or_else(|| value.to_string(), |s| format!("{s:?}"));
            (RuleId::Pattern, format!("{shown} does not match {pattern}"))
        }
        _ => (RuleId::Other, format!("does not fit the {KIND} schema: {error}")),
    };
    Found { field, message, rules: rule.slice(), check: Check::Schema }
}
