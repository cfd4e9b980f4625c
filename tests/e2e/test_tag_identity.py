"""Who tagged, on the local stack (docs/triggers.md "Who tagged", docs/approval.md): the session's tag
trigger runs in decommission mode and allows the role KeyAdmin (tests/e2e/conftest.py). A person
tags a key of the store with the KMS API, signing as a principal the emulator knows; the emulator
records the call in CloudTrail, and the test hands the trigger that record as EventBridge delivers
it ("AWS API Call via CloudTrail", helpers.tag_as): who tagged is the emulator's, never the test's.

What an operator relies on: only an allowed principal can start a run by tag, and only by setting
the trigger tag and the store's name in one call; the run names the tagger as `RequestedBy`, waits
for someone else's approval before its first change (the tagger cannot approve it, under their ARN
or their session name), ends having changed nothing when rejected or left unanswered; a tag by
anyone else starts nothing, asks KMS nothing, and is reported as a TriggerRefused status event."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from helpers import (
    ALICE,
    APPROVAL_STATE,
    BOB,
    CONFIRM_TAG_KEY,
    LOOK_ALIKE,
    MALLORY,
    TRIGGER_REFUSED_DETAIL_TYPE,
    TRIGGER_TAG_KEY,
    Principal,
    approval_request,
    assert_waiting_for_approval,
    execution_count,
    executions_of_store,
    failure,
    http_answer,
    invoke,
    key_records,
    kms_state,
    mutating_calls,
    store_ledger,
    tag_as,
    wait_for_state,
    webhook_request,
)
from local.client import fixtures, workflow

TAG_TRIGGER = "tag-trigger"
WEBHOOK = "ticket-webhook"
# The default 30-day window at 3 s a day: 90 s, so an approved run sits in WaitForDeletionDate
# (WaitRequired needs the wait to end over 60 s ahead) for the rest of the test, no step in flight.
WAITING_DAY_SECONDS = 3.0
# How long a scenario watches a waiting run for a change that must not come.
HOLD_SECONDS = 2.0
# APPROVAL_TIMEOUT_DAYS 0.0003 of the e2e session, in whole seconds (rounded up).
APPROVAL_TIMEOUT_SECONDS = 26
# States that change KMS (or lead straight to a change): a run that was not approved enters none.
CHANGING_STATES = ("RecordApproval", "EnsureStoreConnected", "ScheduleKeyDeletion", "DisconnectStore", "DeleteStore")


def confirmed_tags(store: fixtures.Store) -> dict[str, str]:
    """The tags of one TagResource call asking for the decommission of `store`."""
    return {TRIGGER_TAG_KEY: store.id, CONFIRM_TAG_KEY: store.name}


def tag_input(store: fixtures.Store, tagger: Principal) -> dict[str, Any]:
    """The execution input of a decommission `tagger` asked for with confirmed_tags."""
    return {
        "CustomKeyStoreId": store.id,
        "DryRun": False,
        "RequestedBy": tagger.arn,
        "Reason": f"Tag {TRIGGER_TAG_KEY}={store.id} confirmed by tag {CONFIRM_TAG_KEY}",
        "Trigger": "tag",
        "ConfirmCustomKeyStoreName": store.name,
    }


def answer(trigger_stack: Any, store: fixtures.Store, approve: bool, by: str) -> tuple[int, dict[str, Any]]:
    """The signed webhook `approve` (or `reject`) of the store's waiting run, named by its store (a
    tag-started run has no ticket); (status code, JSON answer)."""
    if approve:
        body = {"Action": "approve", "CustomKeyStoreId": store.id, "ApprovedBy": by}
    else:
        body = {"Action": "reject", "CustomKeyStoreId": store.id, "RejectedBy": by, "Reason": "not this quarter"}
    request = webhook_request("webhook-status.json", body, trigger_stack.webhook_secret)
    return http_answer(invoke(trigger_stack.lambda_client, WEBHOOK, request))


def key_states(e2e: Any, key_ids: list[str]) -> list[str]:
    return [e2e.kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] for key in key_ids]


def start_by_tag(trigger_stack: Any, store: fixtures.Store, tagger: Principal) -> tuple[str, dict[str, Any]]:
    """`tagger` tags a key of `store` with confirmed_tags; the trigger, handed the call's event,
    starts the decommission, which waits for approval. The call log is cleared after the tag, so
    it shows only what the trigger and the run do. (The execution's ARN, KMS as the tag left it.)"""
    e2e = trigger_stack.e2e
    event = tag_as(e2e, tagger, store.keys[0], confirmed_tags(store))
    tagged = kms_state(e2e)
    e2e.admin.clear_calls()
    outcome = invoke(trigger_stack.lambda_client, TAG_TRIGGER, event)
    assert (outcome["Outcome"], outcome["DryRun"]) == ("Started", False), outcome
    execution = outcome["ExecutionArn"]
    run = approval_request(e2e, store.id, execution)
    assert (run["ApprovalState"], run["RequestedBy"]) == ("Requested", tagger.arn), run
    assert f"requested by {tagger.arn}" in run["ApprovalSummary"], run
    return execution, tagged


def assert_changed_nothing(
    e2e: Any, store: fixtures.Store, execution: str, events: list[dict[str, Any]], tagged: dict[str, Any]
) -> None:
    """The run entered no state that changes KMS, made no mutating call (the log was cleared after
    the tag) and KMS is as the tag left it; the ledger holds no approval and no key."""
    entered = workflow.states_entered(events)
    assert not [state for state in CHANGING_STATES if state in entered], entered
    assert mutating_calls(e2e.admin.calls()) == [], "the run made no change in KMS"
    assert kms_state(e2e) == tagged
    run = store_ledger(e2e, store.id)[1][execution]
    assert run.get("ApprovalState") != "Approved" and "ApprovedBy" not in run, run
    assert key_records(e2e, execution) == {}, "the ledger records no key"


# --- An allowed principal, the store's name in the same call ----------------------------------


def test_allowed_tagger_starts_a_decommission_that_waits_until_another_person_approves(trigger_stack):
    e2e = trigger_stack.e2e
    e2e.admin.configure(day_seconds=WAITING_DAY_SECONDS)
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=3, disabled=1)

    execution, _ = start_by_tag(trigger_stack, store, ALICE)

    described = e2e.sfn.describe_execution(executionArn=execution)
    assert json.loads(described["input"]) == tag_input(store, ALICE), "RequestedBy is the tagger's ARN"
    assert store_ledger(e2e, store.id)[1][execution]["RequestedBy"] == ALICE.arn
    assert_waiting_for_approval(e2e, execution, HOLD_SECONDS)
    assert key_states(e2e, store.keys) == ["Enabled", "Enabled", "Disabled"]

    status, approved = answer(trigger_stack, store, approve=True, by=BOB.name)

    assert status == 200, approved
    summary = (approved["Result"], approved["ExecutionArn"], approved["By"], approved["CustomKeyStoreId"])
    assert summary == ("Approved", execution, BOB.name, store.id), approved
    events = wait_for_state(e2e, execution, "WaitForDeletionDate")
    entered = workflow.states_entered(events)
    assert entered.index(APPROVAL_STATE) < entered.index("RecordApproval") < entered.index("ScheduleKeyDeletion")
    assert key_states(e2e, store.keys) == ["PendingDeletion"] * 3
    run = store_ledger(e2e, store.id)[1][execution]
    recorded = (run["RequestedBy"], run["ApprovalState"], run["ApprovedBy"], run["ApprovedVia"])
    assert recorded == (ALICE.arn, "Approved", BOB.name, "webhook"), run
    assert set(key_records(e2e, execution)) == set(store.keys)


def test_webhook_rejection_of_a_tag_started_run_ends_it_having_changed_nothing(trigger_stack):
    e2e = trigger_stack.e2e
    store = fixtures.make_store(e2e.kms, "xks", keys=2)
    execution, tagged = start_by_tag(trigger_stack, store, ALICE)

    status, rejected = answer(trigger_stack, store, approve=False, by=BOB.name)

    assert status == 200, rejected
    assert (rejected["Result"], rejected["ExecutionArn"], rejected["By"]) == ("Rejected", execution, BOB.name)
    described, events = e2e.finish(execution)
    assert (described["status"], described.get("error")) == ("FAILED", "ApprovalRejected"), failure(described)
    assert_changed_nothing(e2e, store, execution, events, tagged)


def test_tagger_cannot_approve_their_own_run_under_their_session_name_or_arn(trigger_stack):
    e2e = trigger_stack.e2e
    store = fixtures.make_store(e2e.kms, "xks", keys=2)
    execution, _ = start_by_tag(trigger_stack, store, ALICE)
    token = store_ledger(e2e, store.id)[1][execution]["ApprovalToken"]

    # The ticketing system names people by their session name; the ARN itself is the same person.
    for by in (ALICE.name, "Alice@Example.com ", ALICE.arn):
        status, refused = answer(trigger_stack, store, approve=True, by=by)
        assert (status, refused["Error"]) == (409, "ApprovalBySameRequester"), (by, refused)
    status, refused = answer(trigger_stack, store, approve=False, by=ALICE.name)
    assert (status, refused["Error"]) == (409, "ApprovalBySameRequester"), "nor can the tagger reject it"

    assert_waiting_for_approval(e2e, execution, HOLD_SECONDS)
    run = store_ledger(e2e, store.id)[1][execution]
    assert (run["ApprovalState"], run["ApprovalToken"]) == ("Requested", token), run
    assert "ApprovedBy" not in run, run


def test_unanswered_tag_started_run_ends_approval_timed_out_having_changed_nothing(trigger_stack):
    e2e = trigger_stack.e2e
    store = fixtures.make_store(e2e.kms, "xks", keys=1)
    execution, tagged = start_by_tag(trigger_stack, store, BOB)

    described, events = e2e.finish(execution, timeout=APPROVAL_TIMEOUT_SECONDS + 60)

    assert (described["status"], described.get("error")) == ("FAILED", "ApprovalTimedOut"), failure(described)
    assert "ApprovalTimedOut" in workflow.states_entered(events)
    assert_changed_nothing(e2e, store, execution, events, tagged)


# --- Anyone else -------------------------------------------------------------------------------


@pytest.mark.parametrize("tagger", [MALLORY, LOOK_ALIKE], ids=["IAM user not allowed", "look-alike role"])
def test_tag_by_a_principal_not_allowed_starts_nothing_asks_kms_nothing_and_is_reported(
    trigger_stack, subscription, tagger
):
    e2e = trigger_stack.e2e
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=2)
    # Both tags in one call, as an allowed principal would ask for a decommission.
    event = tag_as(e2e, tagger, store.keys[0], confirmed_tags(store))
    machines = [e2e.state_machine_arn, trigger_stack.cancel_state_machine_arn]
    executions_before = execution_count(e2e.sfn, machines)
    before = kms_state(e2e)
    e2e.admin.clear_calls()

    outcome = invoke(trigger_stack.lambda_client, TAG_TRIGGER, event)

    assert (outcome["Outcome"], outcome["Reason"]) == ("Refused", "TaggerNotAllowed"), outcome
    assert tagger.arn in outcome["Message"], outcome
    assert e2e.admin.calls() == [], "the trigger asked KMS nothing"
    assert execution_count(e2e.sfn, machines) == executions_before, "no execution started"
    assert executions_of_store(e2e.sfn, e2e.state_machine_arn, store.id) == []
    assert store_ledger(e2e, store.id) == (None, {}), "nothing in the ledger"
    assert kms_state(e2e) == before
    # The refusal, as a subscriber to the status events receives it.
    (refusal,) = subscription.trigger_refusals(event["id"])
    assert refusal["detail-type"] == TRIGGER_REFUSED_DETAIL_TYPE, refusal
    detail = refusal["detail"]
    assert detail == {
        "Milestone": "TriggerRefused",
        "Trigger": "tag",
        "Error": "TaggerNotAllowed",
        "Message": outcome["Message"],
        "Resource": event["detail"]["resources"][0]["ARN"],
        "CustomKeyStoreId": store.id,
        "EventId": event["id"],
        "EventSource": "aws.kms",
        "DetailType": "AWS API Call via CloudTrail",
        "TaggedBy": tagger.arn,
        "SourceIPAddress": event["detail"]["sourceIPAddress"],
    }, detail
    assert detail["SourceIPAddress"], "CloudTrail's record says where the call came from"


def test_event_naming_an_allowed_principal_counts_only_as_cloudtrail_recorded_it(trigger_stack, subscription):
    """Whoever can invoke the trigger can hand it any event: one saying an allowed principal
    tagged, when Mallory did. The trigger looks up CloudTrail's own record of the event's id: it
    names Mallory, so nothing starts; an event id CloudTrail never recorded is refused once the
    lookup window (5 s on the local stack) is over."""
    e2e = trigger_stack.e2e
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=2)
    forged = tag_as(e2e, MALLORY, store.keys[0], confirmed_tags(store))
    # Alice's identity as CloudTrail records it, from a call of hers that asks for nothing.
    alice = tag_as(e2e, ALICE, store.keys[1], {"Owner": "alice"})["detail"]["userIdentity"]
    forged["detail"]["userIdentity"] = alice
    unknown = json.loads(json.dumps(forged))
    unknown["id"] = str(uuid.uuid4())
    unknown["detail"]["eventID"] = str(uuid.uuid4())
    machines = [e2e.state_machine_arn, trigger_stack.cancel_state_machine_arn]
    executions_before = execution_count(e2e.sfn, machines)
    before = kms_state(e2e)
    e2e.admin.clear_calls()

    outcome = invoke(trigger_stack.lambda_client, TAG_TRIGGER, forged)
    assert (outcome["Outcome"], outcome["Reason"]) == ("Refused", "TagCallDiffersFromCloudTrail"), outcome
    assert "(caller)" in outcome["Message"], outcome
    outcome = invoke(trigger_stack.lambda_client, TAG_TRIGGER, unknown)
    assert (outcome["Outcome"], outcome["Reason"]) == ("Refused", "TagCallNotInCloudTrail"), outcome

    calls = e2e.admin.calls()
    assert {c["operation"] for c in calls} == {"LookupEvents"}, "the trigger only read CloudTrail"
    assert len(calls) >= 3, "it looked for the unknown event more than once"
    assert execution_count(e2e.sfn, machines) == executions_before, "no execution started"
    assert store_ledger(e2e, store.id) == (None, {}), "nothing in the ledger"
    assert kms_state(e2e) == before
    for event, error in ((forged, "TagCallDiffersFromCloudTrail"), (unknown, "TagCallNotInCloudTrail")):
        (refusal,) = subscription.trigger_refusals(event["id"])
        assert (refusal["detail"]["Error"], refusal["detail"]["CustomKeyStoreId"]) == (error, store.id), refusal


# --- The trigger tag alone ---------------------------------------------------------------------


def test_trigger_tag_alone_by_an_allowed_principal_starts_a_dry_run_naming_the_tagger(trigger_stack):
    e2e = trigger_stack.e2e
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=2)
    event = tag_as(e2e, BOB, store.keys[1], {TRIGGER_TAG_KEY: store.id})
    before = kms_state(e2e)
    e2e.admin.clear_calls()

    outcome = invoke(trigger_stack.lambda_client, TAG_TRIGGER, event)

    assert (outcome["Outcome"], outcome["DryRun"]) == ("Started", True), outcome
    described, events = e2e.finish(outcome["ExecutionArn"])
    assert described["status"] == "SUCCEEDED", failure(described)
    started_with = json.loads(described["input"])
    assert (started_with["DryRun"], started_with["RequestedBy"], started_with["Trigger"]) == (True, BOB.arn, "tag")
    assert "ConfirmCustomKeyStoreName" not in started_with, started_with
    entered = workflow.states_entered(events)
    assert "DryRunComplete" in entered and "IsApprovalRequired" not in entered, "a dry run never waits"
    assert mutating_calls(e2e.admin.calls()) == [] and kms_state(e2e) == before
    assert store_ledger(e2e, store.id) == (None, {}), "a dry run writes no ledger record"
