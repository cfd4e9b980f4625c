"""KMS faults are survived: KMSInternalException on several calls of several steps, and bursts of
throttling, end in a successful decommission; the history shows the retries."""

from __future__ import annotations

from helpers import calls_of, decommission_input, failure
from local.client import fixtures, workflow


def test_internal_errors_in_several_steps_are_retried_and_the_run_succeeds(e2e):
    store = fixtures.make_store(e2e.kms, "xks", keys=3)
    # Each burst outlasts the SDK's own attempts (3 per call; the 3 keys are scheduled
    # concurrently), so the state machine's Retry must act.
    bursts = {"ListKeys": 6, "ScheduleKeyDeletion": 3 * 3 + 1, "DeleteCustomKeyStore": 6}
    for operation, count in bursts.items():
        e2e.admin.fail_next(operation, "KMSInternalException", count)

    execution = e2e.run(decommission_input(store, "execution-decommission-xks.json"))
    described, events = e2e.finish(execution)

    assert described["status"] == "SUCCEEDED", failure(described)
    failures = workflow.task_failures(events)
    failed_states = {state for state, error in failures if error == "KMSInternalException"}
    assert {"PlanDecommission", "ScheduleKeyDeletion", "DeleteStore"} <= failed_states, failures
    assert {error for _, error in failures} == {"KMSInternalException"}
    calls = e2e.admin.calls()
    for operation, count in bursts.items():
        assert len(calls_of(calls, operation, "KMSInternalException")) == count, (
            f"{operation}: every injected fault was hit"
        )
    assert not fixtures.store_exists(e2e.kms, store.id)


def test_throttling_bursts_never_fail_the_execution(e2e):
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=5)
    bursts = {
        "DescribeKey": 8,
        "ScheduleKeyDeletion": 8,
        "TagResource": 4,
        "DescribeCustomKeyStores": 4,
        "DisconnectCustomKeyStore": 4,
    }
    for operation, count in bursts.items():
        e2e.admin.fail_next(operation, "ThrottlingException", count)

    execution = e2e.run(decommission_input(store, "execution-decommission-cloudhsm.json", PendingWindowInDays=7))
    described, events = e2e.finish(execution)

    assert described["status"] == "SUCCEEDED", failure(described)
    calls = e2e.admin.calls()
    throttled = sum(len(calls_of(calls, operation, "ThrottlingException")) for operation in bursts)
    assert throttled >= sum(bursts.values()), "the bursts really hit the workflow"
    assert not fixtures.store_exists(e2e.kms, store.id)
    assert all(error in ("ThrottlingException",) for _, error in workflow.task_failures(events))
