"""``ctx``: the :class:`DurableObjectState` handed to an object's constructor (spec §4)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn

from objectd.errors import DurableObjectAbort, ObjectResetError, StorageError

if TYPE_CHECKING:
    import asyncio

    from objectd.ids import DurableObjectId
    from objectd.runtime.host import ObjectHost
    from objectd.runtime.storage_api import DurableObjectStorage

__all__ = ["DurableObjectState"]


class DurableObjectState:
    """The object's id, its storage, and control over its concurrency and lifetime."""

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

    def abort(self, reason: str | None = None) -> NoReturn:
        """Reset the object now: uncommitted writes are discarded, the caller gets ``reason``."""
        abort = DurableObjectAbort(reason)
        self._host.reset(ObjectResetError(abort.reason))
        raise abort

    blockConcurrencyWhile = block_concurrency_while
    waitUntil = wait_until
