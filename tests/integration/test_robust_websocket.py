"""WebSocket peers that do not read, against a real ``objectd serve`` (issue 9, point 4).

A peer that stops reading must not make the server buffer without bound: past the
send buffer (``--ws-send-buffer``) without draining for ``--ws-ping-timeout``, or past
four times it, it is closed with 1008, its object sees the close, and a peer that does
not read the Close either is dropped after ``--ws-ping-timeout``.  A reader at an
ordinary pace is never dropped, keepalive pings included, nor is a fast reader sent a
burst past the bound.  Incoming messages being assembled share one budget
(``--ws-receive-buffer``).

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
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import Server, wait_until
from websockets.asyncio.client import ClientConnection, connect

FLOOD_APP = Path(__file__).resolve().parent / "apps" / "flood"
MiB = 1024 * 1024
OVERFLOW_CODE = 1008


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


def open_sockets(server: Server) -> int:
    assert server.proc is not None
    fds = Path(f"/proc/{server.proc.pid}/fd")
    count = 0
    for fd in fds.iterdir():
        with contextlib.suppress(FileNotFoundError):  # gone while we looked
            count += os.readlink(fd).startswith("socket:")
    return count


def state(server: Server, room: str) -> Any:
    response = httpx.get(f"{server.url}/state/{room}", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def overflow_closes(server: Server, room: str) -> list[Any]:
    return [c for c in state(server, room)["closes"] if c[0] == OVERFLOW_CODE]


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


def data_frame(opcode: int, payload: bytes, *, fin: bool) -> bytes:
    """A client frame of any size, masked with a zero key (RFC 6455 allows any key), so
    the payload goes out as it is."""
    first = (0x80 if fin else 0) | opcode
    return bytes([first, 0x80 | 127]) + struct.pack("!Q", len(payload)) + bytes(4) + payload


def read_until_close(sock: socket.socket) -> tuple[int, int | None]:
    """Read frames until a Close frame or the end: (data frames seen, close code or None)."""
    buffer = bytearray()
    frames = 0

    def need(n: int) -> bool:
        while len(buffer) < n:
            try:
                chunk = sock.recv(1 << 20)
            except (ConnectionResetError, TimeoutError):
                return False
            if not chunk:
                return False
            buffer.extend(chunk)
        return True

    while need(2):
        opcode, length = buffer[0] & 0x0F, buffer[1] & 0x7F
        start = 2
        if length == 126:
            if not need(4):
                break
            (length,) = struct.unpack("!H", buffer[2:4])
            start = 4
        elif length == 127:
            if not need(10):
                break
            (length,) = struct.unpack("!Q", buffer[2:10])
            start = 10
        if not need(start + length):
            break
        payload = bytes(buffer[start : start + length])
        del buffer[: start + length]
        if opcode == 0x8:
            return frames, struct.unpack("!H", payload[:2])[0] if payload else 1005
        frames += 1
    return frames, None


def sequence(frame: str | bytes) -> int:
    assert isinstance(frame, bytes)
    return int.from_bytes(frame[:8], "big")


async def blast(reader: ClientConnection, count: int, size: int = MiB) -> None:
    """Ask for ``count`` frames of ``size`` bytes, one at a time: the reader reads each
    before asking for the next (an ordinary pace)."""
    for _ in range(count):
        await reader.send(f"blast 1 {size}")
        await asyncio.wait_for(reader.recv(), 10)


# -- point 4: bounded send buffers -----------------------------------------------------------


def test_readers_that_stop_reading_are_closed_and_memory_stays_bounded(flood: Server) -> None:
    """1 MiB frames to a room with four peers that never read: without a bound the server
    holds every frame for them (~96 MiB, the frames being shared by the five sockets'
    queues); with it they are closed with 1008, the object sees each close, and the peer
    that reads gets every frame."""
    slow = [raw_connect(flood, "/ws/big") for _ in range(4)]

    async def main() -> None:
        async with connect(ws_url(flood, "/ws/big"), max_size=None) as reader:
            assert state(flood, "big")["sockets"] == 5
            await blast(reader, 2)  # warm up: the first frames' buffers are allocated
            before = peak = rss(flood)
            for n in range(96):
                await reader.send(f"blast 1 {MiB}")
                frame = await asyncio.wait_for(reader.recv(), 10)
                assert sequence(frame) == n + 2  # every frame, in order
                peak = max(peak, rss(flood))
            grown = peak - before
            print(f"RSS {before / MiB:.0f} MiB, peak {peak / MiB:.0f} MiB (+{grown / MiB:.1f})")
            assert grown < 32 * MiB  # unbounded: +96 MiB
            wait_until(lambda: len(overflow_closes(flood, "big")) == 4)
            closes = overflow_closes(flood, "big")
            assert all(not clean and "send buffer" in reason for _, reason, clean in closes)
            assert state(flood, "big")["sockets"] == 1
            await reader.send(f"blast 1 {MiB}")  # the reader is still served
            assert sequence(await asyncio.wait_for(reader.recv(), 10)) == 98

    run(main)
    for sock in slow:  # each slow peer finds a Close frame after what was buffered for it
        frames, code = read_until_close(sock)
        assert code == OVERFLOW_CODE, (frames, code)
        assert frames < 98
        sock.close()
    no_traceback(flood)


@pytest.mark.parametrize("flood", [("--ws-ping-timeout", "0.5")], indirect=True)
def test_a_peer_that_does_not_read_the_close_is_dropped(flood: Server) -> None:
    before = open_sockets(flood)
    slow = raw_connect(flood, "/ws/deaf")

    async def main() -> None:
        async with connect(ws_url(flood, "/ws/deaf"), max_size=None) as reader:
            await blast(reader, 24)
            wait_until(lambda: len(overflow_closes(flood, "deaf")) == 1)
            # The slow peer never reads its Close: it is dropped, its descriptor freed.
            wait_until(lambda: open_sockets(flood) == before + 1, timeout=15)  # the reader

    try:
        run(main)
    finally:
        slow.close()
    no_traceback(flood)


@pytest.mark.parametrize("flood", [("--ws-send-buffer", str(MiB))], indirect=True)
def test_ws_send_buffer_sets_the_bound(flood: Server) -> None:
    slow = raw_connect(flood, "/ws/small")

    async def main() -> None:
        async with connect(ws_url(flood, "/ws/small"), max_size=None) as reader:
            # 10 MiB: past the 1 MiB bound's ceiling (4 MiB) plus what the kernel buffers
            # (at most 4 MiB), so closed well before --ws-ping-timeout (20 s); not past the
            # default bound's ceiling (16 MiB) plus the kernel's.
            await blast(reader, 40, size=256 * 1024)
            wait_until(lambda: len(overflow_closes(flood, "small")) == 1)

    run(main)
    frames, code = read_until_close(slow)
    slow.close()
    assert code == OVERFLOW_CODE
    assert frames < 40


def test_ping_auto_response_goes_through_the_bound(flood: Server) -> None:
    """200,000 ``ping`` messages from a peer that never reads the answers (issue 9: +155 MB
    for 2 M): they fill its send buffer, and the peer is closed like any other.

    The answer is 2,048 bytes (the largest allowed), not ``pong``: the kernel's socket
    buffer alone takes some 700,000 ``pong``s before anything waits in the server."""
    sock = raw_connect(flood, "/ws/pings?pong=2048")
    before = rss(flood)
    ping = client_frame(0x1, b"ping")
    stop = threading.Event()

    def flood_pings() -> None:
        burst = ping * 1000
        try:
            for _ in range(200):
                if stop.is_set():
                    return
                sock.sendall(burst)
        except OSError:
            return  # closed by the server: enough

    sender = threading.Thread(target=flood_pings, daemon=True)
    sender.start()
    peak = before
    deadline = time.monotonic() + 30
    while sender.is_alive() and time.monotonic() < deadline:
        peak = max(peak, rss(flood))
        if overflow_closes(flood, "pings"):
            break
        time.sleep(0.05)
    wait_until(lambda: len(overflow_closes(flood, "pings")) == 1, timeout=15)
    stop.set()
    sender.join(10)
    peak = max(peak, rss(flood))
    print(f"RSS {before / MiB:.0f} MiB, peak {peak / MiB:.0f} MiB (+{(peak - before) / MiB:.1f})")
    assert peak - before < 24 * MiB
    frames, code = read_until_close(sock)
    sock.close()
    assert code == OVERFLOW_CODE, (frames, code)
    assert state(flood, "pings")["sockets"] == 0
    no_traceback(flood)


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


# -- a burst is not a slow peer (adversarial re-test, finding 6) ---------------------------


def test_a_fast_reader_gets_every_message_of_a_burst(flood: Server) -> None:
    """One handler call sending 5 x 1 MiB, 80 x 64 KiB or 20,000 x 300 B to a reader on
    localhost closed it with 1008 before the writer had a turn (0 messages received): the
    bound judged the burst, not the peer.  Now the reader gets every message."""

    async def main() -> None:
        async with connect(ws_url(flood, "/ws/burst"), max_size=None) as reader:
            received = 0
            for count, size in [(5, MiB), (80, 64 * 1024), (20_000, 300)]:
                await reader.send(f"blast {count} {size}")
                for _ in range(count):
                    frame = await asyncio.wait_for(reader.recv(), 10)
                    assert sequence(frame) == received
                    received += 1
            assert state(flood, "burst")["closes"] == []

    run(main)
    no_traceback(flood)


@pytest.mark.parametrize("flood", [("--ws-ping-timeout", "1")], indirect=True)
def test_a_peer_that_stays_over_the_bound_without_draining_is_closed(flood: Server) -> None:
    """12 MiB to a peer that does not read: over the 4 MiB bound (and the 4 MiB or so the
    kernel takes) but under the hard ceiling (4 x the bound), so it is not closed at once;
    a send that finds it still behind, nothing drained, --ws-ping-timeout later closes it
    with 1008."""
    slow = raw_connect(flood, "/ws/stall")

    async def main() -> None:
        async with connect(ws_url(flood, "/ws/stall"), max_size=None) as reader:
            await reader.send(f"blast 12 {MiB}")
            for n in range(12):
                assert sequence(await asyncio.wait_for(reader.recv(), 10)) == n
            assert overflow_closes(flood, "stall") == []  # a burst is not a slow peer
            await asyncio.sleep(1.5)  # past --ws-ping-timeout, still not read
            await reader.send("blast 1 16")
            assert sequence(await asyncio.wait_for(reader.recv(), 10)) == 12
            wait_until(lambda: len(overflow_closes(flood, "stall")) == 1)
            assert state(flood, "stall")["sockets"] == 1

    run(main)
    frames, code = read_until_close(slow)
    slow.close()
    assert code == OVERFLOW_CODE, (frames, code)
    assert frames < 13
    no_traceback(flood)


# -- incoming messages share one budget (adversarial re-test, finding 4) --------------------

BUSY_CODE = 1013


@pytest.mark.parametrize("flood", [("--ws-receive-buffer", "16MiB")], indirect=True)
def test_unfinished_incoming_messages_share_one_budget(flood: Server) -> None:
    """Clients sending 1 MiB fragments of a message they never finish (each under the
    32 MiB message limit): 96 of them took the server to 3 GB.  Here 24 clients x 8 MiB
    (192 MiB unbounded) against a 16 MiB budget: past it a client is closed with 1013
    (try again later: the server is busy, the message itself was allowed), its object sees
    the close, its bytes are freed, and ordinary messages go through once the budget has
    room."""
    before = rss(flood)
    fragment = bytes(MiB)
    hogs: list[socket.socket] = []
    try:
        for _ in range(24):
            sock = raw_connect(flood, "/ws/hogs")
            hogs.append(sock)
            with contextlib.suppress(OSError):  # closed by the server while sending
                for k in range(8):
                    sock.sendall(data_frame(0x2 if k == 0 else 0x0, fragment, fin=False))
        wait_until(lambda: len(busy_closes(flood, "hogs")) >= 22)  # at most 2 x 8 MiB fit
        grown = rss(flood) - before
        print(f"RSS {before / MiB:.0f} MiB, then +{grown / MiB:.1f} MiB")
        assert grown < 64 * MiB  # unbounded: +192 MiB
        closes = busy_closes(flood, "hogs")
        assert all(not clean and "receive buffer" in reason for _, reason, clean in closes)
        for sock in hogs:  # every Close was written before its object heard of it
            sock.settimeout(0.5)  # the hogs still open have nothing to read
        codes = [read_until_close(sock)[1] for sock in hogs]
        assert codes.count(BUSY_CODE) >= 20, codes  # a few may see the reset, not the Close
    finally:
        for sock in hogs:
            sock.close()

    async def main() -> None:
        async with connect(ws_url(flood, "/ws/after"), max_size=None) as client:
            await client.send("blast 1 16")
            assert sequence(await asyncio.wait_for(client.recv(), 10)) == 0
            wait_until(lambda: state(flood, "hogs")["sockets"] == 0)  # the hogs are gone
            await client.send("blast 1 16" + " " * (12 * MiB))  # 12 MiB: the budget is free
            assert sequence(await asyncio.wait_for(client.recv(), 10)) == 1
        wait_until(lambda: state(flood, "after")["closes"] == [[1000, "", True]])

    run(main)
    no_traceback(flood)


def busy_closes(server: Server, room: str) -> list[Any]:
    return [c for c in state(server, room)["closes"] if c[0] == BUSY_CODE]


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
