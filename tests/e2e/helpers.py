"""Assertions the end-to-end scenarios share: what KMS calls were made, and what did not change."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from local.client import fixtures, ledger, workflow
from local.stack.template import LOCAL_ACCOUNT, LOCAL_REGION

# KMS operations that change something; a dry run or a refused decommission makes none of them.
MUTATING = frozenset(
    {
        "ScheduleKeyDeletion",
        "CancelKeyDeletion",
        "TagResource",
        "UntagResource",
        "EnableKey",
        "DisableKey",
        "ConnectCustomKeyStore",
        "DisconnectCustomKeyStore",
        "DeleteCustomKeyStore",
        "UpdateCustomKeyStore",
        "CreateKey",
        "CreateCustomKeyStore",
    }
)


def calls_of(calls: list[dict[str, Any]], operation: str, outcome: str | None = None) -> list[dict[str, Any]]:
    """The logged calls of `operation` (with `outcome`, if given), in order."""
    return [c for c in calls if c["operation"] == operation and (outcome is None or c["outcome"] == outcome)]


def mutating_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The logged calls that could have changed something."""
    return [c for c in calls if c["operation"] in MUTATING]


def bystanders(e2e: Any) -> tuple[list[str], dict[str, dict[str, Any]], fixtures.Store]:
    """Keys a decommission of another store must never touch: two AWS_KMS keys and the key of a
    third store. Returns (key ids, their snapshots, the third store)."""
    other = fixtures.make_store(e2e.kms, "xks", keys=1)
    keys = [
        fixtures.create_aws_kms_key(e2e.kms, "bystander 1"),
        fixtures.create_aws_kms_key(e2e.kms, "bystander 2"),
        *other.keys,
    ]
    return keys, {key: fixtures.key_snapshot(e2e.kms, key) for key in keys}, other


def assert_untouched(e2e: Any, snapshots: dict[str, dict[str, Any]]) -> None:
    """Every key of `snapshots` is exactly as it was."""
    for key, before in snapshots.items():
        assert fixtures.key_snapshot(e2e.kms, key) == before, f"key {key} was changed"


def decommission_input(store: fixtures.Store, event_file: str, **overrides: Any) -> dict[str, Any]:
    """The console input of events/<event_file> for `store`."""
    return workflow.execution_input(
        event_file, **{"CustomKeyStoreId": store.id, "ConfirmCustomKeyStoreName": store.name, **overrides}
    )


def failure(described: dict[str, Any]) -> tuple[str | None, str | None]:
    """(error, cause) of an execution, for assertion messages."""
    return described.get("error"), described.get("cause")


def wait_for_state(e2e: Any, execution_arn: str, state: str, timeout: float = 120) -> list[dict[str, Any]]:
    """Wait until the execution has entered `state`; return the history so far."""
    deadline = time.monotonic() + timeout
    while True:
        events = workflow.history(e2e.sfn, execution_arn)
        if state in workflow.states_entered(events):
            return events
        status = e2e.sfn.describe_execution(executionArn=execution_arn)["status"]
        assert status == "RUNNING", (
            f"execution ended ({status}) before entering {state}: {workflow.states_entered(events)}"
        )
        assert time.monotonic() < deadline, f"{state} not entered within {timeout} s: {workflow.states_entered(events)}"
        time.sleep(0.2)


# --- Triggers and the cancel workflow (test_triggers.py, test_cancel.py) ----------------------

TRIGGER_EVENTS = workflow.EVENTS / "triggers"
TRIGGER_TAG_KEY = "DecommissionCustomKeyStore"  # the template's TriggerTagKey default
MARKER_PREFIX = "kms-decommission:"  # the markers schedule-key-deletion tags keys with


def trigger_event(sample: str) -> dict[str, Any]:
    """A sample event of events/triggers/ as EventBridge or the function URL delivers it."""
    return json.loads((TRIGGER_EVENTS / sample).read_text(encoding="utf-8"))


def tag_change(sample: str, resource_arn: str, tags: dict[str, str]) -> dict[str, Any]:
    """The tag-change sample `sample` re-aimed at `resource_arn`, whose tags are now `tags`,
    changed now (EventBridge's `time`)."""
    event = trigger_event(sample)
    event["id"] = str(uuid.uuid4())
    event["time"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    event["resources"] = [resource_arn]
    event["detail"]["tags"] = dict(tags)
    return event


# The audience webhook requests are signed for: the local stack's name (WEBHOOK_AUDIENCE).
STACK_AUDIENCE = "kms-decommission"


def sign(secret: str, timestamp: str, body: bytes, audience: str = STACK_AUDIENCE) -> str:
    """The X-Signature a ticketing system sends: HMAC-SHA256 over `<timestamp>.<audience>.<raw body>`,
    the audience being the stack name the request is meant for (WEBHOOK_AUDIENCE)."""
    message = timestamp.encode() + b"." + audience.encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def webhook_request(
    sample: str,
    body: dict[str, Any] | bytes,
    secret: str | None,
    timestamp: int | None = None,
    base64_body: bool = False,
) -> dict[str, Any]:
    """The function URL request of events/triggers/<sample> carrying `body` (a dict is sent as
    compact JSON), signed with `secret` at `timestamp` (default now); `secret=None` sends no
    signature headers at all."""
    raw = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    event = trigger_event(sample)
    headers = {k: v for k, v in event["headers"].items() if k not in ("x-signature", "x-signature-timestamp")}
    headers["content-length"] = str(len(raw))
    if secret is not None:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        headers["x-signature-timestamp"] = stamp
        headers["x-signature"] = sign(secret, stamp, raw)
    event["headers"] = headers
    event["requestContext"]["requestId"] = str(uuid.uuid4())
    event["isBase64Encoded"] = base64_body
    event["body"] = base64.b64encode(raw).decode() if base64_body else raw.decode()
    return event


def invoke_answer(lambda_client: Any, function: str, event: dict[str, Any]) -> tuple[str | None, Any]:
    """Invoke `function` synchronously through the stack's Lambda Invoke API; (the function error
    kind, e.g. "Unhandled", or None; the JSON result or error payload)."""
    answer = lambda_client.invoke(FunctionName=function, Payload=json.dumps(event).encode())
    return answer.get("FunctionError"), json.loads(answer["Payload"].read() or b"null")


def invoke(lambda_client: Any, function: str, event: dict[str, Any]) -> dict[str, Any]:
    """Invoke `function` synchronously through the stack's Lambda Invoke API; its JSON result.
    A function error fails the test with the error."""
    function_error, payload = invoke_answer(lambda_client, function, event)
    assert function_error is None, f"{function} failed: {payload}"
    return payload


def http_answer(response: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(status code, JSON body) of a function URL response."""
    return response["statusCode"], json.loads(response.get("body") or "null")


def executions_of_store(sfn: Any, state_machine_arn: str, store_id: str) -> list[dict[str, Any]]:
    """DescribeExecution of every execution of `state_machine_arn` whose input names `store_id`
    (moto keeps executions for the whole session, so tests count only their own store's)."""
    found = []
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=state_machine_arn):
        for execution in page["executions"]:
            described = sfn.describe_execution(executionArn=execution["executionArn"])
            if json.loads(described.get("input") or "{}").get("CustomKeyStoreId") == store_id:
                found.append(described)
    return found


def execution_count(sfn: Any, state_machine_arns: list[str]) -> int:
    """How many executions the state machines have had (to prove none was started)."""
    return sum(
        len(page["executions"])
        for arn in state_machine_arns
        for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=arn)
    )


def kms_state(e2e: Any) -> dict[str, Any]:
    """The emulator's whole state (stores, keys with states, tags and deletion dates, deleted
    keys) without its clock reading, to compare before and after."""
    state = e2e.admin.state()
    state.pop("now", None)
    return state


def emulator_keys(e2e: Any, key_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The emulator's record of each key (state, prior base state, deletion date, tags, ...)."""
    records = {key["id"]: key for key in e2e.admin.state()["keys"]}
    return {key_id: records.get(key_id) for key_id in key_ids}


def emulator_store(e2e: Any, store_id: str) -> dict[str, Any] | None:
    """The emulator's record of a store (connection state, key count, ...), None once deleted."""
    return next((store for store in e2e.admin.state()["stores"] if store["id"] == store_id), None)


# --- The run ledger (test_run_ledger.py) ------------------------------------------------------


@functools.cache
def ledger_table() -> str:
    """The local stack's ledger table (the name the template gives the handlers)."""
    return ledger.ledger_table_name()


def store_ledger(e2e: Any, store_id: str) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]]]:
    """The ledger's partition of a store: (its lock item or None, its run records by execution ARN)."""
    lock, runs = ledger.split_store_partition(
        ledger.ledger_items(e2e.endpoint, ledger_table(), ledger.store_pk(store_id))
    )
    return lock, {run["Execution"]: run for run in runs}


def key_records(e2e: Any, execution_arn: str) -> dict[str, dict[str, Any]]:
    """The ledger's key records of a run, by key id."""
    items = ledger.ledger_items(e2e.endpoint, ledger_table(), ledger.run_pk(execution_arn))
    return {item["KeyId"]: item for item in items if str(item["sk"]).startswith(ledger.KEY_PREFIX)}


# --- The approval gate (test_approval.py) -----------------------------------------------------

APPROVAL_STATE = "WaitForApproval"


def current_state(events: list[dict[str, Any]]) -> str | None:
    """The state the execution entered last."""
    entered = workflow.states_entered(events)
    return entered[-1] if entered else None


def approval_request(e2e: Any, store_id: str, execution_arn: str, timeout: float = 60) -> dict[str, Any]:
    """Wait until the run waits for approval: the execution is in WaitForApproval and
    request-approval has recorded the task token in the run's ledger record; that record."""
    wait_for_state(e2e, execution_arn, APPROVAL_STATE, timeout)
    deadline = time.monotonic() + timeout
    while True:
        run = store_ledger(e2e, store_id)[1].get(execution_arn) or {}
        if run.get("ApprovalState") == "Requested" and run.get("ApprovalToken"):
            return run
        status = e2e.sfn.describe_execution(executionArn=execution_arn)["status"]
        assert status == "RUNNING", f"execution ended ({status}) before its approval was requested: {run}"
        assert time.monotonic() < deadline, f"no approval request in the ledger within {timeout} s: {run}"
        time.sleep(0.2)


def assert_waiting_for_approval(e2e: Any, execution_arn: str, seconds: float) -> None:
    """For `seconds`, the execution stays in WaitForApproval and KMS sees no change (the call log
    holds no mutating call)."""
    deadline = time.monotonic() + seconds
    while True:
        described = e2e.sfn.describe_execution(executionArn=execution_arn)
        state = current_state(workflow.history(e2e.sfn, execution_arn))
        assert (described["status"], state) == ("RUNNING", APPROVAL_STATE), failure(described)
        assert mutating_calls(e2e.admin.calls()) == [], "nothing changes in KMS while the run waits"
        if time.monotonic() >= deadline:
            return
        time.sleep(0.5)


# --- Who tagged: CloudTrail's API-call events (test_tag_identity.py, test_triggers.py) ----------

API_CALL_DETAIL_TYPE = "AWS API Call via CloudTrail"  # what EventBridge calls CloudTrail's events
CONFIRM_TAG_KEY = "DecommissionConfirmStoreName"  # the tag confirming a real run (decommission mode)


@dataclass(frozen=True)
class Principal:
    """A caller the session's KMS emulator knows by access key id (`--identity AKID=ARN`, seeded
    again by every reset, tests/e2e/conftest.py): whoever signs with `access_key_id` is recorded in
    CloudTrail as `arn`, with the `userIdentity` CloudTrail writes for it."""

    access_key_id: str
    arn: str

    @property
    def name(self) -> str:
        """The user or role-session name the ARN ends with (how a ticketing system names a person)."""
        return self.arn.rsplit("/", 1)[-1]


# The role the session's tag trigger allows (TAG_TRIGGER_ALLOWED_PRINCIPALS).
KEY_ADMIN_ROLE = f"arn:aws:iam::{LOCAL_ACCOUNT}:role/KeyAdmin"
# Two people with sessions of that role, ...
ALICE = Principal("ASIAE2EKEYADMINALICE", f"arn:aws:sts::{LOCAL_ACCOUNT}:assumed-role/KeyAdmin/alice@example.com")
BOB = Principal("ASIAE2EKEYADMINBOB", f"arn:aws:sts::{LOCAL_ACCOUNT}:assumed-role/KeyAdmin/bob@example.com")
# ... an IAM user who may tag keys but not start runs, and a session of a role whose name only
# begins like the allowed one (a prefix match would let it through).
MALLORY = Principal("AKIAE2EMALLORY", f"arn:aws:iam::{LOCAL_ACCOUNT}:user/mallory")
LOOK_ALIKE = Principal("ASIAE2EKEYADMINXEVE", f"arn:aws:sts::{LOCAL_ACCOUNT}:assumed-role/KeyAdminX/eve@example.com")
PRINCIPALS = (ALICE, BOB, MALLORY, LOOK_ALIKE)
# An application with its own credentials (an IAM user): it uses keys, and tries them during a
# quarantine (tests/e2e/test_quarantine.py).
PAYMENTS_APP = Principal("AKIAE2EPAYMENTSAPP", f"arn:aws:iam::{LOCAL_ACCOUNT}:user/payments-app")
APPLICATIONS = (PAYMENTS_APP,)

# How long a CloudTrail record may take to show in LookupEvents (the emulator's delivery delay is
# 0 unless a test sets it).
CLOUDTRAIL_TIMEOUT = 15.0
# LookupEvents is allowed 2 requests a second per account and Region (the emulator's quota too,
# shared with the product's own lookups): the tests' lookups keep at least this far apart, so they
# do not meet ThrottlingException (botocore would retry it, seconds later) nor cause the product's.
LOOKUP_INTERVAL_SECONDS = 0.55
_last_lookup = [0.0]  # time.monotonic() of the tests' last LookupEvents answer


@functools.cache
def _client_as(endpoint: str, service: str, access_key_id: str) -> Any:
    """A boto3 client of `service` on the stack, signing with `access_key_id`. KMS calls are not
    retried (a retried call would be a second CloudTrail record); CloudTrail's LookupEvents is
    (ThrottlingException, should another client use up the quota)."""
    attempts = 1 if service == "kms" else 5
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=LOCAL_REGION,
        aws_access_key_id=access_key_id,
        aws_secret_access_key="local",
        config=Config(retries={"mode": "standard", "max_attempts": attempts}, read_timeout=60),
    )


def kms_as(e2e: Any, principal: Principal) -> Any:
    """A KMS client of the stack whose calls `principal` makes."""
    return _client_as(e2e.endpoint, "kms", principal.access_key_id)


def lookup_events(e2e: Any, **params: Any) -> dict[str, Any]:
    """One CloudTrail LookupEvents call on the stack's endpoint, paced (LOOKUP_INTERVAL_SECONDS)."""
    wait = _last_lookup[0] + LOOKUP_INTERVAL_SECONDS - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    try:
        return _client_as(e2e.endpoint, "cloudtrail", "local").lookup_events(**params)
    finally:
        _last_lookup[0] = time.monotonic()


def cloudtrail_record(
    e2e: Any, event_name: str, request_id: str, timeout: float = CLOUDTRAIL_TIMEOUT
) -> dict[str, Any]:
    """The CloudTrail record of the `event_name` call answered with `request_id`, found with
    CloudTrail's LookupEvents (LookupAttributes EventName, newest first, page by page), as JSON;
    waits until it shows."""
    deadline = time.monotonic() + timeout
    while True:
        params: dict[str, Any] = {"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": event_name}]}
        while True:
            page = lookup_events(e2e, **params)
            for event in page["Events"]:
                record = json.loads(event["CloudTrailEvent"])
                if record.get("requestID") == request_id:
                    return record
            if not page.get("NextToken"):
                break
            params["NextToken"] = page["NextToken"]
        assert time.monotonic() < deadline, f"no CloudTrail record of {event_name} {request_id} within {timeout} s"


def api_call_event(record: dict[str, Any]) -> dict[str, Any]:
    """A CloudTrail record as EventBridge delivers it ("AWS API Call via CloudTrail": the record is
    the `detail`, the source `aws.<service>`, the time the call's)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": API_CALL_DETAIL_TYPE,
        "source": "aws." + record["eventSource"].split(".", 1)[0],
        "account": record["recipientAccountId"],
        "time": record["eventTime"],
        "region": record["awsRegion"],
        "resources": [],
        "detail": record,
    }


def call_as(e2e: Any, principal: Principal, method: str, fails_with: str | None = None, **params: Any) -> dict:
    """Make the KMS call `method` (boto3's name, e.g. "untag_resource") as `principal`; the event
    EventBridge delivers for it, built from the emulator's CloudTrail record of the call (who
    called, from where, with what, and how it failed are the emulator's, never written here).
    `fails_with`: the error the call must fail with (else it must succeed)."""
    kms = kms_as(e2e, principal)
    try:
        answer = getattr(kms, method)(**params)
    except ClientError as err:
        code = err.response["Error"]["Code"]
        assert code == fails_with, f"{method} as {principal.arn} failed: {err}"
        answer = err.response
    else:
        assert fails_with is None, f"{method} as {principal.arn} succeeded; expected {fails_with}"
    record = cloudtrail_record(e2e, kms.meta.method_to_api_mapping[method], answer["ResponseMetadata"]["RequestId"])
    assert record["userIdentity"]["arn"] == principal.arn, record["userIdentity"]
    return api_call_event(record)


def tag_as(
    e2e: Any, principal: Principal, key_id: str, tags: dict[str, str], fails_with: str | None = None
) -> dict[str, Any]:
    """TagResource of `tags` (in one call) on `key_id` as `principal`; the API-call event
    EventBridge delivers for it (call_as)."""
    tag_list = [{"TagKey": k, "TagValue": v} for k, v in tags.items()]
    return call_as(e2e, principal, "tag_resource", fails_with, KeyId=key_id, Tags=tag_list)


# --- Status events through a subscription (test_status_events.py, test_tag_identity.py, ...) ---

STATUS_SOURCE = "kms-decommission"  # the template's StatusEventSource default
TRIGGER_REFUSED_DETAIL_TYPE = "KMS Custom Key Store Decommission Trigger Refused"


@dataclass
class Subscription:
    """An SQS queue receiving every status event through an EventBridge rule on the default bus,
    as a ticketing system's subscription would."""

    sqs: Any
    queue_url: str
    received: list[dict[str, Any]] = field(default_factory=list)

    def _receive(self) -> None:
        """Move what the queue holds (waiting up to a second) to `received`."""
        answer = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in answer.get("Messages", []):
            self.received.append(json.loads(message["Body"]))
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def events_of(self, execution_arn: str, until: str, timeout: float = 120) -> list[dict[str, Any]]:
        """The status events of one execution, in the order received, once `until` has arrived."""
        deadline = time.monotonic() + timeout
        while True:
            self._receive()
            mine = [e for e in self.received if (e["detail"].get("Execution") or {}).get("Id") == execution_arn]
            if any(e["detail"]["Milestone"] == until for e in mine):
                return mine
            assert time.monotonic() < deadline, (
                f"no {until} event within {timeout} s; got {[e['detail']['Milestone'] for e in mine]}"
            )

    def trigger_refusals(self, event_id: str, timeout: float = 30) -> list[dict[str, Any]]:
        """The TriggerRefused status events of the trigger event `event_id`, once one has arrived."""
        deadline = time.monotonic() + timeout
        while True:
            self._receive()
            mine = [
                e
                for e in self.received
                if e["detail"].get("Milestone") == "TriggerRefused" and e["detail"].get("EventId") == event_id
            ]
            if mine:
                return mine
            assert time.monotonic() < deadline, f"no TriggerRefused event for event {event_id} within {timeout} s"


@contextmanager
def subscribe(endpoint: str) -> Iterator[Subscription]:
    """A Subscription to the status events (source STATUS_SOURCE) for the block's duration."""
    common = {
        "endpoint_url": endpoint,
        "region_name": LOCAL_REGION,
        "aws_access_key_id": "local",
        "aws_secret_access_key": "local",
    }
    sqs, events = boto3.client("sqs", **common), boto3.client("events", **common)
    name = f"status-events-{uuid.uuid4().hex[:12]}"
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=name, EventPattern=json.dumps({"source": [STATUS_SOURCE]}))
    events.put_targets(Rule=name, Targets=[{"Id": "queue", "Arn": queue_arn}])
    try:
        yield Subscription(sqs, queue_url)
    finally:
        events.remove_targets(Rule=name, Ids=["queue"])
        events.delete_rule(Name=name)
        sqs.delete_queue(QueueUrl=queue_url)
