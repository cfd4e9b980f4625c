//! One KMS call from target header and body to outcome: operation lookup, quotas, faults,
//! execution and the call log, all under one lock of the state.

use std::time::Instant;

use crate::calls::CallRecord;
use crate::error::{ErrorCode, KmsError};
use crate::ops::{self, Operation, Outcome, RequestContext};
use crate::state::State;
use crate::wire::Input;

/// The awsJson1_1 target prefix of KMS.
pub const TARGET_PREFIX: &str = "TrentService.";

/// Handles one KMS call against the (already settled) state and records it in the call log.
pub fn handle_call(
    state: &mut State,
    target: Option<&str>,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Outcome, KmsError> {
    let operation_name = target
        .map(|t| t.strip_prefix(TARGET_PREFIX).unwrap_or(t).to_string())
        .unwrap_or_default();
    let parsed = Input::parse(body);
    let (key_id, store_id) = match &parsed {
        Ok(input) => subject(state, input),
        Err(_) => (None, None),
    };
    let result = run(state, target, &operation_name, parsed, ctx);
    let outcome = match &result {
        Ok(_) => "OK".to_string(),
        Err(e) => e.code.name().to_string(),
    };
    let created = result.as_ref().ok().and_then(|o| o.created_key_id.clone());
    let time = state.now();
    state.calls.record(CallRecord {
        seq: 0,
        time,
        operation: operation_name,
        key_id: created.or(key_id),
        custom_key_store_id: store_id,
        outcome,
    });
    result
}

fn run(
    state: &mut State,
    target: Option<&str>,
    operation_name: &str,
    parsed: Result<Input, KmsError>,
    ctx: &RequestContext,
) -> Result<Outcome, KmsError> {
    let operation = target
        .filter(|t| t.starts_with(TARGET_PREFIX))
        .and_then(|_| Operation::from_name(operation_name))
        .ok_or_else(|| {
            KmsError::new(
                ErrorCode::UnknownOperation,
                match target {
                    None => {
                        "Missing X-Amz-Target header; expected TrentService.<Operation>".to_string()
                    }
                    Some(t) => format!("Unknown operation {t}"),
                },
            )
        })?;
    let input = parsed?;
    if state.config.quotas {
        let (quota, rate) = operation.quota(&state.config.region);
        if !state.quotas.try_acquire(quota, rate, Instant::now()) {
            return Err(KmsError::throttling());
        }
    }
    if let Some(fault) = state.faults.check(operation.name()) {
        return Err(fault);
    }
    ops::execute(state, operation, &input, ctx)
}

/// The key and custom key store a request names, for the call log.
fn subject(state: &State, input: &Input) -> (Option<String>, Option<String>) {
    let key_id = input
        .raw_string("KeyId")
        .or_else(|| input.raw_string("TargetKeyId"))
        .map(|raw| state.key_id_for_log(raw));
    let store_id = input
        .raw_string("CustomKeyStoreId")
        .map(String::from)
        .or_else(|| {
            key_id
                .as_deref()
                .and_then(|id| state.key(id))
                .and_then(|k| k.custom_key_store_id.clone())
        });
    (key_id, store_id)
}
