//! End to end: the chart's ValidatingAdmissionPolicy (templates/validatingadmissionpolicy.yaml) in the
//! real kube-apiserver refuses, at `kubectl apply` and at server-side apply, a SecurityProfile asking for
//! what an InstanceBinding covering it does not allow, naming the field, the value and the binding; the
//! same rule as the controller's PermissionNotAllowed (src/domain/allowlist.rs). No operator runs: the
//! apiserver alone decides, reading the InstanceBindings as the policy's params.
//!
//! The policy is the chart's, rendered with `helm template` (as a release of its own, so its name is this
//! test's), and its binding is narrowed to the namespaces labelled for this test
//! (`admissionPolicy.namespaceSelector`): the policy is cluster-scoped, and other tests running in
//! parallel store profiles that their bindings refuse on purpose (to see the controller refuse them).
//! The bindings name an instance of this test's own, so no other test's binding judges these profiles.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{TestEnv, helm, kubectl, ok};
use crate::support::API_VERSION;

const VAP_API: &str = "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy";
/// Only namespaces with this label (value: the test's namespace) are judged by the test's policy.
const SCOPE_LABEL: &str = "e2e.connect.cloud-operators.dev/admission";
/// How long the apiserver may take to load a new policy, its binding or a changed param.
const ACTIVE: Duration = Duration::from_secs(30);
const AGENT_OK: &str = "arn:aws:connect:us-east-1:111122223333:instance/i-1/ai-agent/ok";
const AGENT_OTHER: &str = "arn:aws:connect:us-east-1:111122223333:instance/i-1/ai-agent/other";

/// The chart's policy and binding, installed for one test; deleted on drop.
struct Policy {
    name: String,
}

impl Policy {
    /// `helm template` of the chart's policy for the cluster's API, applied with kubectl.
    fn install(env: &TestEnv) -> Self {
        let suffix = env.ns.rsplit('-').next().unwrap();
        let release = format!("adm-{suffix}");
        let selector = json!({"matchLabels": {SCOPE_LABEL: env.ns}}).to_string();
        let rendered = ok(
            helm(&[
                "template",
                &release,
                "charts/connect-operator",
                "--namespace",
                &format!("{}-op", env.ns),
                "--api-versions",
                VAP_API,
                "--show-only",
                "templates/validatingadmissionpolicy.yaml",
                "--set-json",
                &format!("admissionPolicy.namespaceSelector={selector}"),
            ]),
            "helm template (the policy)",
        );
        assert!(rendered.contains("kind: ValidatingAdmissionPolicyBinding"), "{rendered}");
        let policy = Policy { name: format!("{release}-connect-operator-instancebindings") };
        ok(kubectl(&["apply", "-f", "-"], Some(&rendered)), "kubectl apply (the policy)");
        policy
    }
}

impl Drop for Policy {
    fn drop(&mut self) {
        for kind in ["validatingadmissionpolicybinding", "validatingadmissionpolicy"] {
            let _ = kubectl(&["delete", kind, &self.name, "--ignore-not-found", "--wait=false"], None);
        }
    }
}

/// Labels `ns` so that this test's policy judges its SecurityProfiles.
fn scope(env: &TestEnv, ns: &str) {
    env.label_namespace(ns, &format!("{SCOPE_LABEL}={}", env.ns));
}

fn profile(name: &str, instance: &str, spec: Value) -> String {
    let mut full = json!({"instanceId": instance, "securityProfileName": name});
    full.as_object_mut().unwrap().extend(spec.as_object().cloned().unwrap_or_default());
    json!({"apiVersion": API_VERSION, "kind": "SecurityProfile", "metadata": {"name": name}, "spec": full}).to_string()
}

/// How a user applies a manifest.
#[derive(Clone, Copy, Debug)]
enum Apply {
    /// `kubectl apply` (client-side).
    Client,
    /// `kubectl apply --server-side` (taking over fields another manager set, as a GitOps tool would).
    ServerSide,
    /// `kubectl apply --dry-run=server`: judged, never stored.
    DryRun,
}

/// Applies `manifest` in `ns`; `Ok(stdout)` or `Err(stdout + stderr)`.
fn apply(ns: &str, manifest: &str, how: Apply) -> Result<String, String> {
    let mut args = vec!["apply", "-n", ns, "-f", "-"];
    match how {
        Apply::Client => {}
        Apply::ServerSide => args.extend(["--server-side", "--force-conflicts", "--field-manager=e2e-admission"]),
        Apply::DryRun => args.push("--dry-run=server"),
    }
    let out = kubectl(&args, Some(manifest));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() { Ok(text) } else { Err(text) }
}

fn admitted(ns: &str, manifest: &str, how: Apply) {
    if let Err(e) = apply(ns, manifest, how) {
        panic!("{how:?} apply in {ns} was refused:\n{e}\n--- manifest ---\n{manifest}");
    }
}

/// The apply is refused by the policy; returns the error output.
fn refused(ns: &str, manifest: &str, how: Apply) -> String {
    match apply(ns, manifest, how) {
        Ok(out) => panic!("{how:?} apply in {ns} was admitted: {out}\n--- manifest ---\n{manifest}"),
        Err(e) => {
            assert!(e.contains("is forbidden") && e.contains("denied request"), "not the policy's refusal: {e}");
            e
        }
    }
}

/// Refused at every kind of apply, the output containing each of `needles`; nothing stored.
fn refused_naming(ns: &str, manifest: &str, needles: &[&str]) {
    let name = serde_json::from_str::<Value>(manifest).unwrap()["metadata"]["name"].as_str().unwrap().to_string();
    for how in [Apply::Client, Apply::ServerSide, Apply::DryRun] {
        let out = refused(ns, manifest, how);
        for needle in needles {
            assert!(out.contains(needle), "{how:?} apply: the refusal does not name {needle}:\n{out}");
        }
    }
    let get = kubectl(&["get", "securityprofile", &name, "-n", ns, "--ignore-not-found", "-o", "name"], None);
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "", "{name} was stored");
}

/// Polls a server dry run of `manifest` until the policy's verdict is `refuse` (a new policy, binding,
/// param or namespace label takes the apiserver a moment to see), within [`ACTIVE`].
fn until_verdict(ns: &str, manifest: &str, refuse: bool, what: &str) {
    let deadline = Instant::now() + ACTIVE;
    loop {
        let result = apply(ns, manifest, Apply::DryRun);
        match (&result, refuse) {
            (Err(e), true) if e.contains("denied request") => return,
            (Ok(_), false) => return,
            _ => {}
        }
        assert!(Instant::now() < deadline, "{what}: no such verdict within {ACTIVE:?}; last: {result:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[tokio::test]
async fn a_profile_asking_for_what_its_binding_does_not_allow_is_refused_at_apply_naming_field_value_and_binding() {
    let env = TestEnv::new("admission", &[]).await;
    let ns = env.ns.as_str();
    let instance = format!("adm-{ns}");
    scope(&env, ns);
    let _policy = Policy::install(&env);
    let name = format!("{ns}-a");
    let _binding = env.bind(
        &name,
        json!({
            "instanceId": instance,
            "region": "us-east-1",
            "namespaces": [ns],
            "allowedPermissions": ["BasicAgentAccess", "AccessMetrics", "Users.*"],
            "deniedPermissions": ["Users.Delete", "securityprofiles.*"],
            "allowedFlowModules": ["fm-team-a-*"],
            "allowedAIAgents": [AGENT_OK],
        }),
    );
    let p = |spec: Value| profile("agents", &instance, spec);
    until_verdict(ns, &p(json!({"permissions": ["OutboundCallAccess"]})), true, "the policy refuses");
    let by = format!("by InstanceBinding {name}");

    // (a) A permission the allow-list does not name: refused, the message naming field, value, binding.
    refused_naming(
        ns,
        &p(json!({"permissions": ["BasicAgentAccess", "OutboundCallAccess"]})),
        &[&format!(r#"spec.permissions: "OutboundCallAccess" is not allowed {by} (allowedPermissions)"#)],
    );
    // Every value that is not allowed is named.
    refused_naming(
        ns,
        &p(json!({"permissions": ["OutboundCallAccess", "ContactSearch.View"]})),
        &[r#""OutboundCallAccess", "ContactSearch.View" are not allowed"#, &by],
    );

    // (b) Case: a case variant of an allowed name is that name (allowed); of another name, refused.
    refused_naming(
        ns,
        &p(json!({"permissions": ["basicagentaccess", "OUTBOUNDCALLACCESS"]})),
        &[r#"spec.permissions: "OUTBOUNDCALLACCESS" is not allowed"#, &by],
    );
    // Application permissions, against the same lists.
    refused_naming(
        ns,
        &p(json!({"applications": [
            {"namespace": "app-1", "applicationPermissions": ["Users.View", "Admin.Everything"]},
            {"namespace": "app-2", "applicationPermissions": ["accessmetrics"]},
        ]})),
        &[r#"spec.applications[].applicationPermissions: "app-1: Admin.Everything" is not allowed"#, &by],
    );
    // Flow modules by ID (prefix fm-team-a-*), an entry without an ID included.
    refused_naming(
        ns,
        &p(json!({"allowedFlowModules": [
            {"type": "MCP", "flowModuleId": "FM-TEAM-A-1"},
            {"type": "MCP", "flowModuleId": "fm-team-b-1"},
        ]})),
        &[r#"spec.allowedFlowModules[].flowModuleId: "fm-team-b-1" is not allowed"#, "(allowedFlowModules)", &by],
    );
    refused_naming(ns, &p(json!({"allowedFlowModules": [{"type": "MCP"}]})), &["flowModuleId: (none) is not allowed"]);
    // AI agents by ARN.
    refused_naming(
        ns,
        &p(json!({"allowedAIAgents": [{"type": "THIRD_PARTY", "arn": AGENT_OTHER}]})),
        &[&format!(r#"spec.allowedAIAgents[].arn: "{AGENT_OTHER}" is not allowed {by} (allowedAIAgents)"#)],
    );

    // (e) The deny-list wins over the allow-list (Users.* allows Users.Delete), in any case.
    refused_naming(
        ns,
        &p(json!({"permissions": ["Users.View", "users.DELETE"]})),
        &[&format!(r#"spec.permissions: "users.DELETE" is denied {by} (deniedPermissions)"#)],
    );
    refused_naming(
        ns,
        &p(json!({"applications": [{"namespace": "app-1", "applicationPermissions": ["SecurityProfiles.Edit"]}]})),
        &[r#"applicationPermissions: "app-1: SecurityProfiles.Edit" is denied"#, "(deniedPermissions)"],
    );

    // (c) What the binding allows is admitted, by either kind of apply, case variants and prefixes too.
    let allowed = p(json!({
        "permissions": ["BasicAgentAccess", "accessmetrics", "Users.View", "USERS.EDIT"],
        "applications": [{"namespace": "app-1", "applicationPermissions": ["Users.View"]}],
        "allowedFlowModules": [{"type": "MCP", "flowModuleId": "fm-team-a-7"}],
        "allowedAIAgents": [{"type": "THIRD_PARTY", "arn": AGENT_OK.to_uppercase()}],
    }));
    admitted(ns, &allowed, Apply::Client);
    admitted(ns, &profile("agents-ssa", &instance, json!({"permissions": ["AccessMetrics"]})), Apply::ServerSide);
    // An update that adds what is not allowed is refused too, and the stored spec stays.
    let widened = p(json!({"permissions": ["BasicAgentAccess", "AccessMetrics", "OutboundCallAccess"]}));
    for how in [Apply::Client, Apply::ServerSide] {
        let out = refused(ns, &widened, how);
        assert!(out.contains(r#""OutboundCallAccess" is not allowed"#) && out.contains(&by), "{out}");
    }
    let stored = ok(
        kubectl(&["get", "securityprofile", "agents", "-n", ns, "-o", "jsonpath={.spec.permissions}"], None),
        "kubectl get",
    );
    assert!(!stored.contains("OutboundCallAccess"), "{stored}");
}

#[tokio::test]
async fn a_binding_judges_only_the_profiles_of_its_instance_in_the_namespaces_it_covers() {
    let env = TestEnv::new("admission-scope", &[]).await;
    let ns = env.ns.clone();
    let uncovered = env.extra_namespace("uncovered").await;
    let selected = env.extra_namespace("selected").await;
    for n in [&ns, &uncovered, &selected] {
        scope(&env, n);
    }
    env.label_namespace(&selected, "e2e-team=blue");
    let instance = format!("adm-{ns}");
    let _policy = Policy::install(&env);
    let by_name = format!("{ns}-named");
    let by_selector = format!("{ns}-selected");
    let _named = env.bind(
        &by_name,
        json!({"instanceId": instance, "region": "us-east-1", "namespaces": [ns],
               "allowedPermissions": ["BasicAgentAccess"]}),
    );
    let _selector = env.bind(
        &by_selector,
        json!({"instanceId": instance, "region": "us-east-1",
               "namespaceSelector": {"matchLabels": {SCOPE_LABEL: ns},
                                     "matchExpressions": [{"key": "e2e-team", "operator": "In", "values": ["blue", "green"]}]},
               "allowedPermissions": ["AccessMetrics"]}),
    );
    let outbound = profile("outbound", &instance, json!({"permissions": ["OutboundCallAccess"]}));
    until_verdict(&ns, &outbound, true, "the policy refuses in the named namespace");
    until_verdict(&selected, &outbound, true, "the policy refuses in the selected namespace");

    // (d) A namespace that no binding names or selects is not judged by them.
    admitted(&uncovered, &outbound, Apply::DryRun);
    admitted(&uncovered, &outbound, Apply::ServerSide);
    // Nor is a profile of another instance in a covered namespace.
    admitted(
        &ns,
        &profile("elsewhere", &format!("{instance}-other"), json!({"permissions": ["Anything"]})),
        Apply::Client,
    );
    // Each binding judges the namespaces it covers, by name or by selector (matchLabels and matchExpressions).
    let basic = profile("basic", &instance, json!({"permissions": ["BasicAgentAccess"]}));
    let metrics = profile("metrics", &instance, json!({"permissions": ["AccessMetrics"]}));
    admitted(&ns, &basic, Apply::DryRun);
    refused_naming(&ns, &metrics, &[&format!(r#""AccessMetrics" is not allowed by InstanceBinding {by_name}"#)]);
    admitted(&selected, &metrics, Apply::DryRun);
    refused_naming(
        &selected,
        &basic,
        &[&format!(r#""BasicAgentAccess" is not allowed by InstanceBinding {by_selector}"#)],
    );
    // Labelled out of the selector (e2e-team In [blue, green]): no longer judged by it.
    env.label_namespace(&selected, "e2e-team=red");
    until_verdict(&selected, &basic, false, "the relabelled namespace is no longer selected");

    // A profile admitted before its binding covered it: once covered, metadata-only updates (the
    // operator's finalizer, labels) and its deletion still go through; a spec change is judged.
    ok(
        kubectl(
            &[
                "patch",
                "securityprofile",
                "outbound",
                "-n",
                &uncovered,
                "--type=merge",
                "-p",
                r#"{"metadata":{"finalizers":["connect.cloud-operators.dev/finalizer"]}}"#,
            ],
            None,
        ),
        "add a finalizer",
    );
    let _cover = env.bind(
        &format!("{ns}-late"),
        json!({"instanceId": instance, "region": "us-east-1", "namespaces": [uncovered],
               "allowedPermissions": ["BasicAgentAccess"]}),
    );
    let described = profile("outbound", &instance, json!({"permissions": ["OutboundCallAccess"], "description": "x"}));
    until_verdict(&uncovered, &described, true, "the late binding judges spec changes");
    ok(kubectl(&["label", "securityprofile", "outbound", "-n", &uncovered, "e2e=relabelled"], None), "label");
    ok(kubectl(&["delete", "securityprofile", "outbound", "-n", &uncovered, "--wait=false"], None), "delete");
    ok(
        kubectl(
            &[
                "patch",
                "securityprofile",
                "outbound",
                "-n",
                &uncovered,
                "--type=json",
                "-p",
                r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
            ],
            None,
        ),
        "remove the finalizer (as the operator does after deleting in Connect)",
    );
    let gone =
        kubectl(&["get", "securityprofile", "outbound", "-n", &uncovered, "--ignore-not-found", "-o", "name"], None);
    assert_eq!(String::from_utf8_lossy(&gone.stdout).trim(), "", "the profile is gone");
}
