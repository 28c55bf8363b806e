"""Hibernatable WebSockets: the per-object socket manager and ``ctx``'s socket methods (spec §8).

The :class:`SocketManager` is ``host.websockets``: it lives on the object's host, not
on the instance, so an object whose only activity is hibernatable sockets can be
evicted while its sockets, their tags and attachments, and the auto-response stay.
Every event on such a socket (message, close, error) is submitted to the host as
one event: the next one after an eviction constructs the instance again, then the
handler (``web_socket_message`` / ``webSocketMessage`` ...) runs.  A missing handler
drops the event; an exception in a handler is logged and the socket stays open.
A text message equal to the auto-response request is answered here, without an
event and without constructing the instance.

Sockets accepted with the standard API inside an object are *pinned* here too: an
object holding one is never evicted.  When the object is reset, every socket it
holds is disconnected.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from objectd.errors import (
    DurableObjectError,
    DurableObjectRangeError,
    DurableObjectTypeError,
    ObjectResetError,
    OverloadedError,
)
from objectd.runtime.exits import stray_cancel_error
from objectd.runtime.metrics import ResetCause
from objectd.runtime.objects import find_handler

if TYPE_CHECKING:
    from objectd.runtime.host import ObjectHost
    from objectd.runtime.socket_events import Event
    from objectd.runtime.websockets import WebSocket

__all__ = ["SocketManager", "WebSocketContext", "WebSocketRequestResponsePair", "manager_of"]

log = logging.getLogger("objectd.runtime")

MAX_SOCKETS = 32_768
MAX_TAGS = 10
MAX_TAG_LENGTH = 256
MAX_AUTO_RESPONSE_BYTES = 2_048
MAX_EVENT_TIMEOUT_MS = 604_800_000
EVENT_TIMEOUT_MESSAGE = "Actor exceeded event execution time and was disconnected."


class WebSocketRequestResponsePair:
    """``WebSocketRequestResponsePair(request, response)`` for ``set_web_socket_auto_response``."""

    __slots__ = ("_request", "_response")

    def __init__(self, request: str, response: str) -> None:
        for name, value in (("request", request), ("response", response)):
            if not isinstance(value, str):
                raise DurableObjectTypeError(
                    f"WebSocketRequestResponsePair: {name} must be a str, "
                    f"got {type(value).__name__}"
                )
        self._request = request
        self._response = response

    @property
    def request(self) -> str:
        return self._request

    @property
    def response(self) -> str:
        return self._response

    def __repr__(self) -> str:
        return f"WebSocketRequestResponsePair({self._request!r}, {self._response!r})"


class SocketManager:
    """The sockets of one object, kept on its host across evictions."""

    def __init__(self, host: ObjectHost) -> None:
        self._host = host
        self._sockets: dict[WebSocket, None] = {}  # hibernatable, in accept order
        self._by_tag: dict[str, dict[WebSocket, None]] = {}
        self._pinned: set[WebSocket] = set()  # standard-API sockets: no eviction
        self.auto_response: tuple[str, str] | None = None
        self.event_timeout_ms: int | None = None

    # -- what the host asks --------------------------------------------------------------

    def allows_eviction(self) -> bool:
        return not self._pinned

    def holds_sockets(self) -> bool:
        return bool(self._sockets)

    @property
    def hibernatable_count(self) -> int:
        """Hibernatable sockets open on the object (what it keeps across an eviction)."""
        return len(self._sockets)

    def reset(self, error: BaseException) -> None:
        """The object was reset: every socket it holds is disconnected (spec §8)."""
        sockets = [*self._sockets, *self._pinned]
        self._sockets.clear()
        self._by_tag.clear()
        self._pinned.clear()
        self.auto_response = None
        self.event_timeout_ms = None
        if sockets:
            log.warning(
                "object %s: %d WebSocket(s) disconnected by the reset",
                self._host.id,
                len(sockets),
                extra=self._host.about,
            )
        for ws in sockets:
            ws._disconnect()

    # -- registration --------------------------------------------------------------------

    def accept(self, ws: WebSocket, tags: Iterable[str] | None) -> None:
        ws._check_hibernatable()
        unique = _check_tags(tags)
        if len(self._sockets) >= MAX_SOCKETS:
            raise DurableObjectError(
                f"only {MAX_SOCKETS} websockets can be accepted on a single Durable Object instance"
            )
        self._sockets[ws] = None
        for tag in unique:
            self._by_tag.setdefault(tag, {})[ws] = None
        ws._hibernate(self, unique)

    def forget(self, ws: WebSocket) -> None:
        """A hibernatable socket closed: it leaves ``get_web_sockets()`` (before its event)."""
        self._sockets.pop(ws, None)
        for tag in ws._tags:
            bucket = self._by_tag.get(tag)
            if bucket is not None:
                bucket.pop(ws, None)
                if not bucket:
                    del self._by_tag[tag]

    def pin(self, ws: WebSocket) -> None:
        self._pinned.add(ws)

    def unpin(self, ws: WebSocket) -> None:
        self._pinned.discard(ws)

    def sockets(self, tag: str | None = None) -> list[WebSocket]:
        """Live hibernatable sockets: newest first, or in accept order for one tag (as workerd)."""
        if tag is None:
            return list(reversed(self._sockets))
        if not isinstance(tag, str):
            return []
        return list(self._by_tag.get(tag, ()))

    # -- events --------------------------------------------------------------------------

    def deliver(self, ws: WebSocket, event: Event) -> asyncio.Task[Any] | None:
        """Turn a socket event into an object event (or answer it with the auto-response)."""
        from objectd.runtime.socket_events import CloseEvent, MessageEvent

        args: tuple[Any, ...]
        if isinstance(event, MessageEvent):
            pair = self.auto_response
            if pair is not None and isinstance(event.data, str) and event.data == pair[0]:
                ws._auto_response_at = datetime.fromtimestamp(self._host.clock.now(), UTC)
                ws._answer(pair[1])
                return None
            name, args = "web_socket_message", (ws, event.data)
        elif isinstance(event, CloseEvent):
            name, args = "web_socket_close", (ws, event.code, event.reason, event.was_clean)
        else:
            name, args = "web_socket_error", (ws, event.error)
        try:
            task = self._host.submit(functools.partial(self._run, name, args))
        except OverloadedError as exc:
            log.warning(
                "object %s: WebSocket %s dropped: %s",
                self._host.id,
                name,
                exc,
                extra=self._host.about,
            )
            return None
        task.add_done_callback(functools.partial(_report, self._host.id, name))
        return task

    async def _run(self, name: str, args: tuple[Any, ...], instance: Any) -> None:
        handler = find_handler(instance, name)
        if handler is None:
            return  # spec §3: an event without its handler is dropped silently
        timeout_ms = self.event_timeout_ms
        deadline = self._host.clock.timeout(timeout_ms / 1000 if timeout_ms else None)
        try:
            async with deadline:
                result = _call_relaxed(handler, args)
                if inspect.isawaitable(result):
                    await result
        except TimeoutError:
            if not deadline.expired():
                log.exception("object %s: %s() failed", self._host.id, name, extra=self._host.about)
                return
            error = ObjectResetError(EVENT_TIMEOUT_MESSAGE)
            self._host.reset(error, cause=ResetCause.EVENT_TIMEOUT)
            raise error from None
        except Exception:
            log.exception("object %s: %s() failed", self._host.id, name, extra=self._host.about)
        except asyncio.CancelledError as exc:
            failure = stray_cancel_error(exc)
            if failure is None:
                raise  # a reset or shutdown
            log.error(
                "object %s: %s() failed: %s",
                self._host.id,
                name,
                failure,
                exc_info=exc,
                extra=self._host.about,
            )


def manager_of(host: ObjectHost) -> SocketManager:
    """``host.websockets``, created on first use."""
    manager = host.websockets
    if manager is None:
        manager = host.websockets = SocketManager(host)
    assert isinstance(manager, SocketManager)
    return manager


def _report(object_id: object, name: str, task: asyncio.Task[Any]) -> None:
    """Nobody awaits a socket event: log a failure the handler's own logging did not see.

    A handler's exceptions are logged in ``_run`` and resets by the host; what remains
    failed before the handler ran (the file could not be opened, the constructor
    raised, the object was overloaded or reset meanwhile).  None is dropped unlogged.
    """
    if task.cancelled():
        return
    error = task.exception()
    if error is not None and not isinstance(error, ObjectResetError):
        log.warning("object %s: the WebSocket %s() event failed: %r", object_id, name, error)


def _check_tags(tags: Iterable[str] | None) -> tuple[str, ...]:
    if tags is None:
        return ()
    if isinstance(tags, str | bytes) or not isinstance(tags, Iterable):
        raise DurableObjectTypeError(
            f"acceptWebSocket() tags must be a list of str, got {type(tags).__name__}"
        )
    unique = tuple(dict.fromkeys(tags))
    for tag in unique:
        if not isinstance(tag, str):
            raise DurableObjectTypeError(
                f"acceptWebSocket() tags must be str, got {type(tag).__name__}: {tag!r}"
            )
    if len(unique) > MAX_TAGS:
        raise DurableObjectError(f"a Hibernatable WebSocket cannot have more than {MAX_TAGS} tags")
    for tag in unique:
        if len(tag) > MAX_TAG_LENGTH:
            raise DurableObjectError(
                f'"{tag}" is longer than the max tag length ({MAX_TAG_LENGTH} characters).'
            )
    return unique


@functools.lru_cache(maxsize=512)
def _positional(function: Callable[..., Any]) -> int | None:
    """How many positional arguments ``function`` takes; None when it takes ``*args``."""
    count = 0
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            return None
        if parameter.kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            count += 1
    return count


def _call_relaxed(handler: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """Call as Python Workers does: extra positional arguments are dropped (spec §14)."""
    function = getattr(handler, "__func__", None)
    if function is not None:
        count = _positional(function)
        count = None if count is None else count - 1  # self
    else:
        count = _positional(handler)
    return handler(*args) if count is None else handler(*args[:count])


def _socket(ws: object, method: str) -> WebSocket:
    from objectd.runtime.websockets import WebSocket

    if not isinstance(ws, WebSocket):
        raise DurableObjectTypeError(
            f"Failed to execute '{method}' on 'DurableObjectState': parameter 1 is not of "
            f"type 'WebSocket' (got {type(ws).__name__})."
        )
    return ws


class WebSocketContext:
    """The WebSocket methods of ``ctx`` (``DurableObjectState``), spec §4."""

    _host: ObjectHost

    def accept_web_socket(self, ws: WebSocket, tags: Iterable[str] | None = None) -> None:
        """Accept ``ws`` as hibernatable: its events go to the ``web_socket_*`` handlers."""
        manager_of(self._host).accept(_socket(ws, "acceptWebSocket"), tags)

    def get_web_sockets(self, tag: str | None = None) -> list[WebSocket]:
        """Accepted sockets not yet closed; with ``tag``, only those carrying it."""
        manager = self._host.websockets
        return [] if manager is None else manager.sockets(tag)

    def get_tags(self, ws: WebSocket) -> list[str]:
        return _socket(ws, "getTags")._get_tags()

    def set_web_socket_auto_response(
        self, pair: WebSocketRequestResponsePair | None = None
    ) -> None:
        """Answer ``pair.request`` with ``pair.response`` without waking the object; None clears."""
        if pair is None:
            if self._host.websockets is not None:
                self._host.websockets.auto_response = None
            return
        if not isinstance(pair, WebSocketRequestResponsePair):
            raise DurableObjectTypeError(
                "Failed to execute 'setWebSocketAutoResponse' on 'DurableObjectState': "
                "parameter 1 is not of type 'WebSocketRequestResponsePair'."
            )
        for kind, text in (("request", pair.request), ("response", pair.response)):
            size = len(text.encode("utf-8"))
            if size > MAX_AUTO_RESPONSE_BYTES:
                raise DurableObjectRangeError(
                    f"{kind.capitalize()} cannot be larger than {MAX_AUTO_RESPONSE_BYTES} bytes. "
                    f"A {kind} of size {size} was provided."
                )
        manager_of(self._host).auto_response = (pair.request, pair.response)

    def get_web_socket_auto_response(self) -> WebSocketRequestResponsePair | None:
        manager = self._host.websockets
        if manager is None or manager.auto_response is None:
            return None
        return WebSocketRequestResponsePair(*manager.auto_response)

    def get_web_socket_auto_response_timestamp(self, ws: WebSocket) -> datetime | None:
        """When ``ws`` last received the auto-response request (UTC), or None."""
        return _socket(ws, "getWebSocketAutoResponseTimestamp")._auto_response_at

    def set_hibernatable_web_socket_event_timeout(self, timeout_ms: float | None = None) -> None:
        """Limit each hibernatable event handler's run time; None or 0 removes the limit."""
        if timeout_ms is None:
            value = 0
        elif isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int | float):
            raise DurableObjectTypeError(
                f"the event timeout must be a number of milliseconds, got {timeout_ms!r}"
            )
        elif timeout_ms < 0:
            raise DurableObjectTypeError(
                "The value cannot be converted because it is negative and this API expects a "
                "positive number."
            )
        else:
            value = int(timeout_ms)
        if value > MAX_EVENT_TIMEOUT_MS:
            raise DurableObjectError(f"Event timeout should not exceed {MAX_EVENT_TIMEOUT_MS} ms.")
        manager_of(self._host).event_timeout_ms = value or None

    def get_hibernatable_web_socket_event_timeout(self) -> int | None:
        manager = self._host.websockets
        return None if manager is None else manager.event_timeout_ms

    acceptWebSocket = accept_web_socket
    getWebSockets = get_web_sockets
    getTags = get_tags
    setWebSocketAutoResponse = set_web_socket_auto_response
    getWebSocketAutoResponse = get_web_socket_auto_response
    getWebSocketAutoResponseTimestamp = get_web_socket_auto_response_timestamp
    setHibernatableWebSocketEventTimeout = set_hibernatable_web_socket_event_timeout
    getHibernatableWebSocketEventTimeout = get_hibernatable_web_socket_event_timeout
