//! `connect-emulator`: a local Amazon Connect for the security-profile API. See the README.md at the root.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use connect_emulator::{DEFAULT_INSTANCE_ID, Emulator, EmulatorConfig, Faults};

#[derive(Parser, Debug)]
#[command(
    name = "connect-emulator",
    version,
    about = "A local Amazon Connect (security-profile API) for tests and demos"
)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "CONNECT_EMULATOR_LISTEN", default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// Write the bound address (host:port) to this file once listening.
    #[arg(long)]
    addr_file: Option<PathBuf>,
    /// Instances to create (repeatable): `ID` (in --account) or `ACCOUNT:ID` (in that account, with its
    /// own quota; only sessions of that account's roles reach it).
    #[arg(long = "instance", default_values_t = [DEFAULT_INSTANCE_ID.to_string()])]
    instances: Vec<String>,
    #[arg(long, default_value = "us-east-1")]
    region: String,
    #[arg(long, default_value = "123456789012")]
    account: String,
    /// Do not seed the default profiles (Admin, Agent, CallCenterManager, QualityAnalyst).
    #[arg(long)]
    no_default_profiles: bool,
    /// Security profiles per instance (Connect's default quota is 100).
    #[arg(long, default_value_t = 100)]
    profile_limit: usize,
    /// Throttle: sustained requests per second (0 disables throttling).
    #[arg(long, default_value_t = 2.0)]
    throttle_rate: f64,
    /// Throttle: burst size.
    #[arg(long, default_value_t = 5.0)]
    throttle_burst: f64,
    /// Fraction of calls answered with InternalServiceException (0..1).
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Latency added to each answer, in milliseconds (the call takes effect on arrival).
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Hold every Connect answer this many milliseconds: the call takes effect, and is answered, only
    /// then, even if the caller has given up (Connect not answering).
    #[arg(long, default_value_t = 0)]
    hold_answers_ms: u64,
    /// Reads do not see a profile until this many milliseconds after its creation (eventual
    /// consistency); writes see it at once.
    #[arg(long, default_value_t = 0)]
    read_lag_ms: u64,
    /// Lose the responses of the next N successful creates (the profile is created, the connection drops).
    #[arg(long, default_value_t = 0)]
    lose_next_creates: u32,
    /// Milliseconds a lost create holds the connection open before dropping it.
    #[arg(long, default_value_t = 0)]
    lost_response_hold_ms: u64,
    /// Enforce IAM: a JSON file with the users (by access key) and roles (trust policy, policies) whose
    /// policies authorize every Connect call and AssumeRole (see the emulator's `http` module docs).
    #[arg(long, value_name = "FILE.json")]
    iam: Option<PathBuf>,
    /// Send every successful write (API calls and console edits) to this SQS queue as the CloudTrail
    /// event EventBridge delivers (`AWS API Call via CloudTrail`, source `aws.connect`); static
    /// credentials `emulator`, the endpoint of the URL's origin.
    #[arg(long, value_name = "URL")]
    events_queue_url: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let args = Args::parse();
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.error_rate),
        "--error-rate must be between 0 and 1, got {}",
        args.error_rate
    );
    anyhow::ensure!(
        args.throttle_rate >= 0.0 && args.throttle_burst >= 0.0,
        "--throttle-rate and --throttle-burst must not be negative"
    );
    let iam = match &args.iam {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("--iam {}: {e}", path.display()))?;
            let iam: connect_emulator::iam::IamConfig =
                serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("--iam {}: {e}", path.display()))?;
            iam.validate().map_err(|e| anyhow::anyhow!("--iam {}: {e}", path.display()))?;
            Some(iam)
        }
        None => None,
    };
    let config = EmulatorConfig {
        iam,
        events_queue_url: args.events_queue_url,
        listen: args.listen,
        region: args.region,
        account: args.account,
        instances: args.instances,
        default_profiles: !args.no_default_profiles,
        profile_limit: args.profile_limit,
        faults: Faults {
            throttle_rate: args.throttle_rate,
            throttle_burst: args.throttle_burst,
            error_rate: args.error_rate,
            latency_ms: args.latency_ms,
            hold_answers_ms: args.hold_answers_ms,
            read_lag_ms: args.read_lag_ms,
            lose_next_creates: args.lose_next_creates,
            lost_response_hold_ms: args.lost_response_hold_ms,
            denied_roles: Vec::new(),
        },
    };
    let emulator = Emulator::start(config.clone())
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    if let Some(path) = &args.addr_file {
        std::fs::write(path, emulator.addr.to_string())?;
    }
    println!("connect-emulator listening on {} (instances: {})", emulator.endpoint(), config.instances.join(", "));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}
