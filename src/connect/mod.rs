//! The seam between the operator and Amazon Connect: a narrow trait ([`ConnectApi`]) the reconciler is
//! written against, its aws-sdk-connect implementation ([`SdkConnect`]), and the classification of every
//! error into one class ([`ErrorClass`]).

mod assume_role;
mod convert;
mod error;
#[cfg(test)]
pub mod fake;
pub mod limiter;
mod operations;
mod sdk;

use std::collections::BTreeMap;
use std::future::Future;

pub use error::{ConnectError, ErrorClass};
pub use sdk::{ConnectSettings, SdkConnect, client_for_endpoint};

use crate::api::SecurityProfileSpec;
pub use crate::domain::{FoundProfile, ObservedProfile, ProfileRef, ProfileSummary, Target};
use crate::domain::{Listing, ProfileUpdate};

/// The Connect operations the reconciler uses. Implemented by [`SdkConnect`], and by fakes in tests.
pub trait ConnectApi: Send + Sync + 'static {
    /// CreateSecurityProfile with every member of `spec`, and `tags` (the spec's plus the owner tag).
    fn create_profile(
        &self,
        target: &Target,
        spec: &SecurityProfileSpec,
        tags: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<ProfileRef, ConnectError>> + Send;

    /// The profile with exactly this name in the instance, if any (SearchSecurityProfiles, EXACT).
    fn find_profile_by_name(
        &self,
        target: &Target,
        name: &str,
    ) -> impl Future<Output = Result<Option<FoundProfile>, ConnectError>> + Send;

    /// Every profile of the instance (ListSecurityProfiles, all pages).
    fn list_profiles(&self, target: &Target) -> impl Future<Output = Result<Vec<ProfileSummary>, ConnectError>> + Send;

    /// Every profile of the instance with its LastModifiedTime (ListSecurityProfiles, all pages) and,
    /// with `search`, its description and tags (SearchSecurityProfiles, all pages).
    fn list_instance(
        &self,
        target: &Target,
        search: bool,
    ) -> impl Future<Output = Result<Listing, ConnectError>> + Send;

    /// One page of at most one profile (ListSecurityProfiles): can this identity reach the instance?
    fn probe_instance(&self, target: &Target) -> impl Future<Output = Result<(), ConnectError>> + Send;

    /// DeleteSecurityProfile.
    fn delete_profile(&self, target: &Target, id: &str) -> impl Future<Output = Result<(), ConnectError>> + Send;

    /// DescribeSecurityProfile, and with `read_members` the paged ListSecurityProfilePermissions,
    /// -Applications, -FlowModules and -AIAgents.
    fn observe_profile(
        &self,
        target: &Target,
        id: &str,
        read_members: bool,
    ) -> impl Future<Output = Result<ObservedProfile, ConnectError>> + Send;

    /// UpdateSecurityProfile with the members the plan sets.
    fn update_profile(
        &self,
        target: &Target,
        id: &str,
        update: &ProfileUpdate,
    ) -> impl Future<Output = Result<(), ConnectError>> + Send;

    /// TagResource.
    fn tag_profile(
        &self,
        target: &Target,
        arn: &str,
        tags: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<(), ConnectError>> + Send;

    /// UntagResource.
    fn untag_profile(
        &self,
        target: &Target,
        arn: &str,
        keys: &[String],
    ) -> impl Future<Output = Result<(), ConnectError>> + Send;
}
