//! Whole decommissions, in process: every step in the order of the state machine's flow
//! (docs/workflow-contract.md), against the KMS emulator over HTTP with the real SDK. Waits are
//! replaced by moving the emulator's clock; everything else is what an execution does.

mod common;

use aws_sdk_kms::types::OriginType;
use common::*;
use kms_decommission::error::DecommissionError;
use kms_decommission::report::{Outcome, Report};
use kms_decommission::state::DecommissionState;
use kms_decommission::steps::{Step, StepContext};
use kms_emulator::EmulatorConfig;
use serde_json::{json, Value};

/// What the execution did, for assertions.
#[derive(Debug, Default)]
struct Trace {
    invocations: Vec<Step>,
    reconnects: usize,
}

/// Runs the decommission flow of the ASL: Plan loop, dry-run exit, EnsureStoreConnected poll,
/// ScheduleKeyDeletion loop, Wait, CheckKeysDeleted loop (reconnect / wait), DisconnectStore poll,
/// DeleteStore (CustomKeyStoreHasCMKsException -> back to checking). `store_keys` are checked to be
/// gone before the store is ever disconnected.
async fn execute(
    env: &Env,
    ctx: &mut StepContext,
    input: Value,
    store_keys: &[String],
    mut during_wait: impl FnMut(usize) -> Option<&'static str>,
) -> Result<(Report, Trace), DecommissionError> {
    let mut trace = Trace::default();
    let mut state = env.start_run(input).await;
    loop {
        state = invoke(ctx, Step::PlanDecommission, state, &mut trace).await?;
        if state.plan.as_ref().is_some_and(|p| p.done) {
            break;
        }
    }
    if state.request.as_ref().is_some_and(|r| r.dry_run) {
        return Ok((state.report.expect("a dry run reports"), trace));
    }
    let mut waits = 0;
    'connect: loop {
        loop {
            state = invoke(ctx, Step::EnsureStoreConnected, state, &mut trace).await?;
            if state.connection.as_ref().is_some_and(|c| c.ready) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        if !state.scheduling.as_ref().is_some_and(|s| s.done) {
            loop {
                state = invoke(ctx, Step::ScheduleKeyDeletion, state, &mut trace).await?;
                if state.scheduling.as_ref().is_some_and(|s| s.done) {
                    break;
                }
            }
        }
        'check: loop {
            state = invoke(ctx, Step::CheckKeysDeleted, state, &mut trace).await?;
            let check = state.deletion.clone().expect("Deletion");
            if !check.scan_done {
                continue;
            }
            if check.needs_reconnect {
                trace.reconnects += 1;
                continue 'connect;
            }
            if !check.all_deleted {
                // Wait: a day of emulated time passes; the test may disturb the store meanwhile.
                waits += 1;
                assert!(waits < 100, "keys never deleted");
                if let Some("disconnect store") = during_wait(waits) {
                    let id = state.request.as_ref().unwrap().custom_key_store_id.clone();
                    env.kms
                        .disconnect_custom_key_store()
                        .custom_key_store_id(&id)
                        .send()
                        .await
                        .unwrap();
                    env.wait_for_state(&id, "DISCONNECTED").await;
                }
                env.advance(86_400.0).await;
                ctx.clock = env.clock().await;
                continue;
            }
            for key in store_keys {
                assert_eq!(
                    env.key_state(key).await,
                    "Deleted",
                    "disconnecting with a key left"
                );
            }
            loop {
                state = invoke(ctx, Step::DisconnectStore, state, &mut trace).await?;
                if state.disconnect.as_ref().is_some_and(|d| d.disconnected) {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            match invoke(ctx, Step::DeleteStore, state.clone(), &mut trace).await {
                Ok(done) => return Ok((done.report.expect("Report"), trace)),
                Err(err) if err.error_type() == "CustomKeyStoreHasCMKsException" => continue 'check,
                Err(err) => return Err(err),
            }
        }
    }
}

/// One Task state: invokes `step` with the whole document.
async fn invoke(
    ctx: &StepContext,
    step: Step,
    state: DecommissionState,
    trace: &mut Trace,
) -> Result<DecommissionState, DecommissionError> {
    trace.invocations.push(step);
    step.run(ctx, state, far_deadline()).await
}

async fn cloudhsm_world(env: &Env, n: usize) -> (String, Vec<String>, Vec<String>) {
    let (store, mut keys, foreign) = cloudhsm_fixture(env, n).await;
    // One key of the store was already pending deletion (30 days) before the decommission.
    let pending = env.store_key(&store, OriginType::AwsCloudhsm, 99).await;
    env.kms
        .schedule_key_deletion()
        .key_id(&pending)
        .pending_window_in_days(30)
        .send()
        .await
        .unwrap();
    keys.push(pending);
    (store, keys, foreign)
}

#[tokio::test]
async fn a_cloudhsm_store_is_decommissioned_end_to_end() {
    let env = Env::start().await;
    let (store, keys, foreign) = cloudhsm_world(&env, 5).await;
    env.clear_calls().await;
    let mut ctx = env.context(test_config()).await;
    let (report, trace) = execute(&env, &mut ctx, real_input(&store, "Prod"), &keys, |_| None)
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Deleted);
    assert_eq!(report.keys_in_store, 6);
    assert_eq!(report.keys_scheduled, 5);
    assert_eq!(report.keys_already_pending, 1);
    assert_eq!(report.keys_deleted, 6);
    assert_eq!(report.ticket_id.as_deref(), Some("CHG-42"));
    assert_eq!(report.requested_by.as_deref(), Some("alice"));
    assert_eq!(report.execution_id.as_deref(), Some(EXECUTION));
    assert!(report.follow_ups.iter().any(|f| f.contains("backups")));
    assert_eq!(trace.reconnects, 0);
    for key in &keys {
        assert_eq!(env.key_state(key).await, "Deleted");
    }
    let calls = env.calls().await;
    assert_untouched(&calls, &foreign);
    for key in &foreign {
        assert_ne!(env.key_state(key).await, "Deleted");
    }
    // The store was connected for the whole window: nothing disconnected it before the end.
    let disconnects: Vec<_> = calls
        .iter()
        .filter(|c| c.operation == "DisconnectCustomKeyStore")
        .collect();
    assert_eq!(disconnects.len(), 1);
    let report_json = serde_json::to_value(&report).unwrap();
    assert!(report_json.to_string().len() < 16 * 1024);
}

#[tokio::test]
async fn an_external_key_store_is_decommissioned_end_to_end() {
    let env = Env::start().await;
    let store = env.xks_store("Ext").await;
    let mut keys = Vec::new();
    for i in 0..4 {
        keys.push(env.store_key(&store, OriginType::ExternalKeyStore, i).await);
    }
    let foreign = vec![env.plain_key().await];
    env.clear_calls().await;
    let mut ctx = env.context(test_config()).await;
    let (report, _) = execute(&env, &mut ctx, real_input(&store, "Ext"), &keys, |_| None)
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Deleted);
    assert_eq!(report.keys_deleted, 4);
    let mut external: Vec<_> = report
        .keys
        .iter()
        .filter_map(|k| k.xks_key_id.clone())
        .collect();
    external.sort();
    assert_eq!(external, ["ext-0", "ext-1", "ext-2", "ext-3"]);
    let calls = env.calls().await;
    assert_untouched(&calls, &foreign);
    assert!(!calls.iter().any(|c| c.operation == "ConnectCustomKeyStore"));
}

#[tokio::test]
async fn a_dry_run_execution_ends_with_the_plan_and_changes_nothing() {
    let env = Env::start().await;
    let (store, keys, _) = cloudhsm_world(&env, 3).await;
    env.clear_calls().await;
    let mut ctx = env.context(test_config()).await;
    let (report, trace) = execute(
        &env,
        &mut ctx,
        json!({"CustomKeyStoreId": store, "DryRun": true}),
        &keys,
        |_| None,
    )
    .await
    .unwrap();
    assert_eq!(report.outcome, Outcome::DryRun);
    assert_eq!(report.keys_in_store, 4);
    assert_eq!(report.keys_scheduled, 3);
    assert_eq!(report.keys_already_pending, 1);
    assert!(trace
        .invocations
        .iter()
        .all(|s| *s == Step::PlanDecommission));
    assert!(env.mutating_calls().await.is_empty());
}

#[tokio::test]
async fn a_cloudhsm_store_disconnected_during_the_window_is_reconnected_before_the_end() {
    let env = Env::start().await;
    let (store, keys, _) = cloudhsm_world(&env, 2).await;
    let mut ctx = env.context(test_config()).await;
    let (report, trace) = execute(&env, &mut ctx, real_input(&store, "Prod"), &keys, |wait| {
        (wait == 1).then_some("disconnect store")
    })
    .await
    .unwrap();
    assert_eq!(report.outcome, Outcome::Deleted);
    assert_eq!(trace.reconnects, 1);
    assert!(env.count_ok("ConnectCustomKeyStore").await >= 1);
}

#[tokio::test]
async fn with_kms_quotas_on_a_decommission_is_never_throttled() {
    let env = Env::start_with(EmulatorConfig::fast()).await;
    env.set_config(json!({"quotas": false})).await;
    let (store, keys, _) = cloudhsm_fixture(&env, 15).await;
    env.set_config(json!({"quotas": true})).await;
    env.clear_calls().await;
    let mut config = test_config();
    config.list_keys_page_size = 100;
    let mut ctx = env.context(config).await;
    let (report, _) = execute(&env, &mut ctx, real_input(&store, "Prod"), &keys, |_| None)
        .await
        .unwrap();
    assert_eq!(report.keys_deleted, 15);
    let throttled: Vec<_> = env
        .calls()
        .await
        .into_iter()
        .filter(|c| c.outcome == "ThrottlingException")
        .collect();
    assert!(throttled.is_empty(), "throttled calls: {throttled:?}");
}
