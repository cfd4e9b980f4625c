//! Performance mechanisms, proved without timing assertions (the machines are shared and noisy):
//! client-side pacing as seen in the emulator's call log, and batch steps cut off two seconds
//! before their deadline resuming without redoing or skipping keys.
//!
//! Plus two in-process benchmarks that print (run with
//! `cargo test --test benchmarks -- --ignored --nocapture`); the full benchmark, with the emulator
//! as its own process, is `examples/benchmark.rs` (docs/benchmarks.md).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kms::types::OriginType;
use aws_sdk_kms::Client;
use aws_smithy_types::retry::RetryConfig;
use common::*;
use kms_decommission::deadline::Deadline;
use kms_decommission::inventory::scan_page;
use kms_decommission::keys::TargetStore;
use kms_decommission::kms::Kms;
use kms_decommission::pacing::Pacing;
use kms_decommission::sdk_config::ThrottleFeedback;
use kms_decommission::state::DecommissionState;
use kms_decommission::steps::{Step, StepContext};
use kms_decommission::store;
use kms_emulator::EmulatorConfig;
use serde_json::json;

/// Runs plan-decommission and ensure-store-connected to completion: the document scheduling starts from.
async fn plan_and_connect(ctx: &StepContext, mut state: DecommissionState) -> DecommissionState {
    for step in [Step::PlanDecommission, Step::EnsureStoreConnected] {
        state = run_until_done(ctx, step, state, far_deadline)
            .await
            .unwrap()
            .0;
    }
    state
}

async fn throttled(env: &Env) -> usize {
    env.calls()
        .await
        .iter()
        .filter(|c| c.outcome == "ThrottlingException")
        .count()
}

async fn count(env: &Env, operation: &str) -> usize {
    env.calls()
        .await
        .iter()
        .filter(|c| c.operation == operation)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn inventory_rate_under_the_describe_key_quota() {
    let keys: usize = std::env::var("BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let env = Env::start_with(EmulatorConfig {
        quotas: false,
        ..EmulatorConfig::fast()
    })
    .await;
    let store = env.cloudhsm_store("Bench").await;
    for i in 0..keys {
        // Every tenth key in the store, the rest elsewhere in the account.
        if i % 10 == 0 {
            env.store_key(&store, OriginType::AwsCloudhsm, i).await;
        } else {
            env.plain_key().await;
        }
    }
    env.set_config(json!({"quotas": true})).await;
    env.clear_calls().await;
    let mut config = test_config();
    config.list_keys_page_size = 1000;
    let ctx = env.context(config).await;
    let started = Instant::now();
    let (state, invocations) = run_until_done(
        &ctx,
        Step::PlanDecommission,
        env.start_run(json!({"CustomKeyStoreId": store, "DryRun": true}))
            .await,
        far_deadline,
    )
    .await
    .unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let plan = state.plan.unwrap();
    let describes = count(&env, "DescribeKey").await;
    println!(
        "inventory: {} keys scanned ({} in the store) in {elapsed:.2} s over {invocations} invocation(s): \
         {:.0} DescribeKey/s (quota 2000/s, paced at {}/s, concurrency {}), {} throttled",
        plan.keys_scanned,
        plan.keys_in_store,
        describes as f64 / elapsed,
        ctx.config.pacing.describe_key_rps,
        ctx.config.pacing.concurrency,
        throttled(&env).await
    );
    assert_eq!(throttled(&env).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn scheduling_rate_under_the_tag_and_schedule_quotas() {
    let keys: usize = std::env::var("BENCH_SCHEDULE_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let env = Env::start_with(EmulatorConfig {
        quotas: false,
        ..EmulatorConfig::fast()
    })
    .await;
    let store = env.cloudhsm_store("Bench").await;
    for i in 0..keys {
        env.store_key(&store, OriginType::AwsCloudhsm, i).await;
    }
    let mut config = test_config();
    config.list_keys_page_size = 1000;
    let ctx = env.context(config).await;
    let mut state = env.start_run(real_input(&store, "Bench")).await;
    state = plan_and_connect(&ctx, state).await;
    env.set_config(json!({"quotas": true})).await;
    env.clear_calls().await;
    let started = Instant::now();
    let (state, _) = run_until_done(&ctx, Step::ScheduleKeyDeletion, state, far_deadline)
        .await
        .unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let scheduled = state.scheduling.unwrap().keys_scheduled;
    println!(
        "scheduling: {scheduled} keys in {elapsed:.2} s: {:.2} keys/s, {:.2} TagResource/s (quota 10/s, \
         paced at {}/s), {:.2} ScheduleKeyDeletion/s (quota 15/s, paced at {}/s), {} throttled",
        scheduled as f64 / elapsed,
        count(&env, "TagResource").await as f64 / elapsed,
        ctx.config.pacing.tag_resource_rps,
        count(&env, "ScheduleKeyDeletion").await as f64 / elapsed,
        ctx.config.pacing.schedule_key_deletion_rps,
        throttled(&env).await
    );
    assert_eq!(throttled(&env).await, 0);
}

/// Emulator call times (seconds) of `operation`, in arrival order.
async fn call_times(env: &Env, operation: &str) -> Vec<f64> {
    let log = env
        .admin_get(&format!("/_emulator/calls?operation={operation}"))
        .await;
    log["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["time"].as_f64().unwrap())
        .collect()
}

/// Most calls in any window of `window` seconds.
fn max_in_window(times: &[f64], window: f64) -> usize {
    let mut best = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= window {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_inventory_stays_under_the_configured_rate_in_the_emulators_call_log() {
    // Quotas off in the emulator: what it logs is what the client sent, unpaced by rejections.
    let env = Env::start().await;
    let store = env.cloudhsm_store("Paced").await;
    for i in 0..60 {
        env.store_key(&store, OriginType::AwsCloudhsm, i).await;
    }
    for _ in 0..240 {
        env.plain_key().await;
    }
    let rate = 100.0;
    let mut config = test_config();
    config.pacing.describe_key_rps = rate;
    config.pacing.concurrency = 32;
    let ctx = env.context(config).await;
    let summary = store::describe(&ctx.kms, &store).await.unwrap();
    let target = TargetStore::new(&summary);
    env.clear_calls().await;
    let (mut cursor, mut found, mut scanned) = (None, 0, 0);
    let started = std::time::Instant::now();
    loop {
        let page = scan_page(&ctx.kms, &target, cursor.as_deref(), 1000)
            .await
            .unwrap();
        found += page.keys.len();
        scanned += page.scanned as usize;
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(found, 60);

    let times = call_times(&env, "DescribeKey").await;
    assert!(scanned >= 300);
    assert_eq!(times.len(), scanned, "every key described once");
    // 32 calls in flight against an emulator answering in well under a millisecond would send
    // thousands a second unpaced. The limiter grants at most `rate x T + 1` slots in any T
    // seconds and every call waits for its slot, so however late the machine runs a task (which
    // can make calls arrive bunched: this is no timed assertion), the calls made in the scan's
    // wall time are bounded by it.
    let bound = rate * elapsed + 1.0;
    assert!(
        times.len() as f64 <= bound,
        "{} DescribeKey calls in {elapsed:.2} s exceed the {rate}/s pacing ({bound:.0} at most)",
        times.len()
    );
    println!(
        "paced inventory: {} DescribeKey calls in {elapsed:.2} s ({:.1}/s, configured {rate}/s); \
         busiest one-second window at the emulator: {} calls",
        times.len(),
        times.len() as f64 / elapsed,
        max_in_window(&times, 1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_given_two_seconds_returns_a_cursor_and_the_next_call_resumes_without_redoing_or_skipping_keys(
) {
    let env = Env::start().await;
    let store = env.cloudhsm_store("Prod").await;
    let mut keys = Vec::new();
    for i in 0..30 {
        keys.push(env.store_key(&store, OriginType::AwsCloudhsm, i).await);
        for _ in 0..3 {
            env.plain_key().await;
        }
    }
    let mut setup = test_config();
    setup.list_keys_page_size = 1000;
    setup.pacing.custom_key_store_rps = 1000.0;
    let setup = env.context(setup).await;
    let mut state = env.start_run(real_input(&store, "Prod")).await;
    state = plan_and_connect(&setup, state).await;

    // Default pacing (GetKeyLastUsage 4.75/s with the guard on): 30 keys need over six seconds.
    // Pages of up to 1,000 keys would hold all 120 keys of the account: the step sizes its pages
    // to the time left itself (inventory::page_size_within), so each call returns a cursor.
    let mut config = test_config();
    config.pacing = kms_decommission::config::PacingConfig::default();
    config.list_keys_page_size = 1000;
    config.deadline_margin = Duration::from_millis(500);
    let ctx = env.context(config).await;
    env.clear_calls().await;
    let mut invocations = 0;
    let mut cursors = Vec::new();
    loop {
        invocations += 1;
        assert!(invocations < 100, "schedule-key-deletion never finished");
        state = Step::ScheduleKeyDeletion
            .run(&ctx, state, Deadline::after(Duration::from_secs(2)))
            .await
            .unwrap();
        let scheduling = state.scheduling.as_ref().unwrap();
        if scheduling.done {
            assert!(scheduling.cursor.is_none());
            break;
        }
        let cursor = scheduling
            .cursor
            .clone()
            .expect("an unfinished batch returns a cursor");
        assert!(
            !cursors.contains(&cursor),
            "every batch moves the cursor on"
        );
        cursors.push(cursor);
    }
    assert!(
        invocations >= 2,
        "2 s cannot hold 30 keys at 4.75 GetKeyLastUsage/s: the first call returned a cursor"
    );
    let scheduling = state.scheduling.unwrap();
    assert_eq!(scheduling.keys_scheduled, 30);

    let mut per_key: HashMap<String, (usize, usize)> = HashMap::new();
    for call in env.calls().await {
        let entry = per_key.entry(call.key_id.clone().unwrap_or_default());
        match (call.operation.as_str(), call.outcome.as_str()) {
            ("ScheduleKeyDeletion", "OK") => entry.or_default().0 += 1,
            ("TagResource", "OK") => entry.or_default().1 += 1,
            ("ScheduleKeyDeletion" | "TagResource", outcome) => {
                panic!("{} {outcome}", call.operation)
            }
            _ => {}
        }
    }
    for key in &keys {
        assert_eq!(
            per_key.get(key),
            Some(&(1, 1)),
            "key {key}: one TagResource and one ScheduleKeyDeletion"
        );
        assert_eq!(env.key_state(key).await, "PendingDeletion");
    }
    assert_eq!(per_key.len(), 30, "no key outside the store touched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduling_while_another_client_uses_the_tag_quota_adapts_and_surfaces_no_throttling() {
    // Another application in the account tags its own key at 4/s while we schedule at our paced
    // 95% of TagResource's 10/s: together they exceed the quota and KMS throttles. Each throttled
    // attempt halves our TagResource pace (recovering 10% a second), and every key is still
    // tagged and scheduled without a ThrottlingException reaching the step's result.
    let env = Env::start().await;
    let store = env.cloudhsm_store("Shared").await;
    let keys: u64 = 40;
    for i in 0..keys as usize {
        env.store_key(&store, OriginType::AwsCloudhsm, i).await;
    }
    let neighbour_key = env.plain_key().await;
    // The functions' client: standard retries, and every throttled attempt slows its
    // operation's limiter (sdk_config::ThrottleFeedback).
    let config = test_config();
    let pacing = Arc::new(Pacing::new(&config.pacing));
    let retry = kms_decommission::sdk_config::retry_config(|_| None).expect("set in code");
    let kms = Client::from_conf(
        env.kms
            .config()
            .to_builder()
            .retry_config(retry)
            .interceptor(ThrottleFeedback {
                pacing: pacing.clone(),
            })
            .build(),
    );
    let mut ctx = env.context(config).await;
    ctx.kms = Kms::new(kms, pacing);
    let mut input = real_input(&store, "Shared");
    input["MinDaysSinceLastUse"] = json!(0);
    let mut state = env.start_run(input).await;
    state = plan_and_connect(&ctx, state).await;
    env.set_config(json!({"quotas": true})).await;
    env.clear_calls().await;

    let stop = Arc::new(AtomicBool::new(false));
    let neighbour = {
        let kms = Client::from_conf(
            env.kms
                .config()
                .to_builder()
                .retry_config(RetryConfig::disabled())
                .build(),
        );
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut sent = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let tag = aws_sdk_kms::types::Tag::builder()
                    .tag_key("owner")
                    .tag_value("neighbour")
                    .build()
                    .expect("tag");
                let _ = kms
                    .tag_resource()
                    .key_id(&neighbour_key)
                    .tags(tag)
                    .send()
                    .await;
                sent += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            sent
        })
    };
    let result = run_until_done(&ctx, Step::ScheduleKeyDeletion, state, far_deadline).await;
    stop.store(true, Ordering::Relaxed);
    let neighbour_sent = neighbour.await.expect("neighbour ran");

    let (state, invocations) = result.expect("no ThrottlingException surfaces from scheduling");
    assert_eq!(state.scheduling.unwrap().keys_scheduled, keys);
    let throttles = throttled(&env).await;
    assert!(
        throttles > 0,
        "together the two clients exceed TagResource's quota, so KMS throttled some calls"
    );
    println!(
        "neighbour sent {neighbour_sent} TagResource; {throttles} calls throttled in all; \
         {keys} keys scheduled in {invocations} invocation(s), no ThrottlingException surfaced"
    );
}
