//! Deletion of a SecurityProfile: with `deletionPolicy: Delete` (the default) its Connect profile goes
//! first; with `Retain`, or when nothing was ever created, only the finalizer is removed.

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;

use super::context::{Context, key};
use super::error::Error;
use super::events::{EventType, publish};
use super::{finalizer, target};
use crate::api::{DeletionPolicy, SecurityProfile};
use crate::connect::{ConnectApi, ErrorClass};

pub async fn cleanup<C: ConnectApi>(
    profile: &SecurityProfile,
    api: &Api<SecurityProfile>,
    ctx: &Context<C>,
) -> Result<Action, Error> {
    if !finalizer::has_finalizer(&profile.metadata) {
        return Ok(Action::await_change());
    }
    let id = profile.status.as_ref().and_then(|s| s.security_profile_id.clone());
    if let (Some(id), DeletionPolicy::Delete) = (id, profile.spec.deletion_policy.unwrap_or_default()) {
        let target = target::resolve(profile, ctx).await?;
        match ctx.connect.delete_profile(&target, &id).await {
            Ok(()) => {
                let note = format!("Deleted security profile {id} from instance {}", target.instance_id);
                publish(ctx, profile, EventType::Normal, "Deleted", note).await
            }
            // Already gone: nothing to delete.
            Err(e) if e.class == ErrorClass::NotFound => {}
            Err(e) if e.class == ErrorClass::InUse => return Err(Error::DeleteBlocked { id, source: e }),
            Err(e) => return Err(Error::Delete { id, source: e }),
        }
    }
    finalizer::remove(api, &profile.metadata).await?;
    ctx.forget(&key(&profile.metadata), profile.uid().as_deref());
    Ok(Action::await_change())
}
