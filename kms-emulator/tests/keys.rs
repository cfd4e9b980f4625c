//! Key operations through the real SDK: creation in stores, metadata, listing, the key-state
//! table, pending deletion ending in real deletion, and store availability.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_kms::types::{KeyManagerType, KeySpec, KeyState, OriginType};
use common::*;

fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

async fn connected_hsm(h: &Harness) -> String {
    let store = h.cloudhsm_store("hsm", "cluster-234567abcdefg").await;
    h.connect(&store).await;
    store
}

#[tokio::test]
async fn create_key_only_in_a_connected_store_of_the_matching_type() {
    let h = harness().await;
    let store = h.cloudhsm_store("hsm", "cluster-234567abcdefg").await;
    let create = || {
        h.kms
            .create_key()
            .origin(OriginType::AwsCloudhsm)
            .custom_key_store_id(&store)
    };
    let err = create().send().await.unwrap_err();
    assert_eq!(
        code(&err),
        "CustomKeyStoreInvalidStateException",
        "DISCONNECTED"
    );
    h.kms
        .connect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    let err = create().send().await.unwrap_err();
    assert_eq!(
        code(&err),
        "CustomKeyStoreInvalidStateException",
        "CONNECTING"
    );
    h.advance(3600.0).await;
    let key = create()
        .description("hsm key")
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(key.key_state(), Some(&KeyState::Enabled));
    assert_eq!(key.origin(), Some(&OriginType::AwsCloudhsm));
    assert_eq!(key.custom_key_store_id(), Some(store.as_str()));
    assert_eq!(key.cloud_hsm_cluster_id(), Some("cluster-234567abcdefg"));
    assert_eq!(key.key_manager(), Some(&KeyManagerType::Customer));
    assert_eq!(key.description(), Some("hsm key"));
    assert_eq!(
        key.arn(),
        Some(format!("arn:aws:kms:us-east-1:123456789012:key/{}", key.key_id()).as_str())
    );

    let err = h
        .kms
        .create_key()
        .origin(OriginType::AwsCloudhsm)
        .custom_key_store_id("cks-00000000000000000")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "CustomKeyStoreNotFoundException");
    let err = h
        .kms
        .create_key()
        .origin(OriginType::ExternalKeyStore)
        .custom_key_store_id(&store)
        .xks_key_id("k1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&err),
        "UnsupportedOperationException",
        "XKS origin in a CloudHSM store"
    );
    let err = create()
        .key_spec(KeySpec::Rsa2048)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&err),
        "UnsupportedOperationException",
        "asymmetric key in a custom key store"
    );
    let err = h
        .kms
        .create_key()
        .origin(OriginType::AwsCloudhsm)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&err),
        "ValidationException",
        "AWS_CLOUDHSM without a store"
    );
}

#[tokio::test]
async fn xks_keys_carry_their_external_key_id_once_per_store() {
    let h = harness().await;
    let store = h.xks_store("xks", "xks.example.com").await;
    h.connect(&store).await;
    let create = |xks: &str| {
        h.kms
            .create_key()
            .origin(OriginType::ExternalKeyStore)
            .custom_key_store_id(&store)
            .xks_key_id(xks)
    };
    let key = create("ext-key-1")
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    let described = h
        .kms
        .describe_key()
        .key_id(key.key_id())
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(described.origin(), Some(&OriginType::ExternalKeyStore));
    assert_eq!(
        described.xks_key_configuration().and_then(|c| c.id()),
        Some("ext-key-1")
    );
    assert!(described.cloud_hsm_cluster_id().is_none());
    let err = create("ext-key-1").send().await.unwrap_err();
    assert_eq!(code(&err), "XksKeyAlreadyInUseException");
    let err = h
        .kms
        .create_key()
        .origin(OriginType::ExternalKeyStore)
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ValidationException", "XksKeyId missing");
    let err = create("bad id!").send().await.unwrap_err();
    assert_eq!(code(&err), "ValidationException");
}

#[tokio::test]
async fn describe_key_accepts_id_arn_and_alias_and_names_missing_keys() {
    let h = harness().await;
    let key = h
        .kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    let arn = key.arn().unwrap().to_string();
    assert_eq!(h.key_state(key.key_id()).await, "Enabled");
    assert_eq!(h.key_state(&arn).await, "Enabled");
    let plain = h
        .kms
        .describe_key()
        .key_id(&arn)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(plain.origin(), Some(&OriginType::AwsKms));
    assert!(plain.custom_key_store_id().is_none());
    assert!(plain.deletion_date().is_none());
    h.kms
        .create_alias()
        .alias_name("alias/app")
        .target_key_id(key.key_id())
        .send()
        .await
        .unwrap();
    assert_eq!(h.key_state("alias/app").await, "Enabled");
    let managed = h
        .kms
        .describe_key()
        .key_id("alias/aws/s3")
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(managed.key_manager(), Some(&KeyManagerType::Aws));

    let missing = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000";
    let err = h
        .kms
        .describe_key()
        .key_id(missing)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NotFoundException");
    assert_eq!(
        err.as_service_error().and_then(|e| e.meta().message()),
        Some(format!("Key '{missing}' does not exist").as_str())
    );
    let err = h
        .kms
        .describe_key()
        .key_id("arn:aws:kms:nope")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidArnException");
    let err = h
        .kms
        .describe_key()
        .key_id("alias/none")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NotFoundException");
}

#[tokio::test]
async fn list_keys_pages_through_every_key_aws_managed_and_pending_included() {
    let h = harness().await;
    let mut created = Vec::new();
    for _ in 0..7 {
        created.push(
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
    h.kms
        .schedule_key_deletion()
        .key_id(&created[0])
        .send()
        .await
        .unwrap();
    let mut listed = Vec::new();
    let mut marker = None;
    let mut pages = 0;
    loop {
        let out = h
            .kms
            .list_keys()
            .limit(3)
            .set_marker(marker)
            .send()
            .await
            .unwrap();
        pages += 1;
        assert!(out.keys().len() <= 3);
        for k in out.keys() {
            let id = k.key_id().unwrap().to_string();
            assert_eq!(
                k.key_arn(),
                Some(format!("arn:aws:kms:us-east-1:123456789012:key/{id}").as_str())
            );
            listed.push(id);
        }
        if !out.truncated() {
            assert!(out.next_marker().is_none());
            break;
        }
        marker = out.next_marker().map(String::from);
    }
    assert_eq!(listed.len(), 10, "3 AWS managed keys + 7 created");
    assert_eq!(pages, 4);
    assert_eq!(&listed[3..], &created[..]);
    let default_page = h.kms.list_keys().send().await.unwrap();
    assert_eq!(default_page.keys().len(), 10);
    assert!(!default_page.truncated());
    let (status, kind) = h
        .raw_error("ListKeys", serde_json::json!({"Limit": 0}))
        .await;
    assert_eq!((status, kind.as_str()), (400, "ValidationException"));
    let (status, kind) = h
        .raw_error("ListKeys", serde_json::json!({"Limit": 1001}))
        .await;
    assert_eq!((status, kind.as_str()), (400, "ValidationException"));
    let err = h
        .kms
        .list_keys()
        .marker("not-a-marker")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidMarkerException");
}

#[tokio::test]
async fn schedule_deletion_window_and_wall_clock_deletion_date() {
    let mut config = kms_emulator::EmulatorConfig::fast();
    config.quotas = false;
    let h = harness_with(config).await;
    let key = h
        .kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id()
        .to_string();
    for bad in [6, 31] {
        let err = h
            .kms
            .schedule_key_deletion()
            .key_id(&key)
            .pending_window_in_days(bad)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), "ValidationException", "window {bad}");
    }
    assert_eq!(
        h.key_state(&key).await,
        "Enabled",
        "refused calls change nothing"
    );
    let before = epoch_now();
    let out = h
        .kms
        .schedule_key_deletion()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    let after = epoch_now();
    assert_eq!(out.pending_window_in_days(), Some(30), "default window");
    assert_eq!(out.key_state(), Some(&KeyState::PendingDeletion));
    assert_eq!(
        out.key_id(),
        Some(format!("arn:aws:kms:us-east-1:123456789012:key/{key}").as_str())
    );
    // a day lasts one wall second: DeletionDate is 30 wall seconds ahead
    let date = out.deletion_date().unwrap().as_secs_f64();
    assert!(
        date >= before + 30.0 - 0.01 && date <= after + 30.0 + 0.01,
        "{before} {date} {after}"
    );
    let meta = h
        .kms
        .describe_key()
        .key_id(&key)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(meta.pending_deletion_window_in_days(), Some(30));
    assert_eq!(meta.deletion_date().map(|d| d.as_secs_f64()), Some(date));
    assert!(!meta.enabled());
}

#[tokio::test]
async fn repeated_schedule_is_an_invalid_state_and_cancel_leaves_the_key_disabled() {
    let h = harness().await;
    let key = h
        .kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    let arn = key.arn().unwrap();
    h.kms
        .schedule_key_deletion()
        .key_id(key.key_id())
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let err = h
        .kms
        .schedule_key_deletion()
        .key_id(key.key_id())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "KMSInvalidStateException");
    assert_eq!(
        err.as_service_error().and_then(|e| e.meta().message()),
        Some(format!("{arn} is pending deletion.").as_str())
    );
    for err in [
        code(
            &h.kms
                .enable_key()
                .key_id(key.key_id())
                .send()
                .await
                .unwrap_err(),
        ),
        code(
            &h.kms
                .disable_key()
                .key_id(key.key_id())
                .send()
                .await
                .unwrap_err(),
        ),
    ] {
        assert_eq!(err, "KMSInvalidStateException");
    }
    let out = h
        .kms
        .cancel_key_deletion()
        .key_id(arn)
        .send()
        .await
        .unwrap();
    assert_eq!(out.key_id(), Some(arn));
    assert_eq!(h.key_state(key.key_id()).await, "Disabled");
    let meta = h
        .kms
        .describe_key()
        .key_id(key.key_id())
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert!(meta.deletion_date().is_none() && meta.pending_deletion_window_in_days().is_none());
    let err = h
        .kms
        .cancel_key_deletion()
        .key_id(key.key_id())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "KMSInvalidStateException");
    assert_eq!(
        err.as_service_error().and_then(|e| e.meta().message()),
        Some(format!("{arn} is not pending deletion.").as_str())
    );
    h.kms
        .enable_key()
        .key_id(key.key_id())
        .send()
        .await
        .unwrap();
    assert_eq!(h.key_state(key.key_id()).await, "Enabled");
    h.kms
        .disable_key()
        .key_id(key.key_id())
        .send()
        .await
        .unwrap();
    assert_eq!(h.key_state(key.key_id()).await, "Disabled");
}

#[tokio::test]
async fn deletion_happens_at_deletion_date_plus_the_lag_not_before() {
    let h = harness().await;
    h.set_config(serde_json::json!({"deletion_lag_hours": 24}))
        .await;
    let key = h
        .kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id()
        .to_string();
    let other = h
        .kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id()
        .to_string();
    h.kms
        .schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    h.advance(7.0 * 86400.0 + 60.0).await;
    assert_eq!(
        h.key_state(&key).await,
        "PendingDeletion",
        "past DeletionDate, within the lag"
    );
    h.advance(24.0 * 3600.0).await;
    let err = h.kms.describe_key().key_id(&key).send().await.unwrap_err();
    assert_eq!(code(&err), "NotFoundException");
    let listed: Vec<String> = h
        .kms
        .list_keys()
        .send()
        .await
        .unwrap()
        .keys()
        .iter()
        .filter_map(|k| k.key_id().map(String::from))
        .collect();
    assert!(!listed.contains(&key));
    assert!(listed.contains(&other));
    let err = h
        .kms
        .cancel_key_deletion()
        .key_id(&key)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NotFoundException");
}

#[tokio::test]
async fn disconnecting_makes_keys_unavailable_except_pending_deletion_and_reconnect_restores() {
    let h = harness().await;
    let store = connected_hsm(&h).await;
    let enabled = h.cloudhsm_key(&store).await;
    let disabled = h.cloudhsm_key(&store).await;
    let pending = h.cloudhsm_key(&store).await;
    let plain = h
        .kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id()
        .to_string();
    h.kms.disable_key().key_id(&disabled).send().await.unwrap();
    h.kms
        .schedule_key_deletion()
        .key_id(&pending)
        .pending_window_in_days(30)
        .send()
        .await
        .unwrap();
    h.kms
        .disconnect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    // unusable right away, while DISCONNECTING
    assert_eq!(h.key_state(&enabled).await, "Unavailable");
    h.advance(3600.0).await;
    assert_eq!(h.key_state(&enabled).await, "Unavailable");
    assert_eq!(h.key_state(&disabled).await, "Unavailable");
    assert_eq!(h.key_state(&pending).await, "PendingDeletion");
    assert_eq!(
        h.key_state(&plain).await,
        "Enabled",
        "keys outside the store are untouched"
    );
    h.connect(&store).await;
    assert_eq!(h.key_state(&enabled).await, "Enabled");
    assert_eq!(h.key_state(&disabled).await, "Disabled");
    assert_eq!(h.key_state(&pending).await, "PendingDeletion");
}

#[tokio::test]
async fn unavailable_keys_can_be_scheduled_cancelled_and_enabled_for_later() {
    let h = harness().await;
    let store = connected_hsm(&h).await;
    let a = h.cloudhsm_key(&store).await;
    let b = h.cloudhsm_key(&store).await;
    let c = h.cloudhsm_key(&store).await;
    h.kms
        .schedule_key_deletion()
        .key_id(&b)
        .pending_window_in_days(30)
        .send()
        .await
        .unwrap();
    h.kms.disable_key().key_id(&c).send().await.unwrap();
    h.disconnect(&store).await;
    // ScheduleKeyDeletion is allowed on an Unavailable key
    h.kms
        .schedule_key_deletion()
        .key_id(&a)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    assert_eq!(h.key_state(&a).await, "PendingDeletion");
    // CancelKeyDeletion works while disconnected; the key is Unavailable until reconnected
    h.kms.cancel_key_deletion().key_id(&b).send().await.unwrap();
    assert_eq!(h.key_state(&b).await, "Unavailable");
    // EnableKey on an Unavailable key succeeds and takes effect on reconnect
    h.kms.enable_key().key_id(&c).send().await.unwrap();
    assert_eq!(h.key_state(&c).await, "Unavailable");
    h.connect(&store).await;
    assert_eq!(h.key_state(&b).await, "Disabled");
    assert_eq!(h.key_state(&c).await, "Enabled");
}

#[tokio::test]
async fn cloudhsm_key_deleted_while_disconnected_orphans_its_key_material() {
    let h = harness().await;
    let store = connected_hsm(&h).await;
    let kept_connected = h.cloudhsm_key(&store).await;
    let orphaned = h.cloudhsm_key(&store).await;
    h.kms
        .schedule_key_deletion()
        .key_id(&kept_connected)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    h.advance(8.0 * 86400.0).await;
    h.kms
        .schedule_key_deletion()
        .key_id(&orphaned)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    h.disconnect(&store).await;
    h.advance(8.0 * 86400.0).await;
    let state = h.admin_get("/_emulator/state").await;
    let deleted = state["deleted_keys"].as_array().unwrap();
    let status = |id: &str| {
        deleted
            .iter()
            .find(|d| d["key_id"] == id)
            .map(|d| d["backing_key_deletion"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(status(&kept_connected).as_deref(), Some("SUCCESS"));
    assert_eq!(status(&orphaned).as_deref(), Some("FAILURE"));
}

#[tokio::test]
async fn aws_managed_keys_cannot_be_managed() {
    let h = harness().await;
    let managed = h
        .kms
        .describe_key()
        .key_id("alias/aws/ebs")
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    let id = managed.key_id();
    assert_eq!(
        code(
            &h.kms
                .schedule_key_deletion()
                .key_id(id)
                .send()
                .await
                .unwrap_err()
        ),
        "AccessDeniedException"
    );
    assert_eq!(
        code(&h.kms.disable_key().key_id(id).send().await.unwrap_err()),
        "AccessDeniedException"
    );
    assert_eq!(
        code(
            &h.kms
                .tag_resource()
                .key_id(id)
                .tags(tag("a", "b"))
                .send()
                .await
                .unwrap_err()
        ),
        "AccessDeniedException"
    );
    assert_eq!(h.key_state(id).await, "Enabled");
}

fn tag(k: &str, v: &str) -> aws_sdk_kms::types::Tag {
    aws_sdk_kms::types::Tag::builder()
        .tag_key(k)
        .tag_value(v)
        .build()
        .unwrap()
}

#[tokio::test]
async fn pending_import_keys_follow_footnote_five() {
    let h = harness().await;
    let key = h
        .kms
        .create_key()
        .origin(OriginType::External)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(key.key_state(), Some(&KeyState::PendingImport));
    let err = h
        .kms
        .enable_key()
        .key_id(key.key_id())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "KMSInvalidStateException");
    h.kms
        .schedule_key_deletion()
        .key_id(key.key_id())
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    h.kms
        .cancel_key_deletion()
        .key_id(key.key_id())
        .send()
        .await
        .unwrap();
    assert_eq!(h.key_state(key.key_id()).await, "PendingImport");
}
