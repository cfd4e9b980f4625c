//! Starting, finding and stopping executions so that at most one decommission of a store runs.
//!
//! Three guards, strongest first:
//! 1. deterministic names: a duplicate request derives the same name and input, and Step
//!    Functions' `StartExecution` returns the running execution instead of starting another
//!    (a closed one answers `ExecutionAlreadyExists`, which is reported, never retried blindly);
//! 2. before starting, `ListExecutions(RUNNING)` and the input of each running execution: a
//!    running real decommission (or cancel) of the same store refuses the start;
//! 3. after starting a real decommission, the same check again: when two requests with
//!    different names raced past guard 2, the later-started execution stops itself before it
//!    has changed anything (the workflow's first steps only read).
//!
//! `ListExecutions` is eventually consistent, so guards 2-3 narrow the window of a race between
//! two *different* requests for one store (say, a ticket and a tag in the same second) to that
//! consistency delay; duplicates of one request are covered by guard 1 absolutely.

use aws_sdk_sfn::types::ExecutionStatus;
use aws_smithy_types::DateTime;
use serde_json::Value;

use crate::arn::Arn;
use crate::aws_error::AwsCallError;
use crate::config::ConfigError;

pub mod naming;

/// Error name given to an execution stopped because another decommission of its store won.
pub const DUPLICATE_STOP_ERROR: &str = "DuplicateDecommission";

/// What to start: a deterministic name and the execution input.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRequest {
    /// Execution name (see [`naming`]).
    pub name: String,
    /// Execution input (a JSON object; must name `CustomKeyStoreId`).
    pub input: Value,
    /// The store the execution acts on.
    pub store_id: String,
    /// Dry run or real decommission.
    pub mode: RunMode,
}

/// An execution as `DescribeExecution` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionInfo {
    /// Execution ARN.
    pub arn: String,
    /// Execution name.
    pub name: String,
    /// The state machine it belongs to.
    pub state_machine_arn: String,
    /// RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, ...
    pub status: ExecutionStatus,
    /// When it started.
    pub start_date: DateTime,
    /// When it stopped, if it has.
    pub stop_date: Option<DateTime>,
    /// Its input, parsed (`None` when absent or not JSON).
    pub input: Option<Value>,
    /// Its output, parsed (`None` until it succeeds).
    pub output: Option<Value>,
    /// Error name of a failed or stopped execution.
    pub error: Option<String>,
    /// Cause of a failed or stopped execution.
    pub cause: Option<String>,
}

impl ExecutionInfo {
    /// True while the execution runs.
    pub fn is_running(&self) -> bool {
        self.status == ExecutionStatus::Running
    }

    /// The store its input names (`CustomKeyStoreId`).
    pub fn store_id(&self) -> Option<&str> {
        self.input.as_ref()?.get("CustomKeyStoreId")?.as_str()
    }

    /// Whether its input asks for a dry run. A missing or non-boolean `DryRun` counts as a real
    /// decommission, the conservative reading for exclusivity.
    pub fn mode(&self) -> RunMode {
        match self
            .input
            .as_ref()
            .and_then(|i| i.get("DryRun"))
            .and_then(Value::as_bool)
        {
            Some(true) => RunMode::DryRun,
            _ => RunMode::Decommission,
        }
    }
}

/// Where an execution stands in its history (see [`Executions::position`]).
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPosition {
    /// The state it last entered.
    pub state: String,
    /// The document it entered that state with (`None` when absent or not JSON).
    pub entered_with: Option<Value>,
    /// The parameters of the newest task that state scheduled (`None` when it scheduled none,
    /// or they are absent or not JSON).
    pub task_parameters: Option<Value>,
}

impl HistoryPosition {
    /// The position the events show: the newest `StateEntered` by id, whatever order the
    /// service lists them in, and the newest `TaskScheduled` after it.
    pub fn from_events(events: &[aws_sdk_sfn::types::HistoryEvent]) -> Option<Self> {
        let (entered_id, entered) = events
            .iter()
            .filter_map(|e| Some((e.id(), e.state_entered_event_details()?)))
            .max_by_key(|(id, _)| *id)?;
        let task_parameters = events
            .iter()
            .filter(|e| e.id() > entered_id)
            .filter_map(|e| Some((e.id(), e.task_scheduled_event_details()?)))
            .max_by_key(|(id, _)| *id)
            .and_then(|(_, scheduled)| serde_json::from_str(scheduled.parameters()).ok());
        Some(Self {
            state: entered.name().to_owned(),
            entered_with: entered.input().and_then(|i| serde_json::from_str(i).ok()),
            task_parameters,
        })
    }

    /// The task token the current task was scheduled with, where its parameters show it
    /// (`Payload.TaskToken`, the shape of a `lambda:invoke.waitForTaskToken` task).
    pub fn task_token(&self) -> Option<&str> {
        self.task_parameters
            .as_ref()?
            .get("Payload")?
            .get("TaskToken")?
            .as_str()
    }
}

/// How a start request ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StartOutcome {
    /// A new execution runs.
    Started {
        /// Its ARN.
        arn: String,
    },
    /// This very request (same name and input) is already running.
    AlreadyRunning(ExecutionInfo),
    /// Another decommission (or cancel) of the store is running; nothing was started.
    StoreBusy(ExecutionInfo),
    /// This request (same name and input) already ran and has finished.
    AlreadyFinished(ExecutionInfo),
    /// The name was used by an execution with a different input.
    NameTaken(ExecutionInfo),
}

impl StartOutcome {
    /// The outcome of asking again for `existing`'s name with `input`.
    pub fn from_existing(existing: ExecutionInfo, input: &Value) -> Self {
        if existing.input.as_ref() != Some(input) {
            Self::NameTaken(existing)
        } else if existing.is_running() {
            Self::AlreadyRunning(existing)
        } else {
            Self::AlreadyFinished(existing)
        }
    }
}

/// Step Functions operations of the triggers, bound to the decommission state machine (and,
/// when configured, the cancel state machine).
#[derive(Debug, Clone)]
pub struct Executions {
    sfn: aws_sdk_sfn::Client,
    state_machine_arn: String,
    cancel_state_machine_arn: Option<String>,
}

impl Executions {
    /// Binds `sfn` to the decommission state machine and, if any, the cancel state machine.
    pub fn new(
        sfn: aws_sdk_sfn::Client,
        state_machine_arn: impl Into<String>,
        cancel_state_machine_arn: Option<String>,
    ) -> Self {
        Self {
            sfn,
            state_machine_arn: state_machine_arn.into(),
            cancel_state_machine_arn,
        }
    }

    /// Binds a client from `sdk` to the state machines named by [`STATE_MACHINE_ENV`] (required)
    /// and [`CANCEL_STATE_MACHINE_ENV`] (optional), read through `var`.
    pub fn from_env(
        sdk: &aws_config::SdkConfig,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let machine = state_machine_arn_from_env(&var, STATE_MACHINE_ENV)?
            .ok_or(ConfigError::Missing(STATE_MACHINE_ENV))?;
        let cancel_machine = state_machine_arn_from_env(&var, CANCEL_STATE_MACHINE_ENV)?;
        Ok(Self::new(
            aws_sdk_sfn::Client::new(sdk),
            machine,
            cancel_machine,
        ))
    }

    /// The decommission state machine.
    pub fn state_machine_arn(&self) -> &str {
        &self.state_machine_arn
    }

    /// The cancel state machine, when configured.
    pub fn cancel_state_machine_arn(&self) -> Option<&str> {
        self.cancel_state_machine_arn.as_deref()
    }

    /// Answers a task token with success and `output` (an approval).
    pub async fn send_task_success(&self, token: &str, output: &Value) -> Result<(), AwsCallError> {
        self.sfn
            .send_task_success()
            .task_token(token)
            .output(output.to_string())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsCallError::new("states:SendTaskSuccess", e))
    }

    /// Answers a task token with failure `error` and `cause` (a rejection).
    pub async fn send_task_failure(
        &self,
        token: &str,
        error: &str,
        cause: &str,
    ) -> Result<(), AwsCallError> {
        self.sfn
            .send_task_failure()
            .task_token(token)
            .error(error)
            .cause(cause)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsCallError::new("states:SendTaskFailure", e))
    }

    /// Describes an execution; `None` when it does not exist.
    pub async fn describe(&self, arn: &str) -> Result<Option<ExecutionInfo>, AwsCallError> {
        let described = match self
            .sfn
            .describe_execution()
            .execution_arn(arn)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_execution_does_not_exist()) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(AwsCallError::new("states:DescribeExecution", e)),
        };
        let parse = |text: Option<&str>| text.and_then(|t| serde_json::from_str(t).ok());
        Ok(Some(ExecutionInfo {
            arn: described.execution_arn().to_owned(),
            name: described.name().map(str::to_owned).unwrap_or_else(|| {
                Arn::parse(arn)
                    .and_then(|a| a.execution_names())
                    .map_or_else(String::new, |(_, name)| name.to_owned())
            }),
            state_machine_arn: described.state_machine_arn().to_owned(),
            status: described.status().clone(),
            start_date: *described.start_date(),
            stop_date: described.stop_date().copied(),
            input: parse(described.input()),
            output: parse(described.output()),
            error: described.error().map(str::to_owned),
            cause: described.cause().map(str::to_owned),
        }))
    }

    /// Describes the execution called `name` of `state_machine_arn`; `None` when none exists.
    pub async fn describe_named(
        &self,
        state_machine_arn: &str,
        name: &str,
    ) -> Result<Option<ExecutionInfo>, AwsCallError> {
        match execution_arn(state_machine_arn, name) {
            Some(arn) => self.describe(&arn).await,
            None => Ok(None),
        }
    }

    /// Running executions of `state_machine_arn` whose input names `store_id`.
    pub async fn running_for_store(
        &self,
        state_machine_arn: &str,
        store_id: &str,
    ) -> Result<Vec<ExecutionInfo>, AwsCallError> {
        let mut found = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let page = self
                .sfn
                .list_executions()
                .state_machine_arn(state_machine_arn)
                .status_filter(ExecutionStatus::Running)
                .max_results(100)
                .set_next_token(next_token.take())
                .send()
                .await
                .map_err(|e| AwsCallError::new("states:ListExecutions", e))?;
            for item in page.executions() {
                if let Some(info) = self.describe(item.execution_arn()).await? {
                    if info.is_running() && info.store_id() == Some(store_id) {
                        found.push(info);
                    }
                }
            }
            match page.next_token() {
                Some(token) => next_token = Some(token.to_owned()),
                None => break,
            }
        }
        Ok(found)
    }

    /// Starts `request` on the decommission state machine unless it duplicates a running or
    /// finished execution or another decommission of the store runs (see the module docs).
    pub async fn start_exclusive(
        &self,
        request: &ExecutionRequest,
    ) -> Result<StartOutcome, AwsCallError> {
        let running = self
            .running_for_store(&self.state_machine_arn, &request.store_id)
            .await?;
        if let Some(same) = running.iter().find(|e| e.name == request.name) {
            return Ok(if same.input.as_ref() == Some(&request.input) {
                StartOutcome::AlreadyRunning(same.clone())
            } else {
                StartOutcome::NameTaken(same.clone())
            });
        }
        if let Some(real) = first_started(
            running
                .into_iter()
                .filter(|e| e.mode() == RunMode::Decommission),
        ) {
            return Ok(StartOutcome::StoreBusy(real));
        }
        if let Some(cancel) = &self.cancel_state_machine_arn {
            if let Some(c) = first_started(
                self.running_for_store(cancel, &request.store_id)
                    .await?
                    .into_iter(),
            ) {
                return Ok(StartOutcome::StoreBusy(c));
            }
        }
        let state_machine_arn = self.state_machine_arn.clone();
        let started = self
            .start(&state_machine_arn, &request.name, &request.input)
            .await?;
        let (arn, start_date) = match started {
            Started::New { arn, start_date } => (arn, start_date),
            Started::Existing(outcome) => return Ok(*outcome),
        };
        if request.mode == RunMode::DryRun {
            return Ok(StartOutcome::Started { arn });
        }
        self.settle(request, arn, start_date).await
    }

    /// Starts execution `name` of `state_machine_arn` unless one of that name exists (used for
    /// the cancel workflow, whose duplicates are caught by name, not by store).
    pub async fn start_named(
        &self,
        state_machine_arn: &str,
        name: &str,
        input: &Value,
    ) -> Result<StartOutcome, AwsCallError> {
        if let Some(existing) = self.describe_named(state_machine_arn, name).await? {
            return Ok(StartOutcome::from_existing(existing, input));
        }
        match self.start(state_machine_arn, name, input).await? {
            Started::New { arn, .. } => Ok(StartOutcome::Started { arn }),
            Started::Existing(outcome) => Ok(*outcome),
        }
    }

    /// Stops a running execution with an error name and cause.
    pub async fn stop(&self, arn: &str, error: &str, cause: &str) -> Result<(), AwsCallError> {
        self.sfn
            .stop_execution()
            .execution_arn(arn)
            .error(error)
            .cause(cause)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsCallError::new("states:StopExecution", e))
    }

    /// The state a running execution is in and the state document it entered it with (the
    /// latest `StateEntered` event of its history).
    pub async fn current_state(
        &self,
        arn: &str,
    ) -> Result<Option<(String, Option<Value>)>, AwsCallError> {
        Ok(self
            .position(arn)
            .await?
            .map(|position| (position.state, position.entered_with)))
    }

    /// Where a running execution stands, as its history (written by Step Functions alone)
    /// shows it: the state it last entered, the document it entered it with, and the
    /// parameters of the task that state scheduled last (one per attempt), if any.
    pub async fn position(&self, arn: &str) -> Result<Option<HistoryPosition>, AwsCallError> {
        let history = self
            .sfn
            .get_execution_history()
            .execution_arn(arn)
            .reverse_order(true)
            .include_execution_data(true)
            .max_results(100)
            .send()
            .await
            .map_err(|e| AwsCallError::new("states:GetExecutionHistory", e))?;
        Ok(HistoryPosition::from_events(history.events()))
    }
    async fn start(
        &self,
        state_machine_arn: &str,
        name: &str,
        input: &Value,
    ) -> Result<Started, AwsCallError> {
        let started = self
            .sfn
            .start_execution()
            .state_machine_arn(state_machine_arn)
            .name(name)
            .input(input.to_string())
            .send()
            .await;
        match started {
            Ok(out) => Ok(Started::New {
                arn: out.execution_arn().to_owned(),
                start_date: *out.start_date(),
            }),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_execution_already_exists()) =>
            {
                let existing = self.describe_named(state_machine_arn, name).await?;
                let Some(existing) = existing else {
                    return Err(AwsCallError::new("states:StartExecution", e));
                };
                Ok(Started::Existing(Box::new(StartOutcome::from_existing(
                    existing, input,
                ))))
            }
            Err(e) => Err(AwsCallError::new("states:StartExecution", e)),
        }
    }

    /// Guard 3: among the running real decommissions of the store, the earliest started wins;
    /// if that is not ours, ours is stopped before it changes anything.
    async fn settle(
        &self,
        request: &ExecutionRequest,
        arn: String,
        start_date: DateTime,
    ) -> Result<StartOutcome, AwsCallError> {
        let running = self
            .running_for_store(&self.state_machine_arn, &request.store_id)
            .await?;
        let winner = first_started(
            running
                .into_iter()
                .filter(|e| e.mode() == RunMode::Decommission && e.arn != arn)
                .filter(|e| (e.start_date.as_nanos(), &e.arn) < (start_date.as_nanos(), &arn)),
        );
        match winner {
            None => Ok(StartOutcome::Started { arn }),
            Some(winner) => {
                let cause = format!(
                    "{} was already decommissioning store {}; this duplicate stopped before changing anything",
                    winner.arn, request.store_id
                );
                self.stop(&arn, DUPLICATE_STOP_ERROR, &cause).await?;
                Ok(StartOutcome::StoreBusy(winner))
            }
        }
    }
}

enum Started {
    New { arn: String, start_date: DateTime },
    Existing(Box<StartOutcome>),
}

fn first_started(executions: impl Iterator<Item = ExecutionInfo>) -> Option<ExecutionInfo> {
    executions
        .min_by(|a, b| (a.start_date.as_nanos(), &a.arn).cmp(&(b.start_date.as_nanos(), &b.arn)))
}

/// The ARN of execution `name` of a state machine:
/// `arn:<partition>:states:<region>:<account>:stateMachine:<sm>` ->
/// `arn:<partition>:states:<region>:<account>:execution:<sm>:<name>`.
pub fn execution_arn(state_machine_arn: &str, name: &str) -> Option<String> {
    Arn::parse(state_machine_arn)?.execution_of(name)
}

/// Environment variable holding the decommission state machine's ARN.
pub const STATE_MACHINE_ENV: &str = "STATE_MACHINE_ARN";
/// Environment variable holding the cancel state machine's ARN (optional).
pub const CANCEL_STATE_MACHINE_ENV: &str = "CANCEL_STATE_MACHINE_ARN";

/// What an execution does: plan only, or really decommission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunMode {
    /// Plan only; changes nothing (`DryRun: true`).
    DryRun,
    /// Schedule key deletion and delete the store (`DryRun: false`).
    Decommission,
}

impl RunMode {
    /// The mode an execution input's `DryRun` flag selects.
    pub fn from_dry_run(dry_run: bool) -> Self {
        if dry_run {
            Self::DryRun
        } else {
            Self::Decommission
        }
    }
}

/// Reads a state machine ARN from `variable`: it must look like
/// `arn:<partition>:states:<region>:<account>:stateMachine:<name>`.
pub fn state_machine_arn_from_env(
    var: impl Fn(&str) -> Option<String>,
    variable: &'static str,
) -> Result<Option<String>, ConfigError> {
    let Some(value) = var(variable)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
    else {
        return Ok(None);
    };
    if execution_arn(&value, "probe").is_none() {
        return Err(ConfigError::Invalid {
            variable,
            reason: format!("{value:?} is not a state machine ARN"),
        });
    }
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::fakes::{FakeSfn, MACHINE};
    use aws_sdk_sfn::types::{
        HistoryEvent, HistoryEventType, StateEnteredEventDetails, TaskScheduledEventDetails,
    };
    use serde_json::json;

    const STORE: &str = "cks-1234567890abcdef0";

    fn event(id: i64, kind: HistoryEventType) -> aws_sdk_sfn::types::builders::HistoryEventBuilder {
        HistoryEvent::builder()
            .timestamp(DateTime::from_secs(1_800_000_000 + id))
            .id(id)
            .r#type(kind)
    }

    fn entered(id: i64, name: &str, input: &str) -> HistoryEvent {
        event(id, HistoryEventType::TaskStateEntered)
            .state_entered_event_details(
                StateEnteredEventDetails::builder()
                    .name(name)
                    .input(input)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    fn scheduled(id: i64, parameters: &str) -> HistoryEvent {
        event(id, HistoryEventType::TaskScheduled)
            .task_scheduled_event_details(
                TaskScheduledEventDetails::builder()
                    .resource_type("lambda")
                    .resource("invoke.waitForTaskToken")
                    .region("us-east-1")
                    .parameters(parameters)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    #[test]
    fn the_position_is_the_newest_state_entered_and_its_newest_scheduled_task() {
        let lambda = |token: &str| {
            json!({"FunctionName": "f", "Payload": {"Document": {}, "TaskToken": token}})
                .to_string()
        };
        // Newest first, as reverse_order lists them: a retried task (two attempts) of the
        // state entered last; an older state with its own task before it.
        let events = [
            scheduled(9, &lambda("attempt-2")),
            scheduled(7, &lambda("attempt-1")),
            entered(6, "WaitForApproval", r#"{"Plan": {"Done": true}}"#),
            scheduled(4, &lambda("older-state")),
            entered(3, "PlanDecommission", "{}"),
        ];
        let position = HistoryPosition::from_events(&events).unwrap();
        assert_eq!(position.state, "WaitForApproval");
        assert_eq!(position.entered_with, Some(json!({"Plan": {"Done": true}})));
        assert_eq!(position.task_token(), Some("attempt-2"));

        // A state that scheduled no task yet shows none, not the previous state's.
        let position = HistoryPosition::from_events(&events[2..]).unwrap();
        assert_eq!(position.task_token(), None);
        // Parameters in another shape show no token; no state entered, no position.
        let other = [
            scheduled(5, r#"{"Entries": []}"#),
            entered(4, "W", "not json"),
        ];
        let position = HistoryPosition::from_events(&other).unwrap();
        assert_eq!(
            (position.task_token(), position.entered_with.clone()),
            (None, None)
        );
        assert_eq!(HistoryPosition::from_events(&[]), None);
    }

    #[tokio::test]
    async fn a_decommission_that_raced_past_a_stale_listing_stops_itself() {
        let sfn = FakeSfn::default();
        let input =
            |ticket: &str| json!({"CustomKeyStoreId": STORE, "DryRun": false, "TicketId": ticket});
        let earlier = sfn.insert(
            MACHINE,
            "decom-CHG-A",
            &input("CHG-A").to_string(),
            ExecutionStatus::Running,
        );
        *sfn.stale_listings.lock().unwrap() = 1;
        let executions = Executions::new(sfn.client(), MACHINE, None);
        let request = ExecutionRequest {
            name: "decom-CHG-B".into(),
            input: input("CHG-B"),
            store_id: STORE.into(),
            mode: RunMode::Decommission,
        };
        let outcome = executions.start_exclusive(&request).await.unwrap();
        assert!(
            matches!(&outcome, StartOutcome::StoreBusy(winner) if winner.arn == earlier),
            "{outcome:?}"
        );
        let late = sfn.get("decom-CHG-B").unwrap();
        assert_eq!(late.status, ExecutionStatus::Aborted);
        assert_eq!(late.stop_error.as_deref(), Some(DUPLICATE_STOP_ERROR));
        assert_eq!(
            sfn.get("decom-CHG-A").unwrap().status,
            ExecutionStatus::Running
        );
    }

    #[tokio::test]
    async fn a_dry_run_is_not_settled_against_other_dry_runs() {
        let sfn = FakeSfn::default();
        let dry =
            |ticket: &str| json!({"CustomKeyStoreId": STORE, "DryRun": true, "TicketId": ticket});
        sfn.insert(
            MACHINE,
            "dryrun-CHG-A",
            &dry("CHG-A").to_string(),
            ExecutionStatus::Running,
        );
        let executions = Executions::new(sfn.client(), MACHINE, None);
        let request = ExecutionRequest {
            name: "dryrun-CHG-B".into(),
            input: dry("CHG-B"),
            store_id: STORE.into(),
            mode: RunMode::DryRun,
        };
        assert!(matches!(
            executions.start_exclusive(&request).await.unwrap(),
            StartOutcome::Started { .. }
        ));
        assert_eq!(sfn.count(Some("StopExecution")), 0);
    }

    #[test]
    fn an_input_without_dry_run_counts_as_a_real_decommission() {
        let info = |input: Value| ExecutionInfo {
            arn: "a".into(),
            name: "n".into(),
            state_machine_arn: "m".into(),
            status: ExecutionStatus::Running,
            start_date: DateTime::from_secs(0),
            stop_date: None,
            input: Some(input),
            output: None,
            error: None,
            cause: None,
        };
        assert_eq!(
            info(json!({"CustomKeyStoreId": STORE})).mode(),
            RunMode::Decommission
        );
        assert_eq!(
            info(json!({"CustomKeyStoreId": STORE, "DryRun": "yes"})).mode(),
            RunMode::Decommission
        );
        assert_eq!(
            info(json!({"CustomKeyStoreId": STORE, "DryRun": true})).mode(),
            RunMode::DryRun
        );
        assert_eq!(
            info(json!({"CustomKeyStoreId": STORE})).store_id(),
            Some(STORE)
        );
    }

    #[test]
    fn execution_arns_are_derived_from_the_state_machine() {
        assert_eq!(
            execution_arn(
                "arn:aws:states:us-east-1:123456789012:stateMachine:Decommission",
                "decom-CHG-1"
            )
            .as_deref(),
            Some("arn:aws:states:us-east-1:123456789012:execution:Decommission:decom-CHG-1")
        );
        assert_eq!(
            execution_arn(
                "arn:aws-us-gov:states:us-gov-west-1:123456789012:stateMachine:D",
                "n"
            )
            .as_deref(),
            Some("arn:aws-us-gov:states:us-gov-west-1:123456789012:execution:D:n")
        );
        assert_eq!(
            execution_arn(
                "arn:aws:states:us-east-1:123456789012:stateMachine:D:v1",
                "n"
            ),
            None
        );
        assert_eq!(execution_arn("not-an-arn", "n"), None);
    }
}
