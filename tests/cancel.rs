//! cancel-decommission against the KMS emulator (real aws-sdk-kms over HTTP) and moto's Step
//! Functions (real aws-sdk-sfn): the decommission is scheduled by the real steps, its execution
//! runs in moto, and the cancel must stop it and give every key back its prior state.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_kms::types::OriginType;
use common::*;
use kms_decommission::cancel::step::{run, CancelContext, CancelReport, CancelState};
use kms_decommission::model::Timestamp;
use kms_decommission::state::DecommissionState;
use serde_json::{json, Value};

/// A running decommission: moto execution, store, its keys, keys that must stay untouched.
struct Fixture {
    env: Env,
    /// The decommission's document after scheduling.
    scheduled: DecommissionState,
    execution: String,
    store: String,
    keys: Vec<String>,
    untouched: Vec<String>,
}

/// A CloudHSM store with 5 keys (keys[0] Disabled, keys[4] pending deletion by someone else
/// before the decommission), another store's keys and AWS_KMS keys; a decommission execution
/// running in moto that scheduled the store's keys (30-day window, an emulated day is 1 s).
async fn scheduled() -> (Fixture, BTreeMap<String, Value>) {
    scheduled_with(5).await
}

/// [`scheduled`] with `n` keys in the store.
async fn scheduled_with(n: usize) -> (Fixture, BTreeMap<String, Value>) {
    let env = Env::start().await;
    let (store, keys, foreign) = cloudhsm_fixture(&env, n).await;
    env.kms
        .schedule_key_deletion()
        .key_id(&keys[4])
        .pending_window_in_days(30)
        .send()
        .await
        .unwrap();
    let input = json!({"CustomKeyStoreId": store, "ConfirmCustomKeyStoreName": "Prod",
                       "PendingWindowInDays": 30, "TicketId": "CHG-7"});
    let execution = env
        .moto
        .sfn()
        .start_execution()
        .state_machine_arn(&env.machine)
        .name("CHG-7")
        .input(input.to_string())
        .send()
        .await
        .unwrap()
        .execution_arn;
    let before = snapshot(&env).await;

    let ctx = env.context(test_config()).await;
    let mut state = DecommissionState::from_value(json!({
        "Input": input,
        "Execution": {"Id": execution, "Name": "CHG-7", "StartTime": "2026-11-28T10:00:00Z"}
    }))
    .unwrap();
    state = run_steps(&ctx, &UNTIL_SCHEDULED, state).await;
    assert_eq!(
        state.scheduling.as_ref().unwrap().keys_scheduled,
        n as u64 - 1
    );
    let mut untouched = foreign;
    untouched.push(keys[4].clone());
    (
        Fixture {
            env,
            scheduled: state,
            execution,
            store,
            keys,
            untouched,
        },
        before,
    )
}

/// key id -> {state, tags} of every key the emulator holds.
async fn snapshot(env: &Env) -> BTreeMap<String, Value> {
    let state = env.admin_get("/_emulator/state").await;
    state["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["id"].as_str().unwrap().to_string(),
                json!({"state": k["state"], "tags": k["tags"]}),
            )
        })
        .collect()
}

impl Fixture {
    async fn context(&self, settle: Duration) -> CancelContext {
        CancelContext {
            step: self.env.context(test_config()).await,
            settle,
        }
    }

    /// The console sample (events/cancel-execution.json) aimed at this store and execution.
    fn input(&self) -> Value {
        let mut input = sample("events/cancel-execution.json");
        input["CustomKeyStoreId"] = json!(self.store);
        input["DecommissionExecutionArn"] = json!(self.execution);
        input
    }

    async fn status(&self) -> String {
        let described = self
            .env
            .moto
            .sfn()
            .describe_execution()
            .execution_arn(&self.execution)
            .send()
            .await
            .unwrap();
        described.status().as_str().to_string()
    }
}

fn sample(path: &str) -> Value {
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Runs the cancel like its state machine: invocations until `Cancel.Done` (waits skipped).
async fn cancel(
    ctx: &CancelContext,
    input: Value,
    deadline: fn() -> kms_decommission::deadline::Deadline,
) -> Result<(CancelReport, usize), String> {
    let mut state = CancelState {
        input,
        ..CancelState::default()
    };
    for invocation in 1..=200 {
        state = run(ctx, state, deadline())
            .await
            .map_err(|e| format!("{}: {e}", e.error_type()))?;
        if let Some(report) = &state.report {
            assert!(state.cancel.as_ref().unwrap().done);
            return Ok((report.clone(), invocation));
        }
    }
    panic!("cancel never finished");
}

#[tokio::test]
async fn cancel_during_the_wait_restores_every_key_to_its_prior_state_and_touches_nothing_else() {
    let (f, before) = scheduled().await;
    assert_ne!(snapshot(&f.env).await, before);
    f.env.clear_calls().await;
    let ctx = f.context(Duration::ZERO).await;
    let (report, _) = cancel(&ctx, f.input(), far_deadline).await.unwrap();

    assert_eq!(
        snapshot(&f.env).await,
        before,
        "states and tags as before scheduling"
    );
    assert_eq!(f.env.key_state(&f.keys[0]).await, "Disabled");
    assert_eq!(f.env.key_state(&f.keys[1]).await, "Enabled");
    assert_eq!(f.env.key_state(&f.keys[4]).await, "PendingDeletion");
    assert_untouched(&f.env.calls().await, &f.untouched);
    assert_eq!(f.status().await, "ABORTED");
    assert_eq!(report.decommission_status, "RUNNING");
    assert!(report.stopped_by_this_cancel);
    assert_eq!(report.counts.keys_restored, 4);
    assert_eq!(report.counts.keys_deletion_cancelled, 4);
    assert_eq!(report.counts.keys_re_enabled, 3);
    assert_eq!(report.counts.keys.len(), 4);
    assert!(report
        .counts
        .keys
        .iter()
        .any(|k| k.ends_with("(Disabled -> Disabled)")));
    assert_eq!(
        report.keys_deleted,
        Some(0),
        "the ledger knows none was deleted"
    );
}

#[tokio::test]
async fn a_second_cancel_changes_nothing_and_says_the_decommission_was_already_stopped() {
    let (f, before) = scheduled().await;
    let ctx = f.context(Duration::ZERO).await;
    cancel(&ctx, f.input(), far_deadline).await.unwrap();
    f.env.clear_calls().await;
    let (again, _) = cancel(&ctx, f.input(), far_deadline).await.unwrap();
    assert!(f.env.mutating_calls().await.is_empty());
    assert_eq!(snapshot(&f.env).await, before);
    assert_eq!(again.decommission_status, "ABORTED");
    assert!(!again.stopped_by_this_cancel);
    assert_eq!(again.counts.keys_restored, 0);
}

#[tokio::test]
async fn a_cancel_cut_into_one_page_per_invocation_restores_the_same() {
    let (f, before) = scheduled().await;
    let ctx = f.context(Duration::ZERO).await;
    let (report, invocations) = cancel(&ctx, f.input(), near_deadline).await.unwrap();
    assert!(invocations > 2, "one ListKeys page per invocation");
    assert_eq!(snapshot(&f.env).await, before);
    assert_eq!(report.counts.keys_restored, 4);
}

#[tokio::test]
async fn keys_scheduled_after_the_first_scan_by_an_in_flight_batch_are_restored_too() {
    let (f, _) = scheduled().await;
    let ctx = f.context(Duration::from_secs(3600)).await;
    let mut state = CancelState {
        input: f.input(),
        ..CancelState::default()
    };
    state = run(&ctx, state, far_deadline()).await.unwrap();
    let progress = state.cancel.as_ref().unwrap();
    assert!(!progress.done && progress.wait_required && progress.wait_seconds > 3000);
    assert_eq!(progress.counts.keys_restored, 4);

    // The stopped execution's last schedule-key-deletion invocation, admitted before the stop,
    // is still running: it schedules a key created since (and, re-run from the first page here,
    // the keys the cancel restored). Called directly: a new invocation would be refused
    // (NotTheRunningDecommission, the execution is no longer RUNNING).
    let late = f.env.store_key(&f.store, OriginType::AwsCloudhsm, 9).await;
    let step_ctx = f.env.context(test_config()).await;
    let mut doc = f.scheduled.clone();
    doc.scheduling = None;
    kms_decommission::steps::schedule_key_deletion::run(&step_ctx, doc, far_deadline())
        .await
        .unwrap();
    assert_eq!(f.env.key_state(&late).await, "PendingDeletion");

    // The wait is over (the test moves the settle time instead of waiting an hour).
    let progress = state.cancel.as_mut().unwrap();
    progress.settle_until = Timestamp::parse("2000-01-01T00:00:00Z").unwrap();
    for _ in 0..10 {
        state = run(&ctx, state, far_deadline()).await.unwrap();
        if state.report.is_some() {
            break;
        }
    }
    let report = state.report.expect("done");
    // The late batch (re-run from the first page here) scheduled the 4 restored keys again and
    // the new one: all 9 restorations are counted, and every key is back to its prior state.
    assert_eq!(report.counts.keys_restored, 9);
    assert_eq!(f.env.key_state(&f.keys[0]).await, "Disabled");
    for key in &f.keys[1..4] {
        assert_eq!(f.env.key_state(key).await, "Enabled");
        assert_eq!(f.env.markers(key).await, (None, None, None));
    }
    assert_eq!(f.env.key_state(&late).await, "Enabled");
    assert_eq!(f.env.markers(&late).await, (None, None, None));
}

#[tokio::test]
async fn cancel_after_the_keys_were_deleted_restores_nothing_and_counts_them_from_the_ledger() {
    let (f, _) = scheduled().await;
    f.env.advance(32.0 * 86_400.0).await;
    for key in &f.keys {
        assert!(f.env.describe_key(key).await.is_none(), "{key} deleted");
    }
    f.env.clear_calls().await;
    let ctx = f.context(Duration::ZERO).await;
    let (report, _) = cancel(&ctx, f.input(), far_deadline).await.unwrap();
    assert!(f.env.mutating_calls().await.is_empty());
    assert_eq!(report.counts.keys_restored, 0);
    assert!(!report.store_deleted);
    assert_eq!(report.counts.keys_already_deleted, 4);
    assert_eq!(report.keys_deleted, Some(4));
    assert!(
        report
            .follow_ups
            .iter()
            .any(|s| s.starts_with("4 key(s) were already deleted by KMS")),
        "{:?}",
        report.follow_ups
    );
}

#[tokio::test]
async fn a_bad_cancel_input_is_refused_by_name_and_changes_nothing() {
    let (f, _) = scheduled().await;
    let ctx = f.context(Duration::ZERO).await;
    let other_store_execution = f
        .env
        .moto
        .sfn()
        .start_execution()
        .state_machine_arn(&f.env.machine)
        .name("other")
        .input(json!({"CustomKeyStoreId": "cks-0fedcba0987654321"}).to_string())
        .send()
        .await
        .unwrap()
        .execution_arn;
    let missing = f.execution.replace("CHG-7", "CHG-missing");
    let foreign_machine = f.execution.replace(":decommission:", ":other-machine:");
    f.env.clear_calls().await;
    for (input, error) in [
        (json!({"CustomKeyStoreId": f.store}), "InvalidInput"),
        (
            json!({"CustomKeyStoreId": f.store, "DecommissionExecutionArn": f.execution, "Force": true}),
            "InvalidInput",
        ),
        (
            json!({"CustomKeyStoreId": f.store, "DecommissionExecutionArn": other_store_execution}),
            "InvalidInput",
        ),
        (
            json!({"CustomKeyStoreId": f.store, "DecommissionExecutionArn": foreign_machine}),
            "InvalidInput",
        ),
        (
            json!({"CustomKeyStoreId": f.store, "DecommissionExecutionArn": missing}),
            "DecommissionExecutionNotFound",
        ),
    ] {
        let err = cancel(&ctx, input.clone(), far_deadline).await.unwrap_err();
        assert!(err.starts_with(error), "{input}: {err}");
    }
    assert!(f.env.calls().await.is_empty(), "no KMS call at all");
    assert_eq!(f.status().await, "RUNNING");
}

#[test]
fn the_cancel_samples_are_a_valid_input_and_the_document_the_function_receives() {
    let input = sample("events/cancel-execution.json");
    let request = kms_decommission::cancel::CancelRequest::from_input(&input).unwrap();
    assert_eq!(request.ticket_id.as_deref(), Some("CHG-1234"));
    let event = sample("events/cancel-decommission.json");
    let state: CancelState = serde_json::from_value(event.clone()).unwrap();
    assert_eq!(
        state.input, input,
        "the Initialize state wraps the console input"
    );
    assert_eq!(
        serde_json::to_value(&state).unwrap(),
        event,
        "no field lost"
    );
}

#[tokio::test]
async fn cancel_while_the_store_is_disconnected_enables_keys_on_reconnect_and_says_so() {
    let (f, before) = scheduled().await;
    f.env
        .kms
        .disconnect_custom_key_store()
        .custom_key_store_id(&f.store)
        .send()
        .await
        .unwrap();
    f.env.wait_for_state(&f.store, "DISCONNECTED").await;
    let ctx = f.context(Duration::ZERO).await;
    let (report, _) = cancel(&ctx, f.input(), far_deadline).await.unwrap();
    assert_eq!(report.counts.keys_deletion_cancelled, 4);
    assert_eq!(report.counts.keys_re_enabled_on_reconnect, 3);
    assert!(report
        .follow_ups
        .iter()
        .any(|s| s.contains("connected again")));
    assert_eq!(f.env.key_state(&f.keys[1]).await, "Unavailable");

    f.env.connect(&f.store).await;
    assert_eq!(
        snapshot(&f.env).await,
        before,
        "prior states once connected"
    );
}

#[tokio::test]
async fn cancel_stays_under_the_cancel_and_enable_quotas_and_prints_its_rate() {
    let (f, before) = scheduled_with(25).await;
    f.env.set_config(json!({"quotas": true})).await;
    f.env.clear_calls().await;
    let ctx = f.context(Duration::ZERO).await;
    let started = std::time::Instant::now();
    let (report, _) = cancel(&ctx, f.input(), far_deadline).await.unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(report.counts.keys_restored, 24);
    let calls = f.env.calls().await;
    let throttled: Vec<_> = calls
        .iter()
        .filter(|c| c.outcome == "ThrottlingException")
        .collect();
    assert!(throttled.is_empty(), "throttled: {throttled:?}");
    assert_eq!(snapshot(&f.env).await, before);
    println!(
        "cancel of 24 keys with KMS quotas on: {elapsed:.2} s, {:.2} CancelKeyDeletion/s (quota 5/s), {} KMS calls",
        24.0 / elapsed,
        calls.len()
    );
}
