"""WebSocket peers that do not read, against a real ``objectd serve`` (issue 9, point 4).

A peer that does not read must not make the server buffer without bound, and a reader
at an ordinary pace is never dropped, keepalive pings included.

The non-reading peers are raw sockets with a tiny receive buffer and a hand-made
handshake, so nothing on the client side drains the server.  Every test is bounded by
sizes and deadlines, never by how fast the machine is.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import Server
from websockets.asyncio.client import ClientConnection, connect

FLOOD_APP = Path(__file__).resolve().parent / "apps" / "flood"
MiB = 1024 * 1024


@pytest.fixture
def flood(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    """``objectd serve`` on the flood app, with the CLI options of ``@pytest.mark.parametrize``."""
    project = tmp_path / "flood"
    shutil.copytree(FLOOD_APP, project)
    srv = Server(project, tmp_path / "data", *getattr(request, "param", ())).start()
    try:
        yield srv
    finally:
        srv.kill()


def run(main: Callable[[], Awaitable[None]], seconds: float = 40) -> None:
    asyncio.run(asyncio.wait_for(main(), seconds))


def ws_url(server: Server, path: str) -> str:
    return server.url.replace("http://", "ws://", 1) + path


def rss(server: Server) -> int:
    assert server.proc is not None
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def state(server: Server, room: str) -> Any:
    response = httpx.get(f"{server.url}/state/{room}", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def no_traceback(server: Server) -> None:
    assert "Traceback" not in server.output, server.output
    assert "keepalive ping failed" not in server.output, server.output


# -- a raw client: a hand-made handshake and hand-made frames --------------------------------


def raw_connect(server: Server, path: str, rcvbuf: int = 4096) -> socket.socket:
    """A WebSocket that reads only what the test asks for (tiny kernel receive buffer)."""
    address = urlsplit(server.url)
    assert address.hostname == "127.0.0.1"
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: the window
    sock.settimeout(10)
    sock.connect(("127.0.0.1", address.port or 80))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{address.port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.sendall(request.encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):  # byte by byte: nothing of the frames is read
        byte = sock.recv(1)
        assert byte, head
        head += byte
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (RFC 6455 §5.2) of up to 125 bytes."""
    assert len(payload) <= 125
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


def sequence(frame: str | bytes) -> int:
    assert isinstance(frame, bytes)
    return int.from_bytes(frame[:8], "big")


# -- the protocol: pongs under back-pressure ------------------------------------------------


def test_protocol_pings_without_reading_the_pongs_stop_being_read(flood: Server) -> None:
    """Ping frames are answered by the protocol, not the object: once the pongs fill the
    transport's buffer the server stops reading that peer until it reads (no growth)."""
    sock = raw_connect(flood, "/ws/pongs")
    before = rss(flood)
    burst = client_frame(0x9, bytes(125)) * 100  # the largest control frames
    sock.settimeout(2)
    sent = 0
    with contextlib.suppress(TimeoutError):
        for _ in range(2_000):  # 200,000 pings: 25 MiB of pongs if all were answered
            sock.sendall(burst)
            sent += 100
    grown = rss(flood) - before
    print(f"{sent} pings sent before the server stopped reading; RSS +{grown / MiB:.1f} MiB")
    assert sent < 200_000
    assert grown < 16 * MiB
    sock.close()
    no_traceback(flood)


# -- keepalive: a slow reader is never dropped -----------------------------------------------


@pytest.mark.parametrize("flood", [("--ws-ping-interval", "0.05")], indirect=True)
def test_slow_reader_survives_keepalive_pings(flood: Server) -> None:
    """A reader slower than the sender, at most 3 MiB behind (under the 4 MiB send buffer,
    and more than the kernel buffers, so the server's writes wait for it), across many
    keepalive pings: it gets every frame, is never closed, and nothing is logged (issue 9:
    the pings failed in websockets' legacy drain beside objectd's writer)."""
    total, size, window = 300, 64 * 1024, 48

    async def main() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", urlsplit(flood.url).port or 80))
        sock.setblocking(False)
        url = ws_url(flood, "/ws/paced")
        async with (
            connect(url, sock=sock, max_size=None, max_queue=1) as slow,
            connect(url, max_size=None) as driver,
        ):
            received = 0

            async def read_slowly() -> None:
                nonlocal received
                while received < total:
                    frame = await asyncio.wait_for(slow.recv(), 10)
                    assert sequence(frame) == received
                    received += 1
                    await asyncio.sleep(0.005)

            async def drain(ws: ClientConnection) -> None:
                async for _ in ws:  # the driver gets every frame too
                    pass

            reading = asyncio.create_task(read_slowly())
            draining = asyncio.create_task(drain(driver))
            sent = 0
            while sent < total:  # at most `window` frames (3 MiB) ahead of the slow reader
                if sent - received < window:
                    await driver.send(f"blast 1 {size}")
                    sent += 1
                else:
                    await asyncio.sleep(0.002)
                assert not reading.done() or reading.exception() is None
            await reading
            draining.cancel()
            await slow.ping()  # still open, and still answering
            assert state(flood, "paced")["closes"] == []

    run(main)
    no_traceback(flood)
