//! disconnect-store and delete-store against the KMS emulator, over HTTP with the real
//! aws-sdk-kms client.

mod common;

use aws_sdk_kms::types::OriginType;
use common::*;
use kms_decommission::report::Outcome;
use kms_decommission::state::DecommissionState;
use kms_decommission::steps::{Step, StepContext};
use lambda_runtime::Diagnostic;
use serde_json::json;

/// Runs plan, connect, schedule and checks (advancing emulated time) until every key is deleted:
/// the document as DisconnectStore receives it.
async fn all_keys_deleted(
    env: &Env,
    ctx: &mut StepContext,
    store: &str,
    name: &str,
) -> DecommissionState {
    let mut state = env.start_run(real_input(store, name)).await;
    for step in [
        Step::PlanDecommission,
        Step::EnsureStoreConnected,
        Step::ScheduleKeyDeletion,
    ] {
        state = run_until_done(ctx, step, state, far_deadline)
            .await
            .unwrap()
            .0;
    }
    env.advance(8.0 * 86_400.0).await;
    ctx.clock = env.clock().await;
    let (state, _) = run_until_done(ctx, Step::CheckKeysDeleted, state, far_deadline)
        .await
        .unwrap();
    assert!(state.deletion.as_ref().unwrap().all_deleted);
    state
}

#[tokio::test]
async fn a_cloudhsm_store_is_disconnected_polled_and_deleted_with_a_report() {
    let env = Env::start().await;
    let (store, keys, foreign) = cloudhsm_fixture(&env, 3).await;
    let mut ctx = env.context(test_config()).await;
    let state = all_keys_deleted(&env, &mut ctx, &store, "Prod").await;
    env.clear_calls().await;

    // A first invocation whose result is lost, then the retry with the same document.
    Step::DisconnectStore
        .run(&ctx, state.clone(), far_deadline())
        .await
        .unwrap();
    let (state, _) = run_until_done(&ctx, Step::DisconnectStore, state, far_deadline)
        .await
        .unwrap();
    assert!(state.disconnect.as_ref().unwrap().disconnected);
    assert_eq!(env.count_ok("DisconnectCustomKeyStore").await, 1);
    assert_eq!(env.store_state(&store).await, "DISCONNECTED");
    // Running it again once disconnected changes nothing.
    let again = Step::DisconnectStore
        .run(&ctx, state.clone(), far_deadline())
        .await
        .unwrap();
    assert!(again.disconnect.unwrap().disconnected);
    assert_eq!(env.count_ok("DisconnectCustomKeyStore").await, 1);

    let deleted = Step::DeleteStore
        .run(&ctx, state.clone(), far_deadline())
        .await
        .unwrap();
    let report = deleted.report.unwrap();
    assert_eq!(report.outcome, Outcome::Deleted);
    assert_eq!(report.custom_key_store_id, store);
    assert_eq!(report.custom_key_store_name, "Prod");
    assert_eq!(report.keys_deleted, 3);
    assert_eq!(
        report.cloud_hsm_cluster_id.as_deref(),
        Some(cluster_id_for("Prod").as_str())
    );
    let text = report.follow_ups.join(" ");
    assert!(
        text.contains(&cluster_id_for("Prod"))
            && text.contains("key ARN")
            && text.contains("DeleteKey")
            && text.contains("backups")
    );
    let listed: Vec<_> = report.keys.iter().map(|k| k.key_id.clone()).collect();
    assert!(keys.iter().all(|k| listed.contains(k)));
    let gone = env
        .kms
        .describe_custom_key_stores()
        .custom_key_store_id(&store)
        .send()
        .await;
    let err = kms_decommission::error::DecommissionError::from_sdk(
        "DescribeCustomKeyStores",
        gone.unwrap_err(),
    );
    assert_eq!(err.error_type(), "CustomKeyStoreNotFoundException");

    // Deleting again (a retry after a lost result) succeeds: the store is already gone.
    let again = Step::DeleteStore
        .run(&ctx, state, far_deadline())
        .await
        .unwrap();
    assert_eq!(again.report.unwrap().outcome, Outcome::AlreadyDeleted);

    let calls = env.calls().await;
    assert_untouched(&calls, &foreign);
    for key in &foreign {
        assert_ne!(env.key_state(key).await, "Deleted");
    }
}

#[tokio::test]
async fn an_external_key_store_is_disconnected_and_deleted_with_its_external_keys_listed() {
    let env = Env::start().await;
    let store = env.xks_store("Ext").await;
    for i in 0..2 {
        env.store_key(&store, OriginType::ExternalKeyStore, i).await;
    }
    let mut ctx = env.context(test_config()).await;
    let state = all_keys_deleted(&env, &mut ctx, &store, "Ext").await;
    let (state, _) = run_until_done(&ctx, Step::DisconnectStore, state, far_deadline)
        .await
        .unwrap();
    let report = Step::DeleteStore
        .run(&ctx, state, far_deadline())
        .await
        .unwrap()
        .report
        .unwrap();
    assert_eq!(report.outcome, Outcome::Deleted);
    let mut external: Vec<_> = report
        .keys
        .iter()
        .filter_map(|k| k.xks_key_id.clone())
        .collect();
    external.sort();
    assert_eq!(external, ["ext-0", "ext-1"]);
    assert!(report.follow_ups.join(" ").contains("external key manager"));
}

#[tokio::test]
async fn an_already_disconnected_store_needs_no_disconnect_call() {
    let env = Env::start().await;
    let (store, _, _) = cloudhsm_fixture(&env, 1).await;
    let mut ctx = env.context(test_config()).await;
    let state = all_keys_deleted(&env, &mut ctx, &store, "Prod").await;
    env.kms
        .disconnect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    env.wait_for_state(&store, "DISCONNECTED").await;
    env.clear_calls().await;
    let state = Step::DisconnectStore
        .run(&ctx, state, far_deadline())
        .await
        .unwrap();
    assert!(state.disconnect.unwrap().disconnected);
    assert!(env.mutating_calls().await.is_empty());
}

#[tokio::test]
async fn a_store_stuck_disconnecting_is_polled_then_times_out() {
    let env = Env::start().await;
    let (store, _, _) = cloudhsm_fixture(&env, 1).await;
    let mut config = test_config();
    config.disconnect_timeout_seconds = 60;
    let mut ctx = env.context(config.clone()).await;
    let state = all_keys_deleted(&env, &mut ctx, &store, "Prod").await;
    env.force_state(
        &store,
        json!({"state": "DISCONNECTING", "for_seconds": 1.0e9}),
    )
    .await;
    env.clear_calls().await;

    let polled = Step::DisconnectStore
        .run(&ctx, state, far_deadline())
        .await
        .unwrap();
    let status = polled.disconnect.as_ref().unwrap();
    assert!(!status.disconnected);
    assert_eq!(status.connection_state.as_str(), "DISCONNECTING");
    assert_eq!(status.poll_after_seconds, 1);
    assert!(
        env.mutating_calls().await.is_empty(),
        "DISCONNECTING needs no call"
    );

    let mut later = env.context(config).await;
    later.clock = env.clock().await.advanced_by(120);
    let err = Step::DisconnectStore
        .run(&later, polled, far_deadline())
        .await
        .unwrap_err();
    assert_eq!(Diagnostic::from(err).error_type, "DisconnectTimedOut");
}

#[tokio::test]
async fn keys_still_counted_by_kms_make_delete_fail_by_name_so_the_workflow_checks_again() {
    let env = Env::start().await;
    let (store, _, _) = cloudhsm_fixture(&env, 2).await;
    let ctx = env.context(test_config()).await;
    let mut state = env.start_run(real_input(&store, "Prod")).await;
    state = run_steps(&ctx, &UNTIL_SCHEDULED, state).await;
    // A document that believes every key is gone (eventual consistency) while KMS still has
    // the pending keys: disconnect (keys stay PendingDeletion), then delete.
    state.deletion = Some(kms_decommission::state::DeletionCheck {
        scan_done: true,
        all_deleted: true,
        checks: 1,
        ..Default::default()
    });
    let (state, _) = run_until_done(&ctx, Step::DisconnectStore, state, far_deadline)
        .await
        .unwrap();
    let err = Step::DeleteStore
        .run(&ctx, state, far_deadline())
        .await
        .unwrap_err();
    assert_eq!(
        Diagnostic::from(err).error_type,
        "CustomKeyStoreHasCMKsException"
    );
    assert_eq!(
        env.store_state(&store).await,
        "DISCONNECTED",
        "the store still exists"
    );
}
