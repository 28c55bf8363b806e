"""A ``CancelledError`` the code raises itself is that event's failure (adversarial finding 8).

asyncio reads a task whose coroutine raises ``CancelledError`` as cancelled: an alarm was
run again at once, forever, a WebSocket handler's failure vanished, and the Worker's
reached uvicorn.  Only a cancellation of the event's task (a reset, a timeout, shutdown)
is real; ``runtime.exits.stray_cancel_error`` tells them apart.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest
from runtime_kit import attach_alarms, make_namespace

from objectd.errors import ObjectResetError
from objectd.fetch import Request, Response
from objectd.runtime.clock import FakeClock
from objectd.runtime.committer import Committer, Durability
from objectd.runtime.objects import DurableObject
from objectd.runtime.project import Project
from objectd.runtime.relay import relay
from objectd.runtime.settings import RuntimeSettings
from objectd.runtime.websockets import WebSocketPair

STRAY = "raised CancelledError, but nothing cancelled its event"
runs: list[str] = []


def _cancel() -> NoReturn:
    raise asyncio.CancelledError()


async def _awaits_a_cancelled_task() -> None:
    # The other common way: the code cancels a task of its own and awaits it.
    task = asyncio.get_running_loop().create_task(asyncio.sleep(10))
    await asyncio.sleep(0)
    task.cancel()
    await task


class Wire:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send_message(self, data: str | bytes) -> None:
        self.sent.append(data)

    def send_close(self, code: int, reason: str) -> None:
        self.sent.append(("close", code, reason))

    def abort(self) -> None:
        self.sent.append("abort")


class Cancelling(DurableObject):
    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        if ctx.id.name == "constructor":
            _cancel()

    async def fetch(self, request: Request) -> Any:
        if request.url.endswith("/ws"):
            client, server = WebSocketPair()
            self.ctx.accept_web_socket(server)
            return Response(None, status=101, web_socket=client)
        await self.ctx.storage.put("written", True)
        _cancel()

    async def rpc(self) -> None:
        await self.ctx.storage.put("written", True)
        await _awaits_a_cancelled_task()

    async def critical(self) -> None:
        async def body() -> None:
            await asyncio.sleep(0)
            _cancel()

        await self.ctx.block_concurrency_while(body)

    async def later(self) -> str:
        async def body() -> None:
            await asyncio.sleep(0)
            _cancel()

        self.ctx.wait_until(body())
        return "scheduled"

    async def web_socket_message(self, ws: Any, message: str) -> None:
        if message == "cancel":
            _cancel()
        ws.send(f"echo {message}")

    async def alarm(self) -> None:
        runs.append("alarm")
        _cancel()

    async def arm(self, when_ms: float) -> None:
        await self.ctx.storage.set_alarm(when_ms)

    async def hang(self) -> None:
        await asyncio.sleep(30)

    async def state(self) -> dict[str, Any]:
        return {"written": await self.ctx.storage.get("written")}


def run(main: Callable[[], Awaitable[None]]) -> None:
    runs.clear()
    asyncio.run(asyncio.wait_for(main(), 20))


@pytest.mark.parametrize("place", ["fetch", "rpc"])
def test_a_handler_raising_cancelled_error_fails_its_call(tmp_path: Path, place: str) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Cancelling)
        stub = ns.get_by_name("a")
        call = stub.fetch("http://o/") if place == "fetch" else stub.rpc()
        with pytest.raises(RuntimeError, match=STRAY) as info:
            await call
        assert not isinstance(info.value, asyncio.CancelledError)
        assert info.value.remote is True  # type: ignore[attr-defined]
        # An ordinary failure: no reset, and the write before it stays (as for any exception).
        assert await stub.state() == {"written": True}

    run(main)


@pytest.mark.parametrize("place", ["constructor", "critical"])
def test_cancelled_error_in_a_constructor_or_critical_section_resets(
    tmp_path: Path, place: str
) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Cancelling)
        stub = ns.get_by_name(place)
        with pytest.raises(RuntimeError, match=STRAY):
            await (stub.state() if place == "constructor" else stub.critical())
        if place == "critical":  # a failed block_concurrency_while() resets the object
            assert ns._class.hosts[ns.id_from_name(place)].instance is None

    run(main)


def test_cancelled_error_in_wait_until_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Cancelling)
        assert await ns.get_by_name("a").later() == "scheduled"
        host = ns._class.hosts[ns.id_from_name("a")]
        for _ in range(50):
            await asyncio.sleep(0)
        assert not host.busy

    with caplog.at_level(logging.ERROR):
        run(main)
    assert "a wait_until() task failed" in caplog.text and STRAY in caplog.text


def test_cancelled_error_in_web_socket_message_is_logged_and_the_socket_stays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Cancelling)
        response = await ns.get_by_name("a").fetch("http://o/ws", headers={"upgrade": "websocket"})
        wire = Wire()
        relayed = relay(response.web_socket, wire)
        relayed.message("cancel")
        relayed.message("hi")
        for _ in range(100):
            if wire.sent:
                break
            await asyncio.sleep(0.01)
        assert wire.sent == ["echo hi"]

    with caplog.at_level(logging.ERROR):
        run(main)
    assert "web_socket_message() failed" in caplog.text and STRAY in caplog.text


def test_cancelled_error_in_a_listener_outside_objects_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        client, server = WebSocketPair()
        server.accept()
        client.accept()
        server.add_event_listener("message", lambda event: _cancel())
        client.send("x")
        for _ in range(20):
            await asyncio.sleep(0)

    with caplog.at_level(logging.ERROR):
        run(main)
    assert "listener failed" in caplog.text and STRAY in caplog.text


def test_an_alarm_raising_cancelled_error_is_retried_with_backoff(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        clock = FakeClock()
        committer = Committer(durability=Durability.PROCESS)
        ns = make_namespace(
            tmp_path, Cancelling, settings=RuntimeSettings(clock=clock), committer=committer
        )
        scheduler = attach_alarms(tmp_path, ns)
        scheduler.start()
        try:
            await ns.get_by_name("a").arm(clock.now() * 1000 + 10)
            await clock.advance(0.1)
            for _ in range(100):
                if runs:
                    break
                await asyncio.sleep(0.01)
            for _ in range(20):  # time for it to be re-run at once, as it used to be
                await asyncio.sleep(0.01)
            assert runs == ["alarm"]  # not again until the first retry's backoff (2-2.5 s)
            await clock.advance(3)
            for _ in range(100):
                if len(runs) == 2:
                    break
                await asyncio.sleep(0.01)
            assert runs == ["alarm", "alarm"]
        finally:
            await scheduler.stop()
            await ns._class.close()
            await committer.close()
            scheduler.close()

    with caplog.at_level(logging.WARNING):
        run(main)
    assert "retry 1 of 6" in caplog.text and STRAY in caplog.text


def test_a_real_cancellation_is_never_swallowed(tmp_path: Path) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Cancelling)
        stub = ns.get_by_name("a")
        call = asyncio.ensure_future(stub.hang())
        await asyncio.sleep(0.05)
        host = ns._class.hosts[ns.id_from_name("a")]
        error = ObjectResetError("reset by the test")
        host.reset(error)  # cancels the event's task: its caller gets the reset
        with pytest.raises(ObjectResetError, match="reset by the test"):
            await call
        # The caller's own cancellation reaches it as a CancelledError, as always.
        waiting = asyncio.ensure_future(ns.get_by_name("a").hang())  # (that stub is broken)
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    run(main)


WRANGLER = """
name = "app"
main = "worker.py"
"""


def test_the_worker_raising_cancelled_error_fails_that_request(tmp_path: Path) -> None:
    root = tmp_path / "app"
    root.mkdir()
    (root / "wrangler.toml").write_text(WRANGLER)
    (root / "worker.py").write_text(
        textwrap.dedent(
            """
            import asyncio
            from objectd import Response, WorkerEntrypoint

            class Default(WorkerEntrypoint):
                async def fetch(self, request):
                    if request.url.endswith("/cancel"):
                        raise asyncio.CancelledError()
                    if request.url.endswith("/hang"):
                        await asyncio.sleep(30)
                    return Response("ok")
            """
        )
    )
    sys.modules.pop("worker", None)

    async def main() -> None:
        project = Project.load(root)
        await project.start()
        try:
            with pytest.raises(RuntimeError, match=STRAY):
                await project.fetch(Request("http://localhost/cancel"))
            hanging = asyncio.ensure_future(project.fetch(Request("http://localhost/hang")))
            await asyncio.sleep(0.05)
            hanging.cancel()  # the front cancels a request whose client went away
            with pytest.raises(asyncio.CancelledError):
                await hanging
            assert (await project.fetch(Request("http://localhost/"))).body == b"ok"
        finally:
            await project.close()
            sys.modules.pop("worker", None)

    run(main)
