//! End to end: leader election between two operator processes, and /metrics moving.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{TestEnv, manifest};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn scrape(port: u16) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    Some(out)
}

fn value(metrics: &str, series: &str) -> f64 {
    metrics.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0)
}

#[tokio::test]
async fn only_the_leader_reconciles_and_a_standby_takes_over_with_metrics_moving() {
    let env = TestEnv::new("leader", &["--throttle-rate", "0"]).await;
    let (port_a, port_b) = (free_port(), free_port());
    let args = |port: u16| {
        vec![
            "--leader-elect".to_string(),
            "--lease-namespace".to_string(),
            env.ns.clone(),
            "--lease-duration".to_string(),
            "3s".to_string(),
            "--metrics-addr".to_string(),
            format!("127.0.0.1:{port}"),
        ]
    };
    let a_args = args(port_a);
    let mut a = env.spawn_operator(
        &a_args.iter().map(String::as_str).collect::<Vec<_>>(),
        &[("POD_NAME", "replica-a")],
        "operator-a",
    );
    tokio::time::sleep(Duration::from_millis(1500)).await; // a takes the lease first
    let b_args = args(port_b);
    let b = env.spawn_operator(
        &b_args.iter().map(String::as_str).collect::<Vec<_>>(),
        &[("POD_NAME", "replica-b")],
        "operator-b",
    );
    let leader_of = async |port: u16| scrape(port).await.map(|m| value(&m, "connect_operator_leader "));
    env.wait_for("replica a leads, b stands by", Duration::from_secs(20), async || {
        (leader_of(port_a).await == Some(1.0) && leader_of(port_b).await == Some(0.0)).then_some(())
    })
    .await;
    let before = scrape(port_a).await.unwrap();
    env.apply_ok(&manifest("led", json!({"securityProfileName": "led"})));
    env.wait_condition("led", "Ready", "True", Duration::from_secs(30)).await;
    let after = scrape(port_a).await.unwrap();
    let create = "connect_operator_connect_calls_total{operation=\"CreateSecurityProfile\",outcome=\"ok\"}";
    assert_eq!(value(&after, create) - value(&before, create), 1.0, "the create is counted");
    assert!(
        value(&after, "connect_operator_reconciles_total{result=\"success\"")
            > value(&before, "connect_operator_reconciles_total{result=\"success\"")
    );
    assert!(
        value(&after, "connect_operator_status_writes_total") > value(&before, "connect_operator_status_writes_total")
    );
    assert!(after.contains("connect_operator_reconcile_duration_seconds_count"));
    let standby = scrape(port_b).await.unwrap();
    assert_eq!(value(&standby, "connect_operator_connect_calls_total"), 0.0, "the standby made no Connect call");
    assert_eq!(
        value(&standby, "connect_operator_reconcile_duration_seconds_count"),
        0.0,
        "the standby did not reconcile"
    );

    // Kill the leader without a chance to release the lease: b takes over within the lease duration.
    a.kill();
    let killed = Instant::now();
    env.wait_for("replica b takes over", Duration::from_secs(15), async || {
        (leader_of(port_b).await == Some(1.0)).then_some(())
    })
    .await;
    let takeover = killed.elapsed();
    assert!(
        takeover <= Duration::from_secs(3) + Duration::from_secs(3),
        "took {takeover:?} (lease 3s, renew/retry every 1s)"
    );
    env.apply_ok(&manifest("after", json!({"securityProfileName": "after"})));
    env.wait_condition("after", "Ready", "True", Duration::from_secs(30)).await;
    let creates: Vec<String> = env
        .emulator
        .calls()
        .iter()
        .filter(|c| c.operation == "CreateSecurityProfile")
        .map(|c| c.params["body"]["SecurityProfileName"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(creates, ["led", "after"], "each profile created once, by whichever replica led");
    drop(b);
}
