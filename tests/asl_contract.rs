//! Static checks of the decommission state machine (`statemachine/decommission.asl.json`) against
//! the handlers' error names, the SAM template, the workflow contract and the documented diagram.
//!
//! A mistake here is silent at deploy time and shows up weeks into a decommission: a misspelled
//! error name never matches its Retry, a missing substitution breaks the deploy, a diagram that
//! drifted from the ASL misleads the operator. Each test names what it protects.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;

use kms_decommission::error::ERROR_TYPES;
use kms_decommission::state::DecommissionState;
use serde_json::Value;

const ASL_PATH: &str = "statemachine/decommission.asl.json";

/// KMS and product errors the contract says the state machine retries.
const RETRIED_BY_NAME: &[&str] = &[
    "KMSInternalException",
    "ThrottlingException",
    "DependencyTimeoutException",
    "KmsUnavailable",
    "LedgerUnavailable",
    "StepFunctionsUnavailable",
    "CloudTrailUnavailable",
];

/// Lambda's transient invocation errors (Step Functions best practice, plus throttling).
const LAMBDA_TRANSIENT: &[&str] = &[
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
];

/// The optimized EventBridge integration the status events use.
const PUT_EVENTS: &str = "arn:aws:states:::events:putEvents";

/// The substitutions that are not function ARNs: the status events' bus and source.
const STATUS_EVENT_SUBSTITUTIONS: &[&str] = &["StatusEventBusName", "StatusEventSource"];

/// Upper bound for a retrier's MaxAttempts: retries are bounded, not "until it works".
const MAX_RETRY_ATTEMPTS: u64 = 20;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn asl() -> Value {
    serde_json::from_str(&read(ASL_PATH)).expect("the ASL file is valid JSON")
}

fn states(asl: &Value) -> &serde_json::Map<String, Value> {
    asl["States"].as_object().expect("States is an object")
}

/// The step Tasks: those that invoke a handler (the status-event Tasks are `publish_tasks`).
fn tasks(asl: &Value) -> Vec<(&String, &Value)> {
    let tasks: Vec<_> = states(asl)
        .iter()
        .filter(|(_, s)| s["Type"] == "Task" && s["Resource"] != PUT_EVENTS)
        .collect();
    assert!(!tasks.is_empty(), "the state machine has Tasks");
    tasks
}

/// The Tasks that publish a status event to EventBridge.
fn publish_tasks(asl: &Value) -> Vec<(&String, &Value)> {
    states(asl)
        .iter()
        .filter(|(_, s)| s["Type"] == "Task" && s["Resource"] == PUT_EVENTS)
        .collect()
}

/// Where a transition to `target` ends up once the status-event Tasks on the way are passed.
fn through_publishing<'a>(all: &'a serde_json::Map<String, Value>, target: &'a str) -> &'a str {
    let mut current = target;
    while all[current]["Resource"] == PUT_EVENTS {
        current = all[current]["Next"].as_str().unwrap_or("");
    }
    current
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn retriers(task: &Value) -> Vec<&Value> {
    task["Retry"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn catchers(task: &Value) -> Vec<&Value> {
    task["Catch"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

/// The retrier of `task` whose ErrorEquals lists `error`, if any.
fn retrier_for<'a>(task: &'a Value, error: &str) -> Option<&'a Value> {
    retriers(task)
        .into_iter()
        .find(|r| strings(&r["ErrorEquals"]).contains(&error))
}

fn assert_bounded_full_jitter(state: &str, error: &str, retrier: &Value) {
    let attempts = retrier["MaxAttempts"].as_u64().unwrap_or(3);
    assert!(
        (1..=MAX_RETRY_ATTEMPTS).contains(&attempts),
        "{state}: retrier for {error} has MaxAttempts {attempts}, want 1..={MAX_RETRY_ATTEMPTS}"
    );
    assert_eq!(
        retrier["JitterStrategy"], "FULL",
        "{state}: retrier for {error} must use JitterStrategy FULL"
    );
    let backoff = retrier["BackoffRate"].as_f64().unwrap_or(2.0);
    assert!(
        backoff > 1.0,
        "{state}: retrier for {error} must back off exponentially (BackoffRate {backoff})"
    );
    let max_delay = retrier["MaxDelaySeconds"].as_u64();
    assert!(
        matches!(max_delay, Some(1..=900)),
        "{state}: retrier for {error} needs MaxDelaySeconds in 1..=900, has {max_delay:?}"
    );
}

#[test]
fn the_state_machine_is_jsonpath() {
    let asl = asl();
    for (where_, value) in std::iter::once(("top level", &asl["QueryLanguage"])).chain(
        states(&asl)
            .iter()
            .map(|(name, s)| (name.as_str(), &s["QueryLanguage"])),
    ) {
        assert!(
            value.is_null() || value == "JSONPath",
            "{where_}: QueryLanguage {value} (moto 5.2.5 cannot evaluate JSONata)"
        );
    }
}

#[test]
fn every_task_invokes_its_function_with_the_whole_document() {
    let asl = asl();
    for (name, task) in tasks(&asl) {
        if name == "WaitForApproval" {
            // The approval gate: a callback task whose function gets the document and the task
            // token, and whose result is the approver's answer.
            assert_eq!(
                task["Resource"], "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "{name}"
            );
            assert_eq!(task["Parameters"]["Payload"]["Document.$"], "$", "{name}");
            assert_eq!(
                task["Parameters"]["Payload"]["TaskToken.$"], "$$.Task.Token",
                "{name}"
            );
            assert_eq!(task["ResultPath"], "$.ApprovalAnswer", "{name}");
            continue;
        }
        assert_eq!(
            task["Resource"], "arn:aws:states:::lambda:invoke",
            "{name}: optimized Lambda integration"
        );
        assert_eq!(
            task["Parameters"]["Payload.$"], "$",
            "{name}: the handler receives the whole state document"
        );
        assert_eq!(
            task["OutputPath"], "$.Payload",
            "{name}: the handler's answer becomes the state document"
        );
        let function = task["Parameters"]["FunctionName"].as_str().unwrap_or("");
        assert!(
            function.starts_with("${") && function.ends_with("FunctionArn}"),
            "{name}: FunctionName must be a ${{...FunctionArn}} substitution, is {function:?}"
        );
        assert!(
            task["ResultPath"].is_null() && task["InputPath"].is_null(),
            "{name}: ResultPath/InputPath would reshape the document the handlers own"
        );
    }
}

#[test]
fn every_task_retries_kms_transient_errors_with_bounded_full_jitter_backoff() {
    let asl = asl();
    for (name, task) in tasks(&asl) {
        for error in RETRIED_BY_NAME {
            let retrier = retrier_for(task, error)
                .unwrap_or_else(|| panic!("{name}: no retrier for {error}"));
            assert_bounded_full_jitter(name, error, retrier);
        }
    }
}

#[test]
fn every_task_retries_lambda_transient_errors() {
    let asl = asl();
    for (name, task) in tasks(&asl) {
        for error in LAMBDA_TRANSIENT {
            let retrier = retrier_for(task, error)
                .unwrap_or_else(|| panic!("{name}: no retrier for {error}"));
            assert_bounded_full_jitter(name, error, retrier);
        }
    }
}

#[test]
fn no_task_retries_an_error_that_cannot_heal() {
    let asl = asl();
    for (name, task) in tasks(&asl) {
        for retrier in retriers(task) {
            for error in strings(&retrier["ErrorEquals"]) {
                assert!(
                    error != "States.ALL" && error != "States.TaskFailed",
                    "{name}: retrying {error} would retry ConfirmationMismatch, KeysNotPendingDeletion, ..."
                );
                assert!(
                    !ERROR_TYPES.contains(&error) || RETRIED_BY_NAME.contains(&error),
                    "{name}: {error} is not transient and must not be retried (contract: error names)"
                );
            }
        }
    }
}

#[test]
fn every_error_name_in_the_asl_is_one_the_handlers_or_step_functions_emit() {
    // A misspelled name ("KMSInternalExeption") silently never matches.
    let asl = asl();
    for (name, task) in tasks(&asl) {
        for rule in retriers(task).into_iter().chain(catchers(task)) {
            for error in strings(&rule["ErrorEquals"]) {
                let known = ERROR_TYPES.contains(&error)
                    || error.starts_with("States.")
                    || error.starts_with("Lambda.")
                    || error.starts_with("Sandbox.");
                assert!(
                    known,
                    "{name}: {error} is neither in kms_decommission::error::ERROR_TYPES nor a Step Functions / Lambda error"
                );
            }
        }
    }
}

#[test]
fn every_error_type_the_handlers_emit_is_retried_or_caught_by_every_task() {
    let asl = asl();
    assert!(!ERROR_TYPES.is_empty(), "the library lists its error types");
    for (name, task) in tasks(&asl) {
        for error in ERROR_TYPES {
            let retried = retrier_for(task, error).is_some();
            let caught = catchers(task).iter().any(|c| {
                let names = strings(&c["ErrorEquals"]);
                names.contains(error) || names.contains(&"States.ALL")
            });
            assert!(
                retried || caught,
                "{name}: {error} is neither retried nor caught"
            );
        }
    }
}

#[test]
fn every_task_catches_everything_into_a_fail_that_keeps_error_and_cause() {
    let asl = asl();
    let all = states(&asl);
    for (name, task) in tasks(&asl) {
        let catches = catchers(task);
        let last = catches.last().unwrap_or_else(|| panic!("{name}: no Catch"));
        assert_eq!(
            strings(&last["ErrorEquals"]),
            ["States.ALL"],
            "{name}: the last catcher must be States.ALL alone"
        );
        let result_path = last["ResultPath"].as_str().unwrap_or_else(|| {
            panic!("{name}: the catch-all needs a ResultPath to keep the document")
        });
        let target = last["Next"].as_str().unwrap_or("");
        let fail = &all[through_publishing(all, target)];
        assert_eq!(
            fail["Type"], "Fail",
            "{name}: catch-all must end in a Fail state (after publishing the failure)"
        );
        assert_eq!(
            fail["ErrorPath"],
            format!("{result_path}.Error"),
            "{name}: the Fail state must keep the error name"
        );
        assert_eq!(
            fail["CausePath"],
            format!("{result_path}.Cause"),
            "{name}: the Fail state must keep the cause"
        );
    }
}

#[test]
fn delete_store_goes_back_to_checking_keys_when_kms_still_counts_keys() {
    let asl = asl();
    let all = states(&asl);
    let delete = &all["DeleteStore"];
    let catches = catchers(delete);
    let has_cmks = catches
        .iter()
        .position(|c| strings(&c["ErrorEquals"]).contains(&"CustomKeyStoreHasCMKsException"))
        .expect("DeleteStore catches CustomKeyStoreHasCMKsException");
    let catch_all = catches
        .iter()
        .position(|c| strings(&c["ErrorEquals"]).contains(&"States.ALL"))
        .expect("DeleteStore has a catch-all");
    assert!(
        has_cmks < catch_all,
        "the specific catcher must come before States.ALL"
    );
    let catcher = catches[has_cmks];
    assert!(
        catcher.get("ResultPath") == Some(&Value::Null),
        "ResultPath null keeps the state document unchanged for CheckKeysDeleted"
    );
    let wait = &all[catcher["Next"].as_str().unwrap_or("")];
    assert_eq!(wait["Type"], "Wait", "wait before checking keys again");
    assert_eq!(wait["Next"], "CheckKeysDeleted");
}

#[test]
fn task_timeouts_are_a_little_above_their_function_timeouts() {
    let asl = asl();
    let template = Template::load();
    for (name, task) in tasks(&asl) {
        let substitution = substitution_name(task);
        let logical_id = template
            .substitutions
            .get(&substitution)
            .unwrap_or_else(|| {
                panic!("{name}: ${{{substitution}}} not in DefinitionSubstitutions")
            });
        let function_timeout = template.function_timeout(logical_id);
        if name == "WaitForApproval" {
            // It waits for a person, not for its function: as long as the plan says.
            assert_eq!(task["TimeoutSecondsPath"], "$.Approval.TimeoutSeconds");
            continue;
        }
        let task_timeout = task["TimeoutSeconds"]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: no TimeoutSeconds"));
        assert!(
            task_timeout > function_timeout && task_timeout <= function_timeout + 120,
            "{name}: TimeoutSeconds {task_timeout} should be a little above {logical_id}'s Timeout {function_timeout}"
        );
    }
}

#[test]
fn every_substitution_is_defined_and_names_a_function_with_a_binary() {
    let asl_text = read(ASL_PATH);
    let template = Template::load();
    let used: BTreeSet<String> = placeholders(&asl_text);
    let defined: BTreeSet<String> = template.substitutions.keys().cloned().collect();
    let defined: BTreeSet<String> = defined
        .into_iter()
        .chain(template.parameter_substitutions.keys().cloned())
        .collect();
    assert_eq!(
        used, defined,
        "the ASL's ${{...}} placeholders and template.yaml's DefinitionSubstitutions must match"
    );
    assert_eq!(
        template
            .parameter_substitutions
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        STATUS_EVENT_SUBSTITUTIONS,
        "only the status events' bus and source come from template parameters"
    );
    for (substitution, parameter) in &template.parameter_substitutions {
        assert!(
            template.parameters.contains(parameter),
            "{substitution}: `!Ref {parameter}` names no template parameter"
        );
    }
    for (substitution, logical_id) in &template.substitutions {
        assert!(
            substitution.ends_with("FunctionArn"),
            "{substitution}: only function ARNs are substituted"
        );
        let binary = template
            .binaries
            .get(logical_id)
            .unwrap_or_else(|| panic!("{substitution} -> {logical_id}: not an AWS::Serverless::Function with BuildProperties.Binary"));
        let source = repo_root().join("src/bin").join(format!("{binary}.rs"));
        assert!(
            source.is_file(),
            "{logical_id} builds binary {binary}, but {} does not exist",
            source.display()
        );
    }
    assert_eq!(
        template.definition_uri.as_deref(),
        Some(ASL_PATH),
        "the template deploys this ASL file"
    );
}

#[test]
fn every_transition_targets_a_state_and_every_state_is_reachable() {
    let asl = asl();
    let all = states(&asl);
    let start = asl["StartAt"].as_str().expect("StartAt");
    assert!(all.contains_key(start), "StartAt {start} exists");
    for (name, state) in all {
        let kind = state["Type"].as_str().unwrap_or("");
        let terminal = matches!(kind, "Succeed" | "Fail") || state["End"] == true;
        if kind == "Choice" {
            assert!(
                !state["Choices"].as_array().is_none_or(Vec::is_empty),
                "{name}: a Choice needs rules"
            );
        } else {
            assert!(
                terminal ^ state.get("Next").is_some(),
                "{name}: exactly one of Next / End"
            );
        }
        for (target, _) in transitions(state) {
            assert!(
                all.contains_key(&target),
                "{name}: transition to missing state {target}"
            );
        }
    }
    let mut seen = BTreeSet::from([start.to_string()]);
    let mut queue = VecDeque::from([start.to_string()]);
    while let Some(name) = queue.pop_front() {
        for (target, _) in transitions(&all[&name]) {
            if seen.insert(target.clone()) {
                queue.push_back(target);
            }
        }
    }
    let unreachable: Vec<_> = all.keys().filter(|n| !seen.contains(*n)).collect();
    assert!(
        unreachable.is_empty(),
        "unreachable states: {unreachable:?}"
    );
}

#[test]
fn wait_states_use_exactly_one_duration() {
    let asl = asl();
    for (name, state) in states(&asl) {
        if state["Type"] != "Wait" {
            continue;
        }
        let fields = ["Seconds", "SecondsPath", "Timestamp", "TimestampPath"];
        let present: Vec<_> = fields.iter().filter(|f| state.get(**f).is_some()).collect();
        assert_eq!(present.len(), 1, "{name}: Wait with {present:?}");
    }
}

#[test]
fn choice_and_wait_states_read_exactly_the_fields_the_contract_lists() {
    let asl = asl();
    let mut read_paths = BTreeSet::new();
    for (name, state) in states(&asl) {
        let mut paths = Vec::new();
        match state["Type"].as_str().unwrap_or("") {
            "Choice" => {
                for rule in state["Choices"].as_array().into_iter().flatten() {
                    choice_variables(rule, &mut paths);
                }
            }
            "Wait" => {
                paths.extend(
                    ["SecondsPath", "TimestampPath"]
                        .iter()
                        .filter_map(|f| state[*f].as_str()),
                );
            }
            "Succeed" => paths.extend(state["OutputPath"].as_str()),
            "Task" if state["Resource"] == PUT_EVENTS => {
                let detail = &state["Parameters"]["Entries"][0]["Detail"];
                paths.extend(
                    detail
                        .as_object()
                        .into_iter()
                        .flatten()
                        .filter(|(key, _)| key.ends_with(".$"))
                        .filter_map(|(_, path)| path.as_str()),
                );
            }
            _ => {}
        }
        for path in paths {
            let field = path.strip_prefix("$.").unwrap_or_else(|| {
                panic!("{name}: {path} is not a $. path into the state document")
            });
            read_paths.insert(field.to_string());
        }
    }
    let contract = contract_fields();
    assert_eq!(
        read_paths, contract,
        "the fields Choice/Wait/Succeed states and status events read must be exactly docs/workflow-contract.md's list"
    );
}

#[test]
fn the_diagram_in_docs_matches_the_asl() {
    assert_diagram_matches("docs/state-machine.md");
}

#[test]
fn the_diagram_in_the_readme_matches_the_asl() {
    assert_diagram_matches("README.md");
}

#[test]
fn there_is_a_sample_event_for_every_function_and_entry_point() {
    let template = Template::load();
    for (logical_id, binary) in template.decommission_step_binaries() {
        let path = format!("events/{binary}.json");
        let event: Value = serde_json::from_str(&read(&path))
            .unwrap_or_else(|e| panic!("{path} ({logical_id}) is not JSON: {e}"));
        let event = document_in(binary, event);
        assert!(
            event["Input"].is_object() && event["Execution"]["Id"].is_string(),
            "{path}: a step receives the state document (Input, Execution, ...)"
        );
    }
    for (file, dry_run) in [
        ("events/execution-dry-run.json", true),
        ("events/execution-decommission-cloudhsm.json", false),
        ("events/execution-decommission-xks.json", false),
    ] {
        let input: Value = serde_json::from_str(&read(file)).expect("execution input is JSON");
        assert!(
            input["CustomKeyStoreId"].is_string(),
            "{file}: CustomKeyStoreId"
        );
        assert_eq!(input["DryRun"], dry_run, "{file}: DryRun");
        if !dry_run {
            assert!(
                input["ConfirmCustomKeyStoreName"].is_string(),
                "{file}: a real decommission needs ConfirmCustomKeyStoreName"
            );
        }
    }
}

#[test]
fn step_events_are_state_documents_the_handlers_read_without_losing_fields() {
    // A field in a sample that the handlers' type does not know (a typo, a stale name) would be
    // silently ignored by the handler: every field must survive a round trip through the type.
    let template = Template::load();
    for (_, binary) in template.decommission_step_binaries() {
        let path = format!("events/{binary}.json");
        let event: Value = serde_json::from_str(&read(&path)).expect("event is JSON");
        let event = document_in(binary, event);
        let state: DecommissionState = serde_json::from_value(event.clone())
            .unwrap_or_else(|e| panic!("{path} is not a DecommissionState: {e}"));
        let round_trip = serde_json::to_value(&state).expect("state serializes");
        if let Err(field) = contained_in(&event, &round_trip, "$") {
            panic!("{path}: {field} does not survive a round trip through DecommissionState");
        }
    }
}

/// The state document a step's sample event carries: request-approval's is wrapped with the
/// task token (`{"Document": ..., "TaskToken": ...}`).
fn document_in(binary: &str, event: Value) -> Value {
    if binary == "request-approval" {
        assert!(event["TaskToken"].is_string(), "{binary}: TaskToken");
        return event["Document"].clone();
    }
    event
}

/// Ok when every field of `sample` is in `full` with the same value (a null may be absent).
fn contained_in(sample: &Value, full: &Value, at: &str) -> Result<(), String> {
    match (sample, full) {
        (Value::Object(sample), Value::Object(full)) => {
            for (key, value) in sample {
                let here = format!("{at}.{key}");
                match full.get(key) {
                    Some(other) => contained_in(value, other, &here)?,
                    None if value.is_null() => {}
                    None => return Err(here),
                }
            }
            Ok(())
        }
        (Value::Array(sample), Value::Array(full)) if sample.len() == full.len() => sample
            .iter()
            .zip(full)
            .enumerate()
            .try_for_each(|(i, (s, f))| contained_in(s, f, &format!("{at}[{i}]"))),
        (Value::Object(sample), Value::Null) if sample.is_empty() => Ok(()),
        _ if sample == full => Ok(()),
        _ => Err(at.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// ASL helpers
// ---------------------------------------------------------------------------------------------

/// Every transition out of `state`: (target, label), labelled as in the Mermaid diagram.
fn transitions(state: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for rule in state["Choices"].as_array().into_iter().flatten() {
        out.push((
            rule["Next"].as_str().unwrap_or("").to_string(),
            condition_label(rule),
        ));
    }
    if let Some(default) = state["Default"].as_str() {
        out.push((default.to_string(), "otherwise".to_string()));
    }
    if let Some(next) = state["Next"].as_str() {
        out.push((next.to_string(), String::new()));
    }
    for catcher in catchers(state) {
        let target = catcher["Next"].as_str().unwrap_or("");
        if state["Next"].as_str() == Some(target) {
            // A status event's catch-all goes where Next goes: no transition of its own.
            continue;
        }
        out.push((
            target.to_string(),
            strings(&catcher["ErrorEquals"]).join(", "),
        ));
    }
    out
}

/// A Choice rule as the diagram labels it: `Plan.Done == false`, `Scheduling.Done present`,
/// rules joined with `and` / `or`, `not (...)`.
fn condition_label(rule: &Value) -> String {
    if let Some(rules) = rule["And"].as_array() {
        return rules
            .iter()
            .map(condition_label)
            .collect::<Vec<_>>()
            .join(" and ");
    }
    if let Some(rules) = rule["Or"].as_array() {
        return rules
            .iter()
            .map(condition_label)
            .collect::<Vec<_>>()
            .join(" or ");
    }
    if rule["Not"].is_object() {
        return format!("not ({})", condition_label(&rule["Not"]));
    }
    let variable = rule["Variable"].as_str().unwrap_or("?");
    let variable = variable.strip_prefix("$.").unwrap_or(variable);
    if let Some(value) = rule["BooleanEquals"].as_bool() {
        return format!("{variable} == {value}");
    }
    if let Some(present) = rule["IsPresent"].as_bool() {
        return format!("{variable} {}", if present { "present" } else { "absent" });
    }
    if let Some(value) = rule["StringEquals"].as_str() {
        return format!("{variable} == {value}");
    }
    panic!("condition_label: add a label for Choice rule {rule}");
}

fn choice_variables<'a>(rule: &'a Value, out: &mut Vec<&'a str>) {
    for key in ["And", "Or"] {
        for sub in rule[key].as_array().into_iter().flatten() {
            choice_variables(sub, out);
        }
    }
    if rule["Not"].is_object() {
        choice_variables(&rule["Not"], out);
    }
    out.extend(rule["Variable"].as_str());
}

fn substitution_name(task: &Value) -> String {
    let function = task["Parameters"]["FunctionName"].as_str().unwrap_or("");
    function
        .trim_start_matches("${")
        .trim_end_matches('}')
        .to_string()
}

/// The `${Name}` placeholders of a text.
fn placeholders(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after.find('}').expect("placeholder closed");
        found.insert(after[..end].to_string());
        rest = &after[end..];
    }
    found
}

/// The backticked field names under "## Fields the state machine reads" in the contract.
fn contract_fields() -> BTreeSet<String> {
    let contract = read("docs/workflow-contract.md");
    let section = contract
        .split("## Fields the state machine reads")
        .nth(1)
        .expect("the contract lists the fields the state machine reads");
    let section = section.split("\n## ").next().unwrap_or(section);
    let fields: BTreeSet<String> = section
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    assert!(
        !fields.is_empty(),
        "the contract section lists fields in backticks"
    );
    fields
}

// ---------------------------------------------------------------------------------------------
// Mermaid diagram
// ---------------------------------------------------------------------------------------------

type Edge = (String, String, String);

fn assert_diagram_matches(relative: &str) {
    let text = read(relative);
    let blocks = mermaid_blocks(&text);
    assert_eq!(
        blocks.len(),
        1,
        "{relative} must hold exactly one ```mermaid block (copy it from docs/state-machine.md)"
    );
    let (nodes, mut edges) = parse_flowchart(&blocks[0]);

    let asl = asl();
    let all = states(&asl);
    let mut expected: Vec<Edge> = all
        .iter()
        .flat_map(|(from, state)| {
            transitions(state)
                .into_iter()
                .map(move |(to, label)| (from.clone(), to, label))
        })
        .collect();
    expected.sort();
    edges.sort();
    let missing: Vec<_> = expected.iter().filter(|e| !edges.contains(e)).collect();
    let extra: Vec<_> = edges.iter().filter(|e| !expected.contains(e)).collect();
    assert!(
        missing.is_empty() && extra.is_empty() && edges.len() == expected.len(),
        "{relative}: diagram edges differ from the ASL.\n missing: {missing:?}\n extra: {extra:?}"
    );
    let state_names: BTreeSet<String> = all.keys().cloned().collect();
    assert_eq!(
        nodes, state_names,
        "{relative}: diagram nodes must be exactly the ASL's states"
    );
}

fn mermaid_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        let trimmed = line.trim();
        match &mut current {
            None if trimmed == "```mermaid" => current = Some(String::new()),
            Some(block) if trimmed == "```" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

fn node_id(text: &str) -> String {
    text.trim()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// Nodes and edges of a `flowchart` with `A --> B` and `A -->|label| B` edges (labels may be
/// quoted) and `Id[...]`-style node declarations.
fn parse_flowchart(block: &str) -> (BTreeSet<String>, Vec<Edge>) {
    let mut nodes = BTreeSet::new();
    let mut edges = Vec::new();
    for line in block.lines().map(str::trim) {
        if line.is_empty() || line.starts_with("%%") || line.starts_with("flowchart") {
            continue;
        }
        if let Some((from, rest)) = line.split_once("-->") {
            let rest = rest.trim_start();
            let (label, to) = match rest.strip_prefix('|') {
                Some(labelled) => {
                    let (label, to) = labelled
                        .split_once('|')
                        .unwrap_or_else(|| panic!("unterminated edge label: {line}"));
                    (label.trim().trim_matches('"').to_string(), to)
                }
                None => (String::new(), rest),
            };
            let (from, to) = (node_id(from), node_id(to));
            nodes.insert(from.clone());
            nodes.insert(to.clone());
            edges.push((from, to, label));
        } else {
            let id = node_id(line);
            assert!(!id.is_empty(), "unrecognised diagram line: {line}");
            nodes.insert(id);
        }
    }
    (nodes, edges)
}

// ---------------------------------------------------------------------------------------------
// template.yaml, read with a small line scanner (no YAML crate in the package)
// ---------------------------------------------------------------------------------------------

/// What these checks need from template.yaml.
struct Template {
    /// DefinitionSubstitutions name -> logical id of the `!GetAtt <id>.Arn` it maps to.
    substitutions: BTreeMap<String, String>,
    /// DefinitionSubstitutions name -> the template parameter of its `!Ref <parameter>`.
    parameter_substitutions: BTreeMap<String, String>,
    /// The template's parameter names.
    parameters: BTreeSet<String>,
    /// Function logical id -> `Metadata.BuildProperties.Binary`.
    binaries: BTreeMap<String, String>,
    /// Function logical id -> its own `Properties.Timeout`.
    timeouts: BTreeMap<String, u64>,
    /// `Globals.Function.Timeout`.
    global_timeout: Option<u64>,
    /// The state machine's `DefinitionUri`.
    definition_uri: Option<String>,
}

impl Template {
    fn load() -> Self {
        Self::parse(&read("template.yaml"))
    }

    /// (logical id, binary) of the functions the decommission state machine invokes (the
    /// triggers and the cancel function have their own samples and tests).
    fn decommission_step_binaries(&self) -> Vec<(&String, &String)> {
        self.substitutions
            .values()
            .filter_map(|id| self.binaries.get_key_value(id))
            .collect()
    }

    fn parse(text: &str) -> Self {
        let entries = yaml_entries(text);
        let get = |path: &[&str]| {
            entries
                .iter()
                .find(|(p, _)| p.iter().map(String::as_str).eq(path.iter().copied()))
                .map(|(_, v)| v.clone())
        };
        let function_ids: Vec<String> = entries
            .iter()
            .filter(|(p, v)| {
                p.len() == 3
                    && p[0] == "Resources"
                    && p[2] == "Type"
                    && v == "AWS::Serverless::Function"
            })
            .map(|(p, _)| p[1].clone())
            .collect();
        let mut binaries = BTreeMap::new();
        let mut timeouts = BTreeMap::new();
        for id in &function_ids {
            if let Some(binary) = get(&["Resources", id, "Metadata", "BuildProperties", "Binary"]) {
                binaries.insert(id.clone(), binary);
            }
            if let Some(timeout) = get(&["Resources", id, "Properties", "Timeout"]) {
                timeouts.insert(id.clone(), timeout.parse().expect("numeric Timeout"));
            }
        }
        let machine = entries
            .iter()
            .find(|(p, v)| {
                p.len() == 3
                    && p[0] == "Resources"
                    && p[2] == "Type"
                    && v == "AWS::Serverless::StateMachine"
            })
            .map(|(p, _)| p[1].clone())
            .expect("template.yaml declares an AWS::Serverless::StateMachine");
        let mut substitutions = BTreeMap::new();
        let mut parameter_substitutions = BTreeMap::new();
        for (path, value) in &entries {
            if path.len() == 5
                && path[..4].iter().map(String::as_str).eq([
                    "Resources",
                    machine.as_str(),
                    "Properties",
                    "DefinitionSubstitutions",
                ])
            {
                if let Some(parameter) = value.strip_prefix("!Ref ") {
                    parameter_substitutions.insert(path[4].clone(), parameter.to_string());
                    continue;
                }
                let target = value
                    .strip_prefix("!GetAtt ")
                    .and_then(|t| t.strip_suffix(".Arn"))
                    .unwrap_or_else(|| {
                        panic!(
                            "{}: expected `!GetAtt <Function>.Arn` or `!Ref <Parameter>`, got {value:?}",
                            path[4]
                        )
                    });
                substitutions.insert(path[4].clone(), target.to_string());
            }
        }
        let parameters = entries
            .iter()
            .filter(|(p, _)| p.len() == 2 && p[0] == "Parameters")
            .map(|(p, _)| p[1].clone())
            .collect();
        Template {
            substitutions,
            parameter_substitutions,
            parameters,
            binaries,
            timeouts,
            global_timeout: get(&["Globals", "Function", "Timeout"])
                .map(|t| t.parse().expect("numeric Timeout")),
            definition_uri: get(&["Resources", &machine, "Properties", "DefinitionUri"]),
        }
    }

    fn function_timeout(&self, logical_id: &str) -> u64 {
        self.timeouts
            .get(logical_id)
            .copied()
            .or(self.global_timeout)
            .unwrap_or(3)
    }
}

/// Every `key: value` (or `key:`) line of a block-style YAML document with the keys above it.
/// List items add a `-` path segment (a scalar item is an entry whose path ends in it); folded and literal block scalars are skipped; values are
/// unquoted. Enough for template.yaml, which uses no flow mappings across lines or anchors.
fn yaml_entries(text: &str) -> Vec<(Vec<String>, String)> {
    let mut entries = Vec::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut block_scalar_parent: Option<usize> = None;
    for raw in text.lines() {
        let line = strip_comment(raw);
        if line.trim().is_empty() {
            continue;
        }
        let mut indent = line.len() - line.trim_start().len();
        if let Some(parent) = block_scalar_parent {
            if indent > parent {
                continue;
            }
            block_scalar_parent = None;
        }
        let mut content = line.trim();
        let mut list_item = false;
        while let Some(item) = content
            .strip_prefix("- ")
            .or_else(|| (content == "-").then_some(""))
        {
            stack.retain(|(i, _)| *i < indent);
            stack.push((indent, "-".to_string()));
            indent += 2;
            content = item.trim_start();
            list_item = true;
        }
        if content.is_empty() {
            continue;
        }
        stack.retain(|(i, _)| *i < indent);
        let split = content
            .find(": ")
            .map(|i| (&content[..i], &content[i + 2..]))
            .or_else(|| content.strip_suffix(':').map(|k| (k, "")));
        let Some((key, value)) = split else {
            if list_item {
                // A scalar list item (`- !Ref Name`): its path ends in the item's `-`.
                let path = stack.iter().map(|(_, k)| k.clone()).collect();
                entries.push((path, unquote(content)));
            }
            continue;
        };
        let key = unquote(key.trim());
        let value = value.trim();
        if matches!(value, ">" | ">-" | ">+" | "|" | "|-" | "|+") {
            block_scalar_parent = Some(indent);
        }
        let mut path: Vec<String> = stack.iter().map(|(_, k)| k.clone()).collect();
        path.push(key.clone());
        entries.push((path, unquote(value)));
        stack.push((indent, key));
    }
    entries
}

/// The line without a trailing ` # comment` (a `#` outside quotes that starts a line or
/// follows a space).
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && previous.is_whitespace() => return &line[..i],
            None => {}
        }
        previous = c;
    }
    line
}

fn unquote(value: &str) -> String {
    let v = value.trim();
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return v[1..v.len() - 1].to_string();
        }
    }
    v.to_string()
}

#[test]
fn the_template_scanner_reads_nested_keys_lists_and_skips_folded_text() {
    let text = "\
Globals:
  Function:
    Timeout: 300 # seconds
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: \"plan-decommission\"
    Properties:
      Description: >-
        Text: that looks like a key
      Policies:
        - Statement:
            - Sid: A
              Resource: \"arn:#not-a-comment\"
      Timeout: 60
  Machine:
    Type: AWS::Serverless::StateMachine
    Properties:
      DefinitionUri: statemachine/x.asl.json
      DefinitionSubstitutions:
        FnArn: !GetAtt Fn.Arn
";
    let template = Template::parse(text);
    assert_eq!(template.binaries["Fn"], "plan-decommission");
    assert_eq!(template.timeouts["Fn"], 60);
    assert_eq!(template.global_timeout, Some(300));
    assert_eq!(template.substitutions["FnArn"], "Fn");
    assert_eq!(
        template.definition_uri.as_deref(),
        Some("statemachine/x.asl.json")
    );
    let entries = yaml_entries(text);
    assert!(entries.iter().any(
        |(p, v)| p.last().map(String::as_str) == Some("Resource") && v == "arn:#not-a-comment"
    ));
    assert!(!entries
        .iter()
        .any(|(p, _)| p.last().map(String::as_str) == Some("Text")));
}

#[test]
fn the_diagram_parser_reads_labelled_and_plain_edges() {
    let (nodes, edges) = parse_flowchart(
        "flowchart TD\n    A[A]\n    A -->|\"x == true\"| B\n    B --> C\n    %% comment\n",
    );
    assert_eq!(nodes, BTreeSet::from(["A".into(), "B".into(), "C".into()]));
    assert_eq!(
        edges,
        vec![
            ("A".into(), "B".into(), "x == true".into()),
            ("B".into(), "C".into(), String::new())
        ]
    );
}

#[test]
fn the_cancel_state_machine_retries_and_catches_like_the_decommission() {
    let cancel: Value = serde_json::from_str(&read("statemachine/cancel.asl.json")).expect("JSON");
    let template = read("template.yaml");
    assert!(template.contains("DefinitionUri: statemachine/cancel.asl.json"));
    let all = states(&cancel);
    let tasks = tasks(&cancel);
    assert!(!tasks.is_empty());
    for (name, task) in tasks {
        for error in [
            "KMSInternalException",
            "ThrottlingException",
            "DependencyTimeoutException",
            "KmsUnavailable",
            "LedgerUnavailable",
            "StepFunctionsUnavailable",
            "Lambda.ServiceException",
        ] {
            let retrier = retrier_for(task, error)
                .unwrap_or_else(|| panic!("cancel {name}: {error} not retried"));
            assert_bounded_full_jitter(name, error, retrier);
        }
        assert!(retrier_for(task, "InvalidInput").is_none());
        let catcher = catchers(task)
            .into_iter()
            .find(|c| strings(&c["ErrorEquals"]).contains(&"States.ALL"))
            .unwrap_or_else(|| panic!("cancel {name}: no States.ALL catch"));
        let fail = &all[through_publishing(all, catcher["Next"].as_str().expect("Next"))];
        assert_eq!(fail["Type"], "Fail");
        assert_eq!(fail["ErrorPath"], "$.Failure.Error");
        assert_eq!(fail["CausePath"], "$.Failure.Cause");
        for placeholder in placeholders(&task.to_string()) {
            assert!(
                template.contains(&format!("{placeholder}: !GetAtt")),
                "cancel {name}: ${{{placeholder}}} not substituted in template.yaml"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Status events (docs/status-events.md)
// ---------------------------------------------------------------------------------------------

fn cancel_asl() -> Value {
    serde_json::from_str(&read("statemachine/cancel.asl.json")).expect("the cancel ASL is JSON")
}

/// (milestone, detail type) of every status-event Task of a state machine.
fn milestones(asl: &Value) -> BTreeMap<String, String> {
    publish_tasks(asl)
        .into_iter()
        .map(|(name, task)| {
            let entries = task["Parameters"]["Entries"]
                .as_array()
                .unwrap_or_else(|| panic!("{name}: Parameters.Entries is a list"));
            assert_eq!(entries.len(), 1, "{name}: one event per milestone");
            let entry = &entries[0];
            let milestone = entry["Detail"]["Milestone"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: Detail.Milestone is a literal"));
            assert_eq!(
                name.as_str(),
                format!("Publish{milestone}"),
                "state names say which milestone they publish"
            );
            let detail_type = entry["DetailType"].as_str().unwrap_or("");
            (milestone.to_string(), detail_type.to_string())
        })
        .collect()
}

fn predecessors(all: &serde_json::Map<String, Value>, target: &str) -> BTreeSet<String> {
    all.iter()
        .filter(|(_, state)| transitions(state).iter().any(|(to, _)| to == target))
        .map(|(name, _)| name.clone())
        .collect()
}

#[test]
fn every_milestone_is_published_once_with_its_own_detail_type() {
    let decommission = milestones(&asl());
    let cancel = milestones(&cancel_asl());
    assert_eq!(
        decommission.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "ApprovalRequested",
            "DryRunCompleted",
            "Failed",
            "KeysDeleted",
            "KeysScheduled",
            "Started",
            "StoreDeleted",
            "StoreDisconnected"
        ]
    );
    assert_eq!(
        cancel.keys().map(String::as_str).collect::<Vec<_>>(),
        ["CancelFailed", "Cancelled"]
    );
    let detail_types: BTreeSet<&String> = decommission.values().chain(cancel.values()).collect();
    assert_eq!(
        detail_types.len(),
        decommission.len() + cancel.len(),
        "a rule can subscribe to one milestone by its detail type"
    );
    for detail_type in detail_types {
        assert!(
            detail_type.starts_with("KMS Custom Key Store Decommission "),
            "{detail_type}: one prefix for every status event"
        );
    }
}

#[test]
fn status_events_name_the_execution_and_its_request_and_go_to_the_configured_bus() {
    for asl in [asl(), cancel_asl()] {
        for (name, task) in publish_tasks(&asl) {
            let entry = &task["Parameters"]["Entries"][0];
            assert_eq!(entry["EventBusName"], "${StatusEventBusName}", "{name}");
            assert_eq!(entry["Source"], "${StatusEventSource}", "{name}");
            assert_eq!(
                entry["Detail"]["Execution.$"], "$.Execution",
                "{name}: which execution"
            );
            assert_eq!(
                entry["Detail"]["Input.$"], "$.Input",
                "{name}: the store, ticket and requester as the trigger gave them"
            );
        }
    }
}

#[test]
fn a_status_event_that_cannot_be_published_never_stops_a_run() {
    for asl in [asl(), cancel_asl()] {
        for (name, task) in publish_tasks(&asl) {
            assert!(
                task.get("ResultPath") == Some(&Value::Null),
                "{name}: the PutEvents answer must not replace the state document"
            );
            let next = task["Next"].as_str().unwrap_or("");
            let catches = catchers(task);
            assert_eq!(catches.len(), 1, "{name}: one catcher");
            assert_eq!(
                strings(&catches[0]["ErrorEquals"]),
                ["States.ALL"],
                "{name}"
            );
            assert!(
                catches[0].get("ResultPath") == Some(&Value::Null),
                "{name}: a failed publish leaves the document as it was"
            );
            assert_eq!(
                catches[0]["Next"], next,
                "{name}: a failed publish goes on exactly as a successful one"
            );
            let retrier = retrier_for(task, "States.ALL")
                .unwrap_or_else(|| panic!("{name}: retries EventBridge errors"));
            assert_bounded_full_jitter(name, "States.ALL", retrier);
            assert!(
                task["TimeoutSeconds"].as_u64().is_some_and(|t| t <= 300),
                "{name}: a hanging PutEvents must not hold the run"
            );
        }
    }
}

#[test]
fn milestones_sit_on_the_only_paths_into_the_states_they_announce() {
    let asl = asl();
    let all = states(&asl);
    for (state, publishers) in [
        ("PlanDecommission", vec!["PublishStarted", "IsPlanDone"]),
        ("DryRunComplete", vec!["PublishDryRunCompleted"]),
        ("IsWaitRequired", vec!["PublishKeysScheduled"]),
        (
            "DisconnectStore",
            vec!["PublishKeysDeleted", "WaitForDisconnect"],
        ),
        ("DeleteStore", vec!["PublishStoreDisconnected"]),
        ("Decommissioned", vec!["PublishStoreDeleted"]),
        ("DecommissionFailed", vec!["PublishFailed"]),
    ] {
        let expected: BTreeSet<String> = publishers.into_iter().map(str::to_string).collect();
        assert_eq!(
            predecessors(all, state),
            expected,
            "transitions into {state}"
        );
    }
    assert_eq!(
        all[asl["StartAt"].as_str().unwrap_or("")]["Next"],
        "PublishStarted",
        "the first thing an execution does is say it started"
    );
    let cancel = cancel_asl();
    let all = states(&cancel);
    assert_eq!(
        predecessors(all, "Cancelled"),
        BTreeSet::from(["PublishCancelled".to_string()])
    );
    assert_eq!(
        predecessors(all, "CancelFailed"),
        BTreeSet::from(["PublishCancelFailed".to_string()])
    );
}

#[test]
fn the_template_lets_both_state_machines_publish_and_forwards_only_their_events() {
    let text = read("template.yaml");
    let entries = yaml_entries(&text);
    let values = |prefix: &[&str]| -> Vec<String> {
        entries
            .iter()
            .filter(|(p, _)| p.iter().map(String::as_str).eq(prefix.iter().copied()))
            .map(|(_, v)| v.clone())
            .collect()
    };
    for machine in ["DecommissionStateMachine", "CancelStateMachine"] {
        assert_eq!(
            values(&[
                "Resources",
                machine,
                "Properties",
                "Policies",
                "-",
                "EventBridgePutEventsPolicy",
                "EventBusName"
            ]),
            ["!Ref StatusEventBusName"],
            "{machine}: events:PutEvents on the status bus only"
        );
        for (substitution, parameter) in [
            ("StatusEventBusName", "!Ref StatusEventBusName"),
            ("StatusEventSource", "!Ref StatusEventSource"),
        ] {
            assert_eq!(
                values(&[
                    "Resources",
                    machine,
                    "Properties",
                    "DefinitionSubstitutions",
                    substitution
                ]),
                [parameter],
                "{machine}: {substitution}"
            );
        }
    }
    let rule = |field: &[&str]| {
        let mut path = vec!["Resources", "StatusEventsRule"];
        path.extend_from_slice(field);
        values(&path)
    };
    assert_eq!(rule(&["Condition"]), ["HasStatusEventsEndpoint"]);
    assert_eq!(
        rule(&["Properties", "EventPattern", "source", "-"]),
        ["!Ref StatusEventSource"]
    );
    assert_eq!(
        rule(&["Properties", "EventPattern", "resources", "-"]),
        ["!Ref DecommissionStateMachine", "!Ref CancelStateMachine"],
        "only this stack's executions are forwarded"
    );
    assert_eq!(
        rule(&["Properties", "Targets", "-", "Arn"]),
        ["!GetAtt StatusEventsApiDestination.Arn"]
    );
    assert!(
        !rule(&["Properties", "Targets", "-", "DeadLetterConfig", "Arn"]).is_empty(),
        "undeliverable status events are kept, not dropped"
    );
}
