//! The seam between the operator and Amazon Connect: a narrow trait ([`ConnectApi`]) the reconciler is
//! written against, its aws-sdk-connect implementation ([`SdkConnect`]), and the classification of every
//! error into one class ([`ErrorClass`]).

mod convert;
mod error;
pub mod limiter;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};

use aws_sdk_connect::config::retry::RetryConfig;
use aws_sdk_connect::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_connect::types::{SecurityProfileSearchCriteria, StringComparisonType, StringCondition};

pub use error::{ConnectError, ErrorClass};

use crate::api::SecurityProfileSpec;
use crate::reconcile::plan::{ListedMembers, ProfileState, ProfileUpdate};
use crate::runtime::Metrics;
use limiter::{Rate, RateLimiter};

/// Where a profile lives: a Region and an instance, reached with the operator's credentials or, when
/// `role_arn` is set, by assuming that role.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub region: String,
    pub instance_id: String,
    pub role_arn: Option<String>,
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

/// How the operator talks to Connect.
#[derive(Debug, Clone)]
pub struct ConnectSettings {
    /// Attempts per call inside the SDK (1: the controller's backoff does all retrying).
    pub max_attempts: u32,
    /// Client-side rate limit per Region and credentials.
    pub rate: Rate,
    /// A role to assume for every call (multi-account); a namespace annotation can override it.
    pub role_arn: Option<String>,
}

impl Default for ConnectSettings {
    fn default() -> Self {
        Self { max_attempts: 1, rate: Rate::default(), role_arn: None }
    }
}

/// [`ConnectApi`] over aws-sdk-connect: one client per Region and role, built from the standard AWS
/// configuration chain (environment, profile, web identity for IRSA, container credentials;
/// `AWS_ENDPOINT_URL_CONNECT`). Every call waits for the rate limiter and is counted in the metrics.
pub struct SdkConnect {
    base: aws_config::SdkConfig,
    default_region: Option<String>,
    settings: ConnectSettings,
    limiter: RateLimiter,
    metrics: Arc<Metrics>,
    clients: Mutex<HashMap<(String, Option<String>), aws_sdk_connect::Client>>,
}

impl SdkConnect {
    /// Loads the AWS configuration from the environment.
    pub async fn from_env(settings: ConnectSettings, metrics: Arc<Metrics>) -> Self {
        let base = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
        let default_region = base.region().map(|r| r.to_string());
        Self {
            base,
            default_region,
            limiter: RateLimiter::new(settings.rate),
            settings,
            metrics,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Like [`SdkConnect::from_env`], but with `region` instead of the SDK's Region chain, whose last
    /// resort is the instance metadata service (on a workstation: a wait and long warnings).
    pub async fn from_env_in_region(region: String, settings: ConnectSettings, metrics: Arc<Metrics>) -> Self {
        let base = aws_config::defaults(BehaviorVersion::latest()).region(Region::new(region.clone())).load().await;
        Self {
            base,
            default_region: Some(region),
            limiter: RateLimiter::new(settings.rate),
            settings,
            metrics,
            clients: Mutex::new(HashMap::new()),
        }
    }

    pub fn default_region(&self) -> Option<&str> {
        self.default_region.as_deref()
    }

    /// The role used for `target`: its own, else the operator's.
    fn role_for<'a>(&'a self, target: &'a Target) -> Option<&'a str> {
        target.role_arn.as_deref().or(self.settings.role_arn.as_deref())
    }

    async fn client(&self, target: &Target) -> aws_sdk_connect::Client {
        let role = self.role_for(target).map(str::to_string);
        let key = (target.region.clone(), role.clone());
        if let Some(c) = self.clients.lock().expect("client cache lock").get(&key) {
            return c.clone();
        }
        let mut builder = aws_sdk_connect::config::Builder::from(&self.base)
            .region(Region::new(target.region.clone()))
            .retry_config(RetryConfig::standard().with_max_attempts(self.settings.max_attempts.max(1)));
        if let Some(role) = &role {
            let provider = aws_config::sts::AssumeRoleProvider::builder(role)
                .session_name("connect-operator")
                .region(Region::new(target.region.clone()))
                .configure(&self.base)
                .build()
                .await;
            builder = builder.credentials_provider(provider);
        }
        let client = aws_sdk_connect::Client::from_conf(builder.build());
        self.clients.lock().expect("client cache lock").insert(key, client.clone());
        client
    }

    /// One Connect call: wait for the rate limiter, call, count the outcome.
    async fn call<T, F, Fut>(&self, target: &Target, operation: &'static str, f: F) -> Result<T, ConnectError>
    where
        F: FnOnce(aws_sdk_connect::Client) -> Fut,
        Fut: Future<Output = Result<T, ConnectError>>,
    {
        let client = self.client(target).await;
        let key = format!("{}/{}", target.region, self.role_for(target).unwrap_or("default"));
        self.metrics.limiter_wait(self.limiter.acquire(&key).await);
        let result = f(client).await;
        self.metrics.connect_call(operation, result.as_ref().map(|_| "ok").unwrap_or_else(|e| e.code.as_str()));
        result
    }

    async fn list_members(&self, target: &Target, id: &str) -> Result<ListedMembers, ConnectError> {
        let inst = &target.instance_id;
        let permissions = self
            .all_pages(target, "ListSecurityProfilePermissions", |c, token| async move {
                let req = c.list_security_profile_permissions().instance_id(inst).security_profile_id(id);
                let page = req.max_results(1000).set_next_token(token).send().await.map_err(ConnectError::from_sdk)?;
                Ok((page.permissions.unwrap_or_default(), page.next_token))
            })
            .await?;
        let applications = self
            .all_pages(target, "ListSecurityProfileApplications", |c, token| async move {
                let req = c.list_security_profile_applications().instance_id(inst).security_profile_id(id);
                let page = req.max_results(1000).set_next_token(token).send().await.map_err(ConnectError::from_sdk)?;
                let items = page.applications.unwrap_or_default().iter().map(convert::from_sdk_application).collect();
                Ok((items, page.next_token))
            })
            .await?;
        let modules = self
            .all_pages(target, "ListSecurityProfileFlowModules", |c, token| async move {
                let req = c.list_security_profile_flow_modules().instance_id(inst).security_profile_id(id);
                let page = req.max_results(1000).set_next_token(token).send().await.map_err(ConnectError::from_sdk)?;
                let items =
                    page.allowed_flow_modules.unwrap_or_default().iter().map(convert::from_sdk_flow_module).collect();
                Ok((items, page.next_token))
            })
            .await?;
        let agents = self
            .all_pages(target, "ListSecurityProfileAIAgents", |c, token| async move {
                let req = c.list_security_profile_ai_agents().instance_id(inst).security_profile_id(id);
                let page = req.max_results(1000).set_next_token(token).send().await.map_err(ConnectError::from_sdk)?;
                let items = page.allowed_ai_agents.unwrap_or_default().iter().map(convert::from_sdk_ai_agent).collect();
                Ok((items, page.next_token))
            })
            .await?;
        Ok(ListedMembers::new(permissions, &applications, &modules, &agents))
    }

    /// Every item of a paged operation, one rate-limited [`call`](Self::call) per page: `fetch` takes
    /// the page token and returns the page's items and the next token.
    async fn all_pages<T, F, Fut>(
        &self,
        target: &Target,
        operation: &'static str,
        mut fetch: F,
    ) -> Result<Vec<T>, ConnectError>
    where
        F: FnMut(aws_sdk_connect::Client, Option<String>) -> Fut,
        Fut: Future<Output = Result<(Vec<T>, Option<String>), ConnectError>>,
    {
        let mut items = Vec::new();
        let mut token = None;
        loop {
            let (page, next) = self.call(target, operation, |c| fetch(c, token.take())).await?;
            items.extend(page);
            token = next;
            if token.is_none() {
                return Ok(items);
            }
        }
    }

    /// Every profile summary of an instance (ListSecurityProfiles, all pages).
    pub async fn list_profiles(&self, target: &Target) -> Result<Vec<(String, String, String)>, ConnectError> {
        let inst = &target.instance_id;
        self.all_pages(target, "ListSecurityProfiles", |c, token| async move {
            let req = c.list_security_profiles().instance_id(inst).max_results(1000);
            let page = req.set_next_token(token).send().await.map_err(ConnectError::from_sdk)?;
            let summaries = page.security_profile_summary_list.unwrap_or_default().into_iter();
            let items = summaries.filter_map(|s| Some((s.id?, s.arn?, s.name?))).collect();
            Ok((items, page.next_token))
        })
        .await
    }
}

impl ConnectApi for SdkConnect {
    async fn create_profile(
        &self,
        target: &Target,
        spec: &SecurityProfileSpec,
        tags: &BTreeMap<String, String>,
    ) -> Result<ProfileRef, ConnectError> {
        let out = self
            .call(target, "CreateSecurityProfile", |c| async move {
                convert::create_request(c.create_security_profile(), target, spec, tags)
                    .send()
                    .await
                    .map_err(ConnectError::from_sdk)
            })
            .await?;
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
            .call(target, "SearchSecurityProfiles", |c| async move {
                c.search_security_profiles()
                    .instance_id(&target.instance_id)
                    .search_criteria(criteria)
                    .max_results(10)
                    .send()
                    .await
                    .map_err(ConnectError::from_sdk)
            })
            .await?;
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
        let out = self
            .call(target, "DescribeSecurityProfile", |c| async move {
                c.describe_security_profile()
                    .instance_id(&target.instance_id)
                    .security_profile_id(id)
                    .send()
                    .await
                    .map_err(ConnectError::from_sdk)
            })
            .await?;
        let p = out.security_profile.ok_or_else(|| {
            ConnectError::new(
                ErrorClass::Recoverable,
                "IncompleteResponse",
                "DescribeSecurityProfile returned no profile",
            )
        })?;
        let mut state = convert::described_state(&p);
        if read_members {
            state.listed = Some(self.list_members(target, id).await?);
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
        self.call(target, "UpdateSecurityProfile", |c| async move {
            let builder = c.update_security_profile().instance_id(&target.instance_id).security_profile_id(id);
            convert::update_request(builder, update).send().await.map_err(ConnectError::from_sdk)
        })
        .await?;
        Ok(())
    }

    async fn tag_profile(
        &self,
        target: &Target,
        arn: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), ConnectError> {
        self.call(target, "TagResource", |c| async move {
            c.tag_resource()
                .resource_arn(arn)
                .set_tags(Some(tags.clone().into_iter().collect()))
                .send()
                .await
                .map_err(ConnectError::from_sdk)
        })
        .await?;
        Ok(())
    }

    async fn untag_profile(&self, target: &Target, arn: &str, keys: &[String]) -> Result<(), ConnectError> {
        self.call(target, "UntagResource", |c| async move {
            c.untag_resource()
                .resource_arn(arn)
                .set_tag_keys(Some(keys.to_vec()))
                .send()
                .await
                .map_err(ConnectError::from_sdk)
        })
        .await?;
        Ok(())
    }

    async fn delete_profile(&self, target: &Target, id: &str) -> Result<(), ConnectError> {
        self.call(target, "DeleteSecurityProfile", |c| async move {
            c.delete_security_profile()
                .instance_id(&target.instance_id)
                .security_profile_id(id)
                .send()
                .await
                .map_err(ConnectError::from_sdk)
        })
        .await?;
        Ok(())
    }
}
