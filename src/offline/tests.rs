//! Unit tests of `connect-operator validate`.
use super::*;
use crate::constraints::RuleId;

const HEAD: &str = "apiVersion: connect.cloud-operators.dev/v1alpha1\nkind: SecurityProfile\nmetadata:\n  name: p\n";

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
            "m.yaml[4] SecurityProfiles default/r: kind: \"SecurityProfiles\" is not a kind of connect.cloud-operators.dev; the group serves SecurityProfile and InstanceBinding",
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
    assert!(found[0].starts_with("l.yaml[0].items[1] SecurityProfile default/Bad_Name: metadata.name: "), "{found:?}");
    assert_eq!(
        found[1],
        "l.yaml[0].items[1] SecurityProfile default/Bad_Name: spec.region: \"Mars\" is not an AWS Region name such as us-east-1"
    );
}

#[test]
fn merge_keys_and_non_string_keys_are_read_as_kubectl_reads_them() {
    let yaml =
        format!("{HEAD}spec:\n  instanceId: i\n  securityProfileName: p\n  tags:\n    <<: {{team: a}}\n    1: one\n");
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
    assert_eq!((problems[0].check, problems[0].also_found_by.as_slice()), (Check::Controller, &[Check::Schema][..]));
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

#[test]
fn null_is_valid_where_the_schema_says_nullable() {
    let r = validate_source("f.yaml", &spec("  description: null\n  allowedAIAgents: [{arn: a, type: null}]\n"));
    assert_eq!((r.problems.len(), r.exit_code()), (0, 0), "{r}");
    // Not nullable: a list item.
    assert_eq!(
        lines(&spec("  permissions: [null]\n")),
        ["f.yaml[0] SecurityProfile default/p: spec.permissions[0]: must be of type string, is null"]
    );
}

#[test]
fn problems_name_the_kinds_of_rule_they_are_about() {
    let rules = |body: &str| validate_str("f.yaml", &spec(body)).iter().map(|p| p.rules.to_vec()).collect::<Vec<_>>();
    assert_eq!(rules(&format!("  description: {}\n", "d".repeat(251))), [vec![RuleId::Length]]);
    assert_eq!(rules("  deletionPolicy: Keep\n"), [vec![RuleId::Enum]]);
    assert_eq!(rules("  tags: {\"aws:x\": v}\n"), [vec![RuleId::ReservedPrefix]]);
    assert_eq!(rules("  tags: {\"connect.cloud-operators.dev/x\": v}\n"), [vec![RuleId::OperatorReserved]]);
    let name = format!("{HEAD}spec:\n  instanceId: i\n  securityProfileName: \"a/\"\n");
    let found = validate_str("f.yaml", &name);
    assert_eq!(found[0].rules, [RuleId::Length, RuleId::Pattern]);
    assert_eq!((found[0].check, found[0].also_found_by.as_slice()), (Check::Controller, &[Check::Schema][..]));
}

#[test]
fn cel_findings_are_matched_by_rule_not_by_message() {
    use crate::api::cel;
    assert_eq!(cel::rule_ids(&cel::TAG_KEYS.expression), [RuleId::Length, RuleId::Pattern]);
    assert_eq!(cel::rule_ids(&cel::TAG_KEYS_NOT_RESERVED.expression), [RuleId::ReservedPrefix]);
    assert_eq!(cel::rule_ids("self.size() > 0"), [RuleId::Other]);
}

#[test]
fn syntax_errors_name_the_line_in_the_file() {
    let r = validate_source("bad.yaml", &format!("{}---\n\n---\nspec: {{instanceId: [\n", spec("")));
    assert_eq!(r.exit_code(), 2, "{r}");
    let problem = r.problems[0].to_string();
    assert!(problem.starts_with("bad.yaml[2]: YAML syntax error: "), "{problem}");
    assert!(problem.contains("at line 11, column 20"), "{problem}");
}

#[test]
fn instance_bindings_are_checked_against_their_own_schema() {
    let ok = "apiVersion: connect.cloud-operators.dev/v1alpha1\nkind: InstanceBinding\nmetadata: {name: team-a}\n\
              spec: {instanceId: i-1, region: eu-west-2, namespaceSelector: {matchLabels: {team: a}}}\n";
    assert!(validate_str("b.yaml", ok).is_empty(), "{:?}", validate_str("b.yaml", ok));
    let bad = "apiVersion: connect.cloud-operators.dev/v1alpha1\nkind: InstanceBinding\nmetadata: {name: team-a}\n\
               spec: {instanceId: i-1, region: Mars, allowAdoption: 'yes'}\n";
    let found = lines(bad);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found.iter().any(|l| l.contains("InstanceBinding team-a: spec: set namespaces")), "{found:#?}");
    assert!(found.iter().any(|l| l.contains("spec.region")), "{found:#?}");
    assert!(found.iter().any(|l| l.contains("spec.allowAdoption")), "{found:#?}");
}
