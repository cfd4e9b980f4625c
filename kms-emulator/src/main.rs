//! `kms-emulator`: the emulator as a server process.

use clap::Parser;
use kms_emulator::EmulatorConfig;

/// A local AWS KMS emulator with faithful custom key store semantics.
#[derive(Debug, Parser)]
#[command(name = "kms-emulator", version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "KMS_EMULATOR_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "KMS_EMULATOR_PORT", default_value_t = 4599)]
    port: u16,
    /// Wall seconds one emulated day lasts (86400 = real time).
    #[arg(long, env = "KMS_EMULATOR_DAY_SECONDS", default_value_t = 86_400.0)]
    day_seconds: f64,
    /// Emulated hours between DeletionDate and the real deletion of a key (KMS: up to 24).
    #[arg(long, env = "KMS_EMULATOR_DELETION_LAG_HOURS", default_value_t = 6.0)]
    deletion_lag_hours: f64,
    /// Emulated minutes a CloudHSM key store stays CONNECTING (KMS: up to 20).
    #[arg(
        long,
        env = "KMS_EMULATOR_CLOUDHSM_CONNECT_MINUTES",
        default_value_t = 20.0
    )]
    cloudhsm_connect_minutes: f64,
    /// Emulated minutes an external key store stays CONNECTING (KMS: about 5).
    #[arg(long, env = "KMS_EMULATOR_XKS_CONNECT_MINUTES", default_value_t = 5.0)]
    xks_connect_minutes: f64,
    /// Emulated minutes a key store stays DISCONNECTING (KMS: about 5).
    #[arg(long, env = "KMS_EMULATOR_DISCONNECT_MINUTES", default_value_t = 5.0)]
    disconnect_minutes: f64,
    /// Turn the per-operation request quotas off.
    #[arg(long, env = "KMS_EMULATOR_NO_QUOTAS")]
    no_quotas: bool,
    /// Milliseconds of latency added to every KMS call.
    #[arg(long, env = "KMS_EMULATOR_LATENCY_MS", default_value_t = 0)]
    latency_ms: u64,
    /// AWS account id in ARNs.
    #[arg(long, env = "KMS_EMULATOR_ACCOUNT_ID", default_value = "123456789012")]
    account_id: String,
    /// AWS Region in ARNs.
    #[arg(long, env = "KMS_EMULATOR_REGION", default_value = "us-east-1")]
    region: String,
    /// AWS managed keys seeded at start and after reset.
    #[arg(long, env = "KMS_EMULATOR_AWS_MANAGED_KEYS", default_value_t = 3)]
    aws_managed_keys: usize,
    /// Epoch seconds from which GetKeyLastUsage tracks use (default: every key since creation).
    #[arg(long, env = "KMS_EMULATOR_TRACKING_START_DATE")]
    tracking_start_date: Option<f64>,
    /// Emulated seconds before a call's CloudTrail record is visible to LookupEvents (real
    /// CloudTrail: about 5 minutes on average).
    #[arg(
        long,
        env = "KMS_EMULATOR_CLOUDTRAIL_DELIVERY_DELAY",
        default_value_t = 0.0
    )]
    cloudtrail_delivery_delay: f64,
    /// Emulated days CloudTrail's event history keeps a record (CloudTrail: 90).
    #[arg(
        long,
        env = "KMS_EMULATOR_CLOUDTRAIL_RETENTION_DAYS",
        default_value_t = kms_emulator::cloudtrail::RETENTION_DAYS
    )]
    cloudtrail_retention_days: f64,
    /// A caller identity for CloudTrail, ACCESS_KEY_ID=PRINCIPAL_ARN (repeatable; the variable
    /// takes a comma-separated list), e.g.
    /// AKIAPAYMENTS=arn:aws:iam::111122223333:user/payments-app.
    #[arg(
        long = "identity",
        env = "KMS_EMULATOR_IDENTITIES",
        value_delimiter = ',',
        value_parser = parse_identity
    )]
    identities: Vec<(String, String)>,
}

fn parse_identity(s: &str) -> Result<(String, String), String> {
    let (key, arn) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not ACCESS_KEY_ID=PRINCIPAL_ARN"))?;
    Ok((key.trim().to_string(), arn.trim().to_string()))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = EmulatorConfig {
        day_seconds: args.day_seconds,
        deletion_lag_hours: args.deletion_lag_hours,
        cloudhsm_connect_minutes: args.cloudhsm_connect_minutes,
        xks_connect_minutes: args.xks_connect_minutes,
        disconnect_minutes: args.disconnect_minutes,
        quotas: !args.no_quotas,
        latency_ms: args.latency_ms,
        account_id: args.account_id,
        region: args.region,
        aws_managed_keys: args.aws_managed_keys,
        tracking_start_date: args.tracking_start_date,
        cloudtrail_delivery_delay: args.cloudtrail_delivery_delay,
        cloudtrail_retention_days: args.cloudtrail_retention_days,
        identities: args.identities.into_iter().collect(),
    };
    if let Err(e) = config.validate() {
        eprintln!("kms-emulator: invalid settings: {e}");
        return std::process::ExitCode::from(2);
    }
    let listener = match tokio::net::TcpListener::bind((args.host.as_str(), args.port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "kms-emulator: cannot listen on {}:{}: {e}",
                args.host, args.port
            );
            return std::process::ExitCode::from(1);
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("kms-emulator: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    println!("kms-emulator listening on http://{addr}");
    match kms_emulator::serve_until(listener, config, shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kms-emulator: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
