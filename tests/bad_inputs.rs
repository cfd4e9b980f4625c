//! The catalogue of bad inputs (docs/bad-inputs.md): one table per entry point, each case fed to
//! the entry point the way AWS delivers it, on the local stack (the KMS emulator and moto's Step
//! Functions and DynamoDB, over HTTP with the real SDK clients). Every case must be answered with
//! its named error (the Lambda `errorType`, the tag trigger's outcome, the webhook's status and
//! `Error`) and change nothing: no mutating call in the emulator's call log, the run ledger
//! exactly as before, and (for the triggers and the cancel) no execution started or stopped.
//!
//! The tables are the catalogue: `the_catalogue_document_lists_every_case` checks that
//! docs/bad-inputs.md shows exactly these cases (`UPDATE_BAD_INPUTS_DOC=1` rewrites its tables).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use aws_lambda_events::http::HeaderValue;
use aws_lambda_events::lambda_function_urls::LambdaFunctionUrlRequest;
use aws_sdk_kms::types::{OriginType, Tag};
use base64::Engine as _;
use common::*;
use kms_decommission::bootstrap::LambdaFunction;
use kms_decommission::cancel::step::{handle as cancel_handle, CancelContext};
use kms_decommission::handler::handle as step_handle;
use kms_decommission::kms::Kms;
use kms_decommission::sfn::{Executions, RunMode};
use kms_decommission::steps::Step;
use kms_decommission::triggers::tag::{
    TagCallLookup, TagTrigger, TagTriggerConfig, CONFIRM_TAG_KEY, DEFAULT_TAG_KEY,
};
use kms_decommission::triggers::tagger::AllowedPrincipals;
use kms_decommission::triggers::webhook::secret::SecretCache;
use kms_decommission::triggers::webhook::signature::{WebhookSecret, DEFAULT_AUDIENCE};
use kms_decommission::triggers::webhook::{Webhook, MAX_BODY_BYTES};
use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// The catalogue's shape
// ---------------------------------------------------------------------------------------------

/// One bad input: its name (as docs/bad-inputs.md lists it), what it is, the named error the
/// entry point must answer, a text the answer's message must contain, and how to build it from
/// the entry point's fixture.
struct Case<F> {
    name: &'static str,
    what: &'static str,
    error: &'static str,
    mentions: &'static str,
    input: F,
}

fn case<X, T>(
    name: &'static str,
    what: &'static str,
    error: &'static str,
    mentions: &'static str,
    input: fn(&X) -> T,
) -> Case<fn(&X) -> T> {
    Case {
        name,
        what,
        error,
        mentions,
        input,
    }
}

/// What an entry point answered: the error name the user sees and its message, or what it
/// returned when it accepted the input.
enum Answer {
    Refused { name: String, message: String },
    Accepted(String),
}

impl From<Result<Value, Diagnostic>> for Answer {
    fn from(result: Result<Value, Diagnostic>) -> Self {
        match result {
            Ok(value) => Self::Accepted(value.to_string()),
            Err(d) => Self::Refused {
                name: d.error_type,
                message: d.error_message,
            },
        }
    }
}

/// The state that must not change: the ledger, and the executions of the given state machines.
struct Baseline {
    ledger: Vec<std::collections::BTreeMap<String, String>>,
    machines: Vec<String>,
    executions: Vec<Vec<(String, String)>>,
}

impl Baseline {
    async fn take(env: &Env, machines: &[&str]) -> Self {
        let mut executions = Vec::new();
        for machine in machines {
            executions.push(env.execution_statuses(machine).await);
        }
        Self {
            ledger: env.ledger_scan().await,
            machines: machines.iter().map(|m| m.to_string()).collect(),
            executions,
        }
    }
}

/// Checks one answer: the named error, its message, and that nothing changed (no mutating KMS
/// call since the case began, the ledger and the executions as in `baseline`). `kms_silent`:
/// the case must not reach KMS at all. Returns what is wrong, if anything.
async fn verdict<F>(
    env: &Env,
    baseline: &Baseline,
    case: &Case<F>,
    answer: Answer,
    kms_silent: bool,
) -> Option<String> {
    let mut wrong = Vec::new();
    match &answer {
        Answer::Accepted(output) => wrong.push(format!("accepted: {output}")),
        Answer::Refused { name, message } => {
            if name != case.error {
                wrong.push(format!(
                    "answered {name} ({message}), expected {}",
                    case.error
                ));
            } else if !message.contains(case.mentions) {
                wrong.push(format!("message {message:?} lacks {:?}", case.mentions));
            }
        }
    }
    let calls = env.calls().await;
    let mutating: Vec<String> = calls
        .iter()
        .filter(|c| c.is_mutating())
        .map(|c| format!("{} {}", c.operation, c.outcome))
        .collect();
    if !mutating.is_empty() {
        wrong.push(format!("mutating KMS calls: {mutating:?}"));
    }
    if kms_silent && !calls.is_empty() {
        let called: Vec<&str> = calls.iter().map(|c| c.operation.as_str()).collect();
        wrong.push(format!("reached KMS before refusing: {called:?}"));
    }
    let ledger = env.ledger_scan().await;
    if ledger != baseline.ledger {
        let changed: Vec<String> = ledger
            .iter()
            .filter(|item| !baseline.ledger.contains(item))
            .map(|item| format!("{:?} {:?}", item.get("pk"), item.get("sk")))
            .collect();
        wrong.push(format!(
            "the ledger changed ({} item(s) before, {} after; new or changed: {changed:?})",
            baseline.ledger.len(),
            ledger.len()
        ));
    }
    for (machine, before) in baseline.machines.iter().zip(&baseline.executions) {
        let now = env.execution_statuses(machine).await;
        if &now != before {
            wrong.push(format!("executions changed: {before:?} -> {now:?}"));
        }
    }
    (!wrong.is_empty()).then(|| format!("{}: {}", case.name, wrong.join("; ")))
}

fn report(entry_point: &str, total: usize, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} of {total} {entry_point} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn event(payload: Value) -> LambdaEvent<Value> {
    LambdaEvent::new(payload, Context::default())
}

/// `base` (an object) with the fields of `extra` set (a null removes the field).
fn with(base: Value, extra: Value) -> Value {
    let mut out = base;
    if let (Some(map), Value::Object(extra)) = (out.as_object_mut(), extra) {
        for (k, v) in extra {
            if v.is_null() {
                map.remove(&k);
            } else {
                map.insert(k, v);
            }
        }
    }
    out
}

/// `doc` with the value at JSON pointer `pointer` replaced (parents created as objects).
fn set(doc: &Value, pointer: &str, value: Value) -> Value {
    let mut out = doc.clone();
    let mut at = &mut out;
    let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        if !at.is_object() {
            *at = json!({});
        }
        let map = at.as_object_mut().expect("object");
        if i + 1 == parts.len() {
            map.insert(part.to_string(), value);
            break;
        }
        at = map.entry(part.to_string()).or_insert_with(|| json!({}));
    }
    out
}

/// `doc` without the field at JSON pointer `pointer`.
fn remove(doc: &Value, pointer: &str) -> Value {
    let mut out = doc.clone();
    let (parent, field) = pointer.rsplit_once('/').expect("pointer");
    if let Some(map) = out.pointer_mut(parent).and_then(Value::as_object_mut) {
        map.remove(field);
    }
    out
}

/// A store id whose `c` is the Cyrillic `с` (U+0441), otherwise the same.
fn cyrillic_c(store: &str) -> String {
    store.replacen('c', "\u{441}", 1)
}

const STORE_NAME: &str = "Prod";
const UNKNOWN_STORE: &str = "cks-0123456789abcdef0";

// ---------------------------------------------------------------------------------------------
// 1. The console's execution input (plan-decommission)
// ---------------------------------------------------------------------------------------------

struct ConsoleFx {
    store: String,
}

/// A valid real-run input for the fixture's store.
fn console_real(f: &ConsoleFx) -> Value {
    json!({
        "CustomKeyStoreId": f.store,
        "ConfirmCustomKeyStoreName": STORE_NAME,
        "PendingWindowInDays": 30,
        "RequestedBy": "alice",
        "Reason": "retire the store",
        "TicketId": "CHG-42"
    })
}

/// The console table: cases built from [`ConsoleFx`].
type ConsoleCase = Case<fn(&ConsoleFx) -> Value>;

fn console_cases() -> Vec<ConsoleCase> {
    vec![
        case("input_array", "the input is a JSON array holding the store id", "InvalidInput", "field $", |f| json!([f.store])),
        case("input_string", "the input is the bare store id string", "InvalidInput", "field $", |f| json!(f.store)),
        case("input_null", "the input is null", "InvalidInput", "field $", |_| Value::Null),
        case("input_empty", "{} (no field at all)", "InvalidInput", "field CustomKeyStoreId", |_| json!({})),
        case("store_id_missing", "a real run's fields without CustomKeyStoreId", "InvalidInput", "field CustomKeyStoreId", |f| with(console_real(f), json!({"CustomKeyStoreId": null}))),
        case("store_id_number", "CustomKeyStoreId is the number 1234567890", "InvalidInput", "must be a string, got a number", |f| with(console_real(f), json!({"CustomKeyStoreId": 1_234_567_890}))),
        case("store_id_cyrillic", "CustomKeyStoreId `сks-...` with a Cyrillic `с` (U+0441)", "InvalidInput", "field CustomKeyStoreId", |f| with(console_real(f), json!({"CustomKeyStoreId": cyrillic_c(&f.store)}))),
        case("store_id_fullwidth_digits", "CustomKeyStoreId `cks-` and fullwidth digits `１２３...`", "InvalidInput", "field CustomKeyStoreId", |f| with(console_real(f), json!({"CustomKeyStoreId": "cks-\u{ff11}\u{ff12}\u{ff13}\u{ff14}\u{ff15}\u{ff16}\u{ff17}\u{ff18}"}))),
        case("store_id_zero_width_space", "CustomKeyStoreId with a zero-width space (U+200B) after `cks-`", "InvalidInput", "field CustomKeyStoreId", |f| with(console_real(f), json!({"CustomKeyStoreId": f.store.replacen("cks-", "cks-\u{200b}", 1)}))),
        case("store_id_uppercase", "CustomKeyStoreId `CKS-...`", "InvalidInput", "field CustomKeyStoreId", |f| with(console_real(f), json!({"CustomKeyStoreId": f.store.to_uppercase()}))),
        case("store_id_trailing_newline", "CustomKeyStoreId followed by a newline", "InvalidInput", "field CustomKeyStoreId", |f| with(console_real(f), json!({"CustomKeyStoreId": format!("{}\n", f.store)}))),
        case("store_id_nul", "CustomKeyStoreId with a NUL character", "InvalidInput", "field CustomKeyStoreId", |f| with(console_real(f), json!({"CustomKeyStoreId": format!("{}\u{0}", f.store)}))),
        case("store_id_path", "CustomKeyStoreId `cks-../other`", "InvalidInput", "field CustomKeyStoreId", |f| with(console_real(f), json!({"CustomKeyStoreId": "cks-../other"}))),
        case("store_id_oversize", "CustomKeyStoreId `cks-` and 61 digits (65 characters)", "InvalidInput", "field CustomKeyStoreId", |f| with(console_real(f), json!({"CustomKeyStoreId": format!("cks-{}", "1".repeat(61))}))),
        case("store_unknown", "a well-formed CustomKeyStoreId that no store has", "CustomKeyStoreNotFoundException", "", |f| with(console_real(f), json!({"CustomKeyStoreId": UNKNOWN_STORE}))),
        case("confirmation_missing", "a real run without ConfirmCustomKeyStoreName", "InvalidInput", "field ConfirmCustomKeyStoreName", |f| with(console_real(f), json!({"ConfirmCustomKeyStoreName": null}))),
        case("confirmation_empty", "ConfirmCustomKeyStoreName `\"\"`", "InvalidInput", "field ConfirmCustomKeyStoreName", |f| with(console_real(f), json!({"ConfirmCustomKeyStoreName": ""}))),
        case("confirmation_oversize", "ConfirmCustomKeyStoreName of 257 characters", "InvalidInput", "field ConfirmCustomKeyStoreName", |f| with(console_real(f), json!({"ConfirmCustomKeyStoreName": "P".repeat(257)}))),
        case("confirmation_case", "ConfirmCustomKeyStoreName `prod` for the store `Prod`", "ConfirmationMismatch", "nothing was changed", |f| with(console_real(f), json!({"ConfirmCustomKeyStoreName": "prod"}))),
        case("confirmation_cyrillic", "ConfirmCustomKeyStoreName `Рrod` with a Cyrillic `Р` (U+0420)", "ConfirmationMismatch", "nothing was changed", |f| with(console_real(f), json!({"ConfirmCustomKeyStoreName": "\u{420}rod"}))),
        case("confirmation_trailing_space", "ConfirmCustomKeyStoreName `Prod ` (trailing space)", "ConfirmationMismatch", "nothing was changed", |f| with(console_real(f), json!({"ConfirmCustomKeyStoreName": "Prod "}))),
        case("confirmation_zero_width", "ConfirmCustomKeyStoreName `Pro<U+200B>d`", "ConfirmationMismatch", "nothing was changed", |f| with(console_real(f), json!({"ConfirmCustomKeyStoreName": "Pro\u{200b}d"}))),
        case("confirmation_wrong_in_dry_run", "a dry run whose ConfirmCustomKeyStoreName is wrong", "ConfirmationMismatch", "nothing was changed", |f| with(console_real(f), json!({"DryRun": true, "ConfirmCustomKeyStoreName": "Other"}))),
        case("dry_run_string", "DryRun `\"false\"` (a string)", "InvalidInput", "field DryRun", |f| with(console_real(f), json!({"DryRun": "false"}))),
        case("dry_run_number", "DryRun `0`", "InvalidInput", "field DryRun", |f| with(console_real(f), json!({"DryRun": 0}))),
        case("dry_run_misspelt", "`Dryrun: true` (unknown field)", "InvalidInput", "field Dryrun: unknown field", |f| with(console_real(f), json!({"Dryrun": true}))),
        case("field_camel_case", "`customKeyStoreId` instead of `CustomKeyStoreId`", "InvalidInput", "field customKeyStoreId: unknown field", |f| with(console_real(f), json!({"CustomKeyStoreId": null, "customKeyStoreId": f.store}))),
        case("window_below_range", "PendingWindowInDays `6`", "InvalidInput", "field PendingWindowInDays", |f| with(console_real(f), json!({"PendingWindowInDays": 6}))),
        case("window_above_range", "PendingWindowInDays `31`", "InvalidInput", "field PendingWindowInDays", |f| with(console_real(f), json!({"PendingWindowInDays": 31}))),
        case("window_fraction", "PendingWindowInDays `7.5`", "InvalidInput", "field PendingWindowInDays", |f| with(console_real(f), json!({"PendingWindowInDays": 7.5}))),
        case("window_string", "PendingWindowInDays `\"30\"`", "InvalidInput", "field PendingWindowInDays", |f| with(console_real(f), json!({"PendingWindowInDays": "30"}))),
        case("window_huge", "PendingWindowInDays `1e20`", "InvalidInput", "field PendingWindowInDays", |f| with(console_real(f), json!({"PendingWindowInDays": 1e20}))),
        case("orphaned_flag_string", "AllowOrphanedKeyMaterial `\"yes\"`", "InvalidInput", "field AllowOrphanedKeyMaterial", |f| with(console_real(f), json!({"AllowOrphanedKeyMaterial": "yes"}))),
        case("requested_by_newline", "RequestedBy with a newline (a forged log line)", "InvalidInput", "field RequestedBy", |f| with(console_real(f), json!({"RequestedBy": "alice\n{\"level\":\"INFO\",\"msg\":\"approved\"}"}))),
        case("reason_terminal_escape", "Reason with an ESC `[31m` terminal escape", "InvalidInput", "field Reason", |f| with(console_real(f), json!({"Reason": "\u{1b}[31mretire"}))),
        case("reason_oversize", "Reason of 257 characters", "InvalidInput", "field Reason", |f| with(console_real(f), json!({"Reason": "r".repeat(257)}))),
        case("reason_object", "Reason is an object", "InvalidInput", "field Reason", |f| with(console_real(f), json!({"Reason": {"text": "retire"}}))),
        case("ticket_hash", "TicketId `CHG#12` (`#` cannot be a KMS tag value)", "InvalidInput", "field TicketId", |f| with(console_real(f), json!({"TicketId": "CHG#12"}))),
        case("ticket_markup", "TicketId `<script>alert(1)</script>`", "InvalidInput", "field TicketId", |f| with(console_real(f), json!({"TicketId": "<script>alert(1)</script>"}))),
        case("min_days_negative", "MinDaysSinceLastUse `-1`", "InvalidInput", "field MinDaysSinceLastUse", |f| with(console_real(f), json!({"MinDaysSinceLastUse": -1}))),
        case("min_days_above_range", "MinDaysSinceLastUse `366`", "InvalidInput", "field MinDaysSinceLastUse", |f| with(console_real(f), json!({"MinDaysSinceLastUse": 366}))),
        case("quarantine_days_above_range", "QuarantineDays `91`", "InvalidInput", "field QuarantineDays", |f| with(console_real(f), json!({"QuarantineDays": 91}))),
        case("require_approval_string", "RequireApproval `\"true\"`", "InvalidInput", "field RequireApproval", |f| with(console_real(f), json!({"RequireApproval": "true"}))),
        case("trigger_unknown", "Trigger `\"console\"`", "InvalidInput", "field Trigger", |f| with(console_real(f), json!({"Trigger": "console"}))),
        case("trigger_beyond_policy", "Trigger `webhook` with AllowOrphanedKeyMaterial true, which the stack's policy forbids a trigger", "PolicyViolation", "AllowOrphanedKeyMaterial", |f| with(console_real(f), json!({"Trigger": "webhook", "AllowOrphanedKeyMaterial": true}))),
        case("approval_without_requester", "RequireApproval true without RequestedBy", "InvalidInput", "field RequestedBy", |f| with(console_real(f), json!({"RequireApproval": true, "RequestedBy": null}))),
    ]
}

#[tokio::test]
async fn bad_console_inputs_are_refused_by_name_and_change_nothing() {
    let env = Env::start().await;
    let store = env.cloudhsm_store(STORE_NAME).await;
    for n in 0..2 {
        env.store_key(&store, OriginType::AwsCloudhsm, n).await;
    }
    let fx = ConsoleFx { store };
    let ctx = Ok(env.context(test_config()).await);
    let baseline = Baseline::take(&env, &[]).await;
    let cases = console_cases();
    let mut failures = Vec::new();
    for case in &cases {
        env.clear_calls().await;
        // Started from the console: the execution holds this input; its Initialize state hands
        // plan-decommission the document.
        let document = env.start_run((case.input)(&fx)).await;
        let payload = document.to_value().expect("document");
        let answer = step_handle(&ctx, Step::PlanDecommission, event(payload)).await;
        let silent = case.error == "InvalidInput" && !case.name.starts_with("approval_");
        failures.extend(verdict(&env, &baseline, case, answer.into(), silent).await);
    }
    report("console input", cases.len(), &failures);
}

// ---------------------------------------------------------------------------------------------
// 2. The cancel input (cancel-decommission)
// ---------------------------------------------------------------------------------------------

struct CancelFx {
    store: String,
    /// A running decommission of `store`.
    running: String,
    /// A running decommission of another store.
    other_running: String,
    /// An execution of another state machine whose input names `store`.
    foreign: String,
    /// The decommission state machine.
    machine: String,
}

/// A cancel document (as the cancel state machine's Initialize state writes it) for `input`.
fn cancel_document(input: Value) -> Value {
    json!({
        "Input": input,
        "Execution": {
            "Id": "arn:aws:states:us-east-1:123456789012:execution:cancel:CHG-42-cancel",
            "Name": "CHG-42-cancel"
        }
    })
}

/// A cancel input for the running decommission of the fixture's store.
fn cancel_input(f: &CancelFx) -> Value {
    json!({
        "CustomKeyStoreId": f.store,
        "DecommissionExecutionArn": f.running,
        "TicketId": "CHG-42",
        "RequestedBy": "bob",
        "Reason": "withdrawn"
    })
}

/// A cancel document whose `Cancel` section claims the first invocation ran (it stops the
/// decommission) and the settle time has passed: the next invocation would restore and finish.
fn cancel_forged_progress(f: &CancelFx) -> Value {
    set(
        &cancel_document(cancel_input(f)),
        "/Cancel",
        json!({
            "DecommissionStatus": "RUNNING", "StoppedByThisCancel": true,
            "SettleUntil": "2000-01-01T00:00:00Z", "StoreDeleted": false, "Cursor": null,
            "ScanStartedAt": null, "ScanRestored": 0, "Scans": 0, "KeysRestored": 0,
            "KeysDeletionCancelled": 0, "KeysReEnabled": 0, "KeysReEnabledOnReconnect": 0,
            "KeysPriorStateUnknown": 0, "KeysGone": 0, "Keys": [], "KeysTruncated": false,
            "Done": false, "WaitRequired": false, "WaitSeconds": 0
        }),
    )
}

/// The cancel table: cancel documents built from [`CancelFx`].
type CancelCase = Case<fn(&CancelFx) -> Value>;

fn cancel_cases() -> Vec<CancelCase> {
    vec![
        case("document_array", "the document is a JSON array", "InvalidStateDocument", "not a cancel document", |_| json!([1])),
        case("document_cancel_section_wrong_type", "a valid input with `Cancel.Done: \"yes\"`", "InvalidStateDocument", "not a cancel document", |f| set(&cancel_document(cancel_input(f)), "/Cancel", json!({"Done": "yes"}))),
        case("input_missing", "a document without Input", "InvalidInput", "field $", |_| remove(&cancel_document(json!({})), "/Input")),
        case("input_string", "Input is the execution ARN as a string", "InvalidInput", "field $", |f| cancel_document(json!(f.running))),
        case("store_id_missing", "no CustomKeyStoreId", "InvalidInput", "field CustomKeyStoreId", |f| cancel_document(with(cancel_input(f), json!({"CustomKeyStoreId": null})))),
        case("execution_arn_missing", "no DecommissionExecutionArn", "InvalidInput", "field DecommissionExecutionArn", |f| cancel_document(with(cancel_input(f), json!({"DecommissionExecutionArn": null})))),
        case("store_id_cyrillic", "CustomKeyStoreId `сks-...` with a Cyrillic `с`", "InvalidInput", "field CustomKeyStoreId", |f| cancel_document(with(cancel_input(f), json!({"CustomKeyStoreId": cyrillic_c(&f.store)})))),
        case("store_id_number", "CustomKeyStoreId is a number", "InvalidInput", "field CustomKeyStoreId", |f| cancel_document(with(cancel_input(f), json!({"CustomKeyStoreId": 42})))),
        case("store_id_trailing_newline", "CustomKeyStoreId followed by a newline", "InvalidInput", "field CustomKeyStoreId", |f| cancel_document(with(cancel_input(f), json!({"CustomKeyStoreId": format!("{}\n", f.store)})))),
        case("execution_arn_of_state_machine", "DecommissionExecutionArn is the state machine's ARN", "InvalidInput", "field DecommissionExecutionArn", |f| cancel_document(with(cancel_input(f), json!({"DecommissionExecutionArn": f.machine})))),
        case("execution_arn_of_lambda", "DecommissionExecutionArn is a Lambda function ARN", "InvalidInput", "field DecommissionExecutionArn", |f| cancel_document(with(cancel_input(f), json!({"DecommissionExecutionArn": "arn:aws:lambda:us-east-1:123456789012:function:delete-store"})))),
        case("execution_arn_cyrillic", "DecommissionExecutionArn with a Cyrillic `ѕ` (U+0455) in `states`", "InvalidInput", "field DecommissionExecutionArn", |f| cancel_document(with(cancel_input(f), json!({"DecommissionExecutionArn": f.running.replacen("states", "\u{455}tates", 1)})))),
        case("execution_arn_oversize", "DecommissionExecutionArn of 300 characters", "InvalidInput", "field DecommissionExecutionArn", |f| cancel_document(with(cancel_input(f), json!({"DecommissionExecutionArn": format!("{}{}", f.running, "x".repeat(300 - f.running.len()))})))),
        case("execution_arn_newline", "DecommissionExecutionArn with a newline", "InvalidInput", "field DecommissionExecutionArn", |f| cancel_document(with(cancel_input(f), json!({"DecommissionExecutionArn": format!("{}\nforged", f.running)})))),
        case("execution_of_other_machine", "an execution of another state machine", "InvalidInput", "is not an execution of the decommission state machine", |f| cancel_document(with(cancel_input(f), json!({"DecommissionExecutionArn": f.foreign})))),
        case("execution_other_account", "the execution's ARN with another account", "InvalidInput", "is not an execution of the decommission state machine", |f| cancel_document(with(cancel_input(f), json!({"DecommissionExecutionArn": f.running.replacen("123456789012", "999999999999", 1)})))),
        case("execution_other_region", "the execution's ARN in another Region", "InvalidInput", "is not an execution of the decommission state machine", |f| cancel_document(with(cancel_input(f), json!({"DecommissionExecutionArn": f.running.replacen("us-east-1", "eu-west-1", 1)})))),
        case("execution_unknown", "a well-formed execution of the decommission state machine that does not exist", "DecommissionExecutionNotFound", "nothing was changed", |f| cancel_document(with(cancel_input(f), json!({"DecommissionExecutionArn": format!("{}-never-started", f.running)})))),
        case("execution_of_other_store", "the running decommission of another store", "InvalidInput", "nothing was changed", |f| cancel_document(with(cancel_input(f), json!({"DecommissionExecutionArn": f.other_running})))),
        case("unknown_field", "`Force: true` (unknown field)", "InvalidInput", "field Force: unknown field", |f| cancel_document(with(cancel_input(f), json!({"Force": true})))),
        case("field_misspelt", "`DecommissionExecutionARN` (wrong case)", "InvalidInput", "field DecommissionExecutionARN: unknown field", |f| cancel_document(with(cancel_input(f), json!({"DecommissionExecutionArn": null, "DecommissionExecutionARN": f.running})))),
        case("requested_by_terminal_escape", "RequestedBy with an ESC terminal escape", "InvalidInput", "field RequestedBy", |f| cancel_document(with(cancel_input(f), json!({"RequestedBy": "bob\u{1b}[2J"})))),
        case("reason_oversize", "Reason of 257 characters", "InvalidInput", "field Reason", |f| cancel_document(with(cancel_input(f), json!({"Reason": "r".repeat(257)})))),
        case("ticket_number", "TicketId is a number", "InvalidInput", "field TicketId", |f| cancel_document(with(cancel_input(f), json!({"TicketId": 42})))),
        case("cancel_section_forged", "a valid input and a `Cancel` section claiming the decommission was stopped and the settle time is over, while it still runs", "InvalidStateDocument", "but it is RUNNING", cancel_forged_progress),
    ]
}

#[tokio::test]
async fn bad_cancel_inputs_are_refused_by_name_and_change_nothing() {
    let env = Env::start().await;
    let store = env.cloudhsm_store(STORE_NAME).await;
    for n in 0..2 {
        env.store_key(&store, OriginType::AwsCloudhsm, n).await;
    }
    let other = env.cloudhsm_store("Other").await;
    // The decommission to cancel has scheduled the store's keys (and recorded them): a cancel
    // that went ahead would restore them.
    let input = with(
        real_input(&store, STORE_NAME),
        json!({"PendingWindowInDays": 30}),
    );
    let step_ctx = env.context(test_config()).await;
    let running = run_steps(&step_ctx, &UNTIL_SCHEDULED, env.start_run(input).await).await;
    let other_running = env.start_run(real_input(&other, "Other")).await;
    let foreign_machine = env.moto.create_state_machine("not-decommission").await;
    let foreign = env
        .moto
        .sfn()
        .start_execution()
        .state_machine_arn(&foreign_machine)
        .name("run-1")
        .input(real_input(&store, STORE_NAME).to_string())
        .send()
        .await
        .expect("execution starts")
        .execution_arn;
    let fx = CancelFx {
        store,
        running: running.execution_id().expect("id").to_owned(),
        other_running: other_running.execution_id().expect("id").to_owned(),
        foreign,
        machine: env.machine.clone(),
    };
    let ctx = Ok(CancelContext {
        step: env.context(test_config()).await,
        settle: Duration::ZERO,
    });
    let baseline = Baseline::take(&env, &[&env.machine, &foreign_machine]).await;
    let cases = cancel_cases();
    let mut failures = Vec::new();
    for case in &cases {
        env.clear_calls().await;
        let answer = cancel_handle(&ctx, event((case.input)(&fx))).await;
        failures.extend(verdict(&env, &baseline, case, answer.into(), true).await);
    }
    report("cancel input", cases.len(), &failures);
}

// ---------------------------------------------------------------------------------------------
// 3. The state document each step is handed
// ---------------------------------------------------------------------------------------------

struct DocFx {
    /// The document of a real run of the store, scheduled and waiting (its execution RUNNING and
    /// holding the store's lock).
    real: Value,
    store: String,
    /// A stopped run of the store.
    stopped: String,
    /// The running run of another store (planned, holding that store's lock).
    other_run: String,
    /// An execution of another state machine with the real run's input.
    foreign: String,
}

/// The real run's document with its execution replaced.
fn doc_with_execution(f: &DocFx, arn: &str) -> Value {
    set(&f.real, "/Execution/Id", json!(arn))
}

/// The real run's document claiming every step before `delete-store` is done.
fn doc_claiming_all_done(f: &DocFx) -> Value {
    let doc = set(
        &f.real,
        "/Deletion",
        json!({"ScanDone": true, "AllDeleted": true}),
    );
    set(
        &doc,
        "/Disconnect",
        json!({"Disconnected": true, "ConnectionState": "DISCONNECTED", "PollAfterSeconds": 0}),
    )
}

/// The state document table: a step and the document it is handed, built from [`DocFx`].
type DocumentCase = Case<fn(&DocFx) -> (Step, Value)>;

fn document_cases() -> Vec<DocumentCase> {
    use Step::*;
    vec![
        case("array", "schedule-key-deletion: the payload is a JSON array", "InvalidStateDocument", "not a JSON object", |_| (ScheduleKeyDeletion, json!([1, 2]))),
        case("null", "check-keys-deleted: the payload is null", "InvalidStateDocument", "not a JSON object", |_| (CheckKeysDeleted, Value::Null)),
        case("plan_done_string", "ensure-store-connected: `Plan.Done: \"yes\"`", "InvalidStateDocument", "Plan.Done", |f| (EnsureStoreConnected, set(&f.real, "/Plan/Done", json!("yes")))),
        case("execution_id_number", "schedule-key-deletion: `Execution.Id: 42`", "InvalidStateDocument", "Execution.Id", |f| (ScheduleKeyDeletion, set(&f.real, "/Execution/Id", json!(42)))),
        case("window_string", "schedule-key-deletion: `Request.PendingWindowInDays: \"30\"`", "InvalidStateDocument", "Request.PendingWindowInDays", |f| (ScheduleKeyDeletion, set(&f.real, "/Request/PendingWindowInDays", json!("30")))),
        case("connection_state_number", "schedule-key-deletion: `Connection.ConnectionState: 1`", "InvalidStateDocument", "Connection.ConnectionState", |f| (ScheduleKeyDeletion, set(&f.real, "/Connection/ConnectionState", json!(1)))),
        case("wait_until_not_a_time", "check-keys-deleted: `Scheduling.WaitUntil: \"tomorrow\"`", "InvalidStateDocument", "Scheduling.WaitUntil", |f| (CheckKeysDeleted, set(&f.real, "/Scheduling/WaitUntil", json!("tomorrow")))),
        case("timestamp_month_13", "check-keys-deleted: `Scheduling.EarliestDeletionDate: \"2026-13-01T00:00:00Z\"`", "InvalidStateDocument", "Scheduling.EarliestDeletionDate", |f| (CheckKeysDeleted, set(&f.real, "/Scheduling/EarliestDeletionDate", json!("2026-13-01T00:00:00Z")))),
        case("quarantine_phase_unknown", "quarantine-store: `Quarantine.Phase: \"Skipped\"`", "InvalidStateDocument", "Quarantine.Phase", |f| (QuarantineStore, set(&f.real, "/Quarantine/Phase", json!("Skipped")))),
        case("count_negative", "check-keys-deleted: `Scheduling.KeysScheduled: -1`", "InvalidStateDocument", "Scheduling.KeysScheduled", |f| (CheckKeysDeleted, set(&f.real, "/Scheduling/KeysScheduled", json!(-1)))),
        case("count_overflow", "schedule-key-deletion: `Plan.KeysScanned: 1e30`", "InvalidStateDocument", "Plan.KeysScanned", |f| (ScheduleKeyDeletion, set(&f.real, "/Plan/KeysScanned", json!(1e30)))),
        case("section_truncated", "check-keys-deleted: `Scheduling` without its `Done`", "InvalidStateDocument", "Done", |f| (CheckKeysDeleted, remove(&f.real, "/Scheduling/Done"))),
        case("section_array", "disconnect-store: `Deletion: []`", "InvalidStateDocument", "Deletion", |f| (DisconnectStore, set(&f.real, "/Deletion", json!([])))),
        case("request_missing", "schedule-key-deletion: no `Request`", "InvalidStateDocument", "no Request section", |f| (ScheduleKeyDeletion, remove(&f.real, "/Request"))),
        case("store_missing", "ensure-store-connected: no `Store`", "InvalidStateDocument", "no Store section", |f| (EnsureStoreConnected, remove(&f.real, "/Store"))),
        case("store_differs", "schedule-key-deletion: `Store.CustomKeyStoreId` is another store", "InvalidStateDocument", "differs from Request.CustomKeyStoreId", |f| (ScheduleKeyDeletion, set(&f.real, "/Store/CustomKeyStoreId", json!(UNKNOWN_STORE)))),
        case("dry_run", "schedule-key-deletion: `Request.DryRun: true`", "InvalidStateDocument", "Request.DryRun is true", |f| (ScheduleKeyDeletion, set(&f.real, "/Request/DryRun", json!(true)))),
        case("plan_not_done", "ensure-store-connected: `Plan.Done: false`", "InvalidStateDocument", "Plan.Done is not true", |f| (EnsureStoreConnected, set(&f.real, "/Plan/Done", json!(false)))),
        case("not_connected", "schedule-key-deletion: `Connection.Ready: false`", "InvalidStateDocument", "Connection.Ready is not true", |f| (ScheduleKeyDeletion, set(&f.real, "/Connection/Ready", json!(false)))),
        case("not_all_deleted", "disconnect-store: `Deletion.AllDeleted: false`", "InvalidStateDocument", "Deletion.AllDeleted is not true", |f| (DisconnectStore, set(&f.real, "/Deletion", json!({"ScanDone": true, "AllDeleted": false})))),
        case("not_disconnected", "delete-store: `Disconnect.Disconnected: false`", "InvalidStateDocument", "Disconnect.Disconnected is not true", |f| (DeleteStore, set(&doc_claiming_all_done(f), "/Disconnect/Disconnected", json!(false)))),
        case("not_approved", "ensure-store-connected: `Approval.Required: true`, not approved", "InvalidStateDocument", "Approval.Approved is not true", |f| (EnsureStoreConnected, set(&f.real, "/Approval", json!({"Required": true, "TimeoutSeconds": 60})))),
        case("quarantine_not_done", "ensure-store-connected: `Quarantine.Required: true`, `Phase: Watching`", "InvalidStateDocument", "Quarantine.Phase is not Done", |f| (EnsureStoreConnected, set(&f.real, "/Quarantine", json!({"Required": true, "Days": 7, "Phase": "Watching"})))),
        case("no_quarantine", "quarantine-store: `Quarantine.Required: false`", "InvalidStateDocument", "Quarantine.Required is not true", |f| (QuarantineStore, f.real.clone())),
        case("approval_not_required", "record-approval: `Approval.Required: false`", "InvalidStateDocument", "Approval.Required is not true", |f| (RecordApproval, f.real.clone())),
        case("approval_unwrapped", "request-approval: the document without its `{Document, TaskToken}` wrapper", "InvalidStateDocument", "TaskToken", |f| (RequestApproval, f.real.clone())),
        case("approval_token_number", "request-approval: `TaskToken: 7`", "InvalidStateDocument", "TaskToken", |f| (RequestApproval, json!({"Document": f.real, "TaskToken": 7}))),
        case("execution_missing", "check-keys-deleted: no `Execution`", "InvalidStateDocument", "no Execution.Id", |f| (CheckKeysDeleted, remove(&f.real, "/Execution"))),
        case("execution_made_up", "schedule-key-deletion: `Execution.Id` of an execution that was never started", "NotTheRunningDecommission", "Step Functions has no such execution", |f| (ScheduleKeyDeletion, doc_with_execution(f, &format!("{}-forged", f.real["Execution"]["Id"].as_str().unwrap_or_default())))),
        case("execution_not_an_arn", "schedule-key-deletion: `Execution.Id: \"run-1\"`", "InvalidStateDocument", "Execution.Id", |f| (ScheduleKeyDeletion, doc_with_execution(f, "run-1"))),
        case("execution_cyrillic", "schedule-key-deletion: `Execution.Id` with a Cyrillic `ѕ` in `states`", "InvalidStateDocument", "Execution.Id", |f| (ScheduleKeyDeletion, doc_with_execution(f, &f.real["Execution"]["Id"].as_str().unwrap_or_default().replacen("states", "\u{455}tates", 1)))),
        case("execution_stopped", "check-keys-deleted: a stopped run of the store", "NotTheRunningDecommission", "the execution is ABORTED", |f| (CheckKeysDeleted, doc_with_execution(f, &f.stopped))),
        case("execution_other_store", "disconnect-store, every step claimed done: the running run of another store", "NotTheRunningDecommission", "nothing was changed", |f| (DisconnectStore, set(&doc_claiming_all_done(f), "/Execution/Id", json!(f.other_run)))),
        case("execution_other_machine", "delete-store, every step claimed done: an execution of another state machine", "NotTheRunningDecommission", "not of this stack's decommission state machine", |f| (DeleteStore, set(&doc_claiming_all_done(f), "/Execution/Id", json!(f.foreign)))),
        case("request_differs", "schedule-key-deletion: `Request.MinDaysSinceLastUse: 0` (the run asked for 30)", "NotTheRunningDecommission", "differs from the input the execution was started with", |f| (ScheduleKeyDeletion, set(&f.real, "/Request/MinDaysSinceLastUse", json!(0)))),
        case("request_store_cyrillic", "schedule-key-deletion: `Request` and `Store` name `сks-...` with a Cyrillic `с`", "NotTheRunningDecommission", "nothing was changed", |f| (ScheduleKeyDeletion, set(&set(&f.real, "/Request/CustomKeyStoreId", json!(cyrillic_c(&f.store))), "/Store/CustomKeyStoreId", json!(cyrillic_c(&f.store))))),
        case("plan_input_differs", "plan-decommission: `Input` differs from the execution's own input (AllowOrphanedKeyMaterial added)", "NotTheRunningDecommission", "differs from the input the execution was started with", |f| (PlanDecommission, set(&f.real, "/Input/AllowOrphanedKeyMaterial", json!(true)))),
        case("plan_execution_made_up", "plan-decommission: `Execution.Id` of an execution that was never started", "NotTheRunningDecommission", "Step Functions has no such execution", |f| (PlanDecommission, doc_with_execution(f, &format!("{}-forged", f.real["Execution"]["Id"].as_str().unwrap_or_default())))),
    ]
}

#[tokio::test]
async fn bad_state_documents_are_refused_by_name_and_change_nothing() {
    let env = Env::start().await;
    let store = env.cloudhsm_store(STORE_NAME).await;
    for n in 0..2 {
        env.store_key(&store, OriginType::AwsCloudhsm, n).await;
    }
    let ctx = env.context(test_config()).await;
    let input = with(
        real_input(&store, STORE_NAME),
        json!({"PendingWindowInDays": 30}),
    );
    let real = run_steps(&ctx, &UNTIL_SCHEDULED, env.start_run(input.clone()).await).await;
    let stopped = env.start_run(input.clone()).await;
    let stopped = stopped.execution_id().expect("id").to_owned();
    env.stop_run(&stopped).await;
    let other_store = env.cloudhsm_store("Other").await;
    env.store_key(&other_store, OriginType::AwsCloudhsm, 7)
        .await;
    let other = env.start_run(real_input(&other_store, "Other")).await;
    let other_run = other.execution_id().expect("id").to_owned();
    run_until_done(&ctx, Step::PlanDecommission, other, far_deadline)
        .await
        .expect("the other store's plan");
    let foreign_machine = env.moto.create_state_machine("not-decommission").await;
    let foreign = env
        .moto
        .sfn()
        .start_execution()
        .state_machine_arn(&foreign_machine)
        .name("run-1")
        .input(input.to_string())
        .send()
        .await
        .expect("execution starts")
        .execution_arn;
    let fx = DocFx {
        real: real.to_value().expect("document"),
        store,
        stopped,
        other_run,
        foreign,
    };
    let ctx = Ok(ctx);
    let baseline = Baseline::take(&env, &[&env.machine]).await;
    let cases = document_cases();
    let mut failures = Vec::new();
    for case in &cases {
        env.clear_calls().await;
        let (step, payload) = (case.input)(&fx);
        let answer = step_handle(&ctx, step, event(payload)).await;
        failures.extend(verdict(&env, &baseline, case, answer.into(), true).await);
    }
    report("state document", cases.len(), &failures);
}

// ---------------------------------------------------------------------------------------------
// 4. The tag events (tag-trigger)
// ---------------------------------------------------------------------------------------------

/// The role whose sessions may start runs by tag (the API-call sample's caller is one).
const KEY_ADMIN_ROLE: &str = "arn:aws:iam::123456789012:role/KeyAdmin";

struct TagFx {
    store: String,
    /// A key of the store tagged with the store id.
    tagged: String,
    /// A key of the store without the trigger tag now.
    untagged: String,
    /// A key of the store tagged with the store id and `DecommissionConfirmStoreName=prod`.
    confirmed_wrong: String,
    /// The same with `DecommissionConfirmStoreName=Рrod` (a Cyrillic `Р`).
    confirmed_cyrillic: String,
    /// A key of another store.
    other_store_key: String,
    /// An AWS_KMS key.
    plain: String,
    /// The cluster behind the store and the one behind another store.
    cluster: String,
    other_cluster: String,
}

fn sample(path: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    serde_json::from_str(&std::fs::read_to_string(path).expect("sample")).expect("JSON")
}

/// A "Tag Change on Resource" event of key `arn` whose tags are now `tags`, changing `changed`.
fn tag_change(arn: &str, changed: &[&str], tags: Value) -> Value {
    let mut event = sample("events/triggers/tag-change-kms-key.json");
    event["resources"] = json!([arn]);
    event["detail"]["changed-tag-keys"] = json!(changed);
    event["detail"]["tags"] = tags;
    event
}

/// The trigger tag set to `store` on key `arn` (a Tag Change event).
fn tag_change_of(arn: &str, store: &str) -> Value {
    tag_change(
        arn,
        &[DEFAULT_TAG_KEY],
        json!({DEFAULT_TAG_KEY: store, "Owner": "platform-security"}),
    )
}

/// A cluster's Tag Change event naming `store`.
fn cluster_change(cluster_arn: &str, store: &str) -> Value {
    let mut event = sample("events/triggers/tag-change-cloudhsm-cluster.json");
    event["resources"] = json!([cluster_arn]);
    event["detail"]["changed-tag-keys"] = json!([DEFAULT_TAG_KEY]);
    event["detail"]["tags"] = json!({ DEFAULT_TAG_KEY: store });
    event
}

/// CloudTrail's TagResource API-call event: alice (a KeyAdmin session) set `tags` on key `arn`.
fn api_call(arn: &str, tags: &[(&str, &str)]) -> Value {
    let mut event = sample("events/triggers/api-call-tag-resource-kms-key.json");
    event["detail"]["requestParameters"]["keyId"] = json!(arn);
    event["detail"]["resources"][0]["ARN"] = json!(arn);
    event["detail"]["requestParameters"]["tags"] = tags
        .iter()
        .map(|(k, v)| json!({"tagKey": k, "tagValue": v}))
        .collect();
    event
}

/// The tag event table: the trigger's mode and the event, built from [`TagFx`].
type TagCase = Case<fn(&TagFx) -> (RunMode, Value)>;

fn tag_cases() -> Vec<TagCase> {
    use RunMode::{Decommission, DryRun};
    vec![
        case(
            "event_array",
            "the event is a JSON array",
            "Refused: MalformedEvent",
            "not an EventBridge event",
            |_| (DryRun, json!([])),
        ),
        case(
            "event_empty",
            "the event is `{}`",
            "Refused: MalformedEvent",
            "not an EventBridge event",
            |_| (DryRun, json!({})),
        ),
        case(
            "detail_type_missing",
            "a tag change without `detail-type`",
            "Refused: MalformedEvent",
            "detail-type",
            |f| {
                (
                    DryRun,
                    remove(&tag_change_of(&f.tagged, &f.store), "/detail-type"),
                )
            },
        ),
        case(
            "other_event",
            "an EC2 state-change event",
            "Ignored: NotATagChange",
            "is not a tag change",
            |f| {
                (
                    DryRun,
                    with(
                        tag_change_of(&f.tagged, &f.store),
                        json!({"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification"}),
                    ),
                )
            },
        ),
        case(
            "two_resources",
            "a tag change naming two resources",
            "Refused: MalformedEvent",
            "exactly one resource",
            |f| {
                (
                    DryRun,
                    set(
                        &tag_change_of(&f.tagged, &f.store),
                        "/resources",
                        json!([f.tagged, f.untagged]),
                    ),
                )
            },
        ),
        case(
            "no_resource",
            "a tag change naming no resource",
            "Refused: MalformedEvent",
            "exactly one resource",
            |f| {
                (
                    DryRun,
                    set(&tag_change_of(&f.tagged, &f.store), "/resources", json!([])),
                )
            },
        ),
        case(
            "unsupported_service",
            "a tag change of an S3 bucket",
            "Ignored: UnsupportedResource",
            "s3/bucket",
            |f| {
                (
                    DryRun,
                    set(
                        &set(
                            &set(
                                &tag_change_of(&f.tagged, &f.store),
                                "/detail/service",
                                json!("s3"),
                            ),
                            "/detail/resource-type",
                            json!("bucket"),
                        ),
                        "/resources",
                        json!(["arn:aws:s3:::prod-bucket"]),
                    ),
                )
            },
        ),
        case(
            "arn_of_other_service",
            "a KMS key tag change whose resource is an S3 ARN",
            "Refused: MalformedEvent",
            "does not match service",
            |f| {
                (
                    DryRun,
                    set(
                        &tag_change_of(&f.tagged, &f.store),
                        "/resources",
                        json!(["arn:aws:s3:::prod-bucket"]),
                    ),
                )
            },
        ),
        case(
            "changed_keys_not_a_list",
            "`changed-tag-keys` is a string",
            "Refused: MalformedEvent",
            "detail of a tag change",
            |f| {
                (
                    DryRun,
                    set(
                        &tag_change_of(&f.tagged, &f.store),
                        "/detail/changed-tag-keys",
                        json!(DEFAULT_TAG_KEY),
                    ),
                )
            },
        ),
        case(
            "tag_value_number",
            "the trigger tag's value is a number",
            "Refused: MalformedEvent",
            "detail of a tag change",
            |f| {
                (
                    DryRun,
                    set(
                        &tag_change_of(&f.tagged, &f.store),
                        "/detail/tags",
                        json!({DEFAULT_TAG_KEY: 5}),
                    ),
                )
            },
        ),
        case(
            "trigger_tag_not_changed",
            "a change of the `Owner` tag only",
            "Ignored: TriggerTagNotChanged",
            "",
            |f| {
                (
                    DryRun,
                    set(
                        &tag_change_of(&f.tagged, &f.store),
                        "/detail/changed-tag-keys",
                        json!(["Owner"]),
                    ),
                )
            },
        ),
        case(
            "trigger_tag_removed",
            "the trigger tag removed",
            "Ignored: TriggerTagRemoved",
            "",
            |f| {
                (
                    DryRun,
                    tag_change(
                        &f.tagged,
                        &[DEFAULT_TAG_KEY],
                        json!({"Owner": "platform-security"}),
                    ),
                )
            },
        ),
        case(
            "store_id_cyrillic",
            "tag value `сks-...` with a Cyrillic `с`",
            "Refused: InvalidTagValue",
            "is not a custom key store id",
            |f| (DryRun, tag_change_of(&f.tagged, &cyrillic_c(&f.store))),
        ),
        case(
            "store_id_trailing_newline",
            "tag value: the store id and a newline",
            "Refused: InvalidTagValue",
            "is not a custom key store id",
            |f| (DryRun, tag_change_of(&f.tagged, &format!("{}\n", f.store))),
        ),
        case(
            "store_id_oversize",
            "tag value: `cks-` and 250 digits",
            "Refused: InvalidTagValue",
            "is not a custom key store id",
            |f| {
                (
                    DryRun,
                    tag_change_of(&f.tagged, &format!("cks-{}", "1".repeat(250))),
                )
            },
        ),
        case(
            "store_name_not_id",
            "tag value: the store's name `Prod`",
            "Refused: InvalidTagValue",
            "is not a custom key store id",
            |f| (DryRun, tag_change_of(&f.tagged, STORE_NAME)),
        ),
        case(
            "key_of_other_store",
            "a key of another store tagged with this store's id",
            "Refused: KeyInOtherStore",
            "",
            |f| (DryRun, tag_change_of(&f.other_store_key, &f.store)),
        ),
        case(
            "key_not_in_a_store",
            "an AWS_KMS key tagged with the store's id",
            "Refused: KeyNotInCustomKeyStore",
            "AWS_KMS",
            |f| (DryRun, tag_change_of(&f.plain, &f.store)),
        ),
        case(
            "key_unknown",
            "a key ARN no key has",
            "Refused: KeyNotFound",
            "",
            |f| {
                (DryRun, tag_change_of("arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000", &f.store))
            },
        ),
        case(
            "key_other_account",
            "the key's ARN in another account",
            "Refused: KeyNotFound",
            "",
            |f| {
                (
                    DryRun,
                    tag_change_of(
                        &f.tagged.replacen("123456789012", "999999999999", 1),
                        &f.store,
                    ),
                )
            },
        ),
        case(
            "replayed_after_untag",
            "an old event replayed after the trigger tag was removed from the key",
            "Refused: TagsChangedSinceEvent",
            "",
            |f| (DryRun, tag_change_of(&f.untagged, &f.store)),
        ),
        case(
            "store_unknown",
            "the cluster tagged with a well-formed id no store has",
            "Refused: StoreNotFound",
            "",
            |f| (DryRun, cluster_change(&f.cluster, UNKNOWN_STORE)),
        ),
        case(
            "cluster_of_other_store",
            "the cluster of another store tagged with this store's id",
            "Refused: ClusterDoesNotBackStore",
            "",
            |f| (DryRun, cluster_change(&f.other_cluster, &f.store)),
        ),
        case(
            "cluster_cyrillic",
            "the cluster's id with a Cyrillic `о` (U+043E)",
            "Refused: ClusterDoesNotBackStore",
            "",
            |f| {
                (
                    DryRun,
                    cluster_change(&f.cluster.replacen("prod", "pr\u{43e}d", 1), &f.store),
                )
            },
        ),
        case(
            "tag_change_in_decommission_mode",
            "decommission mode: a Tag Change event (it names nobody)",
            "Ignored: TaggerNotNamed",
            "",
            |f| (Decommission, tag_change_of(&f.tagged, &f.store)),
        ),
        case(
            "api_call_in_dry_run_mode",
            "dry-run mode: a TagResource API-call event",
            "Ignored: ApiCallInDryRunMode",
            "",
            |f| (DryRun, api_call(&f.tagged, &[(DEFAULT_TAG_KEY, &f.store)])),
        ),
        case(
            "caller_unnamed",
            "decommission mode: the call names no caller ARN (an AWS service)",
            "Refused: TaggerUnknown",
            "",
            |f| {
                (
                    Decommission,
                    set(
                        &api_call(&f.tagged, &[(DEFAULT_TAG_KEY, &f.store)]),
                        "/detail/userIdentity",
                        json!({"type": "AWSService", "invokedBy": "example.amazonaws.com"}),
                    ),
                )
            },
        ),
        case(
            "caller_not_allowed",
            "decommission mode: the caller is an IAM user not allowed",
            "Refused: TaggerNotAllowed",
            "arn:aws:iam::123456789012:user/mallory",
            |f| {
                (
                    Decommission,
                    set(
                        &api_call(&f.tagged, &[(DEFAULT_TAG_KEY, &f.store)]),
                        "/detail/userIdentity",
                        json!({"type": "IAMUser", "arn": "arn:aws:iam::123456789012:user/mallory"}),
                    ),
                )
            },
        ),
        case(
            "caller_cyrillic_role",
            "decommission mode: a session of `KeyАdmin` with a Cyrillic `А` (U+0410)",
            "Refused: TaggerNotAllowed",
            "",
            |f| {
                (
                    Decommission,
                    set(
                        &set(
                            &api_call(&f.tagged, &[(DEFAULT_TAG_KEY, &f.store)]),
                            "/detail/userIdentity/arn",
                            json!("arn:aws:sts::123456789012:assumed-role/Key\u{410}dmin/alice"),
                        ),
                        "/detail/userIdentity/sessionContext/sessionIssuer/arn",
                        json!("arn:aws:iam::123456789012:role/Key\u{410}dmin"),
                    ),
                )
            },
        ),
        case(
            "call_failed",
            "decommission mode: a TagResource call that failed (`errorCode`)",
            "Ignored: TagCallFailed",
            "AccessDenied",
            |f| {
                (
                    Decommission,
                    set(
                        &api_call(&f.tagged, &[(DEFAULT_TAG_KEY, &f.store)]),
                        "/detail/errorCode",
                        json!("AccessDenied"),
                    ),
                )
            },
        ),
        case(
            "call_untag",
            "decommission mode: an UntagResource call",
            "Ignored: NotATagCall",
            "UntagResource",
            |f| {
                (
                    Decommission,
                    set(
                        &api_call(&f.tagged, &[(DEFAULT_TAG_KEY, &f.store)]),
                        "/detail/eventName",
                        json!("UntagResource"),
                    ),
                )
            },
        ),
        case(
            "call_name_missing",
            "decommission mode: an API-call event without `eventName`",
            "Refused: MalformedEvent",
            "eventName",
            |f| {
                (
                    Decommission,
                    remove(
                        &api_call(&f.tagged, &[(DEFAULT_TAG_KEY, &f.store)]),
                        "/detail/eventName",
                    ),
                )
            },
        ),
        case(
            "call_tags_not_a_list",
            "decommission mode: `requestParameters.tags` is an object",
            "Refused: MalformedEvent",
            "not a tag list",
            |f| {
                (
                    Decommission,
                    set(
                        &api_call(&f.tagged, &[]),
                        "/detail/requestParameters/tags",
                        json!({DEFAULT_TAG_KEY: f.store}),
                    ),
                )
            },
        ),
        case(
            "call_key_is_alias",
            "decommission mode: the call names an alias ARN, not a key",
            "Refused: MalformedEvent",
            "is not a KMS key ARN",
            |f| {
                (
                    Decommission,
                    set(
                        &remove(
                            &api_call(&f.tagged, &[(DEFAULT_TAG_KEY, &f.store)]),
                            "/detail/resources",
                        ),
                        "/detail/requestParameters/keyId",
                        json!("arn:aws:kms:us-east-1:123456789012:alias/prod"),
                    ),
                )
            },
        ),
        case(
            "call_source_mismatch",
            "decommission mode: source `aws.kms` with eventSource `cloudhsm.amazonaws.com`",
            "Refused: MalformedEvent",
            "is not a KMS or CloudHSM call",
            |f| {
                (
                    Decommission,
                    set(
                        &api_call(&f.tagged, &[(DEFAULT_TAG_KEY, &f.store)]),
                        "/detail/eventSource",
                        json!("cloudhsm.amazonaws.com"),
                    ),
                )
            },
        ),
        case(
            "call_confirmation_only",
            "decommission mode: the call set only the confirmation tag",
            "Ignored: ConfirmationWithoutTrigger",
            "",
            |f| {
                (
                    Decommission,
                    api_call(&f.tagged, &[(CONFIRM_TAG_KEY, STORE_NAME)]),
                )
            },
        ),
        case(
            "call_not_in_cloudtrail",
            "decommission mode: an allowed principal's call with the store's exact name (`Prod`) that CloudTrail never recorded (a forged event)",
            "Refused: TagCallNotInCloudTrail",
            "3c2b1a09",
            |f| {
                (
                    Decommission,
                    api_call(
                        &f.confirmed_wrong,
                        &[(DEFAULT_TAG_KEY, &f.store), (CONFIRM_TAG_KEY, STORE_NAME)],
                    ),
                )
            },
        ),
        case(
            "call_without_event_id",
            "decommission mode: `DecommissionConfirmStoreName=Рrod` (Cyrillic `Р`) in an event without `detail.eventID`",
            "Refused: MalformedEvent",
            "eventID",
            |f| {
                let mut event = api_call(
                    &f.confirmed_cyrillic,
                    &[(DEFAULT_TAG_KEY, &f.store), (CONFIRM_TAG_KEY, "\u{420}rod")],
                );
                if let Some(detail) = event["detail"].as_object_mut() {
                    detail.remove("eventID");
                }
                (Decommission, event)
            },
        ),
    ]
}

async fn tag(env: &Env, key_id: &str, tags: &[(&str, &str)]) {
    let tags: Vec<Tag> = tags
        .iter()
        .map(|(k, v)| {
            Tag::builder()
                .tag_key(*k)
                .tag_value(*v)
                .build()
                .expect("tag")
        })
        .collect();
    env.kms
        .tag_resource()
        .key_id(key_id)
        .set_tags(Some(tags))
        .send()
        .await
        .expect("TagResource");
}

#[tokio::test]
async fn bad_tag_events_are_refused_or_ignored_by_name_and_change_nothing() {
    let env = Env::start().await;
    let store = env.cloudhsm_store(STORE_NAME).await;
    let mut keys = Vec::new();
    for n in 0..4 {
        let id = env.store_key(&store, OriginType::AwsCloudhsm, n).await;
        keys.push(env.describe_key(&id).await.expect("key").arn.expect("ARN"));
    }
    tag(&env, &keys[0], &[(DEFAULT_TAG_KEY, &store)]).await;
    tag(
        &env,
        &keys[2],
        &[(DEFAULT_TAG_KEY, &store), (CONFIRM_TAG_KEY, "prod")],
    )
    .await;
    tag(
        &env,
        &keys[3],
        &[(DEFAULT_TAG_KEY, &store), (CONFIRM_TAG_KEY, "\u{420}rod")],
    )
    .await;
    let other = env.cloudhsm_store("Other").await;
    let other_key = env.store_key(&other, OriginType::AwsCloudhsm, 9).await;
    let plain = env.plain_key().await;
    let cluster_arn = |name: &str| {
        format!(
            "arn:aws:cloudhsm:us-east-1:123456789012:cluster/{}",
            cluster_id_for(name)
        )
    };
    let fx = TagFx {
        store,
        tagged: keys[0].clone(),
        untagged: keys[1].clone(),
        confirmed_wrong: keys[2].clone(),
        confirmed_cyrillic: keys[3].clone(),
        other_store_key: env
            .describe_key(&other_key)
            .await
            .expect("key")
            .arn
            .expect("ARN"),
        plain: env
            .describe_key(&plain)
            .await
            .expect("key")
            .arn
            .expect("ARN"),
        cluster: cluster_arn(STORE_NAME),
        other_cluster: cluster_arn("Other"),
    };
    let trigger = |mode: RunMode| {
        TagTrigger::new(
            Kms::with_default_pacing(env.kms.clone()),
            Executions::new(env.moto.sfn(), env.machine.clone(), None),
            env.cloudtrail(50.0),
            TagTriggerConfig {
                tag_key: DEFAULT_TAG_KEY.into(),
                mode,
                allowed_principals: AllowedPrincipals::parse(KEY_ADMIN_ROLE).expect("pattern"),
                // One lookup: the events of this table were never recorded.
                lookup: TagCallLookup {
                    window: std::time::Duration::ZERO,
                    interval: std::time::Duration::from_secs(1),
                },
            },
        )
    };
    let (dry_run, decommission) = (trigger(RunMode::DryRun), trigger(RunMode::Decommission));
    let baseline = Baseline::take(&env, &[&env.machine]).await;
    let cases = tag_cases();
    let mut failures = Vec::new();
    for case in &cases {
        env.clear_calls().await;
        let (mode, payload) = (case.input)(&fx);
        let trigger = match mode {
            RunMode::DryRun => &dry_run,
            RunMode::Decommission => &decommission,
        };
        let answer = match LambdaFunction::handle(trigger, event(payload)).await {
            Ok(outcome) => match (outcome["Outcome"].as_str(), outcome["Reason"].as_str()) {
                (Some(kind @ ("Refused" | "Ignored")), Some(reason)) => Answer::Refused {
                    name: format!("{kind}: {reason}"),
                    message: outcome["Message"].as_str().unwrap_or_default().to_owned(),
                },
                _ => Answer::Accepted(outcome.to_string()),
            },
            Err(d) => Answer::Refused {
                name: d.error_type,
                message: d.error_message,
            },
        };
        failures.extend(verdict(&env, &baseline, case, answer, false).await);
    }
    report("tag event", cases.len(), &failures);
}

// ---------------------------------------------------------------------------------------------
// 5. The webhook's headers and body (ticket-webhook)
// ---------------------------------------------------------------------------------------------

/// The webhook secret of these tests.
const SECRET: &str = "bad-inputs-webhook-secret-0123456789abcdef";

struct HookFx {
    store: String,
    /// The Unix time the webhook is asked at.
    now: i64,
}

/// A function URL request as Lambda delivers it.
fn url_request(
    method: &str,
    headers: &[(&str, String)],
    body: &str,
    base64: bool,
) -> LambdaFunctionUrlRequest {
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
        .collect();
    serde_json::from_value(json!({
        "version": "2.0", "rawPath": "/", "rawQueryString": "", "headers": headers,
        "requestContext": {
            "accountId": "anonymous", "apiId": "abcdefghij",
            "domainName": "abcdefghij.lambda-url.us-east-1.on.aws", "domainPrefix": "abcdefghij",
            "requestId": "bad-input", "routeKey": "$default", "stage": "$default",
            "time": "28/Nov/2026:10:00:00 +0000", "timeEpoch": 0,
            "http": {"method": method, "path": "/", "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.7", "userAgent": "ticketing/1.0"}
        },
        "body": body, "isBase64Encoded": base64
    }))
    .expect("function URL request")
}

/// `body` POSTed, signed at `at` with `secret` for `audience`.
fn signed_by(body: &str, at: i64, secret: &str, audience: &str) -> LambdaFunctionUrlRequest {
    let ts = at.to_string();
    let signature = WebhookSecret::new(secret.as_bytes())
        .expect("secret")
        .for_audience(audience)
        .sign(&ts, body.as_bytes());
    url_request(
        "POST",
        &[
            ("x-signature-timestamp", ts),
            ("x-signature", signature),
            ("content-type", "application/json".into()),
        ],
        body,
        false,
    )
}

/// `body` POSTed, signed now with the webhook's secret.
fn signed(f: &HookFx, body: &str) -> LambdaFunctionUrlRequest {
    signed_by(body, f.now, SECRET, DEFAULT_AUDIENCE)
}

/// `body` as JSON, signed now.
fn signed_json(f: &HookFx, body: Value) -> LambdaFunctionUrlRequest {
    signed(f, &body.to_string())
}

/// The request with header `name` set to `value`.
fn with_header(
    mut request: LambdaFunctionUrlRequest,
    name: &'static str,
    value: &[u8],
) -> LambdaFunctionUrlRequest {
    request
        .headers
        .insert(name, HeaderValue::from_bytes(value).expect("header value"));
    request
}

/// The request without header `name`.
fn without_header(mut request: LambdaFunctionUrlRequest, name: &str) -> LambdaFunctionUrlRequest {
    request.headers.remove(name);
    request
}

/// A `start` body for the fixture's store, ticket `CHG-77`.
fn start_body(f: &HookFx) -> Value {
    json!({
        "Action": "start", "TicketId": "CHG-77", "CustomKeyStoreId": f.store,
        "PendingWindowInDays": 30, "DryRun": false, "ConfirmCustomKeyStoreName": STORE_NAME,
        "RequestedBy": "alice@example.com", "Reason": "retire the store"
    })
}

/// The ticket whose dry run the fixture started.
const DRY_RUN_TICKET: &str = "CHG-1";

fn dry_run_start_body(f: &HookFx) -> Value {
    json!({
        "Action": "start", "TicketId": DRY_RUN_TICKET, "CustomKeyStoreId": f.store,
        "DryRun": true, "RequestedBy": "alice@example.com", "Reason": "plan the retirement"
    })
}

/// The webhook table: function URL requests built from [`HookFx`].
type WebhookCase = Case<fn(&HookFx) -> LambdaFunctionUrlRequest>;

fn webhook_cases() -> Vec<WebhookCase> {
    vec![
        case(
            "method_get",
            "GET instead of POST",
            "405 MethodNotAllowed",
            "use POST",
            |f| {
                let mut r = signed_json(f, start_body(f));
                r.request_context.http.method = Some("GET".into());
                r
            },
        ),
        case(
            "method_delete",
            "DELETE instead of POST",
            "405 MethodNotAllowed",
            "use POST",
            |f| {
                let mut r = signed_json(f, start_body(f));
                r.request_context.http.method = Some("DELETE".into());
                r
            },
        ),
        case(
            "body_oversize",
            "a body one byte over 16 KiB",
            "413 PayloadTooLarge",
            "",
            |f| signed(f, &" ".repeat(MAX_BODY_BYTES + 1)),
        ),
        case(
            "base64_body_oversize",
            "a base64 body that decodes to over 16 KiB",
            "413 PayloadTooLarge",
            "",
            |f| {
                let mut r = signed(f, "{}");
                r.body = Some("A".repeat(MAX_BODY_BYTES.div_ceil(3) * 4 + 4));
                r.is_base64_encoded = true;
                r
            },
        ),
        case(
            "base64_truncated",
            "a base64 body cut short (its last two characters lost)",
            "400 MalformedBody",
            "",
            |f| {
                let body = start_body(f).to_string();
                let mut r = signed(f, &body);
                let encoded = base64::engine::general_purpose::STANDARD.encode(&body);
                r.body = Some(encoded[..encoded.len() - 2].to_owned());
                r.is_base64_encoded = true;
                r
            },
        ),
        case(
            "base64_invalid_characters",
            "a base64 body with characters outside the alphabet",
            "400 MalformedBody",
            "",
            |f| {
                let mut r = signed(f, "{}");
                r.body = Some("e30=!!".into());
                r.is_base64_encoded = true;
                r
            },
        ),
        case(
            "base64_url_alphabet",
            "a body in the URL-safe base64 alphabet (`-`, `_`)",
            "400 MalformedBody",
            "",
            |f| {
                let mut r = signed(f, "{}");
                r.body = Some("-_-_".into());
                r.is_base64_encoded = true;
                r
            },
        ),
        case(
            "signature_missing",
            "no X-Signature",
            "401 MissingSignature",
            "",
            |f| without_header(signed_json(f, start_body(f)), "x-signature"),
        ),
        case(
            "timestamp_missing",
            "no X-Signature-Timestamp",
            "401 MissingTimestamp",
            "",
            |f| without_header(signed_json(f, start_body(f)), "x-signature-timestamp"),
        ),
        case(
            "timestamp_not_a_number",
            "X-Signature-Timestamp `now`",
            "401 MalformedTimestamp",
            "",
            |f| {
                with_header(
                    signed_json(f, start_body(f)),
                    "x-signature-timestamp",
                    b"now",
                )
            },
        ),
        case(
            "timestamp_negative",
            "X-Signature-Timestamp `-5`",
            "401 MalformedTimestamp",
            "",
            |f| {
                with_header(
                    signed_json(f, start_body(f)),
                    "x-signature-timestamp",
                    b"-5",
                )
            },
        ),
        case(
            "timestamp_milliseconds",
            "X-Signature-Timestamp in milliseconds (13 digits)",
            "401 MalformedTimestamp",
            "",
            |f| {
                with_header(
                    signed_json(f, start_body(f)),
                    "x-signature-timestamp",
                    (f.now * 1000).to_string().as_bytes(),
                )
            },
        ),
        case(
            "timestamp_fullwidth_digits",
            "X-Signature-Timestamp in fullwidth digits (not ASCII)",
            "401 MalformedTimestamp",
            "",
            |f| {
                let wide: String = f
                    .now
                    .to_string()
                    .chars()
                    .map(|c| char::from_u32(0xff10 + c.to_digit(10).unwrap_or(0)).unwrap_or(c))
                    .collect();
                with_header(
                    signed_json(f, start_body(f)),
                    "x-signature-timestamp",
                    wide.as_bytes(),
                )
            },
        ),
        case(
            "clock_behind",
            "signed 301 s ago (the sender's clock behind, or a delayed delivery)",
            "401 StaleTimestamp",
            "301 s old",
            |f| {
                signed_by(
                    &start_body(f).to_string(),
                    f.now - 301,
                    SECRET,
                    DEFAULT_AUDIENCE,
                )
            },
        ),
        case(
            "clock_ahead",
            "signed 31 s in the future (the sender's clock ahead)",
            "401 FutureTimestamp",
            "31 s in the future",
            |f| {
                signed_by(
                    &start_body(f).to_string(),
                    f.now + 31,
                    SECRET,
                    DEFAULT_AUDIENCE,
                )
            },
        ),
        case(
            "replay_after_window",
            "a correctly signed start replayed ten minutes later",
            "401 StaleTimestamp",
            "600 s old",
            |f| {
                signed_by(
                    &start_body(f).to_string(),
                    f.now - 600,
                    SECRET,
                    DEFAULT_AUDIENCE,
                )
            },
        ),
        case(
            "replay_fresh_timestamp",
            "an old request's signature sent with a fresh timestamp",
            "401 SignatureMismatch",
            "",
            |f| {
                let old = signed_by(
                    &start_body(f).to_string(),
                    f.now - 600,
                    SECRET,
                    DEFAULT_AUDIENCE,
                );
                with_header(old, "x-signature-timestamp", f.now.to_string().as_bytes())
            },
        ),
        case(
            "other_audience",
            "signed for another stack sharing the secret",
            "401 SignatureMismatch",
            "",
            |f| {
                signed_by(
                    &start_body(f).to_string(),
                    f.now,
                    SECRET,
                    "kms-decommission-staging",
                )
            },
        ),
        case(
            "wrong_secret",
            "signed with another secret",
            "401 SignatureMismatch",
            "",
            |f| {
                signed_by(
                    &start_body(f).to_string(),
                    f.now,
                    "another-webhook-secret-0123456789abcdef",
                    DEFAULT_AUDIENCE,
                )
            },
        ),
        case(
            "body_altered",
            "the body changed after signing (DryRun true to false)",
            "401 SignatureMismatch",
            "",
            |f| {
                let mut r = signed_json(f, with(start_body(f), json!({"DryRun": true})));
                r.body = Some(start_body(f).to_string());
                r
            },
        ),
        case(
            "signed_encoded_text",
            "a base64 body signed as its encoded text, not its bytes",
            "401 SignatureMismatch",
            "",
            |f| {
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(start_body(f).to_string());
                let mut r = signed(f, &encoded);
                r.is_base64_encoded = true;
                r
            },
        ),
        case(
            "signature_sha1",
            "X-Signature `sha1=...`",
            "401 MalformedSignature",
            "",
            |f| {
                with_header(
                    signed_json(f, start_body(f)),
                    "x-signature",
                    format!("sha1={}", "ab".repeat(20)).as_bytes(),
                )
            },
        ),
        case(
            "signature_truncated",
            "X-Signature with 62 of its 64 hex digits",
            "401 MalformedSignature",
            "",
            |f| {
                let r = signed_json(f, start_body(f));
                let sig = r
                    .headers
                    .get("x-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                with_header(r, "x-signature", &sig.as_bytes()[..sig.len() - 2])
            },
        ),
        case(
            "signature_not_hex",
            "X-Signature `sha256=` and 64 letters z",
            "401 MalformedSignature",
            "",
            |f| {
                with_header(
                    signed_json(f, start_body(f)),
                    "x-signature",
                    format!("sha256={}", "z".repeat(64)).as_bytes(),
                )
            },
        ),
        case(
            "signature_not_ascii",
            "X-Signature with a Cyrillic `а` for an `a` (not ASCII)",
            "401 MalformedSignature",
            "",
            |f| {
                let r = signed_json(f, start_body(f));
                let sig = r
                    .headers
                    .get("x-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .replacen("sha256=", "sh\u{430}256=", 1);
                with_header(r, "x-signature", sig.as_bytes())
            },
        ),
        case(
            "json_malformed",
            "a signed body that is not JSON (cut short)",
            "400 MalformedJson",
            "",
            |f| signed(f, "{\"Action\":\"status\","),
        ),
        case(
            "json_array",
            "a signed JSON array",
            "400 MalformedJson",
            "expected an object",
            |f| signed(f, "[\"status\"]"),
        ),
        case(
            "json_byte_order_mark",
            "a signed body starting with a byte order mark",
            "400 MalformedJson",
            "",
            |f| {
                signed(
                    f,
                    &format!(
                        "\u{feff}{}",
                        json!({"Action": "status", "TicketId": DRY_RUN_TICKET})
                    ),
                )
            },
        ),
        case(
            "action_missing",
            "no Action",
            "400 MissingAction",
            "",
            |f| signed_json(f, with(start_body(f), json!({"Action": null}))),
        ),
        case(
            "action_unknown",
            "Action `purge`",
            "400 UnknownAction",
            "purge",
            |f| signed_json(f, with(start_body(f), json!({"Action": "purge"}))),
        ),
        case(
            "action_number",
            "Action `1`",
            "400 UnknownAction",
            "",
            |f| signed_json(f, with(start_body(f), json!({"Action": 1}))),
        ),
        case(
            "action_capitalised",
            "Action `Start`",
            "400 UnknownAction",
            "Start",
            |f| signed_json(f, with(start_body(f), json!({"Action": "Start"}))),
        ),
        case(
            "start_sets_trigger",
            "start with `Trigger: tag` (only the webhook sets Trigger)",
            "400 InvalidInput",
            "Trigger is set by the webhook itself",
            |f| signed_json(f, with(start_body(f), json!({"Trigger": "tag"}))),
        ),
        case(
            "start_without_dry_run",
            "start without DryRun",
            "400 InvalidInput",
            "DryRun",
            |f| signed_json(f, with(start_body(f), json!({"DryRun": null}))),
        ),
        case(
            "start_without_ticket",
            "start without TicketId",
            "400 InvalidInput",
            "TicketId",
            |f| signed_json(f, with(start_body(f), json!({"TicketId": null}))),
        ),
        case(
            "start_without_requester",
            "start without RequestedBy",
            "400 InvalidInput",
            "RequestedBy",
            |f| signed_json(f, with(start_body(f), json!({"RequestedBy": null}))),
        ),
        case(
            "start_blank_requester",
            "start with RequestedBy of three spaces",
            "400 InvalidInput",
            "RequestedBy",
            |f| signed_json(f, with(start_body(f), json!({"RequestedBy": "   "}))),
        ),
        case(
            "start_store_cyrillic",
            "start for `сks-...` with a Cyrillic `с`",
            "400 InvalidInput",
            "CustomKeyStoreId",
            |f| {
                signed_json(
                    f,
                    with(
                        start_body(f),
                        json!({"CustomKeyStoreId": cyrillic_c(&f.store)}),
                    ),
                )
            },
        ),
        case(
            "start_unknown_field",
            "start with `Force: true`",
            "400 InvalidInput",
            "Force",
            |f| signed_json(f, with(start_body(f), json!({"Force": true}))),
        ),
        case(
            "start_ticket_control",
            "start with a TicketId holding a newline",
            "400 InvalidInput",
            "TicketId",
            |f| {
                signed_json(
                    f,
                    with(start_body(f), json!({"TicketId": "CHG-77\nCHG-78"})),
                )
            },
        ),
        case(
            "start_wrong_name",
            "start with ConfirmCustomKeyStoreName `prod` for `Prod`",
            "400 ConfirmationMismatch",
            "nothing was changed",
            |f| {
                signed_json(
                    f,
                    with(start_body(f), json!({"ConfirmCustomKeyStoreName": "prod"})),
                )
            },
        ),
        case(
            "start_unknown_store",
            "start for a well-formed id no store has",
            "400 CustomKeyStoreNotFound",
            "",
            |f| {
                signed_json(
                    f,
                    with(start_body(f), json!({"CustomKeyStoreId": UNKNOWN_STORE})),
                )
            },
        ),
        case(
            "start_beyond_policy",
            "start with AllowOrphanedKeyMaterial true (the policy forbids it a trigger)",
            "403 PolicyViolation",
            "AllowOrphanedKeyMaterial",
            |f| {
                signed_json(
                    f,
                    with(start_body(f), json!({"AllowOrphanedKeyMaterial": true})),
                )
            },
        ),
        case(
            "start_ticket_replayed",
            "the dry run's ticket started again with another Reason",
            "409 TicketConflict",
            "",
            |f| {
                signed_json(
                    f,
                    with(dry_run_start_body(f), json!({"Reason": "something else"})),
                )
            },
        ),
        case(
            "status_unknown_ticket",
            "status of a ticket that started nothing",
            "404 UnknownTicket",
            "CHG-404",
            |f| signed_json(f, json!({"Action": "status", "TicketId": "CHG-404"})),
        ),
        case(
            "status_unknown_field",
            "status with `Verbose: true`",
            "400 InvalidInput",
            "Verbose",
            |f| {
                signed_json(
                    f,
                    json!({"Action": "status", "TicketId": DRY_RUN_TICKET, "Verbose": true}),
                )
            },
        ),
        case(
            "cancel_unknown_ticket",
            "cancel of a ticket that started nothing",
            "404 UnknownTicket",
            "CHG-404",
            |f| {
                signed_json(
                    f,
                    json!({"Action": "cancel", "TicketId": "CHG-404", "RequestedBy": "bob"}),
                )
            },
        ),
        case(
            "cancel_without_requester",
            "cancel without RequestedBy",
            "400 InvalidInput",
            "RequestedBy",
            |f| signed_json(f, json!({"Action": "cancel", "TicketId": DRY_RUN_TICKET})),
        ),
        case(
            "approve_ticket_and_store",
            "approve naming both TicketId and CustomKeyStoreId",
            "400 InvalidInput",
            "exactly one of TicketId",
            |f| {
                signed_json(
                    f,
                    json!({"Action": "approve", "TicketId": DRY_RUN_TICKET, "CustomKeyStoreId": f.store, "ApprovedBy": "bob"}),
                )
            },
        ),
        case(
            "approve_store_cyrillic",
            "approve for `сks-...` with a Cyrillic `с`",
            "400 InvalidInput",
            "CustomKeyStoreId",
            |f| {
                signed_json(
                    f,
                    json!({"Action": "approve", "CustomKeyStoreId": cyrillic_c(&f.store), "ApprovedBy": "bob"}),
                )
            },
        ),
        case(
            "approve_unknown_ticket",
            "approve a ticket that started nothing",
            "404 UnknownTicket",
            "",
            |f| {
                signed_json(
                    f,
                    json!({"Action": "approve", "TicketId": "CHG-404", "ApprovedBy": "bob"}),
                )
            },
        ),
        case(
            "approve_unlocked_store",
            "approve the store when no run holds its lock",
            "409 NotWaitingForApproval",
            "holds its lock",
            |f| {
                signed_json(
                    f,
                    json!({"Action": "approve", "CustomKeyStoreId": f.store, "ApprovedBy": "bob"}),
                )
            },
        ),
        case(
            "approve_dry_run",
            "approve the ticket of a dry run (which never waits for approval)",
            "409 NotWaitingForApproval",
            "",
            |f| {
                signed_json(
                    f,
                    json!({"Action": "approve", "TicketId": DRY_RUN_TICKET, "ApprovedBy": "bob"}),
                )
            },
        ),
        case(
            "reject_blank_rejecter",
            "reject with an empty RejectedBy",
            "400 InvalidInput",
            "RejectedBy",
            |f| {
                signed_json(
                    f,
                    json!({"Action": "reject", "TicketId": DRY_RUN_TICKET, "RejectedBy": ""}),
                )
            },
        ),
    ]
}

#[tokio::test]
async fn bad_webhook_requests_are_refused_by_name_and_change_nothing() {
    let env = Env::start().await;
    let store = env.cloudhsm_store(STORE_NAME).await;
    env.store_key(&store, OriginType::AwsCloudhsm, 0).await;
    let cancel_machine = env.moto.create_state_machine("cancel").await;
    let webhook = Webhook::new(
        SecretCache::fixed(
            WebhookSecret::new(SECRET.as_bytes())
                .expect("secret")
                .into(),
        ),
        Kms::with_default_pacing(env.kms.clone()),
        Executions::new(
            env.moto.sfn(),
            env.machine.clone(),
            Some(cancel_machine.clone()),
        ),
    )
    .with_ledger(env.ledger());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let fx = HookFx { store, now };
    // A dry run the ticketing system started (ticket CHG-1): what replays and answers aim at.
    let started = webhook
        .handle(&signed_json(&fx, dry_run_start_body(&fx)), now)
        .await;
    assert_eq!(started.status_code, 202, "{:?}", started.body);
    let baseline = Baseline::take(&env, &[&env.machine, &cancel_machine]).await;
    let cases = webhook_cases();
    let mut failures = Vec::new();
    for case in &cases {
        env.clear_calls().await;
        let response = webhook.handle(&(case.input)(&fx), fx.now).await;
        let body: Value =
            serde_json::from_str(response.body.as_deref().unwrap_or("null")).unwrap_or(Value::Null);
        let answer = match body["Error"].as_str() {
            Some(error) => Answer::Refused {
                name: format!("{} {error}", response.status_code),
                message: body["Message"].as_str().unwrap_or_default().to_owned(),
            },
            None => Answer::Accepted(format!("{} {body}", response.status_code)),
        };
        // Only a start that passed every check of its own asks KMS (DescribeCustomKeyStores).
        let silent = !matches!(case.name, "start_wrong_name" | "start_unknown_store");
        failures.extend(verdict(&env, &baseline, case, answer, silent).await);
    }
    report("webhook request", cases.len(), &failures);
}

// ---------------------------------------------------------------------------------------------
// The catalogue document
// ---------------------------------------------------------------------------------------------

/// One catalogue row.
struct Row {
    name: &'static str,
    what: &'static str,
    error: &'static str,
    mentions: &'static str,
}

fn rows<F>(cases: &[Case<F>]) -> Vec<Row> {
    cases
        .iter()
        .map(|c| Row {
            name: c.name,
            what: c.what,
            error: c.error,
            mentions: c.mentions,
        })
        .collect()
}

/// Each entry point: its marker in the document, its title, its rows.
fn catalogue() -> Vec<(&'static str, &'static str, Vec<Row>)> {
    vec![
        ("console", "Console execution input", rows(&console_cases())),
        ("cancel", "Cancel input", rows(&cancel_cases())),
        ("state", "Step state documents", rows(&document_cases())),
        ("tag", "Tag events", rows(&tag_cases())),
        (
            "webhook",
            "Webhook headers and body",
            rows(&webhook_cases()),
        ),
    ]
}

fn render_table(rows: &[Row]) -> String {
    let mut out = String::from("| # | case | input | answered with |\n|---|---|---|---|\n");
    for (n, row) in rows.iter().enumerate() {
        let answer = if row.mentions.is_empty() {
            format!("`{}`", row.error)
        } else {
            format!("`{}`, the message containing `{}`", row.error, row.mentions)
        };
        out.push_str(&format!(
            "| {} | `{}` | {} | {answer} |\n",
            n + 1,
            row.name,
            row.what
        ));
    }
    out
}

fn render_counts(catalogue: &[(&str, &str, Vec<Row>)]) -> String {
    let mut out = String::from("| entry point | cases |\n|---|---|\n");
    for (_, title, rows) in catalogue {
        out.push_str(&format!("| {title} | {} |\n", rows.len()));
    }
    let total: usize = catalogue.iter().map(|(_, _, rows)| rows.len()).sum();
    out.push_str(&format!("| **total** | **{total}** |\n"));
    out
}

/// `text` with the part between `<!-- begin KEY -->` and `<!-- end KEY -->` replaced.
fn replace_between(text: &str, key: &str, content: &str) -> Option<String> {
    let begin = format!("<!-- begin {key} -->\n");
    let end = format!("<!-- end {key} -->");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    Some(format!("{}{content}{}", &text[..start], &text[stop..]))
}

#[test]
fn the_catalogue_document_lists_every_case() {
    let catalogue = catalogue();
    let mut names = std::collections::BTreeSet::new();
    for (key, _, rows) in &catalogue {
        for row in rows {
            assert!(
                names.insert(format!("{key}/{}", row.name)),
                "{key}/{} listed twice",
                row.name
            );
            assert!(
                !row.what.contains('|') && !row.mentions.contains('|'),
                "{} breaks the table",
                row.name
            );
        }
    }
    let total: usize = catalogue.iter().map(|(_, _, rows)| rows.len()).sum();
    assert!(
        total >= 60,
        "the catalogue needs at least 60 cases, has {total}"
    );

    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/bad-inputs.md");
    let text = std::fs::read_to_string(&path).expect("docs/bad-inputs.md");
    let mut expected = replace_between(&text, "counts", &render_counts(&catalogue))
        .expect("docs/bad-inputs.md has the counts markers");
    for (key, _, rows) in &catalogue {
        expected = replace_between(&expected, key, &render_table(rows))
            .unwrap_or_else(|| panic!("docs/bad-inputs.md has no markers for {key}"));
    }
    if std::env::var_os("UPDATE_BAD_INPUTS_DOC").is_some() {
        std::fs::write(&path, &expected).expect("docs/bad-inputs.md written");
    }
    assert!(
        text == expected,
        "docs/bad-inputs.md is out of date with tests/bad_inputs.rs; run \
         `UPDATE_BAD_INPUTS_DOC=1 cargo test -p kms-decommission --test bad_inputs \
         the_catalogue_document_lists_every_case` and commit the result"
    );
}
