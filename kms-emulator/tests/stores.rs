//! Custom key store operations through the real SDK: create, describe, connect, disconnect,
//! update, delete, with every CustomKeyStoreInvalidStateException rule of the facts.

mod common;

use aws_sdk_kms::types::{ConnectionErrorCodeType, ConnectionStateType, CustomKeyStoreType};
use common::*;
use serde_json::json;

#[tokio::test]
async fn created_stores_start_disconnected_with_their_settings() {
    let h = harness().await;
    let hsm = h.cloudhsm_store("hsm", "cluster-234567abcdefg").await;
    let xks = h.xks_store("xks", "xks.example.com").await;
    assert!(
        hsm.starts_with("cks-")
            && hsm.len() == 21
            && hsm[4..].chars().all(|c| c.is_ascii_hexdigit())
    );
    let out = h.kms.describe_custom_key_stores().send().await.unwrap();
    let stores = out.custom_key_stores();
    assert_eq!(stores.len(), 2);
    assert_eq!(stores[0].custom_key_store_id(), Some(hsm.as_str()));
    assert_eq!(
        stores[0].custom_key_store_type(),
        Some(&CustomKeyStoreType::AwsCloudhsm)
    );
    assert_eq!(
        stores[0].cloud_hsm_cluster_id(),
        Some("cluster-234567abcdefg")
    );
    assert_eq!(stores[0].trust_anchor_certificate(), Some(TRUST_ANCHOR));
    assert_eq!(
        stores[0].connection_state(),
        Some(&ConnectionStateType::Disconnected)
    );
    assert!(stores[0].connection_error_code().is_none());
    assert!(stores[0].creation_date().is_some());
    assert_eq!(stores[1].custom_key_store_id(), Some(xks.as_str()));
    assert_eq!(
        stores[1].custom_key_store_type(),
        Some(&CustomKeyStoreType::ExternalKeyStore)
    );
    let proxy = stores[1].xks_proxy_configuration().unwrap();
    assert_eq!(proxy.uri_endpoint(), Some("https://xks.example.com"));
    assert_eq!(proxy.uri_path(), Some("/example/kms/xks/v1"));
    assert_eq!(proxy.access_key_id(), Some("ABCDE23456ABCDE23456"));
    assert!(!out.truncated());
}

#[tokio::test]
async fn describe_by_name_by_id_and_with_pagination() {
    let h = harness().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            h.cloudhsm_store(
                &format!("store-{i}"),
                &format!("cluster-234567abcdef{}", (b'a' + i) as char),
            )
            .await,
        );
    }
    let by_name = h
        .kms
        .describe_custom_key_stores()
        .custom_key_store_name("store-3")
        .send()
        .await
        .unwrap();
    assert_eq!(
        by_name.custom_key_stores()[0].custom_key_store_id(),
        Some(ids[3].as_str())
    );
    let by_id = h
        .kms
        .describe_custom_key_stores()
        .custom_key_store_id(&ids[1])
        .send()
        .await
        .unwrap();
    assert_eq!(
        by_id.custom_key_stores()[0].custom_key_store_name(),
        Some("store-1")
    );

    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = h
            .kms
            .describe_custom_key_stores()
            .limit(2)
            .set_marker(marker.clone())
            .send()
            .await
            .unwrap();
        assert!(out.custom_key_stores().len() <= 2);
        seen.extend(
            out.custom_key_stores()
                .iter()
                .filter_map(|s| s.custom_key_store_id().map(String::from)),
        );
        if !out.truncated() {
            assert!(out.next_marker().is_none());
            break;
        }
        marker = out.next_marker().map(String::from);
        assert!(marker.is_some());
    }
    assert_eq!(seen, ids);

    let err = h
        .kms
        .describe_custom_key_stores()
        .custom_key_store_name("nope")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "CustomKeyStoreNotFoundException");
    let err = h
        .kms
        .describe_custom_key_stores()
        .custom_key_store_id("cks-00000000000000000")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "CustomKeyStoreNotFoundException");
    let err = h
        .kms
        .describe_custom_key_stores()
        .marker("garbage")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidMarkerException");
    let err = h
        .kms
        .describe_custom_key_stores()
        .custom_key_store_id(&ids[0])
        .custom_key_store_name("store-0")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ValidationException");
}

#[tokio::test]
async fn create_refuses_duplicates_bad_settings_and_an_eleventh_store() {
    let h = harness().await;
    h.cloudhsm_store("taken", "cluster-234567abcdefg").await;
    let dup_name = h
        .kms
        .create_custom_key_store()
        .custom_key_store_name("taken")
        .cloud_hsm_cluster_id("cluster-234567abcdefh")
        .trust_anchor_certificate(TRUST_ANCHOR)
        .key_store_password("kmsPswd123")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&dup_name), "CustomKeyStoreNameInUseException");
    let dup_cluster = h
        .kms
        .create_custom_key_store()
        .custom_key_store_name("other")
        .cloud_hsm_cluster_id("cluster-234567abcdefg")
        .trust_anchor_certificate(TRUST_ANCHOR)
        .key_store_password("kmsPswd123")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&dup_cluster), "CloudHsmClusterInUseException");
    let no_password = h
        .kms
        .create_custom_key_store()
        .custom_key_store_name("other")
        .cloud_hsm_cluster_id("cluster-234567abcdefh")
        .trust_anchor_certificate(TRUST_ANCHOR)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&no_password), "ValidationException");
    h.xks_store("xks", "xks.example.com").await;
    let dup_proxy = h
        .xks_store_result("xks2", "xks.example.com")
        .await
        .unwrap_err();
    assert_eq!(dup_proxy, "XksProxyUriInUseException");

    for i in 2..10 {
        h.xks_store(&format!("x{i}"), &format!("xks{i}.example.com"))
            .await;
    }
    let eleventh = h
        .xks_store_result("x11", "xks11.example.com")
        .await
        .unwrap_err();
    assert_eq!(eleventh, "LimitExceededException");
    let all = h.kms.describe_custom_key_stores().send().await.unwrap();
    assert_eq!(all.custom_key_stores().len(), 10);
}

#[tokio::test]
async fn connect_goes_through_connecting_to_connected_after_the_delay() {
    let h = harness().await;
    let store = h.cloudhsm_store("hsm", "cluster-234567abcdefg").await;
    h.kms
        .connect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    assert_eq!(h.store_state(&store).await, "CONNECTING");
    // connecting again while CONNECTING is accepted and changes nothing
    h.kms
        .connect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    h.advance(19.0 * 60.0).await;
    assert_eq!(h.store_state(&store).await, "CONNECTING");
    h.advance(61.0).await;
    assert_eq!(h.store_state(&store).await, "CONNECTED");
    h.kms
        .connect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    assert_eq!(h.store_state(&store).await, "CONNECTED");

    let xks = h.xks_store("xks", "xks.example.com").await;
    h.kms
        .connect_custom_key_store()
        .custom_key_store_id(&xks)
        .send()
        .await
        .unwrap();
    h.advance(4.0 * 60.0).await;
    assert_eq!(h.store_state(&xks).await, "CONNECTING");
    h.advance(61.0).await;
    assert_eq!(h.store_state(&xks).await, "CONNECTED");
}

#[tokio::test]
async fn transitions_also_complete_in_wall_time() {
    // a day of 86.4 s makes the 20-minute CloudHSM connect last one wall second
    let mut config = kms_emulator::EmulatorConfig::fast();
    config.quotas = false;
    config.day_seconds = 86.4;
    let h = harness_with(config).await;
    let store = h.cloudhsm_store("hsm", "cluster-234567abcdefg").await;
    h.kms
        .connect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    let mut states = vec![h.store_state(&store).await];
    for _ in 0..200 {
        if states.last().map(String::as_str) == Some("CONNECTED") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        states.push(h.store_state(&store).await);
    }
    assert_eq!(states.first().map(String::as_str), Some("CONNECTING"));
    assert_eq!(states.last().map(String::as_str), Some("CONNECTED"));
}

#[tokio::test]
async fn failed_connection_shows_its_error_code_and_needs_a_disconnect() {
    let h = harness().await;
    let store = h.cloudhsm_store("hsm", "cluster-234567abcdefg").await;
    let (status, _) = h
        .admin_post(
            &format!("/_emulator/stores/{store}/connection-failure"),
            json!({"error_code": "INSUFFICIENT_CLOUDHSM_HSMS"}),
        )
        .await;
    assert_eq!(status, 200);
    h.kms
        .connect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    h.advance(3600.0).await;
    let out = h
        .kms
        .describe_custom_key_stores()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    let entry = &out.custom_key_stores()[0];
    assert_eq!(entry.connection_state(), Some(&ConnectionStateType::Failed));
    assert_eq!(
        entry.connection_error_code(),
        Some(&ConnectionErrorCodeType::InsufficientCloudhsmHsms)
    );

    let err = h
        .kms
        .connect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "CustomKeyStoreInvalidStateException");
    let err = h
        .kms
        .delete_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "CustomKeyStoreInvalidStateException");

    h.disconnect(&store).await;
    let out = h
        .kms
        .describe_custom_key_stores()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    assert!(out.custom_key_stores()[0].connection_error_code().is_none());
    assert_eq!(
        h.admin_delete(&format!("/_emulator/stores/{store}/connection-failure"))
            .await,
        200
    );
    h.connect(&store).await;
}

#[tokio::test]
async fn disconnect_rules() {
    let h = harness().await;
    let store = h.cloudhsm_store("hsm", "cluster-234567abcdefg").await;
    let err = h
        .kms
        .disconnect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&err),
        "CustomKeyStoreInvalidStateException",
        "DISCONNECTED"
    );

    // valid while CONNECTING
    h.kms
        .connect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    h.kms
        .disconnect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    assert_eq!(h.store_state(&store).await, "DISCONNECTING");
    let err = h
        .kms
        .disconnect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&err),
        "CustomKeyStoreInvalidStateException",
        "DISCONNECTING"
    );
    let err = h
        .kms
        .connect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&err),
        "CustomKeyStoreInvalidStateException",
        "connect while DISCONNECTING"
    );
    let err = h
        .kms
        .delete_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&err),
        "CustomKeyStoreInvalidStateException",
        "delete while DISCONNECTING"
    );
    h.advance(4.0 * 60.0).await;
    assert_eq!(h.store_state(&store).await, "DISCONNECTING");
    h.advance(61.0).await;
    assert_eq!(h.store_state(&store).await, "DISCONNECTED");

    // valid while CONNECTED
    h.connect(&store).await;
    h.disconnect(&store).await;
    let err = h
        .kms
        .disconnect_custom_key_store()
        .custom_key_store_id("cks-00000000000000000")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "CustomKeyStoreNotFoundException");
}

#[tokio::test]
async fn delete_needs_disconnected_and_no_keys_pending_deletion_ones_included() {
    let h = harness().await;
    let store = h.cloudhsm_store("hsm", "cluster-234567abcdefg").await;
    h.connect(&store).await;
    let key = h.cloudhsm_key(&store).await;
    let err = h
        .kms
        .delete_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&err),
        "CustomKeyStoreInvalidStateException",
        "CONNECTED"
    );
    h.kms
        .schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    h.disconnect(&store).await;
    let err = h
        .kms
        .delete_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "CustomKeyStoreHasCMKsException");
    assert!(err
        .into_service_error()
        .is_custom_key_store_has_cm_ks_exception());
    // the key is deleted at DeletionDate + lag, then the store can go
    h.advance(8.0 * 86400.0).await;
    h.kms
        .delete_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    let err = h
        .kms
        .delete_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "CustomKeyStoreNotFoundException");
    let err = h
        .kms
        .describe_custom_key_stores()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "CustomKeyStoreNotFoundException");
    // the freed slot and name can be used again
    h.cloudhsm_store("hsm", "cluster-234567abcdefg").await;
}

#[tokio::test]
async fn update_rules_follow_the_connection_state() {
    let h = harness().await;
    let store = h.cloudhsm_store("hsm", "cluster-234567abcdefg").await;
    h.kms
        .update_custom_key_store()
        .custom_key_store_id(&store)
        .key_store_password("newPswd123")
        .send()
        .await
        .unwrap();
    h.connect(&store).await;
    h.kms
        .update_custom_key_store()
        .custom_key_store_id(&store)
        .new_custom_key_store_name("renamed")
        .send()
        .await
        .unwrap();
    let err = h
        .kms
        .update_custom_key_store()
        .custom_key_store_id(&store)
        .key_store_password("otherPswd1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "CustomKeyStoreInvalidStateException");
    let out = h
        .kms
        .describe_custom_key_stores()
        .custom_key_store_name("renamed")
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.custom_key_stores()[0].custom_key_store_id(),
        Some(store.as_str())
    );

    let xks = h.xks_store("xks", "xks.example.com").await;
    h.connect(&xks).await;
    h.kms
        .update_custom_key_store()
        .custom_key_store_id(&xks)
        .xks_proxy_uri_path("/v2/kms/xks/v1")
        .send()
        .await
        .unwrap();
    let err = h
        .kms
        .update_custom_key_store()
        .custom_key_store_id(&xks)
        .xks_proxy_uri_endpoint("https://other.example.com")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "CustomKeyStoreInvalidStateException");
    let err = h
        .kms
        .update_custom_key_store()
        .custom_key_store_id(&xks)
        .new_custom_key_store_name("renamed")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "CustomKeyStoreNameInUseException");
    let err = h
        .kms
        .update_custom_key_store()
        .custom_key_store_id(&xks)
        .key_store_password("kmsPswd123")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&err),
        "ValidationException",
        "a CloudHSM setting on an external key store"
    );
}
