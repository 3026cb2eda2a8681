//! End to end: role assumption for multi-account use. The emulator also answers STS AssumeRole and
//! names each Connect call's principal, so these tests see which role made each call: the operator's
//! `--role-arn`, or the `roleArn` of the InstanceBinding that grants the namespace its instance.

use std::time::Duration;

use serde_json::json;

use crate::harness::{BindingGuard, INSTANCE, TestEnv, manifest};

const OPERATOR_ROLE: &str = "arn:aws:iam::123456789012:role/connect-operator";
const TEAM_ROLE: &str = "arn:aws:iam::123456789012:role/team-a-connect-admin";
const STATIC_KEY: &str = "AKIDEMULATOR";

/// An operator with `--role-arn`; with `binding_role`, bound mode and a binding of that role.
async fn env_with_sts(name: &str, binding_role: Option<&str>, denied: bool) -> (TestEnv, Option<BindingGuard>) {
    let mut env = TestEnv::new(name, &["--throttle-rate", "0"]).await;
    if denied {
        env.emulator.set_faults(json!({"throttleRate": 0, "deniedRoles": [binding_role]}));
    }
    let sts = env.emulator.endpoint();
    let mut vars = vec![("AWS_ENDPOINT_URL_STS", sts.as_str())];
    let guard = binding_role.map(|role| {
        env.label_namespace(&env.ns, &format!("roles-test={}", env.ns));
        vars.push(("ALLOW_UNBOUND", "false"));
        env.bind(
            &env.ns,
            json!({"instanceId": INSTANCE, "region": "us-east-1", "roleArn": role,
                   "namespaceSelector": {"matchLabels": {"roles-test": env.ns}}}),
        )
    });
    env.start_operator_with_env(&["--role-arn", OPERATOR_ROLE], &vars);
    (env, guard)
}

/// The principals of the emulator's Connect calls (not the AssumeRole calls), and the AssumeRole calls
/// as (role assumed, principal that asked).
fn principals(env: &TestEnv) -> (Vec<String>, Vec<(String, String)>) {
    let calls = env.emulator.calls();
    let connect = calls.iter().filter(|c| c.operation != "AssumeRole").map(|c| c.principal.clone()).collect();
    let assumed = calls
        .iter()
        .filter(|c| c.operation == "AssumeRole" && c.succeeded())
        .map(|c| (c.params["RoleArn"].as_str().unwrap_or_default().to_string(), c.principal.clone()))
        .collect();
    (connect, assumed)
}

#[tokio::test]
async fn connect_calls_use_the_operator_role_or_the_bindings_role() {
    let ((by_operator, _), (by_namespace, _binding)) =
        tokio::join!(env_with_sts("role-operator", None, false), env_with_sts("role-binding", Some(TEAM_ROLE), false));
    for env in [&by_operator, &by_namespace] {
        env.apply_ok(&manifest(
            "agents",
            json!({"securityProfileName": "Agents", "permissions": ["BasicAgentAccess"]}),
        ));
    }
    for env in [&by_operator, &by_namespace] {
        env.wait_condition("agents", "Ready", "True", Duration::from_secs(60)).await;
    }

    let (connect, assumed) = principals(&by_operator);
    assert!(!connect.is_empty());
    assert!(connect.iter().all(|p| p == OPERATOR_ROLE), "every Connect call as the operator role: {connect:?}");
    assert_eq!(
        assumed,
        [(OPERATOR_ROLE.to_string(), STATIC_KEY.to_string())],
        "the role is assumed once, with the operator's own credentials"
    );

    let (connect, assumed) = principals(&by_namespace);
    assert!(!connect.is_empty());
    assert!(connect.iter().all(|p| p == TEAM_ROLE), "the binding's role overrides the operator's: {connect:?}");
    assert!(
        assumed.iter().all(|a| *a == (TEAM_ROLE.to_string(), STATIC_KEY.to_string())),
        "only the binding's role, with the operator's own credentials: {assumed:?}"
    );
    let sessions: Vec<String> = by_namespace
        .emulator
        .calls()
        .iter()
        .filter(|c| c.operation == "AssumeRole" && c.succeeded())
        .map(|c| c.params["RoleSessionName"].as_str().unwrap_or_default().to_string())
        .collect();
    let ns = &by_namespace.ns;
    assert!(
        sessions.contains(&format!("csp-{ns}")),
        "the profile's calls in a session named after its namespace: {sessions:?}"
    );
    assert!(
        sessions.iter().all(|s| *s == format!("csp-{ns}") || *s == format!("csp.binding.{ns}") || s == "csp.observer"),
        "one session per namespace, one for the binding's reachability probe, one for the instance's listing: {sessions:?}"
    );
}

#[tokio::test]
async fn a_role_that_cannot_be_assumed_is_reported_and_nothing_reaches_connect() {
    let (env, _binding) = env_with_sts("role-invalid", Some("arn:aws:iam::333333333333:role/untrusted"), true).await;
    env.apply_ok(&manifest("agents", json!({"securityProfileName": "Agents"})));
    let sp = env.wait_condition("agents", "Synced", "False", Duration::from_secs(60)).await;
    let synced = sp.condition("Synced").expect("Synced");
    assert!(
        synced.message.contains("loading credentials") && synced.message.contains("untrusted"),
        "the message says the role's credentials could not be obtained, and why: {}",
        synced.message
    );
    assert!(synced.message.contains("Retrying"), "recoverable: {}", synced.message);
    let (connect, _) = principals(&env);
    assert!(connect.is_empty(), "no Connect call without the role's credentials: {connect:?}");
    let names: Vec<String> = env
        .emulator
        .profiles(crate::harness::INSTANCE)
        .iter()
        .filter_map(|p| p["SecurityProfileName"].as_str().map(str::to_string))
        .collect();
    assert!(names.iter().any(|n| n == "Admin"), "the instance's default profiles are listed: {names:?}");
    assert!(!names.iter().any(|n| n == "Agents"), "no profile was created: {names:?}");
}
