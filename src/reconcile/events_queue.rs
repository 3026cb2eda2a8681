//! Drift found by events (`--events-queue-url`, opt-in). AWS delivers every Connect write as a
//! CloudTrail management event; an EventBridge rule (deploy/events/) routes those of the security
//! profiles to an SQS queue. This task long-polls the queue and, for each event that names a profile
//! the operator watches, marks that profile as changed (as a listing that shows a moved
//! LastModifiedTime would, see [`Observations::mark_changed`]) and requeues its SecurityProfile: the
//! next reconcile reads the profile in full from Connect and repairs it. The instance listing stays as
//! the safety net, every `--events-observe-interval` while the queue is read.
//!
//! Delivery is at least once and unordered: a duplicate or late event only requeues a profile once
//! more, and the reconcile reads what Connect holds now, whatever the event said. The operator's own
//! writes (its sessions `csp-*` and `csp.*`, or its own access key without a role) are ignored. A
//! message that is not such an event is logged and deleted; a queue that cannot be read is retried
//! with backoff, `connect_operator_events_queue_up` drops to 0, the listings fall back to
//! `--observe-interval` and each InstanceBinding's `EventsQueue` condition turns False
//! (`QueueUnreadable`, see [`QueueState`]).

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::config::ProvideCredentials;
use aws_sdk_sqs::error::DisplayErrorContext;
use serde_json::Value;
use tracing::{debug, info, warn};

use super::context::Context;
use crate::connect::ConnectApi;

/// The CloudTrail events that can change a security profile.
pub const EVENT_NAMES: [&str; 5] =
    ["CreateSecurityProfile", "UpdateSecurityProfile", "DeleteSecurityProfile", "TagResource", "UntagResource"];

/// ReceiveMessage's long poll (the longest SQS allows) and batch size.
const WAIT_TIME_SECONDS: i32 = 20;
const MAX_MESSAGES: i32 = 10;
/// Backoff of a queue that cannot be read: from 1 s, doubling, up to a minute.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Who the operator is in CloudTrail: the access keys of its own credentials (without a role its writes
/// carry them; the last few are kept, as temporary credentials of IRSA or Pod Identity rotate while
/// their events are on the way); with a role its writes carry the session names it chooses
/// (`csp-<namespace>`, `csp.binding.<name>`, `csp.observer`, or `connect-operator` for `--role-arn`
/// alone).
#[derive(Debug, Clone, Default)]
pub struct Own {
    pub access_key_ids: std::collections::VecDeque<String>,
}

/// How many of the operator's own access keys are remembered.
const OWN_KEYS: usize = 4;

impl Own {
    /// Remembers `key` as one of the operator's own (the newest).
    pub fn add_key(&mut self, key: &str) {
        if key.is_empty() || self.access_key_ids.iter().any(|k| k == key) {
            return;
        }
        if self.access_key_ids.len() == OWN_KEYS {
            self.access_key_ids.pop_front();
        }
        self.access_key_ids.push_back(key.to_string());
    }

    /// Adds the access key the SDK's credentials provider gives now (cached by the SDK: no call).
    async fn refresh(&mut self, provider: Option<&aws_sdk_sqs::config::SharedCredentialsProvider>) {
        if let Some(p) = provider
            && let Ok(credentials) = p.provide_credentials().await
        {
            self.add_key(credentials.access_key_id());
        }
    }

    fn session(name: &str) -> bool {
        name.starts_with("csp-") || name.starts_with("csp.") || name == "connect-operator"
    }

    /// Whether `identity` (an event's `userIdentity`) is the operator.
    pub fn is(&self, identity: &Value) -> bool {
        let key = identity.get("accessKeyId").and_then(Value::as_str).unwrap_or_default();
        if !key.is_empty() && self.access_key_ids.iter().any(|k| k == key) {
            return true;
        }
        // arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION
        let arn = identity.get("arn").and_then(Value::as_str).unwrap_or_default();
        arn.split_once(":assumed-role/")
            .and_then(|(_, rest)| rest.split_once('/'))
            .is_some_and(|(_, session)| Self::session(session))
    }
}

/// What one message of the queue says.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A write of another caller names this profile (its instance when the event says it).
    Changed { event: String, instance_id: Option<String>, profile_id: String },
    /// A write of the operator's own.
    Own { event: String },
    /// A Connect event that names no security profile (a tag on another resource, a create without
    /// its answer).
    Other { event: String },
}

/// Reads one message's body: an EventBridge envelope of a CloudTrail event of Connect. An error says
/// why it is not one.
pub fn parse(body: &str, own: &Own) -> Result<Message, String> {
    let envelope: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    let detail = envelope.get("detail").filter(|d| d.is_object()).ok_or("no detail object")?;
    let source = detail.get("eventSource").and_then(Value::as_str).unwrap_or_default();
    if source != "connect.amazonaws.com" {
        return Err(format!("eventSource {source:?} is not connect.amazonaws.com"));
    }
    let event = detail.get("eventName").and_then(Value::as_str).ok_or("no eventName")?.to_string();
    if !EVENT_NAMES.contains(&event.as_str()) {
        return Err(format!("eventName {event:?} is not a security-profile write"));
    }
    if detail.get("userIdentity").is_some_and(|i| own.is(i)) {
        return Ok(Message::Own { event });
    }
    let request = detail.get("requestParameters").unwrap_or(&Value::Null);
    let response = detail.get("responseElements").unwrap_or(&Value::Null);
    let (instance_id, profile_id) = if event.ends_with("Resource") {
        match member(request, "resourceArn").and_then(profile_of_arn) {
            Some((instance, id)) => (Some(instance), Some(id)),
            None => (None, None),
        }
    } else {
        let id = member(request, "SecurityProfileId").or_else(|| member(response, "SecurityProfileId"));
        (member(request, "InstanceId").map(str::to_string), id.map(str::to_string))
    };
    Ok(match profile_id {
        Some(profile_id) => Message::Changed { event, instance_id, profile_id },
        None => Message::Other { event },
    })
}

/// A member of CloudTrail's request parameters, whichever the case of its first letter.
fn member<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    let lower = name[..1].to_lowercase() + &name[1..];
    let upper = name[..1].to_uppercase() + &name[1..];
    v.get(&upper).or_else(|| v.get(&lower)).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// `arn:aws:connect:REGION:ACCOUNT:instance/INSTANCE/security-profile/ID` -> (INSTANCE, ID).
fn profile_of_arn(arn: &str) -> Option<(String, String)> {
    let (head, id) = arn.split_once("/security-profile/")?;
    let instance = head.split_once(":instance/")?.1;
    (!instance.is_empty() && !id.is_empty() && !id.contains('/')).then(|| (instance.to_string(), id.to_string()))
}

/// The Region of an SQS queue URL, if it names one: `https://sqs.REGION.amazonaws.com/...` (also
/// `sqs-fips.`, and a VPC endpoint's `vpce-....sqs.REGION.vpce.amazonaws.com`) or the legacy
/// `https://REGION.queue.amazonaws.com/...`.
fn region_of_queue(url: &str) -> Option<String> {
    let host = url.split("://").nth(1)?.split('/').next()?;
    let labels: Vec<&str> = host.split('.').collect();
    if !host.ends_with(".amazonaws.com") && !host.ends_with(".amazonaws.com.cn") {
        return None;
    }
    if labels.get(1) == Some(&"queue") {
        return Some(labels[0].to_string());
    }
    let at = labels.iter().position(|l| *l == "sqs" || *l == "sqs-fips")?;
    labels.get(at + 1).map(|r| r.to_string())
}

/// What the reader knows of its queue: the listings' interval, `connect_operator_events_queue_up` and
/// the bindings' EventsQueue condition follow it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum QueueState {
    /// Events are off, or the first ReceiveMessage has not answered yet.
    #[default]
    Unknown,
    /// The last ReceiveMessage succeeded.
    Reading,
    /// The last ReceiveMessage failed with this error (SQS's code and message).
    Unreadable(String),
}

/// The SQS client of the queue `url`.
fn client(config: &aws_config::SdkConfig, url: &str) -> aws_sdk_sqs::Client {
    let mut builder = aws_sdk_sqs::config::Builder::from(config)
        // A long poll answers after up to WAIT_TIME_SECONDS: an attempt may take that long, and more.
        .timeout_config(
            aws_sdk_sqs::config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(WAIT_TIME_SECONDS as u64 + 10))
                .build(),
        );
    // The queue's own Region (a real queue URL names it), else the operator's, else us-east-1.
    match region_of_queue(url) {
        Some(region) => builder = builder.region(aws_sdk_sqs::config::Region::new(region)),
        None if config.region().is_none() => builder = builder.region(aws_sdk_sqs::config::Region::new("us-east-1")),
        None => {}
    }
    aws_sdk_sqs::Client::from_conf(builder.build())
}

/// Reads the queue `url` until the process ends.
pub async fn run<C: ConnectApi>(ctx: Arc<Context<C>>, url: String) {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    let client = client(&config, &url);
    let provider = config.credentials_provider();
    let mut own = Own::default();
    info!(queue = %url, "reading Connect's CloudTrail events from the queue");
    let mut failures: u32 = 0;
    loop {
        // Until the queue is known to be read (at start, after a failure) a short poll, which answers
        // at once: the bindings' status shows the queue's state within a second, not after 20 s.
        let reading = *ctx.events_queue.borrow() == QueueState::Reading;
        let received = client
            .receive_message()
            .queue_url(&url)
            .wait_time_seconds(if reading { WAIT_TIME_SECONDS } else { 0 })
            .max_number_of_messages(MAX_MESSAGES)
            .send()
            .await;
        match received {
            Ok(out) => {
                if failures > 0 {
                    info!(queue = %url, "the events queue is read again");
                }
                failures = 0;
                set_state(&ctx, QueueState::Reading);
                if !out.messages().is_empty() {
                    own.refresh(provider.as_ref()).await;
                }
                for m in out.messages() {
                    handle(&ctx, &own, m.body().unwrap_or_default());
                    if let Some(receipt) = m.receipt_handle()
                        && let Err(e) = client.delete_message().queue_url(&url).receipt_handle(receipt).send().await
                    {
                        // Delivered again later: a requeue is harmless.
                        warn!(error = %short(&e), "cannot delete a message of the events queue");
                    }
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let error = short(&e);
                set_state(&ctx, QueueState::Unreadable(error.clone()));
                let wait = BACKOFF_BASE.saturating_mul(2u32.saturating_pow(failures - 1)).min(BACKOFF_MAX);
                warn!(queue = %url, error = %error, retry_in = ?wait, "cannot read the events queue; the instance listings fall back to --observe-interval");
                tokio::time::sleep(crate::domain::jitter(wait, 0.1)).await;
            }
        }
    }
}

/// An SQS error in one line: the service's code and message, else the whole chain of causes (no
/// response dump).
fn short<E, R>(e: &aws_sdk_sqs::error::SdkError<E, R>) -> String
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e.as_service_error() {
        Some(s) => format!("{}: {}", s.code().unwrap_or("unknown"), s.message().unwrap_or_default()),
        None => DisplayErrorContext(e).to_string(),
    }
}

/// Records the queue's state; a change wakes the binding watch, which reports it.
fn set_state<C>(ctx: &Context<C>, state: QueueState) {
    ctx.metrics.set_events_queue_up(state == QueueState::Reading);
    ctx.events_queue.send_if_modified(|current| {
        let changed = *current != state;
        *current = state;
        changed
    });
}

/// One message: requeues the profiles it names; logs (and so drops) anything else.
fn handle<C: ConnectApi>(ctx: &Context<C>, own: &Own, body: &str) {
    match parse(body, own) {
        Ok(Message::Changed { event, instance_id, profile_id }) => {
            let objects = ctx.observations.mark_changed(instance_id.as_deref(), &profile_id);
            debug!(event, profile = profile_id, requeued = objects.len(), "a CloudTrail event names the profile");
            ctx.requeue_observed(objects);
        }
        Ok(Message::Own { event }) => debug!(event, "ignoring an event of the operator's own write"),
        Ok(Message::Other { event }) => debug!(event, "the event names no security profile"),
        Err(reason) => {
            let start: String = body.chars().take(200).collect();
            warn!(reason, body = start, "deleting a message of the events queue that is not a Connect event");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ARN: &str = "arn:aws:connect:eu-west-2:111122223333:instance/i-1/security-profile/sp-1";

    fn event(name: &str, identity: Value, request: Value) -> String {
        json!({
            "version": "0", "detail-type": "AWS API Call via CloudTrail", "source": "aws.connect",
            "detail": {"eventSource": "connect.amazonaws.com", "eventName": name, "userIdentity": identity,
                       "requestParameters": request}
        })
        .to_string()
    }

    fn person() -> Value {
        json!({"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/alice", "accessKeyId": "AKIAALICE"})
    }

    fn session(name: &str) -> Value {
        json!({"type": "AssumedRole", "arn": format!("arn:aws:sts::111122223333:assumed-role/team-a/{name}"),
               "accessKeyId": "ASIASESSION"})
    }

    #[test]
    fn reads_the_profile_an_event_names() {
        let mut own = Own::default();
        own.add_key("AKIAOPERATOR");
        let ids = json!({"InstanceId": "i-1", "SecurityProfileId": "sp-1"});
        let changed = |event: &str| Message::Changed {
            event: event.into(),
            instance_id: Some("i-1".into()),
            profile_id: "sp-1".into(),
        };
        assert_eq!(
            parse(&event("UpdateSecurityProfile", person(), ids.clone()), &own),
            Ok(changed("UpdateSecurityProfile"))
        );
        assert_eq!(
            parse(&event("DeleteSecurityProfile", session("alice"), ids.clone()), &own),
            Ok(changed("DeleteSecurityProfile"))
        );
        assert_eq!(
            parse(&event("TagResource", person(), json!({"resourceArn": ARN})), &own),
            Ok(changed("TagResource"))
        );
        assert_eq!(
            parse(&event("UntagResource", person(), json!({"ResourceArn": ARN})), &own),
            Ok(changed("UntagResource"))
        );
        let queue = "arn:aws:connect:eu-west-2:111122223333:instance/i-1/queue/q-1";
        assert_eq!(
            parse(&event("TagResource", person(), json!({"resourceArn": queue})), &own),
            Ok(Message::Other { event: "TagResource".into() })
        );
    }

    #[test]
    fn ignores_the_operators_own_writes() {
        let mut own = Own::default();
        own.add_key("AKIAOPERATOR");
        let ids = json!({"InstanceId": "i-1", "SecurityProfileId": "sp-1"});
        for identity in [
            session("csp-team-a"),
            session("csp.binding.team-a"),
            session("csp.observer"),
            json!({"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/operator", "accessKeyId": "AKIAOPERATOR"}),
        ] {
            let parsed = parse(&event("UpdateSecurityProfile", identity.clone(), ids.clone()), &own);
            assert_eq!(parsed, Ok(Message::Own { event: "UpdateSecurityProfile".into() }), "{identity}");
        }
        // A person's session whose name merely contains csp is not the operator.
        let parsed = parse(&event("UpdateSecurityProfile", session("alice-csp-x"), ids), &own);
        assert!(matches!(parsed, Ok(Message::Changed { .. })), "{parsed:?}");
    }

    /// Temporary credentials rotate while their events are on the way: the last few keys are the
    /// operator's.
    #[test]
    fn remembers_the_last_few_own_keys() {
        let mut own = Own::default();
        for k in ["ASIA1", "ASIA2", "ASIA2", "ASIA3", "ASIA4", "ASIA5"] {
            own.add_key(k);
        }
        let by = |key: &str| json!({"type": "AssumedRole", "arn": "arn:aws:sts::1:assumed-role/irsa/botocore-session-1", "accessKeyId": key});
        assert!(own.is(&by("ASIA2")) && own.is(&by("ASIA5")));
        assert!(!own.is(&by("ASIA1")), "forgotten");
        assert!(!own.is(&by("")), "no key");
    }

    #[test]
    fn refuses_what_is_not_a_connect_write() {
        let own = Own::default();
        for body in [
            "not json".to_string(),
            "{}".to_string(),
            json!({"detail": {"eventSource": "s3.amazonaws.com", "eventName": "PutObject"}}).to_string(),
            json!({"detail": {"eventSource": "connect.amazonaws.com", "eventName": "DescribeSecurityProfile"}})
                .to_string(),
            json!({"detail": {"eventSource": "connect.amazonaws.com"}}).to_string(),
        ] {
            assert!(parse(&body, &own).is_err(), "{body}");
        }
    }

    #[test]
    fn queue_regions() {
        assert_eq!(region_of_queue("https://sqs.eu-west-2.amazonaws.com/111122223333/q").as_deref(), Some("eu-west-2"));
        assert_eq!(region_of_queue("https://eu-west-2.queue.amazonaws.com/1/q").as_deref(), Some("eu-west-2"));
        assert_eq!(
            region_of_queue("https://vpce-0a1b-xyz.sqs.us-east-1.vpce.amazonaws.com/1/q").as_deref(),
            Some("us-east-1")
        );
        assert_eq!(region_of_queue("http://127.0.0.1:5000/123456789012/q"), None);
        assert_eq!(region_of_queue("http://sqs.local:5000/123456789012/q"), None);
    }
}
