//! Request quotas: ThrottlingException (HTTP 400, the documented message) beyond each
//! operation's rate, independent per operation, and switchable.

mod common;

use common::*;
use serde_json::json;

/// Sends `n` calls back to back; returns how many were throttled.
async fn throttled(h: &Harness, operation: &str, body: serde_json::Value, n: usize) -> usize {
    let mut count = 0;
    for _ in 0..n {
        let (status, _, value) = h.raw(operation, &body.to_string()).await;
        if value["__type"] == "ThrottlingException" {
            assert_eq!(status, 400);
            assert_eq!(
                value["message"],
                "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls."
            );
            count += 1;
        }
    }
    count
}

#[tokio::test]
async fn custom_key_store_operations_are_throttled_beyond_five_per_second() {
    let h = harness_with(kms_emulator::EmulatorConfig::fast()).await;
    // 40 calls back to back cannot all fit a 5/s bucket unless they take more than 7 seconds
    let n = throttled(&h, "DescribeCustomKeyStores", json!({}), 40).await;
    assert!(
        n >= 1,
        "no ThrottlingException in 40 rapid DescribeCustomKeyStores calls"
    );
    assert!(n <= 35, "at least the burst of 5 must pass, throttled {n}");
    // other operations have their own quota
    assert_eq!(throttled(&h, "ListKeys", json!({}), 5).await, 0);
}

#[tokio::test]
async fn schedule_key_deletion_is_throttled_beyond_fifteen_per_second_and_changes_nothing() {
    let h = harness_with(kms_emulator::EmulatorConfig::fast()).await;
    h.set_config(json!({"quotas": false})).await;
    let mut keys = Vec::new();
    for _ in 0..60 {
        keys.push(
            h.kms
                .create_key()
                .send()
                .await
                .unwrap()
                .key_metadata
                .unwrap()
                .key_id()
                .to_string(),
        );
    }
    h.set_config(json!({"quotas": true})).await;
    let mut throttled_keys = Vec::new();
    for key in &keys {
        let (_, _, value) = h
            .raw(
                "ScheduleKeyDeletion",
                &json!({"KeyId": key, "PendingWindowInDays": 7}).to_string(),
            )
            .await;
        if value["__type"] == "ThrottlingException" {
            throttled_keys.push(key.clone());
        }
    }
    assert!(
        !throttled_keys.is_empty(),
        "60 rapid ScheduleKeyDeletion calls at 15/s"
    );
    for key in throttled_keys {
        assert_eq!(
            h.key_state(&key).await,
            "Enabled",
            "a throttled call changes nothing"
        );
    }
}

#[tokio::test]
async fn quotas_can_be_switched_off() {
    let h = harness_with(kms_emulator::EmulatorConfig::fast()).await;
    h.set_config(json!({"quotas": false})).await;
    assert_eq!(
        throttled(&h, "DescribeCustomKeyStores", json!({}), 40).await,
        0
    );
}

#[tokio::test]
async fn the_sdk_sees_throttling_as_an_unmodeled_error_code() {
    let h = harness_with(kms_emulator::EmulatorConfig::fast()).await;
    let mut saw = None;
    for _ in 0..40 {
        if let Err(e) = h
            .kms
            .connect_custom_key_store()
            .custom_key_store_id("cks-00000000000000000")
            .send()
            .await
        {
            if code(&e) == "ThrottlingException" {
                saw = Some(e);
                break;
            }
            assert_eq!(code(&e), "CustomKeyStoreNotFoundException");
        }
    }
    let err = saw.expect("throttled within 40 rapid calls");
    use aws_sdk_kms::error::ProvideErrorMetadata;
    let service_error = err.into_service_error();
    // not a modeled error of the operation: it reaches the SDK user as an unhandled code
    assert!(!service_error.is_custom_key_store_not_found_exception());
    assert!(!service_error.is_custom_key_store_invalid_state_exception());
    assert!(!service_error.is_kms_internal_exception());
    assert_eq!(service_error.code(), Some("ThrottlingException"));
}
