//! An object the operator cannot read as a SecurityProfile (it bypassed the schema): say so in its
//! status, never call Connect, and keep serving every other object.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use serde_json::json;
use tracing::warn;

use super::context::Context;
use super::error::{Error, reason};
use super::events::{EventType, publish_about};
use super::finalizer;
use super::report::apply_status;
use super::status::{self, Identity, Outcome};
use crate::api::{SecurityProfile, SecurityProfileStatus};

pub async fn report_invalid_object<C>(
    invalid: &kube::core::error_boundary::InvalidObject,
    ctx: &Context<C>,
) -> Result<Action, Error> {
    let meta = &invalid.metadata;
    let ns = meta.namespace.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    let api: Api<DeserializeGuard<SecurityProfile>> = Api::namespaced(ctx.client.clone(), &ns);
    let raw: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &ns, &kube::discovery::ApiResource::erase::<SecurityProfile>(&()));
    let current = raw.get_opt(&name).await.map_err(Error::ReadInvalidObject)?;
    let current_status: Option<SecurityProfileStatus> =
        current.as_ref().and_then(|o| o.data.get("status")).and_then(|s| serde_json::from_value(s.clone()).ok());
    if meta.deletion_timestamp.is_some()
        && current_status.as_ref().and_then(|s| s.security_profile_id.as_ref()).is_none()
    {
        // Nothing was created in Connect: nothing to clean up.
        finalizer::remove(&api, meta).await?;
        return Ok(Action::await_change());
    }
    let message = format!(
        "The object does not match the SecurityProfile schema: {}. Nothing was sent to Connect.",
        invalid.error
    );
    let next = status::next_status(
        current_status.as_ref(),
        Identity::Keep,
        meta.generation,
        &Outcome::failed(reason::INVALID_OBJECT, &message, false),
        Time(jiff::Timestamp::now()),
    );
    if !status::unchanged(current_status.as_ref(), &next) {
        // Server-side apply builds a typed object from the stored one and fails (500) when the stored spec
        // does not match the schema; a merge patch of the status does not, and current API servers accept
        // it (CRD validation ratcheting leaves the unchanged invalid spec alone). Older ones (1.20) validate
        // the whole object on a status write and refuse both: the Event below is then the only report, and
        // the object waits for a change instead of retrying a write that cannot succeed.
        if let Err(e) = apply_status(&api, &name, &next).await {
            let merge = Patch::Merge(json!({"status": &next}));
            if let Err(e2) = api.patch_status(&name, &PatchParams::default(), &merge).await {
                warn!(namespace = %ns, name = %name, apply = %e, merge = %e2, "cannot record the InvalidObject status; reporting it as an Event");
            }
        }
        let reference = ObjectRef::<SecurityProfile>::new(&name).within(&ns);
        let mut regarding = ObjectReference::from(reference);
        regarding.uid = meta.uid.clone();
        publish_about(ctx, regarding, EventType::Warning, reason::INVALID_OBJECT, message.clone()).await;
    }
    Err(Error::InvalidObject { message })
}
