"""Time, injected: alarms, eviction and timeouts read it, so tests never sleep.

:class:`SystemClock` is the real one.  :class:`FakeClock` moves only when a test
calls :meth:`FakeClock.advance`, which wakes every sleeper whose deadline passed,
in deadline order.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (alarm times are epoch milliseconds)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (idle times, timeouts)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of this clock's time."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that stands still until :meth:`advance` moves it."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._mono = 1000.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono + seconds, next(self._order), fut))
        await fut

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking sleepers as their deadlines pass, and let them run."""
        target = self._mono + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            self._now += deadline - self._mono
            self._mono = deadline
            if not fut.done():
                fut.set_result(None)
            await _settle()
        self._now += target - self._mono
        self._mono = target
        await _settle()

    @property
    def sleepers(self) -> int:
        return sum(1 for *_, fut in self._sleepers if not fut.done())


async def _settle() -> None:
    """Let woken tasks run until they block again."""
    for _ in range(20):
        await asyncio.sleep(0)
