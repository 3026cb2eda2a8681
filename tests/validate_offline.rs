//! The bad-input corpus (tests/corpus/invalid), checked offline: `connect_operator::offline` refuses every
//! file with exactly one problem, naming the field as the file's `expect` annotation says, and found by the
//! check its `rejected-by` annotation names (`schema`, `cel`, `fields`, `controller`, `offline`: see
//! tests/e2e/bad_input.rs); the samples and tests/corpus/valid pass. The same files run
//! against the real API server and the operator in tests/e2e/bad_input.rs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use connect_operator::offline::{Check, validate_files};
use support::{repo_root, yaml_files};

mod support;

const EXPECT: &str = "corpus.connect.cloud-operators.dev/expect";
const REJECTED_BY: &str = "corpus.connect.cloud-operators.dev/rejected-by";
const INSTANCE: &str = "11111111-2222-4333-8444-555555555555";

struct Case {
    path: PathBuf,
    stem: String,
    manifest: serde_json::Value,
    annotations: BTreeMap<String, String>,
}

fn cases() -> Vec<Case> {
    yaml_files(&repo_root().join("tests/corpus/invalid"))
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let manifest: serde_json::Value =
                serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let annotations = serde_json::from_value(manifest["metadata"]["annotations"].clone())
                .unwrap_or_else(|e| panic!("{}: annotations: {e}", path.display()));
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            Case { path, stem, manifest, annotations }
        })
        .collect()
}

#[test]
fn the_corpus_is_well_formed() {
    let cases = cases();
    assert!(cases.len() >= 45, "only {} corpus cases", cases.len());
    let mut numbers = Vec::new();
    for c in &cases {
        let (number, _) = c.stem.split_once('-').expect("NN-short-name");
        numbers.push(number.parse::<usize>().unwrap_or_else(|_| panic!("{}: NN-short-name", c.stem)));
        assert_eq!(c.manifest["metadata"]["name"].as_str(), Some(c.stem.as_str()), "{}: metadata.name", c.stem);
        assert!(c.manifest["metadata"].get("namespace").is_none(), "{}: the tests choose the namespace", c.stem);
        let by = c.annotations.get(REJECTED_BY).map(String::as_str);
        assert!(
            matches!(by, Some("schema" | "cel" | "fields" | "controller" | "offline")),
            "{}: rejected-by {by:?}",
            c.stem
        );
        let expect = c.annotations.get(EXPECT).unwrap_or_else(|| panic!("{}: no expect annotation", c.stem));
        assert!(expect.contains("spec") || expect.contains("apiVersion"), "{}: expect should name the field", c.stem);
        if matches!(by, Some("schema" | "cel" | "fields")) {
            assert!(c.annotations.contains_key("corpus.connect.cloud-operators.dev/expect-apiserver"), "{}", c.stem);
        }
        let instance = &c.manifest["spec"]["instanceId"];
        if !c.stem.contains("instance-id") && c.manifest["spec"].is_object() {
            assert_eq!(instance.as_str(), Some(INSTANCE), "{}: instanceId", c.stem);
        }
        // CEL and controller cases reach the controller where no CEL rule refuses them (older API servers,
        // or an object stored past the API server): they must be valid for the schema.
        if matches!(by, Some("cel" | "controller")) {
            assert_eq!(c.manifest["spec"]["securityProfileName"].as_str(), Some(c.stem.as_str()), "{}", c.stem);
        }
    }
    assert_eq!(numbers, (1..=cases.len()).collect::<Vec<_>>(), "corpus files are numbered 01, 02, ... without gaps");
}

#[test]
fn every_corpus_case_is_refused_offline_naming_the_field() {
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for c in cases() {
        let report = validate_files(std::slice::from_ref(&c.path));
        let expect = &c.annotations[EXPECT];
        let by = c.annotations[REJECTED_BY].as_str();
        *by_kind.entry(by.to_string()).or_default() += 1;
        let lines: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        assert_eq!(report.exit_code(), 1, "{}: {report}", c.stem);
        assert_eq!(report.checked, 1, "{}: {report}", c.stem);
        // One rule broken, one problem: the checks that agree are merged.
        assert_eq!(lines.len(), 1, "{}: one problem expected:\n{report}", c.stem);
        let problem = &report.problems[0];
        assert!(lines[0].contains(expect.as_str()), "{}: {:?} should contain {expect:?}", c.stem, lines[0]);
        assert_eq!(problem.resource.as_deref(), Some(format!("default/{}", c.stem).as_str()));
        assert_eq!(problem.document, Some(0));
        assert!(
            lines[0].starts_with(&format!("{}[0] SecurityProfile default/{}: ", c.path.display(), c.stem)),
            "{}",
            lines[0]
        );
        let checks: Vec<Check> = std::iter::once(problem.check).chain(problem.also_found_by.iter().copied()).collect();
        match by {
            // The schema (or, for the apiVersion, the object check) finds it.
            "schema" => assert!(
                checks.contains(&Check::Schema) || checks.contains(&Check::Object),
                "{}: the schema should refuse it: {checks:?}",
                c.stem
            ),
            // The schema accepts it; a CEL rule refuses it, and the controller re-checks the same rule.
            "cel" | "controller" => {
                assert!(!checks.contains(&Check::Schema), "{}: the schema refuses it: {checks:?}", c.stem);
                assert!(checks.contains(&Check::Controller), "{}: the controller accepts it: {checks:?}", c.stem);
                assert_eq!(checks.contains(&Check::Cel), by == "cel", "{}: CEL: {checks:?}", c.stem);
            }
            // A field the schema lacks (refused by strict field validation, dropped by pruning), or a value the
            // API server silently drops: only the schema walk sees it.
            _ => assert_eq!(checks, [Check::Schema], "{}", c.stem),
        }
    }
    assert!(
        by_kind["schema"] >= 40 && by_kind["cel"] >= 8 && by_kind["fields"] >= 2 && by_kind["offline"] >= 1,
        "{by_kind:?}"
    );
}

#[test]
fn the_whole_corpus_directory_at_once() {
    let n = cases().len();
    let report = validate_files(&[repo_root().join("tests/corpus/invalid")]);
    assert_eq!(report.exit_code(), 1);
    assert_eq!(report.checked, n);
    assert_eq!(report.problems.len(), n, "{report}");
    assert!(report.to_string().ends_with(&format!("{n} SecurityProfiles checked, {n} problems")), "{report}");
}

#[test]
fn samples_and_valid_manifests_pass() {
    let mut files = yaml_files(&repo_root().join("deploy/samples"));
    let valid = yaml_files(&repo_root().join("tests/corpus/valid"));
    assert!(valid.len() >= 3);
    files.extend(valid);
    for file in &files {
        let report = validate_files(std::slice::from_ref(file));
        assert_eq!(report.exit_code(), 0, "{}:\n{report}", file.display());
        let objects = report.checked + report.bindings_checked;
        assert!(report.problems.is_empty() && objects >= 1, "{}:\n{report}", file.display());
    }
    let report = validate_files(&files);
    // Every file holds at least one object (a profile, or the sample binding); list.yaml holds two.
    assert!(report.checked + report.bindings_checked > files.len() && report.exit_code() == 0, "{report}");
    let notes: Vec<String> = report.notes.iter().map(ToString::to_string).collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("multi-document.yaml[0] ConfigMap multi-document-settings: skipped"), "{notes:?}");
}

#[test]
fn a_syntax_error_is_exit_code_2_and_names_the_document() {
    let dir = std::env::temp_dir().join(format!("connect-operator-corpus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("broken.yaml");
    let minimal = std::fs::read_to_string(repo_root().join("tests/corpus/valid/minimal.yaml")).unwrap();
    std::fs::write(&file, format!("{minimal}---\nspec: {{instanceId: [\n")).unwrap();
    let report = validate_files(&[file.clone(), repo_root().join("tests/corpus/invalid/01-instance-id-missing.yaml")]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(report.exit_code(), 2, "{report}");
    assert_eq!(report.checked, 2, "{report}");
    assert!(
        report.problems[0].to_string().starts_with(&format!("{}[1]: YAML syntax error: ", file.display())),
        "{report}"
    );
    assert_eq!(report.problems.len(), 2, "{report}");
}
