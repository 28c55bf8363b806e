"""Request bodies still arriving when the worker runs: streamed or read whole (issue 10 §1).

In process: a real project behind the ASGI app, the test's ``receive`` handing the body
over message by message, so it can tell what was read when.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import objectd.asgi.app as asgi_app
from objectd.asgi import ObjectdApp

WRANGLER = """
name = "app"
main = "worker.py"

[[durable_objects.bindings]]
name = "SINK"
class_name = "Sink"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Sink"]
"""

WORKER = """
import json
from objectd import DurableObject, Response, WorkerEntrypoint

SEEN = []

class Sink(DurableObject):
    async def fetch(self, request):
        sizes = []
        async for chunk in request.stream():
            SEEN.append(("object", chunk))
            sizes.append(len(chunk))
        return Response(json.dumps(sizes))

async def echo(chunks):
    async for chunk in chunks:
        yield chunk.upper()

class Default(WorkerEntrypoint):
    async def fetch(self, request):
        route = request.url.rsplit("/", 1)[-1]
        if route == "stream":
            total = 0
            async for chunk in request.stream():
                SEEN.append(("worker", chunk))
                total += len(chunk)
            return Response(str(total))
        if route == "object":  # passed on unread: the object streams it
            return await self.env.SINK.get_by_name("s").fetch(request)
        if route == "forward":  # the fetch API's way: body=request.body
            return await self.env.SINK.get_by_name("s").fetch(
                request.url, method="PUT", body=request.body
            )
        if route == "echo":  # streamed back while it arrives
            return Response(echo(request.stream()))
        if route == "swallow":  # a worker that hides the refusal still gets 413
            try:
                await request.bytes()
            except Exception:
                return Response("fine")
        return Response(str(len(await request.bytes())))
"""


class Upload:
    """One request whose body the test releases message by message."""

    def __init__(self, tmp_path: Path, route: str, headers: list[tuple[bytes, bytes]]) -> None:
        root = tmp_path / "app"
        root.mkdir(exist_ok=True)
        (root / "wrangler.toml").write_text(WRANGLER)
        (root / "worker.py").write_text(textwrap.dedent(WORKER))
        sys.modules.pop("worker", None)
        self.app = ObjectdApp(root, data_dir=tmp_path / "data")
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.received = 0
        self.sent: list[dict[str, Any]] = []
        self.scope = {
            "type": "http",
            "method": "POST",
            "path": f"/{route}",
            "raw_path": f"/{route}".encode(),
            "query_string": b"",
            "headers": [(b"host", b"h"), *headers],
        }

    def give(self, body: bytes, *, more: bool = True) -> None:
        self.queue.put_nowait({"type": "http.request", "body": body, "more_body": more})

    def disconnect(self) -> None:
        self.queue.put_nowait({"type": "http.disconnect"})

    async def receive(self) -> dict[str, Any]:
        self.received += 1
        return await self.queue.get()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    async def run(self) -> tuple[int, bytes] | None:
        await self.app.startup()
        try:
            await self.app(self.scope, self.receive, self.send)
        finally:
            await self.app.shutdown()
        return (self.sent[0]["status"], self.sent[1]["body"]) if self.sent else None

    def seen(self) -> list[tuple[str, bytes]]:
        return sys.modules["worker"].SEEN  # type: ignore[no-any-return]


async def _settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


def test_the_worker_reads_each_chunk_as_it_arrives(tmp_path: Path) -> None:
    async def main() -> None:
        upload = Upload(tmp_path, "stream", [(b"content-length", b"9")])
        upload.give(b"abc")
        task = asyncio.ensure_future(upload.run())
        await _settle()
        assert upload.seen() == [("worker", b"abc")]  # before the rest was sent
        upload.give(b"def")
        await _settle()
        assert upload.seen()[-1] == ("worker", b"def")
        assert upload.app._buffered == 0  # a streamed body takes none of the budget
        upload.give(b"ghi", more=False)
        assert await task == (200, b"9")

    asyncio.run(main())


@pytest.mark.parametrize("route", ["object", "forward"])
def test_an_upload_passed_to_an_object_streams_into_its_fetch(
    tmp_path: Path, route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Larger than the buffered limit (10 bytes here), and never held whole."""
    monkeypatch.setattr(asgi_app, "MAX_BODY_BYTES", 10)

    async def main() -> None:
        upload = Upload(tmp_path, route, [(b"content-length", b"24")])
        task = asyncio.ensure_future(upload.run())
        for _ in range(3):
            upload.give(b"12345678")
            await _settle()
            assert upload.seen()[-1] == ("object", b"12345678")
        upload.give(b"", more=False)
        assert await task == (200, b"[8, 8, 8]")

    asyncio.run(main())


def test_a_whole_read_past_the_limit_is_413_whatever_the_worker_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(asgi_app, "MAX_BODY_BYTES", 10)

    async def main(route: str) -> tuple[int, bytes] | None:
        upload = Upload(tmp_path, route, [])  # chunked: no length announced
        upload.give(b"123456")
        upload.give(b"789012", more=False)
        return await upload.run()

    assert asyncio.run(main("whole")) == (413, b"Payload Too Large")
    assert asyncio.run(main("swallow")) == (413, b"Payload Too Large")


def test_an_announced_length_past_the_limit_still_streams(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(asgi_app, "MAX_BODY_BYTES", 10)

    async def main() -> tuple[int, bytes] | None:
        upload = Upload(tmp_path, "stream", [(b"content-length", b"12")])
        upload.give(b"123456")
        upload.give(b"789012", more=False)
        return await upload.run()

    assert asyncio.run(main()) == (200, b"12")


def test_a_client_gone_mid_upload_fails_the_reader(tmp_path: Path) -> None:
    async def main() -> None:
        upload = Upload(tmp_path, "stream", [(b"content-length", b"9")])
        upload.give(b"abc")
        upload.disconnect()
        assert await upload.run() is None  # nothing to answer, and no worker error
        assert upload.seen() == [("worker", b"abc")]

    asyncio.run(main())


def test_an_upload_streamed_back_while_it_arrives(tmp_path: Path) -> None:
    """The response's watch for a disconnect leaves the body's messages to its reader."""

    async def main() -> None:
        upload = Upload(tmp_path, "echo", [(b"content-length", b"6")])
        upload.give(b"ab")
        task = asyncio.ensure_future(upload.run())
        await _settle()
        assert [m.get("body") for m in upload.sent[1:]] == [b"AB"]
        upload.give(b"cd")
        await _settle()
        assert [m.get("body") for m in upload.sent[1:]] == [b"AB", b"CD"]
        upload.give(b"ef", more=False)
        async with asyncio.timeout(5):
            await task
        assert [m.get("body") for m in upload.sent[1:]] == [b"AB", b"CD", b"EF", b""]

    asyncio.run(main())
