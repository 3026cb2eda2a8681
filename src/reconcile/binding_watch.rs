//! The InstanceBinding watch: it fills the bindings store the bind step reads, requeues every
//! SecurityProfile when a binding is created, changed (its spec) or deleted, and reports each binding's
//! status: Ready when the operator reaches the instance with the binding's identity (one
//! ListSecurityProfiles page per binding and generation, and again every `PROBE_EVERY`), the number
//! of SecurityProfiles it binds, and with `--events-queue-url` whether the events queue is read
//! (EventsQueue, written again as soon as the queue's state changes).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::channel::mpsc::UnboundedSender;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use tracing::{Instrument, info, warn};

use super::binding::covers;
use super::context::{Context, MANAGER, Settings, key};
use super::events_queue::QueueState;
use crate::api::{InstanceBinding, InstanceBindingStatus};
use crate::connect::ConnectApi;
use crate::domain::{Priority, Target};

/// How often a binding's reachability is checked again when nothing changes.
const PROBE_EVERY: Duration = Duration::from_secs(600);

/// Runs the binding watch: sends `()` on every requeue channel when a binding's spec changes or it
/// goes, and keeps the bindings' status. Returns when the watch ends.
pub async fn run<C: ConnectApi>(
    ctx: Arc<Context<C>>,
    namespaces: Vec<String>,
    requeue: Vec<UnboundedSender<()>>,
    profiles: Vec<Store<super::cache::CachedProfile>>,
) {
    let Some(writer) = ctx.take_binding_writer() else {
        warn!("the InstanceBinding watch runs once per process");
        return;
    };
    let api: Api<InstanceBinding> = Api::all(ctx.client.clone());
    let mut events = std::pin::pin!(watcher(api.clone(), watcher::Config::default()).default_backoff().reflect(writer));
    // Generation seen per binding: status writes (no generation change) trigger nothing.
    let mut seen: HashMap<String, Option<i64>> = HashMap::new();
    let mut probed: HashMap<String, (Option<i64>, Instant)> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    let mut queue = ctx.events_queue.subscribe();
    loop {
        tokio::select! {
            event = events.next() => {
                let Some(event) = event else { return };
                let changed = match event {
                    // The initial list: remembered; the requeue comes once it is complete.
                    Ok(watcher::Event::InitApply(b)) => {
                        seen.insert(b.name_any(), b.meta().generation);
                        false
                    }
                    Ok(watcher::Event::InitDone) => true,
                    Ok(watcher::Event::Apply(b)) => {
                        seen.insert(b.name_any(), b.meta().generation) != Some(b.meta().generation)
                    }
                    Ok(watcher::Event::Delete(b)) => {
                        probed.remove(&b.name_any());
                        seen.remove(&b.name_any()).is_some()
                    }
                    Ok(watcher::Event::Init) => false,
                    Err(e) => {
                        warn!(error = %e, "InstanceBinding watch error");
                        false
                    }
                };
                if changed {
                    info!("InstanceBindings changed: requeueing SecurityProfiles");
                    // Namespace labels are re-read: a binding is often created right after labelling.
                    ctx.forget_namespace_labels();
                    for tx in &requeue {
                        let _ = tx.unbounded_send(());
                    }
                    report_all(&ctx, &namespaces, &api, &profiles, &mut probed).await;
                }
            }
            _ = tick.tick() => report_all(&ctx, &namespaces, &api, &profiles, &mut probed).await,
            Ok(()) = queue.changed() => report_all(&ctx, &namespaces, &api, &profiles, &mut probed).await,
        }
    }
}

/// Writes each binding's status when it changes; probes the instance when the binding's generation is
/// new or the last probe is older than [`PROBE_EVERY`].
async fn report_all<C: ConnectApi>(
    ctx: &Context<C>,
    namespaces: &[String],
    api: &Api<InstanceBinding>,
    profiles: &[Store<super::cache::CachedProfile>],
    probed: &mut HashMap<String, (Option<i64>, Instant)>,
) {
    for binding in ctx.bindings.state() {
        if !concerns_us(ctx, namespaces, &binding).await {
            continue;
        }
        let name = binding.name_any();
        let generation = binding.meta().generation;
        let current = binding.status.clone().unwrap_or_default();
        let ready = current.conditions.iter().find(|c| c.type_ == "Ready").cloned();
        if ready.is_some() && current.observed_generation == generation {
            // Probed before a restart, for this generation: as good as probed now.
            probed.entry(name.clone()).or_insert((generation, Instant::now()));
        }
        let ready = match (ready, probe_due(ctx, probed.get(&name), &binding)) {
            (Some(ready), None) => ready,
            (previous, priority) => {
                probed.insert(name.clone(), (generation, Instant::now()));
                let priority = priority.unwrap_or(Priority::User);
                probe(ctx, &binding, previous.as_ref(), priority).await
            }
        };
        let state = ctx.events_queue.borrow().clone();
        let previous = current.conditions.iter().find(|c| c.type_ == EVENTS_QUEUE);
        let events = events_queue_condition(&ctx.settings, &state, generation, previous);
        let (bound, revoked) = bound_profiles(ctx, &binding, profiles).await;
        let next = InstanceBindingStatus {
            observed_generation: generation,
            bound_profiles: bound,
            revoked_profiles: revoked,
            conditions: std::iter::once(ready).chain(events).collect(),
        };
        if next != current {
            let patch = serde_json::json!({
                "apiVersion": crate::api::API_VERSION,
                "kind": "InstanceBinding",
                "status": next,
            });
            let span = tracing::info_span!("binding_status", binding = %name, instance = %binding.spec.instance_id);
            let params = PatchParams::apply(MANAGER).force();
            let written = api.patch_status(&name, &params, &Patch::Apply(&patch)).instrument(span.clone()).await;
            if let Err(e) = written {
                span.in_scope(
                    || warn!(reason = "StatusWriteFailed", error = %e, "cannot write the InstanceBinding status"),
                );
            }
        }
    }
}

/// Whether a binding's reachability is to be checked, and at which priority: at once (user work) for a
/// generation not probed yet (an admin's change), in the background when the last probe is older than
/// [`PROBE_EVERY`] and no listing of the instance with the binding's identity has succeeded since (the
/// observer lists it with the same untagged identity: a recent listing is the probe, and costs nothing
/// more; 100 bindings probed every 10 minutes would be 600 calls an hour).
fn probe_due<C>(
    ctx: &Context<C>,
    probed: Option<&(Option<i64>, Instant)>,
    binding: &InstanceBinding,
) -> Option<Priority> {
    match probed {
        Some((g, _)) if *g != binding.meta().generation => Some(Priority::User),
        None => Some(Priority::User),
        Some((_, at)) if at.elapsed() >= PROBE_EVERY && !listed_recently(ctx, binding) => Some(Priority::Background),
        Some(_) => None,
    }
}

/// Whether the instance's observer listed it with the binding's identity within [`PROBE_EVERY`], or
/// within its own listing interval and a quarter when that is longer (30 minutes with events on).
fn listed_recently<C>(ctx: &Context<C>, binding: &InstanceBinding) -> bool {
    let key = super::instance_listing::InstanceKey {
        region: binding.spec.region.clone(),
        instance_id: binding.spec.instance_id.clone(),
        role_arn: binding.spec.role_arn.clone(),
    };
    let within =
        jiff::SignedDuration::try_from(PROBE_EVERY.max(ctx.observe_interval().mul_f64(1.25))).unwrap_or_default();
    ctx.observations.snapshot(&key).is_some_and(|s| jiff::Timestamp::now().duration_since(s.taken_at) < within)
}

/// An operator limited to some namespaces reports only the bindings that select one of them (another
/// operator, for other namespaces, may report the rest).
async fn concerns_us<C>(ctx: &Context<C>, namespaces: &[String], binding: &InstanceBinding) -> bool {
    if namespaces.is_empty() {
        return true;
    }
    for ns in namespaces {
        if let Ok(labels) = ctx.namespace_labels(ns).await
            && covers(binding, ns, &labels)
        {
            return true;
        }
    }
    false
}

/// The Ready condition: can the binding's identity list the instance's profiles?
#[tracing::instrument(name = "binding_probe", skip_all, fields(binding = %binding.name_any(), instance = %binding.spec.instance_id, region = %binding.spec.region))]
async fn probe<C: ConnectApi>(
    ctx: &Context<C>,
    binding: &InstanceBinding,
    previous: Option<&Condition>,
    priority: Priority,
) -> Condition {
    let spec = &binding.spec;
    let generation = binding.meta().generation;
    if let Some((reason, message)) = misconfiguration(&ctx.settings, binding) {
        warn!(reason, %message, "the InstanceBinding is unusable");
        return condition("Ready", "False", reason.into(), message, generation, previous);
    }
    let target = Target {
        region: spec.region.clone(),
        instance_id: spec.instance_id.clone(),
        role_arn: spec.role_arn.clone(),
        session_name: Some(crate::domain::binding_session_name(&binding.name_any())),
        // Untagged: a read-only session (see the observer's).
        session_tags: Vec::new(),
        tenant: String::new(),
        priority,
    };
    let (status, reason, message) = match ctx.connect.probe_instance(&target).await {
        Ok(()) => (
            "True",
            "InstanceReachable".to_string(),
            format!("Listed the security profiles of instance {} in {}", spec.instance_id, spec.region),
        ),
        Err(e) => (
            "False",
            e.code.clone(),
            format!(
                "Cannot list the security profiles of instance {} in {} with this binding's identity: {}",
                spec.instance_id, spec.region, e.message
            ),
        ),
    };
    if status == "False" {
        warn!(%reason, %message, "the InstanceBinding's identity cannot reach its instance");
    }
    condition("Ready", status, reason, message, generation, previous)
}

/// What makes a binding unusable before any call: a role --allowed-role-arns does not allow, an
/// allowAdoption of the wrong shape, no namespaces named or selected.
fn misconfiguration(settings: &Settings, binding: &InstanceBinding) -> Option<(&'static str, String)> {
    let spec = &binding.spec;
    if let Some(role) = &spec.role_arn
        && !settings.role_allowed(role)
    {
        let message =
            format!("Role {role} is not allowed by the operator's --allowed-role-arns: this binding binds nothing");
        return Some(("RoleNotAllowed", message));
    }
    if let crate::api::AdoptionGrant::Invalid(raw) = &spec.allow_adoption {
        let message =
            format!("spec.allowAdoption must be true, false or a list of names; got {raw}: no profile may be adopted");
        return Some(("InvalidAllowAdoption", message));
    }
    if spec.namespaces.is_none() && spec.namespace_selector.is_none() {
        return Some((
            "NoNamespaces",
            "Set spec.namespaces or spec.namespaceSelector: this binding binds nothing".into(),
        ));
    }
    None
}

/// The type of the condition that says whether the events queue is read.
const EVENTS_QUEUE: &str = "EventsQueue";

/// The EventsQueue condition: none without `--events-queue-url`; True (`Reading`) while the queue is
/// read, False (`QueueUnreadable`, with SQS's error) while it cannot be; the binding's current one while
/// the first ReceiveMessage has not answered (a restart writes nothing).
fn events_queue_condition(
    settings: &Settings,
    state: &QueueState,
    generation: Option<i64>,
    previous: Option<&Condition>,
) -> Option<Condition> {
    let url = settings.events_queue_url.as_ref()?;
    let (status, reason, message) = match state {
        QueueState::Unknown => return previous.cloned(),
        QueueState::Reading => (
            "True",
            "Reading",
            format!(
                "Reading Connect's CloudTrail events from {url}; each instance is listed every \
                 --events-observe-interval ({})",
                friendly(settings.events_observe_interval.max(settings.observe_interval))
            ),
        ),
        QueueState::Unreadable(error) => (
            "False",
            "QueueUnreadable",
            format!(
                "Cannot read the events queue {url} ({error}); the instance listings fall back to \
                 --observe-interval ({}) until it can be read",
                friendly(settings.observe_interval)
            ),
        ),
    };
    Some(condition(EVENTS_QUEUE, status, reason.into(), message, generation, previous))
}

/// A duration as the flags spell it (`2m`, `30m`).
fn friendly(d: Duration) -> String {
    jiff::SignedDuration::try_from(d).map(|d| format!("{d:#}")).unwrap_or_else(|_| format!("{d:?}"))
}

fn condition(
    type_: &str,
    status: &str,
    reason: String,
    message: String,
    generation: Option<i64>,
    previous: Option<&Condition>,
) -> Condition {
    let unchanged = previous.is_some_and(|p| p.status == status);
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason,
        message,
        observed_generation: generation,
        last_transition_time: match previous {
            Some(p) if unchanged => p.last_transition_time.clone(),
            _ => Time(jiff::Timestamp::now()),
        },
    }
}

/// The SecurityProfiles of the binding's instance in the namespaces it grants, and how many of them are
/// revoked.
async fn bound_profiles<C>(
    ctx: &Context<C>,
    binding: &InstanceBinding,
    profiles: &[Store<super::cache::CachedProfile>],
) -> (i32, i32) {
    let mut count = (0, 0);
    for store in profiles {
        for p in store.state() {
            if p.instance_id.as_deref() != Some(binding.spec.instance_id.as_str()) {
                continue;
            }
            let namespace = p.namespace().unwrap_or_default();
            let Ok(labels) = ctx.namespace_labels(&namespace).await else { continue };
            if covers(binding, &namespace, &labels) {
                count.0 += 1;
                let revoked = ctx.revoked.lock().expect("revoked lock").contains_key(&key(&p.metadata));
                count.1 += i32::from(revoked);
            }
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(spec: serde_json::Value) -> InstanceBinding {
        let mut full = serde_json::json!({"instanceId": "i-1", "region": "eu-west-2"});
        full.as_object_mut().unwrap().extend(spec.as_object().unwrap().clone());
        InstanceBinding::new("b", serde_json::from_value(full).unwrap())
    }

    #[test]
    fn an_unusable_binding_says_why_before_any_call() {
        let settings = Settings {
            allowed_role_arns: vec!["arn:aws:iam::111122223333:role/connect-*".into()],
            ..Settings::default()
        };
        let reason = |spec| misconfiguration(&settings, &binding(spec)).map(|(r, _)| r);
        assert_eq!(reason(serde_json::json!({"namespaces": ["a"]})), None);
        let ok_role = serde_json::json!({"namespaces": ["a"], "roleArn": "arn:aws:iam::111122223333:role/connect-a"});
        assert_eq!(reason(ok_role), None);
        let other = serde_json::json!({"namespaces": ["a"], "roleArn": "arn:aws:iam::999999999999:role/connect-a"});
        assert_eq!(reason(other), Some("RoleNotAllowed"));
        assert_eq!(
            reason(serde_json::json!({"namespaces": ["a"], "allowAdoption": "yes"})),
            Some("InvalidAllowAdoption")
        );
        assert_eq!(reason(serde_json::json!({})), Some("NoNamespaces"));
    }

    #[test]
    fn the_events_queue_condition_follows_the_queue() {
        let url = "https://sqs.eu-west-2.amazonaws.com/111122223333/connect-events";
        let on = Settings { events_queue_url: Some(url.into()), ..Settings::default() };
        let unreadable = QueueState::Unreadable("AWS.SimpleQueueService.NonExistentQueue: no such queue".into());
        let decide = |settings: &Settings, state: &QueueState, previous: Option<&Condition>| {
            events_queue_condition(settings, state, Some(3), previous)
        };
        // Events off: no condition, whatever the state.
        assert_eq!(decide(&Settings::default(), &QueueState::Reading, None), None);

        let reading = decide(&on, &QueueState::Reading, None).unwrap();
        assert_eq!(
            (reading.type_.as_str(), reading.status.as_str(), reading.reason.as_str()),
            ("EventsQueue", "True", "Reading")
        );
        assert!(
            reading.message.contains(url) && reading.message.contains("--events-observe-interval (30m)"),
            "{}",
            reading.message
        );
        assert_eq!(reading.observed_generation, Some(3));

        let down = decide(&on, &unreadable, Some(&reading)).unwrap();
        assert_eq!((down.status.as_str(), down.reason.as_str()), ("False", "QueueUnreadable"));
        assert!(down.message.contains("NonExistentQueue: no such queue"), "names the error: {}", down.message);
        assert!(down.message.contains("fall back to --observe-interval (2m)"), "{}", down.message);

        // Not known yet (the first ReceiveMessage of a restarted operator): the current condition stays.
        assert_eq!(decide(&on, &QueueState::Unknown, Some(&down)), Some(down.clone()));
        assert_eq!(decide(&on, &QueueState::Unknown, None), None);

        // The same state again is the same condition, its lastTransitionTime included: nothing to write.
        let old = Time(jiff::Timestamp::UNIX_EPOCH);
        let earlier = Condition { last_transition_time: old.clone(), ..down.clone() };
        assert_eq!(decide(&on, &unreadable, Some(&earlier)), Some(earlier.clone()));
        // Another error keeps the transition time; reading again moves it.
        let other = decide(&on, &QueueState::Unreadable("AccessDenied: denied".into()), Some(&earlier)).unwrap();
        assert_eq!((other.last_transition_time, other.reason.as_str()), (old.clone(), "QueueUnreadable"));
        assert_ne!(decide(&on, &QueueState::Reading, Some(&earlier)).unwrap().last_transition_time, old);
    }
}
