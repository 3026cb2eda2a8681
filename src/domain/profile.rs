//! A profile as the operator names it: where it lives ([`Target`]), how Connect identifies it, and
//! what Connect holds. Plain data: the Connect seam fills them, the reconciler and `export` read them.

use std::collections::BTreeMap;

use super::state::ProfileState;
use crate::api::{NAMESPACE_TAG, OWNER_UID_TAG};

/// Whose work a Connect call serves: a user's (a new resource, a spec change, a deletion, an adoption)
/// goes ahead of background observation in the rate limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Priority {
    #[default]
    User,
    Background,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::User => "user",
            Priority::Background => "background",
        }
    }
}

/// Where a profile lives: a Region and an instance, reached with the operator's credentials or, when
/// `role_arn` is set, by assuming that role in a session named `session_name` (CloudTrail shows it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Target {
    pub region: String,
    pub instance_id: String,
    pub role_arn: Option<String>,
    pub session_name: Option<String>,
    /// Session tags passed to AssumeRole with `role_arn` (`namespace`, `binding`), sorted by key: the
    /// role's trust and permission policies condition on them (deploy/iam/).
    pub session_tags: Vec<(String, String)>,
    /// Whose work the calls are (the namespace of the resource; empty for the operator's own listings and
    /// probes): the rate limiter serves waiting tenants round-robin.
    pub tenant: String,
    /// The priority of the calls made for this target.
    pub priority: Priority,
}

/// STS's limit on a session name.
pub const SESSION_NAME_MAX: usize = 64;

/// The AssumeRole session name of a namespace's calls: `csp-<namespace>`. Namespace names are DNS
/// labels (no `.`), so these never meet the operator's own sessions, which start `csp.`.
pub fn session_name(namespace: &str) -> String {
    bounded_session_name("csp-", namespace)
}

/// The session of an InstanceBinding's probe: `csp.binding.<name>`.
pub fn binding_session_name(binding: &str) -> String {
    bounded_session_name("csp.binding.", binding)
}

/// The session of the instance observer's listings.
pub const OBSERVER_SESSION_NAME: &str = "csp.observer";

/// `prefix` + `name`, or, past STS's 64 characters, `prefix` + the start of `name` + `-` + 16 hex
/// digits of a hash of the whole name: two names never share a session because one was cut.
fn bounded_session_name(prefix: &str, name: &str) -> String {
    let full = format!("{prefix}{name}");
    if full.len() <= SESSION_NAME_MAX {
        return full;
    }
    let hash = format!("-{:016x}", fnv1a(name.as_bytes()));
    let keep = SESSION_NAME_MAX - hash.len();
    format!("{}{hash}", &full[..keep])
}

/// 64-bit FNV-1a. Written out (five lines) because the session name must be the same in every
/// release of the operator and of Rust, which `DefaultHasher` does not promise; not for security.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// Identity of a profile in Connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileRef {
    pub id: String,
    pub arn: String,
}

/// A profile found by name, with its tags (to tell who owns it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundProfile {
    pub profile: ProfileRef,
    pub tags: BTreeMap<String, String>,
}

impl FoundProfile {
    /// The UID of the SecurityProfile that owns it, if any.
    pub fn owner(&self) -> Option<&str> {
        owner_of(&self.tags)
    }
}

/// The UID of the SecurityProfile that owns a profile with `tags`: its owner tag, if any.
pub fn owner_of(tags: &BTreeMap<String, String>) -> Option<&str> {
    tags.get(OWNER_UID_TAG).map(String::as_str)
}

/// One entry of an instance's profile listing (ListSecurityProfiles).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileSummary {
    pub id: String,
    pub arn: String,
    pub name: String,
}

/// A profile as Connect holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedProfile {
    pub name: String,
    pub arn: String,
    /// Connect's LastModifiedTime (RFC 3339), to skip the List* reads when nothing changed.
    pub last_modified: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub state: ProfileState,
}

impl ObservedProfile {
    /// The UID of the SecurityProfile that owns it, if any.
    pub fn owner(&self) -> Option<&str> {
        owner_of(&self.tags)
    }
}

/// The tags a profile of the resource `uid` in `namespace` carries: the spec's, plus the owner and
/// namespace tags.
pub fn tags_with_owner(
    spec_tags: Option<&BTreeMap<String, String>>,
    uid: &str,
    namespace: &str,
) -> BTreeMap<String, String> {
    let mut tags = spec_tags.cloned().unwrap_or_default();
    tags.insert(OWNER_UID_TAG.into(), uid.to_string());
    tags.insert(NAMESPACE_TAG.into(), namespace.to_string());
    tags
}

/// The instance ID inside a profile ARN (`...:instance/{instance}/security-profile/{id}`).
pub fn instance_of_arn(arn: &str) -> Option<&str> {
    arn.split_once(":instance/")?.1.split('/').next()
}

/// The Region inside a profile ARN (`arn:aws:connect:{region}:...`).
pub fn region_of_arn(arn: &str) -> Option<&str> {
    let mut parts = arn.split(':');
    (parts.next()? == "arn").then_some(())?;
    parts.nth(2).filter(|r| !r.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_fit_sts() {
        assert_eq!(session_name("team-a"), "csp-team-a");
        assert_eq!(session_name(&"n".repeat(60)), format!("csp-{}", "n".repeat(60)));
        let (a, b) = (format!("{}a", "n".repeat(62)), format!("{}b", "n".repeat(62)));
        assert_eq!(session_name(&a).len(), 64);
        assert_ne!(session_name(&a), session_name(&b), "names cut at 64 characters stay apart");
        assert!(session_name(&a).chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)));
        assert_eq!(binding_session_name("team-a"), "csp.binding.team-a");
        assert_ne!(binding_session_name("x"), session_name("binding-x"), "a namespace named binding-x");
        assert_ne!(OBSERVER_SESSION_NAME, session_name("observer"));
        assert_eq!(binding_session_name(&"b.".repeat(40)).len(), 64);
    }

    #[test]
    fn arn_parts() {
        let arn = "arn:aws:connect:eu-west-2:123456789012:instance/i-1/security-profile/sp-1";
        assert_eq!(instance_of_arn(arn), Some("i-1"));
        assert_eq!(region_of_arn(arn), Some("eu-west-2"));
        assert_eq!(instance_of_arn("nonsense"), None);
        assert_eq!(region_of_arn("nonsense"), None);
    }
}
