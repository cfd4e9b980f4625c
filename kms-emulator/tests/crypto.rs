//! Encrypt, Decrypt, GenerateDataKey (real AES-GCM under per-key material) and GetKeyLastUsage,
//! through the real SDK.

mod common;

use aws_sdk_kms::operation::RequestId;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, KeyLastUsageTrackingOperation};
use aws_sdk_kms::Client;
use common::*;
use serde_json::json;

async fn new_key(kms: &Client) -> String {
    kms.create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id()
        .to_string()
}

#[tokio::test]
async fn ciphertexts_decrypt_only_under_their_key_and_context() {
    let h = harness().await;
    let a = new_key(&h.kms).await;
    let b = new_key(&h.kms).await;
    let out = h
        .kms
        .encrypt()
        .key_id(&a)
        .plaintext(Blob::new("attack at dawn"))
        .encryption_context("app", "billing")
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.key_id(),
        Some(format!("arn:aws:kms:us-east-1:123456789012:key/{a}").as_str())
    );
    let blob = out.ciphertext_blob().unwrap().clone();
    assert!(
        !blob.as_ref().windows(6).any(|w| w == b"attack"),
        "ciphertext hides the plaintext"
    );

    let plain = h
        .kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("app", "billing")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.plaintext().unwrap().as_ref(), b"attack at dawn");
    assert_eq!(plain.key_id(), out.key_id());

    let err = h
        .kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&err),
        "InvalidCiphertextException",
        "encryption context is bound"
    );
    let err = h
        .kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .key_id(&b)
        .encryption_context("app", "billing")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "IncorrectKeyException");
    let mut tampered = blob.as_ref().to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    let err = h
        .kms
        .decrypt()
        .ciphertext_blob(Blob::new(tampered))
        .encryption_context("app", "billing")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidCiphertextException");
    // a ciphertext relabelled with another key's id does not decrypt under that key
    let mut relabelled = blob.as_ref().to_vec();
    relabelled[6..6 + 36].copy_from_slice(b.as_bytes());
    let err = h
        .kms
        .decrypt()
        .ciphertext_blob(Blob::new(relabelled))
        .encryption_context("app", "billing")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidCiphertextException");
    let err = h
        .kms
        .decrypt()
        .ciphertext_blob(Blob::new("garbage"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidCiphertextException");
}

#[tokio::test]
async fn generate_data_key_returns_a_key_and_its_encrypted_copy() {
    let h = harness().await;
    let key = new_key(&h.kms).await;
    let out = h
        .kms
        .generate_data_key()
        .key_id(&key)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap();
    let plaintext = out.plaintext().unwrap().as_ref().to_vec();
    assert_eq!(plaintext.len(), 32);
    let back = h
        .kms
        .decrypt()
        .ciphertext_blob(out.ciphertext_blob().unwrap().clone())
        .send()
        .await
        .unwrap();
    assert_eq!(back.plaintext().unwrap().as_ref(), plaintext.as_slice());
    let out = h
        .kms
        .generate_data_key()
        .key_id(&key)
        .number_of_bytes(64)
        .send()
        .await
        .unwrap();
    assert_eq!(out.plaintext().unwrap().as_ref().len(), 64);
    let err = h
        .kms
        .generate_data_key()
        .key_id(&key)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&err),
        "ValidationException",
        "neither KeySpec nor NumberOfBytes"
    );
    let err = h
        .kms
        .generate_data_key()
        .key_id(&key)
        .number_of_bytes(16)
        .key_spec(DataKeySpec::Aes128)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ValidationException", "both");
}

#[tokio::test]
async fn unusable_keys_fail_as_kms_does_and_record_no_use() {
    let h = harness().await;
    let disabled = new_key(&h.kms).await;
    h.kms.disable_key().key_id(&disabled).send().await.unwrap();
    let err = h
        .kms
        .encrypt()
        .key_id(&disabled)
        .plaintext(Blob::new("x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "DisabledException");
    assert!(err.into_service_error().is_disabled_exception());

    let pending = new_key(&h.kms).await;
    let ciphertext = h
        .kms
        .encrypt()
        .key_id(&pending)
        .plaintext(Blob::new("x"))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    h.kms
        .schedule_key_deletion()
        .key_id(&pending)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let err = h
        .kms
        .decrypt()
        .ciphertext_blob(ciphertext)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "KMSInvalidStateException");
    assert!(err
        .as_service_error()
        .and_then(|e| aws_sdk_kms::error::ProvideErrorMetadata::message(e))
        .unwrap()
        .ends_with("is pending deletion."));
    let last = h
        .kms
        .get_key_last_usage()
        .key_id(&pending)
        .send()
        .await
        .unwrap();
    assert_eq!(
        last.key_last_usage().and_then(|u| u.operation()),
        Some(&KeyLastUsageTrackingOperation::Encrypt),
        "the failed Decrypt is not a use"
    );

    let store = h.cloudhsm_store("hsm", "cluster-234567abcdefg").await;
    h.connect(&store).await;
    let hsm_key = h.cloudhsm_key(&store).await;
    h.kms
        .encrypt()
        .key_id(&hsm_key)
        .plaintext(Blob::new("x"))
        .send()
        .await
        .expect("usable while connected");
    h.disconnect(&store).await;
    let err = h
        .kms
        .generate_data_key()
        .key_id(&hsm_key)
        .number_of_bytes(32)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "KMSInvalidStateException");
    assert!(err
        .as_service_error()
        .and_then(|e| aws_sdk_kms::error::ProvideErrorMetadata::message(e))
        .unwrap()
        .ends_with("is unavailable."));
    let last = h
        .kms
        .get_key_last_usage()
        .key_id(&disabled)
        .send()
        .await
        .unwrap();
    assert!(last
        .key_last_usage()
        .is_some_and(|u| u.operation().is_none() && u.timestamp().is_none()));
}

#[tokio::test]
async fn get_key_last_usage_reports_the_last_successful_operation() {
    let h = harness().await;
    let key = h
        .kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    let id = key.key_id().to_string();
    let fresh = h.kms.get_key_last_usage().key_id(&id).send().await.unwrap();
    assert_eq!(fresh.key_id(), Some(id.as_str()));
    assert!(
        fresh
            .key_last_usage()
            .is_some_and(|u| u.operation().is_none()),
        "empty object before any use"
    );
    assert_eq!(
        fresh.tracking_start_date(),
        key.creation_date(),
        "tracking starts at creation"
    );
    assert_eq!(fresh.key_creation_date(), key.creation_date());

    let encrypted = h
        .kms
        .encrypt()
        .key_id(&id)
        .plaintext(Blob::new("x"))
        .send()
        .await
        .unwrap();
    h.advance(3600.0).await;
    let decrypted = h
        .kms
        .decrypt()
        .ciphertext_blob(encrypted.ciphertext_blob().unwrap().clone())
        .send()
        .await
        .unwrap();
    let last = h
        .kms
        .get_key_last_usage()
        .key_id(format!("arn:aws:kms:us-east-1:123456789012:key/{id}"))
        .send()
        .await
        .unwrap();
    let usage = last.key_last_usage().unwrap();
    assert_eq!(
        usage.operation(),
        Some(&KeyLastUsageTrackingOperation::Decrypt)
    );
    assert_eq!(
        usage.kms_request_id(),
        decrypted.request_id(),
        "the x-amzn-RequestId of the Decrypt call"
    );
    assert!(usage.cloud_trail_event_id().is_some_and(|e| e.len() == 36));
    let ts = usage.timestamp().unwrap().as_secs_f64();
    assert!(
        ts >= key.creation_date().unwrap().as_secs_f64() + 3600.0,
        "timestamps follow the emulated clock"
    );

    let err = h
        .kms
        .get_key_last_usage()
        .key_id("alias/aws/s3")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NotFoundException", "aliases are not supported");
    let err = h
        .kms
        .get_key_last_usage()
        .key_id("arn:aws:kms:bad")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidArnException");
    h.kms
        .schedule_key_deletion()
        .key_id(&id)
        .send()
        .await
        .unwrap();
    h.kms
        .get_key_last_usage()
        .key_id(&id)
        .send()
        .await
        .expect("any key state");
}

#[tokio::test]
async fn keys_older_than_the_tracking_start_date_report_it_and_earlier_use_is_unrecorded() {
    let h = harness().await;
    let key = h
        .kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    let created = key.creation_date().unwrap().as_secs_f64();
    let start = created + 86_400.0;
    h.set_config(json!({"tracking_start_date": start})).await;
    h.kms
        .encrypt()
        .key_id(key.key_id())
        .plaintext(Blob::new("x"))
        .send()
        .await
        .unwrap();
    let out = h
        .kms
        .get_key_last_usage()
        .key_id(key.key_id())
        .send()
        .await
        .unwrap();
    assert!(
        out.key_last_usage()
            .is_some_and(|u| u.operation().is_none()),
        "use before tracking began is not recorded"
    );
    // Epoch seconds travel as JSON numbers into the SDK's DateTime (seconds + nanos): compare to
    // the millisecond, not bit for bit.
    let reported_start = out.tracking_start_date().map(|d| d.as_secs_f64());
    assert!(
        reported_start.is_some_and(|s| (s - start).abs() < 0.001),
        "tracking start date {reported_start:?} is the configured {start}"
    );
    assert!(
        out.key_creation_date().unwrap().as_secs_f64() < start,
        "KMS does not know about earlier use"
    );
    h.advance(2.0 * 86_400.0).await;
    h.kms
        .generate_data_key()
        .key_id(key.key_id())
        .number_of_bytes(32)
        .send()
        .await
        .unwrap();
    let out = h
        .kms
        .get_key_last_usage()
        .key_id(key.key_id())
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.key_last_usage().and_then(|u| u.operation()),
        Some(&KeyLastUsageTrackingOperation::GenerateDataKey)
    );
}

#[tokio::test]
async fn get_key_last_usage_is_throttled_beyond_five_per_second() {
    let h = harness_with(kms_emulator::EmulatorConfig::fast()).await;
    let key = h
        .kms
        .describe_key()
        .key_id("alias/aws/s3")
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id()
        .to_string();
    let mut throttled = 0;
    for _ in 0..40 {
        if let Err(e) = h.kms.get_key_last_usage().key_id(&key).send().await {
            assert_eq!(code(&e), "ThrottlingException");
            throttled += 1;
        }
    }
    assert!(throttled >= 1, "40 rapid calls at 5/s");
}
