//! The plan and apply steps for a profile that exists: the smallest set of Connect writes that makes it
//! match the spec (UpdateSecurityProfile with only the differing members, TagResource, UntagResource),
//! and a Normal Event naming what changed.

use super::error::Error;
use super::events::{EventType, publish};
use super::{Step, audit};
use crate::connect::ConnectApi;
use crate::domain::{ObservedProfile, diff, plan_tags, plan_update, tags_with_owner};

/// Brings `observed` (the profile `id`) to the spec. Returns the LastModifiedTime the status records:
/// Connect's when nothing was written, else none (read in full next time).
pub async fn apply<C: ConnectApi>(
    step: &Step<'_, C>,
    id: &str,
    observed: &ObservedProfile,
) -> Result<Option<String>, Error> {
    let desired_tags = tags_with_owner(step.profile.spec.tags.as_ref(), &step.uid(), step.namespace());
    let update = plan_update(&step.profile.spec, &observed.state);
    let tags = plan_tags(&desired_tags, &observed.tags);
    // What is about to change, field by field (Connect's value -> the spec's), for the Event.
    let changes = diff::diff(&step.profile.spec, &desired_tags, observed);
    if update.is_empty() && tags.is_empty() {
        return Ok(observed.last_modified.clone());
    }
    let connect = &step.ctx.connect;
    // Tags first: on an adopted profile the owner tag claims it before anything else changes (the IAM
    // policy lets the operator update only profiles that carry the owner tag).
    if !tags.set.is_empty() {
        let result = connect.tag_profile(step.target, &observed.arn, &tags.set).await;
        audit::write(step.profile, step.target, "TagResource", id, result).map_err(Error::Tag)?;
    }
    if !update.is_empty() {
        let result = connect.update_profile(step.target, id, &update.update).await;
        audit::write(step.profile, step.target, "UpdateSecurityProfile", id, result).map_err(Error::Update)?;
    }
    if !tags.remove.is_empty() {
        let result = connect.untag_profile(step.target, &observed.arn, &tags.remove).await;
        audit::write(step.profile, step.target, "UntagResource", id, result).map_err(Error::Untag)?;
    }
    let status = step.profile.status.clone().unwrap_or_default();
    let drift = status.observed_generation == step.profile.metadata.generation;
    let (reason, what) = if drift { ("DriftRepaired", "Restored") } else { ("Updated", "Updated") };
    let note = format!("{what} profile {id}: {}", diff::describe(&changes));
    publish(step.ctx, step.profile, EventType::Normal, reason, note).await;
    Ok(None)
}
