"""``fetch()`` from an object to a real local HTTP server (spec §6, issue 10 §1).

The server is a few lines of asyncio in the test's own loop, so the test sees exactly
when a request arrived and decides when each part of a response is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from runtime_kit import RecordingSyncer, make_namespace, run_in

from objectd.runtime.committer import Committer
from objectd.runtime.objects import DurableObject
from objectd.runtime.outbound import close_client, fetch


class Origin:
    """A local HTTP/1.1 server: records each request; ``/slow`` sends its body in two
    chunks, the second once ``more`` is set."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, bytes]] = []
        self.arrived = asyncio.Event()
        self.more = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            target = lines[0].split(" ")[1]
            headers = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
            body = b""
            if headers.get("transfer-encoding") == "chunked":
                while True:
                    size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                    chunk = await reader.readexactly(size + 2)
                    if size == 0:
                        break
                    body += chunk[:-2]
            elif "content-length" in headers:
                body = await reader.readexactly(int(headers["content-length"]))
            self.requests.append((target, body))
            self.arrived.set()
            if target == "/slow":
                writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
                await writer.drain()
                await self.more.wait()
                writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        finally:
            writer.close()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


class Fetcher(DurableObject):
    async def write_then_fetch(self, url: str) -> str:
        self.ctx.storage.put("k", 1)  # not awaited: the request must wait for it anyway
        response = await fetch(url, method="POST", body="sent")
        return await response.text()

    async def hold(self, name: str) -> str:
        return name


async def _until_blocked(task: asyncio.Future[Any]) -> None:
    for _ in range(50):
        await asyncio.sleep(0)
    assert not task.done()


def test_075_outbound_fetch_waits_for_the_callers_writes(tmp_path: Path) -> None:
    """Checklist 75: the request leaves only once the object's earlier write is durable."""

    async def main() -> None:
        origin = Origin()
        url = await origin.start()
        syncer = RecordingSyncer()
        ns = make_namespace(tmp_path, Fetcher, committer=Committer(syncer=syncer))
        stub = ns.get_by_name("a")
        await stub.hold("warm")
        syncer.release.clear()
        # Another object dirty in the same turn: the syncs go to the thread, held there.
        other = asyncio.ensure_future(run_in(ns.get_by_name("b"), _write))
        call = asyncio.ensure_future(stub.write_then_fetch(url + "/echo"))
        await _until_blocked(call)
        assert origin.requests == []  # not sent: the write is not durable yet
        syncer.release.set()
        assert await call == "sent"
        assert origin.requests == [("/echo", b"sent")]
        await other
        await close_client()
        await origin.close()

    asyncio.run(main())


async def _write(instance: Any) -> None:
    instance.ctx.storage.put("k", 1)


def test_an_outbound_response_is_read_as_a_stream(tmp_path: Path) -> None:
    async def main() -> None:
        origin = Origin()
        url = await origin.start()
        response = await fetch(url + "/slow")
        assert response.status == 200
        chunks = response.stream().__aiter__()
        assert await anext(chunks) == b"first"  # before the origin sent the rest
        origin.more.set()
        assert await anext(chunks) == b"second"
        with pytest.raises(StopAsyncIteration):
            await anext(chunks)
        whole = await fetch(url + "/echo", method="PUT", body=_parts())
        assert await whole.text() == "streamed up"
        assert origin.requests[-1] == ("/echo", b"streamed up")
        dropped = await fetch(url + "/echo", method="POST", body="never read")
        reply = dropped.stream()._source._reply  # type: ignore[attr-defined]
        del dropped  # unread: its connection is given back all the same
        await close_client()
        assert reply.is_closed
        await origin.close()

    asyncio.run(main())


async def _parts() -> AsyncIterator[bytes]:
    yield b"streamed "
    yield b"up"
