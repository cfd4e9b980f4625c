//! `state_document`: what every step function does with its payload before it acts:
//! [`document_of`] (request-approval's task wrapper), [`DecommissionState::from_value`], the
//! checks of [`Step::check_document`], and the reports built from a document
//! ([`DecommissionState::dry_run_report`], [`DecommissionState::final_report`]).
//!
//! Properties: a document that does not read is `InvalidStateDocument`; one that reads writes
//! back to a document that reads to the same value and writes the same way again; the plan
//! accepts a document exactly when its `Input` is a valid execution input; a later step accepts
//! only a real run (never a dry run) of the planned store, and never out of order: nothing after
//! the approval without an approval that was required, nothing after the quarantine before it is
//! done, no scheduling before the store is ready, no disconnect before every key is deleted
//! (which would orphan CloudHSM key material), no delete before the disconnect; a refusal is
//! `InvalidStateDocument` (the plan's: `InvalidInput`); reports never panic and serialise.

use std::time::{Duration, UNIX_EPOCH};

use kms_decommission::handler::document_of;
use kms_decommission::report::Outcome;
use kms_decommission::request::DecommissionRequest;
use kms_decommission::state::{DecommissionState, QuarantinePhase};
use kms_decommission::steps::flow::{require_planned_store, Step};
use serde_json::Value;

use super::mutate::{mutate_json, Rng, COMMON_WORDS};
use super::{Target, Verdict};

/// The target.
pub const TARGET: Target = Target {
    name: "state_document",
    what:
        "handler::document_of, state::DecommissionState::from_value, Step::check_document, reports",
    bounded_cases: 16_000,
    run,
    mutate,
};

const WORDS: &[&str] = &[
    "Input",
    "Execution",
    "Id",
    "Name",
    "StartTime",
    "Request",
    "Store",
    "Plan",
    "Approval",
    "Quarantine",
    "Connection",
    "Scheduling",
    "Deletion",
    "Disconnect",
    "Report",
    "Document",
    "TaskToken",
    "ApprovalTaskToken",
    "Done",
    "Required",
    "Approved",
    "ApprovedBy",
    "TimeoutSeconds",
    "Phase",
    "Disconnecting",
    "Watching",
    "Reconnecting",
    "Next",
    "Poll",
    "WaitForCheck",
    "Ready",
    "ScanDone",
    "AllDeleted",
    "Disconnected",
    "ConnectionState",
    "CONNECTED",
    "DISCONNECTED",
    "FAILED",
    "CustomKeyStoreType",
    "AWS_CLOUDHSM",
    "EXTERNAL_KEY_STORE",
    "KeysScheduled",
    "KeysAlreadyPending",
    "KeysInStore",
    "KeysByState",
    "PendingDeletion",
    "KeysTruncated",
    "Keys",
    "Cursor",
    "WaitUntil",
    "StartedAt",
    "EndsAt",
    "LastUse",
    "Failure",
];

fn mutate(rng: &mut Rng, data: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let words = if rng.one_in(3) { COMMON_WORDS } else { WORDS };
    mutate_json(rng, data, others, words)
}

/// A fixed "now" for the reports (2026-11-28T10:00:00.5Z).
const NOW_SECONDS: u64 = 1_795_860_000;

/// Runs one input: JSON bytes, a step's payload.
pub fn run(data: &[u8]) -> Verdict {
    let Ok(payload) = serde_json::from_slice::<Value>(data) else {
        return Verdict::Malformed;
    };
    let mut verdict = Verdict::Refused;
    // request-approval unwraps its task payload; every other step reads the payload as it is.
    for (first, steps) in [
        (Step::PlanDecommission, &Step::ALL[..]),
        (Step::RequestApproval, &[Step::RequestApproval][..]),
    ] {
        let document = match document_of(first, payload.clone()) {
            Ok(document) => document,
            Err(err) => {
                assert_eq!(err.error_type(), "InvalidStateDocument", "{err}");
                continue;
            }
        };
        let state = match DecommissionState::from_value(document) {
            Ok(state) => state,
            Err(err) => {
                assert_eq!(err.error_type(), "InvalidStateDocument", "{err}");
                continue;
            }
        };
        if check_state(&state, steps) {
            verdict = Verdict::Accepted;
        }
    }
    verdict
}

/// Checks a document that read; true when some step accepts it.
fn check_state(state: &DecommissionState, steps: &[Step]) -> bool {
    let written = state
        .to_value()
        .unwrap_or_else(|e| panic!("a document that reads does not write: {e}"));
    let again = DecommissionState::from_value(written.clone())
        .unwrap_or_else(|e| panic!("{written}: the written document does not read: {e}"));
    assert_eq!(&again, state, "{written}");
    assert_eq!(
        again.to_value().ok(),
        Some(written.clone()),
        "writing is stable"
    );

    let mut accepted = false;
    for &step in steps {
        let checked = step.check_document(state);
        if step == Step::PlanDecommission {
            let input = DecommissionRequest::from_input(&state.input);
            assert_eq!(checked.is_ok(), input.is_ok(), "{written}");
            if let Err(err) = &checked {
                assert_eq!(err.error_type(), "InvalidInput", "{err}");
            }
            accepted |= checked.is_ok();
            continue;
        }
        match checked {
            Err(err) => assert_eq!(err.error_type(), "InvalidStateDocument", "{step:?}: {err}"),
            Ok(()) => {
                accepted = true;
                check_order(step, state, &written);
            }
        }
    }

    let now = UNIX_EPOCH + Duration::from_millis(NOW_SECONDS * 1000 + 500);
    for report in [
        state.dry_run_report(now),
        state.final_report(Outcome::Deleted, now),
    ]
    .into_iter()
    .flatten()
    {
        let value = serde_json::to_value(&report).expect("a report serialises");
        assert_eq!(
            value["FinishedAt"],
            Value::String("2026-11-28T10:00:00Z".into()),
            "{value}"
        );
        assert_eq!(
            Some(&report.custom_key_store_id),
            state.store.as_ref().map(|s| &s.custom_key_store_id)
        );
    }
    accepted
}

/// What a later step's acceptance of `state` implies.
fn check_order(step: Step, state: &DecommissionState, written: &Value) {
    let position = |s: Step| Step::ALL.iter().position(|x| *x == s);
    let after = |s: Step| position(step) > position(s);
    let request = state
        .require_real_run()
        .unwrap_or_else(|e| panic!("{step:?} accepted a document without a real run: {e}"));
    assert!(!request.dry_run, "{step:?} accepted a dry run: {written}");
    require_planned_store(state)
        .unwrap_or_else(|e| panic!("{step:?} accepted a document of another store: {e}"));
    assert!(
        state.plan.as_ref().is_some_and(|p| p.done),
        "{step:?} accepted an unfinished plan: {written}"
    );
    if after(Step::RecordApproval) {
        assert!(
            state
                .approval
                .as_ref()
                .is_none_or(|a| !a.required || a.approved),
            "{step:?} accepted a run waiting for approval: {written}"
        );
    }
    if after(Step::QuarantineStore) {
        assert!(
            state
                .quarantine
                .as_ref()
                .is_none_or(|q| !q.required || q.phase == QuarantinePhase::Done),
            "{step:?} accepted a run in quarantine: {written}"
        );
    }
    if after(Step::EnsureStoreConnected) {
        assert!(state.execution_id().is_ok(), "{step:?}: {written}");
        assert!(
            state.connection.as_ref().is_some_and(|c| c.ready),
            "{step:?} accepted a store that is not ready: {written}"
        );
    }
    if matches!(step, Step::DisconnectStore | Step::DeleteStore) {
        assert!(
            state.scheduling.as_ref().is_some_and(|s| s.done)
                && state.deletion.as_ref().is_some_and(|d| d.all_deleted),
            "{step:?} accepted a store whose keys are not all deleted: {written}"
        );
    }
    if step == Step::DeleteStore {
        assert!(
            state.disconnect.as_ref().is_some_and(|d| d.disconnected),
            "delete-store accepted a store that is not disconnected: {written}"
        );
    }
}
