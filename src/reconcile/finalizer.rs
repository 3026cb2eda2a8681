//! The finalizer that keeps a SecurityProfile until its Connect profile is dealt with. Both patches are
//! JSON patches with a `test` op, so that a stale cached object cannot add or remove the wrong entry:
//! adding tests the object's resourceVersion, removing tests the entry at the index it removes.
//!
//! Hand-written rather than kube-runtime's `kube::runtime::finalizer()` helper, which does the same
//! two patches (with `test` ops on the finalizer list) but owns the whole reconcile around them:
//! - after adding the finalizer it returns `Action::await_change()` and applies on the next event;
//!   after [`ensure`] the same pass goes on and creates the profile at once (the reconcile that the
//!   finalizer change triggers then finds it in sync);
//! - it wraps every failure in its own `finalizer::Error` (`ApplyFailed`, `CleanupFailed`, ...), while
//!   the pipeline's [`Error`] decides per variant how to retry and what the status says (error.rs);
//! - it needs the object typed: [`remove`] is generic and also releases an object that does not parse
//!   as a SecurityProfile (`invalid.rs`, through `DeserializeGuard`), and treats an object already gone
//!   (404) as done, where the helper reports `RemoveFinalizer`.
//!
//! Adopting the helper means moving the deletion branch (`cleanup.rs`) into its `Event::Cleanup` and
//! mapping its errors back into [`Error`]; these few dozen lines stay until that is worth doing.

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::error::Error;
use crate::api::{FINALIZER, SecurityProfile};

pub fn has_finalizer(meta: &kube::api::ObjectMeta) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == FINALIZER)
}

/// Adds the finalizer unless present (guarded by the object's resourceVersion).
pub async fn ensure(profile: &SecurityProfile, api: &Api<SecurityProfile>) -> Result<(), Error> {
    if has_finalizer(&profile.metadata) {
        return Ok(());
    }
    let rv = profile.resource_version().unwrap_or_default();
    let ops = if profile.metadata.finalizers.is_some() {
        json!([{"op": "test", "path": "/metadata/resourceVersion", "value": rv},
               {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}])
    } else {
        json!([{"op": "test", "path": "/metadata/resourceVersion", "value": rv},
               {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}])
    };
    let patch: json_patch::Patch = serde_json::from_value(ops).expect("valid JSON patch");
    api.patch(&profile.name_any(), &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map_err(Error::AddFinalizer)?;
    Ok(())
}

/// Removes the finalizer (an object already gone counts as done).
pub async fn remove<K>(api: &Api<K>, meta: &kube::api::ObjectMeta) -> Result<(), Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let finalizers = meta.finalizers.as_deref().unwrap_or_default();
    let Some(i) = finalizers.iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    let ops = json!([{"op": "test", "path": format!("/metadata/finalizers/{i}"), "value": FINALIZER},
                     {"op": "remove", "path": format!("/metadata/finalizers/{i}")}]);
    let patch: json_patch::Patch = serde_json::from_value(ops).expect("valid JSON patch");
    match api.patch(meta.name.as_deref().unwrap_or_default(), &PatchParams::default(), &Patch::<()>::Json(patch)).await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(source) => Err(Error::RemoveFinalizer(source)),
    }
}
