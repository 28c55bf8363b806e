"""A WebSocket upgrade (L3): the worker's (or an object's) 101 accepted and relayed, any
other answer denying the upgrade with it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from objectd.asgi.answers import BUSY_HEADERS, ERROR_HEADERS, deny, live_limit_answer
from objectd.asgi.metrics import FrontCounts
from objectd.asgi.requests import request_from_scope, scan_headers
from objectd.asgi.websocket import Connection
from objectd.errors import DurableObjectError
from objectd.fetch import Headers, Request, Response
from objectd.runtime.relay import relay

__all__ = ["serve_upgrade"]

log = logging.getLogger("objectd")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Handshake headers the server writes itself; the rest of a 101 response's headers go out.
_HANDSHAKE_HEADERS = frozenset(
    {
        b"upgrade",
        b"connection",
        b"sec-websocket-accept",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"content-length",
        b"transfer-encoding",
    }
)


async def serve_upgrade(
    scope: Scope,
    send: Send,
    receive: Receive,
    fetch: Callable[[Request], Awaitable[Response]],
    send_buffer: int,
    uncaught: Callable[[Exception], bytes],
    *,
    url: str | None = None,
    counts: FrontCounts | None = None,
) -> None:
    """Answer an upgrade whose ``websocket.connect`` was received: ``fetch`` (the worker's,
    or an object's) is asked, a 101 is accepted and relayed until the connection ends, and
    any other answer denies the upgrade with it.  ``uncaught`` logs an exception ``fetch``
    raised and returns the 500 body; ``url``: the request's URL instead of the scope's;
    ``counts``: where accepted and open sockets are counted (/__objectd/metrics).
    """
    try:
        request = request_from_scope(scope, scan_headers(scope)[0], b"")
        if url is not None:
            request = Request(url, headers=request.headers)
    except (DurableObjectError, ValueError) as exc:  # the client's fault, as for HTTP
        log.info("objectd: bad request: %s", exc)
        await deny(scope, send, 400, b"Bad Request", ERROR_HEADERS)
        return
    try:
        request.headers.set("upgrade", "websocket")
        response = await fetch(request)
        socket = response.web_socket
        connection = Connection(send, scope, send_buffer)
        link = relay(socket, connection) if socket is not None else None
        denial = await response.bytes() if link is None else b""  # a stream, read whole
    except Exception as exc:
        busy = live_limit_answer(exc)
        if busy is not None:
            await deny(scope, send, 503, busy, BUSY_HEADERS)
            return
        await deny(scope, send, 500, uncaught(exc), ERROR_HEADERS)
        return
    if link is None:
        await deny(scope, send, response.status, denial, response.headers.raw())
        return
    await send(_accept_message(response.headers))
    del request, response, socket  # an idle connection should hold only what it needs
    if counts is None:
        await connection.run(receive, link)
        return
    counts.websockets_accepted += 1
    counts.websockets_open += 1
    try:
        await connection.run(receive, link)
    finally:
        counts.websockets_open -= 1


def _accept_message(headers: Headers) -> Message:
    message: Message = {"type": "websocket.accept"}
    protocol = headers.get("sec-websocket-protocol")
    if protocol:
        message["subprotocol"] = protocol
    extra = [(k, v) for k, v in headers.raw() if k not in _HANDSHAKE_HEADERS]
    if extra:
        message["headers"] = extra
    return message
