//! A profile as the operator names it: where it lives ([`Target`]), how Connect identifies it, and
//! what Connect holds. Plain data: the Connect seam fills them, the reconciler and `export` read them.

use std::collections::BTreeMap;

use super::state::ProfileState;
use crate::api::OWNER_UID_TAG;

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
    /// The priority of the calls made for this target.
    pub priority: Priority,
}

/// The AssumeRole session name of a namespace's calls: `csp-<namespace>`, within STS's 64 characters
/// (namespace names only use characters STS allows).
pub fn session_name(namespace: &str) -> String {
    format!("csp-{namespace}").chars().take(64).collect()
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
        self.tags.get(OWNER_UID_TAG).map(String::as_str)
    }
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
        self.tags.get(OWNER_UID_TAG).map(String::as_str)
    }
}

/// The tags a profile of the resource `uid` carries: the spec's, plus the owner tag.
pub fn tags_with_owner(spec_tags: Option<&BTreeMap<String, String>>, uid: &str) -> BTreeMap<String, String> {
    let mut tags = spec_tags.cloned().unwrap_or_default();
    tags.insert(OWNER_UID_TAG.into(), uid.to_string());
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
        assert_eq!(session_name(&"n".repeat(63)).len(), 64);
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
