//! End to end, ownership enforced by IAM as well as by the operator's code: the emulator enforces the
//! policies of deploy/ (the operator's identity, a role per binding with its trust policy), the
//! operator runs two teams through their bindings' roles with session tags and an ExternalId, and team
//! A's role is refused on team B's profile: called directly, and when a binding (an admin's mistake, or a
//! bug) hands team B's namespace to team A's role.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_connect::config::{BehaviorVersion, Credentials, ProvideCredentials, Region};
use aws_sdk_connect::error::ProvideErrorMetadata;
use serde_json::{Value, json};

use crate::harness::{INSTANCE, TestEnv, manifest};

const T: Duration = Duration::from_secs(60);
const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";
const OPERATOR_ARN: &str = "arn:aws:iam::123456789012:role/connect-operator";
const OPERATOR_KEY: &str = "AKIDEMULATOR";
const EXTERNAL_ID: &str = "e2e-external-id";

fn role(team: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/connect-{team}")
}

/// A deploy/ policy with `vars` and this test's operator, account and instance filled in.
fn policy(path: &str, vars: &[(&str, &str)]) -> Value {
    let common = [
        ("OPERATOR_ROLE_ARN", OPERATOR_ARN),
        ("EXTERNAL_ID", EXTERNAL_ID),
        ("REGION", REGION),
        ("ACCOUNT_ID", ACCOUNT),
        ("INSTANCE_ID", INSTANCE),
    ];
    let all: Vec<(&str, &str)> = vars.iter().chain(common.iter()).copied().collect();
    crate::support::deploy_policy(path, &all)
}

/// The emulator's IAM: the operator's identity with deploy/iam-policy.json, and one role per team whose
/// trust policy admits that team's namespace (and a second name, NAMESPACE_2, unused) and binding.
fn iam_config(teams: &[(&str, &str, &str)]) -> Value {
    let roles: Vec<Value> = teams
        .iter()
        .map(|(team, namespace, binding)| {
            let vars = [("BINDING_NAME", *binding), ("NAMESPACE_1", *namespace), ("NAMESPACE_2", "unused-namespace")];
            json!({
                "arn": role(team),
                "trustPolicy": policy("deploy/iam/binding-role-trust-policy.json", &vars),
                "policies": [policy("deploy/iam/binding-role-policy.json", &vars)],
            })
        })
        .collect();
    json!({
        "users": [{"accessKeyId": OPERATOR_KEY, "arn": OPERATOR_ARN, "policies": [policy("deploy/iam-policy.json", &[])]}],
        "roles": roles,
    })
}

/// A Connect client acting as `role` in a session tagged as the operator tags `namespace`'s sessions.
async fn as_role(env: &TestEnv, role: &str, namespace: &str, binding: &str) -> aws_sdk_connect::Client {
    let base = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(env.emulator.endpoint())
        .credentials_provider(Credentials::new(OPERATOR_KEY, "emulator-secret", None, None, "static"))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let tags = HashMap::from([("namespace".to_string(), namespace.to_string()), ("binding".into(), binding.into())]);
    let provider = aws_config::sts::AssumeRoleProvider::builder(role)
        .session_name(format!("csp-{namespace}"))
        .external_id(EXTERNAL_ID)
        .tags(tags)
        .region(Region::new(REGION))
        .configure(&base)
        .build()
        .await;
    provider.provide_credentials().await.expect("the team's own session is allowed");
    aws_sdk_connect::Client::from_conf(
        aws_sdk_connect::config::Builder::from(&base).credentials_provider(provider).build(),
    )
}

#[tokio::test]
async fn team_a_role_is_refused_on_team_b_profile_even_when_the_operator_is_told_to_use_it() {
    // The namespaces are known before the emulator starts: its IAM names them.
    let suffix = rand::random_range(0..100_000);
    let (ns_a, ns_b) = (format!("e2e-iam-a-{suffix:05}"), format!("e2e-iam-b-{suffix:05}"));
    let (bind_a, bind_b) = (format!("{ns_a}-binding"), format!("{ns_b}-binding"));
    let config = iam_config(&[("a", &ns_a, &bind_a), ("b", &ns_b, &bind_b)]);
    let file = crate::harness::e2e_log_dir().join(format!("{ns_a}-iam.json"));
    std::fs::write(&file, config.to_string()).unwrap();
    let mut env =
        TestEnv::new(&format!("iam-{suffix:05}"), &["--throttle-rate", "0", "--iam", file.to_str().unwrap()]).await;
    for ns in [&ns_a, &ns_b] {
        let out = crate::harness::kubectl(&["create", "namespace", ns], None);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let sts = env.emulator.endpoint();
    let watch = format!("{ns_a},{ns_b}");
    env.start_operator_with_env(
        &["--namespace", &watch],
        &[("ALLOW_UNBOUND", "false"), ("AWS_ENDPOINT_URL_STS", &sts), ("CONNECT_EXTERNAL_ID", EXTERNAL_ID)],
    );
    let binding = |ns: &str, team: &str| json!({"instanceId": INSTANCE, "region": REGION, "namespaces": [ns], "roleArn": role(team)});
    let _a = env.bind(&bind_a, binding(&ns_a, "a"));
    let _b = env.bind(&bind_b, binding(&ns_b, "b"));
    let api = |ns: &str| -> kube::Api<connect_operator::api::SecurityProfile> {
        kube::Api::namespaced(env.client.clone(), ns)
    };
    let apply = |ns: &str, spec: Value| {
        let out = crate::harness::kubectl(&["apply", "-n", ns, "-f", "-"], Some(&manifest("agents", spec)));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let ready = async |ns: &str, description: &str| {
        let api = api(ns);
        env.wait_for(&format!("{ns}/agents Ready ({description})"), T, async || {
            let sp = api.get("agents").await.ok()?;
            let fresh = sp.status.as_ref()?.observed_generation == sp.metadata.generation;
            (fresh && sp.condition("Ready")?.status == "True").then_some(sp)
        })
        .await
    };

    // Both teams work through their roles under the deploy/ policies: create, then update.
    for (ns, name) in [(&ns_a, "IAM A"), (&ns_b, "IAM B")] {
        apply(ns, json!({"securityProfileName": name, "description": "v1", "permissions": ["BasicAgentAccess"]}));
    }
    ready(&ns_a, "created").await;
    let b = ready(&ns_b, "created").await;
    apply(&ns_a, json!({"securityProfileName": "IAM A", "description": "v2", "permissions": ["BasicAgentAccess"]}));
    ready(&ns_a, "updated").await;
    assert_eq!(env.held("IAM A").unwrap()["Description"], "v2");
    let b_id = b.status.unwrap().security_profile_id.unwrap();
    let b_arn = env.held("IAM B").unwrap()["Arn"].as_str().unwrap().to_string();

    // Team A's role, in its own session, on team B's profile: refused by IAM, whatever the code does.
    let team_a = as_role(&env, &role("a"), &ns_a, &bind_a).await;
    let update = team_a.update_security_profile().instance_id(INSTANCE).security_profile_id(&b_id).description("x");
    assert_eq!(update.send().await.unwrap_err().code(), Some("AccessDeniedException"));
    let delete = team_a.delete_security_profile().instance_id(INSTANCE).security_profile_id(&b_id);
    assert_eq!(delete.send().await.unwrap_err().code(), Some("AccessDeniedException"));
    let retag = team_a.tag_resource().resource_arn(&b_arn).tags("connect.cloud-operators.dev/namespace", &ns_a);
    assert_eq!(retag.send().await.unwrap_err().code(), Some("AccessDeniedException"));

    // A binding hands team B's namespace to team A's role (an admin's mistake, or a bug): the operator's
    // AssumeRole with team B's namespace tag is refused by A's trust policy; B's profile is untouched.
    let _b_to_a = env.bind(&bind_b, binding(&ns_b, "a"));
    apply(&ns_b, json!({"securityProfileName": "IAM B", "description": "v2", "permissions": ["BasicAgentAccess"]}));
    let b_api = api(&ns_b);
    let refused = env
        .wait_for("team B's change refused", T, async || {
            let sp = b_api.get("agents").await.ok()?;
            let synced = sp.condition("Synced")?;
            let denied = synced.reason == "CredentialsUnavailable" && synced.message.contains("AccessDenied");
            (synced.status == "False" && denied).then_some(synced.message.clone())
        })
        .await;
    println!("team B's profile through team A's role: {refused}");
    let calls = env.emulator.calls();
    assert!(
        calls.iter().any(|c| c.operation == "AssumeRole"
            && c.params["RoleArn"] == role("a")
            && c.params["Tags"]["namespace"] == ns_b.as_str()
            && c.outcome == "AccessDenied"),
        "the trust policy refused team A's role with team B's namespace"
    );
    assert_eq!(env.held("IAM B").unwrap()["Description"], "v1", "team B's profile is unchanged");
}
