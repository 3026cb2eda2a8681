//! End to end on the node: `helm install` of the chart runs the operator image (imported into the test
//! node's containerd, never pulled) in a pod that the kubelet probes, against the Connect emulator on
//! the host's address. What the pod does is checked from outside the manifest: the kubelet's Ready,
//! the emulator's calls, `kubectl logs`, the Lease, each pod's /metrics, and the operator process's
//! own /proc (credentials, capabilities, seccomp, mounts) and memory cgroup.
//!
//! They need the node (`tests/cluster/up.sh --node` and the images), which `make test` does not start:
//! ignored there, `make e2e-node` runs them (`--ignored node::`).
//!
//! The chart's defaults hold except what this environment needs: the Region, the emulator's endpoint
//! (`extraEnv` AWS_ENDPOINT_URL_CONNECT), static credentials from a Secret (`extraEnv` valueFrom, as the
//! chart README shows for clusters without IRSA or Pod Identity), `crds.install=false` (the harness
//! installs the CRDs for every test), and `watchNamespaces` set to the test's namespace: the shared
//! test cluster holds other tests' SecurityProfiles, which a cluster-wide operator would also act on
//! (and cache, which would skew the memory figure). Image, probes, security contexts, resources,
//! leader election and rates are the chart's. As an admin would, each test binds the emulator's
//! instance to its namespace with an InstanceBinding (the chart's default is bound mode).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

use crate::harness::{
    BindingGuard, INSTANCE, Release, TestEnv, TestNode, e2e_log_dir, kubectl, manifest, metric_value, ok, repo_path,
    wait_until,
};

/// A pod's start: scheduling, the sandbox, the container, the first readiness probe (chart default:
/// after 2 s, every 10 s), on a machine busy compiling.
const POD_T: Duration = Duration::from_secs(180);
/// A profile's reconcile at the chart's rate (2/s), or a Lease changing hands.
const T: Duration = Duration::from_secs(120);
const REGION: &str = "us-east-1";
/// The Secret with the emulator's credentials, in the release's namespace.
const CREDENTIALS: &str = "connect-credentials";
/// The generous sanity bound of the operator's memory with 100 profiles (BENCHMARKS.md has the figure
/// with 1,000).
const MEMORY_BOUND_MIB: f64 = 64.0;

// --- One test's operator on the node ----------------------------------------------------------------

/// A test's namespace and emulator (on the host's address), the InstanceBinding an admin made for the
/// namespace, and the chart's release in `<namespace>-op`. Fields drop in order: the release is
/// uninstalled before the binding and the emulator go.
struct OnNode {
    release: Release,
    _binding: BindingGuard,
    env: TestEnv,
    node: TestNode,
}

impl OnNode {
    async fn install(name: &str, emulator_args: &[&str], values: &[&str]) -> Self {
        let node = TestNode::get();
        let env = TestEnv::new_with_emulator_on(name, &node.host_ip, emulator_args).await;

        // The admin's part: the namespace may use the emulator's instance.
        env.label_namespace(&env.ns, &format!("e2e-node={}", env.ns));
        let binding = env.bind(
            &env.ns,
            json!({"instanceId": INSTANCE, "region": REGION,
                   "namespaceSelector": {"matchLabels": {"e2e-node": env.ns}}}),
        );

        // The release's namespace with the credentials Secret, then the chart.
        let release_ns = format!("{}-op", env.ns);
        ok(kubectl(&["create", "namespace", &release_ns], None), "kubectl create namespace");
        // Pod Security Admission, enforced by the API server: the chart's pod must pass `restricted`.
        ok(
            kubectl(&["label", "namespace", &release_ns, "pod-security.kubernetes.io/enforce=restricted"], None),
            "kubectl label namespace",
        );
        ok(
            kubectl(
                &[
                    "create",
                    "secret",
                    "generic",
                    CREDENTIALS,
                    "-n",
                    &release_ns,
                    "--from-literal=AWS_ACCESS_KEY_ID=AKIDEMULATOR",
                    "--from-literal=AWS_SECRET_ACCESS_KEY=emulator-secret",
                ],
                None,
            ),
            "kubectl create secret",
        );
        let from_secret =
            |key: &str| json!({"name": key, "valueFrom": {"secretKeyRef": {"name": CREDENTIALS, "key": key}}});
        let environment = json!({
            "region": REGION,
            "watchNamespaces": [env.ns],
            "extraEnv": [
                {"name": "AWS_ENDPOINT_URL_CONNECT", "value": env.emulator.endpoint()},
                from_secret("AWS_ACCESS_KEY_ID"),
                from_secret("AWS_SECRET_ACCESS_KEY"),
            ],
        });
        let values_file = e2e_log_dir().join(format!("{}-values.yaml", env.ns));
        std::fs::write(&values_file, serde_json::to_string_pretty(&environment).unwrap()).unwrap();
        let mut args = vec!["--values", values_file.to_str().unwrap()];
        args.extend_from_slice(values);
        let suffix = env.ns.rsplit('-').next().unwrap();
        let release = Release::install(format!("node-{suffix}"), release_ns, &args);
        Self { release, _binding: binding, env, node }
    }

    fn ns(&self) -> &str {
        &self.release.ns
    }

    /// Polls `check`; on timeout fails with the release's pods described and their logs.
    async fn wait<T>(&self, what: &str, timeout: Duration, check: impl AsyncFnMut() -> Option<T>) -> T {
        wait_until(what, timeout, check, || self.diagnose()).await
    }

    fn diagnose(&self) -> String {
        let text = |out: std::process::Output| {
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
        };
        let describe = text(kubectl(&["describe", "pods", "-n", self.ns(), "-l", &self.release.pod_selector()], None));
        let logs = text(kubectl(
            &["logs", "-n", self.ns(), "-l", &self.release.pod_selector(), "--tail=30", "--prefix"],
            None,
        ));
        format!("--- kubectl describe pods ---\n{describe}\n--- kubectl logs (tail) ---\n{logs}")
    }

    /// The release's pods that are not being deleted.
    async fn live_pods(&self) -> Vec<Pod> {
        let pods: Api<Pod> = Api::namespaced(self.env.client.clone(), self.ns());
        let list = pods.list(&ListParams::default().labels(&self.release.pod_selector())).await;
        list.map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect()
    }

    /// Waits until the release has exactly `n` live pods, all Ready (the kubelet's readiness probe
    /// passed), none of them named in `not`; returns them.
    async fn wait_ready_pods(&self, n: usize, not: &[&str]) -> Vec<Pod> {
        self.wait(&format!("{n} Ready pod(s) of the release (other than {not:?})"), POD_T, async || {
            let pods = self.live_pods().await;
            let fits = pods.len() == n && pods.iter().all(|p| is_ready(p) && !not.contains(&name(p)));
            fits.then_some(pods)
        })
        .await
    }

    /// Waits until the pod named `pod` is gone.
    async fn wait_gone(&self, pod: &str) {
        let pods: Api<Pod> = Api::namespaced(self.env.client.clone(), self.ns());
        self.wait(&format!("pod {pod} to be gone"), POD_T, async || {
            matches!(pods.get_opt(pod).await, Ok(None)).then_some(())
        })
        .await;
    }

    async fn lease_holder(&self) -> Option<String> {
        let leases: Api<Lease> = Api::namespaced(self.env.client.clone(), self.ns());
        leases.get_opt(&self.release.fullname()).await.ok().flatten()?.spec?.holder_identity
    }

    async fn wait_leader(&self, pod: &str) {
        self.wait(&format!("{pod} to hold the Lease {}", self.release.fullname()), T, async || {
            (self.lease_holder().await.as_deref() == Some(pod)).then_some(())
        })
        .await;
    }

    /// `kubectl apply` of a SecurityProfile in the test's namespace.
    fn apply_profile(&self, name: &str, connect_name: &str) {
        self.env.apply_ok(&manifest(
            name,
            json!({"securityProfileName": connect_name, "permissions": ["BasicAgentAccess"]}),
        ));
    }

    /// Waits until the SecurityProfile `name` is Ready for its current generation.
    async fn wait_profile_ready(&self, name: &str) {
        let api = self.env.api();
        self.wait(&format!("SecurityProfile {name} Ready"), T, async || {
            profile_ready(&api.get_opt(name).await.ok().flatten()?).then_some(())
        })
        .await;
    }

    /// How many profiles the emulator holds under `connect_name`, and how many creates it was sent.
    fn in_connect(&self, connect_name: &str) -> (usize, usize) {
        let held =
            self.env.emulator.profiles(INSTANCE).iter().filter(|p| p["SecurityProfileName"] == connect_name).count();
        let creates = self
            .env
            .emulator
            .calls()
            .iter()
            .filter(|c| {
                c.operation == "CreateSecurityProfile" && c.params["body"]["SecurityProfileName"] == connect_name
            })
            .count();
        (held, creates)
    }

    /// The pod's /metrics, through the apiserver's pod proxy, on the chart's metrics port.
    fn metrics(&self, pod: &Pod) -> String {
        let port = pod_port(pod, "metrics");
        ok(
            kubectl(
                &["get", "--raw", &format!("/api/v1/namespaces/{}/pods/{}:{port}/proxy/metrics", self.ns(), name(pod))],
                None,
            ),
            "GET the pod's /metrics",
        )
    }

    /// `kubectl logs POD`: every line is a JSON object (the chart's logFormat json); returns them.
    fn json_logs(&self, pod: &str) -> Vec<Value> {
        let out = ok(kubectl(&["logs", "-n", self.ns(), pod], None), "kubectl logs");
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a log line of {pod} is not JSON ({e}): {l}")))
            .collect()
    }
}

fn name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn profile_ready(sp: &connect_operator::api::SecurityProfile) -> bool {
    sp.condition("Ready").is_some_and(|c| c.status == "True" && c.observed_generation == sp.metadata.generation)
}

/// The operator container's port named `port_name`.
fn pod_port(pod: &Pod, port_name: &str) -> i32 {
    let spec = pod.spec.as_ref().expect("pod spec");
    let container = spec.containers.iter().find(|c| c.name == "operator").expect("the operator container");
    let ports = container.ports.as_deref().unwrap_or_default();
    ports.iter().find(|p| p.name.as_deref() == Some(port_name)).expect("the metrics port").container_port
}

/// The log lines whose message is `message`.
fn with_message<'a>(lines: &'a [Value], message: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["fields"]["message"] == message).collect()
}

/// The audit lines of creates of the SecurityProfile `name` (the `audit` target logs every Connect write).
fn audited_creates<'a>(lines: &'a [Value], name: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| {
            l["target"] == "audit" && l["fields"]["operation"] == "CreateSecurityProfile" && l["fields"]["name"] == name
        })
        .collect()
}

// --- The operator's process, seen from the host ------------------------------------------------------

/// The operator container's main process on this host, found through the container's memory cgroup
/// (kubelet's cgroupfs layout: <cgroup root>/kubepods/<qos>/pod<uid>/<container id>).
struct PodProcess {
    pid: u32,
    /// The container's memory cgroup.
    cgroup: PathBuf,
    /// The pod's memory cgroup (the container and the pod's sandbox).
    pod_cgroup: PathBuf,
}

impl PodProcess {
    fn of(node: &TestNode, pod: &Pod) -> Self {
        let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_deref()).unwrap_or_default();
        let status = statuses.iter().find(|s| s.name == "operator").expect("the operator container's status");
        let id = status.container_id.as_deref().expect("a container ID");
        let id = id.split_once("://").map_or(id, |(_, id)| id);
        let root = memory_cgroup_mount().join(node.cgroup_root.trim_start_matches('/'));
        let cgroup =
            find_dir(&root, id, 4).unwrap_or_else(|| panic!("no cgroup of container {id} under {}", root.display()));
        let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).expect("cgroup.procs");
        let pids: Vec<u32> = procs.lines().map(|l| l.trim().parse().expect("a pid")).collect();
        assert_eq!(pids.len(), 1, "the container runs one process (no shell in the image): {pids:?}");
        let pid = pids[0];
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).expect("cmdline");
        let argv: Vec<&str> = cmdline.split('\0').collect();
        assert_eq!(&argv[..2], ["/connect-operator", "run"], "the container's process is the operator: {argv:?}");
        let pod_cgroup = cgroup.parent().expect("the pod's cgroup").to_path_buf();
        Self { pid, cgroup, pod_cgroup }
    }

    /// A line of /proc/PID/status, e.g. `Uid`: the text after the colon, trimmed.
    fn status(&self, field: &str) -> String {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).expect("/proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .unwrap_or_else(|| panic!("no {field} in /proc/{}/status", self.pid))
            .trim()
            .to_string()
    }

    fn status_kib(&self, field: &str) -> u64 {
        let value = self.status(field);
        value.trim_end_matches(" kB").trim().parse().unwrap_or_else(|_| panic!("{field}: {value}"))
    }

    /// The process's mounts (its own mount namespace): (mount point, per-mount options, fs type).
    fn mounts(&self) -> Vec<(String, String, String)> {
        let text = std::fs::read_to_string(format!("/proc/{}/mountinfo", self.pid)).expect("mountinfo");
        text.lines()
            .filter_map(|l| {
                let (head, tail) = l.split_once(" - ")?;
                let head: Vec<&str> = head.split(' ').collect();
                let fstype = tail.split(' ').next()?;
                Some((head.get(4)?.to_string(), head.get(5)?.to_string(), fstype.to_string()))
            })
            .collect()
    }
}

/// Where the cgroup v1 memory hierarchy is mounted (this machine has cgroup v1; tests/cluster/node.sh).
fn memory_cgroup_mount() -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    text.lines()
        .find_map(|l| {
            let (head, tail) = l.split_once(" - ")?;
            let tail: Vec<&str> = tail.split(' ').collect();
            let is_memory = tail.first() == Some(&"cgroup") && tail.get(2)?.split(',').any(|o| o == "memory");
            is_memory.then(|| PathBuf::from(head.split(' ').nth(4).unwrap()))
        })
        .expect("a cgroup v1 memory hierarchy")
}

/// The directory named `name` at most `depth` levels under `dir`.
fn find_dir(dir: &Path, name: &str, depth: usize) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if entry.file_name() == name {
            return Some(path);
        }
        if depth > 1
            && let Some(found) = find_dir(&path, name, depth - 1)
        {
            return Some(found);
        }
    }
    None
}

fn read_u64(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.trim().parse().unwrap_or_else(|_| panic!("{}: {text}", path.display()))
}

/// The cgroup's memory.stat as (key, value) pairs.
fn memory_stat(cgroup: &Path) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(cgroup.join("memory.stat")).expect("memory.stat");
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// BENCHMARKS.md's row of the operator's RSS (`make bench`), to quote beside the pod's figures.
fn benchmarked_rss() -> String {
    let text = std::fs::read_to_string(repo_path("BENCHMARKS.md")).unwrap_or_default();
    let row = text.lines().find(|l| l.starts_with("| operator RSS"));
    row.map(|r| r.trim_matches(|c| c == '|' || c == ' ').replace(" | ", ": ")).unwrap_or_else(|| "(no RSS row)".into())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

// --- The tests ---------------------------------------------------------------------------------------

#[tokio::test]
#[ignore = "needs a node: make e2e-node"]
async fn the_chart_runs_a_ready_pod_that_reconciles_logs_json_and_survives_its_deletion_without_duplicates() {
    let op = OnNode::install("node-life", &["--throttle-rate", "0"], &[]).await;

    // Ready through the kubelet's probes: the chart's own /healthz and /readyz probes.
    let pod = op.wait_ready_pods(1, &[]).await.remove(0);
    let first = name(&pod).to_string();
    let spec = pod.spec.as_ref().unwrap();
    let container = &spec.containers[0];
    assert_eq!(container.image.as_deref(), Some("ghcr.io/cloud-operators/connect-operator:0.1.0"), "the chart's image");
    let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref().and_then(|p| p.http_get.as_ref()).and_then(|h| h.path.clone())
    };
    assert_eq!(probe_path(&container.readiness_probe).as_deref(), Some("/readyz"));
    assert_eq!(probe_path(&container.liveness_probe).as_deref(), Some("/healthz"));
    op.wait_leader(&first).await;

    // A SecurityProfile applied with kubectl: Ready, and exactly one profile in Connect.
    op.apply_profile("agents", "Node Agents");
    op.wait_profile_ready("agents").await;
    assert_eq!(op.in_connect("Node Agents"), (1, 1), "(held, creates) in the emulator");

    // kubectl logs: JSON lines with the tracing fields; the Lease and the create are there.
    let lines = op.json_logs(&first);
    for line in &lines {
        assert!(
            line["timestamp"].as_str().is_some_and(|t| t.parse::<jiff::Timestamp>().is_ok()),
            "an RFC 3339 timestamp: {line}"
        );
        assert!(["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&line["level"].as_str().unwrap_or("")), "{line}");
        assert!(line["target"].is_string() && line["fields"]["message"].is_string(), "target and message: {line}");
    }
    let acquired = with_message(&lines, "acquired the leader lease");
    assert!(
        acquired.iter().any(|l| l["fields"]["identity"] == first.as_str()),
        "the pod leads under its name: {acquired:?}"
    );
    let creates = audited_creates(&lines, "agents");
    assert_eq!(creates.len(), 1, "one audited create: {creates:?}");
    assert_eq!(creates[0]["fields"]["outcome"], "ok");
    assert_eq!(creates[0]["fields"]["namespace"], op.env.ns.as_str());

    // kubectl delete pod: the Deployment replaces it; the replacement takes the Lease and looks at the
    // profile (a successful reconcile) without creating it again.
    ok(kubectl(&["delete", "pod", "-n", op.ns(), &first, "--wait=false"], None), "kubectl delete pod");
    let second = op.wait_ready_pods(1, &[&first]).await.remove(0);
    let second_name = name(&second).to_string();
    op.wait_gone(&first).await;
    op.wait_leader(&second_name).await;
    op.wait("the replacement's first successful reconcile", T, async || {
        (metric_value(&op.metrics(&second), "connect_operator_reconciles_total{result=\"success\"") >= 1.0)
            .then_some(())
    })
    .await;
    let sp = op.env.api().get("agents").await.unwrap();
    assert!(profile_ready(&sp), "still Ready after the replacement: {:?}", sp.status);
    assert_eq!(op.in_connect("Node Agents"), (1, 1), "no second create after the replacement");
    assert!(audited_creates(&op.json_logs(&second_name), "agents").is_empty(), "the replacement created nothing");

    // The replacement does the work now: a new profile, one create, in its log.
    op.apply_profile("supervisors", "Node Supervisors");
    op.wait_profile_ready("supervisors").await;
    assert_eq!(op.in_connect("Node Supervisors"), (1, 1));
    assert_eq!(audited_creates(&op.json_logs(&second_name), "supervisors").len(), 1);
    let live = op.live_pods().await;
    let live_names: Vec<&str> = live.iter().map(name).collect();
    assert_eq!(live_names, [second_name.as_str()], "one pod: nothing duplicated");
    let statuses = live[0].status.as_ref().and_then(|s| s.container_statuses.as_deref()).unwrap_or_default();
    assert_eq!(statuses[0].restart_count, 0, "the liveness probe (/healthz) never failed it");
}

#[tokio::test]
#[ignore = "needs a node: make e2e-node"]
async fn with_two_replicas_both_are_ready_and_only_the_lease_holder_reconciles_until_it_goes() {
    let op = OnNode::install("node-replicas", &["--throttle-rate", "0"], &[]).await;
    let a = op.wait_ready_pods(1, &[]).await.remove(0);
    let a_name = name(&a).to_string();
    op.wait_leader(&a_name).await;

    // Two replicas: the second is Ready too (readiness is "can serve", not "leads") and stands by.
    op.release.upgrade(&["--set", "replicaCount=2"]);
    let pods = op.wait_ready_pods(2, &[]).await;
    let b = pods.into_iter().find(|p| name(p) != a_name).expect("the second replica");
    let b_name = name(&b).to_string();
    op.wait(&format!("{b_name} to log that it stands by"), T, async || {
        (!with_message(&op.json_logs(&b_name), "another replica leads; standing by").is_empty()).then_some(())
    })
    .await;
    assert_eq!(op.lease_holder().await.as_deref(), Some(a_name.as_str()), "the first replica keeps the Lease");
    assert_eq!(metric_value(&op.metrics(&a), "connect_operator_leader "), 1.0);
    assert_eq!(metric_value(&op.metrics(&b), "connect_operator_leader "), 0.0);

    // A new profile: reconciled once, by the leader only.
    op.apply_profile("led", "Node Led");
    op.wait_profile_ready("led").await;
    assert_eq!(op.in_connect("Node Led"), (1, 1));
    assert_eq!(audited_creates(&op.json_logs(&a_name), "led").len(), 1, "the leader created it");
    assert!(audited_creates(&op.json_logs(&b_name), "led").is_empty(), "the standby did not");
    let (a_metrics, b_metrics) = (op.metrics(&a), op.metrics(&b));
    assert!(metric_value(&a_metrics, "connect_operator_reconciles_total{result=\"success\"") >= 1.0, "{a_metrics}");
    for series in ["connect_operator_reconciles_total", "connect_operator_connect_calls_total"] {
        assert_eq!(metric_value(&b_metrics, series), 0.0, "the standby's {series}:\n{b_metrics}");
    }

    // The leader's pod goes (SIGTERM: it releases the Lease): a live replica takes the Lease and the
    // work, the standby or the Deployment's replacement pod, whichever asks first; the other stands by.
    ok(kubectl(&["delete", "pod", "-n", op.ns(), &a_name, "--wait=false"], None), "kubectl delete pod");
    let pods = op.wait_ready_pods(2, &[&a_name]).await;
    let names: Vec<&str> = pods.iter().map(name).collect();
    let leader = op
        .wait(&format!("one of {names:?} to hold the Lease"), T, async || {
            op.lease_holder().await.filter(|h| names.contains(&h.as_str()))
        })
        .await;
    let (new_leader, standby): (Vec<&Pod>, Vec<&Pod>) = pods.iter().partition(|p| name(p) == leader);
    let (new_leader, standby) = (new_leader[0], standby[0]);
    op.apply_profile("after", "Node After Failover");
    op.wait_profile_ready("after").await;
    assert_eq!(op.in_connect("Node After Failover"), (1, 1));
    assert_eq!(audited_creates(&op.json_logs(&leader), "after").len(), 1, "the new leader created it");
    assert!(audited_creates(&op.json_logs(name(standby)), "after").is_empty(), "the standby did not");
    assert_eq!(op.in_connect("Node Led"), (1, 1), "nothing created twice across the failover");
    assert_eq!(metric_value(&op.metrics(new_leader), "connect_operator_leader "), 1.0);
    let standby_metrics = op.metrics(standby);
    assert_eq!(metric_value(&standby_metrics, "connect_operator_leader "), 0.0, "{standby_metrics}");
    assert_eq!(metric_value(&standby_metrics, "connect_operator_connect_calls_total"), 0.0, "{standby_metrics}");
}

#[tokio::test]
#[ignore = "needs a node: make e2e-node"]
async fn the_operator_process_in_the_pod_is_non_root_without_capabilities_under_seccomp_on_a_read_only_root() {
    let op = OnNode::install("node-sec", &["--throttle-rate", "0"], &[]).await;
    let pod = op.wait_ready_pods(1, &[]).await.remove(0);

    // The release's namespace enforces Pod Security `restricted` (the API server's admission): the chart's
    // pod was admitted there, and a pod that asks for less is refused.
    let privileged = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "psa-probe"},
        "spec": {"containers": [{"name": "c", "image": "registry.local/pause:3.10.2",
                                 "securityContext": {"privileged": true}}]}});
    let out = kubectl(&["apply", "--dry-run=server", "-n", op.ns(), "-f", "-"], Some(&privileged.to_string()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("violates PodSecurity \"restricted:latest\""), "{stderr}");
    let process = PodProcess::of(&op.node, &pod);

    // The kernel's view of the running process, not the manifest.
    assert_eq!(process.status("Uid"), "65532\t65532\t65532\t65532", "real, effective, saved, fs uid");
    assert_eq!(process.status("Gid"), "65532\t65532\t65532\t65532", "real, effective, saved, fs gid");
    for caps in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(process.status(caps), "0000000000000000", "{caps}: every capability dropped");
    }
    assert_eq!(process.status("NoNewPrivs"), "1", "allowPrivilegeEscalation: false");
    assert_eq!(process.status("Seccomp"), "2", "a seccomp filter (RuntimeDefault)");

    // Its mount namespace: / is read-only, /tmp the chart's memory emptyDir.
    let mounts = process.mounts();
    let option = |point: &str| {
        let (_, options, fstype) = mounts.iter().rev().find(|(p, _, _)| p == point).unwrap_or_else(|| {
            panic!("no {point} in the process's mountinfo: {mounts:?}");
        });
        (options.split(',').next().unwrap().to_string(), fstype.clone())
    };
    assert_eq!(option("/"), ("ro".to_string(), "overlay".to_string()), "the root filesystem");
    assert_eq!(option("/tmp"), ("rw".to_string(), "tmpfs".to_string()), "the scratch dir");
    // Even root on the host cannot write through the process's root: the mount is read-only.
    let probe = format!("/proc/{}/root/e2e-node-write-probe", process.pid);
    let err = std::fs::File::create(&probe).expect_err("the root filesystem refuses writes");
    assert_eq!(err.raw_os_error(), Some(30), "EROFS: {err}");
    // The chart's memory limit is the container cgroup's.
    assert_eq!(read_u64(&process.cgroup.join("memory.limit_in_bytes")), 128 * 1024 * 1024, "resources.limits.memory");
    assert_eq!(pod.status.as_ref().and_then(|s| s.qos_class.as_deref()), Some("Burstable"));
}

#[tokio::test]
#[ignore = "needs a node: make e2e-node"]
async fn the_operator_in_the_pod_with_100_ready_profiles_stays_in_a_small_memory_cgroup() {
    // Room for the 4 default profiles and 100 more.
    let op = OnNode::install("node-mem", &["--throttle-rate", "0", "--profile-limit", "200"], &[]).await;
    let pod = op.wait_ready_pods(1, &[]).await.remove(0);
    op.wait_leader(name(&pod)).await;
    let process = PodProcess::of(&op.node, &pod);

    let items: Vec<Value> = (0..100)
        .map(|i| {
            let m = manifest(
                &format!("mem-{i:03}"),
                json!({"securityProfileName": format!("Node Memory {i:03}"), "description": format!("node e2e {i}"),
                       "permissions": ["BasicAgentAccess"], "tags": {"e2e": "node"}}),
            );
            serde_json::from_str(&m).unwrap()
        })
        .collect();
    let start = Instant::now();
    op.env.apply_ok(&json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string());
    let api = op.env.api();
    op.wait("100 SecurityProfiles Ready", Duration::from_secs(300), async || {
        let list = api.list(&ListParams::default()).await.ok()?;
        (list.items.iter().filter(|sp| profile_ready(sp)).count() == 100).then_some(())
    })
    .await;
    let rollout = start.elapsed();
    let creates = op.env.emulator.calls().iter().filter(|c| c.operation == "CreateSecurityProfile").count();
    assert_eq!(creates, 100, "one create per profile");

    // Idle: past the operator's once-a-minute return of freed heap pages to the kernel.
    let settle = Duration::from_secs(70);
    tokio::time::sleep(settle).await;
    let usage = read_u64(&process.cgroup.join("memory.usage_in_bytes"));
    let max_usage = read_u64(&process.cgroup.join("memory.max_usage_in_bytes"));
    let pod_usage = read_u64(&process.pod_cgroup.join("memory.usage_in_bytes"));
    let stat = memory_stat(&process.cgroup);
    let stat_of = |key: &str| stat.iter().find(|(k, _)| k == key).map(|(_, v)| *v).unwrap_or(0);
    let working_set = usage.saturating_sub(stat_of("total_inactive_file"));
    let (vm_rss, rss_anon, rss_file) =
        (process.status_kib("VmRSS"), process.status_kib("RssAnon"), process.status_kib("RssFile"));
    let report = format!(
        "connect-operator in a pod on the test node (make e2e-node), {} UTC\n\
         100 SecurityProfiles Ready in one instance (rollout {:.1} s at the chart's 2/s), then idle {} s;\n\
         release image ghcr.io/cloud-operators/connect-operator:0.1.0, chart defaults (128Mi limit)\n\
         \n\
         container memory cgroup ({})\n\
         memory.usage_in_bytes      {usage:>10}  {:.1} MiB\n\
         memory.max_usage_in_bytes  {max_usage:>10}  {:.1} MiB\n\
         working set (usage - total_inactive_file) {:.1} MiB\n\
         memory.stat rss            {:>10}  {:.1} MiB\n\
         memory.stat cache          {:>10}  {:.1} MiB\n\
         memory.stat mapped_file    {:>10}  {:.1} MiB\n\
         memory.stat total_rss      {:>10}  {:.1} MiB\n\
         memory.stat total_cache    {:>10}  {:.1} MiB\n\
         pod memory cgroup usage (with the pause container) {pod_usage} ({:.1} MiB)\n\
         \n\
         the process (pid {} on the host), /proc/PID/status\n\
         VmRSS   {vm_rss} kB  {:.1} MiB\n\
         RssAnon {rss_anon} kB  {:.1} MiB (heap and stacks)\n\
         RssFile {rss_file} kB  {:.1} MiB (mostly the binary's pages: page cache is charged to the memory\n\
         \x20       cgroup that first read it, here containerd unpacking the image, so the container's\n\
         \x20       cgroup leaves most of them out)\n\
         \n\
         BENCHMARKS.md (operator process on the host, release build): {}\n",
        jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M"),
        rollout.as_secs_f64(),
        settle.as_secs(),
        process.cgroup.display(),
        mib(usage),
        mib(max_usage),
        mib(working_set),
        stat_of("rss"),
        mib(stat_of("rss")),
        stat_of("cache"),
        mib(stat_of("cache")),
        stat_of("mapped_file"),
        mib(stat_of("mapped_file")),
        stat_of("total_rss"),
        mib(stat_of("total_rss")),
        stat_of("total_cache"),
        mib(stat_of("total_cache")),
        mib(pod_usage),
        process.pid,
        vm_rss as f64 / 1024.0,
        rss_anon as f64 / 1024.0,
        rss_file as f64 / 1024.0,
        benchmarked_rss(),
    );
    println!("{report}");
    std::fs::write(repo_path("target/e2e-node-memory.txt"), &report).unwrap();
    assert!(mib(usage) < MEMORY_BOUND_MIB, "the container's memory cgroup: {report}");
    assert!((vm_rss as f64 / 1024.0) < MEMORY_BOUND_MIB, "the process's RSS: {report}");
}
