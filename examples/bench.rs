//! The benchmark (`make bench`): release binaries of the operator and the emulator against the local
//! kube-apiserver. Prints a table and writes BENCHMARKS.md with the machine it ran on.
//!
//! Measures: RSS with 1,000 SecurityProfiles over 10 instances Ready and idle; time for 100 new profiles
//! to be Ready under Connect's 2/s burst 5 quota as a ratio to the quota-bound optimum, the
//! ThrottlingExceptions seen and the calls until the first listing after; apply-to-Ready latency p50/p95
//! over 50 single applies without quota; Connect calls per hour and status writes at steady state; calls
//! in the first minute after a restart and the Ready time of a new profile meanwhile; a console edit's
//! time to repair; CPU seconds during rollouts and at idle; the fault suite at 100.

#[path = "../tests/e2e/harness.rs"]
mod harness;
#[path = "../tests/support/mod.rs"]
mod support;

#[path = "bench/scale.rs"]
mod scale;

#[path = "../tests/e2e/faults.rs"]
#[allow(dead_code)]
mod faults;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use harness::{TestEnv, free_port, manifest};
use kube::api::{Api, PostParams};
use serde_json::json;

use connect_operator::api::SecurityProfile;

/// What the scale rows measure, below the table.
const SCALE_NOTE: &str = "The scale rows (examples/bench/scale.rs): 10,000 SecurityProfiles in 10 namespaces, one per AWS \
account, each namespace's 1,000 over its account's 10 instances; 100 InstanceBindings, each with a role of its own in \
its account (the operator assumes it through the emulator's STS). The emulator gives every account its own exact token \
bucket (2/s, burst 5) and answers a role only for its own account's instances; the operator runs with its defaults \
(2/s burst 5 per account and Region, --observe-interval 2m, --search-every 3). The quota optimum of an account's \
rollout is (1,000 - 5) / 2 = 497.5 s, every account having the same share. The restart and the events rows are the \
same operator and profiles, restarted; with events (--events-queue-url: the emulator sends every write as a \
CloudTrail event to an SQS queue of moto_server) the instance listing runs every 30 minutes, so its hourly cost is two \
listing rounds (ListSecurityProfiles each, SearchSecurityProfiles every third) at the cost measured at the restart, \
and the idle window shows what else is called.";

/// One line of the table: measure, result, target.
type Row = (String, String, String);

fn row(measure: &str, result: String, target: &str) -> Row {
    (measure.to_string(), result, target.to_string())
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// A `/proc/PID/status` memory line (`VmRSS`, `RssAnon`, `RssFile`) in MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|rest| rest.starts_with(':')))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn operator_pid(env: &TestEnv) -> u32 {
    env.operator.as_ref().expect("operator running").child.id()
}

fn object(name: &str, i: usize) -> SecurityProfile {
    serde_json::from_str(&manifest(name, json!({"securityProfileName": name, "description": format!("bench {i}"), "permissions": ["BasicAgentAccess"], "tags": {"bench": "yes"}}))).unwrap()
}

async fn count_ready(api: &Api<SecurityProfile>) -> usize {
    api.list(&Default::default())
        .await
        .map(|l| l.items.iter().filter(|sp| sp.condition("Ready").is_some_and(|c| c.status == "True")).count())
        .unwrap_or(0)
}

async fn create_all(api: &Api<SecurityProfile>, names: &[String]) {
    for chunk in names.chunks(20) {
        let creates = chunk.iter().enumerate().map(|(i, n)| {
            let api = api.clone();
            let obj = object(n, i);
            async move { api.create(&PostParams::default(), &obj).await.expect("create") }
        });
        futures::future::join_all(creates).await;
    }
}

/// Creates `names` spread over `instances` (round robin).
async fn create_all_in(api: &Api<SecurityProfile>, names: &[String], instances: &[String]) {
    for (chunk_no, chunk) in names.chunks(20).enumerate() {
        let creates = chunk.iter().enumerate().map(|(i, n)| {
            let api = api.clone();
            let mut obj = object(n, i);
            obj.spec.instance_id = instances[(chunk_no * 20 + i) % instances.len()].clone();
            async move { api.create(&PostParams::default(), &obj).await.expect("create") }
        });
        futures::future::join_all(creates).await;
    }
}

/// How many profiles have their Connect LastModifiedTime recorded (the listing's baseline).
async fn count_baselined(api: &Api<SecurityProfile>) -> usize {
    api.list(&Default::default())
        .await
        .map(|l| {
            l.items
                .iter()
                .filter(|sp| sp.status.as_ref().is_some_and(|s| s.connect_last_modified_time.is_some()))
                .count()
        })
        .unwrap_or(0)
}

/// Waits until `n` profiles have their baseline recorded.
async fn wait_baselined(api: &Api<SecurityProfile>, n: usize, timeout: Duration) {
    let start = Instant::now();
    while count_baselined(api).await < n {
        assert!(start.elapsed() < timeout, "no baseline for every profile within {timeout:?}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn wait_ready(api: &Api<SecurityProfile>, n: usize, timeout: Duration) -> Duration {
    let start = Instant::now();
    while count_ready(api).await < n {
        assert!(start.elapsed() < timeout, "not all {n} Ready within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    start.elapsed()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

async fn scrape(port: u16) -> String {
    let out =
        tokio::process::Command::new("curl").args(["-s", &format!("http://127.0.0.1:{port}/metrics")]).output().await;
    out.map(|o| String::from_utf8_lossy(&o.stdout).to_string()).unwrap_or_default()
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut rows: Vec<Row> = Vec::new();
    // BENCH_ONLY=quota,latency,idle,faults runs some parts (and leaves BENCHMARKS.md alone).
    let only = std::env::var("BENCH_ONLY").ok();
    let wanted = |part: &str| only.as_deref().is_none_or(|o| o.split(',').any(|p| p.trim() == part));

    // 1. 100 new profiles under the real quota: the emulator throttles at 2/s burst 5, the operator
    //    runs with its defaults (2/s burst 5).
    if wanted("quota") {
        let mut env =
            TestEnv::new("bench-quota", &["--throttle-rate", "2", "--throttle-burst", "5", "--profile-limit", "2000"])
                .await;
        // Listing once a minute, with descriptions and tags each time, so that the first listing after the
        // rollout comes soon.
        env.start_operator(&[
            "--connect-rate",
            "2",
            "--connect-burst",
            "5",
            "--observe-interval",
            "60s",
            "--search-every",
            "1",
        ]);
        tokio::time::sleep(Duration::from_secs(3)).await; // let the burst bucket fill
        let pid = operator_pid(&env);
        let cpu0 = cpu_seconds(pid);
        let names: Vec<String> = (0..100).map(|i| format!("quota-{i:03}")).collect();
        let start = Instant::now();
        create_all(&env.api(), &names).await;
        wait_ready(&env.api(), 100, Duration::from_secs(600)).await;
        let took = start.elapsed().as_secs_f64();
        let cpu = cpu_seconds(pid) - cpu0;
        let calls = env.emulator.calls();
        let throttled = calls.iter().filter(|c| c.outcome == "ThrottlingException").count();
        let optimum = (100.0 - 5.0) / 2.0;
        rows.push((
            "100 profiles Ready under 2/s burst 5".into(),
            format!("{took:.1} s (optimum {optimum:.1} s): ratio {:.2}", took / optimum),
            "ratio <= 1.1".into(),
        ));
        rows.push(("ThrottlingExceptions during that rollout".into(), throttled.to_string(), "0".into()));
        rows.push((
            "Connect calls during that rollout".into(),
            format!("{} ({:.2}/profile)", calls.len(), calls.len() as f64 / 100.0),
            "-".into(),
        ));
        rows.push(("CPU seconds during that rollout".into(), format!("{cpu:.2}"), "-".into()));
        // Until the instance listing has recorded what Connect holds for every new profile.
        wait_baselined(&env.api(), 100, Duration::from_secs(600)).await;
        let calls = env.emulator.calls();
        let reads = calls.iter().filter(|c| c.operation == "DescribeSecurityProfile").count();
        rows.push((
            "Connect calls for 100 new profiles, apply until the first listing after Ready".into(),
            format!("{} ({reads} profile reads; was about 600 with a full read per new profile)", calls.len()),
            "<= 110".into(),
        ));
    }

    // 1b. Fairness: team A rolls out 100 profiles under the real quota; 2 s later team B applies one. B's
    //     apply-to-Ready with the operator of the commit before the fair limiter (BENCH_BEFORE_BIN, built
    //     by `make bench`: every waiter woken per token, racing for it: no order) and with this one (round-robin
    //     across namespaces), both at --concurrency 128: every reconcile of A's rollout reaches the
    //     limiter, and only the limiter's order differs.
    if wanted("fairness") {
        let before = std::env::var("BENCH_BEFORE_BIN").ok().map(std::path::PathBuf::from);
        let runs = [
            ("before the fair limiter (every waiter woken per token, no order)", before),
            ("this build (round-robin)", None),
        ];
        for (label, binary) in runs {
            if label.starts_with("before") && binary.is_none() {
                rows.push((
                    format!("team B's single profile Ready during team A's 100-profile rollout, {label}"),
                    "not run (BENCH_BEFORE_BIN unset; `make bench` sets it)".into(),
                    "- (before)".into(),
                ));
                continue;
            }
            let mut env = TestEnv::new(
                "bench-fair",
                &["--throttle-rate", "2", "--throttle-burst", "5", "--profile-limit", "2000"],
            )
            .await;
            let team_b = env.extra_namespace("b").await;
            let args = ["--namespace", &team_b, "--concurrency", "128", "--connect-rate", "2", "--connect-burst", "5"];
            match &binary {
                Some(program) => env.start_operator_binary(program, &args),
                None => env.start_operator(&args),
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
            let names: Vec<String> = (0..100).map(|i| format!("fair-{i:03}")).collect();
            let rollout = Instant::now();
            create_all(&env.api(), &names).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let b_api: Api<SecurityProfile> = Api::namespaced(env.client.clone(), &team_b);
            let start = Instant::now();
            b_api.create(&PostParams::default(), &object("single", 7)).await.unwrap();
            loop {
                let sp = b_api.get("single").await.unwrap();
                if sp.condition("Ready").is_some_and(|c| c.status == "True") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let b_took = start.elapsed().as_secs_f64();
            wait_ready(&env.api(), 100, Duration::from_secs(600)).await;
            let a_took = rollout.elapsed().as_secs_f64();
            let throttled = env.emulator.calls().iter().filter(|c| c.outcome == "ThrottlingException").count();
            rows.push((
                format!("team B's single profile Ready during team A's 100-profile rollout, {label}"),
                format!("{b_took:.1} s (A's rollout: {a_took:.1} s; {throttled} throttled)"),
                if binary.is_some() { "- (before)".into() } else { "<= 3 s".into() },
            ));
        }
    }

    // 2. apply-to-Ready latency, no quota.
    if wanted("latency") {
        let mut env = TestEnv::new("bench-latency", &["--throttle-rate", "0"]).await;
        env.start_operator(&["--connect-rate", "0"]);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let api = env.api();
        let mut lat = Vec::new();
        for i in 0..50 {
            let name = format!("lat-{i:02}");
            let start = Instant::now();
            api.create(&PostParams::default(), &object(&name, i)).await.unwrap();
            loop {
                let sp = api.get(&name).await.unwrap();
                if sp.condition("Ready").is_some_and(|c| c.status == "True") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            lat.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        rows.push((
            "apply-to-Ready latency p50 (50 applies, no quota)".into(),
            format!("{:.0} ms", percentile(&lat, 0.5)),
            "<= 250 ms".into(),
        ));
        rows.push(("apply-to-Ready latency p95".into(), format!("{:.0} ms", percentile(&lat, 0.95)), "-".into()));
    }

    // 3. 1,000 profiles over 10 instances, Ready and idle, default observation settings: memory, idle
    //    CPU, steady-state calls and status writes.
    if wanted("idle") {
        let instances: Vec<String> =
            (0..10).map(|i| format!("{:08x}-2222-4333-8444-{:012x}", 0x1000_0000u32 + i, i)).collect();
        let mut args: Vec<&str> = vec!["--throttle-rate", "0", "--profile-limit", "200"];
        for i in &instances {
            args.extend(["--instance", i.as_str()]);
        }
        let mut env = TestEnv::new("bench-idle", &args).await;
        let port = free_port();
        env.start_operator(&[
            "--connect-rate",
            "0",
            "--concurrency",
            "8",
            "--observe-interval",
            "2m",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
        ]);
        let pid = operator_pid(&env);
        let names: Vec<String> = (0..1000).map(|i| format!("idle-{i:04}")).collect();
        let start = Instant::now();
        let cpu0 = cpu_seconds(pid);
        create_all_in(&env.api(), &names, &instances).await;
        wait_ready(&env.api(), 1000, Duration::from_secs(900)).await;
        let rollout = start.elapsed().as_secs_f64();
        let cpu_rollout = cpu_seconds(pid) - cpu0;
        // Settle until every profile's baseline is recorded (one searched listing per instance), then
        // measure a window of two observation intervals.
        wait_baselined(&env.api(), 1000, Duration::from_secs(900)).await;
        env.emulator.control("DELETE", "calls", None);
        let m0 = scrape(port).await;
        let cpu1 = cpu_seconds(pid);
        let window = 240.0;
        tokio::time::sleep(Duration::from_secs_f64(window)).await;
        let cpu_idle = cpu_seconds(pid) - cpu1;
        let m1 = scrape(port).await;
        let (rss, anon, file) = (status_mib(pid, "VmRSS"), status_mib(pid, "RssAnon"), status_mib(pid, "RssFile"));
        let calls = env.emulator.calls();
        let reads = calls.iter().filter(|c| c.operation == "DescribeSecurityProfile").count();
        let writes_in_connect =
            calls.iter().filter(|c| !["Describe", "List", "Search"].iter().any(|p| c.operation.starts_with(p))).count();
        let status_writes =
            metric(&m1, "connect_operator_status_writes_total") - metric(&m0, "connect_operator_status_writes_total");
        let per_hour = calls.len() as f64 * 3600.0 / window;
        rows.push((
            "operator RSS, 1,000 profiles (10 instances) Ready and idle".into(),
            format!("{rss:.1} MiB ({anon:.1} heap and stacks, {file:.1} binary pages)"),
            "<= 20 MiB".into(),
        ));
        rows.push((
            "1,000 profiles rollout without quota".into(),
            format!("{rollout:.1} s, {cpu_rollout:.2} CPU s"),
            "-".into(),
        ));
        rows.push((
            "Connect calls per hour, 1,000 idle profiles over 10 instances, default settings".into(),
            format!(
                "{per_hour:.0} ({reads} profile reads, {writes_in_connect} writes); the per-profile design made 6,000 \
                 (6 Describe per profile per hour, BENCHMARKS.md of 2026-11-26)"
            ),
            "<= 600".into(),
        ));
        rows.push((
            "status writes per profile per hour, steady state".into(),
            format!("{:.2}", status_writes / 1000.0 * 3600.0 / window),
            "0".into(),
        ));
        rows.push((
            "CPU seconds at idle (1,000 profiles)".into(),
            format!("{:.2} per minute", cpu_idle / window * 60.0),
            "-".into(),
        ));
    }

    // 5. A restart with 100 Ready profiles in one instance under the 2/s quota; a new profile in another
    //    instance applied meanwhile; then a console edit and the time to its repair, default settings.
    if wanted("restart") {
        let other = "22222222-2222-4333-8444-555555555555";
        let mut env = TestEnv::new(
            "bench-restart",
            &[
                "--throttle-rate",
                "2",
                "--throttle-burst",
                "5",
                "--profile-limit",
                "200",
                "--instance",
                harness::INSTANCE,
                "--instance",
                other,
            ],
        )
        .await;
        let defaults = ["--connect-rate", "2", "--connect-burst", "5", "--observe-interval", "2m"];
        // Before the restart: listings with descriptions and tags every minute, to record the baselines soon.
        env.start_operator(&[
            "--connect-rate",
            "2",
            "--connect-burst",
            "5",
            "--observe-interval",
            "60s",
            "--search-every",
            "1",
        ]);
        let names: Vec<String> = (0..100).map(|i| format!("rst-{i:03}")).collect();
        create_all(&env.api(), &names).await;
        wait_ready(&env.api(), 100, Duration::from_secs(600)).await;
        wait_baselined(&env.api(), 100, Duration::from_secs(600)).await;
        env.operator.take().expect("operator").kill();
        tokio::time::sleep(Duration::from_secs(3)).await; // the quota's burst refills
        env.emulator.control("DELETE", "calls", None);
        env.start_operator(&defaults);
        let restarted = Instant::now();
        let api = env.api();
        let mut fresh = object("rst-new", 0);
        fresh.spec.instance_id = other.into();
        api.create(&PostParams::default(), &fresh).await.unwrap();
        loop {
            let sp = api.get("rst-new").await.unwrap();
            if sp.condition("Ready").is_some_and(|c| c.status == "True") {
                break;
            }
            assert!(restarted.elapsed() < Duration::from_secs(120), "rst-new not Ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let new_ready = restarted.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(60).saturating_sub(restarted.elapsed())).await;
        let first_minute = env.emulator.calls();
        let throttled = first_minute.iter().filter(|c| c.outcome == "ThrottlingException").count();
        rows.push((
            "Connect calls in the first minute after a restart, 100 Ready profiles in one instance".into(),
            format!(
                "{} (incl. the new profile's create; {throttled} throttled); the per-profile design made 121",
                first_minute.len()
            ),
            "<= 10".into(),
        ));
        rows.push((
            "apply-to-Ready of a new profile in another instance right after that restart, 2/s quota".into(),
            format!("{new_ready:.1} s (was 44.6 s behind the re-reads)"),
            "<= 5 s".into(),
        ));
        // A console edit of one profile's description: time until the operator has restored it.
        let declared = api.get("rst-042").await.unwrap();
        let description = declared.spec.description.clone().unwrap_or_default();
        let id = declared.status.unwrap().security_profile_id.unwrap();
        let edited = Instant::now();
        env.emulator.control(
            "PATCH",
            &format!("profiles/{}/{id}", harness::INSTANCE),
            Some(json!({"description": "edited in the console"})),
        );
        loop {
            let held = env.emulator.profiles(harness::INSTANCE);
            if held.iter().any(|p| p["Id"] == id.as_str() && p["Description"] == description.as_str()) {
                break;
            }
            assert!(edited.elapsed() < Duration::from_secs(600), "console edit not repaired");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        rows.push((
            "console edit (description) to its repair, default settings (--observe-interval 2m)".into(),
            format!("{:.0} s (was up to the 10-minute resync)", edited.elapsed().as_secs_f64()),
            "about 2 min".into(),
        ));
    }

    // 4. The fault suite at full size.
    if wanted("faults") {
        let run = faults::chaotic_rollout(100).await;
        rows.push((
            "fault suite: 100 profiles, 10% 500s, throttling, lost creates, SIGKILLs".into(),
            format!(
                "all Ready once in {:.1} s; {} kills; {} Connect calls ({:.1}/profile; {} 500s, {} throttled, {} lost)",
                run.seconds,
                run.kills,
                run.connect_calls,
                run.connect_calls as f64 / 100.0,
                run.errors_injected,
                run.throttled,
                run.lost_responses
            ),
            "exactly 100, bounded calls".into(),
        ));
    }

    // 6. Scale, last (its 10,000 objects would weigh on the other parts): 10,000 profiles over 100 instances in 10 accounts (examples/bench/scale.rs).
    if wanted("scale") {
        scale::run(&mut rows).await;
    }

    let mut table = String::from("| Measure | Result | Target |\n|---|---|---|\n");
    for (m, r, t) in &rows {
        let _ = writeln!(table, "| {m} | {r} | {t} |");
    }
    println!("{table}");
    if only.is_some() {
        return;
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(str::to_string))
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    // The test cluster's version, as its API server reports it.
    let server = std::process::Command::new("kubectl")
        .args(["version", "-o", "json"])
        .output()
        .ok()
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
        .and_then(|v| v["serverVersion"]["gitVersion"].as_str().map(str::to_string))
        .unwrap_or_else(|| "unknown version".to_string());
    let doc = format!(
        "# Benchmarks\n\nProduced by `make bench` (release binaries of connect-operator and connect-emulator against the local \
         Kubernetes {server} control plane of tests/cluster) on {}.\n\nMachine: {cores} cores ({cpu}), {mem}, Debian bookworm.\n\n{table}\n\
         The quota-bound optimum for 100 creates at 2/s with a burst of 5 is (100 - 5) / 2 = 47.5 s. Steady state is one \
         instance listing per --observe-interval (ListSecurityProfiles, and every third time SearchSecurityProfiles); a profile \
         is read only when the listing shows it changed.\n\n{SCALE_NOTE}\n",
        jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC")
    );
    std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/BENCHMARKS.md"), doc).expect("write BENCHMARKS.md");
    println!("wrote BENCHMARKS.md");
}
