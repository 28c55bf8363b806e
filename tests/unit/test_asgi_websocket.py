"""The ASGI front's WebSocket path, in process: accept and relay, or answer with HTTP (spec §8)."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path
from typing import Any

from objectd.asgi import ObjectdApp
from objectd.asgi.limits import ByteBudget
from objectd.asgi.websocket import (
    BUSY_CODE,
    BUSY_REASON,
    EXTENSION,
    MESSAGE_OVERHEAD,
    UNCLEAN,
    Connection,
)
from objectd.runtime.relay import OVERFLOW_CODE, OVERFLOW_REASON

WRANGLER = """
name = "app"
main = "worker.py"

[[durable_objects.bindings]]
name = "THING"
class_name = "Thing"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Thing"]
"""

WORKER = """
from objectd import DurableObject, Response, WebSocketPair, WorkerEntrypoint

class Thing(DurableObject):
    pass

class Default(WorkerEntrypoint):
    async def fetch(self, request):
        if request.url.endswith("/echo"):
            # The standard API in the worker itself, no object: an echo server.
            client, server = WebSocketPair()
            server.accept()

            async def echo():
                async for message in server:
                    server.send(message)

            self.ctx.wait_until(echo())
            server.send("welcome")  # before the 101 went out: delivered first
            return Response(None, status=101, web_socket=client, headers={"x-room": "echo"})
        if request.url.endswith("/upgrade"):
            client, server = WebSocketPair()
            server.accept()
            return Response(None, status=101, web_socket=client)
        return Response("Not found", status=404)
"""


def make_app(tmp_path: Path) -> ObjectdApp:
    root = tmp_path / "app"
    root.mkdir()
    (root / "wrangler.toml").write_text(WRANGLER)
    (root / "worker.py").write_text(textwrap.dedent(WORKER))
    sys.modules.pop("worker", None)
    return ObjectdApp(root, data_dir=tmp_path / "data")


def scope(path: str, kind: str = "websocket") -> dict[str, Any]:
    headers = [(b"host", b"example.com"), (b"upgrade", b"websocket")]
    return {
        "type": kind,
        "scheme": "ws" if kind == "websocket" else "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "extensions": {"websocket.http.response": {}},
    }


class Client:
    """Plays the ASGI server's side of one connection."""

    def __init__(self, app: ObjectdApp, path: str, kind: str = "websocket") -> None:
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.task = asyncio.ensure_future(app(scope(path, kind), self.incoming.get, self._send))

    async def _send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    async def wait_for(self, count: int) -> list[dict[str, Any]]:
        for _ in range(500):
            if len(self.sent) >= count:
                return self.sent
            await asyncio.sleep(0.002)
        raise AssertionError(f"only {self.sent}")


def test_upgrade_is_accepted_and_relayed(tmp_path: Path) -> None:
    async def main() -> None:
        app = make_app(tmp_path)
        await app.startup()
        try:
            client = Client(app, "/echo")
            client.incoming.put_nowait({"type": "websocket.connect"})
            accept, welcome = await client.wait_for(2)
            assert accept == {"type": "websocket.accept", "headers": [(b"x-room", b"echo")]}
            assert welcome == {"type": "websocket.send", "text": "welcome"}
            client.incoming.put_nowait({"type": "websocket.receive", "text": "hi"})
            client.incoming.put_nowait({"type": "websocket.receive", "bytes": b"\x01"})
            sent = await client.wait_for(4)
            assert sent[2:] == [
                {"type": "websocket.send", "text": "hi"},
                {"type": "websocket.send", "bytes": b"\x01"},
            ]
            client.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
            await client.task
            # The peer closed: its close was answered by the protocol, nothing more is sent.
            assert len(client.sent) == 4
        finally:
            await app.shutdown()

    asyncio.run(main())


def test_other_answers_are_http(tmp_path: Path) -> None:
    async def main() -> None:
        app = make_app(tmp_path)
        await app.startup()
        try:
            client = Client(app, "/nope")
            client.incoming.put_nowait({"type": "websocket.connect"})
            await client.task
            start, body = client.sent
            assert (start["type"], start["status"]) == ("websocket.http.response.start", 404)
            assert body == {"type": "websocket.http.response.body", "body": b"Not found"}
            # A 101 to a request that did not ask for a WebSocket is the worker's mistake.
            plain = Client(app, "/upgrade", kind="http")
            plain.incoming.put_nowait({"type": "http.request", "body": b""})
            await plain.task
            assert plain.sent[0]["status"] == 500
        finally:
            await app.shutdown()

    asyncio.run(main())


# -- the send buffer of one connection (issue 9, point 4) -----------------------------------


class Link:
    """Records what the connection reports to the relayed end."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def message(self, data: str | bytes) -> None:
        self.events.append(("message", data))

    def closed(self, code: int, reason: str) -> None:
        self.events.append(("closed", code, reason))

    def lost(self, code: int = 1006, reason: str = "") -> None:
        self.events.append("lost" if code == 1006 else ("lost", code, reason))


class Peer:
    """The ASGI server's side: ``send`` waits while the peer does not read (``reading``)."""

    def __init__(self, buffered: int = 0) -> None:
        self.sent: list[dict[str, Any]] = []
        self.reading = asyncio.Event()
        self.buffered = buffered
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send":
            await self.reading.wait()
        self.sent.append(message)

    def scope(self) -> dict[str, Any]:
        return {"extensions": {EXTENSION: {"write_buffer_size": lambda: self.buffered}}}


def test_a_peer_past_the_send_buffer_is_closed_with_1008() -> None:
    async def main() -> None:
        peer = Peer()
        connection = Connection(peer.send, peer.scope(), send_buffer=1000)
        task = asyncio.ensure_future(connection.run(peer.incoming.get, Link()))
        await asyncio.sleep(0)
        # One message of any size is taken while the buffer holds at most the bound.
        assert connection.send_message(b"x" * 5000)
        await asyncio.sleep(0)  # the writer waits in send(): the peer does not read
        assert not connection.send_message(b"y")  # 5,064 bytes buffered: over the bound
        await asyncio.sleep(0)
        assert peer.sent == [
            {"type": "websocket.close", "code": OVERFLOW_CODE, "reason": OVERFLOW_REASON}
        ]
        assert connection.send_message(b"z")  # closing: dropped quietly
        connection.send_close(1000, "")  # already closing: nothing more
        peer.incoming.put_nowait({"type": "websocket.disconnect", "code": 1006})
        await task
        assert len(peer.sent) == 1

    asyncio.run(main())


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_send_buffer_counts_queued_messages_and_the_transport() -> None:
    async def main() -> None:
        peer = Peer(buffered=850)
        clock = Clock()
        connection = Connection(peer.send, peer.scope(), send_buffer=1000, clock=clock)
        task = asyncio.ensure_future(connection.run(peer.incoming.get, Link()))
        await asyncio.sleep(0)
        assert connection.send_message("a" * 40)  # 850 in the transport, nothing queued
        assert connection.send_message("b" * 40)  # 850 + 104 queued: within the bound
        assert connection.send_message("c")  # 850 + 208 > 1000: behind, not closed at once
        clock.now = 19.0
        assert connection.send_message("d")  # behind for 19 s: within the patience (20 s)
        clock.now = 20.5
        assert not connection.send_message("e")  # 20.5 s, no message out: closed
        await asyncio.sleep(0.01)
        assert [m.get("code") for m in peer.sent] == [OVERFLOW_CODE]
        peer.buffered = 0  # a fresh connection with room in its transport
        peer.reading.set()
        other = Connection(peer.send, peer.scope(), send_buffer=1000, clock=clock)
        other_task = asyncio.ensure_future(other.run(peer.incoming.get, Link()))
        await asyncio.sleep(0)
        for _ in range(100):  # a reader that keeps up is never closed
            assert other.send_message("é" * 100)  # 464 bytes counted each
            await asyncio.sleep(0)
        for _ in range(2):
            peer.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await asyncio.gather(task, other_task)
        assert sum(1 for m in peer.sent if m.get("text") == "é" * 100) == 100

    asyncio.run(main())


def test_a_burst_is_not_a_slow_peer() -> None:
    """Adversarial re-test of issue 9, finding 6: a handler's burst past the bound (under
    the ceiling) reaches a peer that drains it, however long draining takes, as long as
    messages keep going out; past the ceiling, a peer is closed at once."""

    async def main() -> None:
        sent: list[dict[str, Any]] = []
        turns = asyncio.Semaphore(0)  # one message out per release: a slow reader

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "websocket.send":
                await turns.acquire()
            sent.append(message)

        clock = Clock()
        scope = {"extensions": {EXTENSION: {"write_buffer_size": lambda: 0, "patience": 1.0}}}
        connection = Connection(send, scope, send_buffer=1000, clock=clock)
        incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        task = asyncio.ensure_future(connection.run(incoming.get, Link()))
        await asyncio.sleep(0)
        for _ in range(7):  # 7 x 564 bytes in one turn: over the bound, under 4 x 1000
            assert connection.send_message(b"x" * 500)
        for _ in range(5):  # a message out every 0.9 s: 4.5 s in all, past the patience
            clock.now += 0.9
            turns.release()
            await asyncio.sleep(0)
            assert connection.send_message(b"y")
        assert len(sent) == 5 and not any(m["type"] == "websocket.close" for m in sent)
        clock.now += 1.5  # no message out for 1.5 s while behind: closed
        assert not connection.send_message(b"y")
        await asyncio.sleep(0)
        assert sent[-1]["code"] == OVERFLOW_CODE
        other = Connection(send, scope, send_buffer=1000, clock=clock)
        other_task = asyncio.ensure_future(other.run(incoming.get, Link()))
        await asyncio.sleep(0)
        accepted = 0
        while other.send_message(b"z" * 500):  # past the ceiling: closed, whatever the time
            accepted += 1
        assert accepted == 8  # then 8 x 564 bytes were buffered: past 4 x 1000
        for _ in range(2):
            incoming.put_nowait({"type": "websocket.disconnect", "code": 1006})
        await asyncio.gather(task, other_task)

    asyncio.run(main())


def test_messages_waiting_for_their_object_count_against_the_receive_budget() -> None:
    """Adversarial re-test of issue 9, finding 4: a message the server has handed over is
    counted by the connection until its object event has run; a close the server made
    itself (UNCLEAN) reaches the object as a lost connection with its code and reason."""

    async def main() -> None:
        budget = ByteBudget(1 << 20)
        events: list[asyncio.Future[None]] = []

        class SlowLink(Link):
            def message(self, data: str | bytes) -> Any:  # type: ignore[override]
                super().message(data)
                event: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                events.append(event)
                return event

        link = SlowLink()
        peer = Peer()
        scope = {"extensions": {EXTENSION: {"receive_budget": budget}}}
        connection = Connection(peer.send, scope)
        task = asyncio.ensure_future(connection.run(peer.incoming.get, link))
        peer.incoming.put_nowait({"type": "websocket.receive", "bytes": b"x" * 1000})
        peer.incoming.put_nowait({"type": "websocket.receive", "text": "hello"})
        await asyncio.sleep(0)
        assert budget.held == 1000 + 5 + 2 * MESSAGE_OVERHEAD  # both wait for the object
        events[0].set_result(None)
        await asyncio.sleep(0)
        assert budget.held == 5 + MESSAGE_OVERHEAD
        events[1].set_result(None)
        await asyncio.sleep(0)
        assert budget.held == 0
        peer.incoming.put_nowait(
            {
                "type": "websocket.disconnect",
                "code": BUSY_CODE,
                "reason": BUSY_REASON,
                UNCLEAN: True,
            }
        )
        await task
        assert link.events[-1] == ("lost", BUSY_CODE, BUSY_REASON)

    asyncio.run(main())
