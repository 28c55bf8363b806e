"""Whole answers the front sends itself (L3): a plain response with its length, an upgrade
denied with an HTTP response, and the 503 of an activation refused at the live-object
limit; the error headers they carry."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from objectd.errors import OverloadedError
from objectd.runtime.lifecycle import LIVE_LIMIT_MESSAGE

__all__ = [
    "BUSY_HEADERS",
    "ERROR_HEADERS",
    "FRAMING",
    "NULL_BODY_STATUSES",
    "deny",
    "live_limit_answer",
    "send_plain",
]

log = logging.getLogger("objectd")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Statuses whose responses have no body, so no Content-Length either (RFC 9110 §8.6).
NULL_BODY_STATUSES = frozenset({204, 304})


ERROR_HEADERS = [
    (b"content-type", b"text/plain;charset=UTF-8"),
    (b"connection", b"close"),
]
BUSY_HEADERS = [*ERROR_HEADERS, (b"retry-after", b"1")]
FRAMING = (b"content-length", b"transfer-encoding")


async def send_plain(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    head: bool = False,
) -> None:
    """Send a whole response.  The body is known, so it goes with its Content-Length (as
    workerd sends it), not chunked: less to write and less for the client to parse.

    204 and 304 responses carry no framing headers at all (they have no body); an
    empty answer to HEAD keeps the length the worker gave, which describes the GET.
    """
    framed = any(name in FRAMING for name, _ in headers)
    if status in NULL_BODY_STATUSES:
        if framed:
            headers = [(name, value) for name, value in headers if name not in FRAMING]
    elif not (head and not body and framed):
        if framed:  # the body's real size wins
            headers = [(name, value) for name, value in headers if name not in FRAMING]
        headers = [*headers, (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def deny(
    scope: Scope, send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    """Answer an upgrade request with an HTTP response instead of a WebSocket."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})


def live_limit_answer(exc: Exception) -> bytes | None:
    """The 503 body for an activation refused at ``--max-live-objects`` that the worker
    did not catch (runtime.lifecycle): a platform limit, as a full body buffer is, to be
    retried; None for any other exception."""
    if not isinstance(exc, OverloadedError) or exc.message != LIVE_LIMIT_MESSAGE:
        return None
    log.info("objectd: %s", exc)
    return f"Service Unavailable: {exc.message}\n".encode()
