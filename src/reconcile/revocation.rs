//! Revocation: a binding changed (or went) and no longer allows what a profile that exists in Connect
//! holds. Checked on every reconcile before anything else costs a call, and every binding change
//! requeues every profile, so a tightened grant is seen within seconds, not at the next resync.
//! `onRevoke: Report` reports it (reason PermissionRevoked, an Event, the `revoked_profiles` metric);
//! `Enforce` also brings the profile in Connect inside the grant (see [`super::sync`]).

use super::binding::Grant;
use super::context::{Context, key};
use super::error::Error;
use super::events::{EventType, publish};
use crate::api::{OnRevoke, SecurityProfile};

/// Checks the spec against the grant's guardrails. `Ok(None)`: allowed. `Err`: refused, nothing to
/// send (a new profile, or `Report`, or Observe). `Ok(Some(error))`: `Enforce` on an existing
/// profile: apply the narrowed spec, then report `error`.
pub fn check(
    profile: &SecurityProfile,
    grant: &Grant,
    existing: Option<&str>,
    observing: bool,
) -> Result<Option<Error>, Error> {
    let violations = grant.guardrails.violations(&profile.spec);
    if violations.is_empty() {
        return Ok(None);
    }
    let (what, binding) = (violations.describe(), grant.binding_name());
    let Some(id) = existing else {
        return Err(Error::PermissionNotAllowed { what, binding });
    };
    let enforce = grant.on_revoke == OnRevoke::Enforce && !observing;
    let revoked = Error::PermissionRevoked { id: id.to_string(), what, binding, enforced: enforce };
    if enforce { Ok(Some(revoked)) } else { Err(revoked) }
}

/// After a failed reconcile: counts a revoked profile, with an Event the first time (the status
/// writer's own Warning Event names the reason; this one says what Enforce removed).
pub async fn track<C>(profile: &SecurityProfile, ctx: &Context<C>, err: &Error) {
    let key = key(&profile.metadata);
    if !matches!(err, Error::PermissionRevoked { .. } | Error::BindingRevoked { .. }) {
        // Another failure says nothing about the grant; a refusal before any binding check clears it.
        if matches!(err, Error::InvalidSpec { .. } | Error::PermissionNotAllowed { .. }) {
            track_ok(profile, ctx);
        }
        return;
    }
    // What is remembered: the reason, and whether Enforce acted (Report, then Enforce: a new Event).
    let state = match err {
        Error::PermissionRevoked { enforced: true, .. } => format!("{} (enforced)", err.reason()),
        _ => err.reason().to_string(),
    };
    let new = {
        let mut revoked = ctx.revoked.lock().expect("revoked lock");
        let previous = revoked.insert(key, state.clone());
        ctx.metrics.set_revoked(revoked.len());
        previous != Some(state)
    };
    if let (true, Error::PermissionRevoked { id, what, binding, enforced: true }) = (new, err) {
        let note = format!(
            "Removed from security profile {id} in Connect what InstanceBinding {binding} no longer allows: {what}"
        );
        publish(ctx, profile, EventType::Warning, "RevocationEnforced", note).await;
    }
}

/// After a successful reconcile: the profile is inside its grant.
pub fn track_ok<C>(profile: &SecurityProfile, ctx: &Context<C>) {
    let mut revoked = ctx.revoked.lock().expect("revoked lock");
    if revoked.remove(&key(&profile.metadata)).is_some() {
        ctx.metrics.set_revoked(revoked.len());
    }
}
