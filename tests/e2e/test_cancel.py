"""Cancelling a decommission on the local stack (docs/cancel.md): the real cancel state machine
(statemachine/cancel.asl.json in moto's interpreter) and `cancel-decommission` binary, started from
the console input of events/cancel-execution.json or by the webhook's `cancel`, against a real
decommission run by the real decommission state machine; KMS is the emulator, whose records of
keys and stores are compared before and after."""

from __future__ import annotations

import json
import uuid
from typing import Any

from helpers import (
    MARKER_PREFIX,
    assert_untouched,
    bystanders,
    decommission_input,
    emulator_keys,
    emulator_store,
    failure,
    http_answer,
    invoke,
    kms_state,
    mutating_calls,
    trigger_event,
    wait_for_state,
    webhook_request,
)
from local.client import fixtures, workflow

# A 30-day window at 3 s a day: 90 s, so the decommission sits in WaitForDeletionDate
# (WaitRequired needs the wait to end over 60 s ahead) while the cancel runs.
WAITING_DAY_SECONDS = 3.0
WEBHOOK = "ticket-webhook"


def cancel_input(store: fixtures.Store, decommission_arn: str, **overrides: Any) -> dict[str, Any]:
    """The console input of events/cancel-execution.json for `store` and its decommission."""
    return workflow.execution_input(
        "cancel-execution.json", CustomKeyStoreId=store.id, DecommissionExecutionArn=decommission_arn, **overrides
    )


def decommission_in_its_wait(e2e: Any, store: fixtures.Store) -> str:
    """Start a real 30-day decommission of `store` and return once it waits out the window
    (every key pending deletion, carrying its markers)."""
    e2e.admin.configure(day_seconds=WAITING_DAY_SECONDS)
    execution = e2e.run(decommission_input(store, "execution-decommission-cloudhsm.json", PendingWindowInDays=30))
    wait_for_state(e2e, execution, "WaitForDeletionDate")
    for key, record in emulator_keys(e2e, store.keys).items():
        assert record["state"] == "PendingDeletion", f"key {key} not scheduled: {record}"
        assert record["tags"].get(f"{MARKER_PREFIX}execution") == execution
    return execution


def run_cancel(trigger_stack: Any, document: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the cancel state machine to its end; (DescribeExecution, the report)."""
    e2e = trigger_stack.e2e
    described = workflow.wait_for_end(e2e.sfn, trigger_stack.cancel(document), 120)
    assert described["status"] == "SUCCEEDED", failure(described)
    return described, json.loads(described["output"])


def test_cancel_during_the_wait_restores_every_key_to_its_prior_state(trigger_stack):
    e2e = trigger_stack.e2e
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=4, disabled=2)
    _, snapshots, other = bystanders(e2e)
    keys_before = emulator_keys(e2e, store.keys)
    store_before = emulator_store(e2e, store.id)
    decommission = decommission_in_its_wait(e2e, store)
    e2e.admin.clear_calls()

    _, report = run_cancel(trigger_stack, cancel_input(store, decommission))

    stopped = e2e.sfn.describe_execution(executionArn=decommission)
    assert stopped["status"] == "ABORTED", "the decommission is stopped"
    # Every key exactly as before the decommission: Enabled ones Enabled, Disabled ones Disabled,
    # no deletion date, no markers (the emulator's whole record of each key).
    assert emulator_keys(e2e, store.keys) == keys_before
    states = [e2e.kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] for key in store.keys]
    assert states == ["Enabled", "Enabled", "Disabled", "Disabled"]
    assert emulator_store(e2e, store.id) == store_before, "the store is untouched"
    assert fixtures.connection_state(e2e.kms, store.id) == "CONNECTED"
    outcome = (report["Outcome"], report["DecommissionStatus"], report["StoppedByThisCancel"])
    assert outcome == ("Cancelled", "RUNNING", True), report
    assert (report["KeysRestored"], report["KeysDeletionCancelled"], report["KeysReEnabled"]) == (4, 4, 2), report
    assert (report["KeysDeleted"], report["StoreDeleted"], report["KeysGone"]) == (0, False, 0), report
    assert report["DecommissionKeysScheduled"] == 4
    touched = {c["key_id"] for c in mutating_calls(e2e.admin.calls()) if c.get("key_id")}
    assert touched == set(store.keys), "the cancel changes only the keys the decommission scheduled"
    assert_untouched(e2e, snapshots)
    assert fixtures.connection_state(e2e.kms, other.id) == "CONNECTED"


def test_cancel_run_twice_the_second_changes_nothing(trigger_stack):
    e2e = trigger_stack.e2e
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=2, disabled=1)
    keys_before = emulator_keys(e2e, store.keys)
    decommission = decommission_in_its_wait(e2e, store)
    document = cancel_input(store, decommission)
    _, first = run_cancel(trigger_stack, document)
    assert first["KeysRestored"] == 2, first
    after_first = kms_state(e2e)
    e2e.admin.clear_calls()

    _, second = run_cancel(trigger_stack, document)

    assert (second["DecommissionStatus"], second["StoppedByThisCancel"]) == ("ABORTED", False), second
    assert (second["KeysRestored"], second["KeysDeletionCancelled"], second["KeysReEnabled"]) == (0, 0, 0), second
    assert mutating_calls(e2e.admin.calls()) == [], "the second cancel changes nothing"
    assert kms_state(e2e) == after_first
    assert emulator_keys(e2e, store.keys) == keys_before


def test_cancel_after_the_keys_were_deleted_says_they_cannot_come_back(trigger_stack):
    e2e = trigger_stack.e2e
    store = fixtures.make_store(e2e.kms, "xks", keys=3)
    decommission = e2e.run(decommission_input(store, "execution-decommission-xks.json", PendingWindowInDays=7))
    described, _ = e2e.finish(decommission)
    assert described["status"] == "SUCCEEDED", failure(described)
    before = kms_state(e2e)
    e2e.admin.clear_calls()

    _, report = run_cancel(trigger_stack, cancel_input(store, decommission))

    assert (report["DecommissionStatus"], report["StoppedByThisCancel"]) == ("SUCCEEDED", False), report
    assert (report["KeysRestored"], report["KeysDeleted"], report["StoreDeleted"]) == (0, 3, True), report
    follow_ups = " ".join(report["FollowUps"])
    assert "3 key(s) were already deleted" in follow_ups and "cannot" in follow_ups, report["FollowUps"]
    assert store.id in follow_ups, "the report names the store that no longer exists"
    assert mutating_calls(e2e.admin.calls()) == [], "nothing to restore, nothing changed"
    assert kms_state(e2e) == before


def test_cancel_while_the_decommission_runs_after_its_keys_were_deleted_reports_them(trigger_stack):
    e2e = trigger_stack.e2e
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=2)
    # The keys' window ends and KMS deletes them; the decommission then cannot disconnect the
    # store (KMS failing, retried by the state machine) and is still running when cancelled.
    e2e.admin.fail_next("DisconnectCustomKeyStore", "KMSInternalException", 100_000)
    decommission = e2e.run(decommission_input(store, "execution-decommission-cloudhsm.json", PendingWindowInDays=7))
    wait_for_state(e2e, decommission, "DisconnectStore")
    assert not any(fixtures.key_exists(e2e.kms, key) for key in store.keys)
    e2e.admin.clear_calls()

    _, report = run_cancel(trigger_stack, cancel_input(store, decommission))

    # Stopped by the cancel. AWS reports ABORTED; moto's interpreter reports FAILED when the
    # stop lands while a task attempt is in flight (it records that attempt's error as the end).
    assert e2e.sfn.describe_execution(executionArn=decommission)["status"] in ("ABORTED", "FAILED")
    assert "DeleteStore" not in workflow.states_entered(workflow.history(e2e.sfn, decommission))
    assert (report["StoppedByThisCancel"], report["KeysRestored"], report["StoreDeleted"]) == (True, 0, False), report
    assert report["DecommissionKeysScheduled"] == 2, "the count comes from the decommission's history"
    assert (report["KeysAlreadyDeleted"], report["KeysDeleted"], report["KeysGone"]) == (2, 2, 0), report
    follow_ups = report["FollowUps"]
    assert any(line.startswith("2 key(s) were already deleted by KMS") for line in follow_ups), follow_ups
    # Only the decommission's disconnect attempt in flight when it was stopped, refused by KMS.
    assert [c for c in mutating_calls(e2e.admin.calls()) if c["outcome"] == "OK"] == []
    assert emulator_store(e2e, store.id)["state"] == "CONNECTED", "the store is left as it was"


def test_webhook_cancel_by_ticket_stops_the_decommission_and_restores_the_keys(trigger_stack):
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

    status, answer = http_answer(
        invoke(trigger_stack.lambda_client, WEBHOOK, webhook_request("webhook-cancel.json", cancel, secret))
    )

    assert status == 202, answer
    started_cancel = (answer["Result"], answer["ExecutionArn"], answer["StoppedNow"])
    assert started_cancel == ("CancelStarted", decommission, True), answer
    described = workflow.wait_for_end(e2e.sfn, answer["CancelExecutionArn"], 120)
    assert described["status"] == "SUCCEEDED", failure(described)
    report = json.loads(described["output"])
    assert (report["TicketId"], report["KeysRestored"], report["KeysReEnabled"]) == (ticket, 3, 2), report
    # (moto's StopExecution drops the error name, CancelledByTicket on AWS: only the status shows.)
    assert e2e.sfn.describe_execution(executionArn=decommission)["status"] == "ABORTED"
    assert emulator_keys(e2e, store.keys) == keys_before, "every key as before the decommission"
    # The ticketing system sends the cancel again: same cancel back, nothing new started.
    status, again = http_answer(
        invoke(trigger_stack.lambda_client, WEBHOOK, webhook_request("webhook-cancel.json", cancel, secret))
    )
    assert (status, again["CancelExecutionArn"], again["StoppedNow"]) == (200, answer["CancelExecutionArn"], False), (
        again
    )
    status_request = webhook_request("webhook-status.json", {"Action": "status", "TicketId": ticket}, secret)
    status, state = http_answer(invoke(trigger_stack.lambda_client, WEBHOOK, status_request))
    assert (status, state["Status"], state["ExecutionArn"]) == (200, "ABORTED", decommission), state
