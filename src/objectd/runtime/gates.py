"""The input gate of one object (workerd's ``InputGate``, spec §6).

Storage calls never suspend (SQLite is synchronous underneath), so "no other event
while a storage call is pending" holds by construction.  What the gate adds:

* **Arrival order.** Events enter the object in the order they were submitted.
  Entering is synchronous when nobody waits, so the common path costs no
  suspension; otherwise waiters are released one at a time, each re-checking the
  gate, which keeps FIFO order even when a released event immediately opens a
  critical section.
* **Critical sections.** ``block_concurrency_while`` and ``transaction`` lock the
  gate: no new event enters until every lock is released.  Events already inside
  that come back from objectd's own awaitables (stub calls, outbound fetch) also
  wait, via :meth:`wait_open`, unless they run inside the critical section itself.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque

__all__ = ["InputGate", "in_critical_section"]

# Set inside a critical section's task, so I/O it starts is not held back by its own lock.
in_critical_section: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "objectd_in_critical_section", default=False
)


class InputGate:
    def __init__(self) -> None:
        self._locks = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        # Waiters released but not yet running: a newcomer must not overtake them.
        self._handoff = 0
        self._open_waiters: list[asyncio.Future[None]] = []

    @property
    def locked(self) -> bool:
        return self._locks > 0

    @property
    def queued(self) -> int:
        return len(self._waiters)

    async def enter(self) -> None:
        """Wait for this event's turn; returns at once when the gate is free."""
        if self._locks == 0 and not self._waiters and not self._handoff:
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters.append(fut)
        while True:
            try:
                await fut
            except asyncio.CancelledError:
                if fut in self._waiters:
                    self._waiters.remove(fut)
                else:
                    self._handoff -= 1
                    self._release_next()  # we were woken: pass the turn on
                raise
            self._handoff -= 1
            if self._locks == 0:
                break
            # A critical section began between our wake-up and now: keep our place.
            fut = loop.create_future()
            self._waiters.appendleft(fut)
        self._release_next()

    async def wait_open(self) -> None:
        """For events already inside: wait while a critical section (not ours) runs."""
        if self._locks == 0 or in_critical_section.get():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._open_waiters.append(fut)
        await fut

    def lock(self) -> None:
        self._locks += 1

    def unlock(self) -> None:
        self._locks -= 1
        if self._locks == 0:
            waiters, self._open_waiters = self._open_waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)
            self._release_next()

    def _release_next(self) -> None:
        while self._locks == 0 and self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                self._handoff += 1
                fut.set_result(None)
                return
