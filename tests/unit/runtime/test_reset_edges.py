"""Edge cases of resets, gates and the output gate found in review.

Spec §6; checklist 31-33, 43, 71, 75.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
from runtime_kit import kit_watchdog, make_namespace, run_in

from objectd.errors import DurableObjectError, ObjectResetError, StorageError
from objectd.runtime.gates import InputGate
from objectd.runtime.objects import DurableObject


def test_031_woken_waiter_is_not_overtaken_by_a_newcomer() -> None:
    async def main() -> list[int]:
        gate = InputGate()
        order: list[int] = []
        gate.lock()

        async def event(n: int) -> None:
            await gate.enter()
            order.append(n)

        first = asyncio.ensure_future(event(1))
        await asyncio.sleep(0)  # event 1 waits at the gate

        async def unlock_then_arrive() -> None:
            gate.unlock()  # event 1 is released but has not run yet
            await event(2)  # arrives in the same step: must queue behind 1

        await asyncio.gather(first, unlock_then_arrive())
        return order

    assert asyncio.run(main()) == [1, 2]


class Peer(DurableObject):
    async def hello(self) -> str:
        await self.ctx.storage.put("callee-ran", True)
        return "hi"

    async def ran(self) -> Any:
        return await self.ctx.storage.get("callee-ran")

    async def write_call_abort(self, other: str) -> None:
        self.ctx.storage.put("x", 1)
        self.held = self.env.get_by_name(other).hello()  # held behind the write above
        self.ctx.abort("boom")

    async def read(self, key: str) -> Any:
        return await self.ctx.storage.get(key)

    async def zombie(self) -> None:
        kv = self.ctx.storage.kv
        sql = self.ctx.storage.sql
        try:
            self.ctx.abort("reset now")
        finally:
            # The reset instance's storage view must refuse; its writes must not reach the
            # next instance's batch.
            for attempt in (lambda: kv.put("zombie", 1), lambda: sql.exec("CREATE TABLE z (v)")):
                with pytest.raises(StorageError, match="no longer accessible"):
                    attempt()

    async def call_in_transaction(self, other: str) -> str:
        async def closure(txn: Any) -> str:
            await txn.put("k", 1)
            reply: str = await self.env.get_by_name(other).hello()
            return reply

        result: str = await self.ctx.storage.transaction(closure)
        return result

    async def acked_then_sql_abort(self) -> str:
        self.ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS t (v UNIQUE)")
        self.ctx.storage.sql.exec("INSERT OR IGNORE INTO t VALUES (1)")
        await self.ctx.storage.put("acked", "yes")
        # The app ignores the SQL error; its earlier put is gone all the same.
        with contextlib.suppress(StorageError):
            self.ctx.storage.sql.exec("INSERT OR ROLLBACK INTO t VALUES (1)")
        return "ok"


def test_043_071_abort_drops_outgoing_call_held_behind_discarded_write(tmp_path: Path) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Peer)
        ns._class.env = ns
        with pytest.raises(ObjectResetError, match="boom"):
            await ns.get_by_name("a").write_call_abort("b")
        await asyncio.sleep(0.05)
        assert await ns.get_by_name("a").read("x") is None
        assert await ns.get_by_name("b").ran() is None  # the held call never left

    asyncio.run(main())


def test_043_reset_instance_cannot_write_into_its_successor(tmp_path: Path) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Peer)
        with pytest.raises(ObjectResetError, match="reset now"):
            await ns.get_by_name("a").zombie()
        assert await ns.get_by_name("a").read("zombie") is None

    asyncio.run(main())


def test_075_outgoing_call_inside_transaction_does_not_deadlock(tmp_path: Path) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Peer)
        ns._class.env = ns
        reply = await asyncio.wait_for(ns.get_by_name("a").call_in_transaction("b"), 10)
        assert reply == "hi"
        assert await ns.get_by_name("a").read("k") == 1

    asyncio.run(main())


def test_071_sql_that_ends_the_batch_fails_it_instead_of_losing_writes(tmp_path: Path) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Peer)
        with pytest.raises(DurableObjectError, match="earlier SQL critical error") as info:
            await ns.get_by_name("a").acked_then_sql_abort()
        assert info.value.durable_object_reset is True
        # Nothing was acknowledged, and nothing half-done is stored.
        assert await ns.get_by_name("a").read("acked") is None

    asyncio.run(main())


class SpinningConstructor(DurableObject):
    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        if ctx.id.name == "spin":
            while True:
                pass

    def ok(self) -> str:
        return "ok"


def test_cpu_limit_in_constructor_resets_that_object(tmp_path: Path) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, SpinningConstructor)
        watchdog = kit_watchdog()
        watchdog.start()
        try:
            with pytest.raises(ObjectResetError, match="Worker exceeded CPU time limit."):
                await ns.get_by_name("spin").ok()
            assert await ns.get_by_name("fine").ok() == "ok"
        finally:
            watchdog.stop()

    asyncio.run(main())


def test_reset_events_not_yet_started_get_the_reset_error(tmp_path: Path) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Peer)
        stub = ns.get_by_name("a")
        await stub.read("warm")
        calls = [stub.read("k") for _ in range(3)]
        host = ns._class.hosts[stub.id]
        host.reset(ObjectResetError("reset by test"))
        for call in calls:
            with pytest.raises(ObjectResetError, match="reset by test"):
                await call

    asyncio.run(main())


def test_run_in_still_works_after_review_fixes(tmp_path: Path) -> None:
    async def main() -> Any:
        ns = make_namespace(tmp_path, Peer)
        return await run_in(ns.get_by_name("a"), lambda instance: asyncio.sleep(0, "done"))

    assert asyncio.run(main()) == "done"
