//! delete-store: delete the DISCONNECTED, empty store and write the final report.
//! `CustomKeyStoreHasCMKsException` passes through (the state machine goes back to checking
//! keys); `CustomKeyStoreNotFoundException` after this execution saw the store DISCONNECTED
//! means an earlier attempt deleted it: success.

use crate::deadline::Deadline;
use crate::error::{DecommissionError, KmsErrorCode};
use crate::report::{LedgerLocation, Outcome};
use crate::state::DecommissionState;
use crate::steps::context::StepContext;
use crate::steps::flow::{require_planned_store, Step};
use crate::store;

/// Deletes the store.
pub async fn run(
    ctx: &StepContext,
    mut state: DecommissionState,
    _deadline: Deadline,
) -> Result<DecommissionState, DecommissionError> {
    Step::DeleteStore.check_document(&state)?;
    let request = state.require_real_run()?.clone();
    let store_id = require_planned_store(&state)?.custom_key_store_id.clone();
    let execution = state.execution.as_ref().map(|e| e.id.clone());
    let outcome = match store::delete(&ctx.kms, &store_id).await {
        Ok(()) => Outcome::Deleted,
        Err(err) if err.is_kms(KmsErrorCode::CustomKeyStoreNotFound) => Outcome::AlreadyDeleted,
        Err(err) => return Err(err),
    };
    let mut report = state.final_report(outcome, ctx.clock.now())?;
    if let Some(execution) = &execution {
        report.ledger = Some(LedgerLocation::of_run(
            ctx.ledger.table(),
            &store_id,
            execution,
        ));
    }
    tracing::info!(
        custom_key_store_id = store_id.as_str(),
        execution = execution.as_deref(),
        ticket = request.ticket_id.as_deref(),
        requested_by = request.requested_by.as_deref(),
        outcome = ?outcome,
        keys_deleted = report.keys_deleted,
        follow_ups = ?report.follow_ups,
        "custom key store deleted"
    );
    state.report = Some(report);
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Outcome;
    use crate::steps::flow::Step;
    use crate::test_support::*;
    use aws_sdk_kms::operation::delete_custom_key_store::{
        DeleteCustomKeyStoreError, DeleteCustomKeyStoreOutput,
    };
    use aws_sdk_kms::types::error::{
        CustomKeyStoreHasCmKsException, CustomKeyStoreNotFoundException,
    };
    use aws_sdk_kms::Client;
    use aws_smithy_mocks::mock;
    use std::time::Duration;

    fn deadline() -> Deadline {
        Deadline::after(Duration::from_secs(60))
    }

    #[tokio::test]
    async fn deleting_writes_the_report() {
        let delete = mock!(Client::delete_custom_key_store)
            .then_output(|| DeleteCustomKeyStoreOutput::builder().build());
        let ctx = context(mock_kms(&[&delete]));
        let state = run(&ctx, state_before(Step::DeleteStore), deadline())
            .await
            .unwrap();
        let report = state.report.unwrap();
        assert_eq!(report.outcome, Outcome::Deleted);
        assert_eq!(report.keys_deleted, 2);
        assert_eq!(report.ticket_id.as_deref(), Some("CHG-1"));
        assert_eq!(
            report.cloud_hsm_cluster_id.as_deref(),
            Some("cluster-1234567890a")
        );
    }

    #[tokio::test]
    async fn not_found_after_this_execution_saw_the_store_disconnected_is_success() {
        let delete = mock!(Client::delete_custom_key_store).then_error(|| {
            DeleteCustomKeyStoreError::CustomKeyStoreNotFoundException(
                CustomKeyStoreNotFoundException::builder()
                    .meta(kms_error("CustomKeyStoreNotFoundException", "not found"))
                    .build(),
            )
        });
        let ctx = context(mock_kms(&[&delete]));
        let state = run(&ctx, state_before(Step::DeleteStore), deadline())
            .await
            .unwrap();
        assert_eq!(state.report.unwrap().outcome, Outcome::AlreadyDeleted);
    }

    #[tokio::test]
    async fn keys_still_in_the_store_pass_through_by_name() {
        let delete = mock!(Client::delete_custom_key_store).then_error(|| {
            DeleteCustomKeyStoreError::CustomKeyStoreHasCmKsException(
                CustomKeyStoreHasCmKsException::builder()
                    .meta(kms_error("CustomKeyStoreHasCMKsException", "has keys"))
                    .build(),
            )
        });
        let ctx = context(mock_kms(&[&delete]));
        let err = run(&ctx, state_before(Step::DeleteStore), deadline())
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "CustomKeyStoreHasCMKsException");
    }

    #[tokio::test]
    async fn a_store_not_yet_disconnected_is_never_deleted() {
        let delete = mock!(Client::delete_custom_key_store)
            .then_output(|| DeleteCustomKeyStoreOutput::builder().build());
        let ctx = context(mock_kms(&[&delete]));
        let err = run(&ctx, state_before(Step::DisconnectStore), deadline())
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "InvalidStateDocument");
        assert_eq!(delete.num_calls(), 0);
    }
}
