"""Lambda Invoke adapter: makes `cargo lambda watch` answer like the real Lambda Invoke API.

`cargo lambda watch` serves `POST /2015-03-31/functions/<binary>/invocations` but (see
shared/local-tooling.md) rejects function ARNs, answers a handler error with HTTP 500 and no
`X-Amz-Function-Error`, sends no request id, and runs `Event` invocations synchronously. Callers
(SDKs, moto's Step Functions interpreter) break on that. This adapter sits in front of it:

- `FunctionName` as a name, `name:qualifier`, a partial ARN or a full ARN -> the binary name;
- only `$LATEST` exists locally; any other qualifier, and any function the template does not
  define, is `404 ResourceNotFoundException`, exactly as Lambda names it;
- a handler error (`500 {"errorType", "errorMessage"}`) -> `200` + `X-Amz-Function-Error: Unhandled`
  + the same body, which is what Step Functions turns into the error name `errorType`;
- every answer carries `x-amzn-RequestId`, and successful ones `X-Amz-Executed-Version: $LATEST`;
- `X-Amz-Invocation-Type: Event` -> `202` at once, the handler runs in the background;
  `DryRun` -> `204` without running anything;
- `cargo lambda watch` unreachable or answering something that is not a handler result ->
  `502`/`500 ServiceException` naming the cause (Step Functions sees `Lambda.ServiceException`).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import urllib.parse
import uuid
from dataclasses import dataclass

from local.stack.http_message import Request, Response, forward

LOG = logging.getLogger(__name__)

INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<name>[^/?]+)/invocations/?(?:\?(?P<query>.*))?$")
# arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]
FULL_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):function:"
    r"(?P<name>[A-Za-z0-9_-]+)(?::(?P<qualifier>[A-Za-z0-9$_-]+))?$"
)
# <account>:function:<name>[:<qualifier>]
PARTIAL_ARN = re.compile(r"^(?P<account>\d{12}):function:(?P<name>[A-Za-z0-9_-]+)(?::(?P<qualifier>[A-Za-z0-9$_-]+))?$")
# <name>[:<qualifier>]
PLAIN_NAME = re.compile(r"^(?P<name>[A-Za-z0-9_-]+)(?::(?P<qualifier>[A-Za-z0-9$_-]+))?$")

LATEST = "$LATEST"
# Added to a function's Timeout before the adapter gives up: cargo lambda watch's own overhead.
TIMEOUT_GRACE_SECONDS = 5.0


def is_invoke_path(path: str) -> bool:
    """True when `path` is a Lambda Invoke request path."""
    return INVOKE_PATH.match(path) is not None


@dataclass(frozen=True)
class ResolvedFunction:
    """The binary a FunctionName designates, and the version that answers."""

    binary: str
    qualifier: str


class FunctionNotFound(Exception):
    """The FunctionName does not designate a function of the local stack."""


class InvalidFunctionName(Exception):
    """The FunctionName is not a Lambda function name or ARN at all."""


class InvokeAdapter:
    """Answers Lambda Invoke requests by forwarding them to `cargo lambda watch`.

    `functions` maps the binary names the template defines to their Timeout in seconds: an
    invocation still running after it answers `Sandbox.Timedout`, as Lambda does. `region` and
    `account` are the ones of the local function ARNs."""

    def __init__(
        self, watch_host: str, watch_port: int, functions: dict[str, float], region: str, account: str
    ) -> None:
        self.watch_host = watch_host
        self.watch_port = watch_port
        self.functions = dict(functions)
        self.region = region
        self.account = account
        self._background: list[threading.Thread] = []
        self._background_lock = threading.Lock()

    def function_arn(self, binary: str) -> str:
        """The local ARN of function `binary`."""
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{binary}"

    def resolve(self, function_name: str, query_qualifier: str | None) -> ResolvedFunction:
        """Map an Invoke FunctionName (+ Qualifier query parameter) to a binary.

        Raises InvalidFunctionName or FunctionNotFound."""
        match = FULL_ARN.match(function_name)
        if match:
            if match["region"] != self.region or match["account"] != self.account:
                raise FunctionNotFound(f"Function not found: {function_name}")
        else:
            match = PARTIAL_ARN.match(function_name)
            if match:
                if match["account"] != self.account:
                    raise FunctionNotFound(f"Function not found: {function_name}")
            else:
                match = PLAIN_NAME.match(function_name)
        if match is None:
            raise InvalidFunctionName(
                f"1 validation error detected: Value '{function_name}' at 'functionName' failed to satisfy "
                "constraint: Member must satisfy regular expression pattern of a function name or ARN"
            )
        name = match["name"]
        name_qualifier = match["qualifier"]
        if name_qualifier and query_qualifier and name_qualifier != query_qualifier:
            raise InvalidFunctionName(
                f"The derived qualifier from the function name does not match the specified qualifier: "
                f"{name_qualifier} != {query_qualifier}"
            )
        qualifier = name_qualifier or query_qualifier or LATEST
        arn = self.function_arn(name)
        if name not in self.functions:
            raise FunctionNotFound(f"Function not found: {arn}")
        if qualifier != LATEST:
            raise FunctionNotFound(f"Function not found: {arn}:{qualifier} (the local stack has only $LATEST)")
        return ResolvedFunction(binary=name, qualifier=qualifier)

    def handle(self, request: Request) -> Response:
        """Answer one Lambda Invoke request."""
        request_id = str(uuid.uuid4())
        match = INVOKE_PATH.match(request.path)
        if match is None or request.method != "POST":
            return _error(
                request_id, 404, "ResourceNotFoundException", f"No Lambda API at {request.method} {request.path}"
            )
        function_name = urllib.parse.unquote(match["name"])
        query = urllib.parse.parse_qs(match["query"] or "")
        query_qualifier = query.get("Qualifier", [None])[0]
        try:
            function = self.resolve(function_name, query_qualifier)
        except InvalidFunctionName as err:
            return _error(request_id, 400, "ValidationException", str(err))
        except FunctionNotFound as err:
            return _error(request_id, 404, "ResourceNotFoundException", str(err))

        invocation_type = request.header("X-Amz-Invocation-Type") or "RequestResponse"
        if invocation_type == "DryRun":
            return Response(204, [("x-amzn-RequestId", request_id)], b"")
        if invocation_type == "Event":
            self._start_background(function, request, request_id)
            return Response(202, [("x-amzn-RequestId", request_id)], b"")
        if invocation_type != "RequestResponse":
            return _error(
                request_id,
                400,
                "InvalidParameterValueException",
                f"Unsupported invocation type {invocation_type!r}: use RequestResponse, Event or DryRun",
            )
        return self._invoke(function, request, request_id)

    def wait_for_background(self, timeout: float) -> None:
        """Wait (at most `timeout` seconds each) for Event invocations still running."""
        with self._background_lock:
            threads = list(self._background)
        for thread in threads:
            thread.join(timeout)

    def _start_background(self, function: ResolvedFunction, request: Request, request_id: str) -> None:
        def run() -> None:
            answer = self._invoke(function, request, request_id)
            if answer.header("X-Amz-Function-Error") or answer.status >= 300:
                LOG.warning(
                    "Event invocation %s of %s failed: %s %s",
                    request_id,
                    function.binary,
                    answer.status,
                    answer.body[:500],
                )
            with self._background_lock:
                self._background.remove(threading.current_thread())

        thread = threading.Thread(target=run, name=f"event-{function.binary}-{request_id}", daemon=True)
        with self._background_lock:
            self._background.append(thread)
        thread.start()

    def invoke(self, binary: str, payload: bytes, timeout: float) -> Response:
        """Invoke `binary` synchronously with its own `timeout` (the stack's warm-up uses this)."""
        request = Request(
            "POST", f"/2015-03-31/functions/{binary}/invocations", [("Content-Type", "application/json")], payload
        )
        return self._invoke(ResolvedFunction(binary, LATEST), request, str(uuid.uuid4()), timeout)

    def _invoke(
        self, function: ResolvedFunction, request: Request, request_id: str, timeout: float | None = None
    ) -> Response:
        """Forward to `cargo lambda watch` and translate its answer."""
        limit = timeout if timeout is not None else self.functions[function.binary] + TIMEOUT_GRACE_SECONDS
        forwarded = Request(
            method="POST",
            path=f"/2015-03-31/functions/{function.binary}/invocations",
            headers=[(k, v) for k, v in request.headers if k.lower() in ("content-type", "x-amz-client-context")],
            body=request.body,
        )
        success_headers = [
            ("x-amzn-RequestId", request_id),
            ("X-Amz-Executed-Version", function.qualifier),
            ("Content-Type", "application/json"),
        ]
        try:
            answer = forward(self.watch_host, self.watch_port, forwarded, limit)
        except TimeoutError:
            timed_out = {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"RequestId: {request_id} Error: Task timed out after {limit:.2f} seconds",
            }
            return Response(
                200, success_headers + [("X-Amz-Function-Error", "Unhandled")], json.dumps(timed_out).encode()
            )
        except OSError as err:
            return _error(
                request_id,
                502,
                "ServiceException",
                f"cargo lambda watch at {self.watch_host}:{self.watch_port} did not answer the invocation of "
                f"{function.binary}: {err}",
            )
        except Exception as err:  # http.client.HTTPException and friends: a broken answer
            return _error(
                request_id,
                502,
                "ServiceException",
                f"cargo lambda watch sent a broken answer for {function.binary}: {err!r}",
            )

        if answer.status == 200:
            return Response(200, success_headers, answer.body)
        if answer.status == 500 and _is_handler_error(answer.body):
            return Response(200, success_headers + [("X-Amz-Function-Error", "Unhandled")], answer.body)
        detail = answer.body[:2000].decode("utf-8", errors="replace")
        message = f"cargo lambda watch answered HTTP {answer.status} for {function.binary} without a handler result"
        return _error(request_id, 500, "ServiceException", f"{message}: {detail}")


def _is_handler_error(body: bytes) -> bool:
    """True when `body` is a Lambda runtime error document {"errorType", "errorMessage"}."""
    try:
        document = json.loads(body)
    except ValueError:
        return False
    return isinstance(document, dict) and isinstance(document.get("errorType"), str)


def _error(request_id: str, status: int, error_type: str, message: str) -> Response:
    """An error the way the Lambda API sends it (restJson: type in `x-amzn-ErrorType`)."""
    body = json.dumps({"Type": "User" if status < 500 else "Service", "message": message}).encode()
    headers = [
        ("x-amzn-RequestId", request_id),
        ("x-amzn-ErrorType", error_type),
        ("Content-Type", "application/json"),
    ]
    return Response(status, headers, body)
