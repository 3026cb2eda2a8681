//! The scale run of `make bench`: 10,000 SecurityProfiles over 100 Connect instances in 10 AWS accounts,
//! one namespace per account (a team), one InstanceBinding per instance with a role of its own in its
//! account. The emulator gives every account its own exact token bucket (2/s, burst 5) and lets each
//! role reach only its own account's instances; the operator runs with its defaults (2/s burst 5 per
//! account and Region, `--observe-interval 2m`).
//!
//! Measures, in one run: apply-to-all-Ready against the quota optimum of the busiest account, the
//! ThrottlingExceptions, RSS and Connect calls per hour per account at idle (polling), the first minute
//! after a restart, then the same operator with events (`--events-queue-url`): calls at idle, the
//! safety-net listing's cost per hour, and a console edit's time to repair through the queue.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use connect_operator::api::SecurityProfile;

use super::harness::{SqsServer, TestEnv, free_port};
use super::{Row, cpu_seconds, metric, operator_pid, row, scrape, status_mib};

const ACCOUNTS: usize = 10;
const INSTANCES_PER_ACCOUNT: usize = 10;
/// 1,000; `SCALE_PROFILES_PER_ACCOUNT` sets fewer for a quick look (a profiler's run, say).
static PROFILES_PER_ACCOUNT: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
    std::env::var("SCALE_PROFILES_PER_ACCOUNT").ok().and_then(|n| n.parse().ok()).unwrap_or(1000)
});
const REGION: &str = "us-east-1";

fn total() -> usize {
    ACCOUNTS * *PROFILES_PER_ACCOUNT
}

fn account(k: usize) -> String {
    format!("{}", 210_000_000_000u64 + k as u64)
}

fn instance(k: usize, j: usize) -> String {
    let n = k * 16 + j;
    format!("{:08x}-4444-4444-8444-{n:012x}", 0x5000_0000 + n)
}

/// The account of a call in the emulator's log: its session's role account.
fn call_account(call: &connect_emulator::CallRecord) -> String {
    call.principal.split(':').nth(4).unwrap_or("none").to_string()
}

/// STS, not Connect: signed by the operator's own credentials, outside every account's Connect quota.
fn is_sts(call: &connect_emulator::CallRecord) -> bool {
    call.operation == "AssumeRole"
}

/// Connect calls per account (every account listed, 0 included).
fn per_account(calls: &[connect_emulator::CallRecord]) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = (0..ACCOUNTS).map(|k| (account(k), 0)).collect();
    for call in calls.iter().filter(|c| c.operation != "Console" && !is_sts(c)) {
        *counts.entry(call_account(call)).or_default() += 1;
    }
    counts
}

fn max_min(counts: &BTreeMap<String, usize>) -> (usize, usize) {
    (counts.values().copied().max().unwrap_or(0), counts.values().copied().min().unwrap_or(0))
}

/// Which profiles are Ready and which have their Connect baseline recorded, kept by one watch of every
/// namespace (listing 10,000 objects every poll would load the apiserver more than the operator does).
#[derive(Clone, Default)]
struct Progress {
    ready: Arc<Mutex<HashMap<String, (bool, bool)>>>,
}

impl Progress {
    /// Watches the SecurityProfiles of every namespace whose name starts with `prefix`.
    fn start(client: kube::Client, prefix: &str) -> Self {
        let progress = Self::default();
        let state = progress.ready.clone();
        let api: Api<SecurityProfile> = Api::all(client);
        let prefix = prefix.to_string();
        tokio::spawn(async move {
            let stream = watcher(api, watcher::Config::default().page_size(500)).default_backoff().applied_objects();
            let mut stream = std::pin::pin!(stream);
            while let Ok(Some(sp)) = stream.try_next().await {
                if !sp.metadata.namespace.as_deref().unwrap_or_default().starts_with(&prefix) {
                    continue;
                }
                let key = format!(
                    "{}/{}",
                    sp.metadata.namespace.clone().unwrap_or_default(),
                    sp.metadata.name.clone().unwrap_or_default()
                );
                let ready = sp.condition("Ready").is_some_and(|c| c.status == "True");
                let baselined = sp.status.as_ref().is_some_and(|s| s.connect_last_modified_time.is_some());
                state.lock().unwrap().insert(key, (ready, baselined));
            }
        });
        progress
    }

    fn counts(&self) -> (usize, usize) {
        let state = self.ready.lock().unwrap();
        (state.values().filter(|s| s.0).count(), state.values().filter(|s| s.1).count())
    }

    async fn wait(&self, what: &str, timeout: Duration, done: impl Fn((usize, usize)) -> bool) -> Duration {
        let start = Instant::now();
        while !done(self.counts()) {
            assert!(start.elapsed() < timeout, "{what}: not within {timeout:?} ({:?})", self.counts());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        start.elapsed()
    }
}

fn profile(name: &str, instance_id: &str, i: usize) -> SecurityProfile {
    serde_json::from_value(json!({
        "apiVersion": "connect.cloud-operators.dev/v1alpha1", "kind": "SecurityProfile",
        "metadata": {"name": name},
        "spec": {"instanceId": instance_id, "securityProfileName": name, "description": format!("scale {i}"),
                 "permissions": ["BasicAgentAccess"], "tags": {"bench": "scale"},
                 // The namespaces go at the end of the run without 10,000 deletions in Connect.
                 "deletionPolicy": "Retain"},
    }))
    .unwrap()
}

/// Creates every account's profiles, interleaved across accounts (profile i of each account, then i+1).
async fn create_all(client: &kube::Client, namespaces: &[String]) {
    let items: Vec<(usize, usize)> =
        (0..(*PROFILES_PER_ACCOUNT)).flat_map(|i| (0..ACCOUNTS).map(move |k| (k, i))).collect();
    futures::stream::iter(items)
        .map(|(k, i)| {
            let api: Api<SecurityProfile> = Api::namespaced(client.clone(), &namespaces[k]);
            let obj = profile(&format!("s{k}-{i:04}"), &instance(k, i % INSTANCES_PER_ACCOUNT), i);
            async move { api.create(&PostParams::default(), &obj).await.expect("create") }
        })
        .buffer_unordered(32)
        .for_each(|_| async {})
        .await;
}

/// The operator's arguments: the defaults but for its metrics address and its namespaces.
fn operator_args(port: u16, namespaces: &[String], events: bool) -> Vec<String> {
    let mut args: Vec<String> = ["--connect-rate", "2", "--connect-burst", "5", "--observe-interval", "2m"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(["--metrics-addr".to_string(), format!("127.0.0.1:{port}")]);
    if events {
        // The default with events on, stated for the reader of this file.
        args.extend(["--events-observe-interval".to_string(), "30m".to_string()]);
    }
    for ns in namespaces {
        args.extend(["--namespace".to_string(), ns.clone()]);
    }
    args
}

fn start_operator(env: &mut TestEnv, args: &[String], extra_env: &[(&str, &str)]) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.start_operator_with_env(&args, extra_env);
}

pub async fn run(rows: &mut Vec<Row>) {
    let sqs = SqsServer::start("bench-scale");
    let queue = sqs.create_queue("connect-events-scale").await;
    let specs: Vec<String> = (0..ACCOUNTS)
        .flat_map(|k| (0..INSTANCES_PER_ACCOUNT).map(move |j| format!("{}:{}", account(k), instance(k, j))))
        .collect();
    let mut args: Vec<&str> =
        vec!["--throttle-rate", "2", "--throttle-burst", "5", "--profile-limit", "200", "--events-queue-url", &queue];
    for spec in &specs {
        args.extend(["--instance", spec.as_str()]);
    }
    let mut env = TestEnv::new("bench-scale", &args).await;
    let mut namespaces = vec![env.ns.clone()];
    for k in 1..ACCOUNTS {
        namespaces.push(env.extra_namespace(&format!("team{k}")).await);
    }
    let mut bindings = Vec::new();
    for (k, namespace) in namespaces.iter().enumerate() {
        for j in 0..INSTANCES_PER_ACCOUNT {
            let role = format!("arn:aws:iam::{}:role/connect-team-{k}-instance-{j}", account(k));
            let spec = json!({"instanceId": instance(k, j), "region": REGION, "roleArn": role,
                              "namespaces": [namespace]});
            bindings.push(env.bind(&format!("{}-{k}-{j}", env.ns), spec));
        }
    }
    let sts = env.emulator.endpoint();
    // Logging at info, as a production operator runs (the tests' debug logs 10,000 reconciles).
    let polling_env = [("ALLOW_UNBOUND", "false"), ("AWS_ENDPOINT_URL_STS", sts.as_str()), ("LOG_LEVEL", "info")];
    let port = free_port();
    // No CloudTrail events until the events part: the rollout's 10,000 would only fill the queue (an SQS
    // server in Python slows down as its queue grows) for the harness to drop.
    env.emulator.control("PUT", "events", Some(json!({"paused": true})));
    start_operator(&mut env, &operator_args(port, &namespaces, false), &polling_env);
    let progress = Progress::start(env.client.clone(), &env.ns);
    tokio::time::sleep(Duration::from_secs(10)).await; // the bindings' first checks, the buckets refill
    let pid = operator_pid(&env);
    env.emulator.control("DELETE", "calls", None);
    let cpu0 = cpu_seconds(pid);

    // 1. The rollout.
    let start = Instant::now();
    create_all(&env.client, &namespaces).await;
    let created = start.elapsed().as_secs_f64();
    progress.wait("all Ready", Duration::from_secs(1800), |(ready, _)| ready >= total()).await;
    let took = start.elapsed().as_secs_f64();
    let cpu_rollout = cpu_seconds(pid) - cpu0;
    let calls = env.emulator.calls();
    let throttled = calls.iter().filter(|c| c.outcome == "ThrottlingException").count();
    let (busiest, _) = max_min(&per_account(&calls));
    let optimum = ((*PROFILES_PER_ACCOUNT) as f64 - 5.0) / 2.0;
    rows.push(row(
        "10,000 profiles (100 instances, 10 accounts, 1,000 each) applied to all Ready, 2/s burst 5 per account",
        format!(
            "{took:.0} s (optimum of the busiest account {optimum:.1} s): ratio {:.2}; applied to the apiserver in {created:.0} s; {cpu_rollout:.0} CPU s",
            took / optimum
        ),
        "ratio <= 1.2",
    ));
    rows.push(row(
        "ThrottlingExceptions during that rollout; Connect calls of the busiest account",
        format!("{throttled}; {busiest} ({:.2}/profile)", busiest as f64 / (*PROFILES_PER_ACCOUNT) as f64),
        "0",
    ));

    // 2. Idle, polling: every profile's baseline recorded, then a window of two listing intervals.
    progress.wait("every baseline", Duration::from_secs(1200), |(_, baselined)| baselined >= total()).await;
    env.emulator.control("DELETE", "calls", None);
    let m0 = scrape(port).await;
    let cpu1 = cpu_seconds(pid);
    let window = 240.0;
    tokio::time::sleep(Duration::from_secs_f64(window)).await;
    let cpu_idle = cpu_seconds(pid) - cpu1;
    let m1 = scrape(port).await;
    let (rss, anon) = (status_mib(pid, "VmRSS"), status_mib(pid, "RssAnon"));
    let calls = env.emulator.calls();
    let (max, min) = max_min(&per_account(&calls));
    let per_hour = |n: usize| n as f64 * 3600.0 / window;
    let status_writes =
        metric(&m1, "connect_operator_status_writes_total") - metric(&m0, "connect_operator_status_writes_total");
    rows.push(row(
        "operator RSS, 10,000 profiles Ready and idle",
        format!("{rss:.1} MiB ({anon:.1} heap and stacks)"),
        "<= 64 MiB",
    ));
    rows.push(row(
        "Connect calls per hour per account at idle, polling (--observe-interval 2m, 10 instances per account)",
        format!(
            "{:.0} (busiest), {:.0} (quietest); {status_writes:.0} status writes, {:.2} CPU s per minute",
            per_hour(max),
            per_hour(min),
            cpu_idle / window * 60.0
        ),
        "<= 600",
    ));

    // 3. A restart (polling): the first minute.
    env.operator.take().expect("operator").kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    env.emulator.control("DELETE", "calls", None);
    start_operator(&mut env, &operator_args(port, &namespaces, false), &polling_env);
    let pid = operator_pid(&env);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let calls = env.emulator.calls();
    let (max, _) = max_min(&per_account(&calls));
    let m = scrape(port).await;
    let busiest = per_account(&calls).into_iter().max_by_key(|(_, n)| *n).map(|(a, _)| a).unwrap_or_default();
    let mut operations: BTreeMap<&str, usize> = BTreeMap::new();
    for call in calls.iter().filter(|c| call_account(c) == busiest) {
        *operations.entry(call.operation.as_str()).or_default() += 1;
    }
    let (ready, _) = progress.counts();
    rows.push(row(
        "restart with 10,000 Ready profiles: Connect calls in the first minute",
        format!(
            "{} Connect calls in all, {max} for the busiest account ({operations:?}; {} throttled); {} AssumeRole (one per identity used); {:.1} CPU s; {:.0} status writes; {ready} of {} still Ready",
            calls.iter().filter(|c| !is_sts(c)).count(),
            calls.iter().filter(|c| c.outcome == "ThrottlingException").count(),
            calls.iter().filter(|c| is_sts(c)).count(),
            cpu_seconds(pid),
            metric(&m, "connect_operator_status_writes_total"),
            total(),
        ),
        "-",
    ));

    // 4. With events: the emulator's trail on, the queue empty, the operator restarted reading the
    //    queue, one listing round (its start), then idle.
    env.operator.take().expect("operator").kill();
    env.emulator.control("PUT", "events", Some(json!({"paused": false})));
    // Whatever reached the queue before (nothing while paused): wait until its depth stops growing,
    // then drop it.
    let mut depth = u64::MAX;
    loop {
        let now = sqs.depth(&queue).await;
        if now == depth {
            break;
        }
        depth = now;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    sqs.client().purge_queue().queue_url(&queue).send().await.expect("PurgeQueue");
    tokio::time::sleep(Duration::from_secs(3)).await;
    env.emulator.control("DELETE", "calls", None);
    let mut events_env = polling_env.to_vec();
    events_env.extend([("EVENTS_QUEUE_URL", queue.as_str()), ("AWS_ENDPOINT_URL_SQS", sqs.endpoint.as_str())]);
    start_operator(&mut env, &operator_args(port, &namespaces, true), &events_env);
    let pid = operator_pid(&env);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let first_round = env.emulator.calls();
    let (round_max, _) = max_min(&per_account(&first_round));
    // Two listing rounds an hour: ListSecurityProfiles each time, SearchSecurityProfiles every third.
    let of = |op: &str| {
        let calls: Vec<_> = first_round.iter().filter(|c| c.operation == op).cloned().collect();
        max_min(&per_account(&calls)).0 as f64
    };
    let safety_net = 2.0 * (of("ListSecurityProfiles") + of("SearchSecurityProfiles") / 3.0);
    env.emulator.control("DELETE", "calls", None);
    tokio::time::sleep(Duration::from_secs_f64(window)).await;
    let idle = env.emulator.calls();
    let (idle_max, _) = max_min(&per_account(&idle));
    rows.push(row(
        "Connect calls per hour per account at idle, with events (--events-observe-interval 30m)",
        format!(
            "{idle_max} in a {window:.0} s window (busiest account); the start-up listing round cost {round_max} (with the search), so the two safety-net rounds an hour cost {safety_net:.0}"
        ),
        "<= 60",
    ));

    // 5. A console edit, repaired through the queue.
    let api: Api<SecurityProfile> = Api::namespaced(env.client.clone(), &namespaces[3]);
    let declared = api.get("s3-0042").await.expect("s3-0042");
    let description = declared.spec.description.clone().unwrap_or_default();
    let id = declared.status.and_then(|s| s.security_profile_id).expect("an ID");
    let inst = instance(3, 42 % INSTANCES_PER_ACCOUNT);
    env.emulator.control("DELETE", "calls", None);
    let edited = Instant::now();
    env.emulator.control(
        "PATCH",
        &format!("profiles/{inst}/{id}"),
        Some(json!({"description": "edited in the console"})),
    );
    loop {
        let held = env.emulator.profiles(&inst);
        if held.iter().any(|p| p["Id"] == id.as_str() && p["Description"] == description.as_str()) {
            break;
        }
        assert!(edited.elapsed() < Duration::from_secs(300), "console edit not repaired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let repaired = edited.elapsed().as_secs_f64();
    let listings = env
        .emulator
        .calls()
        .iter()
        .filter(|c| ["ListSecurityProfiles", "SearchSecurityProfiles"].contains(&c.operation.as_str()))
        .count();
    rows.push(row(
        "console edit to its repair at 10,000 profiles, with events",
        format!("{repaired:.1} s ({listings} listings in between)"),
        "<= 15 s, no listing",
    ));
    rows.push(row(
        "operator RSS with events, 10,000 profiles idle",
        format!("{:.1} MiB", status_mib(pid, "VmRSS")),
        "<= 64 MiB",
    ));
    // Clean up while the operator runs: Retain releases each profile without a Connect call.
    let all: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(env.client.clone());
    for ns in &namespaces {
        let _ = all.delete(ns, &Default::default()).await;
    }
    let gone = Instant::now();
    while gone.elapsed() < Duration::from_secs(600) {
        let mut left = 0;
        for ns in &namespaces {
            left += usize::from(all.get_opt(ns).await.ok().flatten().is_some());
        }
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    drop(bindings);
}
