//! The Argo CD health check of SecurityProfiles (deploy/argocd/health.lua), run through the real
//! `lua5.1` interpreter (Argo CD embeds gopher-lua, a Lua 5.1) against every case of
//! deploy/argocd/health_test.yaml, the fixture layout of argo-cd's own resource_customizations tests.
//! Needs `lua5.1` (Debian package lua5.1; tests/cluster/install-deps.sh installs it). No cluster.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_json::Value;

const HEALTH_KEY: &str = "resource.customizations.health.connect.cloud-operators.dev_SecurityProfile";

fn argocd_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/argocd")
}

#[derive(Debug, Deserialize)]
struct HealthTests {
    tests: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Case {
    health_status: Expected,
    input_path: String,
}

#[derive(Debug, Deserialize)]
struct Expected {
    status: String,
    message: String,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(argocd_dir().join("health_test.yaml")).expect("health_test.yaml");
    serde_saphyr::from_str::<HealthTests>(&text)
        .expect("health_test.yaml: tests[].healthStatus{status,message}, tests[].inputPath")
        .tests
}

/// A Lua 5.1 string literal of `s` (any bytes).
fn lua_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for b in s.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            // Decimal escapes keep the literal ASCII; UTF-8 text survives byte for byte.
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out.push('"');
    out
}

/// The Lua table constructor of a JSON value, as Argo CD hands objects to health scripts:
/// objects and arrays become tables (arrays 1-based), null becomes nil.
fn lua_value(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(lua_value).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Object(map) => {
            let fields: Vec<String> =
                map.iter().map(|(k, v)| format!("[{}] = {}", lua_string(k), lua_value(v))).collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

/// Runs health.lua for `obj` in a sandbox with only what Argo CD's VM offers a health script
/// (no io, os or require), and returns (status, message).
fn run_health(script: &Path, obj: &Value) -> (String, String) {
    let driver = format!(
        r#"
local obj = {obj}
local chunk = assert(loadfile({path}))
local sandbox = {{
  obj = obj, ipairs = ipairs, pairs = pairs, next = next, select = select, type = type,
  tostring = tostring, tonumber = tonumber, error = error, pcall = pcall, unpack = unpack,
  string = string, table = table, math = math,
}}
setfenv(chunk, sandbox)
local hs = chunk()
assert(type(hs) == "table", "health.lua must return a table")
assert(type(hs.status) == "string", "hs.status must be a string")
assert(type(hs.message) == "string", "hs.message must be a string")
io.write(hs.status, "\0", hs.message)
"#,
        obj = lua_value(obj),
        path = lua_string(script.to_str().expect("UTF-8 path")),
    );
    let mut child = Command::new("lua5.1")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run lua5.1 ({e}): install the Debian package lua5.1 (tests/cluster/install-deps.sh does)")
        });
    child.stdin.take().unwrap().write_all(driver.as_bytes()).unwrap();
    let out = child.wait_with_output().expect("lua5.1 runs");
    assert!(out.status.success(), "lua5.1 failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let (status, message) = stdout.split_once('\0').expect("status\\0message");
    (status.to_string(), message.to_string())
}

#[test]
fn every_case_of_health_test_yaml_gives_its_status_and_message() {
    let dir = argocd_dir();
    let script = dir.join("health.lua");
    let cases = cases();
    let mut failures = Vec::new();
    for case in &cases {
        let text =
            std::fs::read_to_string(dir.join(&case.input_path)).unwrap_or_else(|e| panic!("{}: {e}", case.input_path));
        let obj: Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: not YAML: {e}", case.input_path));
        let (status, message) = run_health(&script, &obj);
        if status != case.health_status.status || message != case.health_status.message {
            failures.push(format!(
                "{}:\n  expected {} / {:?}\n  got      {status} / {message:?}",
                case.input_path, case.health_status.status, case.health_status.message
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_cases_cover_every_state_and_every_fixture_is_used() {
    let cases = cases();
    let used: BTreeSet<String> = cases.iter().map(|c| c.input_path.clone()).collect();
    assert_eq!(used.len(), cases.len(), "a fixture is listed twice");
    let on_disk: BTreeSet<String> = std::fs::read_dir(argocd_dir().join("testdata"))
        .expect("testdata")
        .map(|e| format!("testdata/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    assert_eq!(used, on_disk, "health_test.yaml must use exactly the files in testdata/");
    for required in [
        "testdata/ready.yaml",
        "testdata/validation-failed.yaml",
        "testdata/spec-change-pending.yaml",
        "testdata/throttled.yaml",
        "testdata/no-status.yaml",
        "testdata/deleting.yaml",
        "testdata/quota.yaml",
    ] {
        assert!(used.contains(required), "no case for {required}");
    }
    let statuses: BTreeSet<&str> = cases.iter().map(|c| c.health_status.status.as_str()).collect();
    for s in &statuses {
        assert!(
            ["Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"].contains(s),
            "{s} is not an Argo CD health status"
        );
    }
    for s in ["Healthy", "Progressing", "Degraded"] {
        assert!(statuses.contains(s), "no case ends {s}");
    }
}

/// deploy/argocd/argocd-cm.yaml for `script`: the key Argo CD reads health checks from, with the script
/// as a literal block.
fn argocd_cm(script: &str) -> String {
    let mut out = String::from(
        "# Argo CD health check for SecurityProfiles: merge this key into the argocd-cm ConfigMap, e.g.\n\
         #   kubectl -n argocd patch configmap argocd-cm --patch-file deploy/argocd/argocd-cm.yaml\n\
         # or, with the argo-cd Helm chart, put the key under configs.cm. Generated from\n\
         # deploy/argocd/health.lua (tests/argocd_health.rs checks it; CONNECT_OPERATOR_BLESS=1 rewrites it).\n\
         apiVersion: v1\n\
         kind: ConfigMap\n\
         metadata:\n  name: argocd-cm\n  namespace: argocd\n  labels:\n\
         \x20   app.kubernetes.io/name: argocd-cm\n    app.kubernetes.io/part-of: argocd\n\
         data:\n",
    );
    out.push_str(&format!("  {HEALTH_KEY}: |\n"));
    for line in script.lines() {
        if line.is_empty() {
            out.push('\n');
        } else {
            out.push_str("    ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn argocd_cm_installs_health_lua_verbatim_under_the_resource_key() {
    let dir = argocd_dir();
    let script = std::fs::read_to_string(dir.join("health.lua")).unwrap();
    assert!(script.ends_with('\n') && !script.ends_with("\n\n"), "health.lua ends with one newline");
    let expected = argocd_cm(&script);
    let path = dir.join("argocd-cm.yaml");
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current != expected {
        if std::env::var_os("CONNECT_OPERATOR_BLESS").is_some() {
            std::fs::write(&path, &expected).unwrap();
        } else {
            panic!(
                "deploy/argocd/argocd-cm.yaml is out of date with health.lua: \
                 regenerate it with `CONNECT_OPERATOR_BLESS=1 cargo test --test argocd_health`"
            );
        }
    }
    // What Argo CD will read back: the script, byte for byte.
    let cm: Value = serde_saphyr::from_str(&expected).expect("argocd-cm.yaml is YAML");
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    assert_eq!(cm["data"][HEALTH_KEY].as_str(), Some(script.as_str()));
}
