//! End to end, drift found by events (issue 22): the emulator sends every write to an SQS queue (moto's
//! server) as the CloudTrail event EventBridge delivers; the operator, listing each instance only every
//! 30 minutes, reads the queue and repairs a console edit within seconds, with no listing; it deletes
//! what is not an event and goes on; its own writes' events cost no read; a queue it cannot read shows
//! on the InstanceBindings' status (EventsQueue) within seconds.

use std::time::{Duration, Instant};

use connect_operator::api::InstanceBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde_json::json;

use crate::harness::{INSTANCE, SqsServer, TestEnv, free_port, manifest, scrape};

const T: Duration = Duration::from_secs(60);
/// A console edit is repaired through the queue within this.
const REPAIR: Duration = Duration::from_secs(15);
/// A change of the queue's state shows on the bindings' status within this.
const REPORTED: Duration = Duration::from_secs(5);

struct EventsEnv {
    env: TestEnv,
    sqs: SqsServer,
    queue: String,
}

/// An emulator that publishes its writes to a fresh queue, and an operator that reads it and lists
/// the instance every 30 minutes (once after the first create, then not within the test).
async fn start(name: &str) -> EventsEnv {
    let sqs = SqsServer::start(&format!("events-{name}-{:05}", rand::random_range(0..100_000)));
    let queue = sqs.create_queue("connect-events").await;
    let mut env = TestEnv::new(name, &["--throttle-rate", "0", "--events-queue-url", &queue]).await;
    env.start_operator_with_env(
        &["--observe-interval", "30m"],
        &[("EVENTS_QUEUE_URL", &queue), ("AWS_ENDPOINT_URL_SQS", &sqs.endpoint)],
    );
    EventsEnv { env, sqs, queue }
}

impl EventsEnv {
    /// Applies a profile and waits until it is Ready and its instance's first listing recorded it.
    async fn profile(&self, name: &str) -> String {
        let spec =
            json!({"securityProfileName": name, "description": "as declared", "permissions": ["BasicAgentAccess"]});
        self.env.apply_ok(&manifest(name, spec));
        let sp = self
            .env
            .wait_for(&format!("{name} Ready with its listing baseline"), T, async || {
                let sp = self.env.api().get(name).await.ok()?;
                let ready = sp.condition("Ready").is_some_and(|c| c.status == "True");
                (ready && sp.status.as_ref()?.connect_last_modified_time.is_some()).then_some(sp)
            })
            .await;
        sp.status.unwrap().security_profile_id.unwrap()
    }

    /// Lines of the operator's log that contain every one of `parts`.
    fn log_lines(&self, parts: &[&str]) -> usize {
        let log = std::fs::read_to_string(&self.env.operator.as_ref().unwrap().log).unwrap_or_default();
        log.lines().filter(|l| parts.iter().all(|p| l.contains(p))).count()
    }

    /// Waits (at most `within`) until the InstanceBinding `name`'s EventsQueue condition has `status`
    /// and `reason`; returns it.
    async fn wait_events_queue(&self, name: &str, status: &str, reason: &str, within: Duration) -> Condition {
        let api: kube::Api<InstanceBinding> = kube::Api::all(self.env.client.clone());
        let what = format!("binding {name} EventsQueue={status} ({reason})");
        self.env
            .wait_for(&what, within, async || {
                let conditions = api.get(name).await.ok()?.status?.conditions;
                conditions.into_iter().find(|c| c.type_ == "EventsQueue" && c.status == status && c.reason == reason)
            })
            .await
    }

    async fn wait_log(&self, what: &str, parts: &[&str], at_least: usize) {
        self.env.wait_for(what, T, async || (self.log_lines(parts) >= at_least).then_some(())).await;
    }

    fn last_seq(&self) -> u64 {
        self.env.emulator.calls().last().map(|c| c.seq).unwrap_or(0)
    }

    /// The operations of the calls after `seq`.
    fn ops_after(&self, seq: u64) -> Vec<String> {
        self.env.emulator.calls().into_iter().filter(|c| c.seq > seq).map(|c| c.operation).collect()
    }

    fn count(&self, operation: &str) -> usize {
        self.env.emulator.calls().iter().filter(|c| c.operation == operation).count()
    }

    /// Edits the description in the console; returns how long the operator took to restore it.
    async fn edit_and_time_the_repair(&self, id: &str, name: &str) -> Duration {
        let edited = Instant::now();
        self.env.emulator.control(
            "PATCH",
            &format!("profiles/{INSTANCE}/{id}"),
            Some(json!({"description": "edited in the console"})),
        );
        let held = |p: &serde_json::Value| p["Description"] == "as declared";
        self.env
            .wait_for(&format!("{name} repaired through the queue"), REPAIR, async || {
                self.env.emulator.profiles(INSTANCE).into_iter().find(|p| p["Id"] == id).filter(|p| held(p))
            })
            .await;
        edited.elapsed()
    }
}

const OWN_EVENT: &str = "ignoring an event of the operator's own write";

#[tokio::test]
async fn a_console_edit_is_repaired_through_the_queue_without_a_listing() {
    let e = start("events").await;
    let id = e.profile("ev-desc").await;
    // The loop reads the queue: the event of the operator's own create came and was ignored.
    e.wait_log("the create's event ignored", &[OWN_EVENT, "CreateSecurityProfile"], 1).await;
    let before = e.last_seq();

    let took = e.edit_and_time_the_repair(&id, "ev-desc").await;
    println!("console edit -> repaired in Connect through the queue: {} ms", took.as_millis());

    let ops = e.ops_after(before);
    assert!(
        !ops.iter().any(|o| o == "ListSecurityProfiles" || o == "SearchSecurityProfiles"),
        "no listing between the edit and the repair: {ops:?}"
    );
    assert!(ops.iter().any(|o| o == "DescribeSecurityProfile"), "the profile was read in full: {ops:?}");
    assert!(ops.iter().any(|o| o == "UpdateSecurityProfile"), "and repaired: {ops:?}");

    // The repair's own UpdateSecurityProfile comes back as an event: ignored, it costs no read.
    let describes = e.count("DescribeSecurityProfile");
    e.wait_log("the repair's event ignored", &[OWN_EVENT, "UpdateSecurityProfile"], 1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        e.count("DescribeSecurityProfile"),
        describes,
        "no read for the operator's own write: {:?}",
        e.ops_after(before)
    );
    assert_eq!(e.sqs.depth(&e.queue).await, 0, "every message deleted");
}

#[tokio::test]
async fn a_malformed_message_is_deleted_and_the_loop_goes_on() {
    let e = start("events-bad").await;
    let id = e.profile("ev-bad").await;
    let sqs = e.sqs.client();
    for body in [
        "this is not an event".to_string(),
        json!({"detail-type": "AWS API Call via CloudTrail", "detail": {"eventSource": "s3.amazonaws.com", "eventName": "PutObject"}}).to_string(),
    ] {
        sqs.send_message().queue_url(&e.queue).message_body(body).send().await.expect("SendMessage");
    }
    e.wait_log("the malformed messages reported", &["not a Connect event"], 2).await;
    e.env
        .wait_for("the malformed messages deleted", T, async || (e.sqs.depth(&e.queue).await == 0).then_some(()))
        .await;

    // The loop goes on: a later console edit is still repaired through the queue.
    let before = e.last_seq();
    let took = e.edit_and_time_the_repair(&id, "ev-bad").await;
    println!("after malformed messages, console edit -> repaired: {} ms", took.as_millis());
    let ops = e.ops_after(before);
    assert!(!ops.iter().any(|o| o == "ListSecurityProfiles" || o == "SearchSecurityProfiles"), "{ops:?}");
}

/// `connect_operator_events_queue_up` as the operator's /metrics on `port` shows it.
async fn queue_up(port: u16) -> Option<f64> {
    let out = scrape(port).await?;
    let line = out.lines().find(|l| l.starts_with("connect_operator_events_queue_up "))?;
    line.rsplit(' ').next()?.parse().ok()
}

/// Also: the InstanceBinding of the namespace shows it, EventsQueue False (QueueUnreadable, naming SQS's
/// error) while the queue cannot be read and True (Reading) within seconds once it can.
#[tokio::test]
async fn a_queue_that_cannot_be_read_brings_the_listings_back_until_it_can() {
    let sqs = SqsServer::start(&format!("events-down-{:05}", rand::random_range(0..100_000)));
    // The queue does not exist yet: every ReceiveMessage fails.
    let queue = format!("{}/123456789012/connect-events-late", sqs.endpoint);
    let mut env = TestEnv::new("events-down", &["--throttle-rate", "0"]).await;
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    env.start_operator_with_env(
        &["--observe-interval", "1s", "--metrics-addr", &metrics],
        &[("EVENTS_QUEUE_URL", &queue), ("AWS_ENDPOINT_URL_SQS", &sqs.endpoint)],
    );
    let binding = format!("{}-events", env.ns);
    let _binding = env.bind(&binding, json!({"instanceId": INSTANCE, "region": "us-east-1", "namespaces": [env.ns]}));
    let e = EventsEnv { env, sqs, queue };
    let down = e.wait_events_queue(&binding, "False", "QueueUnreadable", REPORTED).await;
    println!("binding EventsQueue while the queue cannot be read: {}", down.message);
    for part in ["NonExistentQueue", "fall back to --observe-interval (1s)", e.queue.as_str()] {
        assert!(down.message.contains(part), "the message says {part:?}: {}", down.message);
    }
    e.profile("ev-down").await;
    e.env.wait_for("events_queue_up 0", T, async || (queue_up(port).await? == 0.0).then_some(())).await;
    let lists = e.count("ListSecurityProfiles");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        e.count("ListSecurityProfiles") >= lists + 2,
        "the queue cannot be read: the instance is listed every --observe-interval (1s)"
    );

    // The queue appears: it is read (with backoff, within seconds), and the listings slow down to
    // --events-observe-interval (30m).
    assert_eq!(e.sqs.create_queue("connect-events-late").await, e.queue);
    e.env.wait_for("events_queue_up 1", T, async || (queue_up(port).await? == 1.0).then_some(())).await;
    // The change is reported on the bindings' status at once (not at the next minute's report).
    let read_again = Instant::now();
    let up = e.wait_events_queue(&binding, "True", "Reading", REPORTED).await;
    println!("queue read again -> binding EventsQueue True in {} ms: {}", read_again.elapsed().as_millis(), up.message);
    assert_ne!(up.last_transition_time, down.last_transition_time, "a transition");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let lists = e.count("ListSecurityProfiles");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(e.count("ListSecurityProfiles"), lists, "no listing while the events queue is read");
}
