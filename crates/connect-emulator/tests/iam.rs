//! The emulator's IAM over HTTP: off by default, the control API (`/_emulator/iam`), AssumeRole's session
//! tags, ExternalId and trust policy, and Connect calls authorized (403 AccessDeniedException) with the
//! call log naming the session, the token still taken on arrival, and read lag not hiding resource tags.

use std::io::{Read, Write};
use std::net::TcpStream;

use connect_emulator::iam::IamConfig;
use connect_emulator::{DEFAULT_INSTANCE_ID, Emulator, EmulatorConfig, Faults};
use serde_json::{Value, json};

const ROLE: &str = "arn:aws:iam::123456789012:role/team-a";
const OPERATOR: &str = "arn:aws:iam::123456789012:user/operator";

/// One HTTP/1.1 request signed (well enough for the emulator) with `key`; the status and the body.
fn request(emu: &Emulator, method: &str, path: &str, key: Option<&str>, body: &str) -> (u16, String) {
    let addr = emu.addr;
    let mut stream = TcpStream::connect(addr).expect("connect");
    let auth = key
        .map(|k| format!("Authorization: AWS4-HMAC-SHA256 Credential={k}/20250101/us-east-1/connect/aws4_request, SignedHeaders=host, Signature=0\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

fn iam() -> Value {
    json!({
        "users": [{"accessKeyId": "AKIDOPERATOR", "arn": OPERATOR, "policies": [{
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "connect:*", "Resource": "*"},
                {"Effect": "Deny", "Action": "connect:DeleteSecurityProfile", "Resource": "*",
                 "Condition": {"Null": {"aws:ResourceTag/keep": "false"}}}
            ]
        }]}],
        "roles": [{"arn": ROLE,
            "trustPolicy": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": OPERATOR}, "Action": "sts:AssumeRole",
                 "Condition": {"StringEquals": {"sts:ExternalId": "ext-1"}}},
                {"Effect": "Allow", "Principal": {"AWS": OPERATOR}, "Action": "sts:TagSession",
                 "Condition": {"StringEquals": {"aws:RequestTag/namespace": "team-a"}}}
            ]},
            "policies": [{"Version": "2012-10-17", "Statement": {
                "Effect": "Allow", "Action": ["connect:UpdateSecurityProfile", "connect:DescribeSecurityProfile"],
                "Resource": "arn:aws:connect:*:*:instance/*/security-profile/*",
                "Condition": {"StringEquals": {"aws:ResourceTag/namespace": "${aws:PrincipalTag/namespace}"}}
            }}]
        }]
    })
}

async fn emulator(faults: Faults) -> Emulator {
    let iam: IamConfig = serde_json::from_value(iam()).unwrap();
    Emulator::start(EmulatorConfig { faults, iam: Some(iam), ..EmulatorConfig::default() }).await.unwrap()
}

fn no_throttle() -> Faults {
    Faults { throttle_rate: 0.0, ..Faults::default() }
}

fn assume(emu: &Emulator, form: &str) -> (u16, String) {
    let body = format!("Action=AssumeRole&Version=2011-06-15&RoleArn={}&{form}", urlencode(ROLE));
    request(emu, "POST", "/", Some("AKIDOPERATOR"), &body)
}

fn urlencode(s: &str) -> String {
    s.replace(':', "%3A").replace('/', "%2F")
}

fn xml_field<'a>(xml: &'a str, tag: &str) -> &'a str {
    let start = xml.find(&format!("<{tag}>")).unwrap_or_else(|| panic!("<{tag}> in {xml}")) + tag.len() + 2;
    &xml[start..start + xml[start..].find('<').unwrap()]
}

fn create(emu: &Emulator, key: &str, name: &str, tags: Value) -> (u16, Value) {
    let path = format!("/security-profiles/{DEFAULT_INSTANCE_ID}");
    let mut input = json!({"SecurityProfileName": name});
    if tags.as_object().is_some_and(|t| !t.is_empty()) {
        input["Tags"] = tags;
    }
    let (status, body) = request(emu, "PUT", &path, Some(key), &input.to_string());
    (status, serde_json::from_str(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_iam_anyone_may_do_anything_and_the_control_api_sets_it() {
    let emu = Emulator::start(EmulatorConfig { faults: no_throttle(), ..EmulatorConfig::default() }).await.unwrap();
    assert_eq!(request(&emu, "GET", "/_emulator/iam", None, ""), (200, "null".into()));
    assert_eq!(create(&emu, "AKIDANYONE", "p1", json!({})).0, 200);
    // PUT replaces it; a policy the engine cannot evaluate exactly is refused.
    let bad = json!({"users": [{"accessKeyId": "K", "arn": OPERATOR, "policies": [{"Statement": {
        "Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"NumericLessThan": {"k": "1"}}}}]}]});
    let (status, body) = request(&emu, "PUT", "/_emulator/iam", None, &bad.to_string());
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("NumericLessThan"), "{body}");
    assert_eq!(request(&emu, "PUT", "/_emulator/iam", None, &iam().to_string()).0, 200);
    let got: Value = serde_json::from_str(&request(&emu, "GET", "/_emulator/iam", None, "").1).unwrap();
    assert_eq!(got["users"][0]["accessKeyId"], "AKIDOPERATOR");
    assert_eq!(got["roles"][0]["maxSessionDuration"], 3600);
    let (status, body) = create(&emu, "AKIDANYONE", "p2", json!({}));
    assert_eq!(
        (status, body["Message"].as_str().unwrap()),
        (
            403,
            format!(
                "User: AKIDANYONE is not authorized to perform: connect:CreateSecurityProfile on resource: \
         arn:aws:connect:us-east-1:123456789012:instance/{DEFAULT_INSTANCE_ID} because no identity-based policy \
         allows the connect:CreateSecurityProfile action"
            )
            .as_str()
        )
    );
    assert_eq!(create(&emu, "AKIDOPERATOR", "p2", json!({})).0, 200);
    // null turns it off again.
    assert_eq!(request(&emu, "PUT", "/_emulator/iam", None, "null").0, 200);
    assert_eq!(create(&emu, "AKIDANYONE", "p3", json!({})).0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assume_role_checks_the_trust_policy_and_validates_session_tags() {
    let emu = emulator(no_throttle()).await;
    let tags = "Tags.member.1.Key=namespace&Tags.member.1.Value=team-a";
    // Without the ExternalId, with another namespace, with a bad tag: refused.
    let (status, body) = assume(&emu, &format!("RoleSessionName=s1&{tags}"));
    assert_eq!((status, xml_field(&body, "Code")), (403, "AccessDenied"), "{body}");
    assert!(xml_field(&body, "Message").contains("sts:AssumeRole"), "{body}");
    let (status, body) =
        assume(&emu, "RoleSessionName=s1&ExternalId=ext-1&Tags.member.1.Key=namespace&Tags.member.1.Value=team-b");
    assert_eq!((status, xml_field(&body, "Code")), (403, "AccessDenied"), "{body}");
    assert!(xml_field(&body, "Message").contains("sts:TagSession"), "{body}");
    for (form, code) in [
        (
            "Tags.member.1.Key=a&Tags.member.1.Value=1&Tags.member.2.Key=A&Tags.member.2.Value=2",
            "InvalidParameterValue",
        ),
        ("Tags.member.1.Key=bad%21key&Tags.member.1.Value=1", "ValidationError"),
        ("Tags.member.1.Key=a", "ValidationError"),
        ("TransitiveTagKeys.member.1=missing", "InvalidParameterValue"),
        ("DurationSeconds=60", "ValidationError"),
        ("DurationSeconds=7200", "ValidationError"), // above the role's MaxSessionDuration
    ] {
        let (status, body) = assume(&emu, &format!("RoleSessionName=s1&ExternalId=ext-1&{form}"));
        assert_eq!((status, xml_field(&body, "Code")), (400, code), "{form}: {body}");
    }
    let (status, body) = assume(&emu, "RoleSessionName=s1&ExternalId=x");
    assert_eq!((status, xml_field(&body, "Code")), (400, "ValidationError"), "a one-character ExternalId: {body}");
    let fifty_one: String = (1..=51).map(|i| format!("&Tags.member.{i}.Key=k{i}&Tags.member.{i}.Value=v")).collect();
    let (status, body) = assume(&emu, &format!("RoleSessionName=s1&ExternalId=ext-1{fifty_one}"));
    assert_eq!((status, xml_field(&body, "Code")), (400, "ValidationError"), "{body}");
    // An unknown caller, or a role not listed: refused.
    let body = format!("Action=AssumeRole&RoleArn={}&RoleSessionName=s1&ExternalId=ext-1", urlencode(ROLE));
    assert_eq!(request(&emu, "POST", "/", Some("AKIDNOBODY"), &body).0, 403);
    let other = urlencode("arn:aws:iam::123456789012:role/other");
    let body = format!("Action=AssumeRole&RoleArn={other}&RoleSessionName=s1");
    assert_eq!(request(&emu, "POST", "/", Some("AKIDOPERATOR"), &body).0, 403);
    // The right ExternalId and namespace: a session named as AWS names it.
    let (status, body) =
        assume(&emu, &format!("RoleSessionName=csp-team-a&ExternalId=ext-1&{tags}&DurationSeconds=900"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(xml_field(&body, "Arn"), "arn:aws:sts::123456789012:assumed-role/team-a/csp-team-a");
    let calls = emu.calls();
    let last = calls.last().unwrap();
    assert_eq!((last.operation.as_str(), last.outcome.as_str()), ("AssumeRole", "ok"));
    assert_eq!(last.params["Tags"], json!({"namespace": "team-a"}));
    assert_eq!(last.params["ExternalId"], "ext-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_calls_are_authorized_on_the_true_tags_and_logged_with_the_session() {
    // Reads lag a minute behind creates: IAM must still see the new profile's tags.
    let emu = emulator(Faults { read_lag_ms: 60_000, ..no_throttle() }).await;
    let (_, mine) = create(&emu, "AKIDOPERATOR", "mine", json!({"namespace": "team-a"}));
    let (_, theirs) = create(&emu, "AKIDOPERATOR", "theirs", json!({"namespace": "team-b", "keep": "yes"}));
    let (mine, theirs) = (mine["SecurityProfileId"].as_str().unwrap(), theirs["SecurityProfileId"].as_str().unwrap());
    let (status, body) = assume(
        &emu,
        "RoleSessionName=csp-team-a&ExternalId=ext-1&Tags.member.1.Key=namespace&Tags.member.1.Value=team-a",
    );
    assert_eq!(status, 200, "{body}");
    let key = xml_field(&body, "AccessKeyId").to_string();
    let update = |id: &str| {
        let path = format!("/security-profiles/{DEFAULT_INSTANCE_ID}/{id}");
        request(&emu, "POST", &path, Some(&key), r#"{"Description": "x"}"#)
    };
    assert_eq!(update(mine).0, 200, "its own namespace's profile, though reads do not see it yet");
    let (status, body) = update(theirs);
    assert_eq!(status, 403, "{body}");
    let message: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        message["Message"],
        format!(
            "User: arn:aws:sts::123456789012:assumed-role/team-a/csp-team-a is not authorized to perform: \
             connect:UpdateSecurityProfile on resource: arn:aws:connect:us-east-1:123456789012:instance/\
             {DEFAULT_INSTANCE_ID}/security-profile/{theirs} because no identity-based policy allows the \
             connect:UpdateSecurityProfile action"
        )
    );
    let calls = emu.calls();
    let refused = calls.last().unwrap();
    assert_eq!((refused.outcome.as_str(), refused.status), ("AccessDeniedException", 403));
    assert_eq!(refused.principal, ROLE, "principal stays the role's ARN");
    assert_eq!(refused.session, "arn:aws:sts::123456789012:assumed-role/team-a/csp-team-a");
    // An explicit deny beats the operator's Allow *.
    let (status, body) = request(
        &emu,
        "DELETE",
        &format!("/security-profiles/{DEFAULT_INSTANCE_ID}/{theirs}"),
        Some("AKIDOPERATOR"),
        "",
    );
    assert_eq!(status, 403);
    assert!(body.contains("with an explicit deny in an identity-based policy"), "{body}");
    // Not a listed user nor a session: refused, before input validation too.
    let (status, body) =
        request(&emu, "POST", &format!("/security-profiles/{DEFAULT_INSTANCE_ID}/{mine}"), None, "not json");
    assert_eq!(status, 403, "{body}");
    // A nonexistent profile is authorized without tags: denied to the session, NotFound to the operator.
    assert_eq!(update("00000000-0000-4000-8000-000000000000").0, 403);
    let (status, _) = request(
        &emu,
        "POST",
        &format!("/security-profiles/{DEFAULT_INSTANCE_ID}/00000000-0000-4000-8000-000000000000"),
        Some("AKIDOPERATOR"),
        r#"{"Description": "x"}"#,
    );
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_call_still_takes_its_token() {
    let emu = emulator(Faults { throttle_rate: 0.001, throttle_burst: 2.0, ..Faults::default() }).await;
    assert_eq!(create(&emu, "AKIDNOBODY", "a", json!({})).0, 403);
    assert_eq!(create(&emu, "AKIDNOBODY", "b", json!({})).0, 403);
    let (status, body) = create(&emu, "AKIDOPERATOR", "c", json!({}));
    assert_eq!(status, 429, "the refused calls took the bucket's two tokens: {body}");
}
