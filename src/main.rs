//! `connect-operator`: manages Amazon Connect security profiles as Kubernetes resources.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use connect_operator::connect::SdkConnect;
use connect_operator::reconcile::{self, Context};
use connect_operator::runtime::{self, Health, Metrics, leader};

mod cli;
#[cfg(test)]
use cli::parse_duration;
use cli::{Cli, Command, CrdKind, ExportArgs, LogFormat, RunArgs};

fn init_tracing(format: LogFormat, level: &str) {
    use tracing_subscriber::util::SubscriberInitExt;
    subscriber(format, level, std::io::stderr).init();
}

/// The log subscriber writing to `writer`. Each line carries the fields of the spans it happened in
/// (the reconcile's namespace, profile name, generation and instance; an instance listing's Region and
/// instance; a binding's name): text prefixes them, JSON has the innermost span as `span` and all of
/// them, outermost first, as `spans`.
fn subscriber<W>(format: LogFormat, level: &str, writer: W) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_new(level).unwrap_or_else(|e| {
        eprintln!("invalid --log-level {level:?} ({e}); using info");
        tracing_subscriber::EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.finish()),
        LogFormat::Json => Box::new(builder.json().with_current_span(true).with_span_list(true).finish()),
    }
}

fn main() -> anyhow::Result<()> {
    tune_malloc();
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
        observe: args.observe,
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
fn tune_malloc() {
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

/// glibc keeps freed heap pages (from a rollout's or a relist's transient buffers, a listing round's)
/// mapped; every 15 s hand them back to the kernel so that an idle operator's RSS reflects what it
/// holds (a trim walks the free lists only).
fn release_freed_memory_periodically() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(async {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        let mut every = tokio::time::interval(std::time::Duration::from_secs(15));
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
    let settings = args.settings();
    tracing::info!(namespaces = ?args.namespaces, region = ?region, ?settings, rate = args.connect.connect_rate, burst = args.connect.connect_burst, "starting connect-operator");
    // /readyz is ready while the API server lists what the controller watches (checked every 10 s);
    // until the API server first answers nothing else starts (every replica, leader or standby, waits).
    let listables = reconcile::controller::listables(&args.namespaces, args.allow_unbound);
    let mut readiness = runtime::ReadinessCheck::new(client.clone(), listables, health.clone());
    tokio::select! {
        _ = readiness.until_answered() => {}
        _ = runtime::shutdown_signal() => return Ok(()),
    }
    tokio::spawn(readiness.run());
    let ctx = Arc::new(Context::new(client.clone(), connect, region, settings, metrics));
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

    /// A writer into a shared buffer, for the log subscriber.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for Captured {
        type Writer = Captured;
        fn make_writer(&'w self) -> Captured {
            self.clone()
        }
    }

    /// What a reconcile logs carries its span's fields: in JSON the innermost span as `span`, every
    /// span as `spans`; in text as a prefix.
    #[test]
    fn logs_carry_the_span_fields() {
        let log = |format| {
            let out = Captured::default();
            tracing::subscriber::with_default(subscriber(format, "info", out.clone()), || {
                let reconcile = tracing::info_span!(
                    "reconcile",
                    namespace = "team-a",
                    profile = "agents",
                    generation = 3,
                    instance = "i-1"
                );
                let _reconcile = reconcile.enter();
                let listing = tracing::info_span!("instance_listing", region = "eu-west-2", instance = "i-1");
                listing.in_scope(|| tracing::warn!(reason = "ThrottlingException", "cannot list the instance"));
            });
            String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
        };
        let json: serde_json::Value = serde_json::from_str(log(LogFormat::Json).trim()).expect("one JSON line");
        assert_eq!(json["level"], "WARN");
        assert_eq!(json["fields"]["reason"], "ThrottlingException");
        assert_eq!(json["span"]["name"], "instance_listing");
        assert_eq!(json["span"]["region"], "eu-west-2");
        let spans = json["spans"].as_array().expect("the span list");
        assert_eq!(spans[0]["name"], "reconcile");
        assert_eq!(spans[0]["namespace"], "team-a");
        assert_eq!(spans[0]["profile"], "agents");
        assert_eq!(spans[0]["generation"], 3);
        assert_eq!(spans[0]["instance"], "i-1");
        assert_eq!(spans[1]["name"], "instance_listing");
        // Without the terminal colours.
        let text = regex::Regex::new("\x1b\\[[0-9;]*m").unwrap().replace_all(&log(LogFormat::Text), "").into_owned();
        assert!(
            text.contains("reconcile{namespace=\"team-a\" profile=\"agents\" generation=3 instance=\"i-1\"}"),
            "{text}"
        );
    }

    /// `run` without flags has the controller's defaults: one place holds them (Settings::DEFAULT_*).
    #[test]
    fn run_defaults_are_the_settings_defaults() {
        let Command::Run(args) = Cli::try_parse_from(["connect-operator", "run"]).unwrap().command else {
            panic!("run")
        };
        assert_eq!(format!("{:?}", args.settings()), format!("{:?}", connect_operator::reconcile::Settings::default()));
    }

    /// Every flag of `run` can be set from the environment.
    #[test]
    fn every_run_flag_has_an_environment_variable() {
        use clap::CommandFactory;
        let cli = Cli::command();
        let run = cli.find_subcommand("run").expect("run");
        let missing: Vec<String> = run
            .get_arguments()
            .filter(|a| a.get_long().is_some() && a.get_env().is_none() && !a.is_global_set())
            .filter(|a| !["help", "version"].contains(&a.get_id().as_str()))
            .map(|a| format!("--{}", a.get_long().unwrap()))
            .collect();
        assert!(missing.is_empty(), "flags without an environment variable: {missing:?}");
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
