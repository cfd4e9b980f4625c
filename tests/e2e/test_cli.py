"""The operator's command line (`cli/`, binary `kms-decommission`) against the local stack, as an
operator runs it: it finds the state machines and the ledger from the stack's CloudFormation
outputs, and who calls from STS (the emulator answers GetCallerIdentity with the principal it
knows by access key id, so alice and bob are two callers, as on AWS).

Kept short (CI's time budget): four scenarios, about a minute together."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest

from helpers import ALICE, BOB, Principal, key_records, mutating_calls, store_ledger
from local.client import cli as cli_client
from local.client import fixtures

# One emulated day lasts one second in the session (conftest.DAY_SECONDS): a 7-day window is 7 s.
FAST_RUN = ["--pending-window-days", "7", "--quarantine-days", "0", "--min-days-since-last-use", "0"]
COMMAND_TIMEOUT = 180


@pytest.fixture(scope="session")
def cli_binary() -> None:
    """The command line, built once for the session (the target dir is the stack's, so after
    `cargo test --workspace` this finds it up to date)."""
    cli_client.build()


class Cli:
    """Runs the binary against the session's stack, signing as a principal the emulator knows."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def __call__(
        self, *args: str, as_: Principal = ALICE, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return cli_client.run(self.endpoint, as_.access_key_id, *args, stdin=stdin, timeout=COMMAND_TIMEOUT)

    def json(self, *args: str, as_: Principal = ALICE) -> Any:
        """Runs a command with `--output json`; its document (the command must succeed)."""
        done = self(*args, "--output", "json", as_=as_)
        assert done.returncode == 0, f"{args} exited {done.returncode}: {done.stdout}{done.stderr}"
        return json.loads(done.stdout)


@pytest.fixture
def cli(e2e, cli_binary) -> Cli:
    return Cli(e2e.endpoint)


def decommission_executions(e2e: Any, store_id: str) -> list[str]:
    """Names of the store's real (not dry-run) decommission executions."""
    names = []
    for page in e2e.sfn.get_paginator("list_executions").paginate(stateMachineArn=e2e.state_machine_arn):
        names += [x["name"] for x in page["executions"] if store_id in x["name"] and not x["name"].startswith("dryrun")]
    return names


def test_plan_shows_the_keys_and_the_verdict_with_the_blocking_key_and_changes_nothing(e2e, cli):
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=3, disabled=1)
    used = store.keys[0]
    e2e.kms.encrypt(KeyId=used, Plaintext=b"application data")
    snapshots = {key: fixtures.key_snapshot(e2e.kms, key) for key in store.keys}
    e2e.admin.clear_calls()

    done = cli("plan", store.id)

    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert f"{store.id} ({store.name}), AWS_CLOUDHSM" in text
    assert "3 in store: Disabled 1, Enabled 2" in text
    for key in store.keys:
        assert key in text, f"key {key} is listed"
    assert "Refused: 1 key(s)" in text, text
    blocking = text.split("Blocking key", 1)[1].split("Key ", 1)[0]
    assert used in blocking and "Encrypt" in blocking, f"the blocking key and its operation: {blocking}"
    assert "KMS leaves behind" in text and "CloudHSM cluster" in text

    plan = cli.json("plan", store.id)
    assert plan["Outcome"] == "DryRun" and plan["KeysInStore"] == 3
    assert plan["LastUse"]["KeysRecentlyUsed"] == 1

    assert mutating_calls(e2e.admin.calls()) == []
    assert {key: fixtures.key_snapshot(e2e.kms, key) for key in store.keys} == snapshots
    assert store_ledger(e2e, store.id) == (None, {}), "a dry run writes nothing in the ledger"


def test_a_wrong_name_starts_nothing_and_start_without_a_terminal_needs_confirm(e2e, cli):
    store = fixtures.make_store(e2e.kms, "xks", keys=2)
    e2e.admin.clear_calls()

    wrong = cli("start", store.id, "--confirm", store.name + "x", *FAST_RUN)
    assert wrong.returncode == 1, wrong.stderr
    assert wrong.stderr.startswith("error: ConfirmationMismatch: "), wrong.stderr
    assert "what to do:" in wrong.stderr

    unconfirmed = cli("start", store.id, "--output", "json", *FAST_RUN, stdin="")
    assert unconfirmed.returncode == 2
    assert json.loads(unconfirmed.stdout)["Error"] == "ConfirmationRequired"

    assert decommission_executions(e2e, store.id) == []
    assert mutating_calls(e2e.admin.calls()) == []
    assert store_ledger(e2e, store.id) == (None, {})


def test_start_watch_report_and_list(e2e, cli):
    store = fixtures.make_store(e2e.kms, "xks", keys=2)

    started = cli.json("start", store.id, "--confirm", store.name, "--ticket-id", "CHG-CLI-1", *FAST_RUN)
    execution = started["Execution"]
    assert started["RequestedBy"] == ALICE.arn
    assert started["Plan"]["KeysInStore"] == 2

    watched = cli("watch", store.id, "--interval", "1", "--timeout", "120")
    assert watched.returncode == 0, f"{watched.stdout}{watched.stderr}"
    assert "Decommissioned [SUCCEEDED]" in watched.stdout
    assert "scheduled 2" in watched.stderr, "a non-terminal gets plain progress lines"

    report = cli.json("report", execution)
    assert report["Outcome"] == "Deleted"
    assert report["ExecutionId"] == execution
    assert report["RequestedBy"] == ALICE.arn and report["TicketId"] == "CHG-CLI-1"
    records = key_records(e2e, execution)
    assert report["KeysScheduled"] == len(records) == 2
    assert set(records) == set(store.keys)
    assert all(r.get("ScheduledAt") and r.get("SeenDeletedAt") for r in records.values())
    lock, runs = store_ledger(e2e, store.id)
    assert lock is None and runs[execution]["Outcome"] == "Succeeded"
    assert report["Ledger"]["Table"] and report["Ledger"]["StoreKey"] == f"STORE#{store.id}"

    status = cli.json("status", store.id)
    assert status["Phase"] == "Decommissioned"
    assert status["Keys"] == {"Recorded": 2, "Scheduled": 2, "Pending": 0, "Deleted": 2, "Restored": 0}

    listed = {run["Execution"]: run for run in cli.json("list")}
    assert listed[execution]["Status"] == "Succeeded"
    assert listed[execution]["CustomKeyStoreId"] == store.id
    assert store.id in cli("list").stdout


def wait_until(condition, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.5)


def test_only_another_person_approves_and_cancel_restores_the_keys(e2e, cli):
    store = fixtures.make_store(e2e.kms, "xks", keys=2, disabled=1)
    before = {key: fixtures.key_snapshot(e2e.kms, key)["KeyState"] for key in store.keys}
    # A 30-day window (30 s): time to cancel while the keys are pending deletion.
    started = cli.json(
        "start", store.id, "--confirm", store.name, "--require-approval", "--pending-window-days", "30",
        "--quarantine-days", "0", "--min-days-since-last-use", "0",
    )  # fmt: skip
    execution = started["Execution"]
    wait_until(
        lambda: (cli.json("status", store.id)["Approval"] or {}).get("State") == "Requested", 60, "approval requested"
    )

    refused = cli("approve", store.id, "--output", "json", as_=ALICE)
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["Error"] == "ApprovalBySameRequester"
    assert cli.json("status", store.id)["Approval"]["State"] == "Requested", "the run still waits"

    approved = cli.json("approve", store.id, as_=BOB)
    assert approved == {
        "Execution": execution,
        "CustomKeyStoreId": store.id,
        "Answer": "Approved",
        "By": BOB.arn,
    }
    pending = wait_until(
        lambda: (s := cli.json("status", store.id))["Keys"]["Pending"] == 2 and s, 60, "both keys scheduled"
    )
    assert pending["Approval"] == {"State": "Approved", "ApprovedBy": BOB.arn}
    assert pending["SecondsUntilDeletion"] > 0 and pending["LatestDeletionDate"]

    cancelled = cli.json("cancel", store.id, "--reason", "change withdrawn", as_=BOB)
    assert cancelled["DecommissionExecutionArn"] == execution
    assert cancelled["KeysRestored"] == 2
    assert {key: fixtures.key_snapshot(e2e.kms, key)["KeyState"] for key in store.keys} == before

    status = cli.json("status", execution)
    assert status["Phase"] == "Cancelled" and status["Keys"]["Restored"] == 2
    report = cli("report", execution, "--output", "json")
    assert report.returncode == 1 and json.loads(report.stdout)["Error"] == "Cancelled"
