"""objectd's WebSocket protocol for uvicorn, in process on loopback: the close codes an app
is told (a peer's Close, its answer to ours, a lost connection) and the send-buffer extension.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from websockets.asyncio.client import connect

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
