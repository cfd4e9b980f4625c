"""The quarantine before deletion (docs/quarantine.md) end to end: the real state machine in moto's
interpreter, the real quarantine-store handler (QUARANTINE_DAY_SECONDS 1, QUARANTINE_CHECK_SECONDS 2,
CLOUDTRAIL_DELIVERY_MARGIN_SECONDS 1: local/stack/launcher.py), and the KMS emulator's CloudTrail
record of every call, which the handler reads with LookupEvents.

What an operator relies on: a run with `QuarantineDays` disconnects the store before any key is
touched; anyone who tries one of its keys meanwhile (an application with its own credentials, its
Encrypt refused with KMSInvalidStateException) is found by the next check, named in the failure
`KeysNeededDuringQuarantine` with the key and the operation, the store is connected again, and no key
is scheduled; a quiet quarantine lasts its days and the run goes on as usual; 0 days, or none
asked, skips it; a store that will not connect again afterwards ends `ConnectionFailed`, or goes on
with `AllowOrphanedKeyMaterial`; a malformed `QuarantineDays` changes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from helpers import (
    PAYMENTS_APP,
    call_as,
    calls_of,
    decommission_input,
    failure,
    key_records,
    mutating_calls,
    store_ledger,
    wait_for_state,
)
from local.client import fixtures, workflow

CLOUDHSM_INPUT = "execution-decommission-cloudhsm.json"
# The shortest window KMS allows: 7 s at the session's one emulated day a second.
WINDOW_DAYS = 7
# QUARANTINE_DAY_SECONDS of the local stack (LOCAL_HANDLER_CONFIG): a quarantine day lasts 1 s.
QUARANTINE_DAY_SECONDS = 1
CHECK_STATE = "WaitForQuarantineCheck"
QUARANTINE_STATES = ("QuarantineStore", "QuarantineNext", CHECK_STATE)
CONNECTION_ERROR = "INSUFFICIENT_CLOUDHSM_HSMS"


def parse_time(value: str) -> datetime:
    """A document timestamp (`2026-11-28T10:00:00Z`)."""
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def quarantine_outputs(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The documents QuarantineStore passed on (its successful invocations), in order."""
    return [doc for doc in workflow.state_outputs(events, "QuarantineStore") if doc and "Failure" not in doc]


def error_message(described: dict[str, Any]) -> str:
    """The handler's errorMessage in a failed execution's cause."""
    return json.loads(described["cause"])["errorMessage"]


def index_of(entered: list[str], state: str, last: bool = False) -> int:
    assert state in entered, f"{state} never entered: {entered}"
    return len(entered) - 1 - entered[::-1].index(state) if last else entered.index(state)


def start(e2e: Any, store: fixtures.Store, **overrides: Any) -> str:
    """A console run of `store` (the CloudHSM sample input, a 7-day window) with `overrides`."""
    return e2e.run(decommission_input(store, CLOUDHSM_INPUT, PendingWindowInDays=WINDOW_DAYS, **overrides))


def wait_in_quarantine(e2e: Any, execution: str) -> None:
    """Wait until the run watches CloudTrail (its store is disconnected: QuarantineStore asks to
    wait for a check only once the store is DISCONNECTED)."""
    wait_for_state(e2e, execution, CHECK_STATE, timeout=60)


def assert_quarantined_then_reconnected(calls: list[dict[str, Any]], store: fixtures.Store, days: int) -> None:
    """The run's first KMS changes are the quarantine's: the store disconnected, CloudTrail read
    (LookupEvents) meanwhile, the store connected again no sooner than `days` quarantine days later."""
    changes = mutating_calls(calls)
    assert [c["operation"] for c in changes[:2]] == ["DisconnectCustomKeyStore", "ConnectCustomKeyStore"], changes
    disconnect, connect = changes[:2]
    assert disconnect["custom_key_store_id"] == connect["custom_key_store_id"] == store.id
    assert (disconnect["outcome"], connect["outcome"]) == ("OK", "OK"), changes[:2]
    assert connect["time"] - disconnect["time"] >= days * QUARANTINE_DAY_SECONDS, "the quarantine lasted its days"
    lookups = [c for c in calls_of(calls, "LookupEvents", "OK") if disconnect["seq"] < c["seq"] < connect["seq"]]
    assert len(lookups) >= len(store.keys), f"every key looked up in CloudTrail during the quarantine: {lookups}"


# --- Someone still needs a key ----------------------------------------------------------------


def test_an_application_trying_a_key_during_the_quarantine_stops_the_run_naming_it_and_reconnects(e2e):
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=3)
    snapshots = {key: fixtures.key_snapshot(e2e.kms, key) for key in store.keys}
    used = store.keys[1]
    used_arn = e2e.kms.describe_key(KeyId=used)["KeyMetadata"]["Arn"]
    e2e.admin.clear_calls()

    # Ten quarantine days (10 s): the attempt is made at the start, so a check before the end finds it.
    execution = start(e2e, store, QuarantineDays=10)
    wait_in_quarantine(e2e, execution)
    assert fixtures.connection_state(e2e.kms, store.id) == "DISCONNECTED"
    # The payments application runs its yearly report: its Encrypt is refused (the store is
    # disconnected) and CloudTrail records who tried, with the application's own credentials.
    attempt = call_as(
        e2e,
        PAYMENTS_APP,
        "encrypt",
        fails_with="KMSInvalidStateException",
        KeyId=used,
        Plaintext=b"yearly report",
    )["detail"]

    described, events = e2e.finish(execution)

    assert described["status"] == "FAILED"
    assert described["error"] == "KeysNeededDuringQuarantine", failure(described)
    message = error_message(described)
    for expected in (
        PAYMENTS_APP.arn,
        used_arn,
        "Encrypt",
        "KMSInvalidStateException",
        attempt["eventID"],
        "CONNECTED again",
        "No key was scheduled",
    ):
        assert expected in message, f"{expected} missing from the cause: {message}"
    assert message.startswith("1 attempt(s)"), message
    assert ("QuarantineStore", "KeysNeededDuringQuarantine") in workflow.task_failures(events)

    # A check before the quarantine's end found it: the run stopped days early.
    outputs = quarantine_outputs(events)
    watching = [doc["Quarantine"] for doc in outputs if doc["Quarantine"]["Phase"] == "Watching"]
    assert watching, [doc["Quarantine"] for doc in outputs]
    assert outputs[0]["Quarantine"]["WasConnected"] is True
    found = next(doc["Quarantine"] for doc in outputs if doc["Quarantine"]["Phase"] == "Reconnecting")
    ends_at = parse_time(found["EndsAt"])
    assert found["FoundCount"] == 1, found
    assert parse_time(found["CheckedThrough"]) < ends_at, f"found by a check before the end: {found}"
    assert described["stopDate"] < ends_at, f"stopped at {described['stopDate']}, the quarantine ends at {ends_at}"
    assert [(f["Principal"], f["KeyArn"], f["Operation"], f["EventId"]) for f in found["Found"]] == [
        (PAYMENTS_APP.arn, used_arn, "Encrypt", attempt["eventID"])
    ], found["Found"]
    entered = workflow.states_entered(events)
    assert not {"EnsureStoreConnected", "ScheduleKeyDeletion", "DisconnectStore", "DeleteStore"} & set(entered)

    # The store is connected again and its keys usable; nothing but the quarantine changed.
    assert fixtures.connection_state(e2e.kms, store.id) == "CONNECTED"
    for key, before in snapshots.items():
        assert fixtures.key_snapshot(e2e.kms, key) == before, f"key {key} was changed"
    calls = e2e.admin.calls()
    assert calls_of(calls, "ScheduleKeyDeletion") == [] and calls_of(calls, "TagResource") == []
    changes = mutating_calls(calls)
    assert [c["operation"] for c in changes] == ["DisconnectCustomKeyStore", "ConnectCustomKeyStore"], changes
    refused = calls_of(calls, "Encrypt")
    assert [(c["key_id"], c["outcome"]) for c in refused] == [(used, "KMSInvalidStateException")]
    assert changes[0]["seq"] < refused[0]["seq"] < changes[1]["seq"], "tried while the store was disconnected"

    # The ledger: the run got as far as the quarantine and recorded no key; a failed run keeps the
    # store's lock until the next run takes it over (docs/ledger.md).
    lock, runs = store_ledger(e2e, store.id)
    assert runs[execution]["Phase"] == "quarantine-store", runs[execution]
    assert lock is not None and lock["Execution"] == execution, lock
    assert key_records(e2e, execution) == {}


# --- Nobody tried -----------------------------------------------------------------------------


def test_a_quiet_quarantine_keeps_the_store_disconnected_its_days_then_the_run_decommissions_it(e2e):
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=2)
    e2e.admin.clear_calls()

    execution = start(e2e, store, QuarantineDays=2)
    described, events = e2e.finish(execution)

    assert described["status"] == "SUCCEEDED", failure(described)
    entered = workflow.states_entered(events)
    for state in QUARANTINE_STATES:
        assert state in entered, f"{state} never entered: {entered}"
    assert index_of(entered, "IsQuarantineRequired") < index_of(entered, "QuarantineStore")
    assert index_of(entered, "QuarantineStore", last=True) < index_of(entered, "EnsureStoreConnected")
    assert index_of(entered, "EnsureStoreConnected") < index_of(entered, "ScheduleKeyDeletion")
    assert entered[-1] == "Decommissioned", entered

    # The store was DISCONNECTED while the run watched its days (as KMS described it to the
    # handler), and connected again before the last check, which reads up to the reconnect.
    outputs = quarantine_outputs(events)
    watching = [
        doc for doc in outputs if doc["Quarantine"]["Phase"] == "Watching" and not doc["Quarantine"]["ReconnectedAt"]
    ]
    assert watching and all(doc["Store"]["ConnectionState"] == "DISCONNECTED" for doc in watching), [
        (doc["Quarantine"]["Phase"], doc["Store"]["ConnectionState"]) for doc in outputs
    ]
    first_end = max(parse_time(doc["Quarantine"]["EndsAt"]) for doc in watching)
    done = outputs[-1]
    quarantine = done["Quarantine"]
    assert (quarantine["Phase"], quarantine["Next"], quarantine["FoundCount"]) == ("Done", "Done", 0), quarantine
    assert done["Store"]["ConnectionState"] == "CONNECTED"
    started_at = parse_time(quarantine["StartedAt"])
    assert (first_end - started_at).total_seconds() == 2 * QUARANTINE_DAY_SECONDS, quarantine
    reconnected_at = parse_time(quarantine["ReconnectedAt"])
    assert reconnected_at >= first_end, quarantine
    assert parse_time(quarantine["CheckedThrough"]) == reconnected_at, "the last check read up to the reconnect"
    assert quarantine["Checks"] >= 1 and quarantine["Lookups"] >= len(store.keys), quarantine

    report = json.loads(described["output"])
    assert report["Quarantine"]["Days"] == 2 and report["Quarantine"]["AttemptsFound"] == 0, report["Quarantine"]
    assert report["KeysScheduled"] == len(store.keys), report

    calls = e2e.admin.calls()
    assert_quarantined_then_reconnected(calls, store, days=2)
    reconnected = mutating_calls(calls)[1]["seq"]
    scheduled = calls_of(calls, "ScheduleKeyDeletion", "OK")
    assert {c["key_id"] for c in scheduled} == set(store.keys)
    assert all(c["seq"] > reconnected for c in calls_of(calls, "TagResource") + scheduled), "no key touched before"
    # Connected for the window: KMS deleted the key material from the cluster.
    assert not fixtures.store_exists(e2e.kms, store.id)
    deleted = {k["key_id"]: k for k in e2e.admin.state()["deleted_keys"]}
    assert {key: deleted[key]["backing_key_deletion"] for key in store.keys} == dict.fromkeys(store.keys, "SUCCESS")

    lock, runs = store_ledger(e2e, store.id)
    assert lock is None and runs[execution]["Outcome"] == "Succeeded", (lock, runs[execution])
    records = key_records(e2e, execution)
    assert set(records) == set(store.keys) and all(r.get("ScheduledAt") for r in records.values()), records


@pytest.mark.parametrize("quarantine", [{"QuarantineDays": 0}, {}], ids=["zero-days", "absent"])
def test_no_quarantine_days_skips_the_quarantine(e2e, quarantine):
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=1)
    e2e.admin.clear_calls()

    execution = start(e2e, store, **quarantine)
    described, events = e2e.finish(execution)

    assert described["status"] == "SUCCEEDED", failure(described)
    entered = workflow.states_entered(events)
    assert "IsQuarantineRequired" in entered
    assert not set(QUARANTINE_STATES + ("WaitForQuarantinePoll",)) & set(entered), entered
    plan = workflow.state_outputs(events, "PlanDecommission")[-1]
    assert (plan["Quarantine"]["Required"], plan["Quarantine"]["Days"]) == (False, 0), plan["Quarantine"]
    assert "Quarantine" not in json.loads(described["output"])

    calls = e2e.admin.calls()
    last_scheduled = max(c["seq"] for c in calls_of(calls, "ScheduleKeyDeletion", "OK"))
    disconnects = calls_of(calls, "DisconnectCustomKeyStore")
    assert len(disconnects) == 1 and disconnects[0]["seq"] > last_scheduled, "disconnected only at the end"
    # No quarantine check read CloudTrail: the only lookups are check-keys-deleted's, of KMS's
    # DeleteKey events once the keys are gone (after every ScheduleKeyDeletion).
    lookups = calls_of(calls, "LookupEvents")
    assert all(c["seq"] > last_scheduled for c in lookups), "no CloudTrail check before scheduling"
    assert store_ledger(e2e, store.id)[1][execution]["Outcome"] == "Succeeded"


# --- The store does not connect again ---------------------------------------------------------


def quarantine_with_failing_connections(e2e: Any, store: fixtures.Store, **overrides: Any) -> str:
    """Start a 3-day quarantine of `store` and, while it watches CloudTrail, make every connect
    attempt of the store end FAILED (INSUFFICIENT_CLOUDHSM_HSMS); the run's ARN."""
    execution = start(e2e, store, QuarantineDays=3, **overrides)
    wait_in_quarantine(e2e, execution)
    e2e.admin.fail_connections(store.id, CONNECTION_ERROR)
    assert calls_of(e2e.admin.calls(), "ConnectCustomKeyStore") == [], (
        "the connection failure must be set before the quarantine connects the store again"
    )
    return execution


def test_a_store_that_cannot_connect_after_a_quiet_quarantine_fails_connection_failed_and_nothing_is_scheduled(e2e):
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=2)
    snapshots = {key: fixtures.key_snapshot(e2e.kms, key) for key in store.keys}
    e2e.admin.clear_calls()

    execution = quarantine_with_failing_connections(e2e, store)
    described, events = e2e.finish(execution)

    assert described["status"] == "FAILED"
    assert described["error"] == "ConnectionFailed", failure(described)
    assert CONNECTION_ERROR in described["cause"]
    # The quarantine itself ended quietly; ensure-store-connected found the store unusable.
    assert quarantine_outputs(events)[-1]["Quarantine"]["Phase"] == "Done"
    failures = workflow.task_failures(events)
    assert failures[-1] == ("EnsureStoreConnected", "ConnectionFailed"), failures
    assert "ScheduleKeyDeletion" not in workflow.states_entered(events)

    calls = e2e.admin.calls()
    assert calls_of(calls, "ScheduleKeyDeletion") == [] and calls_of(calls, "TagResource") == []
    assert_quarantined_then_reconnected(calls, store, days=3)
    assert {c["operation"] for c in mutating_calls(calls)} == {"DisconnectCustomKeyStore", "ConnectCustomKeyStore"}
    assert fixtures.connection_state(e2e.kms, store.id) == "FAILED"
    for key, before in snapshots.items():
        after = fixtures.key_snapshot(e2e.kms, key)
        assert (after["DeletionDate"], after["Tags"]) == (before["DeletionDate"], before["Tags"]), (
            f"key {key} was changed"
        )

    _, runs = store_ledger(e2e, store.id)
    assert runs[execution]["Phase"] == "ensure-store-connected", runs[execution]
    assert key_records(e2e, execution) == {}


def test_a_store_that_cannot_connect_after_a_quiet_quarantine_goes_on_with_allow_orphaned_key_material(e2e):
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=2)
    e2e.admin.clear_calls()

    execution = quarantine_with_failing_connections(e2e, store, AllowOrphanedKeyMaterial=True)
    described, events = e2e.finish(execution)

    # As for any run (docs/workflow-contract.md, "Connect"): ensure-store-connected accepts the
    # unconnectable store, the keys are scheduled and deleted, their material left in the cluster.
    assert described["status"] == "SUCCEEDED", failure(described)
    report = json.loads(described["output"])
    assert report["OrphanedKeyMaterialAccepted"] is True, report
    assert any("AllowOrphanedKeyMaterial" in f and CONNECTION_ERROR in f for f in report["FollowUps"]), report
    assert report["Quarantine"]["AttemptsFound"] == 0 and report["KeysScheduled"] == len(store.keys), report
    connection = workflow.state_outputs(events, "EnsureStoreConnected")[-1]["Connection"]
    assert connection["OrphanedKeyMaterialAccepted"] is True, connection

    calls = e2e.admin.calls()
    assert_quarantined_then_reconnected(calls, store, days=3)
    quarantine_end = mutating_calls(calls)[1]["seq"]
    scheduled = calls_of(calls, "ScheduleKeyDeletion", "OK")
    assert {c["key_id"] for c in scheduled} == set(store.keys)
    assert all(c["seq"] > quarantine_end for c in scheduled)
    assert not fixtures.store_exists(e2e.kms, store.id)
    deleted = {k["key_id"]: k for k in e2e.admin.state()["deleted_keys"]}
    assert all(deleted[key]["backing_key_deletion"] != "SUCCESS" for key in store.keys), (
        "the key material stays in the cluster (orphaned)"
    )

    lock, runs = store_ledger(e2e, store.id)
    assert lock is None and runs[execution]["Outcome"] == "Succeeded", (lock, runs[execution])
    assert set(key_records(e2e, execution)) == set(store.keys)


# --- A malformed QuarantineDays -----------------------------------------------------------------


@pytest.mark.parametrize("days", [-1, 91, 1.5, "7"], ids=["negative", "over-90", "fraction", "string"])
def test_an_invalid_quarantine_days_is_refused_before_anything_changes(e2e, days):
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=1)
    snapshots = {key: fixtures.key_snapshot(e2e.kms, key) for key in store.keys}
    e2e.admin.clear_calls()

    described, events = e2e.finish(start(e2e, store, QuarantineDays=days))

    assert described["status"] == "FAILED"
    assert described["error"] == "InvalidInput", failure(described)
    assert "QuarantineDays" in described["cause"], described["cause"]
    assert not {"QuarantineStore", "EnsureStoreConnected"} & set(workflow.states_entered(events))
    assert mutating_calls(e2e.admin.calls()) == []
    assert fixtures.connection_state(e2e.kms, store.id) == "CONNECTED"
    for key, before in snapshots.items():
        assert fixtures.key_snapshot(e2e.kms, key) == before
    assert store_ledger(e2e, store.id) == (None, {}), "nothing recorded in the ledger"


def test_a_key_created_right_after_the_reconnect_is_caught_before_any_key_is_scheduled(e2e):
    """No key can be created while the store is disconnected; one created once it is connected
    again was never watched, planned or approved. The run stops `KeysCreatedAfterQuarantine`
    naming it, and schedules nothing of its ListKeys page. The window is deterministic: after the
    reconnect the run waits out the delivery margin (1 s) and then reads CloudTrail for each of the
    store's eight keys at the paced 1.9 lookups a second (over 4 s) before it can schedule."""
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=8)
    execution = start(e2e, store, QuarantineDays=1)
    fixtures.wait_for_connection_state(e2e.kms, store.id, "DISCONNECTED", timeout=60)
    fixtures.wait_for_connection_state(e2e.kms, store.id, "CONNECTED", timeout=60)
    late = fixtures.create_store_key(e2e.kms, store, "created once the quarantine connected the store again")
    late_arn = e2e.kms.describe_key(KeyId=late)["KeyMetadata"]["Arn"]

    described, events = e2e.finish(execution)

    assert described["status"] == "FAILED", described
    assert described["error"] == "KeysCreatedAfterQuarantine", failure(described)
    assert late_arn in error_message(described)
    entered = workflow.states_entered(events)
    assert index_of(entered, "QuarantineStore", last=True) < index_of(entered, "ScheduleKeyDeletion")
    calls = e2e.admin.calls()
    assert calls_of(calls, "ScheduleKeyDeletion") == [], "no key was scheduled"
    assert {e2e.kms.describe_key(KeyId=k)["KeyMetadata"]["KeyState"] for k in [*store.keys, late]} == {"Enabled"}
    assert fixtures.connection_state(e2e.kms, store.id) == "CONNECTED"


def test_a_cancel_during_the_quarantine_connects_the_store_again_and_says_so(trigger_stack):
    """A cancel while the store is disconnected for its quarantine stops the run and connects the
    store again (its keys usable again); nothing was scheduled, so nothing is restored."""
    e2e = trigger_stack.e2e
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=2)
    # Ninety quarantine days (90 s): the cancel comes long before the quarantine would end.
    execution = start(e2e, store, QuarantineDays=90)
    wait_in_quarantine(e2e, execution)
    assert fixtures.connection_state(e2e.kms, store.id) == "DISCONNECTED"
    e2e.admin.clear_calls()

    document = workflow.execution_input(
        "cancel-execution.json", CustomKeyStoreId=store.id, DecommissionExecutionArn=execution
    )
    described = workflow.wait_for_end(e2e.sfn, trigger_stack.cancel(document), 120)

    assert described["status"] == "SUCCEEDED", failure(described)
    report = json.loads(described["output"])
    assert (report["Outcome"], report["StoreReconnected"], report["KeysRestored"]) == ("Cancelled", True, 0), report
    assert any("in its quarantine" in f for f in report["FollowUps"]), report
    assert e2e.sfn.describe_execution(executionArn=execution)["status"] == "ABORTED"
    fixtures.wait_for_connection_state(e2e.kms, store.id, "CONNECTED", timeout=60)
    changed = [c["operation"] for c in mutating_calls(e2e.admin.calls()) if c["outcome"] == "OK"]
    assert changed == ["ConnectCustomKeyStore"], changed
    assert {e2e.kms.describe_key(KeyId=k)["KeyMetadata"]["KeyState"] for k in store.keys} == {"Enabled"}
