//! Several AWS accounts in one emulator: each account its own quota bucket, instances in their account,
//! and a caller reaching only its own account's instances (`--instance ACCOUNT:ID`).

use std::io::{Read, Write};
use std::net::TcpStream;

use connect_emulator::{Emulator, EmulatorConfig, Faults};

const A: &str = "111111111111";
const B: &str = "222222222222";
const INSTANCE_A: &str = "aaaaaaaa-2222-4333-8444-555555555555";
const INSTANCE_B: &str = "bbbbbbbb-2222-4333-8444-555555555555";

fn request(emu: &Emulator, method: &str, path: &str, key: &str, body: &str) -> (u16, String) {
    let addr = emu.addr;
    let mut stream = TcpStream::connect(addr).expect("connect");
    let auth = format!(
        "Authorization: AWS4-HMAC-SHA256 Credential={key}/20250101/us-east-1/connect/aws4_request, SignedHeaders=host, Signature=0\r\n"
    );
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    (head.split_whitespace().nth(1).unwrap().parse().unwrap(), body.to_string())
}

/// A session of `role` (no IAM configured: any caller may assume any role); its access key.
fn session(emu: &Emulator, account: &str, role: &str) -> String {
    let arn = format!("arn:aws:iam::{account}:role/{role}").replace(':', "%3A").replace('/', "%2F");
    let body = format!("Action=AssumeRole&Version=2011-06-15&RoleArn={arn}&RoleSessionName=s1");
    let (status, xml) = request(emu, "POST", "/", "AKIDOPERATOR", &body);
    assert_eq!(status, 200, "{xml}");
    let start = xml.find("<AccessKeyId>").unwrap() + "<AccessKeyId>".len();
    xml[start..start + xml[start..].find('<').unwrap()].to_string()
}

fn list(emu: &Emulator, key: &str, instance: &str) -> (u16, String) {
    request(emu, "GET", &format!("/security-profiles-summary/{instance}"), key, "")
}

async fn emulator() -> Emulator {
    let config = EmulatorConfig {
        instances: vec![format!("{A}:{INSTANCE_A}"), format!("{B}:{INSTANCE_B}")],
        faults: Faults { throttle_rate: 2.0, throttle_burst: 5.0, ..Faults::default() },
        ..EmulatorConfig::default()
    };
    Emulator::start(config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_account_has_its_own_quota_and_its_roles_share_it() {
    let emu = emulator().await;
    let (a1, a2, b) = (session(&emu, A, "team-1"), session(&emu, A, "team-2"), session(&emu, B, "team-3"));
    // Account A's burst of 5, taken by two roles of A: the sixth call of A is throttled.
    let statuses: Vec<u16> = (0..6).map(|i| list(&emu, if i % 2 == 0 { &a1 } else { &a2 }, INSTANCE_A).0).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429], "one bucket for every role of account A");
    // Account B's bucket is full all the same.
    let statuses: Vec<u16> = (0..5).map(|_| list(&emu, &b, INSTANCE_B).0).collect();
    assert_eq!(statuses, [200; 5], "account B has its own quota");
    assert_eq!(list(&emu, &b, INSTANCE_B).0, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_reaches_only_its_own_accounts_instances() {
    let emu = emulator().await;
    let (a, b) = (session(&emu, A, "team-1"), session(&emu, B, "team-3"));
    let (status, body) = list(&emu, &a, INSTANCE_B);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains(&format!("not found in account {A}")), "{body}");
    // The instance's ARN and the profiles' ARNs are in its account.
    let (status, body) =
        request(&emu, "PUT", &format!("/security-profiles/{INSTANCE_B}"), &b, r#"{"SecurityProfileName":"p"}"#);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!(":{B}:instance/{INSTANCE_B}/security-profile/")), "{body}");
    let arn: serde_json::Value = serde_json::from_str(&body).unwrap();
    let arn = arn["SecurityProfileArn"].as_str().unwrap().replace(':', "%3A").replace('/', "%2F");
    // Tagging another account's profile by its ARN: not found either.
    let (status, body) = request(&emu, "POST", &format!("/tags/{arn}"), &a, r#"{"tags":{"k":"v"}}"#);
    assert_eq!(status, 404, "{body}");
    // A caller without a session is in the emulator's own account: neither instance is its.
    assert_eq!(list(&emu, "AKIDPLAIN", INSTANCE_A).0, 404);
    assert_eq!(emu.state().instances[INSTANCE_A].account, A);
}
