//! Benchmarks that print (run with `cargo test --test benchmarks -- --ignored --nocapture`):
//! inventory and scheduling rates against the KMS emulator with KMS's request quotas on.
//! They assert only that nothing was throttled; the rates are printed, never asserted (the
//! machines are shared and noisy).

mod common;

use std::time::Instant;

use aws_sdk_kms::types::OriginType;
use common::*;
use kms_decommission::steps::Step;
use kms_emulator::EmulatorConfig;
use serde_json::json;

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
        initial_state(json!({"CustomKeyStoreId": store, "DryRun": true})),
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
    let mut state = initial_state(real_input(&store, "Bench"));
    for step in [Step::PlanDecommission, Step::EnsureStoreConnected] {
        state = run_until_done(&ctx, step, state, far_deadline)
            .await
            .unwrap()
            .0;
    }
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
