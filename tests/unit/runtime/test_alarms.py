"""Alarms: storage API, scheduler, retries, index (spec §7; checklist 114-129, 45, 90).

In process, on real SQLite files, with a fake clock: nothing here sleeps, except
checklist 128, whose wall-time limit is asyncio's and is set to 50 ms.
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import itertools
import logging
import random
import sqlite3
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from runtime_kit import attach_alarms, make_namespace, run_in

from objectd.errors import DurableObjectTypeError, ObjectResetError, StorageError
from objectd.fetch import Request
from objectd.runtime.alarm_ops import AlarmInfo
from objectd.runtime.alarms import MAX_RETRIES, AlarmScheduler, namespace_key, retry_delay
from objectd.runtime.clock import FakeClock
from objectd.runtime.committer import Batch, Committer, Durability
from objectd.runtime.namespace import DurableObjectNamespace
from objectd.runtime.objects import DurableObject
from objectd.runtime.project import Project
from objectd.runtime.settings import RuntimeSettings

log: list[tuple[Any, ...]] = []
# What alarm() does, by object name: a function (self, info) -> awaitable or None.
scripts: dict[str | None, Callable[[Any, AlarmInfo], Any]] = {}


@pytest.fixture(autouse=True)
def _fresh() -> None:
    log.clear()
    scripts.clear()


class Alarmed(DurableObject):
    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        log.append(("init", ctx.id.name))

    async def alarm(self, info: AlarmInfo) -> None:
        log.append(("alarm", self.ctx.id.name, info))
        script = scripts.get(self.ctx.id.name)
        if script is not None:
            result = script(self, info)
            if inspect.isawaitable(result):
                await result
        count = (await self.ctx.storage.get("count") or 0) + 1
        await self.ctx.storage.put("count", count)

    async def set(self, when: Any) -> int | None:
        await self.ctx.storage.set_alarm(when)
        return await self.ctx.storage.get_alarm()

    async def get(self) -> int | None:
        return await self.ctx.storage.getAlarm()

    async def delete(self) -> None:
        await self.ctx.storage.deleteAlarm()

    async def count(self) -> int:
        return await self.ctx.storage.get("count") or 0


class NoArgument(DurableObject):
    def alarm(self) -> None:  # handlers are called "relaxed": no alarm_info wanted
        log.append(("no-argument", self.ctx.id.name))

    async def set(self, when: int) -> None:
        await self.ctx.storage.setAlarm(when)


class NoHandler(DurableObject):
    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        if ctx.id.name == "in-constructor":
            ctx.storage.set_alarm(ctx.storage.kv.get("when") or 1)  # allowed here (118)

    async def set(self, when: int) -> None:
        await self.ctx.storage.set_alarm(when)


@dataclass
class World:
    clock: FakeClock
    scheduler: AlarmScheduler
    namespaces: list[DurableObjectNamespace]

    @property
    def ns(self) -> DurableObjectNamespace:
        return self.namespaces[0]

    def now_ms(self) -> int:
        return int(self.clock.now() * 1000)

    async def advance(self, seconds: float) -> None:
        """Move the clock, then let every alarm delivery that started finish."""
        await self.clock.advance(seconds)
        await self.settle()

    async def settle(self) -> None:
        """Until no delivery runs; an evicted object's file closes in a thread, so after
        a thousand loop turns this also waits (briefly, for real) for threads."""
        deadline = time.monotonic() + 5
        for turn in itertools.count():
            if not self.scheduler.running:
                break
            if time.monotonic() > deadline:
                raise AssertionError("alarm deliveries still running")
            await asyncio.sleep(0 if turn < 1000 else 0.001)
        for _ in range(10):
            await asyncio.sleep(0)

    def index(self) -> dict[str, int]:
        """The index rows: object name (or id) -> time."""
        names = {}
        with sqlite3.connect(self.scheduler._index.path) as conn:
            for object_id, name, time in conn.execute("SELECT object_id, name, time FROM alarms"):
                names[name or object_id] = time
        return names

    def evict(self, name: str) -> None:
        object_class = self.ns._class
        host = object_class.hosts[self.ns.id_from_name(name)]
        assert host.can_evict()
        host.evict()


@asynccontextmanager
async def world(
    tmp_path: Path,
    *classes: type,
    clock: FakeClock | None = None,
    alarm_timeout_s: float = 900.0,
    durability: Durability = Durability.PROCESS,
    start: bool = True,
    delete_all_deletes_alarm: bool = True,
) -> AsyncIterator[World]:
    clock = clock or FakeClock()
    settings = RuntimeSettings(
        clock=clock,
        alarm_timeout_s=alarm_timeout_s,
        delete_all_deletes_alarm=delete_all_deletes_alarm,
    )
    committer = Committer(durability=durability)
    namespaces = [
        make_namespace(
            tmp_path, cls, settings=settings, committer=committer, secret=cls.__name__.encode()
        )
        for cls in classes or (Alarmed,)
    ]
    scheduler = attach_alarms(tmp_path, *namespaces, rng=random.Random(7))
    if start:
        scheduler.start()
    try:
        yield World(clock, scheduler, namespaces)
    finally:
        await scheduler.stop()
        for ns in namespaces:
            await ns._class.close()
        await committer.close()
        scheduler.close()


def inside(ns: DurableObjectNamespace, name: str, fn: Callable[[Any], Any]) -> Any:
    """Run ``fn(instance)`` as an event of object ``name``; awaits what it returns."""

    async def call(instance: Any) -> Any:
        result = fn(instance)
        return await result if inspect.isawaitable(result) else result

    return run_in(ns.get_by_name(name), call)


def alarms_of(name: str) -> list[AlarmInfo]:
    return [entry[2] for entry in log if entry[0] == "alarm" and entry[1] == name]


# -- the storage API ---------------------------------------------------------------------


def test_114_get_alarm_is_none_until_set(tmp_path: Path) -> None:
    async def main() -> None:
        async with world(tmp_path) as w:
            stub = w.ns.get_by_name("a")
            assert await stub.get() is None
            when = w.now_ms() + 60_000
            assert await stub.set(when) == when
            assert await stub.get() == when

    asyncio.run(main())


def test_115_datetime_accepted_and_second_set_replaces(tmp_path: Path) -> None:
    async def main() -> None:
        async with world(tmp_path) as w:
            stub = w.ns.get_by_name("a")
            later = datetime.datetime.fromtimestamp(w.clock.now() + 3600, datetime.UTC)
            expected = int(later.timestamp() * 1000)
            assert await inside(w.ns, "a", lambda o: o.set(later)) == expected
            # A naive datetime is local time, as in Python Workers (datetime.timestamp()).
            naive = later.astimezone().replace(tzinfo=None)
            assert await inside(w.ns, "a", lambda o: o.set(naive)) == expected
            assert await stub.set(w.now_ms() + 5000) == w.now_ms() + 5000  # replaces
            assert await stub.set(w.now_ms() + 1.9) == w.now_ms() + 1  # whole milliseconds
            await w.advance(1)
            assert len(alarms_of("a")) == 1  # one alarm per object: the last one

    asyncio.run(main())


@pytest.mark.parametrize("when", [0, -1, -0.5, 0.0])
def test_116_set_alarm_at_or_below_zero_is_refused(tmp_path: Path, when: float) -> None:
    async def main() -> None:
        async with world(tmp_path) as w:
            with pytest.raises(TypeError) as caught:
                await inside(w.ns, "a", lambda o: o.ctx.storage.set_alarm(when))
            assert str(caught.value) == "setAlarm() cannot be called with an alarm time <= 0"
            assert await w.ns.get_by_name("a").get() is None

    asyncio.run(main())


@pytest.mark.parametrize(
    ("when", "named"),
    [("soon", "str"), (True, "bool"), (None, "NoneType"), (datetime.date(2030, 1, 1), "date")],
)
def test_set_alarm_refuses_what_is_not_a_time(tmp_path: Path, when: Any, named: str) -> None:
    async def main() -> None:
        async with world(tmp_path) as w:
            with pytest.raises(DurableObjectTypeError, match=f"got {named}"):
                await inside(w.ns, "a", lambda o: o.ctx.storage.set_alarm(when))
            with pytest.raises(DurableObjectTypeError, match="NaN"):
                await inside(w.ns, "a", lambda o: o.ctx.storage.set_alarm(float("nan")))
            with pytest.raises(DurableObjectTypeError, match="latest date"):
                await inside(w.ns, "a", lambda o: o.ctx.storage.set_alarm(float("inf")))

    asyncio.run(main())


def test_alarm_options_are_checked(tmp_path: Path) -> None:
    async def main() -> None:
        async with world(tmp_path) as w:
            when = w.now_ms() + 1000

            def use(o: Any) -> Any:
                storage = o.ctx.storage
                storage.set_alarm(when, {"allowUnconfirmed": True, "allowConcurrency": True})
                storage.set_alarm(when, allow_unconfirmed=True)
                storage.get_alarm({"allowConcurrency": True})
                storage.delete_alarm({"allowUnconfirmed": True})
                return storage.get_alarm()

            assert await inside(w.ns, "a", use) is None
            with pytest.raises(DurableObjectTypeError, match="unknown option"):
                await inside(w.ns, "a", lambda o: o.ctx.storage.get_alarm({"allowUnconfirmed": 1}))
            with pytest.raises(DurableObjectTypeError, match="unknown option"):
                await inside(w.ns, "a", lambda o: o.ctx.storage.set_alarm(when, {"noCache": 1}))

    asyncio.run(main())


def test_117_past_time_runs_promptly(tmp_path: Path) -> None:
    async def main() -> None:
        async with world(tmp_path) as w:
            now = w.now_ms()
            # Past times are stored as "now" (workerd clamps them to Date.now()).
            assert await w.ns.get_by_name("a").set(now - 60_000) == now
            await w.advance(0)
            [info] = alarms_of("a")
            assert info.scheduled_time == now
            assert await w.ns.get_by_name("a").get() is None

    asyncio.run(main())


def test_118_set_alarm_needs_an_alarm_handler_except_in_constructor(tmp_path: Path) -> None:
    async def main() -> None:
        async with world(tmp_path, NoHandler) as w:
            with pytest.raises(TypeError) as caught:
                await w.ns.get_by_name("plain").set(w.now_ms() + 1000)
            assert str(caught.value) == (
                "Your Durable Object class must have an alarm() handler in order to call setAlarm()"
            )
            # From the constructor it is allowed; when it fires, the alarm is dropped.
            stored = await inside(w.ns, "in-constructor", lambda o: o.ctx.storage.get_alarm())
            assert stored == w.now_ms()  # 1 ms after the epoch is in the past: "now"
            await w.advance(0)
            assert await inside(w.ns, "in-constructor", lambda o: o.ctx.storage.get_alarm()) is None
            assert w.scheduler.pending == 0

    asyncio.run(main())


def test_119_delete_alarm_prevents_firing_and_is_a_noop_without_one(tmp_path: Path) -> None:
    async def main() -> None:
        async with world(tmp_path) as w:
            stub = w.ns.get_by_name("a")

            def delete_without_alarm(o: Any) -> bool:
                o.ctx.storage.delete_alarm()
                return o.ctx.storage.database.batch_open  # nothing was written

            assert await inside(w.ns, "a", delete_without_alarm) is False
            await stub.set(w.now_ms() + 5000)
            await stub.delete()
            assert await stub.get() is None
            await w.advance(10)
            assert alarms_of("a") == []
            assert w.scheduler.pending == 0 and w.index() == {}  # the stale row is gone

    asyncio.run(main())


def test_120_fires_at_or_after_its_time_never_before(tmp_path: Path) -> None:
    async def main() -> None:
        async with world(tmp_path) as w:
            when = w.now_ms() + 5000
            scripts["a"] = lambda o, info: log.append(("at", w.now_ms()))
            await w.ns.get_by_name("a").set(when)
            await w.advance(4.999)
            assert alarms_of("a") == []
            await w.advance(0.001)
            assert len(alarms_of("a")) == 1
            assert ("at", when) in log

    asyncio.run(main())


def test_121_object_not_in_memory_is_constructed_before_alarm(tmp_path: Path) -> None:
    async def main() -> None:
        async with world(tmp_path) as w:
            await w.ns.get_by_name("a").set(w.now_ms() + 1000)
            w.evict("a")
            log.clear()
            await w.advance(1)
            assert [entry[0] for entry in log] == ["init", "alarm"]
            assert log[0] == ("init", "a")  # ctx.id.name is kept by the index

    asyncio.run(main())


def test_122_alarm_info_on_first_attempt_and_relaxed_handlers(tmp_path: Path) -> None:
    async def main() -> None:
        async with world(tmp_path, Alarmed, NoArgument) as w:
            when = w.now_ms() + 1000
            await w.ns.get_by_name("a").set(when)
            await w.namespaces[1].get_by_name("b").set(when)
            await w.advance(1)
            [info] = alarms_of("a")
            assert info == AlarmInfo(retry_count=0, is_retry=False, scheduled_time=when)
            assert (info.retryCount, info.isRetry, info.scheduledTime) == (0, False, when)
            assert ("no-argument", "b") in log
            with pytest.raises(AttributeError):
                info.retry_count = 3  # type: ignore[misc]

    asyncio.run(main())


def test_123_success_clears_the_alarm_unless_set_again(tmp_path: Path) -> None:
    async def main() -> None:
        async with world(tmp_path) as w:
            when = w.now_ms() + 1000
            again = when + 60_000
            scripts["b"] = lambda o, info: o.ctx.storage.set_alarm(again)
            await w.ns.get_by_name("a").set(when)
            await w.ns.get_by_name("b").set(when)
            await w.advance(1)
            assert await w.ns.get_by_name("a").get() is None
            assert await w.ns.get_by_name("a").count() == 1
            assert await w.ns.get_by_name("b").get() == again
            assert w.index() == {"b": again}

    asyncio.run(main())


def test_124_get_alarm_inside_handler_is_none_until_set(tmp_path: Path) -> None:
    async def main() -> None:
        async with world(tmp_path) as w:
            when = w.now_ms() + 1000
            seen: list[Any] = []

            async def script(o: Any, info: AlarmInfo) -> None:
                seen.append(await o.ctx.storage.get_alarm())
                await o.ctx.storage.set_alarm(when + 5000)
                seen.append(await o.ctx.storage.get_alarm())
                await o.ctx.storage.delete_alarm()
                seen.append(await o.ctx.storage.get_alarm())

            scripts["a"] = script
            await w.ns.get_by_name("a").set(when)
            await w.advance(1)
            assert seen == [None, when + 5000, None]
            await w.advance(10)
            assert len(alarms_of("a")) == 1  # deleted inside the handler: no second run

    asyncio.run(main())


def test_125_set_inside_handler_runs_again_after_this_run_completes(tmp_path: Path) -> None:
    async def main() -> None:
        async with world(tmp_path) as w:
            release = asyncio.Event()

            async def script(o: Any, info: AlarmInfo) -> None:
                if len(alarms_of("a")) == 1:
                    o.ctx.storage.set_alarm(1)  # in the past: due at once
                    log.append(("first-waits",))
                    await release.wait()
                    log.append(("first-ends",))

            scripts["a"] = script
            await w.ns.get_by_name("a").set(w.now_ms() + 1000)
            await w.clock.advance(1)
            for _ in range(50):
                await asyncio.sleep(0)
            assert len(alarms_of("a")) == 1 and w.scheduler.running == 1  # not cancelled
            release.set()
            await w.settle()
            await w.advance(0)
            kinds = [entry[0] for entry in log if entry[0] != "init"]
            assert kinds == ["alarm", "first-waits", "first-ends", "alarm"]
            assert await w.ns.get_by_name("a").get() is None
            assert await w.ns.get_by_name("a").count() == 2

    asyncio.run(main())


def test_126_failures_retry_with_backoff_then_are_abandoned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async with world(tmp_path) as w:
            times: list[float] = []

            def fail(o: Any, info: AlarmInfo) -> None:
                times.append(w.clock.now())
                raise RuntimeError(f"attempt {info.retry_count} failed")

            scripts["a"] = fail
            when = w.now_ms() + 1000
            await w.ns.get_by_name("a").set(when)
            await w.advance(1)
            step = 0.25
            for _ in range(int(200 / step)):
                await w.advance(step)
            infos = alarms_of("a")
            assert [i.retry_count for i in infos] == list(range(MAX_RETRIES + 1))
            assert [i.is_retry for i in infos] == [False] + [True] * MAX_RETRIES
            assert {i.scheduled_time for i in infos} == {when}
            for n, (before, after) in enumerate(itertools.pairwise(times)):
                base = 2 << n  # 2 s, 4 s, 8 s ... plus up to 25 % jitter
                assert base <= after - before <= base * 1.25 + step, (n, after - before)
            # Abandoned: cleared, not retried again, and said so.
            assert await w.ns.get_by_name("a").get() is None
            assert w.scheduler.pending == 0 and w.index() == {}
            assert "abandoned" in caplog.text and "attempt 6 failed" in caplog.text

    with caplog.at_level(logging.WARNING, logger="objectd.alarms"):
        asyncio.run(main())


def test_retry_delay_is_two_seconds_doubling_with_a_quarter_of_jitter() -> None:
    rng = random.Random(1)
    for n in range(MAX_RETRIES):
        delays = [retry_delay(n, rng) for _ in range(200)]
        assert 2 << n <= min(delays) and max(delays) <= (2 << n) * 1.25
        assert max(delays) - min(delays) > 0.1 * (2 << n)  # jitter is really there


def test_127_get_alarm_between_a_failure_and_its_retry_is_the_original_time(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with world(tmp_path) as w:

            def fail_once(o: Any, info: AlarmInfo) -> None:
                if info.retry_count == 0:
                    raise RuntimeError("first attempt fails")

            scripts["a"] = fail_once
            when = w.now_ms() + 1000
            await w.ns.get_by_name("a").set(when)
            await w.advance(1)
            assert await w.ns.get_by_name("a").get() == when
            await w.advance(1.9)
            assert len(alarms_of("a")) == 1  # the backoff is at least 2 s
            await w.advance(0.6)
            assert [i.retry_count for i in alarms_of("a")] == [0, 1]
            assert await w.ns.get_by_name("a").get() is None

    asyncio.run(main())


def test_new_alarm_supersedes_a_pending_retry(tmp_path: Path) -> None:
    async def main() -> None:
        async with world(tmp_path) as w:

            def fail_first(o: Any, info: AlarmInfo) -> None:
                if len(alarms_of("a")) == 1:
                    raise RuntimeError("fails")

            scripts["a"] = fail_first
            when = w.now_ms() + 1000
            await w.ns.get_by_name("a").set(when)
            await w.advance(1)  # fails; retry due in 2-2.5 s
            newer = w.now_ms() + 500
            await w.ns.get_by_name("a").set(newer)
            await w.advance(0.5)
            infos = alarms_of("a")
            assert [(i.scheduled_time, i.retry_count) for i in infos] == [(when, 0), (newer, 0)]
            await w.advance(5)
            assert len(alarms_of("a")) == 2  # the stale retry did not run

    asyncio.run(main())


def test_128_alarm_past_its_time_limit_is_cancelled_and_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async with world(tmp_path, alarm_timeout_s=0.05) as w:
            cancelled: list[bool] = []

            async def hang_once(o: Any, info: AlarmInfo) -> None:
                if info.retry_count == 0:
                    try:
                        await asyncio.Event().wait()
                    except asyncio.CancelledError:
                        cancelled.append(True)
                        raise

            scripts["a"] = hang_once
            when = w.now_ms() + 1000
            await w.ns.get_by_name("a").set(when)
            await w.clock.advance(1)
            assert w.scheduler.running == 1 and cancelled == []  # hangs: the limit is 0.05 s
            await w.advance(0.05)  # the limit is on the injected clock: no real wait
            assert cancelled == [True]
            assert await w.ns.get_by_name("a").get() == when  # 127: still set
            await w.advance(2.5)
            assert [i.retry_count for i in alarms_of("a")] == [0, 1]
            assert await w.ns.get_by_name("a").count() == 1
            assert "Alarm exceeded its allowed execution time" in caplog.text

    with caplog.at_level(logging.WARNING, logger="objectd.alarms"):
        asyncio.run(main())


@pytest.mark.parametrize(
    ("abort", "retried"),
    [
        (lambda ctx: ctx.abort("stop"), True),
        (lambda ctx: ctx.abort("stop", retry_alarm=False), False),
        (lambda ctx: ctx.abort("stop", {"retryAlarm": False}), False),
        (lambda ctx: ctx.abort("stop", {"retryAlarm": True}), True),
    ],
)
def test_45_abort_inside_alarm_retries_unless_retry_alarm_false(
    tmp_path: Path, abort: Callable[[Any], None], retried: bool
) -> None:
    async def main() -> None:
        async with world(tmp_path) as w:

            def script(o: Any, info: AlarmInfo) -> None:
                if info.retry_count == 0:
                    abort(o.ctx)

            scripts["a"] = script
            when = w.now_ms() + 1000
            await w.ns.get_by_name("a").set(when)
            await w.advance(1)
            assert await w.ns.get_by_name("a").get() == (when if retried else None)
            await w.advance(3)
            assert len(alarms_of("a")) == (2 if retried else 1)
            assert await w.ns.get_by_name("a").get() is None

    asyncio.run(main())


def test_reset_during_alarm_counts_as_a_failure_and_is_retried(tmp_path: Path) -> None:
    async def main() -> None:
        async with world(tmp_path) as w:
            started = asyncio.Event()

            async def wait_forever(o: Any, info: AlarmInfo) -> None:
                if info.retry_count == 0:
                    started.set()
                    await asyncio.Event().wait()

            scripts["a"] = wait_forever
            await w.ns.get_by_name("a").set(w.now_ms() + 1000)
            await w.clock.advance(1)
            await started.wait()
            with pytest.raises(ObjectResetError):  # another event resets the object
                await inside(w.ns, "a", lambda o: o.ctx.abort("reset from elsewhere"))
            await w.settle()
            await w.advance(2.5)
            assert [i.retry_count for i in alarms_of("a")] == [0, 1]
            assert await w.ns.get_by_name("a").count() == 1

    asyncio.run(main())


def test_abort_options_are_checked(tmp_path: Path) -> None:
    async def main() -> None:
        async with world(tmp_path) as w:
            with pytest.raises(DurableObjectTypeError, match="unknown option"):
                await inside(w.ns, "a", lambda o: o.ctx.abort("x", {"retry": False}))
            with pytest.raises(DurableObjectTypeError, match="must be a dict"):
                await inside(w.ns, "a", lambda o: o.ctx.abort("x", False))

    asyncio.run(main())


def test_90_delete_all_deletes_the_alarm(tmp_path: Path) -> None:
    async def main() -> None:
        async with world(tmp_path) as w:
            stub = w.ns.get_by_name("a")
            await stub.set(w.now_ms() + 1000)
            await inside(w.ns, "a", lambda o: o.ctx.storage.delete_all())
            assert await stub.get() is None
            await w.advance(2)
            assert alarms_of("a") == []

    asyncio.run(main())


def test_90_delete_all_keeps_the_alarm_before_2026_02_24(tmp_path: Path) -> None:
    async def main() -> None:
        async with world(tmp_path, delete_all_deletes_alarm=False) as w:
            stub = w.ns.get_by_name("a")
            at = w.now_ms() + 1000
            await stub.set(at)
            await inside(w.ns, "a", lambda o: o.ctx.storage.delete_all())
            assert await stub.get() == at
            await w.advance(2)
            assert [info.retry_count for info in alarms_of("a")] == [0]

    asyncio.run(main())


def test_transaction_alarm_methods_and_rollback(tmp_path: Path) -> None:
    async def main() -> None:
        async with world(tmp_path) as w:
            stub = w.ns.get_by_name("a")
            first = w.now_ms() + 10_000
            await stub.set(first)

            async def rolled_back(o: Any) -> Any:
                async def body(txn: Any) -> None:
                    assert await txn.getAlarm() == first
                    await txn.setAlarm(w.now_ms() + 1000)  # earlier, then rolled back
                    txn.rollback()

                await o.ctx.storage.transaction(body)
                return await o.ctx.storage.get_alarm()

            assert await inside(w.ns, "a", rolled_back) == first
            assert w.index() == {"a": w.now_ms() + 1000}  # early rows are harmless ...
            await w.advance(1)
            assert alarms_of("a") == []  # ... the object is asked, and nothing runs
            assert w.index() == {"a": first}  # the row moved to the stored time
            await w.advance(9)
            assert len(alarms_of("a")) == 1

            async def committed(o: Any) -> None:
                async def body(txn: Any) -> None:
                    await txn.set_alarm(w.now_ms() + 2000)
                    await txn.delete_alarm()
                    await txn.set_alarm(w.now_ms() + 3000)

                await o.ctx.storage.transaction(body)

            await inside(w.ns, "a", committed)
            assert await stub.get() == w.now_ms() + 3000

            async def after_commit(o: Any) -> None:
                captured: list[Any] = []

                async def body(txn: Any) -> None:
                    captured.append(txn)

                await o.ctx.storage.transaction(body)
                await captured[0].get_alarm()  # refused when awaited (issue 10 §2)

            with pytest.raises(StorageError, match="already committed"):
                await inside(w.ns, "a", after_commit)

    asyncio.run(main())


# -- the index -----------------------------------------------------------------------


def test_index_rows_move_earlier_at_once_and_later_only_when_checked(tmp_path: Path) -> None:
    async def main() -> None:
        async with world(tmp_path) as w:
            stub = w.ns.get_by_name("a")
            t0 = w.now_ms()
            await stub.set(t0 + 10_000)
            assert w.index() == {"a": t0 + 10_000}
            await stub.set(t0 + 5_000)  # earlier: the row moves with the write
            assert w.index() == {"a": t0 + 5_000}
            await stub.set(t0 + 20_000)  # later: the row stays early (never later)
            assert w.index() == {"a": t0 + 5_000}
            w.evict("a")
            log.clear()
            await w.advance(5)  # the early row comes due: the file is read, not constructed
            assert log == []
            assert w.index() == {"a": t0 + 20_000}
            await stub.delete()
            w.evict("a")
            log.clear()
            await w.advance(15)  # the stale row is dropped, still without constructing
            assert log == [] and w.index() == {} and w.scheduler.pending == 0

    asyncio.run(main())


def test_index_holds_one_row_per_object_and_alarms_fire_in_time_order(tmp_path: Path) -> None:
    async def main() -> None:
        async with world(tmp_path) as w:
            t0 = w.now_ms()
            names = [f"o{i}" for i in range(30)]
            order = list(range(30))
            random.Random(3).shuffle(order)
            for name, k in zip(names, order, strict=True):
                await w.ns.get_by_name(name).set(t0 + 1000 + 100 * k)
            assert len(w.index()) == 30
            scripts.update({name: lambda o, info: log.append(("t", w.now_ms())) for name in names})
            for _ in range(40):
                await w.advance(0.1)
            fired = [entry[1] for entry in log if entry[0] == "t"]
            assert fired == sorted(fired) and len(fired) == 30
            assert w.index() == {}

    asyncio.run(main())


def test_alarms_work_under_fsync_durability(tmp_path: Path) -> None:
    async def main() -> None:
        async with world(tmp_path, durability=Durability.FSYNC) as w:
            stub = w.ns.get_by_name("a")
            when = w.now_ms() + 1000
            await stub.set(when)
            # Read from another connection: the row and the alarm are both committed.
            assert w.index() == {"a": when}
            await w.advance(1)
            assert len(alarms_of("a")) == 1

    asyncio.run(main())


class _Recorder:
    """A committable that records what the committer does with it."""

    def __init__(self, order: list[str]) -> None:
        self.order = order
        self.failed: BaseException | None = None

    def commit_batch(self) -> Batch | None:
        self.order.append("object commit")
        return Batch(asyncio.get_running_loop())

    @property
    def sync_file(self) -> _Recorder:
        return self

    # What storage.syncing needs of a file: this one records its sync.
    device = 0
    sync_fd = -1

    def sync(self) -> None:
        self.order.append("object sync")

    def synced_with_filesystem(self) -> None:
        self.order.append("object synced with its filesystem")

    def batch_failed(self, batch: Batch | None, error: BaseException) -> None:
        self.failed = error


def test_committer_runs_first_commits_before_object_batches() -> None:
    async def main() -> None:
        committer = Committer(durability=Durability.FSYNC)
        order: list[str] = []
        storage = _Recorder(order)
        committer.enqueue(storage)
        committer.enqueue_first(lambda sync: order.append(f"index commit sync={sync}"))
        await asyncio.sleep(0)
        assert order == ["index commit sync=True", "object commit", "object sync"]

        def broken(sync: bool) -> None:
            raise OSError("disk full")

        order.clear()
        committer.enqueue(storage)
        committer.enqueue_first(broken)
        await asyncio.sleep(0)
        assert order == []  # no object batch commits past a failed index commit
        assert isinstance(storage.failed, OSError)
        await committer.close()

    asyncio.run(main())


# -- restarts --------------------------------------------------------------------------


def test_129_alarms_survive_a_restart_and_late_ones_fire_at_once(tmp_path: Path) -> None:
    async def main() -> None:
        clock = FakeClock()
        async with world(tmp_path, clock=clock) as w:
            t0 = w.now_ms()
            await w.ns.get_by_name("soon").set(t0 + 10_000)
            await w.ns.get_by_name("late").set(t0 + 1_000)
            await w.ns.get_by_name("gone").set(t0 + 1_000)
            await w.ns.get_by_name("gone").delete()
        assert log and not alarms_of("soon")
        await clock.advance(5)  # down: "late" is now overdue
        log.clear()
        async with world(tmp_path, clock=clock) as w:
            assert w.scheduler.pending == 3  # read from the index, no object file opened
            await w.advance(0)
            assert [entry[1] for entry in log if entry[0] == "alarm"] == ["late"]
            assert ("init", "gone") not in log  # a stale row never constructs its object
            await w.advance(5)
            assert [entry[1] for entry in log if entry[0] == "alarm"] == ["late", "soon"]
            assert w.index() == {}

    asyncio.run(main())


def test_129_alarms_survive_eviction(tmp_path: Path) -> None:
    async def main() -> None:
        async with world(tmp_path) as w:
            await w.ns.get_by_name("a").set(w.now_ms() + 60_000)
            w.evict("a")
            await w.advance(60)
            assert len(alarms_of("a")) == 1

    asyncio.run(main())


def test_rows_of_unknown_classes_are_dropped_at_start(tmp_path: Path) -> None:
    async def main() -> None:
        async with world(tmp_path, Alarmed, NoArgument) as w:
            await w.ns.get_by_name("a").set(w.now_ms() + 60_000)
            await w.namespaces[1].get_by_name("b").set(w.now_ms() + 60_000)
        async with world(tmp_path, Alarmed, start=False) as w:
            assert w.scheduler.pending == 1
            assert set(w.index()) == {"a"}

    asyncio.run(main())


def test_namespace_key_follows_the_secret_not_the_class_name(tmp_path: Path) -> None:
    a = make_namespace(tmp_path, Alarmed, secret=b"s1")._class
    renamed = make_namespace(tmp_path, NoArgument, secret=b"s1")._class
    other = make_namespace(tmp_path, Alarmed, secret=b"s2")._class
    assert namespace_key(a) == namespace_key(renamed) != namespace_key(other)
    assert len(namespace_key(a)) == 32
    with pytest.raises(ValueError, match="share a namespace secret"):
        AlarmScheduler(
            tmp_path / "alarms.sqlite",
            {"A": a, "B": renamed},
            settings=a.settings,
            committer=a.committer,
        )


# -- a project: classes without a binding still get their alarms ----------------------

PROJECT = """
name = "app"
main = "worker.py"
{binding}
[[migrations]]
tag = "v1"
new_sqlite_classes = ["Thing"]
"""
BINDING = """
[[durable_objects.bindings]]
name = "THING"
class_name = "Thing"
"""
WORKER = """
from objectd import DurableObject, Response, WorkerEntrypoint

FIRED = []

class Thing(DurableObject):
    async def alarm(self, info):
        FIRED.append((str(self.ctx.id), info.scheduled_time))

    async def fetch(self, request):
        when = int(request.url.rsplit("=", 1)[1])
        await self.ctx.storage.set_alarm(when)
        return Response(str(await self.ctx.storage.get_alarm()))

class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return await self.env.THING.get_by_name("x").fetch(request)
"""


def test_alarms_of_an_unbound_class_fire_after_restart(tmp_path: Path) -> None:
    root = tmp_path / "app"
    root.mkdir()
    (root / "worker.py").write_text(textwrap.dedent(WORKER))
    (root / "wrangler.toml").write_text(PROJECT.format(binding=BINDING))
    clock = FakeClock()
    settings = RuntimeSettings(clock=clock)
    when = int(clock.now() * 1000) + 30_000

    async def first() -> None:
        sys.modules.pop("worker", None)
        project = Project.load(root, settings=settings, durability=Durability.PROCESS)
        await project.start()
        try:
            response = await project.fetch(Request(f"http://app/?when={when}"))
            assert await response.text() == str(when)
        finally:
            await project.close()

    async def second() -> None:
        sys.modules.pop("worker", None)
        (root / "wrangler.toml").write_text(PROJECT.format(binding=""))
        project = Project.load(root, settings=settings, durability=Durability.PROCESS)
        assert "THING" not in project.env
        await project.start()
        try:
            await clock.advance(30)
            for _ in range(200):
                if project.module.FIRED:
                    break
                await asyncio.sleep(0)
            assert [t for _, t in project.module.FIRED] == [when]
        finally:
            await project.close()
        assert project.alarms is not None and project.alarms.pending == 0

    asyncio.run(first())
    asyncio.run(second())
    sys.modules.pop("worker", None)
