//! A local Amazon Connect: speaks the rest-json protocol of the security-profile operations well enough
//! that `aws-sdk-connect`, pointed at it with `AWS_ENDPOINT_URL_CONNECT`, works unmodified.
//!
//! Besides the Connect API it serves a control API under `/_emulator/` (see [`http`]) for tests: the call
//! log, the full state, fault injection ([`Faults`]: throttling, 500s, latency, held answers, lost create
//! responses, read-after-create lag, refused roles), profile flags and console edits.
//!
//! IAM, off unless configured ([`EmulatorConfig::iam`], `--iam <file.json>`, `PUT /_emulator/iam`): then
//! every Connect call and every AssumeRole is authorized against the configured users' and roles' policies
//! (with tag and session conditions) the way AWS authorizes it; see [`iam`] for the policy language.
//!
//! Events, off unless configured ([`EmulatorConfig::events_queue_url`], `--events-queue-url`): every
//! successful write, console edits included, is also sent to an SQS queue as the CloudTrail event that
//! EventBridge delivers (see the `events` module), without delaying or failing the call.
//!
//! Connect's request quota is an exact token bucket ([`throttle`]) per account (the emulator serves one
//! Region), shared by every Connect operation of the account, a token taken at the instant a request's
//! head arrives. The caller's account is its session's role account (a role ARN's fifth field), else the
//! emulator's own (`--account`). Instances belong to an account (`--instance ACCOUNT:ID`; a bare ID is in
//! the emulator's own account): a call on an instance of another account than the caller's finds no such
//! instance (ResourceNotFoundException), as IAM builds the resource ARN in the caller's account.
//!
//! When a call takes effect: at its arrival, plus `holdAnswersMs` when that fault is set; its answer
//! leaves `latencyMs` after that. Either way the call runs to its end even if the caller has hung up, so a
//! caller that times out cannot tell whether it took effect: before its timeout (latency) or after it
//! (a held answer).
//!
//! Its own crate, a peer of the operator rather than a part of it: it models Connect from the API model
//! (its [`limits`]) and does not depend on `connect-operator`, whose tests use it as a dev-dependency
//! (the library in process, the `connect-emulator` binary in the end-to-end tests).

mod authz;
mod events;
pub mod http;
pub mod iam;
pub mod input;
pub mod limits;
pub mod service;
pub mod throttle;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use service::{Connect, Profile};

/// The default instance the emulator creates when none is configured.
pub const DEFAULT_INSTANCE_ID: &str = "11111111-2222-4333-8444-555555555555";

/// An error in the form Connect returns it: `x-amzn-ErrorType` header, status code, `{"Message": ...}` body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: &'static str,
    pub status: u16,
    pub message: String,
    /// Extra members of the error shape (e.g. ResourceInUseException's ResourceType and ResourceId).
    pub extra: Option<Value>,
}

impl ApiError {
    pub fn new(code: &'static str, status: u16, message: impl Into<String>) -> Self {
        Self { code, status, message: message.into(), extra: None }
    }
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new("InvalidParameterException", 400, message)
    }
    pub fn serialization(message: impl Into<String>) -> Self {
        Self::new("SerializationException", 400, message)
    }
}

/// Faults injected into the Connect API (the control API changes them at run time).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Faults {
    /// Token-bucket refill rate in requests per second; 0 disables throttling.
    pub throttle_rate: f64,
    /// Token-bucket capacity.
    pub throttle_burst: f64,
    /// Fraction (0..=1) of calls answered with InternalServiceException before they take effect.
    pub error_rate: f64,
    /// Latency added to every Connect answer: the call takes effect when it arrives, its answer (a
    /// throttled one too) leaves this much later.
    pub latency_ms: u64,
    /// Connect holds its answers: every Connect call is accepted (its token taken, or refused, on arrival)
    /// but takes effect only this long after it arrived, and is answered then (plus `latency_ms`; a
    /// ThrottlingException is held too). A caller whose timeout is shorter gives up first, not knowing the
    /// outcome; the call takes effect all the same. The value in force when a call arrives applies to it.
    pub hold_answers_ms: u64,
    /// Reads are eventually consistent: a profile created less than this long ago is invisible to
    /// DescribeSecurityProfile, ListSecurityProfiles, SearchSecurityProfiles, the List*Members operations
    /// and ListTagsForResource (ResourceNotFoundException or left out), while writes (Create's name check
    /// and quota, Update, Delete, TagResource, UntagResource) see it at once. 0: off.
    pub read_lag_ms: u64,
    /// The next N successful CreateSecurityProfile calls create the profile, then drop the connection.
    pub lose_next_creates: u32,
    /// How long a lost create keeps the connection open (the call already in the log) before dropping
    /// it: a window in which the caller is waiting for an answer that will never come.
    pub lost_response_hold_ms: u64,
    /// Roles STS refuses to assume (AccessDenied), as a missing trust policy would.
    pub denied_roles: Vec<String>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            throttle_rate: 2.0,
            throttle_burst: 5.0,
            error_rate: 0.0,
            latency_ms: 0,
            hold_answers_ms: 0,
            read_lag_ms: 0,
            lose_next_creates: 0,
            lost_response_hold_ms: 0,
            denied_roles: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    pub listen: SocketAddr,
    pub region: String,
    pub account: String,
    pub instances: Vec<String>,
    pub default_profiles: bool,
    pub profile_limit: usize,
    pub faults: Faults,
    /// IAM to enforce ([`iam`]); `None` (the default): every caller may do anything.
    pub iam: Option<iam::IamConfig>,
    /// An SQS queue URL: every successful write is sent there as the CloudTrail event EventBridge
    /// would deliver (`--events-queue-url`; see the `events` module). `None`: no events.
    pub events_queue_url: Option<String>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 0).into(),
            region: "us-east-1".into(),
            account: "123456789012".into(),
            instances: vec![DEFAULT_INSTANCE_ID.into()],
            default_profiles: true,
            profile_limit: 100,
            faults: Faults::default(),
            iam: None,
            events_queue_url: None,
        }
    }
}

/// One Connect call as the emulator saw it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    pub seq: u64,
    /// Milliseconds since the emulator started, when the call took effect (or was refused).
    pub at_ms: u64,
    /// Milliseconds since the emulator started, when the request arrived (its token was taken then);
    /// earlier than `at_ms` by the `holdAnswersMs` in force.
    #[serde(default)]
    pub arrived_ms: u64,
    pub operation: String,
    /// URI labels, query string and body, merged into one object.
    pub params: Value,
    /// `ok`, `ok:response-lost`, or the error code returned.
    pub outcome: String,
    pub status: u16,
    /// Who called: the role ARN of a session the emulator's AssumeRole issued, else the access key ID
    /// of the request's signature (empty when unsigned); `console` for a console edit.
    #[serde(default)]
    pub principal: String,
    /// For a caller using a session the emulator's AssumeRole issued: the session's ARN,
    /// `arn:aws:sts::<account>:assumed-role/<role name>/<session name>` (which session called); else empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub session: String,
}

impl CallRecord {
    pub fn succeeded(&self) -> bool {
        self.outcome.starts_with("ok")
    }
}

/// Everything the server's tasks share.
pub struct Shared {
    pub(crate) connect: Mutex<Connect>,
    pub(crate) faults: Mutex<Faults>,
    pub(crate) calls: Mutex<Vec<CallRecord>>,
    /// Access key IDs issued by AssumeRole, with the session each stands for.
    pub(crate) sessions: Mutex<std::collections::HashMap<String, Session>>,
    /// The IAM in force (the control API replaces it); `None`: no IAM, every call allowed.
    pub(crate) iam: Mutex<Option<iam::IamConfig>>,
    /// The quota: one token bucket per account (see the module docs), created full on first use.
    buckets: Mutex<std::collections::HashMap<String, throttle::TokenBucket>>,
    /// The emulator's own account: of callers without a session, and of instances given without one.
    pub(crate) account: String,
    started: Instant,
    default_profiles: bool,
    /// Where the writes' CloudTrail events go (`--events-queue-url`).
    events: Option<events::Publisher>,
}

/// A session the emulator's AssumeRole issued.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Session {
    pub role_arn: String,
    pub name: String,
    /// `arn:aws:sts::<account>:assumed-role/<role name>/<session name>`.
    pub arn: String,
    /// The session tags (its `aws:PrincipalTag/<key>`).
    pub tags: std::collections::BTreeMap<String, String>,
    /// The keys of its transitive tags (they pass on to the sessions it assumes in turn).
    pub transitive: std::collections::BTreeSet<String>,
    pub expires: jiff::Timestamp,
}

/// Who made a request.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The access key ID of the request's signature (empty when unsigned).
    pub access_key: String,
    /// As the call log names it: a session's role ARN, else the access key ID.
    pub principal: String,
    pub session: Option<Session>,
}

impl Caller {
    /// The account the caller acts in: its session's role account, else `default` (the emulator's).
    pub(crate) fn account<'a>(&'a self, default: &'a str) -> &'a str {
        self.session.as_ref().and_then(|s| s.role_arn.split(':').nth(4)).filter(|a| !a.is_empty()).unwrap_or(default)
    }
}

pub fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as f64 / 1000.0).unwrap_or_default()
}

impl Shared {
    fn new(config: &EmulatorConfig) -> Self {
        let mut connect = Connect::new(&config.region, &config.account, config.profile_limit);
        for spec in &config.instances {
            http::add_instance(&mut connect, spec, config.default_profiles);
        }
        Self {
            connect: Mutex::new(connect),
            buckets: Mutex::new(std::collections::HashMap::new()),
            account: config.account.clone(),
            faults: Mutex::new(config.faults.clone()),
            calls: Mutex::new(Vec::new()),
            sessions: Mutex::new(std::collections::HashMap::new()),
            iam: Mutex::new(config.iam.clone()),
            started: Instant::now(),
            default_profiles: config.default_profiles,
            events: config
                .events_queue_url
                .as_deref()
                .map(|url| events::Publisher::start(url, &config.region, &config.account)),
        }
    }

    /// A Connect request of `account` has arrived: takes a token of that account's bucket now; `false`
    /// means the caller is throttled (and took nothing). The instant is read under the buckets' lock, so
    /// each bucket sees arrivals in order.
    fn admit(&self, account: &str) -> (bool, Instant) {
        let mut buckets = self.buckets.lock().expect("bucket lock");
        let now = Instant::now();
        let bucket = match buckets.get_mut(account) {
            Some(b) => b,
            None => {
                let faults = self.faults.lock().expect("faults lock");
                let bucket = throttle::TokenBucket::new(faults.throttle_rate, faults.throttle_burst, now);
                buckets.entry(account.to_string()).or_insert(bucket)
            }
        };
        (bucket.take(now), now)
    }

    fn record(&self, operation: &str, caller: &Caller, params: Value, outcome: String, status: u16, arrived: Instant) {
        let mut calls = self.calls.lock().expect("calls lock");
        let seq = calls.len() as u64 + 1;
        let at_ms = self.started.elapsed().as_millis() as u64;
        let arrived_ms = arrived.saturating_duration_since(self.started).as_millis() as u64;
        let principal = caller.principal.clone();
        let session = caller.session.as_ref().map(|s| s.arn.clone()).unwrap_or_default();
        let operation = operation.into();
        calls.push(CallRecord { seq, at_ms, arrived_ms, operation, params, outcome, status, principal, session });
    }

    /// Who signed a request with `access_key`: a session the emulator's AssumeRole issued, else the key.
    fn caller(&self, access_key: &str) -> Caller {
        let sessions = self.sessions.lock().expect("sessions lock");
        match sessions.get(access_key) {
            Some(s) => {
                Caller { access_key: access_key.into(), principal: s.role_arn.clone(), session: Some(s.clone()) }
            }
            None => Caller { access_key: access_key.into(), principal: access_key.into(), session: None },
        }
    }

    /// The IAM in force.
    pub fn iam(&self) -> Option<iam::IamConfig> {
        self.iam.lock().expect("iam lock").clone()
    }

    /// Replaces the IAM in force (`None`: off); refused when a policy cannot be evaluated exactly.
    pub fn set_iam(&self, config: Option<iam::IamConfig>) -> Result<(), String> {
        if let Some(c) = &config {
            c.validate()?;
        }
        *self.iam.lock().expect("iam lock") = config;
        Ok(())
    }

    /// Replaces the faults. The buckets keep their tokens (at most the new burst): new faults do not
    /// refill them.
    pub fn set_faults(&self, faults: Faults) {
        let mut buckets = self.buckets.lock().expect("bucket lock");
        let now = Instant::now();
        for bucket in buckets.values_mut() {
            bucket.reconfigure(faults.throttle_rate, faults.throttle_burst, now);
        }
        *self.faults.lock().expect("faults lock") = faults;
    }

    /// The tokens in the emulator's own account's bucket now.
    pub fn throttle_tokens(&self) -> f64 {
        let tokens = self.buckets.lock().expect("bucket lock").get(&self.account).map(|b| b.tokens(Instant::now()));
        // No call yet: a full bucket.
        tokens.unwrap_or_else(|| self.faults.lock().expect("faults lock").throttle_burst)
    }

    /// A console edit (see [`Connect::console_edit`]), recorded as a `Console` call unless it only sets the
    /// emulator-only flags; it takes no token.
    pub fn console_edit(&self, instance_id: &str, profile_id: &str, edit: &input::Object) -> Result<Profile, ApiError> {
        let arrived = Instant::now();
        let result = self.connect.lock().expect("state lock").console_edit(instance_id, profile_id, edit, unix_now());
        if edit.keys().any(|k| !service::console::FLAG_KEYS.contains(&k.as_str())) {
            let params = serde_json::json!({"action": "edit", "labels": [instance_id, profile_id], "body": edit});
            self.record_console(params, result.as_ref().map(|_| ()), arrived);
        }
        if let (Some(events), Ok(profile)) = (&self.events, &result) {
            // What the console calls: UpdateSecurityProfile for the profile's members, the tag
            // operations for its tags.
            let ids = serde_json::json!({"InstanceId": instance_id, "SecurityProfileId": profile_id});
            let arn = serde_json::json!({"resourceArn": profile.arn});
            let updated = edit
                .keys()
                .any(|k| !service::console::FLAG_KEYS.contains(&k.as_str()) && k != "tags" && k != "untagKeys");
            for (present, operation, request) in [
                (updated, "UpdateSecurityProfile", ids),
                (edit.contains_key("tags"), "TagResource", arn.clone()),
                (edit.contains_key("untagKeys"), "UntagResource", arn),
            ] {
                if present {
                    events.publish(operation, events.console_identity(), request, Value::Null);
                }
            }
        }
        result
    }

    /// A console delete (see [`Connect::console_delete`]), recorded as a `Console` call; it takes no token.
    pub fn console_delete(&self, instance_id: &str, profile_id: &str) -> Result<(), ApiError> {
        let arrived = Instant::now();
        let result = self.connect.lock().expect("state lock").console_delete(instance_id, profile_id);
        let params = serde_json::json!({"action": "delete", "labels": [instance_id, profile_id]});
        self.record_console(params, result.as_ref().map(|_| ()), arrived);
        if let (Some(events), Ok(())) = (&self.events, &result) {
            let ids = serde_json::json!({"InstanceId": instance_id, "SecurityProfileId": profile_id});
            events.publish("DeleteSecurityProfile", events.console_identity(), ids, Value::Null);
        }
        result
    }

    /// Publishes the CloudTrail event of a successful Connect write, when events are on.
    fn publish_write(&self, operation: &str, caller: &Caller, request: Value, response: Value) {
        if let Some(events) = &self.events {
            let identity = events.identity(caller, self.iam.lock().expect("iam lock").as_ref());
            events.publish(operation, identity, request, response);
        }
    }

    fn record_console(&self, params: Value, result: Result<(), &ApiError>, arrived: Instant) {
        let (outcome, status) = match result {
            Ok(()) => ("ok".to_string(), 200),
            Err(e) => (e.code.to_string(), e.status),
        };
        let console = Caller { access_key: String::new(), principal: "console".into(), session: None };
        self.record("Console", &console, params, outcome, status, arrived);
    }
}

/// A running emulator. Dropping it stops the server.
pub struct Emulator {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Emulator {
    /// Binds (port 0 picks a free port) and serves in the background on the current Tokio runtime.
    pub async fn start(config: EmulatorConfig) -> std::io::Result<Self> {
        if let Some(iam) = &config.iam {
            iam.validate().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("IAM: {e}")))?;
        }
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(&config));
        let task = tokio::spawn(http::serve(listener, shared.clone()));
        Ok(Self { addr, shared, task })
    }

    /// The base URL to put in `AWS_ENDPOINT_URL_CONNECT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn calls(&self) -> Vec<CallRecord> {
        self.shared.calls.lock().expect("calls lock").clone()
    }

    pub fn clear_calls(&self) {
        self.shared.calls.lock().expect("calls lock").clear();
    }

    pub fn state(&self) -> Connect {
        self.shared.connect.lock().expect("state lock").clone()
    }

    pub fn faults(&self) -> Faults {
        self.shared.faults.lock().expect("faults lock").clone()
    }

    /// Replaces the faults; the throttle's bucket keeps its tokens.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.set_faults(faults);
    }

    /// The tokens in the throttle's bucket now.
    pub fn throttle_tokens(&self) -> f64 {
        self.shared.throttle_tokens()
    }

    /// The IAM in force (`None`: off).
    pub fn iam(&self) -> Option<iam::IamConfig> {
        self.shared.iam()
    }

    /// Replaces the IAM in force (`None`: off); refused when a policy cannot be evaluated exactly.
    pub fn set_iam(&self, config: Option<iam::IamConfig>) -> Result<(), String> {
        self.shared.set_iam(config)
    }

    /// Edits a profile as a person in the Connect console would (the control API's
    /// `PATCH /_emulator/profiles/{instance}/{id}`; `edit` is its JSON body, see [`Connect::console_edit`]).
    pub fn console_edit(&self, instance_id: &str, profile_id: &str, edit: Value) -> Result<Profile, ApiError> {
        let edit = match edit {
            Value::Object(o) => o,
            _ => return Err(ApiError::serialization("a console edit is a JSON object")),
        };
        self.shared.console_edit(instance_id, profile_id, &edit)
    }

    /// Deletes a profile as a person in the Connect console would (`DELETE /_emulator/profiles/{instance}/{id}`).
    pub fn console_delete(&self, instance_id: &str, profile_id: &str) -> Result<(), ApiError> {
        self.shared.console_delete(instance_id, profile_id)
    }

    /// Applies `f` to the profile (e.g. to mark it in use); `false` if there is no such profile.
    pub fn with_profile(&self, instance_id: &str, profile_id: &str, f: impl FnOnce(&mut Profile)) -> bool {
        let mut connect = self.shared.connect.lock().expect("state lock");
        let profile =
            connect.instances.get_mut(instance_id).and_then(|i| i.profiles.iter_mut().find(|p| p.id == profile_id));
        profile.map(f).is_some()
    }

    /// Adds an instance (`ID` or `ACCOUNT:ID`) in the given status (`ACTIVE`, `CREATION_FAILED`, ...).
    pub fn add_instance(&self, spec: &str, status: &str) {
        let default_profiles = self.shared.default_profiles;
        let mut connect = self.shared.connect.lock().expect("state lock");
        let id = http::add_instance(&mut connect, spec, default_profiles);
        connect.instances.get_mut(&id).expect("added").instance_status = status.into();
    }
}
