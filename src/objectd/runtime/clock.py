"""Time, injected: alarms, eviction and every runtime timeout read it, so tests never sleep.

The runtime asks a clock for four things: the time (:meth:`Clock.now`, epoch seconds,
and :meth:`Clock.monotonic`), a sleep, a timer (:meth:`Clock.call_later`: the output
gate's limit on one commit) and a deadline around a block (:meth:`Clock.timeout`: an
output-gate wait, ``block_concurrency_while``, one ``alarm()`` run, one hibernatable
WebSocket event).  The CPU limit is not here: it is CPU time, measured by the watchdog.

:class:`SystemClock` is the real one and hands each request to asyncio unchanged.
:class:`FakeClock` moves only when a test calls :meth:`FakeClock.advance`, which runs
every sleeper, timer and deadline whose time came, in deadline order.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Protocol

__all__ = ["Clock", "FakeClock", "SystemClock", "Timeout", "Timer", "settle_turns"]


class Timer(Protocol):
    """A callback scheduled by :meth:`Clock.call_later` (an ``asyncio.TimerHandle``)."""

    def cancel(self) -> None: ...


class Timeout(Protocol):
    """A deadline around a block, as ``asyncio.timeout()`` gives: past it, the block is
    cancelled and ``TimeoutError`` raised; :meth:`expired` says whether that happened."""

    async def __aenter__(self) -> Any: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None: ...

    def expired(self) -> bool: ...


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

    def call_later(self, seconds: float, callback: Callable[..., object], *args: Any) -> Timer:
        """Call ``callback(*args)`` on the running loop after ``seconds`` of this clock."""
        ...

    def timeout(self, seconds: float | None) -> Timeout:
        """A deadline ``seconds`` of this clock from entering the block (None: none)."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def call_later(self, seconds: float, callback: Callable[..., object], *args: Any) -> Timer:
        return asyncio.get_running_loop().call_later(seconds, callback, *args)

    def timeout(self, seconds: float | None) -> Timeout:
        return asyncio.timeout(seconds)


class FakeClock:
    """A clock that stands still until :meth:`advance` moves it.

    Sleepers, timers and deadlines share one heap of timers ordered by due time (then
    by the order they were made).  A cancelled timer stays in the heap until it
    surfaces, or until cancelled ones are more than half of it: then the heap is
    rebuilt, so a test that never advances (every commit makes and cancels a timer)
    keeps it bounded.
    """

    def __init__(
        self,
        start: float = 1_800_000_000.0,
        *,
        settle: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        # After each timer runs, advance() awaits ``settle()`` before it moves on: by
        # default twenty loop turns; the pytest kit also waits for storage I/O there.
        self.settle = settle or settle_turns
        self._now = start
        self._mono = 1000.0
        self._timers: list[tuple[float, int, _FakeTimer]] = []
        self._order = itertools.count()
        self._cancelled = 0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        timer = self.call_later(seconds, _wake, fut)
        try:
            await fut
        finally:
            timer.cancel()  # a sleeper cancelled before its time leaves no live timer

    def call_later(self, seconds: float, callback: Callable[..., object], *args: Any) -> Timer:
        # One per commit on the hot path (the output gate's timer): kept to few calls.
        timer = _FakeTimer(self, callback, args)
        when = self._mono + seconds if seconds > 0 else self._mono
        heapq.heappush(self._timers, (when, next(self._order), timer))
        return timer

    def timeout(self, seconds: float | None) -> Timeout:
        return _FakeTimeout(self, seconds)

    def _compact(self) -> None:
        self._timers = [item for item in self._timers if not item[2].cancelled]
        heapq.heapify(self._timers)
        self._cancelled = 0

    @property
    def next_deadline(self) -> float | None:
        """The monotonic time of the next live timer, or None."""
        timers = self._timers
        while timers and timers[0][2].cancelled:
            heapq.heappop(timers)
            self._cancelled -= 1
        return timers[0][0] if timers else None

    async def advance(self, seconds: float) -> None:
        """Move time forward, running timers as their deadlines pass, and let them run.

        What is ready to run first runs at the current time (an event just submitted
        starts its timeouts now, not after the jump).
        """
        if not math.isfinite(seconds) or seconds < 0:  # NaN would stop it, inf never returns
            raise ValueError(
                "a clock only moves forward, by a finite number of seconds; "
                f"advance() got {seconds!r}"
            )
        await self.settle()
        target = self._mono + seconds
        while (deadline := self.next_deadline) is not None and deadline <= target:
            _, _, timer = heapq.heappop(self._timers)
            self._now += deadline - self._mono
            self._mono = deadline
            timer.fire()
            await self.settle()
        self._now += target - self._mono
        self._mono = target
        await self.settle()

    @property
    def sleepers(self) -> int:
        """Live timers: sleepers, timers and deadlines not yet due."""
        return sum(1 for *_, timer in self._timers if not timer.cancelled)


class _FakeTimer:
    __slots__ = ("_args", "_callback", "_clock", "cancelled")

    def __init__(self, clock: FakeClock, callback: Callable[..., object], args: Any) -> None:
        self._clock = clock
        self._callback = callback
        self._args = args
        self.cancelled = False

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            clock = self._clock
            clock._cancelled += 1
            if clock._cancelled > 64 and clock._cancelled * 2 > len(clock._timers):
                clock._compact()

    def fire(self) -> None:
        """Run the callback (popped from the heap, so it no longer counts as cancelled)."""
        if not self.cancelled:
            self.cancelled = True
            self._callback(*self._args)


class _FakeTimeout:
    """``asyncio.timeout()`` on a fake clock: an asyncio deadline with no time of its own,
    moved to "now" when the fake clock's timer for it fires."""

    __slots__ = ("_clock", "_inner", "_seconds", "_timer")

    def __init__(self, clock: FakeClock, seconds: float | None) -> None:
        self._clock = clock
        self._seconds = seconds
        self._inner = asyncio.timeout(None)
        self._timer: Timer | None = None

    async def __aenter__(self) -> _FakeTimeout:
        await self._inner.__aenter__()
        if self._seconds is not None:
            self._timer = self._clock.call_later(self._seconds, self._expire)
        return self

    def _expire(self) -> None:
        # A deadline at or before the loop's time cancels the block on the next turn.
        self._inner.reschedule(asyncio.get_running_loop().time())

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self._inner.__aexit__(exc_type, exc, tb)  # raises TimeoutError when expired
        return None

    def expired(self) -> bool:
        return self._inner.expired()


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def settle_turns() -> None:
    """Let woken tasks run until they block again (twenty loop turns)."""
    for _ in range(20):
        await asyncio.sleep(0)
