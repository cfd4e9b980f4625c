//! Who a step acts for. Before any change, a step of a real decommission checks that the
//! document's `Execution.Id` is a RUNNING execution of this stack's decommission state machine,
//! that the execution's own input (as Step Functions holds it) asks for what the document asks,
//! and that the execution holds the store's lock in the ledger; otherwise it fails with
//! `NotTheRunningDecommission` and changes nothing. plan-decommission takes the lock (one real
//! decommission per store, whatever started it): a store locked by a run that still runs fails
//! with `DecommissionInProgress`; a lock left by a run that ended (failed, stopped, timed out)
//! is taken over, and that run's end recorded.
//!
//! After a step, the ledger learns what it did: the phase, keys seen deleted, the outcome; the
//! lock is released when the store is deleted (a cancel releases it too).

use futures::stream::{self, StreamExt, TryStreamExt};

use crate::error::DecommissionError;
use crate::ledger::{LockOutcome, RunRecord};
use crate::model::Timestamp;
use crate::request::DecommissionRequest;
use crate::sfn::ExecutionInfo;
use crate::state::DecommissionState;
use crate::steps::context::StepContext;
use crate::steps::flow::Step;

/// The outcome the ledger records for a run that deleted its store.
const SUCCEEDED: &str = "Succeeded";
/// Key records read (and marked) per ledger page.
pub(super) const LEDGER_PAGE: i32 = 100;

/// The run a step was admitted for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmittedRun {
    /// The decommission execution.
    pub execution: String,
    /// The store it holds the lock of.
    pub store_id: String,
}

/// Checks who the step would act for (see the module documentation). `None` for a dry run's
/// plan, which reads only; every other step refuses a dry run's document on its own.
pub async fn admit(
    ctx: &StepContext,
    step: Step,
    state: &DecommissionState,
) -> Result<Option<AdmittedRun>, DecommissionError> {
    let request = if step == Step::PlanDecommission {
        DecommissionRequest::from_input(&state.input)?
    } else {
        step.check_document(state)?;
        state.require_request()?.clone()
    };
    if request.dry_run {
        return Ok(None);
    }
    let execution = state.execution_id()?.to_owned();
    let store_id = request.custom_key_store_id.clone();
    let refuse = |reason: String| DecommissionError::NotTheRunningDecommission {
        step: step.binary_name(),
        execution: execution.clone(),
        reason,
    };
    let info = ctx
        .runs
        .describe(&execution)
        .await
        .map_err(step_functions_unavailable)?
        .ok_or_else(|| refuse("Step Functions has no such execution".into()))?;
    check_execution(&info, ctx.runs.state_machine_arn(), &request).map_err(refuse)?;

    let now = Timestamp::floor(ctx.clock.now());
    if step == Step::PlanDecommission {
        refuse_before_lock(ctx, &request, &execution).await?;
        take_lock(ctx, &store_id, &execution, now).await?;
        ctx.ledger
            .record_run(&RunRecord {
                execution: execution.clone(),
                store_id: store_id.clone(),
                requested_by: request.requested_by.clone(),
                ticket_id: request.ticket_id.clone(),
                input: info
                    .input
                    .as_ref()
                    .map_or_else(String::new, ToString::to_string),
                started_at: now,
                phase: step.binary_name().to_owned(),
                outcome: None,
                outcome_detail: None,
                ended_at: None,
                approval_required: None,
                approval_state: None,
                approval_token: None,
                approved_by: None,
                quarantine_required: None,
                quarantine_phase: None,
                quarantine_started_at: None,
            })
            .await?;
    } else {
        let holder = ctx.ledger.lock_holder(&store_id).await?;
        if holder.as_ref().map(|h| h.execution.as_str()) != Some(execution.as_str())
            && !(step == Step::DeleteStore && deleted_the_store(ctx, &store_id, &execution).await?)
        {
            return Err(refuse(match holder {
                Some(holder) => format!(
                    "the lock of store {store_id} is held by {}",
                    holder.execution
                ),
                None => format!("nobody holds the lock of store {store_id}"),
            }));
        }
    }
    if step_order(step) > step_order(Step::RecordApproval) {
        if let Some(reason) = gate_not_passed(ctx, step, &store_id, &execution).await? {
            return Err(refuse(reason));
        }
    }
    ctx.ledger
        .set_phase(&store_id, &execution, step.binary_name(), now)
        .await?;
    Ok(Some(AdmittedRun {
        execution,
        store_id,
    }))
}

fn step_order(step: Step) -> usize {
    Step::ALL.iter().position(|s| *s == step).unwrap_or(0)
}

/// Why the ledger does not let a step after the approval gate act, if it does not: the run is
/// not approved (or its plan never said whether approval is needed), or, for a step after the
/// quarantine, the quarantine it needs is not over as quarantine-store recorded it.
async fn gate_not_passed(
    ctx: &StepContext,
    step: Step,
    store_id: &str,
    execution: &str,
) -> Result<Option<String>, DecommissionError> {
    let Some(run) = ctx.ledger.run_record(store_id, execution).await? else {
        return Ok(Some("the ledger has no record of the run".into()));
    };
    let approved = match run.approval_required {
        None => Some(
            "the ledger does not say whether the run needs approval (its plan has not finished)"
                .into(),
        ),
        Some(true) if run.approval_state.as_deref() != Some(crate::ledger::APPROVAL_APPROVED) => {
            Some("the run needs approval and the ledger records none".into())
        }
        Some(_) => None,
    };
    if approved.is_some() || step_order(step) <= step_order(Step::QuarantineStore) {
        return Ok(approved);
    }
    Ok(match (run.quarantine_required, run.quarantine_phase.as_deref()) {
        (None, _) => Some(
            "the ledger does not say whether the run quarantines its store (its plan has not finished)"
                .into(),
        ),
        (Some(true), Some(QUARANTINE_DONE)) | (Some(false), _) => None,
        (Some(true), phase) => Some(format!(
            "the run quarantines its store and the ledger shows the quarantine {}",
            phase.map_or_else(|| "not begun".to_owned(), |p| format!("in phase {p}, not Done"))
        )),
    })
}

/// The ledger's `QuarantinePhase` of a finished quarantine.
pub const QUARANTINE_DONE: &str = "Done";

/// Whether the ledger says run `execution` already deleted the store (and so released its
/// lock): a retry of delete-store after a lost result is answered again.
async fn deleted_the_store(
    ctx: &StepContext,
    store_id: &str,
    execution: &str,
) -> Result<bool, DecommissionError> {
    Ok(ctx
        .ledger
        .run_record(store_id, execution)
        .await?
        .is_some_and(|run| run.outcome.as_deref() == Some(SUCCEEDED)))
}

/// A Step Functions call that failed, as the named error the state machine retries.
pub(crate) fn step_functions_unavailable(err: crate::aws_error::AwsCallError) -> DecommissionError {
    DecommissionError::StepFunctionsUnavailable {
        operation: err.operation,
        code: err.code,
        message: err.message,
    }
}

/// Why `info` is not the running decommission `request` comes from, if it is not.
fn check_execution(
    info: &ExecutionInfo,
    state_machine_arn: &str,
    request: &DecommissionRequest,
) -> Result<(), String> {
    if info.state_machine_arn != state_machine_arn {
        return Err(format!(
            "it is an execution of {}, not of this stack's decommission state machine {state_machine_arn}",
            info.state_machine_arn
        ));
    }
    if !info.is_running() {
        return Err(format!("the execution is {}", info.status.as_str()));
    }
    let Some(input) = &info.input else {
        return Err("the execution has no readable input".into());
    };
    let started_for = DecommissionRequest::from_input(input)
        .map_err(|e| format!("the execution's own input is not a valid request ({e})"))?;
    if started_for.custom_key_store_id != request.custom_key_store_id {
        return Err(format!(
            "the execution decommissions store {}, the document names {}",
            started_for.custom_key_store_id, request.custom_key_store_id
        ));
    }
    if &started_for != request {
        return Err(
            "the document's request differs from the input the execution was started with".into(),
        );
    }
    Ok(())
}

/// The plan's refusals that need no lock, made before the run takes it so that a run they
/// refuse leaves no trace in the ledger: the trigger policy, who asked when the run needs
/// approval, and the store and its confirmed name (DescribeCustomKeyStores, a read). Skipped
/// when `execution` already holds the lock (a later batch of its plan) and when a running
/// decommission holds it ([`take_lock`] then refuses with `DecommissionInProgress`, before any
/// KMS call).
async fn refuse_before_lock(
    ctx: &StepContext,
    request: &DecommissionRequest,
    execution: &str,
) -> Result<(), DecommissionError> {
    let store_id = request.custom_key_store_id.as_str();
    if let Some(holder) = ctx.ledger.lock_holder(store_id).await? {
        if holder.execution == execution {
            return Ok(());
        }
        let running = ctx
            .runs
            .describe(&holder.execution)
            .await
            .map_err(step_functions_unavailable)?
            .is_some_and(|info| info.is_running());
        if running {
            return Ok(());
        }
    }
    ctx.policy.check(request)?;
    crate::steps::plan::require_requester(ctx, request)?;
    let store = crate::store::describe(&ctx.kms, store_id).await?;
    request.confirm_store_name(&store.custom_key_store_name)
}

/// Takes the store's lock for `execution`, over from a holder that no longer runs.
async fn take_lock(
    ctx: &StepContext,
    store_id: &str,
    execution: &str,
    now: Timestamp,
) -> Result<(), DecommissionError> {
    let holder = match ctx.ledger.take_lock(store_id, execution, now).await? {
        LockOutcome::Held => return Ok(()),
        LockOutcome::HeldBy(holder) => holder,
    };
    let in_progress =
        |holder: &crate::ledger::LockHolder| DecommissionError::DecommissionInProgress {
            store_id: store_id.to_owned(),
            holder: holder.execution.clone(),
            taken_at: holder.taken_at.to_string(),
        };
    let previous = ctx
        .runs
        .describe(&holder.execution)
        .await
        .map_err(step_functions_unavailable)?;
    if previous.as_ref().is_some_and(ExecutionInfo::is_running) {
        return Err(in_progress(&holder));
    }
    match ctx
        .ledger
        .take_over_lock(store_id, &holder.execution, execution, now)
        .await?
    {
        LockOutcome::Held => {}
        LockOutcome::HeldBy(other) => return Err(in_progress(&other)),
    }
    let (outcome, detail) = match &previous {
        Some(info) => (
            info.status.as_str().to_owned(),
            format!(
                "{}{}; lock taken over by {execution}",
                info.error.as_deref().unwrap_or("no error name"),
                info.cause
                    .as_deref()
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default()
            ),
        ),
        None => (
            "Unknown".to_owned(),
            format!("Step Functions no longer knows the execution; lock taken over by {execution}"),
        ),
    };
    tracing::warn!(
        custom_key_store_id = store_id,
        execution,
        previous_holder = holder.execution.as_str(),
        previous_outcome = outcome.as_str(),
        "took over the store's lock from a run that no longer runs"
    );
    ctx.ledger
        .set_outcome(store_id, &holder.execution, &outcome, &detail, now)
        .await
}

/// Tells the ledger what the step did: keys seen deleted once every key is gone; the outcome
/// and the lock's release once the store is deleted.
pub async fn record_result(
    ctx: &StepContext,
    step: Step,
    run: &AdmittedRun,
    state: &DecommissionState,
) -> Result<(), DecommissionError> {
    let now = Timestamp::floor(ctx.clock.now());
    match step {
        Step::PlanDecommission => match (&state.approval, &state.quarantine) {
            (Some(approval), Some(quarantine)) if state.plan.as_ref().is_some_and(|p| p.done) => {
                ctx.ledger
                    .set_plan_gates(
                        &run.store_id,
                        &run.execution,
                        approval.required,
                        quarantine.required,
                        now,
                    )
                    .await
            }
            _ => Ok(()),
        },
        Step::CheckKeysDeleted if state.deletion.as_ref().is_some_and(|d| d.all_deleted) => {
            mark_keys_seen_deleted(ctx, &run.execution, now).await
        }
        Step::DeleteStore if state.report.is_some() => {
            mark_keys_seen_deleted(ctx, &run.execution, now).await?;
            ctx.ledger
                .set_outcome(
                    &run.store_id,
                    &run.execution,
                    SUCCEEDED,
                    "the store and every key of it are deleted",
                    now,
                )
                .await?;
            ctx.ledger.release_lock(&run.store_id, &run.execution).await
        }
        _ => Ok(()),
    }
}

/// Marks every key record of the run not yet seen deleted (the store has no key left).
async fn mark_keys_seen_deleted(
    ctx: &StepContext,
    execution: &str,
    now: Timestamp,
) -> Result<(), DecommissionError> {
    let mut after: Option<String> = None;
    loop {
        let page = ctx
            .ledger
            .key_records(execution, after.as_deref(), LEDGER_PAGE)
            .await?;
        stream::iter(page.records.iter().filter(|r| r.seen_deleted_at.is_none()))
            .map(|record| {
                ctx.ledger
                    .mark_seen_deleted(execution, &record.key_arn, now)
            })
            .buffer_unordered(8)
            .try_collect::<Vec<()>>()
            .await?;
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(()),
        }
    }
}
