"""The launcher creates the template's DynamoDB tables in moto (what moto_server serves behind the
router) with every setting the template gives, and says what moto holds."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from local.stack import template as tpl
from local.stack.launcher import LocalStack, StackConfig
from local.stack.processes import free_port

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def moto_stack():
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    # moto's state is per process, not per server: start from none.
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset", method="POST")).close()
    stack = LocalStack(StackConfig(port=port))  # only its endpoint and tables are used here
    yield (
        stack,
        boto3.client(
            "dynamodb",
            endpoint_url=stack.endpoint,
            region_name=tpl.LOCAL_REGION,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        ),
    )
    server.stop()


def test_the_project_ledger_table_is_created_with_its_settings(moto_stack, capsys):
    template_path = REPO / "template.yaml"
    if not template_path.exists():
        pytest.skip("template.yaml has not landed yet")
    stack, dynamodb = moto_stack
    stack.tables = tpl.tables(tpl.load_template(template_path), "kms-decommission")
    stack._create_tables()

    table = dynamodb.describe_table(TableName="kms-decommission-ledger-table")["Table"]
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["DeletionProtectionEnabled"] is True
    assert table["SSEDescription"]["Status"] == "ENABLED"
    backups = dynamodb.describe_continuous_backups(TableName="kms-decommission-ledger-table")
    assert backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == (
        "ENABLED"
    )
    said = capsys.readouterr().err
    assert "table kms-decommission-ledger-table created" in said
    assert "deletion protection on; encryption on; point-in-time recovery on" in said
    assert "NOT APPLIED" not in said


def test_a_provisioned_table_without_extra_settings(moto_stack, capsys):
    stack, dynamodb = moto_stack
    stack.tables = [
        tpl.LocalTable(
            logical_id="AuditTable",
            name="audit",
            key_schema=(("id", "HASH"),),
            attribute_definitions=(("id", "N"),),
            billing_mode="PROVISIONED",
            provisioned_throughput=(5, 2),
            tags=(("owner", "local"),),
        )
    ]
    stack._create_tables()
    table = dynamodb.describe_table(TableName="audit")["Table"]
    assert table["ProvisionedThroughput"]["ReadCapacityUnits"] == 5
    assert table["ProvisionedThroughput"]["WriteCapacityUnits"] == 2
    assert not table.get("DeletionProtectionEnabled")
    assert "SSEDescription" not in table
    assert dynamodb.list_tags_of_resource(ResourceArn=table["TableArn"])["Tags"] == [{"Key": "owner", "Value": "local"}]
    said = capsys.readouterr().err
    assert "table audit created (AuditTable; id HASH; PROVISIONED; deletion protection off" in said
    assert "NOT APPLIED" not in said


class _ForgetfulDynamoDB:
    """A DynamoDB client that accepts every setting and keeps none of them."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict]] = []

    def create_table(self, **request):
        self.requests.append(("CreateTable", request))

    def update_continuous_backups(self, **request):
        self.requests.append(("UpdateContinuousBackups", request))

    def describe_table(self, TableName):
        return {"Table": {"TableName": TableName}}

    def describe_continuous_backups(self, TableName):
        return {"ContinuousBackupsDescription": {"ContinuousBackupsStatus": "DISABLED"}}


def test_settings_moto_did_not_keep_are_said_not_dropped(capsys):
    stack = LocalStack(StackConfig())
    client = _ForgetfulDynamoDB()
    stack._client = lambda service: client
    stack.tables = [
        tpl.LocalTable(
            logical_id="LedgerTable",
            name="ledger",
            key_schema=(("pk", "HASH"),),
            attribute_definitions=(("pk", "S"),),
            billing_mode="PAY_PER_REQUEST",
            point_in_time_recovery=True,
            deletion_protection=True,
            sse_enabled=True,
        )
    ]
    stack._create_tables()
    (create, request), (update, _) = client.requests
    assert (create, update) == ("CreateTable", "UpdateContinuousBackups")
    assert request["DeletionProtectionEnabled"] is True and request["SSESpecification"] == {"Enabled": True}
    said = capsys.readouterr().err
    assert (
        "NOT APPLIED by moto: billing mode PAY_PER_REQUEST, deletion protection True, encryption True, "
        "point-in-time recovery True" in said
    )
