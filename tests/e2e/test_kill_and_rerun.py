"""Kill and re-run (docs/reliability.md): the handler process that `cargo lambda watch` runs is
killed (SIGKILL) in the middle of an invocation, at points chosen from the emulator's call log while
every KMS call is slowed down, so the kill lands between two KMS calls of a batch: in each function
of the workflow, in schedule-key-deletion after a key's ledger record and marker tags were written
but before ScheduleKeyDeletion, and after ScheduleKeyDeletion answered but before the ledger's
update. The state machine's Retry (Lambda.Unknown, Sandbox.Timedout, States.Timeout) runs the step
again; the run converges: every key scheduled exactly once, counted once, none skipped, the ledger's
first records kept. Then whole executions started again after success, failure and stop behave as
the README and docs/ledger.md say."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from helpers import (
    calls_of,
    decommission_input,
    failure,
    key_records,
    kms_state,
    mutating_calls,
    store_ledger,
    wait_for_state,
)
from local.client import fixtures, workflow

REPO = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("KILL_SEED", "14"))
# Every KMS call waits this long before the emulator answers: an invocation lasts seconds, and a
# kill sent when the log shows call k lands before call k+1 is answered.
LATENCY_MS = 400
# The errors a cut-off invocation fails with, which the ASL retries (statemachine/decommission.asl.json).
CUT_OFF_ERRORS = {"Lambda.Unknown", "Sandbox.Timedout", "States.Timeout", "Lambda.ServiceException"}
CLOUDHSM_INPUT = "execution-decommission-cloudhsm.json"
XKS_INPUT = "execution-decommission-xks.json"


def _ancestors(pid: int) -> set[int]:
    """The process ids above `pid` (parent, grandparent, ...)."""
    found = set()
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        found.add(pid)
    return found


def handler_pids(binary: str) -> list[int]:
    """The processes running this worktree's `binary` that this test session started (under its
    cargo lambda watch): never anyone else's."""
    wanted = {REPO / "target" / "debug" / binary}
    if os.environ.get("CARGO_TARGET_DIR"):
        wanted.add((REPO / os.environ["CARGO_TARGET_DIR"] / "debug" / binary).resolve())
    me = os.getpid()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            exe = Path(os.readlink(entry / "exe"))
        except OSError:
            continue
        if exe in wanted and me in _ancestors(int(entry.name)):
            pids.append(int(entry.name))
    return pids


class Killer(threading.Thread):
    """Watches the call log; at each kill point (state, operation, n: once the execution is in
    `state` and the n-th call of `operation` made since then is logged) SIGKILLs the state's
    function process. Records what it killed."""

    def __init__(self, e2e: Any, execution: str, points: list[tuple[str, str, str, int]]) -> None:
        super().__init__(daemon=True, name="killer")
        self.e2e, self.execution, self.points = e2e, execution, list(points)
        self.killed: list[tuple[str, str, int, int]] = []  # (state, operation, n, pid)
        self.stop = threading.Event()
        self.baseline: dict[int, int] = {}

    def run(self) -> None:
        while self.points and not self.stop.is_set():
            state, binary, operation, n = self.points[0]
            events = workflow.history(self.e2e.sfn, self.execution)
            entered = [e for e in events if e.get("stateEnteredEventDetails", {}).get("name") == state]
            if not entered:
                time.sleep(0.05)
                continue
            since = entered[0]["timestamp"].timestamp()
            self.baseline = read_counters(binary)  # as the state's invocation begins
            while not self.stop.is_set():
                calls = [c for c in calls_of(self.e2e.admin.calls(), operation) if c["time"] >= since - 0.05]
                if len(calls) >= n:
                    pid = busy_instance(binary, self.baseline)
                    if pid:
                        os.kill(pid, signal.SIGKILL)
                    self.killed.append((state, operation, n, pid or 0))
                    self.points.pop(0)
                    break
                time.sleep(0.02)


def read_counters(binary: str) -> dict[int, int]:
    """CPU time (ns) each instance of `binary` has used so far: the sum over its threads of
    /proc/<pid>/task/<tid>/schedstat."""
    counters = {}
    for pid in handler_pids(binary):
        total = 0
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
        counters[pid] = total
    return counters


def busy_instance(binary: str, baseline: dict[int, int]) -> int | None:
    """The instance of `binary` serving the invocation: cargo lambda watch runs several instances
    of each function (--concurrency), which take invocations from one queue; the idle ones sit in
    the runtime API's `next` call and use no CPU, the busy one has used the most since `baseline`.
    Killing only it leaves the others to serve the retry (cargo lambda watch never replaces a dead
    instance)."""
    grown = {pid: count - baseline.get(pid, 0) for pid, count in read_counters(binary).items()}
    grown = {pid: delta for pid, delta in grown.items() if delta > 0}
    return max(grown, key=grown.__getitem__) if grown else None


def run_with_kills(
    e2e: Any,
    store: fixtures.Store,
    template: str,
    points: list[tuple[str, str, str, int]],
    timeout: float = 240,
    day_seconds: float | None = None,
):
    """Run a decommission of `store` while killing at `points`; (described, events, killer).
    `day_seconds` lengthens the emulated day: a crash in a 300 s function is answered after 305 s
    here, and the 7-day window must outlast it, or KMS deletes the keys scheduled before the crash
    before the retry counts them (in AWS a window is at least 7 real days)."""
    if day_seconds is not None:
        e2e.admin.configure(day_seconds=day_seconds)
    e2e.admin.clear_calls()
    e2e.admin.call("POST", "faults", {"latency_ms": LATENCY_MS})
    execution = e2e.run(decommission_input(store, template, PendingWindowInDays=7))
    killer = Killer(e2e, execution, points)
    killer.start()
    try:
        described, events = e2e.finish(execution, timeout=timeout)
    finally:
        killer.stop.set()
        killer.join(5)
        e2e.admin.clear_faults()
    return described, events, killer


def assert_converged(e2e: Any, store: fixtures.Store, prior: dict[str, str], execution: str, events, killer) -> None:
    """Every kill cut an invocation off and was retried; every key scheduled once, counted once,
    its first ledger record kept; the store deleted."""
    failed = workflow.task_failures(events)
    cut_off = [(state, error) for state, error in failed if error in CUT_OFF_ERRORS]
    killed_states = [state for state, _, _, pid in killer.killed if pid]
    assert killer.points == [], f"kill points never reached: {killer.points}"
    assert all(pid for *_, pid in killer.killed), f"a function process to kill was running each time: {killer.killed}"
    assert Counter(state for state, _ in cut_off) == Counter(killed_states), (
        f"each kill cut one invocation off, and the state machine saw it: kills {killer.killed}, failures {failed}"
    )
    calls = e2e.admin.calls()
    scheduled = Counter(c["key_id"] for c in calls_of(calls, "ScheduleKeyDeletion", "OK"))
    assert scheduled == dict.fromkeys(store.keys, 1), f"each key scheduled exactly once: {scheduled}"
    others = [c for c in mutating_calls(calls) if c["custom_key_store_id"] != store.id]
    assert others == [], others
    assert calls_of(calls, "CancelKeyDeletion") == [] and calls_of(calls, "EnableKey") == []
    scheduling = [o["Scheduling"] for o in workflow.state_outputs(events, "ScheduleKeyDeletion") if o]
    done = [s for s in scheduling if s.get("Done")]
    assert len(done) == 1 and (done[0]["KeysScheduled"], done[0]["KeysAlreadyPending"]) == (len(store.keys), 0), (
        f"every key counted once: {scheduling}"
    )
    records = key_records(e2e, execution)
    assert set(records) == set(store.keys), "none skipped by the ledger"
    for key, record in records.items():
        assert record["PriorState"] == prior[key], f"the first record kept across the kills: {record}"
        assert record.get("ScheduledAt") and record.get("SeenDeletedAt"), record
    lock, runs = store_ledger(e2e, store.id)
    assert lock is None and runs[execution]["Outcome"] == "Succeeded", (lock, runs[execution])
    assert not fixtures.store_exists(e2e.kms, store.id)
    if store.kind == "AWS_CLOUDHSM":
        deleted = {k["key_id"]: k for k in e2e.admin.state()["deleted_keys"]}
        assert {deleted[k]["backing_key_deletion"] for k in store.keys} == {"SUCCESS"}, "no key material orphaned"


# A killed function process leaves its invocation hanging in cargo lambda watch, which does not
# notice the exit: the local Invoke adapter answers it Sandbox.Timedout once the function's Timeout
# (template.yaml) plus 5 s has passed, and the ASL retries that after 0-10 s. Lambda itself reports
# a crash at once (Runtime.ExitError, which Step Functions names Lambda.Unknown). So a kill costs
# 65 s in the 60 s functions and 305 s in the 300 s ones (plan, schedule, check, quarantine): make
# test kills disconnect-store only; KILL_TESTS=all runs the kills in every function.
SLOW = pytest.mark.skipif(
    os.environ.get("KILL_TESTS") != "all", reason="a kill in a 300 s function costs 5 min: KILL_TESTS=all"
)


def test_disconnect_store_killed_while_its_kms_call_is_in_flight_converges(e2e):
    store = fixtures.make_store(e2e.kms, "xks", keys=2)
    prior = dict.fromkeys(store.keys, "Enabled")
    # The store's state read (DescribeCustomKeyStores answered), DisconnectCustomKeyStore sent and
    # waiting out the latency: the process dies with a KMS call in flight and its document unanswered.
    points = [("DisconnectStore", "disconnect-store", "DescribeCustomKeyStores", 1)]
    described, events, killer = run_with_kills(e2e, store, XKS_INPUT, points)
    print(f"killed {killer.killed}")
    assert described["status"] == "SUCCEEDED", failure(described)
    assert_converged(e2e, store, prior, described["executionArn"], events, killer)
    disconnects = [c["outcome"] for c in calls_of(e2e.admin.calls(), "DisconnectCustomKeyStore")]
    assert disconnects.count("OK") == 1, f"disconnected once (a retry finds it DISCONNECTING): {disconnects}"


@SLOW
def test_cloudhsm_run_with_each_function_killed_mid_invocation_converges(e2e):
    rng = random.Random(SEED)
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=3, disabled=1)
    prior = dict(zip(store.keys, ["Enabled", "Enabled", "Disabled"], strict=True))
    # (state, its function, the operation whose n-th call since the state was entered triggers the
    # kill, n); n drawn from the seed, within what one invocation makes.
    points = [
        # after its ListKeys page, before the page's DescribeKey batch (400 ms of latency still to
        # come: a kill after the batch's first DescribeKey landed once the invocation had answered)
        ("PlanDecommission", "plan-decommission", "ListKeys", 1),
        # after key k's record and marker tags, before its ScheduleKeyDeletion
        ("ScheduleKeyDeletion", "schedule-key-deletion", "TagResource", rng.randint(1, 3)),
        # mid-scan: after ListKeys, before the keys are described and the store is checked (a kill
        # after DescribeCustomKeyStores, its last call, came too late the same way)
        ("CheckKeysDeleted", "check-keys-deleted", "ListKeys", 1),
        # the store read, DisconnectCustomKeyStore in flight (after it, the invocation's last
        # call, the kill came once the invocation had answered)
        ("DisconnectStore", "disconnect-store", "DescribeCustomKeyStores", 1),
    ]
    described, events, killer = run_with_kills(e2e, store, CLOUDHSM_INPUT, points, timeout=2400, day_seconds=50.0)
    print(f"kill seed {SEED}: killed {killer.killed}")
    assert described["status"] == "SUCCEEDED", failure(described)
    assert_converged(e2e, store, prior, described["executionArn"], events, killer)


@SLOW
def test_xks_run_killed_between_schedule_key_deletion_and_the_ledger_update_converges(e2e):
    # 12 keys: TagResource is paced at 9.5 a second, so the batch's keys reach ScheduleKeyDeletion
    # over more than a second; with 3 keys every call answered within the same moment and the
    # kill landed after the invocation had answered.
    store = fixtures.make_store(e2e.kms, "xks", keys=12)
    prior = dict.fromkeys(store.keys, "Enabled")
    points = [
        # ScheduleKeyDeletion of a key answered: its ledger update (ScheduledAt) not yet written,
        # other keys of the batch still to tag and schedule
        ("ScheduleKeyDeletion", "schedule-key-deletion", "ScheduleKeyDeletion", 1),
    ]
    described, events, killer = run_with_kills(e2e, store, XKS_INPUT, points, timeout=1200, day_seconds=50.0)
    print(f"killed {killer.killed}")
    assert described["status"] == "SUCCEEDED", failure(described)
    assert_converged(e2e, store, prior, described["executionArn"], events, killer)


# --- A whole execution started again -----------------------------------------------------------


def start_named(e2e: Any, document: dict[str, Any], name: str) -> str:
    return workflow.start_execution(e2e.sfn, e2e.state_machine_arn, document, name)


@pytest.mark.parametrize("how", ["succeeded", "failed", "stopped"])
def test_an_execution_started_again_behaves_as_documented(e2e, how):
    """The same name again is refused by Step Functions (ExecutionAlreadyExists: a name is used once)
    and changes nothing; the same input under a new name is a new run of the store: after success
    the store is gone (KMS's CustomKeyStoreNotFoundException, nothing changed); after a run refused
    before it took the lock the new run simply starts, after a stop it takes the lock over and picks up
    where the last run stopped (docs/ledger.md)."""
    store = fixtures.make_store(e2e.kms, "xks", keys=2)
    name = f"rerun-{how}-{random.Random(SEED).getrandbits(32):08x}-{time.time_ns() % 10**6}"
    window = 7
    if how == "stopped":
        # 30 days at 3 s a day: the run waits in WaitForDeletionDate long enough to be stopped there.
        e2e.admin.configure(day_seconds=3.0)
        window = 30
    document = decommission_input(store, XKS_INPUT, PendingWindowInDays=window)
    if how == "failed":
        document = {**document, "ConfirmCustomKeyStoreName": store.name + "-typo"}
    first = start_named(e2e, document, name)
    if how == "stopped":
        wait_for_state(e2e, first, "WaitForDeletionDate")
        # While it runs, the same name and input is the same execution (StartExecution is idempotent).
        assert start_named(e2e, document, name) == first
        assert len(workflow.history(e2e.sfn, first)) > 0
        e2e.sfn.stop_execution(executionArn=first, error="StoppedByHand", cause="operator")
    described, _ = e2e.finish(first)
    expected = {"succeeded": "SUCCEEDED", "failed": "FAILED", "stopped": "ABORTED"}[how]
    assert described["status"] == expected, failure(described)

    before, log_length = kms_state(e2e), len(e2e.admin.calls())
    with pytest.raises(ClientError) as refused:
        start_named(e2e, document, name)
    assert refused.value.response["Error"]["Code"] == "ExecutionAlreadyExists"
    assert kms_state(e2e) == before and len(e2e.admin.calls()) == log_length, "the refused start changed nothing"

    if how == "stopped":
        # The stopped run's 30-day window passes at once: KMS deletes its keys.
        e2e.admin.call("POST", "clock", {"advance_seconds": 31 * 86400})
    again_document = decommission_input(store, XKS_INPUT, PendingWindowInDays=window)
    again = e2e.run(again_document)
    described, _ = e2e.finish(again)
    calls = e2e.admin.calls()[log_length:]
    if how == "succeeded":
        assert (described["status"], described["error"]) == ("FAILED", "CustomKeyStoreNotFoundException"), failure(
            described
        )
        assert mutating_calls(calls) == [], "nothing changed"
        return
    assert described["status"] == "SUCCEEDED", failure(described)
    assert not fixtures.store_exists(e2e.kms, store.id)
    _, runs = store_ledger(e2e, store.id)
    if how == "failed":
        # Refused by plan-decommission before it took the lock (a wrong confirmation): the ledger
        # holds no record of it, and the new run simply starts.
        assert first not in runs, runs[first]
    else:
        assert runs[first]["Outcome"] == expected and again in runs[first]["OutcomeDetail"], runs[first]
    scheduled_again = calls_of(calls, "ScheduleKeyDeletion", "OK")
    if how == "stopped":
        assert scheduled_again == [], "the stopped run's keys were its own; the new run schedules none again"
        assert set(key_records(e2e, first)) == set(store.keys) and key_records(e2e, again) == {}
    else:
        assert len(scheduled_again) == 2 and set(key_records(e2e, again)) == set(store.keys)
    report = json.loads(described["output"])
    assert report, report
