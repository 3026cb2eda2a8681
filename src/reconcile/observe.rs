//! The observe step: what Connect holds for this resource. With no profile in the status, nothing
//! (unless the adopt annotation asks to look one up by name). With one, DescribeSecurityProfile, and
//! the List* reads of the members only when the spec changed, Connect's LastModifiedTime moved since
//! the last full read, or the quick read already differs.

use super::Step;
use super::error::Error;
use super::guard::wants_adoption;
use crate::connect::{ConnectApi, ErrorClass};
use crate::constraints::DEFAULT_PROFILE_NAMES;
use crate::domain::{FoundProfile, ObservedProfile, plan_tags, plan_update, tags_with_owner};

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
}

pub async fn observe<C: ConnectApi>(step: &Step<'_, C>) -> Result<Observation, Error> {
    let status = step.profile.status.clone().unwrap_or_default();
    let Some(id) = status.security_profile_id.clone() else {
        if !wants_adoption(step.profile) {
            return Ok(Observation::Absent { adoptable: None });
        }
        // Refused by the binding before any call.
        step.may_adopt(step.name())?;
        let found = step.ctx.connect.find_profile_by_name(step.target, step.name()).await.map_err(Error::Lookup)?;
        return Ok(Observation::Absent { adoptable: found });
    };
    // A full read when the spec changed or nothing records what Connect held at the last full read.
    let mut full =
        status.observed_generation != step.profile.metadata.generation || status.connect_last_modified_time.is_none();
    let mut observed = match step.ctx.connect.observe_profile(step.target, &id, full).await {
        Ok(o) => o,
        Err(e) if e.class == ErrorClass::NotFound => return Ok(Observation::Gone { id }),
        Err(e) => return Err(Error::Read(e)),
    };
    if observed.name != step.name() {
        return Err(Error::RenamedInConnect { id, connect_name: observed.name, spec_name: step.name().to_string() });
    }
    if let Some(owner) = observed.owner()
        && owner != step.uid()
    {
        return Err(Error::OwnedElsewhere {
            name: step.name().to_string(),
            id,
            instance: step.target.instance_id.clone(),
            owner: owner.to_string(),
        });
    }
    if DEFAULT_PROFILE_NAMES.contains(&observed.name.as_str()) && !step.grant.allow_default_profiles {
        return Err(Error::DefaultProfileNotAllowed { name: observed.name, id, binding: step.grant.binding_name() });
    }
    if !full && observed.last_modified != status.connect_last_modified_time {
        full = true;
    }
    if observed.state.listed.is_none() {
        let differs = !plan_update(&step.profile.spec, &observed.state).is_empty()
            || !plan_tags(&tags_with_owner(step.profile.spec.tags.as_ref(), &step.uid()), &observed.tags).is_empty();
        if full || differs {
            // Connect changed the profile, or it differs already: read the members before planning.
            observed = step.ctx.connect.observe_profile(step.target, &id, true).await.map_err(Error::Read)?;
            full = true;
        }
    }
    Ok(Observation::Present { id, observed: Box::new(observed), full })
}
