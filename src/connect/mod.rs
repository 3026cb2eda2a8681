//! The seam between the operator and Amazon Connect: a narrow trait ([`ConnectApi`]) the reconciler is
//! written against, its aws-sdk-connect implementation ([`SdkConnect`]), and the classification of every
//! error into one class ([`ErrorClass`]).

mod convert;
mod error;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Mutex;

use aws_sdk_connect::config::retry::RetryConfig;
use aws_sdk_connect::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_connect::types::{
    SecurityProfileSearchCriteria, StringComparisonType, StringCondition,
};

pub use error::{ConnectError, ErrorClass};

use crate::api::SecurityProfileSpec;

/// Where a profile lives: a Region and an instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub region: String,
    pub instance_id: String,
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

    /// DeleteSecurityProfile.
    fn delete_profile(
        &self,
        target: &Target,
        id: &str,
    ) -> impl Future<Output = Result<(), ConnectError>> + Send;
}

/// A Connect client for a fixed endpoint with static credentials: the emulator, in tests and demos.
pub fn client_for_endpoint(
    endpoint: &str,
    region: &str,
    max_attempts: u32,
) -> aws_sdk_connect::Client {
    let config = aws_sdk_connect::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .credentials_provider(Credentials::new(
            "AKIDEMULATOR",
            "emulator-secret",
            None,
            None,
            "static",
        ))
        .endpoint_url(endpoint)
        .retry_config(RetryConfig::standard().with_max_attempts(max_attempts))
        .build();
    aws_sdk_connect::Client::from_conf(config)
}

/// [`ConnectApi`] over aws-sdk-connect: one client per Region, built from the standard AWS configuration
/// chain (environment, profile, web identity for IRSA, container credentials; `AWS_ENDPOINT_URL_CONNECT`).
pub struct SdkConnect {
    base: aws_config::SdkConfig,
    default_region: Option<String>,
    max_attempts: u32,
    clients: Mutex<HashMap<String, aws_sdk_connect::Client>>,
}

impl SdkConnect {
    /// Loads the AWS configuration from the environment. `max_attempts` is the SDK's own retry budget
    /// per call; the controller retries above it with its own backoff.
    pub async fn from_env(max_attempts: u32) -> Self {
        let base = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let default_region = base.region().map(|r| r.to_string());
        Self {
            base,
            default_region,
            max_attempts,
            clients: Mutex::new(HashMap::new()),
        }
    }

    pub fn default_region(&self) -> Option<&str> {
        self.default_region.as_deref()
    }

    fn client(&self, region: &str) -> aws_sdk_connect::Client {
        let mut clients = self.clients.lock().expect("client cache lock");
        clients
            .entry(region.to_string())
            .or_insert_with(|| {
                let config = aws_sdk_connect::config::Builder::from(&self.base)
                    .region(Region::new(region.to_string()))
                    .retry_config(RetryConfig::standard().with_max_attempts(self.max_attempts))
                    .build();
                aws_sdk_connect::Client::from_conf(config)
            })
            .clone()
    }
}

impl ConnectApi for SdkConnect {
    async fn create_profile(
        &self,
        target: &Target,
        spec: &SecurityProfileSpec,
        tags: &BTreeMap<String, String>,
    ) -> Result<ProfileRef, ConnectError> {
        let out = convert::create_request(
            self.client(&target.region).create_security_profile(),
            target,
            spec,
            tags,
        )
        .send()
        .await
        .map_err(ConnectError::from_sdk)?;
        match (out.security_profile_id, out.security_profile_arn) {
            (Some(id), Some(arn)) => Ok(ProfileRef { id, arn }),
            _ => Err(ConnectError::new(
                ErrorClass::Recoverable,
                "IncompleteResponse",
                "CreateSecurityProfile returned no ID or ARN",
            )),
        }
    }

    async fn find_profile_by_name(
        &self,
        target: &Target,
        name: &str,
    ) -> Result<Option<FoundProfile>, ConnectError> {
        let criteria = SecurityProfileSearchCriteria::builder()
            .string_condition(
                StringCondition::builder()
                    .field_name("name")
                    .value(name)
                    .comparison_type(StringComparisonType::Exact)
                    .build(),
            )
            .build();
        let out = self
            .client(&target.region)
            .search_security_profiles()
            .instance_id(&target.instance_id)
            .search_criteria(criteria)
            .max_results(10)
            .send()
            .await
            .map_err(ConnectError::from_sdk)?;
        let found = out
            .security_profiles
            .unwrap_or_default()
            .into_iter()
            .find(|p| p.security_profile_name() == Some(name));
        Ok(found.and_then(|p| {
            Some(FoundProfile {
                profile: ProfileRef {
                    id: p.id?,
                    arn: p.arn?,
                },
                tags: p.tags.unwrap_or_default().into_iter().collect(),
            })
        }))
    }

    async fn delete_profile(&self, target: &Target, id: &str) -> Result<(), ConnectError> {
        self.client(&target.region)
            .delete_security_profile()
            .instance_id(&target.instance_id)
            .security_profile_id(id)
            .send()
            .await
            .map_err(ConnectError::from_sdk)?;
        Ok(())
    }
}
