"""Least privilege, asserted on template.yaml's IAM policies.

Every rule is a function returning its violations (empty when the template keeps it); the tests
assert each rule holds on template.yaml, and `test_each_rule_catches_its_mutation` changes the
template in memory the way a careless edit would and asserts the rule then fails, so that no rule
passes vacuously.

EXPECTED_ACTIONS is the exact set of actions each role may have, derived from the code: each entry
names the call that needs it. A grant no code needs, or a call no grant allows, fails
`rule_exact_actions` (and `rule_grants_match_the_code`, which reads the SDK calls in the modules that
alone call each AWS service: src/kms.rs, src/sfn/, src/ledger.rs, ...). docs/threat-model.md lists
the rules and what each one protects."""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from local.stack.template import load_template

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"

ACCOUNT_KEYS = "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/*"
# The decommission state machine is named after the stack (its Name is !Ref AWS::StackName), so
# both spellings name the executions of this stack's decommission state machine and of nothing else.
DECOMMISSION_EXECUTIONS = {
    "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:execution:${AWS::StackName}:*",
    "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:execution:${DecommissionStateMachine.Name}:*",
}
CANCEL_EXECUTIONS = {
    "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:execution:${CancelStateMachine.Name}:*",
}
DECOMMISSION_MACHINE = "${DecommissionStateMachine}"
CANCEL_MACHINE = "${CancelStateMachine}"
LEDGER = "${LedgerTable.Arn}"
# What SAM's LambdaInvokePolicy template grants for a function (its name, then anything: versions).
LAMBDA_FUNCTION = "arn:${{AWS::Partition}}:lambda:${{AWS::Region}}:${{AWS::AccountId}}:function:{}*"
WEBHOOK_SECRET = "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${WebhookSecretParameterName}"
CUSTOM_KEY_STORE_ORIGINS = {"AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"}
MARKER_TAG_KEYS = ["kms-decommission:*"]

# Actions IAM cannot scope to a resource (no resource type in the Service Authorization Reference):
# they need "Resource": "*". Every other action must name its resources.
NO_RESOURCE_TYPE = {
    "kms:DescribeCustomKeyStores",
    "kms:ConnectCustomKeyStore",
    "kms:DisconnectCustomKeyStore",
    "kms:DeleteCustomKeyStore",
    "kms:CreateCustomKeyStore",
    "kms:UpdateCustomKeyStore",
    "kms:ListKeys",
    "cloudtrail:LookupEvents",
    "states:SendTaskSuccess",
    "states:SendTaskFailure",
    # CloudWatch Logs delivery for Step Functions execution logs (Step Functions' documented policy).
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}
# Custom key store actions that change a store; CreateCustomKeyStore and UpdateCustomKeyStore are
# never granted.
STORE_CHANGES = {
    "kms:ConnectCustomKeyStore",
    "kms:DisconnectCustomKeyStore",
    "kms:DeleteCustomKeyStore",
    "kms:CreateCustomKeyStore",
    "kms:UpdateCustomKeyStore",
}
# KMS actions on keys that only read. Every other KMS action on a key changes it (its state, tags,
# policy, grants, material, aliases) and is allowed on custom key store keys only.
KEY_READS = {"kms:DescribeKey", "kms:ListResourceTags", "kms:GetKeyLastUsage"}
# Key changes this stack makes that cannot be undone or that undo a decommission: they also need
# this stack's execution marker on the key.
MARKED_KEY_CHANGES = {"kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion", "kms:EnableKey"}
# Which functions may change a store, and how (the code paths are in EXPECTED_ACTIONS).
STORE_CHANGERS = {
    "kms:ConnectCustomKeyStore": {
        "QuarantineStoreFunction",
        "EnsureStoreConnectedFunction",
        "CancelDecommissionFunction",
    },
    "kms:DisconnectCustomKeyStore": {
        "QuarantineStoreFunction",
        "EnsureStoreConnectedFunction",
        "DisconnectStoreFunction",
    },
    "kms:DeleteCustomKeyStore": {"DeleteStoreFunction"},
}
# Service prefixes no role of this stack may use at all: no role can pass or assume roles, change
# IAM, read other secrets, or change the stack.
FORBIDDEN_SERVICES = {"iam", "sts", "organizations", "secretsmanager", "cloudformation", "sso", "ec2", "s3"}

STEP_FUNCTIONS = (
    "PlanDecommissionFunction",
    "RequestApprovalFunction",
    "RecordApprovalFunction",
    "QuarantineStoreFunction",
    "EnsureStoreConnectedFunction",
    "ScheduleKeyDeletionFunction",
    "CheckKeysDeletedFunction",
    "DisconnectStoreFunction",
    "DeleteStoreFunction",
)
# Every step first checks whom it acts for (src/steps/caller.rs, admit): the execution named in its
# document must be a RUNNING execution of this stack's decommission state machine (DescribeExecution)
# holding the store's lock in the ledger (GetItem).
_CALLER = {
    "states:DescribeExecution": "steps/caller.rs admit: runs.describe(execution)",
    "dynamodb:GetItem": "steps/caller.rs admit: ledger.lock_holder, run_record",
}
_SCAN = {
    "kms:ListKeys": "inventory.rs scan_page: kms.list_keys",
    "kms:DescribeKey": "inventory.rs scan_page: kms.describe_key",
}
_LOG_DELIVERY = {
    action: "execution logs to CloudWatch Logs" for action in NO_RESOURCE_TYPE if action.startswith("logs:")
}

EXPECTED_ACTIONS: dict[str, dict[str, str]] = {
    "PlanDecommissionFunction": {
        **_CALLER,
        **_SCAN,
        "kms:DescribeCustomKeyStores": "steps/plan.rs: store::describe",
        "kms:GetKeyLastUsage": "steps/plan.rs: usage::key_last_use (last-use guard)",
        "dynamodb:PutItem": "steps/caller.rs: ledger.take_lock (conditional), ledger.record_run",
        "dynamodb:UpdateItem": "steps/caller.rs record_result: ledger.set_approval_required",
    },
    "RequestApprovalFunction": {
        **_CALLER,
        "states:GetExecutionHistory": "steps/approval.rs: the task token's position in the history",
        "dynamodb:UpdateItem": "steps/approval.rs: ledger.request_approval",
    },
    "RecordApprovalFunction": {
        **_CALLER,
        "states:GetExecutionHistory": "steps/approval.rs: the answer read from the execution history",
        "dynamodb:UpdateItem": "steps/approval.rs: ledger.record_approval",
    },
    "QuarantineStoreFunction": {
        **_CALLER,
        **_SCAN,
        "kms:DescribeCustomKeyStores": "steps/quarantine.rs: store::describe",
        "kms:DisconnectCustomKeyStore": "steps/quarantine.rs: store::disconnect (quarantine begins)",
        "kms:ConnectCustomKeyStore": "steps/quarantine.rs: store::connect (quarantine ends)",
        "cloudtrail:LookupEvents": "steps/quarantine.rs: key_use::scan_key_use",
        "logs:StartQuery": "logs_insights.rs: the Logs Insights path (CloudTrailLogGroupName set)",
        "logs:GetQueryResults": "logs_insights.rs: the Logs Insights path (CloudTrailLogGroupName set)",
        "dynamodb:UpdateItem": "steps/caller.rs: ledger.set_phase",
    },
    "EnsureStoreConnectedFunction": {
        **_CALLER,
        "kms:DescribeCustomKeyStores": "steps/ensure_store_connected.rs: store::describe",
        "kms:ConnectCustomKeyStore": "steps/ensure_store_connected.rs: store::connect",
        "kms:DisconnectCustomKeyStore": "steps/ensure_store_connected.rs: a FAILED store is disconnected first",
        "dynamodb:UpdateItem": "steps/caller.rs: ledger.set_phase",
    },
    "ScheduleKeyDeletionFunction": {
        **_CALLER,
        **_SCAN,
        "kms:DescribeCustomKeyStores": "steps/schedule_key_deletion.rs: store::describe",
        "kms:GetKeyLastUsage": "steps/schedule_key_deletion.rs: usage::key_last_use",
        "kms:ListResourceTags": "keys.rs ensure_scheduled: read_markers",
        "kms:TagResource": "keys.rs ensure_scheduled: the markers, before scheduling",
        "kms:ScheduleKeyDeletion": "keys.rs ensure_scheduled: kms.schedule_key_deletion",
        "dynamodb:PutItem": "keys.rs ensure_scheduled: ledger.record_key (conditional)",
        "dynamodb:UpdateItem": "keys.rs ensure_scheduled: ledger.mark_scheduled",
    },
    "CheckKeysDeletedFunction": {
        **_CALLER,
        **_SCAN,
        "kms:DescribeCustomKeyStores": "steps/check_keys_deleted.rs: store::describe",
        "dynamodb:Query": "steps/caller.rs mark_keys_seen_deleted: ledger.key_records",
        "dynamodb:UpdateItem": "steps/caller.rs mark_keys_seen_deleted: ledger.mark_seen_deleted",
        "cloudtrail:LookupEvents": "steps/check_keys_deleted.rs check_key_material: KMS's DeleteKey events",
    },
    "DisconnectStoreFunction": {
        **_CALLER,
        "kms:DescribeCustomKeyStores": "steps/disconnect_store.rs: store::describe",
        "kms:DisconnectCustomKeyStore": "steps/disconnect_store.rs: store::disconnect",
        "dynamodb:UpdateItem": "steps/caller.rs: ledger.set_phase",
    },
    "DeleteStoreFunction": {
        **_CALLER,
        "kms:DeleteCustomKeyStore": "steps/delete_store.rs: store::delete",
        "dynamodb:Query": "steps/caller.rs mark_keys_seen_deleted: ledger.key_records",
        "dynamodb:UpdateItem": "steps/caller.rs record_result: ledger.set_outcome, mark_seen_deleted",
        "dynamodb:DeleteItem": "steps/caller.rs record_result: ledger.release_lock (conditional)",
    },
    "CancelDecommissionFunction": {
        "kms:DescribeCustomKeyStores": "cancel/step.rs run: store::describe",
        "kms:ConnectCustomKeyStore": "cancel/step.rs reconnect: a store its decommission quarantined",
        "kms:DescribeKey": "cancel/mod.rs restore_key: kms.describe_key",
        "kms:CancelKeyDeletion": "cancel/mod.rs restore_key: kms.cancel_key_deletion",
        "kms:EnableKey": "cancel/mod.rs restore_key: kms.enable_key (keys the ledger recorded Enabled)",
        "kms:UntagResource": "cancel/mod.rs restore_key: the markers removed",
        "states:DescribeExecution": "cancel/step.rs stop_decommission: executions.current_state",
        "states:GetExecutionHistory": "cancel/step.rs stop_decommission: the decommission's last document",
        "states:StopExecution": "cancel/step.rs stop_decommission: executions.stop",
        "dynamodb:GetItem": "cancel/step.rs: ledger.run_record",
        "dynamodb:Query": "cancel/step.rs run: ledger.key_records (what to restore comes from the ledger alone)",
        "dynamodb:UpdateItem": "cancel/mod.rs restore_key: ledger.mark_restored; ledger.set_outcome",
        "dynamodb:DeleteItem": "cancel/step.rs release_run: ledger.release_lock",
    },
    "TagTriggerFunction": {
        "kms:DescribeCustomKeyStores": "triggers/tag.rs: store::describe",
        "kms:DescribeKey": "triggers/tag.rs: kms.describe_key (the tagged key's store)",
        "kms:ListResourceTags": "triggers/tag.rs: kms.list_resource_tags (the confirmation tag)",
        "states:StartExecution": "sfn/mod.rs start_exclusive",
        "states:ListExecutions": "sfn/mod.rs running_for_store",
        "states:DescribeExecution": "sfn/mod.rs running_for_store, describe_named",
        "states:StopExecution": "sfn/mod.rs settle: only its own duplicate",
        "events:PutEvents": "triggers/status.rs: TriggerRefused status events",
        "cloudtrail:LookupEvents": "triggers/tag.rs recorded_call: CloudTrail's record of the TagResource call",
    },
    "TicketWebhookFunction": {
        "ssm:GetParameter": "triggers/webhook/secret.rs load_from_ssm: the HMAC secret",
        "kms:Decrypt": "the SecureString's decryption, through SSM only",
        "kms:DescribeCustomKeyStores": "triggers/webhook/mod.rs: store::describe",
        "states:StartExecution": "sfn/mod.rs start_exclusive (decommission), start_named (cancel)",
        "states:ListExecutions": "sfn/mod.rs running_for_store (both state machines)",
        "states:DescribeExecution": "sfn/mod.rs describe, current_state (status)",
        "states:GetExecutionHistory": "sfn/mod.rs current_state (status)",
        "states:StopExecution": "sfn/mod.rs settle: only its own duplicate",
        "states:SendTaskSuccess": "sfn/mod.rs send_task_success (approve, token from the ledger)",
        "states:SendTaskFailure": "sfn/mod.rs send_task_failure (reject, token from the ledger)",
        "dynamodb:GetItem": "triggers/webhook/mod.rs: the approval token from the ledger",
    },
    "DecommissionStateMachine": {
        "lambda:InvokeFunction": "statemachine/decommission.asl.json tasks",
        "events:PutEvents": "statemachine/decommission.asl.json status events",
        **_LOG_DELIVERY,
    },
    "CancelStateMachine": {
        "lambda:InvokeFunction": "statemachine/cancel.asl.json task",
        "events:PutEvents": "statemachine/cancel.asl.json status events",
        **_LOG_DELIVERY,
    },
    "StatusEventsRuleRole": {"events:InvokeApiDestination": "the status events rule's target"},
}
# The modules that alone call each AWS service (README: how the code is laid out), and how their
# SDK calls look (`self.client.list_keys()`, `self.sfn.describe_execution()`, `ssm.get_parameter()`).
SERVICE_DOORS = {
    "kms": ("src/kms.rs",),
    "states": ("src/sfn/mod.rs",),
    "dynamodb": ("src/ledger.rs",),
    "cloudtrail": ("src/cloudtrail.rs",),
    "logs": ("src/logs_insights.rs",),
    "events": ("src/triggers/status.rs",),
    "ssm": ("src/triggers/webhook/secret.rs",),
}
SDK_CALL = re.compile(r"(?:\.client|\.sfn|\bssm)\s*\.([a-z][a-z_]*)\(\)")
# Granted without a call of the code: SSM decrypts the SecureString with kms:Decrypt on the caller's
# behalf (kms:ViaService).
GRANTED_FOR_A_SERVICE = {"kms:Decrypt"}


# ------------------------------------------------------------------------------------------------
# The template's policies, normalised
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Statement:
    """One policy statement of a role, with intrinsic functions written as `${Name}` strings."""

    owner: str  # logical id of the function, state machine or role whose policy it is
    sid: str
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    condition: dict[str, dict[str, Any]]
    not_action: bool = False
    not_resource: bool = False

    def has(self, action: str) -> bool:
        return action.lower() in {a.lower() for a in self.actions}


def render(value: Any) -> Any:
    """An intrinsic function as one string (`!Ref X` -> `${X}`, `!GetAtt X.Arn` -> `${X.Arn}`,
    `!Sub` as its text with its variables filled in); lists element-wise; anything else (another
    intrinsic) as JSON, which no rule accepts as a resource."""
    if isinstance(value, list):
        return [render(item) for item in value]
    if isinstance(value, dict) and len(value) == 1:
        (name, argument), *_ = value.items()
        if name == "Ref" and isinstance(argument, str):
            return "${" + argument + "}"
        if name == "Fn::GetAtt":
            parts = argument.split(".", 1) if isinstance(argument, str) else argument
            return "${" + ".".join(str(part) for part in parts) + "}"
        if name == "Fn::Sub":
            if isinstance(argument, str):
                return argument
            text, variables = argument
            return re.sub(
                r"\$\{([^}]+)\}", lambda m: str(render(variables.get(m.group(1), "${" + m.group(1) + "}"))), text
            )
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value


def _as_tuple(value: Any) -> tuple[str, ...]:
    rendered = render(value)
    return tuple(str(v) for v in rendered) if isinstance(rendered, list) else (str(rendered),)


def _unconditional(statements: list[Any]) -> Iterator[Any]:
    """The statements, with each `!If [condition, then, else]` replaced by its branches that are
    statements (a conditional grant is a grant: the rules see it whatever the condition)."""
    for raw in statements:
        if isinstance(raw, dict) and set(raw) == {"Fn::If"}:
            branches = raw["Fn::If"][1:] if isinstance(raw["Fn::If"], list) else []
            yield from (b for b in branches if isinstance(b, dict) and "Effect" in b)
        else:
            yield raw


def _statements(owner: str, document: dict[str, Any]) -> Iterator[Statement]:
    statements = document.get("Statement", [])
    statements = list(_unconditional(statements if isinstance(statements, list) else [statements]))
    for index, raw in enumerate(statements):
        condition = {
            op: {key: render(v) for key, v in block.items()} for op, block in (raw.get("Condition") or {}).items()
        }
        yield Statement(
            owner=owner,
            sid=raw.get("Sid", f"#{index}"),
            effect=raw.get("Effect", ""),
            actions=_as_tuple(raw.get("Action", raw.get("NotAction", []))),
            resources=_as_tuple(raw.get("Resource", raw.get("NotResource", []))),
            condition=condition,
            not_action="NotAction" in raw,
            not_resource="NotResource" in raw,
        )


# SAM policy templates this template uses, as the statements SAM makes of them.
def _sam_policy_template(owner: str, name: str, argument: dict[str, Any]) -> Statement:
    if name == "LambdaInvokePolicy":
        function = render(argument["FunctionName"])
        return Statement(owner, name, "Allow", ("lambda:InvokeFunction",), (LAMBDA_FUNCTION.format(function),), {})
    if name == "EventBridgePutEventsPolicy":
        bus = render(argument["EventBusName"])
        return Statement(
            owner,
            name,
            "Allow",
            ("events:PutEvents",),
            (f"arn:${{AWS::Partition}}:events:${{AWS::Region}}:${{AWS::AccountId}}:event-bus/{bus}",),
            {},
        )
    raise ValueError(f"{owner}: SAM policy template {name} is not known to this test")


@dataclass
class Roles:
    """Every identity policy of the template by owner, and what could not be read as one."""

    statements: list[Statement]
    unreadable: list[str]  # managed policies, unknown policy templates, custom roles: all refused

    def of(self, owner: str) -> list[Statement]:
        return [s for s in self.statements if s.owner == owner]

    def owners(self) -> set[str]:
        return {s.owner for s in self.statements}

    def allowed(self) -> Iterator[Statement]:
        return (s for s in self.statements if s.effect == "Allow")


def roles(template: dict[str, Any]) -> Roles:
    found = Roles([], [])
    globals_function = (template.get("Globals") or {}).get("Function") or {}
    for forbidden in ("Policies", "Role", "PermissionsBoundary"):
        if forbidden in globals_function:
            found.unreadable.append(f"Globals.Function.{forbidden}: every function states its own policies")
    for owner, resource in template["Resources"].items():
        kind = resource.get("Type")
        properties = resource.get("Properties") or {}
        if kind in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
            if "Role" in properties:
                found.unreadable.append(f"{owner}: Role (a role made elsewhere) instead of its own Policies")
            policies = properties.get("Policies", [])
            for policy in policies if isinstance(policies, list) else [policies]:
                if isinstance(policy, dict) and "Statement" in policy:
                    found.statements.extend(_statements(owner, policy))
                elif isinstance(policy, dict) and len(policy) == 1:
                    (name, argument), *_ = policy.items()
                    try:
                        found.statements.append(_sam_policy_template(owner, name, argument))
                    except ValueError as err:
                        found.unreadable.append(str(err))
                else:
                    found.unreadable.append(f"{owner}: managed policy {policy!r}")
        elif kind == "AWS::IAM::Role":
            for policy in properties.get("Policies", []):
                found.statements.extend(_statements(owner, policy["PolicyDocument"]))
            if properties.get("ManagedPolicyArns"):
                found.unreadable.append(f"{owner}: ManagedPolicyArns {properties['ManagedPolicyArns']!r}")
        elif kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::User", "AWS::IAM::Group"):
            found.unreadable.append(f"{owner}: {kind} (this stack grants through its roles only)")
    return found


def condition_values(statement: Statement, operator: str, key: str) -> list[str] | None:
    """The values of `key` under exactly `operator` (keys compare case-insensitively, as IAM's)."""
    for name, value in (statement.condition.get(operator) or {}).items():
        if name.lower() == key.lower():
            return [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return None


@functools.cache
def load() -> dict[str, Any]:
    """template.yaml, parsed once (rules only read it; mutations change deep copies)."""
    return load_template(TEMPLATE)


# ------------------------------------------------------------------------------------------------
# The rules: each returns its violations
# ------------------------------------------------------------------------------------------------
def rule_policies_are_readable(template: dict[str, Any]) -> list[str]:
    """Every grant is an inline statement of a resource's own policies (or a known SAM policy
    template): no managed policy, no role made elsewhere, no IAM user, group or standalone policy."""
    return roles(template).unreadable


def rule_no_wildcard_action(template: dict[str, Any]) -> list[str]:
    """No `*`, `kms:*`, `states:*` or any action pattern; no NotAction or NotResource (they allow
    everything not listed)."""
    found = []
    for s in roles(template).allowed():
        if s.not_action or s.not_resource:
            found.append(f"{s.owner}/{s.sid}: NotAction or NotResource")
        found += [f"{s.owner}/{s.sid}: wildcard action {a}" for a in s.actions if "*" in a or "?" in a]
    return found


def rule_exact_actions(template: dict[str, Any]) -> list[str]:
    """Each role has exactly the actions its code calls (EXPECTED_ACTIONS), no more and no fewer
    (IAM action names compare case-insensitively)."""
    found = []
    granted: dict[str, dict[str, str]] = {}
    for s in roles(template).allowed():
        granted.setdefault(s.owner, {}).update((a.lower(), a) for a in s.actions)
    for owner in sorted(set(granted) | set(EXPECTED_ACTIONS)):
        expected = {a.lower(): a for a in EXPECTED_ACTIONS.get(owner, {})}
        has = granted.get(owner, {})
        for action in sorted(set(has) - set(expected)):
            found.append(f"{owner} is granted {has[action]}, which no code of it calls (EXPECTED_ACTIONS)")
        for action in sorted(set(expected) - set(has)):
            found.append(f"{owner} lacks {expected[action]}, which {EXPECTED_ACTIONS[owner][expected[action]]} needs")
    return found


@functools.cache
def called_operations(repo: Path = REPO) -> frozenset[str]:
    """`service:Operation` for every SDK call in the modules that alone call each service."""
    calls = set()
    for service, files in SERVICE_DOORS.items():
        for relative in files:
            code = (repo / relative).read_text(encoding="utf-8").split("#[cfg(test)]")[0]
            for operation in SDK_CALL.findall(code):
                if operation != "clone":
                    calls.add(f"{service}:{''.join(part.title() for part in operation.split('_'))}")
    return frozenset(calls)


def rule_grants_match_the_code(template: dict[str, Any]) -> list[str]:
    """The functions' grants of each service the code calls are exactly the operations the code
    calls (read from the source), plus kms:Decrypt for SSM."""
    calls = {c.lower() for c in called_operations()}
    services = set(SERVICE_DOORS)
    functions = {o for o, r in template["Resources"].items() if r.get("Type") == "AWS::Serverless::Function"}
    granted = {
        a.lower()
        for s in roles(template).allowed()
        if s.owner in functions
        for a in s.actions
        if a.split(":")[0] in services
    }
    extra = granted - calls - {a.lower() for a in GRANTED_FOR_A_SERVICE}
    missing = calls - granted
    return [f"a function is granted {a}, which the code never calls" for a in sorted(extra)] + [
        f"the code calls {a}, which no function is granted" for a in sorted(missing)
    ]


# Actions granted on "*" because it is UNCONFIRMED whether IAM evaluates a resource for them, by
# the one role that needs each: GetQueryResults names only a query id (the template's comment).
UNCONFIRMED_RESOURCE_TYPE = {("QuarantineStoreFunction", "logs:GetQueryResults")}


def rule_resource_star_only_without_resource_type(template: dict[str, Any]) -> list[str]:
    """`Resource: "*"` only for actions IAM cannot scope to a resource."""
    found = []
    for s in roles(template).allowed():
        if any(r == "*" for r in s.resources):
            found += [
                f"{s.owner}/{s.sid}: {a} on *"
                for a in s.actions
                if a not in NO_RESOURCE_TYPE and (s.owner, a) not in UNCONFIRMED_RESOURCE_TYPE
            ]
    return found


def rule_key_actions_on_this_accounts_keys(template: dict[str, Any]) -> list[str]:
    """Every KMS action on keys names this account's and Region's keys (never `*`, an alias or
    another account)."""
    found = []
    for s in roles(template).allowed():
        for action in s.actions:
            if action.startswith("kms:") and action not in NO_RESOURCE_TYPE and s.resources != (ACCOUNT_KEYS,):
                found.append(f"{s.owner}/{s.sid}: {action} on {list(s.resources)}, not {ACCOUNT_KEYS}")
    return found


def rule_key_changes_only_on_custom_key_store_keys(template: dict[str, Any]) -> list[str]:
    """Every KMS action that changes a key (ScheduleKeyDeletion, CancelKeyDeletion, EnableKey,
    TagResource, UntagResource, ...) is allowed only on keys whose origin is a custom key store:
    `StringEquals kms:KeyOrigin` with AWS_CLOUDHSM and/or EXTERNAL_KEY_STORE only (not
    ...IfExists, not StringLike, not ForAnyValue: each of those also matches an AWS_KMS key)."""
    found = []
    for s in roles(template).allowed():
        for action in s.actions:
            if not action.startswith("kms:") or action in NO_RESOURCE_TYPE or action in KEY_READS:
                continue
            if action == "kms:Decrypt":
                continue  # rule_webhook_secret: only through SSM, only in the webhook
            origins = condition_values(s, "StringEquals", "kms:KeyOrigin")
            if not origins or not set(origins) <= CUSTOM_KEY_STORE_ORIGINS:
                origins_wanted = sorted(CUSTOM_KEY_STORE_ORIGINS)
                found.append(f"{s.owner}/{s.sid}: {action} without StringEquals kms:KeyOrigin in {origins_wanted}")
    return found


def rule_marked_key_changes_need_this_stacks_marker(template: dict[str, Any]) -> list[str]:
    """ScheduleKeyDeletion, CancelKeyDeletion and EnableKey also need the key to carry this stack's
    execution marker (`StringLike aws:ResourceTag/kms-decommission:execution` = an execution of this
    stack's decommission state machine): a second line behind the steps' own caller check.
    ScheduleKeyDeletion never with a window shorter than 7 days."""
    found = []
    for s in roles(template).allowed():
        for action in MARKED_KEY_CHANGES:
            if not s.has(action):
                continue
            marker = condition_values(s, "StringLike", "aws:ResourceTag/kms-decommission:execution")
            if not marker or not set(marker) <= DECOMMISSION_EXECUTIONS:
                found.append(f"{s.owner}/{s.sid}: {action} without this stack's execution marker condition ({marker})")
            if action == "kms:ScheduleKeyDeletion":
                window = condition_values(s, "NumericGreaterThanEquals", "kms:ScheduleKeyDeletionPendingWindowInDays")
                if not window or int(window[0]) < 7:
                    found.append(f"{s.owner}/{s.sid}: ScheduleKeyDeletion without a pending window of at least 7 days")
    return found


def rule_tag_changes_only_marker_tags(template: dict[str, Any]) -> list[str]:
    """TagResource and UntagResource only for the workflow's own marker tags (kms-decommission:*)."""
    found = []
    for s in roles(template).allowed():
        for action in ("kms:TagResource", "kms:UntagResource"):
            if s.has(action) and condition_values(s, "ForAllValues:StringLike", "aws:TagKeys") != MARKER_TAG_KEYS:
                found.append(f"{s.owner}/{s.sid}: {action} not limited to tag keys {MARKER_TAG_KEYS}")
    return found


def rule_store_changes_only_where_needed(template: dict[str, Any]) -> list[str]:
    """Connect, Disconnect and Delete of a custom key store only in the functions whose code does it
    (STORE_CHANGERS), only for this account (`kms:CallerAccount`); Create and Update never."""
    found = []
    for s in roles(template).allowed():
        for action in STORE_CHANGES:
            if not s.has(action):
                continue
            if s.owner not in STORE_CHANGERS.get(action, set()):
                found.append(
                    f"{s.owner}/{s.sid}: {action}, which only {sorted(STORE_CHANGERS.get(action, []))} may have"
                )
            if condition_values(s, "StringEquals", "kms:CallerAccount") != ["${AWS::AccountId}"]:
                found.append(f"{s.owner}/{s.sid}: {action} without StringEquals kms:CallerAccount = this account")
    return found


def rule_step_functions_actions_on_own_state_machine(template: dict[str, Any]) -> list[str]:
    """states:* actions only on this stack's state machines and their executions: the workflow's
    steps and the cancel on the decommission's executions only (read, and the cancel's stop), the tag
    trigger on the decommission state machine, the webhook on both. Task tokens (which IAM cannot
    scope) are answered by the webhook alone."""
    allowed_resources = {
        **dict.fromkeys(STEP_FUNCTIONS, DECOMMISSION_EXECUTIONS),
        "CancelDecommissionFunction": DECOMMISSION_EXECUTIONS,
        "TagTriggerFunction": DECOMMISSION_EXECUTIONS | {DECOMMISSION_MACHINE},
        "TicketWebhookFunction": DECOMMISSION_EXECUTIONS | CANCEL_EXECUTIONS | {DECOMMISSION_MACHINE, CANCEL_MACHINE},
    }
    machine_actions = {"states:StartExecution", "states:ListExecutions"}
    found = []
    for s in roles(template).allowed():
        for action in (a for a in s.actions if a.startswith("states:")):
            if action in ("states:SendTaskSuccess", "states:SendTaskFailure"):
                if s.owner != "TicketWebhookFunction":
                    found.append(f"{s.owner}/{s.sid}: {action}: only the webhook answers approvals")
                continue
            allowed = allowed_resources.get(s.owner, set())
            for resource in s.resources:
                if resource not in allowed:
                    found.append(f"{s.owner}/{s.sid}: {action} on {resource}, not this stack's state machine for it")
                elif (action in machine_actions) != (resource in (DECOMMISSION_MACHINE, CANCEL_MACHINE)):
                    found.append(f"{s.owner}/{s.sid}: {action} on {resource} (wrong resource type)")
            if s.owner in STEP_FUNCTIONS and action not in ("states:DescribeExecution", "states:GetExecutionHistory"):
                found.append(f"{s.owner}/{s.sid}: {action}: a workflow step only reads its own execution")
    return found


def rule_lambda_invoked_only_by_own_state_machine(template: dict[str, Any]) -> list[str]:
    """Only the state machines invoke functions, each only the functions its definition names."""
    resources = template["Resources"]
    found = []
    for s in roles(template).allowed():
        if not s.has("lambda:InvokeFunction"):
            continue
        if resources.get(s.owner, {}).get("Type") != "AWS::Serverless::StateMachine":
            found.append(f"{s.owner}/{s.sid}: lambda:InvokeFunction outside a state machine")
        # The functions its definition names: DefinitionSubstitutions `!GetAtt <Function>.Arn`.
        substitutions = ((resources.get(s.owner) or {}).get("Properties") or {}).get("DefinitionSubstitutions") or {}
        own = set()
        for value in substitutions.values():
            if isinstance(value, dict) and "Fn::GetAtt" in value:
                target, attribute = str(render(value))[2:-1].split(".", 1)
                if attribute == "Arn":
                    own.add(LAMBDA_FUNCTION.format("${" + target + "}"))
        found += [f"{s.owner}/{s.sid}: invokes {r}, not a task of its definition" for r in s.resources if r not in own]
    return found


def rule_no_identity_or_foreign_service_actions(template: dict[str, Any]) -> list[str]:
    """No iam:PassRole or any IAM, STS, Organizations, Secrets Manager, CloudFormation, EC2 or S3
    action: no role of the stack can pass or assume a role or reach beyond its job."""
    found = []
    for s in roles(template).allowed():
        found += [f"{s.owner}/{s.sid}: {a}" for a in s.actions if a.split(":")[0].lower() in FORBIDDEN_SERVICES]
    return found


def rule_webhook_secret(template: dict[str, Any]) -> list[str]:
    """The webhook's HMAC secret is read by the webhook alone: ssm:GetParameter on that one
    parameter, kms:Decrypt only through SSM (kms:ViaService), in no other function."""
    found = []
    for s in roles(template).allowed():
        for action in s.actions:
            service = action.split(":")[0].lower()
            if service == "ssm" or action.lower() == "kms:decrypt":
                if s.owner != "TicketWebhookFunction":
                    found.append(f"{s.owner}/{s.sid}: {action}: only the webhook reads its secret")
            if service == "ssm" and (action != "ssm:GetParameter" or s.resources != (WEBHOOK_SECRET,)):
                found.append(
                    f"{s.owner}/{s.sid}: {action} on {list(s.resources)}, not ssm:GetParameter on {WEBHOOK_SECRET}"
                )
            if action.lower() == "kms:decrypt" and condition_values(s, "StringEquals", "kms:ViaService") != [
                "ssm.${AWS::Region}.amazonaws.com"
            ]:
                found.append(f"{s.owner}/{s.sid}: kms:Decrypt not limited to kms:ViaService ssm")
    return found


def rule_ledger_access(template: dict[str, Any]) -> list[str]:
    """DynamoDB only on the run ledger, only item reads and writes (no Scan, batch or table
    change); only the plan and the scheduler create items (the lock, key records); only the
    delete-store step and the cancel release a lock (DeleteItem); the webhook only reads."""
    allowed = {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query", "dynamodb:DeleteItem"}
    only = {
        "dynamodb:PutItem": {"PlanDecommissionFunction", "ScheduleKeyDeletionFunction"},
        "dynamodb:DeleteItem": {"DeleteStoreFunction", "CancelDecommissionFunction"},
    }
    found = []
    for s in roles(template).allowed():
        for action in (a for a in s.actions if a.lower().startswith("dynamodb:")):
            if action not in allowed:
                found.append(f"{s.owner}/{s.sid}: {action}")
            if s.resources != (LEDGER,):
                found.append(f"{s.owner}/{s.sid}: {action} on {list(s.resources)}, not the ledger")
            if action in only and s.owner not in only[action]:
                found.append(f"{s.owner}/{s.sid}: {action}, which only {sorted(only[action])} may have")
    return found


def rule_public_url_only_for_the_webhook(template: dict[str, Any]) -> list[str]:
    """Only the webhook has a function URL, and its concurrency is bounded."""
    found = []
    for owner, resource in template["Resources"].items():
        properties = resource.get("Properties") or {}
        if "FunctionUrlConfig" in properties:
            if owner != "TicketWebhookFunction":
                found.append(f"{owner}: a function URL")
            elif not properties.get("ReservedConcurrentExecutions"):
                found.append(f"{owner}: a public function URL without ReservedConcurrentExecutions")
    return found


def rule_trust_only_services(template: dict[str, Any]) -> list[str]:
    """Roles and resource policies trust AWS services only, never an account or `*`; the dead-letter
    queue takes messages from this stack's rule only (aws:SourceArn)."""
    found = []
    for owner, resource in template["Resources"].items():
        properties = resource.get("Properties") or {}
        documents = []
        if resource.get("Type") == "AWS::IAM::Role":
            documents.append(properties.get("AssumeRolePolicyDocument") or {})
        if resource.get("Type") in ("AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy"):
            documents.append(properties.get("PolicyDocument") or {})
        for document in documents:
            for statement in document.get("Statement", []):
                principal = statement.get("Principal")
                if not isinstance(principal, dict) or set(principal) != {"Service"}:
                    found.append(f"{owner}: trusts {principal!r}, not an AWS service")
                if resource.get("Type") == "AWS::SQS::QueuePolicy" and not (statement.get("Condition") or {}).get(
                    "ArnEquals", {}
                ).get("aws:SourceArn"):
                    found.append(f"{owner}: queue policy without aws:SourceArn")
    return found


def rule_suppressions_explained(template: dict[str, Any]) -> list[str]:
    """Every checkov suppression carries its reason; no IAM check is suppressed."""
    iam_checks = {"CKV_AWS_107", "CKV_AWS_108", "CKV_AWS_109", "CKV_AWS_110", "CKV_AWS_111"}
    iam_checks |= {"CKV_AWS_60", "CKV_AWS_61", "CKV_AWS_62", "CKV_AWS_63"}
    found = []
    for owner, resource in template["Resources"].items():
        for skip in ((resource.get("Metadata") or {}).get("checkov") or {}).get("skip", []):
            if len(str(skip.get("comment", "")).strip()) < 20:
                found.append(f"{owner}: checkov skip {skip.get('id')} without its reason")
            if skip.get("id") in iam_checks:
                found.append(f"{owner}: IAM check {skip.get('id')} suppressed")
    return found


RULES: list[Callable[[dict[str, Any]], list[str]]] = [
    rule_policies_are_readable,
    rule_no_wildcard_action,
    rule_exact_actions,
    rule_grants_match_the_code,
    rule_resource_star_only_without_resource_type,
    rule_key_actions_on_this_accounts_keys,
    rule_key_changes_only_on_custom_key_store_keys,
    rule_marked_key_changes_need_this_stacks_marker,
    rule_tag_changes_only_marker_tags,
    rule_store_changes_only_where_needed,
    rule_step_functions_actions_on_own_state_machine,
    rule_lambda_invoked_only_by_own_state_machine,
    rule_no_identity_or_foreign_service_actions,
    rule_webhook_secret,
    rule_ledger_access,
    rule_public_url_only_for_the_webhook,
    rule_trust_only_services,
    rule_suppressions_explained,
]


@pytest.mark.parametrize("rule", RULES, ids=[rule.__name__ for rule in RULES])
def test_template_keeps_the_rule(rule):
    assert rule(load()) == []


def test_every_function_and_state_machine_has_its_expected_actions():
    template = load()
    owners = {
        owner
        for owner, resource in template["Resources"].items()
        if resource.get("Type") in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine", "AWS::IAM::Role")
    }
    assert owners == set(EXPECTED_ACTIONS), "EXPECTED_ACTIONS must name every function, state machine and role"


def test_the_sdk_calls_are_found():
    """The source reading behind rule_grants_match_the_code finds calls of every service."""
    calls = called_operations()
    for service in SERVICE_DOORS:
        assert any(call.startswith(f"{service}:") for call in calls), f"no {service} call found"
    assert {"kms:ScheduleKeyDeletion", "kms:DeleteCustomKeyStore", "states:StopExecution"} <= calls


# ------------------------------------------------------------------------------------------------
# Mutations: each rule must fail on the careless edit it exists to catch
# ------------------------------------------------------------------------------------------------
def policies_of(template: dict[str, Any], owner: str) -> list[Any]:
    return template["Resources"][owner]["Properties"]["Policies"]


def statement(template: dict[str, Any], owner: str, sid: str) -> dict[str, Any]:
    for policy in policies_of(template, owner):
        for raw in policy.get("Statement", []) if isinstance(policy, dict) else []:
            if raw.get("Sid") == sid:
                return raw
    raise KeyError(f"{owner} has no statement {sid}")


def inline_statements(template: dict[str, Any], owner: str) -> list[dict[str, Any]]:
    """The statements of the owner's first inline policy document."""
    return next(p["Statement"] for p in policies_of(template, owner) if isinstance(p, dict) and "Statement" in p)


def add_statement(owner: str, action: Any, resource: Any = "*", condition: dict | None = None):
    def mutate(t: dict[str, Any]) -> None:
        raw = {"Sid": "Added", "Effect": "Allow", "Action": action, "Resource": resource}
        if condition:
            raw["Condition"] = condition
        inline_statements(t, owner).append(raw)

    return mutate


def remove_statement(owner: str, sid: str):
    def mutate(t: dict[str, Any]) -> None:
        inline_statements(t, owner).remove(statement(t, owner, sid))

    return mutate


def set_in(owner: str, sid: str, path: tuple[str, ...], value: Any):
    def mutate(t: dict[str, Any]) -> None:
        target = statement(t, owner, sid)
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value

    return mutate


def delete_in(owner: str, sid: str, path: tuple[str, ...]):
    def mutate(t: dict[str, Any]) -> None:
        target = statement(t, owner, sid)
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


def rename_operator(owner: str, sid: str, old: str, new: str):
    def mutate(t: dict[str, Any]) -> None:
        condition = statement(t, owner, sid)["Condition"]
        condition[new] = condition.pop(old)

    return mutate


def add_resource_property(owner: str, key: str, value: Any):
    def mutate(t: dict[str, Any]) -> None:
        t["Resources"][owner]["Properties"][key] = value

    return mutate


def add_policy(owner: str, policy: Any):
    def mutate(t: dict[str, Any]) -> None:
        policies_of(t, owner).append(policy)

    return mutate


def set_metadata_skip(owner: str, skip: dict[str, Any]):
    def mutate(t: dict[str, Any]) -> None:
        t["Resources"][owner].setdefault("Metadata", {}).setdefault("checkov", {}).setdefault("skip", []).append(skip)

    return mutate


SUB = "Fn::Sub"
MUTATIONS: list[tuple[str, Callable[[dict[str, Any]], list[str]], Callable[[dict[str, Any]], None]]] = [
    (
        "managed policy added",
        rule_policies_are_readable,
        add_policy("PlanDecommissionFunction", "AWSKeyManagementServicePowerUser"),
    ),
    (
        "function given a role made elsewhere",
        rule_policies_are_readable,
        add_resource_property("DeleteStoreFunction", "Role", "arn:aws:iam::1:role/x"),
    ),
    ("kms:* granted", rule_no_wildcard_action, add_statement("PlanDecommissionFunction", "kms:*", {SUB: ACCOUNT_KEYS})),
    (
        "states:* granted",
        rule_no_wildcard_action,
        add_statement("TicketWebhookFunction", ["states:*"], {"Ref": "DecommissionStateMachine"}),
    ),
    ("* granted", rule_no_wildcard_action, add_statement("TagTriggerFunction", "*")),
    (
        "kms:Describe* granted",
        rule_no_wildcard_action,
        add_statement("CheckKeysDeletedFunction", "kms:Describe*", {SUB: ACCOUNT_KEYS}),
    ),
    (
        "NotAction statement",
        rule_no_wildcard_action,
        lambda t: statement(t, "CheckKeysDeletedFunction", "ReadKeys").update(
            NotAction=statement(t, "CheckKeysDeletedFunction", "ReadKeys").pop("Action")
        ),
    ),
    (
        "plan reads tags again",
        rule_exact_actions,
        set_in("PlanDecommissionFunction", "ReadKeys", ("Action",), ["kms:DescribeKey", "kms:ListResourceTags"]),
    ),
    (
        "cancel loses ConnectCustomKeyStore",
        rule_exact_actions,
        remove_statement("CancelDecommissionFunction", "ReconnectQuarantinedStore"),
    ),
    (
        "DisableKey granted that no code calls",
        rule_grants_match_the_code,
        set_in(
            "CancelDecommissionFunction",
            "RestoreCustomKeyStoreKeys",
            ("Action",),
            ["kms:CancelKeyDeletion", "kms:EnableKey", "kms:DisableKey"],
        ),
    ),
    (
        "GetKeyLastUsage granted nowhere",
        rule_grants_match_the_code,
        lambda t: [
            remove_statement(o, "ReadKeyLastUsage")(t)
            for o in ("PlanDecommissionFunction", "ScheduleKeyDeletionFunction")
        ],
    ),
    (
        "DescribeKey on *",
        rule_resource_star_only_without_resource_type,
        set_in("CheckKeysDeletedFunction", "ReadKeys", ("Resource",), "*"),
    ),
    (
        "ledger read on *",
        rule_resource_star_only_without_resource_type,
        set_in("TicketWebhookFunction", "ReadApprovalTokens", ("Resource",), "*"),
    ),
    (
        "DescribeKey on any account's keys",
        rule_key_actions_on_this_accounts_keys,
        set_in("PlanDecommissionFunction", "ReadKeys", ("Resource",), "arn:aws:kms:*:*:key/*"),
    ),
    (
        "ScheduleKeyDeletion on any key origin",
        rule_key_changes_only_on_custom_key_store_keys,
        delete_in(
            "ScheduleKeyDeletionFunction",
            "ScheduleCustomKeyStoreKeyDeletion",
            ("Condition", "StringEquals", "kms:KeyOrigin"),
        ),
    ),
    (
        "CancelKeyDeletion also on AWS_KMS keys",
        rule_key_changes_only_on_custom_key_store_keys,
        set_in(
            "CancelDecommissionFunction",
            "RestoreCustomKeyStoreKeys",
            ("Condition", "StringEquals", "kms:KeyOrigin"),
            ["AWS_CLOUDHSM", "EXTERNAL_KEY_STORE", "AWS_KMS"],
        ),
    ),
    (
        "KeyOrigin under StringEqualsIfExists",
        rule_key_changes_only_on_custom_key_store_keys,
        rename_operator("CancelDecommissionFunction", "RemoveMarkers", "StringEquals", "StringEqualsIfExists"),
    ),
    (
        "TagResource without origin",
        rule_key_changes_only_on_custom_key_store_keys,
        delete_in("ScheduleKeyDeletionFunction", "TagCustomKeyStoreKeys", ("Condition", "StringEquals")),
    ),
    (
        "DisableKey on any key",
        rule_key_changes_only_on_custom_key_store_keys,
        add_statement("CancelDecommissionFunction", "kms:DisableKey", {SUB: ACCOUNT_KEYS}),
    ),
    (
        "CancelKeyDeletion without the marker",
        rule_marked_key_changes_need_this_stacks_marker,
        delete_in("CancelDecommissionFunction", "RestoreCustomKeyStoreKeys", ("Condition", "StringLike")),
    ),
    (
        "ScheduleKeyDeletion on any stack's marker",
        rule_marked_key_changes_need_this_stacks_marker,
        set_in(
            "ScheduleKeyDeletionFunction",
            "ScheduleCustomKeyStoreKeyDeletion",
            ("Condition", "StringLike", "aws:ResourceTag/kms-decommission:execution"),
            "*",
        ),
    ),
    (
        "ScheduleKeyDeletion without the window floor",
        rule_marked_key_changes_need_this_stacks_marker,
        delete_in(
            "ScheduleKeyDeletionFunction",
            "ScheduleCustomKeyStoreKeyDeletion",
            ("Condition", "NumericGreaterThanEquals"),
        ),
    ),
    (
        "TagResource with any tag key",
        rule_tag_changes_only_marker_tags,
        set_in(
            "ScheduleKeyDeletionFunction",
            "TagCustomKeyStoreKeys",
            ("Condition", "ForAllValues:StringLike", "aws:TagKeys"),
            ["*"],
        ),
    ),
    (
        "UntagResource without tag-key condition",
        rule_tag_changes_only_marker_tags,
        delete_in("CancelDecommissionFunction", "RemoveMarkers", ("Condition", "ForAllValues:StringLike")),
    ),
    (
        "DeleteCustomKeyStore in disconnect-store",
        rule_store_changes_only_where_needed,
        set_in(
            "DisconnectStoreFunction",
            "DisconnectCustomKeyStore",
            ("Action",),
            ["kms:DescribeCustomKeyStores", "kms:DisconnectCustomKeyStore", "kms:DeleteCustomKeyStore"],
        ),
    ),
    (
        "DisconnectCustomKeyStore in the cancel",
        rule_store_changes_only_where_needed,
        set_in(
            "CancelDecommissionFunction",
            "ReconnectQuarantinedStore",
            ("Action",),
            ["kms:ConnectCustomKeyStore", "kms:DisconnectCustomKeyStore"],
        ),
    ),
    (
        "ConnectCustomKeyStore in the tag trigger",
        rule_store_changes_only_where_needed,
        add_statement(
            "TagTriggerFunction",
            "kms:ConnectCustomKeyStore",
            "*",
            {"StringEquals": {"kms:CallerAccount": {"Ref": "AWS::AccountId"}}},
        ),
    ),
    (
        "DeleteCustomKeyStore without CallerAccount",
        rule_store_changes_only_where_needed,
        delete_in("DeleteStoreFunction", "DeleteCustomKeyStore", ("Condition",)),
    ),
    (
        "CreateCustomKeyStore granted",
        rule_store_changes_only_where_needed,
        add_statement(
            "DeleteStoreFunction",
            "kms:CreateCustomKeyStore",
            "*",
            {"StringEquals": {"kms:CallerAccount": {"Ref": "AWS::AccountId"}}},
        ),
    ),
    (
        "step reads any state machine's executions",
        rule_step_functions_actions_on_own_state_machine,
        set_in(
            "PlanDecommissionFunction",
            "CheckCaller",
            ("Resource",),
            {SUB: "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:execution:*"},
        ),
    ),
    (
        "step starts executions",
        rule_step_functions_actions_on_own_state_machine,
        add_statement("DeleteStoreFunction", "states:StartExecution", {"Ref": "DecommissionStateMachine"}),
    ),
    (
        "tag trigger starts cancels",
        rule_step_functions_actions_on_own_state_machine,
        set_in(
            "TagTriggerFunction",
            "StartDecommission",
            ("Resource",),
            [{"Ref": "DecommissionStateMachine"}, {"Ref": "CancelStateMachine"}],
        ),
    ),
    (
        "cancel stops cancels",
        rule_step_functions_actions_on_own_state_machine,
        set_in(
            "CancelDecommissionFunction",
            "StopDecommission",
            ("Resource",),
            {SUB: next(iter(CANCEL_EXECUTIONS))},
        ),
    ),
    (
        "a step answers task tokens",
        rule_step_functions_actions_on_own_state_machine,
        add_statement("RecordApprovalFunction", "states:SendTaskSuccess"),
    ),
    (
        "a function invokes functions",
        rule_lambda_invoked_only_by_own_state_machine,
        add_policy(
            "PlanDecommissionFunction", {"LambdaInvokePolicy": {"FunctionName": {"Ref": "DeleteStoreFunction"}}}
        ),
    ),
    (
        "cancel machine invokes a step",
        rule_lambda_invoked_only_by_own_state_machine,
        add_policy("CancelStateMachine", {"LambdaInvokePolicy": {"FunctionName": {"Ref": "DeleteStoreFunction"}}}),
    ),
    (
        "iam:PassRole granted",
        rule_no_identity_or_foreign_service_actions,
        add_statement("TagTriggerFunction", "iam:PassRole"),
    ),
    (
        "sts:AssumeRole granted",
        rule_no_identity_or_foreign_service_actions,
        add_statement("TicketWebhookFunction", "sts:AssumeRole"),
    ),
    (
        "tag trigger reads the secret",
        rule_webhook_secret,
        add_statement("TagTriggerFunction", "ssm:GetParameter", {SUB: WEBHOOK_SECRET}),
    ),
    (
        "webhook reads every parameter",
        rule_webhook_secret,
        set_in(
            "TicketWebhookFunction",
            "ReadWebhookSecret",
            ("Resource",),
            {SUB: "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/*"},
        ),
    ),
    (
        "Decrypt outside SSM",
        rule_webhook_secret,
        delete_in("TicketWebhookFunction", "DecryptWebhookSecret", ("Condition",)),
    ),
    (
        "plan deletes ledger items",
        rule_ledger_access,
        set_in(
            "PlanDecommissionFunction",
            "RunLedger",
            ("Action",),
            ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
        ),
    ),
    (
        "webhook scans the ledger",
        rule_ledger_access,
        set_in("TicketWebhookFunction", "ReadApprovalTokens", ("Action",), ["dynamodb:GetItem", "dynamodb:Scan"]),
    ),
    (
        "cancel writes another table",
        rule_ledger_access,
        set_in(
            "CancelDecommissionFunction",
            "RunLedger",
            ("Resource",),
            {SUB: "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/*"},
        ),
    ),
    (
        "tag trigger gets a URL",
        rule_public_url_only_for_the_webhook,
        add_resource_property("TagTriggerFunction", "FunctionUrlConfig", {"AuthType": "NONE"}),
    ),
    (
        "webhook URL unbounded",
        rule_public_url_only_for_the_webhook,
        lambda t: t["Resources"]["TicketWebhookFunction"]["Properties"].pop("ReservedConcurrentExecutions"),
    ),
    (
        "role trusts an account",
        rule_trust_only_services,
        lambda t: t["Resources"]["StatusEventsRuleRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][
            0
        ].update(Principal={"AWS": "arn:aws:iam::111122223333:root"}),
    ),
    (
        "dead-letter queue open to any rule",
        rule_trust_only_services,
        lambda t: t["Resources"]["StatusEventsDeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][
            0
        ].pop("Condition"),
    ),
    ("suppression without reason", rule_suppressions_explained, set_metadata_skip("LedgerTable", {"id": "CKV_AWS_28"})),
    (
        "IAM check suppressed",
        rule_suppressions_explained,
        set_metadata_skip(
            "PlanDecommissionFunction",
            {"id": "CKV_AWS_111", "comment": "write access without constraints is fine here, trust me"},
        ),
    ),
]


@pytest.mark.parametrize(
    ("rule", "mutate"), [(rule, mutate) for _, rule, mutate in MUTATIONS], ids=[name for name, _, _ in MUTATIONS]
)
def test_each_rule_catches_its_mutation(rule, mutate):
    template = load()
    assert rule(template) == [], "the rule must hold on template.yaml before the mutation"
    mutated = copy.deepcopy(template)
    mutate(mutated)
    assert rule(mutated) != [], "the mutation must break the rule"


def test_every_rule_has_a_mutation():
    assert {rule for _, rule, _ in MUTATIONS} == set(RULES)
