"""Assertions the end-to-end scenarios share: what KMS calls were made, and what did not change."""

from __future__ import annotations

import time
from typing import Any

from local import fixtures, workflow

# KMS operations that change something; a dry run or a refused decommission makes none of them.
MUTATING = frozenset(
    {
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
    }
)


def calls_of(calls: list[dict[str, Any]], operation: str, outcome: str | None = None) -> list[dict[str, Any]]:
    """The logged calls of `operation` (with `outcome`, if given), in order."""
    return [c for c in calls if c["operation"] == operation and (outcome is None or c["outcome"] == outcome)]


def mutating_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The logged calls that could have changed something."""
    return [c for c in calls if c["operation"] in MUTATING]


def bystanders(e2e: Any) -> tuple[list[str], dict[str, dict[str, Any]], fixtures.Store]:
    """Keys a decommission of another store must never touch: two AWS_KMS keys and the key of a
    third store. Returns (key ids, their snapshots, the third store)."""
    other = fixtures.make_store(e2e.kms, "xks", keys=1)
    keys = [fixtures.create_aws_kms_key(e2e.kms, "bystander 1"), fixtures.create_aws_kms_key(e2e.kms, "bystander 2"), *other.keys]
    return keys, {key: fixtures.key_snapshot(e2e.kms, key) for key in keys}, other


def assert_untouched(e2e: Any, snapshots: dict[str, dict[str, Any]]) -> None:
    """Every key of `snapshots` is exactly as it was."""
    for key, before in snapshots.items():
        assert fixtures.key_snapshot(e2e.kms, key) == before, f"key {key} was changed"


def decommission_input(store: fixtures.Store, event_file: str, **overrides: Any) -> dict[str, Any]:
    """The console input of events/<event_file> for `store`."""
    return workflow.execution_input(event_file, **{"CustomKeyStoreId": store.id, "ConfirmCustomKeyStoreName": store.name, **overrides})


def failure(described: dict[str, Any]) -> tuple[str | None, str | None]:
    """(error, cause) of an execution, for assertion messages."""
    return described.get("error"), described.get("cause")


def wait_for_state(e2e: Any, execution_arn: str, state: str, timeout: float = 120) -> list[dict[str, Any]]:
    """Wait until the execution has entered `state`; return the history so far."""
    deadline = time.monotonic() + timeout
    while True:
        events = workflow.history(e2e.sfn, execution_arn)
        if state in workflow.states_entered(events):
            return events
        status = e2e.sfn.describe_execution(executionArn=execution_arn)["status"]
        assert status == "RUNNING", f"execution ended ({status}) before entering {state}: {workflow.states_entered(events)}"
        assert time.monotonic() < deadline, f"{state} not entered within {timeout} s: {workflow.states_entered(events)}"
        time.sleep(0.2)
