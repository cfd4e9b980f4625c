"""End-to-end fixtures: one local stack for the whole session (the real ASL in moto's interpreter,
the real handler binaries under cargo lambda watch, the KMS emulator), reset between tests.

Set E2E_ENDPOINT=http://127.0.0.1:4566 to run against a stack you started yourself with
`make local ARGS="--day-seconds 1"`; otherwise the session starts and stops its own."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pytest

from local import workflow
from local.processes import free_port
from local.stack import LocalStack, StackConfig
from local.template import LOCAL_ACCOUNT, LOCAL_REGION

# An emulated day lasts DAY_SECONDS: a 7-day window takes 7 s.
DAY_SECONDS = 1.0
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

    def finish(self, execution_arn: str, timeout: float = EXECUTION_TIMEOUT) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Wait for the execution's end; return (DescribeExecution, history events)."""
        described = workflow.wait_for_end(self.sfn, execution_arn, timeout)
        return described, workflow.history(self.sfn, execution_arn)


@pytest.fixture(scope="session")
def stack_endpoint():
    external = os.environ.get("E2E_ENDPOINT")
    if external:
        yield external.rstrip("/")
        return
    config = StackConfig(port=free_port(), day_seconds=DAY_SECONDS)
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
    for page in e2e_session.sfn.get_paginator("list_executions").paginate(stateMachineArn=e2e_session.state_machine_arn, statusFilter="RUNNING"):
        for execution in page["executions"]:
            e2e_session.sfn.stop_execution(executionArn=execution["executionArn"], error="TestEnded", cause="the test ended")
    e2e_session.admin.clear_faults()
    e2e_session.admin.configure(**e2e_session.baseline_settings)
