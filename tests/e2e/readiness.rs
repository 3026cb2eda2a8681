//! End to end: `/readyz` is ready only while the API server lists what the operator watches, `/healthz`
//! answers regardless, and the JSON logs of a reconcile carry its span's fields.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{TestEnv, e2e_log_dir, free_port, http_get, kubeconfig, manifest};

/// The status code of `GET path` on 127.0.0.1:`port` (None while nothing answers).
async fn status(port: u16, path: &str) -> Option<u16> {
    http_get(port, path).await?.split(' ').nth(1)?.parse().ok()
}

/// The test cluster's kubeconfig with its server moved to a port where nothing listens.
fn kubeconfig_to_a_closed_port(name: &str) -> std::path::PathBuf {
    let mut config: Value = serde_saphyr::from_str(&std::fs::read_to_string(kubeconfig()).unwrap()).unwrap();
    config["clusters"][0]["cluster"]["server"] = json!(format!("https://127.0.0.1:{}", free_port()));
    let path = e2e_log_dir().join(format!("{name}-closed-port.kubeconfig"));
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

#[tokio::test]
async fn not_ready_while_the_api_server_does_not_answer_yet_alive() {
    let mut env = TestEnv::new("readiness-down", &[]).await;
    let port = free_port();
    let closed = kubeconfig_to_a_closed_port(&env.ns);
    let addr = format!("127.0.0.1:{port}");
    env.start_operator_with_env(&["--metrics-addr", &addr], &[("KUBECONFIG", closed.to_str().unwrap())]);
    env.wait_for("/healthz answers 200", Duration::from_secs(20), async || {
        (status(port, "/healthz").await == Some(200)).then_some(())
    })
    .await;
    // Several checks (they retry after 0.5 s, 1 s, 2 s, ...): never ready, always alive.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        assert_eq!(status(port, "/readyz").await, Some(503), "{}", env.operator_log_tail());
        assert_eq!(status(port, "/healthz").await, Some(200), "{}", env.operator_log_tail());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let operator = env.operator.as_mut().unwrap();
    assert!(operator.child.try_wait().unwrap().is_none(), "the operator waits for the API server, it does not exit");
    let log = env.operator_log_tail();
    assert!(log.contains("not ready: the API server does not answer"), "{log}");
}

#[tokio::test]
async fn ready_with_the_cluster_and_json_logs_carry_the_reconcile_span() {
    let mut env = TestEnv::new("readiness-up", &[]).await;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    env.start_operator_with_env(&["--metrics-addr", &addr], &[("LOG_FORMAT", "json")]);
    env.wait_for("/readyz answers 200", Duration::from_secs(30), async || {
        (status(port, "/readyz").await == Some(200)).then_some(())
    })
    .await;
    assert_eq!(status(port, "/healthz").await, Some(200));

    env.apply_ok(&manifest("spanned", json!({"securityProfileName": "spanned"})));
    env.wait_condition("spanned", "Ready", "True", Duration::from_secs(30)).await;
    let log = std::fs::read_to_string(&env.operator.as_ref().unwrap().log).unwrap();
    let lines: Vec<Value> = log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let in_reconcile = lines
        .iter()
        .find(|l| {
            l["spans"].as_array().is_some_and(|spans| {
                spans.iter().any(|s| s["name"] == "reconcile" && s["profile"] == "spanned" && s["namespace"] == env.ns)
            })
        })
        .unwrap_or_else(|| panic!("no log line in the span of the reconcile of spanned:\n{log}"));
    let span = in_reconcile["spans"].as_array().unwrap().iter().find(|s| s["name"] == "reconcile").unwrap();
    assert_eq!(span["instance"], crate::harness::INSTANCE, "{in_reconcile}");
    assert_eq!(span["generation"], 1, "{in_reconcile}");
    assert!(log.contains("\"message\":\"ready: the API server answered"), "{log}");
}
