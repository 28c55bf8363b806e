"""The network side of a WebSocket: how the front relays a client end (spec §8).

A worker answers an upgrade with ``Response(None, status=101, web_socket=client)``.
The front (``objectd.asgi.websocket``) accepts the connection and binds ``client`` to it with
:func:`relay`: what the server end sends goes out on the wire through the
:class:`Transport`, and the front reports what arrives on the wire through the
returned :class:`Relay`.  Messages the server sent before the client end was bound
(a history replayed in ``fetch``, say) go out first, in order.  A peer too far behind
(its send buffer full) is closed by the front with ``OVERFLOW_CODE``, and the server end
sees that close at once, ``was_clean`` false, as for a lost connection.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from objectd.errors import DurableObjectTypeError
from objectd.runtime.socket_events import LOST_REASON, OVERFLOW_CODE, OVERFLOW_REASON
from objectd.runtime.websockets import WebSocket

__all__ = ["OVERFLOW_CODE", "OVERFLOW_REASON", "Relay", "Transport", "relay"]


class Transport(Protocol):
    """The network side of a relayed end (implemented by the ASGI front).  Never blocks."""

    def send_message(self, data: str | bytes) -> bool:
        """Queue ``data`` for the peer; False when the peer's send buffer was full: the
        transport then closes the connection with ``OVERFLOW_CODE`` and drops ``data``."""
        ...

    def send_close(self, code: int, reason: str) -> None: ...

    def abort(self) -> None:
        """Drop the connection: the server end went away without a clean close."""
        ...


class Relay:
    """The front's handle on a relayed client end: the network connection's events."""

    __slots__ = ("_ws",)

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws

    def message(self, data: str | bytes) -> asyncio.Task[Any] | None:
        """A message arrived; returns the object event it became (for back-pressure)."""
        return self._ws._wire_message(data)

    def closed(self, code: int, reason: str) -> None:
        """The peer sent a Close frame (its reply to ours, or its own close)."""
        self._ws._wire_closed(code, reason)

    def lost(self, code: int = 1006, reason: str = LOST_REASON) -> None:
        """The connection ended without a Close frame from the peer: lost (1006), or closed
        by the front for a reason of its own (``code``, ``reason``)."""
        self._ws._wire_lost(code, reason)

    def failed(self, message: str) -> None:
        """The connection failed (a frame that broke the protocol, a message over the
        limit): the server end gets an error event carrying ``Exception(message)``."""
        self._ws._wire_error(message)


def relay(ws: object, transport: Transport) -> Relay:
    """Bind the client end of a 101 response to a network connection."""
    if not isinstance(ws, WebSocket):
        raise DurableObjectTypeError(
            "a 101 response needs web_socket= the client end of a WebSocketPair, "
            f"got {type(ws).__name__}"
        )
    ws._bind(transport)
    return Relay(ws)
