//! The `connect-emulator` binary: its flags reach the emulator it starts, and bad ones are refused.
//!
//! Having an integration test also makes `cargo test --workspace` build this binary, which the
//! operator's end-to-end tests (tests/e2e) run as a process.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_connect-emulator");

/// A running `connect-emulator` with `args`, killed on drop.
struct Running {
    child: std::process::Child,
    addr: String,
    addr_file: std::path::PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.addr_file);
    }
}

impl Running {
    fn start(name: &str, args: &[&str]) -> Self {
        let addr_file =
            std::env::temp_dir().join(format!("connect-emulator-binary-{name}-{}.addr", std::process::id()));
        let _ = std::fs::remove_file(&addr_file);
        let mut child = Command::new(BIN)
            .args(["--listen", "127.0.0.1:0", "--addr-file", addr_file.to_str().unwrap()])
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .expect("start connect-emulator");
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = loop {
            if let Ok(addr) = std::fs::read_to_string(&addr_file)
                && !addr.is_empty()
            {
                break addr;
            }
            if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
                let _ = child.kill();
                panic!("connect-emulator did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Self { child, addr, addr_file }
    }

    /// `GET /_emulator/{path}`, its JSON answer.
    fn get(&self, path: &str) -> Value {
        let addr = &self.addr;
        let mut stream = TcpStream::connect(addr).expect("connect");
        write!(stream, "GET /_emulator/{path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        serde_json::from_str(body).expect("JSON")
    }
}

#[test]
fn the_binary_serves_the_configured_emulator_and_writes_its_address() {
    let emulator = Running::start(
        "configured",
        &["--throttle-rate", "0", "--latency-ms", "7", "--instance", "i-1", "--no-default-profiles"],
    );
    let faults = emulator.get("faults");
    let state = emulator.get("state");
    drop(emulator);
    assert_eq!(faults["throttleRate"], 0.0);
    assert_eq!(faults["latencyMs"], 7);
    assert_eq!(state["instances"].as_object().map(|i| i.keys().cloned().collect::<Vec<_>>()), Some(vec!["i-1".into()]));
    assert_eq!(state["instances"]["i-1"]["Profiles"], serde_json::json!([]), "no default profiles");
}

#[test]
fn the_binary_takes_its_fault_flags() {
    let emulator = Running::start(
        "faults",
        &["--hold-answers-ms", "250", "--read-lag-ms", "3000", "--throttle-rate", "2", "--throttle-burst", "4"],
    );
    let faults = emulator.get("faults");
    assert_eq!(faults["holdAnswersMs"], 250);
    assert_eq!(faults["readLagMs"], 3000);
    assert_eq!(faults["throttleBurst"], 4.0);
    assert_eq!(emulator.get("throttle")["tokens"], 4.0, "the bucket starts full");
}

#[test]
fn the_binary_refuses_an_error_rate_above_one() {
    let out = Command::new(BIN).args(["--listen", "127.0.0.1:0", "--error-rate", "2"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--error-rate must be between 0 and 1"), "{out:?}");
}

#[test]
fn the_binary_takes_its_iam_from_a_file_and_refuses_a_bad_one() {
    let dir = std::env::temp_dir();
    let good = dir.join(format!("connect-emulator-iam-{}.json", std::process::id()));
    let policy = serde_json::json!({"Version": "2012-10-17",
        "Statement": {"Effect": "Allow", "Action": "connect:*", "Resource": "*"}});
    let iam = serde_json::json!({"users": [{"accessKeyId": "AKIDOP", "arn": "arn:aws:iam::123456789012:user/op",
        "policies": [policy]}]});
    std::fs::write(&good, iam.to_string()).unwrap();
    let emulator = Running::start("iam", &["--iam", good.to_str().unwrap()]);
    assert_eq!(emulator.get("iam")["users"][0]["accessKeyId"], "AKIDOP");
    drop(emulator);
    let bad = dir.join(format!("connect-emulator-bad-iam-{}.json", std::process::id()));
    std::fs::write(&bad, r#"{"users": [{"accessKeyId": "K", "arn": "a", "policies": [{"Statement": {"Effect": "Maybe", "Action": "*"}}]}]}"#).unwrap();
    let out = Command::new(BIN).args(["--listen", "127.0.0.1:0", "--iam", bad.to_str().unwrap()]).output().unwrap();
    let _ = (std::fs::remove_file(&good), std::fs::remove_file(&bad));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Effect is Allow or Deny"), "{out:?}");
}
