//! Records what a reconcile concluded: the status by server-side apply (skipped when only timestamps
//! would change), and a Warning Event when a failure's reason is new.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::context::{Context, MANAGER, key};
use super::error::Error;
use super::events::{EventType, publish};
use super::status::{self, Identity, Outcome, READY};
use super::{guard, retry};
use crate::api::{SecurityProfile, SecurityProfileStatus};

/// Writes the status for `outcome` unless it would change nothing but timestamps; returns it.
pub async fn write_status<C>(
    profile: &SecurityProfile,
    api: &Api<SecurityProfile>,
    ctx: &Context<C>,
    identity: Identity,
    outcome: &Outcome,
) -> Result<SecurityProfileStatus, Error> {
    let current = profile.status.as_ref();
    let mut next =
        status::next_status(current, identity, profile.metadata.generation, outcome, Time(jiff::Timestamp::now()));
    if outcome.synced != "Unknown" {
        // A completed reconcile (success or failure) handled the reconcile request it saw.
        next.last_handled_reconcile_at = guard::requested_at(profile).cloned().or(next.last_handled_reconcile_at);
    }
    if status::unchanged(current, &next) {
        return Ok(next);
    }
    let old_reason = profile.condition(status::SYNCED).map(|c| c.reason.clone());
    apply_status(api, &profile.name_any(), &next).await?;
    ctx.metrics.status_write();
    if let Some(uid) = profile.uid() {
        ctx.remember_status(uid, next.clone());
    }
    if outcome.is_failure() && old_reason.as_deref() != Some(outcome.synced_reason.as_str()) {
        publish(ctx, profile, EventType::Warning, &outcome.synced_reason, outcome.synced_message.clone()).await;
    }
    Ok(next)
}

/// Server-side apply of the status subresource, forced: the operator owns status.
pub async fn apply_status<K>(api: &Api<K>, name: &str, status: &SecurityProfileStatus) -> Result<(), Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({
        "apiVersion": crate::api::API_VERSION,
        "kind": "SecurityProfile",
        "status": status,
    });
    api.patch_status(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(Error::WriteStatus)?;
    Ok(())
}

/// Before the first Connect call for a generation the status does not describe yet: Ready False with
/// what the resource waits for (`Creating`, `Updating`, `Observing`), so that users and Argo CD see it
/// within a second of the apply even while the calls queue behind the rate limiter or Connect is slow.
pub async fn pending<C>(
    profile: &SecurityProfile,
    api: &Api<SecurityProfile>,
    ctx: &Context<C>,
    observing: bool,
) -> Result<(), Error> {
    let generation = profile.metadata.generation;
    let status = profile.status.as_ref();
    if status.is_some_and(|s| s.observed_generation == generation) && profile.condition(READY).is_some() {
        return Ok(());
    }
    let exists = status.is_some_and(|s| s.security_profile_id.is_some());
    let name = &profile.spec.security_profile_name;
    let (reason, message) = match (observing, exists) {
        (true, _) => (status::reason::OBSERVING, format!("Reading security profile {name:?} from Connect")),
        (false, false) => (status::reason::CREATING, format!("Creating security profile {name:?} in Connect")),
        (false, true) => (
            status::reason::UPDATING,
            format!("Bringing security profile {name:?} in Connect to generation {}", generation.unwrap_or_default()),
        ),
    };
    let message = format!(
        "{message}: waiting for Connect (calls queue behind the operator's client-side rate limit; each attempt times out)"
    );
    write_status(profile, api, ctx, Identity::Keep, &Outcome::progressing(reason, &message)).await?;
    Ok(())
}

/// The paused annotation is set: no Connect call; Synced False (ReconcilePaused), Ready as it was.
pub async fn paused<C>(
    profile: &SecurityProfile,
    api: &Api<SecurityProfile>,
    ctx: &Context<C>,
) -> Result<Action, Error> {
    let message = format!(
        "Reconciliation is paused by the annotation {}: \"true\"; nothing is sent to Connect, drift is not repaired and deletion waits. Remove the annotation to resume.",
        crate::api::PAUSED_ANNOTATION
    );
    let outcome = Outcome::failed(status::reason::PAUSED, &message, has_ready_profile(profile));
    write_status(profile, api, ctx, Identity::Keep, &outcome).await?;
    ctx.next_observe.lock().expect("next_observe lock").remove(&key(&profile.metadata));
    Ok(Action::await_change())
}

/// The profile `id` matches the spec: Ready, and the next observation one resync interval away.
pub async fn in_sync<C>(
    profile: &SecurityProfile,
    api: &Api<SecurityProfile>,
    ctx: &Context<C>,
    id: &str,
    arn: &str,
    last_modified: Option<String>,
) -> Result<Action, Error> {
    let generation = profile.metadata.generation.unwrap_or_default();
    let outcome = Outcome::in_sync(&profile.spec.security_profile_name, id, generation);
    let identity = Identity::Set { id: id.to_string(), arn: arn.to_string(), last_modified };
    write_status(profile, api, ctx, identity, &outcome).await?;
    Ok(observe_again_after_resync(profile, ctx))
}

/// The profile is next observed one resync interval (jittered) from now: its due time goes into
/// `next_observe`, which [`super::controller`]'s resync task sweeps (`Context::requeue_due`). No timer
/// per profile in kube-runtime's scheduler: at 10,000 in-sync profiles those were 10,000 entries, each
/// with its own copy of the object reference, held all the time for one requeue every ten minutes.
pub fn observe_again_after_resync<C>(profile: &SecurityProfile, ctx: &Context<C>) -> Action {
    let due = std::time::Instant::now() + retry::resync_delay(&ctx.settings);
    ctx.next_observe.lock().expect("next_observe lock").insert(key(&profile.metadata), due);
    Action::await_change()
}

/// Records `err` in the status of the freshest view of `profile` (a step of this reconcile may have
/// recorded a new identity), unless it is a Kubernetes failure.
pub async fn failure<C>(
    profile: &SecurityProfile,
    api: &Api<SecurityProfile>,
    ctx: &Context<C>,
    err: &Error,
) -> Result<(), Error> {
    ctx.next_observe.lock().expect("next_observe lock").remove(&key(&profile.metadata));
    if !err.is_reported_in_status() {
        return Ok(());
    }
    let profile = guard::freshest(profile, ctx);
    let ready = err.keeps_ready() && has_ready_profile(&profile);
    let outcome = Outcome::failed(err.reason(), &err.status_message(ctx.settings.slow_retry), ready);
    write_status(&profile, api, ctx, Identity::Keep, &outcome).await?;
    Ok(())
}

/// True when the status says a profile exists and matched its spec when last synced.
pub fn has_ready_profile(profile: &SecurityProfile) -> bool {
    profile.status.as_ref().and_then(|s| s.security_profile_id.as_ref()).is_some()
        && profile.condition(READY).is_some_and(|c| c.status == "True")
}
