"""What a WebSocket delivers: its ready states, its three events and their listeners (spec §8).

Listeners of the standard API receive these events; the hibernation handlers receive
their fields as arguments (``web_socket_close(ws, code, reason, was_clean)``).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from objectd.runtime.exits import describe, from_signal, stray_cancel_error
from objectd.runtime.watchdog import CPU_LIMIT_MESSAGE, CpuLimitExceeded

__all__ = [
    "LOST_REASON",
    "OVERFLOW_CODE",
    "OVERFLOW_REASON",
    "CloseEvent",
    "ErrorEvent",
    "Event",
    "EventTarget",
    "Listener",
    "MessageEvent",
    "ReadyState",
]

log = logging.getLogger("objectd.runtime")

# The close event of a connection that ended without a Close frame (code 1006).
LOST_REASON = "WebSocket disconnected without sending Close frame."
# A peer whose send buffer is full (objectd.asgi.websocket) is closed with this code and
# reason, and its object sees this close, ``was_clean`` false.  1008, policy violation:
# the peer broke the server's rule of reading what it is sent.  (1013, try again later,
# would blame the server, and invite every slow client to reconnect into the same state.)
OVERFLOW_CODE = 1008
OVERFLOW_REASON = "WebSocket send buffer full: the peer is not reading."


class ReadyState(enum.IntEnum):
    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


@dataclass(frozen=True, slots=True)
class MessageEvent:
    """A message: ``data`` is ``str`` for a text frame, ``bytes`` for a binary one."""

    data: str | bytes
    type: str = "message"


@dataclass(frozen=True, slots=True)
class CloseEvent:
    code: int
    reason: str
    was_clean: bool
    type: str = "close"

    @property
    def wasClean(self) -> bool:
        return self.was_clean


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    error: BaseException
    type: str = "error"

    @property
    def message(self) -> str:
        return str(self.error)


Event: TypeAlias = MessageEvent | CloseEvent | ErrorEvent
Listener: TypeAlias = Callable[[Any], Any]


class EventTarget:
    """Listeners (``add_event_listener``) and the message queue behind ``async for``."""

    __slots__ = ("_listeners", "_messages", "_reader", "_tasks")

    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] | None = None
        self._messages: deque[str | bytes] | None = None
        self._reader: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[Any]] | None = None  # listener calls outside objects

    def add_event_listener(self, type: str, listener: Listener) -> None:
        """Call ``listener(event)`` for each ``"message"``, ``"close"`` or ``"error"`` event."""
        if self._listeners is None:
            self._listeners = {}
        self._listeners.setdefault(type, []).append(listener)

    def remove_event_listener(self, type: str, listener: Listener) -> None:
        if self._listeners and listener in self._listeners.get(type, ()):
            self._listeners[type].remove(listener)

    def _listening(self, type: str) -> bool:
        return bool(self._listeners and self._listeners.get(type))

    def _ended(self) -> bool:
        raise NotImplementedError

    def _abandon(self) -> None:
        """The code listening was stopped: drop the connection (as a reset does)."""
        raise NotImplementedError

    def _keep(self, data: str | bytes) -> None:
        if self._messages is None:
            self._messages = deque()
        self._messages.append(data)
        self._wake_reader()

    def _wake_reader(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)

    async def _iterate(self) -> AsyncIterator[str | bytes]:
        if self._messages is None:
            self._messages = deque()
        while True:
            while not self._messages:
                if self._ended():
                    return
                self._reader = asyncio.get_running_loop().create_future()
                try:
                    await self._reader
                finally:
                    self._reader = None
            yield self._messages.popleft()

    def _fire_soon(self, event: Event) -> asyncio.Task[None]:
        """Call the listeners in a task this target owns (outside any object)."""
        task = asyncio.get_running_loop().create_task(self._fire_outside(event))
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _fire_outside(self, event: Event) -> None:
        # Inside an object a listener's SystemExit or CPU limit resets the object
        # (runtime.host); outside one there is nothing to reset, and it must not end the
        # server.  The CPU limit disconnects the socket, as a reset does: every message
        # would run the stuck listener again, and freeze every object meanwhile.
        try:
            await self._fire(event)
        except CpuLimitExceeded:
            log.error("a WebSocket %r listener was stopped: %s", event.type, CPU_LIMIT_MESSAGE)
            self._abandon()
        except (SystemExit, KeyboardInterrupt) as exc:
            if from_signal(exc):
                raise
            log.error("a WebSocket %r listener raised %s", event.type, describe(exc), exc_info=exc)

    async def _fire(self, event: Event) -> None:
        for listener in list(self._listeners.get(event.type, ()) if self._listeners else ()):
            try:
                result = listener(event)
                if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                    await result
            except Exception:
                log.exception("a WebSocket %r listener failed", event.type)
            except asyncio.CancelledError as exc:
                failure = stray_cancel_error(exc)
                if failure is None:
                    raise
                log.error("a WebSocket %r listener failed: %s", event.type, failure, exc_info=exc)

    addEventListener = add_event_listener
    removeEventListener = remove_event_listener
