//! End to end, zero-risk onboarding: an instance exported with `--observe` and applied writes nothing to
//! Connect and shows each resource's difference from Connect; switching one resource to Manage repairs
//! exactly that profile; deleting an Observe resource leaves its profile; a console edit shows up.

use std::time::Duration;

use serde_json::json;

use crate::harness::{INSTANCE, TestEnv};
use connect_operator::api::SecurityProfile;

const T: Duration = Duration::from_secs(60);
const WRITES: [&str; 5] =
    ["CreateSecurityProfile", "UpdateSecurityProfile", "TagResource", "UntagResource", "DeleteSecurityProfile"];

fn writes(env: &TestEnv) -> Vec<(String, String)> {
    env.emulator
        .calls()
        .iter()
        .filter(|c| WRITES.contains(&c.operation.as_str()))
        .map(|c| (c.operation.clone(), c.params.to_string()))
        .collect()
}

async fn observed(env: &TestEnv, name: &str, in_sync: &str) -> SecurityProfile {
    env.wait_for(&format!("{name} InSync={in_sync}"), T, async || {
        let sp = env.api().get(name).await.ok()?;
        (sp.condition("InSync")?.status == in_sync).then_some(sp)
    })
    .await
}

#[tokio::test]
async fn an_observed_instance_is_never_written_and_shows_each_diff() {
    let mut env = TestEnv::new("observe", &["--throttle-rate", "0"]).await;
    let c = env.connect();
    for (name, description) in [("Onb Alpha", "alpha"), ("Onb Beta", "beta"), ("Onb Gamma", "gamma")] {
        c.create_security_profile()
            .instance_id(INSTANCE)
            .security_profile_name(name)
            .description(description)
            .permissions("BasicAgentAccess")
            .tags("team", "cc")
            .send()
            .await
            .expect("seed");
    }
    let dir = std::env::temp_dir().join(format!("{}-export", env.ns));
    let out = crate::onboarding::export(&env, &["--observe", "--output", dir.to_str().unwrap()]);
    assert!(out.status.success(), "export: {}", String::from_utf8_lossy(&out.stderr));
    // One manifest is seeded to differ: its description is not what Connect holds.
    let beta = dir.join("onb-beta.yaml");
    let text = std::fs::read_to_string(&beta).unwrap();
    assert!(text.contains("managementPolicy: Observe"), "{text}");
    std::fs::write(&beta, text.replace("description: beta", "description: beta as reviewed")).unwrap();

    env.emulator.control("DELETE", "calls", None);
    env.start_operator(&[]);
    let out = env.kubectl(&["apply", "-f", dir.to_str().unwrap()]);
    assert!(out.status.success(), "apply: {}", String::from_utf8_lossy(&out.stderr));

    let alpha = observed(&env, "onb-alpha", "True").await;
    observed(&env, "onb-gamma", "True").await;
    let beta = observed(&env, "onb-beta", "False").await;
    let status = beta.status.clone().unwrap();
    assert_eq!(status.diff_count, Some(1), "{:?}", status.diff);
    assert_eq!(status.diff[0].field, "description");
    assert_eq!((status.diff[0].connect.as_str(), status.diff[0].spec.as_str()), ("\"beta\"", "\"beta as reviewed\""));
    assert_eq!(beta.condition("InSync").unwrap().reason, "Drifted");
    assert!(writes(&env).is_empty(), "Observe writes nothing: {:?}", writes(&env));

    // A console edit of an observed profile shows up in its diff within the observation interval.
    let alpha_id = alpha.status.unwrap().security_profile_id.unwrap();
    env.emulator.control("PATCH", &format!("profiles/{INSTANCE}/{alpha_id}"), Some(json!({"description": "edited"})));
    let alpha = observed(&env, "onb-alpha", "False").await;
    let diff = &alpha.status.unwrap().diff;
    assert_eq!((diff[0].field.as_str(), diff[0].connect.as_str()), ("description", "\"edited\""));
    assert!(writes(&env).is_empty(), "still nothing written: {:?}", writes(&env));

    // Switching one resource to Manage repairs exactly that profile.
    let patch = json!({"spec": {"managementPolicy": "Manage"}}).to_string();
    let out = env.kubectl(&["patch", "csp", "onb-beta", "--type=merge", "-p", &patch]);
    assert!(out.status.success(), "patch: {}", String::from_utf8_lossy(&out.stderr));
    env.wait_held("beta repaired", "Onb Beta", |p| p["Description"] == "beta as reviewed").await;
    observed(&env, "onb-beta", "True").await;
    let beta_id = beta.status.unwrap().security_profile_id.unwrap();
    let written = writes(&env);
    assert!(!written.is_empty());
    assert!(written.iter().all(|(_, params)| params.contains(&beta_id)), "only Onb Beta was written: {written:?}");
    assert!(env.held("Onb Alpha").unwrap()["Description"] == "edited", "the observed profile stays as it is");

    // Deleting an Observe resource leaves its profile in Connect.
    let out = env.kubectl(&["delete", "csp", "onb-gamma", "--wait=true", "--timeout=60s"]);
    assert!(out.status.success(), "delete: {}", String::from_utf8_lossy(&out.stderr));
    assert!(env.held("Onb Gamma").is_some(), "the profile stays");
    assert!(!writes(&env).iter().any(|(op, _)| op == "DeleteSecurityProfile"));
}
