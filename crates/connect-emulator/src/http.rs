//! HTTP front of the emulator: routes rest-json requests to operations, injects faults, records calls,
//! and serves the control API:
//!
//! | Method + path | Effect |
//! |---|---|
//! | `GET /_emulator/calls` | the call log (JSON array of [`CallRecord`](super::CallRecord)) |
//! | `DELETE /_emulator/calls` | clears the call log |
//! | `GET /_emulator/state` | every instance and profile |
//! | `GET/PUT /_emulator/faults` | read or replace the [`Faults`](super::Faults) (the throttle's bucket keeps its tokens) |
//! | `GET /_emulator/throttle` | `{"tokens": ...}`: what is left in the throttle's bucket now |
//! | `PUT /_emulator/events` | `{"paused": true}` stops publishing CloudTrail events (`--events-queue-url`), `false` resumes |
//! | `GET/PUT /_emulator/iam` | read or replace the IAM in force ([`IamConfig`](super::iam::IamConfig) JSON; `null`: IAM off) |
//! | `POST /_emulator/instances/{id}` | adds an instance (body `{"instanceStatus": "CREATION_FAILED"}` optional) |
//! | `PATCH /_emulator/profiles/{instance}/{id}` | sets `inUse` / `deleteDenied` on a profile, and makes console edits (below) |
//! | `DELETE /_emulator/profiles/{instance}/{id}` | deletes a profile as a person in the console would |
//!
//! Console edits (`PATCH` bodies beyond the two flags; see [`Connect::console_edit`]) change a profile as
//! UpdateSecurityProfile (any of its members, camelCase: `description`, `permissions`, ...; LastModifiedTime
//! changes), TagResource (`tags`) and UntagResource (`untagKeys`) would, with their validation. They and
//! console deletes take no token from the API quota and are recorded in the call log as operation
//! `Console` (principal `console`, `params.action` `edit` or `delete`). An error is answered as Connect
//! answers one (`x-amzn-ErrorType`, status, `{"Message"}`) and changes nothing.
//!
//! A Connect request takes its token from the throttle's bucket the moment hyper hands over its head,
//! before its body is read, before any injected delay: on arrival.
//!
//! It also answers STS `AssumeRole` (`POST /`, query protocol) with a session whose access key the call
//! log then names as the role (`principal`; `session` the session's assumed-role ARN), so that role
//! assumption (`--role-arn`, the namespace annotation) can be tested with `AWS_ENDPOINT_URL_STS` pointing
//! here. It validates `ExternalId`, `DurationSeconds`, session tags (`Tags.member.N.Key`/`.Value`) and
//! `TransitiveTagKeys.member.N` as STS does, and keeps the tags with the session.
//!
//! IAM (off unless configured: `--iam <file.json>`, [`EmulatorConfig::iam`](super::EmulatorConfig::iam) or
//! `PUT /_emulator/iam` with a body like
//!
//! ```json
//! {"users": [{"accessKeyId": "AKIDOPERATOR", "arn": "arn:aws:iam::123456789012:role/operator", "policies": [{...}]}],
//!  "roles": [{"arn": "arn:aws:iam::123456789012:role/team-a", "trustPolicy": {...}, "policies": [{...}],
//!             "maxSessionDuration": 3600}]}
//! ```
//!
//! ): a Connect call is then authorized (see [`authz`](super::authz)) after its token is taken and before
//! its input is validated: a caller with no identity (an access key that is neither a user's nor a session's
//! of a listed role), or whose policies do not allow the action on the resource, gets 403
//! `AccessDeniedException` ("User: <arn> is not authorized to perform: connect:<Op> on resource: <arn>
//! because no identity-based policy allows the connect:<Op> action", or "... with an explicit deny in an
//! identity-based policy"), recorded in the call log as such. AssumeRole is authorized by the role's trust
//! policy (`sts:AssumeRole`, and `sts:TagSession` when tags are passed; condition keys `sts:ExternalId`,
//! `sts:RoleSessionName`, `aws:RequestTag/<key>`, `aws:TagKeys`, `aws:PrincipalArn`, ...): 403
//! `AccessDenied` otherwise, and for a role that is not listed.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::service::{self, Connect};
use super::{ApiError, Caller, Faults, Shared, authz, iam, input, unix_now};

type Body = Full<Bytes>;

/// Returned by the handler to make hyper drop the connection without a response (lost-response mode).
#[derive(Debug)]
struct DropConnection;
impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("response deliberately lost")
    }
}
impl std::error::Error for DropConnection {}

pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(shared.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

fn json_response(status: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-amzn-requestid", uuid::Uuid::new_v4().to_string())
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid response")
}

fn error_response(e: &ApiError) -> Response<Body> {
    let mut body = json!({"Message": e.message});
    if let (Some(Value::Object(extra)), Some(obj)) = (&e.extra, body.as_object_mut()) {
        obj.extend(extra.clone());
    }
    let mut resp = json_response(e.status, &body);
    resp.headers_mut().insert("x-amzn-errortype", e.code.parse().expect("valid header"));
    resp
}

fn decode(segment: &str) -> String {
    urlencoding::decode(segment).map(|s| s.into_owned()).unwrap_or_else(|_| segment.to_string())
}

fn parse_query(query: Option<&str>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in query.unwrap_or_default().split('&').filter(|s| !s.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(decode(&k.replace('+', " "))).or_default().push(decode(&v.replace('+', " ")));
    }
    out
}

/// Maps method + path to an operation name and its URI labels.
fn route(method: &Method, segments: &[String]) -> Option<(&'static str, Vec<String>)> {
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    let op = match (method, s.as_slice()) {
        (&Method::PUT, ["security-profiles", _]) => "CreateSecurityProfile",
        (&Method::GET, ["security-profiles", _, _]) => "DescribeSecurityProfile",
        (&Method::POST, ["security-profiles", _, _]) => "UpdateSecurityProfile",
        (&Method::DELETE, ["security-profiles", _, _]) => "DeleteSecurityProfile",
        (&Method::GET, ["security-profiles-summary", _]) => "ListSecurityProfiles",
        (&Method::GET, ["security-profiles-permissions", _, _]) => "ListSecurityProfilePermissions",
        (&Method::GET, ["security-profiles-applications", _, _]) => "ListSecurityProfileApplications",
        (&Method::GET, ["security-profiles-flow-modules", _, _]) => "ListSecurityProfileFlowModules",
        (&Method::GET, ["security-profiles-ai-agents", _, _]) => "ListSecurityProfileAIAgents",
        (&Method::POST, ["search-security-profiles"]) => "SearchSecurityProfiles",
        (&Method::POST, ["tags", _]) => "TagResource",
        (&Method::DELETE, ["tags", _]) => "UntagResource",
        (&Method::GET, ["tags", _]) => "ListTagsForResource",
        (&Method::GET, ["instance", _]) => "DescribeInstance",
        _ => return None,
    };
    Some((op, segments[1..].to_vec()))
}

/// The access key ID in a SigV4 `Authorization` header (`... Credential=AKID/date/region/service/...`).
fn access_key(req: &Request<Incoming>) -> String {
    req.headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.split_once("Credential="))
        .and_then(|(_, rest)| rest.split('/').next())
        .unwrap_or_default()
        .to_string()
}

/// Called by hyper as soon as a request's head has been read: the request's arrival.
async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, DropConnection> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    // Split before decoding: a percent-encoded ARN is one label even though it contains '/'.
    let segments: Vec<String> = path.trim_matches('/').split('/').map(decode).collect();
    let route = route(&method, &segments);
    // The quota is taken on arrival, from the head alone: before the body is read or any delay.
    let caller = shared.caller(&access_key(&req));
    let admission = route.is_some().then(|| shared.admit(caller.account(&shared.account)));
    let query = parse_query(req.uri().query());
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    if segments.first().map(String::as_str) == Some("_emulator") {
        return Ok(control(&shared, &method, &segments[1..], &body));
    }
    if method == Method::POST && path == "/" {
        return Ok(sts(&shared, &caller, &body));
    }
    let (Some((operation, labels)), Some((admitted, arrived))) = (route, admission) else {
        return Ok(error_response(&ApiError::new(
            "UnknownOperationException",
            404,
            format!("no Connect operation at {method} {path}"),
        )));
    };
    let call = ConnectCall { caller, operation, labels, query, body, admitted, arrived };
    // The call runs in a task of its own: a caller that hangs up (times out) does not cancel it.
    let faults = shared.faults.lock().expect("faults lock").clone();
    let task = tokio::spawn(async move {
        if faults.hold_answers_ms > 0 {
            let due = arrived + std::time::Duration::from_millis(faults.hold_answers_ms);
            tokio::time::sleep_until(due.into()).await;
        }
        let answer = connect_call(&shared, call, faults.read_lag_ms);
        if faults.latency_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(faults.latency_ms)).await;
        }
        match answer {
            Answer::Respond(response) => Ok(response),
            Answer::Lose(hold) => {
                tokio::time::sleep(hold).await;
                Err(DropConnection)
            }
        }
    });
    task.await.unwrap_or(Err(DropConnection))
}

static ROLE_ARN: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]+$").expect("valid regex")
});
static SESSION_NAME: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(r"^[A-Za-z0-9_+=,.@-]{2,64}$").expect("valid regex"));

/// STS over the query protocol: `AssumeRole` only.
fn sts(shared: &Shared, caller: &Caller, body: &[u8]) -> Response<Body> {
    let form = parse_query(std::str::from_utf8(body).ok());
    let field = |k: &str| form.get(k).and_then(|v| v.first()).cloned().unwrap_or_default();
    let (action, role, session) = (field("Action"), field("RoleArn"), field("RoleSessionName"));
    let mut params = json!({"RoleArn": role, "RoleSessionName": session});
    let outcome = (|| {
        if action != "AssumeRole" {
            return Err(("InvalidAction", format!("the emulator's STS answers AssumeRole only, not {action:?}")));
        }
        if role.len() > 2048 || !ROLE_ARN.is_match(&role) {
            return Err(("ValidationError", format!("RoleArn {role:?} is not an IAM role ARN")));
        }
        if !SESSION_NAME.is_match(&session) {
            return Err((
                "ValidationError",
                format!("RoleSessionName {session:?} does not match [A-Za-z0-9_+=,.@-]{{2,64}}"),
            ));
        }
        let request = authz::assume_role_params(&form)?;
        if let Some(id) = &request.external_id {
            params["ExternalId"] = json!(id);
        }
        if !request.tags.is_empty() {
            params["Tags"] = json!(request.tags.iter().cloned().collect::<BTreeMap<_, _>>());
        }
        if !request.transitive.is_empty() {
            params["TransitiveTagKeys"] = json!(request.transitive);
        }
        if shared.faults.lock().expect("faults lock").denied_roles.contains(&role) {
            let who = caller.session.as_ref().map(|s| s.arn.as_str()).unwrap_or(&caller.principal);
            return Err((
                "AccessDenied",
                format!("User: {who} is not authorized to perform: sts:AssumeRole on resource: {role}"),
            ));
        }
        if let Some(iam) = shared.iam.lock().expect("iam lock").as_ref() {
            authz::authorize_assume_role(iam, caller, &role, &session, &request)?;
        }
        authz::new_session(caller, &role, &session, &request)
    })();
    let new_session = match outcome {
        Ok(s) => s,
        Err((code, message)) => {
            let status = if code == "AccessDenied" || code == "ExpiredToken" { 403 } else { 400 };
            shared.record("AssumeRole", caller, params, code.into(), status, std::time::Instant::now());
            let xml = format!(
                "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
                xml_escape(&message),
                uuid::Uuid::new_v4()
            );
            return xml_response(status, xml);
        }
    };
    let key = format!("ASIA{}", &uuid::Uuid::new_v4().simple().to_string()[..16].to_uppercase());
    let (arn, id, expiration) = (new_session.arn.clone(), authz::assumed_role_id(&new_session), new_session.expires);
    shared.sessions.lock().expect("sessions lock").insert(key.clone(), new_session);
    shared.record("AssumeRole", caller, params, "ok".into(), 200, std::time::Instant::now());
    let xml = format!(
        "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult>\
         <Credentials><AccessKeyId>{key}</AccessKeyId><SecretAccessKey>emulator-session-secret</SecretAccessKey>\
         <SessionToken>emulator-session-token</SessionToken><Expiration>{}</Expiration></Credentials>\
         <AssumedRoleUser><AssumedRoleId>{}</AssumedRoleId>\
         <Arn>{}</Arn></AssumedRoleUser>\
         </AssumeRoleResult><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></AssumeRoleResponse>",
        expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
        xml_escape(&id),
        xml_escape(&arn),
        uuid::Uuid::new_v4()
    );
    xml_response(200, xml)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn xml_response(status: u16, xml: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from(xml)))
        .expect("valid response")
}

/// A Connect request as it arrived: routed, its token taken (or refused), its body read.
struct ConnectCall {
    caller: Caller,
    operation: &'static str,
    labels: Vec<String>,
    query: BTreeMap<String, Vec<String>>,
    body: Bytes,
    /// Whether the throttle's bucket had a token for it on arrival.
    admitted: bool,
    arrived: std::time::Instant,
}

enum Answer {
    Respond(Response<Body>),
    /// A lost create: hold the connection this long, then drop it.
    Lose(std::time::Duration),
}

/// Makes the call take effect (or refuses it) now, records it, and returns its answer.
fn connect_call(shared: &Shared, call: ConnectCall, read_lag_ms: u64) -> Answer {
    let ConnectCall { caller, operation, labels, query, body, admitted, arrived } = call;
    let record =
        |params, outcome: &str, status| shared.record(operation, &caller, params, outcome.into(), status, arrived);
    let parsed_body = input::body_object(&body);
    let mut params = json!({"labels": labels, "query": query});
    if let Ok(b) = &parsed_body {
        params["body"] = Value::Object(b.clone());
    }
    if !admitted {
        let e = ApiError::new("ThrottlingException", 429, "Rate exceeded");
        record(params, e.code, e.status);
        return Answer::Respond(error_response(&e));
    }
    // Authorization (on the true state, before input validation, as AWS) and the call hold the state's
    // lock together: no tag can change between the decision and the call.
    let mut connect = shared.connect.lock().expect("state lock");
    let caller_account = caller.account(&shared.account);
    if let Some(account) = connect.call_account(operation, &labels, parsed_body.as_ref().ok())
        && account != caller_account
    {
        drop(connect);
        let what = labels.first().map(String::as_str).unwrap_or_default();
        let e = ApiError::new(
            "ResourceNotFoundException",
            404,
            format!("{what} not found in account {caller_account} (it is in account {account})"),
        );
        record(params, e.code, e.status);
        return Answer::Respond(error_response(&e));
    }
    if let Some(iam) = shared.iam.lock().expect("iam lock").as_ref()
        && let Err(e) =
            authz::authorize_connect(iam, &caller, operation, &labels, &query, parsed_body.as_ref().ok(), &connect)
    {
        drop(connect);
        record(params, e.code, e.status);
        return Answer::Respond(error_response(&e));
    }
    let error_rate = shared.faults.lock().expect("faults lock").error_rate;
    if error_rate > 0.0 && rand::random::<f64>() < error_rate {
        drop(connect);
        let e = ApiError::new("InternalServiceException", 500, "Request processing failed (injected fault)");
        record(params, e.code, e.status);
        return Answer::Respond(error_response(&e));
    }
    let result = parsed_body.and_then(|body| {
        let request = service::Request { labels, query, body, read_lag: read_lag_ms as f64 / 1000.0 };
        connect.call(operation, &request, unix_now())
    });
    drop(connect);
    match result {
        Ok(out) => {
            if super::events::WRITES.contains(&operation) {
                let request = super::events::request_parameters(operation, &params);
                let response =
                    if operation == "CreateSecurityProfile" { strip_nulls(out.clone()) } else { Value::Null };
                shared.publish_write(operation, &caller, request, response);
            }
            // Some(hold) when this create's answer is to be lost after holding the connection.
            let lose = (operation == "CreateSecurityProfile")
                .then(|| {
                    let mut faults = shared.faults.lock().expect("faults lock");
                    (faults.lose_next_creates > 0).then(|| {
                        faults.lose_next_creates -= 1;
                        std::time::Duration::from_millis(faults.lost_response_hold_ms)
                    })
                })
                .flatten();
            if let Some(hold) = lose {
                record(params, "ok:response-lost", 200);
                return Answer::Lose(hold);
            }
            record(params, "ok", 200);
            Answer::Respond(json_response(200, &strip_nulls(out)))
        }
        Err(e) => {
            record(params, e.code, e.status);
            Answer::Respond(error_response(&e))
        }
    }
}

fn strip_nulls(mut v: Value) -> Value {
    if let Value::Object(o) = &mut v {
        o.retain(|_, v| !v.is_null());
    }
    v
}

fn control(shared: &Shared, method: &Method, path: &[String], body: &[u8]) -> Response<Body> {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    let bad = |msg: String| json_response(400, &json!({"Message": msg}));
    match (method, p.as_slice()) {
        (&Method::GET, ["calls"]) => json_response(200, &json!(*shared.calls.lock().expect("calls lock"))),
        (&Method::DELETE, ["calls"]) => {
            shared.calls.lock().expect("calls lock").clear();
            json_response(200, &json!({}))
        }
        (&Method::GET, ["state"]) => json_response(200, &json!(*shared.connect.lock().expect("state lock"))),
        (&Method::GET, ["faults"]) => json_response(200, &json!(*shared.faults.lock().expect("faults lock"))),
        (&Method::PUT, ["faults"]) => match serde_json::from_slice::<Faults>(body) {
            Ok(f) => {
                shared.set_faults(f.clone());
                json_response(200, &json!(f))
            }
            Err(e) => bad(format!("invalid faults: {e}")),
        },
        (&Method::POST, ["instances", id]) => {
            let status: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let mut connect = shared.connect.lock().expect("state lock");
            let id = add_instance(&mut connect, id, shared.default_profiles);
            if let Some(s) = status.get("instanceStatus").and_then(Value::as_str) {
                connect.instances.get_mut(&id).expect("added").instance_status = s.to_string();
            }
            json_response(200, &json!(connect.instances[&id]))
        }
        (&Method::PUT, ["events"]) => {
            #[derive(serde::Deserialize)]
            struct Events {
                paused: bool,
            }
            match (serde_json::from_slice::<Events>(body), &shared.events) {
                (Ok(e), Some(events)) => {
                    events.set_paused(e.paused);
                    json_response(200, &json!({"paused": e.paused}))
                }
                (Ok(_), None) => bad("no events are published: start with --events-queue-url".into()),
                (Err(e), _) => bad(format!("invalid events: {e}")),
            }
        }
        (&Method::GET, ["iam"]) => json_response(200, &json!(shared.iam())),
        (&Method::PUT, ["iam"]) => match serde_json::from_slice::<Option<iam::IamConfig>>(body) {
            Ok(config) => match shared.set_iam(config.clone()) {
                Ok(()) => json_response(200, &json!(config)),
                Err(e) => bad(format!("invalid IAM: {e}")),
            },
            Err(e) => bad(format!("invalid IAM: {e}")),
        },
        (&Method::GET, ["throttle"]) => json_response(200, &json!({"tokens": shared.throttle_tokens()})),
        (&Method::PATCH, ["profiles", instance, id]) => {
            match input::body_object(body).and_then(|edit| shared.console_edit(instance, id, &edit)) {
                Ok(p) => json_response(200, &json!(p)),
                Err(e) => error_response(&e),
            }
        }
        (&Method::DELETE, ["profiles", instance, id]) => match shared.console_delete(instance, id) {
            Ok(()) => json_response(200, &json!({})),
            Err(e) => error_response(&e),
        },
        _ => {
            json_response(404, &json!({"Message": format!("no control endpoint {method} /_emulator/{}", p.join("/"))}))
        }
    }
}

/// Adds the instance `spec` (`ID` or `ACCOUNT:ID`) unless it exists; returns its ID.
pub(crate) fn add_instance(connect: &mut Connect, spec: &str, default_profiles: bool) -> String {
    let id = spec.rsplit(':').next().unwrap_or(spec);
    if !connect.instances.contains_key(id) {
        connect.add_instance(spec, default_profiles, unix_now());
    }
    id.to_string()
}
