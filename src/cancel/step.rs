//! cancel-decommission: the one step of the cancel state machine (`statemachine/cancel.asl.json`,
//! `docs/cancel.md`). The first invocation stops the decommission execution (error `Cancelled`)
//! when it still runs; every invocation then scans the store's keys page by page from a cursor
//! and restores those the decommission scheduled ([`crate::cancel::restore_key`]). The cancel is
//! done after a whole scan that restored nothing and started once the stopped execution's
//! in-flight invocations must have ended (`CANCEL_SETTLE_SECONDS` after it stopped).

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt, TryStreamExt};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::Instrument;

use crate::arn::Arn;
use crate::bootstrap::LambdaFunction;
use crate::cancel::{restore_key, CancelError, CancelRequest, Reenable, RestoreOutcome};
use crate::clock::from_kms;
use crate::deadline::Deadline;
use crate::error::{DecommissionError, KmsErrorCode};
use crate::inventory::{may_start_another_page, page_size_within, per_call};
use crate::keys::TargetStore;
use crate::model::{push_capped, Timestamp};
use crate::steps::context::StepContext;
use crate::store;

/// Default of `CANCEL_SETTLE_SECONDS`: the batch functions' timeout (300 s) plus a margin.
pub const DEFAULT_SETTLE_SECONDS: u64 = 330;
/// Most key records restored per ledger page.
const LEDGER_PAGE: i32 = 100;
/// The error name StopExecution gives the decommission.
pub const STOP_ERROR: &str = "Cancelled";

/// The cancel state machine's document. PascalCase JSON; unknown sections are kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CancelState {
    /// The raw cancel input.
    #[serde(default)]
    pub input: Value,
    /// Progress, written by the first invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel: Option<CancelProgress>,
    /// The final report, written when the cancel is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<CancelReport>,
    /// Sections written by others (e.g. `Execution`, `Failure`).
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// Counts of what the cancel did, kept across invocations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestoreCounts {
    /// Keys restored (markers removed) by this cancel.
    pub keys_restored: u64,
    /// Of these, keys whose deletion was cancelled (they were still pending).
    pub keys_deletion_cancelled: u64,
    /// Keys enabled again (they were Enabled before scheduling).
    pub keys_re_enabled: u64,
    /// Keys enabled while Unavailable: Enabled once the store is connected again.
    pub keys_re_enabled_on_reconnect: u64,
    /// Keys scheduled while Unavailable: whether they were enabled is unknown; left Disabled.
    pub keys_prior_state_unknown: u64,
    /// Keys that disappeared while being restored.
    pub keys_gone: u64,
    /// Keys the run scheduled that KMS had already deleted when the cancel came (first pass).
    #[serde(default)]
    pub keys_already_deleted: u64,
    /// First restored keys: `ARN (prior state -> state now)`.
    pub keys: Vec<String>,
    /// More keys were restored than `Keys` lists (all are in the logs).
    pub keys_truncated: bool,
}

/// The cancel's progress (`Cancel` section).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CancelProgress {
    /// The decommission's status when the cancel found it (RUNNING, FAILED, ABORTED, ...).
    pub decommission_status: String,
    /// Whether this cancel stopped it.
    pub stopped_by_this_cancel: bool,
    /// When invocations the decommission started before it stopped must have ended.
    pub settle_until: Timestamp,
    /// Keys the decommission had scheduled, per its last recorded state document (if known).
    pub decommission_keys_scheduled: Option<u64>,
    /// Keys the decommission saw deleted, per its report (if it finished).
    pub decommission_keys_deleted: Option<u64>,
    /// The store no longer exists (all its keys were deleted).
    pub store_deleted: bool,
    /// ListKeys marker of the next page of the current scan.
    pub cursor: Option<String>,
    /// When the current scan started (RFC 3339, rounded down).
    pub scan_started_at: Option<Timestamp>,
    /// Keys restored by the current scan.
    pub scan_restored: u64,
    /// Whole scans completed.
    pub scans: u32,
    /// What was restored.
    #[serde(flatten)]
    pub counts: RestoreCounts,
    /// The cancel is complete; `Report` is written.
    pub done: bool,
    /// The state machine waits `WaitSeconds` before the next invocation.
    pub wait_required: bool,
    /// Seconds to wait when `WaitRequired`.
    pub wait_seconds: u64,
    /// The decommission was in its quarantine (it had disconnected the store): the cancel
    /// connects the store again before it ends.
    #[serde(default)]
    pub reconnect_store: bool,
    /// ConnectCustomKeyStore was asked for (or the store was found connected or connecting).
    #[serde(default)]
    pub store_connect_requested: bool,
}

/// The cancel's final report (`Report`, the cancel execution's output).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CancelReport {
    /// `Cancelled`.
    pub outcome: String,
    /// The store.
    pub custom_key_store_id: String,
    /// The cancelled decommission.
    pub decommission_execution_arn: String,
    /// Its status when the cancel found it.
    pub decommission_status: String,
    /// Whether this cancel stopped it.
    pub stopped_by_this_cancel: bool,
    /// Who asked.
    pub requested_by: Option<String>,
    /// Ticket id.
    pub ticket_id: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// What was restored.
    #[serde(flatten)]
    pub counts: RestoreCounts,
    /// Keys the decommission had scheduled (if its history tells).
    pub decommission_keys_scheduled: Option<u64>,
    /// Keys already deleted and gone for good (if it can be known).
    pub keys_deleted: Option<u64>,
    /// The store no longer exists.
    pub store_deleted: bool,
    /// The decommission was in its quarantine and this cancel connected the store again.
    #[serde(default)]
    pub store_reconnected: bool,
    /// What the operator should know or do, one sentence each.
    pub follow_ups: Vec<String>,
}

/// Everything the cancel step needs: KMS, the decommission state machine, the ledger, and how
/// long a stopped decommission's last invocation may still run.
#[derive(Debug)]
pub struct CancelContext {
    /// KMS client, pacing, clock, batch configuration; `runs` is the decommission state
    /// machine (`STATE_MACHINE_ARN`), `ledger` the run ledger.
    pub step: StepContext,
    /// How long after the decommission stopped its last invocation may still run.
    pub settle: Duration,
}

impl CancelContext {
    /// Reads `CANCEL_SETTLE_SECONDS` besides the step context's environment.
    pub fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, DecommissionError> {
        let settle = match std::env::var("CANCEL_SETTLE_SECONDS") {
            Err(_) => DEFAULT_SETTLE_SECONDS,
            Ok(text) => text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|s| *s <= 3600)
                .ok_or(DecommissionError::InvalidConfiguration {
                    variable: "CANCEL_SETTLE_SECONDS".into(),
                    reason: format!("{text:?} is not a whole number of seconds from 0 to 3600"),
                })?,
        };
        Ok(Self {
            step: StepContext::from_env(sdk)?,
            settle: Duration::from_secs(settle),
        })
    }
}

/// Runs one invocation of the cancel.
pub async fn run(
    ctx: &CancelContext,
    mut state: CancelState,
    deadline: Deadline,
) -> Result<CancelState, CancelError> {
    let request = CancelRequest::from_input(&state.input)?;
    if state.report.is_some() {
        return Ok(state);
    }
    let mut progress = match state.cancel.take() {
        Some(progress) => {
            // A Cancel section is only as good as whoever wrote the document: the first
            // invocation stopped the decommission, so a RUNNING one means it did not.
            let info = Box::pin(decommission_of(ctx, &request)).await?;
            if info.is_running() {
                return Err(DecommissionError::invalid_state(format!(
                    "the Cancel section says decommission {} was stopped, but it is RUNNING: \
                     this document was not written by a cancel that stopped it; nothing was \
                     changed. Start the cancel state machine with the cancel input",
                    info.arn
                ))
                .into());
            }
            progress
        }
        None => Box::pin(stop_decommission(ctx, &request)).await?,
    };
    progress.wait_required = false;
    progress.wait_seconds = 0;
    let kms = &ctx.step.kms;
    let store_id = request.custom_key_store_id.as_str();
    let described = match store::describe(kms, store_id).await {
        Ok(described) => Some(described),
        Err(err) if err.is_kms(KmsErrorCode::CustomKeyStoreNotFound) => None,
        Err(err) => return Err(err.into()),
    };
    let Some(described) = described else {
        // A deleted store has no keys left: nothing can be restored.
        progress.store_deleted = true;
        release_run(ctx, &request).await?;
        return Ok(finish(state, progress, &request));
    };
    let target = TargetStore::new(&described);
    let execution = request.decommission_execution_arn.as_str();
    let ledger = &ctx.step.ledger;
    if progress.scan_started_at.is_none() {
        progress.scan_started_at = Some(Timestamp::floor(ctx.step.clock.now()));
    }
    let config = &ctx.step.config;
    // CancelKeyDeletion and EnableKey (both 5/s) bound what a key costs.
    let per_key = per_call(config.pacing.custom_key_store_rps);
    let mut after = progress.cursor.take();
    loop {
        let started = Instant::now();
        let limit = page_size_within(&deadline, config.deadline_margin, per_key, LEDGER_PAGE);
        let page = ledger
            .key_records(execution, after.as_deref(), limit)
            .await?;
        let now = Timestamp::floor(ctx.step.clock.now());
        let outcomes: Vec<RestoreOutcome> = stream::iter(&page.records)
            .map(|record| Box::pin(restore_key(kms, ledger, record, &target, execution, now)))
            .buffered(ctx.step.kms.pacing().concurrency)
            .try_collect()
            .await?;
        for outcome in outcomes {
            count(&mut progress, outcome);
        }
        after = page.next;
        if after.is_none()
            || !may_start_another_page(&deadline, started.elapsed(), config.deadline_margin)
        {
            break;
        }
    }
    progress.cursor = after;
    if progress.cursor.is_none() {
        progress.scans += 1;
        let settle_until = progress.settle_until.time();
        let scan_started = progress
            .scan_started_at
            .map(Timestamp::time)
            .ok_or_else(|| DecommissionError::invalid_state("no Cancel.ScanStartedAt"))?;
        if progress.scan_restored == 0 && scan_started >= settle_until {
            if progress.reconnect_store && !progress.store_connect_requested {
                reconnect(ctx, &mut progress, store_id, &described).await?;
                if !progress.store_connect_requested {
                    state.cancel = Some(progress);
                    return Ok(state);
                }
            }
            release_run(ctx, &request).await?;
            return Ok(finish(state, progress, &request));
        }
        progress.scan_started_at = None;
        progress.scan_restored = 0;
        let now = ctx.step.clock.now();
        if let Ok(wait) = settle_until.duration_since(now) {
            progress.wait_required = true;
            progress.wait_seconds = wait.as_secs() + 1;
        }
    }
    state.cancel = Some(progress);
    Ok(state)
}

/// Connects a store the cancelled decommission had disconnected for its quarantine: once it is
/// DISCONNECTED (a disconnect in flight is waited for), ConnectCustomKeyStore.
async fn reconnect(
    ctx: &CancelContext,
    progress: &mut CancelProgress,
    store_id: &str,
    described: &crate::model::StoreSummary,
) -> Result<(), CancelError> {
    use aws_sdk_kms::types::ConnectionStateType;
    match described.connection_state {
        ConnectionStateType::Disconnected => match store::connect(&ctx.step.kms, store_id).await {
            Ok(()) => {
                tracing::info!(
                    custom_key_store_id = store_id,
                    "connecting the store the cancelled decommission had quarantined"
                );
                progress.store_connect_requested = true;
            }
            Err(err) if err.is_kms(KmsErrorCode::CustomKeyStoreInvalidState) => {}
            Err(err) => return Err(err.into()),
        },
        ConnectionStateType::Disconnecting => {}
        // CONNECTED or CONNECTING already; FAILED is the operator's (the follow-up says so).
        _ => progress.store_connect_requested = true,
    }
    if !progress.store_connect_requested {
        progress.wait_required = true;
        progress.wait_seconds = ctx.step.config.store_poll_seconds;
    }
    Ok(())
}

/// Records in the ledger that the run was cancelled and releases the store's lock if the run
/// holds it.
async fn release_run(
    ctx: &CancelContext,
    request: &CancelRequest,
) -> Result<(), DecommissionError> {
    let ledger = &ctx.step.ledger;
    let store_id = request.custom_key_store_id.as_str();
    let execution = request.decommission_execution_arn.as_str();
    let now = Timestamp::floor(ctx.step.clock.now());
    ledger
        .set_outcome(store_id, execution, "Cancelled", &request.cause(), now)
        .await?;
    ledger.release_lock(store_id, execution).await
}

/// Adds one key's outcome to the counts.
fn count(progress: &mut CancelProgress, outcome: RestoreOutcome) {
    let counts = &mut progress.counts;
    match outcome {
        RestoreOutcome::NotScheduled | RestoreOutcome::AlreadyRestored => {}
        // Every pass meets them again: counted by the first.
        RestoreOutcome::AlreadyDeleted if progress.scans == 0 => counts.keys_already_deleted += 1,
        RestoreOutcome::AlreadyDeleted => {}
        RestoreOutcome::Gone => counts.keys_gone += 1,
        RestoreOutcome::Restored(key) => {
            progress.scan_restored += 1;
            counts.keys_restored += 1;
            counts.keys_deletion_cancelled += u64::from(key.deletion_cancelled);
            match key.reenable {
                Reenable::Enabled => counts.keys_re_enabled += 1,
                Reenable::OnReconnect => counts.keys_re_enabled_on_reconnect += 1,
                Reenable::PriorStateUnknown => counts.keys_prior_state_unknown += 1,
                Reenable::NotNeeded => {}
            }
            let line = format!("{} ({} -> {})", key.arn, key.prior_state, key.key_state);
            if !push_capped(&mut counts.keys, line) {
                counts.keys_truncated = true;
            }
        }
    }
}

/// The decommission the request names: an execution of this stack's decommission state machine
/// that exists and decommissions the request's store; otherwise the named error, nothing done.
async fn decommission_of(
    ctx: &CancelContext,
    request: &CancelRequest,
) -> Result<crate::sfn::ExecutionInfo, CancelError> {
    let arn = request.decommission_execution_arn.as_str();
    let executions = &ctx.step.runs;
    let expected = executions.state_machine_arn();
    if state_machine_of(arn) != expected {
        return Err(DecommissionError::invalid_input(
            "DecommissionExecutionArn",
            format!("is not an execution of the decommission state machine {expected}"),
        )
        .into());
    }
    let info = executions
        .describe(arn)
        .await
        .map_err(CancelError::StepFunctions)?
        .ok_or_else(|| CancelError::DecommissionExecutionNotFound { arn: arn.into() })?;
    if info.store_id() != Some(request.custom_key_store_id.as_str()) {
        return Err(DecommissionError::invalid_input(
            "DecommissionExecutionArn",
            format!(
                "execution {arn} decommissions {}, not {}; nothing was changed",
                info.store_id().unwrap_or("no store"),
                request.custom_key_store_id
            ),
        )
        .into());
    }
    Ok(info)
}

/// First invocation: finds the decommission, stops it if it runs, and records what its
/// history says about scheduled and deleted keys.
async fn stop_decommission(
    ctx: &CancelContext,
    request: &CancelRequest,
) -> Result<CancelProgress, CancelError> {
    let arn = request.decommission_execution_arn.as_str();
    let executions = &ctx.step.runs;
    let info = Box::pin(decommission_of(ctx, request)).await?;
    let now = ctx.step.clock.now();
    let mut stopped_at = info.stop_date.as_ref().map(from_kms).unwrap_or(now);
    let stopped_by_this_cancel = info.is_running();
    if stopped_by_this_cancel {
        executions
            .stop(arn, STOP_ERROR, &request.cause())
            .await
            .map_err(CancelError::StepFunctions)?;
        stopped_at = now;
        tracing::info!(
            execution = arn,
            cause = request.cause(),
            "stopped the decommission"
        );
    }
    let mut keys_scheduled = None;
    let mut keys_deleted = None;
    // From the run's last document; where the history cannot tell, from its ledger record.
    let mut reconnect_store = None;
    if let Some(report) = &info.output {
        keys_scheduled = report.get("KeysScheduled").and_then(Value::as_u64);
        keys_deleted = report.get("KeysDeleted").and_then(Value::as_u64);
    } else {
        // The history is informative only: a cancel never fails for want of it.
        match executions.current_state(arn).await {
            Ok(Some((_, Some(document)))) => {
                keys_scheduled = document
                    .pointer("/Scheduling/KeysScheduled")
                    .and_then(Value::as_u64);
                reconnect_store = in_quarantine(&document);
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "could not read the decommission's history"),
        }
    }
    Ok(CancelProgress {
        decommission_status: info.status.as_str().to_string(),
        stopped_by_this_cancel,
        settle_until: Timestamp::ceil(stopped_at + ctx.settle),
        decommission_keys_scheduled: keys_scheduled,
        decommission_keys_deleted: keys_deleted,
        store_deleted: false,
        cursor: None,
        scan_started_at: None,
        scan_restored: 0,
        scans: 0,
        counts: RestoreCounts::default(),
        done: false,
        wait_required: false,
        wait_seconds: 0,
        reconnect_store: match reconnect_store {
            Some(known) => known,
            None => quarantined_by_ledger(ctx, request).await,
        },
        store_connect_requested: false,
    })
}

/// Whether a decommission document shows the run inside its quarantine, having disconnected
/// a store that was connected (a store it found disconnected stays so); `None` when the
/// document has no quarantine section to tell.
fn in_quarantine(document: &Value) -> Option<bool> {
    let quarantine = document.get("Quarantine")?;
    // A run that asked for no quarantine carries the section too, in its initial phase.
    let required = quarantine.get("Required").and_then(Value::as_bool);
    let phase = quarantine.get("Phase").and_then(Value::as_str);
    let was_connected = quarantine.get("WasConnected").and_then(Value::as_bool);
    Some(
        required == Some(true)
            && matches!(phase, Some("Disconnecting" | "Watching" | "Reconnecting"))
            && was_connected != Some(false),
    )
}

/// Whether the ledger's record of the run says its last step was the quarantine (the history
/// may be unreadable; the ledger is the run's own record).
async fn quarantined_by_ledger(ctx: &CancelContext, request: &CancelRequest) -> bool {
    match ctx
        .step
        .ledger
        .run_record(
            &request.custom_key_store_id,
            &request.decommission_execution_arn,
        )
        .await
    {
        Ok(Some(run)) => run.phase == "quarantine-store" && run.outcome.is_none(),
        Ok(None) => false,
        Err(err) => {
            tracing::warn!(error = %err, "could not read the run's ledger record");
            false
        }
    }
}

/// `arn:...:execution:<machine>:<name>` -> `arn:...:stateMachine:<machine>` (empty when the
/// ARN is not an execution's: validated input always is).
fn state_machine_of(execution_arn: &str) -> String {
    Arn::parse(execution_arn)
        .and_then(|arn| arn.state_machine_of_execution())
        .unwrap_or_default()
}

/// Writes the report and marks the cancel done.
fn finish(
    mut state: CancelState,
    mut progress: CancelProgress,
    request: &CancelRequest,
) -> CancelState {
    progress.done = true;
    progress.wait_required = false;
    progress.wait_seconds = 0;
    let counts = progress.counts.clone();
    let mut follow_ups = Vec::new();
    let keys_deleted = if progress.store_deleted {
        follow_ups.push(format!(
            "Custom key store {} no longer exists: every key of it was deleted and cannot come back.",
            request.custom_key_store_id
        ));
        progress
            .decommission_keys_deleted
            .or(progress.decommission_keys_scheduled)
    } else if progress.scans > 0 {
        // The ledger knows each key the run scheduled: those KMS no longer has are deleted.
        Some(
            progress
                .decommission_keys_deleted
                .unwrap_or(0)
                .max(counts.keys_already_deleted),
        )
    } else {
        progress.decommission_keys_deleted
    };
    match (progress.decommission_keys_scheduled, keys_deleted) {
        (_, Some(deleted)) if deleted > 0 => follow_ups.push(format!(
            "{deleted} key(s) were already deleted by KMS and cannot be restored; data they \
             encrypted cannot be decrypted."
        )),
        (Some(scheduled), _) if scheduled > counts.keys_restored + counts.keys_gone
            && progress.scans > 0 && !progress.store_deleted => follow_ups.push(format!(
            "The decommission had scheduled {scheduled} key(s); this cancel restored {}. Keys \
             missing from that count were deleted already (KMS no longer lists them) or restored \
             by an earlier cancel.",
            counts.keys_restored
        )),
        (None, None) => follow_ups.push(
            "How many keys KMS already deleted cannot be known: deleted keys are gone from KMS and \
             the decommission's history does not record a count; compare with its \
             schedule-key-deletion logs."
                .to_string(),
        ),
        _ => {}
    }
    if progress.reconnect_store && progress.store_connect_requested && !progress.store_deleted {
        follow_ups.push(format!(
            "The decommission was in its quarantine and had disconnected store {}: this cancel \
             connected it again (ConnectCustomKeyStore; a CloudHSM store takes up to 20 minutes \
             to reach CONNECTED: check it does).",
            request.custom_key_store_id
        ));
    }
    if counts.keys_gone > 0 {
        follow_ups.push(format!(
            "{} key(s) disappeared while being restored (deleted by KMS at that moment).",
            counts.keys_gone
        ));
    }
    if counts.keys_re_enabled_on_reconnect > 0 {
        follow_ups.push(format!(
            "{} key(s) were enabled while the store is disconnected: they become Enabled when \
             the store is connected again.",
            counts.keys_re_enabled_on_reconnect
        ));
    }
    if counts.keys_prior_state_unknown > 0 {
        follow_ups.push(format!(
            "{} key(s) were Unavailable when scheduled, so their earlier state is unknown: they \
             were left Disabled; enable those that were in use.",
            counts.keys_prior_state_unknown
        ));
    }
    state.report = Some(CancelReport {
        outcome: "Cancelled".into(),
        custom_key_store_id: request.custom_key_store_id.clone(),
        decommission_execution_arn: request.decommission_execution_arn.clone(),
        decommission_status: progress.decommission_status.clone(),
        stopped_by_this_cancel: progress.stopped_by_this_cancel,
        requested_by: request.requested_by.clone(),
        ticket_id: request.ticket_id.clone(),
        reason: request.reason.clone(),
        counts,
        decommission_keys_scheduled: progress.decommission_keys_scheduled,
        keys_deleted,
        store_deleted: progress.store_deleted,
        store_reconnected: progress.reconnect_store && progress.store_connect_requested,
        follow_ups,
    });
    tracing::info!(
        custom_key_store_id = request.custom_key_store_id.as_str(),
        execution = request.decommission_execution_arn.as_str(),
        keys_restored = progress.counts.keys_restored,
        "cancel complete"
    );
    state.cancel = Some(progress);
    state
}

/// The cancel step as a Lambda function: a bad configuration is kept and reported by name on
/// every invocation.
#[derive(Debug)]
pub struct CancelFunction {
    context: Result<CancelContext, DecommissionError>,
}

impl CancelFunction {
    /// The function with clients from `sdk` and configuration from the environment.
    pub fn from_env(sdk: &aws_config::SdkConfig) -> Self {
        Self {
            context: CancelContext::from_env(sdk),
        }
    }
}

impl LambdaFunction for CancelFunction {
    type Event = Value;
    type Output = Value;

    async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
        handle(&self.context, event).await
    }
}

/// Handles one invocation: the cancel document in, the updated document out, errors by name.
pub async fn handle(
    context: &Result<CancelContext, DecommissionError>,
    event: LambdaEvent<Value>,
) -> Result<Value, Diagnostic> {
    let lambda_deadline = event.context.deadline();
    let request_id = event.context.request_id.clone();
    let result = async {
        let context = context.as_ref().map_err(|e| CancelError::from(e.clone()))?;
        let deadline =
            Deadline::for_invocation(lambda_deadline, context.step.config.invocation_budget);
        let state: CancelState = serde_json::from_value(event.payload)
            .map_err(|e| DecommissionError::invalid_state(format!("not a cancel document: {e}")))?;
        let span = tracing::info_span!("cancel-decommission", request_id = request_id.as_str());
        let updated = Box::pin(run(context, state, deadline))
            .instrument(span)
            .await?;
        serde_json::to_value(updated)
            .map_err(|e| CancelError::from(DecommissionError::invalid_state(e.to_string())))
    }
    .await;
    result.map_err(|err| {
        tracing::error!(error_type = err.error_type(), error = %err, "cancel failed");
        Diagnostic::from(err)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(payload: Value) -> LambdaEvent<Value> {
        LambdaEvent::new(payload, lambda_runtime::Context::default())
    }

    fn context() -> CancelContext {
        CancelContext {
            step: crate::test_support::context(crate::test_support::mock_kms(&[])),
            settle: Duration::ZERO,
        }
    }

    #[test]
    fn only_a_run_inside_the_quarantine_it_asked_for_needs_its_store_connected_again() {
        use serde_json::json;
        let doc = |quarantine: Value| json!({"Quarantine": quarantine});
        // A run without a quarantine carries the section in its initial phase.
        let none = doc(json!({"Required": false, "Days": 0, "Phase": "Disconnecting"}));
        assert_eq!(in_quarantine(&none), Some(false));
        for phase in ["Disconnecting", "Watching", "Reconnecting"] {
            let inside = doc(json!({"Required": true, "Days": 3, "Phase": phase}));
            assert_eq!(in_quarantine(&inside), Some(true), "{phase}");
        }
        let done = doc(json!({"Required": true, "Days": 3, "Phase": "Done"}));
        assert_eq!(in_quarantine(&done), Some(false));
        let found_disconnected =
            doc(json!({"Required": true, "Phase": "Watching", "WasConnected": false}));
        assert_eq!(in_quarantine(&found_disconnected), Some(false));
        assert_eq!(in_quarantine(&json!({"Scheduling": {}})), None);
    }

    #[tokio::test]
    async fn bad_documents_inputs_and_configuration_are_reported_by_name() {
        let ok = Ok(context());
        for (payload, error) in [
            (serde_json::json!([1]), "InvalidStateDocument"),
            (
                serde_json::json!({"Cancel": {"Done": "yes"}}),
                "InvalidStateDocument",
            ),
            (
                serde_json::json!({"Input": {"CustomKeyStoreId": "cks-1"}}),
                "InvalidInput",
            ),
        ] {
            let diagnostic = handle(&ok, event(payload.clone())).await.unwrap_err();
            assert_eq!(diagnostic.error_type, error, "{payload}");
        }
        let bad_config = Err(DecommissionError::InvalidConfiguration {
            variable: "CANCEL_SETTLE_SECONDS".into(),
            reason: "not a number".into(),
        });
        let diagnostic = handle(&bad_config, event(serde_json::json!({})))
            .await
            .unwrap_err();
        assert_eq!(diagnostic.error_type, "InvalidConfiguration");
        assert!(diagnostic.error_message.contains("CANCEL_SETTLE_SECONDS"));
    }

    #[test]
    fn the_state_machine_of_an_execution_is_derived_from_its_arn() {
        assert_eq!(
            state_machine_of("arn:aws:states:us-east-1:123456789012:execution:decommission:CHG-1"),
            "arn:aws:states:us-east-1:123456789012:stateMachine:decommission"
        );
    }

    #[test]
    fn a_document_round_trips_and_keeps_unknown_sections() {
        let value = serde_json::json!({
            "Input": {"CustomKeyStoreId": "cks-1"},
            "Execution": {"Id": "arn"},
            "Cancel": {"DecommissionStatus": "RUNNING", "StoppedByThisCancel": true,
                       "SettleUntil": "2026-11-28T10:00:00Z", "DecommissionKeysScheduled": null,
                       "DecommissionKeysDeleted": null, "StoreDeleted": false, "Cursor": "m",
                       "ScanStartedAt": null, "ScanRestored": 0, "Scans": 0, "KeysRestored": 2,
                       "KeysDeletionCancelled": 2, "KeysReEnabled": 1, "KeysReEnabledOnReconnect": 0,
                       "KeysPriorStateUnknown": 0, "KeysGone": 0, "KeysAlreadyDeleted": 0, "Keys": [], "KeysTruncated": false,
                       "Done": false, "WaitRequired": false, "WaitSeconds": 0,
                       "ReconnectStore": false, "StoreConnectRequested": false}
        });
        let state: CancelState = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(state.cancel.as_ref().unwrap().counts.keys_restored, 2);
        assert_eq!(serde_json::to_value(&state).unwrap(), value);
    }
}
