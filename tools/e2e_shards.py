"""The end-to-end suite in parallel shards: each shard is one pytest process with its own local
stack (tests/e2e/conftest.py starts one per session, on a free port, in a run directory of its
own), so shards share nothing but the machine.

    python -m tools.e2e_shards              # 2 shards of tests/e2e
    python -m tools.e2e_shards --shards 1   # one pytest process, as before
    E2E_ENDPOINT=http://127.0.0.1:4566 python -m tools.e2e_shards   # your own stack: always one shard

The end-to-end tests mostly wait (emulated days, polls): two stacks on two cores take about half
the wall time of one, which keeps `make test` under CI's limit. Files are dealt to the shards by
their weight (WEIGHTS: measured seconds, rounded; a file not listed weighs DEFAULT_WEIGHT), the
heaviest first to the lightest shard; a file stays whole (its module fixtures are shared). Each
shard's output goes to a file and is printed whole when the shard ends, with its wall time, so
WEIGHTS can be kept current. The exit code is non-zero when any shard failed."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent
E2E = REPO / "tests" / "e2e"
# Wall seconds per file without the stack's start (CI rehearsal on 2 cores, shards' times and
# pytest --durations), rounded.
WEIGHTS = {
    "test_kill_and_rerun.py": 125,
    "test_approval.py": 120,
    "test_quarantine.py": 110,
    "test_decommission.py": 100,
    "test_faults.py": 55,
    "test_store_changes.py": 55,
    "test_tag_identity.py": 50,
    "test_run_ledger.py": 50,
    "test_soak.py": 46,
    "test_cancel.py": 45,
    "test_cli.py": 40,
    "test_triggers.py": 25,
    "test_webhook_hardening.py": 20,
    "test_status_events.py": 20,
    "test_last_use_guard.py": 20,
}
DEFAULT_WEIGHT = 60


def deal(files: list[Path], shards: int) -> list[list[Path]]:
    """The files dealt to `shards` groups: heaviest first, each to the lightest group so far."""
    groups: list[list[Path]] = [[] for _ in range(max(1, shards))]
    loads = [0] * len(groups)
    for path in sorted(files, key=lambda p: (-WEIGHTS.get(p.name, DEFAULT_WEIGHT), p.name)):
        lightest = loads.index(min(loads))
        groups[lightest].append(path)
        loads[lightest] += WEIGHTS.get(path.name, DEFAULT_WEIGHT)
    return [sorted(group) for group in groups if group]


def main(argv: list[str] | None = None) -> int:
    """Run the shards; print each one's output and time; 0 when all passed."""
    parser = argparse.ArgumentParser(prog="python -m tools.e2e_shards", description=__doc__)
    parser.add_argument("--shards", type=int, default=2, help="pytest processes at once (default 2)")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (e.g. -k name)")
    args = parser.parse_args(argv)
    files = sorted(E2E.glob("test_*.py"))
    if not files:
        print(f"no test file under {E2E}", file=sys.stderr)
        return 5
    # A stack you started yourself (E2E_ENDPOINT) is one stack: shards would share it.
    shards = 1 if os.environ.get("E2E_ENDPOINT") else args.shards
    groups = deal(files, shards)
    with tempfile.TemporaryDirectory(prefix="e2e-shards-") as logs:
        shards = [_start(index, group, Path(logs), args.pytest_args) for index, group in enumerate(groups)]
        ended: dict[int, tuple[int, float]] = {}
        while len(ended) < len(shards):
            for shard in shards:
                code = shard.process.poll()
                if code is not None and shard.index not in ended:
                    ended[shard.index] = (code, time.monotonic() - shard.started)
            time.sleep(0.5)
        failed = []
        for shard in shards:
            shard.log.close()
            code, elapsed = ended[shard.index]
            print(f"\n[e2e-shards] ===== shard {shard.index}: exit {code} in {elapsed:.0f} s", flush=True)
            print(shard.log_path.read_text(errors="replace"), flush=True)
            if code not in (0, 5):
                failed.append((shard.index, code))
        if all(code == 5 for code, _ in ended.values()):
            print("[e2e-shards] no shard collected a test", flush=True)
            return 5
    for index, code in failed:
        print(f"[e2e-shards] shard {index} failed (exit {code})", flush=True)
    return 1 if failed else 0


@dataclass
class _Shard:
    index: int
    log_path: Path
    log: IO[str]
    started: float
    process: subprocess.Popen[bytes]


def _start(index: int, group: list[Path], logs: Path, pytest_args: list[str]) -> _Shard:
    """One pytest process on `group`, its output to a file of its own."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-v",
        "--durations=10",
        *pytest_args,
        *(str(p.relative_to(REPO)) for p in group),
    ]
    print(f"[e2e-shards] shard {index}: {', '.join(p.name for p in group)}", flush=True)
    log_path = logs / f"shard-{index}.log"
    log = log_path.open("w")
    process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    return _Shard(index, log_path, log, time.monotonic(), process)


if __name__ == "__main__":
    sys.exit(main())
