"""Reads the SAM template the way the local stack needs it: which functions exist (their cargo
binaries), which state machines exist (their ASL file, name and DefinitionSubstitutions), which
DynamoDB tables exist (name, keys and settings), with every substitution resolved to a local value."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

LOCAL_REGION = "us-east-1"
LOCAL_ACCOUNT = "123456789012"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_.:]+)\}")


class TemplateError(Exception):
    """The template (or an ASL file it names) cannot be turned into a local stack."""


class _CloudFormationLoader(yaml.SafeLoader):
    """A YAML loader that turns CloudFormation short tags (!Ref, !GetAtt, !Sub...) into their
    long form ({"Ref": ...}, {"Fn::GetAtt": [...]}, ...)."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if tag_suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CloudFormationLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM YAML template, accepting the short intrinsic-function tags."""
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_CloudFormationLoader)  # noqa: S506 (safe loader subclass)
    except OSError as err:
        raise TemplateError(f"cannot read template {path}: {err}") from err
    except yaml.YAMLError as err:
        raise TemplateError(f"template {path} is not valid YAML: {err}") from err
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise TemplateError(f"template {path} has no Resources section")
    return document


DEFAULT_FUNCTION_TIMEOUT = 3  # seconds: Lambda's default when neither the function nor Globals set one


@dataclass(frozen=True)
class LocalFunction:
    """A Lambda function of the template and the cargo binary that implements it, with its
    Timeout and its environment (Globals merged in, intrinsic functions resolved locally)."""

    logical_id: str
    binary: str
    timeout_seconds: int = DEFAULT_FUNCTION_TIMEOUT
    environment: tuple[tuple[str, str], ...] = ()

    @property
    def arn(self) -> str:
        """Its ARN on the local stack."""
        return function_arn(self.binary)


@dataclass(frozen=True)
class LocalStateMachine:
    """A state machine of the template, ready to create: its name and its substituted ASL."""

    logical_id: str
    name: str
    definition_path: Path
    definition: str  # the ASL text with every ${Placeholder} substituted

    @property
    def arn(self) -> str:
        """Its ARN on the local stack."""
        return f"arn:aws:states:{LOCAL_REGION}:{LOCAL_ACCOUNT}:stateMachine:{self.name}"


@dataclass(frozen=True)
class LocalTable:
    """A DynamoDB table of the template, ready to create: its name, keys and settings."""

    logical_id: str
    name: str
    key_schema: tuple[tuple[str, str], ...]  # (AttributeName, KeyType): the HASH key, then the RANGE key if any
    attribute_definitions: tuple[tuple[str, str], ...]  # (AttributeName, AttributeType S/N/B)
    billing_mode: str  # PAY_PER_REQUEST or PROVISIONED
    provisioned_throughput: tuple[int, int] | None = None  # (ReadCapacityUnits, WriteCapacityUnits) if PROVISIONED
    point_in_time_recovery: bool = False
    deletion_protection: bool = False
    sse_enabled: bool = False  # True: encrypted with a KMS key (AWS managed aws/dynamodb unless one is named)
    sse_type: str | None = None  # SSESpecification.SSEType when given (KMS)
    sse_kms_key: str | None = None  # SSESpecification.KMSMasterKeyId when given
    tags: tuple[tuple[str, str], ...] = ()

    @property
    def arn(self) -> str:
        """Its ARN on the local stack."""
        return table_arn(self.name)


def table_arn(name: str) -> str:
    """The local ARN of the DynamoDB table `name`."""
    return f"arn:aws:dynamodb:{LOCAL_REGION}:{LOCAL_ACCOUNT}:table/{name}"


def function_arn(binary: str) -> str:
    """The local ARN of the function whose binary is `binary`."""
    return f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT}:function:{binary}"


def functions(template: dict[str, Any], stack_name: str = "kms-decommission") -> dict[str, LocalFunction]:
    """The template's functions by logical id. Each must name its cargo binary in
    `Metadata.BuildProperties.Binary` (what the Makefile's `build-<LogicalId>` target, run by
    `sam build`, copies as the function's bootstrap)."""
    binaries = {}
    for logical_id, resource in template["Resources"].items():
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::Serverless::Function":
            continue
        binary = ((resource.get("Metadata") or {}).get("BuildProperties") or {}).get("Binary")
        if not isinstance(binary, str) or not binary:
            raise TemplateError(f"function {logical_id} has no Metadata.BuildProperties.Binary naming its cargo binary")
        binaries[logical_id] = LocalFunction(logical_id=logical_id, binary=binary)
    context = _Context(template, binaries, stack_name)
    global_properties = (template.get("Globals") or {}).get("Function") or {}
    found = {}
    for logical_id, function in binaries.items():
        properties = template["Resources"][logical_id].get("Properties") or {}
        timeout = properties.get("Timeout", global_properties.get("Timeout", DEFAULT_FUNCTION_TIMEOUT))
        try:
            timeout_seconds = int(context.resolve(timeout, f"{logical_id}.Timeout"))
        except ValueError:
            raise TemplateError(f"function {logical_id}: Timeout {timeout!r} is not a number of seconds") from None
        variables = {
            **((global_properties.get("Environment") or {}).get("Variables") or {}),
            **((properties.get("Environment") or {}).get("Variables") or {}),
        }
        environment = tuple(
            sorted(
                (name, context.resolve(value, f"{logical_id}.Environment.{name}")) for name, value in variables.items()
            )
        )
        found[logical_id] = LocalFunction(logical_id, function.binary, timeout_seconds, environment)
    return found


def parameter_default(template: dict[str, Any], name: str) -> str | None:
    """The Default of template parameter `name`, or None when there is no such parameter."""
    parameter = (template.get("Parameters") or {}).get(name)
    if not isinstance(parameter, dict) or parameter.get("Default") is None:
        return None
    return str(parameter["Default"])


def merged_environment(local_functions: dict[str, LocalFunction]) -> dict[str, str]:
    """One environment for every function (cargo lambda watch has only one): the union of the
    functions' variables. A variable two functions set differently is an error naming both."""
    merged: dict[str, str] = {}
    owner: dict[str, str] = {}
    for function in local_functions.values():
        for name, value in function.environment:
            if name in merged and merged[name] != value:
                raise TemplateError(
                    f"{owner[name]} and {function.logical_id} set {name} differently ({merged[name]!r}, {value!r}): "
                    "the local stack runs every function with one environment"
                )
            merged[name] = value
            owner[name] = function.logical_id
    return merged


def state_machines(template: dict[str, Any], template_dir: Path, stack_name: str) -> list[LocalStateMachine]:
    """The template's state machines with their DefinitionUri files read and substituted."""
    known_functions = functions(template, stack_name)
    machines = []
    for logical_id, resource in template["Resources"].items():
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::Serverless::StateMachine":
            continue
        properties = resource.get("Properties") or {}
        uri = properties.get("DefinitionUri")
        if not isinstance(uri, str):
            raise TemplateError(
                f"state machine {logical_id} has no DefinitionUri file (the local stack runs the ASL file)"
            )
        path = template_dir / uri
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise TemplateError(f"state machine {logical_id}: cannot read {path}: {err}") from err
        context = _Context(template, known_functions, stack_name)
        raw = properties.get("DefinitionSubstitutions") or {}
        if not isinstance(raw, dict):
            raise TemplateError(f"state machine {logical_id}: DefinitionSubstitutions is not a mapping")
        values = {
            key: context.resolve(value, f"{logical_id}.DefinitionSubstitutions.{key}") for key, value in raw.items()
        }
        definition = substitute(text, values, f"{path}")
        try:
            json.loads(definition)
        except ValueError as err:
            raise TemplateError(f"{path} is not valid JSON once substituted: {err}") from err
        name_value = properties.get("Name")
        name = (
            context.resolve(name_value, f"{logical_id}.Name")
            if name_value is not None
            else default_state_machine_name(stack_name, logical_id)
        )
        machines.append(
            LocalStateMachine(logical_id=logical_id, name=name, definition_path=path, definition=definition)
        )
    return machines


def default_state_machine_name(stack_name: str, logical_id: str) -> str:
    """A stable local name for a state machine the template leaves unnamed (CloudFormation would
    make one up): `DecommissionStateMachine` in stack `kms-decommission` -> `kms-decommission`,
    `CancelStateMachine` -> `kms-decommission-cancel`."""
    kebab = _kebab(logical_id.removesuffix("StateMachine") or logical_id)
    return stack_name if stack_name == kebab or stack_name.endswith(f"-{kebab}") else f"{stack_name}-{kebab}"


def default_table_name(stack_name: str, logical_id: str) -> str:
    """A stable local name for a table the template leaves unnamed (CloudFormation would make one
    up, `<stack>-<LogicalId>-<random>`): `LedgerTable` in stack `kms-decommission` ->
    `kms-decommission-ledger-table`."""
    return f"{stack_name}-{_kebab(logical_id)}"


def _kebab(name: str) -> str:
    """`KeyAudit` -> `key-audit`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


TABLE_TYPE = "AWS::DynamoDB::Table"
# The AWS::DynamoDB::Table properties the local stack creates tables with. Any other property
# (indexes, streams, TTL, ...) is refused rather than left out of the local table.
TABLE_PROPERTIES = frozenset(
    {
        "TableName",
        "KeySchema",
        "AttributeDefinitions",
        "BillingMode",
        "ProvisionedThroughput",
        "PointInTimeRecoverySpecification",
        "DeletionProtectionEnabled",
        "SSESpecification",
        "Tags",
    }
)


def tables(template: dict[str, Any], stack_name: str = "kms-decommission") -> list[LocalTable]:
    """The template's DynamoDB tables with their names and settings resolved to local values."""
    context = _Context(template, functions(template, stack_name), stack_name)
    found = []
    for logical_id, resource in template["Resources"].items():
        if isinstance(resource, dict) and resource.get("Type") == TABLE_TYPE:
            properties = resource.get("Properties")
            found.append(_table(context, logical_id, {} if properties is None else properties))
    return found


def _table(context: _Context, logical_id: str, properties: Any) -> LocalTable:
    where = f"table {logical_id}"
    if not isinstance(properties, dict):
        raise TemplateError(f"{where}: Properties is not a mapping")
    unsupported = sorted(set(properties) - TABLE_PROPERTIES)
    if unsupported:
        raise TemplateError(
            f"{where}: the local stack cannot create a table with {', '.join(unsupported)} "
            f"(supported: {', '.join(sorted(TABLE_PROPERTIES))})"
        )
    key_schema = _pairs(context, properties.get("KeySchema"), ("AttributeName", "KeyType"), f"{where}: KeySchema")
    if [key_type for _, key_type in key_schema] not in (["HASH"], ["HASH", "RANGE"]):
        raise TemplateError(
            f"{where}: KeySchema must be one HASH key, optionally followed by one RANGE key, got {list(key_schema)}"
        )
    attributes = _pairs(
        context,
        properties.get("AttributeDefinitions"),
        ("AttributeName", "AttributeType"),
        f"{where}: AttributeDefinitions",
    )
    defined = dict(attributes)
    if len(defined) != len(attributes):
        raise TemplateError(f"{where}: AttributeDefinitions names an attribute twice")
    bad_types = sorted(f"{name} ({kind})" for name, kind in attributes if kind not in ("S", "N", "B"))
    if bad_types:
        raise TemplateError(f"{where}: AttributeType must be S, N or B: {', '.join(bad_types)}")
    key_names = {name for name, _ in key_schema}
    if set(defined) != key_names:
        # Without secondary indexes, DynamoDB wants exactly the key attributes defined.
        raise TemplateError(
            f"{where}: AttributeDefinitions ({', '.join(sorted(defined))}) must define exactly the KeySchema's "
            f"attributes ({', '.join(sorted(key_names))})"
        )
    # CloudFormation's default billing mode is PROVISIONED (then ProvisionedThroughput is required).
    billing_mode = context.resolve(properties.get("BillingMode", "PROVISIONED"), f"{where}: BillingMode")
    throughput = properties.get("ProvisionedThroughput")
    provisioned = None
    if billing_mode == "PROVISIONED":
        if not isinstance(throughput, dict):
            raise TemplateError(f"{where}: BillingMode PROVISIONED needs ProvisionedThroughput")
        provisioned = (
            _count(context, throughput.get("ReadCapacityUnits"), f"{where}: ReadCapacityUnits"),
            _count(context, throughput.get("WriteCapacityUnits"), f"{where}: WriteCapacityUnits"),
        )
    elif billing_mode == "PAY_PER_REQUEST":
        if throughput is not None:
            raise TemplateError(f"{where}: ProvisionedThroughput with BillingMode PAY_PER_REQUEST")
    else:
        raise TemplateError(f"{where}: BillingMode {billing_mode!r} is neither PAY_PER_REQUEST nor PROVISIONED")
    pitr = _mapping(properties, "PointInTimeRecoverySpecification", where)
    sse = _mapping(properties, "SSESpecification", where)
    sse_type = sse.get("SSEType")
    sse_key = sse.get("KMSMasterKeyId")
    return LocalTable(
        logical_id=logical_id,
        name=context.table_name(logical_id),
        key_schema=key_schema,
        attribute_definitions=attributes,
        billing_mode=billing_mode,
        provisioned_throughput=provisioned,
        point_in_time_recovery=_flag(
            context, pitr.get("PointInTimeRecoveryEnabled"), f"{where}: PointInTimeRecoveryEnabled"
        ),
        deletion_protection=_flag(
            context, properties.get("DeletionProtectionEnabled"), f"{where}: DeletionProtectionEnabled"
        ),
        sse_enabled=_flag(context, sse.get("SSEEnabled"), f"{where}: SSESpecification.SSEEnabled"),
        sse_type=None if sse_type is None else context.resolve(sse_type, f"{where}: SSESpecification.SSEType"),
        sse_kms_key=None if sse_key is None else context.resolve(sse_key, f"{where}: SSESpecification.KMSMasterKeyId"),
        tags=_pairs(context, properties.get("Tags"), ("Key", "Value"), f"{where}: Tags", allow_empty=True),
    )


def _pairs(
    context: _Context, value: Any, fields: tuple[str, str], where: str, allow_empty: bool = False
) -> tuple[tuple[str, str], ...]:
    """A list of mappings with exactly the two `fields` each (KeySchema, AttributeDefinitions,
    Tags), resolved to (first, second) pairs; empty or absent only when `allow_empty`."""
    if value is None and allow_empty:
        return ()
    if value is None:
        raise TemplateError(f"{where} is missing")
    if not isinstance(value, list) or (not value and not allow_empty):
        raise TemplateError(f"{where} must be a non-empty list of {{{fields[0]}, {fields[1]}}}, got {value!r}")
    pairs = []
    for entry in value:
        if not isinstance(entry, dict) or set(entry) != set(fields):
            raise TemplateError(f"{where}: each entry needs exactly {fields[0]} and {fields[1]}, got {entry!r}")
        first, second = (context.resolve(entry[field], f"{where}.{field}") for field in fields)
        pairs.append((first, second))
    return tuple(pairs)


def _mapping(properties: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    """Property `name`, a mapping ({} when absent)."""
    value = properties.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TemplateError(f"{where}: {name} is not a mapping")
    return value


def _flag(context: _Context, value: Any, where: str) -> bool:
    """A CloudFormation Boolean (true/false, or a string of one once resolved); absent is false."""
    if value is None:
        return False
    resolved = context.resolve(value, where).lower()
    if resolved not in ("true", "false"):
        raise TemplateError(f"{where}: {value!r} is not true or false")
    return resolved == "true"


def _count(context: _Context, value: Any, where: str) -> int:
    """A positive whole number (capacity units)."""
    if value is None:
        raise TemplateError(f"{where} is missing")
    try:
        count = int(context.resolve(value, where))
    except ValueError:
        count = 0
    if count < 1:
        raise TemplateError(f"{where}: {value!r} is not a positive number")
    return count


def substitute(text: str, values: dict[str, str], where: str) -> str:
    """Replace every `${Name}` in `text`; a placeholder without a value is an error."""
    missing = sorted({name for name in PLACEHOLDER.findall(text) if name not in values})
    if missing:
        raise TemplateError(f"{where} uses placeholders with no DefinitionSubstitutions value: {', '.join(missing)}")
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], text)


class _Context:
    """Resolves intrinsic functions to the local stack's values."""

    def __init__(self, template: dict[str, Any], known_functions: dict[str, LocalFunction], stack_name: str) -> None:
        self.parameters = template.get("Parameters") or {}
        self.resources = template["Resources"]
        self.functions = known_functions
        self.stack_name = stack_name
        self.pseudo = {
            "AWS::Region": LOCAL_REGION,
            "AWS::AccountId": LOCAL_ACCOUNT,
            "AWS::StackName": stack_name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }

    def resolve(self, value: Any, where: str) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (str, int, float)):
            return str(value)
        if isinstance(value, dict) and len(value) == 1:
            ((function, argument),) = value.items()
            if function == "Ref":
                return self._ref(argument, where)
            if function == "Fn::GetAtt":
                return self._get_att(argument, where)
            if function == "Fn::Sub":
                return self._sub(argument, where)
        raise TemplateError(
            f"{where}: cannot resolve {value!r} locally "
            "(supported: literals, Ref, GetAtt <Function>.Arn, GetAtt <Table>.Arn, Sub)"
        )

    def _ref(self, name: Any, where: str) -> str:
        if not isinstance(name, str):
            raise TemplateError(f"{where}: Ref of {name!r}")
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            default = (self.parameters[name] or {}).get("Default")
            if default is None:
                raise TemplateError(f"{where}: parameter {name} has no Default to use locally")
            return str(default)
        if name in self.functions:
            return self.functions[name].binary
        resource = self.resources.get(name)
        if isinstance(resource, dict) and resource.get("Type") == "AWS::Serverless::StateMachine":
            given = (resource.get("Properties") or {}).get("Name")
            machine = (
                self.resolve(given, f"{name}.Name")
                if given is not None
                else default_state_machine_name(self.stack_name, name)
            )
            return f"arn:aws:states:{LOCAL_REGION}:{LOCAL_ACCOUNT}:stateMachine:{machine}"
        if self._is_table(name):
            return self.table_name(name)
        raise TemplateError(
            f"{where}: Ref {name} is neither a parameter, a pseudo parameter, a function, a state machine nor a table"
        )

    def _is_table(self, logical_id: str) -> bool:
        resource = self.resources.get(logical_id)
        return isinstance(resource, dict) and resource.get("Type") == TABLE_TYPE

    def table_name(self, logical_id: str) -> str:
        """The name of table `logical_id`: its TableName, else the stable local default."""
        properties = self.resources[logical_id].get("Properties") or {}
        given = properties.get("TableName") if isinstance(properties, dict) else None
        if given is None:
            return default_table_name(self.stack_name, logical_id)
        return self.resolve(given, f"{logical_id}.TableName")

    def _get_att(self, argument: Any, where: str) -> str:
        if isinstance(argument, str):
            argument = argument.split(".", 1)
        if not (isinstance(argument, list) and len(argument) == 2):
            raise TemplateError(f"{where}: GetAtt needs <LogicalId>.<Attribute>, got {argument!r}")
        logical_id, attribute = argument
        if logical_id in self.functions and attribute == "Arn":
            return self.functions[logical_id].arn
        if self._is_table(logical_id) and attribute == "Arn":
            return table_arn(self.table_name(logical_id))
        raise TemplateError(
            f"{where}: GetAtt {logical_id}.{attribute} has no local value (only <Function>.Arn and <Table>.Arn)"
        )

    def _sub(self, argument: Any, where: str) -> str:
        variables: dict[str, Any] = {}
        if isinstance(argument, list) and len(argument) == 2 and isinstance(argument[1], dict):
            argument, variables = argument
        if not isinstance(argument, str):
            raise TemplateError(f"{where}: Sub of {argument!r}")

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return self.resolve(variables[name], where)
            if "." in name:
                return self._get_att(name.split(".", 1), where)
            return self._ref(name, where)

        return PLACEHOLDER.sub(replace, argument)


def outputs(template: dict[str, Any], stack_name: str = "kms-decommission") -> dict[str, str]:
    """The template's Outputs resolved to local values: every output without a Condition whose
    value resolves locally (the state machines, the ledger table, the console URL); those that
    name resources the local stack does not create (the alarm topic, the webhook's URL) are left
    out. The local stack serves them as a CloudFormation stack, so the command line finds its
    state machines by stack name exactly as on AWS."""
    context = _Context(template, functions(template, stack_name), stack_name)
    resolved = {}
    for name, output in (template.get("Outputs") or {}).items():
        if not isinstance(output, dict) or "Condition" in output:
            continue
        try:
            resolved[name] = context.resolve(output.get("Value"), f"Outputs.{name}")
        except TemplateError:
            continue
    return resolved
