//! The quarantine against the KMS emulator (its CloudTrail record of every call, read through
//! LookupEvents) and moto: the store is disconnected, an application that tries one of its keys
//! is found and named, the store is connected again and nothing is scheduled; a quiet quarantine
//! ends with the store connected and the run goes on; a daily check finds a use before the end.

mod common;

use std::collections::BTreeMap;

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::primitives::Blob;
use common::*;
use kms_decommission::cancel::step::{run as cancel_step, CancelContext, CancelState};
use kms_decommission::config::Config;
use kms_decommission::error::DecommissionError;
use kms_decommission::state::{DecommissionState, QuarantineNext, QuarantinePhase};
use kms_decommission::steps::{Step, StepContext};
use kms_emulator::EmulatorConfig;
use serde_json::json;

const APP_KEY_ID: &str = "AKIAPAYMENTSAPP00001";
const APP: &str = "arn:aws:iam::123456789012:user/payments-app";
const DAY: f64 = 86_400.0;
/// CloudTrail's delivery margin in these tests (emulated seconds).
const MARGIN: u64 = 300;

async fn env() -> Env {
    Env::start_with(EmulatorConfig {
        quotas: false,
        identities: BTreeMap::from([(APP_KEY_ID.to_owned(), APP.to_owned())]),
        ..EmulatorConfig::fast()
    })
    .await
}

fn config() -> Config {
    Config {
        cloudtrail_delivery_margin_seconds: MARGIN,
        ..test_config()
    }
}

/// The application's KMS client (its own access key).
fn app_kms(env: &Env) -> aws_sdk_kms::Client {
    aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(APP_KEY_ID, "secret", None, None, "app"))
            .endpoint_url(env.emulator.endpoint())
            .build(),
    )
}

/// A planned real run of a 3-key CloudHSM store with a quarantine of `days`.
async fn planned(
    env: &Env,
    ctx: &StepContext,
    days: u32,
) -> (String, Vec<String>, DecommissionState) {
    let (store, keys, _) = cloudhsm_fixture(env, 3).await;
    let mut input = real_input(&store, "Prod");
    input["QuarantineDays"] = json!(days);
    let state = run_steps(ctx, &[Step::PlanDecommission], env.start_run(input).await).await;
    let quarantine = state.quarantine.clone().expect("plan writes Quarantine");
    assert!(quarantine.required && quarantine.days == days);
    (store, keys, state)
}

/// Runs quarantine-store until it asks to wait for the next check (or is done, or fails).
async fn quarantine_until_wait(
    ctx: &StepContext,
    mut state: DecommissionState,
) -> Result<DecommissionState, DecommissionError> {
    for _ in 0..500 {
        state = Step::QuarantineStore
            .run(ctx, state, far_deadline())
            .await?;
        match state.quarantine.as_ref().map(|q| q.next) {
            Some(QuarantineNext::WaitForCheck | QuarantineNext::Done) => return Ok(state),
            Some(QuarantineNext::Poll) => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
            _ => {}
        }
    }
    panic!("quarantine-store never asked to wait");
}

/// Runs quarantine-store to its end, moving the clock to each next check.
async fn quarantine_until_done(
    env: &Env,
    ctx: &mut StepContext,
    mut state: DecommissionState,
) -> Result<DecommissionState, DecommissionError> {
    for _ in 0..20 {
        state = quarantine_until_wait(ctx, state).await?;
        let q = state.quarantine.clone().unwrap();
        if q.next == QuarantineNext::Done {
            return Ok(state);
        }
        let due = q.next_check_at.unwrap().time();
        let ahead = due
            .duration_since(ctx.clock.now())
            .map_or(0, |d| d.as_secs() + 1);
        advance(env, ctx, ahead as f64).await;
    }
    panic!("the quarantine never ended");
}

/// Moves the steps' clock forward (days of quarantine pass; KMS and CloudTrail keep real time,
/// so the events recorded now fall inside the quarantine's window).
async fn advance(_env: &Env, ctx: &mut StepContext, seconds: f64) {
    ctx.clock = ctx.clock.advanced_by(seconds as i64);
}

async fn try_key(env: &Env, key: &str) {
    let refused = app_kms(env)
        .encrypt()
        .key_id(key)
        .plaintext(Blob::new("yearly report"))
        .send()
        .await
        .unwrap_err();
    let code = refused
        .as_service_error()
        .and_then(|e| aws_sdk_kms::error::ProvideErrorMetadata::code(e));
    assert_eq!(code, Some("KMSInvalidStateException"));
}

#[tokio::test]
async fn a_key_used_during_the_quarantine_stops_the_run_naming_the_caller_and_reconnects() {
    let env = env().await;
    let mut ctx = env.context(config()).await;
    let (store, keys, state) = planned(&env, &ctx, 2).await;
    env.clear_calls().await;

    let state = quarantine_until_wait(&ctx, state).await.unwrap();
    let q = state.quarantine.clone().unwrap();
    assert_eq!(q.phase, QuarantinePhase::Watching);
    assert_eq!(q.was_connected, Some(true));
    assert_eq!(env.store_state(&store).await, "DISCONNECTED");
    // Steps after the quarantine do not act while it lasts.
    let err = Step::ScheduleKeyDeletion
        .run(&ctx, state.clone(), far_deadline())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "InvalidStateDocument", "{err}");

    // The yearly report runs: its Encrypt fails (the store is disconnected) and is recorded.
    try_key(&env, &keys[1]).await;
    advance(&env, &mut ctx, 2.0 * DAY + MARGIN as f64 + 1.0).await;
    let err = quarantine_until_wait(&ctx, state).await.unwrap_err();
    assert_eq!(err.error_type(), "KeysNeededDuringQuarantine");
    let message = err.to_string();
    let arn = env.describe_key(&keys[1]).await.unwrap().arn.unwrap();
    for expected in [
        APP,
        arn.as_str(),
        "Encrypt",
        "KMSInvalidStateException",
        "CONNECTED again",
    ] {
        assert!(
            message.contains(expected),
            "{expected} missing from: {message}"
        );
    }
    assert_eq!(env.store_state(&store).await, "CONNECTED");
    let mutating: Vec<String> = env
        .mutating_calls()
        .await
        .into_iter()
        .map(|c| c.operation)
        .collect();
    assert_eq!(
        mutating,
        ["DisconnectCustomKeyStore", "ConnectCustomKeyStore"],
        "nothing but the quarantine itself changed"
    );
}

#[tokio::test]
async fn with_the_trails_log_group_a_use_is_found_by_logs_insights_naming_the_caller() {
    let env = env().await;
    let mut ctx = env.context(config()).await;
    // The trail's log group is configured: LookupEvents is not used.
    ctx.insights = Some(env.insights(50.0));
    let (store, keys, state) = planned(&env, &ctx, 2).await;
    let state = quarantine_until_wait(&ctx, state).await.unwrap();
    assert_eq!(env.store_state(&store).await, "DISCONNECTED");

    try_key(&env, &keys[2]).await;
    advance(&env, &mut ctx, 2.0 * DAY + MARGIN as f64 + 1.0).await;
    env.clear_calls().await;
    let err = quarantine_until_wait(&ctx, state).await.unwrap_err();
    assert_eq!(err.error_type(), "KeysNeededDuringQuarantine");
    let message = err.to_string();
    let arn = env.describe_key(&keys[2]).await.unwrap().arn.unwrap();
    for expected in [APP, arn.as_str(), "Encrypt", "KMSInvalidStateException"] {
        assert!(
            message.contains(expected),
            "{expected} missing from: {message}"
        );
    }
    assert_eq!(env.store_state(&store).await, "CONNECTED");
    let calls: Vec<String> = env.calls().await.into_iter().map(|c| c.operation).collect();
    assert!(calls.iter().any(|c| c == "StartQuery"), "{calls:?}");
    assert!(calls.iter().any(|c| c == "GetQueryResults"), "{calls:?}");
    assert!(!calls.iter().any(|c| c == "LookupEvents"), "{calls:?}");
}

#[tokio::test]
async fn a_query_still_running_at_the_deadline_is_polled_by_the_next_invocation() {
    let env = env().await;
    let mut ctx = env.context(config()).await;
    ctx.insights = Some(env.insights(50.0));
    let (_, keys, state) = planned(&env, &ctx, 1).await;
    let mut state = quarantine_until_wait(&ctx, state).await.unwrap();
    try_key(&env, &keys[0]).await;
    advance(&env, &mut ctx, DAY + MARGIN as f64 + 1.0).await;
    // Invocations with no time to spare: each starts or polls once and hands on its cursor.
    let mut query_ids = Vec::new();
    let mut result = None;
    for _ in 0..10 {
        match Step::QuarantineStore
            .run(&ctx, state.clone(), near_deadline())
            .await
        {
            Ok(next) => {
                let q = next.quarantine.clone().unwrap();
                if let Some(id) = q
                    .scan
                    .as_ref()
                    .and_then(|s| s.insights.as_ref())
                    .and_then(|c| c.query_id.clone())
                {
                    query_ids.push(id);
                }
                if q.next != QuarantineNext::Continue {
                    result = Some(Ok(next));
                    break;
                }
                state = next;
            }
            Err(e) => {
                result = Some(Err(e));
                break;
            }
        }
    }
    // Every query started was still running when its invocation ended, kept in the progress,
    // and polled to completion by the next invocation: never started again.
    query_ids.dedup();
    assert!(!query_ids.is_empty(), "a query was kept in the progress");
    let started = env.count_ok("StartQuery").await;
    assert_eq!(started, query_ids.len(), "{query_ids:?}");
    assert_eq!(env.count_ok("GetQueryResults").await, 2 * started);
    // The finding ends the quarantine (reconnect, then KeysNeededDuringQuarantine).
    let state = match result {
        Some(Ok(state)) => state,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(state.quarantine.as_ref().unwrap().found_count, 1);
}

#[tokio::test]
async fn a_quiet_quarantine_reconnects_the_store_and_the_run_goes_on() {
    let env = env().await;
    let mut ctx = env.context(config()).await;
    let (store, _, state) = planned(&env, &ctx, 1).await;
    let state = quarantine_until_wait(&ctx, state).await.unwrap();
    let first_check = state.quarantine.as_ref().unwrap().next_check_at.unwrap();

    // Half-way, nothing is readable past the margin yet at the first wake-up: it waits on.
    advance(&env, &mut ctx, DAY + MARGIN as f64 + 1.0).await;
    let state = quarantine_until_done(&env, &mut ctx, state).await.unwrap();
    let q = state.quarantine.clone().unwrap();
    assert_eq!(q.phase, QuarantinePhase::Done, "{q:?}");
    assert!(
        q.reconnected_at.is_some(),
        "a last check reads up to the reconnect"
    );
    assert!(
        q.checks >= 1 && q.lookups >= 3 && q.found.is_empty(),
        "{q:?}"
    );
    assert!(q.checked_through >= q.ends_at, "{q:?}");
    assert!(first_check <= q.ends_at.unwrap().max(first_check));
    assert_eq!(env.store_state(&store).await, "CONNECTED");

    let scheduled = run_steps(
        &ctx,
        &[Step::EnsureStoreConnected, Step::ScheduleKeyDeletion],
        state,
    )
    .await;
    assert_eq!(scheduled.scheduling.as_ref().unwrap().keys_scheduled, 3);

    // The report's quarantine section says what was watched and that nobody was found.
    env.advance(8.0 * DAY).await;
    let mut ctx = ctx;
    ctx.clock = env.clock().await.advanced_by(2 * DAY as i64);
    let reported = run_steps(
        &ctx,
        &[
            Step::CheckKeysDeleted,
            Step::DisconnectStore,
            Step::DeleteStore,
        ],
        scheduled,
    )
    .await;
    let section = reported
        .report
        .unwrap()
        .quarantine
        .expect("a quarantine section");
    assert_eq!((section.days, section.attempts_found), (1, 0));
    assert!(section.checks >= 1 && section.lookups >= 3, "{section:?}");
    assert_eq!(section.checked_through, section.ends_at);
}

#[tokio::test]
async fn a_daily_check_finds_a_use_before_the_quarantine_ends() {
    let env = env().await;
    let mut ctx = env.context(config()).await;
    let (store, keys, state) = planned(&env, &ctx, 10).await;
    let state = quarantine_until_wait(&ctx, state).await.unwrap();

    // Day 1: nobody; the check comes back a day later.
    advance(&env, &mut ctx, DAY + 1.0).await;
    let state = quarantine_until_wait(&ctx, state).await.unwrap();
    let q = state.quarantine.clone().unwrap();
    assert_eq!(
        (q.phase, q.checks, q.found_count),
        (QuarantinePhase::Watching, 1, 0)
    );

    // Day 2: someone tries a key; the next daily check finds it, eight days early.
    try_key(&env, &keys[0]).await;
    advance(&env, &mut ctx, DAY + 1.0).await;
    let err = quarantine_until_wait(&ctx, state).await.unwrap_err();
    assert_eq!(err.error_type(), "KeysNeededDuringQuarantine");
    assert!(err.to_string().contains(APP), "{err}");
    assert_eq!(env.store_state(&store).await, "CONNECTED");
}

#[tokio::test]
async fn no_quarantine_days_means_no_quarantine() {
    let env = env().await;
    let ctx = env.context(config()).await;
    let (store, _, _) = cloudhsm_fixture(&env, 1).await;
    let mut input = real_input(&store, "Prod");
    input["QuarantineDays"] = json!(0);
    let state = run_steps(&ctx, &[Step::PlanDecommission], env.start_run(input).await).await;
    assert!(!state.quarantine.clone().unwrap().required);
    let err = Step::QuarantineStore
        .run(&ctx, state.clone(), far_deadline())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "InvalidStateDocument");
    // The run goes straight on.
    let scheduled = run_steps(
        &ctx,
        &[Step::EnsureStoreConnected, Step::ScheduleKeyDeletion],
        state,
    )
    .await;
    assert_eq!(scheduled.scheduling.unwrap().keys_scheduled, 1);

    for bad in [json!(-1), json!(91), json!(1.5), json!("7")] {
        env.end_runs().await;
        let mut input = real_input(&store, "Prod");
        input["QuarantineDays"] = bad.clone();
        let err = Step::PlanDecommission
            .run(&ctx, env.start_run(input).await, far_deadline())
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "InvalidInput", "{bad}");
    }
}

#[tokio::test]
async fn a_cancel_during_the_quarantine_connects_the_store_again_and_says_so() {
    let env = env().await;
    let ctx = env.context(config()).await;
    let (store, _, state) = planned(&env, &ctx, 5).await;
    let state = quarantine_until_wait(&ctx, state).await.unwrap();
    assert_eq!(env.store_state(&store).await, "DISCONNECTED");
    let execution = state.execution_id().unwrap().to_owned();

    let cancel_ctx = CancelContext {
        step: env.context(config()).await,
        settle: std::time::Duration::ZERO,
    };
    let mut cancel = CancelState {
        input: json!({"CustomKeyStoreId": store, "DecommissionExecutionArn": execution,
                      "RequestedBy": "bob", "Reason": "the yearly report still needs the store"}),
        ..CancelState::default()
    };
    for _ in 0..100 {
        cancel = cancel_step(&cancel_ctx, cancel, far_deadline())
            .await
            .unwrap();
        if cancel.report.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let report = cancel.report.expect("the cancel ends");
    assert!(report.store_reconnected, "{report:?}");
    assert!(
        report
            .follow_ups
            .iter()
            .any(|f| f.contains("in its quarantine")),
        "{report:?}"
    );
    assert_eq!(report.counts.keys_restored, 0, "nothing was scheduled");
    env.wait_for_state(&store, "CONNECTED").await;
}

#[tokio::test]
async fn a_key_created_after_the_quarantine_began_is_not_scheduled() {
    let env = env().await;
    let mut ctx = env.context(config()).await;
    let (store, keys, state) = planned(&env, &ctx, 1).await;
    let state = quarantine_until_wait(&ctx, state).await.unwrap();
    advance(&env, &mut ctx, DAY + MARGIN as f64 + 1.0).await;
    let state = quarantine_until_done(&env, &mut ctx, state).await.unwrap();
    assert_eq!(
        state.quarantine.as_ref().unwrap().phase,
        QuarantinePhase::Done
    );
    assert_eq!(env.store_state(&store).await, "CONNECTED");

    // Right after the reconnect, before scheduling, someone creates a key in the store. (Days
    // pass for the steps' clock only; KMS keeps real time, and a key made in the very second the
    // quarantine began counts as older: wait until that second is past.)
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let late = env
        .store_key(&store, aws_sdk_kms::types::OriginType::AwsCloudhsm, 7)
        .await;
    let late_arn = env.describe_key(&late).await.unwrap().arn.unwrap();
    let connected = run_steps(&ctx, &[Step::EnsureStoreConnected], state).await;
    let err = run_until_done(&ctx, Step::ScheduleKeyDeletion, connected, far_deadline)
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "KeysCreatedAfterQuarantine");
    assert!(err.to_string().contains(&late_arn), "{err}");
    assert_eq!(
        env.key_state(&late).await,
        "Enabled",
        "the new key is untouched"
    );
    assert!(keys.iter().all(|k| !k.is_empty()));
}

#[tokio::test]
async fn a_key_tried_while_the_store_reconnects_is_found_by_the_last_check() {
    let env = env().await;
    let mut ctx = env.context(config()).await;
    let (store, keys, state) = planned(&env, &ctx, 1).await;
    let mut state = quarantine_until_wait(&ctx, state).await.unwrap();
    advance(&env, &mut ctx, DAY + MARGIN as f64 + 1.0).await;
    // The check that reads up to the quarantine's end finds nobody: the store reconnects next.
    while state.quarantine.as_ref().unwrap().phase != QuarantinePhase::Reconnecting {
        state = Step::QuarantineStore
            .run(&ctx, state, far_deadline())
            .await
            .unwrap();
    }
    assert_eq!(env.store_state(&store).await, "DISCONNECTED");
    // Refused after the quarantine's end, before the store is connected again.
    try_key(&env, &keys[2]).await;
    let err = quarantine_until_done(&env, &mut ctx, state)
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "KeysNeededDuringQuarantine");
    assert!(err.to_string().contains(APP), "{err}");
    assert_eq!(env.store_state(&store).await, "CONNECTED");
}

#[tokio::test]
async fn a_document_handed_to_the_steps_cannot_end_the_quarantine_or_hide_what_it_found() {
    let env = env().await;
    let mut ctx = env.context(config()).await;
    let (store, keys, state) = planned(&env, &ctx, 2).await;
    let watching = quarantine_until_wait(&ctx, state).await.unwrap();
    assert_eq!(
        watching.quarantine.as_ref().unwrap().phase,
        QuarantinePhase::Watching
    );
    try_key(&env, &keys[0]).await;

    // Whoever may invoke the functions hands them a document saying the quarantine is over,
    // nobody found, the store ready, and the window starting in ten days (so that no key would
    // count as created after it began).
    let mut forged = watching.clone();
    let q = forged.quarantine.as_mut().unwrap();
    q.phase = QuarantinePhase::Done;
    q.next = QuarantineNext::Done;
    q.found_count = 0;
    q.found.clear();
    q.started_at = q.started_at.map(|t| {
        kms_decommission::model::Timestamp::floor(
            t.time() + std::time::Duration::from_secs(10 * DAY as u64),
        )
    });
    forged.connection = Some(kms_decommission::state::ConnectionStatus {
        ready: true,
        ..Default::default()
    });
    env.clear_calls().await;
    for step in [Step::EnsureStoreConnected, Step::ScheduleKeyDeletion] {
        let err = step
            .run(&ctx, forged.clone(), far_deadline())
            .await
            .unwrap_err();
        assert_eq!(
            err.error_type(),
            "NotTheRunningDecommission",
            "{step:?}: {err}"
        );
        assert!(
            err.to_string().contains("quarantine in phase Watching"),
            "{err}"
        );
    }
    assert!(
        env.calls().await.is_empty(),
        "refused before asking KMS anything"
    );

    // quarantine-store handed the forged document goes on from the ledger's progress: the
    // quarantine is not over, and the attempt is found when its check comes.
    let state = Step::QuarantineStore
        .run(&ctx, forged.clone(), far_deadline())
        .await
        .unwrap();
    let q = state.quarantine.clone().unwrap();
    assert_eq!(
        (q.phase, q.next),
        (QuarantinePhase::Watching, QuarantineNext::WaitForCheck)
    );
    assert_eq!(
        q.started_at,
        watching.quarantine.as_ref().unwrap().started_at
    );
    advance(&env, &mut ctx, 2.0 * DAY + MARGIN as f64 + 1.0).await;
    let err = quarantine_until_wait(&ctx, forged).await.unwrap_err();
    assert_eq!(err.error_type(), "KeysNeededDuringQuarantine", "{err}");
    assert_eq!(env.store_state(&store).await, "CONNECTED");
    let mutating: Vec<String> = env
        .mutating_calls()
        .await
        .into_iter()
        .map(|c| c.operation)
        .collect();
    assert_eq!(mutating, ["ConnectCustomKeyStore"], "no key was scheduled");
}
