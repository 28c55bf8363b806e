"""Objects, events, RPC, gates and resets, in process on real SQLite files (spec §2-4, §6)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from runtime_kit import RecordingSyncer, make_namespace, run_in

from objectd.errors import (
    DurableObjectAbort,
    DurableObjectError,
    ObjectResetError,
    OverloadedError,
    RpcError,
    SerializationError,
)
from objectd.fetch import Request, Response
from objectd.runtime.clock import FakeClock
from objectd.runtime.committer import Committer, Durability
from objectd.runtime.namespace import RpcMethod
from objectd.runtime.objects import DurableObject
from objectd.runtime.settings import RuntimeSettings

constructed: list[str] = []


class Counter(DurableObject):
    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        constructed.append(ctx.id.to_string())
        self.memory = 0
        self.handler = lambda: "own attribute"
        self.seen: list[int] = []

    async def increment(self, by: int = 1) -> int:
        value = (await self.ctx.storage.get("value") or 0) + by
        await self.ctx.storage.put("value", value)
        return value

    def sync_method(self, x: int) -> int:
        return x * 2

    def bump_memory(self) -> int:
        self.memory += 1
        return self.memory

    async def record(self, n: int, pause: bool = False) -> int:
        if pause:
            await asyncio.sleep(0)
        self.seen.append(n)
        return n

    def get_seen(self) -> list[int]:
        return self.seen

    def mutate(self, data: dict[str, Any]) -> dict[str, Any]:
        data["added"] = True
        return data

    def fail(self) -> None:
        raise ValueError("bad input: 7")

    def give_tuple(self) -> Any:
        return (1, 2)

    def abort_now(self, reason: str | None = None) -> None:
        self.ctx.abort(reason)

    def abort_under_except_exception(self) -> str:
        try:
            self.ctx.abort("not swallowed")
        except Exception:  # what a handler's catch-all would do: the abort passes through
            return "swallowed"
        return "not reached"

    async def put_then_abort(self) -> None:
        await self.ctx.storage.put("aborted-write", 1)
        self.ctx.abort("stop here")

    async def read(self, key: str) -> Any:
        return await self.ctx.storage.get(key)

    attribute = 5

    async def fetch(self, request: Request) -> Response:
        return Response(f"{request.method} {request.url}")


@pytest.fixture(autouse=True)
def _clear() -> None:
    constructed.clear()


def test_016_034_038_constructor_runs_on_first_call_only(tmp_path: Path) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Counter)
        object_id = ns.id_from_name("a")
        stub = ns.get(object_id)
        assert constructed == []  # checklist 16: an id or stub creates nothing
        assert await stub.bump_memory() == 1
        assert await stub.bump_memory() == 2
        assert constructed == [object_id.to_string()]  # checklist 34/38

        def check(instance: Any) -> Any:
            assert instance.ctx.id == object_id
            assert instance.ctx.id.name == "a"
            assert instance.env is None
            return asyncio.sleep(0)

        await run_in(stub, check)

    asyncio.run(main())


def test_017_stub_id_and_name(tmp_path: Path) -> None:
    ns = make_namespace(tmp_path, Counter)
    object_id = ns.id_from_name("x")
    stub = ns.get(object_id)
    assert stub.id.equals(object_id)
    assert stub.name == "x"
    assert ns.get_by_name("x").id == object_id  # checklist 11


def test_020_rpc_on_sync_and_async_methods(tmp_path: Path) -> None:
    async def main() -> None:
        stub = make_namespace(tmp_path, Counter).get_by_name("a")
        assert await stub.sync_method(21) == 42
        assert await stub.increment(2) == 2
        assert await stub.increment() == 3
        # camelCase spelling reaches the snake_case method (Cloudflare callers).
        assert await stub.syncMethod(1) == 2

    asyncio.run(main())


@pytest.mark.parametrize(
    "name",
    [
        "fetch",
        "alarm",
        "webSocketMessage",
        "webSocketClose",
        "webSocketError",
        "web_socket_message",
        "constructor",
        "dup",
    ],
)
def test_021_reserved_methods(tmp_path: Path, name: str) -> None:
    async def main() -> None:
        stub = make_namespace(tmp_path, Counter).get_by_name("a")
        with pytest.raises(RpcError, match=f"'{name}' is a reserved method"):
            # stub.fetch is the HTTP method; RpcMethod reaches "fetch" as an RPC name.
            await RpcMethod(stub, name)()

    asyncio.run(main())


def test_022_023_unknown_method_and_own_attributes(tmp_path: Path) -> None:
    async def main() -> None:
        stub = make_namespace(tmp_path, Counter).get_by_name("a")
        with pytest.raises(TypeError, match='does not implement the method "nope"'):
            await stub.nope()
        with pytest.raises(RpcError, match='does not implement the method "handler"'):
            await stub.handler()  # checklist 23: set in the constructor
        with pytest.raises(RpcError, match='does not implement the method "_private"'):
            await stub._private()
        with pytest.raises(RpcError, match='"attribute" is not a function'):
            await stub.attribute()

    asyncio.run(main())


def test_024_rpc_copies_arguments_and_results(tmp_path: Path) -> None:
    async def main() -> None:
        stub = make_namespace(tmp_path, Counter).get_by_name("a")
        data = {"nested": [1, {"x": b"bytes"}]}
        result = await stub.mutate(data)
        assert result == {"nested": [1, {"x": b"bytes"}], "added": True}
        assert "added" not in data  # the object got a copy

    asyncio.run(main())


def test_025_164_unserializable_arguments_and_results(tmp_path: Path) -> None:
    async def main() -> None:
        stub = make_namespace(tmp_path, Counter).get_by_name("a")
        with pytest.raises(TypeError, match="tuple"):
            await stub.mutate((1, 2))
        with pytest.raises(SerializationError, match="Counter"):
            await stub.mutate(Counter.__new__(Counter))
        with pytest.raises(TypeError, match="tuple") as info:
            await stub.give_tuple()
        assert info.value.remote is True

    asyncio.run(main())


def test_027_151_exception_reaches_caller_without_reset(tmp_path: Path) -> None:
    async def main() -> None:
        stub = make_namespace(tmp_path, Counter).get_by_name("a")
        assert await stub.bump_memory() == 1
        with pytest.raises(ValueError, match="bad input: 7") as info:
            await stub.fail()
        error = info.value
        assert type(error).__name__ == "ValueError"
        assert isinstance(error, DurableObjectError)
        assert error.remote is True
        assert error.durable_object_reset is False
        # checklist 151: no reset; in-memory state survives and the stub still works.
        assert await stub.bump_memory() == 2
        assert len(constructed) == 1

    asyncio.run(main())


def test_031_calls_through_one_stub_arrive_in_order(tmp_path: Path) -> None:
    async def main() -> None:
        stub = make_namespace(tmp_path, Counter).get_by_name("a")
        pending = [stub.record(i, pause=(i % 3 == 0)) for i in range(30)]
        # Await them in reverse: delivery order is call order, not await order.
        for call in reversed(pending):
            await call
        seen = await stub.get_seen()
        # Calls may interleave only where a handler awaits (pause), but they start in order.
        starts = sorted(range(30), key=lambda i: i)
        assert sorted(seen) == starts
        assert [n for n in seen if n % 3] == [n for n in starts if n % 3]

    asyncio.run(main())


def test_043_044_150_abort_resets_and_discards_uncommitted_writes(tmp_path: Path) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Counter)
        stub = ns.get_by_name("a")
        assert await stub.bump_memory() == 1
        with pytest.raises(ObjectResetError, match="stop here") as info:
            await stub.put_then_abort()
        assert info.value.durable_object_reset is True
        # checklist 32: this stub saw a reset and stays broken; a new stub works.
        with pytest.raises(ObjectResetError, match="stop here"):
            await stub.bump_memory()
        fresh = ns.get_by_name("a")
        assert await fresh.read("aborted-write") is None  # discarded, never committed
        assert await fresh.bump_memory() == 1  # checklist 150: memory is gone
        assert len(constructed) == 2
        with pytest.raises(ObjectResetError) as default:
            await ns.get_by_name("a").abort_now()
        assert str(default.value) == "Application called abort() to reset Durable Object."

    asyncio.run(main())


def test_165_abort_is_a_base_exception(tmp_path: Path) -> None:
    """``except Exception`` in the handler cannot swallow it; a new instance serves next."""
    assert not issubclass(DurableObjectAbort, Exception)

    async def main() -> None:
        ns = make_namespace(tmp_path, Counter)
        stub = ns.get_by_name("a")
        assert await stub.bump_memory() == 1
        with pytest.raises(ObjectResetError, match="^not swallowed$"):
            await stub.abort_under_except_exception()
        assert await ns.get_by_name("a").bump_memory() == 1  # a new instance

    asyncio.run(main())


def test_1000_concurrent_increments_lose_nothing(tmp_path: Path) -> None:
    # Issue 2 §7: get-then-put from 1,000 concurrent callers gives exactly 1..1000.
    async def main() -> None:
        ns = make_namespace(tmp_path, Counter)
        results = await asyncio.gather(*(ns.get_by_name("hot").increment() for _ in range(1000)))
        assert sorted(results) == list(range(1, 1001))
        assert await ns.get_by_name("hot").read("value") == 1000

    asyncio.run(main())


class Blocking(DurableObject):
    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        self.log: list[str] = []
        self.loaded = ctx.block_concurrency_while(self._load)

    async def _load(self) -> str:
        for _ in range(5):
            await asyncio.sleep(0)
        self.log.append("loaded")
        return "state"

    async def event(self, name: str) -> list[str]:
        self.log.append(name)
        return list(self.log)

    async def critical(self, fail: bool = False) -> Any:
        async def section() -> str:
            self.log.append("critical-start")
            for _ in range(5):
                await asyncio.sleep(0)
            if fail:
                raise RuntimeError("section failed")
            self.log.append("critical-end")
            return "result"

        return await self.ctx.block_concurrency_while(section)

    def loaded_result(self) -> Any:
        return self.loaded.result()


def test_036_039_040_block_concurrency_while(tmp_path: Path) -> None:
    async def main() -> None:
        stub = make_namespace(tmp_path, Blocking).get_by_name("a")
        # checklist 36: the constructor's critical section finishes before any event.
        assert await stub.event("first") == ["loaded", "first"]
        assert await stub.loaded_result() == "state"
        # checklist 39/40: other calls queue behind a critical section.
        section = stub.critical()
        other = stub.event("other")
        assert await section == "result"  # checklist 39
        log = await other
        assert log.index("other") > log.index("critical-end")

    asyncio.run(main())


def test_041_failing_critical_section_resets(tmp_path: Path) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Blocking)
        stub = ns.get_by_name("a")
        await stub.event("warm")
        with pytest.raises(RuntimeError, match="section failed"):
            await stub.critical(fail=True)
        # The object was reset: a new instance starts with a fresh log.
        assert await ns.get_by_name("a").event("after") == ["loaded", "after"]

    asyncio.run(main())


def test_042_critical_section_timeout(tmp_path: Path) -> None:

    class Hangs(DurableObject):
        async def hang(self) -> None:
            await self.ctx.block_concurrency_while(asyncio.Event().wait)

    async def main() -> None:
        clock = FakeClock()
        stub = make_namespace(tmp_path, Hangs, settings=RuntimeSettings(clock=clock)).get_by_name(
            "a"
        )
        call = asyncio.ensure_future(stub.hang())
        await clock.advance(29.9)  # the 30 s limit is on the injected clock: no real wait
        assert not call.done()
        await clock.advance(0.1)
        with pytest.raises(OverloadedError, match="waited for too long") as info:
            await call
        assert info.value.overloaded is True
        assert info.value.durable_object_reset is True

    asyncio.run(main())


class Failing(DurableObject):
    attempts = 0

    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        type(self).attempts += 1
        if type(self).attempts == 1:
            raise KeyError("constructor broke")

    def ok(self) -> str:
        return "ok"


def test_037_constructor_exception(tmp_path: Path) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Failing)
        with pytest.raises(KeyError) as info:
            await ns.get_by_name("a").ok()
        assert info.value.remote is True  # type: ignore[attr-defined]
        assert await ns.get_by_name("a").ok() == "ok"  # the next call constructs again
        assert Failing.attempts == 2

    asyncio.run(main())


class Writer(DurableObject):
    async def write(self, key: str, *, unconfirmed: bool = False) -> str:
        await self.ctx.storage.put(key, 1, allow_unconfirmed=unconfirmed)
        return "written"

    async def write_then_call(self, other: str) -> Any:
        self.ctx.storage.put("mine", 1)  # not awaited: coalesced with the turn
        return await self.env.get_by_name(other).write("theirs")

    async def write_and_sync(self) -> bool:
        await self.ctx.storage.put("k", 1, allow_unconfirmed=True)
        await self.ctx.storage.sync()
        return True


async def _until_blocked(task: asyncio.Future[Any]) -> None:
    for _ in range(50):
        await asyncio.sleep(0)
    assert not task.done(), "the output was released before its write was durable"


def test_033_070_held_and_unconfirmed_outputs(tmp_path: Path) -> None:
    async def main() -> None:
        syncer = RecordingSyncer()
        committer = Committer(syncer=syncer)
        ns = make_namespace(tmp_path, Writer, committer=committer)
        await ns.get_by_name("a").write("warm")
        await ns.get_by_name("b").write("warm")
        syncer.release.clear()
        # Two dirty objects in one turn: their syncs go to the thread pool and hang there.
        held = asyncio.ensure_future(ns.get_by_name("a").write("k"))
        unconfirmed = asyncio.ensure_future(ns.get_by_name("b").write("k", unconfirmed=True))
        assert await unconfirmed == "written"  # checklist 70: not held by its write
        await _until_blocked(held)  # checklist 33: held until durable
        syncer.release.set()
        assert await held == "written"

    asyncio.run(main())


def test_069_sync_waits_for_unconfirmed_writes(tmp_path: Path) -> None:
    async def main() -> None:
        syncer = RecordingSyncer()
        ns = make_namespace(tmp_path, Writer, committer=Committer(syncer=syncer))
        await ns.get_by_name("a").write("warm")
        await ns.get_by_name("b").write("warm")
        syncer.release.clear()
        other = asyncio.ensure_future(ns.get_by_name("b").write("x"))
        call = asyncio.ensure_future(ns.get_by_name("a").write_and_sync())
        await _until_blocked(call)
        syncer.release.set()
        assert await call is True
        await other

    asyncio.run(main())


def test_071_failed_write_drops_output_and_resets(tmp_path: Path) -> None:
    async def main() -> None:
        syncer = RecordingSyncer()
        ns = make_namespace(tmp_path, Counter, committer=Committer(syncer=syncer))
        stub = ns.get_by_name("a")
        assert await stub.bump_memory() == 1
        syncer.fail_with = OSError(5, "Input/output error")
        with pytest.raises(ObjectResetError, match="Input/output error") as info:
            await stub.increment()
        assert info.value.durable_object_reset is True
        syncer.fail_with = None
        fresh = ns.get_by_name("a")
        assert await fresh.bump_memory() == 1  # the object was reset
        assert len(constructed) == 2

    asyncio.run(main())


def test_075_outgoing_call_waits_for_callers_write(tmp_path: Path) -> None:
    async def main() -> None:
        syncer = RecordingSyncer()
        ns = make_namespace(tmp_path, Writer, committer=Committer(syncer=syncer))
        ns._class.env = ns
        await ns.get_by_name("a").write("warm")
        await ns.get_by_name("b").write("warm")
        await ns.get_by_name("c").write("warm")
        syncer.release.clear()
        # "c" keeps a second object dirty in the same turn, so syncs go to the pool.
        side = asyncio.ensure_future(ns.get_by_name("c").write("k"))
        call = asyncio.ensure_future(ns.get_by_name("a").write_then_call("b"))
        await _until_blocked(call)
        syncer.release.set()
        assert await call == "written"
        await side

    asyncio.run(main())


class Caller(DurableObject):
    async def slow_call(self, other: str) -> str:
        await self.env.get_by_name(other).pause()
        return "slow done"

    async def pause(self) -> None:
        for _ in range(10):
            await asyncio.sleep(0)

    def quick(self) -> str:
        return "quick"


def test_074_requests_interleave_during_outbound_calls(tmp_path: Path) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Caller)
        ns._class.env = ns
        stub = ns.get_by_name("a")
        slow = asyncio.ensure_future(stub.slow_call("b"))
        quick = await stub.quick()
        assert quick == "quick"
        assert not slow.done()
        assert await slow == "slow done"

    asyncio.run(main())


def test_018_019_stub_fetch(tmp_path: Path) -> None:
    async def main() -> None:
        stub = make_namespace(tmp_path, Counter).get_by_name("a")
        with pytest.raises(TypeError, match="Fetch API cannot load: relative"):
            await stub.fetch("relative")
        response = await stub.fetch("http://x/y")
        assert await response.text() == "GET http://x/y"
        response = await stub.fetch("http://x/z", method="POST", body="b")
        assert await response.text() == "POST http://x/z"
        response = await stub.fetch("http://x/w", {"method": "PUT", "body": "b"})
        assert await response.text() == "PUT http://x/w"

    asyncio.run(main())


def test_process_durability_does_not_sync(tmp_path: Path) -> None:
    async def main() -> None:
        syncer = RecordingSyncer()
        committer = Committer(durability=Durability.PROCESS, syncer=syncer)
        stub = make_namespace(tmp_path, Counter, committer=committer).get_by_name("a")
        assert await stub.increment() == 1
        assert syncer.synced == 0
        assert committer.commits == 1  # the one put of the one increment

    asyncio.run(main())


class Stubborn(DurableObject):
    cancels = 0

    async def wait_forever(self) -> None:
        while True:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                Stubborn.cancels += 1  # swallowed, as a careless handler does


def test_close_abandons_an_event_that_swallows_its_reset(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An object's event cancelled by a reset (the test kit's teardown, a code update)
    that catches CancelledError and goes on no longer holds the shutdown up: close waits
    ``cancel_wait_s`` for it, then stops it and closes the file."""
    ns = make_namespace(tmp_path, Stubborn, settings=RuntimeSettings(cancel_wait_s=0.05))
    things = ns._class

    async def main() -> str | None:
        stub = ns.get_by_name("a")
        call = stub.wait_forever()
        await asyncio.sleep(0.05)  # it runs, and waits
        host = things.hosts[stub.id]
        host.reset(ObjectResetError("reset for the test"))
        await asyncio.wait_for(things.close(), timeout=10)
        # The abandoned event has ended: its coroutine was closed under it.
        with pytest.raises(RuntimeError, match="cannot reuse already awaited coroutine"):
            await asyncio.wait_for(call, timeout=10)
        return None if host.storage is None else "storage still open"

    assert asyncio.run(main()) is None
    assert Stubborn.cancels == 1
    assert "abandoning 1 task(s) that ignored their cancellation" in caplog.text
