//! The reconciler's one error type. Each variant is one failure. What follows from it is decided in
//! one table, [`Error::decision`]: one exhaustive match (no catch-all arm) giving each variant its retry
//! decision (terminal or not: [`Retry`]), metric [`Category`], status [`Reason`], whether Ready stays,
//! whether it is written to status and whether the adopt annotation lifts it. [`Error::retry`],
//! [`Error::category`], [`Error::reason`], [`Error::keeps_ready`], [`Error::is_reported_in_status`] and
//! [`Error::lifted_by_adoption`] only read that table; [`Error::status_message`] adds the words.
//!
//! The reconcile's retry decision (what happens after a failed pass) is made there and nowhere else.
//! Below it, within one Connect call, `connect/sdk.rs` repeats a failed attempt in place: throttling and
//! server errors for any call, and for reads any other recoverable failure, up to `--sdk-max-attempts`
//! attempts, each through the rate limiter. That is the Connect client's attempt loop, not a reconcile
//! retry: only the error its last attempt returns reaches this table.

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
    /// Every category, in the order of the enum (the chart's alerts decide on each).
    pub const ALL: [Category; 5] =
        [Category::Kubernetes, Category::Connect, Category::Validation, Category::Configuration, Category::Policy];

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
    #[error("reading the object: {0}")]
    ReadObject(#[source] kube::Error),

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
    pub const KUBERNETES_API_ERROR: &str = "KubernetesApiError";
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

/// A condition reason: fixed per variant, or the AWS exception name of the Connect error it carries.
#[derive(Debug, Clone, Copy)]
pub enum Reason<'a> {
    /// One of [`reason`], or a fixed name.
    Fixed(&'static str),
    /// The `code` (AWS exception name) of the variant's source [`ConnectError`].
    AwsCode(&'a ConnectError),
}

impl<'a> Reason<'a> {
    pub fn as_str(self) -> &'a str {
        match self {
            Reason::Fixed(reason) => reason,
            Reason::AwsCode(source) => &source.code,
        }
    }
}

/// Everything that follows from one failure, decided for every variant in [`Error::decision`].
#[derive(Debug, Clone, Copy)]
pub struct Decision<'a> {
    /// What happens next (terminal or not).
    pub retry: Retry,
    /// The `category` label of the reconcile metric.
    pub category: Category,
    /// The Synced (and, when not Ready, Ready) reason.
    pub reason: Reason<'a>,
    /// Whether a profile that matched the spec may still match it (Ready stays True).
    pub keeps_ready: bool,
    /// Whether the failure is written to the resource's status.
    pub in_status: bool,
    /// Whether the adopt annotation lifts the (terminal) failure at the same generation.
    pub lifted_by_adoption: bool,
}

impl Error {
    /// The one table: every variant's retry decision, category, reason, whether Ready stays, whether it
    /// is written to status and whether the adopt annotation lifts it. An exhaustive match on purpose
    /// (no `_` arm): a new variant does not compile until its row is written here.
    #[rustfmt::skip]
    pub fn decision(&self) -> Decision<'_> {
        use Category::{Configuration, Connect, Kubernetes, Policy, Validation};
        use Reason::{AwsCode, Fixed};
        use Retry::{Backoff, Slowly, WhenBindingsChange, WhenSpecChanges};
        use reason::*;
        // keeps_ready: a Ready profile stays Ready / the resource no longer describes what Connect holds.
        const READY: bool = true;
        const NOT_READY: bool = false;
        // in_status: Kubernetes failures are not written (the status write would meet the same API server).
        const STATUS: bool = true;
        const NO_STATUS: bool = false;
        // lifted_by_adoption: adding the adopt annotation retries at the same generation.
        const LIFTED: bool = true;
        const NOT_LIFTED: bool = false;
        /// A Connect call's failure: decided by its error class, whichever call met it.
        fn by_class(source: &ConnectError) -> Retry {
            match source.class {
                ErrorClass::Terminal | ErrorClass::Duplicate => WhenSpecChanges,
                ErrorClass::Quota | ErrorClass::NotFound => Slowly,
                ErrorClass::Recoverable | ErrorClass::InUse => Backoff,
            }
        }
        // The common rows: a Kubernetes API failure; a refusal by an InstanceBinding (retried when
        // bindings change); a Connect call failure decided by its class.
        let kube = || (Backoff, Kubernetes, Fixed(KUBERNETES_API_ERROR), READY, NO_STATUS, NOT_LIFTED);
        let bound = |reason, ready| (WhenBindingsChange, Policy, Fixed(reason), ready, STATUS, NOT_LIFTED);
        let call = |source| (by_class(source), Connect, AwsCode(source), READY, STATUS, NOT_LIFTED);
        let (retry, category, reason, keeps_ready, in_status, lifted_by_adoption) = match self {
            // --- Kubernetes API ---
            Error::AddFinalizer(_) | Error::RemoveFinalizer(_) | Error::WriteStatus(_) => kube(),
            Error::ReadInvalidObject(_) | Error::ReadObject(_) => kube(),
            // --- The resource itself ---
            Error::InvalidSpec { .. } => (WhenSpecChanges, Validation, Fixed(VALIDATION_FAILED), READY, STATUS, NOT_LIFTED),
            Error::InvalidObject { .. } => (WhenSpecChanges, Validation, Fixed(INVALID_OBJECT), NOT_READY, STATUS, NOT_LIFTED),
            Error::RenamedInConnect { .. } => (WhenSpecChanges, Validation, Fixed(VALIDATION_FAILED), NOT_READY, STATUS, NOT_LIFTED),
            // An admin may fix the binding's Region: looked at again when bindings change.
            Error::RegionChanged { .. } => (WhenBindingsChange, Validation, Fixed(VALIDATION_FAILED), NOT_READY, STATUS, NOT_LIFTED),
            // --- The operator's (or the cluster's) configuration ---
            Error::NoRegion => (Slowly, Configuration, Fixed(NO_REGION), NOT_READY, STATUS, NOT_LIFTED),
            Error::NamespaceUnreadable { .. } => (Backoff, Configuration, Fixed(NAMESPACE_UNREADABLE), READY, STATUS, NOT_LIFTED),
            Error::RoleNotAllowed { .. } => (WhenBindingsChange, Configuration, Fixed(ROLE_NOT_ALLOWED), NOT_READY, STATUS, NOT_LIFTED),
            // --- Refused by (or for want of) an InstanceBinding, or by ownership in Connect ---
            Error::NoInstanceBinding { .. } => bound(NO_INSTANCE_BINDING, NOT_READY),
            Error::AmbiguousInstanceBinding { .. } => bound(AMBIGUOUS_INSTANCE_BINDING, NOT_READY),
            Error::RegionNotBound { .. } => bound(REGION_NOT_BOUND, NOT_READY),
            Error::AdoptionNotAllowed { .. } => bound(ADOPTION_NOT_ALLOWED, READY),
            Error::PermissionNotAllowed { .. } => bound(PERMISSION_NOT_ALLOWED, READY),
            Error::PermissionRevoked { .. } => bound(PERMISSION_REVOKED, NOT_READY),
            Error::BindingRevoked { .. } => bound(BINDING_REVOKED, NOT_READY),
            Error::InstanceBoundElsewhere { .. } => bound(INSTANCE_BOUND_ELSEWHERE, NOT_READY),
            Error::DefaultProfileNotAllowed { .. } => bound(DEFAULT_PROFILE_NOT_ALLOWED, READY),
            Error::OwnedElsewhere { .. } => (WhenSpecChanges, Policy, Fixed(PROFILE_OWNED_ELSEWHERE), READY, STATUS, NOT_LIFTED),
            Error::NameTaken { .. } => (WhenSpecChanges, Policy, Fixed("DuplicateResourceException"), READY, STATUS, LIFTED),
            // --- Connect ---
            Error::NameNotYetSearchable { .. } => (Backoff, Connect, Fixed(NAME_NOT_YET_SEARCHABLE), READY, STATUS, NOT_LIFTED),
            Error::InstanceNotFound { source, .. } => (Slowly, Connect, AwsCode(source), READY, STATUS, NOT_LIFTED),
            Error::QuotaReached { source, .. } => (Slowly, Connect, AwsCode(source), READY, STATUS, NOT_LIFTED),
            Error::Create(source) | Error::Lookup(source) | Error::Read(source) => call(source),
            Error::Update(source) | Error::Tag(source) | Error::Untag(source) => call(source),
            Error::DeleteBlocked { .. } => (Backoff, Connect, Fixed(DELETE_BLOCKED), READY, STATUS, NOT_LIFTED),
            Error::Delete { source, .. } => (Backoff, Connect, AwsCode(source), READY, STATUS, NOT_LIFTED),
            Error::ObservedProfileNotFound { .. } => (Slowly, Connect, Fixed(PROFILE_NOT_FOUND), NOT_READY, STATUS, NOT_LIFTED),
            Error::Unsettled => (Backoff, Connect, Fixed(UNSETTLED), READY, STATUS, NOT_LIFTED),
        };
        Decision { retry, category, reason, keeps_ready, in_status, lifted_by_adoption }
    }

    /// The retry decision (from [`Error::decision`]): whether a failure is terminal.
    pub fn retry(&self) -> Retry {
        self.decision().retry
    }

    /// A terminal failure that the adopt annotation lifts (adding it retries at the same generation).
    pub fn lifted_by_adoption(&self) -> bool {
        self.decision().lifted_by_adoption
    }

    pub fn category(&self) -> Category {
        self.decision().category
    }

    /// Whether the failure is recorded in the resource's status (Kubernetes failures are not: the
    /// status write would meet the same API server).
    pub fn is_reported_in_status(&self) -> bool {
        self.decision().in_status
    }

    /// Whether a profile that matched the spec may still match it (Ready stays True): false when the
    /// failure means the resource does not describe what Connect holds.
    pub fn keeps_ready(&self) -> bool {
        self.decision().keeps_ready
    }

    /// The Synced (and, when not Ready, Ready) reason: an AWS exception name or one of [`reason`].
    pub fn reason(&self) -> &str {
        self.decision().reason.as_str()
    }

    /// The message of a refusal (or revocation) by an InstanceBinding: [`Error::status_message`] sends
    /// exactly these variants here.
    fn binding_message(&self) -> String {
        match self {
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
            other => format!("{}.", other.to_string().trim_end_matches('.')),
        }
    }

    /// The status message: what failed and what to change, then what the operator does next (every
    /// message ends with the sentence of its [`Retry`]). No catch-all arm: a new variant chooses its words.
    pub fn status_message(&self, slow_retry: Duration) -> String {
        let what = match self {
            Error::InvalidSpec { message } | Error::InvalidObject { message } => {
                format!("{}.", message.trim_end_matches('.'))
            }
            Error::NoRegion => "No AWS Region: set spec.region, or AWS_REGION for the operator.".into(),
            Error::RenamedInConnect { id, connect_name, spec_name } => format!(
                "spec.securityProfileName: is immutable: profile {id} is named {connect_name:?} in Connect, the spec says {spec_name:?}. Set it back, or create a new SecurityProfile; nothing was changed in Connect."
            ),
            Error::RegionChanged { id, profile_region, region } => format!(
                "spec.region: is immutable once the profile exists: profile {id} is in region {profile_region}, the spec (or its InstanceBinding) says {region}. Set it back, or create a new SecurityProfile; nothing was changed in Connect."
            ),
            e @ (Error::NoInstanceBinding { .. }
            | Error::AmbiguousInstanceBinding { .. }
            | Error::RegionNotBound { .. }
            | Error::AdoptionNotAllowed { .. }
            | Error::PermissionNotAllowed { .. }
            | Error::PermissionRevoked { .. }
            | Error::BindingRevoked { .. }
            | Error::InstanceBoundElsewhere { .. }
            | Error::RoleNotAllowed { .. }
            | Error::DefaultProfileNotAllowed { .. }) => e.binding_message(),
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
            // The Display text says it all; what happens next follows.
            Error::AddFinalizer(_)
            | Error::RemoveFinalizer(_)
            | Error::WriteStatus(_)
            | Error::ReadInvalidObject(_)
            | Error::ReadObject(_)
            | Error::NamespaceUnreadable { .. }
            | Error::NameNotYetSearchable { .. }
            | Error::Create(_)
            | Error::Lookup(_)
            | Error::Read(_)
            | Error::Update(_)
            | Error::Tag(_)
            | Error::Untag(_)
            | Error::Unsettled => format!("{}.", self.to_string().trim_end_matches('.')),
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
    use std::collections::BTreeSet;

    use super::*;

    fn connect(class: ErrorClass, code: &str) -> ConnectError {
        ConnectError::new(class, code, "injected")
    }

    fn kube_error() -> kube::Error {
        kube::Error::Api(kube::core::Status::failure("the object has been modified", "Conflict").with_code(409).boxed())
    }

    /// One value of every variant (both outcomes of `PermissionRevoked`, both messages of `Delete`).
    /// Adding a variant breaks the build in [`intended_category`] until its row is written there: add a
    /// value of it here at the same time.
    fn every_variant() -> Vec<Error> {
        let s = |v: &str| v.to_string();
        vec![
            Error::AddFinalizer(kube_error()),
            Error::RemoveFinalizer(kube_error()),
            Error::WriteStatus(kube_error()),
            Error::ReadInvalidObject(kube_error()),
            Error::ReadObject(kube_error()),
            Error::InvalidSpec { message: s("spec.tags: aws: is reserved") },
            Error::InvalidObject { message: s("spec.permissions: invalid type: integer, expected a string") },
            Error::RenamedInConnect { id: s("sp-1"), connect_name: s("A"), spec_name: s("B") },
            Error::NoRegion,
            Error::RegionChanged { id: s("sp-1"), profile_region: s("eu-west-2"), region: s("us-east-1") },
            Error::NamespaceUnreadable { namespace: s("team-a"), source: kube_error() },
            Error::NoInstanceBinding { instance: s("i-1"), namespace: s("team-a") },
            Error::AmbiguousInstanceBinding {
                instance: s("i-1"),
                namespace: s("team-a"),
                bindings: vec![s("one"), s("two")],
            },
            Error::RegionNotBound { spec_region: s("us-west-2"), binding: s("b"), binding_region: s("eu-west-2") },
            Error::AdoptionNotAllowed { what: s("profile \"Agents\""), binding: s("b"), setting: "allowAdoption" },
            Error::PermissionNotAllowed { what: s("permissions OutboundCallAccess"), binding: s("b") },
            Error::PermissionRevoked { id: s("sp-1"), what: s("permissions X"), binding: s("b"), enforced: true },
            Error::PermissionRevoked { id: s("sp-1"), what: s("permissions X"), binding: s("b"), enforced: false },
            Error::BindingRevoked { id: s("sp-1"), instance: s("i-1"), namespace: s("team-a") },
            Error::InstanceBoundElsewhere { instance: s("i-1"), namespace: s("team-a"), bindings: vec![s("b")] },
            Error::RoleNotAllowed { binding: s("b"), role: s("arn:aws:iam::1:role/r") },
            Error::DefaultProfileNotAllowed { name: s("Admin"), id: s("sp-0"), binding: s("b") },
            Error::OwnedElsewhere { name: s("A"), id: s("sp-1"), instance: s("i-1"), owner: s("uid") },
            Error::NameTaken { name: s("A"), id: s("sp-1"), instance: s("i-1") },
            Error::NameNotYetSearchable { name: s("A") },
            Error::InstanceNotFound {
                instance: s("i-1"),
                region: s("eu-west-2"),
                source: connect(ErrorClass::NotFound, "ResourceNotFoundException"),
            },
            Error::QuotaReached { instance: s("i-1"), source: connect(ErrorClass::Quota, "LimitExceededException") },
            Error::Create(connect(ErrorClass::Terminal, "InvalidParameterException")),
            Error::Lookup(connect(ErrorClass::Recoverable, "ThrottlingException")),
            Error::Read(connect(ErrorClass::NotFound, "ResourceNotFoundException")),
            Error::Update(connect(ErrorClass::Recoverable, "InternalServiceException")),
            Error::Tag(connect(ErrorClass::Recoverable, "AccessDeniedException")),
            Error::Untag(connect(ErrorClass::Recoverable, "RequestTimeout")),
            Error::DeleteBlocked { id: s("sp-1"), source: connect(ErrorClass::InUse, "ResourceInUseException") },
            Error::Delete { id: s("sp-1"), source: connect(ErrorClass::Recoverable, "AccessDeniedException") },
            Error::Delete { id: s("sp-1"), source: connect(ErrorClass::Recoverable, "ThrottlingException") },
            Error::ObservedProfileNotFound { name: s("A"), instance: s("i-1") },
            Error::Unsettled,
        ]
    }

    /// The intended category of each variant, with its name: an exhaustive match (no `_` arm), so a
    /// new variant does not compile until someone decides here what it is (and adds it to
    /// [`every_variant`]).
    fn intended_category(e: &Error) -> (&'static str, Category) {
        use Category::*;
        match e {
            Error::AddFinalizer(_) => ("AddFinalizer", Kubernetes),
            Error::RemoveFinalizer(_) => ("RemoveFinalizer", Kubernetes),
            Error::WriteStatus(_) => ("WriteStatus", Kubernetes),
            Error::ReadInvalidObject(_) => ("ReadInvalidObject", Kubernetes),
            Error::ReadObject(_) => ("ReadObject", Kubernetes),
            Error::InvalidSpec { .. } => ("InvalidSpec", Validation),
            Error::InvalidObject { .. } => ("InvalidObject", Validation),
            Error::RenamedInConnect { .. } => ("RenamedInConnect", Validation),
            Error::RegionChanged { .. } => ("RegionChanged", Validation),
            Error::NoRegion => ("NoRegion", Configuration),
            Error::NamespaceUnreadable { .. } => ("NamespaceUnreadable", Configuration),
            Error::RoleNotAllowed { .. } => ("RoleNotAllowed", Configuration),
            Error::NoInstanceBinding { .. } => ("NoInstanceBinding", Policy),
            Error::AmbiguousInstanceBinding { .. } => ("AmbiguousInstanceBinding", Policy),
            Error::RegionNotBound { .. } => ("RegionNotBound", Policy),
            Error::AdoptionNotAllowed { .. } => ("AdoptionNotAllowed", Policy),
            Error::PermissionNotAllowed { .. } => ("PermissionNotAllowed", Policy),
            Error::PermissionRevoked { .. } => ("PermissionRevoked", Policy),
            Error::BindingRevoked { .. } => ("BindingRevoked", Policy),
            Error::InstanceBoundElsewhere { .. } => ("InstanceBoundElsewhere", Policy),
            Error::DefaultProfileNotAllowed { .. } => ("DefaultProfileNotAllowed", Policy),
            Error::OwnedElsewhere { .. } => ("OwnedElsewhere", Policy),
            Error::NameTaken { .. } => ("NameTaken", Policy),
            Error::NameNotYetSearchable { .. } => ("NameNotYetSearchable", Connect),
            Error::InstanceNotFound { .. } => ("InstanceNotFound", Connect),
            Error::QuotaReached { .. } => ("QuotaReached", Connect),
            Error::Create(_) => ("Create", Connect),
            Error::Lookup(_) => ("Lookup", Connect),
            Error::Read(_) => ("Read", Connect),
            Error::Update(_) => ("Update", Connect),
            Error::Tag(_) => ("Tag", Connect),
            Error::Untag(_) => ("Untag", Connect),
            Error::DeleteBlocked { .. } => ("DeleteBlocked", Connect),
            Error::Delete { .. } => ("Delete", Connect),
            Error::ObservedProfileNotFound { .. } => ("ObservedProfileNotFound", Connect),
            Error::Unsettled => ("Unsettled", Connect),
        }
    }

    /// The variant's name as Debug prints it (`NoRegion`, `Create(..)`, `NameTaken { .. }`).
    fn debug_name(e: &Error) -> String {
        format!("{e:?}").split(['(', ' ', '{']).next().unwrap().to_string()
    }

    /// Issue 21: every variant's decision, from the one table, is the intended one and reads well.
    #[test]
    fn every_variant_has_its_intended_category_a_reason_and_a_next_step() {
        let slow = Duration::from_secs(300);
        let all = every_variant();
        // The names in intended_category are the variants' own, one per variant.
        for e in &all {
            assert_eq!(intended_category(e).0, debug_name(e), "intended_category names {e:?} wrongly");
        }
        let listed: BTreeSet<&str> = all.iter().map(|e| intended_category(e).0).collect();
        let distinct: std::collections::HashSet<_> = all.iter().map(std::mem::discriminant).collect();
        assert_eq!(distinct.len(), listed.len());

        for e in &all {
            let (name, intended) = intended_category(e);
            let d = e.decision();
            assert_eq!(d.category, intended, "{name}: category");
            assert_eq!(e.category(), intended, "{name}: category()");
            if matches!(intended, Category::Policy | Category::Validation | Category::Configuration) {
                assert_ne!(
                    e.category().as_str(),
                    Category::Connect.as_str(),
                    "{name} must not count as a Connect failure"
                );
            }
            // The accessors read the table.
            assert_eq!(e.retry(), d.retry, "{name}");
            assert_eq!(e.keeps_ready(), d.keeps_ready, "{name}");
            assert_eq!(e.is_reported_in_status(), d.in_status, "{name}");
            assert_eq!(e.lifted_by_adoption(), d.lifted_by_adoption, "{name}");
            assert_eq!(e.reason(), d.reason.as_str(), "{name}");
            // Only Kubernetes failures stay out of status; only NameTaken is lifted by adoption.
            assert_eq!(d.in_status, intended != Category::Kubernetes, "{name}: in status");
            assert_eq!(d.lifted_by_adoption, matches!(e, Error::NameTaken { .. }), "{name}: lifted by adoption");
            if d.lifted_by_adoption {
                assert_eq!(d.retry, Retry::WhenSpecChanges, "{name}: only a terminal failure is lifted");
            }

            let reason = e.reason();
            assert!(!reason.is_empty() && !reason.contains(' '), "{name}: reason {reason:?}");
            if let Reason::AwsCode(source) = d.reason {
                assert_eq!(reason, source.code, "{name}: the AWS code of its source");
            }

            let message = e.status_message(slow);
            let next = match d.retry {
                Retry::WhenSpecChanges => "Fix the spec; it is retried when the spec changes.",
                Retry::Backoff => "Retrying with backoff.",
                Retry::Slowly => "Retrying every 300s.",
                Retry::WhenBindingsChange => {
                    "It is retried when the spec, an InstanceBinding or the namespace's labels change."
                }
            };
            assert!(message.ends_with(&format!(". {next}")), "{name}: says what happens next: {message}");
            let what = message.strip_suffix(next).unwrap().trim();
            assert!(what.len() > 1, "{name}: says what failed: {message}");
        }

        // Every category is produced by some variant (none is dead), and Category::ALL lists them all.
        let produced: BTreeSet<&str> = all.iter().map(|e| e.category().as_str()).collect();
        let every: BTreeSet<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(produced, every);
        assert_eq!(every.len(), Category::ALL.len());
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
