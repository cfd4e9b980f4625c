//! Helpers for unit tests: a KMS client answered by `aws-smithy-mocks` rules, KMS errors with
//! their wire codes, and ready-made state documents.

pub mod fakes;

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::types::{
    ConnectionStateType, CustomKeyStoreType, CustomKeyStoresListEntry, KeyManagerType, KeyMetadata,
    KeyState, OriginType,
};
use aws_sdk_kms::Client;
use aws_smithy_mocks::{create_mock_http_client, MockResponseInterceptor, Rule, RuleMode};
use aws_smithy_types::error::ErrorMetadata;
use aws_smithy_types::retry::RetryConfig;
use serde_json::json;

use crate::config::Config;
use crate::keys::{StoreKey, TargetStore};
use crate::ledger::Ledger;
use crate::sfn::Executions;
use crate::state::DecommissionState;
use crate::steps::StepContext;

pub const STORE_ID: &str = "cks-1234567890abcdef0";
pub const STORE_NAME: &str = "ExampleStore";
pub const EXECUTION: &str = "arn:aws:states:us-east-1:123456789012:execution:decommission:run-1";

/// A KMS client whose calls are answered by `rules` (first matching rule wins; no SDK retries).
pub fn mock_kms(rules: &[&Rule]) -> Client {
    Client::from_conf(mock_kms_config(rules).build())
}

/// The configuration of [`mock_kms`], for tests that add interceptors of their own.
pub fn mock_kms_config(rules: &[&Rule]) -> aws_sdk_kms::config::Builder {
    let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
    for rule in rules {
        interceptor = interceptor.with_rule(rule);
    }
    aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .retry_config(RetryConfig::disabled())
        .http_client(create_mock_http_client())
        .interceptor(interceptor)
}

/// A step context on a mock KMS client, with default configuration; Step Functions and the
/// ledger answer nothing (tests of code that never reaches them).
pub fn context(kms: Client) -> StepContext {
    StepContext::new(
        kms,
        Config::default(),
        Executions::new(
            fakes::mocked!(aws_sdk_sfn, [] as [&Rule; 0]),
            fakes::MACHINE,
            None,
        ),
        mock_ledger(&[]),
    )
}

/// A ledger whose DynamoDB calls are answered by `rules`.
pub fn mock_ledger(rules: &[&Rule]) -> Ledger {
    Ledger::new(
        fakes::mocked!(aws_sdk_dynamodb, rules.iter().copied()),
        "ledger",
    )
}

/// Error metadata as KMS sends it: wire code and message.
pub fn kms_error(code: &str, message: &str) -> ErrorMetadata {
    ErrorMetadata::builder().code(code).message(message).build()
}

/// A CloudHSM store entry in `state`.
pub fn cloudhsm_store(state: ConnectionStateType) -> CustomKeyStoresListEntry {
    CustomKeyStoresListEntry::builder()
        .custom_key_store_id(STORE_ID)
        .custom_key_store_name(STORE_NAME)
        .custom_key_store_type(CustomKeyStoreType::AwsCloudhsm)
        .cloud_hsm_cluster_id("cluster-1234567890a")
        .connection_state(state)
        .build()
}

/// Metadata of key `key_id` of the CloudHSM test store.
pub fn store_key_metadata(key_id: &str, state: KeyState) -> KeyMetadata {
    KeyMetadata::builder()
        .key_id(key_id)
        .arn(format!("arn:aws:kms:us-east-1:123456789012:key/{key_id}"))
        .custom_key_store_id(STORE_ID)
        .key_manager(KeyManagerType::Customer)
        .origin(OriginType::AwsCloudhsm)
        .key_state(state)
        .build()
        .expect("key id is set")
}

/// The CloudHSM test store as a target.
pub fn target() -> TargetStore {
    TargetStore::new(&crate::model::StoreSummary {
        custom_key_store_id: STORE_ID.into(),
        custom_key_store_name: STORE_NAME.into(),
        custom_key_store_type: crate::model::StoreType::CloudHsm,
        cloud_hsm_cluster_id: Some("cluster-1234567890a".into()),
        xks_proxy_uri_endpoint: None,
        xks_proxy_vpc_endpoint_service_name: None,
        connection_state: "CONNECTED".into(),
        connection_error_code: None,
    })
}

/// Key `key_id` of the test store, in `state`.
pub fn store_key(key_id: &str, state: KeyState) -> StoreKey {
    StoreKey::from_metadata(&store_key_metadata(key_id, state), &target()).expect("a store key")
}

/// A state document as the Initialize state writes it, for a real run of the test store.
pub fn initial_state(extra_input: serde_json::Value) -> DecommissionState {
    let mut input = json!({
        "CustomKeyStoreId": STORE_ID,
        "ConfirmCustomKeyStoreName": STORE_NAME,
        "PendingWindowInDays": 7,
        "TicketId": "CHG-1"
    });
    if let (Some(base), Some(extra)) = (input.as_object_mut(), extra_input.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    DecommissionState::from_value(json!({
        "Input": input,
        "Execution": {"Id": EXECUTION, "Name": "run-1", "StartTime": "2026-11-28T10:00:00Z"}
    }))
    .expect("a valid document")
}

/// The test store's document as it stands when `step` is about to run in a real run (every
/// earlier step completed: CloudHSM store connected, keys scheduled, all deleted, disconnected).
pub fn state_before(step: crate::steps::Step) -> DecommissionState {
    use crate::model::{StoreSummary, StoreType};
    use crate::state::*;
    use crate::steps::Step;
    let mut state = initial_state(json!({}));
    let position = |s: Step| Step::ALL.iter().position(|x| *x == s).unwrap_or(0);
    let after = |s: Step| position(step) > position(s);
    if after(Step::PlanDecommission) {
        state.request = Some(
            crate::request::DecommissionRequest::from_input(&state.input).expect("valid input"),
        );
        state.store = Some(StoreSummary {
            custom_key_store_id: STORE_ID.into(),
            custom_key_store_name: STORE_NAME.into(),
            custom_key_store_type: StoreType::CloudHsm,
            cloud_hsm_cluster_id: Some("cluster-1234567890a".into()),
            xks_proxy_uri_endpoint: None,
            xks_proxy_vpc_endpoint_service_name: None,
            connection_state: "CONNECTED".into(),
            connection_error_code: None,
        });
        state.plan = Some(PlanProgress {
            done: true,
            keys_in_store: 2,
            ..PlanProgress::default()
        });
        state.approval = Some(ApprovalStatus {
            required: false,
            timeout_seconds: 60,
            ..ApprovalStatus::default()
        });
    }
    if after(Step::EnsureStoreConnected) {
        state.connection = Some(ConnectionStatus {
            ready: true,
            connection_state: "CONNECTED".into(),
            poll_after_seconds: 30,
            ..ConnectionStatus::default()
        });
    }
    if after(Step::ScheduleKeyDeletion) {
        state.scheduling = Some(SchedulingProgress {
            done: true,
            keys_scheduled: 2,
            ..SchedulingProgress::default()
        });
    }
    if after(Step::CheckKeysDeleted) {
        state.deletion = Some(DeletionCheck {
            scan_done: true,
            all_deleted: true,
            checks: 1,
            ..DeletionCheck::default()
        });
    }
    if after(Step::DisconnectStore) {
        state.disconnect = Some(DisconnectStatus {
            disconnected: true,
            connection_state: "DISCONNECTED".into(),
            poll_after_seconds: 30,
            ..DisconnectStatus::default()
        });
    }
    state
}
