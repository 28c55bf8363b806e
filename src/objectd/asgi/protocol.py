"""HTTP/1.1 connections: uvicorn's httptools protocol with the bounds a public server needs.

uvicorn's ``HttpToolsProtocol`` (checked against uvicorn 0.55) parses with httptools,
which has no header-size limit (uvicorn's applies to h11 only) and concatenates a header
value across reads, so one connection streaming an endless header took the whole loop
(issue 9 §5: 200 MB stalled every request for 43 s).  It also arms no timer until a
first response, so a connection that never completes a head stays forever (§7).  This
subclass adds, per connection:

- **a head-size bound**: the bytes received while a head is incomplete are counted as
  they arrive (one addition per read, not per header); past ``max_header_bytes`` the
  connection gets 431 and is closed, so no head costs more than the limit plus one read.
  The count can include body bytes that came in the same read as the head's end, so a
  head that completes over the count is measured from what was parsed before a 431.
- **a header timeout**: a connection must complete its first head within
  ``header_timeout_s`` of opening, and later heads within that time of their first
  partial read (a complete head in one read, the common case, arms no timer); past it
  408, or a plain close if nothing was sent.  Idle kept-alive connections keep uvicorn's
  keep-alive timer.
- **a body timeout**: a request body that has not all arrived must not go
  ``body_timeout_s`` without a byte (the clock restarts at each read, so a slow body
  that keeps coming is never cut, and it does not run while the server itself holds
  the reading back); past it 408 and close.  Without it a head announcing a body that
  never comes held its connection forever, past every other timer (adversarial
  re-test of issue 9, finding 5: 50 of them locked out every client).
- **a connection limit**: past ``max_connections`` open connections (WebSockets
  included), a new one is answered 503 at once and closed, so it holds its descriptor
  for one loop turn only.
- **one host per request**: an absolute-form target (``GET http://x/path``) names the
  request's host (RFC 9112 §3.2.2), and the worker's URL is built from the Host header;
  a target whose authority disagrees with Host is refused (400), so a proxy in front that
  routed on either value and the worker agree on the host.  An agreeing target is
  rewritten to its origin form (``/path?query``), which is all the app and the WebSocket
  handshake see.

- **streamed responses** (``asgi.streaming``): the ``objectd.abort`` scope extension
  ends a connection whose stream failed, without the closing chunk and without uvicorn
  logging it again; a graceful shutdown ends the streams in progress at once, as lost
  connections, instead of waiting its 30 s for responses that may never end.  The
  ``objectd.disconnected`` scope extension (an ``asyncio.Event``) is set once the
  connection is gone, so a stream sees its client leave even while ``receive()`` is
  kept for a request body nobody read.

Everything else is uvicorn's.  (The HTTP version is checked by the app, whose scope
already has it: here it would cost a second ``get_http_version`` per request.)  The
limits travel in :class:`ServerConfig`, which uvicorn hands to every protocol instance
(and pickles into ``objectd dev``'s worker).
"""

from __future__ import annotations

import asyncio
import logging
import time
from asyncio import TimerHandle
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from objectd.asgi import logs
from objectd.asgi.host import check_host
from objectd.asgi.limits import ByteBudget, FrontLimits
from objectd.asgi.streaming import ABORT_EXTENSION, DISCONNECTED_EXTENSION, STREAMING

__all__ = ["HttpProtocol", "ServerConfig"]

log = logging.getLogger("objectd")

# How often a flood of refused connections is logged at most.
_REFUSAL_LOG_INTERVAL_S = 10.0


class ServerConfig(uvicorn.Config):
    """uvicorn's configuration for objectd: :class:`HttpProtocol` with ``limits``, no
    ``server`` header, the keep-alive timeout of the limits, and objectd's log
    (:mod:`objectd.asgi.logs`) in every process that serves.  It also carries the
    budget the WebSocket connections of the serving process share for incoming messages
    (a fresh one in ``objectd dev``'s serving process, which unpickles its own copy)."""

    def __init__(
        self, app: Any, *, limits: FrontLimits, log_format: str = "text", **kwargs: Any
    ) -> None:
        self.log_format = log_format  # read by configure_logging(), called by __init__
        super().__init__(
            app,
            http=HttpProtocol,
            server_header=False,
            # Typed int by uvicorn, which only hands it to call_later: a float works.
            timeout_keep_alive=limits.keep_alive_timeout_s,  # type: ignore[arg-type]
            **kwargs,
        )
        self.limits = limits
        self.ws_receive_budget = ByteBudget(limits.ws_receive_buffer_bytes)

    def configure_logging(self) -> None:
        super().configure_logging()
        logs.configure(
            self.log_level or "info", access_log=self.access_log, log_format=self.log_format
        )


class _Refusal(Exception):
    """Raised from a parser callback: the head is refused with ``status``."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _RefusalLog:
    """Counts refused connections and logs them at most once per interval."""

    def __init__(self) -> None:
        self.count = 0
        self.logged_at = -_REFUSAL_LOG_INTERVAL_S

    def note(self, limit: int) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.logged_at >= _REFUSAL_LOG_INTERVAL_S:
            log.warning(
                "objectd: %d connection(s) refused with 503: %d are open, the limit "
                "(--max-connections)",
                self.count,
                limit,
            )
            self.count = 0
            self.logged_at = now


_refusals = _RefusalLog()

# The schemes of an absolute-form target the front serves, with their default ports.
_DEFAULT_PORTS = {b"http": b":80", b"https": b":443"}


def _authority(value: bytes, default_port: bytes) -> bytes:
    """A ``host[:port]`` as compared: lower case, without the scheme's default port."""
    value = value.lower()
    return value[: -len(default_port)] if value.endswith(default_port) else value


class HttpProtocol(HttpToolsProtocol):
    """One client connection (see the module docstring for what is added to uvicorn's)."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = config.limits if isinstance(config, ServerConfig) else FrontLimits()
        self._max_connections = limits.max_connections
        self._max_head = limits.max_header_bytes
        self._head_timeout = limits.header_timeout_s
        # Bytes received for the head being read; -1 while there is none (a body, or a
        # refused connection).  Reads after a head's end in the same read are not counted.
        self._head_bytes = 0
        self._head_timer: TimerHandle | None = None
        self._body_timeout = limits.body_timeout_s
        # While a request's body is being read: when its last bytes arrived (loop time).
        self._in_body = False
        self._body_at = 0.0
        self._body_timer: TimerHandle | None = None
        # Set once the connection is gone (lost, aborted, or cut by the body timeout):
        # the app sees it as the ``objectd.disconnected`` scope extension.
        self._gone = asyncio.Event()

    # -- connection ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        limit = self._max_connections
        if limit is not None and len(self.connections) >= limit:
            self.transport = transport  # uvicorn's connection_lost closes it
            self._head_bytes = -1
            _refusals.note(limit)
            transport.write(self._response(503, b"Service Unavailable", b"retry-after: 1\r\n"))
            transport.close()
            return
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self._head_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone.set()
        self._cancel_head_timer()
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's data_received, with the head count and the refusals of this class.
        self._unset_keepalive_if_required()
        if self._head_bytes >= 0:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _Refusal):  # raised by a callback of ours
                self._refuse(exc.__context__.status)
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        if self._head_bytes > 0:  # a head is incomplete after this read
            if self._head_bytes > self._max_head:
                self._refuse(431)
            elif self._head_timer is None:
                self._head_timer = self.loop.call_later(self._head_timeout, self._head_timed_out)
        elif self._in_body:  # a body is incomplete after this read
            self._body_at = self.loop.time()
            if self._body_timer is None:
                self._body_timer = self.loop.call_later(self._body_timeout, self._body_timed_out)

    # -- parser callbacks ----------------------------------------------------------------

    def on_headers_complete(self) -> None:
        if self._head_timer is not None:
            self._cancel_head_timer()
        if self._head_bytes > self._max_head and self._head_size() > self._max_head:
            raise _Refusal(431)
        self._head_bytes = -1
        if self.url[:1] != b"/":  # not origin-form: absolute-form, or "*" or an authority
            self._check_absolute_form()
        self._in_body = True  # until on_message_complete, in this read or a later one
        super().on_headers_complete()
        # A streamed response that fails must end its connection without the closing
        # chunk, and without uvicorn's second log of it (asgi.streaming).
        # Its end is also told through the connection, not receive(): receive() is the
        # request body's while a reader may still take it (asgi.request_body).
        cycle = self.cycle
        gone = self._gone
        extensions: dict[str, Any] = self.scope.setdefault("extensions", {})
        extensions[ABORT_EXTENSION] = lambda: _abort(cycle, gone)
        extensions[DISCONNECTED_EXTENSION] = gone

    def on_message_complete(self) -> None:
        self._head_bytes = 0  # the next bytes begin the next head
        self._in_body = False
        super().on_message_complete()

    def shutdown(self) -> None:
        """A graceful shutdown: a streamed response in progress is ended now, as a lost
        connection (``asgi.streaming``); anything else is left to finish, as uvicorn does."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and cycle.scope.get(STREAMING):
            _abort(cycle, self._gone)
            return
        super().shutdown()

    def _check_absolute_form(self) -> None:
        """An absolute-form target must name the host its Host header names (else 400); it
        is then rewritten to origin form.  Other forms are left to the app (a 400 there)."""
        url = self.url
        scheme, sep, rest = url.partition(b"://")
        scheme = scheme.lower()
        if not sep or scheme not in _DEFAULT_PORTS:
            return
        end = len(rest)
        for delimiter in b"/?#":
            found = rest.find(delimiter)
            if 0 <= found < end:
                end = found
        try:
            authority = check_host(rest[:end])  # no userinfo, a valid host[:port]
            parsed = httptools.parse_url(url)
        except (ValueError, httptools.HttpParserInvalidURLError):
            raise _Refusal(400) from None
        hosts = [value for name, value in self.headers if name == b"host"]
        default = _DEFAULT_PORTS[scheme]
        if not hosts:
            if self.parser.get_http_version() != "1.0":
                raise _Refusal(400)  # HTTP/1.1 requires Host (RFC 9112 §3.2)
            self.headers.append((b"host", authority.encode("ascii")))  # what it names
        elif len(hosts) == 1 and _authority(hosts[0], default) != _authority(
            authority.encode("ascii"), default
        ):
            raise _Refusal(400)
        target = parsed.path or b"/"
        if parsed.query is not None:
            target += b"?" + parsed.query
        self.url = target

    # -- refusals ------------------------------------------------------------------------

    def _head_size(self) -> int:
        """The head's size as parsed (request line and header lines, approximately)."""
        size = len(self.url) + 16
        for name, value in self.headers:
            size += len(name) + len(value) + 4
        return size

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self._head_bytes < 0:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head waits behind a response still being made: the wait is
            # the server's, not the client's.
            self._head_timer = self.loop.call_later(self._head_timeout, self._head_timed_out)
            return
        if self._head_bytes == 0:
            self.transport.close()  # nothing was sent: nothing to answer
        else:
            self._refuse(408)

    def _body_timed_out(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if not self._in_body or self.transport.is_closing() or cycle is None:
            return
        now = self.loop.time()
        if self.flow.read_paused or cycle.waiting_for_100_continue:
            # The server holds the body back (the app has not read what came, a pipelined
            # request waits, or "100 Continue" is not sent yet): the wait is not the client's.
            self._body_at = now
        idle = now - self._body_at
        if idle < self._body_timeout:
            self._body_timer = self.loop.call_later(self._body_timeout - idle, self._body_timed_out)
            return
        self._in_body = False
        if not cycle.response_started:
            self.transport.write(self._response(408, b"Request Timeout"))
        # As for a lost connection: the app's receive() says http.disconnect, its sends
        # are dropped.
        _abort(cycle, self._gone)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse(self, status: int) -> None:
        """Answer ``status`` and close; a response under way is not interleaved with it."""
        self._head_bytes = -1
        self._cancel_head_timer()
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            phrase = STATUS_LINE[status][13:-2]  # b"HTTP/1.1 431 " ... b"\r\n"
            self.transport.write(self._response(status, phrase))
        self.transport.close()

    def _response(self, status: int, body: bytes, extra: bytes = b"") -> bytes:
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: text/plain; charset=utf-8\r\n",
                b"content-length: %d\r\n" % len(body),
                b"connection: close\r\n",
                extra,
                b"\r\n",
                body,
            ]
        )
        return b"".join(content)


def _abort(cycle: Any, gone: asyncio.Event) -> None:
    """End ``cycle``'s connection now, as a lost one: its receive() says disconnect.

    ``gone`` is set at once: a client that does not read keeps the transport's buffer
    full, and its close (so ``connection_lost``) waits for that buffer to drain."""
    gone.set()
    cycle.disconnected = True
    cycle.message_event.set()
    cycle.transport.close()
