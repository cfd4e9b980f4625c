//! `arn`: [`Arn::parse`] and what is derived from a parsed ARN (resource ids of keys and
//! clusters, state machine and execution names), plus the `ExecutionArn` input field that uses
//! it.
//!
//! Properties: `parse` accepts exactly the six-part `arn:aws...` strings an independent split
//! accepts; a parsed ARN formats back to the same text; a resource id is what follows its prefix
//! and holds no `/` or `:`; a state machine's execution ARN maps back to the state machine and
//! the reverse, text for text; `ExecutionArn` accepts an ARN exactly when it is free text and
//! names an execution.

use kms_decommission::arn::Arn;
use kms_decommission::input::ExecutionArn;
use serde_json::Value;

use super::mutate::{mutate_bytes, mutate_string_input, Rng, COMMON_WORDS};
use super::{is_free_text, Target, Verdict};

/// The target.
pub const TARGET: Target = Target {
    name: "arn",
    what: "arn::Arn::parse and its accessors, input::ExecutionArn",
    bounded_cases: 500_000,
    run,
    mutate,
};

const WORDS: &[&str] = &[
    "arn",
    "aws",
    "aws-cn",
    "aws-us-gov",
    "kms",
    "cloudhsm",
    "states",
    "iam",
    "sts",
    "us-east-1",
    "123456789012",
    "key/",
    "cluster/",
    "alias/",
    "stateMachine:",
    "execution:",
    ":",
    "/",
    "::",
];

fn mutate(rng: &mut Rng, data: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    if rng.one_in(3) {
        mutate_bytes(rng, data, others, WORDS)
    } else {
        mutate_string_input(rng, data, WORDS, COMMON_WORDS)
    }
}

/// Runs one input (any bytes, read as UTF-8 with replacement characters).
pub fn run(data: &[u8]) -> Verdict {
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();
    let parsed = Arn::parse(text);

    let parts: Vec<&str> = text.splitn(6, ':').collect();
    let expected = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && !parts[2].is_empty()
        && !parts[5].is_empty();
    assert_eq!(
        parsed.is_some(),
        expected,
        "Arn::parse({text:?}) = {parsed:?}"
    );

    let as_input = serde_json::from_value::<ExecutionArn>(Value::String(text.to_owned()));
    let names_execution = parsed.as_ref().and_then(Arn::execution_names).is_some();
    assert_eq!(
        as_input.is_ok(),
        names_execution && is_free_text(text),
        "ExecutionArn({text:?}) = {as_input:?}"
    );

    let Some(arn) = parsed else {
        return Verdict::Refused;
    };
    let formatted = format!(
        "arn:{}:{}:{}:{}:{}",
        arn.partition, arn.service, arn.region, arn.account, arn.resource
    );
    assert_eq!(formatted, text, "an ARN formats back to itself");

    for (service, prefix) in [("kms", "key/"), ("cloudhsm", "cluster/"), ("kms", "alias/")] {
        if let Some(id) = arn.resource_id(service, prefix) {
            assert_eq!(arn.service, service, "{text:?}");
            assert_eq!(arn.resource, format!("{prefix}{id}"), "{text:?}");
            assert!(
                !id.is_empty() && !id.contains(['/', ':']),
                "{text:?}: {id:?}"
            );
        }
    }

    match arn.state_machine_name() {
        Some(machine) => {
            assert!(!machine.is_empty() && !machine.contains(':'), "{text:?}");
            let execution = arn
                .execution_of("run-1")
                .unwrap_or_else(|| panic!("{text:?} names a state machine but has no execution"));
            let parsed_execution = Arn::parse(&execution)
                .unwrap_or_else(|| panic!("{execution:?} (from {text:?}) does not parse"));
            assert_eq!(
                parsed_execution.execution_names(),
                Some((machine, "run-1")),
                "{execution:?}"
            );
            assert_eq!(
                parsed_execution.state_machine_of_execution().as_deref(),
                Some(text),
                "the execution's state machine is the one it was made from"
            );
        }
        None => assert_eq!(arn.execution_of("run-1"), None, "{text:?}"),
    }

    match arn.execution_names() {
        Some((machine, name)) => {
            assert!(!name.is_empty() && !name.contains(':'), "{text:?}");
            let state_machine = arn
                .state_machine_of_execution()
                .unwrap_or_else(|| panic!("{text:?} names an execution but no state machine"));
            let parsed_machine = Arn::parse(&state_machine)
                .unwrap_or_else(|| panic!("{state_machine:?} (from {text:?}) does not parse"));
            assert_eq!(parsed_machine.state_machine_name(), Some(machine));
            assert_eq!(
                parsed_machine.execution_of(name).as_deref(),
                Some(text),
                "the execution of its state machine is itself"
            );
        }
        None => assert_eq!(arn.state_machine_of_execution(), None, "{text:?}"),
    }
    Verdict::Accepted
}
