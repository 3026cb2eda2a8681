//! The bad-input corpus (tests/corpus/invalid) against the real API server, one operator and one emulator.
//! Each case says which layer refuses it (`rejected-by`), and the test checks that this layer does:
//! - `schema`: the API server's OpenAPI schema check refuses `kubectl apply`, naming the field;
//! - `cel`: one of the CRD's CEL rules (x-kubernetes-validations) refuses it, with the rule's message;
//! - `fields`: strict field validation (kubectl's default since 1.27) refuses a field the schema lacks;
//! - `controller`: the API server accepts it and the operator ends with a terminal `Synced=False` naming
//!   the field;
//! - `offline`: the API server accepts it with the value silently dropped (only `connect-operator validate`
//!   sees it).
//!
//! The valid manifests applied alongside become Ready, and no corpus case ever reaches Connect. `kubectl
//! apply` runs as users run it, with kubectl's default validation. The table of what refused each case
//! goes to target/e2e-logs/bad-input-corpus.md.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{TestEnv, kubeconfig, kubectl, manifest};
use crate::support::{repo_root, yaml_files};

const T: Duration = Duration::from_secs(30);

struct Case {
    path: PathBuf,
    stem: String,
    by: String,
    expect: String,
    expect_apiserver: Option<String>,
    manifest: Value,
}

fn corpus() -> Vec<Case> {
    yaml_files(&repo_root().join("tests/corpus/invalid"))
        .into_iter()
        .map(|path| {
            let manifest: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let note = |k: &str| {
                manifest["metadata"]["annotations"][format!("corpus.connect.cloud-operators.dev/{k}")]
                    .as_str()
                    .map(str::to_string)
            };
            Case {
                stem: path.file_stem().unwrap().to_string_lossy().into_owned(),
                by: note("rejected-by").expect("rejected-by"),
                expect: note("expect").expect("expect"),
                expect_apiserver: note("expect-apiserver"),
                path,
                manifest,
            }
        })
        .collect()
}

/// Runs `f` for every item, 8 at a time, on threads (each call runs kubectl).
fn parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(8) {
        std::thread::scope(|s| {
            let handles: Vec<_> = chunk.iter().map(|item| s.spawn(|| f(item))).collect();
            out.extend(handles.into_iter().map(|h| h.join().expect("kubectl thread")));
        });
    }
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn the_corpus_is_refused_by_the_api_server_or_the_controller_and_never_reaches_connect() {
    let started = Instant::now();
    let mut env = TestEnv::new("corpus", &["--throttle-rate", "0"]).await;
    env.start_operator(&[]);
    let cases = corpus();
    assert!(cases.len() >= 45);
    let ns = env.ns.clone();

    // The API server's verdict on every case (the offline cases as a server-side dry run).
    let outputs = parallel(&cases, |c| {
        let path = c.path.to_str().unwrap();
        match c.by.as_str() {
            "offline" => kubectl(&["apply", "--dry-run=server", "-o", "json", "-n", &ns, "-f", path], None),
            _ => kubectl(&["apply", "-n", &ns, "-f", path], None),
        }
    });
    let rules = cel_messages();
    let mut failures = Vec::new();
    const HEAD: [&str; 2] = ["| Case | Refused by | Message |", "|---|---|---|"];
    let mut table: Vec<String> = HEAD.map(String::from).to_vec();
    for (c, out) in cases.iter().zip(&outputs) {
        let err = stderr(out);
        // Which layer refused it, from what the API server said.
        let by = if out.status.success() {
            c.by.as_str()
        } else if err.contains("unknown field") {
            "fields"
        } else if rules.iter().any(|r| err.contains(r.as_str())) {
            "cel"
        } else {
            "schema"
        };
        if by != c.by {
            failures.push(format!("{}: refused by {by}, the case says {}: {err}", c.stem, c.by));
            continue;
        }
        match by {
            "schema" | "cel" | "fields" => {
                let expect = c.expect_apiserver.as_deref().unwrap_or(&c.expect);
                if !err.contains(expect) {
                    failures.push(format!("{}: kubectl's error should contain {expect:?}: {err}", c.stem));
                }
                let message = apiserver_message(&err).replace('|', "\\|");
                let layer = match by {
                    _ if err.contains("resource mapping not found") => "API server: no such kind (kubectl's discovery)",
                    "schema" => "API server: OpenAPI schema",
                    "cel" => "API server: CEL rule",
                    _ => "API server: strict field validation",
                };
                table.push(format!("| {} | {layer} | {message} |", c.stem));
            }
            "controller" => table.push(format!("| {} | controller (`Synced=False`) | {} |", c.stem, c.expect)),
            _ => {
                // Accepted, and the value the expect annotation names is gone from what would be stored.
                let stored: Value = serde_json::from_slice(&out.stdout).expect("dry-run output is JSON");
                if stored["spec"] == c.manifest["spec"] {
                    failures.push(format!("{}: the API server kept the spec unchanged: {}", c.stem, stored["spec"]));
                }
                table.push(format!(
                    "| {} | `connect-operator validate` only (the API server drops the value) | {} |",
                    c.stem, c.expect
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} cases:\n{}", failures.len(), cases.len(), failures.join("\n"));

    // Valid manifests alongside: the operator keeps serving while it refuses the controller cases.
    let mut valid: Vec<PathBuf> = yaml_files(&repo_root().join("tests/corpus/valid"));
    // The samples' SecurityProfiles; not the sample InstanceBinding: cluster-scoped, it would bind the
    // emulator's instance for every other test's namespace.
    valid.extend(
        yaml_files(&repo_root().join("deploy/samples"))
            .into_iter()
            .filter(|f| !std::fs::read_to_string(f).unwrap().contains("kind: InstanceBinding")),
    );
    for file in &valid {
        let out = kubectl(&["apply", "-n", &ns, "-f", file.to_str().unwrap()], None);
        assert!(out.status.success(), "{}: {}", file.display(), stderr(&out));
    }

    // The API server refused the CEL cases. An API server without CEL (before 1.25) would have stored them:
    // stored straight into etcd, past the API server, the controller refuses each with the same rule.
    let etcd = etcd_address();
    let mut past_the_api_server = Vec::new();
    for c in cases.iter().filter(|c| c.by == "cel") {
        store_in_etcd(&etcd, &ns, &c.stem, c.manifest["spec"].clone());
    }
    for c in cases.iter().filter(|c| matches!(c.by.as_str(), "controller" | "cel")) {
        let api = env.api();
        let sp = env
            .wait_for(&format!("{} Synced=False ValidationFailed", c.stem), T, async || {
                let sp = api.get_opt(&c.stem).await.ok().flatten()?;
                let synced = sp.condition("Synced")?;
                (synced.status == "False" && matches!(synced.reason.as_str(), "ValidationFailed" | "InvalidObject"))
                    .then_some(sp)
            })
            .await;
        let synced = sp.condition("Synced").unwrap();
        assert!(synced.message.contains(&c.expect), "{}: {:?} should contain {:?}", c.stem, synced.message, c.expect);
        assert_eq!(sp.condition("Ready").map(|r| r.status.as_str()), Some("False"), "{}", c.stem);
        past_the_api_server.push(format!(
            "| {} | controller (`Synced=False {}`) | {} |",
            c.stem,
            synced.reason,
            synced.message.replace('|', "\\|")
        ));
    }
    // The table: every case as a user applies it, then the CEL cases as a cluster without CEL stores them.
    table.push(String::new());
    table.push("Stored past the API server (as an API server without CEL, before 1.25, stores them):".into());
    table.push(String::new());
    table.extend(HEAD.map(String::from));
    table.extend(past_the_api_server);
    let report = crate::harness::e2e_log_dir().join("bad-input-corpus.md");
    std::fs::write(&report, table.join("\n") + "\n").unwrap();
    eprintln!("corpus table: {}", report.display());

    let api = env.api();
    let mut valid_names = BTreeSet::new();
    for sp in api.list(&Default::default()).await.unwrap() {
        let name = sp.metadata.name.clone().unwrap();
        if cases.iter().any(|c| c.stem == name) {
            continue;
        }
        env.wait_condition(&name, "Ready", "True", T).await;
        valid_names.insert(sp.spec.security_profile_name.clone());
    }
    let expected = connect_operator::offline::validate_files(&valid);
    assert_eq!((valid_names.len(), expected.exit_code()), (expected.checked, 0), "{valid_names:?}");

    // Only what the API server accepted (and the CEL cases stored past it) exists, with the valid profiles.
    let out = env.kubectl(&["get", "csp", "-o", "name"]);
    let stored: BTreeSet<String> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| l.rsplit('/').next().unwrap().to_string()).collect();
    for c in &cases {
        let kept = matches!(c.by.as_str(), "controller" | "cel");
        assert_eq!(stored.contains(&c.stem), kept, "{}: stored = {}", c.stem, stored.contains(&c.stem));
    }

    // Connect saw the valid profiles, and nothing of the corpus.
    let corpus_names: BTreeSet<String> = cases
        .iter()
        .flat_map(|c| [Some(c.stem.clone()), c.manifest["spec"]["securityProfileName"].as_str().map(str::to_string)])
        .flatten()
        .collect();
    let created: BTreeSet<String> = env
        .emulator
        .calls()
        .iter()
        .filter(|c| c.operation == "CreateSecurityProfile")
        .filter_map(|c| c.params["body"]["SecurityProfileName"].as_str().map(str::to_string))
        .collect();
    assert!(
        created.is_disjoint(&corpus_names),
        "corpus cases reached Connect: {:?}",
        created.intersection(&corpus_names)
    );
    assert_eq!(created, valid_names);
    eprintln!("corpus: {} cases in {:?}", cases.len(), started.elapsed());
}

/// What the API server said in kubectl's error, without kubectl's preamble (which file, which object) and
/// without the API server's note that CEL rules were skipped for an object already invalid.
fn apiserver_message(err: &str) -> String {
    let mut lines =
        err.lines().map(str::trim).filter(|l| !l.is_empty() && !l.contains("some validation rules were not checked"));
    let first = lines.next().unwrap_or_default();
    let head = [" is invalid:", "strict decoding error:"]
        .iter()
        .find_map(|sep| first.split_once(sep).map(|(_, m)| m.trim()))
        .unwrap_or(first);
    // A multi-line answer lists one error per line ("* field: ...") after an empty head.
    let rest: Vec<&str> = lines.map(|l| l.trim_start_matches("* ")).collect();
    match (head.is_empty(), rest.is_empty()) {
        (true, _) => rest.join("; "),
        (false, true) => head.to_string(),
        (false, false) => format!("{head}; {}", rest.join("; ")),
    }
}

/// The messages of the CRD's CEL rules (x-kubernetes-validations), as the API server reports them.
fn cel_messages() -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    if k == "x-kubernetes-validations" {
                        out.extend(
                            v.as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(|r| r["message"].as_str())
                                .map(str::to_string),
                        );
                    } else {
                        walk(v, out);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let crd: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(repo_root().join("crds/securityprofile.yaml")).unwrap())
            .unwrap();
    let mut out = Vec::new();
    walk(&crd, &mut out);
    assert!(out.len() >= 5, "{out:?}");
    out
}

/// The test cluster's etcd (tests/cluster/up.sh writes its port next to the kubeconfig); fails when it is
/// not reachable (the tests that write to it cannot run without it).
pub fn etcd_address() -> String {
    let dir = Path::new(&kubeconfig()).parent().expect("the cluster dir").to_path_buf();
    let ports = std::fs::read_to_string(dir.join("ports.env")).expect("ports.env next to the kubeconfig (up.sh)");
    let port = ports.lines().find_map(|l| l.strip_prefix("ETCD_PORT=")).expect("ETCD_PORT in ports.env").trim();
    let addr = format!("127.0.0.1:{port}");
    TcpStream::connect(&addr).unwrap_or_else(|e| panic!("the test cluster's etcd at {addr}: {e}"));
    addr
}

/// The etcd key the API server keeps SecurityProfile `ns/name` under.
pub fn etcd_key(ns: &str, name: &str) -> String {
    format!("/registry/connect.cloud-operators.dev/securityprofiles/{ns}/{name}")
}

/// Stores a new SecurityProfile `ns/name` with `spec` straight into etcd, past the API server's checks (as
/// an older API server, or one before a schema change, would have stored it).
pub fn store_in_etcd(etcd: &str, ns: &str, name: &str, spec: Value) {
    // The manifest a user would apply (apiVersion, kind, the default instanceId), with what the API server
    // would have added to it.
    let mut object: Value = serde_json::from_str(&manifest(name, spec)).unwrap();
    object["metadata"]["namespace"] = json!(ns);
    object["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
    object["metadata"]["generation"] = json!(1);
    object["metadata"]["creationTimestamp"] = json!(jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    etcd_put(etcd, &etcd_key(ns, name), &object.to_string());
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Changes the spec of SecurityProfile `ns/name` straight in etcd, past the API server's checks (as an API
/// server without CEL would have let `kubectl apply` change it): `edit` gets the spec; the generation goes up.
pub fn edit_in_etcd(ns: &str, name: &str, edit: impl FnOnce(&mut Value)) {
    let out = kubectl(&["get", "csp", name, "-n", ns, "-o", "json"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut stored: Value = serde_json::from_slice(&out.stdout).unwrap();
    edit(&mut stored["spec"]);
    stored["metadata"]["generation"] = json!(stored["metadata"]["generation"].as_i64().unwrap() + 1);
    etcd_put(&etcd_address(), &etcd_key(ns, name), &stored.to_string());
}

/// `PUT key value` through etcd's v3 JSON gateway.
pub fn etcd_put(addr: &str, key: &str, value: &str) {
    let body = json!({"key": base64(key.as_bytes()), "value": base64(value.as_bytes())}).to_string();
    let mut stream = TcpStream::connect(addr).expect("connect to etcd");
    write!(
        stream,
        "POST /v3/kv/put HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "etcd put: {response}");
}

/// An object stored without the schema's checks (as if written before a schema change): the operator
/// cannot read it as a SecurityProfile, sends nothing to Connect for it, and keeps serving the others.
///
/// The API has no way to skip a v1 CRD's schema (the schema must be structural,
/// and swapping the shared CRD would disturb the tests running alongside), so the object is written
/// straight into the test cluster's etcd, which is where the API server reads it from.
#[tokio::test]
async fn an_object_that_bypassed_the_schema_never_reaches_connect_and_the_others_are_served() {
    let etcd = etcd_address();
    let mut env = TestEnv::new("bypass", &["--throttle-rate", "0"]).await;
    env.start_operator(&[]);
    let spec = json!({"instanceId": crate::harness::INSTANCE, "securityProfileName": "bypass", "permissions": "BasicAgentAccess"});
    store_in_etcd(&etcd, &env.ns, "bypass", spec);

    // The API server serves it as stored (reads are not validated)...
    let out = env.kubectl(&["get", "csp", "bypass", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stored: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stored["spec"]["permissions"], "BasicAgentAccess");
    // ... and the offline validator says what is wrong with it.
    let yaml = connect_operator::yaml::to_string(&stored).unwrap();
    let problems = connect_operator::offline::validate_str("stored", &yaml);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(
        problems[0].to_string(),
        format!("stored[0] SecurityProfile {}/bypass: spec.permissions: must be of type array, is string", env.ns)
    );

    // A valid profile applied after it is served.
    env.apply_ok(&manifest("fine", json!({"securityProfileName": "fine"})));
    env.wait_condition("fine", "Ready", "True", T).await;
    // Give the operator time to have reconciled the invalid object too (it was there first).
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Nothing about it reached Connect.
    let calls = env.emulator.calls();
    let names: Vec<&str> = calls.iter().filter_map(|c| c.params["body"]["SecurityProfileName"].as_str()).collect();
    assert_eq!(names, ["fine"], "{calls:?}");

    // The API server lets writes through to an object whose invalid values they leave unchanged (CRD
    // validation ratcheting, 1.30+), so the operator's status for it is stored: InvalidObject, nothing else.
    let sp = env
        .wait_for("bypass Synced=False InvalidObject", T, async || {
            let out = env.kubectl(&["get", "csp", "bypass", "-o", "json"]);
            let sp: Value = serde_json::from_slice(&out.stdout).ok()?;
            let conditions = sp["status"]["conditions"].as_array()?;
            conditions
                .iter()
                .any(|c| c["type"] == "Synced" && c["status"] == "False" && c["reason"] == "InvalidObject")
                .then_some(sp)
        })
        .await;
    let reasons: Vec<&str> =
        sp["status"]["conditions"].as_array().unwrap().iter().filter_map(|c| c["reason"].as_str()).collect();
    assert!(reasons.iter().all(|r| *r == "InvalidObject"), "{sp}");
    let ready = sp["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").cloned();
    assert_eq!(ready.map(|r| r["status"].clone()), Some(json!("False")), "{sp}");

    // It can still be deleted.
    let out = env.kubectl(&["delete", "csp", "bypass", "--wait=true", "--timeout=20s"]);
    assert!(out.status.success(), "{}", stderr(&out));
}
