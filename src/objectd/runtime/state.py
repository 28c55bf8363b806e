"""``ctx``: the :class:`DurableObjectState` handed to an object's constructor (spec §4)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from objectd.errors import (
    DurableObjectAbort,
    DurableObjectTypeError,
    ObjectResetError,
    StorageError,
)
from objectd.runtime.hibernation import WebSocketContext
from objectd.runtime.metrics import ResetCause

if TYPE_CHECKING:
    import asyncio

    from objectd.ids import DurableObjectId
    from objectd.runtime.host import ObjectHost
    from objectd.runtime.storage_api import DurableObjectStorage

__all__ = ["DurableObjectState"]


class DurableObjectState(WebSocketContext):
    """The object's id, its storage, and control over its concurrency and lifetime.

    The WebSocket methods (``accept_web_socket``, ``get_web_sockets`` ...) come from
    :class:`~objectd.runtime.hibernation.WebSocketContext`.
    """

    def __init__(self, host: ObjectHost) -> None:
        self._host = host

    @property
    def id(self) -> DurableObjectId:
        return self._host.id

    @property
    def storage(self) -> DurableObjectStorage:
        storage = self._host.storage
        if storage is None:
            raise StorageError("Durable Object storage is no longer accessible.")
        return storage

    def block_concurrency_while(self, callback: Callable[[], Any]) -> asyncio.Task[Any]:
        """Hold every other event back until ``callback`` (sync or async) finishes.

        Returns a task with the callback's result.  Callable from the constructor
        without awaiting (the usual way to load state).  If the callback raises or runs
        past 30 s the object is reset.
        """
        return self._host.block_concurrency_while(callback)

    def wait_until(self, awaitable: Awaitable[Any]) -> None:
        """Keep ``awaitable`` running in the background; the object owns it."""
        self._host.wait_until(awaitable)

    def abort(
        self,
        reason: str | None = None,
        options: Mapping[str, Any] | None = None,
        /,
        *,
        retry_alarm: bool = True,
    ) -> NoReturn:
        """Reset the object now: uncommitted writes are discarded, the caller gets ``reason``.

        An ``alarm()`` running on the object fails and is retried, unless
        ``retry_alarm=False`` (or Cloudflare's ``{"retryAlarm": False}``; checklist 45).
        """
        if options is not None:
            retry_alarm = _retry_alarm_option(options, retry_alarm)
        if not retry_alarm and self._host.current_alarm is not None:
            self._host.current_alarm.retry = False  # read by runtime.alarms when it fails
        abort = DurableObjectAbort(reason)
        self._host.reset(ObjectResetError(abort.reason), cause=ResetCause.ABORT)
        raise abort

    blockConcurrencyWhile = block_concurrency_while
    waitUntil = wait_until


def _retry_alarm_option(options: object, default: bool) -> bool:
    """``abort()``'s options dict: only ``retryAlarm`` (or ``retry_alarm``) is known."""
    if not isinstance(options, Mapping):
        raise DurableObjectTypeError(
            f"abort() options must be a dict, got {type(options).__name__}: {options!r}"
        )
    unknown = set(options) - {"retryAlarm", "retry_alarm"}
    if unknown:
        raise DurableObjectTypeError(
            f"abort() got unknown option(s) {sorted(unknown)}; allowed: retryAlarm"
        )
    value = options.get("retryAlarm", options.get("retry_alarm", default))
    return bool(value)
