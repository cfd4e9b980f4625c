"""The operator's command line (`cli/`, binary `kms-decommission`) run against a local stack, as an
operator runs it: `make demo` drives its decommissions through it and the end-to-end tests check it
(tests/e2e/test_cli.py). Each call signs with an access key id the stack's KMS emulator knows
(`--identity AKID=ARN`): STS GetCallerIdentity names that principal, so the command line sees
different people, as on AWS."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from local.client.workflow import REGION, REPO

PACKAGE = "kms-decommission-cli"
BINARY = "kms-decommission"
# Environment that would point the command line elsewhere than the stack it is given.
FOREIGN_ENV = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "KMS_DECOMMISSION_STACK")


def binary() -> Path:
    """Where cargo puts the debug binary: CARGO_TARGET_DIR when set (relative to the repository), else target/."""
    configured = os.environ.get("CARGO_TARGET_DIR")
    return (REPO / configured if configured else REPO / "target") / "debug" / BINARY


def build() -> Path:
    """`cargo build -p kms-decommission-cli` (seconds when up to date); the binary."""
    subprocess.run(["cargo", "build", "--quiet", "--package", PACKAGE], cwd=REPO, check=True)
    return binary()


def environment(endpoint: str, access_key_id: str) -> dict[str, str]:
    """The environment of a command line call on the stack at `endpoint`, signing as `access_key_id`."""
    env = {key: value for key, value in os.environ.items() if key not in FOREIGN_ENV}
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_REGION=REGION,
        AWS_ACCESS_KEY_ID=access_key_id,
        AWS_SECRET_ACCESS_KEY="local",
    )
    return env


def run(
    endpoint: str, access_key_id: str, *args: str, stdin: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run `kms-decommission <args>` to its end; its exit code and output."""
    return subprocess.run(
        [str(binary()), *args],
        env=environment(endpoint, access_key_id),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def popen(endpoint: str, access_key_id: str, *args: str) -> subprocess.Popen[str]:
    """Start `kms-decommission <args>` (e.g. `watch`) with its stdout and stderr piped, line by line."""
    return subprocess.Popen(
        [str(binary()), *args],
        env=environment(endpoint, access_key_id),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
