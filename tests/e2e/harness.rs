#![allow(dead_code)]
//! End-to-end harness: the real kube-apiserver (tests/cluster/up.sh), the `connect-emulator` and
//! `connect-operator` binaries as processes, kubectl for user actions. Each test gets its own namespace,
//! emulator (on a free port) and operator (watching only that namespace). The node tests (node.rs) run
//! the operator from the chart in a pod instead, with the emulator on the host's address.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use connect_emulator::CallRecord;
use connect_operator::api::SecurityProfile;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

pub use crate::support::INSTANCE;

pub use crate::support::{manifest, repo_root};

/// A binary of this repo: from CONNECT_OPERATOR_BIN_DIR (the benchmark's release build), else the one
/// cargo built for these tests.
///
/// cargo hands a test only the binaries of its own package: `connect-emulator` belongs to the peer crate
/// crates/connect-emulator, so it is taken from the directory cargo put `connect-operator` in, where
/// `cargo test --workspace` (`make test`) builds it in the same run. A missing or stale one (older than
/// the emulator's sources, e.g. after `cargo test -p connect-operator`) is refused rather than used.
pub fn bin(name: &str) -> PathBuf {
    let dir = match std::env::var("CONNECT_OPERATOR_BIN_DIR") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => match option_env!("CARGO_BIN_EXE_connect-operator") {
            Some(operator) => Path::new(operator).parent().expect("a directory").to_path_buf(),
            None => std::env::var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| repo_root().join("target"))
                .join("debug"),
        },
    };
    let path = dir.join(name);
    if name == "connect-emulator" {
        check_emulator_binary(&path);
    }
    path
}

fn check_emulator_binary(path: &Path) {
    fn newest(path: &Path) -> std::time::SystemTime {
        let meta = std::fs::metadata(path).expect("emulator sources");
        if !meta.is_dir() {
            return meta.modified().expect("mtime");
        }
        let entries = std::fs::read_dir(path).expect("emulator sources");
        entries.map(|e| newest(&e.expect("entry").path())).max().unwrap_or(std::time::UNIX_EPOCH)
    }
    let build = "cargo build -p connect-emulator (make test builds it)";
    let built = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| panic!("{} does not exist: {build}", path.display()));
    let crate_dir = repo_root().join("crates/connect-emulator");
    let sources = newest(&crate_dir.join("src")).max(newest(&crate_dir.join("Cargo.toml")));
    assert!(built >= sources, "{} is older than the emulator's sources: {build}", path.display());
}

/// The kubeconfig of the test cluster; fails with instructions when the cluster is not up.
pub fn kubeconfig() -> String {
    match std::env::var("KUBECONFIG") {
        Ok(k) if !k.is_empty() && Path::new(&k).exists() => k,
        _ => panic!(
            "KUBECONFIG is not set (or the file is missing): these end-to-end tests need the local test cluster.\n\
             Start it with `tests/cluster/up.sh` and run `export KUBECONFIG=$PWD/target/test-cluster/kubeconfig`, \
             or run the whole suite with `make test`."
        ),
    }
}

/// `kubectl` against the test cluster (fails with instructions when it is not up).
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> Output {
    let _ = kubeconfig();
    crate::support::kubectl(args, stdin)
}

/// Installs the committed CRDs (crds/*.yaml) once per test binary, and waits for them.
pub fn install_crd() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (file, name) in
            [("crds/securityprofile.yaml", "securityprofiles"), ("crds/instancebinding.yaml", "instancebindings")]
        {
            let crd = repo_root().join(file);
            let out = kubectl(&["apply", "-f", crd.to_str().unwrap()], None);
            assert!(out.status.success(), "installing {file} failed: {}", String::from_utf8_lossy(&out.stderr));
            let crd = format!("crd/{name}.connect.cloud-operators.dev");
            let out = kubectl(&["wait", "--for=condition=Established", "--timeout=60s", &crd], None);
            assert!(out.status.success(), "CRD not established: {}", String::from_utf8_lossy(&out.stderr));
        }
    });
}

fn log_dir() -> PathBuf {
    let dir = repo_root().join("target/e2e-logs");
    std::fs::create_dir_all(&dir).expect("log dir");
    dir
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The emulator binary on a free port.
pub struct EmulatorProc {
    pub proc: Proc,
    pub addr: String,
}

impl EmulatorProc {
    /// On 127.0.0.1.
    pub fn start(name: &str, extra: &[&str]) -> Self {
        Self::start_on(name, "127.0.0.1", extra)
    }

    /// On `host` (an address of this machine), e.g. the node's host address that pods reach
    /// ([`TestNode::host_ip`]).
    pub fn start_on(name: &str, host: &str, extra: &[&str]) -> Self {
        let dir = log_dir();
        let addr_file = dir.join(format!("{name}-emulator.addr"));
        let _ = std::fs::remove_file(&addr_file);
        let log = dir.join(format!("{name}-emulator.log"));
        let listen = format!("{host}:0");
        let child = Command::new(bin("connect-emulator"))
            .args(["--listen", &listen, "--addr-file", addr_file.to_str().unwrap()])
            .args(extra)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start connect-emulator");
        let proc = Proc { child, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(addr) = std::fs::read_to_string(&addr_file)
                && !addr.is_empty()
            {
                return Self { proc, addr };
            }
            assert!(Instant::now() < deadline, "connect-emulator did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A request to the control API; returns the JSON answer.
    pub fn control(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut stream = TcpStream::connect(&self.addr).expect("connect to emulator");
        write!(
            stream,
            "{method} /_emulator/{path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        let (head, payload) = response.split_once("\r\n\r\n").expect("HTTP response");
        assert!(head.starts_with("HTTP/1.1 200"), "control {method} {path}: {head}\n{payload}");
        serde_json::from_str(payload).expect("JSON body")
    }

    pub fn calls(&self) -> Vec<CallRecord> {
        serde_json::from_value(self.control("GET", "calls", None)).expect("call records")
    }

    /// The instance's profiles, as the emulator holds them.
    pub fn profiles(&self, instance: &str) -> Vec<Value> {
        let state = self.control("GET", "state", None);
        state["instances"][instance]["Profiles"].as_array().cloned().unwrap_or_default()
    }

    pub fn set_faults(&self, faults: Value) {
        self.control("PUT", "faults", Some(faults));
    }
}

/// One test's world: a namespace, an emulator, and (once started) an operator.
pub struct TestEnv {
    pub ns: String,
    pub client: kube::Client,
    pub emulator: EmulatorProc,
    pub operator: Option<Proc>,
}

impl TestEnv {
    /// A fresh namespace `e2e-<name>-<random>` and an emulator started with `emulator_args`.
    pub async fn new(name: &str, emulator_args: &[&str]) -> Self {
        Self::new_with_emulator_on(name, "127.0.0.1", emulator_args).await
    }

    /// Like [`TestEnv::new`], with the emulator listening on `host`.
    pub async fn new_with_emulator_on(name: &str, host: &str, emulator_args: &[&str]) -> Self {
        let config = kubeconfig();
        install_crd();
        let options = kube::config::KubeConfigOptions::default();
        let kc = kube::config::Kubeconfig::read_from(&config).expect("read kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &options).await.expect("kubeconfig");
        let client = kube::Client::try_from(cfg).expect("client");
        let ns = format!("e2e-{name}-{:05}", rand::random_range(0..100_000));
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        namespaces.create(&PostParams::default(), &namespace).await.expect("create namespace");
        let emulator = EmulatorProc::start_on(&ns, host, emulator_args);
        Self { ns, client, emulator, operator: None }
    }

    /// Starts `connect-operator run` for this namespace against this emulator, with short test timings.
    pub fn start_operator(&mut self, extra: &[&str]) {
        self.start_operator_with_env(extra, &[]);
    }

    pub fn api(&self) -> Api<SecurityProfile> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// `kubectl apply -f -` in this namespace.
    pub fn apply(&self, manifest: &str) -> Output {
        kubectl(&["apply", "-n", &self.ns, "-f", "-"], Some(manifest))
    }

    pub fn apply_ok(&self, manifest: &str) {
        let out = self.apply(manifest);
        assert!(out.status.success(), "kubectl apply failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        let mut all = vec!["-n", self.ns.as_str()];
        all.extend_from_slice(args);
        kubectl(&all, None)
    }

    /// Polls until `check` returns `Some`, or fails after `timeout` with the operator's log tail.
    pub async fn wait_for<T>(&self, what: &str, timeout: Duration, check: impl AsyncFnMut() -> Option<T>) -> T {
        wait_until(what, timeout, check, || format!("--- operator log tail ---\n{}", self.operator_log_tail())).await
    }

    pub fn operator_log_tail(&self) -> String {
        let Some(op) = &self.operator else {
            return "(no operator)".into();
        };
        let log = std::fs::read_to_string(&op.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Waits until the resource's condition `type_` has `status`, and returns the resource.
    pub async fn wait_condition(&self, name: &str, type_: &str, status: &str, timeout: Duration) -> SecurityProfile {
        let api = self.api();
        self.wait_for(&format!("{name} {type_}={status}"), timeout, async || {
            let sp = api.get_opt(name).await.ok().flatten()?;
            let c = sp.condition(type_)?;
            (c.status == status && c.observed_generation == sp.metadata.generation).then_some(sp)
        })
        .await
    }

    /// Waits until the Synced condition has `reason`.
    pub async fn wait_reason(&self, name: &str, reason: &str, timeout: Duration) -> SecurityProfile {
        let api = self.api();
        self.wait_for(&format!("{name} Synced reason {reason}"), timeout, async || {
            let sp = api.get_opt(name).await.ok().flatten()?;
            (sp.condition("Synced")?.reason == reason).then_some(sp)
        })
        .await
    }
}

/// Polls `check` every 100 ms until it returns `Some`; after `timeout` fails, naming `what` and adding
/// what `diagnose` says (e.g. the operator's log tail).
pub async fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
    diagnose: impl FnOnce() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}\n{}", diagnose());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of the first sample of a Prometheus text exposition whose line starts with `series`
/// (0 when there is none).
/// A free TCP port on 127.0.0.1 (for an operator's `--metrics-addr`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The whole answer (status line, headers, body) to `GET path` on 127.0.0.1:`port`; None while nothing
/// answers.
pub async fn http_get(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    Some(out)
}

/// The operator's `/metrics` on 127.0.0.1:`port`.
pub async fn scrape(port: u16) -> Option<String> {
    http_get(port, "/metrics").await
}

pub fn metric_value(metrics: &str, series: &str) -> f64 {
    metrics.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0)
}

/// `extra` flags, plus each default flag that `extra` does not set.
pub fn with_defaults(extra: &[&str], defaults: &[(&str, &str)]) -> Vec<String> {
    let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    for (flag, value) in defaults {
        if !extra.contains(flag) {
            args.push(flag.to_string());
            args.push(value.to_string());
        }
    }
    args
}

// --- Additions for tests/e2e/helm_install.rs (kept at the end of the file) ---------------------------

impl TestEnv {
    /// Like [`TestEnv::start_operator`], with extra environment variables set last, so they override
    /// the defaults: e.g. `KUBECONFIG` to run the operator with a ServiceAccount's token.
    pub fn start_operator_with_env(&mut self, extra: &[&str], env: &[(&str, &str)]) {
        self.operator = Some(self.spawn_operator(extra, env, "operator"));
    }

    /// Starts `program`, another build of the operator (the benchmark's "before"), as
    /// [`TestEnv::start_operator`] starts this one.
    pub fn start_operator_binary(&mut self, program: &Path, extra: &[&str]) {
        self.operator = Some(self.spawn_operator_of(program, extra, &[], "operator"));
    }

    /// Starts another `connect-operator run` process (logging to `<ns>-<log_name>.log`) and returns it.
    pub fn spawn_operator(&self, extra: &[&str], env: &[(&str, &str)], log_name: &str) -> Proc {
        self.spawn_operator_of(&bin("connect-operator"), extra, env, log_name)
    }

    /// [`TestEnv::spawn_operator`] of the binary `program`.
    fn spawn_operator_of(&self, program: &Path, extra: &[&str], env: &[(&str, &str)], log_name: &str) -> Proc {
        let log = log_dir().join(format!("{}-{log_name}.log", self.ns));
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let defaults = [
            ("--retry-base", "200ms"),
            ("--retry-max", "3s"),
            ("--slow-retry", "2s"),
            ("--metrics-addr", "127.0.0.1:0"),
            ("--connect-rate", "100"),
            ("--connect-burst", "100"),
            // Drift shows up in the instance's listing within a second.
            ("--observe-interval", "1s"),
        ];
        let child = Command::new(program)
            .args(["run", "--namespace", &self.ns])
            .args(with_defaults(extra, &defaults))
            .env("KUBECONFIG", kubeconfig())
            .env("AWS_ENDPOINT_URL_CONNECT", self.emulator.endpoint())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "AKIDEMULATOR")
            .env("AWS_SECRET_ACCESS_KEY", "emulator-secret")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("LOG_LEVEL", "info,connect_operator=debug")
            // Single-team mode unless a test says otherwise (ALLOW_UNBOUND=false): these tests are about
            // other behaviour; tests/e2e/multitenancy.rs covers InstanceBindings.
            .env("ALLOW_UNBOUND", "true")
            .envs(env.iter().copied())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start connect-operator");
        Proc { child, log }
    }
}

/// A client for the cluster of `kubeconfig` (a file), e.g. one holding a ServiceAccount's token.
pub async fn client_for_kubeconfig(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    kube::Client::try_from(cfg).expect("client")
}

/// `repo_root()` for the test modules.
pub fn repo_path(relative: &str) -> PathBuf {
    repo_root().join(relative)
}

/// The directory of the e2e logs (`target/e2e-logs`), for files a test writes next to them.
pub fn e2e_log_dir() -> PathBuf {
    log_dir()
}

// --- InstanceBindings (tests/e2e/multitenancy.rs) ---------------------------------------------------

impl TestEnv {
    /// Creates (or replaces) the cluster-scoped InstanceBinding `name` with `spec`; it is deleted when
    /// the returned guard drops.
    pub fn bind(&self, name: &str, spec: Value) -> BindingGuard {
        let manifest = json!({
            "apiVersion": "connect.cloud-operators.dev/v1alpha1",
            "kind": "InstanceBinding",
            "metadata": {"name": name},
            "spec": spec,
        });
        let out = kubectl(&["apply", "-f", "-"], Some(&manifest.to_string()));
        assert!(out.status.success(), "apply InstanceBinding: {}", String::from_utf8_lossy(&out.stderr));
        BindingGuard(name.to_string())
    }

    /// Labels this test's namespace.
    pub fn label_namespace(&self, ns: &str, label: &str) {
        let out = kubectl(&["label", "--overwrite", "namespace", ns, label], None);
        assert!(out.status.success(), "label: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Creates another namespace `<ns>-<suffix>` for this test and returns its name.
    pub async fn extra_namespace(&self, suffix: &str) -> String {
        let name = format!("{}-{suffix}", self.ns);
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        namespaces.create(&PostParams::default(), &namespace).await.expect("create namespace");
        name
    }
}

/// Deletes its InstanceBinding when dropped.
pub struct BindingGuard(pub String);

impl Drop for BindingGuard {
    fn drop(&mut self) {
        let _ = kubectl(&["delete", "instancebinding", &self.0, "--ignore-not-found", "--wait=false"], None);
    }
}

// --- Helm releases of the chart (tests/e2e/helm_install.rs, tests/e2e/node.rs) -----------------------

/// `helm ARGS` against the test cluster, from the repository root.
pub fn helm(args: &[&str]) -> Output {
    Command::new("helm")
        .args(args)
        .env("KUBECONFIG", kubeconfig())
        .current_dir(repo_root())
        .output()
        .expect("helm on PATH (tests/cluster/install-deps.sh puts it in ~/.cache/connect-operator/bin)")
}

/// The stdout of a command that must have succeeded (else fails with its output, naming `what`).
pub fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A Helm release of charts/connect-operator in its own namespace; uninstalled (and the namespace
/// deleted) on drop.
pub struct Release {
    pub name: String,
    pub ns: String,
    uninstalled: bool,
}

impl Release {
    /// `helm install NAME charts/connect-operator -n NS --create-namespace --set crds.install=false
    /// VALUES...`: the harness installs the CRDs (kubectl apply), a second owner would conflict.
    pub fn install(name: String, ns: String, values: &[&str]) -> Self {
        let mut args = vec![
            "install",
            name.as_str(),
            "charts/connect-operator",
            "--namespace",
            ns.as_str(),
            "--create-namespace",
            "--set",
            "crds.install=false",
            // The chart's admission policy judges every namespace of a cluster-wide release, and the
            // tests running beside it apply refused profiles on purpose; tests/e2e/admission.rs tests it.
            "--set",
            "admissionPolicy.enabled=false",
        ];
        args.extend_from_slice(values);
        let out = helm(&args);
        let release = Self { name: name.clone(), ns: ns.clone(), uninstalled: false };
        ok(out, "helm install");
        release
    }

    /// `helm upgrade --reuse-values VALUES...`.
    pub fn upgrade(&self, values: &[&str]) {
        let mut args = vec![
            "upgrade",
            self.name.as_str(),
            "charts/connect-operator",
            "--namespace",
            self.ns.as_str(),
            "--reuse-values",
        ];
        args.extend_from_slice(values);
        ok(helm(&args), "helm upgrade");
    }

    /// The chart's full name of this release: its Deployment, ServiceAccount, Lease.
    pub fn fullname(&self) -> String {
        format!("{}-connect-operator", self.name)
    }

    pub fn service_account(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.ns, self.fullname())
    }

    /// The label selector of the release's pods.
    pub fn pod_selector(&self) -> String {
        format!("app.kubernetes.io/name=connect-operator,app.kubernetes.io/instance={}", self.name)
    }

    /// A kubeconfig that authenticates as the chart's ServiceAccount (a TokenRequest token).
    pub fn service_account_kubeconfig(&self) -> PathBuf {
        let token = ok(
            kubectl(&["create", "token", &self.fullname(), "-n", &self.ns, "--duration=1h"], None),
            "kubectl create token",
        );
        let admin: Value = serde_saphyr::from_str(&std::fs::read_to_string(kubeconfig()).unwrap()).unwrap();
        let cluster = &admin["clusters"][0]["cluster"];
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {
                "server": cluster["server"],
                "certificate-authority-data": cluster["certificate-authority-data"],
            }}],
            "users": [{"name": "operator", "user": {"token": token.trim()}}],
            "contexts": [{"name": "operator", "context": {"cluster": "test", "user": "operator", "namespace": self.ns}}],
            "current-context": "operator",
        });
        let path = e2e_log_dir().join(format!("{}-sa.kubeconfig", self.ns));
        std::fs::write(&path, config.to_string()).unwrap();
        path
    }

    /// `helm uninstall`; returns its output.
    pub fn uninstall(&mut self) -> String {
        self.uninstalled = true;
        let out = ok(helm(&["uninstall", &self.name, "--namespace", &self.ns]), "helm uninstall");
        let _ = kubectl(&["delete", "namespace", &self.ns, "--wait=false"], None);
        out
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if self.uninstalled {
            return;
        }
        let out = helm(&["uninstall", &self.name, "--namespace", &self.ns]);
        let _ = kubectl(&["delete", "namespace", &self.ns, "--wait=false"], None);
        if !out.status.success() && !std::thread::panicking() {
            panic!("helm uninstall failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

// --- The test cluster's node (tests/e2e/node.rs; tests/cluster/up.sh --node, make e2e-node) ----------

/// What `tests/cluster/up.sh --node` recorded about the node it runs (`node.env` beside the kubeconfig).
pub struct TestNode {
    /// The host's address, which pods reach (the kubelet's node IP; where the emulator listens).
    pub host_ip: String,
    /// kubelet's --cgroup-root: the pods' cgroups are under it in every hierarchy.
    pub cgroup_root: String,
}

impl TestNode {
    /// The running node of the test cluster; fails, saying how to start one, when there is none.
    pub fn get() -> Self {
        let kubeconfig = PathBuf::from(kubeconfig());
        let env_file = kubeconfig.parent().expect("the cluster dir").join("node.env");
        let text = std::fs::read_to_string(&env_file).unwrap_or_else(|_| {
            panic!(
                "{} is missing: these tests need the test cluster's node (needs a node: make e2e-node, or \
                 tests/cluster/up.sh --node)",
                env_file.display()
            )
        });
        // Lines NAME=value as bash's printf %q writes them (the values have no quoting to undo).
        let get = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
                .map(|v| v.trim_matches('\'').to_string())
                .unwrap_or_else(|| panic!("{name} is missing in {}", env_file.display()))
        };
        Self { host_ip: get("HOST_IP"), cgroup_root: get("NODE_CGROUP_ROOT") }
    }
}

// --- Additions for tests/e2e/events.rs (kept at the end of the file) ---------------------------------

/// An SQS for the events tests: moto's server mode (PyPI `moto[server]`, which
/// tests/cluster/install-deps.sh installs as `moto_server` beside kubectl) on a free port of 127.0.0.1.
pub struct SqsServer {
    pub proc: Proc,
    /// `http://127.0.0.1:<port>`: what `AWS_ENDPOINT_URL_SQS` names.
    pub endpoint: String,
}

impl SqsServer {
    pub fn start(name: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = log_dir().join(format!("{name}-moto.log"));
        let file = std::fs::File::create(&log).unwrap();
        let on_path = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|dir| dir.join("moto_server").exists()));
        let cached =
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/connect-operator/bin/moto_server");
        let program = if on_path || !cached.exists() { PathBuf::from("moto_server") } else { cached };
        let child = Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect(
                "moto_server on PATH (tests/cluster/install-deps.sh installs it into ~/.cache/connect-operator/bin)",
            );
        let proc = Proc { child, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start: see {}", proc.log.display());
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { proc, endpoint: format!("http://127.0.0.1:{port}") }
    }

    pub fn client(&self) -> aws_sdk_sqs::Client {
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new("testing", "testing", None, None, "e2e"))
            .endpoint_url(&self.endpoint)
            .build();
        aws_sdk_sqs::Client::from_conf(config)
    }

    /// Creates the queue `name`; returns its URL on [`Self::endpoint`].
    pub async fn create_queue(&self, name: &str) -> String {
        let out = self.client().create_queue().queue_name(name).send().await.expect("CreateQueue");
        let url = out.queue_url().expect("a queue URL");
        // moto names the host it was asked under; keep the path on our endpoint.
        let path = url.split("://").nth(1).and_then(|rest| rest.split_once('/')).map(|(_, p)| p).unwrap_or_default();
        format!("{}/{path}", self.endpoint)
    }

    /// Messages in the queue: visible and in flight.
    pub async fn depth(&self, url: &str) -> u64 {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .client()
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("GetQueueAttributes");
        let attrs = out.attributes().cloned().unwrap_or_default();
        let n = |a: A| attrs.get(&a).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        n(A::ApproximateNumberOfMessages) + n(A::ApproximateNumberOfMessagesNotVisible)
    }
}
