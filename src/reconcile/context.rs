//! What every reconcile shares: the clients, the tunables, and the small per-object memories that save
//! Connect calls (when each profile is next due, which failures are terminal for which generation, the
//! freshest status this process wrote).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::{self, Store, store::Writer};

use super::events_queue::QueueState;
use crate::api::{InstanceBinding, SecurityProfileStatus};
use crate::runtime::Metrics;

/// How long the status this process wrote stands in for the watch cache's copy.
pub const LAST_STATUS_TTL: Duration = Duration::from_secs(30);

/// Field manager of the operator's writes.
pub const MANAGER: &str = "connect-operator";

/// Tunables of the controller.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Re-observe every profile this often (drift repair), with ±10% jitter.
    pub resync: Duration,
    /// First retry delay of a recoverable error; doubles per failure, with jitter.
    pub retry_base: Duration,
    /// Cap of the recoverable backoff.
    pub retry_max: Duration,
    /// Delay of quota and unknown-instance retries.
    pub slow_retry: Duration,
    /// Reconciles in parallel.
    pub concurrency: u16,
    /// How often each instance is listed (instance-level observation).
    pub observe_interval: Duration,
    /// Every how many listings one also reads descriptions and tags (SearchSecurityProfiles).
    pub search_every: u32,
    /// Every SecurityProfile is treated as managementPolicy Observe: nothing is ever written to Connect.
    pub observe_only: bool,
    /// Single-team mode: a SecurityProfile that no InstanceBinding covers is still acted on, in its
    /// spec's Region (else the operator's) with the operator's own identity.
    pub allow_unbound: bool,
    /// Role ARN patterns (`*` matches any run of characters) that InstanceBindings may name; empty: any.
    pub allowed_role_arns: Vec<String>,
    /// The namespaces this operator watches (`--namespace`); empty: all.
    pub watched_namespaces: Vec<String>,
    /// The SQS queue of Connect's CloudTrail events (`--events-queue-url`, see
    /// [`super::events_queue`]); None: drift is found by the instance listings alone.
    pub events_queue_url: Option<String>,
    /// How often each instance is listed while the events queue is read (the safety net).
    pub events_observe_interval: Duration,
}

impl Settings {
    /// Whether a binding may name `role` (`--allowed-role-arns`).
    pub fn role_allowed(&self, role: &str) -> bool {
        self.allowed_role_arns.is_empty() || self.allowed_role_arns.iter().any(|p| glob_matches(p, role))
    }
}

/// `*` in `pattern` matches any run of characters; everything else matches itself.
fn glob_matches(pattern: &str, value: &str) -> bool {
    let parts: Vec<String> = pattern.split('*').map(regex::escape).collect();
    regex::Regex::new(&format!("^{}$", parts.join(".*"))).is_ok_and(|r| r.is_match(value))
}

/// The defaults, once: `connect-operator run`'s flags take theirs from these (src/cli.rs), and
/// [`Settings::default`] is built from them, so the binary and the tests cannot disagree. Durations are
/// written as the flags spell them (their `--help` shows them).
impl Settings {
    pub const DEFAULT_RESYNC: &str = "10m";
    pub const DEFAULT_RETRY_BASE: &str = "2s";
    pub const DEFAULT_RETRY_MAX: &str = "5m";
    pub const DEFAULT_SLOW_RETRY: &str = "5m";
    /// Reconciles in flight. Most of them wait in the rate limiter, which serves tenants round-robin:
    /// the limit must exceed a team's rollout for another team's resource to reach the limiter (and its
    /// turn) at once instead of queueing behind the rollout in the controller. A waiting reconcile costs
    /// a few kilobytes.
    pub const DEFAULT_CONCURRENCY: u16 = 128;
    pub const DEFAULT_OBSERVE_INTERVAL: &str = "2m";
    /// Search adds only tags to what ListSecurityProfiles shows (a description or permission change moves
    /// LastModifiedTime; a tag change does not), at 100 profiles a page: every third listing keeps an
    /// account of 10 instances of 100 profiles at (1 + 2/3) x 30 x 10 = 500 calls an hour, with a
    /// margin under 600 that every other listing (exactly 600) did not have.
    pub const DEFAULT_SEARCH_EVERY: u32 = 3;
    pub const DEFAULT_EVENTS_OBSERVE_INTERVAL: &str = "30m";
}

/// The settings of `connect-operator run` without flags; the binary builds its own from the flags.
impl Default for Settings {
    fn default() -> Self {
        let duration = |text: &str| {
            let d: jiff::SignedDuration = text.parse().expect("a default duration parses");
            Duration::try_from(d).expect("a default duration is positive")
        };
        Self {
            resync: duration(Self::DEFAULT_RESYNC),
            retry_base: duration(Self::DEFAULT_RETRY_BASE),
            retry_max: duration(Self::DEFAULT_RETRY_MAX),
            slow_retry: duration(Self::DEFAULT_SLOW_RETRY),
            concurrency: Self::DEFAULT_CONCURRENCY,
            observe_interval: duration(Self::DEFAULT_OBSERVE_INTERVAL),
            search_every: Self::DEFAULT_SEARCH_EVERY,
            allow_unbound: false,
            observe_only: false,
            allowed_role_arns: Vec::new(),
            watched_namespaces: Vec::new(),
            events_queue_url: None,
            events_observe_interval: duration(Self::DEFAULT_EVENTS_OBSERVE_INTERVAL),
        }
    }
}

/// A terminal failure remembered for one generation of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terminal {
    pub generation: Option<i64>,
    /// Adding the adopt annotation retries it at the same generation.
    pub lifted_by_adoption: bool,
}

type Labels = BTreeMap<String, String>;

/// Who reports the operator's Events.
pub struct Reporter {
    pub controller: &'static str,
    pub instance: String,
}

pub struct Context<C> {
    pub client: kube::Client,
    pub connect: C,
    pub default_region: Option<String>,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub(crate) reporter: Reporter,
    /// Consecutive failures per object, for the backoff.
    pub(crate) failures: Mutex<HashMap<String, u32>>,
    /// Terminal failures per object: until the generation changes, a re-trigger (an annotation or
    /// finalizer change) costs nothing. In memory only: a restarted operator tries each once more.
    pub(crate) terminal: Mutex<HashMap<String, Terminal>>,
    /// When each in-sync profile is next due for observation (drift check); until then a reconcile
    /// triggered by a metadata change (finalizer, annotation) costs no Connect call.
    pub(crate) next_observe: Mutex<HashMap<String, Instant>>,
    /// The status this process last wrote, by object UID. The watch cache can lag behind our own
    /// writes; the operator is the only writer of status, so its last write is the freshest view.
    /// Kept for [`LAST_STATUS_TTL`] at most: the cache catches up within a moment, and an idle
    /// operator holds no copy of a thousand statuses.
    pub(crate) last_status: Mutex<HashMap<String, (SecurityProfileStatus, Instant)>>,
    /// Labels of namespaces (for the bindings' selectors), read at most once a minute each.
    namespace_labels: Mutex<HashMap<String, (Labels, Instant)>>,
    /// The instances' listings (instance-level observation).
    pub observations: super::instance_listing::Observations,
    /// Every InstanceBinding, kept by a watch (see [`super::controller::run`]).
    pub bindings: Store<InstanceBinding>,
    /// The objects whose binding no longer allows what Connect holds for them, with the error's reason
    /// (the `revoked_profiles` metric counts them).
    pub(crate) revoked: Mutex<HashMap<String, String>>,
    binding_writer: Mutex<Option<Writer<InstanceBinding>>>,
    /// What the events reader ([`super::events_queue`]) knows of its queue: while it is read the
    /// listings come every `events_observe_interval`; the binding watch subscribes to it and reports it
    /// on each binding's status (its EventsQueue condition) when it changes.
    pub(crate) events_queue: tokio::sync::watch::Sender<QueueState>,
}

impl<C> Context<C> {
    pub fn new(
        client: kube::Client,
        connect: C,
        default_region: Option<String>,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let instance = std::env::var("POD_NAME").unwrap_or_else(|_| MANAGER.to_string());
        let (bindings, writer) = reflector::store();
        Self {
            observations: Default::default(),
            bindings,
            binding_writer: Mutex::new(Some(writer)),
            reporter: Reporter { controller: MANAGER, instance },
            client,
            connect,
            default_region,
            settings,
            metrics,
            failures: Mutex::default(),
            terminal: Mutex::default(),
            next_observe: Mutex::default(),
            last_status: Mutex::default(),
            namespace_labels: Mutex::default(),
            revoked: Mutex::default(),
            events_queue: tokio::sync::watch::Sender::new(QueueState::default()),
        }
    }

    /// How long an instance's observer waits between listings: `events_observe_interval` while the
    /// events queue is read (never shorter than `observe_interval`), else `observe_interval`.
    pub fn observe_interval(&self) -> Duration {
        if *self.events_queue.borrow() == QueueState::Reading {
            self.settings.events_observe_interval.max(self.settings.observe_interval)
        } else {
            self.settings.observe_interval
        }
    }

    /// The labels of namespace `ns` (cached for a minute). An error means: do nothing (fail closed).
    pub async fn namespace_labels(&self, ns: &str) -> Result<BTreeMap<String, String>, kube::Error> {
        if let Some((labels, at)) = self.namespace_labels.lock().expect("labels lock").get(ns)
            && at.elapsed() < Duration::from_secs(60)
        {
            return Ok(labels.clone());
        }
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        let labels = api.get(ns).await?.labels().clone();
        self.namespace_labels.lock().expect("labels lock").insert(ns.to_string(), (labels.clone(), Instant::now()));
        Ok(labels)
    }

    /// Drops the cached namespace labels (the next bind step reads them again).
    pub fn forget_namespace_labels(&self) {
        self.namespace_labels.lock().expect("labels lock").clear();
    }

    /// The writer of [`Self::bindings`], for the one watch that fills it (None once taken).
    pub fn take_binding_writer(&self) -> Option<Writer<InstanceBinding>> {
        self.binding_writer.lock().expect("writer lock").take()
    }

    /// Requeues the profiles an instance listing found changed: they are due at once, whatever their
    /// resync timer says.
    pub(crate) fn requeue_observed(
        &self,
        objects: Vec<kube::runtime::reflector::ObjectRef<super::cache::CachedProfile>>,
    ) {
        {
            let mut due = self.next_observe.lock().expect("next_observe lock");
            for o in &objects {
                due.remove(&format!("{}/{}", o.namespace.as_deref().unwrap_or_default(), o.name));
            }
        }
        self.observations.send(objects);
    }

    /// Requeues the profiles whose next observation is due (the resync of in-sync profiles; see
    /// [`super::report::observe_again_after_resync`]) and forgets their due times; returns how many.
    pub(crate) fn requeue_due(&self) -> usize {
        let now = Instant::now();
        let due: Vec<String> = self
            .next_observe
            .lock()
            .expect("next_observe lock")
            .extract_if(|_, at| *at <= now)
            .map(|(key, _)| key)
            .collect();
        let objects: Vec<_> = due
            .iter()
            .filter_map(|key| key.split_once('/'))
            .map(|(namespace, name)| kube::runtime::reflector::ObjectRef::new(name).within(namespace))
            .collect();
        let n = objects.len();
        self.observations.send(objects);
        n
    }

    /// Records the status this process just wrote for the object `uid`, and drops expired copies.
    pub(crate) fn remember_status(&self, uid: String, status: SecurityProfileStatus) {
        self.forget_expired_statuses();
        self.last_status.lock().expect("last_status lock").insert(uid, (status, Instant::now()));
    }

    /// Drops the status copies older than [`LAST_STATUS_TTL`]; the controller also calls it
    /// periodically, so that the copies of a rollout's last writes do not outlive it when no reconcile
    /// follows.
    pub(crate) fn forget_expired_statuses(&self) {
        let mut last = self.last_status.lock().expect("last_status lock");
        last.retain(|_, (_, at)| at.elapsed() < LAST_STATUS_TTL);
        if last.is_empty() {
            last.shrink_to_fit();
        }
    }

    /// Forgets everything remembered about the object `key` (it is gone).
    pub(crate) fn forget(&self, key: &str, uid: Option<&str>) {
        if let Some(uid) = uid {
            self.last_status.lock().expect("last_status lock").remove(uid);
        }
        self.next_observe.lock().expect("next_observe lock").remove(key);
        self.terminal.lock().expect("terminal lock").remove(key);
        self.failures.lock().expect("failures lock").remove(key);
        let mut revoked = self.revoked.lock().expect("revoked lock");
        if revoked.remove(key).is_some() {
            self.metrics.set_revoked(revoked.len());
        }
    }
}

/// The memory key of an object: `namespace/name`.
pub fn key(meta: &kube::api::ObjectMeta) -> String {
    format!("{}/{}", meta.namespace.as_deref().unwrap_or_default(), meta.name.as_deref().unwrap_or_default())
}
