"""runtime.crons: when scheduled() runs, on a fake clock (issue 10 §3)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import pytest

from objectd.runtime.clock import FakeClock
from objectd.runtime.crons import CronScheduler

START = 1_800_000_000.0  # FakeClock's default: 2027-01-15 08:00:00 UTC, on a minute
MINUTE_MS = 60_000


def at(minutes: int) -> int:
    """The epoch milliseconds ``minutes`` after START."""
    return int(START * 1000) + minutes * MINUTE_MS


class Recorder:
    """A runner that records (cron, scheduled_time) and can be made to fail or to hang."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.fail_first = False
        self.hold: asyncio.Event | None = None

    async def __call__(self, cron: str, scheduled_time: int) -> None:
        self.calls.append((cron, scheduled_time))
        if self.fail_first and len(self.calls) == 1:
            raise ValueError(f"cleanup failed at {scheduled_time}")
        if self.hold is not None:
            await self.hold.wait()


def test_start_time_is_a_minute() -> None:
    assert datetime.fromtimestamp(START, UTC) == datetime(2027, 1, 15, 8, 0, tzinfo=UTC)


def test_runs_each_matching_minute_once_with_its_scheduled_time() -> None:
    async def main() -> None:
        clock, runner = FakeClock(START), Recorder()
        scheduler = CronScheduler(["*/5 * * * *", "*/2 * * * *"], runner, clock)
        scheduler.start()
        await clock.advance(0)  # the loop reads the clock and sleeps
        assert runner.calls == []  # 08:00 itself is not after the start
        await clock.advance(4 * 60 + 59)
        assert runner.calls == [("*/2 * * * *", at(2)), ("*/2 * * * *", at(4))]
        await clock.advance(1)  # 08:05
        await clock.advance(5 * 60)  # to 08:10, where both match: each runs once
        assert runner.calls[2:] == [
            ("*/5 * * * *", at(5)),
            ("*/2 * * * *", at(6)),
            ("*/2 * * * *", at(8)),
            ("*/5 * * * *", at(10)),
            ("*/2 * * * *", at(10)),
        ]
        assert scheduler.runs == 7 and scheduler.skipped == 0
        await scheduler.stop(grace_s=1.0)
        await clock.advance(60 * 60)
        assert len(runner.calls) == 7  # stopped: no more runs

    asyncio.run(main())


def test_a_stall_past_several_minutes_runs_the_missed_minute_once() -> None:
    """A loop that wakes late (a suspended process) does not replay every minute it
    missed, and never runs a minute twice."""

    async def main() -> None:
        clock, runner = FakeClock(START), Recorder()
        scheduler = CronScheduler(["* * * * *"], runner, clock)
        scheduler.start()
        await clock.advance(0)  # the loop reads the clock and sleeps
        clock._now += 10 * 60  # the wall clock moves on while nothing runs
        await clock.advance(60)
        assert runner.calls == [("* * * * *", at(1))]
        await clock.advance(60)
        assert runner.calls == [("* * * * *", at(1)), ("* * * * *", at(12))]
        await scheduler.stop(grace_s=1.0)

    asyncio.run(main())


def test_a_raising_handler_is_logged_once_and_the_next_minute_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        clock, runner = FakeClock(START), Recorder()
        runner.fail_first = True
        scheduler = CronScheduler(["* * * * *"], runner, clock)
        scheduler.start()
        await clock.advance(0)  # the loop reads the clock and sleeps
        await clock.advance(60)
        await clock.advance(60)
        assert runner.calls == [("* * * * *", at(1)), ("* * * * *", at(2))]
        assert scheduler.failures == 1
        await scheduler.stop(grace_s=1.0)

    with caplog.at_level(logging.INFO, logger="objectd.crons"):
        asyncio.run(main())
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, caplog.text
    message = errors[0].getMessage()
    assert message.startswith(
        "objectd: scheduled() failed (cron '* * * * *', 2027-01-15 08:01 UTC)"
    )
    # The report as objectd.report formats it: the raising line and the exception.
    assert "Traceback (most recent call last):" in message
    assert 'raise ValueError(f"cleanup failed at {scheduled_time}")' in message
    assert f"ValueError: cleanup failed at {at(1)}" in message


def test_a_slow_handler_skips_minutes_instead_of_piling_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At most one run per expression in flight (MAX_RUNNING_PER_CRON); the minutes that
    come while it runs are skipped with a warning, and the first after it runs."""

    async def main() -> None:
        clock, runner = FakeClock(START), Recorder()
        runner.hold = asyncio.Event()
        scheduler = CronScheduler(["* * * * *"], runner, clock)
        scheduler.start()
        await clock.advance(0)  # the loop reads the clock and sleeps
        await clock.advance(3 * 60)
        assert runner.calls == [("* * * * *", at(1))]
        assert scheduler.skipped == 2
        runner.hold.set()
        await clock.advance(60)
        assert runner.calls == [("* * * * *", at(1)), ("* * * * *", at(4))]
        await scheduler.stop(grace_s=1.0)

    with caplog.at_level(logging.WARNING, logger="objectd.crons"):
        asyncio.run(main())
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert skipped == [
        "objectd: cron '* * * * *': the run of 2027-01-15 08:02 UTC is skipped: "
        "the run of 2027-01-15 08:01 UTC is still going",
        "objectd: cron '* * * * *': the run of 2027-01-15 08:03 UTC is skipped: "
        "the run of 2027-01-15 08:01 UTC is still going",
    ]


def test_stop_cancels_a_run_still_going_after_the_grace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> asyncio.Event:
        clock, runner = FakeClock(START), Recorder()
        runner.hold = asyncio.Event()  # never set
        scheduler = CronScheduler(["* * * * *"], runner, clock)
        scheduler.start()
        await clock.advance(0)  # the loop reads the clock and sleeps
        await clock.advance(60)
        assert len(runner.calls) == 1
        await asyncio.wait_for(scheduler.stop(grace_s=0.01), timeout=10)
        return runner.hold

    with caplog.at_level(logging.WARNING, logger="objectd.crons"):
        asyncio.run(main())
    assert "cancelling a scheduled() run still going at shutdown" in caplog.text


def test_a_hung_run_is_cancelled_at_its_wall_time_limit_and_the_next_minute_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Cloudflare gives a Cron Trigger's invocation 15 minutes of wall time (its Workers
    limits, "Duration"): a scheduled() still going then is cancelled, logged as a
    failure, and the cron runs again on its next minute instead of being stuck."""

    async def main() -> tuple[list[tuple[str, int]], int, int]:
        clock, runner = FakeClock(START), Recorder()
        runner.hold = asyncio.Event()  # never set: every run hangs
        scheduler = CronScheduler(["* * * * *"], runner, clock, timeout_s=15 * 60.0)
        scheduler.start()
        await clock.advance(0)  # the loop reads the clock and sleeps
        await clock.advance(60)  # 08:01: the run that hangs
        await clock.advance(15 * 60 - 1)
        assert runner.calls == [("* * * * *", at(1))]  # still going, minutes skipped
        await clock.advance(1)  # 08:16: its limit (set first), then that minute's run
        calls, failures, skipped = list(runner.calls), scheduler.failures, scheduler.skipped
        await scheduler.stop(grace_s=0)
        return calls, failures, skipped

    with caplog.at_level(logging.WARNING, logger="objectd.crons"):
        calls, failures, skipped = asyncio.run(main())
    assert calls == [("* * * * *", at(1)), ("* * * * *", at(16))]
    assert failures == 1 and skipped == 14  # 08:02 .. 08:15
    assert (
        "objectd: scheduled() (cron '* * * * *', 2027-01-15 08:01 UTC) was cancelled: "
        "it ran past its wall-time limit of 900 s" in caplog.text
    )


def test_the_default_run_limit_is_cloudflares_15_minutes() -> None:
    from objectd.runtime.settings import RuntimeSettings

    assert RuntimeSettings().scheduled_timeout_s == 15 * 60.0


class Stubborn:
    """A scheduled() that swallows every cancellation until ``release`` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.cancels = 0

    async def __call__(self, cron: str, scheduled_time: int) -> None:
        while not self.release.is_set():
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancels += 1


def test_stop_abandons_a_run_that_swallows_its_cancellation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Cancelling a run that catches CancelledError and goes on does not end it: stop()
    waits for it a bounded time after the cancel, logs it, and returns, so the server
    still stops."""

    async def main() -> int:
        clock, runner = FakeClock(START), Stubborn()
        scheduler = CronScheduler(["* * * * *"], runner, clock)
        scheduler.start()
        await clock.advance(0)  # the loop reads the clock and sleeps
        await clock.advance(60)
        await asyncio.wait_for(scheduler.stop(grace_s=0, cancel_wait_s=0.05), timeout=10)
        cancels = runner.cancels
        runner.release.set()  # let the abandoned run end, so the loop closes cleanly
        await asyncio.sleep(0)
        return cancels

    with caplog.at_level(logging.WARNING, logger="objectd.crons"):
        assert asyncio.run(main()) == 1
    assert (
        "objectd: abandoning a scheduled() run that ignored its cancellation "
        "(cron '* * * * *', 2027-01-15 08:01 UTC)" in caplog.text
    )
