//! The CRD's CEL rules (`x-kubernetes-validations`), which API servers older than 1.25 ignore, evaluated
//! with kube's `cel` feature (kube-cel) on the object as the API server would store it.

use std::sync::LazyLock;

use kube::core::cel::{CompiledSchema, compile_schema, validate_compiled};
use regex::Regex;
use serde_json::Value;

use super::Check;
use super::merge::Found;
use crate::api::SecurityProfile;

thread_local! {
    static COMPILED: CompiledSchema = compile_schema(&super::CRD_SCHEMA);
}

/// The creation rules `profile` breaks. Which kinds of rule each enforces comes from
/// [`crate::api::cel`], by the rule's expression.
pub(super) fn check(profile: &SecurityProfile) -> Vec<Found> {
    let object = fold_to_ascii(&serde_json::to_value(profile).expect("a SecurityProfile serializes"));
    let Err(errors) = COMPILED.with(|compiled| validate_compiled(compiled, &object, None)) else {
        return Vec::new();
    };
    errors
        .iter()
        .map(|e| Found {
            field: e.field_path.clone(),
            message: e.message.clone(),
            rules: crate::api::cel::rule_ids(&e.rule),
            check: Check::Cel,
        })
        .collect()
}

/// A copy of `v` in which every non-ASCII character (in values and keys) is replaced by an ASCII one of
/// the same class: a letter by `a`, a number by `0`, a space separator by a space, anything else by `~`.
///
/// The client-side CEL evaluator (kube-cel 0.8 on cel 0.13) counts a string's `size()` in bytes, where
/// Kubernetes counts characters (code points), so it refuses a 100-character tag key of `ö`s that the API
/// server accepts. The CEL rules run on this copy instead: for the functions this CRD's rules use
/// (`size`, `startsWith` with ASCII prefixes, `matches` with `\p{L}`, `\p{Z}`, `\p{N}` and ASCII
/// characters) the results are Kubernetes' results.
fn fold_to_ascii(v: &Value) -> Value {
    static LETTER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\p{L}$").expect("valid regex"));
    static NUMBER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\p{N}$").expect("valid regex"));
    static SPACE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\p{Z}$").expect("valid regex"));
    fn fold(s: &str) -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii() {
                    return c;
                }
                let mut buf = [0; 4];
                let c = &*c.encode_utf8(&mut buf);
                if LETTER.is_match(c) {
                    'a'
                } else if NUMBER.is_match(c) {
                    '0'
                } else if SPACE.is_match(c) {
                    ' '
                } else {
                    '~'
                }
            })
            .collect()
    }
    match v {
        Value::String(s) => Value::String(fold(s)),
        Value::Array(items) => Value::Array(items.iter().map(fold_to_ascii).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (fold(k), fold_to_ascii(v))).collect()),
        other => other.clone(),
    }
}
