//! The reconciler. One pass over one SecurityProfile is the pipeline below, in the order the code runs
//! it, each step in its own file:
//!
//! ```text
//! paused? -> finalizer -> terminal? -> validate -> bind -> guardrails -> not due? -> pending status
//! guard.rs   finalizer.rs guard.rs    domain/     binding.rs revocation.rs guard.rs  report.rs
//!                                     validate.rs
//!   -> read (listing or Connect) -> acquire | apply (| Observe: report) -> status
//!      read_profile.rs              acquire.rs apply.rs  observe_mode.rs    report.rs
//! ```
//!
//! Deletion runs [`cleanup`] instead (after the paused check); an object that does not parse runs
//! [`invalid`]. Every failure is an [`Error`] variant whose retry decision, category and reason come
//! from one table ([`error`]); [`retry`] turns it into the requeue. Connect is reached only through
//! [`ConnectApi`]; the pure rules live in [`crate::domain`] and [`validate`].

pub mod acquire;
pub mod apply;
pub mod audit;
pub mod binding;
pub mod binding_watch;
pub mod cache;
pub mod cleanup;
pub mod context;
pub mod controller;
pub mod error;
pub mod events;
pub mod events_queue;
pub mod finalizer;
pub mod guard;
pub mod instance_listing;
pub mod invalid;
pub mod observe_mode;
pub mod read_profile;
pub mod report;
pub mod retry;
pub mod revocation;
pub mod status;

#[cfg(test)]
mod scenarios;

use std::sync::Arc;

use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

pub use context::{Context, MANAGER, Settings};
pub use controller::run;
pub use error::{Error, Retry};
pub use retry::{error_policy, retry_after};

use crate::api::SecurityProfile;
use crate::connect::ConnectApi;
use crate::domain::validate;
use crate::domain::{Target, instance_of_arn, region_of_arn};
use acquire::Acquired;
use binding::Grant;
use events::{EventType, publish};
use read_profile::Observation;

/// What one reconcile of one valid, live resource is about.
pub struct Step<'a, C> {
    pub profile: &'a SecurityProfile,
    pub api: &'a Api<SecurityProfile>,
    pub ctx: &'a Arc<Context<C>>,
    /// What the InstanceBinding grants; `target` is its Target.
    pub grant: &'a Grant,
    pub target: &'a Target,
    /// managementPolicy Observe (or `--observe-only`): read, compare, never write.
    pub observing: bool,
}

impl<C> Step<'_, C> {
    pub fn name(&self) -> &str {
        &self.profile.spec.security_profile_name
    }

    pub fn namespace(&self) -> &str {
        self.profile.metadata.namespace.as_deref().unwrap_or_default()
    }

    pub fn uid(&self) -> String {
        self.profile.uid().unwrap_or_default()
    }

    /// What an instance listing must show for the profile to match the spec, with Connect's
    /// LastModifiedTime as recorded.
    pub fn expectation(&self, last_modified: Option<String>) -> crate::domain::Expectation {
        crate::domain::Expectation::new(
            last_modified,
            self.profile.spec.description.as_deref().unwrap_or_default(),
            &crate::domain::tags_with_owner(self.profile.spec.tags.as_ref(), &self.uid(), self.namespace()),
        )
    }
}

/// Entry point for one object.
pub async fn reconcile<C: ConnectApi>(
    obj: Arc<DeserializeGuard<SecurityProfile>>,
    ctx: Arc<Context<C>>,
) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = match &obj.0 {
        Ok(profile) => reconcile_profile(profile, &ctx).await,
        Err(invalid) => invalid::report_invalid_object(invalid, &ctx).await,
    };
    match &result {
        Ok(_) => {
            ctx.metrics.reconcile("success", "", started.elapsed());
            ctx.failures.lock().expect("failures lock").remove(&context::key(obj.meta()));
        }
        Err(e) => ctx.metrics.reconcile("error", e.category().as_str(), started.elapsed()),
    }
    result
}

async fn reconcile_profile<C: ConnectApi>(cached: &SecurityProfile, ctx: &Arc<Context<C>>) -> Result<Action, Error> {
    let profile = guard::freshest(cached, ctx);
    let api: Api<SecurityProfile> = Api::namespaced(ctx.client.clone(), &profile.namespace().unwrap_or_default());
    if guard::paused(&profile) {
        return report::paused(&profile, &api, ctx).await;
    }
    let result = if profile.metadata.deletion_timestamp.is_some() {
        cleanup::cleanup(&profile, &api, ctx).await
    } else {
        finalizer::ensure(&profile, &api).await?;
        if let Some(action) = guard::skip_terminal(&profile, ctx) {
            return Ok(action);
        }
        sync(&profile, &api, ctx).await
    };
    if let Err(e) = &result {
        revocation::track(&profile, ctx, e).await;
        report::failure(&profile, &api, ctx, e).await?;
    } else {
        revocation::track_ok(&profile, ctx);
    }
    result
}

/// validate -> bind (guardrails: free, so every requeue re-checks them) -> observe -> acquire or
/// plan+apply -> status.
async fn sync<C: ConnectApi>(
    profile: &SecurityProfile,
    api: &Api<SecurityProfile>,
    ctx: &Arc<Context<C>>,
) -> Result<Action, Error> {
    let current_instance =
        profile.status.as_ref().and_then(|s| s.security_profile_arn.as_deref()).and_then(instance_of_arn);
    validate::validate_spec(&profile.spec, current_instance).map_err(|errors| Error::InvalidSpec {
        message: format!("{}. Nothing was sent to Connect.", validate::describe(&errors)),
    })?;
    let existing = profile.status.as_ref().and_then(|s| s.security_profile_id.clone());
    let mut grant =
        binding::resolve(profile, &profile.spec.instance_id, ctx).await.map_err(|e| match (e, &existing) {
            (Error::NoInstanceBinding { instance, namespace }, Some(id)) => {
                Error::BindingRevoked { id: id.clone(), instance, namespace }
            }
            (e, _) => e,
        })?;
    binding::check_region(profile, &grant)?;
    let observing = observe_mode::is_observing(profile, ctx);
    let revoked = revocation::check(profile, &grant, existing.as_deref(), observing)?;
    // Only once the guardrails passed: an in-sync profile that is not due costs nothing more.
    if revoked.is_none()
        && let Some(action) = guard::not_due(profile, ctx)
    {
        return Ok(action);
    }
    // Enforcing a revocation is read at once (not from the instance listing), at user priority.
    grant.target.priority = if revoked.is_some() { crate::domain::Priority::User } else { guard::priority(profile) };
    if let Some((id, arn)) =
        profile.status.as_ref().and_then(|s| s.security_profile_id.as_ref().zip(s.security_profile_arn.as_ref()))
        && let Some(profile_region) = region_of_arn(arn)
        && profile_region != grant.target.region
    {
        return Err(Error::RegionChanged {
            id: id.clone(),
            profile_region: profile_region.to_string(),
            region: grant.target.region.clone(),
        });
    }
    if observing && existing.is_some() {
        grant.target.priority = crate::domain::Priority::Background;
    }
    let mut profile = profile.clone();
    if revoked.is_some() {
        // onRevoke: Enforce: Connect is brought to the spec without what the binding no longer allows.
        profile.spec = grant.guardrails.within(&profile.spec);
        // The last full read was compared with the whole spec: read the members again.
        if let Some(status) = &mut profile.status {
            status.connect_last_modified_time = None;
        }
    }
    report::pending(&profile, api, ctx, observing).await?;
    match (settle(&mut profile, api, ctx, &grant, observing).await?, revoked) {
        (Settled::Done(action), _) => Ok(action),
        (Settled::InSync { .. }, Some(revoked)) => Err(revoked),
        (Settled::InSync { id, arn, last_modified }, None) => {
            report::in_sync(&profile, api, ctx, &id, &arn, last_modified).await
        }
    }
}

/// Where [`settle`] left the profile.
enum Settled {
    /// Connect holds the profile `id` as the spec says.
    InSync { id: String, arn: String, last_modified: Option<String> },
    /// Nothing more this time (Observe reported, or the first listing is awaited).
    Done(Action),
}

/// Observe -> acquire or apply until Connect holds the profile as `profile` says. Observe mode ends
/// here, with its own status.
async fn settle<C: ConnectApi>(
    profile: &mut SecurityProfile,
    api: &Api<SecurityProfile>,
    ctx: &Arc<Context<C>>,
    grant: &Grant,
    observing: bool,
) -> Result<Settled, Error> {
    // At most: take over a profile, observe it, and find it gone since (then create).
    for _ in 0..3 {
        let step = Step { profile, api, ctx, grant, target: &grant.target, observing };
        let acquired = match read_profile::observe(&step).await? {
            Observation::Present { id, observed, .. } if observing => {
                step.may_observe(&id, &observed.name, observed.owner())?;
                return Ok(Settled::Done(observe_mode::report(&step, &id, &observed).await?));
            }
            Observation::Absent { adoptable } if observing => {
                let status = observe_mode::record(&step, adoptable).await?;
                profile.status = Some(status);
                continue;
            }
            Observation::Gone { .. } if observing => {
                return Err(Error::ObservedProfileNotFound {
                    name: profile.spec.security_profile_name.clone(),
                    instance: grant.target.instance_id.clone(),
                });
            }
            Observation::Present { id, observed, .. } => {
                let last_modified = apply::apply(&step, &id, &observed).await?;
                instance_listing::watch(&step, &id, last_modified.clone());
                return Ok(Settled::InSync { id, arn: observed.arn.clone(), last_modified });
            }
            Observation::Unchanged { id, arn, last_modified } => {
                instance_listing::watch(&step, &id, last_modified.clone());
                return Ok(Settled::InSync { id, arn, last_modified });
            }
            Observation::Waiting => return Ok(Settled::Done(Action::requeue(instance_listing::FIRST_LISTING_WAIT))),
            Observation::Absent { adoptable } => acquire::acquire(&step, adoptable).await?,
            Observation::Gone { id } => {
                let note = format!("Security profile {id} was deleted outside the operator; creating it again");
                publish(ctx, profile, EventType::Warning, "Recreating", note).await;
                acquire::create(&step).await?
            }
        };
        match acquired {
            Acquired::Created(created) => {
                let step = Step { profile, api, ctx, grant, target: &grant.target, observing };
                instance_listing::watch(&step, &created.id, None);
                return Ok(Settled::InSync { id: created.id, arn: created.arn, last_modified: None });
            }
            Acquired::TakenOver(status) => profile.status = Some(status),
        }
    }
    Err(Error::Unsettled)
}
