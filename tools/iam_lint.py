"""The `iam-lint` phase of `make test`: checkov's IAM and infrastructure checks on template.yaml, as
CloudFormation will deploy it.

    python -m tools.iam_lint              # transform, lint, print every finding and every suppression
    python -m tools.iam_lint --keep DIR   # also keep the transformed template in DIR

Why checkov: it reads CloudFormation, checks IAM policies (wildcards, write, permissions management,
privilege escalation, data exfiltration) and the infrastructure around them (encryption, function
URLs, dead-letter queues), and takes suppressions in the template itself (`Metadata: checkov: skip:`
with `id` and `comment`), next to what they excuse. parliament checks IAM only, needs the
intrinsic functions resolved first, and its action database misreads this template
(`kms:KeyOrigin`, a condition of the `key` resource, is "unknown" for CancelKeyDeletion; the execution
ARN of `states:DescribeExecution` "mismatches"; `kms:GetKeyLastUsage` is "unknown"). docs/threat-model.md
has the comparison and the figures.

Why the transformed template: on the SAM template checkov does not look inside a function's
`Policies`, so it would pass any IAM there. The SAM translator (the one `sam` uses, from .venv)
turns every function into an `AWS::Lambda::Function` with its own `AWS::IAM::Role`, the function URL
into an `AWS::Lambda::Url`, and so on; the `checkov` Metadata of a SAM resource is copied onto every
resource made from it, so a suppression written on a function covers its role and URL too.

checkov runs from its own virtualenv (.venv-checkov, pinned by requirements-checkov.txt; `make
iam-lint-tools` installs it): its dependencies (boto3 1.35, networkx 2, ...) conflict with
requirements-dev.txt. `--skip-download`: nothing is fetched from the vendor's platform.

Fails when checkov reports a failed check, when a suppression has no reason, when checkov could
not parse the template, or when it evaluated no IAM check on some role (it would pass what it did
not read)."""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "template.yaml"
CHECKOV = Path(os.environ.get("CHECKOV", REPO / ".venv-checkov" / "bin" / "checkov"))

# The IAM checks that must have been evaluated on every role: if one is missing, checkov did not
# read that role's policies.
IAM_CHECKS = ("CKV_AWS_107", "CKV_AWS_108", "CKV_AWS_109", "CKV_AWS_110", "CKV_AWS_111")
PLACEHOLDER_URI = "s3://iam-lint-placeholder/code"
PLACEHOLDER_REGION = "us-east-1"


class LintError(Exception):
    """The template could not be linted (not a finding: the lint itself did not happen)."""


def transformed_template(template_path: Path = TEMPLATE) -> dict[str, Any]:
    """template.yaml through the SAM translator, as CloudFormation would receive it, with each SAM
    resource's `checkov` Metadata copied onto the resources made from it."""
    # Imported here: only this step needs them (and `--help` stays fast).
    from samtranslator.translator.transform import transform

    from local.stack.template import load_template

    original = load_template(template_path)
    sam = copy.deepcopy(original)
    # `sam deploy` uploads the code and the ASL and puts their S3 URIs here; the translator
    # accepts nothing else. Which URI does not matter to any check.
    function_globals = (sam.get("Globals") or {}).get("Function") or {}
    if "CodeUri" in function_globals:
        function_globals["CodeUri"] = PLACEHOLDER_URI
    for resource in sam["Resources"].values():
        properties = resource.get("Properties") or {}
        if resource.get("Type") == "AWS::Serverless::Function" and "CodeUri" in properties:
            properties["CodeUri"] = PLACEHOLDER_URI
        if resource.get("Type") == "AWS::Serverless::StateMachine" and "DefinitionUri" in properties:
            properties["DefinitionUri"] = PLACEHOLDER_URI
    # The translator asks boto3 for a Region (for pseudo parameters only); none is contacted.
    os.environ.setdefault("AWS_DEFAULT_REGION", PLACEHOLDER_REGION)

    class _NoManagedPolicies:
        """The template names no AWS managed policy by name; the translator asks only for those."""

        def load(self) -> dict[str, str]:
            return {}

    try:
        cloudformation = transform(sam, {}, _NoManagedPolicies(), passthrough_metadata=True)
    except Exception as err:  # the translator raises its own exception types
        raise LintError(f"the SAM translator refused template.yaml: {err}") from err
    _copy_checkov_metadata(original["Resources"], cloudformation["Resources"])
    _grant_conditional_statements(cloudformation["Resources"])
    return cloudformation


def _grant_conditional_statements(resources: dict[str, Any]) -> None:
    """Every `Fn::If` in a role's or policy's statement list replaced by its branches that are
    statements: a grant made under a condition (quarantine-store's Logs Insights actions when the
    stack is given the trail's log group) is linted as granted. checkov evaluates no IAM check of a
    policy whose statement list holds an `Fn::If`."""

    def statements(document: Any) -> None:
        if not isinstance(document, dict) or not isinstance(document.get("Statement"), list):
            return
        flat: list[Any] = []
        for statement in document["Statement"]:
            branches = statement.get("Fn::If") if isinstance(statement, dict) and len(statement) == 1 else None
            if isinstance(branches, list):
                flat += [b for b in branches[1:] if isinstance(b, dict) and "Effect" in b]
            else:
                flat.append(statement)
        document["Statement"] = flat

    for resource in resources.values():
        properties = resource.get("Properties") or {}
        if resource.get("Type") == "AWS::IAM::Role":
            for policy in properties.get("Policies") or []:
                statements((policy or {}).get("PolicyDocument"))
        elif resource.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            statements(properties.get("PolicyDocument"))


def _copy_checkov_metadata(sam_resources: dict[str, Any], resources: dict[str, Any]) -> None:
    """Each resource the translator made (a logical id not in the SAM template) gets the `checkov`
    Metadata of the SAM resource whose logical id is the longest prefix of its own (SAM names
    them `<LogicalId>Role`, `<LogicalId>Url`, `<LogicalId><EventName>`, ...)."""
    sam_ids = sorted(
        (
            logical_id
            for logical_id, r in sam_resources.items()
            if str(r.get("Type", "")).startswith("AWS::Serverless::")
        ),
        key=len,
        reverse=True,
    )
    for logical_id, resource in resources.items():
        if logical_id in sam_resources:
            continue
        source = next((sam_id for sam_id in sam_ids if logical_id.startswith(sam_id)), None)
        skips = ((sam_resources.get(source) or {}).get("Metadata") or {}).get("checkov") if source else None
        if skips:
            resource.setdefault("Metadata", {})["checkov"] = copy.deepcopy(skips)


def run_checkov(template_file: Path) -> dict[str, Any]:
    """checkov's JSON report on one CloudFormation file."""
    if not CHECKOV.exists():
        raise LintError(f"checkov is not installed at {CHECKOV}: run `make iam-lint-tools`")
    command = [
        str(CHECKOV),
        "--file",
        str(template_file),
        "--framework",
        "cloudformation",
        "--skip-download",
        "--output",
        "json",
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    try:
        report = json.loads(completed.stdout)
    except json.JSONDecodeError as err:
        raise LintError(
            f"checkov (exit {completed.returncode}) printed no JSON report: {completed.stderr.strip()[-2000:]}"
        ) from err
    # One framework gives one report object; several would give a list.
    if isinstance(report, list):
        if len(report) != 1:
            raise LintError(f"expected one checkov report, got {len(report)}")
        report = report[0]
    if not isinstance(report, dict) or "results" not in report:
        raise LintError(f"checkov's report has no results: {str(report)[:500]}")
    return report


def problems(report: dict[str, Any], cloudformation: dict[str, Any]) -> list[str]:
    """What fails the phase: failed checks, suppressions without a reason, parsing errors, roles
    whose IAM checks checkov did not evaluate."""
    results = report["results"]
    found = []
    for check in results.get("failed_checks", []):
        found.append(f"FAILED {check['check_id']} on {check['resource']}: {check['check_name']}")
    for check in results.get("skipped_checks", []):
        comment = (check.get("check_result") or {}).get("suppress_comment") or ""
        if len(comment.strip()) < 20:
            found.append(f"suppression of {check['check_id']} on {check['resource']} gives no reason ({comment!r})")
    parsing_errors = (report.get("summary") or {}).get("parsing_errors", 0)
    if parsing_errors:
        found.append(f"checkov could not parse the template ({parsing_errors} parsing errors)")
    evaluated: dict[str, set[str]] = {}
    for kind in ("passed_checks", "failed_checks", "skipped_checks"):
        for check in results.get(kind, []):
            evaluated.setdefault(check["resource"], set()).add(check["check_id"])
    for logical_id, resource in sorted(cloudformation["Resources"].items()):
        if resource.get("Type") != "AWS::IAM::Role":
            continue
        missing = set(IAM_CHECKS) - evaluated.get(f"AWS::IAM::Role.{logical_id}", set())
        if missing:
            found.append(f"checkov did not evaluate {', '.join(sorted(missing))} on role {logical_id}")
    return found


def describe(report: dict[str, Any]) -> list[str]:
    """The report in a few lines: the counts, then each suppression grouped by check and reason."""
    results = report["results"]
    summary = report.get("summary") or {}
    lines = [
        f"checkov {summary.get('checkov_version', '?')}: {summary.get('resource_count', '?')} resources, "
        f"{len(results.get('passed_checks', []))} passed, {len(results.get('failed_checks', []))} failed, "
        f"{len(results.get('skipped_checks', []))} suppressed (each with its reason in template.yaml)"
    ]
    groups: dict[tuple[str, str, str], list[str]] = {}
    for check in results.get("skipped_checks", []):
        comment = (check.get("check_result") or {}).get("suppress_comment") or ""
        key = (check["check_id"], check["check_name"], comment)
        groups.setdefault(key, []).append(check["resource"].split(".", 1)[-1])
    for (check_id, name, comment), resources in sorted(groups.items()):
        lines.append(f"  suppressed {check_id} ({name}) on {len(resources)}: {', '.join(sorted(resources))}")
        lines.append(f"      reason: {comment}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Transform, lint, report; 0 when checkov found nothing unexplained."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.iam_lint", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", type=Path, help="also write the transformed template to this directory")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    try:
        cloudformation = transformed_template()
        with tempfile.TemporaryDirectory(prefix="iam-lint-") as directory:
            target = Path(directory) / "template.json"
            target.write_text(json.dumps(cloudformation, indent=1), encoding="utf-8")
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                (args.keep / "template.json").write_text(target.read_text(encoding="utf-8"), encoding="utf-8")
            linted = time.monotonic()
            report = run_checkov(target)
    except LintError as err:
        print(f"iam-lint: {err}", file=sys.stderr)
        return 2
    done = time.monotonic()
    for line in describe(report):
        print(line)
    print(f"(SAM transform {linted - started:.1f} s, checkov {done - linted:.1f} s)")
    found = problems(report, cloudformation)
    for problem in found:
        print(problem)
    if found:
        print(f"iam-lint: {len(found)} problem(s): fix the template, or suppress in its Metadata with the reason")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
