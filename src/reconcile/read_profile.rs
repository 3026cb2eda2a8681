//! The observe step: what Connect holds for this resource. With no profile in the status, nothing
//! (unless the adopt annotation asks to look one up by name). With one, DescribeSecurityProfile, and
//! the List* reads of the members only when the spec changed, Connect's LastModifiedTime moved since
//! the last full read, or the quick read already differs.

use super::Step;
use super::error::Error;
use super::guard::wants_adoption;
use super::instance_listing::{self, InstanceKey};
use crate::api::SecurityProfileStatus;
use crate::connect::{ConnectApi, ErrorClass};
use crate::domain::{FoundProfile, ObservedProfile, Priority, Verdict, plan_tags, plan_update, tags_with_owner};

/// What the observe step found.
#[derive(Debug)]
pub enum Observation {
    /// The status names no profile; `adoptable` is the profile of the spec's name when the adopt
    /// annotation asked for a lookup and one exists.
    Absent { adoptable: Option<FoundProfile> },
    /// The profile the status names no longer exists in Connect.
    Gone { id: String },
    /// The profile the status names, read in full when `full`.
    Present { id: String, observed: Box<ObservedProfile>, full: bool },
    /// The instance's latest listing shows the profile as the status recorded it: nothing to read.
    Unchanged { id: String, arn: String, last_modified: Option<String> },
    /// The instance has no listing yet (just after a start): look again shortly, with no call now.
    Waiting,
}

pub async fn observe<C: ConnectApi>(step: &Step<'_, C>) -> Result<Observation, Error> {
    let status = step.profile.status.clone().unwrap_or_default();
    let Some(id) = status.security_profile_id.clone() else {
        return absent(step).await;
    };
    let drifted = status.diff_count.unwrap_or(0) > 0;
    // A CloudTrail event named the profile (reconcile/events_queue.rs): read it as a listing that shows
    // it changed would have it read.
    let named_by_event = step.ctx.observations.take_changed(&InstanceKey::of(step.target), &id);
    let listed_as_changed = if named_by_event {
        tracing::debug!(id, "a CloudTrail event names the profile: reading it");
        true
    } else if step.target.priority == Priority::Background && !(step.observing && drifted) {
        match from_listing(step, &id, &status) {
            Listed::Seen(seen) => return Ok(seen),
            Listed::Changed => {
                tracing::debug!(id, "the instance listing shows the profile changed: reading it");
                true
            }
            Listed::Missing => {
                tracing::debug!(id, "the profile is not in the instance listing: looking it up");
                false
            }
        }
    } else {
        false
    };
    // A full read when the listing says the profile changed, the spec changed or was not applied yet
    // (the status may name this generation after a pending or failed attempt: only Synced True says it
    // was applied), or nothing records what Connect held at the last full read.
    let applied = step
        .profile
        .condition(super::status::SYNCED)
        .is_some_and(|c| c.status == "True" && c.observed_generation == step.profile.metadata.generation);
    let mut full = listed_as_changed
        || step.observing
        || !applied
        || status.observed_generation != step.profile.metadata.generation
        || status.connect_last_modified_time.is_none();
    let mut observed = match step.ctx.connect.observe_profile(step.target, &id, full).await {
        Ok(o) => o,
        Err(e) if e.class == ErrorClass::NotFound => return Ok(Observation::Gone { id }),
        Err(e) => return Err(Error::Read(e)),
    };
    may_manage(step, &id, &observed)?;
    if !full && observed.last_modified != status.connect_last_modified_time {
        full = true;
    }
    if observed.state.listed.is_none() {
        let differs = !plan_update(&step.profile.spec, &observed.state).is_empty()
            || !plan_tags(
                &tags_with_owner(step.profile.spec.tags.as_ref(), &step.uid(), step.namespace()),
                &observed.tags,
            )
            .is_empty();
        if full || differs {
            // Connect changed the profile, or it differs already: read the members before planning.
            observed = step.ctx.connect.observe_profile(step.target, &id, true).await.map_err(Error::Read)?;
            full = true;
        }
    }
    Ok(Observation::Present { id, observed: Box::new(observed), full })
}

/// The status names no profile: nothing to read, unless the adopt annotation (or Observe) asks for a
/// lookup by name.
async fn absent<C: ConnectApi>(step: &Step<'_, C>) -> Result<Observation, Error> {
    if step.observing {
        // Observe: find the profile of this name; nothing is taken over.
    } else if wants_adoption(step.profile) {
        // Refused by the binding before any call.
        step.may_adopt(step.name())?;
    } else {
        return Ok(Observation::Absent { adoptable: None });
    }
    let found = step.ctx.connect.find_profile_by_name(step.target, step.name()).await.map_err(Error::Lookup)?;
    if step.observing
        && let Some(f) = &found
    {
        // Observe records only a profile Manage could own (unless the binding opts in).
        step.may_observe(&f.profile.id, step.name(), f.owner())?;
    }
    Ok(Observation::Absent { adoptable: found })
}

/// The profile `id` the status names may be changed by this resource: its name, its owner tag, and the
/// binding's adoption and default-profile rules (Observe reads and is checked when it reports).
fn may_manage<C>(step: &Step<'_, C>, id: &str, observed: &ObservedProfile) -> Result<(), Error> {
    if observed.name != step.name() {
        return Err(Error::RenamedInConnect {
            id: id.to_string(),
            connect_name: observed.name.clone(),
            spec_name: step.name().to_string(),
        });
    }
    if step.observing {
        return Ok(());
    }
    if let Some(owner) = observed.owner()
        && owner != step.uid()
    {
        return Err(Error::OwnedElsewhere {
            name: step.name().to_string(),
            id: id.to_string(),
            instance: step.target.instance_id.clone(),
            owner: owner.to_string(),
        });
    }
    if observed.owner().is_none() {
        // A profile no resource owns (one observed before, then switched to Manage): taking it over is an
        // adoption, under the binding's rules.
        step.may_adopt(&observed.name)?;
    }
    if step.grant.default_profile_refused(&observed.name) {
        return Err(Error::DefaultProfileNotAllowed {
            name: observed.name.clone(),
            id: id.to_string(),
            binding: step.grant.binding_name(),
        });
    }
    Ok(())
}

/// What the instance's latest listing says about a settled profile.
enum Listed {
    /// Unchanged (no call), or no listing yet (wait for the first one).
    Seen(Observation),
    /// Changed or different: read it in full.
    Changed,
    /// Not listed: look it up (DescribeSecurityProfile says whether it is gone).
    Missing,
}

fn from_listing<C: ConnectApi>(step: &Step<'_, C>, id: &str, status: &SecurityProfileStatus) -> Listed {
    let key = InstanceKey::of(step.target);
    let Some(snapshot) = step.ctx.observations.snapshot(&key) else {
        instance_listing::ensure(step.ctx, step.target);
        return Listed::Seen(Observation::Waiting);
    };
    let expect = step.expectation(status.connect_last_modified_time.clone());
    let arn = status.security_profile_arn.clone().unwrap_or_default();
    match snapshot.listing.verdict(id, &expect) {
        Verdict::Unchanged => {
            Listed::Seen(Observation::Unchanged { id: id.to_string(), arn, last_modified: expect.last_modified })
        }
        Verdict::Baseline(t) => {
            Listed::Seen(Observation::Unchanged { id: id.to_string(), arn, last_modified: Some(t) })
        }
        Verdict::Changed => Listed::Changed,
        // Not listed, but written (created) after the listing began: it cannot be in it yet.
        Verdict::Missing if expect.last_modified.is_none() && written_after(step, snapshot.taken_at) => {
            Listed::Seen(Observation::Unchanged { id: id.to_string(), arn, last_modified: None })
        }
        Verdict::Missing => Listed::Missing,
    }
}

/// Whether the status's Ready condition turned True after `taken_at` (with a margin for clock skew
/// between this process and the API server).
fn written_after<C>(step: &Step<'_, C>, taken_at: jiff::Timestamp) -> bool {
    step.profile
        .condition(crate::reconcile::status::READY)
        .is_some_and(|c| c.last_transition_time.0 + jiff::SignedDuration::from_secs(5) >= taken_at)
}
