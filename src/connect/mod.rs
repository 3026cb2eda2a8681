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
use aws_sdk_connect::types::{SecurityProfileSearchCriteria, StringComparisonType, StringCondition};

pub use error::{ConnectError, ErrorClass};

use crate::api::SecurityProfileSpec;
use crate::reconcile::plan::{ListedMembers, ProfileState, ProfileUpdate};

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

/// A Connect client for a fixed endpoint with static credentials: the emulator, in tests and demos.
pub fn client_for_endpoint(endpoint: &str, region: &str, max_attempts: u32) -> aws_sdk_connect::Client {
    let config = aws_sdk_connect::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .credentials_provider(Credentials::new("AKIDEMULATOR", "emulator-secret", None, None, "static"))
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
        let base = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
        let default_region = base.region().map(|r| r.to_string());
        Self { base, default_region, max_attempts, clients: Mutex::new(HashMap::new()) }
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

impl SdkConnect {
    async fn list_members(
        &self,
        client: &aws_sdk_connect::Client,
        target: &Target,
        id: &str,
    ) -> Result<ListedMembers, ConnectError> {
        let inst = &target.instance_id;
        let mut permissions = Vec::new();
        let mut pages = client
            .list_security_profile_permissions()
            .instance_id(inst)
            .security_profile_id(id)
            .max_results(1000)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            permissions.extend(page.map_err(ConnectError::from_sdk)?.permissions.unwrap_or_default());
        }
        let mut applications = Vec::new();
        let mut pages = client
            .list_security_profile_applications()
            .instance_id(inst)
            .security_profile_id(id)
            .max_results(1000)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            applications.extend(
                page.map_err(ConnectError::from_sdk)?
                    .applications
                    .unwrap_or_default()
                    .iter()
                    .map(convert::from_sdk_application),
            );
        }
        let mut modules = Vec::new();
        let mut pages = client
            .list_security_profile_flow_modules()
            .instance_id(inst)
            .security_profile_id(id)
            .max_results(1000)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            modules.extend(
                page.map_err(ConnectError::from_sdk)?
                    .allowed_flow_modules
                    .unwrap_or_default()
                    .iter()
                    .map(convert::from_sdk_flow_module),
            );
        }
        let mut agents = Vec::new();
        let mut pages = client
            .list_security_profile_ai_agents()
            .instance_id(inst)
            .security_profile_id(id)
            .max_results(1000)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            agents.extend(
                page.map_err(ConnectError::from_sdk)?
                    .allowed_ai_agents
                    .unwrap_or_default()
                    .iter()
                    .map(convert::from_sdk_ai_agent),
            );
        }
        Ok(ListedMembers::new(permissions, &applications, &modules, &agents))
    }
}

impl ConnectApi for SdkConnect {
    async fn create_profile(
        &self,
        target: &Target,
        spec: &SecurityProfileSpec,
        tags: &BTreeMap<String, String>,
    ) -> Result<ProfileRef, ConnectError> {
        let out = convert::create_request(self.client(&target.region).create_security_profile(), target, spec, tags)
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

    async fn find_profile_by_name(&self, target: &Target, name: &str) -> Result<Option<FoundProfile>, ConnectError> {
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
        let found =
            out.security_profiles.unwrap_or_default().into_iter().find(|p| p.security_profile_name() == Some(name));
        Ok(found.and_then(|p| {
            Some(FoundProfile {
                profile: ProfileRef { id: p.id?, arn: p.arn? },
                tags: p.tags.unwrap_or_default().into_iter().collect(),
            })
        }))
    }

    async fn observe_profile(
        &self,
        target: &Target,
        id: &str,
        read_members: bool,
    ) -> Result<ObservedProfile, ConnectError> {
        let client = self.client(&target.region);
        let out = client
            .describe_security_profile()
            .instance_id(&target.instance_id)
            .security_profile_id(id)
            .send()
            .await
            .map_err(ConnectError::from_sdk)?;
        let p = out.security_profile.ok_or_else(|| {
            ConnectError::new(
                ErrorClass::Recoverable,
                "IncompleteResponse",
                "DescribeSecurityProfile returned no profile",
            )
        })?;
        let mut state = convert::described_state(&p);
        if read_members {
            state.listed = Some(self.list_members(&client, target, id).await?);
        }
        Ok(ObservedProfile {
            name: p.security_profile_name.unwrap_or_default(),
            arn: p.arn.unwrap_or_default(),
            last_modified: p.last_modified_time.and_then(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).ok()),
            tags: p.tags.unwrap_or_default().into_iter().collect(),
            state,
        })
    }

    async fn update_profile(&self, target: &Target, id: &str, update: &ProfileUpdate) -> Result<(), ConnectError> {
        let builder = self
            .client(&target.region)
            .update_security_profile()
            .instance_id(&target.instance_id)
            .security_profile_id(id);
        convert::update_request(builder, update).send().await.map_err(ConnectError::from_sdk)?;
        Ok(())
    }

    async fn tag_profile(
        &self,
        target: &Target,
        arn: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), ConnectError> {
        self.client(&target.region)
            .tag_resource()
            .resource_arn(arn)
            .set_tags(Some(tags.clone().into_iter().collect()))
            .send()
            .await
            .map_err(ConnectError::from_sdk)?;
        Ok(())
    }

    async fn untag_profile(&self, target: &Target, arn: &str, keys: &[String]) -> Result<(), ConnectError> {
        self.client(&target.region)
            .untag_resource()
            .resource_arn(arn)
            .set_tag_keys(Some(keys.to_vec()))
            .send()
            .await
            .map_err(ConnectError::from_sdk)?;
        Ok(())
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
