"""objectd.Runtime: a project inside another asyncio program or ASGI app (issue 14 §4).

In process, real SQLite files under tmp_path; the mounted app is driven through a real
Starlette app with httpx's ASGI transport.  WebSockets and lifespans under a real uvicorn
server: tests/integration/test_embed_server.py; the FastAPI example:
examples/fastapi/tests.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

import objectd
from objectd.errors import ConfigError, DataFolderInUseError
from objectd.runtime.alarms import AlarmScheduler
from objectd.runtime.project import Project

WRANGLER = """
name = "app"
main = "worker.py"

[[durable_objects.bindings]]
name = "THINGS"
class_name = "Thing"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Thing"]
"""

# Classes only: no Worker entrypoint.
OBJECTS = """
from urllib.parse import urlsplit
from objectd import DurableObject, Response, WebSocketPair

class Thing(DurableObject):
    async def add(self, by):
        value = (await self.ctx.storage.get("value") or 0) + by
        await self.ctx.storage.put("value", value)
        return value

    async def fetch(self, request):
        path = urlsplit(request.url).path
        if request.headers.get("upgrade") != "websocket":
            return Response(f"{request.method} {path}")
        if path == "/nope":
            return Response("not here", status=404)
        client, server = WebSocketPair()
        self.ctx.accept_web_socket(server)
        server.send(f"hello {path}")
        return Response(None, status=101, web_socket=client)

    async def web_socket_message(self, ws, message):
        ws.send(f"echo {message}")
"""

ENTRYPOINT = """
from objectd import WorkerEntrypoint

class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return await self.env.THINGS.get_by_name("one").fetch(request)
"""


def write_project(tmp_path: Path, *, entrypoint: bool = False) -> Path:
    root = tmp_path / "app"
    root.mkdir(exist_ok=True)
    (root / "wrangler.toml").write_text(WRANGLER)
    code = textwrap.dedent(OBJECTS) + (textwrap.dedent(ENTRYPOINT) if entrypoint else "")
    (root / "worker.py").write_text(code)
    sys.modules.pop("worker", None)
    return root


def test_runtime_exposes_env_and_keeps_writes_across_restarts(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    runtime = objectd.Runtime(root, data_dir=tmp_path / "data", durability="fsync")

    async def main() -> list[int]:
        seen = []
        async with runtime as same:
            assert same is runtime and runtime.started
            thing = runtime.env.THINGS.get_by_name("a")
            seen.append(await thing.add(2))
            seen.append(await thing.add(3))
        assert not runtime.started
        async with objectd.Runtime(root, data_dir=tmp_path / "data") as again:
            seen.append(await again.env.THINGS.get_by_name("a").add(0))
        return seen

    assert asyncio.run(main()) == [2, 5, 5]


def test_env_before_start_and_after_close_says_how_to_start(tmp_path: Path) -> None:
    runtime = objectd.Runtime(write_project(tmp_path), data_dir=tmp_path / "data")
    with pytest.raises(RuntimeError, match=r"is not started: use `async with runtime:`"):
        _ = runtime.env

    async def main() -> None:
        async with runtime:
            with pytest.raises(RuntimeError, match="already started"):
                await runtime.start()

    asyncio.run(main())
    with pytest.raises(RuntimeError, match="is not started"):
        _ = runtime.env


def test_a_second_runtime_on_the_same_data_folder_is_refused(tmp_path: Path) -> None:
    root = write_project(tmp_path)

    async def main() -> int:
        async with objectd.Runtime(root, data_dir=tmp_path / "data") as first:
            await first.env.THINGS.get_by_name("a").add(1)
            second = objectd.Runtime(root, data_dir=tmp_path / "data")
            with pytest.raises(DataFolderInUseError, match="in use by another objectd server"):
                await second.start()
            assert not second.started
        async with second:  # the first has closed: the folder is free
            value: int = await second.env.THINGS.get_by_name("a").add(1)
            return value

    assert asyncio.run(main()) == 2


def test_an_exception_in_the_block_closes_everything(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    runtime = objectd.Runtime(root, data_dir=tmp_path / "data")

    async def fail() -> None:
        async with runtime:
            await runtime.env.THINGS.get_by_name("a").add(7)
            raise ZeroDivisionError

    async def main() -> int:
        with pytest.raises(ZeroDivisionError):
            await fail()
        assert not runtime.started
        # The lock is released and the write was committed before the files closed.
        async with objectd.Runtime(root, data_dir=tmp_path / "data") as again:
            value: int = await again.env.THINGS.get_by_name("a").add(0)
            return value

    assert asyncio.run(main()) == 7


def test_a_server_still_refuses_a_project_without_entrypoint(tmp_path: Path) -> None:
    root = write_project(tmp_path)

    async def main() -> None:
        with pytest.raises(ConfigError, match="no entrypoint"):
            Project.load(root, data_dir=tmp_path / "data")
        # and the refusal released the folder's lock: the Runtime loads it
        async with objectd.Runtime(root, data_dir=tmp_path / "data") as runtime:
            assert not runtime._app.project.has_entrypoint  # type: ignore[union-attr]

    asyncio.run(main())


def _mounted(runtime: objectd.Runtime) -> Starlette:
    return Starlette(routes=[Mount("/do", app=runtime.asgi)])


def test_asgi_mounted_answers_503_until_started_and_after_close(tmp_path: Path) -> None:
    runtime = objectd.Runtime(write_project(tmp_path, entrypoint=True), data_dir=tmp_path / "d")
    transport = httpx.ASGITransport(app=_mounted(runtime))

    async def main() -> list[tuple[int, str]]:
        answers = []
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for phase in ("before", "started", "after"):
                if phase == "started":
                    await runtime.start()
                response = await client.post("/do/some/path?q=1")
                answers.append((response.status_code, response.text))
                if phase == "started":
                    await runtime.close()
        return answers

    before, started, after = asyncio.run(main())
    # The Worker sees the path below the mount point.
    assert started == (200, "POST /some/path")
    for status, text in (before, after):
        assert status == 503
        assert "the objectd Runtime serving this path is not started" in text


def test_asgi_without_entrypoint_answers_500_saying_why(tmp_path: Path) -> None:
    runtime = objectd.Runtime(write_project(tmp_path), data_dir=tmp_path / "d")
    transport = httpx.ASGITransport(app=_mounted(runtime))

    async def main() -> httpx.Response:
        async with (
            runtime,
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        ):
            return await client.get("/do/")

    response = asyncio.run(main())
    assert response.status_code == 500
    assert "worker.py has no Worker entrypoint" in response.text
    assert "runtime.env" in response.text


def test_a_start_that_fails_after_loading_releases_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_project(tmp_path)

    def refuse(self: object) -> None:
        raise OSError("no alarm scheduler today")

    async def main() -> int:
        with monkeypatch.context() as patched:
            patched.setattr(AlarmScheduler, "start", refuse)
            with pytest.raises(OSError, match="no alarm scheduler today"):
                await objectd.Runtime(root, data_dir=tmp_path / "data").start()
        async with objectd.Runtime(root, data_dir=tmp_path / "data") as runtime:
            value: int = await runtime.env.THINGS.get_by_name("a").add(1)
            return value

    assert asyncio.run(main()) == 1


class AcceptedSocket:
    """A framework WebSocket its endpoint has accepted already: records what is sent."""

    def __init__(self) -> None:
        self.scope = {"type": "websocket", "path": "/ws", "headers": []}
        self.sent: list[object] = []

    async def receive(self) -> dict[str, object]:
        return {"type": "websocket.receive", "text": "early"}

    async def send(self, message: object) -> None:
        self.sent.append(message)


def test_connect_websocket_refuses_a_websocket_already_accepted(tmp_path: Path) -> None:
    socket = AcceptedSocket()

    async def main() -> None:
        async with objectd.Runtime(write_project(tmp_path), data_dir=tmp_path / "d") as runtime:
            stub = runtime.env.THINGS.get_by_name("a")
            with pytest.raises(RuntimeError, match="needs a WebSocket that is not accepted yet"):
                await runtime.connect_websocket(stub, socket)

    asyncio.run(main())
    assert socket.sent == []


def test_concurrent_starts_load_the_project_once(tmp_path: Path) -> None:
    runtime = objectd.Runtime(write_project(tmp_path), data_dir=tmp_path / "d")

    async def main() -> list[str]:
        results = await asyncio.gather(runtime.start(), runtime.start(), return_exceptions=True)
        await runtime.close()
        return sorted(repr(result) for result in results)

    assert asyncio.run(main()) == [
        "None",
        "RuntimeError('this objectd.Runtime is already started')",
    ]


def test_a_stub_used_after_close_is_refused_and_opens_nothing(tmp_path: Path) -> None:
    """A stub outlives its Runtime: once closed, no call (nor an event delivered to a
    host still referenced, as a socket's would be) brings the object back without the
    data folder's lock; after a restart the old stub stays refused too."""
    root = write_project(tmp_path)
    runtime = objectd.Runtime(root, data_dir=tmp_path / "data")

    async def main() -> int:
        async with runtime:
            stub = runtime.env.THINGS.get_by_name("a")
            await stub.add(1)
            project = runtime._app.project
            assert project is not None
            things = project.classes["Thing"]
            host = things.hosts[stub.id]
        calls = (stub.add(1), stub.fetch("https://x/"), host.submit(lambda t: t.add(1)))
        for call in calls:
            with pytest.raises(objectd.DurableObjectError, match="is closed"):
                await call
        assert things.hosts == {} and host.storage is None
        async with runtime:  # restarted: a new project, the old stub still belongs to the old
            with pytest.raises(objectd.DurableObjectError, match="is closed"):
                await stub.add(1)
            fresh: int = await runtime.env.THINGS.get_by_name("a").add(0)
        # Nothing was left open: another runtime gets the folder, and the writes refused
        # after close never happened.
        async with objectd.Runtime(root, data_dir=tmp_path / "data") as other:
            assert await other.env.THINGS.get_by_name("a").add(0) == fresh
        return fresh

    assert asyncio.run(main()) == 1


def test_sys_exit_while_the_worker_is_imported_is_a_load_error(tmp_path: Path) -> None:
    """``sys.exit()`` in the worker module must not end the host program: Runtime.start
    raises the load error (the user's file and line), as the dev server reports it."""
    root = write_project(tmp_path)
    worker = root / "worker.py"
    code = worker.read_text()
    worker.write_text(code + "\nimport sys\nsys.exit(3)\n")
    runtime = objectd.Runtime(root, data_dir=tmp_path / "data")

    async def main() -> int:
        with pytest.raises(ConfigError) as info:
            await runtime.start()
        assert not runtime.started
        message = str(info.value)
        assert f'File "{worker}"' in message and "SystemExit: 3" in message
        worker.write_text(code)
        sys.modules.pop("worker", None)
        async with runtime:  # nothing was left held: the fixed project starts
            value: int = await runtime.env.THINGS.get_by_name("a").add(1)
            return value

    assert asyncio.run(main()) == 1
