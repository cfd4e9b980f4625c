"""`make demo`: decommission a CloudHSM key store and an external key store end to end on the
local stack, the way an operator would, and show it happening.

Builds the handlers, the emulator and the operator's command line (`kms-decommission`, cli/),
starts the stack with scaled time (an emulated day lasts --day-seconds), creates the demo stores and
keys plus unrelated keys that must survive, and drives every decommission through the command line
as an operator would: `kms-decommission start STORE --confirm NAME` with the options of
events/execution-decommission-*.json (it shows the plan first), `kms-decommission watch STORE` for
the progress, `kms-decommission report RUN` for the final reports. Then the proof that nothing else
changed, and what the run ledger (the DynamoDB table) recorded of the runs. Exits 0 only if both
decommissions succeeded and every check holds.

Each person signs with an access key the stack's emulator knows (`--identity`, EMULATOR_IDENTITIES),
so the command line's STS GetCallerIdentity names them: alice and bob start runs (RequestedBy is
their ARN), carol approves. The stack runs with the template's defaults, so every decommission waits
for approval after its plan (docs/approval.md, APPROVAL_REQUIRED_FOR_CONSOLE_AND_WEBHOOK true): the
demo prints the approval request the run ledger holds (its summary), checks that nothing changed
yet, shows `kms-decommission approve` refused for the requester (ApprovalBySameRequester), and
approves as carol; the ledger printout at the end shows who approved.

First it shows the last-use guard (issue 7, docs/last-use-guard.md) at work once: an application
encrypts under the key of a third store, `demo-in-use`, and the decommission of that store is refused
with KeysRecentlyUsed naming the key; the demo checks that the refusal happened and changed nothing.

Then the quarantine (docs/quarantine.md): two CloudHSM stores are decommissioned with QuarantineDays
3 (a quarantine day lasts QUARANTINE_DAY_SECONDS, 1 s on the local stack). While `demo-payments` is
quarantined (disconnected), the application payments-app, signing with its own access key (an
identity the stack's emulator knows, StackConfig.emulator_args `--identity`), tries one of its keys:
its Encrypt is refused, CloudTrail records who tried, and the run fails KeysNeededDuringQuarantine
naming the application and the key; the store is CONNECTED again and nothing was scheduled.
`demo-quiet` passes its quarantine unused and is decommissioned."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from local.client import cli, fixtures, ledger, workflow
from local.stack.launcher import LocalStack, StackConfig, StackError
from local.stack.processes import ProcessFailed
from local.stack.template import LOCAL_ACCOUNT, TemplateError

PRINT_LOCK = threading.Lock()
STARTED = time.monotonic()


def out(label: str, message: str) -> None:
    """One line of demo output, with the time since the start."""
    with PRINT_LOCK:
        print(f"[{time.monotonic() - STARTED:6.1f}s] {label:<10} {message}", flush=True)


def describe_step(state: str, document: Any) -> str | None:
    """What a state did, from the state document it passed on (None: nothing worth a line)."""
    if not isinstance(document, dict) or "Failure" in document:
        return None  # a failed task: its TaskFailed line said what happened
    section = {
        "PlanDecommission": "Plan",
        "EnsureStoreConnected": "Connection",
        "ScheduleKeyDeletion": "Scheduling",
        "CheckKeysDeleted": "Deletion",
        "DisconnectStore": "Disconnect",
    }.get(state)
    part = document.get(section) if section else None
    part = part if isinstance(part, dict) else {}
    if state == "PlanDecommission":
        last_use = part.get("LastUse") if isinstance(part.get("LastUse"), dict) else {}
        verdict = f"; last use: {last_use.get('Verdict')}" if part.get("Done") and last_use.get("Verdict") else ""
        store = document.get("Store", {})
        return (
            f"store {store.get('CustomKeyStoreName')} ({store.get('ConnectionState')}): "
            f"{part.get('KeysInStore')} keys in the store {part.get('KeysByState')}, "
            f"{part.get('KeysScanned')} keys of the account examined{verdict}"
        )
    if state == "EnsureStoreConnected":
        return f"store {part.get('ConnectionState')}, ready: {part.get('Ready')}"
    if state == "ScheduleKeyDeletion":
        return (
            f"{part.get('KeysScheduled')} keys scheduled for deletion ({part.get('KeysAlreadyPending')} already "
            f"pending), latest DeletionDate {part.get('LatestDeletionDate')}"
        )
    if state == "CheckKeysDeleted":
        if part.get("AllDeleted"):
            return "every key is deleted"
        return f"{part.get('KeysPending')} keys still pending deletion"
    if state == "DisconnectStore":
        return f"store {part.get('ConnectionState')}"
    if state == "RecordApproval":
        approval = document.get("Approval") if isinstance(document.get("Approval"), dict) else {}
        return f"approved by {approval.get('ApprovedBy')} (recorded in the run ledger)"
    if state == "QuarantineStore":
        return describe_quarantine(document)
    return None


def plural(count: Any, noun: str) -> str:
    """`1 check`, `2 checks`."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def describe_quarantine(document: dict[str, Any]) -> str | None:
    """What a quarantine-store invocation did, from its `Quarantine` section (one line per phase and
    per CloudTrail check, so the waits between checks print nothing new)."""
    q = document.get("Quarantine") if isinstance(document.get("Quarantine"), dict) else {}
    connection = (document.get("Store") or {}).get("ConnectionState")
    phase = q.get("Phase")
    if phase == "Disconnecting":
        return f"disconnecting the store for a {q.get('Days')}-day quarantine (store {connection})"
    if phase == "Watching":
        if not q.get("Checks"):
            return (
                f"store {connection}: its keys are unusable until {q.get('EndsAt')}; CloudTrail is read "
                "for anyone who tries them"
            )
        return (
            f"CloudTrail check {q.get('Checks')} (through {q.get('CheckedThrough')}): "
            f"{plural(q.get('FoundCount'), 'attempt')} to use the store's keys"
        )
    if phase == "Reconnecting":
        return (
            f"quarantine over after {plural(q.get('Checks'), 'CloudTrail check')} (through "
            f"{q.get('CheckedThrough')}; it would end at {q.get('EndsAt')}), "
            f"{plural(q.get('FoundCount'), 'attempt')} found: connecting the store again (store {connection})"
        )
    if phase == "Done":
        return (
            f"quarantine passed: nobody tried the keys in {plural(q.get('Days'), 'day')} "
            f"({plural(q.get('Checks'), 'CloudTrail check')}, {plural(q.get('Lookups'), 'lookup')}); "
            f"store {connection}"
        )
    return None


def follow_execution(
    sfn: Any,
    label: str,
    execution_arn: str,
    results: dict[str, Any],
    on_state_entered: Callable[[str], None] | None = None,
) -> None:
    """Print the execution's progress until it ends; store DescribeExecution's answer in results.
    `on_state_entered` is called with the name of each state entered, after its line is printed."""
    last_line = None
    last_document: Any = None
    try:
        for event in workflow.follow(sfn, execution_arn):
            line = None
            if "stateEnteredEventDetails" in event:
                name = event["stateEnteredEventDetails"]["name"]
                if name == "WaitForDeletionDate":
                    wait_until = (last_document or {}).get("Scheduling", {}).get("WaitUntil", "?")
                    line = f"{name}: waiting out the deletion window until {wait_until} ({_seconds_until(wait_until)})"
                elif name == "WaitForApproval":
                    line = f"{name}: nothing changes until a second person approves"
                elif name in (
                    "WaitForKeyDeletion",
                    "WaitForDisconnect",
                    "WaitForConnection",
                    "WaitBeforeRecheck",
                    "QuarantineStore",
                    "QuarantineNext",
                    "WaitForQuarantinePoll",
                    "WaitForQuarantineCheck",
                ):
                    line = None  # the loop's task line says enough
                elif not name.startswith(("Is", "Are")):
                    line = name
            elif "stateExitedEventDetails" in event:
                details = event["stateExitedEventDetails"]
                try:
                    last_document = json.loads(details.get("output") or "null")
                except ValueError:
                    last_document = None
                what = describe_step(details["name"], last_document)
                line = f"{details['name']}: {what}" if what else None
            elif event["type"] == "TaskFailed":
                failed = event["taskFailedEventDetails"]
                line = f"task failed with {failed.get('error')} (retried if transient)"
            if line and line != last_line:
                out(label, line)
                last_line = line
            if on_state_entered is not None and "stateEnteredEventDetails" in event:
                on_state_entered(event["stateEnteredEventDetails"]["name"])
        results[label] = sfn.describe_execution(executionArn=execution_arn)
    except Exception as err:  # noqa: BLE001 (reported as the demo's failure)
        results[label] = {"status": "DEMO-ERROR", "error": type(err).__name__, "cause": str(err)}


@dataclass(frozen=True)
class Person:
    """Someone running the command line: the access key the stack's emulator knows them by."""

    name: str
    access_key_id: str

    @property
    def arn(self) -> str:
        return f"arn:aws:sts::{LOCAL_ACCOUNT}:assumed-role/KeyAdmin/{self.name}"


# Who starts the decommissions (RequestedBy: their ARN, from STS), and the second person who
# approves them.
ALICE = Person("alice@example.com", "ASIADEMOKEYADMINALICE")
BOB = Person("bob@example.com", "ASIADEMOKEYADMINBOB")
APPROVER = Person("carol@example.com", "ASIADEMOKEYADMINCAROL")
# How long the demo waits for request-approval to put the task token in the ledger.
APPROVAL_REQUEST_TIMEOUT = 60.0


def start_flags(event_file: str, **overrides: Any) -> list[str]:
    """The command line flags of events/<event_file>'s options (window, last-use guard, ticket,
    reason; `overrides` replace them), for `kms-decommission start`."""
    document = {**workflow.execution_input(event_file), **overrides}
    flags = {
        "PendingWindowInDays": "--pending-window-days",
        "MinDaysSinceLastUse": "--min-days-since-last-use",
        "QuarantineDays": "--quarantine-days",
        "TicketId": "--ticket-id",
        "Reason": "--reason",
    }
    return [
        arg for field_name, flag in flags.items() if field_name in document for arg in (flag, str(document[field_name]))
    ]


def cli_line(person: Person, *args: str) -> str:
    """How the demo shows a command line call."""
    return f"{person.name.split('@')[0]}$ kms-decommission {' '.join(args)}"


def cli_start(endpoint: str, label: str, person: Person, store: fixtures.Store, flags: list[str]) -> str:
    """`kms-decommission start STORE --confirm NAME <flags>` as `person`: shows the plan and the
    start; the execution ARN (the command's `Started <ARN>` line)."""
    args = ("start", store.id, "--confirm", store.name, *flags)
    out(label, cli_line(person, *args))
    done = cli.run(endpoint, person.access_key_id, *args)
    for line in (done.stdout + done.stderr).splitlines():
        out(label, f"  {line}")
    started = [line.removeprefix("Started ") for line in done.stdout.splitlines() if line.startswith("Started arn:")]
    if done.returncode != 0 or not started:
        raise fixtures.FixtureError(f"kms-decommission start {store.id} exited {done.returncode}: {done.stderr}")
    return started[0]


def cli_watch(endpoint: str, label: str, person: Person, store: fixtures.Store, results: dict[str, Any]) -> None:
    """`kms-decommission watch STORE` until the run ends, its progress lines printed as they come;
    results[label] = (exit code, its final status)."""
    args = ("watch", store.id, "--interval", "1")
    out(label, cli_line(person, *args))
    process = cli.popen(endpoint, person.access_key_id, *args)
    assert process.stderr is not None and process.stdout is not None
    for line in process.stderr:
        out(label, f"  {line.rstrip()}")
    final = process.stdout.read()
    results[label] = (process.wait(), final)


def ledger_run(endpoint: str, table: str, store_id: str, execution_arn: str) -> dict[str, Any]:
    """The run ledger's record of one run ({} if there is none yet)."""
    _, runs = ledger.split_store_partition(ledger.ledger_items(endpoint, table, ledger.store_pk(store_id)))
    return next((run for run in runs if run.get("Execution") == execution_arn), {})


@dataclass
class Approver:
    """Approves a run waiting for approval as a second person would: `kms-decommission approve
    STORE` signed as APPROVER, once the run's ledger record shows the request (after showing that
    the requester's own approval is refused)."""

    endpoint: str
    table: str
    # label -> the run was approved, nothing of its store having changed before, and the
    # requester's own approval was refused
    approved: dict[str, bool] = field(default_factory=dict)

    def on_wait(
        self, label: str, store: fixtures.Store, execution_arn: str, before: dict[str, dict[str, Any]]
    ) -> Callable[[str], None]:
        """A follow_execution callback approving the run when it enters WaitForApproval."""

        def on_state_entered(state: str) -> None:
            if state == "WaitForApproval":
                self.approve(label, store, execution_arn, before)

        return on_state_entered

    def approve(self, label: str, store: fixtures.Store, execution_arn: str, before: dict[str, dict[str, Any]]) -> None:
        sfn = workflow.client(self.endpoint, "stepfunctions")
        deadline = time.monotonic() + APPROVAL_REQUEST_TIMEOUT
        run = ledger_run(self.endpoint, self.table, store.id, execution_arn)
        while not (run.get("ApprovalState") == "Requested" and run.get("ApprovalToken")):
            status = sfn.describe_execution(executionArn=execution_arn)["status"]
            if status != "RUNNING" or time.monotonic() > deadline:
                out(label, f"APPROVAL FAILED: no approval request in the run ledger ({status}): {run}")
                if status == "RUNNING":  # else it would wait out the 7-day approval timeout
                    sfn.stop_execution(
                        executionArn=execution_arn,
                        error="DemoApprovalFailed",
                        cause="no approval request in the ledger",
                    )
                self.approved[label] = False
                return
            time.sleep(0.25)
            run = ledger_run(self.endpoint, self.table, store.id, execution_arn)
        out(label, f"approval requested (run ledger, ApprovalState {run['ApprovalState']}): {run['ApprovalSummary']}")
        kms = workflow.client(self.endpoint, "kms")
        unchanged = all(fixtures.key_snapshot(kms, key) == before[key] for key in store.keys)
        out(label, f"while it waits: every key of the store {'unchanged' if unchanged else 'CHANGED'}")
        requester = next((p for p in (ALICE, BOB) if p.arn == run.get("RequestedBy")), None)
        refused = requester is None
        if requester is not None:
            out(label, cli_line(requester, "approve", store.id))
            own = cli.run(self.endpoint, requester.access_key_id, "approve", store.id)
            out(label, f"  {own.stderr.splitlines()[0] if own.stderr else own.stdout.strip()} (exit {own.returncode})")
            refused = own.returncode == 1 and "ApprovalBySameRequester" in own.stderr
        out(label, cli_line(APPROVER, "approve", store.id))
        done = cli.run(self.endpoint, APPROVER.access_key_id, "approve", store.id)
        out(label, f"  {(done.stdout + done.stderr).strip()} (exit {done.returncode})")
        self.approved[label] = unchanged and refused and done.returncode == 0


# KMS operations a refused decommission may make: it reads, it never writes.
READ_ONLY_OPERATIONS = frozenset(
    {"DescribeCustomKeyStores", "ListKeys", "DescribeKey", "GetKeyLastUsage", "ListResourceTags"}
)


def failure_message(cause: str | None) -> str:
    """The error message of a failed execution's cause (a Lambda error document, or plain text)."""
    try:
        document = json.loads(cause or "")
    except ValueError:
        return cause or ""
    return str(document.get("errorMessage", cause)) if isinstance(document, dict) else (cause or "")


def show_last_use_guard(endpoint: str, kms: Any, sfn: Any, admin: workflow.Admin) -> tuple[bool, fixtures.Store]:
    """A store whose key an application just used: its decommission, started as a console user
    would, must be refused with KeysRecentlyUsed naming the key, and change nothing. Returns
    (the refusal happened as it should, the store)."""
    label = "in-use"
    store = fixtures.make_store(kms, "cloudhsm", keys=1, name="demo-in-use")
    key = store.keys[0]
    kms.encrypt(KeyId=key, Plaintext=b"an application's data")
    usage = kms.get_key_last_usage(KeyId=key)["KeyLastUsage"]
    out(label, f"CloudHSM key store {store.id} '{store.name}': CONNECTED, 1 key {key}")
    out(
        label,
        f"an application encrypts under it: KMS records {usage['Operation']} at "
        f"{usage['Timestamp']:%Y-%m-%dT%H:%M:%SZ} (CloudTrail event {usage['CloudTrailEventId']})",
    )
    before = fixtures.key_snapshot(kms, key)
    first_call = max((c["seq"] for c in admin.calls()), default=0)

    flags = start_flags("execution-decommission-cloudhsm.json")
    out(label, "the plan shows the guard's verdict; the run itself refuses before it changes anything")
    execution = cli_start(endpoint, label, ALICE, store, flags)
    results: dict[str, Any] = {}
    follow_execution(sfn, label, execution, results)
    described = results.get(label, {"status": "DEMO-ERROR", "error": "no result"})

    message = failure_message(described.get("cause"))
    print(f"\n===== {label}: {described['status']} with {described.get('error')}", flush=True)
    print(f"cause: {message}")
    refused = described["status"] == "FAILED" and described.get("error") == "KeysRecentlyUsed"
    names_key = key in message and usage["Operation"] in message and usage["CloudTrailEventId"] in message
    after = fixtures.key_snapshot(kms, key)
    connection = fixtures.connection_state(kms, store.id)
    writes = sorted(
        {c["operation"] for c in admin.calls() if c["seq"] > first_call and c["operation"] not in READ_ONLY_OPERATIONS}
    )
    print(f"key {key}: {snapshot_change(before, after)}")
    print(
        f"store {store.id} '{store.name}': {connection}; KMS calls that change something: {', '.join(writes) or 'none'}"
    )
    ok = refused and names_key and after == before and connection == "CONNECTED" and not writes
    if ok:
        print("guard held: refused before anything changed\n", flush=True)
    else:
        print("GUARD CHECK FAILED: expected KeysRecentlyUsed naming the key and nothing changed\n", flush=True)
    return ok, store


# The application of the quarantine part: an IAM user with its own access key, which the stack's KMS
# emulator knows (`--identity`, StackConfig.emulator_args) and names in its CloudTrail records.
PAYMENTS_APP_ACCESS_KEY = "AKIADEMOPAYMENTSAPP"
PAYMENTS_APP_ARN = f"arn:aws:iam::{LOCAL_ACCOUNT}:user/payments-app"
EMULATOR_IDENTITIES = [
    arg
    for access_key_id, arn in [
        (PAYMENTS_APP_ACCESS_KEY, PAYMENTS_APP_ARN),
        *((person.access_key_id, person.arn) for person in (ALICE, BOB, APPROVER)),
    ]
    for arg in ("--identity", f"{access_key_id}={arn}")
]
# Quarantine days of the quarantine part (QUARANTINE_DAY_SECONDS: 1 s each on the local stack), and
# its pending window (the shortest, 7 days: 15 s at the demo's 2.2 s a day).
QUARANTINE_DAYS = 3
QUARANTINE_WINDOW_DAYS = 7


def payments_app_kms(endpoint: str) -> Any:
    """A KMS client signing with payments-app's own access key; no retries (one attempt, one
    CloudTrail record)."""
    return boto3.client(
        "kms",
        endpoint_url=endpoint,
        region_name=workflow.REGION,
        aws_access_key_id=PAYMENTS_APP_ACCESS_KEY,
        aws_secret_access_key="local",
        config=Config(retries={"mode": "standard", "max_attempts": 1}),
    )


@dataclass
class PaymentsApp:
    """payments-app runs its yearly report under a key of the quarantined store: once, when the run
    first waits for a CloudTrail check (the store is DISCONNECTED by then)."""

    endpoint: str
    key_id: str
    # What KMS answered: the error code ("" until the attempt is made, "OK" if it succeeded).
    answer: str = ""

    def on_state_entered(self, state: str) -> None:
        if state != "WaitForQuarantineCheck" or self.answer:
            return
        try:
            payments_app_kms(self.endpoint).encrypt(KeyId=self.key_id, Plaintext=b"yearly payments report")
        except ClientError as err:
            self.answer = err.response["Error"]["Code"]
            out(
                "payments",
                f"payments-app ({PAYMENTS_APP_ARN}, its own access key) encrypts under key {self.key_id}: "
                f"refused with {self.answer}; CloudTrail records who tried",
            )
        else:
            self.answer = "OK"
            out("payments", f"payments-app encrypted under key {self.key_id}: NOT REFUSED (the store is connected?)")


def chain(*callbacks: Callable[[str], None]) -> Callable[[str], None]:
    """One on_state_entered callback calling each of `callbacks` in turn."""

    def on_state_entered(state: str) -> None:
        for callback in callbacks:
            callback(state)

    return on_state_entered


def show_quarantine(
    stack: LocalStack, kms: Any, sfn: Any, admin: workflow.Admin, approver: Approver
) -> tuple[bool, list[fixtures.Store]]:
    """Two CloudHSM stores decommissioned with a quarantine: payments-app tries a key of the first
    while it is quarantined, so its run fails KeysNeededDuringQuarantine naming the application and
    the key, and the store is connected again with nothing scheduled; the second passes its quarantine
    and is decommissioned. Returns (everything held, the two stores)."""
    payments = fixtures.make_store(kms, "cloudhsm", keys=2, name="demo-payments")
    quiet = fixtures.make_store(kms, "cloudhsm", keys=2, name="demo-quiet")
    out(
        "payments",
        f"CloudHSM key store {payments.id} '{payments.name}': CONNECTED, 2 keys; payments-app uses one yearly",
    )
    out("quiet", f"CloudHSM key store {quiet.id} '{quiet.name}': CONNECTED, 2 keys; nobody uses them")
    used = payments.keys[0]
    used_arn = kms.describe_key(KeyId=used)["KeyMetadata"]["Arn"]
    app = PaymentsApp(stack.endpoint, used)
    stores = {"payments": payments, "quiet": quiet}
    before = {key: fixtures.key_snapshot(kms, key) for store in stores.values() for key in store.keys}
    first_call = max((c["seq"] for c in admin.calls()), default=0)

    executions = {}
    for label, store in stores.items():
        flags = start_flags(
            "execution-decommission-cloudhsm.json",
            QuarantineDays=QUARANTINE_DAYS,
            PendingWindowInDays=QUARANTINE_WINDOW_DAYS,
        )
        executions[label] = cli_start(stack.endpoint, label, ALICE, store, flags)
    results: dict[str, Any] = {}
    callbacks = {
        "payments": chain(approver.on_wait("payments", payments, executions["payments"], before), app.on_state_entered),
        "quiet": approver.on_wait("quiet", quiet, executions["quiet"], before),
    }
    threads = [
        threading.Thread(target=follow_execution, args=(sfn, label, arn, results, callbacks[label]), daemon=True)
        for label, arn in executions.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    calls = [c for c in admin.calls() if c["seq"] > first_call]

    # payments: refused, naming who tried; the store connected again, nothing scheduled.
    described = results.get("payments", {"status": "DEMO-ERROR", "error": "no result"})
    message = failure_message(described.get("cause"))
    print(f"\n===== payments: {described['status']} with {described.get('error')}", flush=True)
    print(f"cause: {message}")
    connection = fixtures.connection_state(kms, payments.id)
    unchanged = all(fixtures.key_snapshot(kms, key) == before[key] for key in payments.keys)
    changes = sorted(
        {
            c["operation"]
            for c in calls
            if c.get("custom_key_store_id") == payments.id and c["operation"] not in READ_ONLY_OPERATIONS
        }
        - {"Encrypt", "LookupEvents"}
    )
    print(
        f"store {payments.id} '{payments.name}': {connection}; its keys "
        f"{'unchanged' if unchanged else 'CHANGED'}; KMS changes by the run: {', '.join(changes) or 'none'}"
    )
    names_them = all(part in message for part in (PAYMENTS_APP_ARN, used_arn, "Encrypt"))
    payments_ok = (
        described["status"] == "FAILED"
        and described.get("error") == "KeysNeededDuringQuarantine"
        and app.answer == "KMSInvalidStateException"
        and names_them
        and connection == "CONNECTED"
        and unchanged
        and changes == ["ConnectCustomKeyStore", "DisconnectCustomKeyStore"]
    )
    if payments_ok:
        print("quarantine held: payments-app named, the store connected again, no key scheduled", flush=True)
    else:
        print(
            "QUARANTINE CHECK FAILED: expected KeysNeededDuringQuarantine naming payments-app and the key, "
            "the store CONNECTED and only its disconnect and connect",
            flush=True,
        )

    # quiet: quarantined, then decommissioned.
    described = results.get("quiet", {"status": "DEMO-ERROR", "error": "no result"})
    print(f"\n===== quiet: {described['status']}", flush=True)
    quiet_ok = described["status"] == "SUCCEEDED"
    if quiet_ok:
        report = json.loads(described.get("output") or "null")
        print(f"report's Quarantine section: {json.dumps(report.get('Quarantine'))}")
        gone = fixtures.store_exists(kms, quiet.id) is False
        keys_gone = [key for key in quiet.keys if not fixtures.key_exists(kms, key)]
        print(f"store {quiet.id} deleted: {gone}; keys deleted: {len(keys_gone)} of {len(quiet.keys)}")
        quiet_ok = (
            gone
            and len(keys_gone) == len(quiet.keys)
            and (report.get("Quarantine") or {}).get("AttemptsFound") == 0
            and approver.approved.get("quiet") is True
        )
    else:
        print(f"error: {described.get('error')}\ncause: {described.get('cause')}")
    print("", flush=True)
    return payments_ok and quiet_ok, [payments, quiet]


def snapshot_change(before: dict[str, Any], after: dict[str, Any]) -> str:
    """A key's state and tags now, and whether its snapshot changed (with both when it did)."""
    change = "unchanged" if after == before else f"CHANGED: {json.dumps(before)} -> {json.dumps(after)}"
    return f"{after['KeyState']}, tags {after['Tags'] or 'none'} -> {change}"


def short_arn(arn: str) -> str:
    """An ARN without its partition, service, Region and account: `key/<id>`, `execution:<machine>:<name>`."""
    return arn.split(":", 5)[-1] if arn.startswith("arn:") else arn


def _fields(item: dict[str, Any], names: tuple[str, ...]) -> str:
    return ", ".join(f"{name} {item[name]}" for name in names if item.get(name) not in (None, ""))


RUN_FIELDS = (
    "Phase",
    "Outcome",
    "RequestedBy",
    "TicketId",
    "ApprovalState",
    "ApprovedBy",
    "ApprovedVia",
    "ApprovedAt",
    "StartedAt",
    "EndedAt",
)
KEY_FIELDS = ("PriorState", "ScheduledAt", "DeletionDate", "SeenDeletedAt", "RestoredAt")


def show_ledger(dynamodb: Any, table: str, stores: list[fixtures.Store]) -> None:
    """What the run ledger holds of the demo's stores: each store's lock (if still held) and run
    records, and each run's key records."""
    print(f"\n===== run ledger (DynamoDB table {table})", flush=True)
    for store in stores:
        lock, runs = ledger.split_store_partition(ledger.ledger_items(dynamodb, table, ledger.store_pk(store.id)))
        print(f"store {store.id} '{store.name}' (partition {ledger.store_pk(store.id)}):")
        if lock is None:
            print("  lock: none")
        else:
            print(f"  lock: held by {short_arn(str(lock.get('Execution')))} since {lock.get('TakenAt')}")
        if not runs:
            print("  no run records")
        for run in runs:
            execution = str(run.get("Execution") or run["sk"].removeprefix(ledger.RUN_PREFIX))
            print(f"  run {short_arn(execution)}: {_fields(run, RUN_FIELDS) or 'no fields'}")
            if run.get("OutcomeDetail"):
                print(f"    OutcomeDetail {run['OutcomeDetail']}")
            keys = ledger.ledger_items(dynamodb, table, ledger.run_pk(execution))
            if not keys:
                print("    no key records")
            for key in keys:
                key_arn = str(key.get("KeyArn") or key["sk"].removeprefix(ledger.KEY_PREFIX))
                print(f"    {short_arn(key_arn)}: {_fields(key, KEY_FIELDS) or 'no fields'}")


def _seconds_until(timestamp: str) -> str:
    try:
        when = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "?"
    return f"in {max(0.0, (when - datetime.now(UTC)).total_seconds()):.0f} s"


def run_demo(stack: LocalStack) -> bool:
    """The demo proper, on a running stack. True when everything held."""
    global STARTED
    STARTED = time.monotonic()  # times below count from the end of the build and stack start
    kms, sfn = workflow.clients(stack.endpoint)
    admin = workflow.Admin(stack.endpoint)
    table = ledger.ledger_table_name()
    approver = Approver(stack.endpoint, table)
    out("in-use", "the last-use guard: a store whose key is still in use is refused")
    ok, in_use = show_last_use_guard(stack.endpoint, kms, sfn, admin)
    out("quarantine", "the quarantine: two stores disconnected for a while before any key is scheduled")
    quarantined, (payments, quiet) = show_quarantine(stack, kms, sfn, admin, approver)
    ok = ok and quarantined

    out("setup", "creating the demo key stores and keys through the KMS API")
    cloudhsm = fixtures.make_store(kms, "cloudhsm", keys=5, disabled=1, name="demo-cloudhsm")
    out("setup", f"CloudHSM key store {cloudhsm.id} '{cloudhsm.name}': CONNECTED, 5 keys (1 Disabled)")
    xks = fixtures.make_store(kms, "xks", keys=3, name="demo-xks")
    out("setup", f"external key store {xks.id} '{xks.name}': CONNECTED, 3 keys")
    keep = fixtures.make_store(kms, "xks", keys=1, name="demo-keep")
    unrelated = [
        fixtures.create_aws_kms_key(kms, "unrelated AWS_KMS key 1"),
        fixtures.create_aws_kms_key(kms, "unrelated AWS_KMS key 2"),
        *keep.keys,
        *in_use.keys,
        *payments.keys,
    ]
    before = {key: fixtures.key_snapshot(kms, key) for key in unrelated}
    demo_keys = {key: fixtures.key_snapshot(kms, key) for key in [*cloudhsm.keys, *xks.keys]}
    out(
        "setup",
        f"unrelated keys that must survive: 2 AWS_KMS keys, 1 key of store {keep.id} '{keep.name}', "
        f"the key of '{in_use.name}' and the keys of '{payments.name}'",
    )

    runs = {
        "cloudhsm": ("execution-decommission-cloudhsm.json", cloudhsm, ALICE),
        "xks": ("execution-decommission-xks.json", xks, BOB),
    }
    executions = {}
    for label, (event_file, store, person) in runs.items():
        out(label, f"the options of events/{event_file}, the store's name typed back with --confirm")
        executions[label] = cli_start(stack.endpoint, label, person, store, start_flags(event_file))

    results: dict[str, Any] = {}
    threads = [
        threading.Thread(target=cli_watch, args=(stack.endpoint, label, person, store, results), daemon=True)
        for label, (_, store, person) in runs.items()
    ] + [
        threading.Thread(target=approver.approve, args=(label, runs[label][1], arn, demo_keys), daemon=True)
        for label, arn in executions.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for label, (_, store, person) in runs.items():
        code, final = results.get(label, (None, ""))
        print(f"\n===== {label}: watch exited {code}", flush=True)
        print(final, end="", flush=True)
        report = cli.run(stack.endpoint, person.access_key_id, "report", executions[label], "--output", "json")
        if code != 0 or report.returncode != 0:
            print(f"error: {report.stdout}{report.stderr}")
            ok = False
            continue
        print(f"final report ({cli_line(person, 'report', executions[label])}):")
        print(cli.run(stack.endpoint, person.access_key_id, "report", executions[label]).stdout, end="")
        document = json.loads(report.stdout)
        gone = fixtures.store_exists(kms, store.id) is False
        keys_gone = [key for key in store.keys if not fixtures.key_exists(kms, key)]
        print(f"store {store.id} deleted: {gone}; keys deleted: {len(keys_gone)} of {len(store.keys)}")
        ok = (
            ok
            and gone
            and len(keys_gone) == len(store.keys)
            and document.get("Outcome") == "Deleted"
            and document.get("KeysDeleted") == len(store.keys)
            and document.get("RequestedBy") == person.arn
        )
        run = ledger_run(stack.endpoint, table, store.id, executions[label])
        recorded = (run.get("ApprovalState"), run.get("ApprovedBy"))
        print(
            f"approval: {recorded[0]} by {recorded[1]} (nothing changed before it, the requester's own approval "
            f"refused: {approver.approved.get(label)})"
        )
        ok = ok and recorded == ("Approved", APPROVER.arn) and approver.approved.get(label) is True

    listing = cli.run(stack.endpoint, ALICE.access_key_id, "list")
    print(f"\n===== every decommission of the stack ({cli_line(ALICE, 'list')})\n{listing.stdout}", flush=True)
    ok = ok and listing.returncode == 0

    try:
        show_ledger(workflow.client(stack.endpoint, "dynamodb"), table, [payments, quiet, cloudhsm, xks])
    except ClientError as err:
        print(f"LEDGER UNREADABLE: {err}", flush=True)
        ok = False

    print("\n===== unrelated keys", flush=True)
    for key in unrelated:
        after = fixtures.key_snapshot(kms, key)
        print(f"{key}: {snapshot_change(before[key], after)}")
        ok = ok and after == before[key]
    for survivor in (keep, in_use, payments):
        exists = fixtures.store_exists(kms, survivor.id)
        state = fixtures.connection_state(kms, survivor.id)
        print(f"store {survivor.id} '{survivor.name}' still exists: {exists} ({state})")
    return ok


def main(argv: list[str] | None = None) -> int:
    """Run the demo on a fresh local stack; 0 on success."""
    parser = argparse.ArgumentParser(prog="python -m local.demo", description=__doc__)
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("LOCAL_PORT", 4566)),
        help="endpoint port (default $LOCAL_PORT or 4566)",
    )
    parser.add_argument(
        "--day-seconds",
        type=float,
        default=2.2,
        help="length of an emulated day in seconds (default 2.2: the 30-day CloudHSM window lasts 66 s)",
    )
    parser.add_argument("--no-build", action="store_true", help="do not cargo build first")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    config = StackConfig(
        port=args.port, day_seconds=args.day_seconds, emulator_args=EMULATOR_IDENTITIES, build=not args.no_build
    )
    try:
        if config.build:
            out("build", f"building the command line: cargo build -p {cli.PACKAGE}")
            cli.build()
        with LocalStack(config) as stack:
            out("stack", f"local stack ready at {stack.endpoint}")
            ok = run_demo(stack)
    except (StackError, ProcessFailed, TemplateError, fixtures.FixtureError, subprocess.CalledProcessError) as err:
        print(f"demo failed: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("demo interrupted", file=sys.stderr)
        return 130
    if not ok:
        print("\nDEMO FAILED", flush=True)
        return 1
    print(
        "\nDEMO SUCCEEDED: the store in use refused, the quarantine caught payments-app and let the quiet store "
        "go, both idle stores decommissioned once a second person approved, unrelated keys intact",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
