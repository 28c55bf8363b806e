"""The front sends a streamed response chunk by chunk, in process (issue 10 §1).

A real project (a worker whose generator records what happened to it) behind the ASGI
app; ``receive``/``send`` are the test's, so it decides when the client goes away.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from objectd.asgi import ObjectdApp
from objectd.asgi.streaming import ABORT_EXTENSION

WORKER = """
import asyncio
from objectd import Response, WorkerEntrypoint

LOG = []
GO = asyncio.Event()

class Default(WorkerEntrypoint):
    async def fetch(self, request):
        kind = request.url.rsplit("/", 1)[-1]
        if kind == "denial":  # a WebSocket upgrade answered with a streamed 426
            return Response(self.denial(), status=426)
        return Response(getattr(self, kind)(), headers={"content-length": "99"})

    async def steps(self):
        try:
            yield "one"
            yield ""
            await GO.wait()
            yield b"two"
        finally:
            LOG.append("closed")

    async def denial(self):
        yield "no "
        yield "upgrade"

    async def raises(self):
        yield "ok"
        raise ValueError("stream broke: 7")
"""


class Client:
    """One request through the app: what it sent, and a switch to go away."""

    def __init__(self, tmp_path: Path, path: str, *, method: str = "GET", abort: bool) -> None:
        root = tmp_path / "app"
        root.mkdir(exist_ok=True)
        (root / "wrangler.toml").write_text('name = "app"\nmain = "worker.py"\n')
        (root / "worker.py").write_text(textwrap.dedent(WORKER))
        sys.modules.pop("worker", None)
        self.app = ObjectdApp(root, data_dir=tmp_path / "data")
        self.sent: list[dict[str, Any]] = []
        self.gone = asyncio.Event()
        self.aborted = 0
        self._sent = asyncio.Event()
        self._incoming = [{"type": "http.request", "body": b"", "more_body": False}]
        self.scope: dict[str, Any] = {
            "type": "http",
            "method": method,
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [(b"host", b"h")],
        }
        if abort:
            self.scope["extensions"] = {ABORT_EXTENSION: self._abort}

    def _abort(self) -> None:
        self.aborted += 1

    async def receive(self) -> dict[str, Any]:
        if self._incoming:
            return self._incoming.pop(0)
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        self._sent.set()

    async def start(self) -> asyncio.Task[None]:
        await self.app.startup()
        return asyncio.ensure_future(self.app(self.scope, self.receive, self.send))

    async def until_sent(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.sent) < count:
                self._sent.clear()
                await self._sent.wait()

    def worker(self) -> Any:
        return sys.modules["worker"]


def test_each_chunk_is_sent_as_produced_without_a_length(tmp_path: Path) -> None:
    async def main() -> None:
        client = Client(tmp_path, "/steps", abort=True)
        task = await client.start()
        await client.until_sent(2)
        start, first = client.sent
        assert start["status"] == 200
        assert all(
            name not in (b"content-length", b"transfer-encoding") for name, _ in start["headers"]
        )
        assert first == {"type": "http.response.body", "body": b"one", "more_body": True}
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(client.sent) == 2  # sent before the next chunk exists
        client.worker().GO.set()  # the empty chunk was skipped: it would end the body
        await task
        assert client.sent[2:] == [
            {"type": "http.response.body", "body": b"two", "more_body": True},
            {"type": "http.response.body", "body": b"", "more_body": False},
        ]
        assert client.worker().LOG == ["closed"]
        await client.app.shutdown()

    asyncio.run(main())


def test_a_client_that_goes_away_closes_the_generator(tmp_path: Path) -> None:
    async def main() -> None:
        client = Client(tmp_path, "/steps", abort=True)
        task = await client.start()
        await client.until_sent(2)
        assert client.worker().LOG == []
        client.gone.set()
        async with asyncio.timeout(5):
            await task
        assert client.worker().LOG == ["closed"]
        assert len(client.sent) == 2 and client.aborted == 0
        await client.app.shutdown()

    asyncio.run(main())


def test_a_head_request_produces_nothing_and_closes_the_stream(tmp_path: Path) -> None:
    async def main() -> None:
        client = Client(tmp_path, "/steps", method="HEAD", abort=True)
        await (await client.start())
        assert [m["type"] for m in client.sent] == ["http.response.start", "http.response.body"]
        assert client.sent[1]["body"] == b""
        await client.app.shutdown()

    asyncio.run(main())


def test_a_raising_stream_aborts_the_connection_and_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def main(abort: bool) -> None:
        client = Client(tmp_path, "/raises", abort=abort)
        task = await client.start()
        if abort:
            await task
            assert client.aborted == 1
        else:  # another ASGI server: the error is its to handle (it closes the connection)
            with pytest.raises(ValueError, match="stream broke: 7"):
                await task
        assert client.sent[-1] == {"type": "http.response.body", "body": b"ok", "more_body": True}
        await client.app.shutdown()

    with caplog.at_level(logging.ERROR, logger="objectd"):
        asyncio.run(main(abort=True))
    failures = [r for r in caplog.records if "streamed response failed" in r.getMessage()]
    assert len(failures) == 1 and "stream broke: 7" in failures[0].getMessage()
    asyncio.run(main(abort=False))


def test_an_upgrade_denied_with_a_streamed_body_gets_it_whole(tmp_path: Path) -> None:
    async def main() -> None:
        client = Client(tmp_path, "/denial", abort=False)
        client.scope.update(type="websocket", extensions={"websocket.http.response": {}})
        client._incoming = [{"type": "websocket.connect"}]
        await (await client.start())
        assert client.sent[0]["status"] == 426
        assert client.sent[1] == {"type": "websocket.http.response.body", "body": b"no upgrade"}
        await client.app.shutdown()

    asyncio.run(main())
