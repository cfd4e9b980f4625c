"""The deploy build's two helpers, both reading the functions of template.yaml.

    python scripts/deploy_build.py binary PlanDecommissionFunction
        prints the function's cargo binary (Metadata.BuildProperties.Binary); the Makefile's
        build-<LogicalId> targets, which `sam build` runs, copy that binary's bootstrap.

    python scripts/deploy_build.py check [--arch x86_64|arm64] [--build-dir .aws-sam/build] [--lambda-dir DIR]
        after `sam build`: every function of the template has an executable bootstrap in
        <build-dir>/<LogicalId>/, an ELF for the architecture that needs no newer glibc than the
        Lambda runtime has, a bootstrap of its own (with --lambda-dir: byte for byte the one cargo
        lambda built for its binary, DIR/<binary>/bootstrap), and the built template points each
        function at its own directory. Exits 1 and names every problem otherwise.

Only the standard library and the local stack's template loader (PyYAML, in .venv)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from local.stack.template import TemplateError, load_template  # noqa: E402 (needs the repository on the path)

# ELF e_machine of each Lambda architecture.
ELF_MACHINES = {"x86_64": 0x3E, "arm64": 0xB7}
# The newest glibc each OS-only runtime provides (provided.al2023: Amazon Linux 2023, glibc 2.34;
# provided.al2: Amazon Linux 2, glibc 2.26). A bootstrap that needs a newer one does not start.
RUNTIME_GLIBC = {"provided.al2023": (2, 34), "provided.al2": (2, 26)}


def load(path: Path) -> dict[str, Any]:
    """The template, read by the local stack's loader (short intrinsic tags accepted)."""
    try:
        return load_template(path)
    except TemplateError as err:
        raise SystemExit(str(err)) from err


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The template's Lambda functions by logical id."""
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if isinstance(resource, dict) and resource.get("Type") in ("AWS::Serverless::Function", "AWS::Lambda::Function")
    }


def binary_of(logical_id: str, resource: dict[str, Any]) -> str:
    binary = ((resource.get("Metadata") or {}).get("BuildProperties") or {}).get("Binary")
    if not isinstance(binary, str) or not binary:
        raise SystemExit(f"function {logical_id} has no Metadata.BuildProperties.Binary naming its cargo binary")
    return binary


def runtime_of(template: dict[str, Any], resource: dict[str, Any]) -> str:
    runtime = (resource.get("Properties") or {}).get("Runtime")
    if runtime is None:
        runtime = ((template.get("Globals") or {}).get("Function") or {}).get("Runtime")
    return str(runtime)


def glibc_needed(data: bytes) -> tuple[int, int] | None:
    """The newest GLIBC_x.y symbol version the binary's dynamic string table names (None if static)."""
    versions = {(int(m.group(1)), int(m.group(2))) for m in re.finditer(rb"GLIBC_(\d+)\.(\d+)", data)}
    return max(versions) if versions else None


def check_bootstrap(path: Path, arch: str, runtime: str) -> list[str]:
    """Problems with one function's bootstrap (empty when it is fine)."""
    if not path.is_file():
        return [f"{path} is missing"]
    problems = []
    if not path.stat().st_mode & 0o111:
        problems.append(f"{path} is not executable")
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or len(data) < 20:
        return problems + [f"{path} is not an ELF executable"]
    machine = int.from_bytes(data[18:20], "little")
    if machine != ELF_MACHINES[arch]:
        built = next((a for a, m in ELF_MACHINES.items() if m == machine), hex(machine))
        problems.append(f"{path} is built for {built}, not {arch} (make deploy-build ARCH={arch})")
    limit = RUNTIME_GLIBC.get(runtime)
    needed = glibc_needed(data)
    if limit and needed and needed > limit:
        problems.append(f"{path} needs glibc {needed[0]}.{needed[1]}, {runtime} has {limit[0]}.{limit[1]}")
    return problems


def check(template_path: Path, build_dir: Path, arch: str, lambda_dir: Path | None) -> int:
    template = load(template_path)
    found = functions(template)
    if not found:
        print(f"{template_path}: no Lambda function", file=sys.stderr)
        return 1
    built_template_path = build_dir / "template.yaml"
    built = functions(load(built_template_path)) if built_template_path.is_file() else {}
    if not built:
        print(f"{built_template_path} is missing or has no function: run sam build first", file=sys.stderr)
        return 1
    problems = []
    bootstraps: dict[bytes, str] = {}
    print(f"{'function':<32} {'binary':<24} {'bootstrap':>12}")
    for logical_id, resource in found.items():
        binary = binary_of(logical_id, resource)
        bootstrap = build_dir / logical_id / "bootstrap"
        problems += check_bootstrap(bootstrap, arch, runtime_of(template, resource))
        code_uri = ((built.get(logical_id) or {}).get("Properties") or {}).get("CodeUri")
        if code_uri != logical_id:
            problems.append(f"{built_template_path}: {logical_id} has CodeUri {code_uri!r}, not {logical_id!r}")
        if bootstrap.is_file():
            data = bootstrap.read_bytes()
            if lambda_dir is not None:
                built_binary = lambda_dir / binary / "bootstrap"
                if not built_binary.is_file():
                    problems.append(f"{built_binary} is missing")
                elif built_binary.read_bytes() != data:
                    problems.append(f"{bootstrap} is not {built_binary} (the {binary} binary)")
            if data in bootstraps:
                problems.append(f"{logical_id} and {bootstraps[data]} have the same bootstrap")
            bootstraps[data] = logical_id
            size = f"{len(data) / 2**20:.1f} MiB"
        else:
            size = "missing"
        print(f"{logical_id:<32} {binary:<24} {size:>12}")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"{len(found)} functions, each with its own {arch} bootstrap in {build_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/deploy_build.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--template", type=Path, default=REPO / "template.yaml")
    commands = parser.add_subparsers(dest="command", required=True)
    binary = commands.add_parser("binary", help="print the cargo binary of a function")
    binary.add_argument("logical_id")
    checked = commands.add_parser("check", help="check sam build's output")
    checked.add_argument("--arch", choices=sorted(ELF_MACHINES), default="x86_64")
    checked.add_argument("--build-dir", type=Path, default=REPO / ".aws-sam" / "build")
    checked.add_argument("--lambda-dir", type=Path, help="where cargo lambda build put DIR/<binary>/bootstrap")
    args = parser.parse_args(argv)
    if args.command == "binary":
        resource = functions(load(args.template)).get(args.logical_id)
        if resource is None:
            print(f"{args.template} has no function {args.logical_id}", file=sys.stderr)
            return 1
        print(binary_of(args.logical_id, resource))
        return 0
    return check(args.template, args.build_dir, args.arch, args.lambda_dir)


if __name__ == "__main__":
    sys.exit(main())
