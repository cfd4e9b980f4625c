//! The run ledger against moto's DynamoDB and Step Functions and the KMS emulator, all over HTTP
//! with the real SDK clients: one decommission per store, steps that act only for the running
//! decommission holding the store's lock, one record per key written before its first change,
//! planted markers ignored, a crash between record and schedule converging, lock release.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use kms_decommission::cancel::step::{run as cancel_step, CancelContext, CancelState};
use kms_decommission::error::DecommissionError;
use kms_decommission::keys::{MARKER_EXECUTION, MARKER_PRIOR_STATE};
use kms_decommission::ledger::{run_pk, store_pk};
use kms_decommission::state::DecommissionState;
use kms_decommission::steps::{Step, StepContext};
use serde_json::json;

type Item = BTreeMap<String, String>;

/// Plans, connects and schedules the run of `state` (the document schedule-key-deletion leaves).
async fn scheduled(ctx: &StepContext, state: DecommissionState) -> DecommissionState {
    run_steps(ctx, &UNTIL_SCHEDULED, state).await
}

fn execution_of(state: &DecommissionState) -> String {
    state.execution_id().unwrap().to_owned()
}

/// The lock item of `store`, if any.
async fn lock(env: &Env, store: &str) -> Option<Item> {
    env.ledger_items(&store_pk(store))
        .await
        .into_iter()
        .find(|item| item["sk"] == "LOCK")
}

/// The record of run `execution` of `store`.
async fn run_record(env: &Env, store: &str, execution: &str) -> Item {
    env.ledger_items(&store_pk(store))
        .await
        .into_iter()
        .find(|item| item["sk"] == run_pk(execution))
        .unwrap_or_else(|| panic!("no record of run {execution}"))
}

/// Key id -> key record of run `execution`.
async fn key_records(env: &Env, execution: &str) -> BTreeMap<String, Item> {
    env.ledger_items(&run_pk(execution))
        .await
        .into_iter()
        .map(|item| (item["KeyId"].clone(), item))
        .collect()
}

#[tokio::test]
async fn a_second_run_of_a_locked_store_fails_at_once_naming_the_holder_and_changes_nothing() {
    let env = Env::start().await;
    let (store, _, _) = cloudhsm_fixture(&env, 3).await;
    let ctx = env.context(test_config()).await;
    let first = env.start_run(real_input(&store, "Prod")).await;
    let holder = execution_of(&first);
    run_until_done(&ctx, Step::PlanDecommission, first, far_deadline)
        .await
        .unwrap();
    assert_eq!(lock(&env, &store).await.unwrap()["Execution"], holder);

    env.clear_calls().await;
    let second = env.start_run(real_input(&store, "Prod")).await;
    let err = Step::PlanDecommission
        .run(&ctx, second, far_deadline())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "DecommissionInProgress");
    assert!(err.to_string().contains(&holder), "{err}");
    assert!(
        env.calls().await.is_empty(),
        "refused before any KMS call: {:?}",
        env.calls().await
    );
    assert_eq!(lock(&env, &store).await.unwrap()["Execution"], holder);

    // A dry run reads only: it is not refused by the lock and does not take it.
    let dry = env
        .start_run(json!({"CustomKeyStoreId": store, "DryRun": true}))
        .await;
    let (dry, _) = run_until_done(&ctx, Step::PlanDecommission, dry, far_deadline)
        .await
        .unwrap();
    assert!(dry.report.is_some());
    assert_eq!(lock(&env, &store).await.unwrap()["Execution"], holder);
    assert!(env.mutating_calls().await.is_empty());
}

#[tokio::test]
async fn a_lock_left_by_a_run_that_ended_is_taken_over_and_that_run_s_end_recorded() {
    let env = Env::start().await;
    let (store, _, _) = cloudhsm_fixture(&env, 2).await;
    let ctx = env.context(test_config()).await;
    let first = env.start_run(real_input(&store, "Prod")).await;
    let stopped = execution_of(&first);
    run_until_done(&ctx, Step::PlanDecommission, first, far_deadline)
        .await
        .unwrap();
    env.stop_run(&stopped).await;

    let second = env.start_run(real_input(&store, "Prod")).await;
    let taker = execution_of(&second);
    run_until_done(&ctx, Step::PlanDecommission, second, far_deadline)
        .await
        .unwrap();
    assert_eq!(lock(&env, &store).await.unwrap()["Execution"], taker);
    let old = run_record(&env, &store, &stopped).await;
    assert_eq!(old["Outcome"], "ABORTED");
    assert!(old["OutcomeDetail"].contains(&taker), "{old:?}");
    let new = run_record(&env, &store, &taker).await;
    assert_eq!(new["Phase"], "plan-decommission");
    assert_eq!(new["RequestedBy"], "alice");
    assert_eq!(new["TicketId"], "CHG-42");
    assert!(!new.contains_key("Outcome"));
}

#[tokio::test]
async fn forged_and_stale_documents_are_refused_by_every_step_and_change_nothing() {
    let env = Env::start().await;
    let (store, keys, _) = cloudhsm_fixture(&env, 3).await;
    let ctx = env.context(test_config()).await;
    // The real run of the store, scheduled and waiting; a real run of another store.
    let real = scheduled(&ctx, env.start_run(real_input(&store, "Prod")).await).await;
    let other_store = env.cloudhsm_store("Third").await;
    env.store_key(&other_store, aws_sdk_kms::types::OriginType::AwsCloudhsm, 7)
        .await;
    let other = env.start_run(real_input(&other_store, "Third")).await;
    let other_arn = execution_of(&other);
    run_until_done(&ctx, Step::PlanDecommission, other, far_deadline)
        .await
        .unwrap();
    let stopped = env.start_run(real_input(&store, "Prod")).await;
    let stopped_arn = execution_of(&stopped);
    env.stop_run(&stopped_arn).await;
    let states_before: Vec<String> = {
        let mut states = Vec::new();
        for key in &keys {
            states.push(env.key_state(key).await);
        }
        states
    };
    env.clear_calls().await;

    let made_up = format!("{}-forged", execution_of(&real));
    let with_execution = |arn: &str| {
        let mut forged = real.clone();
        forged.execution.as_mut().unwrap().id = arn.to_owned();
        forged
    };
    let mut guard_off = real.clone();
    guard_off.request.as_mut().unwrap().min_days_since_last_use = 0;
    let cases = [
        ("a made-up execution", with_execution(&made_up)),
        ("a stopped run of the store", with_execution(&stopped_arn)),
        (
            "the running run of another store",
            with_execution(&other_arn),
        ),
        ("the running run with another request", guard_off),
    ];
    for (what, document) in &cases {
        for step in [
            Step::EnsureStoreConnected,
            Step::ScheduleKeyDeletion,
            Step::CheckKeysDeleted,
            Step::DisconnectStore,
            Step::DeleteStore,
        ] {
            let mut document = document.clone();
            // Every section a later step needs, claimed done.
            document.deletion = Some(Default::default());
            if let Some(deletion) = document.deletion.as_mut() {
                deletion.all_deleted = true;
                deletion.scan_done = true;
            }
            document.disconnect = Some(Default::default());
            if let Some(disconnect) = document.disconnect.as_mut() {
                disconnect.disconnected = true;
            }
            let err = step
                .run(&ctx, document, far_deadline())
                .await
                .expect_err(what);
            assert_eq!(
                err.error_type(),
                "NotTheRunningDecommission",
                "{step:?} with {what}: {err}"
            );
        }
    }
    assert!(
        env.mutating_calls().await.is_empty(),
        "{:?}",
        env.mutating_calls().await
    );
    for (key, before) in keys.iter().zip(&states_before) {
        assert_eq!(&env.key_state(key).await, before);
    }
    assert_eq!(env.store_state(&store).await, "CONNECTED");

    // The real run's own document still goes on.
    let checked = Step::CheckKeysDeleted
        .run(&ctx, real, far_deadline())
        .await
        .unwrap();
    assert!(checked.deletion.unwrap().keys_pending > 0);
}

#[tokio::test]
async fn each_key_is_recorded_before_its_first_change_and_the_lock_released_when_the_store_is_deleted(
) {
    let env = Env::start().await;
    let (store, keys, _) = cloudhsm_fixture(&env, 3).await;
    let ctx = env.context(test_config()).await;
    let state = scheduled(&ctx, env.start_run(real_input(&store, "Prod")).await).await;
    let execution = execution_of(&state);
    let records = key_records(&env, &execution).await;
    assert_eq!(records.len(), 3);
    assert_eq!(records[&keys[0]]["PriorState"], "Disabled");
    for key in &keys[1..] {
        assert_eq!(records[key]["PriorState"], "Enabled");
    }
    for record in records.values() {
        assert!(record["RecordedAt"] <= record["ScheduledAt"], "{record:?}");
        assert!(record.contains_key("DeletionDate"), "{record:?}");
        // The guard is on by default: the last use asked just before scheduling is kept.
        assert!(
            record["LastUse"].starts_with("never used since")
                || record["LastUse"].starts_with("not used since"),
            "{record:?}"
        );
        assert!(!record.contains_key("SeenDeletedAt"));
    }
    assert_eq!(
        run_record(&env, &store, &execution).await["Phase"],
        "schedule-key-deletion"
    );

    env.advance(8.0 * 86_400.0).await;
    let ctx = env.context(test_config()).await;
    let state = run_steps(
        &ctx,
        &[
            Step::CheckKeysDeleted,
            Step::DisconnectStore,
            Step::DeleteStore,
        ],
        state,
    )
    .await;
    let report = state.report.unwrap();
    let ledger = report.ledger.expect("the report points to the ledger");
    assert_eq!(ledger.table, env.table);
    assert_eq!(ledger.run_record_key, run_pk(&execution));
    assert!(lock(&env, &store).await.is_none(), "lock released");
    let run = run_record(&env, &store, &execution).await;
    assert_eq!(run["Outcome"], "Succeeded");
    for record in key_records(&env, &execution).await.values() {
        assert!(record.contains_key("SeenDeletedAt"), "{record:?}");
    }

    // Nothing holds the store any more: a new run is refused only because the store is gone.
    let after = env.start_run(real_input(&store, "Prod")).await;
    let err = Step::PlanDecommission
        .run(&ctx, after, far_deadline())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "CustomKeyStoreNotFoundException");
}

#[tokio::test]
async fn a_step_killed_between_a_key_s_record_and_its_schedule_converges_on_re_run() {
    let env = Env::start().await;
    let (store, keys, _) = cloudhsm_fixture(&env, 4).await;
    let mut config = test_config();
    config.list_keys_page_size = 100;
    let ctx = env.context(config).await;
    let mut state = env.start_run(real_input(&store, "Prod")).await;
    for step in [Step::PlanDecommission, Step::EnsureStoreConnected] {
        state = run_until_done(&ctx, step, state, far_deadline)
            .await
            .unwrap()
            .0;
    }
    let execution = execution_of(&state);
    // Every ScheduleKeyDeletion of the first attempt fails past the SDK's 3 attempts.
    env.fault("ScheduleKeyDeletion", "KMSInternalException", 12)
        .await;
    let err = Step::ScheduleKeyDeletion
        .run(&ctx, state.clone(), far_deadline())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "KMSInternalException");
    let recorded = key_records(&env, &execution).await;
    assert!(
        !recorded.is_empty(),
        "records are written before the schedule"
    );
    assert!(recorded.values().all(|r| !r.contains_key("ScheduledAt")));
    // Meanwhile someone enables the key that was Disabled when the run recorded it.
    env.kms.enable_key().key_id(&keys[0]).send().await.unwrap();
    env.admin_delete("/_emulator/faults").await;

    let (done, _) = run_until_done(&ctx, Step::ScheduleKeyDeletion, state, far_deadline)
        .await
        .unwrap();
    let scheduling = done.scheduling.unwrap();
    assert_eq!(scheduling.keys_scheduled, 4);
    assert_eq!(scheduling.keys_already_pending, 0);
    let records = key_records(&env, &execution).await;
    assert_eq!(records.len(), 4);
    for key in &keys {
        assert_eq!(env.key_state(key).await, "PendingDeletion");
        assert!(records[key].contains_key("ScheduledAt"));
    }
    if let Some(first) = recorded.get(&keys[0]) {
        assert_eq!(first["PriorState"], "Disabled");
        assert_eq!(
            records[&keys[0]]["PriorState"], "Disabled",
            "the first record stays"
        );
    }
    assert_eq!(
        env.count_ok("ScheduleKeyDeletion").await,
        4,
        "each key scheduled once"
    );
}

#[tokio::test]
async fn planted_markers_are_ignored_named_and_the_cancel_restores_what_the_run_read() {
    let env = Env::start().await;
    let (store, keys, _) = cloudhsm_fixture(&env, 3).await;
    // The first run's ARN is predictable; keys[0] is Disabled. Someone plants markers claiming
    // this run found it Enabled (a cancel would then enable it), and claims keys[1] (Enabled)
    // was Disabled (a cancel would leave it disabled: an outage).
    let planted_for = EXECUTION;
    for (key, prior) in [(&keys[0], "Enabled"), (&keys[1], "Disabled")] {
        let tag = |k: &str, v: &str| {
            aws_sdk_kms::types::Tag::builder()
                .tag_key(k)
                .tag_value(v)
                .build()
                .unwrap()
        };
        env.kms
            .tag_resource()
            .key_id(key)
            .tags(tag(MARKER_EXECUTION, planted_for))
            .tags(tag(MARKER_PRIOR_STATE, prior))
            .send()
            .await
            .unwrap();
    }
    let ctx = env.context(test_config()).await;
    let state = scheduled(&ctx, env.start_run(real_input(&store, "Prod")).await).await;
    let execution = execution_of(&state);
    assert_eq!(execution, planted_for);
    let scheduling = state.scheduling.clone().unwrap();
    assert_eq!(scheduling.keys_with_foreign_markers, 2);
    let records = key_records(&env, &execution).await;
    assert_eq!(records[&keys[0]]["PriorState"], "Disabled");
    assert_eq!(records[&keys[1]]["PriorState"], "Enabled");
    assert!(records[&keys[0]]["MarkerNote"].contains("prior-state=Enabled"));

    let cancel_ctx = CancelContext {
        step: env.context(test_config()).await,
        settle: Duration::ZERO,
    };
    let mut cancel = CancelState {
        input: json!({"CustomKeyStoreId": store, "DecommissionExecutionArn": execution,
                      "RequestedBy": "bob", "Reason": "withdrawn"}),
        ..CancelState::default()
    };
    for _ in 0..20 {
        cancel = cancel_step(&cancel_ctx, cancel, far_deadline())
            .await
            .map_err(|e| format!("{}: {e}", e.error_type()))
            .unwrap();
        if cancel.report.is_some() {
            break;
        }
    }
    assert_eq!(cancel.report.unwrap().counts.keys_restored, 3);
    assert_eq!(env.key_state(&keys[0]).await, "Disabled");
    assert_eq!(env.key_state(&keys[1]).await, "Enabled");
    assert_eq!(env.key_state(&keys[2]).await, "Enabled");
    assert!(
        lock(&env, &store).await.is_none(),
        "the cancel released the lock"
    );
    let run = run_record(&env, &store, &execution).await;
    assert_eq!(run["Outcome"], "Cancelled");
    assert!(run["OutcomeDetail"].contains("bob"));
    let records = key_records(&env, &execution).await;
    assert!(records.values().all(|r| r.contains_key("RestoredAt")));

    // The store is free again: a new run plans.
    env.end_runs().await;
    let again = env.start_run(real_input(&store, "Prod")).await;
    run_until_done(&ctx, Step::PlanDecommission, again, far_deadline)
        .await
        .unwrap();
}

#[test]
fn the_new_errors_have_their_contract_names() {
    let err = DecommissionError::NotTheRunningDecommission {
        step: "schedule-key-deletion",
        execution: "arn".into(),
        reason: "the execution is ABORTED".into(),
    };
    assert_eq!(
        lambda_runtime::Diagnostic::from(err).error_type,
        "NotTheRunningDecommission"
    );
    let err = DecommissionError::DecommissionInProgress {
        store_id: "cks-1".into(),
        holder: "arn".into(),
        taken_at: "2026-11-28T10:00:00Z".into(),
    };
    assert_eq!(err.error_type(), "DecommissionInProgress");
}
