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
    TRIGGER_TAG_KEY,
    execution_count,
    executions_of_store,
    failure,
    http_answer,
    invoke,
    kms_state,
    mutating_calls,
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


def key_arn(e2e: Any, key_id: str) -> str:
    return e2e.kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]


def tag_key(e2e: Any, key_id: str, tags: dict[str, str]) -> dict[str, str]:
    """TagResource as the operator does it; returns the key's tags now (what the event carries)."""
    e2e.kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": k, "TagValue": v} for k, v in tags.items()])
    return {t["TagKey"]: t["TagValue"] for t in e2e.kms.list_resource_tags(KeyId=key_id)["Tags"]}


def tagged_event(e2e: Any, key_id: str, value: str) -> dict[str, Any]:
    """Tag a key `DecommissionCustomKeyStore=<value>` and return the event EventBridge delivers."""
    return tag_change("tag-change-kms-key.json", key_arn(e2e, key_id), tag_key(e2e, key_id, {TRIGGER_TAG_KEY: value}))


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
    assert "ConfirmCustomKeyStoreName" not in started_with, "a tag alone never confirms a deletion"
    assert "ConfirmCustomKeyStoreName" in started_with["Reason"], "the dry run says how to confirm"

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


def test_tag_on_the_cloudhsm_cluster_of_the_store_starts_a_dry_run(trigger_stack):
    e2e = trigger_stack.e2e
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=1)
    cluster = e2e.kms.describe_custom_key_stores(CustomKeyStoreId=store.id)["CustomKeyStores"][0]["CloudHsmClusterId"]
    sample = trigger_event("tag-change-cloudhsm-cluster.json")
    other_cluster = sample["resources"][0].rsplit("/", 1)[0] + "/cluster-234567abcdefg"
    before = kms_state(e2e)

    refused = invoke(
        trigger_stack.lambda_client,
        TAG_TRIGGER,
        tag_change("tag-change-cloudhsm-cluster.json", other_cluster, {TRIGGER_TAG_KEY: store.id}),
    )
    assert (refused["Outcome"], refused["Reason"]) == ("Refused", "ClusterDoesNotBackStore"), refused
    assert executions_of_store(e2e.sfn, e2e.state_machine_arn, store.id) == []

    cluster_arn = sample["resources"][0].rsplit("/", 1)[0] + "/" + cluster
    started = invoke(
        trigger_stack.lambda_client,
        TAG_TRIGGER,
        tag_change("tag-change-cloudhsm-cluster.json", cluster_arn, {TRIGGER_TAG_KEY: store.id}),
    )
    assert (started["Outcome"], started["DryRun"]) == ("Started", True), started
    described, _ = e2e.finish(started["ExecutionArn"])
    assert described["status"] == "SUCCEEDED", failure(described)
    assert kms_state(e2e) == before


def test_tags_not_meant_for_a_decommission_start_nothing_and_change_nothing(trigger_stack):
    e2e = trigger_stack.e2e
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=2)
    other = fixtures.make_store(e2e.kms, "xks", keys=1)
    aws_kms_key = fixtures.create_aws_kms_key(e2e.kms, "an ordinary key")
    gone_store = "cks-0123456789abcdef0"
    key, second = store.keys
    cases = {
        # (event, the outcome and its reason)
        "AWS_KMS-origin key": (tagged_event(e2e, aws_kms_key, store.id), ("Refused", "KeyNotInCustomKeyStore")),
        "key of another store": (tagged_event(e2e, other.keys[0], store.id), ("Refused", "KeyInOtherStore")),
        "value not a store id": (tagged_event(e2e, key, "yes"), ("Refused", "InvalidTagValue")),
        "value naming a store the key is not in": (
            tagged_event(e2e, second, gone_store),
            ("Refused", "KeyInOtherStore"),
        ),
    }
    # The tag removed from the key (the removed sample: the tag is absent from `tags`).
    e2e.kms.untag_resource(KeyId=key, TagKeys=[TRIGGER_TAG_KEY])
    removed = tag_change("tag-change-kms-key-removed.json", key_arn(e2e, key), {"Owner": "platform-security"})
    cases["tag removed"] = (removed, ("Ignored", "TriggerTagRemoved"))
    # An event that arrives after the tag it reports was removed again: the newer change decides.
    late = tag_change("tag-change-kms-key.json", key_arn(e2e, key), {TRIGGER_TAG_KEY: store.id})
    cases["tag removed since the event"] = (late, ("Refused", "TagsChangedSinceEvent"))
    # Only the confirmation tag changed: in the default dry-run mode that tag is not watched.
    confirmation = {TRIGGER_TAG_KEY: store.id, "DecommissionConfirmStoreName": store.name}
    confirmed = tag_change("tag-change-kms-key-confirmed.json", key_arn(e2e, second), confirmation)
    cases["confirmation tag alone"] = (confirmed, ("Ignored", "TriggerTagNotChanged"))
    # Not a tag change at all.
    not_a_tag = trigger_event("tag-change-kms-key.json") | {
        "source": "aws.kms",
        "detail-type": "KMS CMK Rotation",
    }
    cases["another event"] = (not_a_tag, ("Ignored", "NotATagChange"))
    # A TagResource API-call event: in dry-run mode the Tag Change event of the same tag decides.
    cases["API-call event in dry-run mode"] = (
        trigger_event("api-call-tag-resource-kms-key.json"),
        ("Ignored", "ApiCallInDryRunMode"),
    )
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
