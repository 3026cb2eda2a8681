//! managementPolicy Observe: the profile is found (by the ID in status, else by exact name, whoever
//! owns it), read in full on the observation schedule and compared with the spec; the difference goes to
//! status.diff and the InSync condition. Nothing is ever written to Connect: no create, update, tag,
//! untag or delete (cleanup only removes the finalizer).

use kube::runtime::controller::Action;

use super::context::Context;
use super::error::Error;
use super::report::write_status;
use super::status::{Identity, Outcome, reason};
use super::{Step, instance_listing};
use crate::api::{ManagementPolicy, SecurityProfile, SecurityProfileStatus};
use crate::connect::ConnectApi;
use crate::domain::diff::diff;
use crate::domain::{Expectation, FoundProfile, ObservedProfile, tags_with_owner};

/// Whether the operator only observes this resource (its policy, or `--observe-only` for all).
pub fn is_observing<C>(profile: &SecurityProfile, ctx: &Context<C>) -> bool {
    ctx.settings.observe_only || profile.spec.management_policy == Some(ManagementPolicy::Observe)
}

/// The tags the spec asks Connect to hold: in Observe the owner tag is not expected (never written)
/// unless the profile carries this resource's already.
fn expected_tags<C>(step: &Step<'_, C>, observed: &ObservedProfile) -> std::collections::BTreeMap<String, String> {
    let uid = step.uid();
    if observed.owner() == Some(uid.as_str()) {
        tags_with_owner(step.profile.spec.tags.as_ref(), &uid, step.namespace())
    } else {
        let mut tags = step.profile.spec.tags.clone().unwrap_or_default();
        for key in [crate::api::OWNER_UID_TAG, crate::api::NAMESPACE_TAG] {
            tags.extend(observed.tags.get(key).map(|v| (key.to_string(), v.clone())));
        }
        tags
    }
}

/// Records the difference between the spec and the profile `id` as read; writes nothing to Connect.
pub async fn report<C: ConnectApi>(step: &Step<'_, C>, id: &str, observed: &ObservedProfile) -> Result<Action, Error> {
    let entries = diff(&step.profile.spec, &expected_tags(step, observed), observed);
    // The observer requeues the profile when Connect changes it (not when it differs from the spec).
    let expect = Expectation::new(observed.last_modified.clone(), &observed.state.description, &observed.tags);
    instance_listing::watch_as(step, id, expect);
    let generation = step.profile.metadata.generation.unwrap_or_default();
    let outcome = Outcome::observed(step.name(), id, generation, entries);
    let identity =
        Identity::Set { id: id.to_string(), arn: observed.arn.clone(), last_modified: observed.last_modified.clone() };
    write_status(step.profile, step.api, step.ctx, identity, &outcome).await?;
    Ok(super::report::observe_again_after_resync(step.profile, step.ctx))
}

/// Records the profile found by name as the one this resource observes (nothing is taken over).
pub async fn record<C: ConnectApi>(
    step: &Step<'_, C>,
    found: Option<FoundProfile>,
) -> Result<SecurityProfileStatus, Error> {
    let Some(found) = found else {
        return Err(Error::ObservedProfileNotFound {
            name: step.name().to_string(),
            instance: step.target.instance_id.clone(),
        });
    };
    let identity = Identity::Set { id: found.profile.id, arn: found.profile.arn, last_modified: None };
    let outcome = Outcome::progressing(reason::OBSERVING, "Found the profile by name; reading it");
    write_status(step.profile, step.api, step.ctx, identity, &outcome).await
}
