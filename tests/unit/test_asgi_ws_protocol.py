"""objectd's WebSocket protocol for uvicorn, in process on loopback: the close codes an app
is told (a peer's Close, its answer to ours, a lost connection), the send-buffer extension,
and the receive budget.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import uvicorn
from websockets.asyncio.client import connect

from objectd.asgi.limits import FrontLimits
from objectd.asgi.protocol import ServerConfig
from objectd.asgi.websocket import EXTENSION

HANDSHAKE = (
    b"GET /bare HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def test_close_codes_and_the_send_buffer_extension() -> None:
    ended: dict[str, tuple[int, str]] = {}
    buffered: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        buffered.append(scope["extensions"][EXTENSION]["write_buffer_size"]())
        if scope["path"] == "/server-close":
            await send({"type": "websocket.close", "code": 4002, "reason": "bye"})
        while (message := await receive())["type"] != "websocket.disconnect":
            pass
        ended[scope["path"]] = (message["code"], message.get("reason", ""))

    async def main() -> None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            ws="objectd.asgi.ws_protocol:WebSocketProtocol",
            lifespan="off",
            log_level="warning",
        )
        server = uvicorn.Server(config)
        sock = config.bind_socket()
        sock.listen()
        base = f"ws://127.0.0.1:{sock.getsockname()[1]}"
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            async with connect(base + "/server-close") as ws:
                await ws.wait_closed()
            assert ws.close_code == 4002  # we closed; the client answered with the same
            async with connect(base + "/client-close") as ws:
                await ws.close(4001, "done")
            ws = await connect(base + "/lost")
            ws.transport.abort()  # no Close frame
            reader, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
            writer.write(HANDSHAKE)
            await reader.readuntil(b"\r\n\r\n")
            writer.write(bytes([0x88, 0x80, 1, 2, 3, 4]))  # a Close frame without a code
            for _ in range(200):
                if len(ended) == 4:
                    break
                await asyncio.sleep(0.01)
            writer.close()
        finally:
            server.should_exit = True
            await serving
        assert ended == {
            "/server-close": (4002, "bye"),  # the peer's answer, not just our own code
            "/client-close": (4001, "done"),
            "/lost": (1006, ""),  # uvicorn alone says 1005, as for the bare Close below
            "/bare": (1005, ""),
        }
        assert buffered == [0, 0, 0, 0]

    asyncio.run(main())


def frame(opcode: int, payload: bytes, *, fin: bool) -> bytes:
    """A client frame masked with a zero key, so the payload goes out as it is."""
    first = (0x80 if fin else 0) | opcode
    return bytes([first, 0x80 | 127]) + struct.pack("!Q", len(payload)) + bytes(4) + payload


def test_incoming_messages_are_joined_and_share_one_budget() -> None:
    """Adversarial re-test of issue 9, finding 4: the bytes of incoming messages held by
    the server count against one budget for all connections; the connection whose bytes
    would exceed it is closed with 1013 (the app is told, unclean), and what it held is
    given back.  Fragmented messages reach the app joined, text and binary alike."""
    received: dict[str, list[Any]] = {}
    ended: dict[str, dict[str, Any]] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        messages = received.setdefault(scope["path"], [])
        while (message := await receive())["type"] != "websocket.disconnect":
            messages.append(message.get("text", message.get("bytes")))
        ended[scope["path"]] = message

    async def main() -> None:
        config = ServerConfig(
            app,
            limits=FrontLimits(ws_receive_buffer_bytes=100_000),
            host="127.0.0.1",
            port=0,
            ws="objectd.asgi.ws_protocol:WebSocketProtocol",
            lifespan="off",
            log_level="warning",
        )
        server = uvicorn.Server(config)
        sock = config.bind_socket()
        sock.listen()
        port = sock.getsockname()[1]
        serving = asyncio.create_task(server.serve(sockets=[sock]))

        async def open_raw(path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(HANDSHAKE.replace(b"/bare", path.encode()))
            await reader.readuntil(b"\r\n\r\n")
            return reader, writer

        async def until(predicate: Any) -> None:
            for _ in range(300):
                if predicate():
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("condition not met in time")

        budget = config.ws_receive_budget
        try:
            _, joined = await open_raw("/joined")
            joined.write(frame(0x1, b"hel", fin=False) + frame(0x0, b"lo ", fin=False))
            joined.write(frame(0x0, "wörld".encode(), fin=True))
            joined.write(frame(0x2, b"\x00\x01", fin=False) + frame(0x0, b"\x02", fin=True))
            joined.write(frame(0x2, b"one", fin=True))
            await until(lambda: len(received.get("/joined", [])) == 3)
            assert received["/joined"] == ["hello wörld", b"\x00\x01\x02", b"one"]
            assert budget.held == 0  # all taken by the app

            _, holder = await open_raw("/holder")
            holder.write(frame(0x2, bytes(60_000), fin=False))  # unfinished: held
            await until(lambda: budget.held >= 60_000)
            hog_reader, hog = await open_raw("/hog")
            hog.write(frame(0x2, bytes(50_000), fin=False))  # 110,000 > 100,000
            await until(lambda: "/hog" in ended)
            assert ended["/hog"]["code"] == 1013
            assert ended["/hog"]["objectd.unclean"] is True
            close = await asyncio.wait_for(hog_reader.read(), 5)  # the Close, then EOF
            assert close[:2] == b"\x88" + bytes([len(close) - 2])
            assert struct.unpack("!H", close[2:4])[0] == 1013
            assert 60_000 <= budget.held < 100_000  # the hog's bytes were given back
            holder.close()
            await until(lambda: "/holder" in ended)
            assert budget.held == 0
            joined.close()
            hog.close()
            await until(lambda: len(ended) == 3)
        finally:
            server.should_exit = True
            await serving
        assert budget.held == 0

    asyncio.run(main())
