//! The admin API: reset, state, config, clock, faults, forced connection states, call log.

mod common;

use aws_sdk_kms::types::OriginType;
use common::*;
use serde_json::json;

#[tokio::test]
async fn reset_empties_everything_and_reseeds_aws_managed_keys() {
    let h = harness().await;
    let store = h.cloudhsm_store("hsm", "cluster-234567abcdefg").await;
    h.connect(&store).await;
    h.cloudhsm_key(&store).await;
    h.admin_post(
        "/_emulator/faults",
        json!({"operation": "*", "error": "KMSInternalException", "count": 5}),
    )
    .await;
    let (status, _) = h.admin_post("/_emulator/reset", json!({})).await;
    assert_eq!(status, 200);
    let state = h.admin_get("/_emulator/state").await;
    assert_eq!(state["stores"].as_array().map(Vec::len), Some(0));
    assert_eq!(state["keys"].as_array().map(Vec::len), Some(3));
    assert!(state["keys"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["key_manager"] == "AWS"));
    assert!(h.calls().await.is_empty());
    assert_eq!(state["clock_offset_seconds"], 0.0);
    h.kms.list_keys().send().await.expect("faults were cleared");
}

#[tokio::test]
async fn state_shows_stores_keys_tags_and_deletion_dates() {
    let h = harness().await;
    let store = h.xks_store("xks", "xks.example.com").await;
    h.connect(&store).await;
    let key = h
        .kms
        .create_key()
        .origin(OriginType::ExternalKeyStore)
        .custom_key_store_id(&store)
        .xks_key_id("ext-1")
        .tags(
            aws_sdk_kms::types::Tag::builder()
                .tag_key("team")
                .tag_value("a")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    let out = h
        .kms
        .schedule_key_deletion()
        .key_id(key.key_id())
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let state = h.admin_get("/_emulator/state").await;
    let s = &state["stores"][0];
    assert_eq!(s["id"], store.as_str());
    assert_eq!(s["name"], "xks");
    assert_eq!(s["type"], "EXTERNAL_KEY_STORE");
    assert_eq!(s["state"], "CONNECTED");
    assert_eq!(s["xks_proxy"]["uri_endpoint"], "https://xks.example.com");
    assert!(
        s["xks_proxy"].get("secret_access_key").is_none(),
        "secrets never leave"
    );
    assert_eq!(s["key_count"], 1);
    let k = state["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == key.key_id())
        .unwrap();
    assert_eq!(k["state"], "PendingDeletion");
    assert_eq!(k["custom_key_store_id"], store.as_str());
    assert_eq!(k["origin"], "EXTERNAL_KEY_STORE");
    assert_eq!(k["xks_key_id"], "ext-1");
    assert_eq!(k["tags"]["team"], "a");
    // The same instant, read two ways: the admin API's float seconds and the SDK's DateTime
    // (seconds + nanoseconds, recombined by `as_secs_f64`) can differ in the last bit of the
    // f64, depending on the value: compare to well under KMS's millisecond precision.
    let admin = k["deletion_date"]
        .as_f64()
        .expect("deletion_date in the admin state");
    let wire = out
        .deletion_date()
        .map(|d| d.as_secs_f64())
        .expect("DeletionDate");
    assert!(
        (admin - wire).abs() < 1e-6,
        "admin deletion_date {admin} differs from the answer's {wire}"
    );
    assert!(k.get("material").is_none(), "key material never leaves");
}

#[tokio::test]
async fn config_can_be_read_and_changed_at_run_time() {
    let h = harness().await;
    let config = h.admin_get("/_emulator/config").await;
    assert_eq!(config["day_seconds"], 86400.0);
    assert_eq!(config["quotas"], false);
    assert_eq!(config["deletion_lag_hours"], 6.0);
    h.set_config(json!({"quotas": true, "disconnect_minutes": 30}))
        .await;
    let config = h.admin_get("/_emulator/config").await;
    assert_eq!(config["quotas"], true);
    assert_eq!(config["disconnect_minutes"], 30.0);
    assert_eq!(config["day_seconds"], 86400.0, "other fields stay");
    for bad in [
        json!({"day_seconds": -1}),
        json!({"quotas": "yes"}),
        json!({"nope": 1}),
    ] {
        let (status, body) = h.admin_post("/_emulator/config", bad.clone()).await;
        assert_eq!(status, 400, "{bad}");
        assert!(body["error"].is_string());
    }
    assert_eq!(
        h.admin_get("/_emulator/config").await["quotas"],
        true,
        "refused patches change nothing"
    );
}

#[tokio::test]
async fn clock_moves_emulated_time_and_applies_what_falls_due() {
    let h = harness().await;
    let store = h.cloudhsm_store("hsm", "cluster-234567abcdefg").await;
    h.kms
        .connect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    let before = h.admin_get("/_emulator/clock").await["now"]
        .as_f64()
        .unwrap();
    let (status, clock) = h
        .admin_post("/_emulator/clock", json!({"advance_seconds": 86400}))
        .await;
    assert_eq!(status, 200);
    assert!(clock["now"].as_f64().unwrap() >= before + 86400.0);
    assert_eq!(clock["clock_offset_seconds"], 86400.0);
    assert_eq!(h.store_state(&store).await, "CONNECTED");
    // CreationDate follows the emulated clock
    let key = h
        .kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert!(key.creation_date().unwrap().as_secs_f64() >= before + 86400.0);
    for bad in [
        json!({}),
        json!({"advance_seconds": -5}),
        json!({"advance_seconds": "1"}),
    ] {
        let (status, _) = h.admin_post("/_emulator/clock", bad.clone()).await;
        assert_eq!(status, 400, "{bad}");
    }
}

#[tokio::test]
async fn faults_fail_the_next_calls_and_change_nothing() {
    let h = harness().await;
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
    let (status, _) = h
        .admin_post("/_emulator/faults", json!({"operation": "ScheduleKeyDeletion", "error": "KMSInternalException", "count": 2}))
        .await;
    assert_eq!(status, 200);
    for _ in 0..2 {
        let err = h
            .kms
            .schedule_key_deletion()
            .key_id(&key)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), "KMSInternalException");
        assert_eq!(
            h.key_state(&key).await,
            "Enabled",
            "a faulted call changes nothing"
        );
    }
    h.kms
        .schedule_key_deletion()
        .key_id(&key)
        .send()
        .await
        .unwrap();

    h.admin_post(
        "/_emulator/faults",
        json!({"operation": "*", "error": "DependencyTimeoutException", "probability": 1.0}),
    )
    .await;
    assert_eq!(
        code(&h.kms.list_keys().send().await.unwrap_err()),
        "DependencyTimeoutException"
    );
    assert_eq!(
        code(&h.kms.describe_key().key_id(&key).send().await.unwrap_err()),
        "DependencyTimeoutException"
    );
    assert_eq!(h.admin_delete("/_emulator/faults").await, 200);
    h.kms.list_keys().send().await.unwrap();

    for bad in [
        json!({"operation": "Nope", "error": "KMSInternalException", "count": 1}),
        json!({"operation": "*", "error": "NotFoundException", "count": 1}),
        json!({"operation": "*", "error": "KMSInternalException"}),
    ] {
        let (status, body) = h.admin_post("/_emulator/faults", bad.clone()).await;
        assert_eq!(status, 400, "{bad}");
        assert!(body["error"].is_string());
    }
}

#[tokio::test]
async fn the_sdk_retries_injected_internal_errors() {
    let h = harness().await;
    // a client with the SDK's default standard retries (3 attempts)
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
        .region(aws_sdk_kms::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kms::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .endpoint_url(h.emulator.endpoint())
        .retry_config(
            aws_sdk_kms::config::retry::RetryConfig::standard()
                .with_initial_backoff(std::time::Duration::from_millis(1)),
        )
        .build();
    let retrying = aws_sdk_kms::Client::from_conf(config);
    h.admin_post(
        "/_emulator/faults",
        json!({"operation": "ListKeys", "error": "KMSInternalException", "count": 2}),
    )
    .await;
    retrying
        .list_keys()
        .send()
        .await
        .expect("third attempt succeeds");
    let outcomes: Vec<String> = h
        .calls()
        .await
        .iter()
        .map(|c| c["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        outcomes,
        vec!["KMSInternalException", "KMSInternalException", "OK"]
    );
}

#[tokio::test]
async fn latency_is_added_to_every_call_and_cleared() {
    let h = harness().await;
    let (status, faults) = h
        .admin_post("/_emulator/faults", json!({"latency_ms": 50}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(faults["latency_ms"], 50);
    h.kms.list_keys().send().await.unwrap();
    h.admin_delete("/_emulator/faults").await;
    assert_eq!(h.admin_get("/_emulator/faults").await["latency_ms"], 0);
}

#[tokio::test]
async fn forced_connection_states() {
    let h = harness().await;
    let store = h.cloudhsm_store("hsm", "cluster-234567abcdefg").await;
    h.connect(&store).await;
    let key = h.cloudhsm_key(&store).await;
    let path = format!("/_emulator/stores/{store}/connection-state");
    let (status, body) = h
        .admin_post(
            &path,
            json!({"state": "FAILED", "error_code": "NETWORK_ERRORS"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let out = h
        .kms
        .describe_custom_key_stores()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.custom_key_stores()[0]
            .connection_error_code()
            .map(|c| c.as_str()),
        Some("NETWORK_ERRORS")
    );
    assert_eq!(h.key_state(&key).await, "Unavailable");

    // stuck DISCONNECTING for two emulated hours
    h.admin_post(
        &path,
        json!({"state": "DISCONNECTING", "for_seconds": 7200}),
    )
    .await;
    h.advance(3600.0).await;
    assert_eq!(h.store_state(&store).await, "DISCONNECTING");
    h.advance(3601.0).await;
    assert_eq!(h.store_state(&store).await, "DISCONNECTED");

    for bad in [
        json!({"state": "BROKEN"}),
        json!({"state": "FAILED"}),
        json!({"state": "FAILED", "error_code": "NOT_A_CODE"}),
        json!({"state": "CONNECTED", "error_code": "NETWORK_ERRORS"}),
        json!({"state": "CONNECTED", "for_seconds": 5}),
    ] {
        let (status, _) = h.admin_post(&path, bad.clone()).await;
        assert_eq!(status, 400, "{bad}");
    }
    assert_eq!(
        h.store_state(&store).await,
        "DISCONNECTED",
        "refused requests change nothing"
    );
    let (status, _) = h
        .admin_post(
            "/_emulator/stores/cks-00000000000000000/connection-state",
            json!({"state": "CONNECTED"}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = h
        .admin_post(
            &format!("/_emulator/stores/{store}/connection-failure"),
            json!({"error_code": "BAD"}),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn call_log_records_every_call_with_resolved_ids_and_outcomes() {
    let h = harness_with(kms_emulator::EmulatorConfig::default()).await;
    let store = h.cloudhsm_store("hsm", "cluster-234567abcdefg").await;
    h.admin_post(
        &format!("/_emulator/stores/{store}/connection-state"),
        json!({"state": "CONNECTED"}),
    )
    .await;
    let key = h.cloudhsm_key(&store).await;
    let arn = format!("arn:aws:kms:us-east-1:123456789012:key/{key}");
    h.kms.describe_key().key_id(&arn).send().await.unwrap();
    h.admin_post(
        "/_emulator/faults",
        json!({"operation": "DisableKey", "error": "ThrottlingException", "count": 1}),
    )
    .await;
    h.kms.disable_key().key_id(&key).send().await.unwrap_err();
    h.kms
        .describe_key()
        .key_id("00000000-0000-0000-0000-000000000000")
        .send()
        .await
        .unwrap_err();
    h.raw("NoSuchThing", "{}").await;
    // throttled calls are logged too
    for _ in 0..8 {
        let _ = h.kms.enable_key().key_id(&key).send().await;
    }
    let calls = h.calls().await;
    let summary: Vec<(String, Option<String>, Option<String>, String)> = calls
        .iter()
        .take(6)
        .map(|c| {
            (
                c["operation"].as_str().unwrap().to_string(),
                c["key_id"].as_str().map(String::from),
                c["custom_key_store_id"].as_str().map(String::from),
                c["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("CreateCustomKeyStore".into(), None, None, "OK".into()),
            (
                "CreateKey".into(),
                Some(key.clone()),
                Some(store.clone()),
                "OK".into()
            ),
            (
                "DescribeKey".into(),
                Some(key.clone()),
                Some(store.clone()),
                "OK".into()
            ),
            (
                "DisableKey".into(),
                Some(key.clone()),
                Some(store.clone()),
                "ThrottlingException".into()
            ),
            (
                "DescribeKey".into(),
                Some("00000000-0000-0000-0000-000000000000".into()),
                None,
                "NotFoundException".into()
            ),
            (
                "NoSuchThing".into(),
                None,
                None,
                "UnknownOperationException".into()
            ),
        ]
    );
    assert!(calls
        .windows(2)
        .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()));
    assert!(calls.iter().all(|c| c["time"].as_f64().is_some()));
    let enable: Vec<&serde_json::Value> = calls
        .iter()
        .filter(|c| c["operation"] == "EnableKey")
        .collect();
    assert_eq!(enable.len(), 8);
    assert!(
        enable.iter().any(|c| c["outcome"] == "ThrottlingException"),
        "EnableKey quota is 5/s"
    );
    let only = h.admin_get("/_emulator/calls?operation=DescribeKey").await;
    assert_eq!(only["calls"].as_array().map(Vec::len), Some(2));
    let after = h.admin_get("/_emulator/calls?after=5").await;
    assert_eq!(after["calls"][0]["seq"], 6);
    assert_eq!(h.admin_delete("/_emulator/calls").await, 200);
    assert!(h.calls().await.is_empty());
}
