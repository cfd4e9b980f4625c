"""local.client.ledger (the demo's and the end-to-end tests' view of the run ledger) reads a
partition as plain dicts and finds the local stack's table from template.yaml. Here against moto
in process; the local stack serves the same table from moto_server."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from local.client import ledger

REPO = Path(__file__).resolve().parents[3]
TABLE = "kms-decommission-ledger-table"
EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:kms-decommission:demo-cks-1"
KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def _strings(**attributes: str) -> dict[str, dict[str, str]]:
    return {name: {"S": value} for name, value in attributes.items()}


@pytest.fixture
def dynamodb():
    with mock_aws():
        client = boto3.client(
            "dynamodb", region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="local"
        )
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        store = ledger.store_pk("cks-1")
        items = [
            _strings(
                pk=store, sk="LOCK", Execution=EXECUTION, CustomKeyStoreId="cks-1", TakenAt="2026-01-01T00:00:00Z"
            ),
            _strings(pk=store, sk=f"RUN#{EXECUTION}", Execution=EXECUTION, Phase="delete-store", Outcome="Succeeded"),
            _strings(pk=ledger.run_pk(EXECUTION), sk=f"KEY#{KEY}", KeyArn=KEY, PriorState="Enabled"),
            _strings(pk=ledger.store_pk("cks-2"), sk="LOCK", Execution="other"),
        ]
        for item in items:
            client.put_item(TableName=TABLE, Item=item)
        yield client


def test_a_store_partition_reads_as_plain_dicts_in_sort_key_order(dynamodb):
    items = ledger.ledger_items(dynamodb, TABLE, "STORE#cks-1")
    assert items == [
        {
            "pk": "STORE#cks-1",
            "sk": "LOCK",
            "Execution": EXECUTION,
            "CustomKeyStoreId": "cks-1",
            "TakenAt": "2026-01-01T00:00:00Z",
        },
        {
            "pk": "STORE#cks-1",
            "sk": f"RUN#{EXECUTION}",
            "Execution": EXECUTION,
            "Phase": "delete-store",
            "Outcome": "Succeeded",
        },
    ]
    lock, runs = ledger.split_store_partition(items)
    assert lock is not None and lock["Execution"] == EXECUTION
    assert [run["Outcome"] for run in runs] == ["Succeeded"]


def test_a_run_partition_holds_its_key_records_and_an_unknown_one_is_empty(dynamodb):
    (key,) = ledger.ledger_items(dynamodb, TABLE, f"RUN#{EXECUTION}")
    assert (key["KeyArn"], key["PriorState"]) == (KEY, "Enabled")
    assert ledger.ledger_items(dynamodb, TABLE, "RUN#arn:unknown") == []
    assert ledger.split_store_partition([]) == (None, [])


def test_the_local_ledger_table_is_named_from_the_template():
    if not (REPO / "template.yaml").exists():
        pytest.skip("template.yaml has not landed yet")
    assert ledger.ledger_table_name() == TABLE
