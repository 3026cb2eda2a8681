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

use super::*;
use crate::api::SecurityProfileSpec;
use crate::connect::ObservedProfile;
use crate::reconcile::plan::{ProfileState, ProfileUpdate};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

const NS: &str = "team-a";
const NAME: &str = "agents";
const UID: &str = "0b5e2c6e-1111-4c1e-9a57-000000000001";
const INSTANCE: &str = "11111111-2222-3333-4444-555555555555";

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

/// An in-memory Connect instance that records each call by its API operation name.
#[derive(Default)]
struct FakeConnect {
    profiles: Mutex<BTreeMap<String, ObservedProfile>>,
    calls: Mutex<Vec<String>>,
    updates: Mutex<Vec<ProfileUpdate>>,
    /// The next call of this operation fails with this error.
    fail_next: Mutex<BTreeMap<&'static str, ConnectError>>,
    /// The next create makes the profile, then its answer is lost.
    lose_next_create: Mutex<bool>,
}

impl FakeConnect {
    fn call(&self, operation: &'static str) -> Result<(), ConnectError> {
        self.calls.lock().unwrap().push(operation.to_string());
        match self.fail_next.lock().unwrap().remove(operation) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn fail_next(&self, operation: &'static str, class: ErrorClass, code: &str) {
        self.fail_next.lock().unwrap().insert(operation, ConnectError::new(class, code, format!("injected {code}")));
    }

    /// The next call of this operation fails as a dropped connection would: it may have taken effect.
    fn fail_next_with_unknown_outcome(&self, operation: &'static str) {
        self.fail_next.lock().unwrap().insert(operation, connection_lost());
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn insert(&self, id: &str, spec: &SecurityProfileSpec, tags: BTreeMap<String, String>) {
        let profile = ObservedProfile {
            name: spec.security_profile_name.clone(),
            arn: arn(id),
            last_modified: Some("2026-11-01T00:00:00Z".into()),
            tags,
            state: ProfileState::desired(spec),
        };
        self.profiles.lock().unwrap().insert(id.to_string(), profile);
    }
}

fn arn(id: &str) -> String {
    format!("arn:aws:connect:eu-west-2:123456789012:instance/{INSTANCE}/security-profile/{id}")
}

/// The error of a call whose connection dropped after the request was sent.
fn connection_lost() -> ConnectError {
    let lost = ConnectError::new(ErrorClass::Recoverable, "ConnectionFailure", "connection closed");
    ConnectError { outcome_unknown: true, ..lost }
}

fn not_found_error(what: &str) -> ConnectError {
    ConnectError::new(ErrorClass::NotFound, "ResourceNotFoundException", format!("{what} not found"))
}

impl ConnectApi for FakeConnect {
    async fn create_profile(
        &self,
        _: &Target,
        spec: &SecurityProfileSpec,
        tags: &BTreeMap<String, String>,
    ) -> Result<ProfileRef, ConnectError> {
        self.call("CreateSecurityProfile")?;
        if self.profiles.lock().unwrap().values().any(|p| p.name == spec.security_profile_name) {
            return Err(ConnectError::new(ErrorClass::Duplicate, "DuplicateResourceException", "name taken"));
        }
        let id = format!("sp-{}", self.profiles.lock().unwrap().len() + 1);
        self.insert(&id, spec, tags.clone());
        if std::mem::take(&mut *self.lose_next_create.lock().unwrap()) {
            return Err(connection_lost());
        }
        Ok(ProfileRef { id: id.clone(), arn: arn(&id) })
    }

    async fn find_profile_by_name(&self, _: &Target, name: &str) -> Result<Option<FoundProfile>, ConnectError> {
        self.call("SearchSecurityProfiles")?;
        Ok(self.profiles.lock().unwrap().iter().find(|(_, p)| p.name == name).map(|(id, p)| FoundProfile {
            profile: ProfileRef { id: id.clone(), arn: p.arn.clone() },
            tags: p.tags.clone(),
        }))
    }

    async fn delete_profile(&self, _: &Target, id: &str) -> Result<(), ConnectError> {
        self.call("DeleteSecurityProfile")?;
        self.profiles.lock().unwrap().remove(id).map(|_| ()).ok_or_else(|| not_found_error(id))
    }

    async fn observe_profile(&self, _: &Target, id: &str, read_members: bool) -> Result<ObservedProfile, ConnectError> {
        self.call("DescribeSecurityProfile")?;
        let mut found = self.profiles.lock().unwrap().get(id).cloned().ok_or_else(|| not_found_error(id))?;
        if read_members {
            self.call("ListSecurityProfilePermissions")?;
        } else {
            found.state.listed = None;
        }
        Ok(found)
    }

    async fn update_profile(&self, _: &Target, _: &str, update: &ProfileUpdate) -> Result<(), ConnectError> {
        self.call("UpdateSecurityProfile")?;
        self.updates.lock().unwrap().push(update.clone());
        Ok(())
    }

    async fn tag_profile(&self, _: &Target, _: &str, _: &BTreeMap<String, String>) -> Result<(), ConnectError> {
        self.call("TagResource")
    }

    async fn untag_profile(&self, _: &Target, _: &str, _: &[String]) -> Result<(), ConnectError> {
        self.call("UntagResource")
    }
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
    BTreeMap::from([("team".into(), "support".into()), (OWNER_UID_TAG.into(), UID.into())])
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
}

impl Scenario {
    fn new(object: &SecurityProfile) -> Self {
        let (client, kube) = mock_kube(object);
        let connect = Arc::new(FakeConnect::default());
        let settings = Settings { retry_base: Duration::from_millis(100), ..Settings::default() };
        let ctx = Context::new(client, connect.clone(), Some("eu-west-2".into()), settings, Arc::default());
        Self { ctx: Arc::new(ctx), connect, kube }
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
    format!("/apis/connect.cloud-operators.dev/v1alpha1/namespaces/{NS}/securityprofiles/{NAME}")
}

fn condition<'a>(s: &'a SecurityProfileStatus, type_: &str) -> &'a Condition {
    s.conditions.iter().find(|c| c.type_ == type_).expect("condition present")
}

/// The context owns its Connect client; the test keeps a handle on the same fake.
impl ConnectApi for Arc<FakeConnect> {
    async fn create_profile(
        &self,
        t: &Target,
        s: &SecurityProfileSpec,
        tags: &BTreeMap<String, String>,
    ) -> Result<ProfileRef, ConnectError> {
        self.as_ref().create_profile(t, s, tags).await
    }
    async fn find_profile_by_name(&self, t: &Target, n: &str) -> Result<Option<FoundProfile>, ConnectError> {
        self.as_ref().find_profile_by_name(t, n).await
    }
    async fn delete_profile(&self, t: &Target, id: &str) -> Result<(), ConnectError> {
        self.as_ref().delete_profile(t, id).await
    }
    async fn observe_profile(&self, t: &Target, id: &str, m: bool) -> Result<ObservedProfile, ConnectError> {
        self.as_ref().observe_profile(t, id, m).await
    }
    async fn update_profile(&self, t: &Target, id: &str, u: &ProfileUpdate) -> Result<(), ConnectError> {
        self.as_ref().update_profile(t, id, u).await
    }
    async fn tag_profile(&self, t: &Target, a: &str, tags: &BTreeMap<String, String>) -> Result<(), ConnectError> {
        self.as_ref().tag_profile(t, a, tags).await
    }
    async fn untag_profile(&self, t: &Target, a: &str, k: &[String]) -> Result<(), ConnectError> {
        self.as_ref().untag_profile(t, a, k).await
    }
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
    assert_eq!(s.kube_writes(), [format!("PATCH {path}"), format!("PATCH {path}/status")]);
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
    assert_ne!(action, Action::await_change(), "a created profile is re-observed after the resync interval");
}

#[tokio::test]
async fn in_sync_profile_costs_one_describe_and_no_write() {
    let mut object = resource(true);
    object.status = Some(ready_status("sp-7"));
    let s = Scenario::new(&object);
    s.connect.insert("sp-7", &object.spec, owner_tags());

    s.reconcile(&object).await.expect("first reconcile");
    assert_eq!(s.connect.calls(), ["DescribeSecurityProfile"], "unchanged LastModifiedTime: no List* reads");
    assert!(s.kube_writes().is_empty(), "no status write when nothing but timestamps would change");

    // A metadata-only trigger (label, annotation) before the resync is due costs no Connect call.
    s.reconcile(&object).await.expect("second reconcile");
    assert_eq!(s.connect.calls(), ["DescribeSecurityProfile"]);
    assert!(s.kube_writes().is_empty());
    assert!(s.events().is_empty());
}

#[tokio::test]
async fn cel_only_rule_is_terminal_without_connect_call() {
    let mut object = resource(true);
    object.spec.tags = Some(BTreeMap::from([("aws:team".into(), "x".into())]));
    let s = Scenario::new(&object);

    let err = s.reconcile(&object).await.expect_err("invalid spec");
    assert!(matches!(err, Error::Invalid(_)), "{err}");
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

    s.reconcile(&object).await.expect("repaired");
    assert_eq!(
        s.connect.calls(),
        [
            "DescribeSecurityProfile",
            "DescribeSecurityProfile",
            "ListSecurityProfilePermissions",
            "UpdateSecurityProfile"
        ],
        "a moved LastModifiedTime triggers a full read, then one update"
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

    s.reconcile(&object).await.expect("re-created");
    assert_eq!(s.connect.calls(), ["DescribeSecurityProfile", "CreateSecurityProfile"]);
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
    assert_eq!(s.connect.calls(), ["DeleteSecurityProfile"]);
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
    assert_eq!(s.connect.calls(), ["DeleteSecurityProfile"]);
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
