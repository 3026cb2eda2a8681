//! End to end: a rollout under injected 500s, throttling, lost create responses and SIGKILLs of
//! the operator ends with every profile Ready exactly once, matching its spec. The profile count is
//! FAULT_SUITE_PROFILES (default 20; the benchmark runs 100).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{INSTANCE, TestEnv, manifest};

fn spec(i: usize) -> Value {
    json!({
        "securityProfileName": format!("fault-{i:03}"),
        "description": format!("profile {i} of the fault suite"),
        "permissions": ["BasicAgentAccess", format!("Perm{}", i % 7)],
        "tags": {"suite": "faults", "index": i.to_string()},
    })
}

/// Result of one chaotic rollout, for the test's assertions and the benchmark's table.
pub struct FaultRun {
    pub profiles: usize,
    pub kills: usize,
    pub connect_calls: usize,
    pub errors_injected: usize,
    pub throttled: usize,
    pub lost_responses: usize,
    pub seconds: f64,
}

pub async fn chaotic_rollout(n: usize) -> FaultRun {
    let mut env = TestEnv::new(
        "faults",
        &[
            "--throttle-rate",
            "8",
            "--throttle-burst",
            "8",
            "--error-rate",
            "0.1",
            "--lose-next-creates",
            "3",
            "--profile-limit",
            "1000",
        ],
    )
    .await;
    // The operator's own limit is set above the emulator's quota so that throttling really happens.
    let operator_args = [
        "--connect-rate",
        "10",
        "--connect-burst",
        "10",
        "--retry-base",
        "100ms",
        "--retry-max",
        "2s",
        "--concurrency",
        "8",
    ];
    env.start_operator(&operator_args);
    let started = Instant::now();
    let all: String = (0..n).map(|i| format!("{}\n---\n", manifest(&format!("fault-{i:03}"), spec(i)))).collect();
    env.apply_ok(&all);
    let api = env.api();
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(60 + 3 * n as u64);
    let mut next_kill = Instant::now() + Duration::from_millis(rand::random_range(300..1500));
    loop {
        let list = api.list(&Default::default()).await.expect("list");
        let done = list
            .items
            .iter()
            .filter(|sp| {
                ["Ready", "Synced"].iter().all(|t| {
                    sp.condition(t)
                        .is_some_and(|c| c.status == "True" && c.observed_generation == sp.metadata.generation)
                })
            })
            .count();
        if done == n {
            break;
        }
        assert!(Instant::now() < deadline, "only {done}/{n} Ready in time\n{}", env.operator_log_tail());
        if kills < 4 && Instant::now() >= next_kill {
            // SIGKILL at a random moment, then a fresh process.
            if let Some(mut p) = env.operator.take() {
                p.kill();
            }
            kills += 1;
            env.start_operator(&operator_args);
            next_kill = Instant::now() + Duration::from_millis(rand::random_range(500..2500));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seconds = started.elapsed().as_secs_f64();

    // Exactly one profile per resource, matching its spec, owned by it; nothing else.
    let uids: BTreeMap<String, String> = api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|sp| (sp.spec.security_profile_name.clone(), sp.metadata.uid.clone().unwrap()))
        .collect();
    let held: Vec<Value> = env
        .emulator
        .profiles(INSTANCE)
        .into_iter()
        .filter(|p| p["SecurityProfileName"].as_str().unwrap().starts_with("fault-"))
        .collect();
    assert_eq!(held.len(), n, "no duplicates, no orphans");
    for i in 0..n {
        let want = spec(i);
        let name = want["securityProfileName"].as_str().unwrap();
        let p = held.iter().find(|p| p["SecurityProfileName"] == name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(p["Description"], want["description"], "{name}");
        let mut perms: Vec<String> = serde_json::from_value(want["permissions"].clone()).unwrap();
        perms.sort();
        let mut got: Vec<String> = serde_json::from_value(p["Permissions"].clone()).unwrap();
        got.sort();
        assert_eq!(got, perms, "{name}");
        assert_eq!(p["Tags"]["index"], want["tags"]["index"], "{name}");
        assert_eq!(
            p["Tags"]["connect.cloud-operators.dev/owner-uid"].as_str(),
            uids.get(name).map(String::as_str),
            "{name} owned by its resource"
        );
    }
    let calls = env.emulator.calls();
    FaultRun {
        profiles: n,
        kills,
        connect_calls: calls.len(),
        errors_injected: calls.iter().filter(|c| c.outcome == "InternalServiceException").count(),
        throttled: calls.iter().filter(|c| c.outcome == "ThrottlingException").count(),
        lost_responses: calls.iter().filter(|c| c.outcome == "ok:response-lost").count(),
        seconds,
    }
}

#[tokio::test]
async fn a_rollout_under_faults_and_kills_ends_with_every_profile_once() {
    let n: usize = std::env::var("FAULT_SUITE_PROFILES").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let run = chaotic_rollout(n).await;
    println!(
        "fault suite: {} profiles Ready in {:.1}s with {} SIGKILLs; {} Connect calls ({:.1}/profile): {} injected 500s, {} throttled, {} lost create responses",
        run.profiles,
        run.seconds,
        run.kills,
        run.connect_calls,
        run.connect_calls as f64 / n as f64,
        run.errors_injected,
        run.throttled,
        run.lost_responses
    );
    assert!(run.kills >= 1, "the operator was killed at least once");
    // Bounded. Served calls: a create, a full read (Describe + 4 lists) and retries of faulted calls
    // per profile, plus what restarts re-read. Throttled calls: the operator's limit is set above the
    // emulator's quota on purpose here, so these are the price of that misconfiguration.
    let served = run.connect_calls - run.throttled;
    assert!(served <= n * 15 + 100, "{served} served calls for {n} profiles");
    assert!(run.connect_calls <= n * 40 + 200, "{} calls for {n} profiles", run.connect_calls);
}
