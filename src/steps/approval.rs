//! The approval gate: after the plan and before the first change, a real run that needs it
//! (`Approval.Required`, decided by plan-decommission) waits until a second person approves.
//!
//! - request-approval runs as the state machine's `.waitForTaskToken` task: it records the task
//!   token and a summary of the plan in the run's ledger record (`ApprovalState: Requested`), and
//!   returns; the state machine then waits for `SendTaskSuccess` / `SendTaskFailure` with that
//!   token (the webhook's `approve` / `reject`, or the AWS CLI), at most `Approval.TimeoutSeconds`.
//! - record-approval reads the answer (`ApprovalAnswer`, the output given to `SendTaskSuccess`:
//!   `{"ApprovedBy": "...", "Via": "...", "Comment": "..."}`), refuses an approver who is the
//!   requester (`ApprovalBySameRequester`), and records the approver in the ledger
//!   (`ApprovalState: Approved`). Later steps act only for a run the ledger records approved.
//!
//! Neither trusts the document it is handed for what decides: whoever may invoke the function
//! can write any document. Both read the execution's history, which Step Functions alone writes:
//! request-approval acts only while the execution is in `WaitForApproval`, and records a token
//! only if it is the one the current task was scheduled with (where the history shows the
//! task's parameters; where it does not, the first token recorded stays); record-approval acts
//! only while the execution is in `RecordApproval`, and takes the answer from the document
//! Step Functions entered that state with, never from the one it is handed.

use serde::Deserialize;
use serde_json::Value;

use crate::deadline::Deadline;
use crate::error::DecommissionError;
use crate::input::{read_object, FieldError, FreeText};
use crate::model::Timestamp;
use crate::sfn::HistoryPosition;
use crate::state::DecommissionState;
use crate::steps::caller::step_functions_unavailable;
use crate::steps::context::StepContext;
use crate::steps::flow::{require_planned_store, Step};

/// The document field that carries the task token into request-approval (never written back).
pub const TASK_TOKEN_FIELD: &str = "ApprovalTaskToken";
/// The document field the state machine writes the approval answer to.
pub const ANSWER_FIELD: &str = "ApprovalAnswer";
/// The state that waits for the answer (request-approval is its task).
pub const WAIT_STATE: &str = "WaitForApproval";
/// The state that records the answer (record-approval is its task).
pub const RECORD_STATE: &str = "RecordApproval";
/// Fields an approval answer may carry.
const ANSWER_FIELDS: &[&str] = &["ApprovedBy", "Via", "TicketId", "Comment"];

/// The answer given with `SendTaskSuccess`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct ApprovalAnswer {
    approved_by: Option<FreeText>,
    via: Option<FreeText>,
    #[allow(dead_code)]
    ticket_id: Option<FreeText>,
    #[allow(dead_code)]
    comment: Option<FreeText>,
}

/// request-approval: records the task token and the plan summary in the ledger.
pub async fn request(
    ctx: &StepContext,
    mut state: DecommissionState,
    _deadline: Deadline,
) -> Result<DecommissionState, DecommissionError> {
    Step::RequestApproval.check_document(&state)?;
    let execution = state.execution_id()?.to_owned();
    let store_id = require_planned_store(&state)?.custom_key_store_id.clone();
    let token = match state.other.remove(TASK_TOKEN_FIELD) {
        Some(Value::String(token)) if !token.trim().is_empty() => token,
        _ => {
            return Err(DecommissionError::invalid_state(format!(
                "no {TASK_TOKEN_FIELD}: request-approval runs as a .waitForTaskToken task given \
                 {{\"Document\": <state document>, \"TaskToken\": $$.Task.Token}}"
            )))
        }
    };
    let position = in_state(ctx, Step::RequestApproval, &execution, WAIT_STATE).await?;
    let replace_earlier = match position.task_token() {
        Some(scheduled) if scheduled == token => true,
        Some(_) => {
            return Err(not_the_run(
                Step::RequestApproval,
                &execution,
                format!(
                    "the task token given is not the one Step Functions scheduled the current \
                     {WAIT_STATE} task with"
                ),
            ))
        }
        None => false,
    };
    let summary = summary(&state);
    let recorded = ctx
        .ledger
        .request_approval(
            &store_id,
            &execution,
            &token,
            &summary,
            replace_earlier,
            Timestamp::floor(ctx.clock.now()),
        )
        .await?;
    if !recorded {
        return Err(not_the_run(
            Step::RequestApproval,
            &execution,
            format!(
                "the ledger has no run of store {store_id} waiting for approval on this token \
                 (no record, approved already, or another token recorded that the execution's \
                 history cannot show to be replaced)"
            ),
        ));
    }
    tracing::info!(
        custom_key_store_id = store_id.as_str(),
        execution = execution.as_str(),
        summary = summary.as_str(),
        "waiting for approval"
    );
    Ok(state)
}

/// What the approver is asked to approve, in one line.
fn summary(state: &DecommissionState) -> String {
    let plan = state.plan.clone().unwrap_or_default();
    let request = state.request.as_ref();
    format!(
        "decommission custom key store {} ({}): {} key(s) {:?}, pending window {} day(s); last use: {}; requested by {}{}",
        state
            .store
            .as_ref()
            .map_or("?", |s| s.custom_key_store_id.as_str()),
        state
            .store
            .as_ref()
            .map_or("?", |s| s.custom_key_store_type.as_str()),
        plan.keys_in_store,
        plan.keys_by_state,
        request.map_or(0, |r| r.pending_window_in_days),
        plan.last_use
            .as_ref()
            .map_or("not checked", |u| u.verdict.as_str()),
        request
            .and_then(|r| r.requested_by.as_deref())
            .unwrap_or("unknown"),
        request
            .and_then(|r| r.ticket_id.as_deref())
            .map(|t| format!(" (ticket {t})"))
            .unwrap_or_default(),
    )
}

/// record-approval: checks and records who approved.
pub async fn record(
    ctx: &StepContext,
    mut state: DecommissionState,
    _deadline: Deadline,
) -> Result<DecommissionState, DecommissionError> {
    Step::RecordApproval.check_document(&state)?;
    let execution = state.execution_id()?.to_owned();
    let store_id = require_planned_store(&state)?.custom_key_store_id.clone();
    // The answer the document carries is whatever the invoker wrote; the one that counts is
    // in the document Step Functions entered RecordApproval with.
    state.other.remove(ANSWER_FIELD);
    let position = in_state(ctx, Step::RecordApproval, &execution, RECORD_STATE).await?;
    let answer = position
        .entered_with
        .as_ref()
        .and_then(|document| document.get(ANSWER_FIELD))
        .cloned()
        .unwrap_or(Value::Null);
    let invalid = |reason: String| DecommissionError::InvalidApproval { reason };
    if !answer.is_object() {
        return Err(invalid(format!(
            "the answer given with SendTaskSuccess must be a JSON object with ApprovedBy, got {answer}"
        )));
    }
    let given: ApprovalAnswer = read_object(&answer, ANSWER_FIELDS)
        .map_err(|e: FieldError| invalid(format!("field {}: {}", e.field, e.reason)))?;
    let approver = given
        .approved_by
        .map(|a| a.0)
        .filter(|a| !a.trim().is_empty())
        .ok_or_else(|| invalid("ApprovedBy is required: who approves".into()))?;
    let via = given
        .via
        .map_or_else(|| "SendTaskSuccess".to_owned(), |v| v.0);
    let run = ctx
        .ledger
        .run_record(&store_id, &execution)
        .await?
        .ok_or_else(|| DecommissionError::invalid_state("the ledger has no record of this run"))?;
    if same_person(run.requested_by.as_deref(), &approver) {
        return Err(DecommissionError::ApprovalBySameRequester { store_id, approver });
    }
    let now = Timestamp::floor(ctx.clock.now());
    let recorded = ctx
        .ledger
        .record_approval(&store_id, &execution, &approver, &via, now)
        .await?;
    if !recorded && run.approved_by.as_deref() != Some(approver.as_str()) {
        return Err(DecommissionError::invalid_state(
            "the ledger does not show this run waiting for approval",
        ));
    }
    tracing::info!(
        custom_key_store_id = store_id.as_str(),
        execution = execution.as_str(),
        approved_by = approver.as_str(),
        via = via.as_str(),
        "approved"
    );
    if let Some(approval) = state.approval.as_mut() {
        approval.approved = true;
        approval.approved_by = Some(approver);
        approval.approved_at = Some(now);
    }
    Ok(state)
}

/// The execution's position, if it is in state `expected`; else `NotTheRunningDecommission`.
async fn in_state(
    ctx: &StepContext,
    step: Step,
    execution: &str,
    expected: &str,
) -> Result<HistoryPosition, DecommissionError> {
    let position = ctx
        .runs
        .position(execution)
        .await
        .map_err(step_functions_unavailable)?;
    match position {
        Some(position) if position.state == expected => Ok(position),
        Some(position) => Err(not_the_run(
            step,
            execution,
            format!(
                "the execution is in state {}, not {expected}: {} acts only as that state's task",
                position.state,
                step.binary_name()
            ),
        )),
        None => Err(not_the_run(
            step,
            execution,
            "the execution's history shows no state entered".into(),
        )),
    }
}

fn not_the_run(step: Step, execution: &str, reason: String) -> DecommissionError {
    DecommissionError::NotTheRunningDecommission {
        step: step.binary_name(),
        execution: execution.to_owned(),
        reason,
    }
}

/// Whether `approver` names the requester, case and surrounding blanks ignored. A principal ARN
/// also names its user (`...:user/<path>/<name>`) or its role session (`...:assumed-role/<role>/
/// <session>`), so a tagger `arn:aws:sts::1:assumed-role/KeyAdmin/alice@example.com` and an
/// approver `alice@example.com` are one person. A run without a requester cannot get this far:
/// plan-decommission refuses it when it needs approval.
pub fn same_person(requester: Option<&str>, approver: &str) -> bool {
    let Some(requester) = requester else {
        return false;
    };
    let names = |who: &str| {
        let who = who.trim().to_lowercase();
        let short = principal_name(&who).map(str::to_owned);
        std::iter::once(who).chain(short).collect::<Vec<String>>()
    };
    let approver_names = names(approver);
    names(requester)
        .iter()
        .any(|name| approver_names.contains(name))
}

/// The user name or role session name an IAM or STS principal ARN ends with.
fn principal_name(arn: &str) -> Option<&str> {
    let parsed = crate::arn::Arn::parse(arn)?;
    let name = match parsed.service {
        "sts" => parsed
            .resource
            .strip_prefix("assumed-role/")?
            .split('/')
            .nth(1)?,
        "iam" => parsed.resource.strip_prefix("user/")?.rsplit('/').next()?,
        _ => return None,
    };
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_requester_cannot_approve_whatever_the_case() {
        assert!(same_person(Some("alice@example.com"), " Alice@Example.com"));
        assert!(!same_person(Some("alice@example.com"), "bob@example.com"));
        assert!(!same_person(None, "bob@example.com"));
    }

    #[test]
    fn a_principal_arn_and_its_user_or_session_name_are_the_same_person() {
        let session = "arn:aws:sts::111122223333:assumed-role/KeyAdmin/Alice@example.com";
        assert!(same_person(Some(session), "alice@example.com"));
        assert!(same_person(Some("alice@example.com"), session));
        assert!(same_person(
            Some(session),
            "arn:aws:sts::111122223333:assumed-role/OtherRole/alice@example.com"
        ));
        assert!(same_person(
            Some("arn:aws:iam::111122223333:user/ops/carol"),
            "CAROL"
        ));
        assert!(!same_person(Some(session), "bob@example.com"));
        assert!(!same_person(Some(session), "KeyAdmin"));
        assert!(!same_person(
            Some("arn:aws:iam::111122223333:role/KeyAdmin"),
            "KeyAdmin"
        ));
    }
}
