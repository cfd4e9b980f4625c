"""Clients of the local stack shared by the demo and the end-to-end tests: AWS SDK clients bound to
the one endpoint, the emulator's admin API, and starting and following a decommission execution
exactly as a console user would (input shaped like events/execution-*.json)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "events"
REGION = "us-east-1"


class AdminError(Exception):
    """The emulator's admin API refused a request."""


def client(endpoint: str, service: str) -> Any:
    """A boto3 client of `service` (kms, stepfunctions, dynamodb, ...) talking to the local endpoint."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"mode": "standard", "max_attempts": 5}, read_timeout=120),
    )


def clients(endpoint: str) -> tuple[Any, Any]:
    """(kms, stepfunctions) boto3 clients talking to the local endpoint."""
    return client(endpoint, "kms"), client(endpoint, "stepfunctions")


@dataclass(frozen=True)
class Admin:
    """The KMS emulator's admin API (docs/emulator.md), under /_emulator/ on the endpoint."""

    endpoint: str

    def call(self, method: str, path: str, body: object | None = None) -> Any:
        """Send one admin request; return the decoded JSON answer (None when empty)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.endpoint}/_emulator/{path}", data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                raw = answer.read()
        except urllib.error.HTTPError as err:
            raise AdminError(f"{method} /_emulator/{path} -> HTTP {err.code}: {err.read()[:500]!r}") from err
        return json.loads(raw) if raw.strip() else None

    def reset(self) -> None:
        """Empty the emulator: stores, keys, faults, call log (AWS managed keys are re-seeded)."""
        self.call("POST", "reset", {})

    def state(self) -> dict[str, Any]:
        """Every store and key the emulator holds."""
        return self.call("GET", "state")

    def calls(self) -> list[dict[str, Any]]:
        """Every KMS call received since the last reset: seq, time, operation, key_id,
        custom_key_store_id, outcome ("OK" or the error name)."""
        return self.call("GET", "calls")["calls"]

    def clear_calls(self) -> None:
        """Empty the call log."""
        self.call("DELETE", "calls")

    def record_service_call(self, record: dict[str, Any]) -> dict[str, Any]:
        """Record another AWS service's call in the emulator's CloudTrail (it serves KMS only): a
        test stands in for that service. Made now, under a new event id; returns the record as
        LookupEvents serves it (with its eventID and eventTime)."""
        answer = self.call("POST", "cloudtrail", {"record": record})
        events = self.call("GET", "cloudtrail")["events"]
        return next(e["record"] for e in events if e["seq"] == answer["seq"])

    def configure(self, **fields: Any) -> dict[str, Any]:
        """Change emulator settings at run time (e.g. deletion_lag_hours, quotas)."""
        return self.call("POST", "config", fields)

    def fail_next(self, operation: str, error: str, count: int) -> None:
        """The next `count` calls of `operation` ("*" for any) fail with `error` and change nothing."""
        self.call("POST", "faults", {"operation": operation, "error": error, "count": count})

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        self.call("DELETE", "faults")

    def force_connection_state(
        self, store_id: str, state: str, error_code: str | None = None, for_seconds: float | None = None
    ) -> None:
        """Force a store's ConnectionState; a transient state is held `for_seconds` emulated seconds."""
        body: dict[str, Any] = {"state": state}
        if error_code is not None:
            body["error_code"] = error_code
        if for_seconds is not None:
            body["for_seconds"] = for_seconds
        self.call("POST", f"stores/{store_id}/connection-state", body)

    def fail_connections(self, store_id: str, error_code: str) -> None:
        """From now on every connect attempt of the store ends FAILED with `error_code`."""
        self.call("POST", f"stores/{store_id}/connection-failure", {"error_code": error_code})


def execution_input(event_file: str, **overrides: Any) -> dict[str, Any]:
    """An execution input from events/<event_file> with fields replaced (e.g. the real store id)."""
    document = json.loads((EVENTS / event_file).read_text(encoding="utf-8"))
    document.update(overrides)
    return document


def start_execution(sfn: Any, state_machine_arn: str, document: dict[str, Any], name: str | None = None) -> str:
    """Start a decommission as a console user would; return the execution ARN."""
    name = name or f"decommission-{uuid.uuid4().hex[:12]}"
    answer = sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(document))
    return answer["executionArn"]


def history(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    """Every event of the execution's history, oldest first."""
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events.extend(page["events"])
        token = page.get("nextToken")
        if not token:
            return events
        kwargs["nextToken"] = token


def follow(sfn: Any, execution_arn: str, poll_seconds: float = 0.25) -> Iterator[dict[str, Any]]:
    """Yield history events as they happen, until the execution ends."""
    seen = 0
    while True:
        status = sfn.describe_execution(executionArn=execution_arn)["status"]
        events = history(sfn, execution_arn)
        yield from events[seen:]
        seen = len(events)
        if status != "RUNNING":
            return
        time.sleep(poll_seconds)


def wait_for_end(sfn: Any, execution_arn: str, timeout: float, poll_seconds: float = 0.25) -> dict[str, Any]:
    """Wait until the execution is no longer RUNNING; return DescribeExecution's answer.

    Raises TimeoutError naming the state the execution is stuck in."""
    deadline = time.monotonic() + timeout
    while True:
        described = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING":
            return described
        if time.monotonic() > deadline:
            entered = states_entered(history(sfn, execution_arn))
            raise TimeoutError(
                f"execution {execution_arn} still RUNNING after {timeout:.0f} s; last states: {entered[-5:]}"
            )
        time.sleep(poll_seconds)


def states_entered(events: list[dict[str, Any]]) -> list[str]:
    """The names of the states entered, in order."""
    return [event["stateEnteredEventDetails"]["name"] for event in events if "stateEnteredEventDetails" in event]


def task_failures(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(state name, error name) of every failed task attempt, in order (retries included)."""
    failures = []
    current = None
    for event in events:
        if "stateEnteredEventDetails" in event:
            current = event["stateEnteredEventDetails"]["name"]
        if event["type"] == "TaskFailed":
            failures.append((current or "?", event["taskFailedEventDetails"].get("error", "")))
    return failures


def state_outputs(events: list[dict[str, Any]], state: str) -> list[dict[str, Any]]:
    """The JSON outputs of every exit of `state`."""
    outputs = []
    for event in events:
        details = event.get("stateExitedEventDetails")
        if details and details["name"] == state:
            outputs.append(json.loads(details.get("output") or "null"))
    return outputs
