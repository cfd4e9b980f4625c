"""The world changes under a decommission: a key appears during the wait, KMS deletes late, the
store lingers in DISCONNECTING, or starts FAILED. The workflow stops safely or carries on."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from helpers import calls_of, decommission_input, failure, mutating_calls, wait_for_state
from local.client import fixtures, workflow

DAY_SECONDS = 1.0  # tests/e2e/conftest.py


def test_key_created_during_the_wait_stops_the_run_and_leaves_the_store_alone(e2e):
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=2)
    execution = e2e.run(decommission_input(store, "execution-decommission-cloudhsm.json", PendingWindowInDays=10))
    wait_for_state(e2e, execution, "CheckKeysDeleted")
    newcomer = fixtures.create_store_key(e2e.kms, store, "created during the waiting period")

    described, events = e2e.finish(execution)

    assert described["status"] == "FAILED"
    assert described["error"] == "KeysNotPendingDeletion", failure(described)
    assert newcomer in described["cause"], "the cause names the key"
    assert fixtures.store_exists(e2e.kms, store.id)
    assert fixtures.connection_state(e2e.kms, store.id) == "CONNECTED"
    calls = e2e.admin.calls()
    assert calls_of(calls, "DisconnectCustomKeyStore") == [] and calls_of(calls, "DeleteCustomKeyStore") == []
    assert [c for c in mutating_calls(calls) if c.get("key_id") == newcomer and c["operation"] != "CreateKey"] == []
    assert e2e.kms.describe_key(KeyId=newcomer)["KeyMetadata"]["KeyState"] == "Enabled"
    assert not {"DisconnectStore", "DeleteStore"} & set(workflow.states_entered(events))


def test_keys_still_pending_after_their_deletion_date_are_polled_until_gone(e2e):
    # KMS may delete up to 24 h late; here 96 emulated hours (4 s) so the lag spans several polls.
    e2e.admin.configure(deletion_lag_hours=96)
    store = fixtures.make_store(e2e.kms, "xks", keys=2)

    execution = e2e.run(decommission_input(store, "execution-decommission-xks.json"))
    described, events = e2e.finish(execution)

    assert described["status"] == "SUCCEEDED", failure(described)
    scheduling = next(
        doc for doc in workflow.state_outputs(events, "ScheduleKeyDeletion") if doc.get("Scheduling", {}).get("Done")
    )
    latest = scheduling["Scheduling"]["LatestDeletionDate"]
    deletion_date = datetime.strptime(latest, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    pending_after_date = [
        event
        for event in events
        if event.get("stateExitedEventDetails", {}).get("name") == "CheckKeysDeleted"
        and event["timestamp"] > deletion_date
        and (json.loads(event["stateExitedEventDetails"]["output"]).get("Deletion") or {}).get("KeysPending", 0) > 0
    ]
    assert len(pending_after_date) >= 2, "the workflow saw keys still pending after DeletionDate and polled again"
    assert "WaitForKeyDeletion" in workflow.states_entered(events)
    assert not fixtures.store_exists(e2e.kms, store.id)


def test_store_lingering_in_disconnecting_is_polled_until_disconnected(e2e):
    # DISCONNECTING lasts 6 s (8640 emulated minutes at one day per second).
    e2e.admin.configure(disconnect_minutes=6 * 1440 / DAY_SECONDS)
    store = fixtures.make_store(e2e.kms, "xks", keys=1)

    execution = e2e.run(decommission_input(store, "execution-decommission-xks.json"))
    described, events = e2e.finish(execution)

    assert described["status"] == "SUCCEEDED", failure(described)
    entered = workflow.states_entered(events)
    assert entered.count("WaitForDisconnect") >= 2, entered
    assert calls_of(e2e.admin.calls(), "DeleteCustomKeyStore", "CustomKeyStoreInvalidStateException") == [], (
        "never deleted before DISCONNECTED"
    )
    assert not fixtures.store_exists(e2e.kms, store.id)


def test_cloudhsm_store_failed_at_start_is_reconnected_before_any_key_is_scheduled(e2e):
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=2)
    e2e.admin.force_connection_state(store.id, "FAILED", error_code="NETWORK_ERRORS")

    execution = e2e.run(decommission_input(store, "execution-decommission-cloudhsm.json", PendingWindowInDays=7))
    described, events = e2e.finish(execution)

    assert described["status"] == "SUCCEEDED", failure(described)
    calls = e2e.admin.calls()
    first_schedule = min(c["seq"] for c in calls_of(calls, "ScheduleKeyDeletion", "OK"))
    connects = [c["seq"] for c in calls_of(calls, "ConnectCustomKeyStore", "OK")]
    assert connects and min(connects) < first_schedule, "connected before scheduling"
    assert not fixtures.store_exists(e2e.kms, store.id)


def test_cloudhsm_store_that_cannot_connect_fails_with_connection_failed_and_nothing_scheduled(e2e):
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=2)
    snapshots = {key: fixtures.key_snapshot(e2e.kms, key) for key in store.keys}
    e2e.admin.fail_connections(store.id, "INSUFFICIENT_CLOUDHSM_HSMS")
    e2e.admin.force_connection_state(store.id, "FAILED", error_code="INSUFFICIENT_CLOUDHSM_HSMS")

    execution = e2e.run(decommission_input(store, "execution-decommission-cloudhsm.json", PendingWindowInDays=7))
    described, events = e2e.finish(execution)

    assert described["status"] == "FAILED"
    assert described["error"] == "ConnectionFailed", failure(described)
    assert "INSUFFICIENT_CLOUDHSM_HSMS" in described["cause"]
    calls = e2e.admin.calls()
    assert calls_of(calls, "ScheduleKeyDeletion") == [] and calls_of(calls, "TagResource") == []
    assert "ScheduleKeyDeletion" not in workflow.states_entered(events)
    for key, before in snapshots.items():
        after = fixtures.key_snapshot(e2e.kms, key)
        assert (after["DeletionDate"], after["Tags"]) == (before["DeletionDate"], before["Tags"]), (
            f"key {key} was changed"
        )
