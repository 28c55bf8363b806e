"""``sys.exit()`` and ``KeyboardInterrupt`` in a handler: that event's failure (issue 9 §3).

The object is reset (runtime.exits explains why); the loop, other objects and the
object's next event are fine.  A ``SystemExit`` raised by a real signal's handler still
stops the program.  ``run`` turns an exception escaping the loop into a test failure
(pytest would otherwise stop the whole session on a KeyboardInterrupt).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from runtime_kit import attach_alarms, make_namespace

from objectd.errors import ObjectResetError
from objectd.fetch import Request, Response
from objectd.runtime.clock import FakeClock
from objectd.runtime.committer import Committer, Durability
from objectd.runtime.exits import describe, from_signal
from objectd.runtime.objects import DurableObject
from objectd.runtime.project import Project
from objectd.runtime.relay import relay
from objectd.runtime.settings import RuntimeSettings
from objectd.runtime.websockets import WebSocketPair

EXITS: dict[str, Callable[[], NoReturn]] = {}


def _exit() -> NoReturn:
    sys.exit()


def _exit_3() -> NoReturn:
    sys.exit(3)


def _interrupt() -> NoReturn:
    raise KeyboardInterrupt


def _system_exit_text() -> NoReturn:
    raise SystemExit("bye")


EXITS.update(
    {
        "sys.exit()": _exit,
        "sys.exit(3)": _exit_3,
        "KeyboardInterrupt": _interrupt,
        "SystemExit('bye')": _system_exit_text,
    }
)
EXPECTED = {
    "sys.exit()": "SystemExit",
    "sys.exit(3)": r"SystemExit\(3\)",
    "KeyboardInterrupt": "KeyboardInterrupt",
    "SystemExit('bye')": r"SystemExit\('bye'\)",
}
log: list[Any] = []


class Wire:
    """A client connection: records what the server does to it."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send_message(self, data: str | bytes) -> None:
        self.sent.append(data)

    def send_close(self, code: int, reason: str) -> None:
        self.sent.append(("close", code, reason))

    def abort(self) -> None:
        self.sent.append("abort")


@pytest.fixture(autouse=True)
def _clear() -> Iterator[None]:
    log.clear()
    yield
    log.clear()


def run(main: Callable[[], Awaitable[None]]) -> None:
    try:
        asyncio.run(asyncio.wait_for(main(), 20))
    except (SystemExit, KeyboardInterrupt) as exc:
        pytest.fail(f"{exc!r} escaped the runtime: it would have ended the server")


class Exiting(DurableObject):
    """``how`` names what to raise (a key of EXITS); the name picks the place."""

    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        name = ctx.id.name or ""
        if name.startswith("constructor:"):
            EXITS[name.split(":", 1)[1]]()

    async def fetch(self, request: Request) -> Any:
        if request.url.endswith("/ws"):
            client, server = WebSocketPair()
            self.ctx.accept_web_socket(server)
            return Response(None, status=101, web_socket=client)
        await self.ctx.storage.put("dirty", True)
        EXITS[request.headers.get("how") or "sys.exit()"]()

    async def rpc(self, how: str) -> None:
        await self.ctx.storage.put("dirty", True)
        EXITS[how]()

    async def critical(self, how: str) -> None:
        async def body() -> None:
            await asyncio.sleep(0)
            EXITS[how]()

        await self.ctx.block_concurrency_while(body)

    async def later(self, how: str) -> str:
        async def body() -> None:
            await asyncio.sleep(0)
            EXITS[how]()

        self.ctx.wait_until(body())
        return "scheduled"

    def web_socket_message(self, ws: Any, message: str) -> None:
        EXITS[message]()

    async def alarm(self) -> None:
        log.append("alarm")
        EXITS[await self.ctx.storage.get("how")]()

    async def arm(self, how: str, when_ms: float) -> None:
        await self.ctx.storage.put("how", how)
        await self.ctx.storage.set_alarm(when_ms)

    async def state(self) -> dict[str, Any]:
        return {"dirty": await self.ctx.storage.get("dirty"), "alive": True}


async def expect_reset(call: Awaitable[Any], how: str) -> ObjectResetError:
    with pytest.raises(ObjectResetError, match=EXPECTED[how]) as info:
        await call
    assert info.value.remote is True and info.value.durable_object_reset is True
    assert "the Durable Object was reset" in str(info.value)
    return info.value


HOWS = list(EXITS)


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("place", ["fetch", "rpc", "constructor", "critical"])
def test_an_exit_in_a_handler_resets_only_its_object(tmp_path: Path, place: str, how: str) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Exiting)
        name = f"constructor:{how}" if place == "constructor" else "a"
        stub = ns.get_by_name(name)
        if place == "fetch":
            call: Awaitable[Any] = stub.fetch("http://o/", headers={"how": how})
        elif place == "constructor":
            call = stub.state()
        else:
            call = getattr(stub, place)(how)
        error = await expect_reset(call, how)
        if place != "critical":  # (there the event re-raises the callback's error)
            trace = error.remote_traceback  # type: ignore[attr-defined]
            assert f"in {EXITS[how].__name__}" in trace  # where the code exited
        assert await ns.get_by_name("other").state() == {"dirty": None, "alive": True}
        if place != "constructor":
            # Reset: the handler's write is gone and the next event constructs it again.
            assert await ns.get_by_name(name).state() == {"dirty": None, "alive": True}

    run(main)


@pytest.mark.parametrize("how", HOWS)
def test_an_exit_in_wait_until_resets_the_object(tmp_path: Path, how: str) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Exiting)
        assert await ns.get_by_name("a").later(how) == "scheduled"
        host = ns._class.hosts[ns.id_from_name("a")]
        for _ in range(50):
            await asyncio.sleep(0)
        assert not host.busy and host.instance is None  # reset
        assert await ns.get_by_name("a").state() == {"dirty": None, "alive": True}

    run(main)


@pytest.mark.parametrize("how", HOWS)
def test_an_exit_in_web_socket_message_resets_and_disconnects(tmp_path: Path, how: str) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Exiting)
        response = await ns.get_by_name("a").fetch("http://o/ws", headers={"upgrade": "websocket"})
        wire = Wire()
        relay(response.web_socket, wire).message(how)
        for _ in range(50):
            await asyncio.sleep(0)
        assert wire.sent == ["abort"]  # the reset disconnected it
        assert await ns.get_by_name("a").state() == {"dirty": None, "alive": True}

    run(main)


def test_an_exit_in_alarm_is_a_failed_run_that_is_retried(tmp_path: Path) -> None:
    async def main() -> None:
        clock = FakeClock()
        committer = Committer(durability=Durability.PROCESS)
        ns = make_namespace(
            tmp_path, Exiting, settings=RuntimeSettings(clock=clock), committer=committer
        )
        scheduler = attach_alarms(tmp_path, ns)
        scheduler.start()
        try:
            await ns.get_by_name("a").arm("sys.exit(3)", clock.now() * 1000 + 10)
            for _ in range(100):
                if log:
                    break
                await asyncio.sleep(0.01)
            await clock.advance(0.1)
            for _ in range(100):
                if log:
                    break
                await asyncio.sleep(0.01)
            assert log == ["alarm"]
            await clock.advance(3)  # the first retry is due after 2-2.5 s
            for _ in range(100):
                if len(log) == 2:
                    break
                await asyncio.sleep(0.01)
            assert log == ["alarm", "alarm"]
            assert await ns.get_by_name("a").state() == {"dirty": None, "alive": True}
        finally:
            await scheduler.stop()
            await ns._class.close()
            await committer.close()
            scheduler.close()

    run(main)


def test_a_listener_outside_objects_cannot_end_the_loop() -> None:
    async def main() -> None:
        client, server = WebSocketPair()
        server.accept()
        client.accept()
        server.add_event_listener("message", lambda event: EXITS[event.data]())
        client.send("sys.exit(3)")
        for _ in range(20):
            await asyncio.sleep(0)

    run(main)


WRANGLER = """
name = "app"
main = "worker.py"
"""


def test_an_exit_in_the_worker_entrypoint_fails_that_request(tmp_path: Path) -> None:
    root = tmp_path / "app"
    root.mkdir()
    (root / "wrangler.toml").write_text(WRANGLER)
    (root / "worker.py").write_text(
        textwrap.dedent(
            """
            import sys
            from objectd import Response, WorkerEntrypoint

            class Default(WorkerEntrypoint):
                async def fetch(self, request):
                    if request.url.endswith("/later"):
                        async def later():
                            sys.exit(4)
                        self.ctx.wait_until(later())
                        return Response("scheduled")
                    if request.url.endswith("/exit"):
                        sys.exit(2)
                    if request.url.endswith("/interrupt"):
                        raise KeyboardInterrupt
                    return Response("ok")
            """
        )
    )
    sys.modules.pop("worker", None)

    async def main() -> None:
        project = Project.load(root)
        await project.start()
        try:
            with pytest.raises(RuntimeError, match=r"raised SystemExit\(2\)"):
                await project.fetch(Request("http://localhost/exit"))
            with pytest.raises(RuntimeError, match="raised KeyboardInterrupt"):
                await project.fetch(Request("http://localhost/interrupt"))
            response = await project.fetch(Request("http://localhost/later"))
            assert response.body == b"scheduled"
            assert (await project.fetch(Request("http://localhost/"))).body == b"ok"
        finally:
            await project.close()  # waits for the wait_until task: it must not escape
            sys.modules.pop("worker", None)

    run(main)


# -- real signals -----------------------------------------------------------------------


def test_a_signal_handler_raising_system_exit_still_stops_the_program(tmp_path: Path) -> None:
    def on_term(signum: int, frame: Any) -> None:
        sys.exit(0)

    class Waits(DurableObject):
        async def wait(self) -> None:
            os.kill(os.getpid(), signal.SIGTERM)  # delivered to this handler's next bytecode
            for _ in range(1000):
                pass

    async def main() -> None:
        await make_namespace(tmp_path, Waits).get_by_name("a").wait()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        with pytest.raises(SystemExit) as info:
            asyncio.run(main())
        assert from_signal(info.value)
    finally:
        signal.signal(signal.SIGTERM, previous)


CTRL_C = """
import asyncio, os, signal, sys
from pathlib import Path
from runtime_kit import make_namespace
from objectd.runtime.objects import DurableObject

class Waits(DurableObject):
    async def wait(self):
        os.kill(os.getpid(), signal.SIGINT)  # Python's default handler raises here
        for _ in range(1000):
            pass

async def main():
    await make_namespace(Path(sys.argv[1]), Waits).get_by_name("a").wait()

asyncio.new_event_loop().run_until_complete(main())  # no asyncio.run: no SIGINT handler
print("still running")
"""


def test_a_real_ctrl_c_under_pythons_default_handler_still_stops_the_program(
    tmp_path: Path,
) -> None:
    # In a process of its own: a KeyboardInterrupt from a real signal, raised in the
    # middle of this process's machinery, would upset pytest.
    done = subprocess.run(
        [sys.executable, "-c", CTRL_C, str(tmp_path)],
        cwd=Path(__file__).parent,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0 and "still running" not in done.stdout
    assert "KeyboardInterrupt" in done.stderr


def test_describe() -> None:
    assert describe(SystemExit()) == "SystemExit"
    assert describe(SystemExit(0)) == "SystemExit(0)"
    assert describe(SystemExit("x")) == "SystemExit('x')"
    assert describe(KeyboardInterrupt()) == "KeyboardInterrupt"
