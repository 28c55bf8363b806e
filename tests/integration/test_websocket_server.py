"""WebSockets against a real ``objectd serve`` process, with a real WebSocket client (spec §8).

The bench app's ChatRoom routes (shared/bench/API.md) and, with ``apps/hibernate`` and a
short ``--idle-timeout``, hibernation: the instance is rebuilt while the socket stays open.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Server
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

HIBERNATE_APP = Path(__file__).resolve().parent / "apps" / "hibernate"
LOST = "WebSocket disconnected without sending Close frame."


def ws_url(server: Server, path: str) -> str:
    return server.url.replace("http://", "ws://", 1) + path


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 30))


async def get_json(server: Server, path: str) -> Any:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        response = await http.get(path)
        assert response.status_code == 200, response.text
        return response.json()


async def recv(ws: ClientConnection, seconds: float = 5.0) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), seconds)


async def nothing_arrives(ws: ClientConnection, seconds: float = 0.3) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), seconds)


# -- the bench ChatRoom (API.md) -----------------------------------------------------------


def test_room_count_and_426(server: Server) -> None:
    with server.client() as http:
        response = http.get("/room/r0/websocket")
        assert response.status_code == 426
        assert response.text == "Expected Upgrade: websocket"
        assert response.headers["content-type"] == "text/plain;charset=UTF-8"
        response = http.get("/room/r0/count")
        assert (response.status_code, response.text) == (200, '{"count":0}')
        assert response.headers["content-type"] == "application/json"


def test_room_broadcast_ping_and_close_echo(server: Server) -> None:
    async def main() -> None:
        url = ws_url(server, "/room/chat/websocket")
        async with connect(url) as a, connect(url) as b, connect(url) as c:
            assert await get_json(server, "/room/chat/count") == {"count": 3}
            # checklist 133: each message reaches every OTHER socket, in order, same type.
            for i in range(20):
                await a.send(f"text {i}")
            await a.send(b"\x00\xffbinary")
            for other in (b, c):
                assert [await recv(other) for _ in range(20)] == [f"text {i}" for i in range(20)]
                assert await recv(other) == b"\x00\xffbinary"
            # checklist 138: ping is answered by the runtime, to the sender only.
            await b.send("ping")
            assert await recv(b) == "pong"
            await nothing_arrives(a)
            await nothing_arrives(c)
            # checklist 141/142: a client close is answered with the same code and reason.
            await c.close(4001, "bye")
            assert (c.close_code, c.close_reason) == (4001, "bye")
            await asyncio.sleep(0.2)
            assert await get_json(server, "/room/chat/count") == {"count": 2}  # checklist 143
            await b.send("still here")
            assert await recv(a) == "still here"

    run(main)


def test_upgrade_to_a_plain_route_gets_its_http_answer(server: Server) -> None:
    async def main() -> None:
        for path, status in [("/room/x/count", 200), ("/nope/x/y", 404), ("/throw", 500)]:
            with pytest.raises(InvalidStatus) as caught:
                async with connect(ws_url(server, path)):
                    pass
            assert caught.value.response.status_code == status

    run(main)


def test_145_messages_up_to_32_mib(server: Server) -> None:
    async def main() -> None:
        url = ws_url(server, "/room/big/websocket")
        async with connect(url, max_size=None) as a, connect(url, max_size=None) as b:
            payload = bytes(range(256)) * (32 * 1024 * 1024 // 256)
            await a.send(payload)
            assert await recv(b, seconds=20) == payload

    run(main)


# -- hibernation (146, 147) and close events (141) -----------------------------------------


@pytest.fixture
def hibernating(tmp_path: Path) -> Iterator[Server]:
    project = tmp_path / "hibernate"
    shutil.copytree(HIBERNATE_APP, project)
    srv = Server(project, tmp_path / "data", "--idle-timeout", "0.5").start()
    try:
        yield srv
    finally:
        srv.kill()


async def info(ws: ClientConnection) -> Any:
    await ws.send("info")
    return json.loads(await recv(ws))


def test_146_147_hibernated_room_is_rebuilt_and_keeps_its_sockets(hibernating: Server) -> None:
    async def main() -> None:
        url = ws_url(hibernating, "/ws/lobby?tag=blue&tag=admin&name=ana")
        async with connect(url) as ws, connect(ws_url(hibernating, "/ws/lobby")) as other:
            first = await info(ws)
            assert first == {
                "constructed": 1,
                "tags": ["blue", "admin"],
                "attachment": {"name": "ana"},
                "sockets": 2,
            }
            # Idle past the timeout: the instance is evicted, the sockets stay open.
            await asyncio.sleep(2.0)
            assert await info(ws) == {**first, "constructed": 2}  # rebuilt, same socket
            assert (await info(other))["constructed"] == 2
            await asyncio.sleep(2.0)
            assert (await info(other))["constructed"] == 3

    run(main)


def test_141_close_events_and_reset(hibernating: Server) -> None:
    async def main() -> None:
        async with connect(ws_url(hibernating, "/ws/closing")) as ws:
            await ws.close(4000, "done")
        dropped = await connect(ws_url(hibernating, "/ws/closing"))
        assert (await info(dropped))["sockets"] == 1
        dropped.transport.abort()  # no Close frame
        await asyncio.sleep(0.3)
        state = await get_json(hibernating, "/state/closing")
        assert state["closes"] == [[4000, "done", True], [1006, LOST, False]]
        assert state["sockets"] == 0
        # spec §8: a reset disconnects the object's sockets.
        url = ws_url(hibernating, "/ws/closing")
        async with connect(url) as a, connect(url) as b:
            await a.send("abort")
            with pytest.raises(ConnectionClosed):
                await recv(b)
            assert b.close_code == 1011

    run(main)


def test_162_web_socket_error_on_a_protocol_error_and_an_oversized_frame(
    hibernating: Server,
) -> None:
    """A socket that fails (a frame breaking the protocol, a frame over the 32 MiB message
    limit) calls ``webSocketError``, not ``webSocketClose`` (spec §8), and leaves the
    object's sockets; the peer is closed with the code the failure calls for."""

    async def errors(count: int) -> Any:
        for _ in range(100):
            state = await get_json(hibernating, "/state/failing")
            if len(state["errors"]) >= count:
                return state
            await asyncio.sleep(0.05)
        raise AssertionError(f"no webSocketError after 5 s: {state}")

    async def main() -> None:
        url = ws_url(hibernating, "/ws/failing")
        async with connect(url) as bad:
            assert (await info(bad))["sockets"] == 1
            # A masked client frame with the reserved opcode 0x3.
            bad.transport.write(bytes([0x83, 0x80, 1, 2, 3, 4]))
            with pytest.raises(ConnectionClosed):
                await recv(bad)
            assert bad.close_code == 1002
        state = await errors(1)
        assert state["errors"] == [
            ["Exception", "WebSocket protocol error (1002): invalid opcode", 0]
        ]
        async with connect(url) as big:
            assert (await info(big))["sockets"] == 1
            # The head of a masked binary frame of 32 MiB + 1 bytes: refused from its
            # length alone (the payload need not be sent, so no unread bytes reset the
            # connection before the peer reads the Close).
            size = 32 * 1024 * 1024 + 1
            big.transport.write(bytes([0x82, 0x80 | 127]) + size.to_bytes(8, "big") + b"mask")
            with pytest.raises(ConnectionClosed):
                await recv(big, seconds=20)
            assert big.close_code == 1009
        state = await errors(2)
        assert state["errors"][1] == [
            "Exception",
            "WebSocket protocol error (1009): frame with 33554433 bytes exceeds limit of "
            "33554432 bytes",
            0,
        ]
        assert state["closes"] == []  # an error is not also a close
        assert state["sockets"] == 0

    run(main)


# -- examples/chat --------------------------------------------------------------------------


@pytest.mark.parametrize("project", ["chat"], indirect=True)
def test_chat_example_stores_and_replays(server: Server) -> None:
    async def main() -> None:
        with server.client() as http:
            assert "<title>objectd chat</title>" in http.get("/r/lobby").text
        url = ws_url(server, "/api/rooms/lobby/websocket")
        async with connect(url + "?user=ana") as ana:
            assert json.loads(await recv(ana)) == {"type": "history", "messages": []}
            assert json.loads(await recv(ana))["online"] == ["ana"]
            async with connect(url + "?user=bo") as bo:
                await recv(bo)  # history
                assert json.loads(await recv(ana)) == {
                    "type": "join",
                    "user": "bo",
                    "online": ["ana", "bo"],
                }
                await recv(bo)  # its own join
                await bo.send(json.dumps({"text": "hello ana"}))
                for ws in (ana, bo):  # everyone, the sender included, once it is stored
                    message = json.loads(await recv(ws))
                    assert (message["user"], message["text"]) == ("bo", "hello ana")
                await ana.send("ping")
                assert await recv(ana) == "pong"
        server.stop()
        server.start()  # the messages are in the room's SQL storage
        async with connect(ws_url(server, "/api/rooms/lobby/websocket?user=cy")) as cy:
            history = json.loads(await recv(cy))["messages"]
            assert [(m["user"], m["text"]) for m in history] == [("bo", "hello ana")]

    run(main)


@pytest.mark.parametrize("project", ["chat"], indirect=True)
def test_chat_presence_is_per_user_not_per_socket(server: Server) -> None:
    # Issue 15 §6: "ana left" while ana still had another tab open.
    async def main() -> None:
        url = ws_url(server, "/api/rooms/lobby/websocket")

        async def joined(user: str) -> ClientConnection:
            ws = await connect(f"{url}?user={user}")
            assert json.loads(await recv(ws))["type"] == "history"
            assert json.loads(await recv(ws))["type"] == "join"  # its own, with the list
            return ws

        bo = await joined("bo")
        tab1 = await joined("ana")
        assert json.loads(await recv(bo))["online"] == ["ana", "bo"]
        tab2 = await joined("ana")
        await nothing_arrives(bo)  # ana's second tab: ana was already here
        await tab1.close()
        await nothing_arrives(bo)  # and is still here
        await tab2.send(json.dumps({"text": "still here"}))
        assert json.loads(await recv(bo))["text"] == "still here"
        await tab2.close()
        assert json.loads(await recv(bo)) == {"type": "leave", "user": "ana", "online": ["bo"]}
        await bo.close()

    run(main)
