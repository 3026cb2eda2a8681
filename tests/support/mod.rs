//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use aws_sdk_connect::error::{ProvideErrorMetadata, SdkError};
use connect_emulator::{DEFAULT_INSTANCE_ID, Emulator, EmulatorConfig, Faults};

pub const INSTANCE: &str = DEFAULT_INSTANCE_ID;
/// The API group and apiVersion of the operator's resources.
#[allow(unused_imports)] // each test target uses some of the shared helpers
pub use connect_operator::api::{API_VERSION, GROUP};

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A policy of deploy/ (`path` from the repository root) with each placeholder of `vars` replaced by its
/// value; panics when a placeholder is left.
pub fn deploy_policy(path: &str, vars: &[(&str, &str)]) -> serde_json::Value {
    let mut text = std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    for (placeholder, value) in vars {
        text = text.replace(placeholder, value);
    }
    let policy = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    for left in ["NAMESPACE_", "BINDING_NAME", "OPERATOR_ROLE_ARN", "EXTERNAL_ID", "ACCOUNT_ID", "INSTANCE_ID"] {
        assert!(!text.contains(left), "{path}: the placeholder {left} is left: {text}");
    }
    policy
}

/// The `.yaml` files of `dir`, sorted.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// `kubectl ARGS` (with `stdin` as its input) against the cluster of `KUBECONFIG`.
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new("kubectl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl on PATH (tests/cluster/install-deps.sh puts it in ~/.cache/connect-operator/bin)");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("kubectl runs")
}

/// A SecurityProfile manifest (JSON, which kubectl reads as YAML) with the given spec; instanceId
/// defaults to the emulator's instance.
pub fn manifest(name: &str, spec: serde_json::Value) -> String {
    let mut spec = spec;
    if spec.get("instanceId").is_none() {
        spec["instanceId"] = serde_json::json!(INSTANCE);
    }
    serde_json::to_string(&serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": "SecurityProfile",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap()
}

/// An in-process emulator on a free port, without throttling unless `faults` says otherwise.
pub async fn emulator_with(faults: Faults, profile_limit: usize) -> Emulator {
    let config = EmulatorConfig { faults, profile_limit, ..EmulatorConfig::default() };
    Emulator::start(config).await.expect("emulator starts on a free port")
}

pub fn no_faults() -> Faults {
    Faults { throttle_rate: 0.0, ..Faults::default() }
}

/// The error code of a failed SDK call (panics, naming the operation, when the call succeeded).
pub fn error_code<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    what: &str,
    result: Result<T, SdkError<E, R>>,
) -> (String, String) {
    match result {
        Ok(v) => panic!("{what}: expected an error, got {v:?}"),
        Err(e) => (
            e.code().map(str::to_string).unwrap_or_else(|| format!("<no code: {e:?}>")),
            e.message().unwrap_or_default().to_string(),
        ),
    }
}
