"""tools/iam_lint.py without checkov: the template it hands checkov, and what fails the phase."""

from __future__ import annotations

import functools
from typing import Any

from tools.iam_lint import IAM_CHECKS, problems, transformed_template


@functools.cache
def cloudformation() -> dict[str, Any]:
    return transformed_template()


def report(passed=(), failed=(), skipped=(), parsing_errors=0) -> dict[str, Any]:
    """A checkov JSON report with these (check id, resource, comment) results."""

    def entries(items):
        return [
            {
                "check_id": check_id,
                "check_name": f"check {check_id}",
                "resource": resource,
                "check_result": {"suppress_comment": comment},
            }
            for check_id, resource, comment in items
        ]

    return {
        "results": {
            "passed_checks": entries(passed),
            "failed_checks": entries(failed),
            "skipped_checks": entries(skipped),
        },
        "summary": {"parsing_errors": parsing_errors},
    }


def every_role_checked() -> list[tuple[str, str, str]]:
    roles = [k for k, v in cloudformation()["Resources"].items() if v["Type"] == "AWS::IAM::Role"]
    return [(check, f"AWS::IAM::Role.{role}", "") for role in roles for check in IAM_CHECKS]


def test_every_function_and_state_machine_gets_a_role_with_its_policies():
    resources = cloudformation()["Resources"]
    sam_owners = [
        "PlanDecommissionFunction",
        "ScheduleKeyDeletionFunction",
        "CancelDecommissionFunction",
        "TicketWebhookFunction",
        "DecommissionStateMachine",
        "CancelStateMachine",
    ]
    for owner in sam_owners:
        role = resources[f"{owner}Role"]
        assert role["Type"] == "AWS::IAM::Role"
        assert role["Properties"]["Policies"], f"{owner}'s role has no inline policy: checkov would read nothing"
    assert not any(r["Type"].startswith("AWS::Serverless::") for r in resources.values())


def test_a_functions_suppressions_follow_it_to_what_sam_makes_of_it():
    resources = cloudformation()["Resources"]
    url_skips = {s["id"] for s in resources["TicketWebhookFunctionUrl"]["Metadata"]["checkov"]["skip"]}
    assert "CKV_AWS_258" in url_skips
    function_skips = {s["id"] for s in resources["TicketWebhookFunction"]["Metadata"]["checkov"]["skip"]}
    assert function_skips == url_skips
    # The build metadata stays; plain CloudFormation resources keep their own Metadata.
    assert resources["TicketWebhookFunction"]["Metadata"]["BuildProperties"]["Binary"] == "ticket-webhook"
    assert resources["LedgerTable"]["Metadata"]["checkov"]["skip"][0]["id"] == "CKV_AWS_119"


def test_a_clean_report_passes():
    assert problems(report(passed=every_role_checked()), cloudformation()) == []


def test_a_failed_check_fails():
    found = problems(report(passed=every_role_checked(), failed=[("CKV_AWS_1", "AWS::X::Y.Z", "")]), cloudformation())
    assert found == ["FAILED CKV_AWS_1 on AWS::X::Y.Z: check CKV_AWS_1"]


def test_a_suppression_without_reason_fails():
    skipped = [("CKV_AWS_2", "AWS::X::Y.Z", ""), ("CKV_AWS_3", "AWS::X::Y.Z", "a reason long enough to read")]
    found = problems(report(passed=every_role_checked(), skipped=skipped), cloudformation())
    assert len(found) == 1 and "CKV_AWS_2" in found[0]


def test_parsing_errors_fail():
    found = problems(report(passed=every_role_checked(), parsing_errors=1), cloudformation())
    assert found and "parse" in found[0]


def test_a_role_whose_iam_checks_did_not_run_fails():
    checked = [entry for entry in every_role_checked() if not entry[1].endswith(".ScheduleKeyDeletionFunctionRole")]
    found = problems(report(passed=checked), cloudformation())
    assert found == [f"checkov did not evaluate {', '.join(IAM_CHECKS)} on role ScheduleKeyDeletionFunctionRole"]


def test_a_grant_made_under_a_condition_is_linted_as_granted():
    """quarantine-store's Logs Insights actions are granted only with the trail's log group; in
    the linted template they are plain statements, so checkov evaluates the role (it evaluates no
    IAM check of a statement list holding an Fn::If)."""
    role = cloudformation()["Resources"]["QuarantineStoreFunctionRole"]
    statements = [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert not [s for s in statements if "Fn::If" in s], statements
    actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert {"logs:StartQuery", "logs:GetQueryResults"} <= actions, actions
