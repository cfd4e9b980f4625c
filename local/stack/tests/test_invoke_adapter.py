"""The Lambda Invoke adapter answers like the real Invoke API in front of `cargo lambda watch`."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.config import Config

from local.stack.http_message import Request
from local.stack.invoke_adapter import InvokeAdapter
from local.stack.processes import free_port
from local.stack.router import Router, RouterServer, Upstream
from local.stack.tests.fake_servers import fake_cargo_lambda_watch

REGION = "us-east-1"
ACCOUNT = "123456789012"
ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:plan-decommission"


@pytest.fixture
def watch():
    server = fake_cargo_lambda_watch({"plan-decommission", "delete-store", "slow-function"})
    yield server
    server.close()


@pytest.fixture
def adapter(watch):
    return InvokeAdapter(
        "127.0.0.1", watch.port, {"plan-decommission": 300, "delete-store": 60, "slow-function": 1}, REGION, ACCOUNT
    )


def invoke(
    adapter: InvokeAdapter, name: str, payload: object, headers: list[tuple[str, str]] | None = None, query: str = ""
):
    path = f"/2015-03-31/functions/{name}/invocations{query}"
    return adapter.handle(Request("POST", path, headers or [], json.dumps(payload).encode()))


@pytest.mark.parametrize(
    "name",
    [
        ARN,
        "plan-decommission",
        f"{ACCOUNT}:function:plan-decommission",
        f"{ARN}:$LATEST",
        "plan-decommission:$LATEST",
        ARN.replace(":", "%3A"),
    ],
)
def test_every_function_name_form_reaches_the_binary(adapter, watch, name):
    answer = invoke(adapter, name, {"a": 1})
    assert answer.status == 200
    assert json.loads(answer.body) == {"function": "plan-decommission", "echo": {"a": 1}}
    assert watch.requests[-1].path == "/2015-03-31/functions/plan-decommission/invocations"
    assert answer.header("X-Amz-Executed-Version") == "$LATEST"
    assert answer.header("x-amzn-RequestId")
    assert answer.header("X-Amz-Function-Error") is None


def test_request_ids_differ_between_invocations(adapter):
    first = invoke(adapter, ARN, {}).header("x-amzn-RequestId")
    second = invoke(adapter, ARN, {}).header("x-amzn-RequestId")
    assert first != second


def test_handler_error_becomes_200_with_function_error_and_the_runtime_body(adapter):
    answer = invoke(adapter, ARN, {"fail": "KMSInternalException"})
    assert answer.status == 200
    assert answer.header("X-Amz-Function-Error") == "Unhandled"
    assert json.loads(answer.body) == {"errorType": "KMSInternalException", "errorMessage": "the handler failed"}
    assert answer.header("x-amzn-RequestId")


def test_unknown_function_is_resource_not_found_and_never_reaches_watch(adapter, watch):
    answer = invoke(adapter, "arn:aws:lambda:us-east-1:123456789012:function:no-such-function", {})
    assert answer.status == 404
    assert answer.header("x-amzn-ErrorType") == "ResourceNotFoundException"
    assert "no-such-function" in json.loads(answer.body)["message"]
    assert watch.requests == []


@pytest.mark.parametrize(
    "name",
    [
        "arn:aws:lambda:eu-west-1:123456789012:function:plan-decommission",  # another Region
        "arn:aws:lambda:us-east-1:999999999999:function:plan-decommission",  # another account
        "plan-decommission:live",  # an alias: only $LATEST exists locally
    ],
)
def test_functions_outside_the_local_stack_are_not_found(adapter, watch, name):
    answer = invoke(adapter, name, {})
    assert answer.status == 404
    assert answer.header("x-amzn-ErrorType") == "ResourceNotFoundException"
    assert watch.requests == []


def test_qualifier_query_that_contradicts_the_name_is_a_validation_error(adapter, watch):
    answer = invoke(adapter, "plan-decommission:$LATEST", {}, query="?Qualifier=live")
    assert answer.status == 400
    assert answer.header("x-amzn-ErrorType") == "ValidationException"
    assert watch.requests == []


def test_malformed_function_name_is_a_validation_error(adapter, watch):
    answer = invoke(adapter, "not%20a%20name", {})
    assert answer.status == 400
    assert answer.header("x-amzn-ErrorType") == "ValidationException"
    assert watch.requests == []


def test_event_invocation_answers_202_and_runs_the_handler(adapter, watch):
    answer = invoke(adapter, ARN, {"async": True}, headers=[("X-Amz-Invocation-Type", "Event")])
    assert answer.status == 202
    assert answer.body == b""
    adapter.wait_for_background(10)
    assert [json.loads(r.body) for r in watch.requests] == [{"async": True}]


def test_dry_run_answers_204_without_running_anything(adapter, watch):
    answer = invoke(adapter, ARN, {}, headers=[("X-Amz-Invocation-Type", "DryRun")])
    assert answer.status == 204
    assert watch.requests == []


def test_unsupported_invocation_type_is_rejected(adapter, watch):
    answer = invoke(adapter, ARN, {}, headers=[("X-Amz-Invocation-Type", "Sometimes")])
    assert answer.status == 400
    assert answer.header("x-amzn-ErrorType") == "InvalidParameterValueException"
    assert watch.requests == []


def test_invocation_longer_than_the_function_timeout_is_sandbox_timedout(adapter, monkeypatch):
    monkeypatch.setattr("local.stack.invoke_adapter.TIMEOUT_GRACE_SECONDS", 0.0)
    answer = invoke(adapter, "slow-function", {"sleep": 3})
    assert answer.status == 200
    assert answer.header("X-Amz-Function-Error") == "Unhandled"
    assert json.loads(answer.body)["errorType"] == "Sandbox.Timedout"


def test_watch_answer_that_is_not_a_handler_result_is_a_service_exception(adapter):
    answer = invoke(adapter, ARN, {"crash": True})
    assert answer.status == 500
    assert answer.header("x-amzn-ErrorType") == "ServiceException"
    assert "failed to spawn function" in json.loads(answer.body)["message"]


def test_watch_not_running_is_a_service_exception_naming_it():
    adapter = InvokeAdapter("127.0.0.1", free_port(), {"plan-decommission": 300}, REGION, ACCOUNT)
    answer = invoke(adapter, ARN, {})
    assert answer.status == 502
    assert answer.header("x-amzn-ErrorType") == "ServiceException"
    assert "cargo lambda watch" in json.loads(answer.body)["message"]


def test_boto3_sees_a_function_error_once_and_does_not_retry(adapter, watch):
    """Through the router, the way moto's interpreter and the AWS SDKs call Lambda."""
    router = Router(
        kms=Upstream("127.0.0.1", free_port()), lambda_invoke=adapter.handle, moto=Upstream("127.0.0.1", free_port())
    )
    server = RouterServer(("127.0.0.1", 0), router)
    server.start_in_thread()
    try:
        client = boto3.client(
            "lambda",
            endpoint_url=f"http://127.0.0.1:{server.port}",
            region_name=REGION,
            aws_access_key_id="local",
            aws_secret_access_key="local",
            config=Config(retries={"mode": "standard", "max_attempts": 5}),
        )
        failed = client.invoke(FunctionName=ARN, Payload=json.dumps({"fail": "KeysNotPendingDeletion"}).encode())
        assert failed["StatusCode"] == 200
        assert failed["FunctionError"] == "Unhandled"
        assert json.loads(failed["Payload"].read())["errorType"] == "KeysNotPendingDeletion"
        assert failed["ExecutedVersion"] == "$LATEST"
        assert len(watch.requests) == 1  # a 500 would have been retried by the SDK

        ok = client.invoke(FunctionName=ARN, Payload=b'{"x": 2}')
        assert "FunctionError" not in ok
        assert json.loads(ok["Payload"].read()) == {"function": "plan-decommission", "echo": {"x": 2}}

        with pytest.raises(client.exceptions.ResourceNotFoundException):
            client.invoke(FunctionName="arn:aws:lambda:us-east-1:123456789012:function:missing", Payload=b"{}")
        queued = client.invoke(FunctionName="delete-store", InvocationType="Event", Payload=b"{}")
        assert queued["StatusCode"] == 202
    finally:
        server.shutdown()
        server.server_close()
