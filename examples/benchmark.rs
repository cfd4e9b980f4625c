//! Performance at KMS's limits, measured against the KMS emulator run as its own process with its
//! request quotas on and latency added to every call. Drives the real library code (the steps'
//! inventory path, the schedule-key-deletion step, the handler binaries under a local Lambda
//! Runtime API) and prints, for each case, keys, wall time, achieved rate, the quota bound and
//! their ratio, throttles seen in the emulator's call log, and a naive sequential baseline.
//! Steps of a real decommission act only for a RUNNING execution of the decommission state
//! machine that holds the store's lock in the run ledger: moto (`moto_server`, a child process)
//! stands in for Step Functions and DynamoDB, its executions stay RUNNING (nothing executes).
//! Asserts nothing: see docs/benchmarks.md for how to run it and what it measured.
//!
//! ```sh
//! cargo build --release -p kms-emulator --bins && cargo build --release --bins
//! cargo run --release --example benchmark -- [--keys 10000,100000] [--schedule-keys 300] [--latency-ms 15]
//! ```

use std::collections::{HashMap, VecDeque};
use std::error::Error;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, Select,
};
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::types::{CustomKeyStoreType, OriginType};
use aws_sdk_kms::Client;
use aws_smithy_types::date_time::Format;
use futures::stream::{self, StreamExt};
use kms_decommission::config::Config;
use kms_decommission::deadline::Deadline;
use kms_decommission::inventory::{may_start_another_page, scan_page};
use kms_decommission::keys::TargetStore;
use kms_decommission::kms::Kms;
use kms_decommission::ledger::{run_pk, Ledger};
use kms_decommission::pacing::Pacing;
use kms_decommission::sfn::Executions;
use kms_decommission::state::DecommissionState;
use kms_decommission::steps::{Step, StepContext};
use kms_decommission::store;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const DESCRIBE_KEY_QUOTA: f64 = 2000.0;
const TAG_RESOURCE_QUOTA: f64 = 10.0;
const SCHEDULE_QUOTA: f64 = 15.0;
const GET_KEY_LAST_USAGE_QUOTA: f64 = 5.0;
/// Lambda timeout of the batch functions in template.yaml; invocations use it as their budget.
const FUNCTION_TIMEOUT: Duration = Duration::from_secs(300);

struct Args {
    keys: Vec<usize>,
    schedule_keys: usize,
    latency_ms: u64,
    baseline_keys: usize,
}

fn parse_args() -> Res<Args> {
    let mut args = Args {
        keys: vec![10_000, 100_000],
        schedule_keys: 300,
        latency_ms: 15,
        baseline_keys: 1000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--keys" => {
                args.keys = value
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("--keys {value}: {e}"))?
            }
            "--schedule-keys" => args.schedule_keys = value.parse()?,
            "--latency-ms" => args.latency_ms = value.parse()?,
            "--baseline-keys" => args.baseline_keys = value.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(args)
}

fn bin_dir() -> PathBuf {
    std::env::var_os("BENCH_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release"))
}

/// The emulator as a child process, and its admin API.
struct Emulator {
    child: Child,
    endpoint: String,
    http: reqwest::Client,
}

impl Emulator {
    fn start(latency_ms: u64) -> Res<Self> {
        let path = bin_dir().join("kms-emulator");
        let mut child = Command::new(&path)
            .args([
                "--port",
                "0",
                "--day-seconds",
                "1",
                "--aws-managed-keys",
                "0",
            ])
            .args(["--latency-ms", &latency_ms.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e} (build it first)", path.display()))?;
        let stdout = child.stdout.take().ok_or("no emulator stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let endpoint = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .ok_or(format!("unexpected emulator ready line {line:?}"))?
            .to_string();
        Ok(Self {
            child,
            endpoint,
            http: reqwest::Client::new(),
        })
    }

    async fn post(&self, path: &str, body: Value) -> Res<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.endpoint))
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let value: Value = response.json().await?;
        if !status.is_success() {
            return Err(format!("POST {path}: {status} {value}").into());
        }
        Ok(value)
    }

    async fn clear_calls(&self) -> Res<()> {
        self.http
            .delete(format!("{}/_emulator/calls", self.endpoint))
            .send()
            .await?;
        Ok(())
    }

    /// Calls per (operation, outcome) since the last clear.
    async fn call_counts(&self) -> Res<HashMap<(String, String), usize>> {
        let log: Value = self
            .http
            .get(format!("{}/_emulator/calls", self.endpoint))
            .send()
            .await?
            .json()
            .await?;
        let mut counts = HashMap::new();
        for call in log["calls"].as_array().ok_or("no calls array")? {
            let key = (
                call["operation"].as_str().unwrap_or_default().to_string(),
                call["outcome"].as_str().unwrap_or_default().to_string(),
            );
            *counts.entry(key).or_insert(0) += 1;
        }
        Ok(counts)
    }

    async fn throttles(&self) -> Res<usize> {
        Ok(self
            .call_counts()
            .await?
            .iter()
            .filter(|((_, outcome), _)| outcome == "ThrottlingException")
            .map(|(_, n)| n)
            .sum())
    }

    async fn count(&self, operation: &str) -> Res<usize> {
        Ok(self
            .call_counts()
            .await?
            .iter()
            .filter(|((op, _), _)| op == operation)
            .map(|(_, n)| n)
            .sum())
    }

    /// Quotas off and no latency while fixtures are created (CreateKey's quota is 5/s).
    async fn seeding(&self, on: bool, latency_ms: u64) -> Res<()> {
        let body = if on {
            json!({"quotas": false, "latency_ms": 0})
        } else {
            json!({"quotas": true, "latency_ms": latency_ms})
        };
        self.post("/_emulator/config", body).await.map(|_| ())
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A KMS client like the handlers': standard retries (3 attempts).
fn kms_client(endpoint: &str) -> Client {
    Client::from_conf(
        aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "bench"))
            .endpoint_url(endpoint)
            .build(),
    )
}

/// The ledger table and state machine the benchmark creates in moto.
const LEDGER_TABLE: &str = "ledger";
const STATE_MACHINE: &str = "decommission";

/// moto_server as a child process (stopped when dropped, also when the benchmark fails): Step
/// Functions holding the decommission state machine whose executions the steps check they act
/// for (they stay RUNNING: moto executes nothing), and DynamoDB holding the run ledger.
struct Moto {
    child: Child,
    endpoint: String,
    sfn: aws_sdk_sfn::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    /// The decommission state machine's ARN.
    machine: String,
}

/// moto_server: `$MOTO_SERVER`, else the repository's `.venv` (pinned by requirements-dev.txt,
/// `make tools`), else `moto_server` on the PATH; as the integration tests find it.
fn moto_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("moto_server")
}

impl Moto {
    /// Starts moto_server on a free port, waits until it answers, then creates the ledger table
    /// (as the template defines it) and the decommission state machine.
    async fn start() -> Res<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let binary = moto_server_binary();
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "{}: {e} (install the pinned tools with `make tools` or set MOTO_SERVER)",
                    binary.display()
                )
            })?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let credentials = Credentials::new("test", "test", None, None, "bench");
        let sfn = aws_sdk_sfn::Client::from_conf(
            aws_sdk_sfn::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(credentials.clone())
                .endpoint_url(&endpoint)
                .build(),
        );
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(credentials)
                .endpoint_url(&endpoint)
                .build(),
        );
        // From here on, dropping `moto` (an error below included) stops the child.
        let mut moto = Self {
            child,
            endpoint,
            sfn,
            dynamodb,
            machine: String::new(),
        };
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            let up = http
                .get(format!("{}/moto-api/", moto.endpoint))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                break;
            }
            if let Some(status) = moto.child.try_wait()? {
                return Err(format!("{} exited at start: {status}", binary.display()).into());
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err(format!("moto_server did not answer on {}", moto.endpoint).into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        moto.create_ledger_table().await?;
        moto.machine = moto.create_state_machine().await?;
        Ok(moto)
    }

    /// The run ledger table: `pk` and `sk` strings, on demand.
    async fn create_ledger_table(&self) -> Res<()> {
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
        };
        self.dynamodb
            .create_table()
            .table_name(LEDGER_TABLE)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute("pk")?)
            .attribute_definitions(attribute("sk")?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .send()
            .await?;
        Ok(())
    }

    /// A Standard state machine of one Wait state (moto never runs it).
    async fn create_state_machine(&self) -> Res<String> {
        let definition =
            r#"{"StartAt":"Hold","States":{"Hold":{"Type":"Wait","Seconds":3600,"End":true}}}"#;
        Ok(self
            .sfn
            .create_state_machine()
            .name(STATE_MACHINE)
            .definition(definition)
            .role_arn("arn:aws:iam::123456789012:role/decommission")
            .r#type(aws_sdk_sfn::types::StateMachineType::Standard)
            .send()
            .await?
            .state_machine_arn)
    }

    /// Starts execution `name` of the decommission state machine with `input` (it stays
    /// RUNNING) and returns the document the Initialize state writes for it.
    async fn start_run(&self, name: &str, input: Value) -> Res<DecommissionState> {
        let started = self
            .sfn
            .start_execution()
            .state_machine_arn(&self.machine)
            .name(name)
            .input(input.to_string())
            .send()
            .await?;
        let doc = json!({
            "Input": input,
            "Execution": {"Id": started.execution_arn(), "Name": name,
                          "StartTime": started.start_date().fmt(Format::DateTime)?},
        });
        Ok(DecommissionState::from_value(doc)?)
    }

    /// A step context around `kms` with `config`, acting for this state machine's executions,
    /// on this ledger.
    fn context(&self, kms: &Client, config: Config) -> StepContext {
        StepContext::new(
            kms.clone(),
            config,
            Executions::new(self.sfn.clone(), self.machine.clone(), None),
            Ledger::new(self.dynamodb.clone(), LEDGER_TABLE),
        )
    }

    /// Key records the ledger holds for run `execution`.
    async fn key_records(&self, execution: &str) -> Res<i32> {
        let mut count = 0;
        let mut start = None;
        loop {
            let page = self
                .dynamodb
                .query()
                .table_name(LEDGER_TABLE)
                .key_condition_expression("pk = :pk AND begins_with(sk, :key)")
                .expression_attribute_values(":pk", AttributeValue::S(run_pk(execution)))
                .expression_attribute_values(":key", AttributeValue::S("KEY#".into()))
                .select(Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await?;
            count += page.count();
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(count);
            }
        }
    }

    /// What the handler binaries need to reach this state machine and ledger (the rest of AWS is
    /// the emulator, `AWS_ENDPOINT_URL`).
    fn handler_env(&self) -> [(&'static str, &str); 4] {
        [
            ("STATE_MACHINE_ARN", self.machine.as_str()),
            ("LEDGER_TABLE", LEDGER_TABLE),
            ("AWS_ENDPOINT_URL_SFN", self.endpoint.as_str()),
            ("AWS_ENDPOINT_URL_DYNAMODB", self.endpoint.as_str()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn create_store(kms: &Client, name: &str) -> Res<String> {
    let cluster: String = name
        .chars()
        .filter(char::is_ascii_alphabetic)
        .map(|c| c.to_ascii_lowercase())
        .chain(std::iter::repeat('x'))
        .take(11)
        .collect();
    let id = kms
        .create_custom_key_store()
        .custom_key_store_name(name)
        .custom_key_store_type(CustomKeyStoreType::AwsCloudhsm)
        .cloud_hsm_cluster_id(format!("cluster-{cluster}"))
        .trust_anchor_certificate("-----BEGIN CERTIFICATE-----bench-----END CERTIFICATE-----")
        .key_store_password("kmsuser-password")
        .send()
        .await?
        .custom_key_store_id
        .ok_or("no store id")?;
    kms.connect_custom_key_store()
        .custom_key_store_id(&id)
        .send()
        .await?;
    for _ in 0..500 {
        let out = kms
            .describe_custom_key_stores()
            .custom_key_store_id(&id)
            .send()
            .await?;
        if out
            .custom_key_stores()
            .first()
            .and_then(|s| s.connection_state())
            .is_some_and(|s| s.as_str() == "CONNECTED")
        {
            return Ok(id);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(format!("store {id} never connected").into())
}

/// Creates `total` keys, every tenth (when `every_tenth`) or all of them in `store`.
async fn seed_keys(kms: &Client, store: &str, total: usize, every_tenth: bool) -> Res<()> {
    let results: Vec<Res<()>> = stream::iter(0..total)
        .map(|i| async move {
            let mut create = kms.create_key();
            if !every_tenth || i % 10 == 0 {
                create = create
                    .custom_key_store_id(store)
                    .origin(OriginType::AwsCloudhsm);
            }
            create.send().await?;
            Ok(())
        })
        .buffer_unordered(64)
        .collect()
        .await;
    results.into_iter().collect()
}

fn line(case: &str, keys: u64, wall: f64, rate: f64, bound: f64, throttles: usize, extra: &str) {
    println!(
        "{case:<34} {keys:>7} {wall:>9.2} {rate:>9.1} {bound:>7.0} {ratio:>6.1}% {throttles:>9}  {extra}",
        ratio = 100.0 * rate / bound
    );
}

fn header() {
    println!(
        "{:<34} {:>7} {:>9} {:>9} {:>7} {:>7} {:>9}  notes",
        "case", "keys", "wall s", "rate/s", "quota", "ratio", "throttles"
    );
}

/// The steps' inventory path: ListKeys pages with paced, concurrent DescribeKey, one
/// invocation after another, each stopping between pages before its deadline.
/// KMS only: no step runs, so neither Step Functions nor the ledger is asked.
/// Returns (keys scanned, keys in the store, invocations).
async fn paced_inventory(kms: &Kms, config: &Config, store_id: &str) -> Res<(u64, u64, usize)> {
    let summary = store::describe(kms, store_id).await?;
    let target = TargetStore::new(&summary);
    let (mut scanned, mut in_store, mut invocations) = (0, 0, 0);
    let mut cursor: Option<String> = None;
    loop {
        invocations += 1;
        let deadline = Deadline::after(FUNCTION_TIMEOUT);
        loop {
            let started = Instant::now();
            let page =
                scan_page(kms, &target, cursor.as_deref(), config.list_keys_page_size).await?;
            scanned += page.scanned;
            in_store += page.keys.len() as u64;
            cursor = page.next_cursor;
            if cursor.is_none() {
                return Ok((scanned, in_store, invocations));
            }
            if !may_start_another_page(&deadline, started.elapsed(), config.deadline_margin) {
                break;
            }
        }
    }
}

/// The naive baseline: one ListKeys page of 100 at a time, one DescribeKey at a time, no pacing,
/// stopping after `limit` keys. Returns (keys described, in store).
async fn sequential_inventory(kms: &Client, store_id: &str, limit: usize) -> Res<(u64, u64)> {
    let (mut scanned, mut in_store) = (0u64, 0u64);
    let mut marker: Option<String> = None;
    loop {
        let out = kms.list_keys().set_marker(marker.clone()).send().await?;
        for entry in out.keys() {
            let Some(id) = entry.key_id() else { continue };
            let described = kms.describe_key().key_id(id).send().await?;
            scanned += 1;
            if described
                .key_metadata()
                .and_then(|m| m.custom_key_store_id())
                == Some(store_id)
            {
                in_store += 1;
            }
            if scanned as usize >= limit {
                return Ok((scanned, in_store));
            }
        }
        marker = out.next_marker().map(str::to_string);
        if !out.truncated() || marker.is_none() {
            return Ok((scanned, in_store));
        }
    }
}

async fn inventory_case(emu: &Emulator, args: &Args, total: usize) -> Res<f64> {
    let kms = kms_client(&emu.endpoint);
    emu.post("/_emulator/reset", json!({})).await?;
    emu.seeding(true, args.latency_ms).await?;
    let seeded = Instant::now();
    let store_id = create_store(&kms, "Inventory").await?;
    seed_keys(&kms, &store_id, total, true).await?;
    eprintln!(
        "  seeded {total} keys in {:.1} s",
        seeded.elapsed().as_secs_f64()
    );
    emu.seeding(false, args.latency_ms).await?;

    // The KMS adapter as StepContext::new builds it: the default pacing.
    let config = Config::default();
    let paced = Kms::new(kms.clone(), Arc::new(Pacing::new(&config.pacing)));
    emu.clear_calls().await?;
    let started = Instant::now();
    let (scanned, in_store, invocations) = paced_inventory(&paced, &config, &store_id).await?;
    let wall = started.elapsed().as_secs_f64();
    let describes = emu.count("DescribeKey").await?;
    let paced_rate = describes as f64 / wall;
    let p = &config.pacing;
    line(
        &format!("inventory {total} (paced)"),
        scanned,
        wall,
        paced_rate,
        DESCRIBE_KEY_QUOTA,
        emu.throttles().await?,
        &format!(
            "{in_store} in store; DescribeKey paced {}/s, {} in flight, pages of {}, {invocations} invocation(s) of {} s",
            p.describe_key_rps,
            p.concurrency,
            config.list_keys_page_size,
            FUNCTION_TIMEOUT.as_secs()
        ),
    );

    emu.clear_calls().await?;
    let started = Instant::now();
    let (scanned, in_store) = sequential_inventory(&kms, &store_id, args.baseline_keys).await?;
    let wall = started.elapsed().as_secs_f64();
    let rate = scanned as f64 / wall;
    line(
        &format!("inventory {total} (sequential)"),
        scanned,
        wall,
        rate,
        DESCRIBE_KEY_QUOTA,
        emu.throttles().await?,
        &format!(
            "first {scanned} keys only ({in_store} in store); whole account would take {:.0} s",
            total as f64 / rate
        ),
    );
    Ok(paced_rate)
}

/// The request of a scheduling case: a real run of store `name`, 7-day window.
fn schedule_input(store_id: &str, name: &str, guard_off: bool) -> Value {
    let mut input = json!({
        "CustomKeyStoreId": store_id, "PendingWindowInDays": 7, "DryRun": false,
        "ConfirmCustomKeyStoreName": name,
    });
    if guard_off {
        input["MinDaysSinceLastUse"] = json!(0);
    }
    input
}

/// A document ready for schedule-key-deletion, made as the state machine makes it: an execution
/// started with `input` (moto keeps it RUNNING), then plan-decommission (which takes the store's
/// lock and writes the run record) and ensure-store-connected, each until done, through `setup`.
async fn planned_run(
    moto: &Moto,
    setup: &StepContext,
    name: &str,
    input: Value,
) -> Res<DecommissionState> {
    let mut state = moto.start_run(name, input).await?;
    for step in [Step::PlanDecommission, Step::EnsureStoreConnected] {
        let mut invocations = 0;
        loop {
            invocations += 1;
            state = step
                .run(setup, state, Deadline::after(FUNCTION_TIMEOUT))
                .await?;
            let done = match step {
                Step::PlanDecommission => state.plan.as_ref().is_some_and(|p| p.done),
                _ => state.connection.as_ref().is_some_and(|c| c.ready),
            };
            if done {
                break;
            }
            if invocations >= 100 {
                return Err(format!("{step:?} not done after {invocations} invocations").into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(state)
}

async fn scheduling_case(emu: &Emulator, moto: &Moto, args: &Args, guard_off: bool) -> Res<()> {
    let kms = kms_client(&emu.endpoint);
    emu.post("/_emulator/reset", json!({})).await?;
    emu.seeding(true, args.latency_ms).await?;
    let store_id = create_store(&kms, "Schedule").await?;
    seed_keys(&kms, &store_id, args.schedule_keys, false).await?;
    let baseline_store = create_store(&kms, "Baseline").await?;
    let baseline_keys = args.schedule_keys.min(60);
    seed_keys(&kms, &baseline_store, baseline_keys, false).await?;
    // Plan and connect while quotas are still off, GetKeyLastUsage unpaced: not measured.
    let mut setup = Config::default();
    setup.pacing.custom_key_store_rps = 1000.0;
    let name = if guard_off {
        "schedule-guard-off"
    } else {
        "schedule-guard-on"
    };
    let input = schedule_input(&store_id, "Schedule", guard_off);
    let mut state = planned_run(moto, &moto.context(&kms, setup), name, input).await?;
    let execution = state.execution_id()?.to_owned();
    emu.seeding(false, args.latency_ms).await?;

    let ctx = moto.context(&kms, Config::default());
    emu.clear_calls().await?;
    let started = Instant::now();
    let mut invocations = 0;
    loop {
        invocations += 1;
        state = Step::ScheduleKeyDeletion
            .run(&ctx, state, Deadline::after(FUNCTION_TIMEOUT))
            .await?;
        if state.scheduling.as_ref().is_some_and(|s| s.done) {
            break;
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let scheduled = state.scheduling.as_ref().map_or(0, |s| s.keys_scheduled);
    let tags = emu.count("TagResource").await? as f64 / wall;
    let schedules = emu.count("ScheduleKeyDeletion").await? as f64 / wall;
    let last_use = emu.count("GetKeyLastUsage").await? as f64 / wall;
    let key_records = moto.key_records(&execution).await?;
    // Every store key gets one call of each; the lowest quota among the calls made binds.
    let (binding, binding_name) = if last_use > 0.0 {
        (
            GET_KEY_LAST_USAGE_QUOTA,
            "GetKeyLastUsage 5/s (last-use guard)",
        )
    } else {
        (TAG_RESOURCE_QUOTA.min(SCHEDULE_QUOTA), "TagResource 10/s")
    };
    let p = &ctx.config.pacing;
    line(
        &format!(
            "scheduling {} (paced{})",
            args.schedule_keys,
            if guard_off { ", guard off" } else { "" }
        ),
        scheduled,
        wall,
        scheduled as f64 / wall,
        binding,
        emu.throttles().await?,
        &format!(
            "binding quota {binding_name}; per second: GetKeyLastUsage {last_use:.2}, TagResource {tags:.2} \
             (paced {}), ScheduleKeyDeletion {schedules:.2} (paced {}); {invocations} invocation(s); \
             wall time includes the run ledger in moto (one PutItem + one UpdateItem per key, {key_records} \
             key records) and the caller check (DescribeExecution, GetItem, UpdateItem per invocation)",
            p.tag_resource_rps, p.schedule_key_deletion_rps
        ),
    );

    if guard_off {
        return Ok(());
    }
    // Naive: tag and schedule one key after the other as fast as KMS answers.
    emu.clear_calls().await?;
    let started = Instant::now();
    let mut marker = None;
    let mut done = 0u64;
    loop {
        let out = kms.list_keys().set_marker(marker).send().await?;
        for entry in out.keys() {
            let Some(id) = entry.key_id() else { continue };
            // The paced case's keys reach their deletion date (7 emulated days, 7 s) while
            // this runs: one listed a moment ago may be gone.
            let metadata = match kms.describe_key().key_id(id).send().await {
                Ok(metadata) => metadata,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_not_found_exception()) =>
                {
                    continue
                }
                Err(e) => return Err(e.into()),
            };
            if metadata
                .key_metadata()
                .and_then(|m| m.custom_key_store_id())
                != Some(baseline_store.as_str())
            {
                continue;
            }
            let tag = aws_sdk_kms::types::Tag::builder()
                .tag_key("kms-decommission:execution")
                .tag_value(&execution)
                .build()?;
            let tagged = kms.tag_resource().key_id(id).tags(tag).send().await;
            let scheduled = kms
                .schedule_key_deletion()
                .key_id(id)
                .pending_window_in_days(7)
                .send()
                .await;
            if tagged.is_ok() && scheduled.is_ok() {
                done += 1;
            }
        }
        marker = out.next_marker().map(str::to_string);
        if !out.truncated() || marker.is_none() {
            break;
        }
    }
    let wall = started.elapsed().as_secs_f64();
    line(
        &format!("scheduling {baseline_keys} (sequential)"),
        done,
        wall,
        done as f64 / wall,
        TAG_RESOURCE_QUOTA.min(SCHEDULE_QUOTA),
        emu.throttles().await?,
        &format!(
            "unpaced; {} of {baseline_keys} keys tagged and scheduled despite SDK retries",
            done
        ),
    );
    Ok(())
}

/// What the local Runtime API saw of one handler process.
#[derive(Default)]
struct RuntimeLog {
    first_request: Option<Instant>,
    events: VecDeque<Value>,
    responses: Vec<Value>,
    errors: Vec<String>,
}

/// A minimal Lambda Runtime API: `next` hands out queued events (and holds the request when
/// there are none), `response` and `error` are recorded.
async fn runtime_api(listener: TcpListener, log: Arc<Mutex<RuntimeLog>>, timeout_ms: u64) {
    let mut request_id = 0u64;
    while let Ok((stream, _)) = listener.accept().await {
        let log = log.clone();
        request_id += 1000;
        tokio::spawn(serve_runtime(stream, log, timeout_ms, request_id));
    }
}

async fn serve_runtime(
    mut stream: TcpStream,
    log: Arc<Mutex<RuntimeLog>>,
    timeout_ms: u64,
    mut id: u64,
) {
    let mut buffer = Vec::new();
    loop {
        let head_end = loop {
            if let Some(pos) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
        let length = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        while buffer.len() < head_end + length {
            let mut chunk = [0u8; 65536];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buffer[head_end..head_end + length].to_vec();
        buffer.drain(..head_end + length);
        let path = head
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let reply = if path.ends_with("/invocation/next") {
            let event = {
                let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                log.first_request.get_or_insert_with(Instant::now);
                log.events.pop_front()
            };
            let Some(event) = (match event {
                Some(event) => Some(event),
                None => wait_for_event(&log).await,
            }) else {
                return;
            };
            id += 1;
            let body = event.to_string();
            // Each invocation's deadline is `timeout_ms` after it starts, as on Lambda.
            let deadline_ms = if timeout_ms == 0 {
                0
            } else {
                epoch_ms() + timeout_ms
            };
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nlambda-runtime-aws-request-id: req-{id}\r\n\
                 lambda-runtime-deadline-ms: {deadline_ms}\r\n\
                 lambda-runtime-invoked-function-arn: arn:aws:lambda:us-east-1:123456789012:function:bench\r\n\
                 content-length: {}\r\n\r\n{body}",
                body.len()
            )
        } else {
            {
                let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                log.first_request.get_or_insert_with(Instant::now);
                if path.ends_with("/response") {
                    log.responses
                        .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                } else {
                    log.errors.push(String::from_utf8_lossy(&body).to_string());
                }
            }
            "HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}".to_string()
        };
        if stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Holds a `next` request until an event is queued (up to ten minutes).
async fn wait_for_event(log: &Arc<Mutex<RuntimeLog>>) -> Option<Value> {
    for _ in 0..60_000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let event = log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .events
            .pop_front();
        if event.is_some() {
            return event;
        }
    }
    None
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Starts a handler binary against a fresh local Runtime API, KMS in the emulator at `endpoint`,
/// Step Functions and the ledger in `moto` (as the template configures the step functions).
async fn start_handler(
    name: &str,
    endpoint: &str,
    moto: &Moto,
    timeout_ms: u64,
    extra_env: &[(&str, &str)],
) -> Res<(Child, Instant, Arc<Mutex<RuntimeLog>>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let log = Arc::new(Mutex::new(RuntimeLog::default()));
    tokio::spawn(runtime_api(listener, log.clone(), timeout_ms));
    let mut command = Command::new(bin_dir().join(name));
    command
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in moto.handler_env().iter().chain(extra_env) {
        command.env(k, v);
    }
    let started = Instant::now();
    let child = command.spawn()?;
    Ok((child, started, log))
}

async fn handler_init_case(emu: &Emulator, moto: &Moto) -> Res<()> {
    println!(
        "\n{:<24} {:>10} {:>13}",
        "handler binary", "init ms", "peak RSS MiB"
    );
    let mut names: Vec<String> =
        std::fs::read_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/bin"))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".rs")
                    .map(str::to_string)
            })
            .collect();
    names.sort();
    for name in names {
        if !bin_dir().join(&name).exists() {
            println!("{name:<24} not built (cargo build --release --bins)");
            continue;
        }
        let (mut child, started, log) = start_handler(&name, &emu.endpoint, moto, 0, &[]).await?;
        let mut init = None;
        for _ in 0..1000 {
            if let Some(at) = log.lock().unwrap_or_else(|p| p.into_inner()).first_request {
                init = Some(at - started);
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let rss = peak_rss_kib(child.id());
        let _ = child.kill();
        let _ = child.wait();
        println!(
            "{name:<24} {:>10} {:>13}",
            init.map_or("none".into(), |d| format!(
                "{:.1}",
                d.as_secs_f64() * 1000.0
            )),
            rss.map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0))
        );
    }
    Ok(())
}

/// plan-decommission, the real binary, through a whole dry-run inventory of the account the
/// last inventory case left, invocation after invocation, with a deadline `timeout` ahead. A dry
/// run reads only: the function asks neither Step Functions nor the ledger, but its execution is
/// started in moto all the same, as the state machine would be.
async fn plan_binary_case(emu: &Emulator, moto: &Moto, timeout: Duration, total: usize) -> Res<()> {
    let kms = kms_client(&emu.endpoint);
    let stores = kms
        .describe_custom_key_stores()
        .custom_key_store_name("Inventory")
        .send()
        .await?;
    let store_id = stores
        .custom_key_stores()
        .first()
        .and_then(|s| s.custom_key_store_id())
        .ok_or("no Inventory store left by the inventory case")?
        .to_string();
    let input = json!({"CustomKeyStoreId": store_id, "DryRun": true});
    let first = moto
        .start_run(&format!("plan-dry-run-{total}"), input)
        .await?
        .to_value()?;
    // Memory, not rate: quotas off so GetKeyLastUsage (quota 5/s) does not take an hour.
    emu.post("/_emulator/config", json!({"quotas": false}))
        .await?;
    let (mut child, started, log) = start_handler(
        "plan-decommission",
        &emu.endpoint,
        moto,
        timeout.as_millis() as u64,
        &[
            ("KMS_CUSTOM_KEY_STORE_RPS", "100000"),
            ("DEADLINE_MARGIN_MS", "2000"),
        ],
    )
    .await?;
    log.lock()
        .unwrap_or_else(|p| p.into_inner())
        .events
        .push_back(first);
    let mut invocations = 1;
    let outcome = loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut guard = log.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(error) = guard.errors.first() {
            break format!("error: {error}");
        }
        if let Some(doc) = guard.responses.pop() {
            if doc["Plan"]["Done"] == json!(true) {
                break format!(
                    "done: {} keys scanned, {} in store",
                    doc["Plan"]["KeysScanned"], doc["Plan"]["KeysInStore"]
                );
            }
            invocations += 1;
            guard.events.push_back(doc);
        }
        if started.elapsed() > Duration::from_secs(1800) {
            break "gave up after 30 min".to_string();
        }
    };
    let rss = peak_rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    emu.post("/_emulator/config", json!({"quotas": true}))
        .await?;
    println!(
        "plan-decommission binary, dry run over {total} keys, deadline {} s per invocation: {outcome}; \
         {invocations} invocation(s) in {:.1} s; peak RSS {} MiB",
        timeout.as_secs(),
        started.elapsed().as_secs_f64(),
        rss.map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0))
    );
    Ok(())
}

/// States entered by one execution (Standard workflows bill state transitions), from the flow in
/// docs/workflow-contract.md and the handlers' batch sizes: each Task invocation is followed by
/// its Choice; each CheckKeysDeleted visit with keys still pending adds a Wait.
fn transitions(plan: u64, schedule: u64, checks: u64) -> u64 {
    let fixed = 1 // Initialize
        + 1 // DryRun choice
        + 3 // EnsureStoreConnected, its Choice, the Scheduling.Done choice
        + 2 // WaitRequired choice, WaitForDeletionDate
        + 2 // the last CheckKeysDeleted (all deleted) and its Choice
        + 5 // DisconnectStore, Choice, WaitForDisconnect, DisconnectStore, Choice
        + 2 // DeleteStore, Decommissioned
        + 5; // status events: Started, KeysScheduled, KeysDeleted, StoreDisconnected, StoreDeleted
    fixed + 2 * plan + 2 * schedule + 3 * checks
}

fn transitions_table(inventory_rate: f64) {
    println!(
        "\nstate transitions per execution (computed from the ASL flow and the batch sizes at the measured \
         inventory rate, 300 s functions; GetKeyLastUsage at 4.75/s per store key in plan and schedule)"
    );
    println!(
        "{:>10} {:>12} {:>6} {:>9} {:>14} {:>22}",
        "store keys", "account keys", "plan", "schedule", "no wait checks", "30-day window checks"
    );
    let budget = (FUNCTION_TIMEOUT.as_secs() - 10) as f64;
    for store_keys in [10u64, 1000, 10_000] {
        let account = store_keys * 10;
        let last_use = store_keys as f64 / 4.75;
        let plan = ((account as f64 / inventory_rate + last_use) / budget)
            .ceil()
            .max(1.0) as u64;
        let schedule = ((account as f64 / inventory_rate + last_use + store_keys as f64 / 9.5)
            / budget)
            .ceil()
            .max(1.0) as u64;
        // One check per day of a 30-day window (CONNECTION_CHECK_SECONDS), then hourly polls
        // (KEY_DELETION_POLL_SECONDS) through up to 24 h of deletion lag.
        let window_checks = 30 + 24;
        println!(
            "{store_keys:>10} {account:>12} {plan:>6} {schedule:>9} {:>14} {:>22}",
            transitions(plan, schedule, 0),
            transitions(plan, schedule, window_checks)
        );
    }
}

#[tokio::main]
async fn main() -> Res<()> {
    let args = parse_args()?;
    // Both children are stopped when main returns, with an error too (their Drop).
    let moto = Moto::start().await?;
    let emu = Emulator::start(args.latency_ms)?;
    println!(
        "KMS emulator {} as its own process: quotas on, {} ms latency per call; \
         Step Functions and the run ledger in moto {}",
        emu.endpoint, args.latency_ms, moto.endpoint
    );
    header();
    let mut inventory_rate = 1900.0;
    for &total in &args.keys {
        inventory_rate = inventory_case(&emu, &args, total).await?;
    }
    if let Some(&total) = args.keys.last() {
        if bin_dir().join("plan-decommission").exists() {
            plan_binary_case(&emu, &moto, Duration::from_secs(15), total).await?;
        }
    }
    scheduling_case(&emu, &moto, &args, false).await?;
    scheduling_case(&emu, &moto, &args, true).await?;
    transitions_table(inventory_rate);
    handler_init_case(&emu, &moto).await?;
    Ok(())
}
