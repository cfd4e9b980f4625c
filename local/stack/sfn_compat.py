"""Where moto's Step Functions server differs from AWS in a way clients notice, the router fixes
the request on its way in.

- StartExecution without `name`: AWS names the execution with a UUID; moto 5.2.5 names it "None",
  so a second unnamed execution fails with ExecutionAlreadyExists."""

from __future__ import annotations

import json
import uuid

from local.stack.http_message import Request

START_EXECUTION = "AWSStepFunctions.StartExecution"


def name_unnamed_execution(request: Request) -> Request:
    """Give a StartExecution request without a name a UUID name, as AWS does; other requests
    (and bodies that are not JSON objects, which moto then rejects itself) pass unchanged."""
    if request.header("X-Amz-Target") != START_EXECUTION:
        return request
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return request
    if not isinstance(body, dict) or body.get("name"):
        return request
    body["name"] = str(uuid.uuid4())
    return Request(request.method, request.path, request.headers, json.dumps(body).encode())
