//! Throughput of the emulator itself, through the real aws-sdk-kms client: how fast it answers
//! (so it is never the bottleneck of a benchmark of the workflow) and how exactly it enforces
//! quotas. Prints a table; asserts nothing.
//!
//! `cargo run --release -p kms-emulator --example throughput [-- KEYS]` (default 10000 keys).

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::Client;
use kms_emulator::EmulatorConfig;

fn client(endpoint: &str) -> Client {
    Client::from_conf(
        aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .endpoint_url(endpoint)
            .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled())
            .build(),
    )
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Runs `total` calls of `call` from `workers` concurrent tasks; returns (calls/s, p50 ms, p99 ms, errors).
async fn run<F, Fut>(workers: usize, total: usize, call: F) -> (f64, f64, f64, usize)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let start = Instant::now();
    let mut handles = Vec::new();
    for w in 0..workers {
        let call = call.clone();
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            let mut i = w;
            while i < total {
                let t = Instant::now();
                if !call(i).await {
                    errors += 1;
                }
                latencies.push(t.elapsed());
                i += workers;
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for h in handles {
        if let Ok((l, e)) = h.await {
            all.extend(l);
            errors += e;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    (
        total as f64 / elapsed,
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        errors,
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let keys: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let emu = kms_emulator::spawn(EmulatorConfig {
        quotas: false,
        ..EmulatorConfig::default()
    })
    .await?;
    let kms = client(&emu.endpoint());
    let http = reqwest::Client::new();
    println!(
        "kms-emulator throughput ({} build), {keys} keys",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!(
        "{:<44} {:>10} {:>9} {:>9} {:>7}",
        "measure", "calls/s", "p50 ms", "p99 ms", "errors"
    );

    let k = kms.clone();
    let ids = Arc::new(tokio::sync::Mutex::new(Vec::with_capacity(keys)));
    let sink = ids.clone();
    let (rate, p50, p99, errors) = run(8, keys, move |_| {
        let k = k.clone();
        let sink = sink.clone();
        async move {
            match k.create_key().send().await {
                Ok(out) => {
                    if let Some(m) = out.key_metadata {
                        sink.lock().await.push(m.key_id);
                    }
                    true
                }
                Err(_) => false,
            }
        }
    })
    .await;
    println!(
        "{:<44} {rate:>10.0} {p50:>9.2} {p99:>9.2} {errors:>7}",
        "CreateKey, 8 workers, quotas off"
    );
    let ids = Arc::new(ids.lock().await.clone());

    let start = Instant::now();
    let mut marker = None;
    let mut listed = 0;
    let mut pages = 0;
    loop {
        let out = kms
            .list_keys()
            .limit(1000)
            .set_marker(marker)
            .send()
            .await?;
        listed += out.keys().len();
        pages += 1;
        if !out.truncated() {
            break;
        }
        marker = out.next_marker().map(String::from);
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{:<44} {:>10.0} {:>9.2} {:>9} {:>7}",
        format!("ListKeys full scan ({listed} keys, {pages} pages)"),
        pages as f64 / elapsed,
        elapsed * 1000.0 / pages as f64,
        "-",
        0
    );

    for workers in [1, 16] {
        let k = kms.clone();
        let ids2 = ids.clone();
        let (rate, p50, p99, errors) = run(workers, 20_000, move |i| {
            let k = k.clone();
            let id = ids2[i % ids2.len()].clone();
            async move { k.describe_key().key_id(id).send().await.is_ok() }
        })
        .await;
        println!(
            "{:<44} {rate:>10.0} {p50:>9.2} {p99:>9.2} {errors:>7}",
            format!("DescribeKey, {workers} workers, quotas off")
        );
    }

    let url = emu.endpoint();
    let raw = http.clone();
    let ids2 = ids.clone();
    let (rate, p50, p99, errors) = run(16, 20_000, move |i| {
        let raw = raw.clone();
        let url = url.clone();
        let body = format!(r#"{{"KeyId":"{}"}}"#, ids2[i % ids2.len()]);
        async move {
            raw.post(&url)
                .header("x-amz-target", "TrentService.DescribeKey")
                .header("content-type", "application/x-amz-json-1.1")
                .body(body)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    println!(
        "{:<44} {rate:>10.0} {p50:>9.2} {p99:>9.2} {errors:>7}",
        "DescribeKey raw HTTP (reqwest), 16 workers"
    );

    // half the keys pending deletion: transitions due in the future must not slow requests down
    let k = kms.clone();
    let ids2 = ids.clone();
    let half = ids.len() / 2;
    let (rate, p50, p99, errors) = run(16, half, move |i| {
        let k = k.clone();
        let id = ids2[i].clone();
        async move {
            k.schedule_key_deletion()
                .key_id(id)
                .pending_window_in_days(30)
                .send()
                .await
                .is_ok()
        }
    })
    .await;
    println!(
        "{:<44} {rate:>10.0} {p50:>9.2} {p99:>9.2} {errors:>7}",
        "ScheduleKeyDeletion, 16 workers, quotas off"
    );
    let k = kms.clone();
    let ids2 = ids.clone();
    let (rate, p50, p99, errors) = run(16, 20_000, move |i| {
        let k = k.clone();
        let id = ids2[i % ids2.len()].clone();
        async move { k.describe_key().key_id(id).send().await.is_ok() }
    })
    .await;
    println!(
        "{:<44} {rate:>10.0} {p50:>9.2} {p99:>9.2} {errors:>7}",
        "DescribeKey, 16 workers, half pending"
    );

    // quota accuracy: hammer for 3 s, count what was accepted per second
    http.post(format!("{}/_emulator/config", emu.endpoint()))
        .body(r#"{"quotas": true}"#)
        .send()
        .await?;
    for (name, op) in [("DescribeKey", 0), ("ScheduleKeyDeletion", 1)] {
        let k = kms.clone();
        let ids2 = ids.clone();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let throttled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (a, t) = (accepted.clone(), throttled.clone());
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut handles = Vec::new();
        for w in 0..16 {
            let (k, ids2, a, t) = (k.clone(), ids2.clone(), a.clone(), t.clone());
            handles.push(tokio::spawn(async move {
                let mut i = half + w;
                while Instant::now() < deadline {
                    let id = ids2[i % ids2.len()].clone();
                    let code = if op == 0 {
                        k.describe_key()
                            .key_id(id)
                            .send()
                            .await
                            .err()
                            .map(|e| e.code().map(String::from))
                    } else {
                        k.schedule_key_deletion()
                            .key_id(id)
                            .send()
                            .await
                            .err()
                            .map(|e| e.code().map(String::from))
                    };
                    // every answer but ThrottlingException passed the quota (KMSInvalidState on a key
                    // already pending deletion included)
                    match code {
                        Some(Some(c)) if c == "ThrottlingException" => {
                            t.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                        }
                        _ => a.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                    };
                    i += 16;
                }
            }));
        }
        for h in handles {
            let _ = h.await;
        }
        println!(
            "{:<44} {:>10.1} {:>9} {:>9} {:>7}",
            format!("{name} passed/s, quotas on (3 s)"),
            accepted.load(std::sync::atomic::Ordering::Relaxed) as f64 / 3.0,
            "-",
            "-",
            format!(
                "{}thr",
                throttled.load(std::sync::atomic::Ordering::Relaxed)
            )
        );
    }
    Ok(())
}
