//! End to end, tenancy in depth: each of the security review's medium findings as a scenario against
//! the real API server and the emulator. Where the old behaviour can still be shown (a selector that
//! a labelled namespace joins), the test shows it first, then the fix.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{BindingGuard, INSTANCE, TestEnv, free_port, manifest, metric_value, scrape};

const T: Duration = Duration::from_secs(60);
const REGION: &str = "us-east-1";

/// An operator in bound mode watching this test's namespace and `extra` ones; returns the namespaces
/// and the operator's metrics port.
async fn bound_env(name: &str, extra: &[&str], unbound: bool) -> (TestEnv, Vec<String>, u16) {
    let mut env = TestEnv::new(name, &["--throttle-rate", "0"]).await;
    let mut namespaces = vec![env.ns.clone()];
    for suffix in extra {
        namespaces.push(env.extra_namespace(suffix).await);
    }
    let watch = namespaces.join(",");
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let sts = env.emulator.endpoint();
    let allow_unbound = if unbound { "true" } else { "false" };
    env.start_operator_with_env(
        &["--namespace", &watch, "--metrics-addr", &metrics],
        &[("ALLOW_UNBOUND", allow_unbound), ("AWS_ENDPOINT_URL_STS", &sts)],
    );
    (env, namespaces, port)
}

/// A binding of the emulator's instance for `namespaces`, by name.
fn named(namespaces: &[&String], extra: Value) -> Value {
    let mut spec = json!({"instanceId": INSTANCE, "region": REGION, "namespaces": namespaces});
    spec.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    spec
}

fn apply_in(ns: &str, m: &str) {
    let out = crate::harness::kubectl(&["apply", "-n", ns, "-f", "-"], Some(m));
    assert!(out.status.success(), "kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
}

fn api_in(env: &TestEnv, ns: &str) -> kube::Api<connect_operator::api::SecurityProfile> {
    kube::Api::namespaced(env.client.clone(), ns)
}

async fn wait_reason_in(env: &TestEnv, ns: &str, name: &str, reason: &str) -> connect_operator::api::SecurityProfile {
    let api = api_in(env, ns);
    env.wait_for(&format!("{ns}/{name} reason {reason}"), T, async || {
        let sp = api.get(name).await.ok()?;
        (sp.condition("Ready")?.reason == reason || sp.condition("Synced")?.reason == reason).then_some(sp)
    })
    .await
}

fn writes(env: &TestEnv) -> Vec<(String, Value)> {
    env.emulator
        .calls()
        .into_iter()
        .filter(|c| !c.operation.starts_with("List") && !c.operation.starts_with("Describe"))
        .filter(|c| !matches!(c.operation.as_str(), "AssumeRole" | "SearchSecurityProfiles"))
        .map(|c| (c.operation, c.params))
        .collect()
}

fn events(ns: &str, name: &str) -> Vec<String> {
    let out = crate::harness::kubectl(
        &["get", "events", "-n", ns, "--field-selector", &format!("involvedObject.name={name}"), "-o", "json"],
        None,
    );
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    list["items"].as_array().into_iter().flatten().filter_map(|e| e["reason"].as_str().map(str::to_string)).collect()
}

/// Finding 1: a selector is joined by labelling a namespace. Shown first with a selector (the intruder
/// gets the team's grant), then with the binding naming its namespace: the intruder's profile reports
/// BindingRevoked at once, and a new one is refused.
#[tokio::test]
async fn names_not_labels_decide_which_namespaces_a_binding_grants() {
    let (env, namespaces, _) = bound_env("ten-names", &["intruder"], false).await;
    let (team, intruder) = (&namespaces[0], &namespaces[1]);
    let label = format!("tenant={team}");
    env.label_namespace(team, &label);
    let name = format!("{team}-b");
    let selector = json!({"instanceId": INSTANCE, "region": REGION,
                          "namespaceSelector": {"matchLabels": {"tenant": team}}});
    let _binding = env.bind(&name, selector);
    apply_in(team, &manifest("agents", json!({"securityProfileName": "Ten Team"})));
    env.wait_condition("agents", "Ready", "True", T).await;

    // Whoever may label namespaces joins the selector: the intruder's profile is created.
    env.label_namespace(intruder, &label);
    apply_in(intruder, &manifest("grab", json!({"securityProfileName": "Ten Intruder"})));
    let grabbed = wait_reason_in(&env, intruder, "grab", "Available").await;
    assert!(grabbed.status.unwrap().security_profile_id.is_some(), "the label alone granted the instance");

    // The admin names the namespace instead: the intruder loses the grant at once.
    let _binding: BindingGuard = env.bind(&name, named(&[team], json!({})));
    let revoked = wait_reason_in(&env, intruder, "grab", "BindingRevoked").await;
    let message = &revoked.condition("Synced").unwrap().message;
    assert!(message.contains("stays in Connect") && message.contains(intruder.as_str()), "{message}");
    apply_in(intruder, &manifest("again", json!({"securityProfileName": "Ten Intruder 2"})));
    wait_reason_in(&env, intruder, "again", "NoInstanceBinding").await;
    assert!(env.held("Ten Intruder 2").is_none());
    env.wait_condition("agents", "Ready", "True", T).await;
}

/// Finding 2: the deny-list matched exactly and only spec.permissions. Case variants, application
/// permissions and flow modules are now checked, with allow-lists, before any Connect call.
#[tokio::test]
async fn allow_lists_cover_case_variants_applications_and_flow_modules() {
    let (env, namespaces, _) = bound_env("ten-allow", &[], false).await;
    let guardrails = json!({
        "allowedPermissions": ["BasicAgent*", "Outbound*"],
        "deniedPermissions": ["OutboundCallAccess"],
        "allowedFlowModules": ["fm-team-a-*"],
    });
    let _binding = env.bind(&format!("{}-b", env.ns), named(&[&namespaces[0]], guardrails));
    let before = writes(&env).len();
    env.apply_ok(&manifest("case", json!({"securityProfileName": "Ten Case", "permissions": ["outboundcallaccess"]})));
    env.apply_ok(&manifest(
        "app",
        json!({"securityProfileName": "Ten App", "permissions": ["BasicAgentAccess"],
               "applications": [{"namespace": "crm", "applicationPermissions": ["ACCESS"], "type": "THIRD_PARTY_APPLICATION"}]}),
    ));
    env.apply_ok(&manifest(
        "flow",
        json!({"securityProfileName": "Ten Flow", "allowedFlowModules": [{"type": "MCP", "flowModuleId": "fm-team-b-1"}]}),
    ));
    env.apply_ok(&manifest("fine", json!({"securityProfileName": "Ten Fine", "permissions": ["basicagentaccess"]})));
    let msg = |sp: connect_operator::api::SecurityProfile| sp.condition("Synced").unwrap().message.clone();
    let case = msg(env.wait_reason("case", "PermissionNotAllowed", T).await);
    assert!(case.contains("\"outboundcallaccess\""), "the deny-list wins, whatever the case: {case}");
    let app = msg(env.wait_reason("app", "PermissionNotAllowed", T).await);
    assert!(app.contains("applicationPermissions") && app.contains("crm: ACCESS"), "{app}");
    let flow = msg(env.wait_reason("flow", "PermissionNotAllowed", T).await);
    assert!(flow.contains("allowedFlowModules") && flow.contains("fm-team-b-1"), "{flow}");
    env.wait_condition("fine", "Ready", "True", T).await;
    let created: Vec<String> =
        writes(&env)[before..].iter().map(|(op, p)| format!("{op} {}", p["body"]["SecurityProfileName"])).collect();
    assert_eq!(created, ["CreateSecurityProfile \"Ten Fine\""], "only the allowed profile reached Connect");
}

/// Finding 3: a tightened binding changed nothing until the next resync (10 minutes by default), and a
/// deleted binding stranded finalizers. Now: the reason within seconds, the metric, Enforce removing
/// exactly the revoked permission, and deletion with Retain semantics.
#[tokio::test]
async fn revocation_takes_effect_within_seconds_and_enforce_removes_exactly_what_was_revoked() {
    let (env, namespaces, port) = bound_env("ten-revoke", &[], false).await;
    let name = format!("{}-b", env.ns);
    let allowed = json!({"allowedPermissions": ["BasicAgentAccess", "OutboundCallAccess"]});
    let _binding = env.bind(&name, named(&[&namespaces[0]], allowed));
    let spec = json!({"securityProfileName": "Ten Revoke", "description": "agents",
                      "permissions": ["BasicAgentAccess", "OutboundCallAccess"], "tags": {"team": "a"}});
    env.apply_ok(&manifest("agents", spec));
    env.wait_condition("agents", "Ready", "True", T).await;
    let held_before = env.held("Ten Revoke").expect("created");
    let writes_before = writes(&env).len();

    // Report (the default): within seconds, a distinct reason, an Event, the metric; Connect untouched.
    let tightened = Instant::now();
    let _binding = env.bind(&name, named(&[&namespaces[0]], json!({"allowedPermissions": ["BasicAgentAccess"]})));
    let sp = env.wait_reason("agents", "PermissionRevoked", T).await;
    let reported_after = tightened.elapsed();
    println!("tightened allowedPermissions -> PermissionRevoked in {reported_after:?}");
    assert!(sp.condition("Ready").is_some_and(|c| c.status == "False"));
    assert!(sp.condition("Synced").unwrap().message.contains("OutboundCallAccess"));
    env.wait_for("the revoked_profiles metric", T, async || {
        let m = scrape(port).await?;
        (metric_value(&m, "connect_operator_revoked_profiles ") == 1.0).then_some(())
    })
    .await;
    assert!(events(&env.ns, "agents").contains(&"PermissionRevoked".to_string()));
    assert_eq!(writes(&env).len(), writes_before, "Report writes nothing to Connect");
    assert_eq!(env.held("Ten Revoke").unwrap()["Permissions"], held_before["Permissions"]);

    // Enforce: the revoked permission, and nothing else, leaves the profile in Connect.
    let enforce = json!({"allowedPermissions": ["BasicAgentAccess"], "onRevoke": "Enforce"});
    let _binding = env.bind(&name, named(&[&namespaces[0]], enforce));
    let held = env
        .wait_for("Connect's profile loses the permission", T, async || {
            env.held("Ten Revoke").filter(|p| p["Permissions"] == json!(["BasicAgentAccess"]))
        })
        .await;
    println!("enforced in {:?} after tightening", tightened.elapsed());
    for field in ["Description", "Tags", "Id", "SecurityProfileName"] {
        assert_eq!(held[field], held_before[field], "{field} unchanged");
    }
    let enforced: Vec<(String, Value)> = writes(&env)[writes_before..].to_vec();
    assert_eq!(enforced.len(), 1, "one write: {enforced:?}");
    assert_eq!(enforced[0].0, "UpdateSecurityProfile");
    assert_eq!(enforced[0].1["body"]["Permissions"], json!(["BasicAgentAccess"]));
    env.wait_for("the RevocationEnforced Event", T, async || {
        events(&env.ns, "agents").contains(&"RevocationEnforced".to_string()).then_some(())
    })
    .await;

    // The binding goes: the resource reports it and can still be deleted; the profile is retained.
    drop(_binding);
    env.wait_reason("agents", "BindingRevoked", T).await;
    let out = env.kubectl(&["delete", "csp", "agents", "--wait=true", "--timeout=60s"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(env.held("Ten Revoke").is_some(), "retained in Connect");
    assert!(!writes(&env).iter().any(|(op, _)| op == "DeleteSecurityProfile"));
    env.wait_for("the metric falls", T, async || {
        let m = scrape(port).await?;
        (metric_value(&m, "connect_operator_revoked_profiles ") == 0.0).then_some(())
    })
    .await;
}

/// Finding 4: allowAdoption opened every unowned profile, and an adopted profile was deleted with its
/// resource. Now a list of names and prefixes, and Retain unless the resource says otherwise.
#[tokio::test]
async fn adoption_by_name_and_adopted_profiles_are_retained() {
    let (env, namespaces, _) = bound_env("ten-adopt", &[], false).await;
    for profile in ["team-x-agents", "Payroll"] {
        env.connect()
            .create_security_profile()
            .instance_id(INSTANCE)
            .security_profile_name(profile)
            .send()
            .await
            .expect("seed");
    }
    let _binding = env.bind(&format!("{}-b", env.ns), named(&[&namespaces[0]], json!({"allowAdoption": ["team-x-*"]})));
    let adopt = |name: &str, profile: &str| {
        let mut m: Value = serde_json::from_str(&manifest(name, json!({"securityProfileName": profile}))).unwrap();
        m["metadata"]["annotations"] = json!({"connect.cloud-operators.dev/adopt": "true"});
        m.to_string()
    };
    env.apply_ok(&adopt("mine", "team-x-agents"));
    env.apply_ok(&adopt("payroll", "Payroll"));
    let refused = env.wait_reason("payroll", "AdoptionNotAllowed", T).await;
    assert!(refused.condition("Synced").unwrap().message.contains("\"Payroll\""));
    let adopted = env.wait_condition("mine", "Ready", "True", T).await;
    assert_eq!(adopted.status.unwrap().adopted, Some(true));
    let payroll = env.held("Payroll").unwrap();
    assert!(payroll["Tags"].as_object().is_none_or(|t| t.is_empty()), "never tagged: {payroll}");

    let out = env.kubectl(&["delete", "csp", "mine", "--wait=true", "--timeout=60s"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(env.held("team-x-agents").is_some(), "an adopted profile is retained by default");
    assert!(!writes(&env).iter().any(|(op, _)| op == "DeleteSecurityProfile"));
}

/// Lower finding: single-team mode acted on instances that bindings name.
#[tokio::test]
async fn single_team_mode_stays_off_an_instance_a_binding_names() {
    let (env, namespaces, _) = bound_env("ten-unbound", &["bound"], true).await;
    let _binding = env.bind(&format!("{}-b", env.ns), named(&[&namespaces[1]], json!({})));
    env.apply_ok(&manifest("agents", json!({"securityProfileName": "Ten Unbound"})));
    let sp = env.wait_reason("agents", "InstanceBoundElsewhere", T).await;
    assert!(sp.condition("Synced").unwrap().message.contains(&format!("{}-b", env.ns)));
    assert!(env.held("Ten Unbound").is_none());
}
