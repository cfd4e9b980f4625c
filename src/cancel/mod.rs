//! Cancelling a decommission during its waiting period: the cancel request, its errors, and
//! restoring one key that the decommission scheduled (CancelKeyDeletion, EnableKey where the
//! key was Enabled before, then removal of the markers).
//!
//! What to restore comes from the run ledger alone: a key is restored only when the cancelled
//! run recorded it (before its first change to it) and scheduled it, and only when DescribeKey
//! still shows it in the named store (a [`StoreKey`]); it gets back the state the ledger
//! recorded, never what a tag says. The ledger's record is marked restored last, so a restore
//! cut off at any point is completed by the next pass.

pub mod by_ticket;
pub mod step;

use serde::Deserialize;
use serde_json::Value;

use crate::aws_error::AwsCallError;
use crate::error::{DecommissionError, KmsErrorCode};
use crate::input::{read_object, ExecutionArn, FieldError, FreeText, StoreId};
use crate::keys::{
    refreshed, StoreKey, TargetStore, MARKER_EXECUTION, MARKER_PRIOR_STATE, MARKER_TICKET,
};
use crate::kms::Kms;
use crate::ledger::{KeyRecord, Ledger};
use crate::model::Timestamp;

/// Fields a cancel input may carry.
const CANCEL_FIELDS: &[&str] = &[
    "CustomKeyStoreId",
    "DecommissionExecutionArn",
    "TicketId",
    "RequestedBy",
    "Reason",
];

/// A validated cancel request (the cancel state machine's input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelRequest {
    /// The store being decommissioned.
    pub custom_key_store_id: String,
    /// The decommission execution to stop and undo.
    pub decommission_execution_arn: String,
    /// Ticket id, when given.
    pub ticket_id: Option<String>,
    /// Who asked for the cancel.
    pub requested_by: Option<String>,
    /// Why.
    pub reason: Option<String>,
}

/// The cancel input as given: each field checked by its type, unknown fields refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct CancelInput {
    /// `CustomKeyStoreId` (required).
    pub custom_key_store_id: Option<StoreId>,
    /// `DecommissionExecutionArn` (required).
    pub decommission_execution_arn: Option<ExecutionArn>,
    /// `TicketId`.
    pub ticket_id: Option<FreeText>,
    /// `RequestedBy`.
    pub requested_by: Option<FreeText>,
    /// `Reason`.
    pub reason: Option<FreeText>,
}

impl CancelRequest {
    /// Validates a cancel input; `InvalidInput` names the offending field.
    pub fn from_input(input: &Value) -> Result<Self, DecommissionError> {
        if !input.is_object() {
            return Err(DecommissionError::invalid_input(
                "$",
                "the cancel input must be a JSON object with CustomKeyStoreId and DecommissionExecutionArn",
            ));
        }
        let given: CancelInput = read_object(input, CANCEL_FIELDS)?;
        Ok(Self {
            custom_key_store_id: given
                .custom_key_store_id
                .ok_or_else(|| FieldError::required("CustomKeyStoreId"))?
                .0,
            decommission_execution_arn: given
                .decommission_execution_arn
                .ok_or_else(|| FieldError::required("DecommissionExecutionArn"))?
                .0,
            ticket_id: given.ticket_id.map(|t| t.0),
            requested_by: given.requested_by.map(|t| t.0),
            reason: given.reason.map(|t| t.0),
        })
    }

    /// The cause given to StopExecution and the logs.
    pub fn cause(&self) -> String {
        let mut cause = format!(
            "decommission of {} cancelled by {}",
            self.custom_key_store_id,
            self.requested_by.as_deref().unwrap_or("an operator")
        );
        if let Some(ticket) = &self.ticket_id {
            cause.push_str(&format!(" (ticket {ticket})"));
        }
        if let Some(reason) = &self.reason {
            cause.push_str(&format!(": {reason}"));
        }
        cause
    }
}

/// Everything that can stop a cancel. Errors are named for Step Functions like the
/// decommission's (`docs/cancel.md`).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CancelError {
    /// Input, configuration, state document or KMS errors, under their contract names.
    #[error(transparent)]
    Decommission(#[from] DecommissionError),

    /// The execution to cancel does not exist.
    #[error(
        "decommission execution {arn} does not exist (or not in this account and Region); \
         nothing was changed. Give the ARN of the running decommission"
    )]
    DecommissionExecutionNotFound {
        /// The ARN given.
        arn: String,
    },

    /// A Step Functions call failed; its error code becomes the error name.
    #[error("{0}; nothing was restored by this invocation, retry the cancel")]
    StepFunctions(AwsCallError),
}

impl CancelError {
    /// The Lambda `errorType` (and Step Functions error name).
    pub fn error_type(&self) -> &str {
        match self {
            Self::Decommission(e) => e.error_type(),
            Self::DecommissionExecutionNotFound { .. } => "DecommissionExecutionNotFound",
            Self::StepFunctions(e) => &e.code,
        }
    }
}

impl From<CancelError> for lambda_runtime::Diagnostic {
    fn from(err: CancelError) -> Self {
        Self {
            error_type: err.error_type().to_string(),
            error_message: err.to_string(),
        }
    }
}

/// What EnableKey did for a restored key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reenable {
    /// The key was not Enabled before scheduling (or already is): no EnableKey.
    NotNeeded,
    /// EnableKey made the key Enabled.
    Enabled,
    /// The key is Unavailable (store disconnected): EnableKey succeeded but takes effect when
    /// the store is connected again.
    OnReconnect,
    /// The prior state was Unavailable: whether the key was enabled is unknown; left Disabled.
    PriorStateUnknown,
}

/// A key this cancel restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredKey {
    /// Key ARN.
    pub arn: String,
    /// State recorded before scheduling.
    pub prior_state: String,
    /// Whether CancelKeyDeletion was needed (it was still pending deletion).
    pub deletion_cancelled: bool,
    /// What EnableKey did.
    pub reenable: Reenable,
    /// Key state after the restore.
    pub key_state: String,
}

/// What became of one key the cancelled run recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreOutcome {
    /// Recorded but never scheduled by the run: left alone.
    NotScheduled,
    /// An earlier invocation of the cancel restored it.
    AlreadyRestored,
    /// KMS had already deleted it when the cancel came to it.
    AlreadyDeleted,
    /// The key disappeared while being restored (KMS deleted it at that moment).
    Gone,
    /// Restored and its markers removed.
    Restored(RestoredKey),
}

/// Restores the key of `record` (a key run `execution` recorded in the ledger) if the run
/// scheduled it: cancels its deletion, enables it when the ledger says it was Enabled before,
/// removes the markers, and records the restore in the ledger. Tags are never read. Safe to
/// repeat after a crash at any point.
pub async fn restore_key(
    kms: &Kms,
    ledger: &Ledger,
    record: &KeyRecord,
    target: &TargetStore,
    execution: &str,
    now: Timestamp,
) -> Result<RestoreOutcome, DecommissionError> {
    let Some(metadata) = kms.describe_key(&record.key_id).await? else {
        if record.seen_deleted_at.is_none() {
            ledger
                .mark_seen_deleted(execution, &record.key_arn, now)
                .await?;
        }
        return Ok(RestoreOutcome::AlreadyDeleted);
    };
    let Some(key) = StoreKey::from_metadata(&metadata, target) else {
        return Err(DecommissionError::unexpected(
            "DescribeKey",
            format!(
                "key {} that the ledger records for store {} no longer shows that store",
                record.key_arn,
                target.id()
            ),
        ));
    };
    // A key pending deletion is restored whatever the record says of earlier restores (a batch
    // of the stopped run may have scheduled it again since).
    if !key.is_pending_deletion() {
        if record.restored_at.is_some() {
            return Ok(RestoreOutcome::AlreadyRestored);
        }
        // Recorded but never scheduled (the run stopped between the record and the schedule):
        // nothing to undo.
        if record.scheduled_at.is_none() {
            return Ok(RestoreOutcome::NotScheduled);
        }
    }
    let prior_state = record.prior_state.clone();
    let mut state = key.state().as_str().to_string();
    let mut deletion_cancelled = false;
    if key.is_pending_deletion() {
        match kms.cancel_key_deletion(key.key_id()).await {
            Ok(()) => deletion_cancelled = true,
            Err(err) if err.is_kms(KmsErrorCode::NotFound) => return Ok(RestoreOutcome::Gone),
            // Cancelled meanwhile (a concurrent cancel): go on if DescribeKey agrees.
            Err(err) if err.is_kms(KmsErrorCode::InvalidState) => {}
            Err(err) => return Err(err),
        }
        // CancelKeyDeletion answers only the key id: read the state it left.
        match refreshed(kms, &key, target)
            .await?
            .map(|k| k.state().as_str().to_string())
        {
            Some(now) if now == "PendingDeletion" => {
                return Err(DecommissionError::unexpected(
                    "CancelKeyDeletion",
                    format!(
                        "key {} is still pending deletion after CancelKeyDeletion",
                        key.arn()
                    ),
                ))
            }
            Some(now) => state = now,
            None => return Ok(RestoreOutcome::Gone),
        }
    }
    let reenable = match (prior_state.as_str(), state.as_str()) {
        ("Enabled", "Disabled") => Reenable::Enabled,
        ("Enabled", "Unavailable") => Reenable::OnReconnect,
        ("Unavailable", "Disabled" | "Unavailable") => Reenable::PriorStateUnknown,
        _ => Reenable::NotNeeded,
    };
    if matches!(reenable, Reenable::Enabled | Reenable::OnReconnect) {
        match kms.enable_key(key.key_id()).await {
            Ok(()) => {}
            Err(err) if err.is_kms(KmsErrorCode::NotFound) => return Ok(RestoreOutcome::Gone),
            Err(err) => return Err(err),
        }
        if reenable == Reenable::Enabled {
            state = "Enabled".to_string();
        }
    }
    match kms
        .untag_resource(
            key.key_id(),
            &[MARKER_EXECUTION, MARKER_PRIOR_STATE, MARKER_TICKET],
        )
        .await
    {
        Ok(()) => {}
        Err(err) if err.is_kms(KmsErrorCode::NotFound) => return Ok(RestoreOutcome::Gone),
        Err(err) => return Err(err),
    }
    ledger
        .mark_restored(execution, &record.key_arn, &state, now)
        .await?;
    tracing::info!(
        key_id = key.key_id(),
        key_arn = key.arn(),
        custom_key_store_id = target.id(),
        execution,
        prior_state = prior_state.as_str(),
        deletion_cancelled,
        reenable = ?reenable,
        key_state = state.as_str(),
        "restored key"
    );
    Ok(RestoreOutcome::Restored(RestoredKey {
        arn: key.arn().to_string(),
        prior_state,
        deletion_cancelled,
        reenable,
        key_state: state,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ARN: &str = "arn:aws:states:us-east-1:123456789012:execution:decommission:CHG-1";

    fn field_of(input: Value) -> String {
        match CancelRequest::from_input(&input).unwrap_err() {
            DecommissionError::InvalidInput { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_valid_cancel_input_is_accepted_with_its_optional_fields() {
        let request = CancelRequest::from_input(&json!({
            "CustomKeyStoreId": "cks-1234567890abcdef0", "DecommissionExecutionArn": ARN,
            "TicketId": "CHG-1", "RequestedBy": "alice", "Reason": null
        }))
        .unwrap();
        assert_eq!(request.decommission_execution_arn, ARN);
        assert_eq!(request.reason, None);
        assert_eq!(
            request.cause(),
            "decommission of cks-1234567890abcdef0 cancelled by alice (ticket CHG-1)"
        );
    }

    #[test]
    fn every_bad_cancel_input_names_its_field() {
        let store = "cks-1234567890abcdef0";
        assert_eq!(field_of(json!([1])), "$");
        assert_eq!(
            field_of(json!({"DecommissionExecutionArn": ARN})),
            "CustomKeyStoreId"
        );
        assert_eq!(
            field_of(json!({"CustomKeyStoreId": "store", "DecommissionExecutionArn": ARN})),
            "CustomKeyStoreId"
        );
        assert_eq!(
            field_of(json!({"CustomKeyStoreId": store})),
            "DecommissionExecutionArn"
        );
        for arn in [
            "arn:aws:states:us-east-1:123456789012:stateMachine:decommission",
            "arn:aws:lambda:us-east-1:123456789012:execution:decommission:x",
            "not an arn",
        ] {
            assert_eq!(
                field_of(json!({"CustomKeyStoreId": store, "DecommissionExecutionArn": arn})),
                "DecommissionExecutionArn"
            );
        }
        assert_eq!(
            field_of(
                json!({"CustomKeyStoreId": store, "DecommissionExecutionArn": ARN, "DryRun": true})
            ),
            "DryRun"
        );
        assert_eq!(
            field_of(
                json!({"CustomKeyStoreId": store, "DecommissionExecutionArn": ARN, "Reason": "a\nb"})
            ),
            "Reason"
        );
        assert_eq!(
            field_of(
                json!({"CustomKeyStoreId": store, "DecommissionExecutionArn": ARN, "RequestedBy": 7})
            ),
            "RequestedBy"
        );
    }

    #[test]
    fn step_functions_errors_keep_their_code_as_the_error_name() {
        let err = CancelError::StepFunctions(AwsCallError {
            operation: "states:StopExecution".into(),
            code: "ThrottlingException".into(),
            message: "slow down".into(),
        });
        assert_eq!(err.error_type(), "ThrottlingException");
        let missing = CancelError::DecommissionExecutionNotFound { arn: ARN.into() };
        assert_eq!(
            lambda_runtime::Diagnostic::from(missing).error_type,
            "DecommissionExecutionNotFound"
        );
    }

    mod with_mocked_kms {
        use super::super::*;
        use crate::test_support::*;
        use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
        use aws_sdk_kms::operation::cancel_key_deletion::{
            CancelKeyDeletionError, CancelKeyDeletionOutput,
        };
        use aws_sdk_kms::operation::describe_key::DescribeKeyOutput;
        use aws_sdk_kms::operation::enable_key::EnableKeyOutput;
        use aws_sdk_kms::operation::untag_resource::UntagResourceOutput;
        use aws_sdk_kms::types::error::{KmsInternalException, KmsInvalidStateException};
        use aws_sdk_kms::types::KeyState;
        use aws_sdk_kms::Client;
        use aws_smithy_mocks::{mock, Rule};

        const NOW: Timestamp = Timestamp::EPOCH;

        /// The ledger's record of k1: `prior` before the run, scheduled by it or not.
        fn record(prior: &str, scheduled: bool) -> KeyRecord {
            let mut record = KeyRecord::new(
                "arn:aws:kms:us-east-1:123456789012:key/k1",
                "k1",
                STORE_ID,
                prior,
                NOW,
            );
            record.scheduled_at = scheduled.then_some(NOW);
            record
        }

        fn described(state: KeyState) -> Rule {
            mock!(Client::describe_key).then_output(move || {
                DescribeKeyOutput::builder()
                    .key_metadata(store_key_metadata("k1", state.clone()))
                    .build()
            })
        }

        fn ledger_update() -> Rule {
            mock!(aws_sdk_dynamodb::Client::update_item)
                .then_output(|| UpdateItemOutput::builder().build())
        }

        #[tokio::test]
        async fn a_kms_internal_error_on_cancel_is_reported_by_name_and_nothing_else_is_done() {
            let describe = described(KeyState::PendingDeletion);
            let cancel = mock!(Client::cancel_key_deletion).then_error(|| {
                CancelKeyDeletionError::KmsInternalException(
                    KmsInternalException::builder()
                        .meta(kms_error("KMSInternalException", "internal"))
                        .build(),
                )
            });
            let enable =
                mock!(Client::enable_key).then_output(|| EnableKeyOutput::builder().build());
            let untag = mock!(Client::untag_resource)
                .then_output(|| UntagResourceOutput::builder().build());
            let kms = Kms::with_default_pacing(mock_kms(&[&describe, &cancel, &enable, &untag]));
            let update = ledger_update();
            let ledger = mock_ledger(&[&update]);
            let err = restore_key(
                &kms,
                &ledger,
                &record("Enabled", true),
                &target(),
                EXECUTION,
                NOW,
            )
            .await
            .unwrap_err();
            assert_eq!(err.error_type(), "KMSInternalException");
            assert_eq!(
                (enable.num_calls(), untag.num_calls(), update.num_calls()),
                (0, 0, 0),
                "the ledger is not marked restored: the retry does it all again"
            );
        }

        #[tokio::test]
        async fn a_key_cancelled_meanwhile_is_still_enabled_unmarked_and_recorded_restored() {
            let describe = mock!(Client::describe_key)
                .sequence()
                .output(|| {
                    DescribeKeyOutput::builder()
                        .key_metadata(store_key_metadata("k1", KeyState::PendingDeletion))
                        .build()
                })
                .output(|| {
                    DescribeKeyOutput::builder()
                        .key_metadata(store_key_metadata("k1", KeyState::Disabled))
                        .build()
                })
                .build();
            let cancel = mock!(Client::cancel_key_deletion).then_error(|| {
                CancelKeyDeletionError::KmsInvalidStateException(
                    KmsInvalidStateException::builder()
                        .meta(kms_error("KMSInvalidStateException", "key/k1 is disabled"))
                        .build(),
                )
            });
            let enable =
                mock!(Client::enable_key).then_output(|| EnableKeyOutput::builder().build());
            let untag = mock!(Client::untag_resource)
                .then_output(|| UntagResourceOutput::builder().build());
            let kms = Kms::with_default_pacing(mock_kms(&[&describe, &cancel, &enable, &untag]));
            let update = ledger_update();
            let ledger = mock_ledger(&[&update]);
            let outcome = restore_key(
                &kms,
                &ledger,
                &record("Enabled", true),
                &target(),
                EXECUTION,
                NOW,
            )
            .await
            .unwrap();
            let RestoreOutcome::Restored(restored) = outcome else {
                panic!("{outcome:?}")
            };
            assert!(!restored.deletion_cancelled);
            assert_eq!(restored.reenable, Reenable::Enabled);
            assert_eq!(
                (enable.num_calls(), untag.num_calls(), update.num_calls()),
                (1, 1, 1)
            );
        }

        #[tokio::test]
        async fn the_state_restored_is_the_one_the_ledger_recorded() {
            // Recorded Disabled: the key stays Disabled after CancelKeyDeletion, whatever tags say.
            let describe = mock!(Client::describe_key)
                .sequence()
                .output(|| {
                    DescribeKeyOutput::builder()
                        .key_metadata(store_key_metadata("k1", KeyState::PendingDeletion))
                        .build()
                })
                .output(|| {
                    DescribeKeyOutput::builder()
                        .key_metadata(store_key_metadata("k1", KeyState::Disabled))
                        .build()
                })
                .build();
            let cancel = mock!(Client::cancel_key_deletion)
                .then_output(|| CancelKeyDeletionOutput::builder().build());
            let enable =
                mock!(Client::enable_key).then_output(|| EnableKeyOutput::builder().build());
            let untag = mock!(Client::untag_resource)
                .then_output(|| UntagResourceOutput::builder().build());
            let kms = Kms::with_default_pacing(mock_kms(&[&describe, &cancel, &enable, &untag]));
            let update = ledger_update();
            let ledger = mock_ledger(&[&update]);
            let outcome = restore_key(
                &kms,
                &ledger,
                &record("Disabled", true),
                &target(),
                EXECUTION,
                NOW,
            )
            .await
            .unwrap();
            let RestoreOutcome::Restored(restored) = outcome else {
                panic!("{outcome:?}")
            };
            assert_eq!(restored.key_state, "Disabled");
            assert_eq!(enable.num_calls(), 0);
        }

        #[tokio::test]
        async fn a_recorded_key_the_run_never_scheduled_and_a_restored_one_are_left_alone() {
            let describe = described(KeyState::Enabled);
            let cancel = mock!(Client::cancel_key_deletion)
                .then_output(|| CancelKeyDeletionOutput::builder().build());
            let kms = Kms::with_default_pacing(mock_kms(&[&describe, &cancel]));
            let ledger = mock_ledger(&[]);
            let outcome = restore_key(
                &kms,
                &ledger,
                &record("Enabled", false),
                &target(),
                EXECUTION,
                NOW,
            )
            .await
            .unwrap();
            assert_eq!(outcome, RestoreOutcome::NotScheduled);
            let mut restored = record("Enabled", true);
            restored.restored_at = Some(NOW);
            let outcome = restore_key(&kms, &ledger, &restored, &target(), EXECUTION, NOW)
                .await
                .unwrap();
            assert_eq!(outcome, RestoreOutcome::AlreadyRestored);
            assert_eq!(cancel.num_calls(), 0);
        }
    }
}
