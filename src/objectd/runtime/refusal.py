"""A refused async call: the awaitable that raises the call's error when awaited (issue 10 §2).

In workerd a promise-returning API never throws synchronously: a bad argument gives a
rejected promise (the ``capture_async_api_throws`` behaviour).  objectd's async APIs
(storage KV and alarm methods, ``stub.fetch()``, stub RPC) check their arguments when
called, as before, but hand a refusal back as :class:`Refused` instead of raising it, so
``asyncio.gather(stub.a(bad), stub.b())`` still delivers ``b`` and a bad
``storage.put()`` left unawaited does not stop the code after it.  A refused call
writes and sends nothing: every check runs before the first write or delivery.

Only objectd's own errors (the ``DurableObjectError`` tree) are refused this way; the
CPU limit (``CpuLimitExceeded``, a BaseException) still stops a stuck handler at the
call itself, where nothing is half-done.

Good calls never pass through here (their awaitables are built as before), so the
refusal costs nothing on the hot path.

A refusal nobody awaits is logged once, as a warning, when it is dropped: the
counterpart of workerd's "Uncaught (in promise)" line for an unhandled rejection.
Nothing else is reported (no asyncio "never retrieved" noise: no future or task exists).
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any, Generic, TypeVar

__all__ = ["Refused"]

T = TypeVar("T")
log = logging.getLogger("objectd.runtime")


class Refused(Generic[T]):
    """An awaitable that raises ``error`` each time it is awaited; it never suspends.

    ``T`` is what the call would have returned, so a refusal stands in for its result
    type (``Refused[None]`` for ``put()``).
    """

    __slots__ = ("_awaited", "_error", "_trace", "_what")

    def __init__(self, error: BaseException, what: str) -> None:
        self._error = error
        self._trace = error.__traceback__  # where the check failed, kept for every await
        self._what = what  # the call, for the log line: "storage.put()"
        self._awaited = False

    @property
    def error(self) -> BaseException:
        return self._error

    def __await__(self) -> Generator[Any, None, T]:
        self._awaited = True
        raise self._error.with_traceback(self._trace)
        yield  # a generator that raises at once

    def __del__(self) -> None:
        if not self._awaited:  # logging reports its own failures; it never raises here
            log.warning(
                "objectd: %s was refused and never awaited: %s: %s",
                self._what,
                type(self._error).__name__,
                self._error,
            )

    def __repr__(self) -> str:
        return f"<Refused {self._what}: {type(self._error).__name__}>"
