//! The audit trail: every Connect write the operator makes (Create, Update, Tag, Untag, Delete) is
//! logged at info under the `audit` target, with the resource, the instance and profile, the principal
//! the call was made as, and its outcome. CloudTrail holds the same calls under the session name
//! `csp-<namespace>`; this log ties each to its SecurityProfile.

use kube::ResourceExt;
use tracing::info;

use crate::api::SecurityProfile;
use crate::connect::ConnectError;
use crate::domain::Target;

/// Logs one Connect write and passes its result through.
pub fn write<T>(
    profile: &SecurityProfile,
    target: &Target,
    operation: &'static str,
    profile_id: &str,
    result: Result<T, ConnectError>,
) -> Result<T, ConnectError> {
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.code.as_str(),
    };
    let principal = match (&target.role_arn, &target.session_name) {
        (Some(role), Some(session)) => format!("{role} (session {session})"),
        (Some(role), None) => role.clone(),
        (None, _) => "operator identity".to_string(),
    };
    info!(
        target: "audit",
        operation,
        namespace = %profile.namespace().unwrap_or_default(),
        name = %profile.name_any(),
        uid = %profile.uid().unwrap_or_default(),
        region = %target.region,
        instance = %target.instance_id,
        profile_id,
        principal = %principal,
        outcome,
        "Connect write"
    );
    result
}
