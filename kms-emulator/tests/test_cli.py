"""The emulator checked by independent clients: the AWS CLI (`aws kms ... --endpoint-url`) and boto3.

Run:  .venv/bin/python -m pytest kms-emulator/tests/test_cli.py
It builds and starts `kms-emulator` on a free port (or uses KMS_EMULATOR_ENDPOINT if set, which it
then resets between tests). Needs the AWS CLI and boto3 (both in requirements-dev.txt).
"""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions
import pytest

REPO = Path(__file__).resolve().parents[2]
TRUST_ANCHOR = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
ENV = {
    **os.environ,
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_MAX_ATTEMPTS": "1",
    "AWS_RETRY_MODE": "standard",
    "AWS_PAGER": "",
}


def aws_cli():
    here = Path(sys.executable).parent / "aws"
    found = str(here) if here.exists() else shutil.which("aws")
    if not found:
        pytest.skip("the AWS CLI is not installed")
    return found


@pytest.fixture(scope="session")
def endpoint():
    given = os.environ.get("KMS_EMULATOR_ENDPOINT")
    if given:
        yield given.rstrip("/")
        return
    subprocess.run(["cargo", "build", "--quiet", "-p", "kms-emulator"], cwd=REPO, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    proc = subprocess.Popen(
        [str(target / "debug" / "kms-emulator"), "--port", "0", "--no-quotas"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("kms-emulator listening on http://"), line
        yield line.rsplit(" ", 1)[1]
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0, "the server stops cleanly on SIGTERM"


def admin(endpoint, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(endpoint + path, data=data, method=method)
    request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read() or b"null")


@pytest.fixture()
def emu(endpoint):
    admin(endpoint, "POST", "/_emulator/reset", {})
    admin(endpoint, "POST", "/_emulator/config", {"quotas": False, "day_seconds": 86400})
    return endpoint


class CliError(Exception):
    def __init__(self, code, stderr):
        super().__init__(stderr)
        self.code = code


def kms(endpoint, *args):
    """Runs `aws kms <args>`; returns the parsed JSON output ({} when the CLI prints nothing, as it
    does for an empty response) or raises CliError(error name)."""
    result = subprocess.run(
        [aws_cli(), "kms", *args, "--endpoint-url", endpoint, "--output", "json"],
        capture_output=True,
        text=True,
        env=ENV,
    )
    if result.returncode != 0:
        marker = "An error occurred ("
        code = result.stderr.split(marker, 1)[1].split(")", 1)[0] if marker in result.stderr else "?"
        raise CliError(code, result.stderr)
    return json.loads(result.stdout) if result.stdout.strip() else {}


def cli_error(endpoint, *args):
    with pytest.raises(CliError) as info:
        kms(endpoint, *args)
    return info.value.code


def boto(endpoint):
    return boto3.client(
        "kms",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


def advance(endpoint, seconds):
    admin(endpoint, "POST", "/_emulator/clock", {"advance_seconds": seconds})


def create_hsm_store(emu, name="hsm", cluster="cluster-234567abcdefg"):
    args = ["--custom-key-store-name", name, "--cloud-hsm-cluster-id", cluster]
    args += ["--trust-anchor-certificate", TRUST_ANCHOR, "--key-store-password", "kmsPswd123"]
    return kms(emu, "create-custom-key-store", *args)["CustomKeyStoreId"]


def store_state(emu, store):
    out = kms(emu, "describe-custom-key-stores", "--custom-key-store-id", store)
    return out["CustomKeyStores"][0]["ConnectionState"]


def key_state(emu, key):
    return kms(emu, "describe-key", "--key-id", key)["KeyMetadata"]["KeyState"]


def test_cli_decommission_path(emu):
    store = create_hsm_store(emu)
    assert store.startswith("cks-") and len(store) == 21
    assert store_state(emu, store) == "DISCONNECTED"
    assert (
        cli_error(emu, "delete-custom-key-store", "--custom-key-store-id", "cks-00000000000000000")
        == "CustomKeyStoreNotFoundException"
    )
    assert kms(emu, "connect-custom-key-store", "--custom-key-store-id", store) == {}
    assert store_state(emu, store) == "CONNECTING"
    assert (
        cli_error(emu, "create-key", "--origin", "AWS_CLOUDHSM", "--custom-key-store-id", store)
        == "CustomKeyStoreInvalidStateException"
    )
    advance(emu, 20 * 60)
    assert store_state(emu, store) == "CONNECTED"
    meta = kms(emu, "create-key", "--origin", "AWS_CLOUDHSM", "--custom-key-store-id", store)["KeyMetadata"]
    key = meta["KeyId"]
    assert meta["Arn"] == f"arn:aws:kms:us-east-1:123456789012:key/{key}"
    assert meta["CustomKeyStoreId"] == store and meta["CloudHsmClusterId"] == "cluster-234567abcdefg"
    assert meta["Origin"] == "AWS_CLOUDHSM" and meta["KeyManager"] == "CUSTOMER"

    kms(emu, "tag-resource", "--key-id", key, "--tags", "TagKey=kms-decommission:prior-state,TagValue=Enabled")
    tags = kms(emu, "list-resource-tags", "--key-id", key)["Tags"]
    assert tags == [{"TagKey": "kms-decommission:prior-state", "TagValue": "Enabled"}]

    out = kms(emu, "schedule-key-deletion", "--key-id", key, "--pending-window-in-days", "7")
    assert out["KeyState"] == "PendingDeletion" and out["PendingWindowInDays"] == 7
    assert out["KeyId"] == meta["Arn"]
    # the CLI shows the wire timestamp: epoch seconds, 7 emulated (here: real) days ahead
    assert out["DeletionDate"] > time.time() + 7 * 86400 - 60
    assert cli_error(emu, "schedule-key-deletion", "--key-id", key) == "KMSInvalidStateException"
    assert (
        cli_error(emu, "tag-resource", "--key-id", key, "--tags", "TagKey=a,TagValue=b") == "KMSInvalidStateException"
    )

    kms(emu, "disconnect-custom-key-store", "--custom-key-store-id", store)
    assert store_state(emu, store) == "DISCONNECTING"
    assert (
        cli_error(emu, "disconnect-custom-key-store", "--custom-key-store-id", store)
        == "CustomKeyStoreInvalidStateException"
    )
    advance(emu, 5 * 60)
    assert store_state(emu, store) == "DISCONNECTED"
    assert key_state(emu, key) == "PendingDeletion"
    assert cli_error(emu, "delete-custom-key-store", "--custom-key-store-id", store) == "CustomKeyStoreHasCMKsException"

    advance(emu, 8 * 86400)
    assert cli_error(emu, "describe-key", "--key-id", key) == "NotFoundException"
    assert kms(emu, "delete-custom-key-store", "--custom-key-store-id", store) == {}
    assert (
        cli_error(emu, "describe-custom-key-stores", "--custom-key-store-id", store)
        == "CustomKeyStoreNotFoundException"
    )


def test_cli_key_states_and_disconnect(emu):
    store = create_hsm_store(emu)
    kms(emu, "connect-custom-key-store", "--custom-key-store-id", store)
    advance(emu, 3600)
    key = kms(emu, "create-key", "--origin", "AWS_CLOUDHSM", "--custom-key-store-id", store)["KeyMetadata"]["KeyId"]
    kms(emu, "disable-key", "--key-id", key)
    assert key_state(emu, key) == "Disabled"
    kms(emu, "disconnect-custom-key-store", "--custom-key-store-id", store)
    assert key_state(emu, key) == "Unavailable"
    kms(emu, "schedule-key-deletion", "--key-id", key, "--pending-window-in-days", "30")
    kms(emu, "cancel-key-deletion", "--key-id", key)
    assert key_state(emu, key) == "Unavailable"
    advance(emu, 3600)
    kms(emu, "connect-custom-key-store", "--custom-key-store-id", store)
    advance(emu, 3600)
    assert key_state(emu, key) == "Disabled"
    kms(emu, "enable-key", "--key-id", key)
    assert key_state(emu, key) == "Enabled"
    assert cli_error(emu, "cancel-key-deletion", "--key-id", key) == "KMSInvalidStateException"
    assert (
        cli_error(emu, "schedule-key-deletion", "--key-id", key, "--pending-window-in-days", "6")
        == "ValidationException"
    )


def test_cli_xks_store_and_key(emu):
    # AWS CLI v1 would fetch an https:// argument as a URL parameter file, so pass it as JSON input
    settings = {
        "CustomKeyStoreName": "xks",
        "CustomKeyStoreType": "EXTERNAL_KEY_STORE",
        "XksProxyUriEndpoint": "https://xks.example.com",
        "XksProxyUriPath": "/kms/xks/v1",
        "XksProxyConnectivity": "PUBLIC_ENDPOINT",
        "XksProxyAuthenticationCredential": {
            "AccessKeyId": "ABCDE23456ABCDE23456",
            "RawSecretAccessKey": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH",
        },
    }
    store = kms(emu, "create-custom-key-store", "--cli-input-json", json.dumps(settings))["CustomKeyStoreId"]
    entry = kms(emu, "describe-custom-key-stores", "--custom-key-store-name", "xks")["CustomKeyStores"][0]
    assert entry["CustomKeyStoreType"] == "EXTERNAL_KEY_STORE"
    assert entry["XksProxyConfiguration"]["UriEndpoint"] == "https://xks.example.com"
    kms(emu, "connect-custom-key-store", "--custom-key-store-id", store)
    advance(emu, 5 * 60)
    create_key = (
        "create-key",
        "--origin",
        "EXTERNAL_KEY_STORE",
        "--custom-key-store-id",
        store,
        "--xks-key-id",
        "ext-1",
    )
    meta = kms(emu, *create_key)["KeyMetadata"]
    assert meta["XksKeyConfiguration"] == {"Id": "ext-1"}
    assert cli_error(emu, *create_key) == "XksKeyAlreadyInUseException"


def test_cli_list_keys_pagination(emu):
    created = [kms(emu, "create-key")["KeyMetadata"]["KeyId"] for _ in range(4)]
    page = kms(emu, "list-keys", "--no-paginate", "--limit", "2")
    assert len(page["Keys"]) == 2 and page["Truncated"] is True and page["NextMarker"]
    everything = kms(emu, "list-keys", "--page-size", "2")  # the CLI follows NextMarker itself
    ids = [k["KeyId"] for k in everything["Keys"]]
    assert len(ids) == 7 and ids[3:] == created  # 3 AWS managed keys first
    assert cli_error(emu, "list-keys", "--no-paginate", "--marker", "bogus") == "InvalidMarkerException"


def test_cli_sees_injected_faults_and_call_log(emu):
    admin(emu, "DELETE", "/_emulator/calls")
    admin(emu, "POST", "/_emulator/faults", {"operation": "ListKeys", "error": "KMSInternalException", "count": 1})
    assert cli_error(emu, "list-keys") == "KMSInternalException"
    kms(emu, "list-keys")
    outcomes = [c["outcome"] for c in admin(emu, "GET", "/_emulator/calls")["calls"]]
    assert outcomes == ["KMSInternalException", "OK"]


def test_boto3_is_throttled_at_the_documented_rates(emu):
    admin(emu, "POST", "/_emulator/config", {"quotas": True})
    client = boto(emu)
    throttled = 0
    for _ in range(40):
        try:
            client.describe_custom_key_stores()
        except botocore.exceptions.ClientError as e:
            assert e.response["Error"]["Code"] == "ThrottlingException"
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400
            throttled += 1
    assert throttled >= 1, "40 rapid calls at a 5/s quota"
    assert throttled <= 35


def test_boto3_error_codes_and_statuses(emu):
    client = boto(emu)
    missing = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000"
    with pytest.raises(client.exceptions.NotFoundException) as info:
        client.describe_key(KeyId=missing)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert info.value.response["ResponseMetadata"]["RequestId"]
    admin(emu, "POST", "/_emulator/faults", {"operation": "DescribeKey", "error": "KMSInternalException", "count": 1})
    with pytest.raises(client.exceptions.KMSInternalException) as info:
        client.describe_key(KeyId=missing)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    key = client.create_key()["KeyMetadata"]
    assert isinstance(key["CreationDate"].timestamp(), float)
    client.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
    with pytest.raises(client.exceptions.KMSInvalidStateException):
        client.schedule_key_deletion(KeyId=key["KeyId"])


def test_cli_and_boto3_cryptography_and_last_usage(emu):
    key = kms(emu, "create-key")["KeyMetadata"]["KeyId"]
    fresh = kms(emu, "get-key-last-usage", "--key-id", key)
    assert fresh["KeyId"] == key and fresh["KeyLastUsage"] == {}
    assert fresh["TrackingStartDate"] == fresh["KeyCreationDate"]
    client = boto(emu)
    sealed = client.encrypt(KeyId=key, Plaintext=b"secret", EncryptionContext={"app": "x"})
    opened = client.decrypt(CiphertextBlob=sealed["CiphertextBlob"], EncryptionContext={"app": "x"})
    assert opened["Plaintext"] == b"secret"
    with pytest.raises(client.exceptions.InvalidCiphertextException):
        client.decrypt(CiphertextBlob=sealed["CiphertextBlob"])
    usage = kms(emu, "get-key-last-usage", "--key-id", key)["KeyLastUsage"]
    assert usage["Operation"] == "Decrypt"
    assert usage["KmsRequestId"] == opened["ResponseMetadata"]["RequestId"]
    kms(emu, "disable-key", "--key-id", key)
    with pytest.raises(client.exceptions.DisabledException):
        client.generate_data_key(KeyId=key, KeySpec="AES_256")
    assert cli_error(emu, "get-key-last-usage", "--key-id", "alias/aws/s3") == "NotFoundException"


def test_boto3_and_cli_look_up_the_cloudtrail_record_of_a_failed_call(emu):
    request = urllib.request.Request(
        emu + "/_emulator/identities/AKIAPAYMENTSAPP00001",
        data=json.dumps({"Arn": "arn:aws:iam::111122223333:user/payments-app"}).encode(),
        method="PUT",
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 200
    app = boto3.client(
        "kms",
        endpoint_url=emu,
        region_name="us-east-1",
        aws_access_key_id="AKIAPAYMENTSAPP00001",
        aws_secret_access_key="secret",
        config=botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )
    missing = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(botocore.exceptions.ClientError) as info:
        app.describe_key(KeyId=missing)
    assert info.value.response["Error"]["Code"] == "NotFoundException"

    # boto3 sends botocore's target prefix, com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101
    trail = boto3.client(
        "cloudtrail",
        endpoint_url=emu,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    out = trail.lookup_events(LookupAttributes=[{"AttributeKey": "Username", "AttributeValue": "payments-app"}])
    [event] = out["Events"]
    assert event["EventName"] == "DescribeKey"
    assert event["AccessKeyId"] == "AKIAPAYMENTSAPP00001"
    assert event["ReadOnly"] == "true"
    assert event["EventTime"].tzinfo is not None  # parsed as an awsJson timestamp
    record = json.loads(event["CloudTrailEvent"])
    assert record["userIdentity"]["arn"] == "arn:aws:iam::111122223333:user/payments-app"
    assert record["errorCode"] == "NotFoundException"
    assert record["requestParameters"] == {"keyId": missing}
    assert record["userAgent"].startswith("Boto3/")
    with pytest.raises(trail.exceptions.InvalidLookupAttributesException):
        trail.lookup_events(
            LookupAttributes=[
                {"AttributeKey": "EventName", "AttributeValue": "DescribeKey"},
                {"AttributeKey": "ReadOnly", "AttributeValue": "true"},
            ]
        )

    result = subprocess.run(
        [aws_cli(), "cloudtrail", "lookup-events", "--endpoint-url", emu, "--output", "json"]
        + ["--lookup-attributes", "AttributeKey=EventName,AttributeValue=DescribeKey"],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert result.returncode == 0, result.stderr
    assert [e["Username"] for e in json.loads(result.stdout)["Events"]] == ["payments-app"]


def test_cli_and_boto3_run_a_logs_insights_query_over_the_cloudtrail_records(emu):
    app = boto3.client(
        "kms",
        endpoint_url=emu,
        region_name="us-east-1",
        aws_access_key_id="AKIAINSIGHTSAPP00001",
        aws_secret_access_key="secret",
        config=botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )
    missing = "11111111-2222-3333-4444-555555555555"
    with pytest.raises(botocore.exceptions.ClientError):
        app.describe_key(KeyId=missing)
    now = int(time.time()) + 86_400 * 365  # the emulated clock may run ahead: a wide window

    def cli(*args):
        result = subprocess.run(
            [aws_cli(), "logs", *args, "--endpoint-url", emu, "--output", "json"],
            capture_output=True,
            text=True,
            env=ENV,
        )
        return result

    query = (
        "fields eventID, eventName, userIdentity.userName, errorCode, requestParameters.keyId | filter eventSource = "
        '"kms.amazonaws.com" and userIdentity.userName = "AKIAINSIGHTSAPP00001" | sort @timestamp desc | limit 5'
    )
    started = cli(
        "start-query",
        "--log-group-name",
        "trail",
        "--start-time",
        "0",
        "--end-time",
        str(now),
        "--query-string",
        query,
    )
    assert started.returncode == 0, started.stderr
    query_id = json.loads(started.stdout)["queryId"]
    statuses = []
    for _ in range(5):
        polled = cli("get-query-results", "--query-id", query_id)
        assert polled.returncode == 0, polled.stderr
        out = json.loads(polled.stdout)
        statuses.append(out["status"])
        if out["status"] == "Complete":
            break
    assert statuses == ["Running", "Complete"]
    [row] = out["results"]
    fields = {f["field"]: f["value"] for f in row}
    assert fields["eventName"] == "DescribeKey"
    assert fields["errorCode"] == "NotFoundException"
    assert fields["requestParameters.keyId"] == missing
    assert "@ptr" in fields

    logs = boto3.client(
        "logs", endpoint_url=emu, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    with pytest.raises(logs.exceptions.MalformedQueryException):
        logs.start_query(logGroupName="trail", startTime=0, endTime=now, queryString="stats count(*) by eventName")
    running = logs.start_query(logGroupName="trail", startTime=0, endTime=now, queryString="fields eventID")
    assert logs.stop_query(queryId=running["queryId"])["success"] is True
    assert logs.get_query_results(queryId=running["queryId"])["status"] == "Cancelled"
    with pytest.raises(logs.exceptions.ResourceNotFoundException):
        logs.get_query_results(queryId="no-such-query")
