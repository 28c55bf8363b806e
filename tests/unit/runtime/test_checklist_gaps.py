"""Checklist items that had no test or did not hold (spec §16), in process on real files."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from runtime_kit import make_namespace

from objectd.errors import DurableObjectError, ObjectResetError, RpcError, SqlError
from objectd.fetch import Request, Response
from objectd.runtime.clock import FakeClock
from objectd.runtime.namespace import RpcMethod
from objectd.runtime.objects import DurableObject
from objectd.runtime.settings import RuntimeSettings


class Named(DurableObject):
    def my_name(self) -> str | None:
        return self.ctx.id.name

    def my_id(self) -> str:
        return self.ctx.id.to_string()


def test_038_ctx_id_name_whichever_stub_came_first(tmp_path: Path) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Named)
        named = ns.id_from_name("room-1")
        by_string = ns.get(ns.id_from_string(named.to_string()))
        # Reached by its string alone, the object cannot know a name yet (spec §1.2).
        assert await by_string.my_name() is None
        # Reached by name: the id carries the name, so ctx.id has it from now on,
        # also for calls that come through the string stub again.
        assert await ns.get(named).my_name() == "room-1"
        assert await by_string.my_name() == "room-1"
        assert await by_string.my_id() == named.to_string()
        host = ns._class.hosts[named]
        assert host.can_evict()
        host.evict()
        # After eviction, first again through the string, then by name.
        assert await by_string.my_name() is None
        assert await ns.get_by_name("room-1").my_name() == "room-1"
        await ns._class.close()
        # After a restart (a new runtime on the same files).
        again = make_namespace(tmp_path, Named)
        assert await again.get(again.id_from_string(named.to_string())).my_name() is None
        assert await again.get_by_name("room-1").my_name() == "room-1"
        # A unique id never has a name.
        assert await again.get(again.new_unique_id()).my_name() is None
        await again._class.close()

    asyncio.run(main())


def test_038_long_names_are_not_seen_inside(tmp_path: Path) -> None:
    """Names over 1,024 bytes reach the object with ``ctx.id.name`` unset (spec §1.2)."""

    async def main() -> None:
        ns = make_namespace(tmp_path, Named)
        long = "é" * 513  # 1,026 bytes in UTF-8
        stub = ns.get_by_name(long)
        assert stub.name == long  # the client side keeps it
        assert await stub.my_name() is None
        assert await ns.get_by_name("é" * 512).my_name() == "é" * 512
        await ns._class.close()

    asyncio.run(main())


class Greeting:
    """A plain mixin, listed after DurableObject as JS-style code does."""

    def greet(self, who: str) -> str:
        return f"hello {who} from {type(self).__name__}"

    async def slow_greet(self, who: str) -> str:
        await asyncio.sleep(0)
        return self.greet(who)

    def _secret(self) -> str:
        return "private"

    async def fetch(self, request: Request) -> Response:  # a handler, not an RPC method
        return Response(f"mixin fetch {request.url}")


class Deeper(Greeting):
    def deeper(self) -> int:
        return 7


class Mixed(DurableObject, Deeper):
    def own(self) -> str:
        return "own"


def test_161_methods_of_mixins_after_durable_object_are_rpc_callable(tmp_path: Path) -> None:
    async def main() -> None:
        stub = make_namespace(tmp_path, Mixed).get_by_name("m")
        assert await stub.own() == "own"
        assert await stub.greet("ann") == "hello ann from Mixed"
        assert await stub.slow_greet("bo") == "hello bo from Mixed"
        assert await stub.deeper() == 7
        # What stays refused: private names, the lifecycle handlers, the base's internals.
        with pytest.raises(RpcError, match='does not implement the method "_secret"'):
            await stub._secret()
        with pytest.raises(RpcError, match="'fetch' is a reserved method"):
            await RpcMethod(stub, "fetch")()
        # A handler a mixin defines is found as the handler.
        response = await stub.fetch("http://do/x")
        assert await response.text() == "mixin fetch http://do/x"
        for internal in ("__init__", "__class__", "_DurableObject__x", "mro"):
            with pytest.raises(RpcError, match="does not implement the method"):
                await RpcMethod(stub, internal)()

    asyncio.run(main())


CONSTRAINTS_RESET = (
    "Durable Object was reset and rolled back to its last known good state because the "
    "application left the database in a state where constraints were violated: "
    "FOREIGN KEY constraint failed: SQLITE_CONSTRAINT"
)


class Posts(DurableObject):
    constructed = 0

    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        Posts.constructed += 1
        self.generation = Posts.constructed
        ctx.storage.sql.exec(
            "CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY);"
            "CREATE TABLE IF NOT EXISTS posts (id INTEGER PRIMARY KEY,"
            " user_id INTEGER REFERENCES users(id))"
        )

    def post(self, user_id: int, *, deferred: bool) -> int:
        sql = self.ctx.storage.sql
        if deferred:
            sql.exec("PRAGMA defer_foreign_keys = ON")
        sql.exec("INSERT INTO posts (user_id) VALUES (?)", user_id)
        self.ctx.storage.kv.put("posted", user_id)  # in the same implicit transaction
        return user_id

    def add_user(self, user_id: int) -> None:
        self.ctx.storage.sql.exec("INSERT INTO users VALUES (?)", user_id)

    def state(self) -> list[Any]:
        rows = self.ctx.storage.sql.exec("SELECT user_id FROM posts ORDER BY id").raw()
        return [[row[0] for row in rows], self.ctx.storage.kv.get("posted"), self.generation]


def test_113_deferred_foreign_key_violation_at_implicit_commit_resets(tmp_path: Path) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Posts)
        stub = ns.get_by_name("p")
        await stub.add_user(1)
        assert await stub.post(1, deferred=True) == 1  # deferred, satisfied at commit
        before = await stub.state()
        assert before[:2] == [[1], 1]
        # Deferred past the statement, still violated when the implicit transaction
        # commits: the call fails with Cloudflare's reset message...
        with pytest.raises(ObjectResetError) as caught:
            await stub.post(2, deferred=True)
        assert str(caught.value) == CONSTRAINTS_RESET
        assert caught.value.durable_object_reset
        # ...the stub that saw the reset stays broken (spec §2.4)...
        with pytest.raises(ObjectResetError, match="constraints were violated"):
            await stub.state()
        # ...the object is reset (a new instance) and rolled back: neither the row nor
        # the KV write of that transaction exists.
        stub = ns.get_by_name("p")
        after = await stub.state()
        assert after[:2] == [[1], 1]
        assert after[2] != before[2]
        # An immediate violation is an ordinary SQL error of that call, no reset.
        with pytest.raises(SqlError, match="FOREIGN KEY constraint failed"):
            await stub.post(3, deferred=False)
        assert await stub.state() == after
        await ns._class.close()

    asyncio.run(main())


MiB = 1024 * 1024
RPC_LIMIT = "Serialized RPC arguments or return values are limited to 32MiB"


class Sizes(DurableObject):
    def size_of(self, data: bytes) -> int:
        return len(data)

    def make(self, size: int) -> bytes:
        return b"x" * size


def test_026_rpc_payloads_over_32_mib_fail_both_ways(tmp_path: Path) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Sizes)
        stub = ns.get_by_name("s")
        near = 32 * MiB - 64 * 1024  # the value's encoding adds a few bytes
        assert await stub.size_of(b"x" * near) == near
        assert len(await stub.make(near)) == near
        # Arguments over the limit are refused.
        with pytest.raises(DurableObjectError, match=RPC_LIMIT) as caught:
            await stub.size_of(b"x" * (32 * MiB + 1))
        assert "but the size of this value was: 3355" in str(caught.value)
        # A return value: the call fails, the object stays usable.
        with pytest.raises(DurableObjectError, match=RPC_LIMIT):
            await stub.make(32 * MiB + 1)
        assert await stub.size_of(b"ok") == 2  # not a broken stub, not a reset
        await ns._class.close()

    asyncio.run(main())


class Background(DurableObject):
    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        self.gate = asyncio.Event()

    async def _later(self) -> None:
        await self.gate.wait()
        await self.ctx.storage.put("done", True)

    async def _fails(self) -> None:
        raise ValueError("background failure")

    def start(self) -> str:
        self.ctx.wait_until(self._later())  # a coroutine, not awaited by the handler
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        self.ctx.waitUntil(done)  # any awaitable, camelCase too
        self.ctx.wait_until(self._fails())  # fails in the background, not the call
        return "started"

    def release(self) -> None:
        self.gate.set()

    async def done(self) -> Any:
        return await self.ctx.storage.get("done")


def test_046_wait_until_accepts_an_awaitable_and_keeps_the_object(tmp_path: Path) -> None:
    async def main() -> None:
        clock = FakeClock()
        settings = RuntimeSettings(idle_timeout_s=10.0, clock=clock)
        ns = make_namespace(tmp_path, Background, settings=settings, lifecycle=True)
        lifecycle = ns._class.lifecycle
        assert lifecycle is not None
        stub = ns.get_by_name("b")
        assert await stub.start() == "started"
        await clock.advance(60)
        assert lifecycle.reap() == 0  # the wait_until task is pending: not evicted
        host = ns._class.hosts[ns.id_from_name("b")]
        assert not host.can_evict()
        await stub.release()
        for _ in range(100):  # let the background task finish and its write commit
            if host.can_evict():
                break
            await asyncio.sleep(0.01)
        assert await stub.done() is True
        await clock.advance(60)
        assert lifecycle.reap() == 1  # settled: now it may go
        assert await ns.get_by_name("b").done() is True  # its write is durable
        await ns._class.close()

    asyncio.run(main())


class Ledger(DurableObject):
    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        self.log: list[str] = []
        self.inside = asyncio.Event()
        self.proceed = asyncio.Event()

    async def transfer(self) -> None:
        async def closure(txn: Any) -> None:
            self.log.append("txn-start")
            await txn.put("a", 1)
            self.inside.set()
            await self.proceed.wait()  # suspends for real: other events could run here
            await txn.put("b", 2)
            self.log.append("txn-end")

        await self.ctx.storage.transaction(closure)

    def note(self, what: str) -> None:
        self.log.append(what)

    def get_log(self) -> list[str]:
        return self.log


def test_083_no_other_event_runs_during_a_transaction_callback(tmp_path: Path) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Ledger)
        stub = ns.get_by_name("l")
        host = ns._class.host(ns.id_from_name("l"))
        transfer = stub.transfer()
        for _ in range(100):
            if host.instance is not None and host.instance.inside.is_set():
                break
            await asyncio.sleep(0.01)
        assert host.instance.inside.is_set()
        note = stub.note("other event")  # delivered while the callback is suspended
        await asyncio.sleep(0.05)
        assert host.instance.log == ["txn-start"]  # held back by the transaction
        host.instance.proceed.set()  # from outside: an event could not get in to do it
        await transfer
        await note
        assert await stub.get_log() == ["txn-start", "txn-end", "other event"]
        await ns._class.close()

    asyncio.run(main())
