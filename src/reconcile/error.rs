//! The reconciler's one error type. Each variant is one failure; each says, in exactly one place
//! ([`Error::retry`]), what happens next, and derives the status reason, the message and the metric
//! category. Nothing else decides whether a failure is terminal.

use std::time::Duration;

use crate::connect::{ConnectError, ErrorClass};

/// What happens after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Terminal: nothing changes until the spec (generation) does.
    WhenSpecChanges,
    /// Transient: exponential backoff with jitter, capped.
    Backoff,
    /// Needs someone outside the spec (a quota, the instance, the operator's configuration): retried
    /// every `slow_retry`, never terminal.
    Slowly,
    /// Refused by (or for want of) an InstanceBinding: retried at once when the spec or a binding changes
    /// (the binding watch requeues every profile), and every `slow_retry` for namespace label changes.
    /// Costs no Connect call meanwhile.
    WhenBindingsChange,
}

/// Which part of the system failed, for logs and the `category` label of the reconcile metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Kubernetes,
    Connect,
    Validation,
    Configuration,
    /// Refused by an InstanceBinding's guardrails.
    Policy,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Kubernetes => "kubernetes",
            Category::Connect => "connect",
            Category::Validation => "validation",
            Category::Configuration => "configuration",
            Category::Policy => "policy",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- Kubernetes API (never written to status: the status write would likely fail the same way) ---
    #[error("adding the finalizer: {0}")]
    AddFinalizer(#[source] kube::Error),
    #[error("removing the finalizer: {0}")]
    RemoveFinalizer(#[source] kube::Error),
    #[error("writing status: {0}")]
    WriteStatus(#[source] kube::Error),
    #[error("reading an invalid object: {0}")]
    ReadInvalidObject(#[source] kube::Error),

    // --- The resource itself ---
    /// The spec breaks a rule; `message` names the field and the rule.
    #[error("{message}")]
    InvalidSpec { message: String },
    /// The object does not fit the SecurityProfile types (it bypassed the schema).
    #[error("{message}")]
    InvalidObject { message: String },
    /// The profile the status names carries another name in Connect (it cannot be renamed).
    #[error("profile {id} is named {connect_name:?} in Connect, the spec says {spec_name:?}")]
    RenamedInConnect { id: String, connect_name: String, spec_name: String },
    #[error("no AWS Region: set spec.region or AWS_REGION for the operator")]
    NoRegion,
    /// spec.region (or the binding's Region) differs from the Region of the profile that exists.
    #[error("profile {id} exists in region {profile_region}, not {region}")]
    RegionChanged { id: String, profile_region: String, region: String },

    // --- InstanceBindings (admin-owned grants) ---
    /// The namespace could not be read, so no binding can be matched: nothing is called (fail closed).
    #[error("cannot read namespace {namespace}: {source}")]
    NamespaceUnreadable { namespace: String, source: kube::Error },
    #[error("no InstanceBinding grants namespace {namespace} access to Connect instance {instance}")]
    NoInstanceBinding { instance: String, namespace: String },
    #[error("InstanceBindings {bindings:?} all grant namespace {namespace} access to Connect instance {instance}")]
    AmbiguousInstanceBinding { instance: String, namespace: String, bindings: Vec<String> },
    #[error("spec.region is {spec_region} but InstanceBinding {binding} binds the instance in {binding_region}")]
    RegionNotBound { spec_region: String, binding: String, binding_region: String },
    #[error("InstanceBinding {binding} does not allow adopting {what}")]
    AdoptionNotAllowed { what: String, binding: String, setting: &'static str },
    /// A profile not in Connect yet asks for what the binding does not allow (`what` lists it).
    #[error("InstanceBinding {binding} does not allow {what}")]
    PermissionNotAllowed { what: String, binding: String },
    /// A profile that exists in Connect holds (per its spec) what the binding no longer allows.
    #[error("InstanceBinding {binding} no longer allows {what} of profile {id}")]
    PermissionRevoked { id: String, what: String, binding: String, enforced: bool },
    /// A profile that exists in Connect, in a namespace that no binding grants the instance any more.
    #[error("no InstanceBinding grants namespace {namespace} access to Connect instance {instance} any more")]
    BindingRevoked { id: String, instance: String, namespace: String },
    /// Single-team mode (`--allow-unbound`) never acts on an instance that InstanceBindings name.
    #[error(
        "Connect instance {instance} is bound by InstanceBindings {bindings:?}, none of which grants namespace {namespace}"
    )]
    InstanceBoundElsewhere { instance: String, namespace: String, bindings: Vec<String> },
    /// The binding names a role that the operator's --allowed-role-arns does not allow.
    #[error("InstanceBinding {binding} names role {role}, which the operator's --allowed-role-arns does not allow")]
    RoleNotAllowed { binding: String, role: String },
    #[error(
        "profile {id} is the instance's default profile {name:?}; InstanceBinding {binding} does not allow changing it"
    )]
    DefaultProfileNotAllowed { name: String, id: String, binding: String },

    // --- Ownership in Connect ---
    /// The profile carries another SecurityProfile's owner tag: it is never taken over.
    #[error("security profile {name:?} ({id}) in instance {instance} belongs to another SecurityProfile (UID {owner})")]
    OwnedElsewhere { name: String, id: String, instance: String, owner: String },
    /// The name is taken by a profile no SecurityProfile owns; the adopt annotation lifts it.
    #[error("a security profile named {name:?} ({id}) already exists in instance {instance}")]
    NameTaken { name: String, id: String, instance: String },
    /// The name is taken but the profile is not searchable yet (search is eventually consistent).
    #[error("the name {name:?} is taken but the profile is not searchable yet")]
    NameNotYetSearchable { name: String },

    // --- Connect calls ---
    #[error("Connect instance {instance:?} was not found in region {region}: {source}")]
    InstanceNotFound { instance: String, region: String, source: ConnectError },
    #[error("the security-profile quota of instance {instance} is reached: {source}")]
    QuotaReached { instance: String, source: ConnectError },
    #[error("creating the profile: {}", .0.message)]
    Create(#[source] ConnectError),
    #[error("looking up the profile by name: {}", .0.message)]
    Lookup(#[source] ConnectError),
    #[error("reading the profile: {}", .0.message)]
    Read(#[source] ConnectError),
    #[error("updating the profile: {}", .0.message)]
    Update(#[source] ConnectError),
    #[error("tagging the profile: {}", .0.message)]
    Tag(#[source] ConnectError),
    #[error("untagging the profile: {}", .0.message)]
    Untag(#[source] ConnectError),
    /// The profile is still assigned to users.
    #[error("cannot delete security profile {id}: {source}")]
    DeleteBlocked { id: String, source: ConnectError },
    #[error("cannot delete security profile {id}: {source}")]
    Delete { id: String, source: ConnectError },
    /// Observe: no profile of the spec's name (or the status's ID) exists; nothing is created.
    #[error("no security profile named {name:?} exists in instance {instance}")]
    ObservedProfileNotFound { name: String, instance: String },
    /// The profile kept changing in Connect (taken over, then gone) within one reconcile.
    #[error("the profile kept changing in Connect during the reconcile")]
    Unsettled,
}

/// Our own condition reasons (the others are AWS exception names).
pub mod reason {
    pub const VALIDATION_FAILED: &str = "ValidationFailed";
    pub const INVALID_OBJECT: &str = "InvalidObject";
    pub const PROFILE_OWNED_ELSEWHERE: &str = "ProfileOwnedElsewhere";
    pub const NAME_NOT_YET_SEARCHABLE: &str = "NameNotYetSearchable";
    pub const DELETE_BLOCKED: &str = "DeleteBlocked";
    pub const NO_REGION: &str = "RegionNotConfigured";
    pub const UNSETTLED: &str = "ProfileUnsettled";
    pub const PROFILE_NOT_FOUND: &str = "ProfileNotFound";
    pub const NAMESPACE_UNREADABLE: &str = "NamespaceUnreadable";
    pub const NO_INSTANCE_BINDING: &str = "NoInstanceBinding";
    pub const AMBIGUOUS_INSTANCE_BINDING: &str = "AmbiguousInstanceBinding";
    pub const REGION_NOT_BOUND: &str = "RegionNotBound";
    pub const ADOPTION_NOT_ALLOWED: &str = "AdoptionNotAllowed";
    pub const PERMISSION_NOT_ALLOWED: &str = "PermissionNotAllowed";
    pub const PERMISSION_REVOKED: &str = "PermissionRevoked";
    pub const BINDING_REVOKED: &str = "BindingRevoked";
    pub const INSTANCE_BOUND_ELSEWHERE: &str = "InstanceBoundElsewhere";
    pub const ROLE_NOT_ALLOWED: &str = "RoleNotAllowed";
    pub const DEFAULT_PROFILE_NOT_ALLOWED: &str = "DefaultProfileNotAllowed";
}

impl Error {
    /// The retry decision: the only place that says whether a failure is terminal.
    pub fn retry(&self) -> Retry {
        match self {
            Error::AddFinalizer(_)
            | Error::RemoveFinalizer(_)
            | Error::WriteStatus(_)
            | Error::ReadInvalidObject(_) => Retry::Backoff,
            Error::NoInstanceBinding { .. }
            | Error::AmbiguousInstanceBinding { .. }
            | Error::RegionNotBound { .. }
            | Error::AdoptionNotAllowed { .. }
            | Error::PermissionNotAllowed { .. }
            | Error::PermissionRevoked { .. }
            | Error::BindingRevoked { .. }
            | Error::InstanceBoundElsewhere { .. }
            | Error::RoleNotAllowed { .. }
            // An admin may fix the binding's Region: looked at again when bindings change.
            | Error::RegionChanged { .. }
            | Error::DefaultProfileNotAllowed { .. } => Retry::WhenBindingsChange,
            Error::NamespaceUnreadable { .. } => Retry::Backoff,
            Error::InvalidSpec { .. }
            | Error::InvalidObject { .. }
            | Error::RenamedInConnect { .. }
            | Error::OwnedElsewhere { .. }
            | Error::NameTaken { .. } => Retry::WhenSpecChanges,
            Error::NoRegion
            | Error::InstanceNotFound { .. }
            | Error::QuotaReached { .. }
            | Error::ObservedProfileNotFound { .. } => Retry::Slowly,
            Error::NameNotYetSearchable { .. }
            | Error::DeleteBlocked { .. }
            | Error::Delete { .. }
            | Error::Unsettled => Retry::Backoff,
            Error::Create(e)
            | Error::Lookup(e)
            | Error::Read(e)
            | Error::Update(e)
            | Error::Tag(e)
            | Error::Untag(e) => match e.class {
                ErrorClass::Terminal | ErrorClass::Duplicate => Retry::WhenSpecChanges,
                ErrorClass::Quota | ErrorClass::NotFound => Retry::Slowly,
                ErrorClass::Recoverable | ErrorClass::InUse => Retry::Backoff,
            },
        }
    }

    /// A terminal failure that the adopt annotation lifts (adding it retries at the same generation).
    pub fn lifted_by_adoption(&self) -> bool {
        matches!(self, Error::NameTaken { .. })
    }

    pub fn category(&self) -> Category {
        match self {
            Error::AddFinalizer(_)
            | Error::RemoveFinalizer(_)
            | Error::WriteStatus(_)
            | Error::ReadInvalidObject(_) => Category::Kubernetes,
            Error::InvalidSpec { .. } | Error::InvalidObject { .. } | Error::RenamedInConnect { .. } => {
                Category::Validation
            }
            Error::NoRegion | Error::RoleNotAllowed { .. } | Error::NamespaceUnreadable { .. } => {
                Category::Configuration
            }
            Error::NoInstanceBinding { .. }
            | Error::AmbiguousInstanceBinding { .. }
            | Error::RegionNotBound { .. }
            | Error::RegionChanged { .. }
            | Error::AdoptionNotAllowed { .. }
            | Error::PermissionNotAllowed { .. }
            | Error::PermissionRevoked { .. }
            | Error::BindingRevoked { .. }
            | Error::InstanceBoundElsewhere { .. }
            | Error::DefaultProfileNotAllowed { .. }
            | Error::OwnedElsewhere { .. }
            | Error::NameTaken { .. } => Category::Policy,
            _ => Category::Connect,
        }
    }

    /// Whether the failure is recorded in the resource's status (Kubernetes failures are not: the
    /// status write would meet the same API server).
    pub fn is_reported_in_status(&self) -> bool {
        !matches!(
            self,
            Error::AddFinalizer(_) | Error::RemoveFinalizer(_) | Error::WriteStatus(_) | Error::ReadInvalidObject(_)
        )
    }

    /// Whether a profile that matched the spec may still match it (Ready stays True): false when the
    /// failure means the resource does not describe what Connect holds.
    pub fn keeps_ready(&self) -> bool {
        !matches!(
            self,
            Error::NoRegion
                | Error::RenamedInConnect { .. }
                | Error::InvalidObject { .. }
                | Error::RegionChanged { .. }
                | Error::NoInstanceBinding { .. }
                | Error::PermissionRevoked { .. }
                | Error::BindingRevoked { .. }
                | Error::InstanceBoundElsewhere { .. }
                | Error::RoleNotAllowed { .. }
                | Error::AmbiguousInstanceBinding { .. }
                | Error::RegionNotBound { .. }
                | Error::ObservedProfileNotFound { .. }
        )
    }

    /// The Synced (and, when not Ready, Ready) reason: an AWS exception name or one of [`reason`].
    pub fn reason(&self) -> &str {
        match self {
            Error::AddFinalizer(_)
            | Error::RemoveFinalizer(_)
            | Error::WriteStatus(_)
            | Error::ReadInvalidObject(_) => "KubernetesApiError",
            Error::InvalidSpec { .. } | Error::RenamedInConnect { .. } | Error::RegionChanged { .. } => {
                reason::VALIDATION_FAILED
            }
            Error::NamespaceUnreadable { .. } => reason::NAMESPACE_UNREADABLE,
            Error::NoInstanceBinding { .. } => reason::NO_INSTANCE_BINDING,
            Error::AmbiguousInstanceBinding { .. } => reason::AMBIGUOUS_INSTANCE_BINDING,
            Error::RegionNotBound { .. } => reason::REGION_NOT_BOUND,
            Error::AdoptionNotAllowed { .. } => reason::ADOPTION_NOT_ALLOWED,
            Error::PermissionNotAllowed { .. } => reason::PERMISSION_NOT_ALLOWED,
            Error::PermissionRevoked { .. } => reason::PERMISSION_REVOKED,
            Error::BindingRevoked { .. } => reason::BINDING_REVOKED,
            Error::InstanceBoundElsewhere { .. } => reason::INSTANCE_BOUND_ELSEWHERE,
            Error::RoleNotAllowed { .. } => reason::ROLE_NOT_ALLOWED,
            Error::DefaultProfileNotAllowed { .. } => reason::DEFAULT_PROFILE_NOT_ALLOWED,
            Error::InvalidObject { .. } => reason::INVALID_OBJECT,
            Error::NoRegion => reason::NO_REGION,
            Error::OwnedElsewhere { .. } => reason::PROFILE_OWNED_ELSEWHERE,
            Error::NameNotYetSearchable { .. } => reason::NAME_NOT_YET_SEARCHABLE,
            Error::DeleteBlocked { .. } => reason::DELETE_BLOCKED,
            Error::Unsettled => reason::UNSETTLED,
            Error::ObservedProfileNotFound { .. } => reason::PROFILE_NOT_FOUND,
            Error::NameTaken { .. } => "DuplicateResourceException",
            Error::InstanceNotFound { source, .. }
            | Error::QuotaReached { source, .. }
            | Error::Delete { source, .. }
            | Error::Create(source)
            | Error::Lookup(source)
            | Error::Read(source)
            | Error::Update(source)
            | Error::Tag(source)
            | Error::Untag(source) => &source.code,
        }
    }

    /// The status message: what failed and what to change, then what the operator does next.
    pub fn status_message(&self, slow_retry: Duration) -> String {
        let what = match self {
            Error::InvalidSpec { message } | Error::InvalidObject { message } => return message.clone(),
            Error::NoRegion => return "No AWS Region: set spec.region, or AWS_REGION for the operator".into(),
            Error::RenamedInConnect { id, connect_name, spec_name } => {
                return format!(
                    "spec.securityProfileName: is immutable: profile {id} is named {connect_name:?} in Connect, the spec says {spec_name:?}. Set it back, or create a new SecurityProfile; nothing was changed in Connect."
                );
            }
            Error::RegionChanged { id, profile_region, region } => {
                return format!(
                    "spec.region: is immutable once the profile exists: profile {id} is in region {profile_region}, the spec (or its InstanceBinding) says {region}. Set it back, or create a new SecurityProfile; nothing was changed in Connect."
                );
            }
            Error::NoInstanceBinding { instance, namespace } => format!(
                "No InstanceBinding grants namespace {namespace} access to Connect instance {instance}: ask a cluster admin for one (kind InstanceBinding, spec.instanceId {instance}, spec.namespaces listing {namespace}). Nothing was sent to Connect."
            ),
            Error::AmbiguousInstanceBinding { .. } => format!(
                "{}: a cluster admin must narrow their namespaces or namespaceSelectors so that exactly one applies. Nothing was sent to Connect.",
                self
            ),
            Error::RegionNotBound { .. } => {
                format!("{}: remove spec.region or set it to the binding's. Nothing was sent to Connect.", self)
            }
            Error::AdoptionNotAllowed { setting, .. } => format!(
                "{}: remove the adopt annotation, choose another securityProfileName, or ask a cluster admin to set spec.{setting} on the binding. Nothing was sent to Connect.",
                self
            ),
            Error::PermissionNotAllowed { .. } => format!(
                "{}: remove them from the spec, or ask a cluster admin to allow them. Nothing was sent to Connect.",
                self
            ),
            Error::PermissionRevoked { enforced: true, .. } => format!(
                "{}: the operator removed them from the profile in Connect (onRevoke: Enforce) and keeps them out; remove them from the spec, or ask a cluster admin to allow them again.",
                self
            ),
            Error::PermissionRevoked { enforced: false, .. } => format!(
                "{}: Connect still holds the profile as it was (onRevoke: Report); remove them from the spec, or ask a cluster admin to allow them again.",
                self
            ),
            Error::BindingRevoked { id, .. } => format!(
                "{}. Profile {id} stays in Connect as it is and nothing more is sent to Connect; deleting this resource leaves the profile in Connect (Retain).",
                capitalise(&self.to_string())
            ),
            Error::InstanceBoundElsewhere { .. } => format!(
                "{}: single-team mode (--allow-unbound) never acts on an instance that bindings name; ask a cluster admin to grant this namespace. Nothing was sent to Connect.",
                self
            ),
            Error::RoleNotAllowed { .. } => format!(
                "{}: a cluster admin must change the binding's roleArn or the operator's --allowed-role-arns. Nothing was sent to Connect.",
                self
            ),
            Error::DefaultProfileNotAllowed { .. } => format!(
                "{}: a cluster admin must set spec.allowDefaultProfiles on the binding. Nothing was changed in Connect.",
                self
            ),
            Error::ObservedProfileNotFound { .. } => format!(
                "{}: managementPolicy Observe never creates one; fix securityProfileName, or switch to Manage to create it.",
                capitalise(&self.to_string())
            ),
            Error::OwnedElsewhere { .. } => {
                format!(
                    "{}; it is never taken over. Choose another securityProfileName.",
                    capitalise(&self.to_string())
                )
            }
            Error::NameTaken { .. } => format!(
                "{} and no SecurityProfile owns it. Choose another securityProfileName, or adopt it with the annotation {}: \"true\".",
                capitalise(&self.to_string()),
                crate::api::ADOPT_ANNOTATION
            ),
            Error::InstanceNotFound { instance, region, source } => format!(
                "Connect instance {instance:?} was not found in region {region}: check spec.instanceId and spec.region ({}).",
                source.message
            ),
            Error::QuotaReached { instance, source } => format!(
                "The security-profile quota of instance {instance} is reached: {}. Delete unused profiles or ask AWS for a higher quota.",
                source.message
            ),
            Error::DeleteBlocked { id, source } => format!(
                "Cannot delete security profile {id}: {}. The profile is still assigned to users; reassign them, or set deletionPolicy: Retain.",
                source.message
            ),
            Error::Delete { id, source } if source.code == "AccessDeniedException" => format!(
                "Cannot delete security profile {id}: {}. The operator may not delete this profile; grant connect:DeleteSecurityProfile, or set deletionPolicy: Retain.",
                source.message
            ),
            Error::Delete { id, source } => format!("Cannot delete security profile {id}: {}.", source.message),
            other => format!("{}.", other.to_string().trim_end_matches('.')),
        };
        let next = match self.retry() {
            Retry::WhenSpecChanges => "Fix the spec; it is retried when the spec changes.".to_string(),
            Retry::Backoff => "Retrying with backoff.".to_string(),
            Retry::Slowly => format!("Retrying every {}s.", slow_retry.as_secs()),
            Retry::WhenBindingsChange => {
                "It is retried when the spec, an InstanceBinding or the namespace's labels change.".to_string()
            }
        };
        format!("{what} {next}")
    }
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(class: ErrorClass, code: &str) -> ConnectError {
        ConnectError::new(class, code, "injected")
    }

    /// Every Connect class maps to one decision, whichever call met it; the reason is the AWS code.
    #[test]
    fn connect_errors_decide_by_class() {
        for (class, retry) in [
            (ErrorClass::Terminal, Retry::WhenSpecChanges),
            (ErrorClass::Duplicate, Retry::WhenSpecChanges),
            (ErrorClass::Quota, Retry::Slowly),
            (ErrorClass::NotFound, Retry::Slowly),
            (ErrorClass::Recoverable, Retry::Backoff),
            (ErrorClass::InUse, Retry::Backoff),
        ] {
            for e in [Error::Create(connect(class, "X")), Error::Update(connect(class, "X"))] {
                assert_eq!(e.retry(), retry, "{e}");
                assert_eq!(e.reason(), "X");
            }
        }
    }

    /// The defect this type replaced: a name taken but not searchable yet was reported with the
    /// terminal reason DuplicateResourceException and never retried.
    #[test]
    fn name_not_yet_searchable_is_retried_with_its_own_reason() {
        let e = Error::NameNotYetSearchable { name: "Agents".into() };
        assert_eq!(e.retry(), Retry::Backoff);
        assert_eq!(e.reason(), reason::NAME_NOT_YET_SEARCHABLE);
        assert!(e.status_message(Duration::from_secs(300)).ends_with("Retrying with backoff."));
    }

    #[test]
    fn terminal_failures_say_how_to_fix_them() {
        let e = Error::OwnedElsewhere { name: "A".into(), id: "sp-1".into(), instance: "i".into(), owner: "u".into() };
        assert_eq!(e.retry(), Retry::WhenSpecChanges);
        let m = e.status_message(Duration::from_secs(300));
        assert!(m.starts_with("Security profile \"A\" (sp-1)") && m.contains("never taken over"), "{m}");
        assert!(m.ends_with("retried when the spec changes."), "{m}");
    }
}
