"""`make test`: every check of the project, phase by phase, each with its name and wall time.

    python -m tools.check            # all phases
    python -m tools.check e2e clippy # only these

Every phase runs even when an earlier one failed (so one run shows every problem); the exit code
is non-zero when any phase failed. A pytest phase that collects no test fails (pytest exit 5)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.prefix) / "bin"


@dataclass(frozen=True)
class Phase:
    """One check: a name and the commands it runs (all must exit 0)."""

    name: str
    description: str
    commands: tuple[tuple[str, ...], ...]
    env: tuple[tuple[str, str], ...] = ()


def _asl_files() -> list[str]:
    return sorted(str(p.relative_to(REPO)) for p in (REPO / "statemachine").glob("*.asl.json"))


def _pytest(*args: str) -> tuple[str, ...]:
    # -p no:cacheprovider: no .pytest_cache in the work tree.
    return (str(BIN / "python"), "-m", "pytest", "-p", "no:cacheprovider", *args)


def _ruff(*args: str) -> tuple[str, ...]:
    # ruff.toml at the root configures both; files ignored by git are skipped.
    return (str(BIN / "ruff"), *args)


def phases() -> list[Phase]:
    """Every phase of `make test`, in the order they run."""
    asl = _asl_files()
    asl_command: tuple[str, ...] = (str(REPO / "node_modules" / ".bin" / "asl-validator"),)
    for path in asl:
        asl_command += ("--json-path", path)
    return [
        Phase("fmt", "cargo fmt --check", (("cargo", "fmt", "--all", "--", "--check"),)),
        Phase(
            "python-lint",
            "ruff format --check and ruff check on every Python file (ruff.toml)",
            (_ruff("format", "--check", "."), _ruff("check", ".")),
        ),
        Phase(
            "clippy",
            "cargo clippy, warnings denied",
            (("cargo", "clippy", "--workspace", "--all-targets", "--", "-D", "warnings"),),
        ),
        Phase(
            "module-cycles",
            "the library's modules (src/, not src/bin) import each other in no cycle",
            ((str(BIN / "python"), "-m", "tools.module_cycles"),),
        ),
        Phase("cargo-test", "cargo test --workspace", (("cargo", "test", "--workspace"),)),
        Phase(
            "fuzz",
            "fuzzed parsers, bounded: each target's corpus plus its seeded mutations (docs/fuzzing.md)",
            (("cargo", "test", "--test", "fuzz", "--", "--nocapture"),),
            env=(("FUZZ_BOUNDED", "1"),),
        ),
        Phase(
            "sam-validate",
            "sam validate --lint template.yaml",
            ((str(BIN / "sam"), "validate", "--lint", "--template-file", "template.yaml"),),
        ),
        Phase(
            "iam-lint",
            "checkov on the SAM-transformed template.yaml (IAM and infrastructure checks; every suppression"
            " carries its reason in the template), installed first into .venv-checkov",
            (
                # Its own venv (requirements-checkov.txt): its dependencies conflict with .venv's.
                ("make", "--no-print-directory", "iam-lint-tools"),
                (str(BIN / "python"), "-m", "tools.iam_lint"),
            ),
        ),
        Phase(
            "asl-validator",
            f"asl-validator on {', '.join(asl) or 'no ASL file'}",
            (asl_command,) if asl else (("false",),),
        ),
        Phase(
            "emulator-cli",
            "the KMS emulator against an independent client (AWS CLI)",
            (_pytest("-q", "kms-emulator/tests/test_cli.py"),),
        ),
        Phase(
            "tools-unit",
            "repository tooling (module-cycle finder, IAM lint wrapper, README and Makefile checks) and the"
            " least-privilege rules of template.yaml's IAM (tools/tests/test_template_iam.py)",
            (_pytest("-q", "tools/tests"),),
        ),
        Phase(
            "local-unit",
            "local stack: router, Invoke adapter, template, processes, moto chain",
            (_pytest("-q", "local/stack/tests"),),
        ),
        Phase(
            "e2e",
            "end-to-end state machine tests on the local stack, in two shards with a stack each (tools/e2e_shards.py)",
            ((str(BIN / "python"), "-m", "tools.e2e_shards"),),
        ),
        Phase(
            "deploy-build",
            "what sam deploy uploads: sam build (one release build), every function's bootstrap checked",
            (("make", "deploy-build"),),
        ),
    ]


def run(selected: list[Phase]) -> int:
    """Run the phases; print a summary; 0 when all passed."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "SAM_CLI_TELEMETRY": "0"}
    results: list[tuple[Phase, str, float]] = []
    for phase in selected:
        print(f"\n=== phase {phase.name}: {phase.description}", flush=True)
        started = time.monotonic()
        outcome = "passed"
        if not phase.commands:
            outcome = "skipped (nothing to run yet)"
        for command in phase.commands:
            print(f"$ {' '.join(command)}", flush=True)
            try:
                code = subprocess.run(command, cwd=REPO, env={**env, **dict(phase.env)}, check=False).returncode
            except OSError as err:
                print(f"cannot run {command[0]}: {err} (run `make tools`)", flush=True)
                code = 127
            if code != 0:
                outcome = f"FAILED (exit {code}{', no test collected' if code == 5 and 'pytest' in command else ''})"
                break
        elapsed = time.monotonic() - started
        results.append((phase, outcome, elapsed))
        print(f"=== phase {phase.name}: {outcome} in {elapsed:.1f} s", flush=True)

    print("\n=== summary")
    for phase, outcome, elapsed in results:
        print(f"  {phase.name:<14} {outcome:<40} {elapsed:7.1f} s")
    total = sum(elapsed for _, _, elapsed in results)
    failed = [phase.name for phase, outcome, _ in results if outcome.startswith("FAILED")]
    print(f"  {'total':<14} {'':<40} {total:7.1f} s")
    if failed:
        print(f"failed phases: {', '.join(failed)}")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the phase names and run them."""
    everything = phases()
    names = [phase.name for phase in everything]
    parser = argparse.ArgumentParser(
        prog="python -m tools.check", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("phase", nargs="*", help=f"phases to run (default: all): {', '.join(names)}")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    wanted = set(args.phase)
    unknown = wanted - set(names)
    if unknown:
        parser.error(f"unknown phase {', '.join(sorted(unknown))}; phases: {', '.join(names)}")
    return run([phase for phase in everything if not wanted or phase.name in wanted])


if __name__ == "__main__":
    sys.exit(main())
