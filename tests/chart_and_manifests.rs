//! Packaging checks that need no cluster: the Helm chart (lint, schema, rendered objects, RBAC), the
//! generated deploy/connect-operator.yaml, the chart's copy of the CRD, deploy/iam-policy.json and the
//! Dockerfile. Needs `helm` (tests/cluster/install-deps.sh puts it in ~/.cache/connect-operator/bin).
//!
//! Generated files are rewritten instead of compared with `CONNECT_OPERATOR_BLESS=1 cargo test --test chart_and_manifests`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::{Value, json};
use support::{GROUP, repo_root};

mod support;

const CHART: &str = "charts/connect-operator";
/// The release `deploy/connect-operator.yaml` is rendered for.
const DEPLOY_RELEASE: &str = "connect-operator";
const DEPLOY_NAMESPACE: &str = "connect-operator";

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn bless() -> bool {
    std::env::var_os("CONNECT_OPERATOR_BLESS").is_some()
}

/// `helm` from PATH, else from the test tools' cache.
fn helm_bin() -> PathBuf {
    if Command::new("helm").arg("version").output().is_ok() {
        return PathBuf::from("helm");
    }
    let cache = std::env::var_os("CONNECT_OPERATOR_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/connect-operator"));
    let helm = cache.join("bin/helm");
    assert!(helm.exists(), "helm not found on PATH nor at {}: run tests/cluster/install-deps.sh", helm.display());
    helm
}

fn helm(args: &[&str]) -> Output {
    Command::new(helm_bin()).args(args).current_dir(repo_root()).output().expect("helm runs")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `helm template <release> <chart> --namespace <ns> <args>`: the YAML.
fn template_release(release: &str, ns: &str, args: &[&str]) -> String {
    let mut all = vec!["template", release, CHART, "--namespace", ns];
    all.extend_from_slice(args);
    let out = helm(&all);
    assert!(out.status.success(), "helm {all:?} failed:\n{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// The chart rendered as release `t` in namespace `ops`, with `args`.
fn template_text(args: &[&str]) -> String {
    template_release("t", "ops", args)
}

fn documents(yaml: &str) -> Vec<Value> {
    // Empty documents are skipped.
    serde_saphyr::from_multiple(yaml).expect("valid YAML documents")
}

fn render(args: &[&str]) -> Vec<Value> {
    documents(&template_text(args))
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = of_kind(docs, kind);
    assert_eq!(found.len(), 1, "expected one {kind}, found {}", found.len());
    found[0]
}

fn env_of(deployment: &Value) -> Vec<(String, Value)> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e.clone()))
        .collect()
}

fn env_value(deployment: &Value, name: &str) -> Option<String> {
    env_of(deployment)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, e)| e["value"].as_str().unwrap_or_default().to_string())
}

// --- helm lint and the values schema ---------------------------------------------------------------

#[test]
fn helm_lint_passes_for_the_defaults_and_the_documented_variants() {
    let variants: &[&[&str]] = &[
        &[],
        &["--set", "watchNamespaces={team-a,team-b}"],
        &["--set", "leaderElection.enabled=false,crds.install=false,rbac.aggregateToDefaultRoles=false"],
        &["--set", "metrics.serviceMonitor.enabled=true,podDisruptionBudget.enabled=true,replicaCount=2"],
        &[
            "--set",
            "region=eu-central-1,roleArn=arn:aws:iam::123456789012:role/connect-admin",
            "--set-string",
            "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::123456789012:role/connect-operator",
            "--set-json",
            r#"extraEnv=[{"name":"AWS_ENDPOINT_URL_CONNECT","value":"https://connect.eu-central-1.amazonaws.com"}]"#,
        ],
        &[
            "--set-json",
            r#"allowedRoleArns=["arn:aws:iam::111122223333:role/connect-team-*"]"#,
            "--set",
            "externalId=connect-operator-prod",
            "--set-json",
            r#"admissionPolicy={"validationActions":["Warn","Audit"],"failurePolicy":"Ignore","namespaceSelector":{"matchLabels":{"team":"a"}}}"#,
        ],
        &["--set", "admissionPolicy.enabled=false"],
    ];
    for args in variants {
        let mut all = vec!["lint", "--strict", CHART];
        all.extend_from_slice(args);
        let out = helm(&all);
        assert!(out.status.success(), "helm {all:?} failed:\n{}", text(&out));
    }
}

#[test]
fn bad_values_are_rejected_by_lint_and_install_naming_the_value() {
    // (values, what the error must name)
    let cases: &[(&[&str], &str)] = &[
        (&["--set", "replicaCount=two"], "replicaCount"),
        (&["--set-string", "concurrency=4"], "concurrency"),
        (&["--set", "concurrency=0"], "concurrency"),
        (&["--set", "logFormat=xml"], "logFormat"),
        (&["--set", "image.pullPolicy=Sometimes"], "image.pullPolicy"),
        (&["--set", "resyncInterval=ten minutes"], "resyncInterval"),
        (&["--set", "watchNamespaces={Team_A}"], "watchNamespaces"),
        (&["--set", "region=US East"], "region"),
        (&["--set", "roleArn=connect-admin"], "roleArn"),
        (&["--set", "connect.rate=0"], "connect.rate"),
        (&["--set", "connect.burst=1.5"], "connect.burst"),
        (&["--set", "replicas=2"], "replicas"),
        (&["--set", "metrics.port=80000"], "metrics.port"),
        (&["--set", "resources.limits.memory=lots"], "resources.limits.memory"),
        (&["--set-json", r#"extraEnv=[{"value":"x"}]"#], "extraEnv"),
        (&["--set", "allowedRoleArns={connect-team-a}"], "allowedRoleArns"),
        (&["--set", "externalId=has space"], "externalId"),
        (&["--set-json", r#"admissionPolicy.validationActions=["Deny","Warn"]"#], "admissionPolicy.validationActions"),
        (&["--set-json", r#"admissionPolicy.validationActions=[]"#], "admissionPolicy.validationActions"),
        (&["--set", "admissionPolicy.failurePolicy=Sometimes"], "admissionPolicy.failurePolicy"),
        // Rules across values, enforced by the templates.
        (&["--set", "replicaCount=2,leaderElection.enabled=false"], "leaderElection.enabled"),
        (&["--set", "serviceAccount.create=false"], "serviceAccount.name"),
    ];
    let mut failures = Vec::new();
    for (values, names) in cases {
        let mut lint = vec!["lint", CHART];
        lint.extend_from_slice(values);
        let mut template = vec!["template", "t", CHART];
        template.extend_from_slice(values);
        for cmd in [&lint, &template] {
            let out = helm(cmd);
            let output = text(&out);
            if out.status.success() || !output.contains(names) {
                failures.push(format!(
                    "helm {cmd:?}: expected a failure naming {names:?}, got exit {:?}:\n{output}",
                    out.status.code()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_value_has_a_schema_and_the_chart_versions_match_the_crate() {
    let values: Value = serde_saphyr::from_str(&read(&format!("{CHART}/values.yaml"))).unwrap();
    let schema: Value = serde_json::from_str(&read(&format!("{CHART}/values.schema.json"))).unwrap();
    fn check(path: &str, values: &Value, schema: &Value, missing: &mut Vec<String>) {
        if let Value::Object(map) = values {
            for (k, v) in map {
                let sub = &schema["properties"][k];
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                if sub.is_null() {
                    if schema["additionalProperties"].is_object() {
                        continue; // a map of user keys (annotations, labels, resources...)
                    }
                    missing.push(p);
                } else if sub["additionalProperties"] == json!(false) {
                    check(&p, v, sub, missing);
                }
            }
        }
    }
    let mut missing = Vec::new();
    check("", &values, &schema, &mut missing);
    assert!(missing.is_empty(), "values without a schema: {missing:?}");
    assert_eq!(schema["additionalProperties"], json!(false));

    let chart: Value = serde_saphyr::from_str(&read(&format!("{CHART}/Chart.yaml"))).unwrap();
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(env!("CARGO_PKG_VERSION")),
        "Chart.yaml appVersion must be the crate's version"
    );
}

// --- generated files -------------------------------------------------------------------------------

const DEPLOY_HEADER: &str = "\
# connect-operator with its defaults, in namespace connect-operator: Namespace, CRD, RBAC,
# ServiceAccount, Deployment and metrics Service. Generated - do not edit; it is
#   helm template connect-operator charts/connect-operator --namespace connect-operator
# after the Namespace below (tests/chart_and_manifests.rs checks it; CONNECT_OPERATOR_BLESS=1 cargo test
# --test chart_and_manifests rewrites it). Install: kubectl apply --server-side -f deploy/connect-operator.yaml
# (Kubernetes < 1.25: kubectl apply --validate=false -f ..., the CRD has CEL rules those versions lack).
---
apiVersion: v1
kind: Namespace
metadata:
  name: connect-operator
  labels:
    app.kubernetes.io/part-of: connect-operator
    pod-security.kubernetes.io/enforce: restricted
";

#[test]
fn deploy_connect_operator_yaml_is_the_rendered_chart() {
    let rendered = template_release(DEPLOY_RELEASE, DEPLOY_NAMESPACE, &[]);
    let expected = format!("{DEPLOY_HEADER}{rendered}");
    let path = repo_root().join("deploy/connect-operator.yaml");
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current != expected {
        if bless() {
            std::fs::write(&path, &expected).unwrap();
        } else {
            let line = current
                .lines()
                .zip(expected.lines())
                .position(|(a, b)| a != b)
                .map(|i| i + 1)
                .unwrap_or(current.lines().count().min(expected.lines().count()) + 1);
            panic!(
                "deploy/connect-operator.yaml differs from the rendered chart from line {line}: \
                 regenerate it with `CONNECT_OPERATOR_BLESS=1 cargo test --test chart_and_manifests`"
            );
        }
    }
    let docs = documents(&expected);
    assert_eq!(docs[0]["kind"], "Namespace");
    assert_eq!(docs[0]["metadata"]["name"], DEPLOY_NAMESPACE);
    for d in &docs[1..] {
        if let Some(ns) = d["metadata"]["namespace"].as_str() {
            assert_eq!(ns, DEPLOY_NAMESPACE, "{} in the wrong namespace", d["kind"]);
        }
    }
    for kind in [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
    ] {
        assert!(!of_kind(&docs, kind).is_empty(), "no {kind} in deploy/connect-operator.yaml");
    }
}

/// The chart installs the InstanceBinding CRD too: crds/instancebinding.yaml, kept on uninstall.
#[test]
fn the_chart_installs_the_instancebinding_crd() {
    let source = read("crds/instancebinding.yaml");
    let copy_path = repo_root().join(CHART).join("files/instancebinding.yaml");
    if std::fs::read_to_string(&copy_path).unwrap_or_default() != source {
        assert!(bless(), "`cp crds/instancebinding.yaml {CHART}/files/` (or CONNECT_OPERATOR_BLESS=1)");
        std::fs::write(&copy_path, &source).unwrap();
    }
    let docs = render(&["--show-only", "templates/crd-instancebinding.yaml"]);
    assert_eq!(docs.len(), 1);
    let mut crd = docs[0].clone();
    let meta = crd["metadata"].as_object_mut().unwrap();
    assert_eq!(meta.remove("annotations").expect("annotations"), json!({"helm.sh/resource-policy": "keep"}));
    meta.remove("labels");
    let expected: Value = serde_saphyr::from_str(&source).unwrap();
    assert!(crd == expected, "the chart's InstanceBinding CRD differs from crds/instancebinding.yaml");
    assert_eq!(crd["spec"]["scope"], "Cluster");
}

/// The CRD as the chart renders it, without what the chart adds to metadata, equals crds/securityprofile.yaml.
#[test]
fn the_chart_crd_is_crds_securityprofile_yaml_and_survives_uninstall() {
    let source = read("crds/securityprofile.yaml");
    let copy_path = repo_root().join(CHART).join("files/securityprofile.yaml");
    let copy = std::fs::read_to_string(&copy_path).unwrap_or_default();
    if copy != source {
        if bless() {
            std::fs::write(&copy_path, &source).unwrap();
        } else {
            panic!(
                "{CHART}/files/securityprofile.yaml is not crds/securityprofile.yaml: \
                 `cp crds/securityprofile.yaml {CHART}/files/` (or CONNECT_OPERATOR_BLESS=1 cargo test --test chart_and_manifests)"
            );
        }
    }
    let docs = render(&["--show-only", "templates/crd.yaml"]);
    assert_eq!(docs.len(), 1);
    let mut crd = docs[0].clone();
    let meta = crd["metadata"].as_object_mut().unwrap();
    let annotations = meta.remove("annotations").expect("annotations");
    assert_eq!(annotations, json!({"helm.sh/resource-policy": "keep"}));
    let labels = meta.remove("labels").expect("labels");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm");
    let expected: Value = serde_saphyr::from_str(&source).unwrap();
    assert!(crd == expected, "the chart's CRD differs from crds/securityprofile.yaml");

    // crds.install=false: no CRD at all.
    let docs = render(&["--set", "crds.install=false"]);
    assert!(of_kind(&docs, "CustomResourceDefinition").is_empty());
    // Nothing else in the chart lives in crds/ (Helm would install it once and never upgrade it).
    assert!(!repo_root().join(CHART).join("crds").exists());
}

// --- RBAC ------------------------------------------------------------------------------------------

/// Every string in `v`.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.iter().for_each(|(k, x)| {
            out.push(k.clone());
            strings(x, out)
        }),
        _ => {}
    }
}

/// What the ServiceAccount `ns/sa` may do: "<scope> <group>/<resource> <verb>[ name]" per grant,
/// where scope is `cluster` or the namespace.
fn grants(docs: &[Value], ns: &str, sa: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for binding in docs.iter().filter(|d| d["kind"] == "RoleBinding" || d["kind"] == "ClusterRoleBinding") {
        let bound = binding["subjects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["kind"] == "ServiceAccount" && s["name"] == sa && s["namespace"] == ns);
        if !bound {
            continue;
        }
        let scope = binding["metadata"]["namespace"].as_str().unwrap_or("cluster").to_string();
        let role_ref = &binding["roleRef"];
        let role = docs
            .iter()
            .find(|d| {
                d["kind"] == role_ref["kind"]
                    && d["metadata"]["name"] == role_ref["name"]
                    && (d["kind"] == "ClusterRole" || d["metadata"]["namespace"] == binding["metadata"]["namespace"])
            })
            .unwrap_or_else(|| panic!("binding to a role the chart does not ship: {role_ref}"));
        for rule in role["rules"].as_array().unwrap() {
            let names: Vec<&str> = rule["resourceNames"]
                .as_array()
                .map(|a| a.iter().map(|n| n.as_str().unwrap()).collect())
                .unwrap_or_default();
            for group in rule["apiGroups"].as_array().unwrap() {
                for resource in rule["resources"].as_array().unwrap() {
                    for verb in rule["verbs"].as_array().unwrap() {
                        let base = format!(
                            "{scope} {}/{} {}",
                            group.as_str().unwrap(),
                            resource.as_str().unwrap(),
                            verb.as_str().unwrap()
                        );
                        if names.is_empty() {
                            out.insert(base);
                        } else {
                            for n in &names {
                                out.insert(format!("{base} {n}"));
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

fn watch_grants(scope: &str) -> Vec<String> {
    [
        format!("{GROUP}/securityprofiles get"),
        format!("{GROUP}/securityprofiles list"),
        format!("{GROUP}/securityprofiles watch"),
        format!("{GROUP}/securityprofiles patch"),
        format!("{GROUP}/securityprofiles/status patch"),
        format!("{GROUP}/securityprofiles/finalizers update"),
        "events.k8s.io/events create".into(),
    ]
    .into_iter()
    .map(|g| format!("{scope} {g}"))
    .collect()
}

fn binding_grants() -> Vec<String> {
    vec![
        format!("cluster {GROUP}/instancebindings get"),
        format!("cluster {GROUP}/instancebindings list"),
        format!("cluster {GROUP}/instancebindings watch"),
        format!("cluster {GROUP}/instancebindings/status patch"),
    ]
}

fn lease_grants(ns: &str, lease: &str) -> Vec<String> {
    vec![
        format!("{ns} coordination.k8s.io/leases create"),
        format!("{ns} coordination.k8s.io/leases get {lease}"),
        format!("{ns} coordination.k8s.io/leases update {lease}"),
    ]
}

#[test]
fn rbac_grants_exactly_what_the_operator_calls_and_no_wildcards() {
    // All namespaces: one ClusterRole, plus the Lease Role in the release namespace.
    let docs = render(&[]);
    let sa = "t-connect-operator";
    let mut expected: BTreeSet<String> = watch_grants("cluster").into_iter().collect();
    expected.insert("cluster /namespaces get".into());
    expected.extend(binding_grants());
    expected.extend(lease_grants("ops", sa));
    assert_eq!(grants(&docs, "ops", sa), expected);

    // Watched namespaces: Roles there, and cluster-wide only the (cluster-scoped) InstanceBindings;
    // `get` only on the watched namespace itself.
    let docs = render(&["--set", "watchNamespaces={team-a,team-b}"]);
    let mut expected = BTreeSet::new();
    for ns in ["team-a", "team-b"] {
        expected.extend(watch_grants(ns));
        expected.insert(format!("{ns} /namespaces get {ns}"));
    }
    expected.extend(binding_grants());
    expected.extend(lease_grants("ops", sa));
    assert_eq!(grants(&docs, "ops", sa), expected);

    // By default nothing is aggregated into the built-in edit/admin/view roles: writing a
    // SecurityProfile grants permissions in Connect, so cluster admins grant it on purpose.
    for role in of_kind(&render(&[]), "ClusterRole") {
        let labels = role["metadata"]["labels"].as_object().cloned().unwrap_or_default();
        assert!(
            !labels.keys().any(|k| k.starts_with("rbac.authorization.k8s.io/aggregate-to")),
            "{}",
            role["metadata"]["name"]
        );
    }

    // Without leader election there is no Lease access; a custom lease name narrows it.
    let docs = render(&["--set", "leaderElection.enabled=false"]);
    assert!(!grants(&docs, "ops", sa).iter().any(|g| g.contains("leases")));
    let docs = render(&["--set", "leaderElection.leaseName=my-lease"]);
    assert!(grants(&docs, "ops", sa).contains("ops coordination.k8s.io/leases update my-lease"));

    // No '*' in any RBAC object of any variant, including the aggregated roles for people.
    for args in
        [&[][..], &["--set", "watchNamespaces={team-a}"][..], &["--set", "rbac.aggregateToDefaultRoles=true"][..]]
    {
        let docs = render(args);
        for d in docs.iter().filter(|d| {
            ["Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"]
                .contains(&d["kind"].as_str().unwrap_or_default())
        }) {
            let mut all = Vec::new();
            strings(d, &mut all);
            assert!(!all.iter().any(|s| s.contains('*')), "wildcard in {} {}", d["kind"], d["metadata"]["name"]);
        }
        // The aggregated roles only concern SecurityProfiles.
        for role in of_kind(&docs, "ClusterRole").into_iter().filter(|r| {
            r["metadata"]["name"].as_str().unwrap().ends_with("-edit")
                || r["metadata"]["name"].as_str().unwrap().ends_with("-view")
        }) {
            for rule in role["rules"].as_array().unwrap() {
                assert_eq!(rule["apiGroups"], json!([GROUP]));
            }
        }
    }
}

// --- the Deployment and friends --------------------------------------------------------------------

#[test]
fn the_deployment_is_hardened_and_configured_from_values() {
    let docs = render(&[]);
    let dep = one(&docs, "Deployment");
    let pod = &dep["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(pod["serviceAccountName"], "t-connect-operator");
    assert_eq!(c["image"], "ghcr.io/cloud-operators/connect-operator:0.1.0");
    assert_eq!(c["args"], json!(["run", "--lease-name=t-connect-operator"]));
    // Pod security: the `restricted` Pod Security Standard.
    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true);
    assert_eq!(psc["runAsUser"], 65532);
    assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault");
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(c["resources"]["requests"], json!({"cpu": "10m", "memory": "32Mi"}));
    assert_eq!(c["resources"]["limits"], json!({"cpu": "200m", "memory": "128Mi"}));
    assert_eq!(c["livenessProbe"]["httpGet"], json!({"path": "/healthz", "port": "metrics"}));
    assert_eq!(c["readinessProbe"]["httpGet"], json!({"path": "/readyz", "port": "metrics"}));
    assert_eq!(c["ports"], json!([{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]));
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    for (name, value) in [
        ("RESYNC_INTERVAL", "10m"),
        ("CONCURRENCY", "128"),
        ("CONNECT_RATE", "2"),
        ("CONNECT_BURST", "5"),
        ("LEADER_ELECT", "true"),
        ("METRICS_ADDR", "0.0.0.0:8080"),
        ("LOG_FORMAT", "json"),
        ("LOG_LEVEL", "info"),
    ] {
        assert_eq!(env_value(dep, name).as_deref(), Some(value), "{name}");
    }
    let env = env_of(dep);
    let field =
        |n: &str| env.iter().find(|(name, _)| name == n).map(|(_, e)| e["valueFrom"]["fieldRef"]["fieldPath"].clone());
    assert_eq!(field("POD_NAME"), Some(json!("metadata.name")));
    assert_eq!(field("POD_NAMESPACE"), Some(json!("metadata.namespace")));
    for absent in ["WATCH_NAMESPACES", "AWS_REGION", "CONNECT_ROLE_ARN", "ALLOWED_ROLE_ARNS", "CONNECT_EXTERNAL_ID"] {
        assert!(env_value(dep, absent).is_none(), "{absent} set without a value");
    }
    // The metrics Service selects the pods, on the probes' port.
    let svc = one(&docs, "Service");
    let pod_labels = &dep["spec"]["template"]["metadata"]["labels"];
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&pod_labels[k], v, "Service selector {k}");
    }
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "metrics");
    assert!(of_kind(&docs, "ServiceMonitor").is_empty());

    // Values reach the pod.
    let docs = render(&[
        "--set",
        "region=eu-central-1,roleArn=arn:aws:iam::123456789012:role/connect-admin,watchNamespaces={team-a,team-b}",
        "--set",
        "leaderElection.enabled=false,resyncInterval=30s,concurrency=8,connect.rate=0.5,connect.burst=2,logFormat=text",
        "--set",
        "image.tag=v9,image.pullPolicy=Always,metrics.port=9090,terminationGracePeriodSeconds=60",
        "--set-string",
        "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::123456789012:role/op",
        "--set-json",
        r#"extraEnv=[{"name":"AWS_ENDPOINT_URL_CONNECT","value":"https://vpce.example"}]"#,
        "--set-json",
        r#"nodeSelector={"kubernetes.io/os":"linux"}"#,
        "--set-json",
        r#"tolerations=[{"key":"ops","operator":"Exists"}]"#,
        "--set-json",
        r#"podAnnotations={"example.com/team":"cc"}"#,
        "--set-json",
        r#"allowedRoleArns=["arn:aws:iam::111122223333:role/connect-team-*","arn:aws:iam::444455556666:role/connect-b"]"#,
        "--set",
        "externalId=connect-operator-prod",
    ]);
    let dep = one(&docs, "Deployment");
    let pod = &dep["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    for (name, value) in [
        ("AWS_REGION", "eu-central-1"),
        ("CONNECT_ROLE_ARN", "arn:aws:iam::123456789012:role/connect-admin"),
        ("WATCH_NAMESPACES", "team-a,team-b"),
        ("LEADER_ELECT", "false"),
        ("RESYNC_INTERVAL", "30s"),
        ("CONCURRENCY", "8"),
        ("CONNECT_RATE", "0.5"),
        ("CONNECT_BURST", "2"),
        ("LOG_FORMAT", "text"),
        ("METRICS_ADDR", "0.0.0.0:9090"),
        ("AWS_ENDPOINT_URL_CONNECT", "https://vpce.example"),
        ("ALLOWED_ROLE_ARNS", "arn:aws:iam::111122223333:role/connect-team-*,arn:aws:iam::444455556666:role/connect-b"),
        ("CONNECT_EXTERNAL_ID", "connect-operator-prod"),
    ] {
        assert_eq!(env_value(dep, name).as_deref(), Some(value), "{name}");
    }
    assert_eq!(c["args"], json!(["run"]));
    assert_eq!(c["image"], "ghcr.io/cloud-operators/connect-operator:v9");
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(c["ports"][0]["containerPort"], 9090);
    assert_eq!(pod["terminationGracePeriodSeconds"], 60);
    assert_eq!(pod["nodeSelector"], json!({"kubernetes.io/os": "linux"}));
    assert_eq!(pod["tolerations"], json!([{"key": "ops", "operator": "Exists"}]));
    assert_eq!(dep["spec"]["template"]["metadata"]["annotations"]["example.com/team"], "cc");
    let sa = one(&docs, "ServiceAccount");
    assert_eq!(sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"], "arn:aws:iam::123456789012:role/op");
    assert!(
        of_kind(&docs, "Role").iter().all(|r| !r["metadata"]["name"].as_str().unwrap().ends_with("-leader-election"))
    );

    // A digest pins the image.
    let digest = format!("sha256:{}", "a".repeat(64));
    let docs = render(&["--set", &format!("image.digest={digest}")]);
    assert_eq!(
        one(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("ghcr.io/cloud-operators/connect-operator:0.1.0@{digest}")
    );

    // An existing ServiceAccount.
    let docs = render(&["--set", "serviceAccount.create=false,serviceAccount.name=byo"]);
    assert!(of_kind(&docs, "ServiceAccount").is_empty());
    assert_eq!(one(&docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"], "byo");
    assert!(grants(&docs, "ops", "byo").contains("cluster /namespaces get"));
}

#[test]
fn the_service_monitor_scrapes_the_metrics_service() {
    let docs = render(&[
        "--set",
        "metrics.serviceMonitor.enabled=true,metrics.serviceMonitor.interval=15s",
        "--set",
        "metrics.serviceMonitor.labels.release=kube-prometheus-stack",
    ]);
    let sm = one(&docs, "ServiceMonitor");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["metadata"]["labels"]["release"], "kube-prometheus-stack");
    let svc = one(&docs, "Service");
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&svc["metadata"]["labels"][k], v, "ServiceMonitor selector {k}");
    }
    assert_eq!(sm["spec"]["namespaceSelector"]["matchNames"], json!(["ops"]));
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(sm["spec"]["endpoints"][0]["interval"], "15s");

    let docs = render(&["--set", "podDisruptionBudget.enabled=true,replicaCount=2"]);
    let pdb = one(&docs, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(one(&docs, "Deployment")["spec"]["replicas"], 2);
}

// --- the ValidatingAdmissionPolicy -----------------------------------------------------------------

const VAP_API: &str = "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy";

/// The chart rendered for a cluster that serves ValidatingAdmissionPolicy (Kubernetes >= 1.30), as
/// `helm install` and Argo CD render it (they pass the cluster's API versions).
fn render_with_vap(args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--api-versions", VAP_API];
    all.extend_from_slice(args);
    render(&all)
}

#[test]
fn the_admission_policy_checks_every_instancebinding_and_renders_only_where_the_api_exists() {
    let docs = render_with_vap(&[]);
    let policy = one(&docs, "ValidatingAdmissionPolicy");
    let binding = one(&docs, "ValidatingAdmissionPolicyBinding");
    assert_eq!(policy["apiVersion"], "admissionregistration.k8s.io/v1");
    assert_eq!(binding["apiVersion"], "admissionregistration.k8s.io/v1");
    let name = "t-connect-operator-instancebindings";
    assert_eq!(policy["metadata"]["name"], name);
    assert_eq!(policy["metadata"]["labels"]["app.kubernetes.io/instance"], "t");
    assert_eq!(binding["metadata"]["name"], name);
    let spec = &policy["spec"];
    assert_eq!(spec["paramKind"], json!({"apiVersion": format!("{GROUP}/v1alpha1"), "kind": "InstanceBinding"}));
    assert_eq!(spec["failurePolicy"], "Fail");
    assert_eq!(
        spec["matchConstraints"]["resourceRules"],
        json!([{
            "apiGroups": [GROUP],
            "apiVersions": ["v1alpha1"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["securityprofiles"],
        }]),
        "SecurityProfiles only; not their status subresource"
    );
    // Metadata-only updates (the operator's finalizer patches) are not judged.
    let conditions = spec["matchConditions"].as_array().unwrap();
    assert_eq!(conditions.len(), 1);
    assert_eq!(conditions[0]["expression"], "request.operation == 'CREATE' || object.spec != oldObject.spec");

    // Every binding is a param and must pass; no binding at all: allowed.
    assert_eq!(binding["spec"]["policyName"], name);
    assert_eq!(binding["spec"]["paramRef"], json!({"selector": {}, "parameterNotFoundAction": "Allow"}));
    assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));
    assert!(binding["spec"].get("matchResources").is_none(), "every namespace by default");

    // Each validation: Forbidden, a static message as the fallback, a message naming the field and
    // the binding, and a check of every list of the binding (allowlist.rs's rule).
    let validations = spec["validations"].as_array().unwrap();
    let all_cel: String = validations
        .iter()
        .map(|v| v["expression"].as_str().unwrap())
        .chain(spec["variables"].as_array().unwrap().iter().map(|v| v["expression"].as_str().unwrap()))
        .collect::<Vec<_>>()
        .join("\n");
    for v in validations {
        assert_eq!(v["reason"], "Forbidden", "{v}");
        assert!(v["expression"].as_str().unwrap().starts_with("!variables.applies || "), "{v}");
        let message = v["messageExpression"].as_str().unwrap();
        assert!(message.starts_with("'spec."), "the message names the field: {message}");
        assert!(message.contains("variables.binding"), "the message names the binding: {message}");
        assert!(v["message"].as_str().is_some_and(|m| m.starts_with("spec.")), "{v}");
    }
    let fields: Vec<&str> = validations
        .iter()
        .map(|v| v["messageExpression"].as_str().unwrap().split(':').next().unwrap().trim_start_matches('\''))
        .collect();
    assert_eq!(
        fields,
        [
            "spec.permissions",
            "spec.permissions",
            "spec.applications[].applicationPermissions",
            "spec.applications[].applicationPermissions",
            "spec.allowedFlowModules[].flowModuleId",
            "spec.allowedAIAgents[].arn",
        ],
        "deny-list first: it wins over the allow-list"
    );
    for needle in [
        "params.spec.instanceId == object.spec.instanceId",
        "namespaceObject.metadata.name in params.spec.namespaces",
        "params.spec.namespaceSelector",
        "'In'",
        "'NotIn'",
        "'Exists'",
        "'DoesNotExist'",
        "params.spec.deniedPermissions",
        "params.spec.allowedPermissions",
        "params.spec.allowedFlowModules",
        "params.spec.allowedAIAgents",
        "lowerAscii()",
        "endsWith('*')",
        "startsWith(x)",
    ] {
        assert!(all_cel.contains(needle), "the policy's CEL does not use {needle}");
    }

    // Tunable.
    let docs = render_with_vap(&[
        "--set-json",
        r#"admissionPolicy={"validationActions":["Warn","Audit"],"failurePolicy":"Ignore","namespaceSelector":{"matchLabels":{"team":"a"}}}"#,
    ]);
    let binding = one(&docs, "ValidatingAdmissionPolicyBinding");
    assert_eq!(binding["spec"]["validationActions"], json!(["Warn", "Audit"]));
    assert_eq!(one(&docs, "ValidatingAdmissionPolicy")["spec"]["failurePolicy"], "Ignore");
    assert_eq!(binding["spec"]["matchResources"], json!({"namespaceSelector": {"matchLabels": {"team": "a"}}}));
    // A release that watches some namespaces judges only those.
    let docs = render_with_vap(&["--set", "watchNamespaces={team-a,team-b}"]);
    assert_eq!(
        one(&docs, "ValidatingAdmissionPolicyBinding")["spec"]["matchResources"],
        json!({"namespaceSelector": {"matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a", "team-b"]}
        ]}})
    );

    // Off: nothing. A cluster without the API (helm template's default API versions): nothing.
    let docs = render_with_vap(&["--set", "admissionPolicy.enabled=false"]);
    assert!(of_kind(&docs, "ValidatingAdmissionPolicy").is_empty());
    assert!(of_kind(&docs, "ValidatingAdmissionPolicyBinding").is_empty());
    let docs = render(&[]);
    assert!(of_kind(&docs, "ValidatingAdmissionPolicy").is_empty());
    assert!(of_kind(&docs, "ValidatingAdmissionPolicyBinding").is_empty());

    // The apiserver reads the params itself: the operator's RBAC is the same with the policy.
    let sa = "t-connect-operator";
    assert_eq!(grants(&render_with_vap(&[]), "ops", sa), grants(&render(&[]), "ops", sa));
}

/// The metric names the operator's /metrics endpoint declares (`# TYPE name kind`), read from a live
/// endpoint as Prometheus scrapes it (the HTTP layer sets the leader gauge).
fn exposed_metric_names() -> BTreeSet<String> {
    use std::io::{Read, Write};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let addr = runtime.block_on(async {
        let any = "127.0.0.1:0".parse().unwrap();
        // Labelled families are declared once they have a series.
        let metrics = connect_operator::runtime::Metrics::default();
        metrics.reconcile("error", "validation", std::time::Duration::from_millis(5));
        metrics.connect_call("DescribeSecurityProfile", "ThrottlingException");
        metrics.instance_listed("eu-west-2", "i-1");
        connect_operator::runtime::serve(any, metrics.into(), Default::default()).await.unwrap()
    });
    let text = std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        out
    })
    .join()
    .unwrap();
    drop(runtime);
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_prometheus_rule_alerts_on_metrics_the_operator_exposes() {
    let docs = render(&["--set", "metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true"]);
    let rule = one(&docs, "PrometheusRule");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    let rules = rule["spec"]["groups"][0]["rules"].as_array().expect("rules");
    let alerts: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
    assert_eq!(
        alerts,
        [
            "ConnectOperatorDown",
            "ConnectOperatorNoLeader",
            "ConnectOperatorReconcileErrors",
            "ConnectOperatorThrottled",
            "ConnectOperatorObservationBehind",
            "ConnectOperatorProfilesRevoked"
        ]
    );
    // The job label Prometheus gives the targets is the Service's app.kubernetes.io/name (ServiceMonitor jobLabel).
    let sm = one(&docs, "ServiceMonitor");
    assert_eq!(sm["spec"]["jobLabel"], "app.kubernetes.io/name");
    let job = one(&docs, "Service")["metadata"]["labels"]["app.kubernetes.io/name"].as_str().unwrap().to_string();
    let exposed = exposed_metric_names();
    assert!(exposed.contains("connect_operator_reconciles_total"), "{exposed:?}");
    let metric = regex::Regex::new(r"connect_operator_[a-z_]+").unwrap();
    for r in rules {
        let expr = r["expr"].as_str().expect("expr");
        assert!(expr.contains(&format!("job=\"{job}\"")), "{expr}");
        assert!(expr.contains("namespace=\"ops\""), "{expr}");
        assert!(r["for"].as_str().is_some_and(|f| f.ends_with('m')), "{r}");
        assert_eq!(r["labels"]["severity"], "warning");
        assert!(r["annotations"]["summary"].as_str().is_some_and(|s| !s.is_empty()));
        for name in metric.find_iter(expr) {
            assert!(
                exposed.contains(name.as_str()),
                "{} in {expr} is not a metric the operator exposes",
                name.as_str()
            );
        }
    }
    assert!(exposed.contains("connect_operator_revoked_profiles"), "{exposed:?}");
    let revoked = rules.iter().find(|r| r["alert"] == "ConnectOperatorProfilesRevoked").unwrap();
    assert_eq!(
        revoked["expr"], "max(connect_operator_revoked_profiles{namespace=\"ops\", job=\"connect-operator\"}) > 0",
        "the leader's gauge (a standby reports 0)"
    );
    assert_eq!(revoked["for"], "5m");
    let description = revoked["annotations"]["description"].as_str().unwrap();
    for needle in ["kubectl get csp -A", "PermissionRevoked", "BindingRevoked", "InstanceBinding"] {
        assert!(description.contains(needle), "{needle} in {description}");
    }
    let errors = rules.iter().find(|r| r["alert"] == "ConnectOperatorReconcileErrors").unwrap();
    assert!(errors["expr"].as_str().unwrap().ends_with("> 0.1"), "{}", errors["expr"]);

    // Tunable; and off by default.
    // (`--set` passes decimals as strings; a values file or --set-json passes numbers.)
    let docs = render(&[
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--set-json",
        "metrics.prometheusRule.errorRatio=0.25",
    ]);
    let rule = one(&docs, "PrometheusRule");
    assert!(rule["spec"]["groups"][0]["rules"][2]["expr"].as_str().unwrap().ends_with("> 0.25"));
    assert!(of_kind(&render(&[]), "PrometheusRule").is_empty());
    let out = helm(&["template", "x", CHART, "--set-json", "metrics.prometheusRule.errorRatio=2"]);
    assert!(!out.status.success(), "values.schema.json bounds errorRatio");
    assert!(text(&out).contains("errorRatio"), "{}", text(&out));
}

/// Whether a failure of `category` is meant to count towards the reconcile-error alert. An exhaustive
/// match: a new category does not compile until someone decides here whether it pages.
fn reconcile_error_pages(category: connect_operator::reconcile::error::Category) -> bool {
    use connect_operator::reconcile::error::Category;
    match category {
        // The operator cannot write to the API server.
        Category::Kubernetes => true,
        // Connect calls fail (after the client's own attempts).
        Category::Connect => true,
        // The operator or a binding names something that does not work (no Region, a role the
        // operator does not allow, a namespace it cannot read): an admin must act.
        Category::Configuration => true,
        // A user's spec: the resource's status says what to fix; nothing for the operator's on-call.
        Category::Validation => false,
        // Refused by an InstanceBinding (a team asking for what its binding does not allow, a name
        // another SecurityProfile owns): the team's status says so, like an invalid spec; a revoked
        // profile has its own alert (ConnectOperatorProfilesRevoked).
        Category::Policy => false,
    }
}

/// The categories a label matcher (`=`, `!=`, `=~`, `!~`) on `category` lets through, of `all`.
fn matched_categories<'a>(op: &str, value: &str, all: &[&'a str]) -> BTreeSet<&'a str> {
    let re = regex::Regex::new(&format!("^(?:{value})$")).unwrap();
    all.iter()
        .copied()
        .filter(|c| match op {
            "=" => *c == value,
            "!=" => *c != value,
            "=~" => re.is_match(c),
            "!~" => !re.is_match(c),
            _ => panic!("matcher {op}"),
        })
        .collect()
}

/// Issue 21: the reconcile-error alert selects exactly the categories meant to page, and every
/// category the operator labels its reconcile metric with has that decision made.
#[test]
fn the_reconcile_error_alert_selects_exactly_the_categories_meant_to_page() {
    use connect_operator::reconcile::error::Category;
    let all: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
    let meant: BTreeSet<&str> =
        Category::ALL.iter().filter(|c| reconcile_error_pages(**c)).map(|c| c.as_str()).collect();

    let docs = render(&["--set", "metrics.prometheusRule.enabled=true"]);
    let rules = one(&docs, "PrometheusRule")["spec"]["groups"][0]["rules"].as_array().expect("rules").clone();
    let selector = regex::Regex::new(r"connect_operator_reconciles_total\{([^}]*)\}").unwrap();
    let matcher = regex::Regex::new(r#"^\s*([a-z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"\s*$"#).unwrap();
    let mut alerts = 0;
    for rule in &rules {
        let expr = rule["expr"].as_str().expect("expr");
        for selected in selector.captures_iter(expr) {
            let mut categories: BTreeSet<&str> = all.iter().copied().collect();
            let mut errors = false;
            for m in selected[1].split(',').filter(|m| !m.trim().is_empty()) {
                let m = matcher.captures(m).unwrap_or_else(|| panic!("label matcher {m:?} in {expr}"));
                match &m[1] {
                    "result" => errors = &m[2] == "=" && &m[3] == "error",
                    "category" => {
                        if matches!(&m[2], "=" | "!=") {
                            assert!(all.contains(&&m[3]), "{:?} is not a category the operator reports: {expr}", &m[3]);
                        }
                        categories = &categories & &matched_categories(&m[2], &m[3], &all);
                    }
                    _ => {}
                }
            }
            if errors {
                alerts += 1;
                assert_eq!(
                    categories, meant,
                    "alert {} pages on these categories; reconcile_error_pages() says which should",
                    rule["alert"]
                );
            }
        }
    }
    assert_eq!(alerts, 1, "one alert on failed reconciles (ConnectOperatorReconcileErrors)");
}

// --- IAM -------------------------------------------------------------------------------------------

const PROFILE_ARN: &str = "arn:aws:connect:REGION:ACCOUNT_ID:instance/INSTANCE_ID/security-profile/*";
const INSTANCE_ARN: &str = "arn:aws:connect:REGION:ACCOUNT_ID:instance/INSTANCE_ID";
const OWNER_TAG: &str = "connect.cloud-operators.dev/owner-uid";
const NAMESPACE_TAG: &str = "connect.cloud-operators.dev/namespace";

#[test]
fn the_iam_policy_allows_only_the_connect_actions_the_operator_calls() {
    let policy: Value = serde_json::from_str(&read("deploy/iam-policy.json")).expect("JSON");
    assert_eq!(policy["Version"], "2012-10-17");
    let list = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
            other => panic!("not a string or list: {other}"),
        }
    };
    // (action, resource) -> the condition of the statement that allows it.
    let mut allowed: BTreeMap<(String, String), Value> = BTreeMap::new();
    let mut denied: BTreeSet<String> = BTreeSet::new();
    let mut sids = BTreeSet::new();
    for st in policy["Statement"].as_array().unwrap() {
        assert!(sids.insert(st["Sid"].as_str().expect("Sid").to_string()), "duplicate Sid");
        for key in ["NotAction", "NotResource", "Principal"] {
            assert!(st.get(key).is_none(), "{key} in {}", st["Sid"]);
        }
        let resources = list(&st["Resource"]);
        for r in &resources {
            assert!([PROFILE_ARN, INSTANCE_ARN].contains(&r.as_str()), "resource {r} is not scoped to one instance");
        }
        for a in list(&st["Action"]) {
            assert!(a.starts_with("connect:") && !a.contains('*'), "action {a}");
            match st["Effect"].as_str() {
                Some("Allow") => {
                    for r in &resources {
                        allowed.insert((a.clone(), r.clone()), st["Condition"].clone());
                    }
                }
                Some("Deny") => {
                    denied.insert(a.clone());
                }
                other => panic!("Effect {other:?}"),
            }
        }
    }
    let owner_required = |key: &str| serde_json::json!({"Null": {format!("{key}/{OWNER_TAG}"): "false"}});
    let condition = |a: &str, r: &str| allowed.get(&(format!("connect:{a}"), r.to_string())).cloned();
    for read in [
        "DescribeSecurityProfile",
        "ListSecurityProfilePermissions",
        "ListSecurityProfileApplications",
        "ListSecurityProfileFlowModules",
        "ListSecurityProfileAIAgents",
    ] {
        assert_eq!(condition(read, PROFILE_ARN), Some(Value::Null), "{read}: unconditional read");
    }
    for find in ["ListSecurityProfiles", "SearchSecurityProfiles"] {
        assert_eq!(condition(find, INSTANCE_ARN), Some(Value::Null), "{find}");
    }
    for change in ["UpdateSecurityProfile", "DeleteSecurityProfile", "UntagResource"] {
        assert_eq!(
            condition(change, PROFILE_ARN),
            Some(owner_required("aws:ResourceTag")),
            "{change}: owned profiles only"
        );
    }
    // Create carries both ownership tags (the owner's UID and its namespace).
    let both_required = serde_json::json!({"Null": {
        format!("aws:RequestTag/{OWNER_TAG}"): "false",
        format!("aws:RequestTag/{NAMESPACE_TAG}"): "false",
    }});
    assert_eq!(
        condition("CreateSecurityProfile", INSTANCE_ARN),
        Some(both_required.clone()),
        "create carries both tags"
    );
    assert!(denied.contains("connect:UntagResource"), "the ownership tags are never removed");
    assert!(denied.contains("connect:TagResource"), "the ownership tags of an owned profile are never rewritten");
    let tag_conditions: Vec<Value> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|st| st["Effect"] == "Allow" && list(&st["Action"]).contains(&"connect:TagResource".to_string()))
        .map(|st| st["Condition"].clone())
        .collect();
    let mut tag_owned = owner_required("aws:ResourceTag");
    tag_owned["ForAllValues:StringNotEquals"] = serde_json::json!({"aws:TagKeys": [OWNER_TAG, NAMESPACE_TAG]});
    let mut claim = both_required;
    claim["Null"][format!("aws:ResourceTag/{OWNER_TAG}")] = "true".into();
    let add_namespace = serde_json::json!({
        "Null": {
            format!("aws:ResourceTag/{OWNER_TAG}"): "false",
            format!("aws:ResourceTag/{NAMESPACE_TAG}"): "true",
            format!("aws:RequestTag/{NAMESPACE_TAG}"): "false",
        },
        "ForAllValues:StringNotEquals": {"aws:TagKeys": [OWNER_TAG]},
    });
    assert_eq!(
        tag_conditions,
        [tag_owned, claim, add_namespace],
        "tags other than the ownership tags change on owned profiles, an unowned one is claimed with both (adoption), and a profile owned before the namespace tag existed gets it once"
    );
    let allowed: BTreeSet<(String, String)> = allowed.into_keys().collect();

    // Every Connect operation the operator's code calls is allowed (the SDK's snake_case method
    // names, compared without case and underscores: list_security_profile_ai_agents ~ ListSecurityProfileAIAgents).
    let allowed_ops: BTreeSet<String> =
        allowed.iter().map(|(a, _)| a.trim_start_matches("connect:").to_lowercase()).collect();
    let call =
        regex::Regex::new(r"\.((?:create|describe|update|delete|list|search|tag|untag)_[a-z0-9_]+)\(\)").unwrap();
    let mut called = BTreeSet::new();
    let mut dirs = vec![repo_root().join("src/connect")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                for m in call.captures_iter(&std::fs::read_to_string(&path).unwrap()) {
                    let op = &m[1];
                    if op.contains("security_profile")
                        || ["tag_resource", "untag_resource", "list_tags_for_resource", "describe_instance"]
                            .contains(&op)
                    {
                        called.insert(op.replace('_', ""));
                    }
                }
            }
        }
    }
    assert!(called.contains("createsecurityprofile"), "the scan finds the SDK calls");
    let missing: Vec<&String> = called.difference(&allowed_ops).collect();
    assert!(
        missing.is_empty(),
        "src/connect calls Connect operations deploy/iam-policy.json does not allow: {missing:?}"
    );
    let unused: Vec<&String> = allowed_ops.difference(&called).collect();
    assert!(unused.is_empty(), "deploy/iam-policy.json allows operations the operator never calls: {unused:?}");
}

// --- the image -------------------------------------------------------------------------------------

#[test]
fn the_dockerfile_builds_the_static_release_binary_into_a_nonroot_distroless_cc_image() {
    let dockerfile = read("Dockerfile");
    let lines: Vec<&str> = dockerfile.lines().map(str::trim).collect();
    let has = |needle: &str| dockerfile.contains(needle);
    let from: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(from.len(), 2, "a builder and a final stage");
    // The same kind of binary and base as scripts/image/build.sh (`make image`): glibc from bookworm
    // (Debian 12) linked in statically with the Makefile's flags and target, the repository's release
    // profile; CA certificates and nonroot at run time.
    assert!(from[0].contains("rust:${RUST_VERSION}-bookworm") && has("ARG RUST_VERSION=1"));
    assert!(from[1].contains("gcr.io/distroless/cc-debian12:nonroot"));
    let makefile = read("Makefile");
    let triple = makefile.lines().find_map(|l| l.strip_prefix("RELEASE_TRIPLE := ")).expect("RELEASE_TRIPLE");
    let env = makefile
        .lines()
        .find_map(|l| l.trim().strip_prefix("RELEASE_BUILD = "))
        .and_then(|l| l.strip_suffix(" \\"))
        .expect("RELEASE_BUILD = VAR=\"flags\" \\");
    assert!(has(&format!("ENV {env}")), "the Dockerfile sets {env} as the Makefile does");
    assert!(has(&format!("cargo build --release --locked --bin connect-operator --target {triple}")));
    assert!(has("ldd /connect-operator 2>&1 | grep -Eq 'statically linked"), "the build checks the binary is static");
    assert!(lines.contains(&"USER 65532:65532"));
    assert!(lines.contains(&"ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"));
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("ENTRYPOINT")).collect::<Vec<_>>(),
        [&r#"ENTRYPOINT ["/connect-operator"]"#]
    );
    assert_eq!(lines.iter().filter(|l| l.starts_with("CMD")).collect::<Vec<_>>(), [&r#"CMD ["run"]"#]);
    // The build context: sources in, build output and logs out.
    let ignore = read(".dockerignore");
    let rules: Vec<&str> = ignore.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    for rule in ["*", "!Cargo.toml", "!Cargo.lock", "!build.rs", "!src/", "**/target"] {
        assert!(rules.contains(&rule), ".dockerignore lacks {rule}");
    }
    // The package's build script (link flags) is part of the build.
    assert!(lines.iter().any(|l| l.starts_with("COPY ") && l.contains(" build.rs")), "the Dockerfile copies build.rs");
    // Every path the Dockerfile copies from the context is let through.
    for l in lines.iter().filter(|l| l.starts_with("COPY ") && !l.contains("--from")) {
        for src in l.split_whitespace().skip(1).collect::<Vec<_>>().split_last().unwrap().1 {
            let allowed = rules
                .iter()
                .any(|r| r.strip_prefix('!').is_some_and(|r| r.trim_end_matches('/') == src.trim_end_matches('/')));
            assert!(allowed, "COPY {src}: excluded by .dockerignore");
        }
    }
}

// --- the chart and the binary agree ----------------------------------------------------------------

/// Starts the operator binary with exactly the args and environment of the rendered Deployment (the
/// downward-API variables filled in, METRICS_ADDR moved to a free port, a kubeconfig whose apiserver
/// does not answer): it must parse them all and start, not fail with a usage error.
#[test]
fn the_operator_binary_accepts_the_args_and_environment_the_chart_gives_it() {
    let dir = std::env::temp_dir().join(format!("connect-operator-packaging-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: x, cluster: {server: \"https://127.0.0.1:1\"}}]\n\
         users: [{name: x, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: x, user: x}}]\n\
         current-context: x\n",
    )
    .unwrap();
    let variants: &[&[&str]] = &[
        &[],
        &[
            "--set",
            "leaderElection.enabled=false,region=eu-west-1,roleArn=arn:aws:iam::123456789012:role/x",
            "--set",
            "watchNamespaces={team-a,team-b},connect.rate=0.5,connect.burst=3,logFormat=text,resyncInterval=90s",
            "--set",
            "concurrency=2,logLevel=info\\,connect_operator=debug,externalId=connect-operator-prod",
            "--set-json",
            r#"allowedRoleArns=["arn:aws:iam::111122223333:role/connect-team-*","arn:aws:iam::111122223333:role/x"]"#,
        ],
    ];
    for (i, values) in variants.iter().enumerate() {
        let docs = render(values);
        let container = &one(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0];
        let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        let log_path = dir.join(format!("operator-{i}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_connect-operator"));
        cmd.args(&args).env_clear();
        for e in container["env"].as_array().unwrap() {
            let name = e["name"].as_str().unwrap();
            let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.name") => "connect-operator-7d9c-x2x4z".to_string(),
                Some("metadata.namespace") => "ops".to_string(),
                Some(other) => panic!("unexpected fieldRef {other}"),
                None => e["value"].as_str().expect("env value").to_string(),
            };
            cmd.env(name, value);
        }
        let mut child = cmd
            .env("METRICS_ADDR", "127.0.0.1:0")
            .env("KUBECONFIG", &kubeconfig)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ACCESS_KEY_ID", "AKIDPACKAGING")
            .env("AWS_SECRET_ACCESS_KEY", "packaging")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start connect-operator");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let started = loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if text.contains("starting connect-operator") {
                break Ok(text);
            }
            if let Some(status) = child.try_wait().unwrap() {
                break Err(format!("exited with {status}:\n{text}"));
            }
            if std::time::Instant::now() > deadline {
                break Err(format!("did not start within 20s:\n{text}"));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let _ = child.kill();
        let _ = child.wait();
        started.unwrap_or_else(|e| panic!("connect-operator {args:?} with the chart's env {values:?} {e}"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The observe-only installation's policy (deploy/iam-policy-readonly.json) allows reading only: the
/// read and find actions of the full policy, on the same resources, and not a single write.
#[test]
fn the_read_only_iam_policy_allows_only_reads() {
    let policy: Value = serde_json::from_str(&read("deploy/iam-policy-readonly.json")).expect("JSON");
    let mut actions = BTreeSet::new();
    for st in policy["Statement"].as_array().unwrap() {
        assert_eq!(st["Effect"], "Allow");
        for r in st["Resource"]
            .as_str()
            .into_iter()
            .chain(st["Resource"].as_array().into_iter().flatten().filter_map(Value::as_str))
        {
            assert!([PROFILE_ARN, INSTANCE_ARN].contains(&r), "{r}");
        }
        for a in st["Action"].as_array().unwrap() {
            actions.insert(a.as_str().unwrap().trim_start_matches("connect:").to_string());
        }
    }
    let expected: BTreeSet<String> = [
        "ListSecurityProfiles",
        "SearchSecurityProfiles",
        "DescribeSecurityProfile",
        "ListSecurityProfilePermissions",
        "ListSecurityProfileApplications",
        "ListSecurityProfileFlowModules",
        "ListSecurityProfileAIAgents",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(actions, expected);
    // The chart value that selects the observe-only mode reaches the operator.
    let docs = render(&["--set", "observeOnly=true"]);
    let env = one(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"].clone();
    assert!(env.as_array().unwrap().iter().any(|e| e["name"] == "OBSERVE_ONLY" && e["value"] == "true"), "{env}");
}
