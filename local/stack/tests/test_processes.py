"""The stack's child processes: readiness, output checks, and stopping the whole process group."""

from __future__ import annotations

import re

import pytest

from local.stack.processes import ManagedProcess, ProcessFailed


def _process(tmp_path, script: str) -> ManagedProcess:
    return ManagedProcess("child", ["sh", "-c", script], tmp_path / "child.log")


def test_ready_line_is_found_and_output_is_logged(tmp_path):
    child = _process(tmp_path, "echo starting; echo 'listening on http://127.0.0.1:4242'; sleep 30")
    child.start()
    try:
        match = child.wait_for_line(re.compile(r"listening on http://[\d.]+:(\d+)"), 10)
        assert match.group(1) == "4242"
        assert not child.has_printed(re.compile("ERROR command exited"))
    finally:
        child.stop()
    assert "starting" in (tmp_path / "child.log").read_text()


def test_exit_before_ready_is_a_named_failure_with_the_output(tmp_path):
    child = _process(tmp_path, "echo 'ERROR command exited code=1'; exit 3")
    child.start()
    with pytest.raises(ProcessFailed, match=r"child exited \(code 3\) before printing the banner[\s\S]*command exited"):
        child.wait_for_line(re.compile("never"), 10, "the banner")
    assert child.has_printed(re.compile("ERROR command exited"))


def test_stop_ends_the_grandchildren_too(tmp_path):
    child = _process(tmp_path, "sleep 300 & echo $!; wait")
    child.start()
    grandchild = int(child.wait_for_line(re.compile(r"^(\d+)$"), 10).group(1))
    child.stop(grace_seconds=5)
    assert not _alive(grandchild)


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper does not count)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
