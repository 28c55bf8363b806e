"""objectd.Runtime under a real uvicorn server: lifespans and relayed WebSockets (issue 14 §4).

The server runs in a thread of this process (``uvicorn.Server`` on port 0, its own event
loop, where the Runtime runs too); the clients are real (httpx, websockets).
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from conftest import wait_until
from starlette.applications import Starlette
from starlette.routing import Mount, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.exceptions import InvalidStatus

import objectd

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

WORKER = """
from urllib.parse import urlsplit
from objectd import DurableObject, Response, WebSocketPair, WorkerEntrypoint

class Thing(DurableObject):
    async def fetch(self, request):
        path = urlsplit(request.url).path
        if path == "/closed":
            return Response(repr(await self.ctx.storage.get("closed")))
        if request.headers.get("upgrade") != "websocket":
            return Response(f"{request.method} {path}")
        if path.endswith("/nope"):
            return Response("not here", status=404)
        client, server = WebSocketPair()
        self.ctx.accept_web_socket(server)
        server.send(f"hello {path}")  # before the 101 went out: delivered first
        return Response(None, status=101, web_socket=client)

    async def web_socket_message(self, ws, message):
        ws.send(f"echo {message}")
        await self.ctx.storage.put("last", message)

    async def web_socket_close(self, ws, code, reason, was_clean):
        await self.ctx.storage.put("closed", [code, was_clean])

    async def last(self):
        return await self.ctx.storage.get("last")

class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return await self.env.THINGS.get_by_name("one").fetch(request)
"""


@pytest.fixture
def runtime(tmp_path: Path) -> objectd.Runtime:
    root = tmp_path / "app"
    root.mkdir()
    (root / "wrangler.toml").write_text(WRANGLER)
    (root / "worker.py").write_text(textwrap.dedent(WORKER))
    sys.modules.pop("worker", None)
    return objectd.Runtime(root, data_dir=tmp_path / "data")


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` under a real uvicorn server on port 0 in a thread; yields its URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(600):
            if server.started or not thread.is_alive():
                break
            thread.join(0.05)
        assert server.started, "uvicorn did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        assert not thread.is_alive()


def relaying_app(runtime: objectd.Runtime) -> Starlette:
    async def endpoint(websocket: WebSocket) -> None:
        stub = runtime.env.THINGS.get_by_name(websocket.path_params["name"])
        await runtime.connect_websocket(stub, websocket)

    async def chosen(websocket: WebSocket) -> None:
        stub = runtime.env.THINGS.get_by_name("a")
        await runtime.connect_websocket(stub, websocket, url="https://room.internal/chosen")

    return Starlette(
        routes=[
            WebSocketRoute("/ws/chosen", chosen),
            WebSocketRoute("/ws/{name}/{rest:path}", endpoint),
            Mount("/do", app=runtime.asgi),
        ],
        lifespan=runtime.lifespan,
    )


def test_connect_websocket_relays_a_starlette_websocket_to_an_object(
    runtime: objectd.Runtime,
) -> None:
    async def client(address: str) -> list[str]:
        seen = []
        async with websockets.connect(f"ws://{address}/ws/a/room", open_timeout=10) as ws:
            seen.append(await asyncio.wait_for(ws.recv(), 10))
            await ws.send("hi")
            seen.append(await asyncio.wait_for(ws.recv(), 10))
        async with websockets.connect(f"ws://{address}/ws/chosen", open_timeout=10) as ws:
            seen.append(await asyncio.wait_for(ws.recv(), 10))
        return seen

    with serving(relaying_app(runtime)) as address:
        assert runtime.started  # the app's lifespan started it
        assert asyncio.run(client(address)) == ["hello /ws/a/room", "echo hi", "hello /chosen"]
    assert not runtime.started  # and closed it


def test_connect_websocket_passes_on_an_objects_refusal_as_http(
    runtime: objectd.Runtime,
) -> None:
    async def client(address: str) -> InvalidStatus:
        with pytest.raises(InvalidStatus) as info:
            async with websockets.connect(f"ws://{address}/ws/a/nope", open_timeout=10):
                pass
        return info.value

    with serving(relaying_app(runtime)) as address:
        refusal = asyncio.run(client(address))
    assert refusal.response.status_code == 404
    assert refusal.response.body == b"not here"


def test_a_client_that_drops_the_relayed_socket_is_lost_to_the_object(
    runtime: objectd.Runtime, tmp_path: Path
) -> None:
    async def client(address: str) -> None:
        ws = await websockets.connect(f"ws://{address}/ws/one/room", open_timeout=10)
        await asyncio.wait_for(ws.recv(), 10)
        await ws.send("kept")
        assert await asyncio.wait_for(ws.recv(), 10) == "echo kept"
        ws.transport.abort()  # no Close frame: the connection is lost

    with serving(relaying_app(runtime)) as address:
        asyncio.run(client(address))
        with httpx.Client(base_url=f"http://{address}", timeout=10) as http:
            wait_until(lambda: http.get("/do/closed").text != "None")
            # The object sees the connection end with the code the host server reports:
            # uvicorn's own WebSocket protocols report a lost connection as 1005.
            assert http.get("/do/closed").text in ("[1005, True]", "[1006, False]")

    async def read() -> Any:
        async with objectd.Runtime(tmp_path / "app", data_dir=tmp_path / "data") as again:
            return await again.env.THINGS.get_by_name("one").last()

    assert asyncio.run(read()) == "kept"


def test_runtime_asgi_served_alone_starts_and_closes_with_its_lifespan(
    runtime: objectd.Runtime,
) -> None:
    with serving(runtime.asgi) as address:
        assert runtime.started
        with httpx.Client(base_url=f"http://{address}", timeout=10) as http:
            assert http.post("/x/y").text == "POST /x/y"
    assert not runtime.started


def test_mounted_asgi_relays_the_workers_own_upgrade(runtime: objectd.Runtime) -> None:
    async def client(address: str) -> list[str]:
        async with websockets.connect(f"ws://{address}/do/up", open_timeout=10) as ws:
            first = await asyncio.wait_for(ws.recv(), 10)
            await ws.send("x")
            return [first, await asyncio.wait_for(ws.recv(), 10)]

    with serving(relaying_app(runtime)) as address:
        assert asyncio.run(client(address)) == ["hello /up", "echo x"]


def test_mounted_asgi_refuses_upgrades_until_the_runtime_starts(tmp_path: Path) -> None:
    """Starlette passes no lifespan to a mounted app: without the app's lifespan starting
    the Runtime, runtime.asgi answers 503 rather than loading the project itself."""
    root = tmp_path / "app"
    root.mkdir()
    (root / "wrangler.toml").write_text(WRANGLER)
    (root / "worker.py").write_text(textwrap.dedent(WORKER))
    sys.modules.pop("worker", None)
    runtime = objectd.Runtime(root, data_dir=tmp_path / "data")
    app = Starlette(routes=[Mount("/do", app=runtime.asgi)])  # no lifespan=runtime.lifespan

    async def upgrade(address: str) -> InvalidStatus:
        with pytest.raises(InvalidStatus) as info:
            async with websockets.connect(f"ws://{address}/do/up", open_timeout=10):
                pass
        return info.value

    with serving(app) as address:
        refusal = asyncio.run(upgrade(address))
        with httpx.Client(base_url=f"http://{address}", timeout=10) as http:
            response = http.get("/do/x")
    assert refusal.response.status_code == response.status_code == 503
    assert b"the objectd Runtime serving this path is not started" in refusal.response.body
    assert "is not started" in response.text
    assert not runtime.started and not (tmp_path / "data").exists()


def test_mounted_asgi_without_entrypoint_refuses_upgrades_saying_why(tmp_path: Path) -> None:
    root = tmp_path / "app"
    root.mkdir()
    (root / "wrangler.toml").write_text(WRANGLER)
    (root / "worker.py").write_text(textwrap.dedent(WORKER).split("class Default")[0])
    sys.modules.pop("worker", None)
    runtime = objectd.Runtime(root, data_dir=tmp_path / "data")

    async def upgrade(address: str) -> InvalidStatus:
        with pytest.raises(InvalidStatus) as info:
            async with websockets.connect(f"ws://{address}/do/up", open_timeout=10):
                pass
        return info.value

    with serving(relaying_app(runtime)) as address:
        refusal = asyncio.run(upgrade(address))
    assert refusal.response.status_code == 500
    assert b"has no Worker entrypoint" in refusal.response.body
