"""The network side of a relayed WebSocket: one accepted client connection (L3).

``ObjectdApp`` accepts an upgrade whose worker answered 101 and hands the connection
to :class:`Connection`, which delivers incoming frames to the object and writes
outgoing ones in order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from objectd.runtime.relay import Relay

__all__ = ["EXTENSION", "Connection"]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Object events one connection may have queued before it stops reading (back-pressure).
_MAX_IN_FLIGHT = 32
# The scope extension through which the server shows its transport's send buffer.
EXTENSION = "objectd.websocket"


class Connection:
    """One accepted client connection: the network side of a relayed WebSocket.

    Incoming frames go to the object as they arrive (at most ``_MAX_IN_FLIGHT`` events
    queued, then reading waits).  Outgoing frames are queued without blocking the
    sender and written in order by a writer task that exists while there is something
    to write; the connection owns it and ends it when the connection ends.
    """

    __slots__ = ("_closing", "_done", "_queue", "_send", "_writer")

    def __init__(self, send: Send) -> None:
        self._send = send
        self._queue: deque[Message] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False  # a Close frame is queued: nothing more goes out
        self._done = False  # the connection is over: nothing goes out at all

    # -- Transport (called by the runtime) ------------------------------------------------

    def send_message(self, data: str | bytes) -> None:
        if self._closing or self._done:
            return
        if isinstance(data, str):
            self._push({"type": "websocket.send", "text": data})
        else:
            self._push({"type": "websocket.send", "bytes": data})

    def send_close(self, code: int, reason: str) -> None:
        if self._closing or self._done:
            return
        self._closing = True
        # 1005 means "no code"; ASGI cannot send an empty Close frame, so say 1000.
        if code == 1005:
            code, reason = 1000, ""
        self._push({"type": "websocket.close", "code": code, "reason": reason})

    def abort(self) -> None:
        if self._closing or self._done:
            return
        self._closing = True
        self._push({"type": "websocket.close", "code": 1011, "reason": ""})

    # -- pumping -------------------------------------------------------------------------

    def _push(self, message: Message) -> None:
        self._queue.append(message)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        queue = self._queue
        try:
            while queue and not self._done:
                await self._send(queue.popleft())
        except (OSError, RuntimeError):
            self._done = True  # the client went away while we wrote: nothing more to do
        finally:
            if self._done:
                queue.clear()
            self._writer = None

    async def run(self, receive: Receive, link: Relay) -> None:
        """Deliver incoming frames until the connection ends."""
        pending: deque[asyncio.Task[Any]] = deque()
        ended = False
        try:
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    text = message.get("text")
                    event = link.message(text if text is not None else message.get("bytes", b""))
                    if event is not None:
                        pending.append(event)
                        while pending and pending[0].done():
                            pending.popleft()
                        if len(pending) > _MAX_IN_FLIGHT:
                            await asyncio.wait({pending.popleft()})
                elif kind == "websocket.disconnect":
                    ended = True
                    self._done = True
                    code = message.get("code", 1005)
                    if code == 1006:
                        link.lost()
                    else:
                        link.closed(code, message.get("reason") or "")
                    return
        finally:
            self._done = True
            if not ended:
                link.lost()
            writer = self._writer
            if writer is not None:
                await asyncio.wait({writer}, timeout=1.0)
                writer.cancel()
