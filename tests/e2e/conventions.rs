//! End to end, the operator conventions users expect: a status within a second of the apply even while
//! Connect holds its answers, an annotation that pauses one resource, one that requests a reconcile
//! now, and `kubectl get csp` naming why a resource failed.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{TestEnv, manifest};

const T: Duration = Duration::from_secs(60);
const PAUSED: &str = "connect.cloud-operators.dev/paused";
const REQUESTED: &str = "connect.cloud-operators.dev/reconcile-requested-at";

fn annotated(name: &str, spec: Value, annotations: Value) -> String {
    let mut m: Value = serde_json::from_str(&manifest(name, spec)).unwrap();
    m["metadata"]["annotations"] = annotations;
    m.to_string()
}

fn calls_for(env: &TestEnv, operation: &str) -> usize {
    env.emulator.calls().iter().filter(|c| c.operation == operation).count()
}

/// Connect holds every answer for 8 s: the resource says what it waits for within a second anyway.
#[tokio::test]
async fn a_resource_shows_what_it_waits_for_within_a_second_while_connect_is_slow() {
    let mut env = TestEnv::new("conv-pending", &["--throttle-rate", "0"]).await;
    env.emulator.set_faults(json!({"throttleRate": 0, "holdAnswersMs": 8000}));
    env.start_operator(&[]);
    let applied = Instant::now();
    env.apply_ok(&manifest("slow", json!({"securityProfileName": "Conv Slow"})));
    let sp = env
        .wait_for("Ready reason Creating", T, async || {
            let sp = env.api().get_opt("slow").await.ok().flatten()?;
            (sp.condition("Ready")?.reason == "Creating").then_some(sp)
        })
        .await;
    let shown = applied.elapsed();
    println!("Ready=False reason Creating {shown:?} after kubectl apply (Connect answers after 8 s)");
    assert!(shown < Duration::from_secs(5), "the status came only after {shown:?}");
    let ready = sp.condition("Ready").unwrap();
    assert_eq!(ready.status, "False");
    assert!(ready.message.contains("waiting for Connect"), "{}", ready.message);
    env.emulator.set_faults(json!({"throttleRate": 0}));
    env.wait_condition("slow", "Ready", "True", T).await;
}

/// The paused annotation: no Connect call while set, the condition and `kubectl get csp` say so, and
/// removing it resumes. The reconcile-requested-at annotation reads the profile at once.
#[tokio::test]
async fn pause_and_reconcile_now_annotations() {
    let mut env = TestEnv::new("conv-pause", &["--throttle-rate", "0"]).await;
    // A long resync and a long listing interval: only the annotation can cause the read.
    env.start_operator(&["--resync", "1h", "--observe-interval", "1h"]);
    let spec = json!({"securityProfileName": "Conv Pause", "description": "v1"});
    env.apply_ok(&annotated("paused", spec.clone(), json!({PAUSED: "true"})));
    let sp = env.wait_reason("paused", "ReconcilePaused", T).await;
    assert!(sp.condition("Synced").unwrap().message.contains("Remove the annotation to resume"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(calls_for(&env, "CreateSecurityProfile"), 0, "no Connect call while paused");
    let table = env.kubectl(&["get", "csp", "paused"]);
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    println!("{table}");
    assert!(
        table.contains("SYNCED") && table.contains("ReconcilePaused"),
        "kubectl get csp names the reason:\n{table}"
    );

    env.apply_ok(&annotated("paused", spec.clone(), json!({})));
    let out = env.kubectl(&["annotate", "csp", "paused", &format!("{PAUSED}-")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    env.wait_condition("paused", "Ready", "True", T).await;
    assert_eq!(calls_for(&env, "CreateSecurityProfile"), 1, "resumed");

    // In sync and not due for an hour: a requested reconcile reads it now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reads = calls_for(&env, "DescribeSecurityProfile");
    let out = env.kubectl(&["annotate", "--overwrite", "csp", "paused", &format!("{REQUESTED}=first")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sp = env
        .wait_for("the request handled", T, async || {
            let sp = env.api().get("paused").await.ok()?;
            (sp.status.as_ref()?.last_handled_reconcile_at.as_deref() == Some("first")).then_some(sp)
        })
        .await;
    assert!(calls_for(&env, "DescribeSecurityProfile") > reads, "the profile was read at once");
    assert_eq!(sp.condition("Ready").unwrap().status, "True");
}

/// A failure shows in `kubectl get csp`: the Synced column names the reason.
#[tokio::test]
async fn kubectl_get_names_the_reason_of_a_failed_resource() {
    let mut env = TestEnv::new("conv-get", &["--throttle-rate", "0"]).await;
    env.emulator.set_faults(json!({"throttleRate": 0, "errorRate": 1.0}));
    env.start_operator(&[]);
    env.apply_ok(&manifest("failing", json!({"securityProfileName": "Conv Failing"})));
    env.wait_reason("failing", "InternalServiceException", T).await;
    let out = env.kubectl(&["get", "csp", "failing"]);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    println!("{table}");
    assert!(table.contains("InternalServiceException"), "{table}");
}
