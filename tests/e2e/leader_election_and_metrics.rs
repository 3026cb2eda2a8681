//! End to end: leader election between two operator processes, and /metrics moving.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{TestEnv, free_port, manifest, metric_value, scrape};

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
    let leader_of = async |port: u16| scrape(port).await.map(|m| metric_value(&m, "connect_operator_leader "));
    env.wait_for("replica a leads, b stands by", Duration::from_secs(20), async || {
        (leader_of(port_a).await == Some(1.0) && leader_of(port_b).await == Some(0.0)).then_some(())
    })
    .await;
    let before = scrape(port_a).await.unwrap();
    env.apply_ok(&manifest("led", json!({"securityProfileName": "led"})));
    env.wait_condition("led", "Ready", "True", Duration::from_secs(30)).await;
    let after = scrape(port_a).await.unwrap();
    let create = "connect_operator_connect_calls_total{operation=\"CreateSecurityProfile\",outcome=\"ok\"}";
    assert_eq!(metric_value(&after, create) - metric_value(&before, create), 1.0, "the create is counted");
    assert!(
        metric_value(&after, "connect_operator_reconciles_total{result=\"success\"")
            > metric_value(&before, "connect_operator_reconciles_total{result=\"success\"")
    );
    assert!(
        metric_value(&after, "connect_operator_status_writes_total")
            > metric_value(&before, "connect_operator_status_writes_total")
    );
    assert!(after.contains("connect_operator_reconcile_duration_seconds_count"));
    let standby = scrape(port_b).await.unwrap();
    assert_eq!(metric_value(&standby, "connect_operator_connect_calls_total"), 0.0, "the standby made no Connect call");
    assert_eq!(
        metric_value(&standby, "connect_operator_reconcile_duration_seconds_count"),
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

/// The standby times a lease's expiry on its own clock from the last change it saw, never by comparing
/// its clock with the holder's `renewTime` (which another node's clock wrote): a lease that is being
/// renewed is not taken however old its `renewTime` looks, and one that stopped changing is taken a
/// lease duration later however far in the future its `renewTime` is.
#[tokio::test]
async fn a_standby_times_the_lease_on_its_own_clock() {
    use k8s_openapi::api::coordination::v1::Lease;
    use kube::api::{Api, Patch, PatchParams, PostParams};

    let env = TestEnv::new("skew", &["--throttle-rate", "0"]).await;
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.ns);
    let lease = |renew_time: &str| {
        json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "connect-operator"},
            "spec": {"holderIdentity": "elsewhere", "leaseDurationSeconds": 3, "renewTime": renew_time},
        })
    };
    leases
        .create(&PostParams::default(), &serde_json::from_value(lease("2000-01-01T00:00:00.000000Z")).unwrap())
        .await
        .unwrap();
    let port = free_port();
    let args = ["--leader-elect", "--lease-namespace", &env.ns, "--lease-duration", "3s"];
    let metrics_addr = format!("127.0.0.1:{port}");
    let mut all = args.to_vec();
    all.extend(["--metrics-addr", metrics_addr.as_str()]);
    let standby = env.spawn_operator(&all, &[("POD_NAME", "replica-b")], "operator");
    let leader_of = async || scrape(port).await.map(|m| metric_value(&m, "connect_operator_leader "));
    env.wait_for("the operator serves metrics", Duration::from_secs(20), async || leader_of().await).await;

    // "elsewhere" renews every 300ms with its clock a quarter of a century behind: never taken.
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(6) {
        i += 1;
        let renewed = format!("2000-01-01T00:00:{:02}.000000Z", i % 60);
        leases.patch("connect-operator", &PatchParams::default(), &Patch::Merge(lease(&renewed))).await.unwrap();
        assert_eq!(leader_of().await, Some(0.0), "took a lease that was being renewed");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Its last renewal claims a time an hour ahead, then nothing: taken about 3s later.
    let ahead = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).strftime("%Y-%m-%dT%H:%M:%S%.6fZ");
    let ahead = ahead.to_string();
    let stopped = Instant::now();
    leases.patch("connect-operator", &PatchParams::default(), &Patch::Merge(lease(&ahead))).await.unwrap();
    env.wait_for("the standby takes over", Duration::from_secs(10), async || {
        (leader_of().await == Some(1.0)).then_some(())
    })
    .await;
    let took = stopped.elapsed();
    assert!(took >= Duration::from_secs(3), "took over {took:?} after the last renewal, before the lease duration");
    assert!(took <= Duration::from_secs(6), "took {took:?} (lease 3s, retry every 1s)");
    let held = leases.get("connect-operator").await.unwrap().spec.unwrap();
    assert_eq!(held.holder_identity.as_deref(), Some("replica-b"));
    assert_eq!(held.lease_transitions, Some(1));
    drop(standby);
}
