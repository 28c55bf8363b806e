"""Eviction, the live-object cap, overload and limits (spec §9, §11; issue 3 §2-3)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from runtime_kit import RecordingSyncer, kit_watchdog, make_namespace

from objectd.errors import ObjectResetError, OverloadedError
from objectd.runtime.clock import FakeClock
from objectd.runtime.committer import Committer
from objectd.runtime.host import ObjectHost
from objectd.runtime.objects import DurableObject
from objectd.runtime.phase import HostPhase
from objectd.runtime.settings import RuntimeSettings


class Memory(DurableObject):
    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        self.memory = 0
        self.gate = asyncio.Event()

    async def bump(self) -> int:
        self.memory += 1
        stored = (await self.ctx.storage.get("stored") or 0) + 1
        await self.ctx.storage.put("stored", stored)
        return self.memory * 1000 + stored

    async def wait_for_gate(self) -> str:
        await self.gate.wait()
        return "released"

    def open_gate(self) -> None:
        self.gate.set()

    def spin(self) -> None:
        while True:
            pass

    def ok(self) -> str:
        return "ok"


def test_149_150_idle_object_is_evicted_and_storage_kept(tmp_path: Path) -> None:
    async def main() -> None:
        clock = FakeClock()
        settings = RuntimeSettings(idle_timeout_s=10.0, clock=clock)
        ns = make_namespace(tmp_path, Memory, settings=settings, lifecycle=True)
        lifecycle = ns._class.lifecycle
        assert lifecycle is not None
        assert await ns.get_by_name("a").bump() == 1001
        await clock.advance(5)
        assert lifecycle.reap() == 0  # idle for 5 s only
        assert await ns.get_by_name("a").bump() == 2002
        await clock.advance(10)
        assert lifecycle.reap() == 1
        assert ns._class.hosts == {}  # its file is closed and its host is gone
        # checklist 150: in-memory state is gone, storage is not.
        assert await ns.get_by_name("a").bump() == 1003

    asyncio.run(main())


def test_eviction_runs_on_its_own_clock(tmp_path: Path) -> None:
    async def main() -> None:
        clock = FakeClock()
        settings = RuntimeSettings(idle_timeout_s=10.0, clock=clock)
        ns = make_namespace(tmp_path, Memory, settings=settings, lifecycle=True)
        lifecycle = ns._class.lifecycle
        assert lifecycle is not None
        reaper = asyncio.ensure_future(lifecycle.run())
        try:
            await ns.get_by_name("a").bump()
            await clock.advance(12)
            assert lifecycle.evictions == 1
        finally:
            reaper.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reaper

    asyncio.run(main())


def test_busy_object_is_not_evicted(tmp_path: Path) -> None:
    async def main() -> None:
        clock = FakeClock()
        settings = RuntimeSettings(idle_timeout_s=10.0, clock=clock)
        ns = make_namespace(tmp_path, Memory, settings=settings, lifecycle=True)
        lifecycle = ns._class.lifecycle
        assert lifecycle is not None
        stub = ns.get_by_name("a")
        waiting = asyncio.ensure_future(stub.wait_for_gate())
        await asyncio.sleep(0)
        await clock.advance(60)
        assert lifecycle.reap() == 0
        await stub.open_gate()
        assert await waiting == "released"

    asyncio.run(main())


def test_live_object_cap_evicts_least_recently_used(tmp_path: Path) -> None:
    async def main() -> None:
        settings = RuntimeSettings(max_live_objects=3, clock=FakeClock())
        ns = make_namespace(tmp_path, Memory, settings=settings, lifecycle=True)
        lifecycle = ns._class.lifecycle
        assert lifecycle is not None
        for name in ["a", "b", "c", "d", "e"]:
            await ns.get_by_name(name).bump()
            # Let the last commit's sync settle so the object is quiescent (evictable).
            await asyncio.sleep(0)
        assert lifecycle.live_count == 3
        assert lifecycle.evictions == 2  # a and b, the least recently used
        live = {host.id.name for host in ns._class.hosts.values() if host.live}
        assert live == {"c", "d", "e"}
        assert await ns.get_by_name("a").bump() == 1002  # reloaded from its file

    asyncio.run(main())


def test_overloaded_queue(tmp_path: Path) -> None:
    async def main() -> None:
        settings = RuntimeSettings(max_queued_events=5)
        ns = make_namespace(tmp_path, Memory, settings=settings)
        stub = ns.get_by_name("a")
        waiting = [stub.wait_for_gate() for _ in range(5)]
        with pytest.raises(OverloadedError, match="Too many requests queued.") as info:
            await stub.ok()
        assert info.value.overloaded is True
        assert info.value.durable_object_reset is False
        with pytest.raises(OverloadedError):
            await stub.ok()  # this stub saw overload: it stays failed
        # The object itself is fine: its queue drains and a new stub works.
        host: ObjectHost = ns._class.hosts[stub.id]
        for _ in range(500):  # with events queued, its file opens in a worker thread
            if host.instance is not None:
                break
            await asyncio.sleep(0.01)
        host.instance.gate.set()
        assert [await call for call in waiting] == ["released"] * 5
        assert await ns.get_by_name("a").ok() == "ok"

    asyncio.run(main())


class Writer(DurableObject):
    async def write(self) -> str:
        await self.ctx.storage.put("k", 1)
        return "written"

    async def slow_transaction(self) -> str:
        async def body(txn: Any) -> None:
            await txn.put("k", 2)
            await asyncio.Event().wait()  # the transaction holds its batch open meanwhile

        await self.ctx.storage.transaction(body)
        return "committed"

    async def read(self) -> Any:
        return await self.ctx.storage.get("k")


def test_076_output_gate_timeout_resets(tmp_path: Path) -> None:
    async def main() -> None:
        syncer = RecordingSyncer()
        clock = FakeClock()
        settings = RuntimeSettings(clock=clock)
        ns = make_namespace(tmp_path, Writer, settings=settings, committer=Committer(syncer=syncer))
        await ns.get_by_name("a").write()
        await ns.get_by_name("b").write()
        syncer.release.clear()  # two dirty objects: their syncs hang in the pool
        first = asyncio.ensure_future(ns.get_by_name("a").write())
        second = asyncio.ensure_future(ns.get_by_name("b").write())
        await clock.advance(29.9)  # the 30 s limit is on the injected clock: no real wait
        assert not first.done() and not second.done()
        await clock.advance(0.1)
        for call in (first, second):
            with pytest.raises(
                OverloadedError, match="exceeded timeout which caused object to be reset"
            ):
                await call
        assert first.exception().durable_object_reset is True  # type: ignore[union-attr]
        syncer.release.set()
        assert await ns.get_by_name("a").write() == "written"

    asyncio.run(main())


def test_cpu_limit_resets_only_the_spinning_object(tmp_path: Path) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Memory)
        watchdog = kit_watchdog()
        watchdog.start()
        try:
            assert await ns.get_by_name("other").bump() == 1001
            with pytest.raises(ObjectResetError, match="Worker exceeded CPU time limit.") as info:
                await ns.get_by_name("spinner").spin()
            assert info.value.remote is True
            assert watchdog.interruptions == 1
            assert await ns.get_by_name("spinner").ok() == "ok"
            assert await ns.get_by_name("other").bump() == 2002  # untouched
        finally:
            watchdog.stop()

    asyncio.run(main())


def test_076_a_transaction_holding_its_writes_too_long_resets(tmp_path: Path) -> None:
    async def main() -> None:
        clock = FakeClock()
        ns = make_namespace(tmp_path, Writer, settings=RuntimeSettings(clock=clock))
        assert await ns.get_by_name("a").write() == "written"
        call = asyncio.ensure_future(ns.get_by_name("a").slow_transaction())
        await clock.advance(29.9)
        assert not call.done()
        await clock.advance(0.1)  # the batch held open past the output gate's limit
        with pytest.raises(OverloadedError, match="exceeded timeout") as info:
            await call
        assert info.value.durable_object_reset is True
        assert await ns.get_by_name("a").read() == 1  # the transaction's write never landed

    asyncio.run(main())


class Counted(DurableObject):
    constructed = 0

    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        Counted.constructed += 1

    async def bump(self) -> int:
        value = (await self.ctx.storage.get("n") or 0) + 1
        await self.ctx.storage.put("n", value)
        return int(value)


def test_016_concurrent_first_events_open_the_file_once_off_the_loop(tmp_path: Path) -> None:
    async def main() -> None:
        Counted.constructed = 0
        ns = make_namespace(tmp_path, Counted)
        calls = [ns.get_by_name("new").bump() for _ in range(10)]
        host: ObjectHost = ns._class.hosts[ns.get_by_name("new").id]
        await asyncio.sleep(0)
        assert host.phase is HostPhase.OPENING  # ten events in flight: opens in a thread
        assert not host.can_evict()  # and the host stays until it is adopted
        assert sorted(await asyncio.gather(*calls)) == list(range(1, 11))
        assert Counted.constructed == 1 and host.activations == 1
        assert host.phase is HostPhase.LIVE

    asyncio.run(main())


def test_a_file_opened_for_events_that_were_reset_is_closed(tmp_path: Path) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Counted)
        stub = ns.get_by_name("gone")
        calls = [stub.bump() for _ in range(3)]
        host: ObjectHost = ns._class.hosts[stub.id]
        await asyncio.sleep(0)
        opening = host._ready
        assert host.phase is HostPhase.OPENING and opening is not None
        host.reset(ObjectResetError("reset while the file opens"))
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, ObjectResetError) for r in results)
        await asyncio.gather(opening, return_exceptions=True)
        await asyncio.sleep(0)
        # Not adopted by a host nobody is using: closed instead.
        assert host.phase is HostPhase.COLD and host._db is None
        assert await ns.get_by_name("gone").bump() == 1  # and the object opens again

    asyncio.run(main())


def test_016_110_events_arriving_while_the_file_opens_never_open_it_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event arriving on every loop turn while the file opens in a thread (issue 9 §1).

    One that arrived after the thread returned but before its connection was adopted used
    to open the file a second time on the loop.
    """
    opened: list[Path] = []
    real_open = ObjectHost._open_database

    def counting_open(host: ObjectHost) -> Any:
        db = real_open(host)
        opened.append(db.path)
        return db

    monkeypatch.setattr(ObjectHost, "_open_database", counting_open)

    async def main() -> None:
        ns = make_namespace(tmp_path, Counted)
        for round_ in range(20):
            stub = ns.get_by_name(f"new{round_}")
            # Four in flight: the open goes to a thread.
            calls = [asyncio.ensure_future(stub.bump()) for _ in range(4)]
            host: ObjectHost = ns._class.hosts[stub.id]
            for _ in range(10_000):  # one more event every loop turn until it is live
                calls.append(asyncio.ensure_future(stub.bump()))
                await asyncio.sleep(0)
                if host.instance is not None:
                    break
                await asyncio.sleep(0)
            values = await asyncio.gather(*calls)
            assert sorted(values) == list(range(1, len(values) + 1))
        assert len(opened) == len(set(opened)) == 20

    asyncio.run(main())
