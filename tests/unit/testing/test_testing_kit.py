"""The test kit on a real project (kitapp/): fixtures, helpers and the fake clock.

These tests use the kit as a user does: the plugin is loaded by its ``pytest11`` entry
point, the project comes from the marker, and ``async def`` tests run on the kit's loop.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from objectd import DurableObjectId, Response
from objectd.errors import DurableObjectTypeError
from objectd.testing import (
    KitClock,
    SelfClient,
    evict,
    list_durable_object_ids,
    run_durable_object_alarm,
    run_in_durable_object,
    runInDurableObject,
)

pytestmark = pytest.mark.objectd(project="kitapp")


def constructed() -> list[str]:
    """Constructor runs of this test's Counter (the worker module is loaded per test)."""
    return sys.modules["worker"].CONSTRUCTED  # type: ignore[no-any-return]


async def next_message(messages: Any) -> Any:
    async with asyncio.timeout(5):
        return await anext(messages)


# -- fixtures ----------------------------------------------------------------------------


async def test_env_has_the_bindings_and_vars(objectd_env: Any) -> None:
    assert objectd_env.GREETING == "hello"
    stub = objectd_env.COUNTER.get_by_name("a")
    assert await stub.bump() == 1
    assert await stub.bump() == 2


async def test_self_fetch_calls_the_worker_in_process(objectd_self: SelfClient) -> None:
    response = await objectd_self.fetch("https://example.com/greeting")
    assert isinstance(response, Response)
    assert response.status == 200
    assert await response.text() == "hello"
    response = await objectd_self.fetch("https://example.com/a", method="POST", body="hi")
    assert await response.text() == "POST 1 hi"
    response = await objectd_self.fetch("https://example.com/a", {"method": "PUT"})
    assert await response.text() == "PUT 2 "


async def test_self_fetch_raises_what_the_worker_raises(objectd_self: SelfClient) -> None:
    with pytest.raises(ValueError, match="the worker failed"):
        await objectd_self.fetch("https://example.com/boom")


async def test_self_fetch_refuses_a_relative_url(objectd_self: SelfClient) -> None:
    with pytest.raises((TypeError, ValueError)):
        await objectd_self.fetch("/greeting")


def test_a_plain_def_test_awaits_through_objectd_run(
    objectd_env: Any, objectd_self: SelfClient, objectd_run: Callable[..., Any]
) -> None:
    stub = objectd_env.COUNTER.get_by_name("a")
    assert objectd_run(stub.bump) == 1
    response = objectd_run(objectd_self.fetch, "https://example.com/a", method="POST")
    assert objectd_run(response.text()) == "POST 2 "
    assert objectd_run(run_in_durable_object, stub, lambda i, s: i.in_memory) == 2
    with pytest.raises(TypeError, match="takes a function"):
        objectd_run(3)


async def test_167_storage_is_a_fresh_folder_under_tmp_path(
    objectd_env: Any, tmp_path: Path
) -> None:
    assert await objectd_env.COUNTER.get_by_name("a").bump() == 1
    files = list((tmp_path / "objectd-data").rglob("*.sqlite"))
    assert any(path.parent.name == "Counter" for path in files)


async def test_websocket_upgrade_through_objectd_self(objectd_self: SelfClient) -> None:
    response = await objectd_self.fetch(
        "https://example.com/room", headers={"Upgrade": "websocket"}
    )
    assert response.status == 101
    ws = response.web_socket
    ws.accept()
    messages = aiter(ws)
    ws.send("ping?")
    assert await next_message(messages) == "ping? from constructor #1"
    ws.close(1000, "done")


# -- helpers -----------------------------------------------------------------------------


async def test_167_run_in_durable_object_sees_the_instance_and_its_state(objectd_env: Any) -> None:
    stub = objectd_env.COUNTER.get_by_name("a")
    await stub.bump()

    async def look(instance: Any, state: Any) -> Any:
        assert state is instance.ctx
        await state.storage.put("seen", True)
        return instance.in_memory, await state.storage.get("n"), state.id.name

    assert await run_in_durable_object(stub, look) == (1, 1, "a")
    assert await runInDurableObject(stub, lambda i, s: s.storage.get("seen")) is True


async def test_167_run_in_durable_object_waits_its_turn_behind_the_input_gate(
    objectd_env: Any,
) -> None:
    stub = objectd_env.COUNTER.get_by_name("a")
    ran: list[str] = []
    held = asyncio.ensure_future(stub.hold())
    inside = asyncio.ensure_future(run_in_durable_object(stub, lambda i, s: ran.append("fn")))
    for _ in range(50):
        await asyncio.sleep(0)
    assert ran == []  # block_concurrency_while holds it back
    await run_in_durable_object_release(stub)
    assert await held == "released"
    await inside
    assert ran == ["fn"]


async def run_in_durable_object_release(stub: Any) -> None:
    """Set the object's release event from outside (not an event: the gate is locked)."""
    host = stub._class.hosts[stub.id]
    host.instance.release.set()


async def test_run_in_durable_object_raises_what_fn_raises(objectd_env: Any) -> None:
    def fail(instance: Any, state: Any) -> None:
        raise KeyError("inside")

    with pytest.raises(KeyError, match="inside"):
        await run_in_durable_object(objectd_env.COUNTER.get_by_name("a"), fail)


async def test_helpers_refuse_what_is_not_a_stub_or_namespace(objectd_env: Any) -> None:
    with pytest.raises(DurableObjectTypeError, match="takes a Durable Object stub"):
        await run_in_durable_object(objectd_env.COUNTER, lambda i, s: None)
    with pytest.raises(DurableObjectTypeError, match="takes a Durable Object namespace"):
        await list_durable_object_ids(objectd_env.COUNTER.get_by_name("a"))


async def test_167_run_durable_object_alarm_runs_it_now_and_clears_it(
    objectd_env: Any, objectd_clock: KitClock
) -> None:
    stub = objectd_env.COUNTER.get_by_name("a")
    assert await run_durable_object_alarm(stub) is False  # none set: nothing ran
    when = await stub.alarm_in(3600, objectd_clock.now_ms())
    assert await run_durable_object_alarm(stub) is True  # an hour early
    runs = await run_in_durable_object(stub, lambda i, s: s.storage.get("alarm_runs"))
    assert runs == [[0, when]]
    assert await run_in_durable_object(stub, lambda i, s: s.storage.get_alarm()) is None
    assert await run_durable_object_alarm(stub) is False  # it was cleared
    await objectd_clock.advance(3600)  # nor does the scheduler run it again
    assert await run_in_durable_object(stub, lambda i, s: s.storage.get("alarm_runs")) == runs


async def test_167_list_durable_object_ids(objectd_env: Any) -> None:
    ns = objectd_env.COUNTER
    assert await list_durable_object_ids(ns) == []
    await ns.get_by_name("a").bump()
    await ns.get_by_name("b").bump()
    ids = await list_durable_object_ids(ns)
    assert all(isinstance(i, DurableObjectId) for i in ids)
    assert set(ids) == {ns.id_from_name("a"), ns.id_from_name("b")}
    await evict(ns.get_by_name("a"))  # evicted objects keep their storage, so their id
    assert set(await list_durable_object_ids(ns)) == set(ids)


async def test_150_evict_drops_the_instance_and_keeps_storage(objectd_env: Any) -> None:
    stub = objectd_env.COUNTER.get_by_name("a")
    await stub.bump()
    assert constructed() == ["a"]
    await evict(stub)
    await evict(stub)  # not in memory: nothing to do
    assert await stub.bump() == 2  # storage kept
    assert constructed() == ["a", "a"]  # a new instance
    assert await run_in_durable_object(stub, lambda i, s: i.in_memory) == 1


async def test_146_evict_keeps_hibernatable_sockets(
    objectd_env: Any, objectd_self: SelfClient
) -> None:
    response = await objectd_self.fetch(
        "https://example.com/room", headers={"Upgrade": "websocket"}
    )
    ws = response.web_socket
    ws.accept()
    messages = aiter(ws)
    await evict(objectd_env.COUNTER.get_by_name("room"))
    ws.send("still there?")  # wakes the room: a second constructor answers
    assert await next_message(messages) == "still there? from constructor #2"


async def test_evict_refuses_an_object_at_work(objectd_env: Any) -> None:
    stub = objectd_env.COUNTER.get_by_name("a")
    held = asyncio.ensure_future(stub.hold())
    for _ in range(50):
        await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="has work in progress"):
        await evict(stub)
    await run_in_durable_object_release(stub)
    assert await held == "released"


# -- the clock ---------------------------------------------------------------------------


async def test_advance_fires_an_alarm_when_it_is_due(
    objectd_env: Any, objectd_clock: KitClock
) -> None:
    stub = objectd_env.COUNTER.get_by_name("a")
    start = objectd_clock.now()
    when = await stub.alarm_in(60, objectd_clock.now_ms())
    await objectd_clock.advance(59.9)
    assert await run_in_durable_object(stub, lambda i, s: s.storage.get("alarm_runs")) is None
    await objectd_clock.advance(0.1)
    assert objectd_clock.now() == pytest.approx(start + 60)
    runs = await run_in_durable_object(stub, lambda i, s: s.storage.get("alarm_runs"))
    assert runs == [[0, when]]


async def test_126_advance_retries_a_failed_alarm_after_its_backoff(
    objectd_env: Any, objectd_clock: KitClock
) -> None:
    stub = objectd_env.COUNTER.get_by_name("a")
    await run_in_durable_object(stub, lambda i, s: s.storage.put("fail_alarms", 2))
    when = await stub.alarm_in(1, objectd_clock.now_ms())
    await objectd_clock.advance(1)  # fails; retry 1 in 2-2.5 s
    await objectd_clock.advance(2.5)  # fails; retry 2 in 4-5 s
    await objectd_clock.advance(5)  # succeeds
    runs = await run_in_durable_object(stub, lambda i, s: s.storage.get("alarm_runs"))
    assert runs == [[0, when], [1, when], [2, when]]
    assert await run_in_durable_object(stub, lambda i, s: s.storage.get_alarm()) is None


async def test_149_advance_evicts_idle_objects(objectd_env: Any, objectd_clock: KitClock) -> None:
    stub = objectd_env.COUNTER.get_by_name("a")
    await stub.bump()
    await objectd_clock.advance(5)
    await stub.bump()
    assert constructed() == ["a"]  # 5 s idle: still in memory
    await objectd_clock.advance(11)  # idle past the 10 s timeout: evicted
    assert await stub.bump() == 3
    assert constructed() == ["a", "a"]


async def test_advance_refuses_going_back(objectd_clock: KitClock) -> None:
    with pytest.raises(ValueError, match="seconds >= 0"):
        await objectd_clock.advance(-1)


async def test_advance_by_a_day_fires_an_alarm_set_for_tomorrow(
    objectd_env: Any, objectd_clock: KitClock
) -> None:
    stub = objectd_env.COUNTER.get_by_name("a")
    when = await stub.alarm_in(86_400, objectd_clock.now_ms())
    await objectd_clock.advance(86_399.9)  # the idle reaper wakes every second on the way
    assert await run_in_durable_object(stub, lambda i, s: s.storage.get("alarm_runs")) is None
    await objectd_clock.advance(0.1)
    runs = await run_in_durable_object(stub, lambda i, s: s.storage.get("alarm_runs"))
    assert runs == [[0, when]]


@pytest.mark.parametrize("seconds", [float("nan"), float("inf"), -float("inf"), -0.5])
async def test_advance_refuses_a_time_that_is_not_a_finite_forward_step(
    objectd_clock: KitClock, seconds: float
) -> None:
    before = objectd_clock.now()
    with pytest.raises(ValueError, match="a finite number of seconds >= 0"):
        await asyncio.wait_for(objectd_clock.advance(seconds), timeout=10)
    assert objectd_clock.now() == before  # nothing moved


@pytest.mark.parametrize("seconds", ["60", None, True])
async def test_advance_refuses_what_is_not_a_number(objectd_clock: KitClock, seconds: Any) -> None:
    with pytest.raises(TypeError, match="advance\\(\\) takes seconds as a number"):
        await objectd_clock.advance(seconds)
