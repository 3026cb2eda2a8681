//! End to end, many teams in one cluster: InstanceBindings decide which namespaces may act on which
//! instance, with which role (the AssumeRole session named after the namespace), under which
//! guardrails (adoption, default profiles, denied permissions); deletion is safe. The emulator answers
//! STS AssumeRole and names each Connect call's principal, so the tests see who made each call.

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use crate::harness::{INSTANCE, TestEnv, manifest};

const T: Duration = Duration::from_secs(60);
const REGION: &str = "us-east-1";
const TEAM_ROLE: &str = "arn:aws:iam::123456789012:role/team-a-connect-admin";
const STATIC_KEY: &str = "AKIDEMULATOR";

/// An operator in bound mode (the default of `run` and the chart) watching `namespaces`.
async fn bound_env(name: &str, extra_namespaces: &[&str]) -> (TestEnv, Vec<String>) {
    let mut env = TestEnv::new(name, &["--throttle-rate", "0"]).await;
    let mut namespaces = vec![env.ns.clone()];
    for suffix in extra_namespaces {
        namespaces.push(env.extra_namespace(suffix).await);
    }
    let watch = namespaces.join(",");
    let sts = env.emulator.endpoint();
    env.start_operator_with_env(
        &["--namespace", &watch],
        &[("ALLOW_UNBOUND", "false"), ("AWS_ENDPOINT_URL_STS", &sts)],
    );
    (env, namespaces)
}

/// A binding of the emulator's instance for the namespaces labelled `tenant=<tenant>`.
fn binding(tenant: &str, extra: Value) -> Value {
    let mut spec = json!({"instanceId": INSTANCE, "region": REGION,
                          "namespaceSelector": {"matchLabels": {"tenant": tenant}}});
    spec.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    spec
}

fn connect_ops(env: &TestEnv) -> Vec<String> {
    env.emulator.calls().iter().filter(|c| c.operation != "AssumeRole").map(|c| c.operation.clone()).collect()
}

fn apply_in(ns: &str, m: &str) {
    let out = crate::harness::kubectl(&["apply", "-n", ns, "-f", "-"], Some(m));
    assert!(out.status.success(), "kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn only_namespaces_a_binding_selects_act_and_each_uses_the_bindings_role() {
    let (env, namespaces) = bound_env("mt-bind", &["other"]).await;
    let (team_a, other) = (&namespaces[0], &namespaces[1]);
    let agents = manifest("agents", json!({"securityProfileName": "MT Agents", "permissions": ["BasicAgentAccess"]}));
    apply_in(team_a, &agents);
    let sp = env.wait_reason("agents", "NoInstanceBinding", T).await;
    let message = &sp.condition("Synced").unwrap().message;
    assert!(message.contains(INSTANCE) && message.contains(team_a.as_str()), "names instance and namespace: {message}");
    assert!(connect_ops(&env).is_empty(), "no Connect call without a binding");

    // An admin binds the instance to team-a's namespaces, with a role: Ready, the profile untouched.
    env.label_namespace(team_a, "tenant=a");
    let _binding = env.bind(&format!("{}-a", env.ns), binding("a", json!({"roleArn": TEAM_ROLE})));
    env.wait_condition("agents", "Ready", "True", T).await;

    // The other namespace is not selected: refused, no call in its name.
    apply_in(other, &manifest("agents", json!({"securityProfileName": "MT Other"})));
    let other_api: kube::Api<connect_operator::api::SecurityProfile> = kube::Api::namespaced(env.client.clone(), other);
    env.wait_for("the other namespace refused", T, async || {
        let sp = other_api.get("agents").await.ok()?;
        (sp.condition("Synced")?.reason == "NoInstanceBinding").then_some(())
    })
    .await;
    assert!(env.held("MT Other").is_none(), "nothing created for the unselected namespace");

    // Every Connect call was made as the binding's role, in a session named after the namespace.
    let calls = env.emulator.calls();
    let connect: Vec<_> = calls.iter().filter(|c| c.operation != "AssumeRole").collect();
    assert!(!connect.is_empty());
    assert!(
        connect.iter().all(|c| c.principal == TEAM_ROLE),
        "as the binding's role: {:?}",
        connect.iter().map(|c| &c.principal).collect::<Vec<_>>()
    );
    let sessions: Vec<(String, String, String)> = calls
        .iter()
        .filter(|c| c.operation == "AssumeRole" && c.succeeded())
        .map(|c| {
            (
                c.params["RoleArn"].as_str().unwrap_or_default().to_string(),
                c.params["RoleSessionName"].as_str().unwrap_or_default().to_string(),
                c.principal.clone(),
            )
        })
        .collect();
    assert!(
        sessions.contains(&(TEAM_ROLE.to_string(), format!("csp-{team_a}"), STATIC_KEY.to_string())),
        "AssumeRole of the binding's role, session csp-<namespace>, with the operator's credentials: {sessions:?}"
    );

    // The binding reports that it reaches the instance and how many profiles it binds.
    env.wait_for("binding status", T, async || {
        let out = crate::harness::kubectl(&["get", "instancebinding", &format!("{}-a", env.ns), "-o", "json"], None);
        let b: Value = serde_json::from_slice(&out.stdout).ok()?;
        let ready = b["status"]["conditions"].as_array()?.iter().any(|c| c["type"] == "Ready" && c["status"] == "True");
        (ready && b["status"]["boundProfiles"] == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn guardrails_adoption_default_profiles_and_denied_permissions() {
    let (env, _) = bound_env("mt-guard", &[]).await;
    env.label_namespace(&env.ns, "tenant=g");
    let name = format!("{}-g", env.ns);
    let _binding = env.bind(&name, binding("g", json!({"deniedPermissions": ["AccessMetrics"]})));
    // A profile made outside the operator, and the instance's default Agent profile.
    env.connect()
        .create_security_profile()
        .instance_id(INSTANCE)
        .security_profile_name("Preexisting")
        .send()
        .await
        .expect("seed");
    let seeded = env.emulator.calls().len();
    let adopt = |name: &str, profile: &str| {
        let mut m: Value = serde_json::from_str(&manifest(name, json!({"securityProfileName": profile}))).unwrap();
        m["metadata"]["annotations"] = json!({"connect.cloud-operators.dev/adopt": "true"});
        m.to_string()
    };
    env.apply_ok(&adopt("pre", "Preexisting"));
    env.apply_ok(&adopt("agent", "Agent"));
    env.apply_ok(&manifest("metrics", json!({"securityProfileName": "MT Metrics", "permissions": ["AccessMetrics"]})));
    let msg = |sp: connect_operator::api::SecurityProfile| sp.condition("Synced").unwrap().message.clone();
    let pre = msg(env.wait_reason("pre", "AdoptionNotAllowed", T).await);
    assert!(pre.contains("allowAdoption"), "{pre}");
    let metrics = msg(env.wait_reason("metrics", "PermissionNotAllowed", T).await);
    assert!(metrics.contains("AccessMetrics"), "{metrics}");
    env.wait_reason("agent", "AdoptionNotAllowed", T).await;
    let after: Vec<String> = env.emulator.calls()[seeded..].iter().map(|c| c.operation.clone()).collect();
    assert!(
        after.iter().all(|op| op == "ListSecurityProfiles"),
        "refused before any Connect call (the binding's reachability probe aside): {after:?}"
    );

    // allowAdoption: the pre-existing profile is adopted; the default profile still is not.
    let _binding =
        env.bind(&name, binding("g", json!({"deniedPermissions": ["AccessMetrics"], "allowAdoption": true})));
    env.wait_condition("pre", "Ready", "True", T).await;
    let agent = msg(env.wait_reason("agent", "AdoptionNotAllowed", T).await);
    assert!(agent.contains("default profile") && agent.contains("allowDefaultProfiles"), "{agent}");
    let held = env.held("Agent").expect("the default Agent profile");
    assert!(held["Tags"].as_object().is_none_or(|t| t.is_empty()), "the default profile was never tagged: {held}");
    let creates = connect_ops(&env).iter().filter(|op| *op == "CreateSecurityProfile").count();
    assert_eq!(creates, 1, "nothing created but the seeded profile");
}

#[tokio::test]
async fn region_is_immutable_and_deletion_is_safe() {
    let (env, _) = bound_env("mt-delete", &[]).await;
    env.label_namespace(&env.ns, "tenant=d");
    let _binding = env.bind(&format!("{}-d", env.ns), binding("d", json!({})));
    for name in ["mine", "other"] {
        env.apply_ok(&manifest(name, json!({"securityProfileName": format!("MT {name}"), "region": REGION})));
    }
    let mine = env.wait_condition("mine", "Ready", "True", T).await;
    let other = env.wait_condition("other", "Ready", "True", T).await;

    // Changing the Region after creation is refused (the CRD's CEL rule at apply; the controller where an
    // API server lets it through), and nothing is called.
    // The instance's periodic listing (every second here) goes on; nothing else may be called.
    let profile_calls = || {
        let listing = ["ListSecurityProfiles", "SearchSecurityProfiles"];
        env.emulator.calls().iter().filter(|c| !listing.contains(&c.operation.as_str())).count()
    };
    let calls = profile_calls();
    let out = env.apply(&manifest("mine", json!({"securityProfileName": "MT mine", "region": "eu-west-2"})));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("region is immutable once set"), "{stderr}");
    crate::bad_input::edit_in_etcd(&env.ns, "mine", |spec| spec["region"] = json!("eu-west-2"));
    env.wait_reason("mine", "RegionNotBound", T).await;
    assert_eq!(profile_calls(), calls, "no call for the refused region change");

    // Deleting it deletes the profile where it is.
    env.kubectl(&["delete", "csp", "mine", "--wait=true", "--timeout=60s"]);
    assert!(env.held("MT mine").is_none(), "the profile was deleted in its instance");
    let id = mine.status.unwrap().security_profile_id.unwrap();
    assert!(env.emulator.calls().iter().any(|c| c.operation == "DeleteSecurityProfile" && c.params["labels"][1] == id));

    // An admin points a third resource's status at "other"'s profile: deleting it leaves that profile.
    env.apply_ok(&manifest("pointer", json!({"securityProfileName": "MT other", "deletionPolicy": "Delete"})));
    env.wait_for("pointer reconciled", T, async || {
        let sp = env.api().get("pointer").await.ok()?;
        sp.metadata.finalizers.as_ref().filter(|f| !f.is_empty())?;
        sp.condition("Synced").map(|_| ())
    })
    .await;
    let other_status = other.status.unwrap();
    let status = json!({"status": {
        "securityProfileId": other_status.security_profile_id,
        "securityProfileArn": other_status.security_profile_arn,
    }});
    env.api().patch_status("pointer", &PatchParams::default(), &Patch::Merge(&status)).await.expect("patch status");
    env.kubectl(&["delete", "csp", "pointer", "--wait=true", "--timeout=60s"]);
    assert!(env.held("MT other").is_some(), "the profile of another resource is left alone");
    assert!(
        !env.emulator.calls().iter().any(|c| c.operation == "DeleteSecurityProfile"
            && c.params["labels"][1] == other_status.security_profile_id.clone().unwrap()),
        "never deleted"
    );
}
