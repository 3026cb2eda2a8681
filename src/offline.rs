//! Offline validation of SecurityProfile manifests (`connect-operator validate FILE...`).
//!
//! Checks every SecurityProfile in a set of YAML (or JSON) files with exactly the rules a cluster and the
//! operator apply, without a cluster:
//!
//! 1. the CRD's `openAPIV3Schema` (from [`crate::api::crd`]), as a Kubernetes API server applies it:
//!    types, required members, lengths (in characters), item and entry counts, patterns, enums,
//!    `nullable`; fields the API server would silently drop (unknown fields, `null` map values) are
//!    reported too;
//! 2. the CEL rules (`x-kubernetes-validations`, creation rules), which API servers older than 1.25
//!    ignore;
//! 3. the controller's own validation ([`validate_spec`]), which refuses a spec before anything reaches
//!    Connect.
//!
//! When two checks report the same rule of the same field, one message is kept: the controller's
//! (its wording is what the resource's status would say), else the schema's, else the CEL rule's; the
//! problem lists the other checks in `also_found_by`. When the spec does not fit the Rust types (a type
//! or enum error), the CEL and controller checks cannot run for that object; the schema's problems say
//! what to fix first.
//!
//! The YAML is read as kubectl reads it: multi-document files, merge keys, `v1` Lists (item by item),
//! scalar mapping keys as strings. kubectl reads YAML 1.1, this reader YAML 1.2: unquoted `yes`, `no`,
//! `on`, `off`, `y`, `n`, `1_000`, `0755` where a string belongs are reported as the type errors the API
//! server would answer. Documents of other kinds are skipped with a note. Also noted, not counted as
//! problems: empty strings in members that the Kubernetes 1.20 API server refuses them for (its OpenAPI
//! validator takes an empty string for null unless the member is nullable).

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use crate::api::{GROUP, SecurityProfile};
use crate::reconcile::validate::validate_spec;

/// The apiVersion of SecurityProfile manifests.
pub const API_VERSION: &str = "connect.cloud-operators.dev/v1alpha1";
const KIND: &str = "SecurityProfile";

/// Which check found a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Check {
    /// The file could not be read.
    Read,
    /// The file is not valid YAML.
    Syntax,
    /// The document is not a Kubernetes object of a known kind/apiVersion, or its metadata is invalid.
    Object,
    /// The CRD's openAPIV3Schema.
    Schema,
    /// A CEL rule (`x-kubernetes-validations`).
    Cel,
    /// The controller's validation.
    Controller,
}

/// One broken rule in one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file (or source name) the document came from.
    pub file: String,
    /// Index of the YAML document in the file, from 0; `None` when the whole file is unreadable.
    pub document: Option<usize>,
    /// Index in `items` when the document is a List.
    pub item: Option<usize>,
    /// The object's kind, when known.
    pub kind: Option<String>,
    /// `namespace/name` of the object (`default` when the manifest names no namespace), when known.
    pub resource: Option<String>,
    /// Path of the field (`spec.permissions[3]`, `spec.tags key "aws:x"`); empty when the problem is the
    /// document or file itself.
    pub field: String,
    pub message: String,
    /// The check whose message this is.
    pub check: Check,
    /// The other checks that found the same broken rule (their messages were dropped as duplicates).
    pub also_found_by: Vec<Check>,
}

/// Something worth saying that is not a problem, such as a document of another kind that was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub file: String,
    pub document: Option<usize>,
    pub item: Option<usize>,
    pub kind: Option<String>,
    pub resource: Option<String>,
    pub message: String,
}

fn write_location(
    f: &mut fmt::Formatter<'_>,
    file: &str,
    document: Option<usize>,
    item: Option<usize>,
    kind: Option<&str>,
    resource: Option<&str>,
) -> fmt::Result {
    write!(f, "{file}")?;
    if let Some(d) = document {
        write!(f, "[{d}]")?;
    }
    if let Some(i) = item {
        write!(f, ".items[{i}]")?;
    }
    match (kind, resource) {
        (Some(k), Some(r)) => write!(f, " {k} {r}"),
        (Some(k), None) => write!(f, " {k}"),
        (None, Some(r)) => write!(f, " {r}"),
        (None, None) => Ok(()),
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_location(f, &self.file, self.document, self.item, self.kind.as_deref(), self.resource.as_deref())?;
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_location(f, &self.file, self.document, self.item, self.kind.as_deref(), self.resource.as_deref())?;
        write!(f, ": {}", self.message)
    }
}

/// The outcome of validating a set of files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationReport {
    pub problems: Vec<Problem>,
    pub notes: Vec<Note>,
    /// How many SecurityProfile objects were checked.
    pub checked: usize,
}

impl ValidationReport {
    /// 0 when every SecurityProfile is valid, 1 when some break a rule, 2 when a file cannot be read or
    /// is not valid YAML.
    pub fn exit_code(&self) -> i32 {
        if self.problems.iter().any(|p| matches!(p.check, Check::Read | Check::Syntax)) {
            2
        } else if self.problems.is_empty() {
            0
        } else {
            1
        }
    }

    /// One line: how many objects were checked and how many problems were found.
    pub fn summary(&self) -> String {
        let objects = if self.checked == 1 { "SecurityProfile" } else { "SecurityProfiles" };
        match self.problems.len() {
            0 => format!("{} {objects} checked, no problems", self.checked),
            1 => format!("{} {objects} checked, 1 problem", self.checked),
            n => format!("{} {objects} checked, {n} problems", self.checked),
        }
    }
}

impl fmt::Display for ValidationReport {
    /// Every problem, then every note, one a line, then the summary.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            writeln!(f, "{p}")?;
        }
        for n in &self.notes {
            writeln!(f, "{n}")?;
        }
        write!(f, "{}", self.summary())
    }
}

/// Validates every file (a directory: its `.yaml`, `.yml` and `.json` files, recursively; `-`: standard
/// input).
pub fn validate_files(paths: &[PathBuf]) -> ValidationReport {
    let mut report = ValidationReport::default();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            match std::io::stdin().read_to_string(&mut text) {
                Ok(_) => check_source("<stdin>", &text, &mut report),
                Err(e) => report.problems.push(unreadable("<stdin>", &e)),
            }
            continue;
        }
        let files = if path.is_dir() {
            match manifest_files(path) {
                Ok(files) => files,
                Err(e) => {
                    report.problems.push(unreadable(&path.display().to_string(), &e));
                    continue;
                }
            }
        } else {
            vec![path.clone()]
        };
        for file in files {
            let name = file.display().to_string();
            match std::fs::read_to_string(&file) {
                Ok(text) => check_source(&name, &text, &mut report),
                Err(e) => report.problems.push(unreadable(&name, &e)),
            }
        }
    }
    report
}

/// Validates the documents of one YAML text; `source_name` names it in the problems.
pub fn validate_str(source_name: &str, yaml: &str) -> Vec<Problem> {
    validate_source(source_name, yaml).problems
}

/// Like [`validate_str`], with the notes and the count of checked objects.
pub fn validate_source(source_name: &str, yaml: &str) -> ValidationReport {
    let mut report = ValidationReport::default();
    check_source(source_name, yaml, &mut report);
    report
}

fn unreadable(file: &str, e: &std::io::Error) -> Problem {
    Problem {
        file: file.to_string(),
        document: None,
        item: None,
        kind: None,
        resource: None,
        field: String::new(),
        message: format!("cannot read: {e}"),
        check: Check::Read,
        also_found_by: Vec::new(),
    }
}

/// The manifest files under `dir`, sorted; the templates of Helm charts (not YAML until rendered) are left
/// out.
fn manifest_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
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

/// Where a document is: file, document index, List item.
#[derive(Clone)]
struct Location<'a> {
    file: &'a str,
    document: usize,
    item: Option<usize>,
    kind: Option<String>,
    resource: Option<String>,
}

impl Location<'_> {
    fn problem(&self, field: impl Into<String>, message: impl Into<String>, check: Check) -> Problem {
        Problem {
            file: self.file.to_string(),
            document: Some(self.document),
            item: self.item,
            kind: self.kind.clone(),
            resource: self.resource.clone(),
            field: field.into(),
            message: message.into(),
            check,
            also_found_by: Vec::new(),
        }
    }

    fn note(&self, message: impl Into<String>) -> Note {
        Note {
            file: self.file.to_string(),
            document: Some(self.document),
            item: self.item,
            kind: self.kind.clone(),
            resource: self.resource.clone(),
            message: message.into(),
        }
    }
}

fn check_source(file: &str, yaml: &str, report: &mut ValidationReport) {
    for (document, text) in split_documents(yaml).into_iter().enumerate() {
        let loc = Location { file, document, item: None, kind: None, resource: None };
        match parse_document(yaml, text) {
            Ok(Value::Null) => {} // an empty document
            Ok(json) => check_document(json, text, loc, report),
            Err(e) => {
                report.problems.push(loc.problem("", e, Check::Syntax));
                // What follows a syntax error is not read: kubectl refuses the whole file.
                break;
            }
        }
    }
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
fn parse_document(whole: &str, text: &str) -> Result<Value, String> {
    let offset = text.as_ptr() as usize - whole.as_ptr() as usize;
    let lines_before = whole[..offset].matches('\n').count();
    let padded = format!("{}{text}", "\n".repeat(lines_before));
    serde_saphyr::from_str_with_options::<Value>(&padded, read_options()).map_err(|e| format!("YAML syntax error: {e}"))
}

/// The source text of each document, from its `---` marker (if any) to the next `---` or `...` line:
/// YAML allows those markers nowhere else at the start of a line. Text before the first marker or
/// after a `...` that holds only comments, blank lines or directives is not a document.
fn split_documents(yaml: &str) -> Vec<&str> {
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
fn yaml11_scalars(text: &str) -> Vec<String> {
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

fn type_name(v: &Value) -> &'static str {
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

/// `text` is the document's source text (or the whole file's, when it cannot be split reliably).
fn check_document(doc: Value, text: &str, mut loc: Location<'_>, report: &mut ValidationReport) {
    let Value::Object(obj) = &doc else {
        report.problems.push(loc.problem(
            "",
            format!("a manifest must be a mapping (a Kubernetes object), this document is a {}", type_name(&doc)),
            Check::Object,
        ));
        return;
    };
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_string();
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or_default();
    loc.resource = resource_name(obj, kind == KIND || group == GROUP);
    if kind.is_empty() {
        if group == GROUP {
            report.problems.push(loc.problem("kind", format!("is required: {KIND}"), Check::Object));
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
    if kind != KIND {
        if group == GROUP {
            report.problems.push(loc.problem(
                "kind",
                format!("{kind:?} is not a kind of {GROUP}; the group serves only {KIND}"),
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
        report.problems.push(loc.problem("apiVersion", message, Check::Object));
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
fn check_metadata(doc: &Value, loc: &Location<'_>, out: &mut Vec<Problem>) {
    let meta = doc.get("metadata");
    match meta {
        None | Some(Value::Null) => {
            out.push(loc.problem("metadata.name", "is required", Check::Object));
            return;
        }
        Some(Value::Object(_)) => {}
        Some(other) => {
            out.push(loc.problem(
                "metadata",
                format!("must be of type object, is {}", type_name(other)),
                Check::Object,
            ));
            return;
        }
    }
    match meta.and_then(|m| m.get("name")) {
        None | Some(Value::Null) => out.push(loc.problem("metadata.name", "is required", Check::Object)),
        Some(Value::String(name)) => {
            if name.len() > 253 || !DNS_SUBDOMAIN.is_match(name) {
                out.push(loc.problem(
                    "metadata.name",
                    format!("{name:?} must be a lowercase RFC 1123 subdomain: at most 253 characters of a-z, 0-9, - and ., starting and ending with a letter or digit"),
                    Check::Object,
                ));
            }
        }
        Some(other) => out.push(loc.problem(
            "metadata.name",
            format!("must be of type string, is {}", type_name(other)),
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
                    Check::Object,
                ));
            }
        }
        Some(other) => out.push(loc.problem(
            "metadata.namespace",
            format!("must be of type string, is {}", type_name(other)),
            Check::Object,
        )),
    }
}

/// Kinds of rule, for deduplication: two messages about the same field and the same kind of rule say
/// the same thing.
mod rule {
    pub const TYPE: u16 = 1;
    pub const REQUIRED: u16 = 1 << 1;
    pub const UNKNOWN: u16 = 1 << 2;
    pub const LENGTH: u16 = 1 << 3;
    pub const ITEMS: u16 = 1 << 4;
    pub const ENTRIES: u16 = 1 << 5;
    pub const PATTERN: u16 = 1 << 6;
    pub const ENUM: u16 = 1 << 7;
    pub const PREFIX: u16 = 1 << 8;
    pub const RESERVED: u16 = 1 << 9;
    pub const NULL: u16 = 1 << 10;
    pub const OTHER: u16 = 1 << 11;
}

/// A problem before it gets its location.
#[derive(Debug, Clone)]
struct Found {
    field: String,
    message: String,
    rules: u16,
    check: Check,
}

impl Found {
    /// Whether `self` (already kept) says what `other` says: the same kind of rule, about the same field
    /// or, for a rule on a map's keys, about one of the map's keys.
    fn covers(&self, other: &Found) -> bool {
        self.rules & other.rules != 0
            && (self.field == other.field || self.field.starts_with(&format!("{} key ", other.field)))
    }
}

/// The kind of rule a controller message is about (see `reconcile::validate` and `constraints`).
fn controller_rules(message: &str) -> u16 {
    if message.contains("characters matching") {
        rule::LENGTH | rule::PATTERN
    } else if message.contains("characters long") {
        rule::LENGTH
    } else if message.contains(" entries") {
        rule::ENTRIES
    } else if message.starts_with("must have") && message.contains(" items") {
        rule::ITEMS
    } else if message.contains("reserved prefix") {
        rule::PREFIX
    } else if message.contains("reserved for the operator") {
        rule::RESERVED
    } else if message.contains("may contain only")
        || message.contains("Latin-1")
        || message.contains("is not an AWS Region")
    {
        rule::PATTERN
    } else {
        rule::OTHER
    }
}

/// The kind of rule a CEL rule of the CRD is about.
fn cel_rules(message: &str) -> u16 {
    if message.contains("must not begin") {
        rule::PREFIX
    } else if message.contains("letters, numbers") {
        rule::LENGTH | rule::PATTERN
    } else if message.contains("characters long") {
        rule::LENGTH
    } else {
        rule::OTHER
    }
}

fn check_profile(doc: Value, text: &str, loc: &Location<'_>, report: &mut ValidationReport) {
    let mut object_problems = Vec::new();
    check_metadata(&doc, loc, &mut object_problems);

    let mut pruned = doc;
    let mut schema = SchemaChecker { yaml11_scalars: yaml11_scalars(text), ..Default::default() };
    schema.walk(&ROOT_SCHEMA, &mut pruned, "");

    let mut controller = Vec::new();
    let mut cel = Vec::new();
    let folded = serde_json::from_value::<SecurityProfile>(fold_to_ascii(&pruned));
    match serde_json::from_value::<SecurityProfile>(pruned) {
        Ok(profile) => {
            if let Err(errors) = validate_spec(&profile.spec, None) {
                controller = errors
                    .into_iter()
                    .map(|e| Found {
                        rules: controller_rules(&e.message),
                        field: e.field,
                        message: e.message,
                        check: Check::Controller,
                    })
                    .collect();
            }
            if let Err(errors) = folded.as_ref().unwrap_or(&profile).validate_cel() {
                cel = errors
                    .iter()
                    .map(|e| Found {
                        field: e.field_path.clone(),
                        message: e.message.clone(),
                        rules: cel_rules(&e.message),
                        check: Check::Cel,
                    })
                    .collect();
            }
        }
        Err(e) if schema.found.is_empty() => schema.found.push(Found {
            field: String::new(),
            message: format!("cannot be read as a {KIND}: {e}"),
            rules: rule::OTHER,
            check: Check::Schema,
        }),
        // The schema problems say why.
        Err(_) => {}
    }

    let mut kept: Vec<(Found, Vec<Check>)> = Vec::new();
    for found in controller.into_iter().chain(schema.found).chain(cel) {
        match kept.iter_mut().find(|(k, _)| k.covers(&found)) {
            Some((k, also)) => {
                if k.check != found.check && !also.contains(&found.check) {
                    also.push(found.check);
                }
            }
            None => kept.push((found, Vec::new())),
        }
    }
    kept.sort_by(|a, b| a.0.field.cmp(&b.0.field));
    report.notes.extend(schema.notes.iter().map(|n| loc.note(n)));
    report.problems.extend(object_problems);
    report.problems.extend(
        kept.into_iter().map(|(f, also)| Problem { also_found_by: also, ..loc.problem(f.field, f.message, f.check) }),
    );
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

/// The CRD's openAPIV3Schema, with the members every object has (apiVersion, kind, metadata) declared,
/// and status left unchecked (the API server ignores status in a create or update of the resource).
static ROOT_SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    let crd = serde_json::to_value(crate::api::crd()).expect("CRD serializes");
    let mut schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    let properties = schema["properties"].as_object_mut().expect("the root schema has properties");
    properties.insert("apiVersion".into(), serde_json::json!({"type": "string"}));
    properties.insert("kind".into(), serde_json::json!({"type": "string"}));
    properties.insert("metadata".into(), serde_json::json!({"x-kubernetes-preserve-unknown-fields": true}));
    properties.insert("status".into(), serde_json::json!({"x-kubernetes-preserve-unknown-fields": true}));
    schema
});

/// The subset of OpenAPI v3 validation the CRD uses, with the API server's semantics: lengths count
/// characters, `null` of a non-nullable member is dropped (then counts as missing), unknown fields are
/// dropped (reported here).
#[derive(Default)]
struct SchemaChecker {
    found: Vec<Found>,
    regexes: HashMap<String, Option<Regex>>,
    /// See [`yaml11_scalars`].
    yaml11_scalars: Vec<String>,
    /// Things to point out that are not problems.
    notes: Vec<String>,
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn range_rule(min: Option<u64>, max: Option<u64>) -> String {
    match (min, max) {
        (Some(min), Some(max)) if min > 0 => format!("{min} to {max}"),
        (_, Some(max)) => format!("at most {max}"),
        (Some(min), None) => format!("at least {min}"),
        (None, None) => String::new(),
    }
}

fn out_of_range(n: usize, min: Option<u64>, max: Option<u64>) -> bool {
    let n = n as u64;
    min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m)
}

impl SchemaChecker {
    fn fail(&mut self, field: &str, message: String, rules: u16) {
        self.found.push(Found { field: field.to_string(), message, rules, check: Check::Schema });
    }

    fn walk(&mut self, schema: &Value, value: &mut Value, path: &str) {
        let u = |k: &str| schema.get(k).and_then(Value::as_u64);
        if let Some(t) = schema.get("type").and_then(Value::as_str) {
            let ok = match t {
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "string" => value.is_string(),
                "boolean" => value.is_boolean(),
                "array" => value.is_array(),
                "object" => value.is_object(),
                _ => true,
            };
            if !ok {
                self.fail(path, format!("must be of type {t}, is {}", type_name(value)), rule::TYPE);
                return;
            }
            if t == "string"
                && let Value::String(s) = &*value
                && self.yaml11_scalars.contains(s)
            {
                let read_as =
                    if s.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) { "a boolean" } else { "a number" };
                let message = format!(
                    "must be of type string: kubectl reads the unquoted {s} as {read_as} (YAML 1.1); quote it: \"{s}\""
                );
                self.fail(path, message, rule::TYPE);
                return;
            }
        }
        if let Some(Value::Array(allowed)) = schema.get("enum")
            && !allowed.contains(value)
        {
            let list: Vec<String> =
                allowed.iter().map(|a| a.as_str().map(str::to_string).unwrap_or_else(|| a.to_string())).collect();
            self.fail(path, format!("{value} is not one of: {}", list.join(", ")), rule::ENUM);
        }
        match value {
            Value::String(s) => {
                let len = s.chars().count();
                if len == 0
                    && u("minLength").is_none_or(|m| m == 0)
                    && schema.get("nullable") != Some(&Value::Bool(true))
                {
                    self.notes.push(format!(
                        "{path} is an empty string, which the Kubernetes 1.20 API server refuses here: its OpenAPI validator takes an empty string for null (\"must be of type string\")"
                    ));
                }
                let (min, max) = (u("minLength"), u("maxLength"));
                let bad_length = out_of_range(len, min, max);
                if bad_length {
                    self.fail(
                        path,
                        format!("must be {} characters long, is {len}", range_rule(min, max)),
                        rule::LENGTH,
                    );
                }
                // An empty string that is too short says all there is to say about it.
                if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
                    && !(bad_length && len == 0)
                {
                    let re =
                        self.regexes.entry(pattern.to_string()).or_insert_with(|| Regex::new(pattern).ok()).as_ref();
                    match re {
                        Some(re) if re.is_match(s) => {}
                        Some(_) => self.fail(path, format!("{s:?} does not match {pattern}"), rule::PATTERN),
                        None => {
                            self.fail(path, format!("the schema's pattern {pattern} cannot be checked"), rule::OTHER)
                        }
                    }
                }
            }
            Value::Array(items) => {
                let (min, max) = (u("minItems"), u("maxItems"));
                if out_of_range(items.len(), min, max) {
                    let rule = range_rule(min, max);
                    self.fail(path, format!("must have {rule} items, has {}", items.len()), rule::ITEMS);
                }
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter_mut().enumerate() {
                        // Null items are not dropped: they fail the item's type.
                        self.walk(item_schema, item, &format!("{path}[{i}]"));
                    }
                }
            }
            Value::Object(map) => self.walk_object(schema, map, path),
            _ => {}
        }
    }

    fn walk_object(&mut self, schema: &Value, map: &mut Map<String, Value>, path: &str) {
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties").filter(|a| a.is_object());
        let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
            || schema.get("additionalProperties") == Some(&Value::Bool(true));
        let keys: Vec<String> = map.keys().cloned().collect();
        for key in keys {
            let (sub, field) = match properties.and_then(|p| p.get(&key)) {
                Some(sub) => (Some(sub), child(path, &key)),
                None => (additional, format!("{path}[{key:?}]")),
            };
            let Some(sub) = sub else {
                if !preserve {
                    self.fail(&child(path, &key), "unknown field (the API server would drop it)".into(), rule::UNKNOWN);
                    map.remove(&key);
                }
                continue;
            };
            if map[&key].is_null() && sub.get("nullable") != Some(&Value::Bool(true)) {
                // The API server drops null values of non-nullable members before validating.
                map.remove(&key);
                if additional.is_some() && properties.is_none_or(|p| !p.contains_key(&key)) {
                    self.fail(&field, "is null (the API server would drop the entry)".into(), rule::NULL);
                }
                continue;
            }
            if let Some(v) = map.get_mut(&key) {
                self.walk(sub, v, &field);
            }
        }
        let (min, max) =
            (schema.get("minProperties").and_then(Value::as_u64), schema.get("maxProperties").and_then(Value::as_u64));
        if out_of_range(map.len(), min, max) {
            let rule = range_rule(min, max);
            self.fail(path, format!("must have {rule} entries, has {}", map.len()), rule::ENTRIES);
        }
        if let Some(Value::Array(required)) = schema.get("required") {
            for r in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(r) {
                    self.fail(&child(path, r), "is required".into(), rule::REQUIRED);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str =
        "apiVersion: connect.cloud-operators.dev/v1alpha1\nkind: SecurityProfile\nmetadata:\n  name: p\n";

    fn spec(body: &str) -> String {
        format!("{HEAD}spec:\n  instanceId: i\n  securityProfileName: p\n{body}")
    }

    fn lines(yaml: &str) -> Vec<String> {
        validate_str("f.yaml", yaml).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_valid_profile_has_no_problems() {
        let r = validate_source("f.yaml", &spec("  tags: {team: a}\n  deletionPolicy: Retain\n"));
        assert_eq!((r.problems.len(), r.checked, r.exit_code()), (0, 1, 0), "{r}");
    }

    #[test]
    fn schema_and_controller_report_one_message_per_field_and_rule() {
        let yaml = spec(&format!("  description: {}\n", "d".repeat(251)));
        assert_eq!(
            lines(&yaml),
            ["f.yaml[0] SecurityProfile default/p: spec.description: must be at most 250 characters long, is 251"]
        );
        // The name: one message, though the schema breaks two rules (length and pattern).
        let yaml = format!("{HEAD}spec:\n  instanceId: i\n  securityProfileName: \"{}/\"\n", "a".repeat(127));
        let found = lines(&yaml);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("spec.securityProfileName: \""), "{found:?}");
        // A CEL rule on the map and the controller's message on the key: the controller's, naming the key.
        assert_eq!(
            lines(&spec("  tags: {\"aws:x\": v}\n")),
            [
                "f.yaml[0] SecurityProfile default/p: spec.tags key \"aws:x\": must not begin with the reserved prefix \"aws:\""
            ]
        );
    }

    #[test]
    fn fields_the_api_server_would_drop_are_problems() {
        let found = lines(&spec(
            "  colour: red\n  tags: {team: }\n  applications:\n  - {namespace: ns, applicationPermissions: [a], x: 1}\n",
        ));
        assert_eq!(
            found,
            [
                "f.yaml[0] SecurityProfile default/p: spec.applications[0].x: unknown field (the API server would drop it)",
                "f.yaml[0] SecurityProfile default/p: spec.colour: unknown field (the API server would drop it)",
                "f.yaml[0] SecurityProfile default/p: spec.tags[\"team\"]: is null (the API server would drop the entry)",
            ]
        );
    }

    #[test]
    fn wrong_shapes_are_reported_once_with_the_type() {
        assert_eq!(
            lines(&spec("  permissions: BasicAgentAccess\n")),
            ["f.yaml[0] SecurityProfile default/p: spec.permissions: must be of type array, is string"]
        );
        let found = lines(&format!("{HEAD}spec:\n  instanceId: null\n  securityProfileName: 42\n"));
        assert_eq!(
            found,
            [
                "f.yaml[0] SecurityProfile default/p: spec.instanceId: is required",
                "f.yaml[0] SecurityProfile default/p: spec.securityProfileName: must be of type string, is integer",
            ]
        );
    }

    #[test]
    fn documents_kinds_and_syntax() {
        let yaml = format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c, namespace: ops}}\n---\n---\n{}---\napiVersion: connect.cloud-operators.dev/v1\nkind: SecurityProfile\nmetadata: {{name: q}}\nspec: {{instanceId: i, securityProfileName: q}}\n---\napiVersion: connect.cloud-operators.dev/v1alpha1\nkind: SecurityProfiles\nmetadata: {{name: r}}\n",
            spec("")
        );
        let r = validate_source("m.yaml", &yaml);
        assert_eq!(r.checked, 2, "{r}");
        let found: Vec<String> = r.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            found,
            [
                "m.yaml[3] SecurityProfile default/q: apiVersion: must be connect.cloud-operators.dev/v1alpha1 for kind SecurityProfile, is \"connect.cloud-operators.dev/v1\"",
                "m.yaml[4] SecurityProfiles default/r: kind: \"SecurityProfiles\" is not a kind of connect.cloud-operators.dev; the group serves only SecurityProfile",
            ]
        );
        assert_eq!(
            r.notes.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["m.yaml[0] ConfigMap ops/c: skipped: not a SecurityProfile"]
        );
        assert_eq!(r.exit_code(), 1);

        let r = validate_source("bad.yaml", &format!("{}---\nspec: [\n", spec("")));
        assert_eq!(r.exit_code(), 2, "{r}");
        assert_eq!(r.checked, 1);
        assert!(r.problems[0].to_string().starts_with("bad.yaml[1]: YAML syntax error: "), "{r}");
    }

    #[test]
    fn lists_are_checked_item_by_item() {
        let yaml = format!(
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: {API_VERSION}\n  kind: SecurityProfile\n  metadata: {{name: ok}}\n  spec: {{instanceId: i, securityProfileName: ok}}\n- apiVersion: {API_VERSION}\n  kind: SecurityProfile\n  metadata: {{name: Bad_Name}}\n  spec: {{instanceId: i, securityProfileName: ok, region: Mars}}\n"
        );
        let r = validate_source("l.yaml", &yaml);
        assert_eq!(r.checked, 2);
        let found: Vec<String> = r.problems.iter().map(ToString::to_string).collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("l.yaml[0].items[1] SecurityProfile default/Bad_Name: metadata.name: "),
            "{found:?}"
        );
        assert_eq!(
            found[1],
            "l.yaml[0].items[1] SecurityProfile default/Bad_Name: spec.region: \"Mars\" is not an AWS Region name such as us-east-1"
        );
    }

    #[test]
    fn merge_keys_and_non_string_keys_are_read_as_kubectl_reads_them() {
        let yaml = format!(
            "{HEAD}spec:\n  instanceId: i\n  securityProfileName: p\n  tags:\n    <<: {{team: a}}\n    1: one\n"
        );
        assert_eq!(lines(&yaml), Vec::<String>::new());
    }

    #[test]
    fn plain_scalars_kubectl_reads_as_booleans_or_numbers_are_type_errors() {
        let found = lines(&spec(
            "  tags:\n    approved: yes\n    quoted: \"no\"\n    count: 1_000\n  permissions: [On, \"off\"] # on\n",
        ));
        assert_eq!(
            found,
            [
                "f.yaml[0] SecurityProfile default/p: spec.permissions[0]: must be of type string: kubectl reads the unquoted On as a boolean (YAML 1.1); quote it: \"On\"",
                "f.yaml[0] SecurityProfile default/p: spec.tags[\"approved\"]: must be of type string: kubectl reads the unquoted yes as a boolean (YAML 1.1); quote it: \"yes\"",
                "f.yaml[0] SecurityProfile default/p: spec.tags[\"count\"]: must be of type string: kubectl reads the unquoted 1_000 as a number (YAML 1.1); quote it: \"1_000\"",
            ]
        );
        // Per document: an unquoted yes elsewhere in the file does not make a quoted one wrong.
        let yaml = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\ndata: {{a: yes}}\n---\n{}",
            spec("  tags: {a: \"yes\"}\n")
        );
        assert_eq!(lines(&yaml), Vec::<String>::new());
    }

    #[test]
    fn a_rule_found_by_several_checks_is_one_problem_naming_them_all() {
        let problems = validate_str("f.yaml", &spec("  tags: {\"a*b\": v}\n"));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!((problems[0].check, problems[0].also_found_by.as_slice()), (Check::Controller, &[Check::Cel][..]));
        let problems = validate_str("f.yaml", &spec(&format!("  description: {}\n", "d".repeat(251))));
        assert_eq!(
            (problems[0].check, problems[0].also_found_by.as_slice()),
            (Check::Controller, &[Check::Schema][..])
        );
    }

    #[test]
    fn empty_strings_that_old_api_servers_refuse_are_noted() {
        let r = validate_source("f.yaml", &spec("  tags: {owner: \"\"}\n"));
        assert_eq!(r.exit_code(), 0, "{r}");
        assert_eq!(
            r.notes.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "f.yaml[0] SecurityProfile default/p: spec.tags[\"owner\"] is an empty string, which the Kubernetes 1.20 API server refuses here: its OpenAPI validator takes an empty string for null (\"must be of type string\")"
            ]
        );
    }

    #[test]
    fn tag_keys_are_measured_in_characters_by_every_check() {
        // 128 two-byte characters: valid (the client-side CEL evaluator alone would count 256 bytes).
        assert_eq!(lines(&spec(&format!("  tags: {{\"{}\": v}}\n", "ö".repeat(128)))), Vec::<String>::new());
        let found = validate_str("f.yaml", &spec(&format!("  tags: {{\"{}\": v}}\n", "ö".repeat(129))));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].message.contains("must be 1 to 128 characters long, is 129"), "{found:?}");
        assert_eq!(found[0].also_found_by, [Check::Cel]);
        // A symbol is not a letter: the controller and CEL agree.
        let found = validate_str("f.yaml", &spec("  tags: {\"snow☃\": v}\n"));
        assert_eq!(
            (found.len(), found[0].check, found[0].also_found_by.as_slice()),
            (1, Check::Controller, &[Check::Cel][..])
        );
    }

    #[test]
    fn documents_that_are_not_kubernetes_objects_are_skipped() {
        let r = validate_source(
            "values.yaml",
            "replicas: 2\n---\napiVersion: connect.cloud-operators.dev/v1alpha1\nmetadata: {name: x}\n",
        );
        let problems: Vec<String> = r.problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems, ["values.yaml[1] default/x: kind: is required: SecurityProfile"]);
        let notes: Vec<String> = r.notes.iter().map(ToString::to_string).collect();
        assert_eq!(notes, ["values.yaml[0]: skipped: not a Kubernetes object (no kind)"]);
    }

    #[test]
    fn unreadable_files_exit_with_2() {
        let r = validate_files(&[PathBuf::from("/nonexistent/connect-operator/x.yaml")]);
        assert_eq!(r.exit_code(), 2);
        assert!(r.problems[0].to_string().starts_with("/nonexistent/connect-operator/x.yaml: cannot read: "), "{r}");
    }
}
