"""The network side of a relayed WebSocket: one accepted client connection (L3).

``ObjectdApp`` accepts an upgrade whose worker answered 101 and hands the connection
to :class:`Connection`, which delivers incoming frames to the object and writes
outgoing ones in order.

Outgoing messages wait in a send buffer counted in bytes: what objectd has queued for the
peer plus what the transport holds, when the server says (the ``objectd.websocket``
scope extension of ``objectd.asgi.ws_protocol``).  Its bound judges the peer, not the
sender's burst:

* a message is taken while the buffer holds at most ``--ws-send-buffer``
  (:data:`DEFAULT_SEND_BUFFER`), so one message of any size goes to a peer that keeps up;
* past that bound the peer is *behind*, and is given ``--ws-ping-timeout`` (the
  ``patience`` the extension offers) to get a message out: a message that finds it
  still behind, with none written since it fell behind that long ago, closes it;
* past :data:`CEILING_FACTOR` times the bound (16 MiB by default) it is closed at once,
  whatever the time: the bound on memory.

A handler that sends 5 x 1 MiB in one call used to close even a fast localhost reader
(adversarial re-test of issue 9, finding 6): the check ran before the writer had a turn.
Now such a burst is written as the reader takes it, and only a peer that does not drain
is closed.  Closing is with ``OVERFLOW_CODE`` (1008): what was queued is dropped, the
Close goes out at once, and the socket's object sees the close right away.

Incoming messages count against the process's receive budget (``--ws-receive-buffer``)
from their first byte until their object event has run: the server counts them while
they are assembled (``objectd.asgi.ws_protocol``), this connection while they wait for
their object.  Past it the server closes the connection whose bytes would exceed it
with ``BUSY_CODE`` (1013), and its object sees that close, ``was_clean`` false.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from functools import partial
from typing import Any

from objectd.asgi.limits import ByteBudget
from objectd.runtime.relay import OVERFLOW_CODE, OVERFLOW_REASON, Relay

__all__ = [
    "BUSY_CODE",
    "BUSY_REASON",
    "CEILING_FACTOR",
    "DEFAULT_PATIENCE_S",
    "DEFAULT_SEND_BUFFER",
    "ERROR",
    "EXTENSION",
    "MESSAGE_OVERHEAD",
    "UNCLEAN",
    "Connection",
]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Object events one connection may have queued before it stops reading (back-pressure).
_MAX_IN_FLIGHT = 32
# Bytes buffered for one peer before it is behind.  A peer that reads at the pace of its
# link never comes near: the kernel's own send buffer (up to 4 MiB on Linux) takes bursts
# first, and only what it cannot take waits here.  4 MiB is four 1 MiB frames, or a
# second of a 32 Mbit/s stream, on top of that.  Cloudflare documents no per-socket
# figure (there, an isolate's 128 MB memory limit is the only ceiling).
DEFAULT_SEND_BUFFER = 4 * 1024 * 1024
# Past this many times the bound a peer is closed at once: room for a handler's burst
# (a history replayed, a file sent in chunks) to reach a reader that keeps up, while a
# peer that never reads costs at most this much, and only until it is closed.
CEILING_FACTOR = 4
# How long a peer behind may go without a message written, when the server does not say
# (``--ws-ping-timeout``'s default).
DEFAULT_PATIENCE_S = 20.0
# What a queued message costs beyond its payload (its slot, then its ASGI message and frame
# header while it is written), so a flood of tiny messages is bounded too: 4 MiB of send
# buffer is 61,680 queued ``pong`` auto-responses.
MESSAGE_OVERHEAD = 64
# The scope extension through which the server shows its transport's send buffer, the
# patience for a peer behind, and the receive budget.
EXTENSION = "objectd.websocket"
# A connection whose incoming message would take the process past its receive budget is
# closed with 1013, try again later: the message was within the limits (1009 is for a
# message over the 32 MiB one), the server is short of room now, and the same message may
# well fit later, as a body refused for the body budget gets 503 with Retry-After.
BUSY_CODE = 1013
BUSY_REASON = "WebSocket receive buffer full: the server is busy, try again later."
# A websocket.disconnect the server marks so: it closed the connection itself, so the
# object sees the code and reason with was_clean false, not a peer's clean close.
UNCLEAN = "objectd.unclean"
# A websocket.disconnect that the connection's failure caused (a frame breaking the
# protocol, a message over the limit): its value says what failed, and the object sees an
# error event (``web_socket_error``), not a close (spec §8).
ERROR = "objectd.error"


def _cost(data: str | bytes) -> int:
    if isinstance(data, bytes):
        return len(data) + MESSAGE_OVERHEAD
    # UTF-8 needs up to 4 bytes a character; ASCII text (the usual case) exactly 1.
    return (len(data) if data.isascii() else 4 * len(data)) + MESSAGE_OVERHEAD


def _no_transport_buffer() -> int:
    return 0


_UNBOUNDED = ByteBudget(1 << 62)  # when the server keeps no receive budget


def _give_back(budget: ByteBudget, size: int, _event: asyncio.Task[Any]) -> None:
    budget.give(size)


class Connection:
    """One accepted client connection: the network side of a relayed WebSocket.

    Incoming frames go to the object as they arrive (at most ``_MAX_IN_FLIGHT`` events
    queued, then reading waits).  Outgoing frames are queued without blocking the
    sender, within the send buffer, and written in order by a writer task that exists
    while there is something to write; the connection owns it and ends it when the
    connection ends.
    """

    __slots__ = (
        "_behind",
        "_buffered",
        "_ceiling",
        "_clock",
        "_close",
        "_closing",
        "_done",
        "_drained_at",
        "_in_flight",
        "_in_send",
        "_limit",
        "_patience",
        "_preempted",
        "_queue",
        "_queued",
        "_received",
        "_send",
        "_started",
        "_writer",
    )

    def __init__(
        self,
        send: Send,
        scope: MutableMapping[str, Any] | None = None,
        send_buffer: int = DEFAULT_SEND_BUFFER,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self._limit = send_buffer
        self._ceiling = CEILING_FACTOR * send_buffer
        extension = ((scope or {}).get("extensions") or {}).get(EXTENSION) or {}
        self._buffered: Callable[[], int] = extension.get("write_buffer_size", _no_transport_buffer)
        self._patience: float = extension.get("patience", DEFAULT_PATIENCE_S)
        self._received: ByteBudget = extension.get("receive_budget", _UNBOUNDED)
        self._clock = clock
        # The peer is behind (a send found the buffer over the bound) and, while it is,
        # when it last drained: when it fell behind, or the writer last got a message out.
        self._behind = False
        self._drained_at = 0.0
        self._queue: deque[str | bytes] = deque()
        self._queued = 0  # the cost of what is in _queue
        self._in_flight = 0  # the cost of the message being written
        self._close: Message | None = None  # written once the queue is empty
        self._writer: asyncio.Task[None] | None = None
        self._in_send = False  # the writer waits in send(): it may wait for the peer
        self._preempted = False  # the writer was cancelled to send the Close at once
        self._started = False  # run() began: the handshake is out, frames may follow
        self._closing = False  # a Close frame is queued: nothing more goes out
        self._done = False  # the connection is over: nothing goes out at all

    # -- Transport (called by the runtime) ------------------------------------------------

    def send_message(self, data: str | bytes) -> bool:
        if self._closing or self._done:
            return True
        size = self._queued + self._in_flight + self._buffered()
        if size > self._limit:
            if self._stalled(size):
                self._overflow()
                return False
        elif self._behind:
            self._behind = False  # caught up
        self._queue.append(data)
        self._queued += _cost(data)
        self._start()
        return True

    def send_close(self, code: int, reason: str) -> None:
        if self._closing or self._done:
            return
        # 1005 means "no code"; ASGI cannot send an empty Close frame, so say 1000.
        if code == 1005:
            code, reason = 1000, ""
        self._close_with(code, reason)

    def abort(self) -> None:
        if self._closing or self._done:
            return
        self._close_with(1011, "")

    # -- pumping -------------------------------------------------------------------------

    def _close_with(self, code: int, reason: str) -> None:
        self._closing = True
        self._close = {"type": "websocket.close", "code": code, "reason": reason}
        self._start()

    def _stalled(self, size: int) -> bool:
        """The buffer holds ``size`` > the bound: is the peer to be closed?  Yes past the
        ceiling; else once it has been behind for the patience with no message written."""
        if size > self._ceiling:
            return True
        now = self._clock()
        if not self._behind:
            self._behind, self._drained_at = True, now
            return False
        return now - self._drained_at > self._patience

    def _overflow(self) -> None:
        """The peer is too far behind: drop what waits for it and close now."""
        self._queue.clear()
        self._queued = 0
        self._close_with(OVERFLOW_CODE, OVERFLOW_REASON)
        writer = self._writer
        if writer is not None and self._in_send:
            # It waits for the peer to read, which may never happen: the Close goes instead.
            self._preempted = True
            writer.cancel()

    def _start(self) -> None:
        if self._writer is None and self._started:
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        queue = self._queue
        try:
            while queue and not self._done:
                data = queue.popleft()
                cost = _cost(data)
                self._queued -= cost
                self._in_flight = cost
                if isinstance(data, str):
                    await self._sending({"type": "websocket.send", "text": data})
                else:
                    await self._sending({"type": "websocket.send", "bytes": data})
                self._in_flight = 0
                if self._behind:  # the peer drains: timed only while it is behind
                    self._drained_at = self._clock()
            if self._close is not None and not self._done:
                message, self._close = self._close, None
                await self._sending(message)
        except (OSError, RuntimeError):
            self._done = True  # the client went away while we wrote: nothing more to do
        finally:
            self._in_flight = 0
            if self._done:
                queue.clear()
                self._queued = 0
            self._writer = None

    async def _sending(self, message: Message) -> None:
        self._in_send = True
        try:
            await self._send(message)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not self._preempted or task is None or task.uncancel() > 0:
                raise
            # Our own cancel (see _overflow): this message is dropped, the Close follows.
        finally:
            self._in_send = self._preempted = False

    async def run(self, receive: Receive, link: Relay) -> None:
        """Deliver incoming frames until the connection ends."""
        self._started = True
        if self._queue or self._close is not None:
            self._start()  # what the server end sent before the handshake went out
        pending: deque[asyncio.Task[Any]] = deque()
        ended = False
        try:
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    text = message.get("text")
                    data = text if text is not None else message.get("bytes", b"")
                    event = link.message(data)
                    if event is not None:
                        # Held until the event has run: the budget counts it until then.
                        cost = _cost(data)
                        self._received.charge(cost)
                        event.add_done_callback(partial(_give_back, self._received, cost))
                        pending.append(event)
                        while pending and pending[0].done():
                            pending.popleft()
                        if len(pending) > _MAX_IN_FLIGHT:
                            await asyncio.wait({pending.popleft()})
                elif kind == "websocket.disconnect":
                    ended = True
                    self._done = True
                    code = message.get("code", 1005)
                    error = message.get(ERROR)
                    if error is not None:
                        link.failed(error)
                    elif code == 1006:
                        link.lost()
                    elif message.get(UNCLEAN):
                        link.lost(code, message.get("reason") or "")
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
