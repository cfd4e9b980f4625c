//! The admin API under `/_emulator/` for tests, benchmarks and rehearsals (a public contract,
//! documented in docs/emulator.md; caller identities and CloudTrail records in
//! kms-emulator/CLOUDTRAIL.md).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::cloudtrail;
use crate::config::ConfigPatch;
use crate::faults::FaultRequest;
use crate::identity::{self, Identity, Principal};
use crate::model::{ConnectionState, CONNECTION_ERROR_CODES};
use crate::ops::Operation;
use crate::server::Shared;

/// Errors of the admin API, answered as `{"error": "..."}`.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The request body or parameters are not valid.
    #[error("{0}")]
    BadRequest(String),
    /// No custom key store has this id.
    #[error("custom key store '{0}' does not exist")]
    StoreNotFound(String),
    /// No identity has this access key id.
    #[error("no identity has access key id '{0}'")]
    IdentityNotFound(String),
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::StoreNotFound(_) | Self::IdentityNotFound(_) => StatusCode::NOT_FOUND,
        };
        (status, Json(json!({"error": self.to_string()}))).into_response()
    }
}

type AdminResult = Result<Json<Value>, AdminError>;

fn parse_body<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, AdminError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| AdminError::BadRequest(format!("invalid JSON body: {e}")))
}

/// The admin routes.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_emulator/reset", post(reset))
        .route("/_emulator/state", get(state))
        .route("/_emulator/config", get(get_config).post(set_config))
        .route("/_emulator/clock", get(get_clock).post(advance_clock))
        .route(
            "/_emulator/faults",
            get(get_faults).post(add_fault).delete(clear_faults),
        )
        .route(
            "/_emulator/stores/{id}/connection-state",
            post(force_connection_state),
        )
        .route(
            "/_emulator/stores/{id}/connection-failure",
            post(set_connection_failure).delete(clear_connection_failure),
        )
        .route("/_emulator/calls", get(list_calls).delete(clear_calls))
        .route(
            "/_emulator/identities",
            get(list_identities).delete(clear_identities),
        )
        .route(
            "/_emulator/identities/{access_key_id}",
            put(put_identity).get(get_identity).delete(delete_identity),
        )
        .route(
            "/_emulator/cloudtrail",
            get(list_trail)
                .post(post_service_record)
                .delete(clear_trail),
        )
}

async fn reset(AxumState(shared): AxumState<Arc<Shared>>) -> AdminResult {
    shared.lock().reset();
    Ok(Json(json!({"reset": true})))
}

async fn state(AxumState(shared): AxumState<Arc<Shared>>) -> AdminResult {
    let mut state = shared.lock();
    state.settle();
    Ok(Json(state.snapshot()))
}

async fn get_config(AxumState(shared): AxumState<Arc<Shared>>) -> AdminResult {
    Ok(Json(json!(shared.lock().config)))
}

async fn set_config(AxumState(shared): AxumState<Arc<Shared>>, body: Bytes) -> AdminResult {
    let patch: ConfigPatch = parse_body(&body)?;
    let mut state = shared.lock();
    state.settle();
    state.config = patch
        .apply_to(&state.config)
        .map_err(AdminError::BadRequest)?;
    state.recompute_due();
    state.settle();
    Ok(Json(json!(state.config)))
}

fn clock_json(state: &crate::state::State) -> Value {
    json!({"now": state.now(), "clock_offset_seconds": state.clock_offset_emulated_seconds()})
}

async fn get_clock(AxumState(shared): AxumState<Arc<Shared>>) -> AdminResult {
    Ok(Json(clock_json(&shared.lock())))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockRequest {
    advance_seconds: Option<f64>,
}

async fn advance_clock(AxumState(shared): AxumState<Arc<Shared>>, body: Bytes) -> AdminResult {
    let request: ClockRequest = parse_body(&body)?;
    let seconds = request
        .advance_seconds
        .ok_or_else(|| AdminError::BadRequest("advance_seconds is required".into()))?;
    if !(seconds.is_finite() && seconds >= 0.0) {
        return Err(AdminError::BadRequest(
            "advance_seconds must be a non-negative number of emulated seconds".into(),
        ));
    }
    let mut state = shared.lock();
    state.settle();
    state.advance_clock(seconds);
    Ok(Json(clock_json(&state)))
}

async fn get_faults(AxumState(shared): AxumState<Arc<Shared>>) -> AdminResult {
    Ok(Json(json!(shared.lock().faults)))
}

async fn add_fault(AxumState(shared): AxumState<Arc<Shared>>, body: Bytes) -> AdminResult {
    let request: FaultRequest = parse_body(&body)?;
    let mut state = shared.lock();
    state
        .faults
        .add(&request, |op| {
            Operation::from_name(op).is_some() || op == cloudtrail::LOOKUP_EVENTS
        })
        .map_err(AdminError::BadRequest)?;
    Ok(Json(json!(state.faults)))
}

async fn clear_faults(AxumState(shared): AxumState<Arc<Shared>>) -> AdminResult {
    let mut state = shared.lock();
    state.faults = Default::default();
    Ok(Json(json!(state.faults)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectionStateRequest {
    state: Option<String>,
    error_code: Option<String>,
    for_seconds: Option<f64>,
}

fn check_error_code(code: &str) -> Result<(), AdminError> {
    if CONNECTION_ERROR_CODES.contains(&code) {
        Ok(())
    } else {
        Err(AdminError::BadRequest(format!(
            "error_code must be one of {}",
            CONNECTION_ERROR_CODES.join(", ")
        )))
    }
}

async fn force_connection_state(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> AdminResult {
    let request: ConnectionStateRequest = parse_body(&body)?;
    let name = request
        .state
        .ok_or_else(|| AdminError::BadRequest("state is required".into()))?;
    let target = ConnectionState::parse(&name).ok_or_else(|| {
        AdminError::BadRequest(
            "state must be CONNECTED, CONNECTING, FAILED, DISCONNECTED or DISCONNECTING".into(),
        )
    })?;
    match (&target, &request.error_code) {
        (ConnectionState::Failed, Some(code)) => check_error_code(code)?,
        (ConnectionState::Failed, None) => {
            return Err(AdminError::BadRequest(
                "state FAILED needs an error_code".into(),
            ))
        }
        (_, Some(_)) => {
            return Err(AdminError::BadRequest(
                "error_code goes only with state FAILED".into(),
            ))
        }
        _ => {}
    }
    let transient = matches!(
        target,
        ConnectionState::Connecting | ConnectionState::Disconnecting
    );
    if let Some(seconds) = request.for_seconds {
        if !transient {
            return Err(AdminError::BadRequest(
                "for_seconds goes only with CONNECTING or DISCONNECTING".into(),
            ));
        }
        if !(seconds.is_finite() && seconds >= 0.0) {
            return Err(AdminError::BadRequest(
                "for_seconds must be a non-negative number".into(),
            ));
        }
    }
    let mut state = shared.lock();
    state.settle();
    let store_type = state
        .store(&id)
        .ok_or_else(|| AdminError::StoreNotFound(id.clone()))?
        .store_type;
    let until = match (target, request.for_seconds) {
        (_, Some(seconds)) => Some(state.now() + state.scaled(seconds)),
        (ConnectionState::Connecting, None) => Some(state.now() + state.connect_delay(store_type)),
        (ConnectionState::Disconnecting, None) => Some(state.now() + state.disconnect_delay()),
        _ => None,
    };
    if let Some(store) = state.store_mut(&id) {
        store.state = target;
        store.error_code = request.error_code;
        store.transition_until = until;
    }
    state.recompute_due();
    state.settle();
    let store = state.store(&id).map(|s| json!(s)).unwrap_or(Value::Null);
    Ok(Json(store))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectionFailureRequest {
    error_code: Option<String>,
}

async fn set_connection_failure(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> AdminResult {
    let request: ConnectionFailureRequest = parse_body(&body)?;
    let code = request
        .error_code
        .ok_or_else(|| AdminError::BadRequest("error_code is required".into()))?;
    check_error_code(&code)?;
    let mut state = shared.lock();
    let store = state
        .store_mut(&id)
        .ok_or_else(|| AdminError::StoreNotFound(id.clone()))?;
    store.connection_failure = Some(code);
    Ok(Json(json!(store)))
}

async fn clear_connection_failure(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(id): Path<String>,
) -> AdminResult {
    let mut state = shared.lock();
    let store = state
        .store_mut(&id)
        .ok_or_else(|| AdminError::StoreNotFound(id.clone()))?;
    store.connection_failure = None;
    Ok(Json(json!(store)))
}

async fn list_calls(
    AxumState(shared): AxumState<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> AdminResult {
    let after = match query.get("after") {
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| AdminError::BadRequest("after must be a call seq number".into()))?,
        None => 0,
    };
    let state = shared.lock();
    let calls = state
        .calls
        .list(after, query.get("operation").map(String::as_str));
    Ok(Json(
        json!({"calls": calls, "dropped": state.calls.dropped()}),
    ))
}

async fn clear_calls(AxumState(shared): AxumState<Arc<Shared>>) -> AdminResult {
    shared.lock().calls.clear();
    Ok(Json(json!({"calls": []})))
}

fn identity_json(access_key_id: &str, identity: &Identity) -> Value {
    json!({
        "AccessKeyId": access_key_id,
        "Arn": identity.principal.arn(),
        "userIdentity": identity.principal.user_identity(
            Some(access_key_id),
            &cloudtrail::iso8601(identity.since.floor() as i64),
        ),
    })
}

async fn list_identities(AxumState(shared): AxumState<Arc<Shared>>) -> AdminResult {
    let state = shared.lock();
    let identities: Vec<Value> = state
        .identities
        .iter()
        .map(|(id, identity)| identity_json(id, identity))
        .collect();
    let (default, _) = state.principal_for(None);
    Ok(Json(json!({
        "identities": identities,
        "default": {"Arn": default.arn()},
        "unknown_access_keys": format!("arn:aws:iam::{}:user/<AccessKeyId>", state.config.account_id),
    })))
}

async fn clear_identities(AxumState(shared): AxumState<Arc<Shared>>) -> AdminResult {
    shared.lock().identities.clear();
    Ok(Json(json!({"identities": []})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityRequest {
    #[serde(rename = "Arn")]
    arn: Option<String>,
}

async fn put_identity(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(access_key_id): Path<String>,
    body: Bytes,
) -> AdminResult {
    identity::check_access_key_id(&access_key_id).map_err(AdminError::BadRequest)?;
    let request: IdentityRequest = parse_body(&body)?;
    let arn = request
        .arn
        .ok_or_else(|| AdminError::BadRequest("Arn is required".into()))?;
    let principal = Principal::parse(&arn).map_err(AdminError::BadRequest)?;
    let mut state = shared.lock();
    let identity = Identity {
        principal,
        since: state.now(),
    };
    let answer = identity_json(&access_key_id, &identity);
    state.identities.insert(access_key_id, identity);
    Ok(Json(answer))
}

async fn get_identity(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(access_key_id): Path<String>,
) -> AdminResult {
    let state = shared.lock();
    let identity = state
        .identities
        .get(&access_key_id)
        .ok_or_else(|| AdminError::IdentityNotFound(access_key_id.clone()))?;
    Ok(Json(identity_json(&access_key_id, identity)))
}

async fn delete_identity(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(access_key_id): Path<String>,
) -> AdminResult {
    let mut state = shared.lock();
    let identity = state
        .identities
        .remove(&access_key_id)
        .ok_or_else(|| AdminError::IdentityNotFound(access_key_id.clone()))?;
    Ok(Json(identity_json(&access_key_id, &identity)))
}

async fn list_trail(AxumState(shared): AxumState<Arc<Shared>>) -> AdminResult {
    let state = shared.lock();
    let window = state.trail_window();
    let events: Vec<Value> = state
        .trail
        .events()
        .filter(|event| event.time >= window.oldest)
        .map(|event| {
            json!({
                "seq": event.seq,
                "delivered": event.time <= window.delivered_until,
                "record": event.record(),
            })
        })
        .collect();
    Ok(Json(
        json!({"events": events, "dropped": state.trail.dropped()}),
    ))
}

/// Records a call to another AWS service (the emulator serves KMS only): `{"record": {...}}`,
/// a CloudTrail record naming its `eventSource`, `eventName` and `userIdentity`; made now, under
/// a new event id, delivered after the delivery delay like any record. Answers
/// `{"eventID": ..., "seq": ...}`.
async fn post_service_record(
    AxumState(shared): AxumState<Arc<Shared>>,
    body: Bytes,
) -> AdminResult {
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| AdminError::BadRequest(format!("invalid JSON body: {e}")))?;
    let record = body
        .get("record")
        .filter(|r| r.is_object())
        .cloned()
        .ok_or_else(|| {
            AdminError::BadRequest("record (a CloudTrail record object) is required".into())
        })?;
    let mut state = shared.lock();
    state.settle();
    let now = state.now();
    let event = crate::cloudtrail::service_event(
        record,
        now,
        &state.config.region,
        &state.config.account_id,
    )
    .map_err(AdminError::BadRequest)?;
    let event_id = event.event_id.clone();
    let oldest = state.trail_window().oldest;
    state.trail.record(event, oldest);
    let seq = state.trail.events().last().map(|e| e.seq);
    Ok(Json(json!({"eventID": event_id, "seq": seq})))
}

async fn clear_trail(AxumState(shared): AxumState<Arc<Shared>>) -> AdminResult {
    shared.lock().trail.clear();
    Ok(Json(json!({"events": []})))
}
