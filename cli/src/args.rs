//! The command line's arguments.

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::EXIT_CODES_HELP;

/// The stack name used when neither `--stack-name` nor `KMS_DECOMMISSION_STACK` names one.
pub const DEFAULT_STACK_NAME: &str = "kms-decommission";

/// Decommission AWS KMS custom key stores with the kms-decommission stack: plan, start, watch,
/// approve, cancel and report runs. Credentials, profiles, Regions and endpoints are found as the
/// AWS CLI finds them.
#[derive(Debug, Parser)]
#[command(name = "kms-decommission", version, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// Named profile from your AWS config (as the AWS CLI's --profile; else AWS_PROFILE).
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// AWS Region (else AWS_REGION or the profile's Region).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// Endpoint for every AWS call, e.g. the local stack's http://127.0.0.1:4566 (else
    /// AWS_ENDPOINT_URL).
    #[arg(long, global = true)]
    pub endpoint_url: Option<String>,
    /// CloudFormation stack whose outputs name the state machines and the ledger.
    #[arg(long, global = true, env = "KMS_DECOMMISSION_STACK", default_value = DEFAULT_STACK_NAME)]
    pub stack_name: String,
    /// Output format: readable text, or JSON for scripts (stable field names, README).
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Tables and sentences.
    Text,
    /// One JSON document on stdout (errors too).
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Dry run: the store, its keys by state, the last-use verdict and what KMS leaves behind.
    /// Changes nothing.
    Plan(PlanArgs),
    /// Show the plan, ask for the store's name, then start the decommission.
    Start(StartArgs),
    /// Where a run stands: phase, keys, latest DeletionDate, approval and quarantine.
    Status(TargetArgs),
    /// Follow a run until it ends (Ctrl-C stops watching, not the run).
    Watch(WatchArgs),
    /// Approve the run of STORE that waits for a second person's approval.
    Approve(StoreArgs),
    /// Reject the run of STORE that waits for approval; it ends having changed nothing.
    Reject(RejectArgs),
    /// Cancel the running decommission of STORE: stop it and restore the keys it scheduled.
    Cancel(CancelArgs),
    /// Every decommission of the stack (from the run ledger) and its phase.
    List,
    /// The final report of a run (execution ARN, or store id for its latest run).
    Report(RunArgs),
}

/// Options the dry run and the real run share (the plan shows what the run would do with them).
#[derive(Debug, Clone, Default, Args)]
pub struct RunOptions {
    /// KMS waiting period before deletion, 7-30 days (default 30).
    #[arg(long, value_name = "DAYS")]
    pub pending_window_days: Option<i64>,
    /// Days the store stays disconnected, watched, before any key is scheduled (0-90; default
    /// the stack's DefaultQuarantineDays).
    #[arg(long, value_name = "DAYS")]
    pub quarantine_days: Option<u32>,
    /// Last-use guard: keys used more recently than this many days block the run (0: off).
    #[arg(long, value_name = "DAYS")]
    pub min_days_since_last_use: Option<u32>,
    /// Change ticket, recorded in the ledger and tagged on each key.
    #[arg(long)]
    pub ticket_id: Option<String>,
    /// Why, recorded in the ledger and the report.
    #[arg(long)]
    pub reason: Option<String>,
}

/// `plan STORE`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The custom key store id (cks-...).
    pub store: String,
    /// Common options.
    #[command(flatten)]
    pub options: RunOptions,
    /// Longest wait for the dry run, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

/// `start STORE`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// The custom key store id (cks-...).
    pub store: String,
    /// The store's exact name, for scripts (else it is asked for at the terminal).
    #[arg(long, value_name = "NAME")]
    pub confirm: Option<String>,
    /// Wait for a second person's approval even where the stack does not require it.
    #[arg(long)]
    pub require_approval: bool,
    /// Common options.
    #[command(flatten)]
    pub options: RunOptions,
    /// Longest wait for the plan's dry run, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

/// `status [STORE|RUN]`.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// A store id (its running or latest decommission) or an execution ARN; none: every run not
    /// yet ended.
    pub target: Option<String>,
}

/// `watch STORE|RUN`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// A store id (its running or latest decommission) or an execution ARN.
    pub target: String,
    /// Seconds between polls.
    #[arg(long, default_value_t = 5.0)]
    pub interval: f64,
    /// Stop watching after this many seconds (exit 5 if the run still runs).
    #[arg(long)]
    pub timeout: Option<f64>,
}

/// A store.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The custom key store id (cks-...).
    pub store: String,
}

/// `reject STORE`.
#[derive(Debug, Args)]
pub struct RejectArgs {
    /// The custom key store id (cks-...).
    pub store: String,
    /// Why, recorded as the run's cause.
    #[arg(long)]
    pub reason: Option<String>,
}

/// `cancel STORE`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The custom key store id (cks-...).
    pub store: String,
    /// Change ticket.
    #[arg(long)]
    pub ticket_id: Option<String>,
    /// Why.
    #[arg(long)]
    pub reason: Option<String>,
    /// Return once the cancel has started instead of waiting for its report.
    #[arg(long)]
    pub no_wait: bool,
    /// Longest wait for the cancel, in seconds.
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
}

/// `report RUN`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// An execution ARN, or a store id for its latest run.
    pub run: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kms-decommission").chain(args.iter().copied()))
    }

    #[test]
    fn global_flags_go_anywhere_and_default_as_documented() {
        let cli = parse(&[
            "status",
            "cks-1",
            "--output",
            "json",
            "--region",
            "eu-west-1",
        ])
        .unwrap();
        assert_eq!(cli.output, Output::Json);
        assert_eq!(cli.region.as_deref(), Some("eu-west-1"));
        assert!(
            cli.stack_name == DEFAULT_STACK_NAME || std::env::var("KMS_DECOMMISSION_STACK").is_ok()
        );
        let cli = parse(&[
            "--endpoint-url",
            "http://127.0.0.1:4566",
            "list",
            "-o",
            "text",
        ])
        .unwrap();
        assert_eq!(cli.endpoint_url.as_deref(), Some("http://127.0.0.1:4566"));
        assert!(matches!(cli.command, Command::List));
    }

    #[test]
    fn start_takes_its_run_options() {
        let cli = parse(&[
            "start",
            "cks-1234567890abcdef0",
            "--confirm",
            "Store A",
            "--pending-window-days",
            "7",
            "--quarantine-days",
            "0",
            "--min-days-since-last-use",
            "0",
            "--ticket-id",
            "CHG-1",
            "--require-approval",
        ])
        .unwrap();
        let Command::Start(start) = cli.command else {
            panic!("not start")
        };
        assert_eq!(start.confirm.as_deref(), Some("Store A"));
        assert_eq!(start.options.pending_window_days, Some(7));
        assert_eq!(start.options.quarantine_days, Some(0));
        assert_eq!(start.options.min_days_since_last_use, Some(0));
        assert_eq!(start.options.ticket_id.as_deref(), Some("CHG-1"));
        assert!(start.require_approval);
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        for args in [
            &["start"][..],
            &["watch"][..],
            &["plan", "cks-1", "--min-days-since-last-use", "-1"][..],
            &["list", "--output", "yaml"][..],
            &["frobnicate"][..],
        ] {
            let error = parse(args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}");
        }
    }
}
