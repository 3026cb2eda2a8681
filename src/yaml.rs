//! YAML output: one writer for everything the operator prints as YAML (the CRD, exported manifests), so
//! that the output is stable and `make crd` reproduces the committed CRD byte for byte.

use serde::Serialize;

/// `value` as a YAML document. Long strings stay on one line (no folding at 80 columns), strings
/// that YAML 1.1 readers such as kubectl would take for booleans or numbers (`yes`, `on`, `0755`,
/// `1_000`) are quoted.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, serde_saphyr::SerializeError> {
    let mut options = serde_saphyr::SerializerOptions::default();
    // Wider than any line the CRD's descriptions have: fold nothing.
    options.folded_wrap_chars = 100_000;
    serde_saphyr::to_string_with_options(value, options)
}
