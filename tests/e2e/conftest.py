"""End-to-end fixtures: one local stack for the whole session (the real ASL in moto's interpreter,
the real handler binaries under cargo lambda watch, the KMS emulator), reset between tests.

Set E2E_ENDPOINT=http://127.0.0.1:4566 to run against a stack you started yourself with
`make local ARGS="--day-seconds 1"`; otherwise the session starts and stops its own. Such a stack
has the local defaults, not E2E_HANDLER_CONFIG and EMULATOR_IDENTITIES below: the scenarios that
depend on them (approval, the tag trigger's decommission mode, who tagged) fail there."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from helpers import APPLICATIONS, KEY_ADMIN_ROLE, PRINCIPALS, Subscription, subscribe
from local.client import workflow
from local.stack.launcher import LOCAL_HANDLER_CONFIG, RUN_DIR, LocalStack, StackConfig
from local.stack.processes import free_port
from local.stack.template import LOCAL_ACCOUNT, LOCAL_REGION

# An emulated day lasts DAY_SECONDS: a 7-day window takes 7 s.
DAY_SECONDS = 1.0
# The handlers' environment for the session, on top of the local stack's (LOCAL_HANDLER_CONFIG).
# - The stack's default (template.yaml) makes console and webhook runs wait for approval; the
#   scenarios that are not about approval start runs that do not wait (tag-started runs and runs
#   asking for it with RequireApproval still do: tests/e2e/test_approval.py). An unanswered
#   approval ends the run after APPROVAL_TIMEOUT_DAYS (0.0003 days, 26 s).
# - The webhook reads its secret from SSM again once it is a second old (default 300 s), so a
#   rotation or a deleted parameter shows within the test (tests/e2e/test_webhook_hardening.py).
# - The trigger policy keeps its defaults: POLICY_MIN_PENDING_WINDOW_DAYS above 7 would refuse the
#   7-day webhook start of test_approval.py.
# - The tag trigger runs in decommission mode, the mode in which a tag can start a real run: only
#   CloudTrail's TagResource API-call events count there, since only they name who tagged, and
#   the tagger must match TAG_TRIGGER_ALLOWED_PRINCIPALS. The session allows the role KeyAdmin
#   (its sessions, e.g. alice's, match through sessionContext.sessionIssuer.arn); the emulator
#   knows who signs as whom (EMULATOR_IDENTITIES) and records it in CloudTrail, and the tests turn
#   those records into the events EventBridge would deliver (helpers.tag_as). The default dry-run
#   mode (Tag Change events, nobody named) is left to the Rust tests (tests/triggers_local.rs).
E2E_HANDLER_CONFIG = {
    "APPROVAL_REQUIRED_FOR_CONSOLE_AND_WEBHOOK": "false",
    "APPROVAL_TIMEOUT_DAYS": "0.0003",
    "WEBHOOK_SECRET_CACHE_SECONDS": "1",
    "TRIGGER_MODE": "decommission",
    "TAG_TRIGGER_ALLOWED_PRINCIPALS": KEY_ADMIN_ROLE,
}
# The callers the KMS emulator knows by access key id (helpers.PRINCIPALS: alice and bob, sessions of
# KeyAdmin; mallory, an IAM user; eve, a session of the look-alike role KeyAdminX; and
# helpers.APPLICATIONS: payments-app, an IAM user whose key use a quarantine catches). Given as
# flags, they are seeded again by every reset (identities added with the admin API would not be).
EMULATOR_IDENTITIES = [
    arg for p in (*PRINCIPALS, *APPLICATIONS) for arg in ("--identity", f"{p.access_key_id}={p.arn}")
]
# Longest a scenario may take; far above what any needs, so a hang fails instead of blocking CI.
EXECUTION_TIMEOUT = 300


@dataclass
class E2E:
    """What a scenario works with."""

    endpoint: str
    kms: Any
    sfn: Any
    admin: workflow.Admin
    state_machine_arn: str
    baseline_settings: dict[str, Any] = field(default_factory=dict)

    def run(self, document: dict[str, Any]) -> str:
        """Start an execution of the decommission state machine; return its ARN."""
        return workflow.start_execution(self.sfn, self.state_machine_arn, document)

    def finish(
        self, execution_arn: str, timeout: float = EXECUTION_TIMEOUT
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Wait for the execution's end; return (DescribeExecution, history events)."""
        described = workflow.wait_for_end(self.sfn, execution_arn, timeout)
        return described, workflow.history(self.sfn, execution_arn)


@pytest.fixture(scope="session")
def stack_endpoint():
    external = os.environ.get("E2E_ENDPOINT")
    if external:
        yield external.rstrip("/")
        return
    # A run directory of its own (handlers.env, webhook secret, logs): another stack running at the
    # same time (make local, make demo, a second test session) keeps its own.
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="e2e-", dir=RUN_DIR))
    config = StackConfig(
        port=free_port(),
        day_seconds=DAY_SECONDS,
        emulator_args=EMULATOR_IDENTITIES,
        run_dir=run_dir,
        handler_env={**LOCAL_HANDLER_CONFIG, **E2E_HANDLER_CONFIG},
    )
    with LocalStack(config) as stack:
        yield stack.endpoint


@pytest.fixture(scope="session")
def e2e_session(stack_endpoint):
    kms, sfn = workflow.clients(stack_endpoint)
    arn = f"arn:aws:states:{LOCAL_REGION}:{LOCAL_ACCOUNT}:stateMachine:kms-decommission"
    admin = workflow.Admin(stack_endpoint)
    return E2E(stack_endpoint, kms, sfn, admin, arn, baseline_settings=admin.call("GET", "config"))


@pytest.fixture
def e2e(e2e_session):
    """The stack with an empty emulator; afterwards running executions are stopped and the
    emulator's settings and faults restored."""
    e2e_session.admin.reset()
    yield e2e_session
    for page in e2e_session.sfn.get_paginator("list_executions").paginate(
        stateMachineArn=e2e_session.state_machine_arn, statusFilter="RUNNING"
    ):
        for execution in page["executions"]:
            e2e_session.sfn.stop_execution(
                executionArn=execution["executionArn"], error="TestEnded", cause="the test ended"
            )
    e2e_session.admin.clear_faults()
    e2e_session.admin.configure(**e2e_session.baseline_settings)


# --- Triggers and the cancel workflow (test_triggers.py, test_cancel.py) ----------------------

CANCEL_STATE_MACHINE_ARN = f"arn:aws:states:{LOCAL_REGION}:{LOCAL_ACCOUNT}:stateMachine:kms-decommission-cancel"
# The template's WebhookSecretParameterName default; the stack stores the secret there in SSM.
WEBHOOK_SECRET_PARAMETER = "/kms-decommission/webhook-secret"


@dataclass
class TriggerStack:
    """The e2e stack plus what the trigger and cancel scenarios use: the Lambda Invoke API, the
    webhook's shared secret (read back from SSM, where the function reads it), the cancel machine."""

    e2e: E2E
    lambda_client: Any
    webhook_secret: str
    cancel_state_machine_arn: str = CANCEL_STATE_MACHINE_ARN

    def cancel(self, document: dict[str, Any], name: str | None = None) -> str:
        """Start an execution of the cancel state machine as a console user would; its ARN."""
        return workflow.start_execution(
            self.e2e.sfn, self.cancel_state_machine_arn, document, name or f"cancel-{uuid.uuid4().hex[:12]}"
        )


@pytest.fixture(scope="session")
def trigger_stack_session(e2e_session, stack_endpoint):
    common = {
        "endpoint_url": stack_endpoint,
        "region_name": LOCAL_REGION,
        "aws_access_key_id": "local",
        "aws_secret_access_key": "local",
    }
    # No SDK retries: a retried Invoke would run the handler twice and hide what one delivery does.
    lambda_client = boto3.client(
        "lambda", config=Config(retries={"mode": "standard", "max_attempts": 1}, read_timeout=120), **common
    )
    parameter = boto3.client("ssm", **common).get_parameter(Name=WEBHOOK_SECRET_PARAMETER, WithDecryption=True)
    secret = parameter["Parameter"]["Value"]
    return TriggerStack(e2e_session, lambda_client, secret.strip())


@pytest.fixture
def trigger_stack(e2e, trigger_stack_session):
    """`e2e` (emptied emulator) for trigger and cancel scenarios; afterwards running cancel
    executions are stopped too (before `e2e` stops decommissions and restores the emulator)."""
    yield trigger_stack_session
    sfn = trigger_stack_session.e2e.sfn
    for page in sfn.get_paginator("list_executions").paginate(
        stateMachineArn=CANCEL_STATE_MACHINE_ARN, statusFilter="RUNNING"
    ):
        for execution in page["executions"]:
            sfn.stop_execution(executionArn=execution["executionArn"], error="TestEnded", cause="the test ended")


# --- Status events (test_status_events.py, test_webhook_hardening.py, test_tag_identity.py) ---


@pytest.fixture
def subscription(e2e) -> Iterator[Subscription]:
    """Every status event, through an EventBridge rule on the default bus to an SQS queue, for the
    test's duration."""
    with subscribe(e2e.endpoint) as subscribed:
        yield subscribed
