"""`make demo`: decommission a CloudHSM key store and an external key store end to end on the
local stack, the way an operator would, and show it happening.

Builds the handlers and the emulator, starts the stack with scaled time (an emulated day lasts
--day-seconds), creates the demo stores and keys plus unrelated keys that must survive, starts both
decommissions with the inputs of events/execution-decommission-*.json (the real store id and name
filled in), prints each state as it is entered with what it did, then the final reports and the
proof that nothing else changed, and what the run ledger (the DynamoDB table) recorded of both runs.
Exits 0 only if both decommissions succeeded and every check holds.

The stack runs with the template's defaults, so both decommissions wait for approval after their
plan (docs/approval.md, APPROVAL_REQUIRED_FOR_CONSOLE_AND_WEBHOOK true): the demo prints the approval
request the run ledger holds (its summary), checks that nothing changed yet, and approves as a second
person (APPROVER, not the run's RequestedBy) with SendTaskSuccess and the task token read from the
ledger, as `aws stepfunctions send-task-success` would; the ledger printout at the end shows who
approved.

First it shows the last-use guard (issue 7, docs/last-use-guard.md) at work once: an application
encrypts under the key of a third store, `demo-in-use`, and the decommission of that store is refused
with KeysRecentlyUsed naming the key; the demo checks that the refusal happened and changed nothing."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from local.client import fixtures, ledger, workflow
from local.stack.launcher import LocalStack, StackConfig, StackError
from local.stack.processes import ProcessFailed
from local.stack.template import TemplateError

PRINT_LOCK = threading.Lock()
STARTED = time.monotonic()


def out(label: str, message: str) -> None:
    """One line of demo output, with the time since the start."""
    with PRINT_LOCK:
        print(f"[{time.monotonic() - STARTED:6.1f}s] {label:<9} {message}", flush=True)


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
                elif name in ("WaitForKeyDeletion", "WaitForDisconnect", "WaitForConnection", "WaitBeforeRecheck"):
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


def demo_input(event_file: str, store: fixtures.Store) -> dict[str, Any]:
    """The console input of events/<event_file> for `store`. It must name who asks (RequestedBy):
    with the template's defaults every real run waits for approval, and one without a requester
    fails InvalidInput (the approver must be someone else)."""
    document = workflow.execution_input(event_file, CustomKeyStoreId=store.id, ConfirmCustomKeyStoreName=store.name)
    if not str(document.get("RequestedBy") or "").strip():
        raise fixtures.FixtureError(f"events/{event_file} names no RequestedBy: the run could not be approved")
    return document


# The second person who approves the demo's decommissions: neither run's RequestedBy
# (alice@example.com and bob@example.com in events/execution-decommission-*.json).
APPROVER = "carol@example.com"
# How long the demo waits for request-approval to put the task token in the ledger.
APPROVAL_REQUEST_TIMEOUT = 60.0


def ledger_run(endpoint: str, table: str, store_id: str, execution_arn: str) -> dict[str, Any]:
    """The run ledger's record of one run ({} if there is none yet)."""
    _, runs = ledger.split_store_partition(ledger.ledger_items(endpoint, table, ledger.store_pk(store_id)))
    return next((run for run in runs if run.get("Execution") == execution_arn), {})


@dataclass
class Approver:
    """Approves a run waiting for approval as a second person would with the AWS CLI: the task
    token from the run's ledger record, SendTaskSuccess with `{"ApprovedBy": APPROVER}`."""

    endpoint: str
    table: str
    # label -> the run was approved, nothing of its store having changed before
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
        out(
            label,
            f"{APPROVER} approves (requested by {run.get('RequestedBy')}): aws stepfunctions send-task-success "
            f"--task-token <ApprovalToken from the ledger> --task-output '{json.dumps({'ApprovedBy': APPROVER})}'",
        )
        sfn.send_task_success(taskToken=run["ApprovalToken"], output=json.dumps({"ApprovedBy": APPROVER}))
        self.approved[label] = unchanged


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


def show_last_use_guard(kms: Any, sfn: Any, admin: workflow.Admin, machine_arn: str) -> tuple[bool, fixtures.Store]:
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

    document = demo_input("execution-decommission-cloudhsm.json", store)
    execution = workflow.start_execution(sfn, machine_arn, document, name=f"demo-{store.id}")
    out(
        label,
        f"started {execution} (MinDaysSinceLastUse {document.get('MinDaysSinceLastUse')}: the last-use guard is on)",
    )
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
    machine = next(m for m in stack.state_machines if m.definition_path.name == "decommission.asl.json")
    out("in-use", "the last-use guard: a store whose key is still in use is refused")
    ok, in_use = show_last_use_guard(kms, sfn, workflow.Admin(stack.endpoint), machine.arn)

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
    ]
    before = {key: fixtures.key_snapshot(kms, key) for key in unrelated}
    demo_keys = {key: fixtures.key_snapshot(kms, key) for key in [*cloudhsm.keys, *xks.keys]}
    out(
        "setup",
        f"unrelated keys that must survive: 2 AWS_KMS keys, 1 key of store {keep.id} '{keep.name}' "
        f"and the key of '{in_use.name}'",
    )

    runs = {
        "cloudhsm": ("execution-decommission-cloudhsm.json", cloudhsm),
        "xks": ("execution-decommission-xks.json", xks),
    }
    executions = {}
    for label, (event_file, store) in runs.items():
        document = demo_input(event_file, store)
        executions[label] = workflow.start_execution(sfn, machine.arn, document, name=f"demo-{store.id}")
        out(label, f"started {executions[label]}")
        out(label, f"input (events/{event_file} with the real store): {json.dumps(document)}")

    table = ledger.ledger_table_name()
    approver = Approver(stack.endpoint, table)
    results: dict[str, Any] = {}
    threads = [
        threading.Thread(
            target=follow_execution,
            args=(sfn, label, arn, results, approver.on_wait(label, runs[label][1], arn, demo_keys)),
            daemon=True,
        )
        for label, arn in executions.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for label, (_, store) in runs.items():
        described = results.get(label, {"status": "DEMO-ERROR", "error": "no result"})
        print(f"\n===== {label}: {described['status']}", flush=True)
        if described["status"] != "SUCCEEDED":
            print(f"error: {described.get('error')}\ncause: {described.get('cause')}")
            ok = False
            continue
        print("final report:")
        print(json.dumps(json.loads(described.get("output") or "null"), indent=2))
        gone = fixtures.store_exists(kms, store.id) is False
        keys_gone = [key for key in store.keys if not fixtures.key_exists(kms, key)]
        print(f"store {store.id} deleted: {gone}; keys deleted: {len(keys_gone)} of {len(store.keys)}")
        ok = ok and gone and len(keys_gone) == len(store.keys)
        run = ledger_run(stack.endpoint, table, store.id, executions[label])
        recorded = (run.get("ApprovalState"), run.get("ApprovedBy"))
        print(f"approval: {recorded[0]} by {recorded[1]} (nothing changed before it: {approver.approved.get(label)})")
        ok = ok and recorded == ("Approved", APPROVER) and approver.approved.get(label) is True

    try:
        show_ledger(workflow.client(stack.endpoint, "dynamodb"), table, [cloudhsm, xks])
    except ClientError as err:
        print(f"LEDGER UNREADABLE: {err}", flush=True)
        ok = False

    print("\n===== unrelated keys", flush=True)
    for key in unrelated:
        after = fixtures.key_snapshot(kms, key)
        print(f"{key}: {snapshot_change(before[key], after)}")
        ok = ok and after == before[key]
    for survivor in (keep, in_use):
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
    config = StackConfig(port=args.port, day_seconds=args.day_seconds, build=not args.no_build)
    try:
        with LocalStack(config) as stack:
            out("stack", f"local stack ready at {stack.endpoint}")
            ok = run_demo(stack)
    except (StackError, ProcessFailed, TemplateError, fixtures.FixtureError) as err:
        print(f"demo failed: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("demo interrupted", file=sys.stderr)
        return 130
    if not ok:
        print("\nDEMO FAILED", flush=True)
        return 1
    print(
        "\nDEMO SUCCEEDED: the store in use refused, both idle stores decommissioned once a second person approved, "
        "unrelated keys intact",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
