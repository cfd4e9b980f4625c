"""The ticketing webhook's hardening on the local stack (docs/triggers.md "Ticketing webhook"): the
trigger policy, answers that never reveal the store's name or AWS error text, signatures bound to
the stack (the audience), and the secret read again from SSM (rotation, revocation).

What a security reviewer relies on: a ticket cannot ask for more than the stack allows a trigger
(and a console execution pretending to be a trigger cannot either), a wrong confirmation does not
tell the caller the right one, a request signed for another stack is refused, a rotated secret is
accepted on both lines during the rotation and the old one refused after it, a deleted secret
refuses every request, and every refusal carries a request id but no SDK text.

The session keeps the default trigger policy (tests/e2e/conftest.py): a
POLICY_MIN_PENDING_WINDOW_DAYS above its minimum of 7 would refuse the 7-day webhook start of
test_approval.py, and below it the input validation refuses the window first (InvalidInput), so
the MinPendingWindowInDays rule cannot be broken here; the two other rules are. The session reads
the webhook secret again once it is a second old (WEBHOOK_SECRET_CACHE_SECONDS 1)."""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from typing import Any

import boto3
import pytest

from helpers import (
    decommission_input,
    execution_count,
    executions_of_store,
    failure,
    http_answer,
    invoke,
    kms_state,
    mutating_calls,
    sign,
    trigger_event,
    webhook_request,
)
from local.client import fixtures, workflow
from local.stack.template import LOCAL_REGION

WEBHOOK = "ticket-webhook"
CLOUDHSM_INPUT = "execution-decommission-cloudhsm.json"
ERROR_FIELDS = {"Error", "Message", "RequestId"}
# Where the stack stores the webhook secret (the template's WebhookSecretParameterName default, as
# in tests/e2e/conftest.py): a SecureString in moto's SSM.
WEBHOOK_SECRET_PARAMETER = "/kms-decommission/webhook-secret"
# WEBHOOK_SECRET_CACHE_SECONDS of the session is 1: waiting this long makes the next request read
# the secret from SSM again.
SECRET_REREAD_WAIT = 1.5
# After a failed secret read, an instance refuses without reading again for this long.
RETRY_AFTER_FAILED_READ_SECONDS = 5
# Text of an SDK or AWS error that must never reach an answer (lower case; compared with the
# lower-cased body).
SDK_TEXT = ("arn:", "ssm", "getparameter", "parameternotfound", "injected by kms-emulator", "internal error")

# The secret tests change the session's SSM parameter and wait for the function to see it: on a
# stack started elsewhere (E2E_ENDPOINT) the cache time is that stack's (default 300 s).
needs_session_stack = pytest.mark.skipif(
    bool(os.environ.get("E2E_ENDPOINT")),
    reason="needs the session's own stack (WEBHOOK_SECRET_CACHE_SECONDS 1)",
)


def new_ticket() -> str:
    # moto keeps executions for the session and names derive from tickets: one ticket per request.
    return f"CHG-{uuid.uuid4().hex[:10]}"


def start_body(store: fixtures.Store, ticket: str, **overrides: Any) -> dict[str, Any]:
    """The real (not dry-run) `start` of events/triggers/webhook-start.json for `store`."""
    body = json.loads(trigger_event("webhook-start.json")["body"])
    body.update(
        {"CustomKeyStoreId": store.id, "ConfirmCustomKeyStoreName": store.name, "TicketId": ticket, **overrides}
    )
    return body


def status_request(secret: str, ticket: str | None = None) -> dict[str, Any]:
    return webhook_request("webhook-status.json", {"Action": "status", "TicketId": ticket or new_ticket()}, secret)


def webhook(trigger_stack: Any, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return http_answer(invoke(trigger_stack.lambda_client, WEBHOOK, event))


def resigned(event: dict[str, Any], secret: str, audience: str) -> dict[str, Any]:
    """`event` (a request of webhook_request) signed again with `secret` for `audience`."""
    headers = event["headers"]
    headers["x-signature"] = sign(secret, headers["x-signature-timestamp"], event["body"].encode(), audience=audience)
    return event


def assert_refusal(answer: dict[str, Any], event: dict[str, Any]) -> None:
    """A refusal's body: exactly Error, Message and the request id of the function URL event."""
    assert set(answer) == ERROR_FIELDS, answer
    assert answer["Message"], answer
    assert answer["RequestId"] == event["requestContext"]["requestId"], answer


def assert_no_sdk_text(answer: dict[str, Any]) -> None:
    text = json.dumps(answer).lower()
    leaked = [fragment for fragment in SDK_TEXT if fragment in text]
    assert not leaked, f"the answer carries SDK text {leaked}: {answer}"


def ssm_client(endpoint: str) -> Any:
    return boto3.client(
        "ssm",
        endpoint_url=endpoint,
        region_name=LOCAL_REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def put_secret(ssm: Any, value: str) -> None:
    ssm.put_parameter(Name=WEBHOOK_SECRET_PARAMETER, Value=value, Type="SecureString", Overwrite=True)


def restore_secret(trigger_stack: Any, ssm: Any) -> None:
    """Store the session's secret again and wait until the function accepts it (later tests sign
    with it; the function instances and their caches live for the whole session). An instance
    whose last read failed refuses without reading again for RETRY_AFTER_FAILED_READ (5 s,
    src/triggers/webhook/secret.rs); every instance's last failure came before the restore, so
    after that time plus the cache time each one reads the restored secret."""
    put_secret(ssm, trigger_stack.webhook_secret)
    time.sleep(RETRY_AFTER_FAILED_READ_SECONDS + SECRET_REREAD_WAIT)
    deadline = time.monotonic() + 30
    while True:
        status, answer = webhook(trigger_stack, status_request(trigger_stack.webhook_secret))
        if status == 404:
            return
        assert time.monotonic() < deadline, f"the restored secret is still not accepted: {status} {answer}"
        time.sleep(0.5)


# --- The trigger policy -------------------------------------------------------------------------

POLICY_CASES = {
    # rule: the start's fields that break it
    "MinDaysSinceLastUse": {"MinDaysSinceLastUse": 0},
    "AllowOrphanedKeyMaterial": {"AllowOrphanedKeyMaterial": True},
}


@pytest.mark.parametrize("rule", list(POLICY_CASES))
def test_start_beyond_the_trigger_policy_is_refused_403_naming_the_rule(trigger_stack, rule):
    e2e = trigger_stack.e2e
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=2)
    ticket = new_ticket()
    request = webhook_request(
        "webhook-start.json", start_body(store, ticket, **POLICY_CASES[rule]), trigger_stack.webhook_secret
    )
    machines = [e2e.state_machine_arn, trigger_stack.cancel_state_machine_arn]
    executions_before = execution_count(e2e.sfn, machines)
    before = kms_state(e2e)
    e2e.admin.clear_calls()

    status, answer = webhook(trigger_stack, request)

    assert (status, answer["Error"]) == (403, "PolicyViolation"), answer
    assert f"policy {rule}" in answer["Message"], answer
    assert_refusal(answer, request)
    assert execution_count(e2e.sfn, machines) == executions_before, "no execution started"
    assert mutating_calls(e2e.admin.calls()) == [], "nothing changed in KMS"
    assert kms_state(e2e) == before
    status, unknown = webhook(trigger_stack, status_request(trigger_stack.webhook_secret, ticket))
    assert (status, unknown["Error"]) == (404, "UnknownTicket"), "the ticket started nothing"


def test_console_execution_claiming_to_be_a_webhook_run_is_held_to_the_policy_at_plan(e2e):
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=2, disabled=1)
    before = kms_state(e2e)
    e2e.admin.clear_calls()

    execution = e2e.run(decommission_input(store, CLOUDHSM_INPUT, Trigger="webhook", MinDaysSinceLastUse=0))

    described, events = e2e.finish(execution)
    assert (described["status"], described.get("error")) == ("FAILED", "PolicyViolation"), failure(described)
    assert "policy MinDaysSinceLastUse" in described.get("cause", ""), failure(described)
    assert ("PlanDecommission", "PolicyViolation") in workflow.task_failures(events)
    entered = workflow.states_entered(events)
    assert "EnsureStoreConnected" not in entered and "ScheduleKeyDeletion" not in entered, entered
    assert mutating_calls(e2e.admin.calls()) == [], "nothing changed in KMS"
    assert kms_state(e2e) == before


# --- ConfirmationMismatch never names the store ---------------------------------------------------


def secret_named_store(e2e: Any) -> fixtures.Store:
    """A CloudHSM store with a name found nowhere else (not in the ids, events or samples)."""
    return fixtures.make_store(e2e.kms, "cloudhsm", keys=2, name=f"payments-prod-{uuid.uuid4().hex[:8]}")


def test_webhook_start_with_a_wrong_confirmation_gets_400_without_the_store_name(trigger_stack):
    e2e = trigger_stack.e2e
    store = secret_named_store(e2e)
    request = webhook_request(
        "webhook-start.json",
        start_body(store, new_ticket(), ConfirmCustomKeyStoreName="not-the-name"),
        trigger_stack.webhook_secret,
    )
    executions_before = execution_count(e2e.sfn, [e2e.state_machine_arn])
    e2e.admin.clear_calls()

    response = invoke(trigger_stack.lambda_client, WEBHOOK, request)

    status, answer = http_answer(response)
    assert (status, answer["Error"]) == (400, "ConfirmationMismatch"), answer
    assert_refusal(answer, request)
    assert store.id in answer["Message"] and '"not-the-name"' in answer["Message"], answer
    assert store.name not in json.dumps(response), "the whole answer keeps the store's name to itself"
    assert execution_count(e2e.sfn, [e2e.state_machine_arn]) == executions_before
    assert mutating_calls(e2e.admin.calls()) == []


def test_console_run_with_a_wrong_confirmation_fails_without_the_store_name(e2e, subscription):
    store = secret_named_store(e2e)
    before = kms_state(e2e)
    e2e.admin.clear_calls()

    execution = e2e.run(decommission_input(store, CLOUDHSM_INPUT, ConfirmCustomKeyStoreName="not-the-name"))

    described, events = e2e.finish(execution)
    assert (described["status"], described.get("error")) == ("FAILED", "ConfirmationMismatch"), failure(described)
    assert store.id in described["cause"] and store.name not in described["cause"], failure(described)
    assert store.name not in json.dumps(events, default=str), "nothing the execution recorded names the store"
    failed = subscription.events_of(execution, until="Failed")[-1]
    assert failed["detail"]["Failure"]["Error"] == "ConfirmationMismatch", failed
    assert store.name not in json.dumps(failed), f"the Failed status event names the store: {failed}"
    assert mutating_calls(e2e.admin.calls()) == [] and kms_state(e2e) == before


# --- The audience -------------------------------------------------------------------------------


def test_request_signed_for_another_stack_is_refused_401_and_starts_nothing(trigger_stack):
    e2e = trigger_stack.e2e
    secret = trigger_stack.webhook_secret
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=2)
    ticket = new_ticket()
    start = resigned(webhook_request("webhook-start.json", start_body(store, ticket), secret), secret, "another-stack")
    machines = [e2e.state_machine_arn, trigger_stack.cancel_state_machine_arn]
    executions_before = execution_count(e2e.sfn, machines)
    before = kms_state(e2e)
    e2e.admin.clear_calls()

    status, answer = webhook(trigger_stack, start)

    assert (status, answer["Error"]) == (401, "SignatureMismatch"), answer
    assert_refusal(answer, start)
    assert execution_count(e2e.sfn, machines) == executions_before, "no execution started"
    assert executions_of_store(e2e.sfn, e2e.state_machine_arn, store.id) == []
    assert e2e.admin.calls() == [], "nothing reached KMS"
    assert kms_state(e2e) == before
    # The same status request, signed for another stack and for this one: only the audience differs.
    elsewhere = resigned(status_request(secret, ticket), secret, "another-stack")
    status, answer = webhook(trigger_stack, elsewhere)
    assert (status, answer["Error"]) == (401, "SignatureMismatch"), answer
    status, answer = webhook(trigger_stack, status_request(secret, ticket))
    assert (status, answer["Error"]) == (404, "UnknownTicket"), "signed for this stack, it is read"


# --- The secret, read again from SSM ------------------------------------------------------------


@needs_session_stack
def test_rotation_accepts_both_secrets_then_only_the_new_one(trigger_stack):
    ssm = ssm_client(trigger_stack.e2e.endpoint)
    old = trigger_stack.webhook_secret
    new = secrets.token_hex(32)
    assert len(old.encode()) >= 32 and len(new.encode()) >= 32
    try:
        # 1. The new secret first, the old one on the second line: both accepted.
        put_secret(ssm, f"{new}\n{old}")
        time.sleep(SECRET_REREAD_WAIT)
        for label, secret in (("old", old), ("new", new)):
            request = status_request(secret)
            status, answer = webhook(trigger_stack, request)
            assert (status, answer["Error"]) == (404, "UnknownTicket"), f"during the rotation, {label}: {answer}"
            assert_refusal(answer, request)

        # 2. The new secret alone: the old one is refused, the new one accepted.
        put_secret(ssm, new)
        time.sleep(SECRET_REREAD_WAIT)
        request = status_request(old)
        status, answer = webhook(trigger_stack, request)
        assert (status, answer["Error"]) == (401, "SignatureMismatch"), f"after the rotation, old: {answer}"
        assert_refusal(answer, request)
        status, answer = webhook(trigger_stack, status_request(new))
        assert (status, answer["Error"]) == (404, "UnknownTicket"), f"after the rotation, new: {answer}"
    finally:
        restore_secret(trigger_stack, ssm)


@needs_session_stack
def test_deleted_secret_refuses_every_request_503_without_sdk_text(trigger_stack):
    e2e = trigger_stack.e2e
    ssm = ssm_client(e2e.endpoint)
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=2)
    machines = [e2e.state_machine_arn, trigger_stack.cancel_state_machine_arn]
    executions_before = execution_count(e2e.sfn, machines)
    e2e.admin.clear_calls()
    try:
        ssm.delete_parameter(Name=WEBHOOK_SECRET_PARAMETER)
        time.sleep(SECRET_REREAD_WAIT)
        requests = {
            "signed status": status_request(trigger_stack.webhook_secret),
            "signed start": webhook_request(
                "webhook-start.json", start_body(store, new_ticket()), trigger_stack.webhook_secret
            ),
            "unsigned start": webhook_request("webhook-start.json", start_body(store, new_ticket()), None),
        }
        for case, request in requests.items():
            status, answer = webhook(trigger_stack, request)
            assert (status, answer["Error"]) == (503, "SecretUnavailable"), f"{case}: {answer}"
            assert_refusal(answer, request)
            assert_no_sdk_text(answer)
            assert WEBHOOK_SECRET_PARAMETER not in json.dumps(answer), answer
    finally:
        restore_secret(trigger_stack, ssm)
    assert execution_count(e2e.sfn, machines) == executions_before, "no execution started"
    assert e2e.admin.calls() == [], "nothing reached KMS"


# --- 5xx answers ----------------------------------------------------------------------------------


def test_kms_failure_answers_503_naming_the_operation_without_the_sdk_text(trigger_stack):
    e2e = trigger_stack.e2e
    store = fixtures.make_store(e2e.kms, "cloudhsm", keys=2)
    request = webhook_request("webhook-start.json", start_body(store, new_ticket()), trigger_stack.webhook_secret)
    executions_before = execution_count(e2e.sfn, [e2e.state_machine_arn])
    e2e.admin.clear_calls()
    # Every DescribeCustomKeyStores fails (the SDK's retries included) with the emulator's message.
    e2e.admin.fail_next("DescribeCustomKeyStores", "KMSInternalException", 100)

    status, answer = webhook(trigger_stack, request)

    e2e.admin.clear_faults()
    assert (status, answer["Error"]) == (503, "KMSInternalException"), answer
    assert set(answer) == ERROR_FIELDS | {"Operation"}, answer
    assert answer["RequestId"] == request["requestContext"]["requestId"], answer
    assert "DescribeCustomKeyStores" in answer["Operation"], answer
    assert answer["RequestId"] in answer["Message"], "the message says where the details are"
    assert_no_sdk_text(answer)
    assert execution_count(e2e.sfn, [e2e.state_machine_arn]) == executions_before
    assert mutating_calls(e2e.admin.calls()) == []
