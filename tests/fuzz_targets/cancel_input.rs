//! `cancel_input`: [`CancelRequest::from_input`] (the cancel state machine's input) and the
//! cancel document [`CancelState`] the cancel-decommission function reads on every invocation
//! (whose `Input` it validates the same way).
//!
//! Properties: a refusal is `InvalidInput` naming `$`, a cancel field or a field of the input;
//! an accepted request names a valid store and a Step Functions execution ARN, its free text has
//! no control characters, its `cause` (sent to StopExecution) stays on one line and names the
//! store, and it reads back from its own fields; a cancel document that reads re-serialises to a
//! document that reads back to the same value, and serialises the same way again.

use kms_decommission::arn::Arn;
use kms_decommission::cancel::step::CancelState;
use kms_decommission::cancel::CancelRequest;
use kms_decommission::error::DecommissionError;
use kms_decommission::request::validate_custom_key_store_id;
use serde_json::{json, Value};

use super::mutate::{mutate_json, Rng, COMMON_WORDS};
use super::{is_free_text, Target, Verdict};

/// The target.
pub const TARGET: Target = Target {
    name: "cancel_input",
    what: "cancel::CancelRequest::from_input, cancel::step::CancelState",
    bounded_cases: 75_000,
    run,
    mutate,
};

/// The cancel input's fields (docs/cancel.md).
const CANCEL_FIELDS: &[&str] = &[
    "CustomKeyStoreId",
    "DecommissionExecutionArn",
    "TicketId",
    "RequestedBy",
    "Reason",
];

const WORDS: &[&str] = &[
    "Input",
    "Cancel",
    "Report",
    "Execution",
    "DecommissionStatus",
    "RUNNING",
    "StoppedByThisCancel",
    "SettleUntil",
    "Cursor",
    "ScanStartedAt",
    "KeysRestored",
    "Done",
    "WaitRequired",
    "WaitSeconds",
    "ReconnectStore",
    "Outcome",
    "FollowUps",
];

fn mutate(rng: &mut Rng, data: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let words = if rng.one_in(3) { WORDS } else { COMMON_WORDS };
    mutate_json(rng, data, others, words)
}

/// Runs one input: JSON bytes, a cancel input or a cancel document.
pub fn run(data: &[u8]) -> Verdict {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return Verdict::Malformed;
    };
    let mut verdict = check_input(&value);
    if let Ok(state) = serde_json::from_value::<CancelState>(value.clone()) {
        let written = serde_json::to_value(&state).expect("a cancel document serialises");
        let again: CancelState = serde_json::from_value(written.clone())
            .unwrap_or_else(|e| panic!("{written}: the written cancel document is refused: {e}"));
        assert_eq!(again, state, "{written}");
        assert_eq!(
            serde_json::to_value(&again).expect("serialises"),
            written,
            "writing is stable"
        );
        if value.get("Input").is_some() {
            verdict = check_input(&state.input);
        }
    }
    verdict
}

fn check_input(input: &Value) -> Verdict {
    match CancelRequest::from_input(input) {
        Err(err) => {
            let DecommissionError::InvalidInput { field, .. } = &err else {
                panic!("{input}: refused with {err:?}, not InvalidInput");
            };
            assert!(
                field == "$"
                    || CANCEL_FIELDS.contains(&field.as_str())
                    || input.get(field).is_some(),
                "{input}: the refusal names field {field:?}"
            );
            Verdict::Refused
        }
        Ok(request) => {
            validate_custom_key_store_id(&request.custom_key_store_id)
                .unwrap_or_else(|e| panic!("accepted an invalid store id: {e}"));
            assert!(
                Arn::parse(&request.decommission_execution_arn)
                    .and_then(|a| a.execution_names())
                    .is_some(),
                "accepted {:?} as an execution ARN",
                request.decommission_execution_arn
            );
            for text in [
                Some(&request.decommission_execution_arn),
                request.ticket_id.as_ref(),
                request.requested_by.as_ref(),
                request.reason.as_ref(),
            ]
            .into_iter()
            .flatten()
            {
                assert!(is_free_text(text), "accepted free text {text:?}");
            }
            let cause = request.cause();
            assert!(!cause.chars().any(char::is_control), "{cause:?}");
            assert!(cause.contains(&request.custom_key_store_id), "{cause:?}");
            let fields = json!({
                "CustomKeyStoreId": request.custom_key_store_id,
                "DecommissionExecutionArn": request.decommission_execution_arn,
                "TicketId": request.ticket_id,
                "RequestedBy": request.requested_by,
                "Reason": request.reason,
            });
            let again = CancelRequest::from_input(&fields)
                .unwrap_or_else(|e| panic!("{fields}: the request's own fields are refused: {e}"));
            assert_eq!(again, request);
            Verdict::Accepted
        }
    }
}
