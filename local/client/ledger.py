"""The run ledger (the template's DynamoDB table, served by moto on the local stack), read the way
an auditor reads it: one partition at a time, items as plain Python values.

- partition `STORE#<store id>`: the store's lock (sort key `LOCK`) and one run record per
  decommission of the store (`RUN#<execution ARN>`);
- partition `RUN#<execution ARN>`: one key record per key the run changed (`KEY#<key ARN>`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from local.client import workflow
from local.stack import template as tpl
from local.stack.launcher import STACK_NAME

LEDGER_TABLE_VARIABLE = "LEDGER_TABLE"  # the functions' environment variable naming the table
LOCK = "LOCK"
RUN_PREFIX = "RUN#"
KEY_PREFIX = "KEY#"

_DESERIALIZER = TypeDeserializer()


def ledger_table_name(template_path: Path = workflow.REPO / "template.yaml", stack_name: str = STACK_NAME) -> str:
    """The local stack's ledger table: the name the template's `LEDGER_TABLE` resolves to, the
    same value the handlers get (`kms-decommission-ledger-table` for the project's template)."""
    environment = tpl.merged_environment(tpl.functions(tpl.load_template(template_path), stack_name))
    if LEDGER_TABLE_VARIABLE not in environment:
        raise tpl.TemplateError(f"{template_path}: no function has a {LEDGER_TABLE_VARIABLE} variable")
    return environment[LEDGER_TABLE_VARIABLE]


def store_pk(store_id: str) -> str:
    """The partition of a store: its lock and its runs."""
    return f"STORE#{store_id}"


def run_pk(execution_arn: str) -> str:
    """The partition of a run: its key records."""
    return f"{RUN_PREFIX}{execution_arn}"


def ledger_items(dynamodb_or_endpoint: Any, table: str, pk: str) -> list[dict[str, Any]]:
    """Every item of partition `pk` in sort key order, as plain dicts (`{"pk": "...", "sk": "...",
    "Execution": "..."}`: strings unwrapped from DynamoDB's `{"S": ...}`, numbers as Decimal).
    `dynamodb_or_endpoint` is a boto3 DynamoDB client or the stack's endpoint URL."""
    is_endpoint = isinstance(dynamodb_or_endpoint, str)
    dynamodb = workflow.client(dynamodb_or_endpoint, "dynamodb") if is_endpoint else dynamodb_or_endpoint
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": pk}},
        "ConsistentRead": True,
    }
    while True:
        page = dynamodb.query(**kwargs)
        items.extend(plain(item) for item in page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def plain(item: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB item (`{"pk": {"S": "..."}}`) as plain Python values (`{"pk": "..."}`)."""
    return {name: _DESERIALIZER.deserialize(value) for name, value in item.items()}


def split_store_partition(items: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """A store partition's (lock item or None, run records)."""
    lock = next((item for item in items if item.get("sk") == LOCK), None)
    runs = [item for item in items if str(item.get("sk", "")).startswith(RUN_PREFIX)]
    return lock, runs
