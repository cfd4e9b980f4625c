"""The one local AWS endpoint: routes each request to the service that answers it.

- KMS calls (`X-Amz-Target: TrentService.*`), CloudTrail calls (`X-Amz-Target:
  CloudTrail_20131101.*`, or botocore's `com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.*`:
  the emulator answers LookupEvents from its record of the KMS calls), the CloudWatch Logs
  Insights query operations (`Logs_20140328.StartQuery`, `GetQueryResults`, `StopQuery`: the
  emulator answers them over the same records, as the log group of a trail) and the emulator's
  admin API (`/_emulator/...`) go to the KMS emulator, and so do STS calls (signed for service
  `sts`: the emulator answers GetCallerIdentity with the principal it records the caller as, so
  two people's access keys are two callers, as on AWS);
- Lambda Invoke (`POST /2015-03-31/functions/<name>/invocations`) goes to the Invoke adapter;
- everything else goes to moto's server, other CloudWatch Logs operations included (log groups,
  log events): Step Functions (`AWSStepFunctions.*`), DynamoDB
  (`DynamoDB_20120810.*`: the run ledger), SSM (`AmazonSSM.*`: the webhook secret),
  CloudFormation (the stack whose outputs the command line reads) and moto's own `/moto-api/...`.
"""

from __future__ import annotations

import enum
import http.server
import json
import logging
import socketserver
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

from local.stack.http_message import HOP_BY_HOP, Request, Response, forward
from local.stack.invoke_adapter import is_invoke_path

LOG = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024 * 1024


class Backend(enum.Enum):
    """Who answers a request."""

    KMS = "kms"
    LAMBDA = "lambda"
    MOTO = "moto"


# X-Amz-Target prefixes the KMS emulator answers: KMS, and CloudTrail as the Smithy model (Rust,
# Java, JS SDKs) and botocore (AWS CLI, boto3) name it.
KMS_EMULATOR_TARGETS = (
    "TrentService.",
    "CloudTrail_20131101.",
    "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.",
)

# CloudWatch Logs operations the KMS emulator answers: the Logs Insights queries of the CloudTrail
# log group (every SDK and botocore send `Logs_20140328.<Operation>`). The rest of CloudWatch Logs
# stays with moto.
KMS_EMULATOR_LOGS_TARGETS = frozenset(
    {"Logs_20140328.StartQuery", "Logs_20140328.GetQueryResults", "Logs_20140328.StopQuery"}
)


def signing_service(authorization: str | None) -> str | None:
    """The service a SigV4 `Authorization` header is scoped to
    (`Credential=<key>/<date>/<region>/<service>/aws4_request`), or None."""
    if not authorization:
        return None
    for part in authorization.replace(",", " ").split():
        if part.startswith("Credential="):
            scope = part.removeprefix("Credential=").split("/")
            return scope[3] if len(scope) == 5 else None
    return None


def choose_backend(method: str, path: str, target: str | None, authorization: str | None = None) -> Backend:
    """Pick the backend for a request from its method, path, `X-Amz-Target` header and the
    service its signature is scoped to."""
    if target is not None and (target.startswith(KMS_EMULATOR_TARGETS) or target in KMS_EMULATOR_LOGS_TARGETS):
        return Backend.KMS
    if target is None and signing_service(authorization) == "sts":
        return Backend.KMS
    if path == "/_emulator" or path.startswith("/_emulator/") or path.startswith("/_emulator?"):
        return Backend.KMS
    if method == "POST" and is_invoke_path(path):
        return Backend.LAMBDA
    return Backend.MOTO


@dataclass(frozen=True)
class Upstream:
    """A backend reached over HTTP."""

    host: str
    port: int
    timeout: float | None = 900.0

    def __call__(self, request: Request) -> Response:
        return forward(self.host, self.port, request, self.timeout)


Handler = Callable[[Request], Response]


class Router:
    """Dispatches requests to the KMS emulator, the Invoke adapter and moto."""

    def __init__(self, kms: Handler, lambda_invoke: Handler, moto: Handler) -> None:
        self.handlers = {Backend.KMS: kms, Backend.LAMBDA: lambda_invoke, Backend.MOTO: moto}

    def handle(self, request: Request) -> Response:
        """Answer `request` through its backend; a backend that cannot be reached gives 502."""
        backend = choose_backend(
            request.method, request.path, request.header("X-Amz-Target"), request.header("Authorization")
        )
        try:
            return self.handlers[backend](request)
        except Exception as err:  # the backend is down or answered garbage
            LOG.warning("%s backend failed for %s %s: %r", backend.value, request.method, request.path, err)
            error_type = "LocalStackBackendUnavailable"
            message = f"the local {backend.value} backend did not answer {request.method} {request.path}: {err}"
            body = json.dumps({"__type": error_type, "message": message}).encode()
            return Response(502, [("Content-Type", "application/json"), ("x-amzn-ErrorType", error_type)], body)


class _RequestHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RouterServer

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except ValueError as err:
            self._send(Response(400, [("Content-Type", "text/plain")], str(err).encode()))
            self.close_connection = True
            return
        request = Request(method=self.command, path=self.path, headers=list(self.headers.items()), body=body)
        self._send(self.server.router.handle(request))

    def _read_body(self) -> bytes:
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            return self._read_chunked()
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return b""
        try:
            length = int(length_header)
        except ValueError:
            raise ValueError(f"bad Content-Length {length_header!r}") from None
        if length < 0 or length > MAX_BODY_BYTES:
            raise ValueError(f"Content-Length {length} out of range (0..{MAX_BODY_BYTES})")
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        chunks = []
        total = 0
        while True:
            line = self.rfile.readline(1024).strip()
            try:
                size = int(line.split(b";")[0], 16)
            except ValueError:
                raise ValueError(f"bad chunk size {line!r}") from None
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise ValueError(f"chunked body larger than {MAX_BODY_BYTES} bytes")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(8)

    def _send(self, response: Response) -> None:
        self.send_response_only(response.status)
        for key, value in response.headers:
            if key.lower() in HOP_BY_HOP or key.lower() in ("date", "server"):
                continue
            self.send_header(key, value)
        self.send_header("Date", self.date_time_string())
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
        LOG.debug("%s " + format, self.address_string(), *args)


class RouterServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """A threaded HTTP server answering through a Router."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], router: Router) -> None:
        self.router = router
        super().__init__(address, _RequestHandler)

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        """A client that went away mid-request is not worth a traceback; anything else is."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            LOG.debug("connection from %s dropped", client_address, exc_info=True)
        else:
            LOG.exception("router failed on a request from %s", client_address)

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        return self.server_address[1]

    def start_in_thread(self) -> threading.Thread:
        """Serve in a daemon thread; stop with shutdown() then server_close()."""
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, name="router", daemon=True)
        thread.start()
        return thread
