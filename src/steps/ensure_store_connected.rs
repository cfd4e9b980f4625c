//! ensure-store-connected: drive a CloudHSM store to CONNECTED for the waiting period (a FAILED
//! store is disconnected first, as KMS requires); an external key store is left as it is.
//! One action per invocation; the state machine waits `PollAfterSeconds` between invocations.

use aws_sdk_kms::types::ConnectionStateType;

use crate::clock::seconds_between;
use crate::deadline::Deadline;
use crate::error::{DecommissionError, KmsErrorCode, TRANSIENT_KMS_CODES};
use crate::model::{StoreType, Timestamp};
use crate::state::{ConnectionStatus, DecommissionState};
use crate::steps::context::StepContext;
use crate::steps::flow::{require_planned_store, Step};
use crate::store;

/// ConnectionErrorCodes KMS documents as transient: disconnect and connect again.
const TRANSIENT_CONNECTION_ERRORS: &[&str] = &["INTERNAL_ERROR", "NETWORK_ERRORS"];

/// Runs one poll of the connection.
pub async fn run(
    ctx: &StepContext,
    mut state: DecommissionState,
    _deadline: Deadline,
) -> Result<DecommissionState, DecommissionError> {
    Step::EnsureStoreConnected.check_document(&state)?;
    let request = state.require_real_run()?.clone();
    let store_id = require_planned_store(&state)?.custom_key_store_id.clone();
    let execution = state.execution.as_ref().map(|e| e.id.clone());
    let now = ctx.clock.now();

    // A new connect episode starts unless the previous invocation was still waiting.
    let mut status = match state.connection.take() {
        Some(previous) if !previous.ready => previous,
        _ => ConnectionStatus {
            since: Some(Timestamp::floor(now)),
            ..ConnectionStatus::default()
        },
    };
    status.poll_after_seconds = ctx.config.store_poll_seconds;

    let described = store::describe(&ctx.kms, &store_id).await?;
    status.connection_state = described.connection_state.clone();
    status.connection_error_code = described.connection_error_code.clone();
    let store_type = described.custom_key_store_type;
    let connection_state = described.connection_state.clone();
    state.store = Some(described);

    if store_type == StoreType::External {
        // An external key store is never connected or disconnected before the end.
        return Ok(ready(state, status, false));
    }

    let attempts_left = status.connect_attempts < ctx.config.max_connect_attempts;
    match connection_state {
        ConnectionStateType::Connected => return Ok(ready(state, status, false)),
        ConnectionStateType::Connecting | ConnectionStateType::Disconnecting => {}
        ConnectionStateType::Disconnected if attempts_left => {
            match store::connect(&ctx.kms, &store_id).await {
                Ok(()) => {
                    status.connect_attempts += 1;
                    tracing::info!(
                        custom_key_store_id = store_id.as_str(),
                        execution = execution.as_deref(),
                        ticket = request.ticket_id.as_deref(),
                        attempt = status.connect_attempts,
                        "connecting custom key store"
                    );
                }
                // The state changed under us: look again at the next poll.
                Err(err) if err.is_kms(KmsErrorCode::CustomKeyStoreInvalidState) => {}
                Err(err) if is_not_a_connection_problem(&err) => return Err(err),
                // A fast failure (CloudHsmClusterNotActiveException, ...): the store stays
                // DISCONNECTED and KMS names the cause in the error.
                Err(err) => {
                    status.connect_attempts += 1;
                    let code = err.kms_code().unwrap_or("ConnectFailed").to_string();
                    status.connection_error_code = Some(code.clone());
                    return fail_or_accept(state, status, &request, &store_id, &code);
                }
            }
        }
        ConnectionStateType::Failed
            if attempts_left
                && (status.connect_attempts == 0
                    || status
                        .connection_error_code
                        .as_deref()
                        .is_some_and(|c| TRANSIENT_CONNECTION_ERRORS.contains(&c))) =>
        {
            match store::disconnect(&ctx.kms, &store_id).await {
                Ok(()) => tracing::info!(
                    custom_key_store_id = store_id.as_str(),
                    execution = execution.as_deref(),
                    ticket = request.ticket_id.as_deref(),
                    connection_error_code = status.connection_error_code.as_deref(),
                    "disconnecting FAILED custom key store before connecting it"
                ),
                Err(err) if err.is_kms(KmsErrorCode::CustomKeyStoreInvalidState) => {}
                Err(err) => return Err(err),
            }
        }
        ConnectionStateType::Failed | ConnectionStateType::Disconnected => {
            let code = status
                .connection_error_code
                .clone()
                .unwrap_or_else(|| status.connection_state.as_str().to_string());
            return fail_or_accept(state, status, &request, &store_id, &code);
        }
        other => {
            return Err(DecommissionError::unexpected(
                "DescribeCustomKeyStores",
                format!("store {store_id} has unknown ConnectionState {other}"),
            ))
        }
    }

    // Still waiting: bounded by CONNECT_TIMEOUT_SECONDS.
    let since = match &status.since {
        Some(since) => since.time(),
        None => now,
    };
    let waited = seconds_between(since, now);
    if waited > ctx.config.connect_timeout_seconds {
        return Err(DecommissionError::ConnectTimedOut {
            store_id,
            state: status.connection_state.as_str().to_string(),
            waited_seconds: waited,
        });
    }
    status.ready = false;
    state.connection = Some(status);
    Ok(state)
}

/// Errors that say nothing about the store's ability to connect (permissions, a vanished store).
fn is_not_a_connection_problem(err: &DecommissionError) -> bool {
    matches!(
        err.kms_code(),
        Some(
            "CustomKeyStoreNotFoundException"
                | "AccessDeniedException"
                | "UnrecognizedClientException"
        )
    ) || err.kms_code().is_none()
        || err
            .kms_code()
            .is_some_and(|c| TRANSIENT_KMS_CODES.contains(&c))
}

fn ready(
    mut state: DecommissionState,
    mut status: ConnectionStatus,
    orphaned_key_material_accepted: bool,
) -> DecommissionState {
    status.ready = true;
    status.since = None;
    status.orphaned_key_material_accepted = orphaned_key_material_accepted;
    state.connection = Some(status);
    state
}

/// A store that cannot be connected: `ConnectionFailed`, unless the operator accepted
/// orphaned key material, which is then recorded.
fn fail_or_accept(
    state: DecommissionState,
    status: ConnectionStatus,
    request: &crate::request::DecommissionRequest,
    store_id: &str,
    code: &str,
) -> Result<DecommissionState, DecommissionError> {
    if request.allow_orphaned_key_material {
        tracing::warn!(
            custom_key_store_id = store_id,
            execution = state.execution.as_ref().map(|e| e.id.as_str()),
            ticket = request.ticket_id.as_deref(),
            connection_error_code = code,
            attempts = status.connect_attempts,
            "custom key store cannot be connected; continuing because AllowOrphanedKeyMaterial is true: KMS will leave the key material in the cluster"
        );
        return Ok(ready(state, status, true));
    }
    Err(DecommissionError::ConnectionFailed {
        store_id: store_id.to_string(),
        connection_error_code: code.to_string(),
        attempts: status.connect_attempts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::flow::Step;
    use crate::test_support::*;
    use aws_sdk_kms::operation::connect_custom_key_store::ConnectCustomKeyStoreError;
    use aws_sdk_kms::operation::describe_custom_key_stores::DescribeCustomKeyStoresOutput;
    use aws_sdk_kms::types::error::CloudHsmClusterNotActiveException;
    use aws_sdk_kms::types::ConnectionStateType;
    use aws_sdk_kms::Client;
    use aws_smithy_mocks::{mock, Rule};
    use serde_json::json;
    use std::time::Duration;

    fn rules() -> (Rule, Rule) {
        let describe = mock!(Client::describe_custom_key_stores).then_output(|| {
            DescribeCustomKeyStoresOutput::builder()
                .custom_key_stores(cloudhsm_store(ConnectionStateType::Disconnected))
                .build()
        });
        let connect = mock!(Client::connect_custom_key_store).then_error(|| {
            ConnectCustomKeyStoreError::CloudHsmClusterNotActiveException(
                CloudHsmClusterNotActiveException::builder()
                    .meta(kms_error(
                        "CloudHsmClusterNotActiveException",
                        "cluster not active",
                    ))
                    .build(),
            )
        });
        (describe, connect)
    }

    #[tokio::test]
    async fn a_connect_refused_at_once_is_connection_failed_with_kms_reason() {
        let (describe, connect) = rules();
        let ctx = context(mock_kms(&[&describe, &connect]));
        let err = run(
            &ctx,
            state_before(Step::EnsureStoreConnected),
            Deadline::after(Duration::from_secs(60)),
        )
        .await
        .unwrap_err();
        assert_eq!(err.error_type(), "ConnectionFailed");
        assert!(err
            .to_string()
            .contains("CloudHsmClusterNotActiveException"));
    }

    #[tokio::test]
    async fn allowing_orphaned_key_material_goes_on_and_records_it() {
        let (describe, connect) = rules();
        let ctx = context(mock_kms(&[&describe, &connect]));
        let mut state = state_before(Step::EnsureStoreConnected);
        state.input["AllowOrphanedKeyMaterial"] = json!(true);
        state.request =
            Some(crate::request::DecommissionRequest::from_input(&state.input).unwrap());
        let state = run(&ctx, state, Deadline::after(Duration::from_secs(60)))
            .await
            .unwrap();
        let connection = state.connection.unwrap();
        assert!(connection.ready);
        assert!(connection.orphaned_key_material_accepted);
        assert_eq!(
            connection.connection_error_code.as_deref(),
            Some("CloudHsmClusterNotActiveException")
        );
    }
}
