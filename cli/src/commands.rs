//! The commands.

use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant, SystemTime};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kms_decommission::cancel::step::CancelReport;
use kms_decommission::cancel::CancelRequest;
use kms_decommission::input::check_custom_key_store_id;
use kms_decommission::report::Report;
use kms_decommission::request::DecommissionRequest;
use kms_decommission::steps::approval::same_person;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::args::{
    CancelArgs, Cli, Command, Output, PlanArgs, RejectArgs, RunArgs, RunOptions, StartArgs,
    StoreArgs, TargetArgs, WatchArgs,
};
use crate::aws::{self, Aws, Execution};
use crate::error::CliError;
use crate::render;
use crate::status::{ListedRun, RunStatus};

/// Runs the command line's command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let sdk = aws::sdk_config(
        cli.profile.as_deref(),
        cli.region.as_deref(),
        cli.endpoint_url.as_deref(),
    )
    .await;
    if let Some(store) = store_argument(&cli.command) {
        check_custom_key_store_id(store).map_err(CliError::InvalidInput)?;
    }
    let stack = aws::stack(&sdk, &cli.stack_name).await?;
    let aws = Aws::new(sdk, stack);
    let out = cli.output;
    match cli.command {
        Command::Plan(args) => plan(&aws, out, args).await,
        Command::Start(args) => start(&aws, out, args).await,
        Command::Status(args) => status(&aws, out, args).await,
        Command::Watch(args) => watch(&aws, out, args).await,
        Command::Approve(args) => approve(&aws, out, args).await,
        Command::Reject(args) => reject(&aws, out, args).await,
        Command::Cancel(args) => cancel(&aws, out, args).await,
        Command::List => list(&aws, out).await,
        Command::Report(args) => report(&aws, out, args).await,
    }
}

fn store_argument(command: &Command) -> Option<&str> {
    match command {
        Command::Plan(a) => Some(&a.store),
        Command::Start(a) => Some(&a.store),
        Command::Approve(a) => Some(&a.store),
        Command::Reject(a) => Some(&a.store),
        Command::Cancel(a) => Some(&a.store),
        _ => None,
    }
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
pub fn emit(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

fn print_json(value: &impl Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|err| CliError::Io(format!("cannot write JSON: {err}")))?;
    emit(&format!("{text}\n"));
    Ok(())
}

/// Progress notes: stdout for text, stderr with JSON (stdout holds only the document).
fn say(out: Output, text: &str) {
    if out == Output::Text {
        emit(text);
    } else {
        let _ = std::io::stderr().write_all(text.as_bytes());
    }
}

/// An execution name: `<prefix><store>-<UTC time>`, unique per store and second.
fn execution_name(prefix: &str, store: &str) -> String {
    let now = aws_sdk_sfn::primitives::DateTime::from(SystemTime::now());
    let now = aws_sdk_sfn::primitives::DateTime::from_secs(now.secs());
    let stamp: String = aws::rfc3339(&now)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    format!("{prefix}{store}-{stamp}")
}

fn insert(input: &mut Map<String, Value>, field: &str, value: Option<Value>) {
    if let Some(value) = value {
        input.insert(field.to_owned(), value);
    }
}

fn common_input(store: &str, caller: &str, options: &RunOptions) -> Map<String, Value> {
    let mut input = Map::new();
    input.insert("CustomKeyStoreId".into(), json!(store));
    input.insert("RequestedBy".into(), json!(caller));
    insert(
        &mut input,
        "MinDaysSinceLastUse",
        options.min_days_since_last_use.map(|d| json!(d)),
    );
    insert(
        &mut input,
        "TicketId",
        options.ticket_id.as_ref().map(|t| json!(t)),
    );
    insert(
        &mut input,
        "Reason",
        options.reason.as_ref().map(|r| json!(r)),
    );
    insert(
        &mut input,
        "PendingWindowInDays",
        options.pending_window_days.map(|d| json!(d)),
    );
    insert(
        &mut input,
        "QuarantineDays",
        options.quarantine_days.map(|d| json!(d)),
    );
    input
}

/// Runs the dry run; its report.
async fn dry_run(
    aws: &Aws,
    out: Output,
    store: &str,
    caller: &str,
    options: &RunOptions,
    timeout: u64,
) -> Result<(Report, String), CliError> {
    let mut input = common_input(store, caller, options);
    input.insert("DryRun".into(), json!(true));
    let input = Value::Object(input);
    DecommissionRequest::from_input(&input)?;
    let name = execution_name("dryrun-", store);
    let arn = aws
        .start(&aws.stack.decommission_arn, &name, &input)
        .await?;
    say(out, &format!("Planning (dry run {name})...\n"));
    let ended = aws.wait(&arn, Duration::from_secs(timeout)).await?;
    if let Some(failure) = ended.failure() {
        return Err(failure);
    }
    let report = read_report(&ended)?;
    Ok((report, arn))
}

fn read_report(execution: &Execution) -> Result<Report, CliError> {
    let output = execution.output.clone().ok_or_else(|| {
        CliError::UnexpectedResponse(format!("execution {} has no output", execution.arn))
    })?;
    serde_json::from_value(output).map_err(|err| {
        CliError::UnexpectedResponse(format!(
            "the output of {} is not a decommission report: {err}",
            execution.arn
        ))
    })
}

async fn plan(aws: &Aws, out: Output, args: PlanArgs) -> Result<(), CliError> {
    let caller = aws::caller_arn(&aws.sdk).await?;
    let (report, _) = dry_run(aws, out, &args.store, &caller, &args.options, args.timeout).await?;
    match out {
        Output::Json => print_json(&report),
        Output::Text => {
            emit(&render::report(&report));
            Ok(())
        }
    }
}

fn ask_name(store: &str, name_hint: &str) -> Result<String, CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::ConfirmationRequired);
    }
    eprint!(
        "This schedules the deletion of every key of {store}. Type the store's name ({name_hint}) to confirm: "
    );
    let _ = std::io::stderr().flush();
    let mut typed = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut typed)
        .map_err(|err| CliError::Io(format!("cannot read the confirmation: {err}")))?;
    Ok(typed.trim_end_matches(['\r', '\n']).to_owned())
}

/// What `start` prints with `--output json`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Started {
    execution: String,
    execution_name: String,
    custom_key_store_id: String,
    requested_by: String,
    plan: Report,
}

async fn start(aws: &Aws, out: Output, args: StartArgs) -> Result<(), CliError> {
    let caller = aws::caller_arn(&aws.sdk).await?;
    // Check the whole input before anything runs (the dry run checks the store itself).
    let mut input = common_input(&args.store, &caller, &args.options);
    if args.require_approval {
        input.insert("RequireApproval".into(), json!(true));
    }
    input.insert("DryRun".into(), json!(false));
    input.insert(
        "ConfirmCustomKeyStoreName".into(),
        json!(args.confirm.clone().unwrap_or_else(|| "-".into())),
    );
    DecommissionRequest::from_input(&Value::Object(input.clone()))?;
    if args.confirm.is_none() && !std::io::stdin().is_terminal() {
        return Err(CliError::ConfirmationRequired);
    }

    let (plan, _) = dry_run(aws, out, &args.store, &caller, &args.options, args.timeout).await?;
    if out == Output::Text {
        emit(&render::report(&plan));
    }
    let typed = match args.confirm {
        Some(name) => name,
        None => ask_name(&args.store, &plan.custom_key_store_name)?,
    };
    let request = DecommissionRequest::from_input(&Value::Object({
        let mut checked = input.clone();
        checked.insert("ConfirmCustomKeyStoreName".into(), json!(typed));
        checked
    }))?;
    if request
        .confirm_store_name(&plan.custom_key_store_name)
        .is_err()
    {
        return Err(CliError::ConfirmationMismatch {
            store_id: args.store,
            typed,
            actual: plan.custom_key_store_name,
        });
    }
    input.insert("ConfirmCustomKeyStoreName".into(), json!(typed));
    let name = execution_name("decom-", &args.store);
    let arn = aws
        .start(&aws.stack.decommission_arn, &name, &Value::Object(input))
        .await?;
    match out {
        Output::Json => print_json(&Started {
            execution: arn,
            execution_name: name,
            custom_key_store_id: args.store,
            requested_by: caller,
            plan,
        }),
        Output::Text => {
            emit(&format!(
                "Started {arn}\nFollow it with: kms-decommission watch {}\n",
                args.store
            ));
            Ok(())
        }
    }
}

/// The execution a target names: an execution ARN, or a store's running decommission (the lock
/// holder, else a running execution whose input names the store: one just started takes the lock
/// a moment later), else its latest one in the ledger.
async fn resolve(aws: &Aws, target: &str) -> Result<String, CliError> {
    if target.starts_with("arn:") {
        return Ok(target.to_owned());
    }
    check_custom_key_store_id(target).map_err(CliError::InvalidInput)?;
    if let Some(holder) = aws.ledger().lock_holder(target).await? {
        return Ok(holder.execution);
    }
    if let Some(running) = aws.running_decommission(target).await? {
        return Ok(running);
    }
    aws.runs(Some(target))
        .await?
        .pop()
        .map(|run| run.execution)
        .ok_or_else(|| CliError::RunNotFound(format!("the ledger has no decommission of {target}")))
}

async fn run_status(aws: &Aws, execution_arn: &str) -> Result<RunStatus, CliError> {
    let execution = aws.execution(execution_arn).await?;
    let (record, keys) = match execution.store_id() {
        Some(store) if !execution.dry_run() => (
            aws.ledger().run_record(&store, execution_arn).await?,
            aws.key_records(execution_arn).await?,
        ),
        _ => (None, Vec::new()),
    };
    Ok(RunStatus::build(
        &execution,
        record.as_ref(),
        &keys,
        SystemTime::now(),
    ))
}

async fn status(aws: &Aws, out: Output, args: TargetArgs) -> Result<(), CliError> {
    let Some(target) = args.target else {
        // Every run not yet ended.
        let mut statuses = Vec::new();
        for run in aws.runs(None).await? {
            if run.outcome.is_none() {
                let status = run_status(aws, &run.execution).await?;
                if status.status == "RUNNING" {
                    statuses.push(status);
                }
            }
        }
        return match out {
            Output::Json => print_json(&statuses),
            Output::Text => {
                if statuses.is_empty() {
                    emit("No decommission is running.\n");
                }
                for status in &statuses {
                    emit(&format!("{}\n", render::status(status)));
                }
                Ok(())
            }
        };
    };
    let arn = resolve(aws, &target).await?;
    let status = run_status(aws, &arn).await?;
    match out {
        Output::Json => print_json(&status),
        Output::Text => {
            emit(&render::status(&status));
            Ok(())
        }
    }
}

async fn watch(aws: &Aws, out: Output, args: WatchArgs) -> Result<(), CliError> {
    let arn = resolve(aws, &args.target).await?;
    let interval = Duration::from_secs_f64(args.interval.clamp(0.2, 3600.0));
    let started = Instant::now();
    let live = out == Output::Text && std::io::stderr().is_terminal();
    let bar = if live {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed}] keys deleted {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Some(bar)
    } else {
        None
    };
    let mut last_line = String::new();
    let status = loop {
        let status = run_status(aws, &arn).await?;
        let text = render::status_line(&status);
        match &bar {
            Some(bar) => {
                bar.set_length(status.keys.scheduled);
                bar.set_position(status.keys.deleted);
                bar.set_message(text);
            }
            None => {
                // Plain lines on a non-terminal: one per change (the countdown alone is no change).
                let changed = text.split(" (").next() != last_line.split(" (").next();
                if changed {
                    eprintln!("{text}");
                    last_line = text;
                }
            }
        }
        if status.status != "RUNNING" {
            break status;
        }
        if args
            .timeout
            .is_some_and(|t| started.elapsed().as_secs_f64() > t)
        {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            return Err(CliError::NotFinished(format!(
                "execution {arn} still runs ({})",
                status.phase
            )));
        }
        tokio::time::sleep(interval).await;
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    match out {
        Output::Json => print_json(&status)?,
        Output::Text => emit(&render::status(&status)),
    }
    match status.status.as_str() {
        "SUCCEEDED" => Ok(()),
        _ => Err(status.failure()),
    }
}

/// The run of `store` waiting for approval: (execution, requester, token).
async fn waiting_run(aws: &Aws, store: &str) -> Result<(String, Option<String>, String), CliError> {
    let holder = aws.ledger().lock_holder(store).await?.ok_or_else(|| {
        CliError::NotWaitingForApproval(format!(
            "no decommission of {store} holds the store's lock (a run just started takes it \
             after its plan; one waiting for approval holds it)"
        ))
    })?;
    let run = aws
        .ledger()
        .run_record(store, &holder.execution)
        .await?
        .ok_or_else(|| {
            CliError::NotWaitingForApproval(format!(
                "the ledger has no record of {}",
                holder.execution
            ))
        })?;
    match (run.approval_state.as_deref(), run.approval_token) {
        (Some("Requested"), Some(token)) => Ok((run.execution, run.requested_by, token)),
        (state, _) => Err(CliError::NotWaitingForApproval(format!(
            "decommission {} of {store} is not waiting for approval (approval state: {})",
            holder.execution,
            state.unwrap_or("none")
        ))),
    }
}

/// What `approve` and `reject` print with `--output json`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Answered {
    execution: String,
    custom_key_store_id: String,
    answer: &'static str,
    by: String,
}

async fn approve(aws: &Aws, out: Output, args: StoreArgs) -> Result<(), CliError> {
    let caller = aws::caller_arn(&aws.sdk).await?;
    let (execution, requester, token) = waiting_run(aws, &args.store).await?;
    if same_person(requester.as_deref(), &caller) {
        return Err(CliError::ApprovalBySameRequester {
            store_id: args.store,
            approver: caller,
        });
    }
    aws.approve(&token, &json!({"ApprovedBy": caller})).await?;
    answered(out, execution, args.store, "Approved", caller)
}

async fn reject(aws: &Aws, out: Output, args: RejectArgs) -> Result<(), CliError> {
    let caller = aws::caller_arn(&aws.sdk).await?;
    let (execution, _, token) = waiting_run(aws, &args.store).await?;
    let cause = match &args.reason {
        Some(reason) => format!("rejected by {caller}: {reason}"),
        None => format!("rejected by {caller}"),
    };
    aws.reject(&token, "ApprovalRejected", &cause).await?;
    answered(out, execution, args.store, "Rejected", caller)
}

fn answered(
    out: Output,
    execution: String,
    store: String,
    answer: &'static str,
    by: String,
) -> Result<(), CliError> {
    match out {
        Output::Json => print_json(&Answered {
            execution,
            custom_key_store_id: store,
            answer,
            by,
        }),
        Output::Text => {
            emit(&format!("{answer} {execution} as {by}\n"));
            Ok(())
        }
    }
}

async fn cancel(aws: &Aws, out: Output, args: CancelArgs) -> Result<(), CliError> {
    let caller = aws::caller_arn(&aws.sdk).await?;
    let holder = aws
        .ledger()
        .lock_holder(&args.store)
        .await?
        .ok_or_else(|| {
            CliError::RunNotFound(format!(
                "no decommission of {} holds the store's lock: nothing to cancel",
                args.store
            ))
        })?;
    let mut input = Map::new();
    input.insert("CustomKeyStoreId".into(), json!(args.store));
    input.insert("DecommissionExecutionArn".into(), json!(holder.execution));
    input.insert("RequestedBy".into(), json!(caller));
    insert(
        &mut input,
        "TicketId",
        args.ticket_id.as_ref().map(|t| json!(t)),
    );
    insert(&mut input, "Reason", args.reason.as_ref().map(|r| json!(r)));
    let input = Value::Object(input);
    CancelRequest::from_input(&input)?;
    let name = execution_name("cancel-", &args.store);
    let arn = aws.start(&aws.stack.cancel_arn, &name, &input).await?;
    if args.no_wait {
        return match out {
            Output::Json => print_json(&json!({"Execution": arn, "Cancels": holder.execution})),
            Output::Text => {
                emit(&format!("Cancel started: {arn}\n"));
                Ok(())
            }
        };
    }
    say(
        out,
        &format!("Cancelling {} ({name})...\n", holder.execution),
    );
    let ended = aws.wait(&arn, Duration::from_secs(args.timeout)).await?;
    if let Some(failure) = ended.failure() {
        return Err(failure);
    }
    print_output(out, &ended)
}

fn print_output(out: Output, execution: &Execution) -> Result<(), CliError> {
    let output = execution.output.clone().unwrap_or(Value::Null);
    if out == Output::Json {
        return print_json(&output);
    }
    if let Ok(report) = serde_json::from_value::<Report>(output.clone()) {
        emit(&render::report(&report));
    } else if let Ok(report) = serde_json::from_value::<CancelReport>(output.clone()) {
        emit(&render::cancel_report(&report));
    } else {
        print_json(&output)?;
    }
    Ok(())
}

async fn list(aws: &Aws, out: Output) -> Result<(), CliError> {
    let mut listed = Vec::new();
    for run in aws.runs(None).await? {
        let holds_lock = match run.outcome {
            Some(_) => false,
            None => aws
                .ledger()
                .lock_holder(&run.store_id)
                .await?
                .is_some_and(|h| h.execution == run.execution),
        };
        let status = match run.outcome {
            Some(_) => None,
            None => Some(aws.execution(&run.execution).await?.status),
        };
        listed.push(ListedRun::new(&run, status.as_deref(), holds_lock));
    }
    match out {
        Output::Json => print_json(&listed),
        Output::Text => {
            emit(&render::runs(&listed));
            Ok(())
        }
    }
}

async fn report(aws: &Aws, out: Output, args: RunArgs) -> Result<(), CliError> {
    let arn = resolve(aws, &args.run).await?;
    let execution = aws.execution(&arn).await?;
    if execution.is_running() {
        return Err(CliError::NotFinished(format!(
            "execution {arn} is still running ({}); its report comes when it ends",
            execution.state.as_deref().unwrap_or("starting")
        )));
    }
    if execution.failure().is_some() {
        let status = run_status(aws, &arn).await?;
        if out == Output::Text {
            emit(&render::status(&status));
        }
        return Err(status.failure());
    }
    print_output(out, &execution)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_options_make_an_input_the_workflow_accepts() {
        let options = RunOptions {
            pending_window_days: Some(7),
            quarantine_days: Some(0),
            min_days_since_last_use: Some(30),
            ticket_id: Some("CHG-1".into()),
            reason: Some("retire".into()),
        };
        let mut input = common_input("cks-1234567890abcdef0", "arn:aws:iam::1:user/a", &options);
        input.insert("DryRun".into(), json!(true));
        let input = Value::Object(input);
        assert!(DecommissionRequest::from_input(&input).is_ok(), "{input}");
        assert_eq!(input["PendingWindowInDays"], 7);
        assert_eq!(input["RequestedBy"], "arn:aws:iam::1:user/a");

        let too_short = RunOptions {
            pending_window_days: Some(3),
            ..RunOptions::default()
        };
        let input = Value::Object(common_input("cks-1234567890abcdef0", "a", &too_short));
        let refused: CliError = DecommissionRequest::from_input(&input).unwrap_err().into();
        assert_eq!(refused.name(), "InvalidInput");
        assert_eq!(refused.exit_code(), crate::error::EXIT_USAGE);
    }

    #[test]
    fn execution_names_carry_the_store_and_the_second() {
        let name = execution_name("decom-", "cks-1234567890abcdef0");
        assert!(name.starts_with("decom-cks-1234567890abcdef0-"), "{name}");
        assert!(kms_decommission::sfn::naming::is_valid_execution_name(
            &name
        ));
        assert_eq!(
            name.len(),
            "decom-cks-1234567890abcdef0-".len() + "20261130T123456Z".len()
        );
    }
}
