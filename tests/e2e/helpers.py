"""Assertions the end-to-end scenarios share: what KMS calls were made, and what did not change."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from local.client import fixtures, ledger, workflow

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
    keys = [
        fixtures.create_aws_kms_key(e2e.kms, "bystander 1"),
        fixtures.create_aws_kms_key(e2e.kms, "bystander 2"),
        *other.keys,
    ]
    return keys, {key: fixtures.key_snapshot(e2e.kms, key) for key in keys}, other


def assert_untouched(e2e: Any, snapshots: dict[str, dict[str, Any]]) -> None:
    """Every key of `snapshots` is exactly as it was."""
    for key, before in snapshots.items():
        assert fixtures.key_snapshot(e2e.kms, key) == before, f"key {key} was changed"


def decommission_input(store: fixtures.Store, event_file: str, **overrides: Any) -> dict[str, Any]:
    """The console input of events/<event_file> for `store`."""
    return workflow.execution_input(
        event_file, **{"CustomKeyStoreId": store.id, "ConfirmCustomKeyStoreName": store.name, **overrides}
    )


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
        assert status == "RUNNING", (
            f"execution ended ({status}) before entering {state}: {workflow.states_entered(events)}"
        )
        assert time.monotonic() < deadline, f"{state} not entered within {timeout} s: {workflow.states_entered(events)}"
        time.sleep(0.2)


# --- Triggers and the cancel workflow (test_triggers.py, test_cancel.py) ----------------------

TRIGGER_EVENTS = workflow.EVENTS / "triggers"
TRIGGER_TAG_KEY = "DecommissionCustomKeyStore"  # the template's TriggerTagKey default
MARKER_PREFIX = "kms-decommission:"  # the markers schedule-key-deletion tags keys with


def trigger_event(sample: str) -> dict[str, Any]:
    """A sample event of events/triggers/ as EventBridge or the function URL delivers it."""
    return json.loads((TRIGGER_EVENTS / sample).read_text(encoding="utf-8"))


def tag_change(sample: str, resource_arn: str, tags: dict[str, str]) -> dict[str, Any]:
    """The tag-change sample `sample` re-aimed at `resource_arn`, whose tags are now `tags`,
    changed now (EventBridge's `time`)."""
    event = trigger_event(sample)
    event["id"] = str(uuid.uuid4())
    event["time"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    event["resources"] = [resource_arn]
    event["detail"]["tags"] = dict(tags)
    return event


# The audience webhook requests are signed for: the local stack's name (WEBHOOK_AUDIENCE).
STACK_AUDIENCE = "kms-decommission"


def sign(secret: str, timestamp: str, body: bytes, audience: str = STACK_AUDIENCE) -> str:
    """The X-Signature a ticketing system sends: HMAC-SHA256 over `<timestamp>.<audience>.<raw body>`,
    the audience being the stack name the request is meant for (WEBHOOK_AUDIENCE)."""
    message = timestamp.encode() + b"." + audience.encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def webhook_request(
    sample: str,
    body: dict[str, Any] | bytes,
    secret: str | None,
    timestamp: int | None = None,
    base64_body: bool = False,
) -> dict[str, Any]:
    """The function URL request of events/triggers/<sample> carrying `body` (a dict is sent as
    compact JSON), signed with `secret` at `timestamp` (default now); `secret=None` sends no
    signature headers at all."""
    raw = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    event = trigger_event(sample)
    headers = {k: v for k, v in event["headers"].items() if k not in ("x-signature", "x-signature-timestamp")}
    headers["content-length"] = str(len(raw))
    if secret is not None:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        headers["x-signature-timestamp"] = stamp
        headers["x-signature"] = sign(secret, stamp, raw)
    event["headers"] = headers
    event["requestContext"]["requestId"] = str(uuid.uuid4())
    event["isBase64Encoded"] = base64_body
    event["body"] = base64.b64encode(raw).decode() if base64_body else raw.decode()
    return event


def invoke_answer(lambda_client: Any, function: str, event: dict[str, Any]) -> tuple[str | None, Any]:
    """Invoke `function` synchronously through the stack's Lambda Invoke API; (the function error
    kind, e.g. "Unhandled", or None; the JSON result or error payload)."""
    answer = lambda_client.invoke(FunctionName=function, Payload=json.dumps(event).encode())
    return answer.get("FunctionError"), json.loads(answer["Payload"].read() or b"null")


def invoke(lambda_client: Any, function: str, event: dict[str, Any]) -> dict[str, Any]:
    """Invoke `function` synchronously through the stack's Lambda Invoke API; its JSON result.
    A function error fails the test with the error."""
    function_error, payload = invoke_answer(lambda_client, function, event)
    assert function_error is None, f"{function} failed: {payload}"
    return payload


def http_answer(response: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(status code, JSON body) of a function URL response."""
    return response["statusCode"], json.loads(response.get("body") or "null")


def executions_of_store(sfn: Any, state_machine_arn: str, store_id: str) -> list[dict[str, Any]]:
    """DescribeExecution of every execution of `state_machine_arn` whose input names `store_id`
    (moto keeps executions for the whole session, so tests count only their own store's)."""
    found = []
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=state_machine_arn):
        for execution in page["executions"]:
            described = sfn.describe_execution(executionArn=execution["executionArn"])
            if json.loads(described.get("input") or "{}").get("CustomKeyStoreId") == store_id:
                found.append(described)
    return found


def execution_count(sfn: Any, state_machine_arns: list[str]) -> int:
    """How many executions the state machines have had (to prove none was started)."""
    return sum(
        len(page["executions"])
        for arn in state_machine_arns
        for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=arn)
    )


def kms_state(e2e: Any) -> dict[str, Any]:
    """The emulator's whole state (stores, keys with states, tags and deletion dates, deleted
    keys) without its clock reading, to compare before and after."""
    state = e2e.admin.state()
    state.pop("now", None)
    return state


def emulator_keys(e2e: Any, key_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The emulator's record of each key (state, prior base state, deletion date, tags, ...)."""
    records = {key["id"]: key for key in e2e.admin.state()["keys"]}
    return {key_id: records.get(key_id) for key_id in key_ids}


def emulator_store(e2e: Any, store_id: str) -> dict[str, Any] | None:
    """The emulator's record of a store (connection state, key count, ...), None once deleted."""
    return next((store for store in e2e.admin.state()["stores"] if store["id"] == store_id), None)


# --- The run ledger (test_run_ledger.py) ------------------------------------------------------


@functools.cache
def ledger_table() -> str:
    """The local stack's ledger table (the name the template gives the handlers)."""
    return ledger.ledger_table_name()


def store_ledger(e2e: Any, store_id: str) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]]]:
    """The ledger's partition of a store: (its lock item or None, its run records by execution ARN)."""
    lock, runs = ledger.split_store_partition(
        ledger.ledger_items(e2e.endpoint, ledger_table(), ledger.store_pk(store_id))
    )
    return lock, {run["Execution"]: run for run in runs}


def key_records(e2e: Any, execution_arn: str) -> dict[str, dict[str, Any]]:
    """The ledger's key records of a run, by key id."""
    items = ledger.ledger_items(e2e.endpoint, ledger_table(), ledger.run_pk(execution_arn))
    return {item["KeyId"]: item for item in items if str(item["sk"]).startswith(ledger.KEY_PREFIX)}


# --- The approval gate (test_approval.py) -----------------------------------------------------

APPROVAL_STATE = "WaitForApproval"


def current_state(events: list[dict[str, Any]]) -> str | None:
    """The state the execution entered last."""
    entered = workflow.states_entered(events)
    return entered[-1] if entered else None


def approval_request(e2e: Any, store_id: str, execution_arn: str, timeout: float = 60) -> dict[str, Any]:
    """Wait until the run waits for approval: the execution is in WaitForApproval and
    request-approval has recorded the task token in the run's ledger record; that record."""
    wait_for_state(e2e, execution_arn, APPROVAL_STATE, timeout)
    deadline = time.monotonic() + timeout
    while True:
        run = store_ledger(e2e, store_id)[1].get(execution_arn) or {}
        if run.get("ApprovalState") == "Requested" and run.get("ApprovalToken"):
            return run
        status = e2e.sfn.describe_execution(executionArn=execution_arn)["status"]
        assert status == "RUNNING", f"execution ended ({status}) before its approval was requested: {run}"
        assert time.monotonic() < deadline, f"no approval request in the ledger within {timeout} s: {run}"
        time.sleep(0.2)


def assert_waiting_for_approval(e2e: Any, execution_arn: str, seconds: float) -> None:
    """For `seconds`, the execution stays in WaitForApproval and KMS sees no change (the call log
    holds no mutating call)."""
    deadline = time.monotonic() + seconds
    while True:
        described = e2e.sfn.describe_execution(executionArn=execution_arn)
        state = current_state(workflow.history(e2e.sfn, execution_arn))
        assert (described["status"], state) == ("RUNNING", APPROVAL_STATE), failure(described)
        assert mutating_calls(e2e.admin.calls()) == [], "nothing changes in KMS while the run waits"
        if time.monotonic() >= deadline:
            return
        time.sleep(0.5)
