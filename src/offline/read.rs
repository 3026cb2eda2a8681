//! Reading manifests: the files of a directory, the YAML documents of a file (as kubectl reads them),
//! and the plain scalars that kubectl, a YAML 1.1 reader, takes for something other than a string.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

/// The manifest files under `dir`, sorted; the templates of Helm charts (not YAML until rendered) are left
/// out.
pub(super) fn manifest_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    entries.sort();
    let helm_chart = dir.join("Chart.yaml").is_file();
    let mut files = Vec::new();
    for entry in entries {
        if entry.is_dir() {
            if helm_chart && entry.file_name().is_some_and(|n| n == "templates") {
                continue;
            }
            files.extend(manifest_files(&entry)?);
        } else if entry.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e, "yaml" | "yml" | "json")) {
            files.push(entry);
        }
    }
    Ok(files)
}

/// The options kubectl's reading comes closest to: YAML 1.2 scalars (an unquoted `yes`, `1_000` or
/// `0755` stays a string; [`yaml11_scalars`] reports them), merge keys applied, duplicate keys refused.
fn read_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.underscored_numbers_as_strings = true;
    options.leading_zero_numbers_as_strings = true;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options.merge_keys = serde_saphyr::MergeKeyPolicy::Merge;
    options.with_snippet = false;
    options
}

/// One document (`text`, a slice of `whole`) as JSON, or why it is not YAML. Line numbers in the
/// error are the file's.
pub(super) fn parse_document(whole: &str, text: &str) -> Result<Value, String> {
    let offset = text.as_ptr() as usize - whole.as_ptr() as usize;
    let lines_before = whole[..offset].matches('\n').count();
    let padded = format!("{}{text}", "\n".repeat(lines_before));
    serde_saphyr::from_str_with_options::<Value>(&padded, read_options()).map_err(|e| format!("YAML syntax error: {e}"))
}

/// The source text of each document, from its `---` marker (if any) to the next `---` or `...` line:
/// YAML allows those markers nowhere else at the start of a line. Text before the first marker or
/// after a `...` that holds only comments, blank lines or directives is not a document.
pub(super) fn split_documents(yaml: &str) -> Vec<&str> {
    let not_a_document =
        |part: &str| part.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#') || l.starts_with('%'));
    let mut docs = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    let mut seen_marker = false;
    for line in yaml.split_inclusive('\n') {
        let marker = line.starts_with("---") && line[3..].chars().next().is_none_or(char::is_whitespace);
        let end = line.starts_with("...") && line[3..].trim().is_empty();
        if marker || end {
            let part = &yaml[start..offset];
            if seen_marker || !not_a_document(part) {
                docs.push(part);
            }
            seen_marker = marker;
            start = if marker { offset } else { offset + line.len() };
        }
        offset += line.len();
    }
    let rest = &yaml[start..];
    if seen_marker || !not_a_document(rest) {
        docs.push(rest);
    }
    docs
}

/// Unquoted plain scalars in value position that kubectl, which reads YAML 1.1, takes for booleans or
/// numbers, while this YAML 1.2 reader takes them for strings: `yes`, `no`, `on`, `off`, `y`, `n` (in
/// their capitalisations), `1_000`, `0b101`, `0755`. `kubectl apply` sends such a tag value as a
/// boolean or a number, and the API server refuses it.
pub(super) fn yaml11_scalars(text: &str) -> Vec<String> {
    static PLAIN: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(concat!(
            r"(?m)(?:(?:^[ \t]*-|:)[ \t]+|[\[{,][ \t]*)",
            r"(y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF|[-+]?0b[01_]+|[-+]?0[0-7_]+|[-+]?[0-9][0-9_]*_[0-9_]*)",
            r"[ \t]*(?:$|[,\]}])"
        ))
        .expect("valid regex")
    });
    let mut found = Vec::new();
    for line in text.lines() {
        // Drop comments (a # at the start or after a blank).
        let code = match line.find(" #") {
            Some(i) => &line[..i],
            None if line.trim_start().starts_with('#') => "",
            None => line,
        };
        for c in PLAIN.captures_iter(code) {
            let s = c[1].to_string();
            if !found.contains(&s) {
                found.push(s);
            }
        }
    }
    found
}
