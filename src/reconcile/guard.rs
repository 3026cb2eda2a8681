//! The guard step: what the reconcile starts from (the freshest status), and when it need not run at
//! all (a terminal failure of this generation, or an in-sync profile that is not due yet).

use std::time::Instant;

use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::context::{Context, key};
use super::status::{self, READY, SYNCED};
use crate::api::{ADOPT_ANNOTATION, PAUSED_ANNOTATION, RECONCILE_REQUESTED_ANNOTATION, SecurityProfile};
use crate::domain::Priority;

/// `cached` with the status this process last wrote when the watch cache has not caught up with it.
pub fn freshest<C>(cached: &SecurityProfile, ctx: &Context<C>) -> SecurityProfile {
    let fresher = cached.uid().and_then(|uid| {
        let mut last = ctx.last_status.lock().expect("last_status lock");
        let (ours, at) = last.get(&uid)?;
        if at.elapsed() >= super::context::LAST_STATUS_TTL
            || cached.status.as_ref().is_some_and(|c| status::unchanged(Some(c), ours))
        {
            // The cache has caught up with our last write: it needs no copy any more.
            last.remove(&uid);
            return None;
        }
        Some(ours.clone())
    });
    let mut profile = cached.clone();
    if let Some(status) = fresher {
        profile.status = Some(status);
    }
    profile
}

/// `Some(action)` when this generation already failed terminally: nothing to do until the spec changes.
pub fn skip_terminal<C>(profile: &SecurityProfile, ctx: &Context<C>) -> Option<Action> {
    let key = key(&profile.metadata);
    let terminal = ctx.terminal.lock().expect("terminal lock").get(&key).copied();
    if let Some(t) = terminal {
        let lifted = (t.lifted_by_adoption && wants_adoption(profile)) || reconcile_requested(profile);
        if t.generation == profile.metadata.generation && !lifted {
            // Already reported for this generation: nothing to do until the spec changes.
            return Some(Action::await_change());
        }
        ctx.terminal.lock().expect("terminal lock").remove(&key);
    }
    None
}

/// `Some(action)` when an in-sync profile is not due for its next observation yet (its guardrails,
/// which cost no call, were checked before): it waits, and the resync task requeues it when it is due.
pub fn not_due<C>(profile: &SecurityProfile, ctx: &Context<C>) -> Option<Action> {
    let current = settled(profile) && !reconcile_requested(profile);
    let due = *ctx.next_observe.lock().expect("next_observe lock").get(&key(&profile.metadata))?;
    (current && due > Instant::now()).then(Action::await_change)
}

/// Whether the paused annotation is set.
pub fn paused(profile: &SecurityProfile) -> bool {
    profile.annotations().get(PAUSED_ANNOTATION).is_some_and(|v| v == "true")
}

/// The reconcile-requested-at annotation's value, when the status has not handled it yet.
pub fn reconcile_requested(profile: &SecurityProfile) -> bool {
    requested_at(profile).is_some_and(|v| {
        profile.status.as_ref().and_then(|s| s.last_handled_reconcile_at.as_deref()) != Some(v.as_str())
    })
}

pub fn requested_at(profile: &SecurityProfile) -> Option<&String> {
    profile.annotations().get(RECONCILE_REQUESTED_ANNOTATION)
}

pub fn wants_adoption(profile: &SecurityProfile) -> bool {
    profile.annotations().get(ADOPT_ANNOTATION).is_some_and(|v| v == "true")
}

/// A drift check of a profile that matched its spec is background work; anything a user asked for (a
/// new resource, a spec change, an adoption, a failure being retried) goes first in the rate limiter.
pub fn priority(profile: &SecurityProfile) -> Priority {
    if settled(profile) && !reconcile_requested(profile) { Priority::Background } else { Priority::User }
}

/// The status names a profile that matched this generation of the spec at the last reconcile, which
/// succeeded.
fn settled(profile: &SecurityProfile) -> bool {
    profile
        .status
        .as_ref()
        .is_some_and(|s| s.security_profile_id.is_some() && s.observed_generation == profile.metadata.generation)
        && profile.condition(READY).is_some_and(|c| c.status == "True")
        && profile.condition(SYNCED).is_some_and(|c| c.status == "True")
}
