//! The one error type of the decommission library and its mapping to Lambda's `Diagnostic`.
//!
//! The Lambda `errorType` of every error is a name from `docs/workflow-contract.md`: either a
//! product name (`InvalidInput`, `ConnectionFailed`, ...) or the wire code KMS sent
//! (`KMSInternalException`, `ThrottlingException`, ...), so the state machine's `Retry` and
//! `Catch` rules match the names KMS documents. lambda_runtime's default would be a Rust type name.

use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use lambda_runtime::Diagnostic;

/// Every Lambda `errorType` the step handlers are known to emit: the product's own names first,
/// then the KMS error codes that pass through unchanged. A KMS code not listed here still passes
/// through as sent; the state machine catches it with `States.ALL`.
pub const ERROR_TYPES: &[&str] = &[
    // product names
    "InvalidInput",
    "ConfirmationMismatch",
    "ConnectionFailed",
    "ConnectTimedOut",
    "StoreNotConnected",
    "KeysNotPendingDeletion",
    "KeyDeletionOverdue",
    "KeysRecentlyUsed",
    "DisconnectTimedOut",
    "DecommissionInProgress",
    "NotTheRunningDecommission",
    "InvalidApproval",
    "PolicyViolation",
    "ApprovalBySameRequester",
    "ApprovalRejected",
    "ApprovalTimedOut",
    "LedgerUnavailable",
    "StepFunctionsUnavailable",
    "CloudTrailUnavailable",
    "KeysNeededDuringQuarantine",
    "KeysCreatedAfterQuarantine",
    "KeyMaterialOrphaned",
    "KeyMaterialDeletionUnconfirmed",
    "KmsUnavailable",
    "UnexpectedKmsResponse",
    "InvalidStateDocument",
    "InvalidConfiguration",
    // KMS wire codes passed through
    "KMSInternalException",
    "ThrottlingException",
    "DependencyTimeoutException",
    "CustomKeyStoreNotFoundException",
    "CustomKeyStoreInvalidStateException",
    "CustomKeyStoreHasCMKsException",
    "CloudHsmClusterNotActiveException",
    "CloudHsmClusterInvalidConfigurationException",
    "CloudHsmClusterNotFoundException",
    "XksProxyUriUnreachableException",
    "XksProxyInvalidResponseException",
    "XksProxyIncorrectAuthenticationCredentialException",
    "KMSInvalidStateException",
    "NotFoundException",
    "InvalidArnException",
    "InvalidMarkerException",
    "TagException",
    "LimitExceededException",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "ValidationException",
];

/// KMS error codes that mean "try again later"; the state machine retries them.
pub const TRANSIENT_KMS_CODES: &[&str] = &[
    "KMSInternalException",
    "ThrottlingException",
    "DependencyTimeoutException",
];

/// KMS error codes the library acts on (every other code passes through as sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
pub enum KmsErrorCode {
    /// `NotFoundException`: the key does not exist (any more).
    #[strum(serialize = "NotFoundException")]
    NotFound,
    /// `KMSInvalidStateException`: the key's state does not allow the operation.
    #[strum(serialize = "KMSInvalidStateException")]
    InvalidState,
    /// `CustomKeyStoreNotFoundException`.
    #[strum(serialize = "CustomKeyStoreNotFoundException")]
    CustomKeyStoreNotFound,
    /// `CustomKeyStoreInvalidStateException`: the store's connection state does not allow it.
    #[strum(serialize = "CustomKeyStoreInvalidStateException")]
    CustomKeyStoreInvalidState,
    /// `CustomKeyStoreHasCMKsException`: the store still holds keys.
    #[strum(serialize = "CustomKeyStoreHasCMKsException")]
    CustomKeyStoreHasCmks,
}

impl KmsErrorCode {
    /// KMS's wire name.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Everything that can stop a decommission step. Each variant names the store or key involved
/// and says what to do about it; none of them is raised after a partial, unrecorded change.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq, strum::IntoStaticStr)]
pub enum DecommissionError {
    /// The execution input failed validation; nothing was read or changed.
    #[error("invalid execution input: field {field}: {reason}")]
    InvalidInput {
        /// The offending input field (`$` for the input as a whole).
        field: String,
        /// What is wrong with it and what is accepted.
        reason: String,
    },

    /// `ConfirmCustomKeyStoreName` is missing or differs from the store's actual name. The
    /// message never repeats the actual name: it reaches status events and ticketing systems, and
    /// a caller told the name could simply retry with it, defeating the confirmation.
    #[error(
        "ConfirmCustomKeyStoreName {given} does not match the name of custom key store \
         {store_id}; nothing was changed. Start again with ConfirmCustomKeyStoreName set to the \
         store's exact name as the KMS console shows it (a dry run does not need it)"
    )]
    ConfirmationMismatch {
        /// The store the request names.
        store_id: String,
        /// What the input gave, rendered for the message ("missing" when absent).
        given: String,
    },

    /// A CloudHSM store could not be connected and orphaned key material was not accepted.
    #[error(
        "custom key store {store_id} could not be connected (ConnectionErrorCode {connection_error_code}, \
         after {attempts} connect attempt(s)); no key was scheduled for deletion after this. Fix the \
         cause (see the KMS guide 'Troubleshooting a custom key store') and start again, or start again \
         with AllowOrphanedKeyMaterial=true to delete the keys while KMS cannot remove their key \
         material from the cluster"
    )]
    ConnectionFailed {
        /// The store that failed to connect.
        store_id: String,
        /// KMS's ConnectionErrorCode, or the KMS exception ConnectCustomKeyStore returned.
        connection_error_code: String,
        /// Connect attempts made by this execution.
        attempts: u32,
    },

    /// A CloudHSM store stayed CONNECTING (or DISCONNECTING on its way to a reconnect) too long.
    #[error(
        "custom key store {store_id} is still {state} after {waited_seconds} s of trying to connect it \
         (bound CONNECT_TIMEOUT_SECONDS); check the cluster's HSMs and network, then start again"
    )]
    ConnectTimedOut {
        /// The store.
        store_id: String,
        /// Its connection state when the bound ran out.
        state: String,
        /// How long this execution has been waiting.
        waited_seconds: u64,
    },

    /// A CloudHSM store is not CONNECTED when its keys are about to be scheduled.
    #[error(
        "custom key store {store_id} is {state}, but a CloudHSM store must stay CONNECTED while its \
         keys are scheduled and pending deletion (or KMS leaves their key material in the cluster); \
         this invocation scheduled no key. Start again: the workflow connects the store first"
    )]
    StoreNotConnected {
        /// The store.
        store_id: String,
        /// Its connection state.
        state: String,
    },

    /// Keys of the store are not pending deletion after scheduling (created or cancelled since).
    #[error(
        "{count} key(s) of custom key store {store_id} are not pending deletion (created after \
         scheduling, or their deletion was cancelled): {keys:?}{more}; the store was not \
         disconnected. Schedule or remove them, then start a new decommission"
    )]
    KeysNotPendingDeletion {
        /// The store.
        store_id: String,
        /// How many keys are not pending deletion.
        count: u64,
        /// Their key ARNs with their state (capped sample; the full list is in the logs).
        keys: Vec<String>,
        /// ", and N more (see the logs)" when the sample is capped, else empty.
        more: String,
    },

    /// Keys of the store were used more recently than `MinDaysSinceLastUse` allows; they were not
    /// scheduled.
    #[error(
        "{count} key(s) of custom key store {store_id} were used within the last \
         {min_days_since_last_use} day(s) (MinDaysSinceLastUse) and were not scheduled for \
         deletion: {keys:?}{more}; {}. Find the callers with the CloudTrail event ids; start a \
         new decommission once nothing uses these keys, or set MinDaysSinceLastUse to 0 to \
         delete them anyway",
        already_scheduled_sentence(*keys_already_scheduled)
    )]
    KeysRecentlyUsed {
        /// The store.
        store_id: String,
        /// How many keys were used too recently.
        count: u64,
        /// The input's MinDaysSinceLastUse.
        min_days_since_last_use: u32,
        /// `ARN: Operation at Timestamp (CloudTrail event ...)` (capped sample; all in the logs).
        keys: Vec<String>,
        /// ", and N more (see the logs)" when the sample is capped, else empty.
        more: String,
        /// Keys this execution had already scheduled before the guard stopped it.
        keys_already_scheduled: u64,
    },

    /// Keys are still pending deletion long after their DeletionDate (plus KMS's lag of up to 24 h).
    #[error(
        "{pending} key(s) of custom key store {store_id} are still pending deletion although the \
         earliest DeletionDate {earliest_deletion_date} passed more than {overdue_seconds} s ago \
         (bound KEY_DELETION_OVERDUE_SECONDS); the store was left connected. Ask AWS Support, then \
         start again"
    )]
    KeyDeletionOverdue {
        /// The store.
        store_id: String,
        /// Keys still pending deletion.
        pending: u64,
        /// The earliest DeletionDate among them (RFC 3339).
        earliest_deletion_date: String,
        /// The configured bound.
        overdue_seconds: u64,
    },

    /// The store stayed DISCONNECTING too long.
    #[error(
        "custom key store {store_id} is still {state} after {waited_seconds} s of disconnecting \
         (bound DISCONNECT_TIMEOUT_SECONDS); its keys are already deleted. Check the store in the \
         KMS console, then start again to finish the decommission"
    )]
    DisconnectTimedOut {
        /// The store.
        store_id: String,
        /// Its connection state when the bound ran out.
        state: String,
        /// How long this execution has been waiting.
        waited_seconds: u64,
    },

    /// Another real decommission of the store holds its lock in the ledger and is still running.
    #[error(
        "a decommission of custom key store {store_id} is already in progress: execution {holder} \
         holds the store's lock (taken {taken_at}); this run changed nothing. Wait for it to end, \
         or cancel it, then start again"
    )]
    DecommissionInProgress {
        /// The store.
        store_id: String,
        /// The execution holding the lock.
        holder: String,
        /// When it took the lock.
        taken_at: String,
    },

    /// A step was invoked with a document that is not that of the running decommission holding
    /// the store's lock (a forged or stale document, or a run that was stopped).
    #[error(
        "{step} refuses to act for execution {execution}: {reason}; nothing was changed. Steps act \
         only for a RUNNING execution of this stack's decommission state machine whose input names \
         the same store and which holds the store's lock in the ledger"
    )]
    NotTheRunningDecommission {
        /// The step invoked.
        step: &'static str,
        /// The execution the document names.
        execution: String,
        /// Which check failed.
        reason: String,
    },

    /// CloudTrail could not answer a quarantine check (after the pace slowed and retried).
    #[error("CloudTrail {operation} failed with {code}: {message}; the quarantine goes on, retry")]
    CloudTrailUnavailable {
        /// The CloudTrail operation.
        operation: String,
        /// Its error code.
        code: String,
        /// The error text.
        message: String,
    },

    /// Someone tried to use keys of the store while it was quarantined (disconnected): they
    /// still need it. The store is connected again; no key was scheduled.
    #[error(
        "{count} attempt(s) to use keys of custom key store {store_id} during its quarantine: \
         {}{more}. {reconnected} No key was scheduled: find out who needs these keys before \
         decommissioning the store",
        uses.join("; ")
    )]
    KeysNeededDuringQuarantine {
        /// The store.
        store_id: String,
        /// How many attempts were found.
        count: u64,
        /// `key: Operation by principal from source at time (CloudTrail event id, error)` (capped).
        uses: Vec<String>,
        /// ", and N more (see the logs)" when capped, else empty.
        more: String,
        /// Whether the store is connected again, in one sentence.
        reconnected: String,
    },

    /// A key of the store was created after the quarantine began: it was never quarantined (nor
    /// planned, nor approved), and someone is creating keys in a store being decommissioned.
    #[error(
        "{count} key(s) of custom key store {store_id} were created after its quarantine began \
         ({since}): {}{more}; they were not scheduled, and no key after them was: {}",
        keys.join(", "),
        already_scheduled_sentence(*keys_already_scheduled)
    )]
    KeysCreatedAfterQuarantine {
        /// The store.
        store_id: String,
        /// When the quarantine began.
        since: String,
        /// How many keys.
        count: u64,
        /// `ARN (created at ...)` (capped).
        keys: Vec<String>,
        /// ", and N more (see the logs)" when capped, else empty.
        more: String,
        /// Keys this execution had already scheduled before it stopped.
        keys_already_scheduled: u64,
    },

    /// KMS deleted keys of a CloudHSM store but not their material in the cluster (the store
    /// was not connected then): CloudTrail's `DeleteKey` events say `FAILURE`. The store was
    /// left CONNECTED and in place.
    #[error(
        "KMS deleted {count} key(s) of CloudHSM key store {store_id} but could not delete their \
         key material from the cluster (CloudTrail DeleteKey events, \
         backingKeysDeletionStatus FAILURE): {}{more}. The store was not disconnected or \
         deleted. Delete each backing key from the cluster as kmsuser (the handles above; the \
         AWS KMS Developer Guide's \"orphaned key material\" steps: disconnect, change \
         kmsuser's password, deleteKey, UpdateCustomKeyStore, reconnect) and the cluster backups \
         that hold it; then start a new decommission with AllowOrphanedKeyMaterial true to \
         delete the store (CloudTrail keeps these events 90 days: without it, a new run stops \
         on them again; its report lists them)",
        keys.join("; ")
    )]
    KeyMaterialOrphaned {
        /// The store.
        store_id: String,
        /// How many keys' material is orphaned.
        count: u64,
        /// `ARN (keyHandle ..., backingKeyId ..., CloudTrail event ...)` (capped).
        keys: Vec<String>,
        /// ", and N more (see the logs and the ledger)" when capped, else empty.
        more: String,
    },

    /// Every key of a CloudHSM store is gone, but CloudTrail did not show KMS's `DeleteKey`
    /// event of some of them within `KEY_MATERIAL_CHECK_SECONDS`: whether their material left
    /// the cluster is unknown. The store was left CONNECTED and in place.
    #[error(
        "CloudTrail shows no readable DeleteKey event for {count} deleted key(s) of CloudHSM key \
         store {store_id} after {waited_seconds} s: {}{more}; whether KMS deleted their key \
         material from the cluster is unknown. The store was not disconnected or deleted. Look \
         the events up (LookupEvents, EventName DeleteKey) or search the cluster for the key \
         ARNs as labels (findKey -l <key ARN>); start a new decommission once the material is \
         accounted for",
        keys.join(", ")
    )]
    KeyMaterialDeletionUnconfirmed {
        /// The store.
        store_id: String,
        /// How many keys.
        count: u64,
        /// Their ARNs (capped).
        keys: Vec<String>,
        /// ", and N more (see the logs and the ledger)" when capped, else empty.
        more: String,
        /// How long the run waited for the events.
        waited_seconds: u64,
    },

    /// Step Functions could not answer a step's check of its caller.
    #[error(
        "Step Functions {operation} failed with {code}: {message}; nothing was changed, retry"
    )]
    StepFunctionsUnavailable {
        /// The Step Functions operation.
        operation: String,
        /// Its error code.
        code: String,
        /// The error text.
        message: String,
    },

    /// A trigger-started request asks for more than the stack's policy allows.
    #[error(
        "policy {rule}: {detail}; nothing was changed. Ask within the policy, or start the \
         decommission from the console"
    )]
    PolicyViolation {
        /// The rule broken (`MinPendingWindowInDays`, `MinDaysSinceLastUse`,
        /// `AllowOrphanedKeyMaterial`).
        rule: String,
        /// The request's value and the limit.
        detail: String,
    },

    /// The answer given with `SendTaskSuccess` to approve a run is not a valid approval.
    #[error(
        "invalid approval: {reason}; the run ended without any change. Approve with \
         {{\"ApprovedBy\": \"<who>\"}} as the task output (or the webhook's approve action)"
    )]
    InvalidApproval {
        /// What is wrong.
        reason: String,
    },

    /// The approver is the person who requested the run (two people are needed).
    #[error(
        "{approver} requested the decommission of custom key store {store_id} and cannot also \
         approve it; nothing was changed. Another person must approve"
    )]
    ApprovalBySameRequester {
        /// The store.
        store_id: String,
        /// The approver named.
        approver: String,
    },

    /// The run ledger (DynamoDB) could not be read or written.
    #[error(
        "the run ledger could not be used ({operation} failed with {code}: {message}); this \
         invocation changed no key after the failed call. Retry; check the table (LEDGER_TABLE) and \
         the function's DynamoDB permissions"
    )]
    LedgerUnavailable {
        /// The DynamoDB operation.
        operation: &'static str,
        /// DynamoDB's error code.
        code: String,
        /// The error text.
        message: String,
    },

    /// The KMS endpoint could not be reached, or answered something that is not a KMS answer.
    #[error("KMS could not be reached for {operation}: {detail}; retry later")]
    KmsUnavailable {
        /// The KMS operation.
        operation: &'static str,
        /// The transport error.
        detail: String,
    },

    /// KMS answered with an error; `code` is KMS's wire name and becomes the errorType.
    #[error("KMS {operation} failed with {code}: {message}")]
    Kms {
        /// The KMS operation.
        operation: &'static str,
        /// KMS's error code, e.g. `KMSInternalException`.
        code: String,
        /// KMS's message.
        message: String,
    },

    /// KMS answered successfully but without something the step needs.
    #[error("unexpected answer from KMS {operation}: {detail}")]
    UnexpectedKmsResponse {
        /// The KMS operation.
        operation: &'static str,
        /// What was missing or unexpected.
        detail: String,
    },

    /// The state document a step received is malformed or lacks a section an earlier step writes.
    #[error("invalid state document: {reason}; the state machine must pass the whole document from the previous step")]
    InvalidStateDocument {
        /// What is wrong.
        reason: String,
    },

    /// A handler environment variable is malformed or out of range.
    #[error("invalid configuration: environment variable {variable}: {reason}")]
    InvalidConfiguration {
        /// The variable.
        variable: String,
        /// What is wrong and what is accepted.
        reason: String,
    },
}

impl DecommissionError {
    /// The Lambda `errorType` (and Step Functions error name) of this error.
    pub fn error_type(&self) -> &str {
        match self {
            Self::Kms { code, .. } => code,
            // Every other variant's name is its errorType.
            other => other.into(),
        }
    }

    /// The KMS error code when KMS answered with an error.
    pub fn kms_code(&self) -> Option<&str> {
        match self {
            Self::Kms { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether KMS answered with `code`.
    pub fn is_kms(&self, code: KmsErrorCode) -> bool {
        self.kms_code() == Some(code.as_str())
    }

    /// Whether the state machine retries this error (a transient KMS condition).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::KmsUnavailable { .. }
                | Self::LedgerUnavailable { .. }
                | Self::StepFunctionsUnavailable { .. }
                | Self::CloudTrailUnavailable { .. }
        ) || self
            .kms_code()
            .is_some_and(|c| TRANSIENT_KMS_CODES.contains(&c))
    }

    /// Shorthand for an [`InvalidInput`](Self::InvalidInput) error.
    pub fn invalid_input(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidInput {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for an [`InvalidStateDocument`](Self::InvalidStateDocument) error.
    pub fn invalid_state(reason: impl Into<String>) -> Self {
        Self::InvalidStateDocument {
            reason: reason.into(),
        }
    }

    /// Shorthand for an [`UnexpectedKmsResponse`](Self::UnexpectedKmsResponse) error.
    pub fn unexpected(operation: &'static str, detail: impl Into<String>) -> Self {
        Self::UnexpectedKmsResponse {
            operation,
            detail: detail.into(),
        }
    }

    /// Converts an SDK error of a KMS `operation`, keeping KMS's wire code
    /// (`ProvideErrorMetadata::code()`, which also covers unmodeled codes such as
    /// `ThrottlingException`). Transport failures and timeouts become `KmsUnavailable`.
    pub fn from_sdk<E, R>(operation: &'static str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        match &err {
            SdkError::ServiceError(service) => {
                let inner = service.err();
                match inner.code() {
                    Some(code) if !code.is_empty() => Self::Kms {
                        operation,
                        code: code.to_string(),
                        message: inner
                            .message()
                            .map_or_else(|| inner.to_string(), str::to_string),
                    },
                    _ => Self::KmsUnavailable {
                        operation,
                        detail: format!("error response without an error code: {inner}"),
                    },
                }
            }
            SdkError::TimeoutError(_) => Self::KmsUnavailable {
                operation,
                detail: "the request timed out".to_string(),
            },
            SdkError::DispatchFailure(dispatch) => Self::KmsUnavailable {
                operation,
                detail: format!("the request could not be sent: {dispatch:?}"),
            },
            SdkError::ResponseError(_) => Self::KmsUnavailable {
                operation,
                detail: format!("the response could not be read: {}", error_chain(&err)),
            },
            SdkError::ConstructionFailure(_) => Self::unexpected(
                operation,
                format!("the request could not be built: {}", error_chain(&err)),
            ),
            _ => Self::KmsUnavailable {
                operation,
                detail: error_chain(&err),
            },
        }
    }
}

/// The error and its sources on one line.
/// What `KeysRecentlyUsed` says about keys scheduled before the guard stopped the execution.
fn already_scheduled_sentence(keys_already_scheduled: u64) -> String {
    if keys_already_scheduled == 0 {
        "nothing was changed".to_string()
    } else {
        format!(
            "{keys_already_scheduled} key(s) this execution scheduled before the guard stopped \
             it stay pending deletion (tag kms-decommission:execution): cancel the decommission \
             to restore them"
        )
    }
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl From<DecommissionError> for Diagnostic {
    fn from(err: DecommissionError) -> Self {
        Diagnostic {
            error_type: err.error_type().to_string(),
            error_message: err.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kms::operation::delete_custom_key_store::DeleteCustomKeyStoreError;
    use aws_sdk_kms::operation::schedule_key_deletion::ScheduleKeyDeletionError;
    use aws_sdk_kms::types::error::{
        CustomKeyStoreHasCmKsException, KmsInternalException, KmsInvalidStateException,
    };
    use aws_smithy_types::error::ErrorMetadata;

    fn service_error<E>(err: E) -> SdkError<E, ()> {
        SdkError::service_error(err, ())
    }

    #[test]
    fn modeled_kms_errors_keep_the_kms_wire_name() {
        let err = DecommissionError::from_sdk(
            "ScheduleKeyDeletion",
            service_error(ScheduleKeyDeletionError::KmsInternalException(
                KmsInternalException::builder()
                    .message("internal")
                    .meta(
                        ErrorMetadata::builder()
                            .code("KMSInternalException")
                            .build(),
                    )
                    .build(),
            )),
        );
        assert_eq!(err.error_type(), "KMSInternalException");
        assert!(err.is_transient());

        let err = DecommissionError::from_sdk(
            "DeleteCustomKeyStore",
            service_error(DeleteCustomKeyStoreError::CustomKeyStoreHasCmKsException(
                CustomKeyStoreHasCmKsException::builder()
                    .meta(
                        ErrorMetadata::builder()
                            .code("CustomKeyStoreHasCMKsException")
                            .build(),
                    )
                    .build(),
            )),
        );
        assert_eq!(err.error_type(), "CustomKeyStoreHasCMKsException");
        assert!(!err.is_transient());

        let err = DecommissionError::from_sdk(
            "ScheduleKeyDeletion",
            service_error(ScheduleKeyDeletionError::KmsInvalidStateException(
                KmsInvalidStateException::builder()
                    .message("arn:aws:kms:us-east-1:123456789012:key/k is pending deletion")
                    .meta(
                        ErrorMetadata::builder()
                            .code("KMSInvalidStateException")
                            .build(),
                    )
                    .build(),
            )),
        );
        let diagnostic = Diagnostic::from(err);
        assert_eq!(diagnostic.error_type, "KMSInvalidStateException");
        assert!(diagnostic.error_message.contains("is pending deletion"));
    }

    #[test]
    fn unmodeled_throttling_keeps_its_code() {
        let err = DecommissionError::from_sdk(
            "ScheduleKeyDeletion",
            service_error(ScheduleKeyDeletionError::generic(
                ErrorMetadata::builder()
                    .code("ThrottlingException")
                    .message("You have exceeded the rate at which you may call KMS.")
                    .build(),
            )),
        );
        assert_eq!(err.error_type(), "ThrottlingException");
        assert!(err.is_transient());
    }

    #[test]
    fn errors_without_a_code_and_transport_failures_are_kms_unavailable() {
        let err = DecommissionError::from_sdk(
            "ListKeys",
            service_error(ScheduleKeyDeletionError::generic(
                ErrorMetadata::builder().build(),
            )),
        );
        assert_eq!(err.error_type(), "KmsUnavailable");
        assert!(err.is_transient());

        let timeout: SdkError<ScheduleKeyDeletionError, ()> =
            SdkError::timeout_error("read timed out");
        let err = DecommissionError::from_sdk("ListKeys", timeout);
        assert_eq!(err.error_type(), "KmsUnavailable");
    }

    #[test]
    fn product_errors_have_their_contract_names_and_actionable_messages() {
        let cases: Vec<(DecommissionError, &str, &str)> = vec![
            (
                DecommissionError::invalid_input("PendingWindowInDays", "must be 7-30"),
                "InvalidInput",
                "PendingWindowInDays",
            ),
            (
                DecommissionError::ConfirmationMismatch {
                    store_id: "cks-1".into(),
                    given: "missing".into(),
                },
                "ConfirmationMismatch",
                "nothing was changed",
            ),
            (
                DecommissionError::ConnectionFailed {
                    store_id: "cks-1".into(),
                    connection_error_code: "INSUFFICIENT_CLOUDHSM_HSMS".into(),
                    attempts: 1,
                },
                "ConnectionFailed",
                "INSUFFICIENT_CLOUDHSM_HSMS",
            ),
            (
                DecommissionError::ConnectTimedOut {
                    store_id: "cks-1".into(),
                    state: "CONNECTING".into(),
                    waited_seconds: 3700,
                },
                "ConnectTimedOut",
                "CONNECTING",
            ),
            (
                DecommissionError::StoreNotConnected {
                    store_id: "cks-1".into(),
                    state: "DISCONNECTED".into(),
                },
                "StoreNotConnected",
                "DISCONNECTED",
            ),
            (
                DecommissionError::KeysNotPendingDeletion {
                    store_id: "cks-1".into(),
                    count: 1,
                    keys: vec!["arn:k (Enabled)".into()],
                    more: String::new(),
                },
                "KeysNotPendingDeletion",
                "arn:k (Enabled)",
            ),
            (
                DecommissionError::KeyDeletionOverdue {
                    store_id: "cks-1".into(),
                    pending: 2,
                    earliest_deletion_date: "2026-12-28T10:00:00Z".into(),
                    overdue_seconds: 172800,
                },
                "KeyDeletionOverdue",
                "2026-12-28T10:00:00Z",
            ),
            (
                DecommissionError::KeysNeededDuringQuarantine {
                    store_id: "cks-1".into(),
                    count: 1,
                    uses: vec!["arn:k: Decrypt by arn:aws:iam::1:user/app from 192.0.2.7 at 2026-11-27T10:00:00Z (CloudTrail event e, KMSInvalidStateException)".into()],
                    more: String::new(),
                    reconnected: "The store is CONNECTED again.".into(),
                },
                "KeysNeededDuringQuarantine",
                "by arn:aws:iam::1:user/app",
            ),
            (
                DecommissionError::CloudTrailUnavailable {
                    operation: "cloudtrail:LookupEvents".into(),
                    code: "ThrottlingException".into(),
                    message: "Rate exceeded".into(),
                },
                "CloudTrailUnavailable",
                "the quarantine goes on",
            ),
            (
                DecommissionError::KeysRecentlyUsed {
                    store_id: "cks-1".into(),
                    count: 1,
                    min_days_since_last_use: 30,
                    keys: vec![
                        "arn:k: Decrypt at 2026-11-27T10:00:00Z (CloudTrail event e)".into(),
                    ],
                    more: String::new(),
                    keys_already_scheduled: 0,
                },
                "KeysRecentlyUsed",
                "CloudTrail event e",
            ),
            (
                DecommissionError::DisconnectTimedOut {
                    store_id: "cks-1".into(),
                    state: "DISCONNECTING".into(),
                    waited_seconds: 3700,
                },
                "DisconnectTimedOut",
                "DISCONNECTING",
            ),
            (
                DecommissionError::KmsUnavailable {
                    operation: "ListKeys",
                    detail: "connection refused".into(),
                },
                "KmsUnavailable",
                "connection refused",
            ),
            (
                DecommissionError::unexpected("DescribeKey", "no KeyMetadata"),
                "UnexpectedKmsResponse",
                "no KeyMetadata",
            ),
            (
                DecommissionError::invalid_state("no Request section"),
                "InvalidStateDocument",
                "no Request section",
            ),
            (
                DecommissionError::InvalidConfiguration {
                    variable: "STORE_POLL_SECONDS".into(),
                    reason: "not a number".into(),
                },
                "InvalidConfiguration",
                "STORE_POLL_SECONDS",
            ),
            (
                DecommissionError::DecommissionInProgress {
                    store_id: "cks-1234567890abcdef0".into(),
                    holder: "arn:aws:states:us-east-1:123456789012:execution:sm:first".into(),
                    taken_at: "2026-11-28T10:00:00Z".into(),
                },
                "DecommissionInProgress",
                "execution:sm:first holds the store's lock",
            ),
            (
                DecommissionError::NotTheRunningDecommission {
                    step: "schedule-key-deletion",
                    execution: "arn:aws:states:us-east-1:123456789012:execution:sm:forged".into(),
                    reason: "Step Functions has no such execution".into(),
                },
                "NotTheRunningDecommission",
                "nothing was changed",
            ),
            (
                DecommissionError::LedgerUnavailable {
                    operation: "PutItem",
                    code: "ProvisionedThroughputExceededException".into(),
                    message: "slow down".into(),
                },
                "LedgerUnavailable",
                "PutItem failed with ProvisionedThroughputExceededException",
            ),
            (
                DecommissionError::StepFunctionsUnavailable {
                    operation: "states:DescribeExecution".into(),
                    code: "ThrottlingException".into(),
                    message: "rate exceeded".into(),
                },
                "StepFunctionsUnavailable",
                "states:DescribeExecution failed with ThrottlingException",
            ),
        ];
        for (err, error_type, in_message) in cases {
            let diagnostic = Diagnostic::from(err);
            assert_eq!(diagnostic.error_type, error_type);
            assert!(
                ERROR_TYPES.contains(&error_type),
                "{error_type} missing from ERROR_TYPES"
            );
            assert!(
                diagnostic.error_message.contains(in_message),
                "{}",
                diagnostic.error_message
            );
        }
    }

    #[test]
    fn error_types_are_unique_and_include_the_retried_kms_codes() {
        let mut seen = std::collections::HashSet::new();
        for name in ERROR_TYPES {
            assert!(seen.insert(name), "{name} listed twice");
        }
        for code in TRANSIENT_KMS_CODES {
            assert!(ERROR_TYPES.contains(code));
        }
    }
}
