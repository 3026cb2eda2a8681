//! Reconciler scenarios without a cluster or HTTP: a tower-test mock stands in for the Kubernetes API
//! and an in-memory fake for Connect. Each test names one situation, runs the reconcile, and checks
//! the exact Kubernetes requests and Connect calls it made. (The same behaviour is proven end to end
//! against the real kube-apiserver and the emulator in `tests/e2e`.)

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use kube::client::Body;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::status::{self, Identity, Outcome};
use super::*;
use crate::api::{
    ADOPT_ANNOTATION, FINALIZER, InstanceBinding, OWNER_UID_TAG, SecurityProfileSpec, SecurityProfileStatus,
};
use crate::connect::ErrorClass;
use crate::connect::fake::{FakeConnect, INSTANCE, arn};
use crate::domain::{ProfileState, ProfileUpdate, Target};

const NS: &str = "team-a";
const NAME: &str = "agents";
const UID: &str = "0b5e2c6e-1111-4c1e-9a57-000000000001";

/// One request the operator sent to the Kubernetes API.
#[derive(Debug, Clone)]
struct KubeCall {
    method: String,
    path: String,
    body: Value,
}

impl KubeCall {
    fn is_event(&self) -> bool {
        self.path.contains("/events")
    }

    fn event_reason(&self) -> Option<&str> {
        self.is_event().then(|| self.body["reason"].as_str().unwrap_or_default())
    }
}

/// A mock API server answering like a kube-apiserver would for the requests the reconciler makes, and
/// recording each of them (before answering, so they are all recorded when the reconcile returns).
fn mock_kube(object: &SecurityProfile) -> (kube::Client, Arc<Mutex<Vec<KubeCall>>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let recorded = calls.clone();
    let mut object = serde_json::to_value(object).expect("object serializes");
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let method = request.method().to_string();
            let path = request.uri().to_string();
            let bytes = request.into_body().collect_bytes().await.expect("request body");
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            recorded.lock().unwrap().push(KubeCall { method: method.clone(), path: path.clone(), body: body.clone() });
            let (status, answer) = if path.contains("/events") {
                (StatusCode::CREATED, body)
            } else if path.starts_with(&format!("/api/v1/namespaces/{NS}")) {
                let ns = json!({"apiVersion": "v1", "kind": "Namespace",
                                "metadata": {"name": NS, "labels": {"team": "a"}}});
                (StatusCode::OK, ns)
            } else if path.starts_with("/api/v1/namespaces/") {
                (StatusCode::NOT_FOUND, not_found(&path))
            } else if method == "PATCH" && path.contains("/status?") {
                object["status"] = body["status"].clone();
                (StatusCode::OK, object.clone())
            } else if method == "PATCH" {
                let patch: json_patch::Patch = serde_json::from_value(body).expect("a JSON patch");
                match json_patch::patch(&mut object, &patch) {
                    Ok(()) => (StatusCode::OK, object.clone()),
                    Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, json!({"kind": "Status", "message": e.to_string()})),
                }
            } else {
                (StatusCode::NOT_FOUND, not_found(&path))
            };
            let response = Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap();
            send.send_response(response);
        }
    });
    (kube::Client::new(service, "default"), calls)
}

fn not_found(path: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
           "message": format!("{path} not found")})
}

fn spec() -> SecurityProfileSpec {
    serde_json::from_value(json!({
        "instanceId": INSTANCE,
        "securityProfileName": "Agents",
        "description": "Front-line agents",
        "permissions": ["BasicAgentAccess", "OutboundCallAccess"],
        "tags": {"team": "support"},
    }))
    .expect("a valid spec")
}

/// A SecurityProfile as the watch delivers it: generation 1, with or without the finalizer.
fn resource(finalizer: bool) -> SecurityProfile {
    let mut p = SecurityProfile::new(NAME, spec());
    p.metadata.namespace = Some(NS.into());
    p.metadata.uid = Some(UID.into());
    p.metadata.generation = Some(1);
    p.metadata.resource_version = Some("100".into());
    if finalizer {
        p.metadata.finalizers = Some(vec![FINALIZER.into()]);
    }
    p
}

fn owner_tags() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("team".into(), "support".into()),
        (OWNER_UID_TAG.into(), UID.into()),
        (crate::api::NAMESPACE_TAG.into(), NS.into()),
    ])
}

/// The status of a resource whose profile `id` was Ready at generation 1.
fn ready_status(id: &str) -> SecurityProfileStatus {
    status::next_status(
        None,
        Identity::Set { id: id.into(), arn: arn(id), last_modified: Some("2026-11-01T00:00:00Z".into()) },
        Some(1),
        &Outcome::in_sync("Agents", id, 1),
        Time(jiff::Timestamp::now()),
    )
}

struct Scenario {
    ctx: Arc<Context<Arc<FakeConnect>>>,
    connect: Arc<FakeConnect>,
    kube: Arc<Mutex<Vec<KubeCall>>>,
    bindings: Mutex<Option<kube::runtime::reflector::store::Writer<InstanceBinding>>>,
}

impl Scenario {
    fn new(object: &SecurityProfile) -> Self {
        Self::with_settings(object, |_| {})
    }

    fn with_settings(object: &SecurityProfile, configure: impl FnOnce(&mut Settings)) -> Self {
        let (client, kube) = mock_kube(object);
        let connect = Arc::new(FakeConnect::default());
        let mut settings = Settings { retry_base: Duration::from_millis(100), ..Settings::default() };
        configure(&mut settings);
        let ctx = Context::new(client, connect.clone(), Some("eu-west-2".into()), settings, Arc::default());
        let s = Self { ctx: Arc::new(ctx), connect, kube, bindings: Mutex::new(None) };
        // Instance listings come from `list()`, never from a background task.
        s.ctx.observations.manual();
        s.bind(json!({"instanceId": INSTANCE, "region": "eu-west-2", "namespaceSelector": {},
                      "allowAdoption": true}));
        s
    }

    /// One listing of the instance, as its observer would take it (its calls are counted); returns the
    /// objects it requeues.
    async fn list(&self) -> Vec<String> {
        let target = Target {
            region: "eu-west-2".into(),
            instance_id: INSTANCE.into(),
            priority: crate::domain::Priority::Background,
            ..Default::default()
        };
        let listing = self.connect.list_instance(&target, true).await.expect("listed");
        let key = instance_listing::InstanceKey::of(&target);
        let requeue = self.ctx.observations.record(&key, listing, jiff::Timestamp::now()).0;
        let names = requeue.iter().map(|o| o.name.clone()).collect();
        self.ctx.requeue_observed(requeue);
        names
    }

    /// Replaces the bindings with one named `team-a` of this spec (as the binding watch would).
    fn bind(&self, spec: Value) {
        self.bind_all(&[("team-a", spec)]);
    }

    fn bind_all(&self, bindings: &[(&str, Value)]) {
        let mut writer = self.bindings.lock().unwrap();
        let writer = writer.get_or_insert_with(|| self.ctx.take_binding_writer().expect("writer"));
        let objects = bindings
            .iter()
            .map(|(name, spec)| {
                let mut b = InstanceBinding::new(name, serde_json::from_value(spec.clone()).expect("a binding spec"));
                b.metadata.uid = Some(format!("uid-{name}"));
                b
            })
            .collect::<Vec<_>>();
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Init);
        for b in objects {
            writer.apply_watcher_event(&kube::runtime::watcher::Event::InitApply(b));
        }
        writer.apply_watcher_event(&kube::runtime::watcher::Event::InitDone);
    }

    async fn reconcile(&self, object: &SecurityProfile) -> Result<Action, Error> {
        reconcile(Arc::new(DeserializeGuard(Ok(object.clone()))), self.ctx.clone()).await
    }

    fn requeue_after(&self, object: &SecurityProfile, e: &Error) -> Action {
        error_policy(Arc::new(DeserializeGuard(Ok(object.clone()))), e, self.ctx.clone())
    }

    /// The delay before the first retry after `e` (None: only a spec change retries).
    fn first_retry(&self, e: &Error) -> Option<Duration> {
        retry_after(&self.ctx.settings, e, 1)
    }

    /// The Kubernetes writes (not reads, not Events), as `METHOD path-without-query`.
    fn kube_writes(&self) -> Vec<String> {
        self.kube
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.method != "GET" && !c.is_event())
            .map(|c| format!("{} {}", c.method, c.path.split('?').next().unwrap_or_default()))
            .collect()
    }

    fn events(&self) -> Vec<String> {
        self.kube.lock().unwrap().iter().filter_map(|c| c.event_reason().map(str::to_string)).collect()
    }

    /// The status the last status patch wrote.
    fn written_status(&self) -> SecurityProfileStatus {
        let calls = self.kube.lock().unwrap();
        let patch = calls.iter().rev().find(|c| c.path.contains("/status?")).expect("a status write");
        assert!(patch.path.contains("fieldManager=connect-operator"), "{}", patch.path);
        assert!(patch.path.contains("force=true"), "server-side apply, forced: {}", patch.path);
        serde_json::from_value(patch.body["status"].clone()).expect("a status")
    }
}

fn resource_path() -> String {
    format!("/apis/{}/namespaces/{NS}/securityprofiles/{NAME}", crate::api::API_VERSION)
}

fn condition<'a>(s: &'a SecurityProfileStatus, type_: &str) -> &'a Condition {
    s.conditions.iter().find(|c| c.type_ == type_).expect("condition present")
}

#[tokio::test]
async fn new_resource_gets_finalizer_then_profile_then_status() {
    let object = resource(false);
    let s = Scenario::new(&object);
    let action = s.reconcile(&object).await.expect("reconcile succeeds");

    assert_eq!(s.connect.calls(), ["CreateSecurityProfile"]);
    let created = s.connect.profiles.lock().unwrap().get("sp-1").cloned().expect("profile created");
    assert_eq!(created.tags, owner_tags(), "the spec's tags plus the owner UID tag");
    assert_eq!(created.state, ProfileState::desired(&object.spec));

    let path = resource_path();
    assert_eq!(
        s.kube_writes(),
        [format!("PATCH {path}"), format!("PATCH {path}/status"), format!("PATCH {path}/status")],
        "the finalizer, the pending status (before any Connect call), the result"
    );
    let first_status = s.kube.lock().unwrap().iter().find(|c| c.path.contains("/status?")).cloned().unwrap();
    let pending: SecurityProfileStatus = serde_json::from_value(first_status.body["status"].clone()).unwrap();
    assert_eq!(condition(&pending, "Ready").status, "False");
    assert_eq!(condition(&pending, "Ready").reason, "Creating");
    assert!(condition(&pending, "Ready").message.contains("waiting for Connect"));
    assert_eq!(condition(&pending, "Synced").status, "Unknown");
    let finalizer_patch = s.kube.lock().unwrap().iter().find(|c| c.method == "PATCH").cloned().unwrap();
    assert_eq!(
        finalizer_patch.body,
        json!([{"op": "test", "path": "/metadata/resourceVersion", "value": "100"},
               {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}]),
        "the finalizer is added only to the version that was read"
    );
    let status = s.written_status();
    assert_eq!(status.security_profile_id.as_deref(), Some("sp-1"));
    assert_eq!(status.security_profile_arn.as_deref(), Some(arn("sp-1").as_str()));
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(condition(&status, "Ready").status, "True");
    assert_eq!(condition(&status, "Synced").reason, "ReconcileSucceeded");
    assert_eq!(condition(&status, "Ready").observed_generation, Some(1));
    assert_eq!(s.events(), ["Created"]);
    // Re-observed after the resync interval by the resync task (a due time in one map), not by a timer
    // of its own in the controller's scheduler.
    assert_eq!(action, Action::await_change());
    let due = s.ctx.next_observe.lock().unwrap().get(&context::key(&object.metadata)).copied().expect("a due time");
    let wait = due - std::time::Instant::now();
    let resync = s.ctx.settings.resync;
    assert!(wait > resync.mul_f64(0.85) && wait <= resync.mul_f64(1.1), "{wait:?}: the resync interval, jittered");
}

/// The resync: the resync task (`controller::requeue_due_periodically`) requeues an in-sync profile once
/// its due time has come, once; the reconcile that follows sets the next one.
#[tokio::test(start_paused = true)]
async fn the_resync_task_requeues_an_in_sync_profile_once_when_it_is_due() {
    let object = resource(false);
    let s = Scenario::new(&object);
    let (tx, mut requeued) = futures::channel::mpsc::unbounded();
    s.ctx.observations.set_requeue(tx);
    assert_eq!(s.reconcile(&object).await.expect("created"), Action::await_change());
    let task = tokio::spawn(super::controller::requeue_due_periodically(s.ctx.clone()));
    tokio::time::sleep(super::controller::RESYNC_SWEEP * 3).await;
    assert!(requeued.try_recv().is_err(), "not due yet: nothing requeued");
    // Its due time comes (std's clock, which paused tokio time does not move).
    for at in s.ctx.next_observe.lock().unwrap().values_mut() {
        *at = std::time::Instant::now();
    }
    tokio::time::sleep(super::controller::RESYNC_SWEEP).await;
    let object_ref = requeued.try_recv().expect("requeued");
    assert_eq!((object_ref.name.as_str(), object_ref.namespace.as_deref()), (NAME, Some(NS)));
    assert!(s.ctx.next_observe.lock().unwrap().is_empty(), "its due time is used up");
    tokio::time::sleep(super::controller::RESYNC_SWEEP * 3).await;
    assert!(requeued.try_recv().is_err(), "requeued once");
    task.abort();
}

#[tokio::test]
async fn in_sync_profile_costs_no_call_once_its_instance_is_listed() {
    let mut object = resource(true);
    object.status = Some(ready_status("sp-7"));
    let s = Scenario::new(&object);
    s.connect.insert("sp-7", &object.spec, owner_tags());

    // Before its instance's first listing (just after a start) a settled profile waits, with no call.
    assert_eq!(s.reconcile(&object).await.expect("waits"), Action::requeue(instance_listing::FIRST_LISTING_WAIT));
    assert!(s.connect.calls().is_empty());
    assert!(s.list().await.is_empty(), "nothing watched yet");
    assert_eq!(s.connect.calls(), ["ListSecurityProfiles", "SearchSecurityProfiles"], "one listing for the instance");

    // The listing shows it as the status recorded it: no call, no status write.
    s.reconcile(&object).await.expect("in sync");
    assert_eq!(s.connect.calls().len(), 2, "no call for the profile: {:?}", s.connect.calls());
    assert!(s.kube_writes().is_empty(), "no status write when nothing but timestamps would change");

    // The next listings confirm it without requeueing it.
    assert!(s.list().await.is_empty());
    s.reconcile(&object).await.expect("metadata-only trigger");
    assert_eq!(s.connect.calls().len(), 4, "only the listing's calls");
    assert!(s.kube_writes().is_empty());
    assert!(s.events().is_empty());
}

#[tokio::test]
async fn cel_only_rule_is_terminal_without_connect_call() {
    let mut object = resource(true);
    object.spec.tags = Some(BTreeMap::from([("aws:team".into(), "x".into())]));
    let s = Scenario::new(&object);

    let err = s.reconcile(&object).await.expect_err("invalid spec");
    assert!(matches!(err, Error::InvalidSpec { .. }), "{err}");
    assert!(s.connect.calls().is_empty(), "nothing is sent to Connect");
    let status = s.written_status();
    let synced = condition(&status, "Synced");
    assert_eq!((synced.status.as_str(), synced.reason.as_str()), ("False", "ValidationFailed"));
    assert!(synced.message.contains("spec.tags"), "names the field: {}", synced.message);
    assert!(synced.message.contains("aws:"), "names the rule: {}", synced.message);
    assert_eq!(s.events(), ["ValidationFailed"]);
    assert_eq!(s.requeue_after(&object, &err), Action::await_change(), "terminal: wait for a spec change");

    // The terminal condition holds for this generation: a re-trigger does nothing at all.
    let mut reported = object.clone();
    reported.status = Some(status);
    let before = s.kube.lock().unwrap().len();
    s.reconcile(&reported).await.expect("nothing to do");
    assert!(s.connect.calls().is_empty());
    assert_eq!(s.kube.lock().unwrap().len(), before, "no Kubernetes request either");
}

#[tokio::test]
async fn throttled_create_is_recoverable_with_backoff() {
    let object = resource(true);
    let s = Scenario::new(&object);
    s.connect.fail_next("CreateSecurityProfile", ErrorClass::Recoverable, "ThrottlingException");

    let err = s.reconcile(&object).await.expect_err("throttled");
    let status = s.written_status();
    let synced = condition(&status, "Synced");
    assert_eq!(synced.reason, "ThrottlingException");
    assert!(synced.message.contains("Retrying with backoff"), "{}", synced.message);
    assert!(status.security_profile_id.is_none());
    assert_ne!(s.requeue_after(&object, &err), Action::await_change(), "recoverable: retried");
    let delay = s.first_retry(&err).expect("retried");
    assert!(delay <= Duration::from_millis(125), "the first retry comes after retry_base (100 ms ±25%): {delay:?}");

    // The retry succeeds and clears the error.
    let mut retried = object.clone();
    retried.status = Some(status);
    s.reconcile(&retried).await.expect("retry succeeds");
    let status = s.written_status();
    assert_eq!(condition(&status, "Synced").reason, "ReconcileSucceeded");
    assert_eq!(s.connect.calls(), ["CreateSecurityProfile", "CreateSecurityProfile"]);
    assert_eq!(s.connect.profiles.lock().unwrap().len(), 1);
}

/// A create that meets our own profile: the lookup by name, then a full read before the status.
const RECOVERY_CALLS: [&str; 4] =
    ["CreateSecurityProfile", "SearchSecurityProfiles", "DescribeSecurityProfile", "ListSecurityProfilePermissions"];

#[tokio::test]
async fn lost_create_response_is_recovered_by_owner_tag() {
    // An earlier create succeeded in Connect but its answer never arrived: the status holds no ID.
    let object = resource(true);
    let s = Scenario::new(&object);
    s.connect.insert("sp-1", &object.spec, owner_tags());

    s.reconcile(&object).await.expect("recovered");
    assert_eq!(s.connect.calls(), RECOVERY_CALLS);
    assert_eq!(s.connect.profiles.lock().unwrap().len(), 1, "no duplicate");
    let status = s.written_status();
    assert_eq!(status.security_profile_id.as_deref(), Some("sp-1"));
    assert_eq!(condition(&status, "Ready").status, "True");
    assert_eq!(s.events(), ["Recovered"], "one Normal Event; the interim Creating status is no Warning");
}

#[tokio::test]
async fn create_with_unknown_outcome_looks_the_profile_up_at_once() {
    let object = resource(true);
    let s = Scenario::new(&object);
    *s.connect.lose_next_create.lock().unwrap() = true;

    s.reconcile(&object).await.expect("recovered in the same reconcile");
    assert_eq!(s.connect.calls(), RECOVERY_CALLS);
    assert_eq!(s.connect.profiles.lock().unwrap().len(), 1, "no second create");
    let status = s.written_status();
    assert_eq!(status.security_profile_id.as_deref(), Some("sp-1"));
    assert_eq!(condition(&status, "Synced").reason, "ReconcileSucceeded", "no error surfaced to the user");
}

#[tokio::test]
async fn create_with_unknown_outcome_and_nothing_found_is_retried() {
    let object = resource(true);
    let s = Scenario::new(&object);
    s.connect.fail_next_with_unknown_outcome("CreateSecurityProfile");

    let err = s.reconcile(&object).await.expect_err("retried later");
    assert_eq!(s.connect.calls(), ["CreateSecurityProfile", "SearchSecurityProfiles"]);
    assert_eq!(condition(&s.written_status(), "Synced").reason, "ConnectionFailure");
    assert!(s.first_retry(&err).is_some());
}

#[tokio::test]
async fn create_with_unknown_outcome_and_a_failed_lookup_still_reports_the_error() {
    let object = resource(true);
    let s = Scenario::new(&object);
    s.connect.fail_next_with_unknown_outcome("CreateSecurityProfile");
    s.connect.fail_next("SearchSecurityProfiles", ErrorClass::Recoverable, "ConnectionFailure");

    s.reconcile(&object).await.expect_err("retried later");
    let synced = condition(&s.written_status(), "Synced").clone();
    assert_eq!(synced.reason, "ConnectionFailure", "the user sees why nothing happens");
    assert!(synced.message.contains("creating the profile"), "{}", synced.message);
}

#[tokio::test]
async fn profile_owned_by_another_resource_is_never_taken() {
    let object = resource(true);
    let s = Scenario::new(&object);
    let mut theirs = owner_tags();
    theirs.insert(OWNER_UID_TAG.into(), "another-uid".into());
    s.connect.insert("sp-1", &object.spec, theirs.clone());

    let err = s.reconcile(&object).await.expect_err("refused");
    assert_eq!(s.connect.calls(), ["CreateSecurityProfile", "SearchSecurityProfiles"], "no write to their profile");
    let synced = condition(&s.written_status(), "Synced").clone();
    assert_eq!(synced.reason, "ProfileOwnedElsewhere");
    assert!(synced.message.contains("another-uid"), "{}", synced.message);
    assert!(s.written_status().security_profile_id.is_none());
    assert_eq!(s.requeue_after(&object, &err), Action::await_change());
    assert_eq!(s.connect.profiles.lock().unwrap()["sp-1"].tags, theirs);
}

#[tokio::test]
async fn drift_is_repaired_with_only_the_differing_member() {
    let mut object = resource(true);
    object.status = Some(ready_status("sp-7"));
    let s = Scenario::new(&object);
    let mut changed = object.spec.clone();
    changed.description = Some("edited in the console".into());
    s.connect.insert("sp-7", &changed, owner_tags());
    s.connect.profiles.lock().unwrap().get_mut("sp-7").unwrap().last_modified = Some("2026-11-02T00:00:00Z".into());

    s.list().await;
    s.reconcile(&object).await.expect("repaired");
    assert_eq!(
        s.connect.calls(),
        [
            "ListSecurityProfiles",
            "SearchSecurityProfiles",
            "DescribeSecurityProfile",
            "ListSecurityProfilePermissions",
            "UpdateSecurityProfile"
        ],
        "the listing shows a moved LastModifiedTime: one full read, then one update"
    );
    let updates = s.connect.updates.lock().unwrap().clone();
    assert_eq!(updates, [ProfileUpdate { description: Some("Front-line agents".into()), ..Default::default() }]);
    assert_eq!(s.events(), ["DriftRepaired"]);
    let status = s.written_status();
    assert_eq!(status.connect_last_modified_time, None, "after a write, the next resync reads in full");
    assert_eq!(condition(&status, "Ready").status, "True");
}

#[tokio::test]
async fn profile_deleted_outside_is_created_again() {
    let mut object = resource(true);
    object.status = Some(ready_status("sp-7"));
    let s = Scenario::new(&object);

    s.list().await;
    s.reconcile(&object).await.expect("re-created");
    assert_eq!(
        s.connect.calls(),
        ["ListSecurityProfiles", "SearchSecurityProfiles", "DescribeSecurityProfile", "CreateSecurityProfile"],
        "not listed: DescribeSecurityProfile confirms it is gone"
    );
    assert_eq!(s.written_status().security_profile_id.as_deref(), Some("sp-1"));
    assert_eq!(s.events(), ["Recreating", "Created"]);
}

fn deleting(policy: &str, id: Option<&str>) -> SecurityProfile {
    let mut object = resource(true);
    object.spec.deletion_policy = serde_json::from_value(json!(policy)).unwrap();
    object.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
    object.status = id.map(ready_status);
    object
}

#[tokio::test]
async fn delete_policy_deletes_the_profile_then_releases_the_finalizer() {
    let object = deleting("Delete", Some("sp-7"));
    let s = Scenario::new(&object);
    s.connect.insert("sp-7", &object.spec, owner_tags());

    assert_eq!(s.reconcile(&object).await.expect("deleted"), Action::await_change());
    assert_eq!(s.connect.calls(), ["DescribeSecurityProfile", "DeleteSecurityProfile"], "read, then delete");
    assert!(s.connect.profiles.lock().unwrap().is_empty());
    assert_eq!(s.kube_writes(), [format!("PATCH {}", resource_path())]);
    let patch = s.kube.lock().unwrap().iter().find(|c| c.method == "PATCH").unwrap().body.clone();
    assert_eq!(patch[1], json!({"op": "remove", "path": "/metadata/finalizers/0"}));
    assert_eq!(s.events(), ["Deleted"]);
}

#[tokio::test]
async fn profile_in_use_keeps_the_finalizer_and_says_why() {
    let object = deleting("Delete", Some("sp-7"));
    let s = Scenario::new(&object);
    s.connect.insert("sp-7", &object.spec, owner_tags());
    s.connect.fail_next("DeleteSecurityProfile", ErrorClass::InUse, "ResourceInUseException");

    let err = s.reconcile(&object).await.expect_err("blocked");
    assert_eq!(s.kube_writes(), [format!("PATCH {}/status", resource_path())], "the finalizer stays");
    let synced = condition(&s.written_status(), "Synced").clone();
    assert_eq!(synced.reason, "DeleteBlocked");
    assert!(synced.message.contains("still assigned"), "{}", synced.message);
    assert_ne!(s.requeue_after(&object, &err), Action::await_change(), "retried with backoff");
}

#[tokio::test]
async fn retain_and_never_created_release_without_a_connect_call() {
    for object in [deleting("Retain", Some("sp-7")), deleting("Delete", None)] {
        let s = Scenario::new(&object);
        s.reconcile(&object).await.expect("released");
        assert!(s.connect.calls().is_empty());
        assert_eq!(s.kube_writes(), [format!("PATCH {}", resource_path())]);
    }
}

#[tokio::test]
async fn already_deleted_profile_does_not_block_deletion() {
    let object = deleting("Delete", Some("sp-gone"));
    let s = Scenario::new(&object);
    s.reconcile(&object).await.expect("released");
    assert_eq!(s.connect.calls(), ["DescribeSecurityProfile"], "gone already: nothing to delete");
    assert_eq!(s.kube_writes(), [format!("PATCH {}", resource_path())]);
}

#[tokio::test]
async fn unknown_instance_names_it_and_retries_slowly() {
    let object = resource(true);
    let s = Scenario::new(&object);
    s.connect.fail_next("CreateSecurityProfile", ErrorClass::NotFound, "ResourceNotFoundException");

    let err = s.reconcile(&object).await.expect_err("unknown instance");
    let synced = condition(&s.written_status(), "Synced").clone();
    assert_eq!(synced.reason, "ResourceNotFoundException");
    assert!(synced.message.contains(INSTANCE) && synced.message.contains("eu-west-2"), "{}", synced.message);
    let delay = s.first_retry(&err).expect("retried");
    assert!(delay >= Duration::from_secs(225), "slow retry (300 s ±25%), not the fast backoff: {delay:?}");
}

/// The defect the one error type fixed: a create that meets its own name while Connect's search does
/// not list the profile yet was reported with the terminal reason DuplicateResourceException, and the
/// guard then never retried it although the status said "Retrying with backoff".
#[tokio::test]
async fn name_taken_but_not_yet_searchable_is_retried() {
    let object = resource(true);
    let s = Scenario::new(&object);
    // Our earlier create made the profile; its answer was lost, and search does not list it yet.
    s.connect.insert("sp-1", &object.spec, owner_tags());
    s.connect.not_searchable.lock().unwrap().insert("Agents".into());

    let err = s.reconcile(&object).await.expect_err("not searchable yet");
    let status = s.written_status();
    let synced = condition(&status, "Synced");
    assert_ne!(synced.reason, "DuplicateResourceException", "not reported as the terminal duplicate");
    assert!(synced.message.contains("Retrying with backoff"), "{}", synced.message);
    assert_ne!(s.requeue_after(&object, &err), Action::await_change(), "requeued with backoff");

    // The retry runs (it is not skipped as terminal) and, once search lists the profile, recovers it.
    s.connect.not_searchable.lock().unwrap().clear();
    let mut retried = object.clone();
    retried.status = Some(status);
    s.reconcile(&retried).await.expect("recovered");
    let status = s.written_status();
    assert_eq!(status.security_profile_id.as_deref(), Some("sp-1"));
    assert_eq!(condition(&status, "Ready").status, "True");
    let calls = s.connect.calls();
    assert_eq!(&calls[..2], ["CreateSecurityProfile", "SearchSecurityProfiles"]);
    assert_eq!(&calls[2..4], ["CreateSecurityProfile", "SearchSecurityProfiles"], "the retry called Connect again");
    assert_eq!(s.connect.profiles.lock().unwrap().len(), 1, "no duplicate");
}

// --- Multi-tenancy: InstanceBindings, guarded adoption, safe deletion -------------------------------

/// Asserts a refusal with `reason` that made no Connect call, is not remembered as terminal (a binding
/// change retries it) and is looked at again only slowly (for namespace label changes); returns the
/// Synced message.
async fn refused_without_a_call(s: &Scenario, object: &SecurityProfile, reason: &str) -> String {
    let err = s.reconcile(object).await.expect_err(reason);
    assert!(s.connect.calls().is_empty(), "no Connect call: {:?}", s.connect.calls());
    let synced = condition(&s.written_status(), "Synced").clone();
    assert_eq!(synced.reason, reason, "{}", synced.message);
    assert_eq!(err.retry(), Retry::WhenBindingsChange);
    let delay = s.first_retry(&err).expect("looked at again");
    assert!(delay >= Duration::from_secs(225), "slowly (300 s ±25%): {delay:?}");
    assert!(synced.message.contains("InstanceBinding"), "{}", synced.message);
    synced.message
}

#[tokio::test]
async fn no_binding_is_refused_without_a_call_and_a_new_binding_lifts_it() {
    let object = resource(true);
    let s = Scenario::new(&object);
    s.bind_all(&[]);
    let message = refused_without_a_call(&s, &object, "NoInstanceBinding").await;
    assert!(message.contains(INSTANCE) && message.contains(NS), "names the instance and namespace: {message}");

    // An admin adds a binding (the binding watch requeues the profile): the same generation proceeds.
    s.bind(json!({"instanceId": INSTANCE, "region": "eu-west-2", "namespaceSelector": {"matchLabels": {"team": "a"}}}));
    let mut retried = object.clone();
    retried.status = Some(s.written_status());
    s.reconcile(&retried).await.expect("bound now");
    assert_eq!(s.connect.calls(), ["CreateSecurityProfile"]);
    assert_eq!(condition(&s.written_status(), "Ready").status, "True");
}

#[tokio::test]
async fn a_binding_for_other_namespaces_does_not_apply() {
    let object = resource(true);
    let s = Scenario::new(&object);
    s.bind(json!({"instanceId": INSTANCE, "region": "eu-west-2", "namespaceSelector": {"matchLabels": {"team": "b"}}}));
    refused_without_a_call(&s, &object, "NoInstanceBinding").await;
}

#[tokio::test]
async fn two_bindings_are_ambiguous() {
    let object = resource(true);
    let s = Scenario::new(&object);
    let spec = json!({"instanceId": INSTANCE, "region": "eu-west-2", "namespaceSelector": {}});
    s.bind_all(&[("one", spec.clone()), ("two", spec)]);
    let message = refused_without_a_call(&s, &object, "AmbiguousInstanceBinding").await;
    assert!(message.contains("one") && message.contains("two"), "{message}");
}

#[tokio::test]
async fn region_must_be_the_bindings() {
    let mut object = resource(true);
    object.spec.region = Some("us-west-2".into());
    let s = Scenario::new(&object);
    let message = refused_without_a_call(&s, &object, "RegionNotBound").await;
    assert!(message.contains("us-west-2") && message.contains("eu-west-2"), "{message}");
}

#[tokio::test]
async fn a_denied_permission_is_refused_without_a_call() {
    let object = resource(true);
    let s = Scenario::new(&object);
    s.bind(json!({"instanceId": INSTANCE, "region": "eu-west-2", "namespaceSelector": {},
                  "deniedPermissions": ["OutboundCallAccess", "AccessMetrics"]}));
    let message = refused_without_a_call(&s, &object, "PermissionNotAllowed").await;
    assert!(message.contains("OutboundCallAccess") && !message.contains("AccessMetrics"), "{message}");
}

fn adopting(name: &str) -> SecurityProfile {
    let mut object = resource(true);
    object.spec.security_profile_name = name.into();
    object.metadata.annotations = Some([(ADOPT_ANNOTATION.to_string(), "true".to_string())].into());
    object
}

#[tokio::test]
async fn adoption_needs_allow_adoption() {
    let object = adopting("Agents");
    let s = Scenario::new(&object);
    s.connect.insert("sp-1", &object.spec, BTreeMap::new());
    s.bind(json!({"instanceId": INSTANCE, "region": "eu-west-2", "namespaceSelector": {}}));
    let message = refused_without_a_call(&s, &object, "AdoptionNotAllowed").await;
    assert!(message.contains("allowAdoption"), "{message}");

    s.bind(json!({"instanceId": INSTANCE, "region": "eu-west-2", "namespaceSelector": {}, "allowAdoption": true}));
    let mut retried = object.clone();
    retried.status = Some(s.written_status());
    s.reconcile(&retried).await.expect("adopted");
    assert_eq!(s.written_status().security_profile_id.as_deref(), Some("sp-1"));
    assert!(s.events().contains(&"Adopted".to_string()));
}

#[tokio::test]
async fn a_default_profile_is_never_adopted_without_allow_default_profiles() {
    let object = adopting("Agent");
    let s = Scenario::new(&object);
    s.connect.insert("sp-agent", &object.spec, BTreeMap::new());
    // allowAdoption alone is not enough.
    let message = refused_without_a_call(&s, &object, "AdoptionNotAllowed").await;
    assert!(message.contains("default profile") && message.contains("allowDefaultProfiles"), "{message}");
    assert!(s.connect.profiles.lock().unwrap()["sp-agent"].tags.is_empty(), "never tagged");
}

#[tokio::test]
async fn a_default_profile_in_status_is_not_changed() {
    let mut object = resource(true);
    object.spec.security_profile_name = "Agent".into();
    object.status = Some(ready_status("sp-agent"));
    let s = Scenario::new(&object);
    let mut held = object.spec.clone();
    held.description = Some("what Connect holds".into());
    s.connect.insert("sp-agent", &held, owner_tags());
    s.list().await;
    s.reconcile(&object).await.expect_err("refused");
    assert_eq!(
        s.connect.calls(),
        ["ListSecurityProfiles", "SearchSecurityProfiles", "DescribeSecurityProfile", "ListSecurityProfilePermissions"],
        "read, never written"
    );
    assert_eq!(condition(&s.written_status(), "Synced").reason, "DefaultProfileNotAllowed");
}

#[tokio::test]
async fn deletion_leaves_a_profile_this_resource_does_not_own() {
    // An admin pointed the status at another resource's profile: deleting this resource leaves it.
    let object = deleting("Delete", Some("sp-7"));
    let s = Scenario::new(&object);
    let mut theirs = owner_tags();
    theirs.insert(OWNER_UID_TAG.into(), "another-uid".into());
    s.connect.insert("sp-7", &object.spec, theirs);

    s.reconcile(&object).await.expect("finalizer released");
    assert_eq!(s.connect.calls(), ["DescribeSecurityProfile"], "no DeleteSecurityProfile");
    assert_eq!(s.connect.profiles.lock().unwrap().len(), 1, "the profile stays");
    assert_eq!(s.kube_writes(), [format!("PATCH {}", resource_path())], "the finalizer goes");
    assert_eq!(s.events(), ["DeleteSkipped"]);
}

#[tokio::test]
async fn deletion_targets_the_region_of_the_status_arn_not_the_spec() {
    let mut object = deleting("Delete", Some("sp-7"));
    // The spec now names another Region: the profile is still where its ARN says (eu-west-2).
    object.spec.region = Some("us-east-1".into());
    let s = Scenario::new(&object);
    s.connect.insert("sp-7", &object.spec, owner_tags());
    s.reconcile(&object).await.expect("deleted");
    assert_eq!(s.connect.calls(), ["DescribeSecurityProfile", "DeleteSecurityProfile"]);
    assert_eq!(s.connect.regions(), ["eu-west-2", "eu-west-2"]);
}

#[tokio::test]
async fn region_is_immutable_once_the_profile_exists() {
    let mut object = resource(true);
    object.status = Some(ready_status("sp-1"));
    object.metadata.generation = Some(2);
    let s = Scenario::new(&object);
    s.connect.insert("sp-1", &object.spec, owner_tags());
    // The binding now says us-east-1; the profile lives in eu-west-2.
    s.bind(json!({"instanceId": INSTANCE, "region": "us-east-1", "namespaceSelector": {}}));
    s.reconcile(&object).await.expect_err("refused");
    assert!(s.connect.calls().is_empty());
    let synced = condition(&s.written_status(), "Synced").clone();
    assert_eq!(synced.reason, "ValidationFailed");
    assert!(synced.message.contains("spec.region: is immutable"), "{}", synced.message);
}

#[tokio::test]
async fn the_binding_role_is_assumed_in_a_session_named_after_the_namespace() {
    let object = resource(true);
    let s = Scenario::new(&object);
    let role = "arn:aws:iam::123456789012:role/team-a";
    s.bind(json!({"instanceId": INSTANCE, "region": "eu-west-2", "namespaceSelector": {}, "roleArn": role}));
    s.reconcile(&object).await.expect("created");
    let targets = s.connect.targets.lock().unwrap().clone();
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0].role_arn.as_deref(), Some(role));
    assert_eq!(targets[0].session_name.as_deref(), Some("csp-team-a"));
}

#[tokio::test]
async fn drift_checks_are_background_work_and_user_changes_go_first() {
    // A new resource: its calls are user work.
    let object = resource(true);
    let s = Scenario::new(&object);
    s.reconcile(&object).await.expect("created");
    assert_eq!(s.connect.targets.lock().unwrap()[0].priority, crate::domain::Priority::User);

    // The periodic check of a profile that matched its spec: background.
    let mut ready = resource(true);
    ready.status = Some(ready_status("sp-1"));
    let s = Scenario::new(&ready);
    let mut drifted = ready.spec.clone();
    drifted.description = Some("edited".into());
    s.connect.insert("sp-1", &drifted, owner_tags());
    s.list().await;
    s.reconcile(&ready).await.expect("repaired");
    let targets = s.connect.targets.lock().unwrap().clone();
    assert!(targets.iter().all(|t| t.priority == crate::domain::Priority::Background), "{targets:?}");

    // A spec change of the same resource: user work again.
    let mut changed = ready.clone();
    changed.metadata.generation = Some(2);
    let s = Scenario::new(&changed);
    s.connect.insert("sp-1", &ready.spec, owner_tags());
    s.reconcile(&changed).await.expect("updated");
    assert!(s.connect.targets.lock().unwrap().iter().all(|t| t.priority == crate::domain::Priority::User));
}

#[tokio::test]
async fn a_create_costs_one_call_and_the_first_listing_records_what_connect_holds() {
    let object = resource(true);
    let s = Scenario::new(&object);
    s.reconcile(&object).await.expect("created");
    let status = s.written_status();
    assert_eq!(status.connect_last_modified_time, None, "not known from the create's answer");

    // The instance's next listing shows it as created: requeued once, to record the baseline.
    assert_eq!(s.list().await, [NAME]);
    let mut created = object.clone();
    created.status = Some(status);
    s.reconcile(&created).await.expect("baseline");
    assert_eq!(
        s.connect.calls(),
        ["CreateSecurityProfile", "ListSecurityProfiles", "SearchSecurityProfiles"],
        "no read of the new profile: the create and the listing say what Connect holds"
    );
    assert_eq!(s.written_status().connect_last_modified_time.as_deref(), Some("2026-11-01T00:00:00Z"));

    // From then on a listing that shows nothing new requeues nothing.
    let mut recorded = object.clone();
    recorded.status = Some(s.written_status());
    s.reconcile(&recorded).await.expect("in sync");
    assert!(s.list().await.is_empty());
}

#[tokio::test]
async fn a_listing_requeues_only_the_profiles_that_changed() {
    let mut object = resource(true);
    object.status = Some(ready_status("sp-7"));
    let s = Scenario::new(&object);
    s.connect.insert("sp-7", &object.spec, owner_tags());
    s.list().await;
    s.reconcile(&object).await.expect("watched");
    assert!(s.list().await.is_empty(), "unchanged: nothing requeued");

    // A tag added by another tool (no LastModifiedTime change): the search shows it.
    s.connect.profiles.lock().unwrap().get_mut("sp-7").unwrap().tags.insert("cost-center".into(), "42".into());
    assert_eq!(s.list().await, [NAME]);
    // Deleted in the console: requeued too.
    s.connect.profiles.lock().unwrap().clear();
    assert_eq!(s.list().await, [NAME]);
}

/// Drift found by events (reconcile/events_queue.rs): a CloudTrail event names a profile whose
/// instance listing still shows it unchanged; its reconcile reads it in full and repairs it, once.
#[tokio::test]
async fn a_profile_an_event_names_is_read_in_full_although_the_listing_shows_it_unchanged() {
    let mut object = resource(true);
    object.status = Some(ready_status("sp-7"));
    let s = Scenario::new(&object);
    s.connect.insert("sp-7", &object.spec, owner_tags());
    s.list().await;
    s.reconcile(&object).await.expect("watched");
    assert_eq!(s.connect.calls().len(), 2, "the listing's calls only");

    // Edited in the console after the listing: the listing cannot tell, a reconcile costs no call.
    let mut changed = object.spec.clone();
    changed.description = Some("edited in the console".into());
    s.connect.insert("sp-7", &changed, owner_tags());
    s.connect.profiles.lock().unwrap().get_mut("sp-7").unwrap().last_modified = Some("2026-11-02T00:00:00Z".into());
    s.reconcile(&object).await.expect("in sync as far as the listing knows");
    assert_eq!(s.connect.calls().len(), 2);

    // The event: the profile is marked and requeued; an event about a profile nobody holds does nothing.
    assert!(s.ctx.observations.mark_changed(Some(INSTANCE), "sp-unknown").is_empty());
    let requeued = s.ctx.observations.mark_changed(Some(INSTANCE), "sp-7");
    assert_eq!(requeued.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), [NAME]);
    s.ctx.requeue_observed(requeued);
    s.reconcile(&object).await.expect("repaired");
    assert_eq!(
        s.connect.calls()[2..],
        ["DescribeSecurityProfile", "ListSecurityProfilePermissions", "UpdateSecurityProfile"],
        "read in full, as when a listing shows a moved LastModifiedTime, then repaired"
    );
    assert_eq!(s.events(), ["DriftRepaired"]);
}

fn observing(object: &mut SecurityProfile) {
    object.spec.management_policy = Some(crate::api::ManagementPolicy::Observe);
}

#[tokio::test]
async fn observe_finds_by_name_reads_in_full_and_writes_nothing() {
    let mut object = resource(true);
    observing(&mut object);
    let s = Scenario::new(&object);
    // A profile no resource owns, differing from the spec in its description and a tag.
    let mut held = object.spec.clone();
    held.description = Some("from the console".into());
    s.connect.insert("sp-9", &held, BTreeMap::from([("team".into(), "ops".into())]));

    s.reconcile(&object).await.expect("observed");
    let calls = s.connect.calls();
    assert_eq!(calls, ["SearchSecurityProfiles", "DescribeSecurityProfile", "ListSecurityProfilePermissions"]);
    let status = s.written_status();
    assert_eq!(status.security_profile_id.as_deref(), Some("sp-9"));
    assert_eq!(status.diff_count, Some(2));
    let fields: Vec<&str> = status.diff.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(fields, ["description", "tags[team]"], "the owner tag is not expected in Observe");
    let in_sync = condition(&status, "InSync");
    assert_eq!((in_sync.status.as_str(), in_sync.reason.as_str()), ("False", "Drifted"));
    assert_eq!(condition(&status, "Ready").reason, "Drifted");
    assert!(!s.connect.profiles.lock().unwrap()["sp-9"].tags.contains_key(OWNER_UID_TAG), "never tagged");
}

#[tokio::test]
async fn observe_never_creates_and_deleting_only_releases_the_finalizer() {
    let mut object = resource(true);
    observing(&mut object);
    let s = Scenario::new(&object);
    let err = s.reconcile(&object).await.expect_err("nothing to observe");
    assert_eq!(s.connect.calls(), ["SearchSecurityProfiles"], "no create");
    assert_eq!(condition(&s.written_status(), "Synced").reason, "ProfileNotFound");
    assert_eq!(err.retry(), Retry::Slowly);

    let mut gone = deleting("Delete", Some("sp-7"));
    observing(&mut gone);
    let s = Scenario::new(&gone);
    s.connect.insert("sp-7", &gone.spec, owner_tags());
    s.reconcile(&gone).await.expect("released");
    assert!(s.connect.calls().is_empty(), "Observe never deletes: {:?}", s.connect.calls());
    assert_eq!(s.connect.profiles.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn switching_to_manage_takes_an_unowned_profile_only_under_the_adoption_rules() {
    // Observed before: the status names a profile no resource owns.
    let mut object = resource(true);
    object.status = Some(ready_status("sp-9"));
    object.metadata.generation = Some(2);
    let s = Scenario::new(&object);
    let mut held = object.spec.clone();
    held.description = Some("from the console".into());
    s.connect.insert("sp-9", &held, BTreeMap::from([("team".into(), "support".into())]));
    s.bind(json!({"instanceId": INSTANCE, "region": "eu-west-2", "namespaceSelector": {}}));
    s.reconcile(&object).await.expect_err("refused");
    assert_eq!(condition(&s.written_status(), "Synced").reason, "AdoptionNotAllowed");
    assert!(!s.connect.calls().iter().any(|c| c == "UpdateSecurityProfile" || c == "TagResource"));

    s.bind(json!({"instanceId": INSTANCE, "region": "eu-west-2", "namespaceSelector": {}, "allowAdoption": true}));
    let mut retried = object.clone();
    retried.status = Some(s.written_status());
    s.reconcile(&retried).await.expect("managed");
    let calls = s.connect.calls();
    let writes: Vec<&String> = calls.iter().filter(|c| *c == "TagResource" || *c == "UpdateSecurityProfile").collect();
    assert_eq!(writes, ["TagResource", "UpdateSecurityProfile"], "the owner tag first, then the spec");
    assert_eq!(s.events().last().map(String::as_str), Some("DriftRepaired"), "the Event names what changed");
}

/// The controller's housekeeping task (`controller::forget_expired_statuses_periodically`, spawned by
/// `controller::run`) keeps a written status's copy for its TTL and drops it after, with no reconcile
/// in between: an idle operator holds no copy of any status.
#[tokio::test(start_paused = true)]
async fn the_housekeeping_task_forgets_a_written_status_after_its_ttl_without_a_reconcile() {
    let object = resource(false);
    let s = Scenario::new(&object);
    s.reconcile(&object).await.expect("reconcile succeeds");
    let remembered = |s: &Scenario| s.ctx.last_status.lock().unwrap().len();
    assert_eq!(remembered(&s), 1, "the written status is remembered");
    let task = tokio::spawn(super::controller::forget_expired_statuses_periodically(s.ctx.clone()));
    // The task's first run (at once) keeps the fresh copy: the watch cache may still lag.
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(remembered(&s), 1, "kept while the watch cache may lag");
    // The copy ages past its TTL (its clock is std's, which paused tokio time does not move) and the
    // task's next run, one TTL later, drops it.
    for (_, at) in s.ctx.last_status.lock().unwrap().values_mut() {
        *at -= super::context::LAST_STATUS_TTL;
    }
    assert_eq!(remembered(&s), 1, "nothing but the task drops it");
    tokio::time::sleep(super::context::LAST_STATUS_TTL).await;
    assert_eq!(remembered(&s), 0, "an idle operator keeps no copy");
    task.abort();
}

// --- Tenancy in depth (issue 20): each test is one finding of the security review. ---

/// An in-sync profile whose next observation is not due for a while (as after a successful reconcile).
fn in_sync_not_due(s: &Scenario, object: &SecurityProfile) {
    let due = std::time::Instant::now() + Duration::from_secs(600);
    s.ctx.next_observe.lock().unwrap().insert(context::key(&object.metadata), due);
}

fn bound(extra: Value) -> Value {
    let mut spec = json!({"instanceId": INSTANCE, "region": "eu-west-2", "namespaces": [NS]});
    spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    spec
}

/// Finding 3: a tightened binding used to change nothing until the profile's next resync (the guard
/// skipped the reconcile the binding watch requeued). Now the guardrails are checked first, for free.
#[tokio::test]
async fn a_tightened_allow_list_revokes_an_in_sync_profile_at_once_without_a_call() {
    let mut object = resource(true);
    object.status = Some(ready_status("sp-1"));
    let s = Scenario::new(&object);
    s.connect.insert("sp-1", &object.spec, owner_tags());
    in_sync_not_due(&s, &object);
    s.bind(bound(json!({"allowedPermissions": ["BasicAgentAccess"]})));

    let err = s.reconcile(&object).await.expect_err("revoked");
    assert!(s.connect.calls().is_empty(), "Report changes nothing in Connect: {:?}", s.connect.calls());
    let status = s.written_status();
    assert_eq!(condition(&status, "Ready").reason, "PermissionRevoked");
    assert_eq!(condition(&status, "Ready").status, "False");
    let message = &condition(&status, "Synced").message;
    assert!(message.contains("OutboundCallAccess") && message.contains("team-a"), "{message}");
    assert!(s.events().contains(&"PermissionRevoked".to_string()), "{:?}", s.events());
    assert!(s.ctx.metrics.render().contains("connect_operator_revoked_profiles 1\n"));
    assert_eq!(err.retry(), Retry::WhenBindingsChange);

    // The admin allows it again: the profile is back, the metric falls.
    s.bind(bound(json!({"allowedPermissions": ["BasicAgentAccess", "Outbound*"]})));
    let mut retried = object.clone();
    retried.status = Some(s.written_status());
    s.reconcile(&retried).await.expect("allowed again");
    assert!(s.ctx.metrics.render().contains("connect_operator_revoked_profiles 0\n"));
}

/// onRevoke: Enforce removes exactly what the binding no longer allows, and says so.
#[tokio::test]
async fn enforce_removes_exactly_the_revoked_permission_from_connect() {
    let mut object = resource(true);
    object.status = Some(ready_status("sp-1"));
    let s = Scenario::new(&object);
    s.connect.insert("sp-1", &object.spec, owner_tags());
    in_sync_not_due(&s, &object);
    s.bind(bound(json!({"allowedPermissions": ["BasicAgentAccess"], "onRevoke": "Enforce"})));

    s.reconcile(&object).await.expect_err("revoked, enforced");
    let writes: Vec<String> =
        s.connect.calls().into_iter().filter(|c| !c.starts_with("Describe") && !c.starts_with("List")).collect();
    assert_eq!(writes, ["UpdateSecurityProfile"], "one update, no tag change");
    let updates = s.connect.updates.lock().unwrap().clone();
    let only_permissions =
        ProfileUpdate { permissions: Some(vec!["BasicAgentAccess".to_string()]), ..ProfileUpdate::default() };
    assert_eq!(updates, [only_permissions], "exactly the revoked permission goes; nothing else changes");
    let status = s.written_status();
    assert_eq!(condition(&status, "Ready").reason, "PermissionRevoked");
    assert!(condition(&status, "Synced").message.contains("removed them from the profile in Connect"));
    assert!(s.events().contains(&"RevocationEnforced".to_string()), "{:?}", s.events());
}

/// Finding 2: the deny-list was exact: case variants and application permissions went through.
#[tokio::test]
async fn case_variants_and_application_permissions_do_not_slip_past_the_guardrails() {
    let mut object = resource(true);
    object.spec.permissions = Some(vec!["BasicAgentAccess".into(), "outboundcallaccess".into()]);
    object.spec.applications = Some(vec![
        serde_json::from_value(json!({"namespace": "crm", "applicationPermissions": ["ACCESS", "Admin.Everything"]}))
            .unwrap(),
    ]);
    let s = Scenario::new(&object);
    s.bind(bound(json!({"deniedPermissions": ["OutboundCallAccess"], "allowedPermissions": ["BasicAgent*", "outbound*", "access"]})));
    let message = refused_without_a_call(&s, &object, "PermissionNotAllowed").await;
    assert!(message.contains("outboundcallaccess"), "the deny-list wins over the allow-list: {message}");
    assert!(message.contains("crm: Admin.Everything") && !message.contains("crm: ACCESS"), "{message}");
}

/// Finding 1: a namespace joins a selector by its labels; a binding that names its namespaces cannot be
/// joined that way.
#[tokio::test]
async fn labels_do_not_join_a_binding_that_names_its_namespaces() {
    let object = resource(true);
    let s = Scenario::new(&object);
    // The namespace carries team=a (see mock_kube), but the binding names another namespace.
    s.bind(json!({"instanceId": INSTANCE, "region": "eu-west-2", "namespaces": ["team-a-prod"]}));
    refused_without_a_call(&s, &object, "NoInstanceBinding").await;
}

/// Finding 3, deletion: a deleted binding used to strand every finalizer of the profiles it bound.
#[tokio::test]
async fn deleting_a_binding_never_strands_a_finalizer() {
    let object = deleting("Delete", Some("sp-7"));
    let s = Scenario::new(&object);
    s.connect.insert("sp-7", &object.spec, owner_tags());
    s.bind_all(&[]);
    s.reconcile(&object).await.expect("released");
    assert!(s.connect.calls().is_empty(), "nothing to call Connect with: {:?}", s.connect.calls());
    assert_eq!(s.kube_writes(), [format!("PATCH {}", resource_path())], "the finalizer goes");
    assert_eq!(s.events(), ["Retained"]);
    assert_eq!(s.connect.profiles.lock().unwrap().len(), 1, "retained in Connect");

    // A live profile whose binding went reports it, distinctly.
    let mut live = resource(true);
    live.status = Some(ready_status("sp-7"));
    let s = Scenario::new(&live);
    s.bind_all(&[]);
    s.reconcile(&live).await.expect_err("no binding any more");
    assert_eq!(condition(&s.written_status(), "Ready").reason, "BindingRevoked");
    assert!(s.connect.calls().is_empty());
}

/// Finding 4: allowAdoption opened every unowned profile, and an adopted profile was deleted with its
/// resource.
#[tokio::test]
async fn adoption_by_name_and_an_adopted_profile_is_retained_by_default() {
    let object = adopting("Agents");
    let s = Scenario::new(&object);
    s.connect.insert("sp-1", &object.spec, BTreeMap::new());
    s.bind(bound(json!({"allowAdoption": ["team-a-*"]})));
    let message = refused_without_a_call(&s, &object, "AdoptionNotAllowed").await;
    assert!(message.contains("\"Agents\""), "{message}");

    let object = adopting("team-a-agents");
    let s = Scenario::new(&object);
    s.connect.insert("sp-2", &object.spec, BTreeMap::new());
    s.bind(bound(json!({"allowAdoption": ["team-a-*"]})));
    s.reconcile(&object).await.expect("adopted");
    let status = s.written_status();
    assert_eq!(status.adopted, Some(true));

    let mut gone = object.clone();
    gone.status = Some(status);
    gone.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
    let s = Scenario::new(&gone);
    s.connect.insert("sp-2", &gone.spec, owner_tags());
    s.reconcile(&gone).await.expect("released");
    assert!(s.connect.calls().is_empty(), "adopted: retained unless the spec says Delete");

    gone.spec.deletion_policy = Some(crate::api::DeletionPolicy::Delete);
    let s = Scenario::new(&gone);
    s.connect.insert("sp-2", &gone.spec, owner_tags());
    s.reconcile(&gone).await.expect("deleted");
    assert_eq!(s.connect.calls(), ["DescribeSecurityProfile", "DeleteSecurityProfile"]);
}

/// Lower finding: --allow-unbound acted on instances that bindings name.
#[tokio::test]
async fn unbound_mode_refuses_an_instance_that_a_binding_names() {
    let object = resource(true);
    let s = Scenario::with_settings(&object, |s| s.allow_unbound = true);
    s.bind(json!({"instanceId": INSTANCE, "region": "eu-west-2", "namespaces": ["team-b"]}));
    let message = refused_without_a_call(&s, &object, "InstanceBoundElsewhere").await;
    assert!(message.contains("team-a"), "{message}");

    s.bind_all(&[]);
    s.reconcile(&object).await.expect("no binding names it: single-team mode acts");
    assert_eq!(s.connect.calls(), ["CreateSecurityProfile"]);
}

/// Lower finding: bindings accepted any role in any account.
#[tokio::test]
async fn a_role_outside_allowed_role_arns_binds_nothing() {
    let object = resource(true);
    let s = Scenario::with_settings(&object, |s| {
        s.allowed_role_arns = vec!["arn:aws:iam::111122223333:role/connect-*".into()];
    });
    s.bind(bound(json!({"roleArn": "arn:aws:iam::999999999999:role/connect-team-a"})));
    let message = refused_without_a_call(&s, &object, "RoleNotAllowed").await;
    assert!(message.contains("999999999999"), "{message}");

    s.bind(bound(json!({"roleArn": "arn:aws:iam::111122223333:role/connect-team-a"})));
    s.reconcile(&object).await.expect("allowed role");
    let target = s.connect.targets.lock().unwrap()[0].clone();
    assert_eq!(target.session_tags, [("binding".to_string(), "team-a".to_string()), ("namespace".into(), NS.into())]);
}

/// Lower finding: Observe read any profile, another team's and the default ones, into status.diff.
#[tokio::test]
async fn observe_honours_ownership_unless_the_binding_opts_in() {
    let mut object = resource(true);
    observing(&mut object);
    let s = Scenario::new(&object);
    let theirs = BTreeMap::from([(OWNER_UID_TAG.to_string(), "another-uid".to_string())]);
    s.connect.insert("sp-9", &object.spec, theirs.clone());
    s.bind(bound(json!({})));
    s.reconcile(&object).await.expect_err("another resource's profile");
    let status = s.written_status();
    assert_eq!(condition(&status, "Synced").reason, "ProfileOwnedElsewhere");
    assert!(status.security_profile_id.is_none() && status.diff.is_empty(), "nothing of it is recorded");

    let s = Scenario::new(&object);
    s.connect.insert("sp-9", &object.spec, theirs);
    s.bind(bound(json!({"observeAnyProfile": true})));
    s.reconcile(&object).await.expect("opted in");
    assert_eq!(s.written_status().security_profile_id.as_deref(), Some("sp-9"));
}

/// Lower finding: RegionChanged stayed terminal after an admin fixed the binding.
#[tokio::test]
async fn region_changed_is_retried_when_bindings_change() {
    let e = Error::RegionChanged { id: "sp-1".into(), profile_region: "eu-west-2".into(), region: "us-east-1".into() };
    assert_eq!(e.retry(), Retry::WhenBindingsChange);
}

/// A spec change whose update failed is applied on the retry: the failed attempt's status names the
/// new generation, but only Synced True says it was applied, so the retry reads the members in full
/// (before, it read DescribeSecurityProfile alone, which has no permissions, and reported Ready).
#[tokio::test]
async fn a_permission_change_whose_update_failed_is_applied_on_the_retry() {
    let mut object = resource(true);
    object.status = Some(ready_status("sp-1"));
    let s = Scenario::new(&object);
    s.connect.insert("sp-1", &object.spec, owner_tags());
    object.metadata.generation = Some(2);
    object.spec.permissions = Some(vec!["BasicAgentAccess".into()]);
    s.connect.fail_next("UpdateSecurityProfile", ErrorClass::Recoverable, "ThrottlingException");
    s.reconcile(&object).await.expect_err("throttled");
    let mut retried = object.clone();
    retried.status = Some(s.written_status());
    assert_eq!(retried.status.as_ref().unwrap().observed_generation, Some(2), "the failure names generation 2");
    s.reconcile(&retried).await.expect("applied");
    let updates = s.connect.updates.lock().unwrap().clone();
    assert_eq!(updates.last().and_then(|u| u.permissions.clone()), Some(vec!["BasicAgentAccess".to_string()]));
}

/// The paused annotation: no Connect call, a condition that says so; removing it resumes.
#[tokio::test]
async fn a_paused_resource_costs_no_call_and_says_so() {
    let mut object = resource(true);
    object.metadata.annotations = Some([(crate::api::PAUSED_ANNOTATION.to_string(), "true".to_string())].into());
    let s = Scenario::new(&object);
    assert_eq!(s.reconcile(&object).await.expect("paused"), Action::await_change());
    assert!(s.connect.calls().is_empty());
    let synced = condition(&s.written_status(), "Synced").clone();
    assert_eq!((synced.status.as_str(), synced.reason.as_str()), ("False", "ReconcilePaused"));
    assert!(synced.message.contains("Remove the annotation to resume"), "{}", synced.message);

    object.metadata.annotations = None;
    object.status = Some(s.written_status());
    s.reconcile(&object).await.expect("resumed");
    assert_eq!(s.connect.calls(), ["CreateSecurityProfile"]);
}

/// The reconcile-requested-at annotation: an in-sync profile not due for hours is read now, once per
/// value, and the status records the value handled.
#[tokio::test]
async fn a_requested_reconcile_reads_the_profile_now_once_per_value() {
    let mut object = resource(true);
    object.status = Some(ready_status("sp-1"));
    let s = Scenario::new(&object);
    s.connect.insert("sp-1", &object.spec, owner_tags());
    in_sync_not_due(&s, &object);
    s.reconcile(&object).await.expect("not due");
    assert!(s.connect.calls().is_empty(), "not due: no call");

    let value = "2026-12-04T18:00:00Z".to_string();
    object.metadata.annotations =
        Some([(crate::api::RECONCILE_REQUESTED_ANNOTATION.to_string(), value.clone())].into());
    s.reconcile(&object).await.expect("requested");
    assert_eq!(s.connect.calls(), ["DescribeSecurityProfile"], "read now, at user priority");
    let status = s.written_status();
    assert_eq!(status.last_handled_reconcile_at.as_deref(), Some(value.as_str()));

    object.status = Some(status);
    in_sync_not_due(&s, &object);
    s.reconcile(&object).await.expect("handled already");
    assert_eq!(s.connect.calls().len(), 1, "the same value is not handled twice");
}
