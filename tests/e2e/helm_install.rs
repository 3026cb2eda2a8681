//! End to end: the Helm chart installs into the real apiserver, and its RBAC is exactly enough.
//! The chart's Deployment runs no pod here (replicaCount 0; the plain test cluster has no kubelet anyway):
//! the operator binary runs on the host instead, authenticated with a token of the chart's ServiceAccount.
//! tests/e2e/node.rs runs the chart's pod on the node (make e2e-node).

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};

use crate::harness::{Release, TestEnv, client_for_kubeconfig, kubectl, manifest, ok, repo_path};
use crate::support::GROUP;

const T: Duration = Duration::from_secs(30);
/// No pod of the chart's Deployment: on a cluster with a node (make e2e-node leaves one running, with the
/// image imported) it would run beside the operator process these tests start, contending for its Lease.
const NO_POD: &str = "replicaCount=0";

/// One access question: (namespace or "", verb, group, resource[/subresource], name or "").
type Access<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str);

/// Asks the apiserver, with the ServiceAccount's own token, whether it may do each of `checks`;
/// returns those whose answer is not `expected`.
async fn access_mismatches(client: &kube::Client, checks: &[Access<'_>], expected: bool) -> Vec<String> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let reviews = checks.iter().map(|&(ns, verb, group, resource, name)| {
        let api = api.clone();
        async move {
            let (resource, subresource) = match resource.split_once('/') {
                Some((r, s)) => (r, Some(s.to_string())),
                None => (resource, None),
            };
            let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        namespace: some(ns),
                        verb: Some(verb.into()),
                        group: Some(group.into()),
                        resource: Some(resource.into()),
                        subresource,
                        name: some(name),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            let answer = api.create(&PostParams::default(), &review).await.expect("SelfSubjectAccessReview");
            let allowed = answer.status.map(|s| s.allowed).unwrap_or(false);
            (allowed != expected).then(|| {
                format!(
                    "{verb} {group}/{resource}{} {name} in {:?}: allowed={allowed}",
                    subresource_suffix(&review),
                    ns
                )
            })
        }
    });
    futures::future::join_all(reviews).await.into_iter().flatten().collect()
}

fn subresource_suffix(review: &SelfSubjectAccessReview) -> String {
    review
        .spec
        .resource_attributes
        .as_ref()
        .and_then(|r| r.subresource.as_ref())
        .map(|s| format!("/{s}"))
        .unwrap_or_default()
}

/// `kubectl auth can-i ... --as=<sa>`: "yes" or "no".
fn can_i(sa: &str, args: &[&str]) -> String {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    let as_sa = format!("--as={sa}");
    all.push(&as_sa);
    let out = kubectl(&all, None);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn operator_supports(flag: &str) -> bool {
    let out = Command::new(crate::harness::bin("connect-operator"))
        .args(["run", "--help"])
        .output()
        .expect("connect-operator run --help");
    String::from_utf8_lossy(&out.stdout).contains(flag)
}

#[tokio::test]
async fn the_chart_installs_and_its_namespaced_rbac_is_enough_for_the_operator_and_no_more() {
    let mut env = TestEnv::new("packaging", &["--throttle-rate", "0"]).await;
    let suffix = env.ns.rsplit('-').next().unwrap().to_string();
    let release = Release::install(
        format!("co-{suffix}"),
        format!("{}-op", env.ns),
        &["--set", NO_POD, "--set", &format!("watchNamespaces={{{}}}", env.ns)],
    );
    let fullname = release.fullname();

    // What the chart created: in its namespace, and a Role in the watched one.
    for (ns, kind, name) in [
        (&release.ns, "serviceaccount", fullname.clone()),
        (&release.ns, "deployment", fullname.clone()),
        (&release.ns, "service", format!("{fullname}-metrics")),
        (&release.ns, "role", format!("{fullname}-leader-election")),
        (&release.ns, "rolebinding", format!("{fullname}-leader-election")),
        (&env.ns, "role", fullname.clone()),
        (&env.ns, "rolebinding", fullname.clone()),
    ] {
        ok(kubectl(&["get", kind, &name, "-n", ns, "-o", "name"], None), &format!("kubectl get {kind} {name} -n {ns}"));
    }
    let cluster_bindings = ok(
        kubectl(
            &[
                "get",
                "clusterrolebindings",
                "-l",
                &format!("app.kubernetes.io/instance={}", release.name),
                "-o",
                "name",
            ],
            None,
        ),
        "kubectl get clusterrolebindings",
    );
    assert_eq!(
        cluster_bindings.trim(),
        format!("clusterrolebinding.rbac.authorization.k8s.io/{fullname}-bindings"),
        "cluster-wide only the InstanceBindings (cluster-scoped) when watchNamespaces is set"
    );

    // The ServiceAccount, with its own token: what it may do, and what it may not.
    let sa_kubeconfig = release.service_account_kubeconfig();
    let sa = client_for_kubeconfig(&sa_kubeconfig).await;
    let ns_owned = env.ns.clone();
    let ns = ns_owned.as_str();
    let rel = release.ns.as_str();
    let allowed: Vec<Access> = vec![
        (ns, "get", GROUP, "securityprofiles", ""),
        (ns, "list", GROUP, "securityprofiles", ""),
        (ns, "watch", GROUP, "securityprofiles", ""),
        (ns, "patch", GROUP, "securityprofiles", "p"),
        (ns, "patch", GROUP, "securityprofiles/status", "p"),
        (ns, "update", GROUP, "securityprofiles/finalizers", "p"),
        (ns, "create", "events.k8s.io", "events", ""),
        (ns, "get", "", "namespaces", ns),
        ("", "list", GROUP, "instancebindings", ""),
        ("", "watch", GROUP, "instancebindings", ""),
        ("", "patch", GROUP, "instancebindings/status", "b"),
        (rel, "create", "coordination.k8s.io", "leases", ""),
        (rel, "get", "coordination.k8s.io", "leases", &fullname),
        (rel, "update", "coordination.k8s.io", "leases", &fullname),
    ];
    let denied: Vec<Access> = vec![
        (ns, "create", GROUP, "securityprofiles", ""),
        (ns, "update", GROUP, "securityprofiles", "p"),
        (ns, "delete", GROUP, "securityprofiles", "p"),
        (ns, "update", GROUP, "securityprofiles/status", "p"),
        ("default", "list", GROUP, "securityprofiles", ""),
        ("", "list", GROUP, "securityprofiles", ""),
        (ns, "get", "", "secrets", "s"),
        (ns, "list", "", "secrets", ""),
        (ns, "delete", "", "secrets", "s"),
        (ns, "list", "", "configmaps", ""),
        (ns, "create", "", "pods", ""),
        (ns, "create", "", "serviceaccounts/token", "x"),
        (ns, "create", "rbac.authorization.k8s.io", "rolebindings", ""),
        (ns, "escalate", "rbac.authorization.k8s.io", "roles", ""),
        (ns, "get", "", "events", ""),
        (ns, "create", "", "events", ""),
        (ns, "patch", "events.k8s.io", "events", "e"),
        ("", "create", GROUP, "instancebindings", ""),
        ("", "update", GROUP, "instancebindings", "b"),
        ("", "delete", GROUP, "instancebindings", "b"),
        ("", "create", "apiextensions.k8s.io", "customresourcedefinitions", ""),
        ("", "list", "", "namespaces", ""),
        ("default", "get", "", "namespaces", "default"),
        (rel, "update", "coordination.k8s.io", "leases", "another-lease"),
        (rel, "delete", "coordination.k8s.io", "leases", &fullname),
        (ns, "create", "coordination.k8s.io", "leases", ""),
    ];
    let mut wrong = access_mismatches(&sa, &allowed, true).await;
    wrong.extend(access_mismatches(&sa, &denied, false).await);
    assert!(wrong.is_empty(), "RBAC of {}:\n{}", release.service_account(), wrong.join("\n"));
    // The same questions as an administrator would ask them.
    for args in [
        &["delete", "secrets", "-n", ns][..],
        &["list", "configmaps", "-n", ns],
        &["create", "customresourcedefinitions"],
    ] {
        assert_eq!(can_i(&release.service_account(), args), "no", "can-i {args:?}");
    }
    assert_eq!(
        can_i(&release.service_account(), &["patch", "securityprofiles.connect.cloud-operators.dev", "-n", ns]),
        "yes"
    );

    // The operator, as that ServiceAccount: a profile becomes Ready, its Event is recorded, and
    // deletion (finalizer removal) goes through.
    let pod_name = format!("{fullname}-e2e");
    let mut extra: Vec<String> = Vec::new();
    let leader_election = operator_supports("--leader-elect") && operator_supports("--lease-name");
    if leader_election {
        extra.extend(["--leader-elect".into(), "--lease-name".into(), fullname.clone()]);
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    env.start_operator_with_env(
        &extra,
        &[("KUBECONFIG", sa_kubeconfig.to_str().unwrap()), ("POD_NAMESPACE", rel), ("POD_NAME", &pod_name)],
    );
    env.apply_ok(&manifest(
        "agents",
        json!({"securityProfileName": "Packaged Agents", "permissions": ["BasicAgentAccess"]}),
    ));
    let sp = env.wait_condition("agents", "Ready", "True", T).await;
    assert!(sp.status.unwrap().security_profile_id.is_some());
    let events: Api<Event> = Api::namespaced(env.client.clone(), ns);
    env.wait_for("the Created event", T, async || {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("Created") && e.involved_object.name.as_deref() == Some("agents"))
    })
    .await;
    if leader_election {
        let leases: Api<Lease> = Api::namespaced(env.client.clone(), rel);
        env.wait_for("the leader Lease", T, async || {
            leases.get_opt(&fullname).await.ok().flatten()?.spec?.holder_identity
        })
        .await;
    }
    ok(env.kubectl(&["delete", "securityprofile", "agents", "--wait=false"]), "kubectl delete");
    let api = env.api();
    env.wait_for("the SecurityProfile to be deleted", T, async || {
        matches!(api.get_opt("agents").await, Ok(None)).then_some(())
    })
    .await;
    assert!(
        env.emulator.calls().iter().any(|c| c.operation == "DeleteSecurityProfile"),
        "the profile was deleted in Connect"
    );
    let log = std::fs::read_to_string(&env.operator.as_ref().unwrap().log).unwrap();
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the operator met a permission it lacks:\n{}",
        env.operator_log_tail()
    );
    drop(env);
    let mut release = release;
    release.uninstall();
}

#[tokio::test]
async fn the_chart_for_all_namespaces_upgrades_to_namespaced_takes_over_the_crd_and_keeps_it_on_uninstall() {
    let env = TestEnv::new("packaging-cluster", &["--throttle-rate", "0"]).await;
    let suffix = env.ns.rsplit('-').next().unwrap().to_string();
    let mut release = Release::install(format!("cw-{suffix}"), format!("{}-op", env.ns), &["--set", NO_POD]);
    let fullname = release.fullname();
    for kind in ["clusterrole", "clusterrolebinding"] {
        ok(kubectl(&["get", kind, &fullname, "-o", "name"], None), &format!("kubectl get {kind} {fullname}"));
    }
    let sa = client_for_kubeconfig(&release.service_account_kubeconfig()).await;
    let rel = release.ns.as_str();
    let allowed: Vec<Access> = vec![
        ("", "list", GROUP, "securityprofiles", ""),
        ("", "watch", GROUP, "securityprofiles", ""),
        ("default", "patch", GROUP, "securityprofiles/status", "p"),
        ("default", "update", GROUP, "securityprofiles/finalizers", "p"),
        ("default", "create", "events.k8s.io", "events", ""),
        ("", "get", "", "namespaces", "default"),
        (rel, "create", "coordination.k8s.io", "leases", ""),
    ];
    let denied: Vec<Access> = vec![
        ("", "list", "", "namespaces", ""),
        ("", "list", "", "secrets", ""),
        ("default", "delete", "", "secrets", "s"),
        ("default", "list", "", "configmaps", ""),
        ("", "create", "apiextensions.k8s.io", "customresourcedefinitions", ""),
        ("", "delete", GROUP, "securityprofiles", "p"),
        ("default", "create", "coordination.k8s.io", "leases", ""),
    ];
    let mut wrong = access_mismatches(&sa, &allowed, true).await;
    wrong.extend(access_mismatches(&sa, &denied, false).await);
    assert!(wrong.is_empty(), "RBAC of {}:\n{}", release.service_account(), wrong.join("\n"));

    // helm upgrade to watched namespaces swaps the cluster-wide grant for a Role; with crds.install=true
    // the upgrade takes over the CRD (the harness installed it with kubectl: adopt it first).
    let chart_crd = std::fs::read_to_string(repo_path("charts/connect-operator/files/securityprofile.yaml")).unwrap();
    assert_eq!(
        chart_crd,
        std::fs::read_to_string(repo_path("crds/securityprofile.yaml")).unwrap(),
        "the chart's CRD copy is stale (tests/chart_and_manifests.rs says how to refresh it); not applying it to the shared cluster"
    );
    adopt_crd(&release);
    release.upgrade(&["--set", &format!("watchNamespaces={{{}}}", env.ns), "--set", "crds.install=true"]);
    let crd: Value = serde_json::from_str(&ok(kubectl(&["get", CRD, "-o", "json"], None), "kubectl get crd")).unwrap();
    assert_eq!(crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep");
    assert_eq!(crd["metadata"]["annotations"]["meta.helm.sh/release-name"], release.name.as_str());
    let out = kubectl(&["get", "clusterrolebinding", &fullname], None);
    assert!(!out.status.success(), "the ClusterRoleBinding is gone after the upgrade");
    let now_allowed: Vec<Access> = vec![(&env.ns, "list", GROUP, "securityprofiles", "")];
    let now_denied: Vec<Access> = vec![
        ("", "list", GROUP, "securityprofiles", ""),
        ("default", "list", GROUP, "securityprofiles", ""),
        ("", "get", "", "namespaces", "default"),
    ];
    let mut wrong = access_mismatches(&sa, &now_allowed, true).await;
    wrong.extend(access_mismatches(&sa, &now_denied, false).await);
    assert!(wrong.is_empty(), "RBAC after the upgrade:\n{}", wrong.join("\n"));

    // helm uninstall removes the operator but keeps the CRD, and with it every SecurityProfile.
    let out = release.uninstall();
    assert!(out.contains("kept due to the resource policy"), "{out}");
    ok(kubectl(&["get", CRD, "-o", "name"], None), "the CRD survives helm uninstall");
    ok(kubectl(&["get", "securityprofiles", "-A"], None), "SecurityProfiles are still served");
    let out = kubectl(&["get", "clusterrole", &fullname], None);
    assert!(!out.status.success(), "the operator's ClusterRole is gone with the release");
}

const CRD: &str = "customresourcedefinition/securityprofiles.connect.cloud-operators.dev";
const BINDING_CRD: &str = "customresourcedefinition/instancebindings.connect.cloud-operators.dev";

/// Marks the installed CRDs as belonging to `release`, so that Helm adopts them instead of refusing to
/// overwrite objects it did not create.
fn adopt_crd(release: &Release) {
    for crd in [CRD, BINDING_CRD] {
        adopt(release, crd);
    }
}

fn adopt(release: &Release, crd: &str) {
    ok(
        kubectl(
            &[
                "annotate",
                crd,
                "--overwrite",
                &format!("meta.helm.sh/release-name={}", release.name),
                &format!("meta.helm.sh/release-namespace={}", release.ns),
            ],
            None,
        ),
        "kubectl annotate crd",
    );
    ok(kubectl(&["label", crd, "--overwrite", "app.kubernetes.io/managed-by=Helm"], None), "kubectl label crd");
}
