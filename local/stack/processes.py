"""Child processes of the local stack: started in their own process group, their output kept in
a log file, waited for until ready, and stopped (the whole group) when the stack stops."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

PR_SET_PDEATHSIG = 1
EARLY_LINES = 2000


class ProcessFailed(Exception):
    """A child process exited, or did not become ready in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on host:port and it can be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the stack process dies, even by SIGKILL."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


class ManagedProcess:
    """One child process of the stack."""

    def __init__(
        self,
        name: str,
        command: list[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        echo: Callable[[str, str], None] | None = None,
    ) -> None:
        self.name = name
        self.command = command
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.echo = echo
        self.process: subprocess.Popen[bytes] | None = None
        self._lines: deque[str] = deque(maxlen=200)  # the latest lines, for error messages
        self._early: list[str] = []  # the first lines, where readiness messages are
        self._new_line = threading.Condition()
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        """Start the process in a new session (its own process group)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 (no threads run in the child)
            )
        except OSError as err:
            raise ProcessFailed(f"{self.name}: cannot start {' '.join(self.command)}: {err}") from err
        self._reader = threading.Thread(target=self._read_output, name=f"{self.name}-output", daemon=True)
        self._reader.start()

    def _read_output(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        with open(self.log_path, "ab") as log:
            for raw in self.process.stdout:
                log.write(raw)
                log.flush()
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                with self._new_line:
                    self._lines.append(line)
                    if len(self._early) < EARLY_LINES:
                        self._early.append(line)
                    self._new_line.notify_all()
                if self.echo is not None:
                    self.echo(self.name, line)
        with self._new_line:
            self._new_line.notify_all()

    def running(self) -> bool:
        """True while the process has not exited."""
        return self.process is not None and self.process.poll() is None

    def wait_for_line(self, pattern: re.Pattern[str], timeout: float, what: str = "its ready line") -> re.Match[str]:
        """Wait until the process prints a line matching `pattern` (described as `what`); return the match."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            with self._new_line:
                for line in self._early[seen:]:
                    found = pattern.search(line)
                    if found:
                        return found
                seen = len(self._early)
                exited = not self.running()
                remaining = deadline - time.monotonic()
                if not exited and remaining > 0:
                    self._new_line.wait(min(remaining, 0.5))
                    continue
            if exited:
                self._drain_output()
                found = next((m for m in map(pattern.search, self._early) if m), None)
                if found:
                    return found
                raise ProcessFailed(
                    f"{self.name} exited (code {self.exit_code()}) before printing {what}\n{self.tail()}"
                )
            raise ProcessFailed(f"{self.name} did not print {what} within {timeout:.0f} s\n{self.tail()}")

    def _drain_output(self) -> None:
        """After the process exited: wait until its last output has been read."""
        if self._reader is not None:
            self._reader.join(5)

    def has_printed(self, pattern: re.Pattern[str]) -> bool:
        """True when a line of its output so far (the first and the latest lines kept) matches."""
        with self._new_line:
            lines = self._early + list(self._lines)
        return any(pattern.search(line) for line in lines)

    def wait_for_port(self, host: str, port: int, timeout: float) -> None:
        """Wait until host:port accepts TCP connections."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((host, port), timeout=1):
                    return
            except OSError:
                pass
            if not self.running():
                self._drain_output()
                raise ProcessFailed(
                    f"{self.name} exited (code {self.exit_code()}) before listening on {host}:{port}\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise ProcessFailed(
                    f"{self.name} did not listen on {host}:{port} within {timeout:.0f} s\n{self.tail()}"
                )
            time.sleep(0.1)

    def exit_code(self) -> int | None:
        """The exit code, or None while running."""
        return None if self.process is None else self.process.poll()

    def tail(self, lines: int = 30) -> str:
        """The last lines of its output, for error messages."""
        kept = list(self._lines)[-lines:]
        return "\n".join(f"  {self.name}| {line}" for line in kept) + f"\n  (full log: {self.log_path})"

    def stop(self, grace_seconds: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL it if still there after `grace_seconds`."""
        if self.process is None:
            return
        pgid = self.process.pid  # start_new_session: the group id is the child's pid
        if self.process.poll() is None:
            _signal_group(pgid, signal.SIGTERM)
            try:
                self.process.wait(grace_seconds)
            except subprocess.TimeoutExpired:
                pass
        # Whatever the leader did, make sure nothing it started is left in its group.
        _signal_group(pgid, signal.SIGKILL)
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            pass
        if self._reader is not None:
            self._reader.join(5)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        pass
