"""The last-use guard (issue 7) end to end: a key an application used through the real KMS API
(boto3 Encrypt against the emulator) stops a decommission with `KeysRecentlyUsed` before anything
changes, `MinDaysSinceLastUse: 0` turns the guard off, a dry run reports the verdict, and a key
used after the plan (while the CloudHSM store is still connecting) is not scheduled."""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

from helpers import assert_untouched, calls_of, decommission_input, failure, mutating_calls, wait_for_state
from local.client import fixtures, workflow

EMULATED_SECONDS_PER_WALL_SECOND = 86_400  # tests/e2e/conftest.py: one emulated day per second
MARKER = "kms-decommission:execution"


def use_key(e2e: Any, key_id: str) -> dict[str, Any]:
    """An application encrypts under the key; returns what KMS now says of its last use."""
    e2e.kms.encrypt(KeyId=key_id, Plaintext=b"application data")
    return e2e.kms.get_key_last_usage(KeyId=key_id)["KeyLastUsage"]


def use_as_named(key_arn: str, usage: dict[str, Any]) -> str:
    """How the KeysRecentlyUsed cause names a key's last use: ARN, operation, time, CloudTrail event."""
    at = usage["Timestamp"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{key_arn}: {usage['Operation']} at {at} (CloudTrail event {usage['CloudTrailEventId']}"


def emulator_contents(e2e: Any) -> dict[str, Any]:
    """Everything the emulator holds (stores, keys with states, tags and last use, aliases,
    deleted keys), without the current time."""
    state = e2e.admin.state()
    state.pop("now", None)
    return state


def key_arn(e2e: Any, key_id: str) -> str:
    return e2e.kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]


def test_recently_used_key_refuses_the_decommission_and_nothing_changes(e2e):
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=3)
    used = store.keys[1]
    usage = use_key(e2e, used)
    arn = key_arn(e2e, used)
    before = emulator_contents(e2e)
    e2e.admin.clear_calls()

    execution = e2e.run(decommission_input(store, "execution-decommission-cloudhsm.json"))
    described, events = e2e.finish(execution)

    assert described["status"] == "FAILED", failure(described)
    assert described["error"] == "KeysRecentlyUsed", failure(described)
    cause = described["cause"]
    assert use_as_named(arn, usage) in cause, f"the cause names the key, operation, time and CloudTrail event: {cause}"
    assert usage["KmsRequestId"] in cause
    assert "nothing was changed" in cause
    assert not [key for key in store.keys if key != used and key in cause], "only the used key is named"
    entered = workflow.states_entered(events)
    assert not {"EnsureStoreConnected", "ScheduleKeyDeletion"} & set(entered), entered
    calls = e2e.admin.calls()
    assert mutating_calls(calls) == [], "a refused decommission changes nothing"
    assert {c["key_id"] for c in calls_of(calls, "GetKeyLastUsage", "OK")} == set(store.keys)
    assert emulator_contents(e2e) == before, "no key scheduled or tagged, the store still connected"
    assert fixtures.connection_state(e2e.kms, store.id) == "CONNECTED"


def test_guard_off_decommissions_a_store_with_a_recently_used_key_and_says_so(e2e):
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=3)
    used = store.keys[0]
    use_key(e2e, used)
    e2e.admin.clear_calls()

    execution = e2e.run(
        decommission_input(store, "execution-decommission-cloudhsm.json", PendingWindowInDays=7, MinDaysSinceLastUse=0)
    )
    described, events = e2e.finish(execution)

    assert described["status"] == "SUCCEEDED", failure(described)
    report = json.loads(described["output"])
    last_use = report["LastUse"]
    assert (last_use["GuardOn"], last_use["MinDaysSinceLastUse"]) == (False, 0)
    assert (last_use["KeysChecked"], last_use["KeysUsed"], last_use["KeysRecentlyUsed"]) == (3, 1, 0)
    assert last_use["MostRecentUse"]["KeyId"] == used and last_use["MostRecentUse"]["Operation"] == "Encrypt"
    assert last_use["Verdict"].startswith("Last-use guard off"), last_use["Verdict"]
    follow_ups = report["FollowUps"]
    assert any("MinDaysSinceLastUse" in line or "guard" in line.lower() for line in follow_ups), follow_ups
    calls = e2e.admin.calls()
    assert {c["key_id"] for c in calls_of(calls, "ScheduleKeyDeletion", "OK")} == set(store.keys)
    assert calls_of(calls, "GetKeyLastUsage", "OK") and all(
        c["seq"] < min(s["seq"] for s in calls_of(calls, "ScheduleKeyDeletion"))
        for c in calls_of(calls, "GetKeyLastUsage")
    ), "with the guard off nothing is re-checked at scheduling time"
    assert not fixtures.store_exists(e2e.kms, store.id)
    assert [key for key in store.keys if fixtures.key_exists(e2e.kms, key)] == []


def test_dry_run_reports_what_the_guard_would_say_and_changes_nothing(e2e):
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=3)
    used = store.keys[2]
    usage = use_key(e2e, used)
    before = emulator_contents(e2e)
    e2e.admin.clear_calls()

    execution = e2e.run(workflow.execution_input("execution-dry-run.json", CustomKeyStoreId=store.id))
    described, events = e2e.finish(execution)

    assert described["status"] == "SUCCEEDED", failure(described)
    assert "DryRunComplete" in workflow.states_entered(events)
    last_use = json.loads(described["output"])["LastUse"]
    assert last_use["GuardOn"] and last_use["MinDaysSinceLastUse"] == 30
    assert last_use["Verdict"].startswith("Refused: 1 key(s) were used within the last 30 day(s)"), last_use["Verdict"]
    counts = (last_use["KeysChecked"], last_use["KeysUsed"], last_use["KeysNeverUsed"], last_use["KeysRecentlyUsed"])
    assert counts == (3, 1, 2, 1), last_use
    [blocking] = last_use["RecentlyUsed"]
    assert blocking["KeyId"] == used and blocking["Status"] == "Used"
    assert (blocking["Operation"], blocking["CloudTrailEventId"], blocking["KmsRequestId"]) == (
        usage["Operation"],
        usage["CloudTrailEventId"],
        usage["KmsRequestId"],
    )
    assert mutating_calls(e2e.admin.calls()) == []
    assert emulator_contents(e2e) == before


def test_key_used_while_the_store_connects_is_not_scheduled_and_the_run_stops(e2e):
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=4)
    others = [fixtures.create_aws_kms_key(e2e.kms, "bystander")]
    snapshots = {key: fixtures.key_snapshot(e2e.kms, key) for key in others}
    # The store is connecting (as after a 20-minute CloudHSM connect began) and stays so for 2 min.
    e2e.admin.force_connection_state(store.id, "CONNECTING", for_seconds=120 * EMULATED_SECONDS_PER_WALL_SECOND)

    execution = e2e.run(decommission_input(store, "execution-decommission-cloudhsm.json", PendingWindowInDays=7))
    wait_for_state(e2e, execution, "WaitForConnection")
    plan = next(
        doc
        for doc in workflow.state_outputs(workflow.history(e2e.sfn, execution), "PlanDecommission")
        if doc["Plan"]["Done"]
    )
    assert plan["Plan"]["LastUse"]["Verdict"].startswith("Passed"), "no key was used at plan time"

    # While EnsureStoreConnected cannot look (every DescribeCustomKeyStores fails, transiently),
    # the store connects and an application uses one key: the plan's verdict is now stale.
    e2e.admin.fail_next("DescribeCustomKeyStores", "KMSInternalException", 10_000)
    e2e.admin.force_connection_state(store.id, "CONNECTED")
    used = store.keys[2]
    usage = use_key(e2e, used)
    e2e.admin.clear_faults()
    described, events = e2e.finish(execution)

    assert described["status"] == "FAILED", failure(described)
    assert described["error"] == "KeysRecentlyUsed", failure(described)
    assert "ScheduleKeyDeletion" in workflow.states_entered(events)
    assert use_as_named(key_arn(e2e, used), usage) in described["cause"], described["cause"]
    assert e2e.kms.describe_key(KeyId=used)["KeyMetadata"]["KeyState"] == "Enabled"
    assert e2e.kms.list_resource_tags(KeyId=used)["Tags"] == [], "the used key carries no marker"
    calls = e2e.admin.calls()
    assert [c for c in mutating_calls(calls) if c.get("key_id") == used and c["operation"] != "CreateKey"] == []
    assert_untouched(e2e, snapshots)
    # Keys scheduled before the guard stopped the run carry this execution's marker, and the cause
    # says how many (the cancel workflow restores them).
    scheduled = [
        key for key in store.keys if e2e.kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    ]
    for key in scheduled:
        tags = {t["TagKey"]: t["TagValue"] for t in e2e.kms.list_resource_tags(KeyId=key)["Tags"]}
        assert tags.get(MARKER) == execution
    if scheduled:
        assert f"{len(scheduled)} key(s) this execution scheduled" in described["cause"], described["cause"]
    else:
        assert "nothing was changed" in described["cause"], described["cause"]
    assert fixtures.store_exists(e2e.kms, store.id)
