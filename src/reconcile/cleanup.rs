//! Deletion of a SecurityProfile. With `deletionPolicy: Delete` (the default) the operator deletes the
//! profile the status names, where the status ARN says it is (never where the spec points now), and
//! only after reading it: a profile that does not carry this resource's owner tag, or a default profile
//! the binding does not allow changing, is left in Connect with a Warning Event. With `Retain`, or when
//! nothing was ever created, only the finalizer is removed. An adopted profile defaults to Retain; so
//! does a profile whose namespace no InstanceBinding grants any more (the finalizer never strands).

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;

use super::context::{Context, key};
use super::error::Error;
use super::events::{EventType, publish};
use super::{audit, binding, finalizer};
use crate::api::{DeletionPolicy, SecurityProfile};
use crate::connect::{ConnectApi, ErrorClass};
use crate::domain::{instance_of_arn, region_of_arn};

pub async fn cleanup<C: ConnectApi>(
    profile: &SecurityProfile,
    api: &Api<SecurityProfile>,
    ctx: &Context<C>,
) -> Result<Action, Error> {
    if !finalizer::has_finalizer(&profile.metadata) {
        return Ok(Action::await_change());
    }
    let status = profile.status.clone().unwrap_or_default();
    // Observe never writes: deleting the resource only removes the finalizer.
    let observing = super::observe_mode::is_observing(profile, ctx);
    if let (Some(id), DeletionPolicy::Delete, false) = (status.security_profile_id, deletion_policy(profile), observing)
    {
        let arn = status.security_profile_arn.unwrap_or_default();
        delete_owned(profile, ctx, &id, &arn).await?;
    }
    finalizer::remove(api, &profile.metadata).await?;
    ctx.forget(&key(&profile.metadata), profile.uid().as_deref());
    let object =
        kube::runtime::reflector::ObjectRef::new(&profile.name_any()).within(&profile.namespace().unwrap_or_default());
    ctx.observations.unwatch(&object);
    Ok(Action::await_change())
}

/// The spec's deletionPolicy; unset: Retain for an adopted profile, else Delete.
pub fn deletion_policy(profile: &SecurityProfile) -> DeletionPolicy {
    let adopted = profile.status.as_ref().and_then(|s| s.adopted).unwrap_or(false);
    profile.spec.deletion_policy.unwrap_or(if adopted { DeletionPolicy::Retain } else { DeletionPolicy::Delete })
}

/// Deletes the profile `id` (at `arn`) if this resource owns it. With no binding for it any more the
/// profile is retained (a deleted binding never strands a finalizer).
async fn delete_owned<C: ConnectApi>(
    profile: &SecurityProfile,
    ctx: &Context<C>,
    id: &str,
    arn: &str,
) -> Result<(), Error> {
    let instance = instance_of_arn(arn).unwrap_or(&profile.spec.instance_id).to_string();
    let grant = match binding::resolve(profile, &instance, ctx).await {
        Ok(grant) => grant,
        Err(Error::NoInstanceBinding { instance, namespace }) => {
            let note = format!(
                "No InstanceBinding grants namespace {namespace} access to instance {instance} any more: security profile {id} was left in Connect (Retain)"
            );
            publish(ctx, profile, EventType::Warning, "Retained", note).await;
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let mut target = grant.target.clone();
    if let Some(region) = region_of_arn(arn) {
        if grant.binding.is_some() && region != target.region {
            // The binding no longer grants the profile's Region: nothing to delete it with.
            return Err(Error::RegionChanged {
                id: id.to_string(),
                profile_region: region.to_string(),
                region: target.region,
            });
        }
        target.region = region.to_string();
    }
    let observed = match ctx.connect.observe_profile(&target, id, false).await {
        Ok(o) => o,
        // Already gone: nothing to delete.
        Err(e) if e.class == ErrorClass::NotFound => return Ok(()),
        Err(e) => return Err(Error::Read(e)),
    };
    let uid = profile.uid().unwrap_or_default();
    let refusal = if observed.owner() != Some(uid.as_str()) {
        Some(format!(
            "Security profile {id} ({:?}) does not carry this resource's owner tag ({}); it was left in Connect.",
            observed.name,
            observed.owner().map(|o| format!("owner {o}")).unwrap_or_else(|| "no owner".into())
        ))
    } else if grant.default_profile_refused(&observed.name) {
        Some(format!(
            "Security profile {id} is the instance's default profile {:?} and InstanceBinding {} does not allow changing it; it was left in Connect.",
            observed.name,
            grant.binding_name()
        ))
    } else {
        None
    };
    if let Some(note) = refusal {
        publish(ctx, profile, EventType::Warning, "DeleteSkipped", note).await;
        return Ok(());
    }
    match audit::write(profile, &target, "DeleteSecurityProfile", id, ctx.connect.delete_profile(&target, id).await) {
        Ok(()) => {
            let note = format!("Deleted security profile {id} from instance {}", target.instance_id);
            publish(ctx, profile, EventType::Normal, "Deleted", note).await;
            Ok(())
        }
        Err(e) if e.class == ErrorClass::NotFound => Ok(()),
        Err(e) if e.class == ErrorClass::InUse => Err(Error::DeleteBlocked { id: id.to_string(), source: e }),
        Err(e) => Err(Error::Delete { id: id.to_string(), source: e }),
    }
}
