//! `execution_input`: [`DecommissionRequest::from_input`], the console contract every run starts
//! from (the webhook's `start` and the tag trigger build the same input).
//!
//! Properties: a refusal is `InvalidInput` naming `$`, an accepted field or a field of the
//! input; an accepted request keeps every rule of the contract (store id, window 7-30, a
//! confirmation unless a dry run, free text without control characters, a tag-safe ticket,
//! bounds of the day counts); it re-serialises to an input that reads back to the same request,
//! and to the state document's `Request` section that reads back to it too; a tag-started real
//! run always needs approval, a dry run never; the execution names made from it are valid Step
//! Functions names.

use kms_decommission::error::DecommissionError;
use kms_decommission::request::{
    validate_custom_key_store_id, DecommissionRequest, RunTrigger, TriggerPolicy, INPUT_FIELDS,
};
use kms_decommission::sfn::naming::{
    is_valid_execution_name, tag_execution_name, ticket_execution_name,
};
use kms_decommission::sfn::RunMode;
use kms_decommission::triggers::tag::MAX_TAG_RUNS;
use serde_json::Value;

use super::mutate::{mutate_json, Rng, COMMON_WORDS};
use super::{is_free_text, Target, Verdict};

/// The target.
pub const TARGET: Target = Target {
    name: "execution_input",
    what: "request::DecommissionRequest::from_input",
    bounded_cases: 150_000,
    run,
    mutate,
};

fn mutate(rng: &mut Rng, data: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    mutate_json(rng, data, others, COMMON_WORDS)
}

/// Runs one input: JSON bytes, as Step Functions passes the execution input.
pub fn run(data: &[u8]) -> Verdict {
    let Ok(input) = serde_json::from_slice::<Value>(data) else {
        return Verdict::Malformed;
    };
    match DecommissionRequest::from_input(&input) {
        Err(err) => {
            check_refusal(&input, &err);
            Verdict::Refused
        }
        Ok(request) => {
            check_request(&request);
            Verdict::Accepted
        }
    }
}

/// A refusal of `input` is `InvalidInput` and names a field that means something to the sender.
pub fn check_refusal(input: &Value, err: &DecommissionError) {
    let DecommissionError::InvalidInput { field, reason } = err else {
        panic!("{input}: refused with {err:?}, not InvalidInput");
    };
    assert_eq!(err.error_type(), "InvalidInput");
    assert!(!reason.is_empty(), "{input}: {err}");
    assert!(
        field == "$" || INPUT_FIELDS.contains(&field.as_str()) || input.get(field).is_some(),
        "{input}: the refusal names field {field:?}, which is neither an accepted field nor one \
         of the input"
    );
}

/// Every rule of the contract holds of an accepted request, and it round-trips.
pub fn check_request(request: &DecommissionRequest) {
    validate_custom_key_store_id(&request.custom_key_store_id)
        .unwrap_or_else(|e| panic!("accepted an invalid store id: {e}"));
    assert!(
        (7..=30).contains(&request.pending_window_in_days),
        "{request:?}"
    );
    assert!(
        request.dry_run || request.confirm_custom_key_store_name.is_some(),
        "a real run without a confirmation: {request:?}"
    );
    if let Some(name) = &request.confirm_custom_key_store_name {
        assert!((1..=256).contains(&name.chars().count()), "{request:?}");
    }
    for text in [&request.requested_by, &request.reason, &request.ticket_id]
        .into_iter()
        .flatten()
    {
        assert!(is_free_text(text), "accepted free text {text:?}");
    }
    if let Some(ticket) = &request.ticket_id {
        assert!(
            ticket
                .chars()
                .all(|c| c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c)),
            "accepted a ticket that is no KMS tag value: {ticket:?}"
        );
        let mode = RunMode::from_dry_run(request.dry_run);
        let name = ticket_execution_name(ticket, mode);
        assert!(is_valid_execution_name(&name), "{ticket:?} -> {name:?}");
    }
    assert!(request.min_days_since_last_use <= 365, "{request:?}");
    assert!(
        request.quarantine_days.is_none_or(|d| d <= 90),
        "{request:?}"
    );

    // The request written out is an input that reads back to it: what plan-decommission keeps
    // (`Request`) and what a retried or re-read execution finds again.
    let value = serde_json::to_value(request).expect("a request serialises");
    let again = DecommissionRequest::from_input(&value)
        .unwrap_or_else(|e| panic!("{value}: the written request is refused: {e}"));
    assert_eq!(&again, request, "{value}");
    let section: DecommissionRequest =
        serde_json::from_value(value.clone()).expect("the Request section reads back");
    assert_eq!(&section, request, "{value}");

    let _ = TriggerPolicy::default().check(request);
    if request.dry_run {
        assert!(!request.needs_approval(true), "a dry run needs no approval");
    } else if request.trigger == Some(RunTrigger::Tag) {
        assert!(
            request.needs_approval(false),
            "a tag-started run needs approval"
        );
    }
    for run in [1, MAX_TAG_RUNS] {
        let mode = RunMode::from_dry_run(request.dry_run);
        let name = tag_execution_name(&request.custom_key_store_id, mode, run);
        assert!(is_valid_execution_name(&name), "{name:?}");
    }
}
