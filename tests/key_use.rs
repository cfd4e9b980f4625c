//! Finding who still needs a key, against the KMS emulator's CloudTrail (its record of every KMS
//! call, served by LookupEvents) with the real aws-sdk-cloudtrail client: an application that
//! tries a key of a disconnected store is named with the key, the operation, the error and where
//! it came from; the operator's own metadata calls are not use; a scan cut into batches resumes
//! from its cursor and finds the same.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::primitives::Blob;
use aws_smithy_types::DateTime;
use common::*;
use kms_decommission::cloudtrail::CloudTrail;
use kms_decommission::deadline::Deadline;
use kms_decommission::key_use::{scan_key_use, KeyUse, ScanCursor, ScanWindow};
use kms_decommission::logs_insights::{scan_key_use_insights, InsightsCursor};
use kms_emulator::EmulatorConfig;

const APP_KEY_ID: &str = "AKIAPAYMENTSAPP00001";
const APP: &str = "arn:aws:iam::123456789012:user/payments-app";

async fn env_with_app(quotas: bool) -> Env {
    Env::start_with(EmulatorConfig {
        quotas,
        identities: BTreeMap::from([(APP_KEY_ID.to_owned(), APP.to_owned())]),
        ..EmulatorConfig::fast()
    })
    .await
}

/// A KMS client of the application (its own access key).
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

fn cloudtrail(env: &Env, rate: f64) -> CloudTrail {
    env.cloudtrail(rate)
}

async fn key_arns(env: &Env, keys: &[String]) -> Vec<String> {
    let mut arns = Vec::new();
    for key in keys {
        arns.push(env.describe_key(key).await.unwrap().arn.unwrap());
    }
    arns
}

/// The window from the emulator's `from` to a second after its now.
async fn window_since(env: &Env, from: f64) -> ScanWindow {
    let now = env.admin_get("/_emulator/clock").await["now"]
        .as_f64()
        .unwrap();
    ScanWindow {
        start: DateTime::from_secs(from.floor() as i64),
        end: DateTime::from_secs(now.ceil() as i64 + 1),
    }
}

const BUDGET: (Duration, Duration) = (Duration::from_secs(2), Duration::from_millis(100));

#[tokio::test]
async fn an_application_trying_a_key_of_a_disconnected_store_is_named() {
    let env = env_with_app(false).await;
    let (store, keys, _) = cloudhsm_fixture(&env, 3).await;
    let arns = key_arns(&env, &keys).await;
    let from = env.admin_get("/_emulator/clock").await["now"]
        .as_f64()
        .unwrap();
    env.kms
        .disconnect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    env.wait_for_state(&store, "DISCONNECTED").await;

    let app = app_kms(&env);
    let refused = app
        .encrypt()
        .key_id(&keys[1])
        .plaintext(Blob::new("yearly report"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        refused.as_service_error().and_then(|e| e.meta().code()),
        Some("KMSInvalidStateException")
    );
    // The operator's own metadata calls on every key are not use.
    for key in &keys {
        env.describe_key(key).await.unwrap();
    }

    let window = window_since(&env, from).await;
    let batch = scan_key_use(
        &cloudtrail(&env, 50.0),
        &arns,
        window,
        ScanCursor::default(),
        &far_deadline(),
        BUDGET,
    )
    .await
    .unwrap();
    assert_eq!(batch.cursor, None, "every key looked up");
    assert_eq!(batch.lookups, 3);
    assert_eq!(batch.found.len(), 1, "{:?}", batch.found);
    let KeyUse {
        key_arn,
        operation,
        principal,
        source,
        error_code,
        event_id,
        time,
    } = batch.found[0].clone();
    assert_eq!(key_arn, arns[1]);
    assert_eq!(operation, "Encrypt");
    assert_eq!(principal.as_deref(), Some(APP));
    assert_eq!(source.as_deref(), Some("127.0.0.1"));
    assert_eq!(error_code.as_deref(), Some("KMSInvalidStateException"));
    assert!(!event_id.is_empty() && time.is_some());
    assert!(batch.events_scanned >= 4, "{batch:?}");
    assert_eq!((batch.unreadable, batch.throttled), (0, 0));

    // Cut into batches of one lookup each (a deadline already inside its margin), the scan
    // resumes from its cursor and finds the same, looking each key up once.
    let ct = cloudtrail(&env, 50.0);
    let (mut cursor, mut found, mut lookups) = (Some(ScanCursor::default()), Vec::new(), 0);
    while let Some(at) = cursor {
        let batch = scan_key_use(
            &ct,
            &arns,
            window,
            at,
            &Deadline::after(Duration::ZERO),
            BUDGET,
        )
        .await
        .unwrap();
        assert_eq!(batch.lookups, 1);
        lookups += batch.lookups;
        found.extend(batch.found);
        cursor = batch.cursor;
    }
    assert_eq!((lookups, found.len()), (3, 1));
    assert_eq!(found[0].key_arn, arns[1]);
}

/// Scans `n` quiet keys with LookupEvents' 2/s quota on, at the default pace; prints and returns
/// (lookups, events, seconds, throttled).
async fn paced_scan(n: usize) -> (u32, u64, f64, u32) {
    let env = env_with_app(false).await;
    let (_, keys, _) = cloudhsm_fixture(&env, n).await;
    let arns = key_arns(&env, &keys).await;
    env.admin_post("/_emulator/config", serde_json::json!({"quotas": true}))
        .await;
    let window = window_since(&env, 0.0).await;
    let started = Instant::now();
    let batch = scan_key_use(
        &cloudtrail(
            &env,
            kms_decommission::cloudtrail::DEFAULT_LOOKUPS_PER_SECOND,
        ),
        &arns,
        window,
        ScanCursor::default(),
        &far_deadline(),
        BUDGET,
    )
    .await
    .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert!(batch.found.is_empty());
    assert_eq!(batch.lookups as usize, n);
    // Lookups after the first, which goes at once, over the time taken.
    let rate = f64::from(batch.lookups - 1) / seconds;
    println!(
        "key-use scan of {n} keys: {} lookups, {} events in {seconds:.1} s = {rate:.2} lookups/s \
         ({:.0}% of the 2/s quota), {:.0} events/s, {} throttled",
        batch.lookups,
        batch.events_scanned,
        rate / 2.0 * 100.0,
        batch.events_scanned as f64 / seconds,
        batch.throttled
    );
    (
        batch.lookups,
        batch.events_scanned,
        seconds,
        batch.throttled,
    )
}

#[tokio::test]
async fn a_scan_keeps_under_the_lookup_quota_without_surfacing_throttling() {
    let (lookups, _, seconds, _) = paced_scan(8).await;
    // The limiter's invariant under any load: no more than rate x time + 1 lookups; and no
    // throttling reached the caller (the scan succeeded).
    assert!(
        f64::from(lookups)
            <= kms_decommission::cloudtrail::DEFAULT_LOOKUPS_PER_SECOND * seconds + 1.0,
        "{lookups} lookups in {seconds} s"
    );
}

#[tokio::test]
#[ignore = "benchmark: run with --ignored --nocapture (100 keys, about 53 s)"]
async fn benchmark_key_use_scan_of_100_keys() {
    paced_scan(100).await;
}

/// Scans `n` keys, one of them used, through Logs Insights on the emulator; prints (queries,
/// polls, events scanned, wall time) and returns the batch's counts.
async fn insights_scan(n: usize) -> (u32, u64, f64) {
    // Real-time days: with fast time (a day per wall second) the records of a long scan's first
    // seconds would pass the 90-day retention before its last query.
    let env = Env::start_with(EmulatorConfig {
        quotas: false,
        identities: BTreeMap::from([(APP_KEY_ID.to_owned(), APP.to_owned())]),
        cloudhsm_connect_minutes: 0.01,
        disconnect_minutes: 0.01,
        ..EmulatorConfig::default()
    })
    .await;
    let (store, keys, _) = cloudhsm_fixture(&env, n).await;
    let arns = key_arns(&env, &keys).await;
    env.kms
        .disconnect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    let _ = app_kms(&env)
        .decrypt()
        .key_id(&keys[n - 1])
        .ciphertext_blob(Blob::new(vec![0u8; 64]))
        .send()
        .await;
    let window = window_since(&env, 0.0).await;
    let started = Instant::now();
    let batch = scan_key_use_insights(
        &env.insights(kms_decommission::logs_insights::DEFAULT_CALLS_PER_SECOND),
        &arns,
        window,
        InsightsCursor::default(),
        &far_deadline(),
        BUDGET,
    )
    .await
    .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(batch.found.len(), 1, "{:?}", batch.found);
    assert_eq!(batch.found[0].key_arn, arns[n - 1]);
    assert_eq!(batch.found[0].principal.as_deref(), Some(APP));
    println!(
        "Logs Insights scan of {n} keys: {} queries, {} GetQueryResults, {} events scanned, \
         {} rows in {seconds:.1} s = {:.0} events scanned/s, {:.0} keys/s, {} throttled",
        batch.queries,
        batch.polls,
        batch.records_scanned,
        batch.rows,
        batch.records_scanned as f64 / seconds,
        n as f64 / seconds,
        batch.throttled
    );
    (batch.queries, batch.records_scanned, seconds)
}

#[tokio::test]
async fn logs_insights_finds_the_one_key_used_among_many_in_few_queries() {
    let (queries, scanned, _) = insights_scan(150).await;
    let per_query = kms_decommission::logs_insights::keys_per_query(&vec![
        "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000".to_owned();
        150
    ]);
    assert_eq!(queries as usize, 150usize.div_ceil(per_query));
    assert!(scanned >= 150, "{scanned}");
}

#[tokio::test]
#[ignore = "benchmark: run with --ignored --nocapture (Logs Insights path, 100 keys)"]
async fn benchmark_logs_insights_scan_of_100_keys() {
    insights_scan(100).await;
}

#[tokio::test]
#[ignore = "benchmark: run with --ignored --nocapture (Logs Insights path, 10,000 keys)"]
async fn benchmark_logs_insights_scan_of_10000_keys() {
    insights_scan(10_000).await;
}
