//! `connect-operator`: manages Amazon Connect security profiles as Kubernetes resources.

use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use connect_operator::connect::SdkConnect;
use connect_operator::reconcile::{self, Context, Settings};

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

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controller against the cluster of the current kubeconfig (or in-cluster config).
    Run(RunArgs),
    /// Print the SecurityProfile CustomResourceDefinition as YAML.
    Crd,
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
    /// Attempts per Connect call inside the AWS SDK (1 = the controller's backoff does all retrying).
    #[arg(long, default_value_t = 1)]
    sdk_max_attempts: u32,
}

/// Parses `500ms`, `30s`, `10m`, `1h` (a bare number is seconds).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit() && c != '.').map(|i| s.split_at(i)).unwrap_or((s, "s"));
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration such as 30s, 10m or 1h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    Ok(Duration::from_secs_f64(secs))
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", serde_yaml::to_string(&connect_operator::api::crd())?);
            Ok(())
        }
        Command::Run(args) => {
            init_tracing(cli.log_format, &cli.log_level);
            // kube and the AWS SDK both use rustls; install one process-wide provider.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let client = kube::Client::try_default()
                .await
                .map_err(|e| anyhow::anyhow!("cannot reach Kubernetes (KUBECONFIG or in-cluster config): {e}"))?;
            let connect = SdkConnect::from_env(args.sdk_max_attempts.max(1)).await;
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
            };
            tracing::info!(namespaces = ?args.namespaces, region = ?region, ?settings, "starting connect-operator");
            let ctx = Arc::new(Context::new(client, connect, region, settings));
            reconcile::run(ctx, args.namespaces).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("10 parsecs").unwrap_err().contains("unknown unit"));
    }
}
