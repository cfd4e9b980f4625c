//! Shared setup for the integration tests: an in-process KMS emulator, the real aws-sdk-kms
//! client over HTTP to it, store and key fixtures, the emulator's call log, and a driver that
//! runs steps the way the state machine does.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::types::{
    CustomKeyStoreType, KeyMetadata, OriginType, XksProxyAuthenticationCredentialType,
    XksProxyConnectivityType,
};
use aws_sdk_kms::Client;
use aws_smithy_types::retry::RetryConfig;
use kms_decommission::clock::Clock;
use kms_decommission::config::Config;
use kms_decommission::deadline::Deadline;
use kms_decommission::error::DecommissionError;
use kms_decommission::keys::{MARKER_EXECUTION, MARKER_PRIOR_STATE, MARKER_TICKET};
use kms_decommission::ledger::Ledger;
use kms_decommission::sfn::Executions;
use kms_decommission::state::DecommissionState;
use kms_decommission::steps::{Step, StepContext};
use kms_emulator::{EmulatorConfig, RunningEmulator};
use serde_json::{json, Value};

pub const EXECUTION: &str = "arn:aws:states:us-east-1:123456789012:execution:decommission:run-1";

/// KMS operations that change something.
pub const MUTATING_OPERATIONS: &[&str] = &[
    "ScheduleKeyDeletion",
    "CancelKeyDeletion",
    "TagResource",
    "UntagResource",
    "EnableKey",
    "DisableKey",
    "ConnectCustomKeyStore",
    "DisconnectCustomKeyStore",
    "DeleteCustomKeyStore",
    "UpdateCustomKeyStore",
    "CreateKey",
    "CreateCustomKeyStore",
];

/// See [`Env::start_with_approval_gate`].
const APPROVAL_GATE_MACHINE: &str = r#"{"StartAt": "WaitForApproval", "States": {
  "WaitForApproval": {"Type": "Task", "Resource": "arn:aws:states:::events:putEvents.waitForTaskToken",
    "Parameters": {"Entries": [{"Source": "kms-decommission.test", "DetailType": "Approval Requested",
      "Detail": {"TaskToken.$": "$$.Task.Token"}}]},
    "ResultPath": "$.ApprovalAnswer", "Next": "RecordApproval"},
  "RecordApproval": {"Type": "Wait", "Seconds": 3600, "End": true}}}"#;

/// One call from the emulator's call log.
#[derive(Debug, Clone)]
pub struct Call {
    pub operation: String,
    pub key_id: Option<String>,
    pub custom_key_store_id: Option<String>,
    pub outcome: String,
}

impl Call {
    pub fn is_mutating(&self) -> bool {
        MUTATING_OPERATIONS.contains(&self.operation.as_str())
    }
}

pub mod moto;

/// An emulator and a KMS client pointed at it; a moto server holding this test's run ledger
/// table and decommission state machine, whose executions the steps check they act for.
pub struct Env {
    pub emulator: RunningEmulator,
    pub kms: Client,
    http: reqwest::Client,
    pub moto: moto::Moto,
    /// The decommission state machine (in moto; executions stay RUNNING, nothing executes).
    pub machine: String,
    /// The run ledger table (in moto).
    pub table: String,
    runs: std::sync::atomic::AtomicUsize,
}

/// Handler configuration for tests: short polls, one key per ListKeys page unless changed;
/// console runs need no approval unless they ask for it (tests/approval.rs covers the gate).
pub fn test_config() -> Config {
    Config {
        approval_required_for_console_and_webhook: false,
        key_deletion_poll_seconds: 1,
        store_poll_seconds: 1,
        list_keys_page_size: 4,
        deadline_margin: Duration::from_millis(500),
        // Runs quarantine only when a test asks for it (tests/quarantine.rs).
        default_quarantine_days: 0,
        ..Config::default()
    }
}

/// A deadline far enough away for a whole step.
pub fn far_deadline() -> Deadline {
    Deadline::after(Duration::from_secs(600))
}

/// A deadline already inside the margin: a batch step does one page and returns its cursor.
pub fn near_deadline() -> Deadline {
    Deadline::after(Duration::ZERO)
}

impl Env {
    /// Starts an emulator with fast time (an emulated day lasts one second) and without
    /// request quotas (fixtures create keys faster than CreateKey's 5/s); the tests that are
    /// about quotas turn them on.
    pub async fn start() -> Self {
        Self::start_with(EmulatorConfig {
            quotas: false,
            ..EmulatorConfig::fast()
        })
        .await
    }

    pub async fn start_with(config: EmulatorConfig) -> Self {
        Self::start_inner(config, false).await
    }

    /// An environment whose executions run (moto's interpreter) a state machine shaped like
    /// the approval gate: `WaitForApproval`, a `.waitForTaskToken` task whose answer goes to
    /// `$.ApprovalAnswer` (its token is in the history, `Entries[0].Detail.TaskToken` of the
    /// task's parameters), then `RecordApproval`, a Wait state where the execution stays.
    pub async fn start_with_approval_gate() -> Self {
        Self::start_inner(
            EmulatorConfig {
                quotas: false,
                ..EmulatorConfig::fast()
            },
            true,
        )
        .await
    }

    async fn start_inner(config: EmulatorConfig, approval_gate: bool) -> Self {
        let (emulator, moto) = tokio::join!(kms_emulator::spawn(config), moto::Moto::start());
        let emulator = emulator.expect("emulator starts");
        let machine = if approval_gate {
            moto.execute_state_machines().await;
            moto.create_state_machine_with("decommission", APPROVAL_GATE_MACHINE)
                .await
        } else {
            moto.create_state_machine("decommission").await
        };
        let table = "ledger".to_owned();
        create_ledger_table(&moto.dynamodb(), &table).await;
        let kms_config = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .endpoint_url(emulator.endpoint())
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(5)),
            )
            .build();
        Self {
            kms: Client::from_conf(kms_config),
            emulator,
            http: reqwest::Client::new(),
            moto,
            machine,
            table,
            runs: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// A step context on this emulator (its clock follows the emulator's), this test's state
    /// machine and ledger.
    pub async fn context(&self, config: Config) -> StepContext {
        let mut ctx = StepContext::new(
            self.kms.clone(),
            config,
            Executions::new(self.moto.sfn(), self.machine.clone(), None),
            self.ledger(),
        );
        ctx.clock = self.clock().await;
        ctx.cloudtrail = Some(self.cloudtrail(50.0));
        ctx
    }

    /// CloudTrail (the emulator's LookupEvents) at `rate` lookups a second.
    pub fn cloudtrail(&self, rate: f64) -> kms_decommission::cloudtrail::CloudTrail {
        let client = aws_sdk_cloudtrail::Client::from_conf(
            aws_sdk_cloudtrail::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new("test", "test", None, None, "test"))
                .endpoint_url(self.emulator.endpoint())
                .build(),
        );
        kms_decommission::cloudtrail::CloudTrail::new(client, rate)
    }

    /// Logs Insights on the emulator (it serves any log group as the trail's), at `rate` calls
    /// a second.
    #[allow(dead_code)]
    pub fn insights(&self, rate: f64) -> kms_decommission::logs_insights::LogsInsights {
        let client = aws_sdk_cloudwatchlogs::Client::from_conf(
            aws_sdk_cloudwatchlogs::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new("test", "test", None, None, "test"))
                .endpoint_url(self.emulator.endpoint())
                .build(),
        );
        kms_decommission::logs_insights::LogsInsights::new(client, "kms-trail", rate)
    }

    /// The run ledger of this test.
    pub fn ledger(&self) -> Ledger {
        Ledger::new(self.moto.dynamodb(), self.table.clone())
    }

    /// Starts an execution of the decommission state machine with `input` (it stays RUNNING)
    /// and returns the document the Initialize state writes for it.
    pub async fn start_run(&self, input: Value) -> DecommissionState {
        let n = self.runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let name = format!("run-{n}");
        let arn = self
            .moto
            .sfn()
            .start_execution()
            .state_machine_arn(&self.machine)
            .name(&name)
            .input(input.to_string())
            .send()
            .await
            .expect("execution starts")
            .execution_arn;
        DecommissionState::from_value(json!({
            "Input": input,
            "Execution": {"Id": arn, "Name": name, "StartTime": "2026-11-28T10:00:00Z"}
        }))
        .expect("document")
    }

    /// Waits (at most 20 s) until execution `arn` is in state `name` (moto's interpreter);
    /// its position there.
    pub async fn wait_for_execution_state(
        &self,
        arn: &str,
        name: &str,
    ) -> kms_decommission::sfn::HistoryPosition {
        let runs = Executions::new(self.moto.sfn(), self.machine.clone(), None);
        let started = std::time::Instant::now();
        loop {
            let position = runs.position(arn).await.expect("history");
            match position {
                Some(position) if position.state == name => return position,
                other => assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "execution {arn} not in {name}: {other:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ends every run still RUNNING (moto executes nothing: a run whose step failed stays
    /// RUNNING until stopped), as Step Functions ends a run whose step failed.
    pub async fn end_runs(&self) {
        let listed = self
            .moto
            .sfn()
            .list_executions()
            .state_machine_arn(&self.machine)
            .status_filter(aws_sdk_sfn::types::ExecutionStatus::Running)
            .send()
            .await
            .expect("executions listed");
        for execution in listed.executions() {
            self.stop_run(execution.execution_arn()).await;
        }
    }

    /// Stops execution `arn` (as StopExecution by hand does).
    pub async fn stop_run(&self, arn: &str) {
        self.moto
            .sfn()
            .stop_execution()
            .execution_arn(arn)
            .error("StoppedByTest")
            .send()
            .await
            .expect("execution stops");
    }

    /// The items of one ledger partition, strings unwrapped, in sort key order.
    pub async fn ledger_items(&self, pk: &str) -> Vec<std::collections::BTreeMap<String, String>> {
        let answer = self
            .moto
            .dynamodb()
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
            .send()
            .await
            .expect("ledger query");
        answer
            .items()
            .iter()
            .map(|item| {
                item.iter()
                    .filter_map(|(k, v)| v.as_s().ok().map(|s| (k.clone(), s.clone())))
                    .collect()
            })
            .collect()
    }

    /// Every item of the run ledger, each attribute rendered with its type, in key order: two
    /// scans are equal only if nothing was added, removed or changed in between.
    pub async fn ledger_scan(&self) -> Vec<std::collections::BTreeMap<String, String>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .moto
                .dynamodb()
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("ledger scan");
            items.extend(page.items().iter().map(|item| {
                item.iter()
                    .map(|(k, v)| (k.clone(), format!("{v:?}")))
                    .collect::<std::collections::BTreeMap<_, _>>()
            }));
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        items.sort_by(|a, b| (a.get("pk"), a.get("sk")).cmp(&(b.get("pk"), b.get("sk"))));
        items
    }

    /// Name and status of every execution of `machine`, sorted by name.
    pub async fn execution_statuses(&self, machine: &str) -> Vec<(String, String)> {
        let listed = self
            .moto
            .sfn()
            .list_executions()
            .state_machine_arn(machine)
            .send()
            .await
            .expect("executions listed");
        let mut statuses: Vec<(String, String)> = listed
            .executions()
            .iter()
            .map(|e| (e.name().to_owned(), e.status().as_str().to_owned()))
            .collect();
        statuses.sort();
        statuses
    }

    /// A clock shifted like the emulator's (after `advance`).
    pub async fn clock(&self) -> Clock {
        let clock = self.admin_get("/_emulator/clock").await;
        let now = clock["now"].as_f64().expect("clock now");
        let system = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64();
        Clock::shifted((now - system).round() as i64)
    }

    pub async fn admin_get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.emulator.endpoint()))
            .send()
            .await
            .expect("admin GET");
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().await.expect("admin JSON")
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}{path}", self.emulator.endpoint()))
            .json(&body)
            .send()
            .await
            .expect("admin POST");
        let status = response.status();
        let value: Value = response.json().await.expect("admin JSON");
        assert!(status.is_success(), "POST {path}: {status} {value}");
        value
    }

    pub async fn admin_delete(&self, path: &str) {
        let response = self
            .http
            .delete(format!("{}{path}", self.emulator.endpoint()))
            .send()
            .await
            .expect("admin DELETE");
        assert!(response.status().is_success(), "DELETE {path}");
    }

    /// Moves emulated time forward by `seconds`.
    pub async fn advance(&self, seconds: f64) {
        self.admin_post("/_emulator/clock", json!({"advance_seconds": seconds}))
            .await;
    }

    /// Makes the next `count` calls of `operation` fail with `error`.
    pub async fn fault(&self, operation: &str, error: &str, count: u32) {
        self.admin_post(
            "/_emulator/faults",
            json!({"operation": operation, "error": error, "count": count}),
        )
        .await;
    }

    pub async fn force_state(&self, store_id: &str, body: Value) {
        self.admin_post(
            &format!("/_emulator/stores/{store_id}/connection-state"),
            body,
        )
        .await;
    }

    pub async fn set_config(&self, body: Value) {
        self.admin_post("/_emulator/config", body).await;
    }

    /// Uses a key the way an application does (Encrypt), so KMS records it as last used.
    pub async fn use_key(&self, key_id: &str) {
        self.kms
            .encrypt()
            .key_id(key_id)
            .plaintext(aws_sdk_kms::primitives::Blob::new("still in use"))
            .send()
            .await
            .expect("Encrypt");
    }

    /// Every call logged so far.
    pub async fn calls(&self) -> Vec<Call> {
        let log = self.admin_get("/_emulator/calls").await;
        log["calls"]
            .as_array()
            .expect("calls array")
            .iter()
            .map(|c| Call {
                operation: c["operation"].as_str().unwrap_or_default().to_string(),
                key_id: c["key_id"].as_str().map(str::to_string),
                custom_key_store_id: c["custom_key_store_id"].as_str().map(str::to_string),
                outcome: c["outcome"].as_str().unwrap_or_default().to_string(),
            })
            .collect()
    }

    pub async fn clear_calls(&self) {
        self.admin_delete("/_emulator/calls").await;
    }

    /// Mutating calls logged since the last clear.
    pub async fn mutating_calls(&self) -> Vec<Call> {
        self.calls()
            .await
            .into_iter()
            .filter(Call::is_mutating)
            .collect()
    }

    /// Successful calls of `operation` since the last clear.
    pub async fn count_ok(&self, operation: &str) -> usize {
        self.calls()
            .await
            .iter()
            .filter(|c| c.operation == operation && c.outcome == "OK")
            .count()
    }

    /// Creates a CloudHSM store and connects it.
    pub async fn cloudhsm_store(&self, name: &str) -> String {
        let id = self
            .kms
            .create_custom_key_store()
            .custom_key_store_name(name)
            .custom_key_store_type(CustomKeyStoreType::AwsCloudhsm)
            .cloud_hsm_cluster_id(cluster_id_for(name))
            .trust_anchor_certificate("-----BEGIN CERTIFICATE-----test-----END CERTIFICATE-----")
            .key_store_password("kmsuser-password")
            .send()
            .await
            .expect("CreateCustomKeyStore")
            .custom_key_store_id
            .expect("store id");
        self.connect(&id).await;
        id
    }

    /// Creates an external key store and connects it.
    pub async fn xks_store(&self, name: &str) -> String {
        let id = self
            .kms
            .create_custom_key_store()
            .custom_key_store_name(name)
            .custom_key_store_type(CustomKeyStoreType::ExternalKeyStore)
            .xks_proxy_uri_endpoint("https://xks.example.com")
            .xks_proxy_uri_path("/kms/xks/v1")
            .xks_proxy_connectivity(XksProxyConnectivityType::PublicEndpoint)
            .xks_proxy_authentication_credential(
                XksProxyAuthenticationCredentialType::builder()
                    .access_key_id("ABCDEFGHIJKLMNOPQRST")
                    .raw_secret_access_key("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")
                    .build()
                    .expect("credential"),
            )
            .send()
            .await
            .expect("CreateCustomKeyStore")
            .custom_key_store_id
            .expect("store id");
        self.connect(&id).await;
        id
    }

    /// Connects a store and waits until CONNECTED.
    pub async fn connect(&self, store_id: &str) {
        self.kms
            .connect_custom_key_store()
            .custom_key_store_id(store_id)
            .send()
            .await
            .expect("ConnectCustomKeyStore");
        self.wait_for_state(store_id, "CONNECTED").await;
    }

    /// Polls until the store reaches `state` (emulated delays are milliseconds under fast time).
    pub async fn wait_for_state(&self, store_id: &str, state: &str) {
        for _ in 0..500 {
            if self.store_state(store_id).await == state {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("store {store_id} never reached {state}");
    }

    pub async fn store_state(&self, store_id: &str) -> String {
        let out = self
            .kms
            .describe_custom_key_stores()
            .custom_key_store_id(store_id)
            .send()
            .await
            .expect("DescribeCustomKeyStores");
        out.custom_key_stores()[0]
            .connection_state()
            .expect("state")
            .as_str()
            .to_string()
    }

    /// Creates a key in a custom key store (XKS keys get external key id `ext-<n>`).
    pub async fn store_key(&self, store_id: &str, origin: OriginType, n: usize) -> String {
        let mut create = self
            .kms
            .create_key()
            .custom_key_store_id(store_id)
            .origin(origin.clone());
        if origin == OriginType::ExternalKeyStore {
            create = create.xks_key_id(format!("ext-{n}"));
        }
        create
            .send()
            .await
            .expect("CreateKey in store")
            .key_metadata
            .expect("metadata")
            .key_id
    }

    /// Creates an ordinary AWS_KMS key.
    pub async fn plain_key(&self) -> String {
        self.kms
            .create_key()
            .send()
            .await
            .expect("CreateKey")
            .key_metadata
            .expect("metadata")
            .key_id
    }

    pub async fn describe_key(&self, key_id: &str) -> Option<KeyMetadata> {
        match self.kms.describe_key().key_id(key_id).send().await {
            Ok(out) => out.key_metadata,
            Err(e) => {
                let err = DecommissionError::from_sdk("DescribeKey", e);
                assert_eq!(err.error_type(), "NotFoundException", "{err}");
                None
            }
        }
    }

    pub async fn key_state(&self, key_id: &str) -> String {
        self.describe_key(key_id)
            .await
            .and_then(|m| m.key_state.map(|s| s.as_str().to_string()))
            .unwrap_or_else(|| "Deleted".to_string())
    }

    /// The key's decommission markers: (execution, prior state, ticket).
    pub async fn markers(&self, key_id: &str) -> (Option<String>, Option<String>, Option<String>) {
        let out = self
            .kms
            .list_resource_tags()
            .key_id(key_id)
            .send()
            .await
            .expect("ListResourceTags");
        let find = |k: &str| {
            out.tags()
                .iter()
                .find(|t| t.tag_key() == k)
                .map(|t| t.tag_value().to_string())
        };
        (
            find(MARKER_EXECUTION),
            find(MARKER_PRIOR_STATE),
            find(MARKER_TICKET),
        )
    }

    pub async fn disable(&self, key_id: &str) {
        self.kms
            .disable_key()
            .key_id(key_id)
            .send()
            .await
            .expect("DisableKey");
    }
}

/// A CloudHSM store "Prod" with `n` keys (the first one disabled), a second CloudHSM store with
/// two keys and two plain AWS_KMS keys; returns (store id, its keys, foreign keys).
pub async fn cloudhsm_fixture(env: &Env, n: usize) -> (String, Vec<String>, Vec<String>) {
    let store = env.cloudhsm_store("Prod").await;
    let mut keys = Vec::new();
    for i in 0..n {
        keys.push(env.store_key(&store, OriginType::AwsCloudhsm, i).await);
    }
    if let Some(first) = keys.first() {
        env.disable(first).await;
    }
    let other = env.cloudhsm_store("Other").await;
    let mut foreign = vec![
        env.store_key(&other, OriginType::AwsCloudhsm, 100).await,
        env.store_key(&other, OriginType::AwsCloudhsm, 101).await,
    ];
    foreign.push(env.plain_key().await);
    foreign.push(env.plain_key().await);
    (store, keys, foreign)
}

/// A cluster id unique to a store name (a cluster backs one store at a time), e.g. "Prod" ->
/// `cluster-prodxxxxxxx`.
pub fn cluster_id_for(name: &str) -> String {
    let letters: String = name
        .chars()
        .filter(char::is_ascii_alphabetic)
        .map(|c| c.to_ascii_lowercase())
        .chain(std::iter::repeat('x'))
        .take(11)
        .collect();
    format!("cluster-{letters}")
}

/// Asserts that no mutating call named any of `keys` (by key id).
pub fn assert_untouched(calls: &[Call], keys: &[String]) {
    let keys: BTreeSet<&str> = keys.iter().map(String::as_str).collect();
    let touched: Vec<&Call> = calls
        .iter()
        .filter(|c| c.is_mutating() && c.key_id.as_deref().is_some_and(|k| keys.contains(k)))
        .collect();
    assert!(
        touched.is_empty(),
        "mutating calls on foreign keys: {touched:?}"
    );
}

/// Creates the run ledger table as the template defines it (pk/sk strings).
pub async fn create_ledger_table(dynamodb: &aws_sdk_dynamodb::Client, table: &str) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("attribute")
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("key")
    };
    dynamodb
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("pk"))
        .attribute_definitions(attribute("sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .send()
        .await
        .expect("ledger table");
}

/// Input for a real run of `store_id` named `name`.
pub fn real_input(store_id: &str, name: &str) -> Value {
    json!({
        "CustomKeyStoreId": store_id,
        "ConfirmCustomKeyStoreName": name,
        "PendingWindowInDays": 7,
        "RequestedBy": "alice",
        "Reason": "retire the store",
        "TicketId": "CHG-42"
    })
}

/// Runs `steps` in order, each until done (see [`run_until_done`]); panics naming the step that
/// failed.
pub async fn run_steps(
    ctx: &StepContext,
    steps: &[Step],
    mut state: DecommissionState,
) -> DecommissionState {
    for step in steps {
        state = run_until_done(ctx, *step, state, far_deadline)
            .await
            .unwrap_or_else(|e| panic!("{step:?}: {}: {e}", e.error_type()))
            .0;
    }
    state
}

/// Plan, connect, schedule: the steps before the waiting period.
pub const UNTIL_SCHEDULED: [Step; 3] = [
    Step::PlanDecommission,
    Step::EnsureStoreConnected,
    Step::ScheduleKeyDeletion,
];

/// Runs `step` until its loop field says done, one invocation at a time, like the state
/// machine's Choice loops (waits are skipped: tests move the emulator clock instead).
pub async fn run_until_done(
    ctx: &StepContext,
    step: Step,
    mut state: DecommissionState,
    deadline: fn() -> Deadline,
) -> Result<(DecommissionState, usize), DecommissionError> {
    for invocation in 1..=1000 {
        state = step.run(ctx, state, deadline()).await?;
        let done = match step {
            Step::PlanDecommission => state.plan.as_ref().is_some_and(|p| p.done),
            Step::RequestApproval => true,
            Step::RecordApproval => state.approval.as_ref().is_some_and(|a| a.approved),
            Step::QuarantineStore => state
                .quarantine
                .as_ref()
                .is_some_and(|q| q.phase == kms_decommission::state::QuarantinePhase::Done),
            Step::EnsureStoreConnected => state.connection.as_ref().is_some_and(|c| c.ready),
            Step::ScheduleKeyDeletion => state.scheduling.as_ref().is_some_and(|s| s.done),
            Step::CheckKeysDeleted => state.deletion.as_ref().is_some_and(|d| d.scan_done),
            Step::DisconnectStore => state.disconnect.as_ref().is_some_and(|d| d.disconnected),
            Step::DeleteStore => state.report.is_some(),
        };
        if done {
            return Ok((state, invocation));
        }
        if matches!(
            step,
            Step::EnsureStoreConnected | Step::DisconnectStore | Step::QuarantineStore
        ) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    panic!("{step:?} never finished");
}
