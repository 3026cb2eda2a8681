//! `connect-operator`: manages Amazon Connect security profiles as Kubernetes resources.

use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use connect_operator::connect::limiter::Rate;
use connect_operator::connect::{ConnectSettings, SdkConnect};
use connect_operator::reconcile::{self, Context, Settings};
use connect_operator::runtime::{self, Health, Metrics, leader};

#[derive(Parser, Debug)]
#[command(name = "connect-operator", version, about = "Kubernetes operator for Amazon Connect security profiles")]
struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `connect_operator=debug`.
    #[arg(long, global = true, env = "LOG_LEVEL", default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum CrdKind {
    All,
    Securityprofile,
    Instancebinding,
}

#[derive(Subcommand, Debug)]
enum Command {
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
struct ExportArgs {
    /// The Connect instance to read.
    #[arg(long)]
    instance_id: String,
    /// Its Region (default: AWS_REGION, else the shared config profile's region); also written into each
    /// manifest's spec.region when given.
    #[arg(long)]
    region: Option<String>,
    /// Namespace to put into the manifests (default: none, so kubectl's current namespace applies).
    #[arg(long)]
    namespace: Option<String>,
    /// A directory (one file per profile) or - for stdout.
    #[arg(long, default_value = "-")]
    output: String,
    /// Also export the profiles every instance starts with (Admin, Agent, CallCenterManager, QualityAnalyst).
    #[arg(long)]
    include_defaults: bool,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// How `run` and `export` reach Connect.
#[derive(clap::Args, Debug)]
struct ConnectArgs {
    /// Client-side limit on Connect calls per second, per Region and credentials (0 disables).
    /// Connect's own quota is about 2/s per account and Region, shared by every tool in the account.
    #[arg(long, env = "CONNECT_RATE", default_value_t = 2.0)]
    connect_rate: f64,
    /// Burst size of the client-side limiter.
    #[arg(long, env = "CONNECT_BURST", default_value_t = 5.0)]
    connect_burst: f64,
    /// Share (0..1] of the rate that background observation (instance listings, drift checks) may use;
    /// the rest stays for work users asked for and for the account's other tools.
    #[arg(long, env = "CONNECT_BACKGROUND_SHARE", default_value_t = 0.25)]
    connect_background_share: f64,
    /// How long establishing a connection to Connect may take, e.g. 5s.
    #[arg(long, env = "CONNECT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// How long one attempt of a Connect call may take, request to complete answer, e.g. 20s. A create
    /// that times out has an unknown outcome and takes the crash-safe path.
    #[arg(long, env = "CONNECT_ATTEMPT_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    connect_attempt_timeout: Duration,
    /// IAM role to assume for Connect calls (multi-account). For `run`, an InstanceBinding's roleArn
    /// overrides it for the profiles it binds.
    #[arg(long, env = "CONNECT_ROLE_ARN")]
    role_arn: Option<String>,
}

impl ConnectArgs {
    /// The client settings, with `max_attempts` per call inside the SDK; refuses a limiter that
    /// could never admit a call.
    fn settings(&self, max_attempts: u32) -> anyhow::Result<ConnectSettings> {
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
            connect_timeout: self.connect_timeout,
            attempt_timeout: self.connect_attempt_timeout,
        })
    }
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Namespaces to watch (repeatable or comma-separated); all namespaces when empty.
    #[arg(long = "namespace", env = "WATCH_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Re-observe every profile this often, e.g. 10m, 30s.
    #[arg(long, env = "RESYNC_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    resync: Duration,
    /// First retry delay after a recoverable error (doubles per failure, with jitter).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    retry_base: Duration,
    /// Longest retry delay after recoverable errors.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    retry_max: Duration,
    /// Retry delay for quota (LimitExceeded) and unknown-instance errors.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    slow_retry: Duration,
    /// Reconciles in parallel.
    #[arg(long, env = "CONCURRENCY", default_value_t = 4)]
    concurrency: u16,
    /// How often each instance is listed (ListSecurityProfiles) to find the profiles that changed,
    /// vanished or differ; only those are read in full. See README "Spending the API quota".
    #[arg(long, env = "OBSERVE_INTERVAL", default_value = "2m", value_parser = parse_duration)]
    observe_interval: Duration,
    /// Every how many listings descriptions and tags are read too (SearchSecurityProfiles).
    #[arg(long, default_value_t = 2)]
    search_every: u32,
    /// Single-team mode: act on SecurityProfiles that no InstanceBinding covers, in their spec's Region
    /// (else AWS_REGION) with the operator's own identity. Off by default: every profile needs a binding.
    #[arg(long, env = "ALLOW_UNBOUND")]
    allow_unbound: bool,
    /// Attempts per Connect call inside the AWS SDK (with its backoff) before the controller's own
    /// backoff takes over. Retrying a read in place keeps a multi-call observation from starting over.
    #[arg(long, default_value_t = 3)]
    sdk_max_attempts: u32,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: std::net::SocketAddr,
    /// Run only while holding a Lease, so that several replicas are safe.
    #[arg(long, env = "LEADER_ELECT")]
    leader_elect: bool,
    /// Name of the Lease.
    #[arg(long, default_value = "connect-operator")]
    lease_name: String,
    /// Namespace of the Lease (default: the pod's namespace, POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// How long a leader's Lease is valid without renewal: a standby takes over once it has seen no
    /// renewal for this long (on its own clock); the leader renews every third of it and stops
    /// leading when it could not renew for two thirds of it.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    lease_duration: Duration,
}

#[derive(Debug, thiserror::Error)]
enum DurationError {
    #[error("{0:?} is not a duration such as 500ms, 30s, 10m, 1h30m or 2 hours")]
    Invalid(String),
    #[error("{0:?}: a duration cannot be negative")]
    Negative(String),
}

/// Parses a duration with jiff's friendly or ISO 8601 format: `500ms`, `30s`, `1.5m`, `1h30m`,
/// `2 hours`, `PT10M`. A bare number is seconds, as before units were required.
fn parse_duration(s: &str) -> Result<Duration, DurationError> {
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

fn init_tracing(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level).unwrap_or_else(|e| {
        eprintln!("invalid --log-level {level:?} ({e}); using info");
        tracing_subscriber::EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> anyhow::Result<()> {
    limit_malloc_arenas();
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?.block_on(async_main())
}

async fn async_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { kind } => {
            let profile = connect_operator::yaml::to_string(&connect_operator::api::crd())?;
            let binding = connect_operator::yaml::to_string(&connect_operator::api::binding_crd())?;
            match kind {
                CrdKind::All => print!("{profile}---\n{binding}"),
                CrdKind::Securityprofile => print!("{profile}"),
                CrdKind::Instancebinding => print!("{binding}"),
            }
            Ok(())
        }
        Command::Run(args) => run(*args, cli.log_format, &cli.log_level).await,
        Command::Export(args) => export(args, cli.log_format, &cli.log_level).await,
        Command::Validate { files } => {
            let report = connect_operator::offline::validate_files(&files);
            println!("{report}");
            std::process::exit(report.exit_code());
        }
    }
}

/// The Region `export` reads: `--region`, else the environment's or the shared config profile's.
/// Unlike the SDK's default chain this never asks the instance metadata service: a workstation has
/// none, and the SDK's warnings about it would come before the one error that says what to do.
async fn export_region(flag: Option<&str>) -> anyhow::Result<String> {
    use aws_config::environment::region::EnvironmentVariableRegionProvider;
    use aws_config::meta::region::RegionProviderChain;
    use aws_config::profile::ProfileFileRegionProvider;
    if let Some(region) = flag {
        return Ok(region.to_string());
    }
    RegionProviderChain::first_try(EnvironmentVariableRegionProvider::new())
        .or_else(ProfileFileRegionProvider::new())
        .region()
        .await
        .map(|r| r.to_string())
        .ok_or_else(|| anyhow::anyhow!("no AWS Region: pass --region or set AWS_REGION"))
}

async fn export(args: ExportArgs, log_format: LogFormat, log_level: &str) -> anyhow::Result<()> {
    init_tracing(log_format, log_level);
    let settings = args.connect.settings(3)?;
    let region = export_region(args.region.as_deref()).await?;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let connect = SdkConnect::from_env_in_region(region.clone(), settings, Arc::new(Metrics::default())).await;
    let target =
        connect_operator::connect::Target { region, instance_id: args.instance_id.clone(), ..Default::default() };
    let options = connect_operator::export::ExportOptions {
        namespace: args.namespace.clone(),
        region: args.region.clone(),
        include_defaults: args.include_defaults,
    };
    let manifests = connect_operator::export::export(&connect, &target, &options)
        .await
        .map_err(|e| anyhow::anyhow!("reading instance {}: {e}", args.instance_id))?;
    connect_operator::export::write(&manifests, &args.output)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", args.output))?;
    if args.output != "-" {
        eprintln!("wrote {} manifests to {}", manifests.len(), args.output);
    }
    Ok(())
}

fn replica_identity() -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
        format!("{}-{}", if host.is_empty() { "connect-operator" } else { &host }, std::process::id())
    })
}

/// glibc gives each thread that allocates its own malloc arena (up to 8 per core); an operator that
/// spends its time waiting on the network does not need them, and they dominate idle RSS.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_ARENA_MAX: i32 = -8;
        // SAFETY: mallopt only adjusts allocator tuning; called before any other thread exists.
        unsafe {
            mallopt(M_ARENA_MAX, 1);
        }
    }
}

/// glibc keeps freed heap pages (from a rollout's or a relist's transient buffers) mapped; once a minute
/// hand them back to the kernel so that an idle operator's RSS reflects what it holds.
fn release_freed_memory_periodically() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(async {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            every.tick().await;
            // SAFETY: malloc_trim only returns free memory to the kernel; it is thread-safe.
            unsafe {
                malloc_trim(0);
            }
        }
    });
}

async fn run(args: RunArgs, log_format: LogFormat, log_level: &str) -> anyhow::Result<()> {
    init_tracing(log_format, log_level);
    // kube and the AWS SDK both use rustls; install one process-wide provider.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let connect_settings = args.connect.settings(args.sdk_max_attempts)?;
    anyhow::ensure!(
        !args.leader_elect || args.lease_duration >= Duration::from_secs(1),
        "--lease-duration must be at least 1s (got {:?})",
        args.lease_duration
    );
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    release_freed_memory_periodically();
    let bound = runtime::serve(args.metrics_addr, metrics.clone(), health.clone())
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on --metrics-addr {}: {e}", args.metrics_addr))?;
    tracing::info!(%bound, "serving /metrics, /healthz, /readyz");
    let client = kube::Client::try_default()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach Kubernetes (KUBECONFIG or in-cluster config): {e}"))?;
    let connect = SdkConnect::from_env(connect_settings, metrics.clone()).await;
    let region = connect.default_region().map(str::to_string);
    if region.is_none() {
        tracing::warn!("no default AWS Region (AWS_REGION); every SecurityProfile must set spec.region");
    }
    let settings = Settings {
        resync: args.resync,
        retry_base: args.retry_base,
        retry_max: args.retry_max,
        slow_retry: args.slow_retry,
        concurrency: args.concurrency.max(1),
        allow_unbound: args.allow_unbound,
        observe_interval: args.observe_interval,
        search_every: args.search_every.max(1),
    };
    tracing::info!(namespaces = ?args.namespaces, region = ?region, ?settings, rate = args.connect.connect_rate, burst = args.connect.connect_burst, "starting connect-operator");
    let ctx = Arc::new(Context::new(client.clone(), connect, region, settings, metrics));
    health.ready.store(true, std::sync::atomic::Ordering::Relaxed);
    if !args.leader_elect {
        health.leading.store(true, std::sync::atomic::Ordering::Relaxed);
        return reconcile::run(ctx, args.namespaces, runtime::shutdown_signal()).await;
    }
    let lease =
        leader::LeaseConfig::new(args.lease_name, args.lease_namespace, replica_identity(), args.lease_duration);
    let mut elector = leader::Elector::new(kube::Api::namespaced(client, &lease.namespace), lease);
    tokio::select! {
        _ = elector.acquire() => {}
        _ = runtime::shutdown_signal() => return Ok(()),
    }
    health.leading.store(true, std::sync::atomic::Ordering::Relaxed);
    let outcome = tokio::select! {
        r = reconcile::run(ctx, args.namespaces, runtime::shutdown_signal()) => r,
        _ = elector.hold() => Err(anyhow::anyhow!("lost the leader lease; exiting so that a restart can stand by")),
    };
    health.leading.store(false, std::sync::atomic::Ordering::Relaxed);
    if outcome.is_ok() {
        elector.release().await;
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        let secs = Duration::from_secs;
        // What the chart's values.schema.json allows (`^[0-9]+(\.[0-9]+)?(ms|s|m|h)$`) and the defaults.
        for (text, want) in [
            ("10m", secs(600)),
            ("500ms", Duration::from_millis(500)),
            ("2s", secs(2)),
            ("15s", secs(15)),
            ("1h", secs(3600)),
            ("1.5m", secs(90)),
            ("0.5s", Duration::from_millis(500)),
            ("90", secs(90)),
            ("2.5", Duration::from_millis(2500)),
            // Friendlier forms.
            ("1h30m", secs(5400)),
            ("1h 30m", secs(5400)),
            ("2 hours", secs(7200)),
            ("PT10M", secs(600)),
            (" 30s ", secs(30)),
        ] {
            assert_eq!(parse_duration(text).unwrap(), want, "{text}");
        }
        for bad in ["", "10 parsecs", "m", "1.2.3", "inf", "NaN"] {
            let e = parse_duration(bad).unwrap_err().to_string();
            assert!(e.contains("is not a duration such as"), "{bad}: {e}");
        }
        assert_eq!(parse_duration("-5s").unwrap_err().to_string(), "\"-5s\": a duration cannot be negative");
    }

    #[test]
    fn clap_reports_a_bad_duration() {
        let e = Cli::try_parse_from(["connect-operator", "run", "--resync", "soon"]).unwrap_err().to_string();
        assert!(e.contains("invalid value 'soon' for '--resync <RESYNC>'"), "{e}");
        assert!(e.contains("is not a duration such as 500ms"), "{e}");
        let Command::Run(args) =
            Cli::try_parse_from(["connect-operator", "run", "--lease-duration", "1m 30s"]).unwrap().command
        else {
            panic!("run")
        };
        assert_eq!(args.lease_duration, Duration::from_secs(90));
    }
}
