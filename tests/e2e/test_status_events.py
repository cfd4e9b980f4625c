"""Status events on the local stack: the real ASL's `events:putEvents` states, run by moto's
interpreter, publish to moto's EventBridge; an SQS queue subscribed by a rule on the events' source
receives them, as a ticketing system's subscription would (docs/status-events.md). The tag trigger's
TriggerRefused events: tests/e2e/test_tag_identity.py."""

from __future__ import annotations

import json
from typing import Any

from helpers import STATUS_SOURCE as SOURCE
from helpers import approval_request, decommission_input, failure
from local.client import fixtures, workflow
from local.stack.template import LOCAL_ACCOUNT, LOCAL_REGION

CANCEL_STATE_MACHINE = f"arn:aws:states:{LOCAL_REGION}:{LOCAL_ACCOUNT}:stateMachine:kms-decommission-cancel"
DETAIL_TYPE_PREFIX = "KMS Custom Key Store Decommission "
# The `subscription` fixture (tests/e2e/conftest.py): an SQS queue subscribed to every status event.


def milestones(events: list[dict[str, Any]]) -> list[str]:
    return [e["detail"]["Milestone"] for e in events]


def assert_well_formed(events: list[dict[str, Any]], execution_arn: str, state_machine_arn: str, store_id: str) -> None:
    for event in events:
        milestone = event["detail"]["Milestone"]
        assert event["source"] == SOURCE
        assert event["detail-type"].startswith(DETAIL_TYPE_PREFIX), event["detail-type"]
        assert state_machine_arn in event["resources"] and execution_arn in event["resources"], (
            f"{milestone}: resources {event['resources']}"
        )
        assert event["detail"]["Input"]["CustomKeyStoreId"] == store_id, f"{milestone}: the event names the store"


def test_a_decommission_announces_every_milestone_in_order(e2e, subscription):
    store = fixtures.make_store(e2e.kms, "xks", keys=2)
    execution = e2e.run(decommission_input(store, "execution-decommission-xks.json", TicketId="CHG-STATUS-1"))
    described, _ = e2e.finish(execution)
    assert described["status"] == "SUCCEEDED", failure(described)

    events = subscription.events_of(execution, until="StoreDeleted")
    assert milestones(events) == ["Started", "KeysScheduled", "KeysDeleted", "StoreDisconnected", "StoreDeleted"]
    assert_well_formed(events, execution, e2e.state_machine_arn, store.id)
    by_milestone = {e["detail"]["Milestone"]: e["detail"] for e in events}
    assert by_milestone["Started"]["Input"]["TicketId"] == "CHG-STATUS-1", "a ticketing system finds its ticket"
    scheduling = by_milestone["KeysScheduled"]["Scheduling"]
    assert scheduling["KeysScheduled"] == 2
    assert scheduling["LatestDeletionDate"], "the keys-scheduled event gives the deadline to cancel"
    assert by_milestone["KeysDeleted"]["Deletion"]["AllDeleted"] is True
    assert by_milestone["StoreDisconnected"]["Disconnect"]["Disconnected"] is True
    assert by_milestone["StoreDeleted"]["Report"] == json.loads(described["output"]), (
        "the final event carries the final report"
    )


def test_a_refused_decommission_announces_its_failure_with_the_error_name(e2e, subscription):
    store = fixtures.make_store(e2e.kms, "xks", keys=1)
    execution = e2e.run(
        decommission_input(store, "execution-decommission-xks.json", ConfirmCustomKeyStoreName="not-the-name")
    )
    described, _ = e2e.finish(execution)
    assert described["status"] == "FAILED"

    events = subscription.events_of(execution, until="Failed")
    assert milestones(events) == ["Started", "Failed"]
    assert_well_formed(events, execution, e2e.state_machine_arn, store.id)
    failed = events[-1]["detail"]["Failure"]
    assert failed["Error"] == "ConfirmationMismatch" == described["error"]
    assert fixtures.key_snapshot(e2e.kms, store.keys[0])["KeyState"] == "Enabled", "a refused run changes nothing"


def test_a_run_waiting_for_approval_announces_it_and_how_to_answer(e2e, subscription):
    store = fixtures.make_store(e2e.kms, "xks", keys=2)
    execution = e2e.run(decommission_input(store, "execution-decommission-xks.json", RequireApproval=True))

    events = subscription.events_of(execution, until="ApprovalRequested")

    assert milestones(events) == ["Started", "ApprovalRequested"]
    assert_well_formed(events, execution, e2e.state_machine_arn, store.id)
    requested = events[-1]["detail"]
    assert (requested["KeysInStore"], requested["PendingWindowInDays"]) == (2, 7), requested
    assert requested["ApprovalTimeoutSeconds"] == 26, "APPROVAL_TIMEOUT_DAYS of the e2e session, in seconds"
    assert "approve" in requested["HowToAnswer"] and "send-task-success" in requested["HowToAnswer"]
    # Rejected (as the CLI does it): the run ends announcing the rejection.
    token = approval_request(e2e, store.id, execution)["ApprovalToken"]
    e2e.sfn.send_task_failure(taskToken=token, error="ApprovalRejected", cause="not this quarter")
    described, _ = e2e.finish(execution)
    assert described["error"] == "ApprovalRejected", failure(described)
    events = subscription.events_of(execution, until="Failed")
    assert milestones(events) == ["Started", "ApprovalRequested", "Failed"]
    assert events[-1]["detail"]["Failure"]["Error"] == "ApprovalRejected"


def test_a_dry_run_announces_its_plan(e2e, subscription):
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=2)
    execution = e2e.run(workflow.execution_input("execution-dry-run.json", CustomKeyStoreId=store.id))
    described, _ = e2e.finish(execution)
    assert described["status"] == "SUCCEEDED", failure(described)

    events = subscription.events_of(execution, until="DryRunCompleted")
    assert milestones(events) == ["Started", "DryRunCompleted"]
    assert events[-1]["detail"]["Report"] == json.loads(described["output"])


def test_a_cancel_during_the_wait_announces_cancelled(e2e, subscription):
    # 30 emulated days of 9 s: the keys stay pending deletion for minutes, long enough to cancel.
    e2e.admin.configure(day_seconds=9.0)
    store = fixtures.make_store(e2e.kms, "xks", keys=2)
    execution = e2e.run(decommission_input(store, "execution-decommission-xks.json", PendingWindowInDays=30))
    subscription.events_of(execution, until="KeysScheduled")

    cancel_input = workflow.execution_input(
        "cancel-execution.json", CustomKeyStoreId=store.id, DecommissionExecutionArn=execution
    )
    cancel = workflow.start_execution(e2e.sfn, CANCEL_STATE_MACHINE, cancel_input)
    described = workflow.wait_for_end(e2e.sfn, cancel, timeout=180)
    assert described["status"] == "SUCCEEDED", failure(described)

    events = subscription.events_of(cancel, until="Cancelled")
    assert milestones(events) == ["Cancelled"]
    assert_well_formed(events, cancel, CANCEL_STATE_MACHINE, store.id)
    assert events[0]["detail"]["Report"] == json.loads(described["output"])
    assert e2e.sfn.describe_execution(executionArn=execution)["status"] == "ABORTED"
    assert milestones(subscription.events_of(execution, until="KeysScheduled")) == ["Started", "KeysScheduled"], (
        "a stopped decommission says nothing more"
    )
