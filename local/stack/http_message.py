"""The plain HTTP request and response values passed between the router and its backends."""

from __future__ import annotations

import http.client
from dataclasses import dataclass, field

# Hop-by-hop headers (RFC 9110 section 7.6.1) are never forwarded; Content-Length is recomputed.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)


@dataclass
class Request:
    """An HTTP request with its body fully read."""

    method: str
    path: str  # path and query string, as sent
    headers: list[tuple[str, str]]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None


@dataclass
class Response:
    """An HTTP response with its body fully read."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None


def forward(host: str, port: int, request: Request, timeout: float | None) -> Response:
    """Send `request` to http://host:port and read the whole response.

    Raises OSError (connection refused, timeout) and http.client.HTTPException (bad answer)."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        headers = {}
        for key, value in request.headers:
            if key.lower() in HOP_BY_HOP:
                continue
            headers[key] = value
        connection.request(request.method, request.path, body=request.body, headers=headers)
        answer = connection.getresponse()
        body = answer.read()
        kept = [(k, v) for k, v in answer.getheaders() if k.lower() not in HOP_BY_HOP]
        return Response(status=answer.status, headers=kept, body=body)
    finally:
        connection.close()
