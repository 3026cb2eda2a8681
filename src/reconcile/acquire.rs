//! The apply step for a profile the status does not name yet: take over the one the adopt annotation
//! found, else create it. A create that meets its own name recovers our earlier create whose answer
//! was lost (the owner tag carries this resource's UID); a create whose outcome is unknown looks first.

use super::error::Error;
use super::events::{EventType, publish};
use super::guard::wants_adoption;
use super::report::write_status;
use super::status::{Identity, Outcome, reason};
use super::{Step, audit};
use crate::api::SecurityProfileStatus;
use crate::connect::{ConnectApi, ErrorClass};
use crate::domain::{FoundProfile, ProfileRef, tags_with_owner};

/// What the step got hold of.
#[derive(Debug)]
pub enum Acquired {
    /// A new profile, created from the spec: it matches the spec.
    Created(ProfileRef),
    /// An existing profile, now recorded in the status (progressing): observe it next.
    TakenOver(SecurityProfileStatus),
}

pub async fn acquire<C: ConnectApi>(step: &Step<'_, C>, adoptable: Option<FoundProfile>) -> Result<Acquired, Error> {
    match adoptable {
        Some(found) => take_over(step, found, TakeOver::Adopted).await,
        None => create(step).await,
    }
}

#[derive(Debug, Clone, Copy)]
enum TakeOver {
    /// A profile that existed before this resource (adopt annotation).
    Adopted,
    /// This resource's own profile from a create whose answer was lost.
    Recovered,
}

pub async fn create<C: ConnectApi>(step: &Step<'_, C>) -> Result<Acquired, Error> {
    let connect = &step.ctx.connect;
    let tags = tags_with_owner(step.profile.spec.tags.as_ref(), &step.uid(), step.namespace());
    let result = connect.create_profile(step.target, &step.profile.spec, &tags).await;
    let id = result.as_ref().map(|p| p.id.clone()).unwrap_or_default();
    let e = match audit::write(step.profile, step.target, "CreateSecurityProfile", &id, result) {
        Ok(created) => {
            let note = format!(
                "Created security profile {:?} ({}) in instance {}",
                step.name(),
                created.id,
                step.target.instance_id
            );
            publish(step.ctx, step.profile, EventType::Normal, "Created", note).await;
            return Ok(Acquired::Created(created));
        }
        Err(e) => e,
    };
    let instance = step.target.instance_id.clone();
    match e.class {
        ErrorClass::Duplicate => {
            // The name is taken: by our own earlier create whose answer was lost, or by someone else.
            let found = connect.find_profile_by_name(step.target, step.name()).await.map_err(Error::Lookup)?;
            match found {
                Some(f) if f.owner() == Some(&step.uid()) => take_over(step, f, TakeOver::Recovered).await,
                // Owned by another resource: take_over refuses it with the owner named.
                Some(f) if f.owner().is_some() || wants_adoption(step.profile) => {
                    take_over(step, f, TakeOver::Adopted).await
                }
                Some(f) => Err(Error::NameTaken { name: step.name().to_string(), id: f.profile.id, instance }),
                // Search is eventually consistent: the profile exists but is not listed yet.
                None => Err(Error::NameNotYetSearchable { name: step.name().to_string() }),
            }
        }
        _ if e.outcome_unknown => {
            // The create may have happened (timeout, dropped connection). Look before anything else: a
            // profile with this name that carries our UID is ours. Not there, not searchable yet, or
            // the lookup failed too: report the create's error and retry; a later create meets
            // DuplicateResource if the profile exists, and that path recovers it by the same rule.
            match connect.find_profile_by_name(step.target, step.name()).await {
                Ok(Some(f)) if f.owner() == Some(&step.uid()) => take_over(step, f, TakeOver::Recovered).await,
                _ => Err(Error::Create(e)),
            }
        }
        ErrorClass::NotFound => {
            Err(Error::InstanceNotFound { instance, region: step.target.region.clone(), source: e })
        }
        ErrorClass::Quota => Err(Error::QuotaReached { instance, source: e }),
        _ => Err(Error::Create(e)),
    }
}

/// Records `found` as this resource's profile unless another resource owns it.
async fn take_over<C: ConnectApi>(step: &Step<'_, C>, found: FoundProfile, how: TakeOver) -> Result<Acquired, Error> {
    if let Some(owner) = found.owner()
        && owner != step.uid()
    {
        return Err(Error::OwnedElsewhere {
            name: step.name().to_string(),
            id: found.profile.id.clone(),
            instance: step.target.instance_id.clone(),
            owner: owner.to_string(),
        });
    }
    if matches!(how, TakeOver::Adopted) {
        step.may_adopt(step.name())?;
    }
    let ProfileRef { id, arn } = found.profile;
    let (event, progress, message) = match how {
        TakeOver::Adopted => ("Adopted", reason::ADOPTING, "Bringing the adopted profile to the spec"),
        TakeOver::Recovered => ("Recovered", reason::RECOVERING, "Bringing the recovered profile to the spec"),
    };
    let note = format!("{event} security profile {:?} ({id}) in instance {}", step.name(), step.target.instance_id);
    publish(step.ctx, step.profile, EventType::Normal, event, note).await;
    // Record the identity first, so that a crash from here on cannot lose it.
    let identity = match how {
        TakeOver::Adopted => Identity::Adopted { id, arn },
        TakeOver::Recovered => Identity::Set { id, arn, last_modified: None },
    };
    let status =
        write_status(step.profile, step.api, step.ctx, identity, &Outcome::progressing(progress, message)).await?;
    Ok(Acquired::TakenOver(status))
}
