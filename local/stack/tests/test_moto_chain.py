"""moto's Step Functions interpreter, in server mode behind the router, invokes Lambda through the
Invoke adapter: handler errorTypes become Step Functions error names that Retry and Catch match.

The handlers here are a stand-in for `cargo lambda watch` (the adapter's input); the real
binaries are exercised by tests/e2e."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest

from local.stack.invoke_adapter import InvokeAdapter
from local.stack.launcher import configure_moto
from local.stack.processes import ManagedProcess, free_port
from local.stack.router import Router, RouterServer, Upstream
from local.stack.sfn_compat import name_unnamed_execution
from local.stack.tests.fake_servers import FakeServer

REGION, ACCOUNT = "us-east-1", "123456789012"


def _fn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


RETRY = {"ErrorEquals": ["KMSInternalException"], "IntervalSeconds": 1, "BackoffRate": 1.0, "MaxAttempts": 3}
CATCH = {"ErrorEquals": ["States.ALL"], "ResultPath": "$.Failure", "Next": "Failed"}
DEFINITION = {
    "StartAt": "Step",
    "States": {
        "Step": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName.$": "$.Function", "Payload.$": "$"},
            "OutputPath": "$.Payload",
            "Retry": [RETRY],
            "Catch": [CATCH],
            "End": True,
        },
        "Failed": {"Type": "Fail", "ErrorPath": "$.Failure.Error", "CausePath": "$.Failure.Cause"},
    },
}


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    calls: dict[str, int] = {}

    def handler(request):
        name = request.path.split("/")[3]
        calls[name] = calls.get(name, 0) + 1
        if name == "flaky" and calls[name] <= 2:
            return 500, {}, json.dumps({"errorType": "KMSInternalException", "errorMessage": "try again"}).encode()
        if name == "refuses":
            return (
                500,
                {},
                json.dumps({"errorType": "KeysNotPendingDeletion", "errorMessage": "key 1234 is Enabled"}).encode(),
            )
        return 200, {}, json.dumps({"Done": True, "Calls": calls[name]}).encode()

    watch = FakeServer(handler)
    router_port, moto_port = free_port(), free_port()
    moto = ManagedProcess(
        "moto",
        [str(Path(sys.prefix) / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
        tmp_path_factory.mktemp("logs") / "moto.log",
        env={**os.environ, "MOTO_PORT": str(router_port)},
    )
    moto.start()
    adapter = InvokeAdapter("127.0.0.1", watch.port, {"flaky": 30, "refuses": 30, "fine": 30}, REGION, ACCOUNT)
    upstream = Upstream("127.0.0.1", moto_port)
    router = Router(
        kms=Upstream("127.0.0.1", free_port()),
        lambda_invoke=adapter.handle,
        moto=lambda request: upstream(name_unnamed_execution(request)),
    )
    server = RouterServer(("127.0.0.1", router_port), router)
    server.start_in_thread()
    try:
        moto.wait_for_port("127.0.0.1", moto_port, 60)
        configure_moto("127.0.0.1", moto_port)
        sfn = boto3.client(
            "stepfunctions",
            endpoint_url=f"http://127.0.0.1:{router_port}",
            region_name=REGION,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        machine = sfn.create_state_machine(
            name="chain", definition=json.dumps(DEFINITION), roleArn=f"arn:aws:iam::{ACCOUNT}:role/chain"
        )["stateMachineArn"]
        yield sfn, machine, calls
    finally:
        server.shutdown()
        server.server_close()
        moto.stop()
        watch.close()


def _run(sfn, machine: str, function: str) -> tuple[dict, list[dict]]:
    execution = sfn.start_execution(
        stateMachineArn=machine, name=f"{function}-{uuid.uuid4()}", input=json.dumps({"Function": _fn(function)})
    )["executionArn"]
    deadline = time.monotonic() + 60
    while True:
        described = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            break
        assert time.monotonic() < deadline, "execution still RUNNING after 60 s"
        time.sleep(0.2)
    return described, sfn.get_execution_history(executionArn=execution)["events"]


def test_retry_on_handler_error_type_then_success(chain):
    sfn, machine, calls = chain
    described, events = _run(sfn, machine, "flaky")
    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"]) == {"Done": True, "Calls": 3}
    failures = [e["taskFailedEventDetails"]["error"] for e in events if e["type"] == "TaskFailed"]
    assert failures == ["KMSInternalException", "KMSInternalException"]
    assert calls["flaky"] == 3


def test_product_error_name_and_cause_reach_the_execution_failure(chain):
    sfn, machine, calls = chain
    described, _ = _run(sfn, machine, "refuses")
    assert described["status"] == "FAILED"
    assert described["error"] == "KeysNotPendingDeletion"
    assert "key 1234 is Enabled" in described["cause"]
    assert calls["refuses"] == 1  # not retried: only KMSInternalException is


def test_unknown_function_fails_the_task_without_retry(chain):
    sfn, machine, _ = chain
    described, _ = _run(sfn, machine, "no-such-function")
    assert described["status"] == "FAILED"
    assert "ResourceNotFound" in described["error"] + described.get("cause", "")


def test_unnamed_executions_get_distinct_names_as_on_aws(chain):
    sfn, machine, _ = chain
    arns = [
        sfn.start_execution(stateMachineArn=machine, input=json.dumps({"Function": _fn("fine")}))["executionArn"]
        for _ in range(2)
    ]
    assert arns[0] != arns[1]
    assert not any(arn.endswith(":None") for arn in arns)
