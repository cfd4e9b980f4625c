"""Reads the SAM template the way the local stack needs it: which functions exist (their cargo
binaries), which state machines exist (their ASL file, name and DefinitionSubstitutions), with
every substitution resolved to a local value."""

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
    base = logical_id.removesuffix("StateMachine") or logical_id
    kebab = re.sub(r"(?<!^)(?=[A-Z])", "-", base).lower()
    return stack_name if stack_name == kebab or stack_name.endswith(f"-{kebab}") else f"{stack_name}-{kebab}"


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
            f"{where}: cannot resolve {value!r} locally (supported: literals, Ref, GetAtt <Function>.Arn, Sub)"
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
        raise TemplateError(
            f"{where}: Ref {name} is neither a parameter, a pseudo parameter, a function nor a state machine"
        )

    def _get_att(self, argument: Any, where: str) -> str:
        if isinstance(argument, str):
            argument = argument.split(".", 1)
        if not (isinstance(argument, list) and len(argument) == 2):
            raise TemplateError(f"{where}: GetAtt needs <LogicalId>.<Attribute>, got {argument!r}")
        logical_id, attribute = argument
        if logical_id in self.functions and attribute == "Arn":
            return self.functions[logical_id].arn
        raise TemplateError(f"{where}: GetAtt {logical_id}.{attribute} has no local value (only <Function>.Arn)")

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
