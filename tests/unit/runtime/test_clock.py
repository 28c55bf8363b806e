"""The injected clock: the fake one's timers and deadlines move only with advance()."""

from __future__ import annotations

import asyncio

import pytest

from objectd.runtime.clock import FakeClock, SystemClock


def test_fake_timers_fire_in_deadline_order_and_only_when_due() -> None:
    async def main() -> None:
        clock = FakeClock()
        fired: list[tuple[str, float]] = []
        start = clock.monotonic()
        clock.call_later(2, lambda: fired.append(("b", clock.monotonic() - start)))
        clock.call_later(1, lambda: fired.append(("a", clock.monotonic() - start)))
        clock.call_later(2, fired.append, ("c", 2.0))  # same time: in the order made
        await clock.advance(0.5)
        assert fired == []
        await clock.advance(2)
        assert fired == [("a", 1.0), ("b", 2.0), ("c", 2.0)]
        assert clock.monotonic() - start == 2.5

    asyncio.run(main())


def test_a_cancelled_fake_timer_never_fires() -> None:
    async def main() -> None:
        clock = FakeClock()
        fired: list[int] = []
        timer = clock.call_later(1, fired.append, 1)
        timer.cancel()
        timer.cancel()  # twice is fine
        assert clock.next_deadline is None
        await clock.advance(5)
        assert fired == []

    asyncio.run(main())


def test_cancelled_fake_timers_do_not_pile_up() -> None:
    async def main() -> None:
        clock = FakeClock()
        for _ in range(10_000):  # every commit makes one and cancels it
            clock.call_later(30, lambda: None).cancel()
        assert len(clock._timers) <= 200
        live = clock.call_later(30, lambda: None)
        assert clock.sleepers == 1
        live.cancel()

    asyncio.run(main())


def test_fake_timeout_expires_at_its_fake_deadline() -> None:
    async def main() -> None:
        clock = FakeClock()
        outcome: list[object] = []

        async def guarded() -> None:
            deadline = clock.timeout(30)
            try:
                async with deadline:
                    await asyncio.Event().wait()
            except TimeoutError:
                outcome.append(deadline.expired())

        task = asyncio.ensure_future(guarded())
        await clock.advance(29.999)
        assert outcome == [] and not task.done()
        await clock.advance(0.001)
        assert outcome == [True]
        await task

    asyncio.run(main())


def test_fake_timeout_left_in_time_or_without_a_deadline_never_fires() -> None:
    async def main() -> None:
        clock = FakeClock()
        deadline = clock.timeout(1)
        async with deadline:
            pass
        assert not deadline.expired()
        assert clock.next_deadline is None  # its timer went with it
        async with clock.timeout(None) as endless:
            await clock.advance(10**9)
        assert not endless.expired()

    asyncio.run(main())


def test_fake_sleep_cancelled_leaves_no_timer() -> None:
    async def main() -> None:
        clock = FakeClock()
        sleeper = asyncio.ensure_future(clock.sleep(5))
        await asyncio.sleep(0)
        assert clock.sleepers == 1
        sleeper.cancel()
        await asyncio.gather(sleeper, return_exceptions=True)
        assert clock.sleepers == 0

    asyncio.run(main())


def test_fake_advance_runs_ready_work_first_and_calls_settle_after_each_timer() -> None:
    async def main() -> None:
        settles: list[float] = []
        clock = FakeClock()

        async def settle() -> None:
            settles.append(clock.monotonic())
            await asyncio.sleep(0)

        clock.settle = settle
        start = clock.monotonic()
        started: list[float] = []

        async def later() -> None:
            started.append(clock.monotonic() - start)  # before time moves
            await clock.sleep(1)

        task = asyncio.ensure_future(later())
        await clock.advance(3)
        assert started == [0.0]
        assert [t - start for t in settles] == [0.0, 1.0, 3.0]
        await task
        with pytest.raises(ValueError, match="only moves forward"):
            await clock.advance(-1)

    asyncio.run(main())


def test_system_clock_hands_timers_and_deadlines_to_asyncio() -> None:
    async def main() -> None:
        clock = SystemClock()
        done = asyncio.get_running_loop().create_future()
        clock.call_later(0, done.set_result, "called")
        assert await done == "called"
        deadline = clock.timeout(0)
        with pytest.raises(TimeoutError):
            async with deadline:
                await asyncio.Event().wait()
        assert deadline.expired()

    asyncio.run(main())


@pytest.mark.parametrize("seconds", [float("nan"), float("inf")])
def test_fake_clock_refuses_nan_and_infinity(seconds: float) -> None:
    async def main() -> tuple[float, float]:
        clock = FakeClock(1_000.0)
        with pytest.raises(ValueError, match="a finite number of seconds"):
            await asyncio.wait_for(clock.advance(seconds), timeout=10)
        return clock.now(), clock.monotonic()

    now, _ = asyncio.run(main())
    assert now == 1_000.0
