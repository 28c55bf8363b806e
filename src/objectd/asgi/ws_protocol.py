"""The WebSocket protocol ``objectd serve`` and ``objectd dev`` give uvicorn (L3).

It is uvicorn's maintained ``websockets-sansio`` implementation: one writer and no
drain to share, so a keepalive ping cannot race objectd's writer (the legacy
implementation's pings failed with an AssertionError in its drain, dropping slow
readers with 1011).  On top of it, what a relayed socket needs:

* **Close codes.**  A connection lost without a Close frame is reported as 1006
  (uvicorn says 1005, which is also what a peer's Close without a code gives), and
  after our Close the peer's answer is reported with its code and reason (uvicorn
  reports our own code at once).  A frame that breaks the protocol (or a message
  over the size limit, or text that is not UTF-8) closes the connection with the code
  websockets chose (1002, 1009, 1007) and is reported to the app as a failure, which the
  object sees as ``web_socket_error`` (spec §8).
* **Every close ends in bounded time.**  ``websocket.close`` goes out at once, not after
  the send buffer drains (a peer that does not read would hold it forever); a peer
  that does not answer it, or does not read what is left once the connection is
  closed, is aborted after ``ws_ping_timeout`` seconds.
* **Pongs under back-pressure.**  A ping that finds the send buffer over its high-water
  mark stops reading until the buffer drains, so a peer that pings without reading
  cannot grow it.
* **The handshake takes any head the HTTP front takes.**  uvicorn hands websockets the
  head httptools already parsed, and websockets parses it again with its own limits
  (8,192-byte lines, 128 headers: ``websockets.http11``), so an 8.5 KiB Cookie or 130
  headers got 431 on an upgrade while a plain request took a 127 KiB head.  Those limits
  are raised to what fits in the head size the HTTP front enforces (``--max-header-bytes``),
  which stays the one bound on a head.
* **Incoming messages share one budget.**  The bytes of incoming messages this process
  holds (a frame still arriving, the fragments of an unfinished message, messages the
  app has not taken yet) count against ``--ws-receive-buffer``, shared by every
  connection (:class:`objectd.asgi.limits.ByteBudget`, carried by the server's config);
  the app's side counts a message from there until its object event has run.  A read
  that would take the budget past its limit closes its connection with 1013 and frees
  what it held, and the app is told so (unclean).  Without it, 96 clients each holding
  31 MiB of a message they never finished took the server to 3 GB.  Fragments are
  joined as they arrive (uvicorn keeps a list of them, which costs a slot per fragment
  however small, while the 32 MiB message limit counts payload only).
* **The send buffer is visible.**  The scope's ``objectd.websocket`` extension offers
  its size, so the per-socket send bound (:mod:`objectd.asgi.websocket`) counts what
  the transport holds as well as what objectd has queued, and ``--ws-ping-timeout`` as
  the time a peer past that bound has to drain.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn._types import ASGIReceiveEvent, ASGISendEvent
from uvicorn.config import Config
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets import http11
from websockets.exceptions import InvalidState
from websockets.frames import Frame
from websockets.http11 import Request

from objectd.asgi.limits import ByteBudget, FrontLimits
from objectd.asgi.protocol import ServerConfig
from objectd.asgi.websocket import BUSY_CODE, BUSY_REASON, ERROR, EXTENSION, UNCLEAN

__all__ = ["WebSocketProtocol"]

_LOST = 1006
# When uvicorn is configured without a ping timeout: websockets' own close timeout.
_DEFAULT_LINGER_S = 10.0
# What uvicorn's copy of a head can add to its longest line: it writes each header back as
# "name: value", and the HTTP front's head size is measured as parsed (approximately).
_LINE_SLACK = 1024


def _fit_handshake_parser(max_header_bytes: int) -> None:
    """Let websockets' handshake parser take any head of up to ``max_header_bytes`` (whose
    total the HTTP front has already checked): a line as long as the whole head, and as
    many headers as fit in it (a header line is at least 3 bytes, ``a:\\n``).  The limits
    are module attributes that websockets reads at each parse, shared by the process."""
    line = max_header_bytes + _LINE_SLACK
    if line > http11.MAX_LINE_LENGTH:
        http11.MAX_LINE_LENGTH = line
    headers = max_header_bytes // 3 + 1
    if headers > http11.MAX_NUM_HEADERS:
        http11.MAX_NUM_HEADERS = headers


def _receive_budget(config: Config) -> ByteBudget:
    """The budget of the server's connections: the config's (one config per server)."""
    budget = getattr(config, "ws_receive_budget", None)
    if not isinstance(budget, ByteBudget):  # a plain uvicorn config: give it one
        budget = ByteBudget(FrontLimits().ws_receive_buffer_bytes)
        config.ws_receive_budget = budget  # type: ignore[attr-defined]
    return budget


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol with objectd's close codes and bounds."""

    transport: _Transport

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = config.limits if isinstance(config, ServerConfig) else FrontLimits()
        _fit_handshake_parser(limits.max_header_bytes)
        # How long a peer has to answer our Close or read what is left (uvicorn: 10 s,
        # then a graceful close that waits for the buffer forever).
        self.close_timeout = config.ws_ping_timeout or _DEFAULT_LINGER_S
        self._reported = False
        self._budget = _receive_budget(config)
        # The fragments of an unfinished message, joined; b"" (shared) between messages.
        self._partial: bytes | bytearray = b""
        self._sizes: list[int] = []  # of the messages queued for the app (a few at most)
        self._queued = 0  # their sum
        self._charged = 0  # what this connection holds of the budget

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # uvloop's transports quack like asyncio.Transport without subclassing it.
        self.transport = _Transport(
            cast(asyncio.Transport, transport), self.loop, self.close_timeout
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport.lost()
        if self.handshake_complete and self.initial_response is None:
            self._report(_LOST)  # before uvicorn's 1005: no Close frame came
        # Everything is given back now, messages the app may still take included: an app
        # that never takes them must not keep the budget.
        self._budget.give(self._charged)
        self._charged = self._queued = 0
        self._sizes.clear()
        self._partial = b""
        super().connection_lost(exc)

    def _report(
        self, code: int, reason: str = "", *, clean: bool = True, error: str | None = None
    ) -> None:
        """Tell the app how the connection ended; the first report is the one it reads."""
        if not self._reported:
            self._reported = True
            message: dict[str, Any] = {
                "type": "websocket.disconnect",
                "code": code,
                "reason": reason,
            }
            if not clean:
                message[UNCLEAN] = True
            if error is not None:
                message[ERROR] = error
            self.queue.put_nowait(message)  # type: ignore[arg-type]

    # -- incoming messages: assembled, counted --------------------------------------------

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # What this connection holds now: a frame still arriving, an unfinished message,
        # messages the app has not taken.
        held = len(self.conn.reader.buffer) + len(self._partial) + self._queued
        more = held - self._charged
        if more > 0 and not self._budget.take(more):
            self._refuse_busy()
            return
        if more < 0:
            self._budget.give(-more)
        self._charged = held

    def _refuse_busy(self) -> None:
        """The process's receive budget is full: close this connection with 1013 and free
        what it holds (the messages it completed are still the app's to take)."""
        self._budget.give(self._charged - self._queued)
        self._charged = self._queued
        self._partial = b""
        self._report(BUSY_CODE, BUSY_REASON, clean=False)
        self.conn.fail(BUSY_CODE, BUSY_REASON)  # its parser discards whatever comes now
        if not self.transport.is_closing():
            self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.transport.close()

    def handle_text(self, event: Frame) -> None:
        self.curr_msg_data_type = "text"
        self._begin(event)

    def handle_bytes(self, event: Frame) -> None:
        self.curr_msg_data_type = "bytes"
        self._begin(event)

    def _begin(self, event: Frame) -> None:
        if event.fin:  # the usual case: a message in one frame, taken as it is
            self.frames = [event.data]  # type: ignore[list-item]
            self.send_receive_event_to_app()
        else:
            self._partial = bytearray(event.data)

    def handle_cont(self, event: Frame) -> None:
        self._partial += event.data
        if event.fin:
            data, self._partial = self._partial, b""
            # A text message is decoded from the bytearray; a binary one must be bytes.
            self.frames = [data if self.curr_msg_data_type == "text" else bytes(data)]  # type: ignore[list-item]
            del data
            self.send_receive_event_to_app()

    def send_receive_event_to_app(self) -> None:
        size = len(self.frames[0])
        waiting = self.queue.qsize()
        super().send_receive_event_to_app()
        # Queued, unless dropped (after our Close) or refused (invalid UTF-8: a disconnect).
        if self.queue.qsize() > waiting and not self._reported:
            self._sizes.append(size)
            self._queued += size

    async def receive(self) -> ASGIReceiveEvent:
        message = await super().receive()
        if message["type"] == "websocket.receive" and self._sizes:
            size = self._sizes.pop(0)  # the app's side counts it from here
            self._queued -= size
            self._charged -= size
            self._budget.give(size)
        return message

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if self.handshake_initiated and not self.handshake_complete:  # the app is starting
            self.scope["extensions"][EXTENSION] = {
                "write_buffer_size": self.transport.get_write_buffer_size,
                # How long a peer behind its send bound may go without draining.
                "patience": self.close_timeout,
                "receive_budget": self._budget,
            }

    def handle_close(self, event: Frame) -> None:
        received = self.conn.close_rcvd
        if received is not None:  # the peer's own Close, or its answer to ours
            self._report(received.code, received.reason)
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
        self.close_sent = True
        if not self.transport.is_closing():
            self.transport.write(b"".join(self.conn.data_to_send()))  # websockets' answer
        self.transport.close()

    def handle_parser_exception(self) -> None:
        # websockets has queued its Close for the peer (1002 protocol error, 1007 bad
        # UTF-8, 1009 too big) with the failure as its reason.
        sent = self.conn.close_sent
        if sent is None:
            self._report(_LOST)
        else:
            failure = f"WebSocket protocol error ({sent.code}): {sent.reason}"
            self._report(sent.code, sent.reason, clean=False, error=failure)
        super().handle_parser_exception()

    def handle_ping(self) -> None:
        super().handle_ping()
        if not self.writable.is_set():  # over the high-water mark: read on once it drains
            self.transport.hold_reading(True)

    def resume_writing(self) -> None:
        super().resume_writing()
        self.transport.hold_reading(False)

    async def send(self, message: ASGISendEvent) -> None:
        if (
            message["type"] != "websocket.close"
            or not self.handshake_complete
            or self.initial_response is not None
            or self.disconnected
        ):
            await super().send(message)
            return
        # The Close goes out now, behind what the transport holds: uvicorn would first wait
        # for the buffer to drain, which never happens for a peer that does not read.  A
        # Close once the closing handshake is under way (the relayed answer to the peer's
        # Close, which websockets already sent) has nothing left to do.
        if self.close_sent or self.transport.is_closing():
            return
        try:
            self.conn.send_close(message.get("code", 1000), message.get("reason") or "")
        except InvalidState:
            raise ClientDisconnected() from None
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.read_paused:  # read the peer's answer
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)


class _Transport(asyncio.Transport):
    """The connection's transport as the protocol sees it.

    Reading is paused while the app has a message to take (uvicorn's pause) or while
    pongs wait for the send buffer to drain (``hold_reading``), and resumed only when
    neither holds it.  ``close()`` flushes what is buffered, and aborts if that has not
    happened after ``linger`` seconds.
    """

    __slots__ = ("_abort", "_held", "_linger", "_loop", "_paused", "_transport")

    def __init__(
        self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop, linger: float
    ) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._linger = linger
        self._paused = False
        self._held = False
        self._abort: asyncio.TimerHandle | None = None

    # -- reading: two reasons to pause ----------------------------------------------------

    def pause_reading(self) -> None:
        self._paused = True
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._paused = False
        if not self._held:
            self._transport.resume_reading()

    def hold_reading(self, held: bool) -> None:
        if held == self._held:
            return
        self._held = held
        if held:
            self._transport.pause_reading()
        elif not self._paused:
            self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    # -- closing: bounded -----------------------------------------------------------------

    def close(self) -> None:
        transport = self._transport
        if not transport.is_closing():
            transport.close()
        if self._abort is None and transport.get_write_buffer_size():
            self._abort = self._loop.call_later(self._linger, transport.abort)

    def abort(self) -> None:
        self._transport.abort()

    def lost(self) -> None:
        """The connection is gone: nothing left to abort."""
        if self._abort is not None:
            self._abort.cancel()
            self._abort = None

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    # -- the rest, as the transport has it ------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def write_eof(self) -> None:
        self._transport.write_eof()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()
