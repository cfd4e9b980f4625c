"""The router sends each request to the service that answers it, on one endpoint."""

from __future__ import annotations

import http.client
import json

import boto3
import pytest

from local.stack.http_message import Response
from local.stack.processes import free_port
from local.stack.router import Backend, Router, RouterServer, Upstream, choose_backend
from local.stack.tests.fake_servers import FakeServer


@pytest.mark.parametrize(
    ("method", "path", "target", "backend"),
    [
        ("POST", "/", "TrentService.DescribeCustomKeyStores", Backend.KMS),
        ("POST", "/", "TrentService.ScheduleKeyDeletion", Backend.KMS),
        ("POST", "/", "CloudTrail_20131101.LookupEvents", Backend.KMS),
        ("POST", "/", "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents", Backend.KMS),
        ("POST", "/", "CloudTrail_20131101.DescribeTrails", Backend.KMS),
        ("POST", "/", "CloudTrail_20131101", Backend.MOTO),
        ("POST", "/", "Logs_20140328.StartQuery", Backend.KMS),
        ("POST", "/", "Logs_20140328.GetQueryResults", Backend.KMS),
        ("POST", "/", "Logs_20140328.StopQuery", Backend.KMS),
        ("POST", "/", "Logs_20140328.CreateLogGroup", Backend.MOTO),
        ("POST", "/", "Logs_20140328.PutLogEvents", Backend.MOTO),
        ("POST", "/", "Logs_20140328.DescribeQueries", Backend.MOTO),
        ("GET", "/_emulator/state", None, Backend.KMS),
        ("POST", "/_emulator/faults", None, Backend.KMS),
        ("POST", "/2015-03-31/functions/plan-decommission/invocations", None, Backend.LAMBDA),
        (
            "POST",
            "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Ax/invocations",
            None,
            Backend.LAMBDA,
        ),
        ("POST", "/", "AWSStepFunctions.StartExecution", Backend.MOTO),
        ("POST", "/", "DynamoDB_20120810.PutItem", Backend.MOTO),
        ("POST", "/", "AmazonSSM.GetParameter", Backend.MOTO),
        ("POST", "/moto-api/config", None, Backend.MOTO),
        ("GET", "/2015-03-31/functions/", None, Backend.MOTO),  # ListFunctions is not an invoke
        ("GET", "/_emulatorx", None, Backend.MOTO),
    ],
)
def test_choose_backend(method, path, target, backend):
    assert choose_backend(method, path, target) is backend


STS_SIGNED = (
    "AWS4-HMAC-SHA256 Credential=ASIAALICE/20261130/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=ab"
)
CFN_SIGNED = STS_SIGNED.replace("/sts/", "/cloudformation/")


@pytest.mark.parametrize(
    ("authorization", "target", "backend"),
    [
        # STS (GetCallerIdentity): the emulator knows who signs as whom.
        (STS_SIGNED, None, Backend.KMS),
        # CloudFormation (the stack outputs the command line reads) and unsigned calls: moto.
        (CFN_SIGNED, None, Backend.MOTO),
        (None, None, Backend.MOTO),
        ("Bearer x", None, Backend.MOTO),
        # A JSON-protocol call is routed by its target whatever the signature says.
        (STS_SIGNED, "AWSStepFunctions.StartExecution", Backend.MOTO),
    ],
)
def test_sts_goes_to_the_emulator_by_its_signing_service(authorization, target, backend):
    assert choose_backend("POST", "/", target, authorization) is backend


def _named(name: str) -> FakeServer:
    return FakeServer(
        lambda request: (
            200,
            {"content-type": "application/json"},
            json.dumps({"backend": name, "path": request.path}).encode(),
        )
    )


@pytest.fixture
def stack():
    kms, moto = _named("kms"), _named("moto")
    invokes = []

    def lambda_invoke(request):
        invokes.append(request)
        return Response(200, [("Content-Type", "application/json")], b'{"backend": "lambda"}')

    server = RouterServer(
        ("127.0.0.1", 0),
        Router(kms=Upstream("127.0.0.1", kms.port), lambda_invoke=lambda_invoke, moto=Upstream("127.0.0.1", moto.port)),
    )
    server.start_in_thread()
    yield server, kms, moto, invokes
    server.shutdown()
    server.server_close()
    kms.close()
    moto.close()


def _client(server, service):
    return boto3.client(
        service,
        endpoint_url=f"http://127.0.0.1:{server.port}",
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def test_sdk_calls_reach_their_service_with_headers_and_body_intact(stack):
    server, kms, moto, invokes = stack
    _client(server, "kms").describe_custom_key_stores(CustomKeyStoreId="cks-1234567890abcdef0")
    assert len(kms.requests) == 1
    sent = kms.requests[0]
    assert sent.headers["x-amz-target"] == "TrentService.DescribeCustomKeyStores"
    assert "authorization" in sent.headers
    assert json.loads(sent.body) == {"CustomKeyStoreId": "cks-1234567890abcdef0"}

    _client(server, "stepfunctions").list_state_machines()
    assert moto.requests[0].headers["x-amz-target"] == "AWSStepFunctions.ListStateMachines"
    assert len(kms.requests) == 1

    _client(server, "dynamodb").get_item(TableName="ledger", Key={"pk": {"S": "STORE#cks-1"}, "sk": {"S": "LOCK"}})
    assert moto.requests[1].headers["x-amz-target"] == "DynamoDB_20120810.GetItem"
    assert json.loads(moto.requests[1].body)["Key"]["pk"] == {"S": "STORE#cks-1"}

    _client(server, "lambda").invoke(FunctionName="plan-decommission", Payload=b"{}")
    assert len(invokes) == 1
    assert len(kms.requests) == 1 and len(moto.requests) == 2


def test_cloudtrail_lookup_events_goes_to_the_kms_emulator(stack):
    server, kms, moto, _ = stack
    _client(server, "cloudtrail").lookup_events(
        LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "Decrypt"}], MaxResults=5
    )
    assert len(kms.requests) == 1
    sent = kms.requests[0]
    assert sent.headers["x-amz-target"] == "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents"
    assert json.loads(sent.body) == {
        "LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "Decrypt"}],
        "MaxResults": 5,
    }
    assert moto.requests == []


def test_logs_insights_queries_go_to_the_kms_emulator_and_other_logs_calls_to_moto(stack):
    server, kms, moto, _ = stack
    logs = _client(server, "logs")
    logs.start_query(logGroupName="trail", startTime=1, endTime=2, queryString="fields eventID")
    logs.get_query_results(queryId="q")
    logs.stop_query(queryId="q")
    targets = [r.headers["x-amz-target"] for r in kms.requests]
    assert targets == ["Logs_20140328.StartQuery", "Logs_20140328.GetQueryResults", "Logs_20140328.StopQuery"]
    assert json.loads(kms.requests[0].body) == {
        "logGroupName": "trail",
        "startTime": 1,
        "endTime": 2,
        "queryString": "fields eventID",
    }
    assert moto.requests == []
    logs.create_log_group(logGroupName="other")
    assert len(kms.requests) == 3 and len(moto.requests) == 1


def test_admin_api_goes_to_the_emulator(stack):
    server, kms, moto, _ = stack
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", "/_emulator/state?verbose=1")
    answer = connection.getresponse()
    assert json.loads(answer.read()) == {"backend": "kms", "path": "/_emulator/state?verbose=1"}
    assert moto.requests == []


def test_chunked_request_body_is_passed_on_whole(stack):
    server, kms, _, _ = stack
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.putrequest("POST", "/")
    connection.putheader("X-Amz-Target", "TrentService.ListKeys")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    for chunk in (b'{"Lim', b'it": 5}'):
        connection.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    connection.send(b"0\r\n\r\n")
    answer = connection.getresponse()
    assert answer.status == 200
    answer.read()
    assert json.loads(kms.requests[0].body) == {"Limit": 5}
    assert kms.requests[0].headers["content-length"] == str(len(b'{"Limit": 5}'))


def test_keep_alive_connection_serves_several_requests(stack):
    server, kms, _, _ = stack
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    for _ in range(3):
        connection.request("POST", "/", body=b"{}", headers={"X-Amz-Target": "TrentService.ListKeys"})
        answer = connection.getresponse()
        assert answer.status == 200
        answer.read()
    assert len(kms.requests) == 3


def test_backend_down_gives_a_named_502():
    server = RouterServer(
        ("127.0.0.1", 0),
        Router(
            kms=Upstream("127.0.0.1", free_port()),
            lambda_invoke=lambda r: Response(200),
            moto=Upstream("127.0.0.1", free_port()),
        ),
    )
    server.start_in_thread()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("POST", "/", body=b"{}", headers={"X-Amz-Target": "TrentService.ListKeys"})
        answer = connection.getresponse()
        assert answer.status == 502
        assert answer.getheader("x-amzn-ErrorType") == "LocalStackBackendUnavailable"
        assert "kms backend" in json.loads(answer.read())["message"]
    finally:
        server.shutdown()
        server.server_close()


def test_bad_content_length_is_rejected(stack):
    server, kms, _, _ = stack
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.putrequest("POST", "/")
    connection.putheader("X-Amz-Target", "TrentService.ListKeys")
    connection.putheader("Content-Length", "lots")
    connection.endheaders()
    answer = connection.getresponse()
    assert answer.status == 400
    assert kms.requests == []
