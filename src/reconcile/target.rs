//! Where a SecurityProfile's profile lives and with which identity it is reached.

use kube::ResourceExt;

use super::context::Context;
use super::error::Error;
use crate::api::SecurityProfile;
use crate::domain::Target;

/// The spec's Region (else the operator's), its instance, and the namespace's role.
pub async fn resolve<C>(profile: &SecurityProfile, ctx: &Context<C>) -> Result<Target, Error> {
    let region = profile.spec.region.clone().or_else(|| ctx.default_region.clone()).ok_or(Error::NoRegion)?;
    let role_arn = ctx.namespace_role(&profile.namespace().unwrap_or_default()).await;
    Ok(Target { region, instance_id: profile.spec.instance_id.clone(), role_arn })
}
