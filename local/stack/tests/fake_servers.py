"""Small real HTTP servers standing in for the stack's backends in the router and adapter tests."""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Recorded:
    """A request a fake server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeServer:
    """A threaded HTTP server on 127.0.0.1 answering through `answer` and recording requests."""

    answer: Callable[[Recorded], tuple[int, dict[str, str], bytes]]
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                recorded = Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                fake.requests.append(recorded)
                status, headers, payload = fake.answer(recorded)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


WATCH_PATH = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")


def fake_cargo_lambda_watch(binaries: set[str]) -> FakeServer:
    """Answers like `cargo lambda watch` 1.9.2: only bare binary names, handler errors as HTTP 500
    with the runtime's error document, no request id header.

    A payload {"fail": "<errorType>"} makes the handler fail with that errorType;
    {"crash": true} makes watch answer 500 with a body that is not a handler error;
    {"sleep": N} makes the handler take N seconds."""

    def answer(request: Recorded) -> tuple[int, dict[str, str], bytes]:
        match = WATCH_PATH.match(request.path)
        if not match or match.group(1) not in binaries:
            detail = {"detail": "that function doesn't exist as a binary in your project", "title": "Missing function"}
            return 404, {"content-type": "application/json"}, json.dumps(detail).encode()
        payload = json.loads(request.body or b"null")
        if isinstance(payload, dict) and "fail" in payload:
            error = {"errorType": payload["fail"], "errorMessage": "the handler failed"}
            return 500, {"content-type": "application/json"}, json.dumps(error).encode()
        if isinstance(payload, dict) and payload.get("sleep"):
            time.sleep(payload["sleep"])
        if isinstance(payload, dict) and payload.get("crash"):
            return 500, {"content-type": "text/plain"}, b"failed to spawn function"
        return (
            200,
            {"content-type": "application/json"},
            json.dumps({"function": match.group(1), "echo": payload}).encode(),
        )

    return FakeServer(answer)
