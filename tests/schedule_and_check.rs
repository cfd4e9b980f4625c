//! schedule-key-deletion and check-keys-deleted against the KMS emulator, over HTTP with the
//! real aws-sdk-kms client: markers, prior states, re-runs, crashes halfway, foreign keys.

mod common;

use std::collections::BTreeMap;

use aws_sdk_kms::types::OriginType;
use common::*;
use kms_decommission::clock::Clock;
use kms_decommission::state::DecommissionState;
use kms_decommission::steps::{Step, StepContext};
use lambda_runtime::Diagnostic;
use serde_json::json;

/// Plans and connects (the document as ScheduleKeyDeletion receives it).
async fn ready_to_schedule(
    env: &Env,
    ctx: &StepContext,
    store: &str,
    name: &str,
) -> DecommissionState {
    let (planned, _) = run_until_done(
        ctx,
        Step::PlanDecommission,
        env.start_run(real_input(store, name)).await,
        far_deadline,
    )
    .await
    .unwrap();
    run_until_done(ctx, Step::EnsureStoreConnected, planned, far_deadline)
        .await
        .unwrap()
        .0
}

/// Schedules deletion of `key` outside the workflow (someone did it before us).
async fn schedule_by_someone_else(env: &Env, key: &str, days: i32) {
    env.kms
        .schedule_key_deletion()
        .key_id(key)
        .pending_window_in_days(days)
        .send()
        .await
        .unwrap();
}

/// key id -> (state, execution marker, prior-state marker)
async fn key_report(
    env: &Env,
    keys: &[String],
) -> BTreeMap<String, (String, Option<String>, Option<String>)> {
    let mut out = BTreeMap::new();
    for key in keys {
        let (execution, prior, _) = env.markers(key).await;
        out.insert(key.clone(), (env.key_state(key).await, execution, prior));
    }
    out
}

#[tokio::test]
async fn every_cloudhsm_store_key_gets_markers_then_is_scheduled_and_nothing_else_is_touched() {
    let env = Env::start().await;
    let (store, keys, foreign) = cloudhsm_fixture(&env, 5).await;
    // keys[0] is Disabled; keys[4] was already pending deletion (30 days) before this execution.
    schedule_by_someone_else(&env, &keys[4], 30).await;
    let ctx = env.context(test_config()).await;
    let state = ready_to_schedule(&env, &ctx, &store, "Prod").await;
    env.clear_calls().await;
    let (state, _) = run_until_done(&ctx, Step::ScheduleKeyDeletion, state, far_deadline)
        .await
        .unwrap();

    let scheduling = state.scheduling.as_ref().unwrap();
    assert!(scheduling.done);
    assert_eq!(scheduling.keys_scheduled, 4);
    assert_eq!(scheduling.keys_already_pending, 1);
    let report = key_report(&env, &keys).await;
    assert_eq!(
        report[&keys[0]],
        (
            "PendingDeletion".into(),
            Some(EXECUTION.into()),
            Some("Disabled".into())
        )
    );
    for key in &keys[1..4] {
        assert_eq!(
            report[key],
            (
                "PendingDeletion".into(),
                Some(EXECUTION.into()),
                Some("Enabled".into())
            )
        );
    }
    assert_eq!(
        report[&keys[4]],
        ("PendingDeletion".into(), None, None),
        "a key already pending is left alone"
    );
    assert_eq!(env.markers(&keys[1]).await.2.as_deref(), Some("CHG-42"));

    // Markers go on before scheduling, for every key.
    let calls = env.calls().await;
    for key in &keys[..4] {
        let position = |op: &str| {
            calls
                .iter()
                .position(|c| {
                    c.operation == op
                        && c.key_id.as_deref() == Some(key.as_str())
                        && c.outcome == "OK"
                })
                .unwrap_or_else(|| panic!("no {op} on {key}"))
        };
        assert!(position("TagResource") < position("ScheduleKeyDeletion"));
    }
    assert_untouched(&calls, &foreign);
    assert!(calls.iter().filter(|c| c.is_mutating()).all(|c| c
        .key_id
        .as_deref()
        .is_some_and(|k| keys.contains(&k.to_string()))));

    // 7-day window for ours, 30 days for the key pending before us: the first check comes one
    // poll before the earliest deletion.
    let earliest = scheduling.earliest_deletion_date.unwrap().time();
    let latest = scheduling.latest_deletion_date.unwrap().time();
    assert!(latest > earliest);
    let wait_until = scheduling.wait_until.unwrap().time();
    assert!(wait_until <= earliest);
    assert!(
        !scheduling.wait_required,
        "an emulated week is 7 s: no Wait state needed"
    );
}

#[tokio::test]
async fn external_key_store_keys_are_scheduled_without_touching_the_connection() {
    let env = Env::start().await;
    let store = env.xks_store("Ext").await;
    let mut keys = Vec::new();
    for i in 0..3 {
        keys.push(env.store_key(&store, OriginType::ExternalKeyStore, i).await);
    }
    let foreign = vec![env.plain_key().await];
    let ctx = env.context(test_config()).await;
    let state = ready_to_schedule(&env, &ctx, &store, "Ext").await;
    env.clear_calls().await;
    let (state, _) = run_until_done(&ctx, Step::ScheduleKeyDeletion, state, far_deadline)
        .await
        .unwrap();
    assert_eq!(state.scheduling.unwrap().keys_scheduled, 3);
    for (state, execution, prior) in key_report(&env, &keys).await.into_values() {
        assert_eq!(state, "PendingDeletion");
        assert_eq!(execution.as_deref(), Some(EXECUTION));
        assert_eq!(prior.as_deref(), Some("Enabled"));
    }
    let calls = env.calls().await;
    assert_untouched(&calls, &foreign);
    assert!(!calls
        .iter()
        .any(|c| c.operation.contains("ConnectCustomKeyStore")));
}

#[tokio::test]
async fn rerunning_a_finished_schedule_changes_nothing_and_counts_the_same() {
    let env = Env::start().await;
    let (store, _keys, _) = cloudhsm_fixture(&env, 4).await;
    let ctx = env.context(test_config()).await;
    let state = ready_to_schedule(&env, &ctx, &store, "Prod").await;
    let (first, _) = run_until_done(&ctx, Step::ScheduleKeyDeletion, state, far_deadline)
        .await
        .unwrap();
    env.clear_calls().await;
    let second = Step::ScheduleKeyDeletion
        .run(&ctx, first.clone(), far_deadline())
        .await
        .unwrap();
    assert!(env.mutating_calls().await.is_empty());
    let (a, b) = (first.scheduling.unwrap(), second.scheduling.unwrap());
    assert_eq!(a.keys_scheduled, 4);
    assert_eq!(a.keys_scheduled, b.keys_scheduled);
    assert_eq!(a.keys_already_pending, b.keys_already_pending);
    assert_eq!(a.latest_deletion_date, b.latest_deletion_date);
}

#[tokio::test]
async fn a_schedule_cut_off_halfway_resumes_keeps_first_prior_states_and_counts_once() {
    let env = Env::start().await;
    let (store, keys, foreign) = cloudhsm_fixture(&env, 6).await;
    let mut config = test_config();
    config.list_keys_page_size = 3;
    config.pacing.concurrency = 1;
    let ctx = env.context(config).await;
    let mut state = ready_to_schedule(&env, &ctx, &store, "Prod").await;
    env.clear_calls().await;

    // One page per invocation (deadline already near) until the first store key is scheduled.
    while state
        .scheduling
        .as_ref()
        .is_none_or(|s| s.keys_scheduled == 0)
    {
        state = Step::ScheduleKeyDeletion
            .run(&ctx, state, near_deadline())
            .await
            .unwrap();
    }
    assert!(!state.scheduling.as_ref().unwrap().done);

    // The next invocation crashes: every attempt at ScheduleKeyDeletion fails (more failures
    // than the SDK's 3 attempts), after the key's markers went on.
    env.fault("ScheduleKeyDeletion", "KMSInternalException", 3)
        .await;
    let before_crash = state.clone();
    let mut crashed = Err(None);
    while let Err(None) = crashed {
        crashed = match Step::ScheduleKeyDeletion
            .run(&ctx, state.clone(), near_deadline())
            .await
        {
            Ok(next) if next.scheduling.as_ref().unwrap().done => Ok(next),
            Ok(next) => {
                state = next;
                Err(None)
            }
            Err(err) => Err(Some(err)),
        };
    }
    let err = crashed
        .err()
        .flatten()
        .expect("the injected faults surface");
    assert_eq!(Diagnostic::from(err).error_type, "KMSInternalException");

    // A key with our markers but not yet pending: someone disables it before the retry.
    let mut tagged_not_scheduled = Vec::new();
    for key in &keys {
        let (execution, prior, _) = env.markers(key).await;
        if execution.as_deref() == Some(EXECUTION) && env.key_state(key).await != "PendingDeletion"
        {
            assert_eq!(prior.as_deref(), Some("Enabled"));
            tagged_not_scheduled.push(key.clone());
        }
    }
    assert_eq!(
        tagged_not_scheduled.len(),
        1,
        "the crash hit between markers and scheduling"
    );
    env.disable(&tagged_not_scheduled[0]).await;

    // Step Functions retries with the same input document; later invocations finish the job.
    let (done, _) = run_until_done(&ctx, Step::ScheduleKeyDeletion, state, near_deadline)
        .await
        .unwrap();
    let scheduling = done.scheduling.unwrap();
    assert_eq!(scheduling.keys_scheduled, 6, "each key counted once");
    assert_eq!(scheduling.keys_already_pending, 0);
    let report = key_report(&env, &keys).await;
    assert_eq!(report[&keys[0]].2.as_deref(), Some("Disabled"));
    assert_eq!(
        report[&tagged_not_scheduled[0]].2.as_deref(),
        Some("Enabled"),
        "the prior state first recorded by this execution is kept"
    );
    assert!(report
        .values()
        .all(|(s, e, _)| s == "PendingDeletion" && e.as_deref() == Some(EXECUTION)));
    assert_untouched(&env.calls().await, &foreign);

    // A lost result (the invocation ran, its output never reached the state machine): running the
    // same input again counts the same.
    let (replayed, _) =
        run_until_done(&ctx, Step::ScheduleKeyDeletion, before_crash, near_deadline)
            .await
            .unwrap();
    assert_eq!(replayed.scheduling.unwrap().keys_scheduled, 6);
}

#[tokio::test]
async fn scheduling_refuses_a_cloudhsm_store_that_is_not_connected() {
    let env = Env::start().await;
    let (store, keys, _) = cloudhsm_fixture(&env, 2).await;
    let ctx = env.context(test_config()).await;
    let state = ready_to_schedule(&env, &ctx, &store, "Prod").await;
    env.kms
        .disconnect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    env.wait_for_state(&store, "DISCONNECTED").await;
    env.clear_calls().await;
    let err = Step::ScheduleKeyDeletion
        .run(&ctx, state, far_deadline())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "StoreNotConnected");
    assert!(env.mutating_calls().await.is_empty());
    assert_eq!(env.key_state(&keys[1]).await, "Unavailable");
}

#[tokio::test]
async fn scheduling_rechecks_the_confirmation_against_the_current_name() {
    let env = Env::start().await;
    let (store, _, _) = cloudhsm_fixture(&env, 2).await;
    let ctx = env.context(test_config()).await;
    let state = ready_to_schedule(&env, &ctx, &store, "Prod").await;
    env.kms
        .update_custom_key_store()
        .custom_key_store_id(&store)
        .new_custom_key_store_name("Renamed")
        .send()
        .await
        .unwrap();
    env.clear_calls().await;
    let err = Step::ScheduleKeyDeletion
        .run(&ctx, state, far_deadline())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "ConfirmationMismatch");
    assert!(env.mutating_calls().await.is_empty());
}

/// Plans, connects and schedules; returns the document as CheckKeysDeleted receives it.
async fn scheduled(env: &Env, ctx: &StepContext, store: &str, name: &str) -> DecommissionState {
    let state = ready_to_schedule(env, ctx, store, name).await;
    run_until_done(ctx, Step::ScheduleKeyDeletion, state, far_deadline)
        .await
        .unwrap()
        .0
}

#[tokio::test]
async fn checking_polls_while_keys_are_pending_and_finishes_when_all_are_deleted() {
    let env = Env::start().await;
    let (store, keys, foreign) = cloudhsm_fixture(&env, 3).await;
    let ctx = env.context(test_config()).await;
    let state = scheduled(&env, &ctx, &store, "Prod").await;
    env.clear_calls().await;

    let (pending, _) = run_until_done(&ctx, Step::CheckKeysDeleted, state, far_deadline)
        .await
        .unwrap();
    let check = pending.deletion.as_ref().unwrap();
    assert_eq!(check.keys_pending, 3);
    assert!(!check.all_deleted);
    assert!(!check.needs_reconnect);
    assert!(
        (1..=8).contains(&check.poll_after_seconds),
        "{}",
        check.poll_after_seconds
    );

    // Eight emulated days later (past DeletionDate and the deletion lag) every key is gone.
    env.advance(8.0 * 86_400.0).await;
    let (done, _) = run_until_done(&ctx, Step::CheckKeysDeleted, pending, far_deadline)
        .await
        .unwrap();
    let check = done.deletion.clone().unwrap();
    assert!(check.all_deleted);
    assert_eq!(check.keys_pending, 0);
    assert_eq!(check.checks, 2);
    // The store stayed connected: KMS's DeleteKey events say the material left the cluster,
    // and the ledger keeps that per key.
    let material = check.key_material.clone().unwrap();
    assert!(material.done);
    assert_eq!(
        (
            material.keys_deleted,
            material.keys_orphaned,
            material.keys_unconfirmed
        ),
        (3, 0, 0)
    );
    let execution = done.execution.as_ref().unwrap().id.clone();
    let records = env
        .ledger()
        .key_records(&execution, None, 100)
        .await
        .unwrap();
    assert_eq!(records.records.len(), 3);
    for record in &records.records {
        assert_eq!(record.key_material.as_deref(), Some("Deleted"));
        let detail = record.key_material_detail.as_deref().unwrap();
        assert!(
            detail.contains("keyHandle") && detail.contains("CloudTrail event"),
            "{detail}"
        );
    }
    for key in &keys {
        assert_eq!(env.key_state(key).await, "Deleted");
    }
    // Checking again after it found everything deleted finds the same.
    let again = Step::CheckKeysDeleted
        .run(&ctx, done.clone(), far_deadline())
        .await
        .unwrap();
    assert!(again.deletion.unwrap().all_deleted);
    assert!(
        env.mutating_calls().await.is_empty(),
        "checking changes nothing"
    );
    assert_untouched(&env.calls().await, &foreign);
}

#[tokio::test]
async fn a_check_cut_off_by_its_deadline_resumes_and_converges() {
    let env = Env::start().await;
    let (store, _, _) = cloudhsm_fixture(&env, 5).await;
    let mut config = test_config();
    config.list_keys_page_size = 2;
    let ctx = env.context(config).await;
    let state = scheduled(&env, &ctx, &store, "Prod").await;
    let (whole, _) = run_until_done(&ctx, Step::CheckKeysDeleted, state.clone(), far_deadline)
        .await
        .unwrap();
    let (resumed, invocations) = run_until_done(&ctx, Step::CheckKeysDeleted, state, near_deadline)
        .await
        .unwrap();
    assert!(invocations > 3);
    let (a, b) = (whole.deletion.unwrap(), resumed.deletion.unwrap());
    assert_eq!(a.keys_pending, 5);
    assert_eq!(a.keys_pending, b.keys_pending);
    assert_eq!(a.keys_scanned, b.keys_scanned);
    assert_eq!(a.earliest_deletion_date, b.earliest_deletion_date);
}

#[tokio::test]
async fn a_key_created_or_cancelled_meanwhile_stops_the_check_without_disconnecting() {
    let env = Env::start().await;
    let (store, keys, _) = cloudhsm_fixture(&env, 3).await;
    let ctx = env.context(test_config()).await;
    let state = scheduled(&env, &ctx, &store, "Prod").await;
    let newcomer = env.store_key(&store, OriginType::AwsCloudhsm, 50).await;
    env.kms
        .cancel_key_deletion()
        .key_id(&keys[1])
        .send()
        .await
        .unwrap();
    env.clear_calls().await;

    let err = run_until_done(&ctx, Step::CheckKeysDeleted, state, far_deadline)
        .await
        .unwrap_err();
    let diagnostic = Diagnostic::from(err);
    assert_eq!(diagnostic.error_type, "KeysNotPendingDeletion");
    assert!(
        diagnostic.error_message.contains(&newcomer),
        "{}",
        diagnostic.error_message
    );
    assert!(diagnostic
        .error_message
        .contains(&format!("{} (Disabled)", keys[1])));
    assert!(diagnostic.error_message.contains("2 key(s)"));
    assert!(env.mutating_calls().await.is_empty());
    assert_eq!(env.store_state(&store).await, "CONNECTED");
}

#[tokio::test]
async fn keys_pending_long_past_their_deletion_date_are_overdue() {
    let env = Env::start().await;
    let (store, _, _) = cloudhsm_fixture(&env, 2).await;
    // Keys that KMS never deletes: a deletion lag far beyond the documented 24 hours.
    env.set_config(json!({"deletion_lag_hours": 1.0e6})).await;
    let mut config = test_config();
    config.key_deletion_overdue_seconds = 86_400;
    let ctx = env.context(config.clone()).await;
    let state = scheduled(&env, &ctx, &store, "Prod").await;
    env.advance(9.0 * 86_400.0).await;
    let mut later = env.context(config).await;
    later.clock = Clock::shifted(9 * 86_400);
    let err = run_until_done(&later, Step::CheckKeysDeleted, state, far_deadline)
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "KeyDeletionOverdue");
    assert!(err.to_string().contains("2 key(s)"));
}

#[tokio::test]
async fn a_cloudhsm_store_found_disconnected_while_keys_are_pending_is_reconnected() {
    let env = Env::start().await;
    let (store, _, _) = cloudhsm_fixture(&env, 2).await;
    let ctx = env.context(test_config()).await;
    let state = scheduled(&env, &ctx, &store, "Prod").await;
    env.kms
        .disconnect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    env.wait_for_state(&store, "DISCONNECTED").await;

    let (checked, _) = run_until_done(&ctx, Step::CheckKeysDeleted, state, far_deadline)
        .await
        .unwrap();
    let check = checked.deletion.as_ref().unwrap();
    assert!(check.needs_reconnect);
    assert!(!check.all_deleted);
    assert_eq!(
        check.keys_pending, 2,
        "pending keys stay pending while disconnected"
    );

    // The state machine goes back to EnsureStoreConnected, then checks again.
    let (reconnected, _) = run_until_done(&ctx, Step::EnsureStoreConnected, checked, far_deadline)
        .await
        .unwrap();
    assert_eq!(env.store_state(&store).await, "CONNECTED");
    let (rechecked, _) = run_until_done(&ctx, Step::CheckKeysDeleted, reconnected, far_deadline)
        .await
        .unwrap();
    assert!(!rechecked.deletion.unwrap().needs_reconnect);
}

#[tokio::test]
async fn keys_deleted_while_the_store_was_down_stop_the_run_naming_their_orphaned_material() {
    let env = Env::start().await;
    let (store, keys, foreign) = cloudhsm_fixture(&env, 3).await;
    let ctx = env.context(test_config()).await;
    let state = scheduled(&env, &ctx, &store, "Prod").await;
    let (pending, _) = run_until_done(&ctx, Step::CheckKeysDeleted, state, far_deadline)
        .await
        .unwrap();
    // The store drops after the last check and stays down while KMS deletes the keys.
    env.kms
        .disconnect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    env.wait_for_state(&store, "DISCONNECTED").await;
    env.advance(8.0 * 86_400.0).await;
    env.clear_calls().await;

    let err = run_until_done(&ctx, Step::CheckKeysDeleted, pending.clone(), far_deadline)
        .await
        .unwrap_err();
    let diagnostic = Diagnostic::from(err);
    assert_eq!(diagnostic.error_type, "KeyMaterialOrphaned");
    let message = &diagnostic.error_message;
    assert!(message.contains("3 key(s)"), "{message}");
    for key in &keys {
        assert!(message.contains(key.as_str()), "{message}");
    }
    assert!(
        message.contains("keyHandle") && message.contains("backingKeyId"),
        "{message}"
    );
    // Nothing changed: no disconnect or delete of the store, no key touched.
    assert!(env.mutating_calls().await.is_empty());
    assert_untouched(&env.calls().await, &foreign);
    let execution = pending.execution.as_ref().unwrap().id.clone();
    let records = env
        .ledger()
        .key_records(&execution, None, 100)
        .await
        .unwrap();
    assert!(records
        .records
        .iter()
        .all(|r| r.key_material.as_deref() == Some("Orphaned")));
    // Checking again says the same (the ledger, not the document, decides).
    let again = run_until_done(&ctx, Step::CheckKeysDeleted, pending, far_deadline)
        .await
        .unwrap_err();
    assert_eq!(again.error_type(), "KeyMaterialOrphaned");
}

#[tokio::test]
async fn without_kms_delete_key_events_the_run_waits_then_stops_unconfirmed() {
    let env = Env::start().await;
    let (store, keys, _) = cloudhsm_fixture(&env, 2).await;
    let mut config = test_config();
    config.key_material_check_seconds = 3600;
    let ctx = env.context(config.clone()).await;
    let state = scheduled(&env, &ctx, &store, "Prod").await;
    // CloudTrail shows nothing of the last 30 emulated days yet.
    env.set_config(json!({"cloudtrail_delivery_delay": 30.0 * 86_400.0}))
        .await;
    env.clear_calls().await;
    env.advance(8.0 * 86_400.0).await;

    let (waiting, _) = run_until_done(&ctx, Step::CheckKeysDeleted, state, far_deadline)
        .await
        .unwrap();
    let check = waiting.deletion.clone().unwrap();
    assert!(
        !check.all_deleted,
        "no disconnect before the material is accounted for"
    );
    let material = check.key_material.clone().unwrap();
    assert!(!material.done);
    assert_eq!(material.keys_unconfirmed, 2);

    // The wait runs out: the run stops, naming the keys.
    config.key_material_check_seconds = 0;
    let ctx = env.context(config).await;
    let err = run_until_done(&ctx, Step::CheckKeysDeleted, waiting, far_deadline)
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "KeyMaterialDeletionUnconfirmed");
    for key in &keys {
        assert!(err.to_string().contains(key.as_str()), "{err}");
    }
    assert!(env.mutating_calls().await.is_empty());
}

#[tokio::test]
async fn orphaned_material_of_a_key_pending_before_the_run_stops_it_too() {
    let env = Env::start().await;
    let (store, keys, _) = cloudhsm_fixture(&env, 3).await;
    // Someone scheduled one key before the run: the run counts it as already pending and keeps
    // no ledger record of it.
    schedule_by_someone_else(&env, &keys[0], 7).await;
    env.advance(3.0 * 86_400.0).await;
    let ctx = env.context(test_config()).await;
    let state = scheduled(&env, &ctx, &store, "Prod").await;
    assert_eq!(state.scheduling.as_ref().unwrap().keys_already_pending, 1);
    // The store is down when KMS deletes that key (day 7 of its window, day 4 of the run's),
    // up again when it deletes the run's own keys.
    env.kms
        .disconnect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    env.wait_for_state(&store, "DISCONNECTED").await;
    env.advance(4.5 * 86_400.0).await;
    assert_eq!(env.key_state(&keys[0]).await, "Deleted");
    assert_eq!(env.key_state(&keys[1]).await, "PendingDeletion");
    env.kms
        .connect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    env.wait_for_state(&store, "CONNECTED").await;
    env.advance(3.5 * 86_400.0).await;
    env.clear_calls().await;

    let err = run_until_done(&ctx, Step::CheckKeysDeleted, state, far_deadline)
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "KeyMaterialOrphaned");
    let message = err.to_string();
    assert!(message.contains("1 key(s)"), "{message}");
    assert!(message.contains(keys[0].as_str()), "{message}");
    assert!(message.contains("not scheduled by this run"), "{message}");
    for own in &keys[1..] {
        assert!(!message.contains(own.as_str()), "{message}");
    }
    assert!(env.mutating_calls().await.is_empty());
}
