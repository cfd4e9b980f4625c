"""The triggers on the local stack (docs/triggers.md): the real `tag-trigger` and `ticket-webhook`
binaries under cargo lambda watch, invoked through the stack's Lambda Invoke API with the
real-shaped events of events/triggers/, starting the real state machine in moto's interpreter;
KMS is the emulator, the webhook secret the SecureString the stack put in moto's SSM.

What a user relies on: a tag or a ticket starts at most one decommission of a store however often
it arrives, anything not meant or not allowed starts nothing and changes nothing in KMS, and the
webhook answers with the documented status codes."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import pytest

from helpers import (
    ALICE,
    BOB,
    CONFIRM_TAG_KEY,
    TRIGGER_TAG_KEY,
    Principal,
    api_call_event,
    call_as,
    execution_count,
    executions_of_store,
    failure,
    http_answer,
    invoke,
    kms_state,
    mutating_calls,
    tag_as,
    tag_change,
    trigger_event,
    wait_for_state,
    webhook_request,
)
from local.client import fixtures, workflow

TAG_TRIGGER = "tag-trigger"
WEBHOOK = "ticket-webhook"
# A 30-day window at 3 s a day: 90 s, so a real decommission sits in WaitForDeletionDate
# (WaitRequired needs the wait to end over 60 s ahead) for the rest of the test.
WAITING_DAY_SECONDS = 3.0


def start_body(store: fixtures.Store, ticket: str, **overrides: Any) -> dict[str, Any]:
    """The `start` body of events/triggers/webhook-start.json for `store` and `ticket`."""
    body = json.loads(trigger_event("webhook-start.json")["body"])
    body.update(
        {"CustomKeyStoreId": store.id, "ConfirmCustomKeyStoreName": store.name, "TicketId": ticket, **overrides}
    )
    return body


def status_body(ticket: str) -> dict[str, Any]:
    return {"Action": "status", "TicketId": ticket}


def new_ticket() -> str:
    # moto keeps executions for the session and names derive from tickets: one ticket per test.
    return f"CHG-{uuid.uuid4().hex[:10]}"


def webhook(trigger_stack: Any, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return http_answer(invoke(trigger_stack.lambda_client, WEBHOOK, event))


# --- Tag trigger -----------------------------------------------------------------------------
# The session's tag trigger runs in decommission mode (tests/e2e/conftest.py): it starts runs from
# CloudTrail's TagResource API-call events by the role KeyAdmin's sessions, built here from the
# emulator's CloudTrail record of the real call (helpers.tag_as). The trigger tag alone starts a
# dry run; with the confirmation in the same call, a decommission (tests/e2e/test_tag_identity.py).


def tagged_event(e2e: Any, key_id: str, value: str, by: Principal = ALICE) -> dict[str, Any]:
    """Tag a key `DecommissionCustomKeyStore=<value>` as `by`; the event EventBridge delivers."""
    return tag_as(e2e, by, key_id, {TRIGGER_TAG_KEY: value})


def test_tag_on_a_key_of_the_store_starts_one_dry_run(trigger_stack):
    e2e = trigger_stack.e2e
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=3, disabled=1)
    event = tagged_event(e2e, store.keys[0], store.id)
    before = kms_state(e2e)
    e2e.admin.clear_calls()

    outcome = invoke(trigger_stack.lambda_client, TAG_TRIGGER, event)

    assert outcome["Outcome"] == "Started", outcome
    assert outcome["DryRun"] is True and outcome["CustomKeyStoreId"] == store.id
    runs = executions_of_store(e2e.sfn, e2e.state_machine_arn, store.id)
    assert [run["executionArn"] for run in runs] == [outcome["ExecutionArn"]], "exactly one execution"
    started_with = json.loads(runs[0]["input"])
    assert started_with["DryRun"] is True and started_with["CustomKeyStoreId"] == store.id
    assert started_with["RequestedBy"] == ALICE.arn, "the tagger asked for it"
    assert "ConfirmCustomKeyStoreName" not in started_with, "the trigger tag alone never confirms a deletion"
    assert CONFIRM_TAG_KEY in started_with["Reason"], "the dry run says how to confirm"

    described, events = e2e.finish(outcome["ExecutionArn"])
    assert described["status"] == "SUCCEEDED", failure(described)
    assert "DryRunComplete" in workflow.states_entered(events)
    report = json.loads(described["output"])
    assert report["Outcome"] == "DryRun" and report["KeysInStore"] == 3
    assert mutating_calls(e2e.admin.calls()) == [], "a tag's dry run changes nothing in KMS"
    assert kms_state(e2e) == before


def test_every_key_of_the_store_tagged_starts_one_execution(trigger_stack):
    e2e = trigger_stack.e2e
    store = fixtures.make_store(e2e.kms, "xks", keys=4)
    events = [tagged_event(e2e, key, store.id) for key in store.keys]
    # A dry run of a real account's keys takes minutes; here it ends within a second. ListKeys
    # failures (retried by the state machine; the trigger never lists keys) keep it running
    # while the other keys' events arrive, as they would in an account of any size.
    e2e.admin.fail_next("ListKeys", "KMSInternalException", 100_000)

    outcomes = [invoke(trigger_stack.lambda_client, TAG_TRIGGER, event) for event in events]

    first = outcomes[0]
    assert first["Outcome"] == "Started", first
    for later in outcomes[1:]:
        assert later["Outcome"] == "AlreadyRunning", later
        assert later["ExecutionArn"] == first["ExecutionArn"], "a duplicate gets the running execution back"
    runs = executions_of_store(e2e.sfn, e2e.state_machine_arn, store.id)
    assert [run["executionArn"] for run in runs] == [first["ExecutionArn"]]

    e2e.admin.clear_faults()
    described, _ = e2e.finish(first["ExecutionArn"])
    assert described["status"] == "SUCCEEDED", failure(described)
    # EventBridge delivers at least once: the first key's event again, after the run ended.
    again = invoke(trigger_stack.lambda_client, TAG_TRIGGER, events[0])
    assert again["Outcome"] == "AlreadyHandled" and again["ExecutionArn"] == first["ExecutionArn"], again
    assert len(executions_of_store(e2e.sfn, e2e.state_machine_arn, store.id)) == 1


def cluster_tag_event(e2e: Any, by: Principal, cluster_id: str, tags: dict[str, str]) -> dict[str, Any]:
    """The API-call event of a CloudHSM TagResource call by `by` on `cluster_id`, setting `tags`.

    The emulator serves KMS only, so the test stands in for CloudHSM: it records the call in the
    emulator's CloudTrail (admin `POST /_emulator/cloudtrail`), which the trigger looks up by event
    id as it would CloudTrail's (EventBridge's source for these is aws.cloudhsm). Who called is
    still not written here: `userIdentity` and `sourceIPAddress` are those of the emulator's record
    of a real KMS call by `by` (DescribeCustomKeyStores, how the tagger finds the cluster); the
    CloudHSM parts (eventSource, requestParameters resourceId and tagList, no resources) are as
    CloudTrail records CloudHSM's TagResource."""
    lookup = call_as(e2e, by, "describe_custom_key_stores")["detail"]
    record = {
        **lookup,
        "eventSource": "cloudhsm.amazonaws.com",
        "eventName": "TagResource",
        "readOnly": False,
        "requestParameters": {
            "resourceId": cluster_id,
            "tagList": [{"key": key, "value": value} for key, value in tags.items()],
        },
        "responseElements": None,
    }
    record.pop("resources", None)
    record.pop("eventID", None)
    return api_call_event(e2e.admin.record_service_call(record))


def test_tag_on_the_cloudhsm_cluster_of_the_store_starts_a_dry_run(trigger_stack):
    e2e = trigger_stack.e2e
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=1)
    cluster = e2e.kms.describe_custom_key_stores(CustomKeyStoreId=store.id)["CustomKeyStores"][0]["CloudHsmClusterId"]
    wrong = cluster_tag_event(e2e, ALICE, "cluster-234567abcdefg", {TRIGGER_TAG_KEY: store.id})
    right = cluster_tag_event(e2e, ALICE, cluster, {TRIGGER_TAG_KEY: store.id})
    assert wrong["source"] == right["source"] == "aws.cloudhsm"
    before = kms_state(e2e)
    e2e.admin.clear_calls()

    refused = invoke(trigger_stack.lambda_client, TAG_TRIGGER, wrong)
    assert (refused["Outcome"], refused["Reason"]) == ("Refused", "ClusterDoesNotBackStore"), refused
    assert executions_of_store(e2e.sfn, e2e.state_machine_arn, store.id) == []

    started = invoke(trigger_stack.lambda_client, TAG_TRIGGER, right)
    assert (started["Outcome"], started["DryRun"]) == ("Started", True), started
    described, _ = e2e.finish(started["ExecutionArn"])
    assert described["status"] == "SUCCEEDED", failure(described)
    assert json.loads(described["input"])["RequestedBy"] == ALICE.arn
    assert mutating_calls(e2e.admin.calls()) == []
    assert kms_state(e2e) == before


def test_tags_not_meant_for_a_decommission_start_nothing_and_change_nothing(trigger_stack):
    e2e = trigger_stack.e2e
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=4)
    other = fixtures.make_store(e2e.kms, "xks", keys=1)
    aws_kms_key = fixtures.create_aws_kms_key(e2e.kms, "an ordinary key")
    gone_store = "cks-0123456789abcdef0"
    # One key per case whose tags the trigger reads back: a later case's tag would change them.
    not_an_id, in_no_store, mismatch, retagged = store.keys
    cases = {
        # (event, the outcome and its reason)
        "AWS_KMS-origin key": (tagged_event(e2e, aws_kms_key, store.id), ("Refused", "KeyNotInCustomKeyStore")),
        "key of another store": (tagged_event(e2e, other.keys[0], store.id), ("Refused", "KeyInOtherStore")),
        "value not a store id": (tagged_event(e2e, not_an_id, "yes"), ("Refused", "InvalidTagValue")),
        "value naming a store the key is not in": (
            tagged_event(e2e, in_no_store, gone_store),
            ("Refused", "KeyInOtherStore"),
        ),
        # Confirmed with another name than the store's.
        "wrong confirmation": (
            tag_as(e2e, ALICE, mismatch, {TRIGGER_TAG_KEY: store.id, CONFIRM_TAG_KEY: store.name + "-old"}),
            ("Refused", "ConfirmationMismatch"),
        ),
        # The confirmation in a call of its own (here by another allowed person): a run needs both
        # tags from one call.
        "confirmation tag alone": (
            tag_as(e2e, BOB, not_an_id, {CONFIRM_TAG_KEY: store.name}),
            ("Ignored", "ConfirmationWithoutTrigger"),
        ),
        # A call that set only other tags.
        "other tags": (
            tag_as(e2e, ALICE, not_an_id, {"Owner": "platform-security"}),
            ("Ignored", "TriggerTagNotChanged"),
        ),
        # A call that failed (a reserved tag key: TagException) tagged nothing.
        "failed call": (
            tag_as(e2e, ALICE, not_an_id, {TRIGGER_TAG_KEY: store.id, "aws:owner": "x"}, fails_with="TagException"),
            ("Ignored", "TagCallFailed"),
        ),
    }
    # An event that arrives after the tag it reports was removed again: the newer change decides.
    cases["tag removed since the event"] = (tagged_event(e2e, retagged, store.id), ("Refused", "TagsChangedSinceEvent"))
    untagged = call_as(e2e, ALICE, "untag_resource", KeyId=retagged, TagKeys=[TRIGGER_TAG_KEY])
    cases["UntagResource call"] = (untagged, ("Ignored", "NotATagCall"))
    # The Tag Change event of a tag: in decommission mode it names nobody, so the API-call event
    # of the same tag decides.
    tag_change_event = tag_change(
        "tag-change-kms-key.json", untagged["detail"]["resources"][0]["ARN"], {TRIGGER_TAG_KEY: store.id}
    )
    cases["Tag Change event in decommission mode"] = (tag_change_event, ("Ignored", "TaggerNotNamed"))
    # Not a tag change at all.
    not_a_tag = trigger_event("tag-change-kms-key.json") | {
        "source": "aws.kms",
        "detail-type": "KMS CMK Rotation",
    }
    cases["another event"] = (not_a_tag, ("Ignored", "NotATagChange"))
    machines = [e2e.state_machine_arn, trigger_stack.cancel_state_machine_arn]
    executions_before = execution_count(e2e.sfn, machines)
    before = kms_state(e2e)
    e2e.admin.clear_calls()

    for case, (event, expected) in cases.items():
        outcome = invoke(trigger_stack.lambda_client, TAG_TRIGGER, event)
        assert (outcome["Outcome"], outcome.get("Reason")) == expected, f"{case}: {outcome}"
        assert outcome.get("Message"), f"{case}: the outcome explains itself"

    assert execution_count(e2e.sfn, machines) == executions_before, "no execution started"
    assert mutating_calls(e2e.admin.calls()) == []
    assert kms_state(e2e) == before


# --- Ticketing webhook -----------------------------------------------------------------------


def test_signed_start_delivered_three_times_starts_one_decommission_and_status_follows_it(trigger_stack):
    e2e = trigger_stack.e2e
    e2e.admin.configure(day_seconds=WAITING_DAY_SECONDS)
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=3, disabled=1)
    ticket = new_ticket()
    # One signed request, delivered three times byte for byte (a ticketing system's retries).
    request = webhook_request(
        "webhook-start.json", start_body(store, ticket, PendingWindowInDays=30), trigger_stack.webhook_secret
    )

    answers = [webhook(trigger_stack, request) for _ in range(3)]

    (status, started), *repeats = answers
    assert status == 202 and started["Result"] == "Started", started
    arn = started["ExecutionArn"]
    for status, repeat in repeats:
        assert (status, repeat["Result"], repeat["ExecutionArn"]) == (200, "AlreadyRunning", arn), repeat
    runs = executions_of_store(e2e.sfn, e2e.state_machine_arn, store.id)
    assert [run["executionArn"] for run in runs] == [arn], "one decommission however often the request arrives"
    assert json.loads(runs[0]["input"])["TicketId"] == ticket

    wait_for_state(e2e, arn, "WaitForDeletionDate")
    status, answer = webhook(
        trigger_stack, webhook_request("webhook-status.json", status_body(ticket), trigger_stack.webhook_secret)
    )
    assert status == 200, answer
    summary = (answer["Result"], answer["ExecutionArn"], answer["Status"], answer["DryRun"])
    assert summary == ("Status", arn, "RUNNING", False), answer
    assert answer["Phase"] == "WaitForDeletionDate", answer
    assert answer["KeysPending"] == 3 and answer["NextDeadline"], answer
    assert answer["CustomKeyStoreId"] == store.id
    assert all(e2e.kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "PendingDeletion" for key in store.keys)


def test_second_ticket_for_a_store_being_decommissioned_gets_409(trigger_stack):
    e2e = trigger_stack.e2e
    e2e.admin.configure(day_seconds=WAITING_DAY_SECONDS)
    store = fixtures.make_store(e2e.kms, "xks", keys=2)
    status, first = webhook(
        trigger_stack,
        webhook_request("webhook-start.json", start_body(store, new_ticket()), trigger_stack.webhook_secret),
    )
    assert status == 202, first

    status, second = webhook(
        trigger_stack,
        webhook_request("webhook-start.json", start_body(store, new_ticket()), trigger_stack.webhook_secret),
    )

    assert status == 409, second
    assert (second["Error"], second["ExecutionArn"]) == ("StoreBusy", first["ExecutionArn"]), second
    runs = executions_of_store(e2e.sfn, e2e.state_machine_arn, store.id)
    assert [run["executionArn"] for run in runs] == [first["ExecutionArn"]]
    # End the test with no step in flight (a step stopped mid-invocation would still call KMS).
    wait_for_state(e2e, first["ExecutionArn"], "WaitForDeletionDate")


def test_base64_dry_run_start_plans_and_status_reports_its_end(trigger_stack):
    e2e = trigger_stack.e2e
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=2)
    ticket = new_ticket()
    body = json.loads(base64.b64decode(trigger_event("webhook-start-dry-run-base64.json")["body"]))
    body.update({"CustomKeyStoreId": store.id, "TicketId": ticket})
    before = kms_state(e2e)
    e2e.admin.clear_calls()

    status, started = webhook(
        trigger_stack,
        webhook_request("webhook-start-dry-run-base64.json", body, trigger_stack.webhook_secret, base64_body=True),
    )

    assert status == 202 and (started["Result"], started["DryRun"]) == ("Started", True), started
    described, _ = e2e.finish(started["ExecutionArn"])
    assert described["status"] == "SUCCEEDED", failure(described)
    status, answer = webhook(
        trigger_stack, webhook_request("webhook-status.json", status_body(ticket), trigger_stack.webhook_secret)
    )
    assert status == 200 and (answer["Status"], answer["DryRun"]) == ("SUCCEEDED", True), answer
    assert mutating_calls(e2e.admin.calls()) == [] and kms_state(e2e) == before


def _bad_requests(secret: str, valid_start: dict[str, Any]) -> dict[str, tuple[dict[str, Any], int, str]]:
    """Requests refused before they reach KMS or Step Functions: (request, status, error name).
    Each carries an otherwise valid `start` of a real decommission, so a missing check would
    start one."""
    now = int(time.time())
    raw = json.dumps(valid_start, separators=(",", ":")).encode()
    return {
        "wrong secret": (
            webhook_request("webhook-start.json", valid_start, "not-the-shared-secret-" + "x" * 32),
            401,
            "SignatureMismatch",
        ),
        "no signature": (webhook_request("webhook-start.json", valid_start, None), 401, "MissingSignature"),
        "stale timestamp": (
            webhook_request("webhook-start.json", valid_start, secret, timestamp=now - 301),
            401,
            "StaleTimestamp",
        ),
        "malformed JSON": (webhook_request("webhook-start.json", raw[:-1], secret), 400, "MalformedJson"),
        "unknown action": (
            webhook_request("webhook-start.json", valid_start | {"Action": "delete"}, secret),
            400,
            "UnknownAction",
        ),
        # Valid JSON even past 16 KiB (trailing whitespace): only the size check refuses it.
        "oversized body": (
            webhook_request("webhook-start.json", raw + b" " * (16 * 1024), secret),
            413,
            "PayloadTooLarge",
        ),
        "status of an unknown ticket": (
            webhook_request("webhook-status.json", status_body(new_ticket()), secret),
            404,
            "UnknownTicket",
        ),
    }


BAD_REQUESTS = [
    "wrong secret",
    "no signature",
    "stale timestamp",
    "malformed JSON",
    "unknown action",
    "oversized body",
    "status of an unknown ticket",
]


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_refused_request_gets_its_status_code_and_changes_nothing(trigger_stack, case):
    e2e = trigger_stack.e2e
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=2)
    request, expected_status, expected_error = _bad_requests(
        trigger_stack.webhook_secret, start_body(store, new_ticket())
    )[case]
    machines = [e2e.state_machine_arn, trigger_stack.cancel_state_machine_arn]
    executions_before = execution_count(e2e.sfn, machines)
    before = kms_state(e2e)
    e2e.admin.clear_calls()

    status, answer = webhook(trigger_stack, request)

    assert (status, answer["Error"]) == (expected_status, expected_error), answer
    assert answer["Message"], "the refusal explains itself"
    assert execution_count(e2e.sfn, machines) == executions_before, "no execution started"
    assert e2e.admin.calls() == [], "nothing reached KMS"
    assert kms_state(e2e) == before
