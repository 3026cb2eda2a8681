//! Offline validation of SecurityProfile manifests (`connect-operator validate FILE...`).
//!
//! Checks every SecurityProfile in a set of YAML (or JSON) files with exactly the rules a cluster and the
//! operator apply, without a cluster:
//!
//! 1. the CRD's own `openAPIV3Schema` (from [`crate::api::crd`]), applied by the `jsonschema` crate after
//!    a pre-pass for the Kubernetes extensions (`schema.rs`): types, required members, lengths (in
//!    characters), item and entry counts, patterns, enums, `nullable`; fields the API server would
//!    silently drop (unknown fields, `null` map values) are reported too;
//! 2. the CEL rules (`x-kubernetes-validations`, creation rules), which API servers older than 1.25
//!    ignore (`cel.rs`);
//! 3. the controller's own validation ([`validate_spec`]), which refuses a spec before anything reaches
//!    Connect.
//!
//! Every finding names the kind of rule it is about ([`RuleId`]). When two checks report a rule of the
//! same kind for the same field, one problem is kept (`merge.rs`): the controller's message (its wording
//! is what the resource's status would say), else the schema's, else the CEL rule's; the problem lists
//! the other checks in `also_found_by`. When the spec does not fit the Rust types (a type or enum
//! error), the CEL and controller checks cannot run for that object; the schema's problems say what to
//! fix first.
//!
//! The YAML is read as kubectl reads it (`read.rs`): multi-document files, merge keys, `v1` Lists (item by
//! item, `object.rs`), scalar mapping keys as strings. kubectl reads YAML 1.1, this reader YAML 1.2:
//! unquoted `yes`, `no`, `on`, `off`, `y`, `n`, `1_000`, `0755` where a string belongs are reported as
//! the type errors the API server would answer. Documents of other kinds are skipped with a note. Also
//! noted, not counted as problems: empty strings in members that the Kubernetes 1.20 API server refuses
//! them for (its OpenAPI validator takes an empty string for null unless the member is nullable).

mod binding;
mod cel;
mod merge;
mod object;
mod read;
mod schema;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::sync::LazyLock;

use serde_json::Value;

use crate::api::SecurityProfile;
use crate::constraints::RuleId;
use crate::domain::validate::validate_spec;
use merge::Found;

/// The apiVersion of SecurityProfile manifests.
pub use crate::api::API_VERSION;

/// The SecurityProfile CRD's own openAPIV3Schema, with its CEL rules: what [`schema`] (extended with
/// the members every object has) and [`cel`] check against.
static CRD_SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    let crd = serde_json::to_value(crate::api::crd()).expect("CRD serializes");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
});
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
    /// The kinds of rule the problem is about.
    pub rules: &'static [RuleId],
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
    /// How many InstanceBinding objects were checked.
    pub bindings_checked: usize,
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
        let mut objects =
            format!("{} {}", self.checked, if self.checked == 1 { "SecurityProfile" } else { "SecurityProfiles" });
        match self.bindings_checked {
            0 => {}
            1 => objects.push_str(" and 1 InstanceBinding"),
            n => objects.push_str(&format!(" and {n} InstanceBindings")),
        }
        match self.problems.len() {
            0 => format!("{objects} checked, no problems"),
            1 => format!("{objects} checked, 1 problem"),
            n => format!("{objects} checked, {n} problems"),
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
            match read::manifest_files(path) {
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
        rules: RuleId::Other.slice(),
        check: Check::Read,
        also_found_by: Vec::new(),
    }
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
    fn problem(&self, field: impl Into<String>, message: impl Into<String>, rule: RuleId, check: Check) -> Problem {
        Problem {
            file: self.file.to_string(),
            document: Some(self.document),
            item: self.item,
            kind: self.kind.clone(),
            resource: self.resource.clone(),
            field: field.into(),
            message: message.into(),
            rules: rule.slice(),
            check,
            also_found_by: Vec::new(),
        }
    }

    /// The problem of a merged finding.
    fn found(&self, found: Found, also_found_by: Vec<Check>) -> Problem {
        Problem {
            rules: found.rules,
            also_found_by,
            ..self.problem(found.field, found.message, RuleId::Other, found.check)
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
    for (document, text) in read::split_documents(yaml).into_iter().enumerate() {
        let loc = Location { file, document, item: None, kind: None, resource: None };
        match read::parse_document(yaml, text) {
            Ok(Value::Null) => {} // an empty document
            Ok(json) => object::check_document(json, text, loc, report),
            Err(e) => {
                report.problems.push(loc.problem("", e, RuleId::Other, Check::Syntax));
                // The documents after a syntax error are not checked: the file needs fixing first.
                break;
            }
        }
    }
}

/// Checks one SecurityProfile (its kind and apiVersion are checked); `text` is its document's source.
fn check_profile(doc: Value, text: &str, loc: &Location<'_>, report: &mut ValidationReport) {
    let mut object_problems = Vec::new();
    object::check_metadata(&doc, loc, &mut object_problems);

    let mut pruned = doc;
    let mut schema = schema::check(&mut pruned, &read::yaml11_scalars(text));
    let mut controller = Vec::new();
    let mut cel = Vec::new();
    match serde_json::from_value::<SecurityProfile>(pruned) {
        Ok(profile) => {
            if let Err(errors) = validate_spec(&profile.spec, None) {
                controller = errors
                    .into_iter()
                    .map(|e| Found { field: e.field, message: e.message, rules: e.rules, check: Check::Controller })
                    .collect();
            }
            cel = cel::check(&profile);
        }
        Err(e) if schema.found.is_empty() => schema.found.push(Found {
            field: String::new(),
            message: format!("cannot be read as a {KIND}: {e}"),
            rules: RuleId::Other.slice(),
            check: Check::Schema,
        }),
        // The schema problems say why.
        Err(_) => {}
    }

    report.notes.extend(schema.notes.iter().map(|n| loc.note(n)));
    report.problems.extend(object_problems);
    let merged = merge::merge(controller.into_iter().chain(schema.found).chain(cel));
    report.problems.extend(merged.into_iter().map(|(found, also)| loc.found(found, also)));
}
