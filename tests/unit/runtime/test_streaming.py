"""Streamed responses from an object through ``stub.fetch()`` (issue 10 §1, spec §6).

Real SQLite files and the real committer; the sync is held with ``RecordingSyncer``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from runtime_kit import RecordingSyncer, make_namespace, run_in

from objectd.errors import DurableObjectTypeError, ObjectResetError
from objectd.fetch import Request, Response
from objectd.runtime.committer import Committer
from objectd.runtime.objects import DurableObject


class Streamer(DurableObject):
    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        self.step = asyncio.Event()
        self.closed: list[str] = []
        self.released = asyncio.Event()

    async def fetch(self, request: Request) -> Response:
        kind = request.url.rsplit("/", 1)[-1]
        return Response(getattr(self, kind)(), headers={"content-type": "text/plain"})

    async def two_steps(self) -> AsyncIterator[str]:
        try:
            yield "first"
            await self.step.wait()
            yield "second"
        finally:
            self.closed.append("two_steps")

    async def write_between(self) -> AsyncIterator[bytes]:
        yield b"before"
        self.ctx.storage.put("k", 1)  # not awaited: part of this turn's batch
        yield b"after write"
        yield b"no write"

    async def raises(self) -> AsyncIterator[bytes]:
        yield b"ok"
        raise ValueError("stream broke: 7")

    async def bad_chunk(self) -> AsyncIterator[Any]:
        yield 5

    async def aborts(self) -> AsyncIterator[bytes]:
        yield b"ok"
        self.ctx.abort("stopped mid-stream")

    async def hold(self) -> str:
        await self.released.wait()
        return "released"

    async def count(self) -> int:
        return len(self.closed)


async def _until_blocked(task: asyncio.Future[Any]) -> None:
    for _ in range(50):
        await asyncio.sleep(0)
    assert not task.done(), "the chunk was released before its write was durable"


def test_stub_fetch_streams_each_chunk_as_it_is_produced(tmp_path: Path) -> None:
    async def main() -> None:
        stub = make_namespace(tmp_path, Streamer).get_by_name("a")
        response = await stub.fetch("http://x/two_steps")
        assert response.headers.get("content-type") == "text/plain"
        chunks = response.stream().__aiter__()
        assert await anext(chunks) == b"first"
        second = asyncio.ensure_future(anext(chunks))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not second.done()  # produced only when the object gets to it
        await run_in(stub, _set_step)
        assert await second == b"second"
        with pytest.raises(StopAsyncIteration):
            await anext(chunks)
        assert await run_in(stub, lambda i: _value(i.closed)) == ["two_steps"]

    asyncio.run(main())


async def _set_step(instance: Any) -> None:
    instance.step.set()


async def _value(value: Any) -> Any:
    return value


def test_a_streamed_response_reads_whole_with_text(tmp_path: Path) -> None:
    async def main() -> None:
        stub = make_namespace(tmp_path, Streamer).get_by_name("a")
        response = await stub.fetch("http://x/write_between")
        assert await response.text() == "beforeafter writeno write"
        assert await response.text() == "beforeafter writeno write"  # kept once read

    asyncio.run(main())


def test_075_each_chunk_waits_for_the_writes_made_before_it(tmp_path: Path) -> None:
    """Checklist 75: a chunk is an output; it leaves once earlier writes are durable."""

    async def main() -> None:
        syncer = RecordingSyncer()
        ns = make_namespace(tmp_path, Streamer, committer=Committer(syncer=syncer))
        stub = ns.get_by_name("a")
        # Two other events in flight: the commit goes to the sync thread, which can be held.
        holders = [asyncio.ensure_future(ns.get_by_name(n).hold()) for n in ("h1", "h2")]
        response = await stub.fetch("http://x/write_between")
        chunks = response.stream().__aiter__()
        assert await anext(chunks) == b"before"
        syncer.release.clear()
        held = asyncio.ensure_future(anext(chunks))
        await _until_blocked(held)
        syncer.release.set()
        assert await held == b"after write"
        assert await anext(chunks) == b"no write"
        for name in ("h1", "h2"):
            await run_in(ns.get_by_name(name), lambda i: _release(i))
        assert await asyncio.gather(*holders) == ["released", "released"]

    asyncio.run(main())


async def _release(instance: Any) -> None:
    instance.released.set()


def test_closing_the_stream_runs_the_generators_finally(tmp_path: Path) -> None:
    """The front closes a stream whose client went away: waiting or between chunks."""

    async def main() -> None:
        stub = make_namespace(tmp_path, Streamer).get_by_name("a")
        # Between chunks: aclose() closes the generator in the object.
        response = await stub.fetch("http://x/two_steps")
        stream = response.stream()
        assert await anext(stream.__aiter__()) == b"first"
        await stream.aclose()
        assert await stub.count() == 1
        # While the object produces the next chunk: the reader's cancellation reaches it.
        response = await stub.fetch("http://x/two_steps")
        stream = response.stream()
        chunks = stream.__aiter__()
        assert await anext(chunks) == b"first"
        waiting = asyncio.ensure_future(anext(chunks))
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await stream.aclose()
        assert await stub.count() == 2
        host = stub._class.host(stub.id)
        assert host.streams == 0 and host.can_evict()  # nothing else of it is held

    asyncio.run(main())


def test_a_raising_stream_ends_with_its_error_and_the_object_lives_on(tmp_path: Path) -> None:
    async def main() -> None:
        stub = make_namespace(tmp_path, Streamer).get_by_name("a")
        chunks = (await stub.fetch("http://x/raises")).stream().__aiter__()
        assert await anext(chunks) == b"ok"
        with pytest.raises(ValueError, match="stream broke: 7") as info:
            await anext(chunks)
        assert getattr(info.value, "remote", False) is True  # as an event's error reaches it
        bad = (await stub.fetch("http://x/bad_chunk")).stream().__aiter__()
        with pytest.raises(DurableObjectTypeError, match="must be bytes or str, got int"):
            await anext(bad)
        assert await stub.count() == 0  # the same instance: not reset
        host = stub._class.host(stub.id)
        assert host.activations == 1 and host.streams == 0

    asyncio.run(main())


def test_an_open_stream_keeps_its_object_from_eviction(tmp_path: Path) -> None:
    async def main() -> None:
        stub = make_namespace(tmp_path, Streamer).get_by_name("a")
        response = await stub.fetch("http://x/two_steps")
        chunks = response.stream().__aiter__()
        assert await anext(chunks) == b"first"
        host = stub._class.host(stub.id)
        assert not host.busy and host.streams == 1
        assert not host.can_evict()  # between chunks, no task of its own runs
        await run_in(stub, _set_step)
        assert await anext(chunks) == b"second"
        with pytest.raises(StopAsyncIteration):
            await anext(chunks)
        assert host.can_evict()  # the stream ended: the object may go

    asyncio.run(main())


def test_a_reset_ends_the_objects_streams(tmp_path: Path) -> None:
    async def main() -> None:
        stub = make_namespace(tmp_path, Streamer).get_by_name("a")
        chunks = (await stub.fetch("http://x/two_steps")).stream().__aiter__()
        assert await anext(chunks) == b"first"
        waiting = asyncio.ensure_future(anext(chunks))
        await asyncio.sleep(0)
        stub._class.host(stub.id).reset(ObjectResetError("test reset"))
        with pytest.raises(ObjectResetError, match="reset while it was streaming"):
            await waiting
        assert stub._class.host(stub.id).streams == 0

    asyncio.run(main())


def test_abort_in_a_stream_resets_the_object_and_ends_the_stream(tmp_path: Path) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Streamer)
        stub = ns.get_by_name("a")
        chunks = (await stub.fetch("http://x/aborts")).stream().__aiter__()
        assert await anext(chunks) == b"ok"
        with pytest.raises(ObjectResetError, match="stopped mid-stream"):
            await anext(chunks)
        host = stub._class.host(stub.id)
        assert host.streams == 0
        assert await ns.get_by_name("a").count() == 0
        assert host.activations == 2  # constructed again

    asyncio.run(main())
