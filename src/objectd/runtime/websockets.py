"""``WebSocketPair`` and ``WebSocket``: the two ends of a socket, and how events cross (spec §8).

A pair is two linked ends.  Whatever one end sends or closes is delivered to the
other end's *inbound* side, which depends on what became of it:

* **pending**: not accepted yet; events wait in an inbox until it is;
* **accepted** (``ws.accept()``, the standard API): listeners and ``async for``;
  inside an object each listener call is an event of that object (input gate);
* **hibernatable** (``ctx.accept_web_socket(ws)``): the object's socket manager
  (``runtime.hibernation``) turns each event into a handler call;
* **relayed**: the client end handed to the front in a 101 response, which binds it
  to the network connection (``runtime.relay``): what the server end sends goes out
  on the wire, what arrives on the wire is delivered to the server end.

The outbound side obeys the output gate: a send or close made inside an object
after a write leaves once that write is durable.  Each end keeps one FIFO outbox,
so an ungated send issued after a gated one still waits its turn.

Closing follows workerd with the auto-reply-to-close behaviour: an accepted end
that receives a Close replies with the same code and reason at once, is then
CLOSED, and only then sees the close event, so ``ws.close()`` in the handler is a
no-op.  A lost connection is a close event with 1006 and ``was_clean`` false.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from objectd import codec
from objectd.errors import DurableObjectError, DurableObjectTypeError, OverloadedError
from objectd.runtime.host import current_host
from objectd.runtime.socket_events import (
    LOST_REASON,
    OVERFLOW_CODE,
    OVERFLOW_REASON,
    CloseEvent,
    ErrorEvent,
    Event,
    EventTarget,
    MessageEvent,
    ReadyState,
)

if TYPE_CHECKING:
    from objectd.runtime.committer import Batch
    from objectd.runtime.hibernation import SocketManager
    from objectd.runtime.host import ObjectHost
    from objectd.runtime.relay import Transport

__all__ = ["WebSocket", "WebSocketPair"]

log = logging.getLogger("objectd.runtime")

MAX_ATTACHMENT_BYTES = 16_384
MAX_CLOSE_REASON_BYTES = 123
_NOT_ACCEPTED = (
    "You must call one of accept() or state.acceptWebSocket() on this WebSocket before "
    "sending messages."
)
_RESERVED_CODES = frozenset({1004, 1005, 1006, 1015})


class _Mode(enum.Enum):
    """What became of an end: the socket's state machine (checked transitions)."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    HIBERNATABLE = "hibernatable"
    RELAYED = "relayed"
    CLOSED = "closed"


_NEXT: dict[_Mode, frozenset[_Mode]] = {
    _Mode.PENDING: frozenset({_Mode.ACCEPTED, _Mode.HIBERNATABLE, _Mode.RELAYED, _Mode.CLOSED}),
    _Mode.ACCEPTED: frozenset({_Mode.CLOSED}),
    _Mode.HIBERNATABLE: frozenset({_Mode.CLOSED}),
    _Mode.RELAYED: frozenset({_Mode.CLOSED}),
    _Mode.CLOSED: frozenset(),
}


def _gate_batch() -> Batch | None:
    """The write batch an output issued now must wait for, if any (spec §6)."""
    host = current_host.get()
    if host is None or host.storage is None:
        return None
    return host.storage.output_gate_batch()


class WebSocket(EventTarget):
    """One end of a :class:`WebSocketPair`."""

    READY_STATE_CONNECTING = CONNECTING = ReadyState.CONNECTING
    READY_STATE_OPEN = OPEN = ReadyState.OPEN
    READY_STATE_CLOSING = CLOSING = ReadyState.CLOSING
    READY_STATE_CLOSED = CLOSED = ReadyState.CLOSED

    __slots__ = (
        "_attachment",
        "_auto_response_at",
        "_flusher",
        "_inbox",
        "_manager",
        "_mode",
        "_outbox",
        "_owner",
        "_peer",
        "_peer_gone",
        "_received_close",
        "_sent_close",
        "_tags",
        "_transport",
        "_user_closed",
    )

    def __init__(self) -> None:
        super().__init__()
        self._peer: WebSocket | None = None
        self._mode = _Mode.PENDING
        self._sent_close = False  # a Close went out (by close() or the auto-reply)
        self._user_closed = False  # close() was called: send() is now a mistake
        self._received_close = False
        self._peer_gone = False  # disconnected: sends are dropped silently
        self._inbox: list[Event] | None = []
        self._outbox: deque[tuple[Batch | None, Event]] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._owner: ObjectHost | None = None
        self._manager: SocketManager | None = None
        self._transport: Transport | None = None
        self._tags: tuple[str, ...] = ()
        self._attachment: bytes | None = None
        self._auto_response_at: datetime | None = None

    # -- state ---------------------------------------------------------------------------

    def _move(self, mode: _Mode) -> None:
        if mode not in _NEXT[self._mode]:
            raise AssertionError(f"WebSocket cannot go from {self._mode.value} to {mode.value}")
        self._mode = mode

    @property
    def ready_state(self) -> ReadyState:
        if self._mode is _Mode.CLOSED:
            return ReadyState.CLOSED
        if self._sent_close or self._received_close:
            return ReadyState.CLOSING
        return ReadyState.OPEN

    readyState = ready_state

    # -- the standard API ----------------------------------------------------------------

    def accept(self) -> None:
        """Start receiving events through listeners or ``async for`` (the standard API).

        Inside an object, the socket pins the object in memory until it closes.
        """
        if self._mode is _Mode.HIBERNATABLE:
            raise DurableObjectTypeError("Can't accept() WebSocket after enabling hibernation.")
        if self._mode is _Mode.RELAYED:
            raise DurableObjectTypeError(
                "Can't accept() WebSocket that was already used in a response."
            )
        if self._mode is not _Mode.PENDING:
            return
        self._move(_Mode.ACCEPTED)
        host = current_host.get()
        if host is not None:
            from objectd.runtime.hibernation import manager_of

            self._owner = host
            manager_of(host).pin(self)
        self._flush_inbox()

    def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send a text (``str``) or binary message; it leaves once earlier writes are durable."""
        if self._user_closed:
            raise DurableObjectTypeError("Can't call WebSocket send() after close().")
        if self._mode in (_Mode.PENDING, _Mode.RELAYED):
            raise DurableObjectTypeError(_NOT_ACCEPTED)
        if not isinstance(message, str):
            if not isinstance(message, bytes | bytearray | memoryview):
                raise DurableObjectTypeError(
                    f"send() takes str or bytes, got {type(message).__name__}"
                )
            message = bytes(message)
        if self._sent_close or self._peer_gone:
            return  # the peer closed or went away: sends are dropped, as on workerd
        self._emit(MessageEvent(message))

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Send a Close frame; a no-op once a Close went out or the peer went away."""
        if self._mode in (_Mode.PENDING, _Mode.RELAYED):
            raise DurableObjectTypeError(_NOT_ACCEPTED)
        if self._sent_close or self._peer_gone or self._mode is _Mode.CLOSED:
            return
        if code is not None and (
            not isinstance(code, int)
            or isinstance(code, bool)
            or not 1000 <= code <= 4999
            or code in _RESERVED_CODES
        ):
            raise DurableObjectTypeError(f"Invalid WebSocket close code: {code}.")
        if reason is not None:
            if code is None:
                raise DurableObjectTypeError(
                    "If you specify a WebSocket close reason, you must also specify a code."
                )
            if len(reason.encode("utf-8")) > MAX_CLOSE_REASON_BYTES:
                raise DurableObjectTypeError(
                    "WebSocket close reason must not be longer than 123 bytes when UTF-8 encoded."
                )
        self._sent_close = self._user_closed = True
        self._emit(CloseEvent(1005 if code is None else code, reason or "", True))
        if self._received_close:
            self._finish()

    async def __aiter__(self) -> AsyncIterator[str | bytes]:
        """``async for message in ws``: each message until the socket closes.

        Messages are kept for the iterator only while no ``"message"`` listener is set.
        """
        if self._mode is not _Mode.ACCEPTED and self._mode is not _Mode.CLOSED:
            raise DurableObjectTypeError("call accept() before iterating over a WebSocket")
        async for message in self._iterate():
            yield message

    # -- attachments (spec §8; on any socket) --------------------------------------------

    def serialize_attachment(self, value: Any) -> None:
        """Keep ``value`` with the socket (encoded now, so later mutation is not seen)."""
        data = codec.encode(value)
        if len(data) > MAX_ATTACHMENT_BYTES:
            raise DurableObjectError(
                f"A WebSocket 'attachment' cannot be larger than {MAX_ATTACHMENT_BYTES} bytes."
                f"'attachment' was {len(data)} bytes."
            )
        self._attachment = data

    def deserialize_attachment(self) -> Any:
        """A fresh copy of the last serialized value, or None."""
        return None if self._attachment is None else codec.decode(self._attachment)

    # -- hibernation (driven by runtime.hibernation) -------------------------------------

    def _check_hibernatable(self) -> None:
        if self._mode in (_Mode.ACCEPTED, _Mode.HIBERNATABLE):
            raise DurableObjectError(
                "Cannot call `acceptWebSocket()` if the WebSocket was already accepted via "
                "`accept()`"
            )
        if self._mode is not _Mode.PENDING:
            raise DurableObjectError(
                "Cannot call `acceptWebSocket()` on a WebSocket that was used in a Response "
                "or is closed."
            )
        if self._peer is not None and self._peer._mode is not _Mode.PENDING:
            raise DurableObjectError(
                "Cannot call `acceptWebSocket()` on this WebSocket because its pair has already "
                "been accepted or used in a Response."
            )

    def _hibernate(self, manager: SocketManager, tags: tuple[str, ...]) -> None:
        self._move(_Mode.HIBERNATABLE)
        self._manager = manager
        self._tags = tags
        self._flush_inbox()

    def _get_tags(self) -> list[str]:
        if self._manager is None:
            if self._mode is _Mode.ACCEPTED:
                raise DurableObjectError("only hibernatable websockets can have tags.")
            raise DurableObjectError(
                "you must call 'acceptWebSocket()' before attempting to access the tags of a "
                "WebSocket."
            )
        return list(self._tags)

    def _answer(self, text: str) -> None:
        """The runtime's auto-response: sent in order with the object's own sends."""
        if not (self._sent_close or self._peer_gone):
            self._emit(MessageEvent(text))

    # -- outbound: output gate, FIFO ------------------------------------------------------

    def _emit(self, event: Event) -> None:
        batch = _gate_batch()
        if batch is None and not self._outbox:
            self._deliver(event)
            return
        if self._outbox is None:
            self._outbox = deque()
        self._outbox.append((batch, event))
        if self._flusher is None:
            host = current_host.get()
            assert host is not None  # a held batch exists only inside an object
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
            host.own(self._flusher)

    async def _flush(self) -> None:
        outbox = self._outbox
        assert outbox is not None
        try:
            while outbox:
                batch, event = outbox[0]
                if batch is not None:
                    try:
                        await batch.wait()
                    except Exception:
                        break  # the commit failed: the object resets, held outputs are dropped
                outbox.popleft()
                self._deliver(event)
        finally:
            # Empty unless the commit failed or the object was reset (which cancels us).
            outbox.clear()
            self._flusher = None

    def _deliver(self, event: Event) -> None:
        peer = self._peer
        if peer is not None:
            peer._inbound(event)

    # -- inbound -------------------------------------------------------------------------

    def _inbound(self, event: Event) -> asyncio.Task[Any] | None:
        """An event from the peer; returns the object event it became, if any."""
        mode = self._mode
        if mode is _Mode.CLOSED:
            return None
        if mode is _Mode.PENDING:
            assert self._inbox is not None
            self._inbox.append(event)
            return None
        if mode is _Mode.RELAYED:
            self._forward(event)
            return None
        if isinstance(event, CloseEvent):
            self._received_close = True
            if not event.was_clean:
                self._peer_gone = True
            elif not self._sent_close:
                # Auto-reply-to-close (spec §3): the reciprocal Close goes out before the
                # handler runs, so the handler sees CLOSED and its close() is a no-op.
                self._sent_close = True
                self._emit(CloseEvent(event.code, event.reason, True))
            self._finish()
        elif isinstance(event, ErrorEvent):
            self._peer_gone = self._received_close = True
            self._finish()
        if mode is _Mode.HIBERNATABLE:
            assert self._manager is not None
            return self._manager.deliver(self, event)
        return self._dispatch(event)

    def _forward(self, event: Event) -> None:
        transport = self._transport
        assert transport is not None
        if isinstance(event, MessageEvent):
            if not transport.send_message(event.data):
                # The peer is too far behind: the front closes it; the server end sees it now.
                self._wire_lost(OVERFLOW_CODE, OVERFLOW_REASON)
        elif isinstance(event, CloseEvent) and event.was_clean:
            self._received_close = True
            transport.send_close(event.code, event.reason)
            if self._sent_close:
                self._finish()
        else:
            self._peer_gone = True
            transport.abort()
            self._finish()

    def _flush_inbox(self) -> None:
        inbox, self._inbox = self._inbox, None
        for event in inbox or ():
            self._inbound(event)

    def _finish(self) -> None:
        """Both directions are closed (or the connection is gone): release the socket."""
        if self._mode is _Mode.CLOSED:
            return
        self._move(_Mode.CLOSED)
        if self._manager is not None:
            self._manager.forget(self)
        if self._owner is not None:
            from objectd.runtime.hibernation import manager_of

            manager_of(self._owner).unpin(self)
        self._wake_reader()

    def _disconnect(self) -> None:
        """The object was reset: drop the connection without events (spec §8)."""
        if self._mode is _Mode.CLOSED:
            return
        self._peer_gone = True
        if self._outbox:
            self._outbox.clear()
        self._finish()
        if self._peer is not None:
            self._peer._inbound(CloseEvent(1006, LOST_REASON, False))

    # -- the network side of a relayed client end (runtime.relay) ------------------------

    def _bind(self, transport: Transport) -> None:
        if self._mode is not _Mode.PENDING:
            raise DurableObjectTypeError(
                "the WebSocket of a 101 response must be a client end that was not accepted "
                "or used in another response"
            )
        self._move(_Mode.RELAYED)
        self._transport = transport
        self._flush_inbox()

    def _wire_message(self, data: str | bytes) -> asyncio.Task[Any] | None:
        if self._sent_close or self._mode is _Mode.CLOSED or self._peer is None:
            return None
        return self._peer._inbound(MessageEvent(data))

    def _wire_closed(self, code: int, reason: str) -> None:
        if self._sent_close or self._mode is _Mode.CLOSED:
            return
        self._sent_close = True
        if self._received_close:
            self._finish()
        self._deliver(CloseEvent(code, reason, True))

    def _wire_lost(self, code: int = 1006, reason: str = LOST_REASON) -> None:
        if self._mode is _Mode.CLOSED:
            return
        self._peer_gone = True
        self._finish()
        self._deliver(CloseEvent(code, reason, False))

    def _wire_error(self, message: str) -> None:
        if self._mode is _Mode.CLOSED:
            return
        self._peer_gone = True
        self._finish()
        # What a JavaScript Error becomes in Python Workers: Exception(message).
        self._deliver(ErrorEvent(Exception(message)))

    # -- standard-API dispatch -----------------------------------------------------------

    def _dispatch(self, event: Event) -> asyncio.Task[Any] | None:
        if isinstance(event, MessageEvent) and not self._listening("message"):
            self._keep(event.data)
            return None
        if not self._listening(event.type):
            return None
        owner = self._owner
        if owner is None:
            return self._fire_soon(event)

        async def fire(_instance: Any) -> None:
            await self._fire(event)

        try:
            return owner.submit(fire)  # inside an object, each listener call is an event
        except OverloadedError as exc:
            log.warning("object %s: WebSocket %s event dropped: %s", owner.id, event.type, exc)
            return None

    def _ended(self) -> bool:
        return self._mode is _Mode.CLOSED

    def _abandon(self) -> None:
        self._disconnect()

    def __repr__(self) -> str:
        return f"<WebSocket {self._mode.value} readyState={int(self.ready_state)}>"

    serializeAttachment = serialize_attachment
    deserializeAttachment = deserialize_attachment


class WebSocketPair:
    """Two linked sockets: ``client, server = WebSocketPair()`` (also ``pair[0]``, ``pair[1]``).

    The server end is accepted by the object; the client end goes into
    ``Response(None, status=101, web_socket=client)``.
    """

    __slots__ = ("client", "server")

    def __init__(self) -> None:
        self.client = WebSocket()
        self.server = WebSocket()
        self.client._peer = self.server
        self.server._peer = self.client

    @classmethod
    def new(cls) -> WebSocketPair:
        """Python Workers' spelling: ``client, server = WebSocketPair.new()``."""
        return cls()

    def __iter__(self) -> Iterator[WebSocket]:
        return iter((self.client, self.server))

    def __getitem__(self, index: int) -> WebSocket:
        return (self.client, self.server)[index]

    def __len__(self) -> int:
        return 2

    def object_values(self) -> tuple[WebSocket, WebSocket]:
        """Pyodide's ``Object.values(pair)``: ``client, server = pair.object_values()``."""
        return (self.client, self.server)
