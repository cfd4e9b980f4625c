"""Init time and memory of built bootstraps, without AWS: the numbers docs/benchmarks.md compares
release profiles with.

    python scripts/measure_init.py [--runs 15] [DIR]      # DIR: .aws-sam/build (default) or a
                                                          # cargo lambda dir (DIR/<binary>/bootstrap)

Each bootstrap starts as Lambda starts it (the AWS_LAMBDA_* variables, 128 MB, the template's
trigger variables) against a local stand-in for the Lambda Runtime API, which also answers the
SSM GetParameter the webhook makes at init. Init is the time from the process start to its first
`GET /2018-06-01/runtime/invocation/next`; the peak RSS (VmHWM) is read at that moment, as
examples/benchmark.rs does. Prints, per function, the median and the fastest init of the runs,
the median peak RSS, and the bootstrap's size."""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

NEXT = b"GET /2018-06-01/runtime/invocation/next"
SECRET = "measure-init-webhook-secret-0123456789abcdef"


class RuntimeApi:
    """Accepts connections; records when the first `next` request arrives and never answers it
    (the function then waits, as between invocations); answers SSM GetParameter."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.first_next: float | None = None
        self.arrived = threading.Event()
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.open.append(connection)
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        buffer = b""
        while True:
            try:
                chunk = connection.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while b"\r\n\r\n" in buffer:
                head, _, rest = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                if len(rest) < length:
                    break
                buffer = rest[length:]
                if head.startswith(NEXT):
                    if self.first_next is None:
                        self.first_next = time.monotonic()
                        self.arrived.set()
                    continue  # never answered
                body = json.dumps(
                    {"Parameter": {"Name": "/measure", "Type": "SecureString", "Value": SECRET, "Version": 1}}
                ).encode()
                connection.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )

    def close(self) -> None:
        self.server.close()
        for connection in self.open:
            connection.close()


def peak_rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def run_once(bootstrap: Path, name: str) -> tuple[float | None, int | None]:
    api = RuntimeApi()
    endpoint = f"127.0.0.1:{api.port}"
    env = {
        "AWS_LAMBDA_RUNTIME_API": endpoint,
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_STREAM_NAME": "measure",
        "AWS_LAMBDA_LOG_GROUP_NAME": "measure",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_ENDPOINT_URL": f"http://{endpoint}",
        "RUST_LOG": "warn",
        # What the template gives the trigger functions (the others ignore them).
        "STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:kms-decommission",
        "CANCEL_STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:kms-decommission-cancel",
        "TRIGGER_MODE": "dry-run",
        "TRIGGER_TAG_KEY": "DecommissionCustomKeyStore",
        "WEBHOOK_SECRET_PARAMETER": "/kms-decommission/webhook-secret",
    }
    started = time.monotonic()
    process = subprocess.Popen([str(bootstrap)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        init = None
        rss = None
        while time.monotonic() - started < 5:
            if api.arrived.wait(0.001):
                init = (api.first_next or started) - started
                rss = peak_rss_kib(process.pid)
                break
            if process.poll() is not None:
                break
        return (init * 1000 if init is not None else None), rss
    finally:
        process.kill()
        process.wait()
        api.close()


def bootstraps(directory: Path) -> list[tuple[str, Path]]:
    return sorted((path.parent.name, path) for path in directory.glob("*/bootstrap"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", nargs="?", type=Path, default=Path(".aws-sam/build"))
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)
    found = bootstraps(args.directory)
    if not found:
        print(f"no */bootstrap under {args.directory}", file=sys.stderr)
        return 1
    print(f"{'function':<32} {'size MiB':>9} {'init ms median':>15} {'min':>6} {'peak RSS MiB':>13}")
    for name, path in found:
        inits, rsss = [], []
        for _ in range(args.runs):
            init, rss = run_once(path, name)
            if init is not None:
                inits.append(init)
            if rss is not None:
                rsss.append(rss)
        size = path.stat().st_size / 2**20
        if not inits:
            print(f"{name:<32} {size:>9.1f} {'none':>15} {'':>6} {'?':>13}")
            continue
        rss = f"{statistics.median(rsss) / 1024:.1f}" if rsss else "?"
        print(f"{name:<32} {size:>9.1f} {statistics.median(inits):>15.1f} {min(inits):>6.1f} {rss:>13}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
