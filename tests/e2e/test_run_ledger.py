"""The run ledger on the local stack (src/ledger.rs, src/steps/caller.rs): the real handlers keep
the ledger in moto's DynamoDB (the template's table), the real state machines run in moto's
interpreter, KMS is the emulator.

What an operator relies on: one decommission per store at a time, whatever started it; a step
function invoked with anything but the running decommission's own document changes nothing; the
prior state of a key is what the run read from KMS (never a tag someone planted) and a cancel
restores exactly that; the store's lock never outlives its run (success, failure, cancel, a stop
by hand), so a new run can always start; a step cut off halfway converges when it runs again."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from helpers import (
    MARKER_PREFIX,
    calls_of,
    decommission_input,
    emulator_keys,
    emulator_store,
    execution_count,
    failure,
    http_answer,
    invoke,
    invoke_answer,
    key_records,
    kms_state,
    mutating_calls,
    store_ledger,
    trigger_event,
    wait_for_state,
    webhook_request,
)
from local.client import fixtures, workflow

# A 30-day window at 3 s a day: 90 s, so a decommission sits in WaitForDeletionDate
# (WaitRequired needs the wait to end over 60 s ahead) for the rest of the test.
WAITING_DAY_SECONDS = 3.0
CLOUDHSM_INPUT = "execution-decommission-cloudhsm.json"
XKS_INPUT = "execution-decommission-xks.json"
WEBHOOK = "ticket-webhook"
REFUSED = "NotTheRunningDecommission"
# The step functions that change KMS, as the Lambda Invoke API names them (events/<name>.json
# is a sample document of each).
MUTATING_STEPS = ("schedule-key-deletion", "disconnect-store", "delete-store", "ensure-store-connected")


def execution_arn(e2e: Any, name: str) -> str:
    """The ARN Step Functions gives an execution of the decommission state machine named `name`."""
    return e2e.state_machine_arn.replace(":stateMachine:", ":execution:") + ":" + name


def new_name(prefix: str = "decommission") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def run_to_its_wait(e2e: Any, store: fixtures.Store, name: str | None = None, **overrides: Any) -> str:
    """Start a real 30-day decommission of `store` from the console input and return its ARN once
    it waits out the window (every key pending deletion)."""
    e2e.admin.configure(day_seconds=WAITING_DAY_SECONDS)
    document = decommission_input(store, CLOUDHSM_INPUT, PendingWindowInDays=30, **overrides)
    execution = workflow.start_execution(e2e.sfn, e2e.state_machine_arn, document, name or new_name())
    wait_for_state(e2e, execution, "WaitForDeletionDate")
    return execution


def key_states(e2e: Any, key_ids: list[str]) -> list[str]:
    return [e2e.kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] for key in key_ids]


def cancel_input(store: fixtures.Store, decommission_arn: str) -> dict[str, Any]:
    """The console input of events/cancel-execution.json for `store` and its decommission."""
    return workflow.execution_input(
        "cancel-execution.json", CustomKeyStoreId=store.id, DecommissionExecutionArn=decommission_arn
    )


def run_cancel(trigger_stack: Any, store: fixtures.Store, decommission_arn: str) -> dict[str, Any]:
    """Run the cancel state machine to its end as a console user would; its report."""
    described = workflow.wait_for_end(
        trigger_stack.e2e.sfn, trigger_stack.cancel(cancel_input(store, decommission_arn)), 120
    )
    assert described["status"] == "SUCCEEDED", failure(described)
    return json.loads(described["output"])


def scheduling_section(e2e: Any, execution: str) -> dict[str, Any]:
    """The `Scheduling` section of the run's document once scheduling was done."""
    outputs = workflow.state_outputs(workflow.history(e2e.sfn, execution), "ScheduleKeyDeletion")
    done = [output["Scheduling"] for output in outputs if output and output.get("Scheduling", {}).get("Done")]
    assert len(done) == 1, f"scheduling finished once: {outputs}"
    return done[0]


def assert_new_run_takes_the_store(e2e: Any, store: fixtures.Store) -> str:
    """A new console run of the store starts, gets past its plan (into its wait) and holds the
    store's lock; returns its ARN."""
    new_run = run_to_its_wait(e2e, store)
    lock, runs = store_ledger(e2e, store.id)
    assert lock is not None and lock["Execution"] == new_run, f"the new run holds the store's lock: {lock}"
    assert "Outcome" not in runs[new_run], runs[new_run]
    return new_run


# --- The webhook's cancel --------------------------------------------------------------------


def test_webhook_cancel_with_a_newline_in_its_reason_stops_nothing(trigger_stack):
    e2e = trigger_stack.e2e
    e2e.admin.configure(day_seconds=WAITING_DAY_SECONDS)
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=3, disabled=1)
    keys_before = emulator_keys(e2e, store.keys)
    ticket = f"CHG-{uuid.uuid4().hex[:10]}"
    secret = trigger_stack.webhook_secret
    start = json.loads(trigger_event("webhook-start.json")["body"])
    start.update({"CustomKeyStoreId": store.id, "ConfirmCustomKeyStoreName": store.name, "TicketId": ticket})
    status, started = http_answer(
        invoke(trigger_stack.lambda_client, WEBHOOK, webhook_request("webhook-start.json", start, secret))
    )
    assert status == 202, started
    decommission = started["ExecutionArn"]
    wait_for_state(e2e, decommission, "WaitForDeletionDate")
    cancel = json.loads(trigger_event("webhook-cancel.json")["body"]) | {"TicketId": ticket}
    cancels_before = execution_count(e2e.sfn, [trigger_stack.cancel_state_machine_arn])
    before = kms_state(e2e)
    e2e.admin.clear_calls()

    bad = cancel | {"Reason": "change withdrawn\nStatus: approved by security"}
    status, answer = http_answer(
        invoke(trigger_stack.lambda_client, WEBHOOK, webhook_request("webhook-cancel.json", bad, secret))
    )

    assert 400 <= status < 500 and answer["Error"] == "InvalidInput", (status, answer)
    assert "Reason" in answer["Message"], answer
    assert e2e.sfn.describe_execution(executionArn=decommission)["status"] == "RUNNING", "the decommission runs on"
    assert execution_count(e2e.sfn, [trigger_stack.cancel_state_machine_arn]) == cancels_before, "no cancel started"
    assert key_states(e2e, store.keys) == ["PendingDeletion"] * 3
    assert mutating_calls(e2e.admin.calls()) == [] and kms_state(e2e) == before, "nothing changed in KMS"
    lock, runs = store_ledger(e2e, store.id)
    assert lock is not None and lock["Execution"] == decommission, "the decommission still holds the store"
    assert "Outcome" not in runs[decommission], runs[decommission]

    # The ticketing system fixes the reason and sends the cancel again: nothing was half done,
    # so it cancels as usual.
    status, answer = http_answer(
        invoke(trigger_stack.lambda_client, WEBHOOK, webhook_request("webhook-cancel.json", cancel, secret))
    )
    assert (status, answer["Result"], answer["ExecutionArn"]) == (202, "CancelStarted", decommission), answer
    described = workflow.wait_for_end(e2e.sfn, answer["CancelExecutionArn"], 120)
    assert described["status"] == "SUCCEEDED", failure(described)
    assert emulator_keys(e2e, store.keys) == keys_before, "every key as before the decommission"


# --- Planted markers -------------------------------------------------------------------------


def test_planted_markers_neither_change_the_recorded_prior_state_nor_what_a_cancel_restores(trigger_stack):
    e2e = trigger_stack.e2e
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=3, disabled=1)
    enabled, planted = store.keys[:2], store.keys[2]
    name = new_name()
    arn = execution_arn(e2e, name)
    # Someone tags the deliberately Disabled key as if the coming run had found it Enabled: a
    # cancel trusting the tags would enable a key its owner turned off.
    e2e.kms.tag_resource(
        KeyId=planted,
        Tags=[
            {"TagKey": f"{MARKER_PREFIX}execution", "TagValue": arn},
            {"TagKey": f"{MARKER_PREFIX}prior-state", "TagValue": "Enabled"},
        ],
    )
    keys_before = emulator_keys(e2e, store.keys)
    planted_arn = keys_before[planted]["arn"]

    decommission = run_to_its_wait(e2e, store, name=name)

    assert decommission == arn
    records = key_records(e2e, decommission)
    assert set(records) == set(store.keys), "one record per key of the store"
    assert records[planted]["PriorState"] == "Disabled", records[planted]
    assert "prior-state=Enabled" in records[planted].get("MarkerNote", ""), records[planted]
    for key in enabled:
        assert (records[key]["PriorState"], records[key].get("MarkerNote")) == ("Enabled", None), records[key]
    scheduling = scheduling_section(e2e, decommission)
    assert scheduling["KeysWithForeignMarkers"] == 1, scheduling
    assert [entry.split(" ")[0] for entry in scheduling["KeysWithForeignMarkersSample"]] == [planted_arn], scheduling
    tags = emulator_keys(e2e, [planted])[planted]["tags"]
    assert tags[f"{MARKER_PREFIX}prior-state"] == "Disabled", "the run's own marker replaces the planted one"

    report = run_cancel(trigger_stack, store, decommission)

    assert key_states(e2e, store.keys) == ["Enabled", "Enabled", "Disabled"], "the planted key stays Disabled"
    assert (report["KeysRestored"], report["KeysReEnabled"]) == (3, 2), report
    after = emulator_keys(e2e, store.keys)
    for key in enabled:
        assert after[key] == keys_before[key], f"key {key} exactly as before"
    assert not [tag for tag in after[planted]["tags"] if tag.startswith(MARKER_PREFIX)], after[planted]["tags"]
    assert key_records(e2e, decommission)[planted]["StateAfterRestore"] == "Disabled"


# --- One decommission per store ---------------------------------------------------------------


def test_second_console_run_of_a_store_fails_decommission_in_progress_and_changes_nothing(e2e):
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=3, disabled=1)
    first = run_to_its_wait(e2e, store)
    before = kms_state(e2e)
    e2e.admin.clear_calls()

    second = workflow.start_execution(
        e2e.sfn, e2e.state_machine_arn, decommission_input(store, CLOUDHSM_INPUT, PendingWindowInDays=30), new_name()
    )
    described, events = e2e.finish(second, timeout=120)
    calls = e2e.admin.calls()

    assert described["status"] == "FAILED", failure(described)
    assert described["error"] == "DecommissionInProgress", failure(described)
    assert first in described["cause"], f"the cause names the run holding the store: {described['cause']}"
    assert workflow.task_failures(events) == [("PlanDecommission", "DecommissionInProgress")], "no retry"
    assert "ScheduleKeyDeletion" not in workflow.states_entered(events)
    assert mutating_calls(calls) == [], "the second run made no change in KMS"
    assert kms_state(e2e) == before
    assert e2e.sfn.describe_execution(executionArn=first)["status"] == "RUNNING", "the first run goes on"
    lock, runs = store_ledger(e2e, store.id)
    assert lock is not None and lock["Execution"] == first, lock
    assert list(runs) == [first], "the refused run left no record"


# --- Forged documents -------------------------------------------------------------------------


def planned_store(e2e: Any, store: fixtures.Store) -> dict[str, Any]:
    """The `Store` section a plan of `store` writes (anyone allowed DescribeCustomKeyStores reads it)."""
    described = e2e.kms.describe_custom_key_stores(CustomKeyStoreId=store.id)["CustomKeyStores"][0]
    return {
        "CustomKeyStoreId": store.id,
        "CustomKeyStoreName": store.name,
        "CustomKeyStoreType": described["CustomKeyStoreType"],
        "CloudHsmClusterId": described.get("CloudHsmClusterId"),
        "ConnectionState": described["ConnectionState"],
        "ConnectionErrorCode": None,
    }


def forged_document(
    e2e: Any, function: str, store: fixtures.Store, execution: str, request: dict[str, Any]
) -> dict[str, Any]:
    """A complete document for `function` (every section the steps before it write, from
    events/<function>.json) acting on `store` for `execution` with `request`."""
    document = workflow.execution_input(f"{function}.json")
    document["Input"] = dict(request)
    document["Request"] = dict(request)
    document["Execution"] = {
        "Id": execution,
        "Name": execution.rsplit(":", 1)[1],
        "StartTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
    }
    document["Store"] = planned_store(e2e, store)
    keys = [e2e.kms.describe_key(KeyId=key)["KeyMetadata"] for key in store.keys]
    document["Plan"].update(
        {
            "KeysInStore": len(keys),
            "KeysByState": dict(Counter(key["KeyState"] for key in keys)),
            "Keys": [{"KeyId": key["KeyId"], "Arn": key["Arn"], "KeyState": key["KeyState"]} for key in keys],
        }
    )
    return document


def forged_request(store: fixtures.Store) -> dict[str, Any]:
    """A validated request (the `Request` section) for `store`, the last-use guard off."""
    request = workflow.execution_input("schedule-key-deletion.json")["Request"]
    return request | {"CustomKeyStoreId": store.id, "ConfirmCustomKeyStoreName": store.name, "MinDaysSinceLastUse": 0}


def assert_every_step_refuses(trigger_stack: Any, documents: dict[str, dict[str, Any]], why: str) -> None:
    """Each step function answers its document with NotTheRunningDecommission, saying `why`,
    and nothing changes in KMS."""
    e2e = trigger_stack.e2e
    before = kms_state(e2e)
    e2e.admin.clear_calls()
    for function, document in documents.items():
        function_error, payload = invoke_answer(trigger_stack.lambda_client, function, document)
        assert function_error and payload["errorType"] == REFUSED, f"{function}: {payload}"
        message = payload["errorMessage"]
        assert document["Execution"]["Id"] in message and why in message, f"{function}: {message}"
        assert "nothing was changed" in message, message
    assert mutating_calls(e2e.admin.calls()) == [], "no forged document changed anything in KMS"
    assert kms_state(e2e) == before


def test_forged_documents_with_a_made_up_execution_change_nothing(trigger_stack):
    e2e = trigger_stack.e2e
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=3, disabled=1)
    # ensure-store-connected would connect a disconnected store: aim it at one.
    idle = fixtures.create_cloudhsm_store(e2e.kms)
    made_up = execution_arn(e2e, new_name("forged"))
    targets = {function: idle if function == "ensure-store-connected" else store for function in MUTATING_STEPS}
    documents = {
        function: forged_document(e2e, function, target, made_up, forged_request(target))
        for function, target in targets.items()
    }
    keys_before = emulator_keys(e2e, store.keys)

    assert_every_step_refuses(trigger_stack, documents, "Step Functions has no such execution")

    assert emulator_keys(e2e, store.keys) == keys_before
    assert key_states(e2e, store.keys) == ["Enabled", "Enabled", "Disabled"]
    assert emulator_store(e2e, store.id)["state"] == "CONNECTED"
    assert emulator_store(e2e, idle.id)["state"] == "DISCONNECTED"
    assert store_ledger(e2e, store.id) == (None, {}) and key_records(e2e, made_up) == {}, "nothing in the ledger"


def test_forged_documents_naming_another_stores_running_decommission_change_nothing(trigger_stack):
    e2e = trigger_stack.e2e
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=2, disabled=1)
    other = fixtures.make_store(e2e.kms, "cloudhsm", keys=2)
    running = run_to_its_wait(e2e, other)
    keys_before = emulator_keys(e2e, store.keys)
    request = forged_request(store)
    documents = {function: forged_document(e2e, function, store, running, request) for function in MUTATING_STEPS}

    assert_every_step_refuses(
        trigger_stack, documents, f"the execution decommissions store {other.id}, the document names {store.id}"
    )

    assert emulator_keys(e2e, store.keys) == keys_before
    assert emulator_store(e2e, store.id)["state"] == "CONNECTED"
    assert key_states(e2e, other.keys) == ["PendingDeletion"] * 2
    assert e2e.sfn.describe_execution(executionArn=running)["status"] == "RUNNING"
    assert store_ledger(e2e, store.id) == (None, {})


def test_forged_documents_naming_the_stores_own_run_with_another_request_change_nothing(trigger_stack):
    e2e = trigger_stack.e2e
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=2, disabled=1)
    # The run was started with the default last-use guard (MinDaysSinceLastUse absent: 30).
    document = decommission_input(store, CLOUDHSM_INPUT, PendingWindowInDays=30)
    del document["MinDaysSinceLastUse"]
    e2e.admin.configure(day_seconds=WAITING_DAY_SECONDS)
    running = workflow.start_execution(e2e.sfn, e2e.state_machine_arn, document, new_name())
    events = wait_for_state(e2e, running, "WaitForDeletionDate")
    # The run's own document, as the history shows it, with only the guard turned off.
    own = workflow.state_outputs(events, "PlanDecommission")[-1]
    assert own["Request"]["MinDaysSinceLastUse"] == 30, own["Request"]
    request = own["Request"] | {"MinDaysSinceLastUse": 0}
    documents = {}
    for function in MUTATING_STEPS:
        forged = forged_document(e2e, function, store, running, request)
        documents[function] = forged | {"Execution": own["Execution"], "Store": own["Store"]}
        documents[function]["Input"] = own["Input"] | {"MinDaysSinceLastUse": 0}
    keys_before = emulator_keys(e2e, store.keys)

    assert_every_step_refuses(trigger_stack, documents, "request differs from the input the execution was started with")

    assert emulator_keys(e2e, store.keys) == keys_before
    assert key_states(e2e, store.keys) == ["PendingDeletion"] * 2
    assert emulator_store(e2e, store.id)["state"] == "CONNECTED", "the store stays connected through the wait"
    assert e2e.sfn.describe_execution(executionArn=running)["status"] == "RUNNING"
    lock, _ = store_ledger(e2e, store.id)
    assert lock is not None and lock["Execution"] == running


# --- The store's lock never outlives its run --------------------------------------------------


def test_lock_is_released_when_the_store_is_deleted(e2e):
    store = fixtures.make_store(e2e.kms, "xks", keys=3, disabled=1)
    prior = dict(zip(store.keys, ["Enabled", "Enabled", "Disabled"], strict=True))

    execution = e2e.run(decommission_input(store, XKS_INPUT, PendingWindowInDays=7))
    described, _ = e2e.finish(execution)

    assert described["status"] == "SUCCEEDED", failure(described)
    assert not fixtures.store_exists(e2e.kms, store.id)
    lock, runs = store_ledger(e2e, store.id)
    assert lock is None, f"the lock is released: {lock}"
    assert runs[execution]["Outcome"] == "Succeeded", runs[execution]
    assert runs[execution].get("EndedAt"), runs[execution]
    records = key_records(e2e, execution)
    assert set(records) == set(store.keys), "the ledger keeps every key after KMS deleted it"
    for key, record in records.items():
        assert record["PriorState"] == prior[key], record
        missing = [field for field in ("ScheduledAt", "DeletionDate", "SeenDeletedAt") if not record.get(field)]
        assert not missing, f"key {key}: {missing} not recorded: {record}"
        # (RFC 3339 UTC, whole seconds: they compare as strings.)
        assert record["ScheduledAt"] < record["DeletionDate"], record
        assert record["ScheduledAt"] <= record["SeenDeletedAt"], record


def test_after_a_refused_or_failed_run_a_new_run_of_the_store_starts(e2e):
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=2, disabled=1)
    before = kms_state(e2e)
    refused = e2e.run(decommission_input(store, CLOUDHSM_INPUT, ConfirmCustomKeyStoreName=store.name + "-typo"))
    described, _ = e2e.finish(refused)
    assert (described["status"], described["error"]) == ("FAILED", "ConfirmationMismatch"), failure(described)
    assert kms_state(e2e) == before, "the refused run changed nothing in KMS"
    lock, runs = store_ledger(e2e, store.id)
    assert lock is None and refused not in runs, "a run refused before the lock leaves nothing in the ledger"

    # A run that fails after it took the lock (a key an application just used: KeysRecentlyUsed
    # once its plan is done) leaves the lock to the next run, which records how it ended.
    e2e.kms.encrypt(KeyId=store.keys[0], Plaintext=b"application data")
    failed = e2e.run(decommission_input(store, CLOUDHSM_INPUT))
    described, _ = e2e.finish(failed)
    assert (described["status"], described["error"]) == ("FAILED", "KeysRecentlyUsed"), failure(described)
    lock, _ = store_ledger(e2e, store.id)
    assert lock is not None and lock["Execution"] == failed, f"the failed run holds the lock: {lock}"

    new_run = run_to_its_wait(e2e, store, MinDaysSinceLastUse=0)
    lock, runs = store_ledger(e2e, store.id)
    assert lock is not None and lock["Execution"] == new_run, f"the new run holds the store's lock: {lock}"
    assert runs[failed]["Outcome"] == "FAILED", runs[failed]
    assert "KeysRecentlyUsed" in runs[failed]["OutcomeDetail"] and new_run in runs[failed]["OutcomeDetail"]
    assert key_records(e2e, failed) == {}, "the failed run recorded no key"


def test_after_a_cancel_the_lock_is_released_and_a_new_run_starts(trigger_stack):
    e2e = trigger_stack.e2e
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=2, disabled=1)
    cancelled = run_to_its_wait(e2e, store)

    report = run_cancel(trigger_stack, store, cancelled)

    assert report["KeysRestored"] == 2, report
    lock, runs = store_ledger(e2e, store.id)
    assert lock is None, f"the cancel released the lock: {lock}"
    assert runs[cancelled]["Outcome"] == "Cancelled", runs[cancelled]
    assert all(record.get("RestoredAt") for record in key_records(e2e, cancelled).values())
    assert_new_run_takes_the_store(e2e, store)
    assert store_ledger(e2e, store.id)[1][cancelled]["Outcome"] == "Cancelled", "the takeover kept the outcome"


def test_after_a_stop_by_hand_a_new_run_takes_the_lock_over(e2e):
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=2, disabled=1)
    stopped = run_to_its_wait(e2e, store)
    e2e.sfn.stop_execution(executionArn=stopped, error="StoppedByHand", cause="operator stopped it in the console")
    assert workflow.wait_for_end(e2e.sfn, stopped, 30)["status"] == "ABORTED"

    new_run = assert_new_run_takes_the_store(e2e, store)

    _, runs = store_ledger(e2e, store.id)
    assert runs[stopped]["Outcome"] == "ABORTED", runs[stopped]
    assert new_run in runs[stopped]["OutcomeDetail"], runs[stopped]
    # The stopped run's keys stay pending deletion: they are its own, not the new run's.
    assert key_states(e2e, store.keys) == ["PendingDeletion"] * 2
    assert set(key_records(e2e, stopped)) == set(store.keys)
    assert key_records(e2e, new_run) == {}
    assert scheduling_section(e2e, new_run)["KeysAlreadyPending"] == 2


# --- A step cut off halfway -------------------------------------------------------------------


def state_input(events: list[dict[str, Any]], state: str) -> dict[str, Any]:
    """The document the execution first entered `state` with."""
    entered = [e["stateEnteredEventDetails"] for e in events if "stateEnteredEventDetails" in e]
    return json.loads(next(details["input"] for details in entered if details["name"] == state))


def test_scheduling_cut_off_after_recording_keys_converges_when_the_step_runs_again(trigger_stack):
    e2e = trigger_stack.e2e
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=3, disabled=1)
    prior = dict(zip(store.keys, ["Enabled", "Enabled", "Disabled"], strict=True))
    # More failures than the three keys' SDK attempts together (3 each): some key's attempts run
    # out after its record was written and its markers were tagged, the step fails, and the state
    # machine's Retry runs it again.
    e2e.admin.fail_next("ScheduleKeyDeletion", "KMSInternalException", 3 * 3 + 1)

    execution = run_to_its_wait(e2e, store)

    events = workflow.history(e2e.sfn, execution)
    assert ("ScheduleKeyDeletion", "KMSInternalException") in workflow.task_failures(events)
    calls = e2e.admin.calls()
    assert len(calls_of(calls, "ScheduleKeyDeletion", "KMSInternalException")) == 3 * 3 + 1
    tagged = Counter(call["key_id"] for call in calls_of(calls, "TagResource", "OK"))
    assert max(tagged.values()) >= 2, f"a key recorded and tagged before the failure was handled again: {tagged}"
    scheduled = Counter(call["key_id"] for call in calls_of(calls, "ScheduleKeyDeletion", "OK"))
    assert scheduled == dict.fromkeys(store.keys, 1), f"each key scheduled exactly once: {scheduled}"
    assert key_states(e2e, store.keys) == ["PendingDeletion"] * 3
    records = key_records(e2e, execution)
    assert set(records) == set(store.keys)
    for key, record in records.items():
        assert record["PriorState"] == prior[key], f"the state before the run, kept across attempts: {record}"
        assert record.get("ScheduledAt") and record.get("DeletionDate"), record
    scheduling = scheduling_section(e2e, execution)
    counts = (scheduling["KeysScheduled"], scheduling["KeysAlreadyPending"], scheduling["KeysWithForeignMarkers"])
    assert counts == (3, 0, 0), scheduling
    tags = emulator_keys(e2e, store.keys)
    assert [tags[key]["tags"][f"{MARKER_PREFIX}prior-state"] for key in store.keys] == list(prior.values())
    assert {tags[key]["tags"][f"{MARKER_PREFIX}execution"] for key in store.keys} == {execution}

    # The step cut off once more, this time after every key was scheduled (its answer lost), and
    # run again with the run's own document while the run waits: its keys are still its own.
    before = kms_state(e2e)
    e2e.admin.clear_calls()
    again = invoke(trigger_stack.lambda_client, "schedule-key-deletion", state_input(events, "ScheduleKeyDeletion"))
    rerun = again["Scheduling"]
    assert (rerun["Done"], rerun["KeysScheduled"], rerun["KeysAlreadyPending"]) == (True, 3, 0), rerun
    assert mutating_calls(e2e.admin.calls()) == [] and kms_state(e2e) == before
    assert key_records(e2e, execution) == records, "the ledger keeps the first records"
