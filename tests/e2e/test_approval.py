"""The approval gate on the local stack (src/steps/approval.rs, the ASL's IsApprovalRequired ..
RecordApproval, the webhook's `approve` / `reject`): after its plan, a real run that needs approval
waits in WaitForApproval (a `.waitForTaskToken` task run by moto's interpreter) with its task token
in the run ledger, until a second person answers through the signed webhook or with
SendTaskSuccess / SendTaskFailure, or until APPROVAL_TIMEOUT_DAYS (26 s in the e2e session).

What an operator relies on: nothing changes in KMS before someone other than the requester has
approved; a rejection, a requester approving their own run, a malformed answer or no answer at all
ends the run having changed nothing; the ledger records who approved.

The session turns APPROVAL_REQUIRED_FOR_CONSOLE_AND_WEBHOOK off (tests/e2e/conftest.py), so the
runs here ask for approval with `RequireApproval`, or are started by the tag trigger (`Trigger: tag`).
Who tagged, and approvals of tag-started runs through the webhook: tests/e2e/test_tag_identity.py."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from helpers import (
    ALICE,
    APPROVAL_STATE,
    CONFIRM_TAG_KEY,
    TRIGGER_TAG_KEY,
    approval_request,
    assert_waiting_for_approval,
    decommission_input,
    emulator_keys,
    failure,
    http_answer,
    invoke,
    key_records,
    kms_state,
    mutating_calls,
    store_ledger,
    tag_as,
    trigger_event,
    wait_for_state,
    webhook_request,
)
from local.client import fixtures, workflow

WEBHOOK = "ticket-webhook"
TAG_TRIGGER = "tag-trigger"
CLOUDHSM_INPUT = "execution-decommission-cloudhsm.json"  # RequestedBy alice@example.com
XKS_INPUT = "execution-decommission-xks.json"  # RequestedBy bob@example.com
REQUESTER = "alice@example.com"  # RequestedBy of events/triggers/webhook-start.json too
APPROVER = "carol@example.com"
# A 30-day window at 3 s a day: 90 s, so an approved run sits in WaitForDeletionDate (WaitRequired
# needs the wait to end over 60 s ahead) for the rest of the test.
WAITING_DAY_SECONDS = 3.0
# How long a scenario watches a waiting run for a change that must not come.
HOLD_SECONDS = 2.0
# APPROVAL_TIMEOUT_DAYS 0.0003 of the e2e session, in whole seconds (rounded up).
APPROVAL_TIMEOUT_SECONDS = 26
# States that change KMS (or lead straight to a change): a run that was not approved enters none.
CHANGING_STATES = ("RecordApproval", "EnsureStoreConnected", "ScheduleKeyDeletion", "DisconnectStore", "DeleteStore")


def new_ticket() -> str:
    # moto keeps executions for the session and names derive from tickets: one ticket per run.
    return f"CHG-{uuid.uuid4().hex[:10]}"


def webhook(trigger_stack: Any, sample: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Send a signed webhook request carrying `body`; (status code, JSON answer)."""
    request = webhook_request(sample, body, trigger_stack.webhook_secret)
    return http_answer(invoke(trigger_stack.lambda_client, WEBHOOK, request))


def start_by_webhook(trigger_stack: Any, store: fixtures.Store, ticket: str, **overrides: Any) -> str:
    """The signed `start` of events/triggers/webhook-start.json (requested by alice@example.com)
    for `store`, asking for approval; the execution's ARN."""
    body = json.loads(trigger_event("webhook-start.json")["body"])
    body.update(
        {
            "CustomKeyStoreId": store.id,
            "ConfirmCustomKeyStoreName": store.name,
            "TicketId": ticket,
            "RequireApproval": True,
            **overrides,
        }
    )
    status, started = webhook(trigger_stack, "webhook-start.json", body)
    assert (status, started.get("Result")) == (202, "Started"), started
    return started["ExecutionArn"]


def approve(trigger_stack: Any, ticket: str, by: str) -> tuple[int, dict[str, Any]]:
    return webhook(trigger_stack, "webhook-status.json", {"Action": "approve", "TicketId": ticket, "ApprovedBy": by})


def reject(trigger_stack: Any, ticket: str, by: str, reason: str) -> tuple[int, dict[str, Any]]:
    body = {"Action": "reject", "TicketId": ticket, "RejectedBy": by, "Reason": reason}
    return webhook(trigger_stack, "webhook-status.json", body)


def key_states(e2e: Any, key_ids: list[str]) -> list[str]:
    return [e2e.kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] for key in key_ids]


def assert_requested(run: dict[str, Any], store: fixtures.Store, requester: str) -> None:
    """The ledger's run record of a run waiting for approval: the token, and a summary naming the
    store and the requester."""
    assert (run["ApprovalState"], run["ApprovalRequired"]) == ("Requested", "true"), run
    assert run["ApprovalToken"].strip(), run
    assert run.get("ApprovalRequestedAt"), run
    summary = run["ApprovalSummary"]
    assert store.id in summary and f"requested by {requester}" in summary, summary
    assert "ApprovedBy" not in run, run


def assert_changed_nothing(e2e: Any, execution: str, events: list[dict[str, Any]], before: dict[str, Any]) -> None:
    """The run entered no state that changes KMS, made no mutating call (the call log was cleared
    before it started) and KMS is exactly as before; the ledger holds no approval and no key."""
    entered = workflow.states_entered(events)
    assert not [state for state in CHANGING_STATES if state in entered], entered
    assert mutating_calls(e2e.admin.calls()) == [], "the run made no change in KMS"
    assert kms_state(e2e) == before
    assert key_records(e2e, execution) == {}, "the ledger records no key"


# --- Through the webhook ----------------------------------------------------------------------


def test_webhook_run_waits_for_approval_and_schedules_the_keys_once_another_person_approves(trigger_stack):
    e2e = trigger_stack.e2e
    e2e.admin.configure(day_seconds=WAITING_DAY_SECONDS)
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=3, disabled=1)
    ticket = new_ticket()
    e2e.admin.clear_calls()

    execution = start_by_webhook(trigger_stack, store, ticket, PendingWindowInDays=30)

    run = approval_request(e2e, store.id, execution)
    assert_requested(run, store, REQUESTER)
    assert f"ticket {ticket}" in run["ApprovalSummary"] and "3 key(s)" in run["ApprovalSummary"], run
    assert_waiting_for_approval(e2e, execution, HOLD_SECONDS)
    assert key_states(e2e, store.keys) == ["Enabled", "Enabled", "Disabled"]
    status, answer = webhook(trigger_stack, "webhook-status.json", {"Action": "status", "TicketId": ticket})
    assert (status, answer["Status"], answer["Phase"]) == (200, "RUNNING", APPROVAL_STATE), answer

    status, answer = approve(trigger_stack, ticket, APPROVER)

    assert status == 200, answer
    assert (answer["Result"], answer["ExecutionArn"], answer["By"]) == ("Approved", execution, APPROVER), answer
    events = wait_for_state(e2e, execution, "WaitForDeletionDate")
    entered = workflow.states_entered(events)
    assert entered.index(APPROVAL_STATE) < entered.index("RecordApproval") < entered.index("ScheduleKeyDeletion")
    assert key_states(e2e, store.keys) == ["PendingDeletion"] * 3
    run = store_ledger(e2e, store.id)[1][execution]
    approved = (run["ApprovalState"], run["ApprovedBy"], run["ApprovedVia"])
    assert approved == ("Approved", APPROVER, "webhook"), run
    assert run.get("ApprovedAt") and "ApprovalToken" not in run, "the token is gone once used"
    assert set(key_records(e2e, execution)) == set(store.keys)
    # The ticketing system sends the approval again: the run no longer waits.
    status, again = approve(trigger_stack, ticket, APPROVER)
    assert (status, again["Error"]) == (409, "NotWaitingForApproval"), again


def test_requester_approving_their_own_run_gets_409_and_the_run_waits_on_until_another_approves(trigger_stack):
    e2e = trigger_stack.e2e
    store = fixtures.make_store(e2e.kms, "xks", keys=2)
    ticket = new_ticket()
    e2e.admin.clear_calls()
    execution = start_by_webhook(trigger_stack, store, ticket, PendingWindowInDays=7)
    run = approval_request(e2e, store.id, execution)

    # The requester, spelt otherwise: the same person (case and surrounding blanks ignored).
    status, answer = approve(trigger_stack, ticket, " Alice@Example.COM")
    assert (status, answer["Error"]) == (409, "ApprovalBySameRequester"), answer
    status, answer = reject(trigger_stack, ticket, REQUESTER, "changed my mind")
    assert (status, answer["Error"]) == (409, "ApprovalBySameRequester"), "nor can the requester reject it"

    assert_waiting_for_approval(e2e, execution, HOLD_SECONDS)
    waiting = store_ledger(e2e, store.id)[1][execution]
    assert (waiting["ApprovalState"], waiting["ApprovalToken"]) == ("Requested", run["ApprovalToken"]), waiting
    assert "ApprovedBy" not in waiting, waiting

    status, answer = approve(trigger_stack, ticket, APPROVER)
    assert (status, answer["Result"]) == (200, "Approved"), answer
    described, _ = e2e.finish(execution)

    assert described["status"] == "SUCCEEDED", failure(described)
    assert not fixtures.store_exists(e2e.kms, store.id)
    run = store_ledger(e2e, store.id)[1][execution]
    assert (run["ApprovedBy"], run["ApprovedVia"], run["Outcome"]) == (APPROVER, "webhook", "Succeeded"), run


def test_webhook_rejection_ends_the_run_approval_rejected_having_changed_nothing(trigger_stack):
    e2e = trigger_stack.e2e
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=2, disabled=1)
    ticket = new_ticket()
    before = kms_state(e2e)
    e2e.admin.clear_calls()
    execution = start_by_webhook(trigger_stack, store, ticket)
    approval_request(e2e, store.id, execution)

    status, answer = reject(trigger_stack, ticket, APPROVER, "the change board did not approve CHG")

    assert status == 200, answer
    assert (answer["Result"], answer["ExecutionArn"], answer["By"]) == ("Rejected", execution, APPROVER), answer
    described, events = e2e.finish(execution)
    assert (described["status"], described.get("error")) == ("FAILED", "ApprovalRejected"), failure(described)
    assert_changed_nothing(e2e, execution, events, before)
    run = store_ledger(e2e, store.id)[1][execution]
    assert run.get("ApprovalState") != "Approved" and "ApprovedBy" not in run, run
    # An approval arriving after the rejection changes nothing either.
    status, late = approve(trigger_stack, ticket, "dave@example.com")
    assert (status, late["Error"]) == (409, "NotWaitingForApproval"), late
    assert mutating_calls(e2e.admin.calls()) == []


# --- No answer ----------------------------------------------------------------------------------


def test_unanswered_approval_ends_the_run_approval_timed_out_having_changed_nothing(e2e):
    store = fixtures.make_store(e2e.kms, "xks", keys=2)
    before = kms_state(e2e)
    e2e.admin.clear_calls()
    execution = e2e.run(decommission_input(store, XKS_INPUT, RequireApproval=True))
    run = approval_request(e2e, store.id, execution)
    asked = time.monotonic()
    assert_requested(run, store, "bob@example.com")
    plan = workflow.state_outputs(workflow.history(e2e.sfn, execution), "PlanDecommission")[-1]
    assert plan["Approval"] == {
        "Required": True,
        "TimeoutSeconds": APPROVAL_TIMEOUT_SECONDS,
        "Approved": False,
        "ApprovedBy": None,
        "ApprovedAt": None,
    }, plan["Approval"]

    described, events = e2e.finish(execution, timeout=APPROVAL_TIMEOUT_SECONDS + 60)

    waited = time.monotonic() - asked
    assert (described["status"], described.get("error")) == ("FAILED", "ApprovalTimedOut"), failure(described)
    assert "nothing was changed" in described.get("cause", ""), failure(described)
    assert APPROVAL_TIMEOUT_SECONDS - 3 <= waited <= APPROVAL_TIMEOUT_SECONDS + 30, f"waited {waited:.1f} s"
    assert "ApprovalTimedOut" in workflow.states_entered(events)
    assert_changed_nothing(e2e, execution, events, before)


# --- With the AWS CLI (SendTaskSuccess with the token from the ledger) --------------------------

REFUSED_ANSWERS = {
    # case: (the answer given with SendTaskSuccess, the error the run ends with)
    "requester": ({"ApprovedBy": "bob@example.com"}, "ApprovalBySameRequester"),
    "requester spelt otherwise": ({"ApprovedBy": "BOB@example.com "}, "ApprovalBySameRequester"),
    "no approver": ({"Comment": "looks fine"}, "InvalidApproval"),
    "blank approver": ({"ApprovedBy": "  "}, "InvalidApproval"),
    "unknown field": ({"ApprovedBy": APPROVER, "Token": "x"}, "InvalidApproval"),
    "not an object": ("approved", "InvalidApproval"),
}


@pytest.mark.parametrize("case", list(REFUSED_ANSWERS))
def test_refused_cli_answer_ends_the_run_having_changed_nothing(e2e, case):
    answer, error = REFUSED_ANSWERS[case]
    store = fixtures.make_store(e2e.kms, "xks", keys=2)
    before = kms_state(e2e)
    e2e.admin.clear_calls()
    execution = e2e.run(decommission_input(store, XKS_INPUT, RequireApproval=True))
    run = approval_request(e2e, store.id, execution)

    e2e.sfn.send_task_success(taskToken=run["ApprovalToken"], output=json.dumps(answer))

    described, events = e2e.finish(execution)
    assert (described["status"], described.get("error")) == ("FAILED", error), failure(described)
    assert ("RecordApproval", error) in workflow.task_failures(events), "record-approval refused the answer"
    entered = workflow.states_entered(events)
    assert "EnsureStoreConnected" not in entered and "ScheduleKeyDeletion" not in entered, entered
    assert mutating_calls(e2e.admin.calls()) == [], "the run made no change in KMS"
    assert kms_state(e2e) == before
    after = store_ledger(e2e, store.id)[1][execution]
    assert after["ApprovalState"] == "Requested" and "ApprovedBy" not in after, after
    assert key_records(e2e, execution) == {}


def test_cli_approval_by_another_person_lets_the_run_decommission_the_store(e2e):
    store = fixtures.make_store(e2e.kms, "xks", keys=2)
    e2e.admin.clear_calls()
    execution = e2e.run(decommission_input(store, XKS_INPUT, RequireApproval=True))
    run = approval_request(e2e, store.id, execution)
    assert mutating_calls(e2e.admin.calls()) == []

    e2e.sfn.send_task_success(taskToken=run["ApprovalToken"], output=json.dumps({"ApprovedBy": APPROVER}))

    described, events = e2e.finish(execution)
    assert described["status"] == "SUCCEEDED", failure(described)
    assert "RecordApproval" in workflow.states_entered(events)
    assert not fixtures.store_exists(e2e.kms, store.id)
    assert not any(fixtures.key_exists(e2e.kms, key) for key in store.keys)
    run = store_ledger(e2e, store.id)[1][execution]
    recorded = (run["ApprovalState"], run["ApprovedBy"], run["ApprovedVia"], run["Outcome"])
    assert recorded == ("Approved", APPROVER, "SendTaskSuccess", "Succeeded"), run


def test_cli_rejection_ends_the_run_approval_rejected(e2e):
    store = fixtures.make_store(e2e.kms, "xks", keys=1)
    before = kms_state(e2e)
    e2e.admin.clear_calls()
    execution = e2e.run(decommission_input(store, XKS_INPUT, RequireApproval=True))
    run = approval_request(e2e, store.id, execution)

    e2e.sfn.send_task_failure(taskToken=run["ApprovalToken"], error="ApprovalRejected", cause="not this quarter")

    described, events = e2e.finish(execution)
    assert (described["status"], described.get("error")) == ("FAILED", "ApprovalRejected"), failure(described)
    assert_changed_nothing(e2e, execution, events, before)


# --- Runs that never wait, and tag-started runs -------------------------------------------------


def test_dry_run_asking_for_approval_never_waits(e2e):
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=2)
    before = kms_state(e2e)
    e2e.admin.clear_calls()

    execution = e2e.run(
        workflow.execution_input("execution-dry-run.json", CustomKeyStoreId=store.id, RequireApproval=True)
    )

    described, events = e2e.finish(execution)
    assert described["status"] == "SUCCEEDED", failure(described)
    entered = workflow.states_entered(events)
    assert "DryRunComplete" in entered and "IsApprovalRequired" not in entered, entered
    assert "Approval" not in workflow.state_outputs(events, "PlanDecommission")[-1], "a dry run needs no approval"
    assert mutating_calls(e2e.admin.calls()) == [] and kms_state(e2e) == before
    assert store_ledger(e2e, store.id) == (None, {}), "a dry run writes no ledger record"


def test_tag_started_dry_run_never_waits(trigger_stack):
    e2e = trigger_stack.e2e
    store = fixtures.make_store(e2e.kms, "xks", keys=2)
    # The trigger tag alone, by a principal the session allows (tests/e2e/conftest.py).
    event = tag_as(e2e, ALICE, store.keys[0], {TRIGGER_TAG_KEY: store.id})
    before = kms_state(e2e)
    e2e.admin.clear_calls()

    outcome = invoke(trigger_stack.lambda_client, TAG_TRIGGER, event)

    assert (outcome["Outcome"], outcome["DryRun"]) == ("Started", True), outcome
    described, events = e2e.finish(outcome["ExecutionArn"])
    assert described["status"] == "SUCCEEDED", failure(described)
    started_with = json.loads(described["input"])
    assert (started_with["Trigger"], started_with["RequestedBy"]) == ("tag", ALICE.arn), started_with
    entered = workflow.states_entered(events)
    assert "DryRunComplete" in entered and APPROVAL_STATE not in entered, entered
    assert mutating_calls(e2e.admin.calls()) == [] and kms_state(e2e) == before


def test_tag_started_decommission_waits_for_approval_even_where_console_runs_do_not(trigger_stack):
    # The session does not make console runs wait: only `Trigger: tag`, which the tag trigger
    # sets, makes this one. The key is tagged with the store's id and its name in one call by a
    # principal the session allows (TRIGGER_MODE decommission, tests/e2e/conftest.py).
    e2e = trigger_stack.e2e
    # The default 30-day window at 3 s a day: the approved run then sits in WaitForDeletionDate.
    e2e.admin.configure(day_seconds=WAITING_DAY_SECONDS)
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=2, disabled=1)
    event = tag_as(e2e, ALICE, store.keys[0], {TRIGGER_TAG_KEY: store.id, CONFIRM_TAG_KEY: store.name})
    e2e.admin.clear_calls()

    outcome = invoke(trigger_stack.lambda_client, TAG_TRIGGER, event)

    assert (outcome["Outcome"], outcome["DryRun"]) == ("Started", False), outcome
    execution = outcome["ExecutionArn"]
    run = approval_request(e2e, store.id, execution)
    assert_requested(run, store, ALICE.arn)
    assert_waiting_for_approval(e2e, execution, HOLD_SECONDS)
    assert emulator_keys(e2e, store.keys)[store.keys[0]]["state"] == "Enabled"

    e2e.sfn.send_task_success(taskToken=run["ApprovalToken"], output=json.dumps({"ApprovedBy": APPROVER}))

    wait_for_state(e2e, execution, "WaitForDeletionDate")
    assert key_states(e2e, store.keys) == ["PendingDeletion"] * 2
    assert store_ledger(e2e, store.id)[1][execution]["ApprovedBy"] == APPROVER
