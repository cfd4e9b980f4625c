//! disconnect-store: once every key is gone, disconnect the store (already DISCONNECTED or
//! DISCONNECTING is not an error) and poll until DISCONNECTED. One action per invocation.

use aws_sdk_kms::types::ConnectionStateType;

use crate::clock::seconds_between;
use crate::deadline::Deadline;
use crate::error::{DecommissionError, KmsErrorCode};
use crate::model::Timestamp;
use crate::state::{DecommissionState, DisconnectStatus};
use crate::steps::context::StepContext;
use crate::steps::flow::{require_planned_store, Step};
use crate::store;

/// Runs one poll of the disconnect.
pub async fn run(
    ctx: &StepContext,
    mut state: DecommissionState,
    _deadline: Deadline,
) -> Result<DecommissionState, DecommissionError> {
    Step::DisconnectStore.check_document(&state)?;
    let request = state.require_real_run()?.clone();
    let store_id = require_planned_store(&state)?.custom_key_store_id.clone();
    let execution = state.execution.as_ref().map(|e| e.id.clone());
    let now = ctx.clock.now();
    let mut status = match state.disconnect.take() {
        Some(previous) if !previous.disconnected => previous,
        _ => DisconnectStatus {
            since: Some(Timestamp::floor(now)),
            ..DisconnectStatus::default()
        },
    };
    status.poll_after_seconds = ctx.config.store_poll_seconds;

    let mut described = store::describe(&ctx.kms, &store_id).await?;
    match &described.connection_state {
        ConnectionStateType::Disconnected | ConnectionStateType::Disconnecting => {}
        ConnectionStateType::Connected
        | ConnectionStateType::Connecting
        | ConnectionStateType::Failed => {
            match store::disconnect(&ctx.kms, &store_id).await {
                Ok(()) => {
                    status.disconnect_attempts += 1;
                    tracing::info!(
                        custom_key_store_id = store_id.as_str(),
                        execution = execution.as_deref(),
                        ticket = request.ticket_id.as_deref(),
                        previous_state = described.connection_state.as_str(),
                        "disconnecting custom key store"
                    );
                }
                // Someone else disconnected it meanwhile: look again.
                Err(err) if err.is_kms(KmsErrorCode::CustomKeyStoreInvalidState) => {
                    described = store::describe(&ctx.kms, &store_id).await?;
                    if !matches!(
                        &described.connection_state,
                        ConnectionStateType::Disconnected | ConnectionStateType::Disconnecting
                    ) {
                        return Err(err);
                    }
                }
                Err(err) => return Err(err),
            }
            if status.disconnect_attempts > 0 {
                described = store::describe(&ctx.kms, &store_id).await?;
            }
        }
        other => {
            return Err(DecommissionError::unexpected(
                "DescribeCustomKeyStores",
                format!("store {store_id} has unknown ConnectionState {other}"),
            ))
        }
    }
    status.connection_state = described.connection_state.clone();
    let disconnected = described.connection_state == ConnectionStateType::Disconnected;
    state.store = Some(described);
    if disconnected {
        status.disconnected = true;
        status.since = None;
        tracing::info!(
            custom_key_store_id = store_id.as_str(),
            execution = execution.as_deref(),
            "custom key store is DISCONNECTED"
        );
        state.disconnect = Some(status);
        return Ok(state);
    }

    let since = match &status.since {
        Some(since) => since.time(),
        None => now,
    };
    let waited = seconds_between(since, now);
    if waited > ctx.config.disconnect_timeout_seconds {
        return Err(DecommissionError::DisconnectTimedOut {
            store_id,
            state: status.connection_state.as_str().to_string(),
            waited_seconds: waited,
        });
    }
    status.disconnected = false;
    state.disconnect = Some(status);
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::flow::Step;
    use crate::test_support::*;
    use aws_sdk_kms::operation::describe_custom_key_stores::DescribeCustomKeyStoresOutput;
    use aws_sdk_kms::operation::disconnect_custom_key_store::DisconnectCustomKeyStoreError;
    use aws_sdk_kms::types::error::CustomKeyStoreInvalidStateException;
    use aws_sdk_kms::types::ConnectionStateType;
    use aws_sdk_kms::Client;
    use aws_smithy_mocks::mock;
    use std::time::Duration;

    fn described(state: ConnectionStateType) -> DescribeCustomKeyStoresOutput {
        DescribeCustomKeyStoresOutput::builder()
            .custom_key_stores(cloudhsm_store(state))
            .build()
    }

    #[tokio::test]
    async fn an_invalid_state_answer_after_a_race_is_re_described_not_fatal() {
        let describe = mock!(Client::describe_custom_key_stores)
            .sequence()
            .output(|| described(ConnectionStateType::Connected))
            .output(|| described(ConnectionStateType::Disconnected))
            .build();
        let disconnect = mock!(Client::disconnect_custom_key_store).then_error(|| {
            DisconnectCustomKeyStoreError::CustomKeyStoreInvalidStateException(
                CustomKeyStoreInvalidStateException::builder()
                    .meta(kms_error(
                        "CustomKeyStoreInvalidStateException",
                        "already disconnected",
                    ))
                    .build(),
            )
        });
        let ctx = context(mock_kms(&[&describe, &disconnect]));
        let state = run(
            &ctx,
            state_before(Step::DisconnectStore),
            Deadline::after(Duration::from_secs(60)),
        )
        .await
        .unwrap();
        let status = state.disconnect.unwrap();
        assert!(status.disconnected);
        assert_eq!(status.disconnect_attempts, 0);
        assert_eq!(disconnect.num_calls(), 1);
    }

    #[tokio::test]
    async fn an_invalid_state_answer_on_a_store_still_connected_is_an_error() {
        let describe = mock!(Client::describe_custom_key_stores)
            .then_output(|| described(ConnectionStateType::Connected));
        let disconnect = mock!(Client::disconnect_custom_key_store).then_error(|| {
            DisconnectCustomKeyStoreError::CustomKeyStoreInvalidStateException(
                CustomKeyStoreInvalidStateException::builder()
                    .meta(kms_error("CustomKeyStoreInvalidStateException", "invalid"))
                    .build(),
            )
        });
        let ctx = context(mock_kms(&[&describe, &disconnect]));
        let err = run(
            &ctx,
            state_before(Step::DisconnectStore),
            Deadline::after(Duration::from_secs(60)),
        )
        .await
        .unwrap_err();
        assert_eq!(err.error_type(), "CustomKeyStoreInvalidStateException");
    }

    #[tokio::test]
    async fn nothing_is_disconnected_before_every_key_is_deleted() {
        let describe = mock!(Client::describe_custom_key_stores)
            .then_output(|| described(ConnectionStateType::Connected));
        let disconnect = mock!(Client::disconnect_custom_key_store).then_output(|| {
            aws_sdk_kms::operation::disconnect_custom_key_store::DisconnectCustomKeyStoreOutput::builder().build()
        });
        let ctx = context(mock_kms(&[&describe, &disconnect]));
        let err = run(
            &ctx,
            state_before(Step::CheckKeysDeleted),
            Deadline::after(Duration::from_secs(60)),
        )
        .await
        .unwrap_err();
        assert_eq!(err.error_type(), "InvalidStateDocument");
        assert_eq!(disconnect.num_calls(), 0);
    }
}
