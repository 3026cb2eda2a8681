//! The command line: subcommands, flags and their environment variables, and the parsing of values.

use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use connect_operator::connect::ConnectSettings;
use connect_operator::connect::limiter::Rate;
use connect_operator::reconcile::Settings;

#[derive(Parser, Debug)]
#[command(name = "connect-operator", version, about = "Kubernetes operator for Amazon Connect security profiles")]
pub(crate) struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `connect_operator=debug`.
    #[arg(long, global = true, env = "LOG_LEVEL", default_value = "info")]
    pub(crate) log_level: String,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub(crate) enum CrdKind {
    All,
    Securityprofile,
    Instancebinding,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run the controller against the cluster of the current kubeconfig (or in-cluster config).
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions as YAML: both (the default), or one kind.
    Crd {
        #[arg(value_enum, default_value_t = CrdKind::All)]
        kind: CrdKind,
    },
    /// Write a SecurityProfile manifest (with the adopt annotation) for every profile of an instance.
    Export(ExportArgs),
    /// Check SecurityProfile manifests offline with the schema's, the CEL rules' and the controller's
    /// rules; prints each problem with file, resource and field, exits 1 on any (2 on unreadable input).
    Validate {
        /// Files or directories (searched recursively for .yaml/.yml/.json); - reads stdin.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
pub(crate) struct ExportArgs {
    /// The Connect instance to read.
    #[arg(long)]
    pub(crate) instance_id: String,
    /// Its Region (default: AWS_REGION, else the shared config profile's region); also written into each
    /// manifest's spec.region when given.
    #[arg(long)]
    pub(crate) region: Option<String>,
    /// Namespace to put into the manifests (default: none, so kubectl's current namespace applies).
    #[arg(long)]
    pub(crate) namespace: Option<String>,
    /// A directory (one file per profile) or - for stdout.
    #[arg(long, default_value = "-")]
    pub(crate) output: String,
    /// Also export the profiles every instance starts with (Admin, Agent, CallCenterManager, QualityAnalyst).
    #[arg(long)]
    pub(crate) include_defaults: bool,
    /// Write `managementPolicy: Observe` into every manifest: applying them writes nothing to Connect,
    /// and each resource shows how Connect differs from its spec (the zero-risk onboarding path).
    #[arg(long)]
    pub(crate) observe: bool,
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
}

/// How `run` and `export` reach Connect.
#[derive(clap::Args, Debug)]
pub(crate) struct ConnectArgs {
    /// Client-side limit on Connect calls per second, per Region and credentials (0 disables).
    /// Connect's own quota is about 2/s per account and Region, shared by every tool in the account.
    #[arg(long, env = "CONNECT_RATE", default_value_t = 2.0)]
    pub(crate) connect_rate: f64,
    /// Burst size of the client-side limiter.
    #[arg(long, env = "CONNECT_BURST", default_value_t = 5.0)]
    pub(crate) connect_burst: f64,
    /// Share (0..1] of the rate that background observation (instance listings, drift checks) may use;
    /// the rest stays for work users asked for and for the account's other tools.
    #[arg(long, env = "CONNECT_BACKGROUND_SHARE", default_value_t = 0.25)]
    pub(crate) connect_background_share: f64,
    /// How long establishing a connection to Connect may take, e.g. 5s.
    #[arg(long, env = "CONNECT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub(crate) connect_timeout: Duration,
    /// How long one attempt of a Connect call may take, request to complete answer, e.g. 20s. A create
    /// that times out has an unknown outcome and takes the crash-safe path.
    #[arg(long, env = "CONNECT_ATTEMPT_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub(crate) connect_attempt_timeout: Duration,
    /// IAM role to assume for Connect calls (multi-account). For `run`, an InstanceBinding's roleArn
    /// overrides it for the profiles it binds.
    #[arg(long, env = "CONNECT_ROLE_ARN")]
    pub(crate) role_arn: Option<String>,
    /// ExternalId passed with every AssumeRole (of --role-arn and of the bindings' roles), for roles
    /// whose trust policy requires one (deploy/iam/binding-role-trust-policy.json).
    #[arg(long, env = "CONNECT_EXTERNAL_ID")]
    pub(crate) external_id: Option<String>,
}

impl ConnectArgs {
    /// The client settings, with up to `max_attempts` attempts per call (made by the operator's own
    /// loop, each through the rate limiter: the SDK's retries are off); refuses a limiter that could
    /// never admit a call.
    pub(crate) fn settings(&self, max_attempts: u32) -> anyhow::Result<ConnectSettings> {
        anyhow::ensure!(
            self.connect_rate >= 0.0 && self.connect_burst >= 1.0 || self.connect_rate == 0.0,
            "--connect-burst must be at least 1 (got {})",
            self.connect_burst
        );
        anyhow::ensure!(
            self.connect_background_share > 0.0 && self.connect_background_share <= 1.0,
            "--connect-background-share must be in (0, 1] (got {})",
            self.connect_background_share
        );
        Ok(ConnectSettings {
            max_attempts: max_attempts.max(1),
            rate: Rate {
                per_second: self.connect_rate,
                burst: self.connect_burst,
                background_share: self.connect_background_share,
            },
            role_arn: self.role_arn.clone(),
            external_id: self.external_id.clone(),
            connect_timeout: self.connect_timeout,
            attempt_timeout: self.connect_attempt_timeout,
        })
    }
}

#[derive(clap::Args, Debug)]
pub(crate) struct RunArgs {
    /// Namespaces to watch (repeatable or comma-separated); all namespaces when empty.
    #[arg(long = "namespace", env = "WATCH_NAMESPACES", value_delimiter = ',')]
    pub(crate) namespaces: Vec<String>,
    /// Re-observe every profile this often, e.g. 10m, 30s.
    #[arg(long, env = "RESYNC_INTERVAL", default_value = Settings::DEFAULT_RESYNC, value_parser = parse_duration)]
    pub(crate) resync: Duration,
    /// First retry delay after a recoverable error (doubles per failure, with jitter).
    #[arg(long, env = "RETRY_BASE", default_value = Settings::DEFAULT_RETRY_BASE, value_parser = parse_duration)]
    pub(crate) retry_base: Duration,
    /// Longest retry delay after recoverable errors.
    #[arg(long, env = "RETRY_MAX", default_value = Settings::DEFAULT_RETRY_MAX, value_parser = parse_duration)]
    pub(crate) retry_max: Duration,
    /// Retry delay for quota (LimitExceeded) and unknown-instance errors.
    #[arg(long, env = "SLOW_RETRY", default_value = Settings::DEFAULT_SLOW_RETRY, value_parser = parse_duration)]
    pub(crate) slow_retry: Duration,
    /// Reconciles in flight in the whole operator; with --namespace, shared evenly among the namespaces.
    #[arg(long, env = "CONCURRENCY", default_value_t = Settings::DEFAULT_CONCURRENCY)]
    pub(crate) concurrency: u16,
    /// How often each instance is listed (ListSecurityProfiles) to find the profiles that changed,
    /// vanished or differ; only those are read in full. See README "Spending the API quota".
    #[arg(long, env = "OBSERVE_INTERVAL", default_value = Settings::DEFAULT_OBSERVE_INTERVAL, value_parser = parse_duration)]
    pub(crate) observe_interval: Duration,
    /// Every how many listings descriptions and tags are read too (SearchSecurityProfiles).
    #[arg(long, env = "SEARCH_EVERY", default_value_t = Settings::DEFAULT_SEARCH_EVERY)]
    pub(crate) search_every: u32,
    /// SQS queue URL that receives Connect's CloudTrail events through an EventBridge rule
    /// (deploy/events/): the profiles they name are read and repaired at once, and each instance is listed
    /// only every --events-observe-interval while the queue is read. Off when unset or empty. See README
    /// "Drift from CloudTrail events".
    #[arg(long, env = "EVENTS_QUEUE_URL")]
    pub(crate) events_queue_url: Option<String>,
    /// How often each instance is listed while the events queue is read (the safety net); while it cannot
    /// be read, --observe-interval applies.
    #[arg(long, env = "EVENTS_OBSERVE_INTERVAL", default_value = Settings::DEFAULT_EVENTS_OBSERVE_INTERVAL, value_parser = parse_duration)]
    pub(crate) events_observe_interval: Duration,
    /// Treat every SecurityProfile as managementPolicy Observe: read and compare, never write to Connect
    /// (pair it with the read-only IAM policy, deploy/iam-policy-readonly.json).
    #[arg(long, env = "OBSERVE_ONLY")]
    pub(crate) observe_only: bool,
    /// Single-team mode: act on SecurityProfiles that no InstanceBinding covers, in their spec's Region
    /// (else AWS_REGION) with the operator's own identity. Off by default: every profile needs a binding.
    #[arg(long, env = "ALLOW_UNBOUND")]
    pub(crate) allow_unbound: bool,
    /// Role ARNs InstanceBindings may name (repeatable or comma-separated; `*` matches any run of
    /// characters), e.g. `arn:aws:iam::111122223333:role/connect-team-*`. A binding naming another role
    /// binds nothing (RoleNotAllowed). Empty: any role.
    #[arg(long, env = "ALLOWED_ROLE_ARNS", value_delimiter = ',')]
    pub(crate) allowed_role_arns: Vec<String>,
    /// Attempts per Connect call before the controller's own backoff takes over. The operator makes
    /// them itself (the AWS SDK's retries are off): throttling and server errors, and for reads lost
    /// connections, are repeated after a short jittered pause (0.5 s, doubling), each attempt waiting
    /// for the rate limiter. Retrying a read in place keeps a multi-call observation from starting
    /// over. An attempt that ran into `--connect-attempt-timeout` is not repeated in place: the
    /// resource's status says so at once and the controller's backoff retries it.
    #[arg(long, env = "SDK_MAX_ATTEMPTS", default_value_t = 3)]
    pub(crate) sdk_max_attempts: u32,
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub(crate) metrics_addr: std::net::SocketAddr,
    /// Run only while holding a Lease, so that several replicas are safe.
    #[arg(long, env = "LEADER_ELECT")]
    pub(crate) leader_elect: bool,
    /// Name of the Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "connect-operator")]
    pub(crate) lease_name: String,
    /// Namespace of the Lease (default: the pod's namespace, POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub(crate) lease_namespace: String,
    /// How long a leader's Lease is valid without renewal: a standby takes over once it has seen no
    /// renewal for this long (on its own clock); the leader renews every third of it and stops
    /// leading when it could not renew for two thirds of it.
    #[arg(long, env = "LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub(crate) lease_duration: Duration,
}

impl RunArgs {
    /// The controller's settings from these flags (the only place the binary builds them).
    pub(crate) fn settings(&self) -> Settings {
        Settings {
            resync: self.resync,
            retry_base: self.retry_base,
            retry_max: self.retry_max,
            slow_retry: self.slow_retry,
            concurrency: self.concurrency.max(1),
            allow_unbound: self.allow_unbound,
            observe_only: self.observe_only,
            observe_interval: self.observe_interval,
            search_every: self.search_every.max(1),
            allowed_role_arns: self.allowed_role_arns.clone(),
            watched_namespaces: self.namespaces.clone(),
            events_queue_url: self.events_queue_url.clone().filter(|u| !u.trim().is_empty()),
            events_observe_interval: self.events_observe_interval,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DurationError {
    #[error("{0:?} is not a duration such as 500ms, 30s, 10m, 1h30m or 2 hours")]
    Invalid(String),
    #[error("{0:?}: a duration cannot be negative")]
    Negative(String),
}

/// Parses a duration with jiff's friendly or ISO 8601 format: `500ms`, `30s`, `1.5m`, `1h30m`,
/// `2 hours`, `PT10M`. A bare number is seconds, as before units were required.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return s
            .parse()
            .ok()
            .and_then(|n| Duration::try_from_secs_f64(n).ok())
            .ok_or(DurationError::Invalid(s.into()));
    }
    let d: jiff::SignedDuration = s.parse().map_err(|_| DurationError::Invalid(s.into()))?;
    Duration::try_from(d).map_err(|_| DurationError::Negative(s.into()))
}
