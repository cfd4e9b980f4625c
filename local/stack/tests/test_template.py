"""The local stack reads template.yaml like CloudFormation would fill in the state machine."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from local.stack import template as tpl

REPO = Path(__file__).resolve().parents[3]

SAMPLE = textwrap.dedent(
    """
    AWSTemplateFormatVersion: "2010-09-09"
    Transform: AWS::Serverless-2016-10-31
    Parameters:
      PendingWindowDefault:
        Type: Number
        Default: 30
    Globals:
      Function:
        Timeout: 300
        Environment:
          Variables:
            POLL_SECONDS: !Ref PendingWindowDefault
    Resources:
      PlanDecommissionFunction:
        Type: AWS::Serverless::Function
        Metadata:
          BuildMethod: rust-cargolambda
          BuildProperties:
            Binary: plan-decommission
        Properties:
          Handler: bootstrap
          Timeout: 60
          Environment:
            Variables:
              STATE_MACHINE_ARN: !Ref DecommissionStateMachine
      DeleteStoreFunction:
        Type: AWS::Serverless::Function
        Metadata:
          BuildMethod: rust-cargolambda
          BuildProperties: {Binary: delete-store}
      Topic:
        Type: AWS::SNS::Topic
      DecommissionStateMachine:
        Type: AWS::Serverless::StateMachine
        Properties:
          Name: !Sub "${AWS::StackName}"
          DefinitionUri: sm.asl.json
          DefinitionSubstitutions:
            PlanDecommissionFunctionArn: !GetAtt PlanDecommissionFunction.Arn
            DeleteStoreFunctionArn:
              Fn::GetAtt: [DeleteStoreFunction, Arn]
            Window: !Ref PendingWindowDefault
            Where: !Sub "${AWS::Region}/${AWS::AccountId}"
    """
)

ASL = {
    "StartAt": "Plan",
    "States": {
        "Plan": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {
                "FunctionName": "${PlanDecommissionFunctionArn}",
                "Payload.$": "$",
                "Window": "${Window}",
                "Where": "${Where}",
            },
            "Next": "Delete",
        },
        "Delete": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "${DeleteStoreFunctionArn}", "Payload.$": "$"},
            "End": True,
        },
    },
}


def write(tmp_path: Path, template: str, asl: object) -> dict:
    (tmp_path / "template.yaml").write_text(template)
    (tmp_path / "sm.asl.json").write_text(json.dumps(asl) if not isinstance(asl, str) else asl)
    return tpl.load_template(tmp_path / "template.yaml")


def test_functions_map_logical_ids_to_binaries_and_local_arns(tmp_path):
    functions = tpl.functions(write(tmp_path, SAMPLE, ASL))
    assert {k: f.binary for k, f in functions.items()} == {
        "PlanDecommissionFunction": "plan-decommission",
        "DeleteStoreFunction": "delete-store",
    }
    assert functions["DeleteStoreFunction"].arn == "arn:aws:lambda:us-east-1:123456789012:function:delete-store"


def test_functions_carry_their_timeout_and_resolved_environment(tmp_path):
    functions = tpl.functions(write(tmp_path, SAMPLE, ASL))
    plan, delete = functions["PlanDecommissionFunction"], functions["DeleteStoreFunction"]
    assert (plan.timeout_seconds, delete.timeout_seconds) == (60, 300)
    assert dict(plan.environment) == {
        "POLL_SECONDS": "30",
        "STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:kms-decommission",
    }
    assert tpl.merged_environment(functions) == dict(plan.environment)


def test_functions_that_need_different_values_of_one_variable_are_refused(tmp_path):
    environment = "\n    Properties:\n      Environment:\n        Variables:\n          POLL_SECONDS: 5"
    template = SAMPLE.replace(
        "BuildProperties: {Binary: delete-store}", "BuildProperties: {Binary: delete-store}" + environment
    )
    with pytest.raises(tpl.TemplateError, match="POLL_SECONDS"):
        tpl.merged_environment(tpl.functions(write(tmp_path, template, ASL)))


def test_state_machine_gets_every_substitution_and_the_template_name(tmp_path):
    (machine,) = tpl.state_machines(write(tmp_path, SAMPLE, ASL), tmp_path, "kms-decommission")
    assert machine.name == "kms-decommission"
    assert machine.arn == "arn:aws:states:us-east-1:123456789012:stateMachine:kms-decommission"
    states = json.loads(machine.definition)["States"]
    assert (
        states["Plan"]["Parameters"]["FunctionName"]
        == "arn:aws:lambda:us-east-1:123456789012:function:plan-decommission"
    )
    assert (
        states["Delete"]["Parameters"]["FunctionName"] == "arn:aws:lambda:us-east-1:123456789012:function:delete-store"
    )
    assert states["Plan"]["Parameters"]["Window"] == "30"
    assert states["Plan"]["Parameters"]["Where"] == "us-east-1/123456789012"


@pytest.mark.parametrize(
    ("logical_id", "name"),
    [
        ("DecommissionStateMachine", "kms-decommission"),
        ("CancelStateMachine", "kms-decommission-cancel"),
        ("KeyAuditStateMachine", "kms-decommission-key-audit"),
    ],
)
def test_unnamed_state_machines_get_stable_local_names(logical_id, name):
    assert tpl.default_state_machine_name("kms-decommission", logical_id) == name


def test_placeholder_without_substitution_is_named(tmp_path):
    asl = json.loads(json.dumps(ASL))
    asl["States"]["Delete"]["Parameters"]["FunctionName"] = "${MissingFunctionArn}"
    with pytest.raises(tpl.TemplateError, match="MissingFunctionArn"):
        tpl.state_machines(write(tmp_path, SAMPLE, asl), tmp_path, "kms-decommission")


def test_getatt_of_something_other_than_a_function_arn_is_refused(tmp_path):
    template = SAMPLE.replace("Where: !Sub", "TopicName: !GetAtt Topic.TopicName\n        Where: !Sub")
    with pytest.raises(tpl.TemplateError, match="Topic.TopicName"):
        tpl.state_machines(write(tmp_path, template, ASL), tmp_path, "kms-decommission")


def test_function_without_binary_is_refused(tmp_path):
    template = SAMPLE.replace("Binary: plan-decommission", "Other: x")
    with pytest.raises(tpl.TemplateError, match="PlanDecommissionFunction"):
        tpl.functions(write(tmp_path, template, ASL))


def test_asl_that_is_not_json_once_substituted_is_refused(tmp_path):
    with pytest.raises(tpl.TemplateError, match="not valid JSON"):
        tpl.state_machines(write(tmp_path, SAMPLE, '{"StartAt": "Plan", '), tmp_path, "kms-decommission")


def test_yaml_errors_are_template_errors(tmp_path):
    (tmp_path / "template.yaml").write_text("Resources: [unclosed")
    with pytest.raises(tpl.TemplateError, match="not valid YAML"):
        tpl.load_template(tmp_path / "template.yaml")


def test_the_project_template_resolves_to_binaries_that_exist():
    """Every function of template.yaml has a cargo binary, and every state machine fills in."""
    template_path = REPO / "template.yaml"
    if not template_path.exists():
        pytest.skip("template.yaml has not landed yet")
    template = tpl.load_template(template_path)
    functions = tpl.functions(template)
    assert functions, "template.yaml defines no function"
    for function in functions.values():
        assert (REPO / "src" / "bin" / f"{function.binary}.rs").exists(), (
            f"{function.logical_id}: no src/bin/{function.binary}.rs"
        )
    machines = tpl.state_machines(template, REPO, "kms-decommission")
    assert any(m.definition_path.name == "decommission.asl.json" for m in machines)
    for machine in machines:
        resources = {s.get("Parameters", {}).get("FunctionName") for s in _all_states(json.loads(machine.definition))}
        assert resources - {None} <= {f.arn for f in functions.values()}


def test_the_project_template_gives_the_ledger_table_and_the_steps_environment():
    """template.yaml's LedgerTable, and the Globals naming it and the stack's decommission state machine."""
    template_path = REPO / "template.yaml"
    if not template_path.exists():
        pytest.skip("template.yaml has not landed yet")
    template = tpl.load_template(template_path)
    (ledger,) = tpl.tables(template, "kms-decommission")
    assert ledger.name == "kms-decommission-ledger-table"
    assert (ledger.key_schema, ledger.attribute_definitions) == (
        (("pk", "HASH"), ("sk", "RANGE")),
        (("pk", "S"), ("sk", "S")),
    )
    assert ledger.billing_mode == "PAY_PER_REQUEST"
    assert ledger.point_in_time_recovery and ledger.deletion_protection and ledger.sse_enabled
    environment = tpl.merged_environment(tpl.functions(template, "kms-decommission"))
    assert environment["LEDGER_TABLE"] == "kms-decommission-ledger-table"
    assert environment["STATE_MACHINE_ARN"] == "arn:aws:states:us-east-1:123456789012:stateMachine:kms-decommission"
    machines = {m.logical_id: m for m in tpl.state_machines(template, REPO, "kms-decommission")}
    assert machines["DecommissionStateMachine"].arn == environment["STATE_MACHINE_ARN"]


def _all_states(definition: dict):
    for state in definition.get("States", {}).values():
        yield state
        for branch in state.get("Branches", []):
            yield from _all_states(branch)
        if "Iterator" in state:
            yield from _all_states(state["Iterator"])
        if "ItemProcessor" in state:
            yield from _all_states(state["ItemProcessor"])


# (A raw string: the YAML double-quoted scalar below continues on the next line after its `\`.)
TABLES = textwrap.dedent(
    r"""
    Parameters:
      Recovery:
        Type: String
        Default: "true"
    Globals:
      Function:
        Environment:
          Variables:
            LEDGER_TABLE: !Ref LedgerTable
            LEDGER_ARN: !GetAtt LedgerTable.Arn
            AUDIT_TABLE: !Ref AuditTable
            STATE_MACHINE_ARN: !Sub "arn:${AWS::Partition}:states:${AWS::Region}:\
              ${AWS::AccountId}:stateMachine:${AWS::StackName}"
    Resources:
      PlanDecommissionFunction:
        Type: AWS::Serverless::Function
        Metadata:
          BuildProperties: {Binary: plan-decommission}
      LedgerTable:
        Type: AWS::DynamoDB::Table
        DeletionPolicy: Retain
        Properties:
          BillingMode: PAY_PER_REQUEST
          AttributeDefinitions:
            - {AttributeName: pk, AttributeType: S}
            - {AttributeName: sk, AttributeType: S}
          KeySchema:
            - {AttributeName: pk, KeyType: HASH}
            - {AttributeName: sk, KeyType: RANGE}
          PointInTimeRecoverySpecification:
            PointInTimeRecoveryEnabled: !Ref Recovery
          DeletionProtectionEnabled: true
          SSESpecification:
            SSEEnabled: true
      AuditTable:
        Type: AWS::DynamoDB::Table
        Properties:
          TableName: !Sub "${AWS::StackName}-audit"
          AttributeDefinitions:
            - {AttributeName: id, AttributeType: N}
          KeySchema:
            - {AttributeName: id, KeyType: HASH}
          ProvisionedThroughput: {ReadCapacityUnits: 5, WriteCapacityUnits: "2"}
          Tags:
            - {Key: owner, Value: !Ref AWS::StackName}
      DecommissionStateMachine:
        Type: AWS::Serverless::StateMachine
        Properties:
          Name: !Ref AWS::StackName
          DefinitionUri: sm.asl.json
    """
)

# The ledger table's properties (indented for TABLE_HEADER), varied by the error cases below.
LEDGER_PROPERTIES = """\
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - {AttributeName: pk, AttributeType: S}
        - {AttributeName: sk, AttributeType: S}
      KeySchema:
        - {AttributeName: pk, KeyType: HASH}
        - {AttributeName: sk, KeyType: RANGE}
"""
TABLE_HEADER = """\
Resources:
  LedgerTable:
    Type: AWS::DynamoDB::Table
    Properties:
"""


def test_ref_and_getatt_arn_of_a_table_resolve_to_its_local_name_and_arn(tmp_path):
    functions = tpl.functions(write(tmp_path, TABLES, ASL), "kms-decommission")
    assert tpl.merged_environment(functions) == {
        "LEDGER_TABLE": "kms-decommission-ledger-table",
        "LEDGER_ARN": "arn:aws:dynamodb:us-east-1:123456789012:table/kms-decommission-ledger-table",
        "AUDIT_TABLE": "kms-decommission-audit",
        "STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:kms-decommission",
    }


def test_state_machine_named_after_the_stack_by_ref(tmp_path):
    (machine,) = tpl.state_machines(write(tmp_path, TABLES, {"StartAt": "x", "States": {}}), tmp_path, "other-stack")
    assert machine.arn == "arn:aws:states:us-east-1:123456789012:stateMachine:other-stack"


def test_tables_carry_their_keys_and_settings(tmp_path):
    ledger, audit = tpl.tables(write(tmp_path, TABLES, ASL), "kms-decommission")
    assert ledger == tpl.LocalTable(
        logical_id="LedgerTable",
        name="kms-decommission-ledger-table",
        key_schema=(("pk", "HASH"), ("sk", "RANGE")),
        attribute_definitions=(("pk", "S"), ("sk", "S")),
        billing_mode="PAY_PER_REQUEST",
        point_in_time_recovery=True,
        deletion_protection=True,
        sse_enabled=True,
    )
    assert ledger.arn == "arn:aws:dynamodb:us-east-1:123456789012:table/kms-decommission-ledger-table"
    assert audit == tpl.LocalTable(
        logical_id="AuditTable",
        name="kms-decommission-audit",
        key_schema=(("id", "HASH"),),
        attribute_definitions=(("id", "N"),),
        billing_mode="PROVISIONED",  # CloudFormation's default
        provisioned_throughput=(5, 2),
        tags=(("owner", "kms-decommission"),),
    )


@pytest.mark.parametrize(
    ("logical_id", "name"),
    [("LedgerTable", "kms-decommission-ledger-table"), ("Audit", "kms-decommission-audit")],
)
def test_unnamed_tables_get_stable_local_names(logical_id, name):
    assert tpl.default_table_name("kms-decommission", logical_id) == name


def _ledger(old: str, new: str) -> str:
    assert old in LEDGER_PROPERTIES
    return LEDGER_PROPERTIES.replace(old, new)


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ("      BillingMode: PAY_PER_REQUEST\n", "KeySchema is missing"),
        (_ledger("KeyType: HASH", "KeyType: PARTITION"), "one HASH key"),
        (
            _ledger(
                "pk, KeyType: HASH}\n        - {AttributeName: sk, KeyType: RANGE",
                "sk, KeyType: RANGE}\n        - {AttributeName: pk, KeyType: HASH",
            ),
            "one HASH key",
        ),
        (_ledger("{AttributeName: sk, KeyType: RANGE}", "{AttributeName: sk}"), "exactly AttributeName and KeyType"),
        (_ledger("AttributeName: sk, AttributeType", "AttributeName: other, AttributeType"), "exactly the KeySchema"),
        (_ledger("sk, AttributeType: S", "sk, AttributeType: SS"), "S, N or B"),
        (_ledger("KeySchema:\n", "KeySchema: []\n      Unused:\n"), "cannot create a table with Unused"),
        (_ledger("BillingMode: PAY_PER_REQUEST", "BillingMode: ON_DEMAND"), "ON_DEMAND"),
        (_ledger("BillingMode: PAY_PER_REQUEST", "BillingMode: PROVISIONED"), "needs ProvisionedThroughput"),
        (
            _ledger(
                "BillingMode: PAY_PER_REQUEST", "ProvisionedThroughput: {ReadCapacityUnits: 0, WriteCapacityUnits: 1}"
            ),
            "ReadCapacityUnits",
        ),
        (
            LEDGER_PROPERTIES + "      ProvisionedThroughput: {ReadCapacityUnits: 1, WriteCapacityUnits: 1}\n",
            "PAY_PER_REQUEST",
        ),
        (LEDGER_PROPERTIES + "      DeletionProtectionEnabled: maybe\n", "not true or false"),
        (LEDGER_PROPERTIES + "      SSESpecification: true\n", "SSESpecification is not a mapping"),
        (
            LEDGER_PROPERTIES + "      TimeToLiveSpecification: {AttributeName: ttl, Enabled: true}\n",
            "cannot create a table with TimeToLiveSpecification",
        ),
        (
            LEDGER_PROPERTIES + "      GlobalSecondaryIndexes: []\n",
            "cannot create a table with GlobalSecondaryIndexes",
        ),
    ],
)
def test_table_shapes_the_local_stack_cannot_create_are_named(tmp_path, properties, message):
    with pytest.raises(tpl.TemplateError, match=f"table LedgerTable.*{message}"):
        tpl.tables(write(tmp_path, TABLE_HEADER + properties, ASL), "kms-decommission")


def test_table_properties_that_are_not_a_mapping_are_refused(tmp_path):
    with pytest.raises(tpl.TemplateError, match="table LedgerTable: Properties is not a mapping"):
        tpl.tables(write(tmp_path, TABLE_HEADER.replace("Properties:", "Properties: []"), ASL), "kms-decommission")


def test_getatt_of_a_table_attribute_other_than_arn_is_refused(tmp_path):
    template = TABLES.replace("LEDGER_ARN: !GetAtt LedgerTable.Arn", "LEDGER_ARN: !GetAtt LedgerTable.StreamArn")
    with pytest.raises(tpl.TemplateError, match=r"LedgerTable\.StreamArn"):
        tpl.functions(write(tmp_path, template, ASL))


def test_ref_of_an_unknown_resource_is_refused(tmp_path):
    template = TABLES.replace("AUDIT_TABLE: !Ref AuditTable", "AUDIT_TABLE: !Ref Topic")
    with pytest.raises(tpl.TemplateError, match="Ref Topic is neither"):
        tpl.functions(write(tmp_path, template, ASL))


def test_the_project_template_outputs_what_the_command_line_reads():
    """The local stack serves these as its CloudFormation stack's outputs (the command line finds
    the state machines and the ledger by stack name); outputs of resources it does not create and
    conditional ones are left out."""
    resolved = tpl.outputs(tpl.load_template(REPO / "template.yaml"))
    machines = {
        m.logical_id: m.arn
        for m in tpl.state_machines(tpl.load_template(REPO / "template.yaml"), REPO, "kms-decommission")
    }
    assert resolved["DecommissionStateMachineArn"] == machines["DecommissionStateMachine"]
    assert resolved["CancelStateMachineArn"] == machines["CancelStateMachine"]
    assert resolved["LedgerTableName"] == tpl.tables(tpl.load_template(REPO / "template.yaml"))[0].name
    assert "TicketWebhookUrl" not in resolved  # GetAtt of a function URL: no local value
    assert "UseOfKeyPendingDeletionAlarmName" not in resolved  # conditional


def test_outputs_that_do_not_resolve_are_left_out(tmp_path):
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {
            "Region": {"Value": {"Ref": "AWS::Region"}},
            "Topic": {"Value": {"Ref": "Topic"}},
            "Maybe": {"Condition": "C", "Value": "x"},
        },
    }
    assert tpl.outputs(template) == {"Region": tpl.LOCAL_REGION}
