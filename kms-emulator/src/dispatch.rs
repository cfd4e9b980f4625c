//! One call from target header and body to outcome: operation lookup, quotas, faults, execution,
//! the call log and (for KMS calls) the CloudTrail record, all under one lock of the state.

use std::time::Instant;

use serde_json::{json, Value};

use crate::calls::CallRecord;
use crate::cloudtrail::{self, CloudTrailError, LookupRequest, TrailEvent};
use crate::error::{ErrorCode, KmsError};
use crate::identity::Principal;
use crate::logs::{self, LogsError};
use crate::ops::{self, Operation, Outcome, RequestContext};
use crate::state::State;
use crate::wire::Input;

/// The awsJson1_1 target prefix of KMS.
pub const TARGET_PREFIX: &str = "TrentService.";

/// Handles one KMS call against the (already settled) state and records it in the call log and,
/// when the target names a KMS operation, in CloudTrail.
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
    let trailed =
        target.is_some_and(|t| t.starts_with(TARGET_PREFIX)) && !operation_name.is_empty();
    let draft = trailed.then(|| draft_event(state, &operation_name, parsed.as_ref().ok(), ctx));
    let result = run(
        state,
        target,
        &operation_name,
        parsed.as_ref().map_err(Clone::clone),
        ctx,
    );
    let outcome = match &result {
        Ok(_) => "OK".to_string(),
        Err(e) => e.code.name().to_string(),
    };
    let created = result.as_ref().ok().and_then(|o| o.created_key_id.clone());
    if let Some(mut event) = draft {
        if let Some(id) = &created {
            event.resources = vec![crate::ids::key_arn(
                &state.config.region,
                &state.config.account_id,
                id,
            )];
        }
        event.error = result
            .as_ref()
            .err()
            .map(|e| (e.code.name().to_string(), e.message.clone()));
        let oldest = state.trail_window().oldest;
        state.trail.record(event, oldest);
    }
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

/// The CloudTrail record of a KMS call as it stands before the call runs: who, what, and the key
/// the request resolves to (the outcome is filled in afterwards).
fn draft_event(
    state: &State,
    operation: &str,
    input: Option<&Input>,
    ctx: &RequestContext,
) -> TrailEvent {
    let access_key_id = ctx.caller.access_key_id.as_deref();
    let (principal, since) = state.principal_for(access_key_id);
    let key = input
        .and_then(|input| resolved_key(state, operation, input))
        .and_then(|id| state.key(&id));
    let additional_event_data = key
        .filter(|_| cloudtrail::is_cryptographic(operation))
        .and_then(|k| {
            let store = k.custom_key_store_id.as_ref()?;
            let mut data = json!({ "customKeyStoreId": store });
            if let Some(xks) = &k.xks_key_id {
                data["xksKeyId"] = json!(xks);
            }
            Some(data)
        });
    TrailEvent {
        seq: 0,
        time: state.now(),
        event_id: ctx.event_id.clone(),
        event_name: operation.to_string(),
        access_key_id: access_key_id.map(String::from),
        username: principal.username().to_string(),
        user_identity: identity_of(&principal, access_key_id, since),
        source_ip: ctx.caller.source_ip.clone(),
        user_agent: ctx.caller.user_agent.clone(),
        request_parameters: input
            .map(|input| cloudtrail::request_parameters(operation, input.members()))
            .unwrap_or(Value::Null),
        additional_event_data,
        error: None,
        request_id: ctx.request_id.clone(),
        resources: key.map(|k| vec![k.arn.clone()]).unwrap_or_default(),
        region: state.config.region.clone(),
        account_id: state.config.account_id.clone(),
        service_record: None,
    }
}

fn identity_of(principal: &Principal, access_key_id: Option<&str>, since: f64) -> Value {
    principal.user_identity(access_key_id, &cloudtrail::iso8601(since.floor() as i64))
}

/// The existing key a request names (`KeyId`, `TargetKeyId`, or for Decrypt the key of the
/// ciphertext), for the CloudTrail `resources`.
fn resolved_key(state: &State, operation: &str, input: &Input) -> Option<String> {
    match input
        .raw_string("KeyId")
        .or_else(|| input.raw_string("TargetKeyId"))
    {
        Some(raw) => state.resolve_key(raw, true).ok(),
        None if operation == "Decrypt" => {
            ops::ciphertext_key_id(input).filter(|id| state.key(id).is_some())
        }
        None => None,
    }
}

/// Handles one CloudTrail call (the part of X-Amz-Target after the CloudTrail prefix) against the
/// (already settled) state and records it in the call log (not in CloudTrail).
pub fn handle_cloudtrail_call(
    state: &mut State,
    operation: &str,
    body: &[u8],
) -> Result<Value, CloudTrailError> {
    let result = run_cloudtrail(state, operation, body);
    record_service_call(
        state,
        operation,
        result.as_ref().err().map(|e| e.code.to_string()),
    );
    result
}

/// Logs a call to a service other than KMS (no key, no store): `error` is its error code.
fn record_service_call(state: &mut State, operation: &str, error: Option<String>) {
    let time = state.now();
    state.calls.record(CallRecord {
        seq: 0,
        time,
        operation: operation.to_string(),
        key_id: None,
        custom_key_store_id: None,
        outcome: error.unwrap_or_else(|| "OK".to_string()),
    });
}

/// Handles one CloudWatch Logs Insights call (StartQuery, GetQueryResults, StopQuery) over the
/// CloudTrail records delivered so far, and records it in the call log (not in CloudTrail).
pub fn handle_logs_call(
    state: &mut State,
    operation: &str,
    body: &[u8],
) -> Result<Value, LogsError> {
    let result = run_logs(state, operation, body);
    record_service_call(
        state,
        operation,
        result.as_ref().err().map(|e| e.code.to_string()),
    );
    result
}

fn run_logs(state: &mut State, operation: &str, body: &[u8]) -> Result<Value, LogsError> {
    let members = logs::parse_body(body)?;
    if let Some(fault) = state.faults.check_named(operation) {
        return Err(LogsError::injected(&fault));
    }
    match operation {
        "StartQuery" => {
            let window = state.trail_window();
            let State { trail, queries, .. } = state;
            queries.start(&members, trail.events().filter(|e| window.contains(e)))
        }
        "GetQueryResults" => state.queries.results(&members),
        _ => state.queries.stop(&members),
    }
}

fn run_cloudtrail(
    state: &mut State,
    operation: &str,
    body: &[u8],
) -> Result<Value, CloudTrailError> {
    if operation != cloudtrail::LOOKUP_EVENTS {
        return Err(CloudTrailError::unknown_operation(operation));
    }
    let members = cloudtrail::parse_body(body)?;
    if state.config.quotas
        && !state.quotas.try_acquire(
            cloudtrail::LOOKUP_EVENTS,
            cloudtrail::LOOKUP_EVENTS_RATE,
            Instant::now(),
        )
    {
        return Err(CloudTrailError::throttling());
    }
    if let Some(fault) = state.faults.check_named(cloudtrail::LOOKUP_EVENTS) {
        return Err(CloudTrailError::injected(&fault));
    }
    let request = LookupRequest::from_members(&members)?;
    let window = state.trail_window();
    state.trail.lookup(&request, window)
}

fn run(
    state: &mut State,
    target: Option<&str>,
    operation_name: &str,
    parsed: Result<&Input, KmsError>,
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
    ops::execute(state, operation, input, ctx)
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
