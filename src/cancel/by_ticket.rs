//! Cancelling by ticket (the webhook's `cancel` action): find the ticket's decommission (else its
//! dry run), stop it, and start the cancel workflow on it. The cancel workflow's input is built
//! and validated, and an earlier cancel of the ticket that failed is reported, before anything is
//! stopped: a cancel that cannot start stops nothing.

use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::{json, Value};

use super::CancelRequest;
use crate::aws_error::AwsCallError;
use crate::error::DecommissionError;
use crate::sfn::naming::{cancel_execution_name, ticket_execution_name};
use crate::sfn::{Executions, RunMode, StartOutcome};

/// Error name of an execution stopped by a cancel by ticket.
pub const CANCEL_STOP_ERROR: &str = "CancelledByTicket";

/// Who asks to cancel which ticket's run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketCancel<'a> {
    /// The ticket that started the run.
    pub ticket: &'a str,
    /// Who asks.
    pub requested_by: &'a str,
    /// Why, when given.
    pub reason: Option<&'a str>,
}

/// What a cancel by ticket did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketCancelOutcome {
    /// The decommission had completed: nothing can come back.
    DecommissionCompleted {
        /// The decommission.
        arn: String,
        /// Its status.
        status: ExecutionStatus,
    },
    /// The ticket only ran a dry run, which changes nothing.
    DryRunOnly {
        /// The dry run.
        arn: String,
        /// Its status.
        status: ExecutionStatus,
    },
    /// The ticket's running dry run was stopped.
    DryRunStopped {
        /// The dry run.
        arn: String,
    },
    /// The decommission is stopped but no cancel workflow is configured: keys stay pending.
    StoppedWithoutCancelWorkflow {
        /// The decommission.
        arn: String,
        /// Whether this call stopped it (else it had already stopped).
        stopped_now: bool,
    },
    /// The decommission is stopped and the cancel workflow runs (or ran) on it.
    CancelStarted {
        /// The decommission.
        arn: String,
        /// Whether this call stopped it.
        stopped_now: bool,
        /// The cancel execution.
        cancel_arn: String,
        /// Whether this call started it (else an earlier call did).
        started_now: bool,
        /// The cancel execution's status.
        cancel_status: ExecutionStatus,
    },
}

/// Why a cancel by ticket did nothing.
#[derive(Debug, thiserror::Error)]
pub enum TicketCancelError {
    /// The ticket's cancel already ran and did not succeed; its name cannot be used again.
    #[error(
        "the cancel of ticket {ticket} ({cancel_arn}) already ended {status}: keys it did not \
         restore stay pending deletion. Read its error in the Step Functions console, then start \
         the cancel state machine by hand under another name with DecommissionExecutionArn \
         {decommission_arn}"
    )]
    CancelFailed {
        /// The ticket.
        ticket: String,
        /// The decommission it was to undo.
        decommission_arn: String,
        /// The cancel execution that did not succeed.
        cancel_arn: String,
        /// How it ended.
        status: String,
    },
    /// No decommission or dry run was started for the ticket.
    #[error("no decommission or dry run was started for ticket {0:?}")]
    UnknownTicket(String),
    /// The cancel workflow would refuse its input; nothing was stopped.
    #[error("{0}")]
    InvalidInput(DecommissionError),
    /// Step Functions failed.
    #[error(transparent)]
    Aws(#[from] AwsCallError),
}

/// Cancels the run `request.ticket` started: see the module documentation.
pub async fn cancel_by_ticket(
    executions: &Executions,
    request: &TicketCancel<'_>,
) -> Result<TicketCancelOutcome, TicketCancelError> {
    let ticket = request.ticket;
    let machine = executions.state_machine_arn().to_owned();
    let decommission = executions
        .describe_named(
            &machine,
            &ticket_execution_name(ticket, RunMode::Decommission),
        )
        .await?;
    let Some(decommission) = decommission else {
        return cancel_dry_run(executions, &machine, ticket).await;
    };
    if decommission.status == ExecutionStatus::Succeeded {
        return Ok(TicketCancelOutcome::DecommissionCompleted {
            arn: decommission.arn,
            status: decommission.status,
        });
    }
    if let Some(cancel_machine) = executions.cancel_state_machine_arn() {
        let earlier = executions
            .describe_named(cancel_machine, &cancel_execution_name(ticket))
            .await?;
        if let Some(earlier) = earlier.filter(|e| {
            matches!(
                e.status,
                ExecutionStatus::Failed | ExecutionStatus::TimedOut | ExecutionStatus::Aborted
            )
        }) {
            return Err(TicketCancelError::CancelFailed {
                ticket: ticket.to_owned(),
                decommission_arn: decommission.arn,
                cancel_arn: earlier.arn,
                status: earlier.status.as_str().to_owned(),
            });
        }
    }
    let mut cancel_input = json!({
        "CustomKeyStoreId": decommission.store_id(),
        "DecommissionExecutionArn": decommission.arn,
        "TicketId": ticket,
        "RequestedBy": request.requested_by,
    });
    if let (Some(reason), Some(map)) = (request.reason, cancel_input.as_object_mut()) {
        map.insert("Reason".into(), Value::String(reason.to_owned()));
    }
    CancelRequest::from_input(&cancel_input).map_err(TicketCancelError::InvalidInput)?;

    let stopped_now = decommission.is_running();
    if stopped_now {
        let cause = format!(
            "cancelled by ticket {ticket}, requested by {}",
            request.requested_by
        );
        executions
            .stop(&decommission.arn, CANCEL_STOP_ERROR, &cause)
            .await?;
    }
    let Some(cancel_machine) = executions.cancel_state_machine_arn().map(str::to_owned) else {
        return Ok(TicketCancelOutcome::StoppedWithoutCancelWorkflow {
            arn: decommission.arn,
            stopped_now,
        });
    };
    let outcome = executions
        .start_named(
            &cancel_machine,
            &cancel_execution_name(ticket),
            &cancel_input,
        )
        .await?;
    let (cancel_arn, started_now, cancel_status) = match outcome {
        StartOutcome::Started { arn } => (arn, true, ExecutionStatus::Running),
        StartOutcome::AlreadyRunning(e)
        | StartOutcome::AlreadyFinished(e)
        | StartOutcome::NameTaken(e)
        | StartOutcome::StoreBusy(e) => (e.arn, false, e.status),
    };
    Ok(TicketCancelOutcome::CancelStarted {
        arn: decommission.arn,
        stopped_now,
        cancel_arn,
        started_now,
        cancel_status,
    })
}

async fn cancel_dry_run(
    executions: &Executions,
    machine: &str,
    ticket: &str,
) -> Result<TicketCancelOutcome, TicketCancelError> {
    let dry_run = executions
        .describe_named(machine, &ticket_execution_name(ticket, RunMode::DryRun))
        .await?
        .ok_or_else(|| TicketCancelError::UnknownTicket(ticket.to_owned()))?;
    if dry_run.is_running() {
        let cause = format!("dry run cancelled by ticket {ticket}");
        executions
            .stop(&dry_run.arn, CANCEL_STOP_ERROR, &cause)
            .await?;
        return Ok(TicketCancelOutcome::DryRunStopped { arn: dry_run.arn });
    }
    Ok(TicketCancelOutcome::DryRunOnly {
        arn: dry_run.arn,
        status: dry_run.status,
    })
}
