//! Instance-level observation: one background listing per instance (Region, instance and role) instead
//! of one DescribeSecurityProfile per profile. Every `observe_interval` the observer of an instance lists
//! it (ListSecurityProfiles pages; every `search_every`-th time also SearchSecurityProfiles pages for
//! description and tags) and keeps the result as the instance's latest [`Snapshot`]. Then it compares
//! each profile it watches with the listing ([`Listing::verdict`]) and requeues only those that changed,
//! vanished or differ; their reconcile reads them in full and repairs them. Every other reconcile of an
//! in-sync profile (its resync, a restart) consults the snapshot and makes no call at all.
//!
//! The reconciler registers each in-sync profile with [`Observations::watch`], and asks for the
//! snapshot with [`Observations::snapshot`]; an instance's observer starts on the first request and
//! stops when it watches nothing any more.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::channel::mpsc::UnboundedSender;
use kube::runtime::reflector::ObjectRef;
use tracing::{Instrument, debug, warn};

use super::context::Context;
use crate::connect::ConnectApi;
use crate::domain::{Expectation, Listing, Priority, Target, Verdict};

/// The observers are per Region, instance and identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InstanceKey {
    pub region: String,
    pub instance_id: String,
    pub role_arn: Option<String>,
}

impl InstanceKey {
    pub fn of(target: &Target) -> Self {
        Self {
            region: target.region.clone(),
            instance_id: target.instance_id.clone(),
            role_arn: target.role_arn.clone(),
        }
    }
}

/// An instance's listing at one moment.
#[derive(Debug)]
pub struct Snapshot {
    pub listing: Listing,
    /// When the listing's first call was made: a profile created after it cannot be in it.
    pub taken_at: jiff::Timestamp,
}

type Object = ObjectRef<super::cache::CachedProfile>;

struct Watched {
    object: Object,
    expect: Expectation,
    since: Instant,
}

#[derive(Default)]
struct Instance {
    latest: Option<Arc<Snapshot>>,
    watched: HashMap<String, Watched>,
    /// Watched profiles a CloudTrail event named since their last read ([`Observations::mark_changed`]).
    changed: HashSet<String>,
    running: bool,
}

/// How long a settled profile waits for its instance's first listing (after a start) before looking
/// again.
pub const FIRST_LISTING_WAIT: Duration = Duration::from_secs(2);

/// A profile missing from a listing this soon after it was recorded may just not be listed yet
/// (Connect's reads are eventually consistent): it is not requeued as gone.
const LISTING_GRACE: Duration = Duration::from_secs(30);

/// The instances under observation and the channel that requeues profiles.
#[derive(Default)]
pub struct Observations {
    instances: Mutex<HashMap<InstanceKey, Instance>>,
    requeue: Mutex<Option<UnboundedSender<Object>>>,
    /// Tests: no observer task is started; listings come from [`Self::record`].
    manual: std::sync::atomic::AtomicBool,
}

impl Observations {
    /// Where the observers send the profiles to reconcile (set once by the controller).
    pub fn set_requeue(&self, tx: UnboundedSender<Object>) {
        *self.requeue.lock().expect("requeue lock") = Some(tx);
    }

    /// The latest snapshot of the instance, if any.
    pub fn snapshot(&self, key: &InstanceKey) -> Option<Arc<Snapshot>> {
        self.instances.lock().expect("observations lock").get(key)?.latest.clone()
    }

    /// Watches profile `id` (the object `object`) of the instance with this expectation.
    pub fn watch(&self, key: &InstanceKey, id: &str, object: Object, expect: Expectation) {
        let mut instances = self.instances.lock().expect("observations lock");
        let instance = instances.entry(key.clone()).or_default();
        let since = match instance.watched.get(id) {
            Some(w) if w.expect == expect => w.since,
            _ => Instant::now(),
        };
        instance.watched.insert(id.to_string(), Watched { object, expect, since });
    }

    /// Stops watching the object (it is deleted).
    pub fn unwatch(&self, object: &Object) {
        for instance in self.instances.lock().expect("observations lock").values_mut() {
            instance.watched.retain(|_, w| w.object != *object);
            let Instance { watched, changed, .. } = instance;
            changed.retain(|id| watched.contains_key(id));
        }
    }

    /// Marks the watched profile `id` (of instance `instance_id`, when the event names it) as changed
    /// in Connect, as a CloudTrail event said ([`super::events_queue`]): its next reconcile reads it in
    /// full whatever the latest listing shows ([`Self::take_changed`]). Returns the objects that watch
    /// it, to requeue.
    pub fn mark_changed(&self, instance_id: Option<&str>, id: &str) -> Vec<Object> {
        let mut instances = self.instances.lock().expect("observations lock");
        let mut objects = Vec::new();
        for (key, instance) in instances.iter_mut() {
            if instance_id.is_some_and(|i| i != key.instance_id) {
                continue;
            }
            if let Some(w) = instance.watched.get(id) {
                objects.push(w.object.clone());
                instance.changed.insert(id.to_string());
            }
        }
        objects
    }

    /// Whether an event marked profile `id` of the instance as changed; the mark is taken (the caller
    /// reads the profile now).
    pub fn take_changed(&self, key: &InstanceKey, id: &str) -> bool {
        self.instances.lock().expect("observations lock").get_mut(key).is_some_and(|i| i.changed.remove(id))
    }

    /// Tests: no observer task is ever started; listings come from [`Self::record`].
    #[cfg(test)]
    pub fn manual(&self) {
        self.manual.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The observer of `key` has ended: [`Self::claim`] may start another.
    fn release(&self, key: &InstanceKey) {
        if let Some(instance) = self.instances.lock().expect("observations lock").get_mut(key) {
            instance.running = false;
        }
    }

    /// True when the observer of `key` must be started (the caller starts it).
    fn claim(&self, key: &InstanceKey) -> bool {
        let mut instances = self.instances.lock().expect("observations lock");
        let instance = instances.entry(key.clone()).or_default();
        !std::mem::replace(&mut instance.running, true)
    }

    /// Stores a new listing; returns the objects to requeue and how many were confirmed unchanged.
    pub(crate) fn record(
        &self,
        key: &InstanceKey,
        listing: Listing,
        taken_at: jiff::Timestamp,
    ) -> (Vec<Object>, usize) {
        let mut instances = self.instances.lock().expect("observations lock");
        let instance = instances.entry(key.clone()).or_default();
        let mut requeue = Vec::new();
        let mut unchanged = 0;
        for (id, w) in &instance.watched {
            match listing.verdict(id, &w.expect) {
                Verdict::Unchanged => unchanged += 1,
                // Written or created moments ago and never listed: maybe not listed yet.
                Verdict::Missing if w.expect.last_modified.is_none() && w.since.elapsed() < LISTING_GRACE => {
                    unchanged += 1
                }
                Verdict::Baseline(_) | Verdict::Changed | Verdict::Missing => requeue.push(w.object.clone()),
            }
        }
        instance.latest = Some(Arc::new(Snapshot { listing, taken_at }));
        (requeue, unchanged)
    }

    /// Whether the observer of `key` has nothing left to watch (it then stops).
    fn idle(&self, key: &InstanceKey) -> bool {
        let mut instances = self.instances.lock().expect("observations lock");
        let idle = instances.get(key).is_none_or(|i| i.watched.is_empty());
        if idle {
            instances.remove(key);
        }
        idle
    }

    pub(crate) fn send(&self, objects: Vec<Object>) {
        if let Some(tx) = self.requeue.lock().expect("requeue lock").as_ref() {
            for o in objects {
                let _ = tx.unbounded_send(o);
            }
        }
    }
}

/// Undoes [`Observations::claim`] when the observer task ends, whichever way.
struct Running<'a> {
    observations: &'a Observations,
    key: &'a InstanceKey,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.observations.release(self.key);
    }
}

/// Starts the observer of `target`'s instance unless it runs already.
pub fn ensure<C: ConnectApi>(ctx: &Arc<Context<C>>, target: &Target) {
    let key = InstanceKey::of(target);
    if ctx.observations.manual.load(std::sync::atomic::Ordering::Relaxed) || !ctx.observations.claim(&key) {
        return;
    }
    let target = Target {
        priority: Priority::Background,
        session_name: target.role_arn.as_ref().map(|_| crate::domain::OBSERVER_SESSION_NAME.to_string()),
        // No session tags: without a namespace tag a binding role's policies allow reads alone, and its
        // trust policy needs no sts:TagSession for it (deploy/iam/).
        session_tags: Vec::new(),
        // The operator's own work, not a tenant's.
        tenant: String::new(),
        ..target.clone()
    };
    tokio::spawn(observe_instance(ctx.clone(), key, target));
}

async fn observe_instance<C: ConnectApi>(ctx: Arc<Context<C>>, key: InstanceKey, target: Target) {
    // However the task ends (a panic, the runtime shutting down), the next reconcile may start another.
    let _running = Running { observations: &ctx.observations, key: &key };
    let every = ctx.settings.search_every.max(1);
    let mut round: u64 = 0;
    loop {
        let search = round.is_multiple_of(u64::from(every));
        let taken_at = jiff::Timestamp::now();
        // One span per listing: its calls and what it logs carry the Region and the instance.
        let span = tracing::info_span!("instance_listing", region = %key.region, instance = %key.instance_id, search);
        let listed = ctx.connect.list_instance(&target, search).instrument(span.clone()).await;
        span.in_scope(|| match listed {
            Ok(listing) => {
                let (requeue, unchanged) = ctx.observations.record(&key, listing, taken_at);
                debug!(instance = %key.instance_id, requeued = requeue.len(), unchanged, search, "instance listed");
                ctx.metrics.reads_saved(unchanged as u64);
                ctx.metrics.instance_listed(&key.region, &key.instance_id);
                ctx.requeue_observed(requeue);
            }
            Err(e) => warn!(reason = %e.code, error = %e, "cannot list the instance"),
        });
        round += 1;
        wait_for_next_listing(&ctx).await;
        if ctx.observations.idle(&key) {
            debug!(instance = %key.instance_id, "no profile left to observe");
            return;
        }
    }
}

/// Waits until the next listing is due: [`Context::observe_interval`] ±10%, looked at again every few
/// seconds, so that an events queue that can no longer be read brings the listings back to
/// `--observe-interval` at once, not after the long interval of the events.
async fn wait_for_next_listing<C>(ctx: &Context<C>) {
    const LOOK_AGAIN: Duration = Duration::from_secs(5);
    let started = Instant::now();
    let factor = crate::domain::jitter(Duration::from_secs(1), 0.1).as_secs_f64();
    loop {
        let due = ctx.observe_interval().mul_f64(factor);
        let elapsed = started.elapsed();
        if elapsed >= due {
            return;
        }
        tokio::time::sleep((due - elapsed).min(LOOK_AGAIN)).await;
    }
}

/// Registers the in-sync profile `id` with its instance's observer: what a listing must show for it.
pub fn watch<C: ConnectApi>(step: &super::Step<'_, C>, id: &str, last_modified: Option<String>) {
    watch_as(step, id, step.expectation(last_modified));
}

/// Registers profile `id` with what a listing must show for it to count as unchanged.
pub fn watch_as<C: ConnectApi>(step: &super::Step<'_, C>, id: &str, expect: Expectation) {
    let object = ObjectRef::from_obj(step.profile).erase();
    let object = ObjectRef::new(&object.name).within(object.namespace.as_deref().unwrap_or_default());
    step.ctx.observations.watch(&InstanceKey::of(step.target), id, object, expect);
    ensure(step.ctx, step.target);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An observer task that ends (a panic, a shutdown) gives its instance back: the next reconcile
    /// starts another instead of waiting forever for listings that never come.
    #[test]
    fn an_ended_observer_releases_its_instance() {
        let observations = Observations::default();
        let key = InstanceKey { region: "eu-west-2".into(), instance_id: "i-1".into(), role_arn: None };
        assert!(observations.claim(&key), "the first claim starts the observer");
        assert!(!observations.claim(&key), "one observer per instance");
        drop(Running { observations: &observations, key: &key });
        assert!(observations.claim(&key), "claimed again once the task ended");
    }

    /// An event marks a watched profile changed once (its next read takes the mark), only in the
    /// instance it names; a profile nobody watches requeues nothing.
    #[test]
    fn an_event_marks_the_watched_profile_changed_until_it_is_read() {
        let observations = Observations::default();
        let key = InstanceKey { region: "eu-west-2".into(), instance_id: "i-1".into(), role_arn: None };
        let object: Object = ObjectRef::new("agents").within("team-a");
        observations.watch(&key, "sp-1", object.clone(), Expectation::default());
        assert!(observations.mark_changed(Some("i-2"), "sp-1").is_empty(), "another instance");
        assert!(observations.mark_changed(None, "sp-9").is_empty(), "not watched");
        assert!(!observations.take_changed(&key, "sp-1"));
        assert_eq!(observations.mark_changed(Some("i-1"), "sp-1"), vec![object.clone()]);
        assert_eq!(observations.mark_changed(None, "sp-1"), vec![object.clone()], "a duplicate: requeued again");
        assert!(observations.take_changed(&key, "sp-1"), "read in full");
        assert!(!observations.take_changed(&key, "sp-1"), "once");
        observations.mark_changed(None, "sp-1");
        observations.unwatch(&object);
        assert!(!observations.take_changed(&key, "sp-1"), "deleted: the mark goes with it");
    }
}
