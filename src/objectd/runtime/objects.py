"""The base classes user code extends: :class:`DurableObject` and :class:`WorkerEntrypoint`.

Both keep Cloudflare's shape: the constructor takes ``(ctx, env)`` and stores them
as ``self.ctx`` and ``self.env``.  Handlers are found by either spelling
(``web_socket_message`` or ``webSocketMessage``); a class defining both spellings of
one handler is refused when the project loads.  The base classes define no other
public methods, so a subclass's RPC surface is exactly what it declares.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from objectd.errors import ConfigError

__all__ = [
    "HANDLERS",
    "DurableObject",
    "ExecutionContext",
    "WorkerEntrypoint",
    "check_handler_spellings",
    "find_handler",
]

log = logging.getLogger("objectd.runtime")

# snake_case name -> Cloudflare's camelCase name, for every handler the runtime calls.
HANDLERS: dict[str, str] = {
    "fetch": "fetch",
    "alarm": "alarm",
    "web_socket_message": "webSocketMessage",
    "web_socket_close": "webSocketClose",
    "web_socket_error": "webSocketError",
}


class DurableObject:
    """Base class of a Durable Object: ``self.ctx`` (its state) and ``self.env`` (bindings)."""

    ctx: Any
    env: Any

    def __init__(self, ctx: Any, env: Any) -> None:
        self.ctx = ctx
        self.env = env


class ExecutionContext:
    """``ctx`` of a worker entrypoint: background tasks for one request."""

    def __init__(self, wait_until: Callable[[Awaitable[Any]], None]) -> None:
        self._wait_until = wait_until

    def wait_until(self, awaitable: Awaitable[Any]) -> None:
        self._wait_until(awaitable)

    def pass_through_on_exception(self) -> None:
        """Accepted for compatibility; there is no origin to pass through to."""

    waitUntil = wait_until
    passThroughOnException = pass_through_on_exception


class WorkerEntrypoint:
    """Base class of the front worker (``class Default(WorkerEntrypoint)``)."""

    ctx: Any
    env: Any

    def __init__(self, ctx: Any, env: Any) -> None:
        self.ctx = ctx
        self.env = env


def _defined(cls: type, name: str) -> bool:
    """Whether ``name`` is defined by ``cls`` or a user base (not by our base classes).

    Bases listed after ours (``class X(DurableObject, Mixin)``) count: their handlers are
    the class's handlers, as attribute lookup finds them.
    """
    for klass in cls.__mro__:
        if klass in (DurableObject, WorkerEntrypoint, object):
            continue
        if name in klass.__dict__:
            return True
    return False


def check_handler_spellings(cls: type) -> None:
    """Refuse a class that defines both spellings of one handler."""
    for snake, camel in HANDLERS.items():
        if snake != camel and _defined(cls, snake) and _defined(cls, camel):
            raise ConfigError(
                f"class {cls.__name__} defines both {snake}() and {camel}(); "
                "define the handler once, in either spelling"
            )


# (class, handler) -> the spelling the class defines, or None; classes are not edited
# while they serve (a reload in ``objectd dev`` brings new class objects).
_handler_names: dict[tuple[type, str], str | None] = {}


def find_handler(instance: object, snake: str) -> Callable[..., Any] | None:
    """The bound handler ``snake`` (or its camelCase spelling), or None."""
    cls = type(instance)
    try:
        name = _handler_names[cls, snake]
    except KeyError:
        name = next((n for n in (snake, HANDLERS[snake]) if _defined(cls, n)), None)
        _handler_names[cls, snake] = name
    if name is None:
        return None
    handler: Callable[..., Any] = getattr(instance, name)
    return handler
