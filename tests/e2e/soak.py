"""Fault soak: N end-to-end decommissions (CloudHSM and XKS stores, some with a quarantine) on the
local stack while the KMS emulator's fault API injects random faults, then checks that nothing was
lost. docs/reliability.md describes it; tests/e2e/test_soak.py runs a short version in `make test`.

    .venv/bin/python tests/e2e/soak.py --runs 50 --seed 7      # make soak SOAK_ARGS="--runs 50 --seed 7"

Runs go in waves (stores are created, faults switched on, the wave's executions started together,
faults switched off, everything checked); the emulator is reset between waves (at most 10 stores).
Faults, from the emulator's fault API (docs/emulator.md):

- a share of every KMS call failing with KMSInternalException (`--kms-internal`, default 0.3);
- ThrottlingException bursts on a random operation (the next 2-6 calls), every 4-10 s;
- latency spikes (200-800 ms on every call for 1-3 s);
- CloudTrail LookupEvents throttled (a 20 % share, plus bursts) while quarantines read it;
- per run: the store held DISCONNECTING when the run disconnects it (for less than the
  disconnect timeout), the store forced FAILED during the waiting period, and, in the full soak only,
  the store held DISCONNECTING past the timeout (`DisconnectTimedOut`, a documented end).

The plan (which store kinds, key counts, quarantines, per-run faults, when each burst comes) is
drawn from the seed, so a failing seed reproduces the same plan; whether a given call meets the
KMSInternalException share is the emulator's own draw, and timings differ from run to run.

Every run must end in an allowed state (ALLOWED_ERRORS); the call log must show no mutating call
outside the wave's target stores and their keys; the bystander keys and store must be unchanged;
no key may be scheduled twice; and the ledger must agree with KMS (check_run)."""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script: the repository root and tests/e2e on sys.path
    sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parent)]

from helpers import MUTATING, bystanders, decommission_input, key_records, store_ledger
from local.client import fixtures, workflow

CLOUDHSM_INPUT = "execution-decommission-cloudhsm.json"
XKS_INPUT = "execution-decommission-xks.json"
TRANSIENT = ("KMSInternalException", "ThrottlingException", "DependencyTimeoutException")
# The end states a run may reach, and why each is correct (docs/reliability.md lists them too).
ALLOWED_ERRORS = {
    "DisconnectTimedOut": "the store was held DISCONNECTING past DISCONNECT_TIMEOUT_SECONDS (injected); "
    "documented: every key is deleted, the store is left for the operator to start again",
    "KMSInternalException": "a step met the error more times than its Retry allows (10 attempts of 3 SDK calls); "
    "documented as a KMS name: keys scheduled stay pending, the store stays, start again",
    "ThrottlingException": "as KMSInternalException, for throttling",
    "DependencyTimeoutException": "as KMSInternalException, for dependency timeouts",
    "KeyMaterialOrphaned": "a CloudHSM store forced FAILED in the window was still down when KMS deleted keys "
    "(the reconnect lead was overrun); KMS's DeleteKey events say FAILURE, and the run stops before disconnecting "
    "the store, naming each key and its handle (documented); allowed only when the material really is orphaned",
}
# Operations the throttling bursts aim at (the ones the workflow calls).
BURST_OPERATIONS = (
    "ListKeys",
    "DescribeKey",
    "DescribeCustomKeyStores",
    "ScheduleKeyDeletion",
    "TagResource",
    "GetKeyLastUsage",
    "DisconnectCustomKeyStore",
    "ConnectCustomKeyStore",
    "DeleteCustomKeyStore",
)
# DISCONNECT_TIMEOUT_SECONDS of the local stack (local.stack.launcher.LOCAL_HANDLER_CONFIG) is 60.
STUCK_SECONDS = 8.0  # held DISCONNECTING this long: the run polls and goes on
STUCK_FOR_GOOD_SECONDS = 150.0  # past the timeout: DisconnectTimedOut
WAVE_TIMEOUT = 900.0


@dataclass
class RunPlan:
    """One decommission of the soak: its store and the faults aimed at it alone."""

    kind: str  # "cloudhsm" or "xks"
    keys: int
    disabled: int
    quarantine_days: int
    store_fault: str | None  # None, "stuck_disconnecting", "failed_in_window", "stuck_for_good"


@dataclass
class RunResult:
    plan: RunPlan
    store: fixtures.Store
    execution: str
    status: str = "RUNNING"
    error: str | None = None
    cause: str | None = None
    injected: bool = False  # the store fault was applied (or tried)
    missed: bool = False  # the store was gone before the fault could be applied
    task_retries: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        return "Decommissioned" if self.status == "SUCCEEDED" else f"{self.status} {self.error}"


@dataclass
class SoakReport:
    seed: int
    runs: list[RunResult] = field(default_factory=list)
    faults: Counter = field(default_factory=Counter)
    calls: Counter = field(default_factory=Counter)  # call-log outcomes of the runs' waves
    problems: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0

    def table(self) -> str:
        kinds = Counter(r.plan.kind + (" +quarantine" if r.plan.quarantine_days else "") for r in self.runs)
        outcomes = Counter(r.outcome for r in self.runs)
        retried = sum(self.calls[name] for name in (*TRANSIENT, "LookupEvents ThrottlingException"))
        done_keys = sum(len(r.store.keys) for r in self.runs if r.status == "SUCCEEDED")
        all_keys = sum(len(r.store.keys) for r in self.runs)
        failed = ", ".join(f"{k} {v}" for k, v in sorted(self.calls.items()) if not k.endswith("OK"))
        lines = [
            f"soak seed {self.seed}: {len(self.runs)} runs ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))})",
            "faults injected:",
            *(f"  {kind:<52} {count:>6}" for kind, count in sorted(self.faults.items())),
            "outcomes:",
            *(f"  {outcome:<52} {count:>6}" for outcome, count in sorted(outcomes.items())),
            f"KMS and CloudTrail calls: {sum(self.calls.values())} in all, {retried} failed with a transient "
            f"error and retried; every outcome other than OK: {failed}",
            f"task attempts retried by the state machine: {sum(r.task_retries for r in self.runs)}",
            f"keys of the runs that ended Decommissioned: {done_keys} of {all_keys}",
            f"problems: {len(self.problems)}",
            f"wall time: {self.wall_seconds:.0f} s",
        ]
        return "\n".join(lines)


def plan_runs(rng: random.Random, runs: int, full: bool) -> list[RunPlan]:
    """The seed's runs: kinds alternate, so both are always covered; the rest is drawn."""
    plans = []
    for index in range(runs):
        kind = "cloudhsm" if index % 2 == 0 else "xks"
        keys = rng.randint(2, 4)
        quarantine = rng.choice((0, 0, 1, 2))
        faults: list[str | None] = [None, None, "stuck_disconnecting", "failed_in_window"]
        if full:
            faults.append("stuck_for_good")
        fault = rng.choice(faults)
        if not full and kind == "cloudhsm" and fault == "failed_in_window":
            # make test must not flake: a CloudHSM store failing in its window can be reconnected
            # after KMS deleted the keys when retries back off past the local 1 s poll lead
            # (docs/reliability.md, "What these runs found"); the full soak keeps it.
            fault = None
        plans.append(RunPlan(kind, keys, rng.randint(0, 1), quarantine, fault))
    return plans


def _add_fault(e2e: Any, **body: Any) -> None:
    e2e.admin.call("POST", "faults", body)


class FaultDriver(threading.Thread):
    """Throttling bursts, latency spikes and LookupEvents bursts at random moments of a wave."""

    def __init__(self, e2e: Any, rng: random.Random, faults: Counter) -> None:
        super().__init__(daemon=True, name="soak-fault-driver")
        self.e2e, self.rng, self.faults = e2e, rng, faults
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.rng.uniform(4.0, 10.0)):
            action = self.rng.choice(("throttle", "throttle", "latency", "lookups"))
            # A burst waits for calls of its operation; at most two wait at a time, so bursts do
            # not pile up while the runs back off.
            waiting = [r for r in self.e2e.admin.call("GET", "faults")["rules"] if r.get("remaining")]
            if action in ("throttle", "lookups") and len(waiting) >= 2:
                continue
            if action == "throttle":
                operation, count = self.rng.choice(BURST_OPERATIONS), self.rng.randint(2, 6)
                _add_fault(self.e2e, operation=operation, error="ThrottlingException", count=count)
                self.faults["ThrottlingException bursts (next 2-6 calls of one op)"] += 1
            elif action == "latency":
                _add_fault(self.e2e, latency_ms=self.rng.randint(200, 800))
                self.faults["latency spikes (200-800 ms on every call, 1-3 s)"] += 1
                self.stop.wait(self.rng.uniform(1.0, 3.0))
                _add_fault(self.e2e, latency_ms=0)
            else:
                _add_fault(
                    self.e2e, operation="LookupEvents", error="ThrottlingException", count=self.rng.randint(2, 6)
                )
                self.faults["LookupEvents ThrottlingException bursts"] += 1


def _apply_store_fault(e2e: Any, run: RunResult, entered: list[str], day_seconds: float) -> None:
    """Apply the run's store fault once it reaches the point the fault aims at."""
    fault = run.plan.store_fault
    emulated = 86400.0 / day_seconds  # emulated seconds per wall second
    try:
        if fault == "failed_in_window" and {"WaitForDeletionDate", "CheckKeysDeleted"} & set(entered):
            run.injected = True
            e2e.admin.force_connection_state(run.store.id, "FAILED", error_code="NETWORK_ERRORS")
        elif fault in ("stuck_disconnecting", "stuck_for_good") and "DisconnectStore" in entered:
            run.injected = True
            state = next((st["state"] for st in e2e.admin.state()["stores"] if st["id"] == run.store.id), None)
            if state not in ("CONNECTED", "DISCONNECTING"):
                # Already DISCONNECTED (or deleted): KMS never goes back to DISCONNECTING from there.
                run.missed = True
                return
            seconds = STUCK_SECONDS if fault == "stuck_disconnecting" else STUCK_FOR_GOOD_SECONDS
            e2e.admin.force_connection_state(run.store.id, "DISCONNECTING", for_seconds=seconds * emulated)
    except workflow.AdminError:
        # The run was quicker than the watcher: the store is already deleted. Not injected.
        run.missed = True


def run_wave(e2e: Any, plans: list[RunPlan], rng: random.Random, report: SoakReport, kms_internal: float) -> None:
    """One wave: create its stores and bystanders, run its decommissions under faults, check them."""
    e2e.admin.reset()
    day_seconds = float(e2e.admin.call("GET", "config")["day_seconds"])
    bystander_keys, snapshots, other_store = bystanders(e2e)
    stores = [fixtures.make_store(e2e.kms, p.kind, keys=p.keys, disabled=p.disabled) for p in plans]
    e2e.admin.clear_calls()

    _add_fault(e2e, operation="*", error="KMSInternalException", probability=kms_internal)
    _add_fault(e2e, operation="LookupEvents", error="ThrottlingException", probability=0.2)
    driver = FaultDriver(e2e, random.Random(rng.random()), report.faults)
    runs = []
    for plan, store in zip(plans, stores, strict=True):
        template = CLOUDHSM_INPUT if plan.kind == "cloudhsm" else XKS_INPUT
        document = decommission_input(store, template, PendingWindowInDays=7, QuarantineDays=plan.quarantine_days)
        runs.append(RunResult(plan, store, e2e.run(document)))
    driver.start()
    deadline = time.monotonic() + WAVE_TIMEOUT
    try:
        while any(r.status == "RUNNING" for r in runs):
            for run in runs:
                if run.status != "RUNNING":
                    continue
                described = e2e.sfn.describe_execution(executionArn=run.execution)
                if described["status"] != "RUNNING":
                    run.status, run.error, run.cause = (
                        described["status"],
                        described.get("error"),
                        described.get("cause"),
                    )
                elif run.plan.store_fault and not run.injected:
                    _apply_store_fault(
                        e2e, run, workflow.states_entered(workflow.history(e2e.sfn, run.execution)), day_seconds
                    )
            if time.monotonic() > deadline:
                for run in runs:
                    if run.status == "RUNNING":
                        run.problems.append(f"still running after {WAVE_TIMEOUT:.0f} s")
                        e2e.sfn.stop_execution(executionArn=run.execution, error="SoakTimeout", cause="wave timeout")
                        run.status = "TIMED_OUT_BY_SOAK"
                break
            time.sleep(0.5)
    finally:
        driver.stop.set()
        driver.join(10)
        e2e.admin.clear_faults()

    calls = e2e.admin.calls()
    for call in calls:
        key = call["outcome"] if call["operation"] != "LookupEvents" else f"LookupEvents {call['outcome']}"
        report.calls[key] += 1
    report.faults[f"KMSInternalException share of every KMS call ({kms_internal:.0%}): calls hit"] += sum(
        1 for c in calls if c["outcome"] == "KMSInternalException"
    )
    state = e2e.admin.state()
    for run in runs:
        if run.injected and not run.missed:
            report.faults[f"store {run.plan.store_fault.replace('_', ' ')}"] += 1
        events = workflow.history(e2e.sfn, run.execution)
        run.task_retries = len(workflow.task_failures(events))
        run.problems += check_run(e2e, run, calls, state)
    targets = {r.store.id for r in runs}
    target_keys = {k for r in runs for k in r.store.keys}
    wave_problems = []
    for call in calls:
        if call["operation"] not in MUTATING:
            continue
        if call.get("custom_key_store_id") not in targets or (call.get("key_id") and call["key_id"] not in target_keys):
            wave_problems.append(f"mutating call outside the target stores: {call}")
    for key, before in snapshots.items():
        if fixtures.key_snapshot(e2e.kms, key) != before:
            wave_problems.append(f"bystander key {key} changed")
    if fixtures.connection_state(e2e.kms, other_store.id) != "CONNECTED":
        wave_problems.append(f"bystander store {other_store.id} is no longer CONNECTED")
    report.runs += runs
    report.problems += wave_problems + [f"{r.plan.kind} run {r.execution}: {p}" for r in runs for p in r.problems]
    assert len(bystander_keys) == 3


def check_run(e2e: Any, run: RunResult, calls: list[dict[str, Any]], state: dict[str, Any]) -> list[str]:
    """What is wrong with one finished run: its end state, the keys KMS and the ledger hold."""
    problems = []
    store_id, keys = run.store.id, set(run.store.keys)
    live = {k["id"]: k for k in state["keys"] if k["id"] in keys}
    deleted = {k["key_id"]: k for k in state["deleted_keys"] if k["key_id"] in keys}
    store_left = any(s["id"] == store_id for s in state["stores"])
    if run.status == "SUCCEEDED":
        if store_left or live:
            problems.append(f"succeeded but the store ({store_left}) or keys ({sorted(live)}) remain")
    elif run.status == "FAILED" and run.error in ALLOWED_ERRORS:
        if run.error == "DisconnectTimedOut" and (run.plan.store_fault != "stuck_for_good" or run.missed):
            problems.append(f"DisconnectTimedOut without the stuck-for-good fault: {run.cause}")
    else:
        problems.append(f"ended {run.status} {run.error}: {run.cause}")
    scheduled = Counter(c["key_id"] for c in calls if c["operation"] == "ScheduleKeyDeletion" and c["outcome"] == "OK")
    twice = {k: n for k, n in scheduled.items() if n > 1}
    if twice:
        problems.append(f"keys scheduled more than once: {twice}")
    undoing = [
        c for c in calls if c["operation"] in ("CancelKeyDeletion", "EnableKey", "DisableKey") and c["key_id"] in keys
    ]
    if undoing:
        problems.append(f"keys touched in a way that changes their outcome: {undoing}")
    # Orphaned key material (a key deleted while its CloudHSM store was not connected) must never
    # hide behind a success: the run must stop KeyMaterialOrphaned, and its ledger say so per key.
    records = key_records(e2e, run.execution)
    orphaned = {
        key for key, r in deleted.items() if run.plan.kind == "cloudhsm" and r["backing_key_deletion"] != "SUCCESS"
    }
    if orphaned and run.status == "SUCCEEDED":
        problems.append(f"succeeded though the material of {sorted(orphaned)} is orphaned in the cluster")
    if run.error == "KeyMaterialOrphaned":
        if not orphaned:
            problems.append(f"KeyMaterialOrphaned but KMS deleted every key's material: {run.cause}")
        for key in orphaned:
            if (records.get(key) or {}).get("KeyMaterial") != "Orphaned" or key not in (run.cause or ""):
                problems.append(f"orphaned material of {key} not in the ledger or the error: {records.get(key)}")
    # The ledger agrees with KMS.
    for key in keys:
        record = records.get(key)
        in_kms = "deleted" if key in deleted else live[key]["state"] if key in live else "missing"
        if scheduled.get(key) and record is None:
            problems.append(f"key {key} scheduled in KMS but not in the ledger")
        if record and record.get("ScheduledAt") and in_kms not in ("PendingDeletion", "deleted"):
            problems.append(f"ledger says key {key} scheduled, KMS says {in_kms}")
        if in_kms in ("PendingDeletion", "deleted") and not (record and record.get("ScheduledAt")):
            problems.append(f"key {key} is {in_kms} in KMS but the ledger has no ScheduledAt: {record}")
        if run.status == "SUCCEEDED" and not (record and record.get("SeenDeletedAt")):
            problems.append(f"store deleted but the ledger never saw key {key} deleted: {record}")
    lock, runs = store_ledger(e2e, store_id)
    mine = runs.get(run.execution, {})
    if run.status == "SUCCEEDED" and (lock is not None or mine.get("Outcome") != "Succeeded"):
        problems.append(f"succeeded but the ledger says lock {lock}, outcome {mine.get('Outcome')}")
    if run.status == "FAILED" and (lock is None or lock.get("Execution") != run.execution):
        problems.append(f"failed run does not hold the store's lock (docs/ledger.md): {lock}")
    return problems


def soak(
    e2e: Any, runs: int, seed: int, wave_size: int = 6, kms_internal: float = 0.3, full: bool = True
) -> SoakReport:
    """Run the soak on the stack `e2e` (tests/e2e/conftest.py's E2E); its report."""
    rng = random.Random(seed)
    plans = plan_runs(rng, runs, full)
    report = SoakReport(seed)
    started = time.monotonic()
    for first in range(0, runs, wave_size):
        wave = plans[first : first + wave_size]
        run_wave(e2e, wave, rng, report, kms_internal)
        print(f"[soak] wave {first // wave_size + 1}: {[r.outcome for r in report.runs[first:]]}", flush=True)
    report.wall_seconds = time.monotonic() - started
    return report


def main(argv: list[str] | None = None) -> int:
    import os
    import tempfile

    from conftest import E2E, E2E_HANDLER_CONFIG, EMULATOR_IDENTITIES
    from local.stack.launcher import LOCAL_HANDLER_CONFIG, RUN_DIR, LocalStack, StackConfig
    from local.stack.processes import free_port
    from local.stack.template import LOCAL_ACCOUNT, LOCAL_REGION

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=None, help="default: drawn, and printed")
    parser.add_argument("--wave", type=int, default=6, help="runs at the same time (at most 8: 10 stores)")
    parser.add_argument("--kms-internal", type=float, default=0.3, help="share of KMS calls failing")
    parser.add_argument("--no-stuck-for-good", action="store_true", help="leave out the 60 s DisconnectTimedOut runs")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1_000_000)
    print(f"[soak] seed {seed} (re-run with --seed {seed})", flush=True)

    def go(endpoint: str) -> SoakReport:
        kms, sfn = workflow.clients(endpoint)
        arn = f"arn:aws:states:{LOCAL_REGION}:{LOCAL_ACCOUNT}:stateMachine:kms-decommission"
        e2e = E2E(endpoint, kms, sfn, workflow.Admin(endpoint), arn)
        return soak(e2e, args.runs, seed, min(args.wave, 8), args.kms_internal, not args.no_stuck_for_good)

    if os.environ.get("E2E_ENDPOINT"):
        report = go(os.environ["E2E_ENDPOINT"].rstrip("/"))
    else:
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        config = StackConfig(
            port=free_port(),
            day_seconds=1.0,
            emulator_args=EMULATOR_IDENTITIES,
            run_dir=Path(tempfile.mkdtemp(prefix="soak-", dir=RUN_DIR)),
            handler_env={**LOCAL_HANDLER_CONFIG, **E2E_HANDLER_CONFIG},
        )
        with LocalStack(config) as stack:
            report = go(stack.endpoint)
    print(report.table())
    for problem in report.problems:
        print(f"PROBLEM: {problem}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "seed": seed,
                    "runs": [{"kind": r.plan.kind, "plan": vars(r.plan), "outcome": r.outcome} for r in report.runs],
                    "faults": report.faults,
                    "calls": report.calls,
                    "problems": report.problems,
                    "wall_seconds": report.wall_seconds,
                },
                indent=2,
            )
        )
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
