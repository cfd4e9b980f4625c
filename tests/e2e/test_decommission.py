"""A decommission end to end, as an operator runs it: the real state machine in moto's interpreter,
the real handlers under cargo lambda watch, KMS served by the emulator over HTTP."""

from __future__ import annotations

import json

from helpers import assert_untouched, bystanders, calls_of, decommission_input, failure, mutating_calls
from local.client import fixtures, workflow

STEPS = (
    "PlanDecommission",
    "EnsureStoreConnected",
    "ScheduleKeyDeletion",
    "CheckKeysDeleted",
    "DisconnectStore",
    "DeleteStore",
    "Decommissioned",
)


def assert_decommissioned(e2e, store, described, events, snapshots, other):
    assert described["status"] == "SUCCEEDED", failure(described)
    entered = workflow.states_entered(events)
    for state in STEPS:
        assert state in entered, f"{state} never entered: {entered}"
    assert json.loads(described["output"]), "the execution's output is the final report"
    assert not fixtures.store_exists(e2e.kms, store.id)
    assert [key for key in store.keys if fixtures.key_exists(e2e.kms, key)] == []
    assert_untouched(e2e, snapshots)
    assert fixtures.connection_state(e2e.kms, other.id) == "CONNECTED"

    calls = e2e.admin.calls()
    scheduled = {c["key_id"] for c in calls_of(calls, "ScheduleKeyDeletion", "OK")}
    assert scheduled == set(store.keys), "exactly the store's keys are scheduled"
    touched = {c["key_id"] for c in mutating_calls(calls) if c.get("key_id")}
    assert touched <= set(store.keys), f"keys outside the store were changed: {touched - set(store.keys)}"
    # KMS really deleted every key before the store was disconnected; for a CloudHSM store that
    # means it could delete the key material in the cluster (nothing orphaned).
    deleted = {k["key_id"]: k for k in e2e.admin.state()["deleted_keys"]}
    assert set(store.keys) <= set(deleted)
    first_disconnect = min(c["time"] for c in calls_of(calls, "DisconnectCustomKeyStore"))
    for key in store.keys:
        assert deleted[key]["deleted_at"] < first_disconnect, f"store disconnected before KMS deleted key {key}"
        if store.kind == "AWS_CLOUDHSM":
            assert deleted[key]["backing_key_deletion"] == "SUCCESS", f"key material of {key} orphaned in the cluster"


def test_cloudhsm_store_waits_out_the_window_connected_then_is_deleted(e2e):
    # A 7-day window of 70 s: long enough for the real Wait state (WaitRequired needs the first
    # check over 60 s ahead; it comes STORE_CONNECTION_LEAD_SECONDS, 4 s locally, before the
    # earliest DeletionDate).
    e2e.admin.configure(day_seconds=10.0)
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=4, disabled=1)
    keys, snapshots, other = bystanders(e2e)
    e2e.admin.clear_calls()

    execution = e2e.run(decommission_input(store, "execution-decommission-cloudhsm.json", PendingWindowInDays=7))
    described, events = e2e.finish(execution)

    assert_decommissioned(e2e, store, described, events, snapshots, other)
    assert "WaitForDeletionDate" in workflow.states_entered(events)


def test_xks_store_is_decommissioned_and_nothing_else_changes(e2e):
    store = fixtures.make_store(e2e.kms, "xks", keys=3)
    keys, snapshots, other = bystanders(e2e)
    e2e.admin.clear_calls()

    execution = e2e.run(decommission_input(store, "execution-decommission-xks.json"))
    described, events = e2e.finish(execution)

    assert_decommissioned(e2e, store, described, events, snapshots, other)


def test_dry_run_changes_nothing(e2e):
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=3, disabled=1)
    snapshots = {key: fixtures.key_snapshot(e2e.kms, key) for key in store.keys}
    e2e.admin.clear_calls()

    execution = e2e.run(workflow.execution_input("execution-dry-run.json", CustomKeyStoreId=store.id))
    described, events = e2e.finish(execution)

    assert described["status"] == "SUCCEEDED", failure(described)
    entered = workflow.states_entered(events)
    assert "DryRunComplete" in entered
    assert not {"EnsureStoreConnected", "ScheduleKeyDeletion", "DisconnectStore", "DeleteStore"} & set(entered)
    report = json.loads(described["output"])
    assert store.id in json.dumps(report), "the dry run's report names the store"
    assert mutating_calls(e2e.admin.calls()) == []
    assert_untouched(e2e, snapshots)
    assert fixtures.connection_state(e2e.kms, store.id) == "CONNECTED"


def test_wrong_store_name_is_refused_before_anything_changes(e2e):
    store = fixtures.make_store(e2e.kms, "xks", keys=2)
    snapshots = {key: fixtures.key_snapshot(e2e.kms, key) for key in store.keys}
    e2e.admin.clear_calls()

    execution = e2e.run(
        decommission_input(store, "execution-decommission-xks.json", ConfirmCustomKeyStoreName=store.name + "-typo")
    )
    described, _ = e2e.finish(execution)

    assert described["status"] == "FAILED"
    assert described["error"] == "ConfirmationMismatch", failure(described)
    assert mutating_calls(e2e.admin.calls()) == []
    assert_untouched(e2e, snapshots)
