//! The last-use guard against the KMS emulator, over HTTP with the real aws-sdk-kms client:
//! recently used keys stop the decommission before anything changes, idle keys proceed, a key
//! used between plan and scheduling is not scheduled, and `MinDaysSinceLastUse: 0` turns the
//! guard off with the report saying so.

mod common;

use common::*;
use kms_decommission::state::DecommissionState;
use kms_decommission::steps::{Step, StepContext};
use kms_decommission::usage::UsageStatus;
use serde_json::{json, Value};

const DAY: f64 = 86_400.0;

async fn plan(env: &Env, ctx: &StepContext, input: Value) -> Result<DecommissionState, String> {
    run_until_done(
        ctx,
        Step::PlanDecommission,
        env.start_run(input).await,
        far_deadline,
    )
    .await
    .map(|(state, _)| state)
    .map_err(|e| format!("{}: {e}", e.error_type()))
}

async fn connected(ctx: &StepContext, planned: DecommissionState) -> DecommissionState {
    run_until_done(ctx, Step::EnsureStoreConnected, planned, far_deadline)
        .await
        .unwrap()
        .0
}

/// Moves the emulator's clock `days` real days ahead (its timestamps are wall-clock; advance
/// takes scaled emulated seconds).
async fn advance_real_days(env: &Env, days: f64) {
    let day_seconds = env.admin_get("/_emulator/config").await["day_seconds"]
        .as_f64()
        .unwrap();
    env.advance(days * DAY * DAY / day_seconds).await;
}

fn arn(key: &str) -> String {
    format!("arn:aws:kms:us-east-1:123456789012:key/{key}")
}

#[tokio::test]
async fn a_recently_used_key_stops_the_plan_with_keys_recently_used_and_nothing_changes() {
    let env = Env::start().await;
    let (store, keys, _) = cloudhsm_fixture(&env, 4).await;
    env.use_key(&keys[2]).await;
    env.clear_calls().await;
    let ctx = env.context(test_config()).await;

    let err = plan(&env, &ctx, real_input(&store, "Prod"))
        .await
        .unwrap_err();

    assert!(err.starts_with("KeysRecentlyUsed: 1 key(s)"), "{err}");
    assert!(
        err.contains(&format!("{}: Encrypt at ", arn(&keys[2]))),
        "{err}"
    );
    assert!(err.contains("CloudTrail event "), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert!(!err.contains(&keys[1]), "only the used key is named: {err}");
    assert!(env.mutating_calls().await.is_empty());
    assert_eq!(env.count_ok("GetKeyLastUsage").await, keys.len());
    for key in &keys[1..] {
        assert_eq!(env.key_state(key).await, "Enabled");
    }
}

#[tokio::test]
async fn keys_idle_longer_than_the_minimum_are_scheduled_and_their_last_use_reported() {
    let env = Env::start().await;
    let (store, keys, _) = cloudhsm_fixture(&env, 3).await;
    env.use_key(&keys[1]).await;
    advance_real_days(&env, 31.0).await;
    let ctx = env.context(test_config()).await;

    let planned = plan(&env, &ctx, real_input(&store, "Prod")).await.unwrap();
    let usage = planned.plan.as_ref().unwrap().last_use.clone().unwrap();
    assert!(usage.guard_on);
    assert_eq!(usage.min_days_since_last_use, 30);
    assert_eq!(
        (usage.keys_checked, usage.keys_used, usage.keys_never_used),
        (3, 1, 2)
    );
    assert_eq!(usage.keys_recently_used, 0);
    let most_recent = usage.most_recent_use.clone().unwrap();
    assert_eq!(most_recent.key_id, keys[1]);
    assert_eq!(most_recent.operation.as_deref(), Some("Encrypt"));
    assert!(most_recent.cloud_trail_event_id.is_some());
    assert!(usage.verdict.starts_with("Passed"), "{}", usage.verdict);
    let never = usage.keys.iter().find(|k| k.key_id == keys[0]).unwrap();
    assert_eq!(never.status, UsageStatus::NeverUsed);
    assert!(never.describe().starts_with("never used since "));

    let ready = connected(&ctx, planned).await;
    let (scheduled, _) = run_until_done(&ctx, Step::ScheduleKeyDeletion, ready, far_deadline)
        .await
        .unwrap();
    let progress = scheduled.scheduling.as_ref().unwrap();
    assert_eq!(progress.keys_scheduled, 3);
    assert_eq!(progress.keys_last_use_rechecked, 3);
    for key in &keys {
        assert_eq!(env.key_state(key).await, "PendingDeletion");
    }
}

#[tokio::test]
async fn a_key_used_between_plan_and_scheduling_is_not_scheduled_and_the_step_fails() {
    let env = Env::start().await;
    let (store, keys, foreign) = cloudhsm_fixture(&env, 6).await;
    let ctx = env.context(test_config()).await;
    let planned = plan(&env, &ctx, real_input(&store, "Prod")).await.unwrap();
    let ready = connected(&ctx, planned).await;

    // An application starts using a key while the store was being connected.
    let used = keys[4].clone();
    env.use_key(&used).await;
    env.clear_calls().await;
    let err = run_until_done(&ctx, Step::ScheduleKeyDeletion, ready, far_deadline)
        .await
        .unwrap_err();

    assert_eq!(err.error_type(), "KeysRecentlyUsed");
    let message = err.to_string();
    assert!(
        message.contains(&format!("{}: Encrypt at ", arn(&used))),
        "{message}"
    );
    assert_eq!(env.key_state(&used).await, "Enabled");
    assert_eq!(env.markers(&used).await, (None, None, None));
    let calls = env.calls().await;
    assert!(
        !calls
            .iter()
            .any(|c| c.is_mutating() && c.key_id.as_deref() == Some(used.as_str())),
        "the used key was touched"
    );
    assert_untouched(&calls, &foreign);
    // Keys scheduled before the guard stopped the step carry this execution's marker, and the
    // error says how many (cancel restores them).
    let mut scheduled = 0;
    for key in &keys {
        if env.key_state(key).await == "PendingDeletion" {
            assert_eq!(env.markers(key).await.0.as_deref(), Some(EXECUTION));
            scheduled += 1;
        }
    }
    if scheduled == 0 {
        assert!(message.contains("nothing was changed"), "{message}");
    } else {
        assert!(
            message.contains(&format!("{scheduled} key(s) this execution scheduled")),
            "{scheduled} scheduled: {message}"
        );
    }
    assert!(scheduled < keys.len());
}

#[tokio::test]
async fn min_days_zero_turns_the_guard_off_and_the_report_says_so() {
    let env = Env::start().await;
    let (store, keys, _) = cloudhsm_fixture(&env, 3).await;
    env.use_key(&keys[1]).await;
    let ctx = env.context(test_config()).await;
    let mut input = real_input(&store, "Prod");
    input["MinDaysSinceLastUse"] = json!(0);

    let planned = plan(&env, &ctx, input).await.unwrap();
    let usage = planned.plan.as_ref().unwrap().last_use.clone().unwrap();
    assert!(!usage.guard_on);
    assert_eq!(usage.keys_used, 1);
    assert!(
        usage.verdict.starts_with("Last-use guard off"),
        "{}",
        usage.verdict
    );

    let ready = connected(&ctx, planned).await;
    env.clear_calls().await;
    let (scheduled, _) = run_until_done(&ctx, Step::ScheduleKeyDeletion, ready, far_deadline)
        .await
        .unwrap();
    assert_eq!(scheduled.scheduling.as_ref().unwrap().keys_scheduled, 3);
    assert_eq!(env.count_ok("GetKeyLastUsage").await, 0);
    assert_eq!(env.key_state(&keys[1]).await, "PendingDeletion");

    let report = scheduled
        .final_report(kms_decommission::report::Outcome::Deleted, ctx.clock.now())
        .unwrap();
    let value = serde_json::to_value(&report).unwrap();
    assert_eq!(value["LastUse"]["GuardOn"], json!(false));
    assert_eq!(value["LastUse"]["MinDaysSinceLastUse"], json!(0));
    assert!(report
        .follow_ups
        .iter()
        .any(|f| f.starts_with("The last-use guard was off")));
}

#[tokio::test]
async fn a_dry_run_reports_what_the_guard_would_say_without_failing() {
    let env = Env::start().await;
    let (store, keys, _) = cloudhsm_fixture(&env, 3).await;
    env.use_key(&keys[2]).await;
    env.clear_calls().await;
    let ctx = env.context(test_config()).await;

    let done = plan(
        &env,
        &ctx,
        json!({"CustomKeyStoreId": store, "DryRun": true, "MinDaysSinceLastUse": 7}),
    )
    .await
    .unwrap();
    let report = serde_json::to_value(done.report.as_ref().unwrap()).unwrap();
    assert_eq!(report["Outcome"], json!("DryRun"));
    assert_eq!(report["LastUse"]["KeysRecentlyUsed"], json!(1));
    assert_eq!(
        report["LastUse"]["RecentlyUsed"][0]["KeyId"],
        json!(keys[2])
    );
    assert_eq!(
        report["LastUse"]["RecentlyUsed"][0]["Operation"],
        json!("Encrypt")
    );
    assert!(report["LastUse"]["Verdict"]
        .as_str()
        .unwrap()
        .starts_with("Refused: 1 key(s) were used within the last 7 day(s)"));
    assert!(env.mutating_calls().await.is_empty());
}

#[tokio::test]
async fn keys_older_than_tracking_are_reported_unknown_and_do_not_block() {
    let env = Env::start().await;
    let (store, _keys, _) = cloudhsm_fixture(&env, 2).await;
    let now = env.admin_get("/_emulator/clock").await["now"]
        .as_f64()
        .unwrap();
    env.set_config(json!({"tracking_start_date": now})).await;
    let ctx = env.context(test_config()).await;

    let planned = plan(&env, &ctx, real_input(&store, "Prod")).await.unwrap();
    let usage = planned.plan.as_ref().unwrap().last_use.clone().unwrap();
    assert_eq!(usage.keys_unknown_before_tracking, 2);
    assert_eq!(usage.keys_recently_used, 0);
    assert!(usage.verdict.contains("unknown"), "{}", usage.verdict);
    let unknown = &usage.unknown_before_tracking[0];
    assert!(
        unknown.describe().contains("unknown before "),
        "{}",
        unknown.describe()
    );
}
