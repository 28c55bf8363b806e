"""The CPU limit stops SQLite too, and user code wherever it runs (issue 9 §2; spec §11).

A real watchdog with a 0.2 s limit: each stuck handler costs ~0.2-0.4 s of CPU.  Code
that cannot be stopped ends the process: here ``on_stuck`` records the report instead
(adversarial findings 1 and 2).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from runtime_kit import TEST_CODE, kit_watchdog, make_namespace

from objectd.errors import ObjectResetError
from objectd.runtime.namespace import DurableObjectNamespace
from objectd.runtime.objects import DurableObject
from objectd.runtime.user_tasks import install_task_guard
from objectd.runtime.watchdog import STUCK_EXIT_CODE, CpuWatchdog
from objectd.runtime.websockets import WebSocketPair
from objectd.storage.database import internal_sql

CPU = "Worker exceeded CPU time limit."
ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"
HUGE = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 100000000000) "
    "SELECT count(*) FROM c"
)
ENDLESS_INSERT = (
    "INSERT INTO t WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT x FROM c"
)


class Sql(DurableObject):
    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS t (x)")
        if ctx.id.name == "endless-constructor":
            ctx.storage.sql.exec(ENDLESS)

    async def run(self, query: str) -> None:
        await self.ctx.storage.put("dirty", query)  # in the batch the reset discards
        self.ctx.storage.sql.exec("INSERT INTO t VALUES (1)")
        self.ctx.storage.sql.exec(query)

    async def run_swallowing(self, query: str) -> str:
        try:
            self.ctx.storage.sql.exec(query)
        except Exception as exc:  # the CPU limit is not an Exception: never lands here
            return f"swallowed {exc!r}"
        return "finished"

    async def run_in_transaction(self, query: str) -> None:
        async def body(txn: Any) -> None:
            await txn.put("dirty", "txn")
            self.ctx.storage.sql.exec(query)

        await self.ctx.storage.transaction(body)

    async def run_in_critical_section(self, query: str) -> None:
        async def body() -> None:
            self.ctx.storage.sql.exec(query)

        await self.ctx.block_concurrency_while(body)

    async def run_later(self, query: str) -> str:
        async def body() -> None:
            await asyncio.sleep(0)
            self.ctx.storage.sql.exec(query)

        self.ctx.wait_until(body())
        return "scheduled"

    async def spin_in_critical_section(self) -> None:
        def body() -> None:
            while True:
                pass

        await self.ctx.block_concurrency_while(body)

    async def fill(self, count: int) -> None:
        for start in range(0, count, 128):
            await self.ctx.storage.put({f"k{i:06}": "v" * 20 for i in range(start, start + 128)})

    async def list_forever(self) -> None:
        await self.ctx.storage.put("dirty", "list")
        while True:
            await self.ctx.storage.list(prefix="k")
            await self.ctx.storage.get("k000001")

    def stubborn(self) -> int:
        caught = 0
        while True:
            try:
                while True:
                    pass
            except BaseException:  # swallows the CPU limit: it fires again later
                caught += 1
                if caught == 2:
                    return caught

    async def spawn(self, what: str) -> str:
        async def body() -> None:
            await asyncio.sleep(0)
            if what == "spin":
                while True:
                    pass
            self.ctx.storage.sql.exec(ENDLESS)

        self._task = asyncio.get_running_loop().create_task(body())  # nobody awaits it
        await asyncio.sleep(0.5)  # the reset ends this event too
        return "spawned"

    def swallow_forever(self) -> str:
        while not DONE.is_set():
            try:
                while not DONE.is_set():
                    pass
            except BaseException:  # an unlucky retry loop: never gives up
                pass
        return "ended"

    def wait_forever(self) -> str:
        while not DONE.is_set():
            time.sleep(0.01)  # blocks the loop without burning CPU
        return "ended"

    async def put(self, key: str, value: Any) -> None:
        await self.ctx.storage.put(key, value)

    async def state(self) -> dict[str, Any]:
        rows = self.ctx.storage.sql.exec("SELECT count(*) AS n FROM t").one()
        check = self.ctx.storage.database.conn.execute(internal_sql("PRAGMA integrity_check"))
        return {
            "dirty": await self.ctx.storage.get("dirty"),
            "kept": await self.ctx.storage.get("kept"),
            "rows": rows["n"],
            "integrity": check.fetchone()[0],
        }


@asynccontextmanager
async def watchdog(dog: CpuWatchdog | None = None) -> AsyncIterator[CpuWatchdog]:
    """A watchdog, and the guard of the tasks user code creates (as ``Project.start``)."""
    dog = dog or kit_watchdog()
    unguard = install_task_guard(asyncio.get_running_loop(), TEST_CODE)
    dog.start()
    try:
        yield dog
    finally:
        dog.stop()
        unguard()


async def expect_cpu_reset(call: Awaitable[Any]) -> None:
    with pytest.raises(ObjectResetError, match=CPU) as info:
        await asyncio.wait_for(call, 10)
    assert info.value.remote is True and info.value.durable_object_reset is True


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 30))


# Set when the watchdog gives up on the loop: there the real one ends the process.
DONE = threading.Event()


@pytest.fixture(autouse=True)
def _not_done() -> None:
    DONE.clear()


def give_up_into(reports: list[str]) -> Callable[[str], None]:
    def give_up(report: str) -> None:
        reports.append(report)
        DONE.set()

    return give_up


CLEAN = {"dirty": None, "kept": 1, "rows": 0, "integrity": "ok"}


@pytest.mark.parametrize("query", [ENDLESS, HUGE, ENDLESS_INSERT], ids=["endless", "huge", "write"])
def test_a_statement_past_the_cpu_limit_resets_only_its_object(tmp_path: Path, query: str) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Sql)
        async with watchdog() as dog:
            await ns.get_by_name("stuck").put("kept", 1)
            await ns.get_by_name("other").put("kept", 1)
            await expect_cpu_reset(ns.get_by_name("stuck").run(query))
            assert dog.interruptions == 1
            # Its batch (the put, the insert) was rolled back; committed data is intact.
            assert await ns.get_by_name("stuck").state() == CLEAN
            assert await ns.get_by_name("other").state() == CLEAN

    run(main)


def test_user_code_cannot_swallow_the_cpu_limit(tmp_path: Path) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Sql)
        async with watchdog():
            await expect_cpu_reset(ns.get_by_name("a").run_swallowing(ENDLESS))

    run(main)


@pytest.mark.parametrize(
    "method", ["run_in_transaction", "run_in_critical_section", "spin_in_critical_section"]
)
def test_the_cpu_limit_reaches_transactions_and_critical_sections(
    tmp_path: Path, method: str
) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Sql)
        async with watchdog():
            await ns.get_by_name("a").put("kept", 1)
            call = getattr(ns.get_by_name("a"), method)
            await expect_cpu_reset(call() if method.startswith("spin") else call(ENDLESS))
            assert await ns.get_by_name("a").state() == CLEAN

    run(main)


def test_the_cpu_limit_reaches_wait_until_tasks(tmp_path: Path) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Sql)
        async with watchdog() as dog:
            await ns.get_by_name("a").put("kept", 1)
            assert await ns.get_by_name("a").run_later(ENDLESS) == "scheduled"
            host = ns._class.hosts[ns.id_from_name("a")]
            for _ in range(200):
                if not host.busy:
                    break
                await asyncio.sleep(0.02)
            assert dog.interruptions == 1 and host.instance is None  # reset
            assert await ns.get_by_name("a").state() == CLEAN

    run(main)


def test_a_statement_in_the_constructor_is_stopped(tmp_path: Path) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Sql)
        async with watchdog():
            await expect_cpu_reset(ns.get_by_name("endless-constructor").state())
            await ns.get_by_name("fine").put("kept", 1)
            assert await ns.get_by_name("fine").state() == CLEAN

    run(main)


def test_the_server_answers_at_once_after_the_limit(tmp_path: Path) -> None:
    async def main() -> None:
        ns: DurableObjectNamespace = make_namespace(tmp_path, Sql)
        async with watchdog():
            stuck = asyncio.ensure_future(ns.get_by_name("stuck").run(ENDLESS))
            others = [ns.get_by_name(f"o{i}").put("kept", 1) for i in range(5)]
            await expect_cpu_reset(stuck)
            await asyncio.wait_for(asyncio.gather(*others), 5)  # waited only for the limit

    run(main)


def test_kv_reads_over_large_data_are_stopped(tmp_path: Path) -> None:
    # KV statements are short per row and Python decodes between rows, where the
    # watchdog's exception lands; only deleteAll() is one long statement (interruptible).
    async def main() -> None:
        ns = make_namespace(tmp_path, Sql)
        async with watchdog():
            await ns.get_by_name("a").fill(5120)
            await ns.get_by_name("a").put("kept", 1)
            await expect_cpu_reset(ns.get_by_name("a").list_forever())
            assert await ns.get_by_name("a").state() == CLEAN

    run(main)


def test_a_handler_that_swallows_the_limit_is_interrupted_again(tmp_path: Path) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Sql)
        async with watchdog() as dog:
            assert await asyncio.wait_for(ns.get_by_name("a").stubborn(), 10) == 2
            assert dog.interruptions == 2

    run(main)


# -- user code outside events (adversarial finding 2) -------------------------------------


@pytest.mark.parametrize("what", ["spin", "sql"])
def test_a_task_the_object_created_is_stopped_and_resets_it(
    tmp_path: Path, what: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Sql)
        async with watchdog() as dog:
            await ns.get_by_name("a").put("kept", 1)
            with pytest.raises(ObjectResetError, match=CPU):
                await asyncio.wait_for(ns.get_by_name("a").spawn(what), 10)
            assert dog.interruptions == 1
            assert await ns.get_by_name("a").state() == CLEAN

    run(main)
    assert "a task it created failed: Worker exceeded CPU time limit." in caplog.text


def test_a_listener_outside_objects_is_stopped_and_its_socket_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        client, server = WebSocketPair()
        server.accept()
        client.accept()
        closes: list[Any] = []
        client.add_event_listener("close", closes.append)

        def spin(event: Any) -> None:
            while True:
                pass

        server.add_event_listener("message", spin)
        async with watchdog() as dog:
            client.send("spin")
            for _ in range(200):
                if closes:
                    break
                await asyncio.sleep(0.02)
            assert dog.interruptions == 1
            assert [(event.code, event.was_clean) for event in closes] == [(1006, False)]

    run(main)
    assert "listener was stopped: Worker exceeded CPU time limit." in caplog.text


# -- code that cannot be stopped ends the process (adversarial finding 1) -----------------


def test_code_that_swallows_every_interrupt_ends_the_process(tmp_path: Path) -> None:
    reports: list[str] = []
    give_up = give_up_into(reports)

    async def main() -> None:
        ns = make_namespace(tmp_path, Sql)
        async with watchdog(kit_watchdog(grace_s=0.3, on_stuck=give_up)) as dog:
            assert await ns.get_by_name("stubborn").swallow_forever() == "ended"
            assert dog.interruptions >= 2  # interrupted again at every poll meanwhile

    run(main)
    [report] = reports
    assert f"Ending the process with exit code {STUCK_EXIT_CODE}" in report
    assert "went on after the CPU limit (0.2 s) interrupted it" in report
    assert 'Stuck in Durable Object Sql "stubborn"' in report
    assert "in swallow_forever" in report  # the user's frame


def test_code_no_interrupt_reaches_ends_the_process_too(tmp_path: Path) -> None:
    reports: list[str] = []
    give_up = give_up_into(reports)

    async def main() -> None:
        ns = make_namespace(tmp_path, Sql)
        # Nothing is the project's code here: the spin is as out of reach as C code.
        dog = kit_watchdog(grace_s=0.3, on_stuck=give_up, user_code=lambda code: False)
        async with watchdog(dog):
            assert await ns.get_by_name("a").swallow_forever() == "ended"
            assert dog.interruptions == 0

    run(main)
    [report] = reports
    assert "where the CPU limit (0.2 s) cannot interrupt it" in report


def test_a_stop_request_while_the_loop_is_stuck_ends_the_process(tmp_path: Path) -> None:
    assert threading.current_thread() is threading.main_thread()
    reports: list[str] = []
    give_up = give_up_into(reports)
    stops: list[int] = []

    def handler(signum: int, frame: Any) -> None:  # uvicorn's, in a server
        stops.append(signum)

    async def main() -> None:
        ns = make_namespace(tmp_path, Sql)
        async with watchdog(kit_watchdog(30, grace_s=0.3, on_stuck=give_up)):
            # Blocked, not burning CPU: the CPU limit never fires; only the stop request.
            threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
            assert await ns.get_by_name("a").wait_forever() == "ended"

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        run(main)
        assert stops == [signal.SIGTERM]  # the handler found at start still ran
        assert signal.getsignal(signal.SIGTERM) is handler  # and is back in place
    finally:
        signal.signal(signal.SIGTERM, previous)
    [report] = reports
    assert "a stop was requested and the loop has not run for" in report
    assert "in wait_forever" in report
