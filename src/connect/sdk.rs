//! [`super::ConnectApi`] over aws-sdk-connect: the clients (per Region, role and session), the rate limiter
//! every call waits for, and the metrics each call counts.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_connect::config::retry::RetryConfig;
use aws_sdk_connect::config::timeout::TimeoutConfig;
use aws_sdk_connect::config::{BehaviorVersion, Credentials, Region};

use super::assume_role::AssumedRole;
use super::limiter::{Rate, RateLimiter};
use super::{ConnectError, ErrorClass};
use crate::domain::Target;
use crate::runtime::Metrics;

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

/// The HTTPS client every SDK client of the operator shares: the SDK's default, built the way the SDK
/// builds it (rustls with aws-lc, the SDK's proxy settings from the environment), but once. Left to
/// itself the SDK gives each client its own, with its own copy of the trusted roots and its own
/// connection pool: with a client per identity (300 in an operator of 100 bindings) that was 67 of
/// the 95 MiB of heap measured at 3,000 profiles. Connections stay per host, whichever identity signs.
fn shared_https_client() -> aws_sdk_connect::config::SharedHttpClient {
    use aws_smithy_http_client::proxy::ProxyConfig;
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector =
            aws_smithy_http_client::Connector::builder().tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

/// How the operator talks to Connect.
#[derive(Debug, Clone)]
pub struct ConnectSettings {
    /// Attempts per call (1: the controller's backoff does all retrying). Every attempt waits for the
    /// rate limiter: the SDK itself never retries.
    pub max_attempts: u32,
    /// Client-side rate limit per Region and credentials.
    pub rate: Rate,
    /// A role to assume for every call (multi-account); an InstanceBinding's role overrides it.
    pub role_arn: Option<String>,
    /// The ExternalId passed with every AssumeRole (the binding roles' trust policies require it).
    pub external_id: Option<String>,
    /// How long establishing a connection may take.
    pub connect_timeout: Duration,
    /// How long one attempt (request to complete answer) may take.
    pub attempt_timeout: Duration,
}

impl Default for ConnectSettings {
    fn default() -> Self {
        Self {
            max_attempts: 1,
            rate: Rate::default(),
            role_arn: None,
            external_id: None,
            connect_timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(20),
        }
    }
}

/// One client per Region, role and (with a role) session name and session tags.
type ClientKey = (String, Option<String>, Option<String>, Vec<(String, String)>);

/// [`ConnectApi`] over aws-sdk-connect: one client per Region and role, built from the standard AWS
/// configuration chain (environment, profile, web identity for IRSA, container credentials;
/// `AWS_ENDPOINT_URL_CONNECT`). Every call waits for the rate limiter and is counted in the metrics.
pub struct SdkConnect {
    base: aws_config::SdkConfig,
    default_region: Option<String>,
    settings: ConnectSettings,
    limiter: RateLimiter,
    metrics: Arc<Metrics>,
    /// Built once per key, however many reconciles ask at once: each client assumes its role once and
    /// caches the credentials (a race here made one AssumeRole per concurrent first call).
    clients: Mutex<HashMap<ClientKey, Arc<tokio::sync::OnceCell<aws_sdk_connect::Client>>>>,
    /// One STS client per Region, for every role session's AssumeRole ([`AssumedRole`]).
    sts: Mutex<HashMap<String, aws_sdk_sts::Client>>,
}

impl SdkConnect {
    /// Loads the AWS configuration from the environment.
    pub async fn from_env(settings: ConnectSettings, metrics: Arc<Metrics>) -> Self {
        let base = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
        Self::from_config(base, settings, metrics)
    }

    /// Like [`SdkConnect::from_env`], but with `region` instead of the SDK's Region chain, whose last
    /// resort is the instance metadata service (on a workstation: a wait and long warnings).
    pub async fn from_env_in_region(region: String, settings: ConnectSettings, metrics: Arc<Metrics>) -> Self {
        let base = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(Region::new(region.clone()))
            .load()
            .await;
        Self::from_config(base, settings, metrics)
    }

    /// Over the loaded configuration `base` (its Region is the default one). Unless `base` brings its own
    /// HTTP client, every Connect and STS client built here shares one ([`shared_https_client`]).
    pub fn from_config(base: aws_config::SdkConfig, settings: ConnectSettings, metrics: Arc<Metrics>) -> Self {
        let base = match base.http_client() {
            Some(_) => base,
            None => base.into_builder().http_client(shared_https_client()).build(),
        };
        Self {
            default_region: base.region().map(|r| r.to_string()),
            base,
            limiter: RateLimiter::new(settings.rate),
            settings,
            metrics,
            clients: Mutex::new(HashMap::new()),
            sts: Mutex::new(HashMap::new()),
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
        // Without a role the session name means nothing: one client per Region serves every namespace.
        let session = role.as_ref().map(|_| target.session_name.clone().unwrap_or_else(|| "connect-operator".into()));
        let tags = if role.is_some() { target.session_tags.clone() } else { Vec::new() };
        let key = (target.region.clone(), role.clone(), session.clone(), tags.clone());
        let cell = self.clients.lock().expect("client cache lock").entry(key).or_default().clone();
        cell.get_or_init(|| self.build_client(target, role, session, tags)).await.clone()
    }

    async fn build_client(
        &self,
        target: &Target,
        role: Option<String>,
        session: Option<String>,
        tags: Vec<(String, String)>,
    ) -> aws_sdk_connect::Client {
        let mut builder = aws_sdk_connect::config::Builder::from(&self.base)
            .region(Region::new(target.region.clone()))
            // One attempt per SDK call: retries go through `call`, and so through the rate limiter.
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(self.settings.connect_timeout)
                    .operation_attempt_timeout(self.settings.attempt_timeout)
                    .build(),
            );
        if let Some(role) = &role {
            // A credentials cache of its own: the SDK's shared one keeps 64 identities and evicts the
            // rest, and an operator of 100 bindings has three hundred (a session per namespace, the
            // observer's and the probe's per role): each eviction was one more AssumeRole.
            builder = builder.identity_cache(aws_sdk_connect::config::IdentityCache::lazy().build());
            builder = builder.credentials_provider(AssumedRole {
                sts: self.sts_client(&target.region),
                role_arn: role.clone(),
                session_name: session.unwrap_or_default(),
                tags,
                external_id: self.settings.external_id.clone(),
            });
        }
        aws_sdk_connect::Client::from_conf(builder.build())
    }

    /// The STS client of `region` (its regional endpoint), signed with the operator's own credentials.
    fn sts_client(&self, region: &str) -> aws_sdk_sts::Client {
        let mut all = self.sts.lock().expect("sts client lock");
        let client = all.entry(region.to_string()).or_insert_with(|| {
            aws_sdk_sts::Client::from_conf(
                aws_sdk_sts::config::Builder::from(&self.base).region(Region::new(region.to_string())).build(),
            )
        });
        client.clone()
    }

    /// One Connect call: up to `max_attempts` attempts, each after a token from the rate limiter (at the
    /// target's priority), counted in the metrics. Only what cannot have taken effect is retried in place:
    /// throttling and server errors, and for reads also answers that never came.
    pub(super) async fn call<T, F, Fut>(
        &self,
        target: &Target,
        operation: &'static str,
        f: F,
    ) -> Result<T, ConnectError>
    where
        F: FnMut(aws_sdk_connect::Client) -> Fut,
        Fut: Future<Output = Result<T, ConnectError>>,
    {
        let mut f = f;
        let client = self.client(target).await;
        // Connect's quota is per account and Region: roles of one account share one bucket.
        let account = self.role_for(target).and_then(|r| r.split(':').nth(4)).unwrap_or("default");
        let key = format!("{}/{account}", target.region);
        let mut attempt = 1;
        loop {
            let waited = self.limiter.acquire(&key, target.priority, &target.tenant).await;
            self.metrics.limiter_wait(waited);
            self.metrics.prioritized_call(target.priority.as_str(), waited);
            let result = f(client.clone()).await;
            let outcome = result.as_ref().map(|_| "ok").unwrap_or_else(|e| e.code.as_str());
            self.metrics.connect_call(operation, outcome);
            match result {
                Err(e) if attempt < self.settings.max_attempts.max(1) && retryable(operation, &e) => {
                    let backoff = crate::domain::jitter(Duration::from_millis(250 << attempt.min(5)), 0.25);
                    tokio::time::sleep(backoff).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Every item of a paged operation, one rate-limited [`call`](Self::call) per page: `fetch` takes
    /// the page token and returns the page's items and the next token.
    pub(super) async fn all_pages<T, F, Fut>(
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
            let (page, next) = self.call(target, operation, |c| fetch(c, token.clone())).await?;
            items.extend(page);
            token = next;
            if token.is_none() {
                return Ok(items);
            }
        }
    }
}

/// Whether a failed attempt of `operation` may be repeated at once: it did not take effect (throttled,
/// a server error before any effect), or it is a read, which any number of repeats leaves unchanged.
/// Not an attempt that timed out, read or write: Connect is slow or away, a repeat would only keep the
/// resource silent for another `--connect-attempt-timeout`; the controller's backoff retries it after
/// the status said so.
fn retryable(operation: &str, e: &ConnectError) -> bool {
    let read = ["Describe", "List", "Search"].iter().any(|p| operation.starts_with(p));
    let timed_out = e.code == super::error::REQUEST_TIMEOUT;
    super::error::repeatable(&e.code) || (read && e.class == ErrorClass::Recoverable && !timed_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many reconciles of one namespace starting at once (a restart, a rollout): one client, one
    /// AssumeRole, however many ask before the first is built.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_identity_assumes_its_role_once_however_many_ask_and_however_many_there_are() {
        use crate::connect::ConnectApi;
        let faults = connect_emulator::Faults { throttle_rate: 0.0, ..Default::default() };
        let config = connect_emulator::EmulatorConfig { faults, ..Default::default() };
        let emu = connect_emulator::Emulator::start(config).await.unwrap();
        let base = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(emu.endpoint())
            .credentials_provider(Credentials::new("AKIDOPERATOR", "secret", None, None, "static"))
            .load()
            .await;
        let settings = ConnectSettings { rate: Rate { per_second: 0.0, ..Default::default() }, ..Default::default() };
        let sdk = Arc::new(SdkConnect::from_config(base, settings, Arc::new(Metrics::default())));
        let target = Target {
            region: "us-east-1".into(),
            instance_id: connect_emulator::DEFAULT_INSTANCE_ID.into(),
            role_arn: Some("arn:aws:iam::123456789012:role/team-a".into()),
            session_name: Some("csp-team-a".into()),
            session_tags: vec![("namespace".into(), "team-a".into())],
            tenant: "team-a".into(),
            priority: crate::domain::Priority::User,
        };
        let probes = (0..32).map(|_| {
            let (sdk, target) = (sdk.clone(), target.clone());
            tokio::spawn(async move { sdk.probe_instance(&target).await })
        });
        assert!(futures::future::join_all(probes).await.into_iter().all(|r| r.is_ok_and(|r| r.is_ok())));
        let assumed = emu.calls().iter().filter(|c| c.operation == "AssumeRole").count();
        assert_eq!(assumed, 1, "one AssumeRole for 32 concurrent first calls of one identity");
        // Many identities (bindings, namespaces): each keeps its credentials, used again and again.
        for _round in 0..2 {
            for i in 0..80 {
                let target = Target { session_name: Some(format!("csp-team-{i}")), ..target.clone() };
                sdk.probe_instance(&target).await.unwrap();
            }
        }
        let assumed = emu.calls().iter().filter(|c| c.operation == "AssumeRole").count();
        assert_eq!(assumed, 1 + 80, "one AssumeRole per identity, however many identities");
    }

    #[test]
    fn only_what_cannot_have_taken_effect_is_repeated() {
        let e = |code: &str, unknown: bool| ConnectError {
            outcome_unknown: unknown,
            ..ConnectError::new(ErrorClass::Recoverable, code, "x")
        };
        assert!(retryable("CreateSecurityProfile", &e("ThrottlingException", false)));
        assert!(!retryable("CreateSecurityProfile", &e("RequestTimeout", true)), "a create that may have happened");
        assert!(!retryable("DescribeSecurityProfile", &e("RequestTimeout", true)), "said in status first");
        assert!(retryable("DescribeSecurityProfile", &e("ConnectionFailure", true)), "a read is repeated");
        let terminal = ConnectError::new(ErrorClass::Terminal, "InvalidParameterException", "x");
        assert!(!retryable("DescribeSecurityProfile", &terminal));
    }
}
