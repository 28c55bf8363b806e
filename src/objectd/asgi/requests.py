"""The worker's Request from an ASGI scope (L3): the Host checked, the target kept a path."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from objectd.asgi.host import check_host
from objectd.asgi.request_body import IncomingBody
from objectd.fetch import Headers, Request
from objectd.streams import BodyStream

__all__ = ["request_from_scope", "scan_headers"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_HTTP_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}


def scan_headers(scope: Scope) -> tuple[str | None, int]:
    """The checked Host (None if absent) and the Content-Length (0 if absent), in one pass.

    The worker's URL is ``scheme://{Host}{path}``, so the Host must be one valid
    ``host[:port]`` (``asgi.host``) or neither part could be trusted (issue 9 §6).
    """
    host: str | None = None
    length: bytes | None = None
    for name, value in scope["headers"]:
        if name == b"host":
            if host is not None:
                raise ValueError("more than one Host header")
            host = check_host(value)
        elif name == b"content-length":
            if length is not None:
                raise ValueError("more than one Content-Length header")
            length = value
    if length is None:
        return host, 0
    if not length.isdigit():
        raise ValueError(f"invalid Content-Length {length!r}")
    return host, int(length)


def request_from_scope(
    scope: Scope, host: str | None, body: bytes, incoming: IncomingBody | None = None
) -> Request:
    """The worker's Request, with ``host`` from :func:`scan_headers`.  The target must be
    a path, so that it cannot move into the URL's host; anything else is a ``ValueError``
    (a 400)."""
    if host is None:
        # HTTP/1.1 requires Host (RFC 9112 §3.2); an HTTP/1.0 request may lack it.
        if scope.get("http_version", "1.1") == "1.1":
            raise ValueError("no Host header")
        server = scope.get("server") or ("127.0.0.1", 80)
        address = f"[{server[0]}]" if ":" in str(server[0]) else server[0]
        host = f"{address}:{server[1]}"
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else scope["path"]
    if path[:1] != "/":  # "*" or an authority would become part of the URL's host
        raise ValueError(f"request target {path!r} is not a path")
    query = scope.get("query_string", b"").decode("latin-1")
    scheme = _HTTP_SCHEMES.get(scope.get("scheme", "http"), "http")
    url = f"{scheme}://{host}{path}" + (f"?{query}" if query else "")
    method = scope.get("method", "GET")  # a websocket scope has none: the upgrade is a GET
    headers = Headers.from_raw(scope["headers"])
    if incoming is not None:
        return Request(url, method=method, headers=headers, body=BodyStream(incoming))
    return Request(url, method=method, headers=headers, body=body or None)
