//! plan-decommission and ensure-store-connected against the KMS emulator, over HTTP with the
//! real aws-sdk-kms client.

mod common;

use aws_sdk_kms::types::OriginType;
use common::*;
use kms_decommission::model::{StoreType, SAMPLE_CAP};
use kms_decommission::report::Outcome;
use kms_decommission::steps::Step;
use lambda_runtime::Diagnostic;
use serde_json::json;

#[tokio::test]
async fn plan_inventories_exactly_the_cloudhsm_store_keys_and_changes_nothing() {
    let env = Env::start().await;
    let (store, keys, _foreign) = cloudhsm_fixture(&env, 5).await;
    env.clear_calls().await;
    let ctx = env.context(test_config()).await;
    let (state, invocations) = run_until_done(
        &ctx,
        Step::PlanDecommission,
        env.start_run(real_input(&store, "Prod")).await,
        far_deadline,
    )
    .await
    .unwrap();
    assert_eq!(invocations, 1, "a far deadline plans in one invocation");
    let plan = state.plan.as_ref().unwrap();
    assert_eq!(plan.keys_in_store, 5);
    assert_eq!(plan.keys_by_state.get("Enabled"), Some(&4));
    assert_eq!(plan.keys_by_state.get("Disabled"), Some(&1));
    // 5 + 2 + 2 keys created, plus the emulator's AWS managed keys.
    assert!(plan.keys_scanned >= 9);
    let mut listed: Vec<_> = plan.keys.iter().map(|k| k.key_id.clone()).collect();
    let mut expected = keys.clone();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);
    assert!(plan.keys.iter().all(|k| k.arn.ends_with(&k.key_id)));
    let store_summary = state.store.as_ref().unwrap();
    assert_eq!(store_summary.custom_key_store_type, StoreType::CloudHsm);
    assert_eq!(
        store_summary.cloud_hsm_cluster_id.as_deref(),
        Some(cluster_id_for("Prod").as_str())
    );
    assert!(plan
        .left_behind
        .iter()
        .any(|s| s.contains(&cluster_id_for("Prod"))));
    assert!(
        state.report.is_none(),
        "only a dry run reports at plan time"
    );
    assert_eq!(state.request.as_ref().unwrap().pending_window_in_days, 7);
    assert!(env.mutating_calls().await.is_empty());
}

#[tokio::test]
async fn plan_of_an_external_key_store_lists_the_external_key_ids() {
    let env = Env::start().await;
    let store = env.xks_store("Ext").await;
    for i in 0..3 {
        env.store_key(&store, OriginType::ExternalKeyStore, i).await;
    }
    let ctx = env.context(test_config()).await;
    let (state, _) = run_until_done(
        &ctx,
        Step::PlanDecommission,
        env.start_run(real_input(&store, "Ext")).await,
        far_deadline,
    )
    .await
    .unwrap();
    let plan = state.plan.unwrap();
    assert_eq!(plan.keys_in_store, 3);
    let mut external: Vec<_> = plan
        .keys
        .iter()
        .filter_map(|k| k.xks_key_id.clone())
        .collect();
    external.sort();
    assert_eq!(external, ["ext-0", "ext-1", "ext-2"]);
    assert_eq!(
        state.store.unwrap().custom_key_store_type,
        StoreType::External
    );
    assert!(plan
        .left_behind
        .iter()
        .any(|s| s.contains("https://xks.example.com")));
}

#[tokio::test]
async fn a_dry_run_reports_the_plan_and_changes_nothing() {
    let env = Env::start().await;
    let (store, _, _) = cloudhsm_fixture(&env, 4).await;
    env.clear_calls().await;
    let ctx = env.context(test_config()).await;
    let (state, _) = run_until_done(
        &ctx,
        Step::PlanDecommission,
        env.start_run(json!({"CustomKeyStoreId": store, "DryRun": true, "TicketId": "CHG-7"}))
            .await,
        far_deadline,
    )
    .await
    .unwrap();
    let report = state.report.clone().unwrap();
    assert_eq!(report.outcome, Outcome::DryRun);
    assert_eq!(report.keys_in_store, 4);
    assert_eq!(report.keys_scheduled, 4, "what a real run would schedule");
    assert_eq!(report.keys_deleted, 0);
    assert_eq!(report.ticket_id.as_deref(), Some("CHG-7"));
    assert!(report.follow_ups.iter().any(|f| f.contains("backups")));
    assert!(env.mutating_calls().await.is_empty());
    // A dry-run document can never drive a mutating step.
    let err = Step::EnsureStoreConnected
        .run(&ctx, state.clone(), far_deadline())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "InvalidStateDocument");
    assert!(env.mutating_calls().await.is_empty());
}

#[tokio::test]
async fn a_plan_cut_off_by_its_deadline_resumes_and_converges_on_the_same_plan() {
    let env = Env::start().await;
    let (store, _, _) = cloudhsm_fixture(&env, 7).await;
    let mut config = test_config();
    config.list_keys_page_size = 2;
    let ctx = env.context(config).await;
    let input = env.start_run(real_input(&store, "Prod")).await;
    let (whole, _) = run_until_done(&ctx, Step::PlanDecommission, input.clone(), far_deadline)
        .await
        .unwrap();
    let (resumed, invocations) = run_until_done(&ctx, Step::PlanDecommission, input, near_deadline)
        .await
        .unwrap();
    assert!(
        invocations > 3,
        "one page per invocation, got {invocations}"
    );
    let (a, b) = (whole.plan.unwrap(), resumed.plan.unwrap());
    assert_eq!(a.keys_in_store, 7);
    assert_eq!(a.keys_in_store, b.keys_in_store);
    assert_eq!(a.keys_by_state, b.keys_by_state);
    assert_eq!(a.keys_scanned, b.keys_scanned);
    assert_eq!(a.keys, b.keys);

    // A new run after that one ended starts over and finds the same plan.
    env.end_runs().await;
    let (again, _) = run_until_done(
        &ctx,
        Step::PlanDecommission,
        whole_state_with_plan(&env, &ctx, &store).await,
        far_deadline,
    )
    .await
    .unwrap();
    assert_eq!(again.plan.unwrap().keys_in_store, 7);
}

async fn whole_state_with_plan(
    env: &Env,
    ctx: &kms_decommission::steps::StepContext,
    store: &str,
) -> kms_decommission::state::DecommissionState {
    let state = env.start_run(real_input(store, "Prod")).await;
    run_until_done(ctx, Step::PlanDecommission, state, far_deadline)
        .await
        .unwrap()
        .0
}

#[tokio::test]
async fn the_plan_carries_at_most_25_keys_whatever_the_store_size() {
    let env = Env::start().await;
    let store = env.cloudhsm_store("Big").await;
    for i in 0..(SAMPLE_CAP + 5) {
        env.store_key(&store, OriginType::AwsCloudhsm, i).await;
    }
    let mut config = test_config();
    config.list_keys_page_size = 100;
    let ctx = env.context(config).await;
    let (state, _) = run_until_done(
        &ctx,
        Step::PlanDecommission,
        env.start_run(json!({"CustomKeyStoreId": store, "DryRun": true}))
            .await,
        far_deadline,
    )
    .await
    .unwrap();
    let plan = state.plan.as_ref().unwrap();
    assert_eq!(plan.keys_in_store, (SAMPLE_CAP + 5) as u64);
    assert_eq!(plan.keys.len(), SAMPLE_CAP);
    assert!(plan.keys_truncated);
    let report = state.report.as_ref().unwrap();
    assert!(report
        .follow_ups
        .iter()
        .any(|f| f.contains("plan-decommission logs")));
}

#[tokio::test]
async fn plan_errors_have_their_names_and_change_nothing() {
    let env = Env::start().await;
    let (store, _, _) = cloudhsm_fixture(&env, 2).await;
    env.clear_calls().await;
    let ctx = env.context(test_config()).await;

    let bad_window = env
        .start_run(json!({
            "CustomKeyStoreId": store, "ConfirmCustomKeyStoreName": "Prod", "PendingWindowInDays": 3
        }))
        .await;
    let err = Step::PlanDecommission
        .run(&ctx, bad_window, far_deadline())
        .await
        .unwrap_err();
    assert_eq!(Diagnostic::from(err).error_type, "InvalidInput");
    assert!(
        env.calls().await.is_empty(),
        "invalid input makes no KMS call"
    );

    let wrong_name = env.start_run(real_input(&store, "prod")).await;
    let err = Step::PlanDecommission
        .run(&ctx, wrong_name, far_deadline())
        .await
        .unwrap_err();
    assert_eq!(Diagnostic::from(err).error_type, "ConfirmationMismatch");

    let unknown = env
        .start_run(real_input("cks-0123456789abcdef0", "Prod"))
        .await;
    let err = Step::PlanDecommission
        .run(&ctx, unknown, far_deadline())
        .await
        .unwrap_err();
    assert_eq!(
        Diagnostic::from(err).error_type,
        "CustomKeyStoreNotFoundException"
    );

    // More KMSInternalException answers than the SDK's 3 attempts: the step reports KMS's name.
    env.end_runs().await;
    env.fault("ListKeys", "KMSInternalException", 3).await;
    let err = Step::PlanDecommission
        .run(
            &ctx,
            env.start_run(real_input(&store, "Prod")).await,
            far_deadline(),
        )
        .await
        .unwrap_err();
    assert_eq!(Diagnostic::from(err).error_type, "KMSInternalException");
    assert!(env.mutating_calls().await.is_empty());
}

#[tokio::test]
async fn a_disconnected_cloudhsm_store_is_connected_and_polled_until_connected() {
    let env = Env::start().await;
    let (store, _, _) = cloudhsm_fixture(&env, 2).await;
    env.kms
        .disconnect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    env.wait_for_state(&store, "DISCONNECTED").await;
    let ctx = env.context(test_config()).await;
    let (planned, _) = run_until_done(
        &ctx,
        Step::PlanDecommission,
        env.start_run(real_input(&store, "Prod")).await,
        far_deadline,
    )
    .await
    .unwrap();
    env.clear_calls().await;
    // The first invocation connects, then its result is lost (cut off before returning): the
    // state machine retries with the same document, which must not connect twice.
    let lost = Step::EnsureStoreConnected
        .run(&ctx, planned.clone(), far_deadline())
        .await
        .unwrap();
    assert_eq!(lost.connection.unwrap().connect_attempts, 1);
    let (state, _) = run_until_done(&ctx, Step::EnsureStoreConnected, planned, far_deadline)
        .await
        .unwrap();
    let connection = state.connection.as_ref().unwrap();
    assert!(connection.ready);
    assert_eq!(connection.connection_state.as_str(), "CONNECTED");
    assert!(!connection.orphaned_key_material_accepted);
    assert_eq!(env.count_ok("ConnectCustomKeyStore").await, 1);
    let mutating = env.mutating_calls().await;
    assert!(mutating
        .iter()
        .all(|c| c.custom_key_store_id.as_deref() == Some(store.as_str())));

    // Running it again on a CONNECTED store changes nothing.
    env.clear_calls().await;
    let again = Step::EnsureStoreConnected
        .run(&ctx, state, far_deadline())
        .await
        .unwrap();
    assert!(again.connection.unwrap().ready);
    assert!(env.mutating_calls().await.is_empty());
}

#[tokio::test]
async fn a_failed_cloudhsm_store_is_disconnected_first_then_connected() {
    let env = Env::start().await;
    let (store, _, _) = cloudhsm_fixture(&env, 1).await;
    let ctx = env.context(test_config()).await;
    let (planned, _) = run_until_done(
        &ctx,
        Step::PlanDecommission,
        env.start_run(real_input(&store, "Prod")).await,
        far_deadline,
    )
    .await
    .unwrap();
    env.force_state(
        &store,
        json!({"state": "FAILED", "error_code": "NETWORK_ERRORS"}),
    )
    .await;
    env.clear_calls().await;
    let (state, _) = run_until_done(&ctx, Step::EnsureStoreConnected, planned, far_deadline)
        .await
        .unwrap();
    assert_eq!(
        state.connection.unwrap().connection_state.as_str(),
        "CONNECTED"
    );
    let order: Vec<String> = env
        .mutating_calls()
        .await
        .into_iter()
        .filter(|c| c.outcome == "OK")
        .map(|c| c.operation)
        .collect();
    assert_eq!(order, ["DisconnectCustomKeyStore", "ConnectCustomKeyStore"]);
}

#[tokio::test]
async fn a_store_that_cannot_connect_stops_with_connection_failed_unless_orphans_are_accepted() {
    let env = Env::start().await;
    let (store, _, _) = cloudhsm_fixture(&env, 1).await;
    env.kms
        .disconnect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    env.wait_for_state(&store, "DISCONNECTED").await;
    env.admin_post(
        &format!("/_emulator/stores/{store}/connection-failure"),
        json!({"error_code": "INSUFFICIENT_CLOUDHSM_HSMS"}),
    )
    .await;
    let ctx = env.context(test_config()).await;
    let (planned, _) = run_until_done(
        &ctx,
        Step::PlanDecommission,
        env.start_run(real_input(&store, "Prod")).await,
        far_deadline,
    )
    .await
    .unwrap();
    let err = run_until_done(&ctx, Step::EnsureStoreConnected, planned, far_deadline)
        .await
        .unwrap_err();
    let diagnostic = Diagnostic::from(err);
    assert_eq!(diagnostic.error_type, "ConnectionFailed");
    assert!(diagnostic
        .error_message
        .contains("INSUFFICIENT_CLOUDHSM_HSMS"));

    env.end_runs().await;
    let mut input = real_input(&store, "Prod");
    input["AllowOrphanedKeyMaterial"] = json!(true);
    let (planned, _) = run_until_done(
        &ctx,
        Step::PlanDecommission,
        env.start_run(input).await,
        far_deadline,
    )
    .await
    .unwrap();
    let (state, _) = run_until_done(&ctx, Step::EnsureStoreConnected, planned, far_deadline)
        .await
        .unwrap();
    let connection = state.connection.unwrap();
    assert!(connection.ready);
    assert!(connection.orphaned_key_material_accepted);
    assert_eq!(
        connection.connection_error_code.as_deref(),
        Some("INSUFFICIENT_CLOUDHSM_HSMS")
    );
}

#[tokio::test]
async fn a_store_stuck_connecting_times_out_with_connect_timed_out() {
    let env = Env::start().await;
    let (store, _, _) = cloudhsm_fixture(&env, 1).await;
    let ctx = env.context(config_with_no_connect_time()).await;
    let (planned, _) = run_until_done(
        &ctx,
        Step::PlanDecommission,
        env.start_run(real_input(&store, "Prod")).await,
        far_deadline,
    )
    .await
    .unwrap();
    env.force_state(&store, json!({"state": "CONNECTING", "for_seconds": 1.0e9}))
        .await;
    let first = Step::EnsureStoreConnected
        .run(&ctx, planned, far_deadline())
        .await
        .unwrap();
    assert!(!first.connection.as_ref().unwrap().ready);
    // Five seconds later, still CONNECTING: past the bound.
    let mut later = env.context(config_with_no_connect_time()).await;
    later.clock = kms_decommission::clock::Clock::shifted(5);
    let err = Step::EnsureStoreConnected
        .run(&later, first, far_deadline())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "ConnectTimedOut");
}

#[tokio::test]
async fn an_external_key_store_is_left_as_it_is() {
    let env = Env::start().await;
    let store = env.xks_store("Ext").await;
    env.store_key(&store, OriginType::ExternalKeyStore, 0).await;
    env.kms
        .disconnect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    env.wait_for_state(&store, "DISCONNECTED").await;
    let ctx = env.context(test_config()).await;
    let (planned, _) = run_until_done(
        &ctx,
        Step::PlanDecommission,
        env.start_run(real_input(&store, "Ext")).await,
        far_deadline,
    )
    .await
    .unwrap();
    env.clear_calls().await;
    let state = Step::EnsureStoreConnected
        .run(&ctx, planned, far_deadline())
        .await
        .unwrap();
    let connection = state.connection.unwrap();
    assert!(connection.ready);
    assert_eq!(connection.connection_state.as_str(), "DISCONNECTED");
    assert!(env.mutating_calls().await.is_empty());
}

fn config_with_no_connect_time() -> kms_decommission::config::Config {
    let mut config = test_config();
    config.connect_timeout_seconds = 0;
    config
}
