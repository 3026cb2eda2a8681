//! An in-memory Connect instance for unit tests: the reconciler's scenarios and `export` run against
//! it. It records each call by its API operation name and can fail the next call of an operation.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{ConnectApi, ConnectError, ErrorClass};
use crate::api::SecurityProfileSpec;
use crate::domain::{
    FoundProfile, ListedProfile, Listing, ObservedProfile, ProfileRef, ProfileState, ProfileSummary, ProfileUpdate,
    Target, content_digest,
};

/// The instance every fake profile lives in.
pub const INSTANCE: &str = "11111111-2222-3333-4444-555555555555";

/// An in-memory Connect instance that records each call by its API operation name.
#[derive(Default)]
pub struct FakeConnect {
    pub profiles: Mutex<BTreeMap<String, ObservedProfile>>,
    pub calls: Mutex<Vec<String>>,
    pub updates: Mutex<Vec<ProfileUpdate>>,
    /// The next call of this operation fails with this error.
    pub fail_next: Mutex<BTreeMap<&'static str, ConnectError>>,
    /// The next create makes the profile, then its answer is lost.
    pub lose_next_create: Mutex<bool>,
    /// The target of each call, in order.
    pub targets: Mutex<Vec<Target>>,
    /// Names that SearchSecurityProfiles does not find yet (Connect's search is eventually consistent).
    pub not_searchable: Mutex<std::collections::BTreeSet<String>>,
}

impl FakeConnect {
    fn call_at(&self, target: &Target, operation: &'static str) -> Result<(), ConnectError> {
        self.targets.lock().unwrap().push(target.clone());
        self.call(operation)
    }

    pub fn call(&self, operation: &'static str) -> Result<(), ConnectError> {
        self.calls.lock().unwrap().push(operation.to_string());
        match self.fail_next.lock().unwrap().remove(operation) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    pub fn fail_next(&self, operation: &'static str, class: ErrorClass, code: &str) {
        self.fail_next.lock().unwrap().insert(operation, ConnectError::new(class, code, format!("injected {code}")));
    }

    /// The next call of this operation fails as a dropped connection would: it may have taken effect.
    pub fn fail_next_with_unknown_outcome(&self, operation: &'static str) {
        self.fail_next.lock().unwrap().insert(operation, connection_lost());
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    /// The Region of each call, in order.
    pub fn regions(&self) -> Vec<String> {
        self.targets.lock().unwrap().iter().map(|t| t.region.clone()).collect()
    }

    pub fn insert(&self, id: &str, spec: &SecurityProfileSpec, tags: BTreeMap<String, String>) {
        let profile = ObservedProfile {
            name: spec.security_profile_name.clone(),
            arn: arn(id),
            last_modified: Some("2026-11-01T00:00:00Z".into()),
            tags,
            state: ProfileState::desired(spec),
        };
        self.profiles.lock().unwrap().insert(id.to_string(), profile);
    }
}

pub fn arn(id: &str) -> String {
    format!("arn:aws:connect:eu-west-2:123456789012:instance/{INSTANCE}/security-profile/{id}")
}

/// The error of a call whose connection dropped after the request was sent.
pub fn connection_lost() -> ConnectError {
    let lost = ConnectError::new(ErrorClass::Recoverable, "ConnectionFailure", "connection closed");
    ConnectError { outcome_unknown: true, ..lost }
}

pub fn not_found_error(what: &str) -> ConnectError {
    ConnectError::new(ErrorClass::NotFound, "ResourceNotFoundException", format!("{what} not found"))
}

impl ConnectApi for FakeConnect {
    async fn create_profile(
        &self,
        target: &Target,
        spec: &SecurityProfileSpec,
        tags: &BTreeMap<String, String>,
    ) -> Result<ProfileRef, ConnectError> {
        self.call_at(target, "CreateSecurityProfile")?;
        if self.profiles.lock().unwrap().values().any(|p| p.name == spec.security_profile_name) {
            return Err(ConnectError::new(ErrorClass::Duplicate, "DuplicateResourceException", "name taken"));
        }
        let id = format!("sp-{}", self.profiles.lock().unwrap().len() + 1);
        self.insert(&id, spec, tags.clone());
        if std::mem::take(&mut *self.lose_next_create.lock().unwrap()) {
            return Err(connection_lost());
        }
        Ok(ProfileRef { id: id.clone(), arn: arn(&id) })
    }

    async fn find_profile_by_name(&self, target: &Target, name: &str) -> Result<Option<FoundProfile>, ConnectError> {
        self.call_at(target, "SearchSecurityProfiles")?;
        if self.not_searchable.lock().unwrap().contains(name) {
            return Ok(None);
        }
        Ok(self.profiles.lock().unwrap().iter().find(|(_, p)| p.name == name).map(|(id, p)| FoundProfile {
            profile: ProfileRef { id: id.clone(), arn: p.arn.clone() },
            tags: p.tags.clone(),
        }))
    }

    async fn list_instance(&self, target: &Target, search: bool) -> Result<Listing, ConnectError> {
        self.call_at(target, "ListSecurityProfiles")?;
        if search {
            self.call_at(target, "SearchSecurityProfiles")?;
        }
        let profiles = self.profiles.lock().unwrap();
        let listed = profiles.iter().map(|(id, p)| {
            let listed = ListedProfile {
                last_modified: p.last_modified.clone(),
                content: search.then(|| content_digest(&p.state.description, &p.tags)),
            };
            (id.clone(), listed)
        });
        Ok(Listing { profiles: listed.collect(), searched: search })
    }

    async fn probe_instance(&self, target: &Target) -> Result<(), ConnectError> {
        self.call_at(target, "ListSecurityProfiles")
    }

    async fn list_profiles(&self, target: &Target) -> Result<Vec<ProfileSummary>, ConnectError> {
        self.call_at(target, "ListSecurityProfiles")?;
        let profiles = self.profiles.lock().unwrap();
        Ok(profiles
            .iter()
            .map(|(id, p)| ProfileSummary { id: id.clone(), arn: p.arn.clone(), name: p.name.clone() })
            .collect())
    }

    async fn delete_profile(&self, target: &Target, id: &str) -> Result<(), ConnectError> {
        self.call_at(target, "DeleteSecurityProfile")?;
        self.profiles.lock().unwrap().remove(id).map(|_| ()).ok_or_else(|| not_found_error(id))
    }

    async fn observe_profile(
        &self,
        target: &Target,
        id: &str,
        read_members: bool,
    ) -> Result<ObservedProfile, ConnectError> {
        self.call_at(target, "DescribeSecurityProfile")?;
        let mut found = self.profiles.lock().unwrap().get(id).cloned().ok_or_else(|| not_found_error(id))?;
        if read_members {
            self.call("ListSecurityProfilePermissions")?;
        } else {
            found.state.listed = None;
        }
        Ok(found)
    }

    async fn update_profile(&self, target: &Target, _: &str, update: &ProfileUpdate) -> Result<(), ConnectError> {
        self.call_at(target, "UpdateSecurityProfile")?;
        self.updates.lock().unwrap().push(update.clone());
        Ok(())
    }

    async fn tag_profile(&self, target: &Target, _: &str, _: &BTreeMap<String, String>) -> Result<(), ConnectError> {
        self.call_at(target, "TagResource")
    }

    async fn untag_profile(&self, target: &Target, _: &str, _: &[String]) -> Result<(), ConnectError> {
        self.call_at(target, "UntagResource")
    }
}

/// The context owns its Connect client; the test keeps a handle on the same fake.
impl ConnectApi for Arc<FakeConnect> {
    async fn create_profile(
        &self,
        t: &Target,
        s: &SecurityProfileSpec,
        tags: &BTreeMap<String, String>,
    ) -> Result<ProfileRef, ConnectError> {
        self.as_ref().create_profile(t, s, tags).await
    }
    async fn find_profile_by_name(&self, t: &Target, n: &str) -> Result<Option<FoundProfile>, ConnectError> {
        self.as_ref().find_profile_by_name(t, n).await
    }
    async fn list_profiles(&self, t: &Target) -> Result<Vec<ProfileSummary>, ConnectError> {
        self.as_ref().list_profiles(t).await
    }
    async fn probe_instance(&self, t: &Target) -> Result<(), ConnectError> {
        self.as_ref().probe_instance(t).await
    }
    async fn list_instance(&self, t: &Target, search: bool) -> Result<Listing, ConnectError> {
        self.as_ref().list_instance(t, search).await
    }
    async fn delete_profile(&self, t: &Target, id: &str) -> Result<(), ConnectError> {
        self.as_ref().delete_profile(t, id).await
    }
    async fn observe_profile(&self, t: &Target, id: &str, m: bool) -> Result<ObservedProfile, ConnectError> {
        self.as_ref().observe_profile(t, id, m).await
    }
    async fn update_profile(&self, t: &Target, id: &str, u: &ProfileUpdate) -> Result<(), ConnectError> {
        self.as_ref().update_profile(t, id, u).await
    }
    async fn tag_profile(&self, t: &Target, a: &str, tags: &BTreeMap<String, String>) -> Result<(), ConnectError> {
        self.as_ref().tag_profile(t, a, tags).await
    }
    async fn untag_profile(&self, t: &Target, a: &str, k: &[String]) -> Result<(), ConnectError> {
        self.as_ref().untag_profile(t, a, k).await
    }
}
