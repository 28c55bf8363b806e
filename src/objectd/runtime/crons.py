"""The cron scheduler: runs the worker's ``scheduled()`` on every matching minute (UTC).

One scheduler per project with ``[triggers] crons``, started by ``Project.start`` and
stopped by ``Project.close``.  Its one task sleeps (on the injected clock) until the
next minute any expression matches, then starts a run for each expression that
matches it, with ``controller.scheduledTime`` that minute in epoch milliseconds.

* At most once per matching minute per expression: the next minute is always looked
  up strictly after the last one run (or the present, if later), so neither a wall
  clock set back nor a wake-up before time runs a minute twice.  A process that was
  stopped past several minutes runs the first missed one once, not each of them.
* A slow handler does not pile up: each expression has at most one run in flight
  (:data:`MAX_RUNNING_PER_CRON`).  A minute that comes while the previous run of its
  expression is still going is skipped, with a warning; the minute after runs as usual.
* A run that raises is logged once, with its report (``objectd.report``); it is not
  retried, and the next minute runs as usual.
* A run has a wall-time limit on the clock (``timeout_s``; Cloudflare's, 15 minutes, by
  default, ``RuntimeSettings.scheduled_timeout_s``): past it the run is cancelled and
  logged as a failure, so a ``scheduled()`` that hangs does not stop its cron for good.

Runs belong to the scheduler: :meth:`CronScheduler.stop` lets them finish for a grace
period, then cancels the rest, and abandons (logged) one that ignores its cancellation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from objectd.cron import CronExpression
from objectd.report import format_report
from objectd.runtime.abandon import stop_tasks
from objectd.runtime.clock import Clock

__all__ = ["DEFAULT_TIMEOUT_S", "MAX_RUNNING_PER_CRON", "CronScheduler"]

log = logging.getLogger("objectd.crons")

MAX_RUNNING_PER_CRON = 1  # runs of one expression in flight; later minutes are skipped
DEFAULT_TIMEOUT_S = 15 * 60.0  # one run's wall time: Cloudflare's Cron Trigger duration limit
# The longest single sleep: a wall clock moved forward is noticed within a minute.
_MAX_SLEEP_S = 60.0

# Runs the handler: (cron text, scheduled time in epoch ms) -> awaited.
Runner = Callable[[str, int], Awaitable[Any]]


class CronScheduler:
    """Runs ``run(cron, scheduled_time_ms)`` on each minute one of ``crons`` matches."""

    def __init__(
        self,
        crons: Sequence[str],
        run: Runner,
        clock: Clock,
        *,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._crons = [CronExpression(text) for text in crons]  # checked by config already
        self._run = run
        self._clock = clock
        self._timeout_s = timeout_s  # one run's wall time on the clock; None: no limit
        self._task: asyncio.Task[None] | None = None
        self._running: dict[str, tuple[asyncio.Task[None], datetime]] = {}
        # Counts, for tests and logs: runs started, minutes skipped, runs that raised.
        self.runs = 0
        self.skipped = 0
        self.failures = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="objectd-crons")

    async def stop(self, grace_s: float, *, cancel_wait_s: float = 5.0) -> None:
        """Start no more runs; wait up to ``grace_s`` for those in flight, cancel the rest.

        A cancelled run gets ``cancel_wait_s`` to end; one that swallows its cancellation
        and goes on is logged and abandoned, so that shutdown does not hang on it.
        Both waits are real time: they bound a shutdown, not a run.
        """
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        runs = {task: when for task, when in self._running.values()}
        self._running.clear()
        stuck = await stop_tasks(
            runs,
            grace_s=grace_s,
            cancel_wait_s=cancel_wait_s,
            log=log,
            late_warning="objectd: cancelling a scheduled() run still going at shutdown",
        )
        for task in stuck:
            cron = task.get_name().removeprefix("objectd-cron ")
            log.error(
                "objectd: abandoning a scheduled() run that ignored its cancellation "
                "(cron %r, %s): it must not catch CancelledError without re-raising it",
                cron,
                _shown(runs[task]),
            )

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.now(), UTC)

    async def _loop(self) -> None:
        now = self._now()
        due = {cron: cron.next_after(now) for cron in self._crons}
        while True:
            await self._sleep_until(min(due.values()))
            now = self._now()
            for cron, when in list(due.items()):
                if when <= now:
                    self._fire(cron, when)
                    due[cron] = cron.next_after(max(now, when))

    async def _sleep_until(self, when: datetime) -> None:
        target = when.timestamp()
        while (left := target - self._clock.now()) > 0:
            await self._clock.sleep(min(left, _MAX_SLEEP_S))

    def _fire(self, cron: CronExpression, when: datetime) -> None:
        previous = self._running.get(cron.text)
        if previous is not None and not previous[0].done():
            self.skipped += 1
            log.warning(
                "objectd: cron %r: the run of %s is skipped: the run of %s is still going",
                cron.text,
                _shown(when),
                _shown(previous[1]),
            )
            return
        task = asyncio.get_running_loop().create_task(
            self._invoke(cron.text, when), name=f"objectd-cron {cron.text}"
        )
        self._running[cron.text] = (task, when)

    async def _invoke(self, text: str, when: datetime) -> None:
        self.runs += 1
        try:
            async with self._clock.timeout(self._timeout_s) as limit:
                await self._run(text, int(when.timestamp() * 1000))
        except TimeoutError as exc:
            self.failures += 1
            if limit.expired():
                log.error(
                    "objectd: scheduled() (cron %r, %s) was cancelled: it ran past its "
                    "wall-time limit of %g s",
                    text,
                    _shown(when),
                    self._timeout_s,
                )
            else:  # the handler's own TimeoutError
                log.error(
                    "objectd: scheduled() failed (cron %r, %s)\n%s",
                    text,
                    _shown(when),
                    format_report(exc).rstrip("\n"),
                )
        except Exception as exc:
            self.failures += 1
            log.error(
                "objectd: scheduled() failed (cron %r, %s)\n%s",
                text,
                _shown(when),
                format_report(exc).rstrip("\n"),
            )


def _shown(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M UTC")
