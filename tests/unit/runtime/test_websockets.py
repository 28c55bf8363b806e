"""WebSockets in process: pairs, the standard API, the Hibernation API (spec §3, §4, §8).

A client connection is played by a recording transport bound to the client end of
the object's 101 response, exactly as the ASGI front binds a real connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from runtime_kit import RecordingSyncer, make_namespace, run_in

from objectd import (
    DurableObject,
    DurableObjectError,
    DurableObjectRangeError,
    DurableObjectTypeError,
    Request,
    Response,
    WebSocket,
    WebSocketPair,
    WebSocketRequestResponsePair,
)
from objectd.runtime.clock import FakeClock
from objectd.runtime.committer import Committer
from objectd.runtime.namespace import DurableObjectNamespace, DurableObjectStub
from objectd.runtime.relay import OVERFLOW_CODE, OVERFLOW_REASON, Relay, relay
from objectd.runtime.settings import RuntimeSettings
from objectd.runtime.socket_events import MessageEvent, ReadyState
from objectd.runtime.state import DurableObjectState

LOST = "WebSocket disconnected without sending Close frame."
log: list[Any] = []


class Wire:
    """A client connection: records what the server sends, in order."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.full = False  # the peer's send buffer is full: the next message closes it

    def send_message(self, data: str | bytes) -> bool:
        if self.full:
            self.sent.append(("close", OVERFLOW_CODE, OVERFLOW_REASON))
            return False
        self.sent.append(data)
        return True

    def send_close(self, code: int, reason: str) -> None:
        self.sent.append(("close", code, reason))

    def abort(self) -> None:
        self.sent.append("abort")


class Room(DurableObject):
    """Accepts hibernatable sockets (tags from ?tag=), records every handler call."""

    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        log.append("constructed")

    async def fetch(self, request: Request) -> Response:
        query = parse_qs(urlsplit(request.url).query)
        client, server = WebSocketPair()
        if "standard" in query:
            server.accept()
            server.add_event_listener("message", lambda event: server.send(f"std:{event.data}"))
            server.add_event_listener(
                "error", lambda event: log.append(("std-error", event.message))
            )
        else:
            self.ctx.accept_web_socket(server, query.get("tag"))
            server.serialize_attachment({"name": query.get("name", ["?"])[0]})
            server.add_event_listener("message", lambda event: log.append("listener"))
        if "hello" in query:
            server.send("hello")
        return Response(None, status=101, web_socket=client)

    async def web_socket_message(self, ws: WebSocket, message: str | bytes) -> None:
        log.append(("message", message, ws.deserialize_attachment(), self.ctx.get_tags(ws)))
        if message == "echo":
            ws.send("echoed")
        elif message == "write-then-send":
            await self.ctx.storage.put("k", 1)
            ws.send("after write")
        elif message == "raise":
            raise ValueError("handler failed")
        elif message == "abort":
            self.ctx.abort("stop")
        elif message == "hang":
            await asyncio.Event().wait()

    async def web_socket_close(self, ws: WebSocket, code: int, reason: str, clean: bool) -> None:
        log.append(("close", code, reason, clean, ws.ready_state, len(self.ctx.get_web_sockets())))
        ws.close(code if code not in (1005, 1006) else 1000, reason)  # a no-op: already closed

    async def web_socket_error(self, ws: WebSocket, error: BaseException) -> None:
        log.append(("error", str(error)))


class ThreeArgClose(DurableObject):
    """Python Workers code may omit trailing handler parameters (relaxed calls)."""

    async def fetch(self, request: Request) -> Response:
        client, server = WebSocketPair.new()
        self.ctx.acceptWebSocket(server)
        return Response(None, status=101, web_socket=client)

    def webSocketClose(self, ws: WebSocket, code: int, reason: str) -> None:
        log.append(("close3", code, reason))


class Silent(DurableObject):
    """No WebSocket handlers at all: events are dropped (spec §3)."""

    async def fetch(self, request: Request) -> Response:
        client, server = WebSocketPair()
        self.ctx.accept_web_socket(server)
        return Response(None, status=101, web_socket=client)


@pytest.fixture(autouse=True)
def _clear() -> None:
    log.clear()


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(main())


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def until(predicate: Callable[[], bool]) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.002)
    raise AssertionError("condition not met in time")


async def connect(stub: DurableObjectStub, query: str = "") -> tuple[Relay, Wire]:
    response = await stub.fetch(f"http://room/ws?{query}", headers={"upgrade": "websocket"})
    assert response.status == 101
    wire = Wire()
    return relay(response.web_socket, wire), wire


def in_object(stub: DurableObjectStub, fn: Callable[[Any], Any]) -> Awaitable[Any]:
    async def call(instance: Any) -> Any:
        return fn(instance)

    return run_in(stub, call)


# -- WebSocketPair and the standard API ---------------------------------------------------


def test_pair_shapes_and_constants() -> None:
    pair = WebSocketPair()
    client, server = pair
    assert (pair[0], pair[1]) == (client, server) == pair.object_values()
    assert len(pair) == 2
    assert server.ready_state == server.readyState == WebSocket.OPEN == 1
    assert (WebSocket.READY_STATE_CONNECTING, WebSocket.CLOSING, WebSocket.CLOSED) == (0, 2, 3)
    a, b = WebSocketPair.new()
    assert isinstance(a, WebSocket) and a is not b


def test_standard_api_in_memory_pair() -> None:
    async def main() -> None:
        client, server = WebSocketPair()
        with pytest.raises(TypeError, match=r"must call one of accept\(\)"):
            server.send("x")
        got: list[Any] = []
        server.accept()
        server.accept()  # a second accept() is a no-op
        server.addEventListener("message", lambda e: server.send(e.data * 2))
        server.add_event_listener("close", lambda e: got.append(("server", e.code, e.wasClean)))
        client.accept()
        client.add_event_listener("close", lambda e: got.append(("client", e.code, e.reason)))
        client.send("hi")
        client.send(b"\x00")
        replies = []
        async for message in client:
            replies.append(message)
            if len(replies) == 2:
                client.close(4000, "done")
        assert replies == ["hihi", b"\x00\x00"]  # same order, same frame types
        await settle()
        # checklist 141/142: the server got a clean close and replied with the same code.
        assert ("server", 4000, True) in got and ("client", 4000, "done") in got
        assert client.ready_state == server.ready_state == ReadyState.CLOSED
        with pytest.raises(TypeError, match=r"Can't call WebSocket send\(\) after close\(\)"):
            client.send("late")
        client.close(1000)  # a repeated close() is ignored

    run(main)


def test_async_for_and_binary_messages() -> None:
    async def main() -> None:
        client, server = WebSocketPair()
        server.accept()
        client.accept()
        client.send(b"\x01\x02")
        client.send(bytearray(b"\x03"))
        client.send("text")
        client.close()
        received = [message async for message in server]
        assert received == [b"\x01\x02", b"\x03", "text"]
        with pytest.raises(TypeError, match="send\\(\\) takes str or bytes"):
            server.send(42)  # type: ignore[arg-type]

    run(main)


def test_144_close_code_and_reason_validation() -> None:
    _, server = WebSocketPair()
    server.accept()
    for code in (999, 1004, 1005, 1006, 1015, 5000):
        with pytest.raises(TypeError, match=rf"^Invalid WebSocket close code: {code}\.$"):
            server.close(code)
    with pytest.raises(TypeError, match="you must also specify a code"):
        server.close(None, "why")
    with pytest.raises(TypeError, match="must not be longer than 123 bytes"):
        server.close(1000, "é" * 62)
    with pytest.raises(DurableObjectTypeError):  # in objectd's one tree, and a TypeError
        server.close(1004)
    server.close(4999, "x" * 123)
    assert server.ready_state == ReadyState.CLOSING


def test_in_object_self_drive_pattern(tmp_path: Path) -> None:
    # A pair driven entirely inside the object: the client half uses the standard API.
    async def main() -> None:
        ns = make_namespace(tmp_path, Room)
        stub = ns.get_by_name("r")
        seen: list[Any] = []

        def drive(instance: Any) -> None:
            client, server = WebSocketPair()
            instance.ctx.accept_web_socket(server, ["t"])
            client.accept()  # accepting the client half is allowed
            client.add_event_listener("message", lambda e: seen.append(e.data))
            client.send("echo")

        await in_object(stub, drive)
        await settle()
        assert log[1][:2] == ("message", "echo")
        assert seen == ["echoed"]

    run(main)


# -- accepting: errors and tags (130-132, 134, 135) ----------------------------------------


def test_130_accept_web_socket_errors(tmp_path: Path) -> None:
    async def main() -> None:
        stub = make_namespace(tmp_path, Room).get_by_name("r")

        def check(instance: Any) -> None:
            ctx: DurableObjectState = instance.ctx
            _, standard = WebSocketPair()
            standard.accept()
            with pytest.raises(DurableObjectError, match=r"already accepted via `accept\(\)`$"):
                ctx.accept_web_socket(standard)
            client, server = WebSocketPair()
            ctx.accept_web_socket(server)
            with pytest.raises(DurableObjectError, match=r"already accepted via `accept\(\)`$"):
                ctx.accept_web_socket(server)
            with pytest.raises(TypeError, match=r"^Can't accept\(\) WebSocket after enabling"):
                server.accept()
            with pytest.raises(DurableObjectError, match="its pair has already been accepted"):
                ctx.accept_web_socket(client)
            with pytest.raises(TypeError, match="parameter 1 is not of type 'WebSocket'"):
                ctx.accept_web_socket("nope")  # type: ignore[arg-type]

        await in_object(stub, check)

    run(main)


def test_131_134_135_tags(tmp_path: Path) -> None:
    async def main() -> None:
        stub = make_namespace(tmp_path, Room).get_by_name("r")

        def check(instance: Any) -> None:
            ctx: DurableObjectState = instance.ctx
            pairs = [WebSocketPair() for _ in range(4)]
            ctx.accept_web_socket(pairs[0][1], ["a", "b", "a"])
            ctx.accept_web_socket(pairs[1][1], ("b",))
            ctx.accept_web_socket(pairs[2][1])
            with pytest.raises(DurableObjectError, match="^a Hibernatable WebSocket cannot have"):
                ctx.accept_web_socket(pairs[3][1], [str(i) for i in range(11)])
            long = "x" * 257
            with pytest.raises(DurableObjectError, match=f'^"{long}" is longer than the max tag'):
                ctx.accept_web_socket(pairs[3][1], [long])
            with pytest.raises(TypeError, match="tags must be a list of str"):
                ctx.accept_web_socket(pairs[3][1], "abc")  # type: ignore[arg-type]
            servers = [pair[1] for pair in pairs[:3]]
            assert ctx.get_tags(servers[0]) == ["a", "b"]  # checklist 131: duplicates collapse
            assert ctx.getTags(servers[2]) == []
            # checklist 134: all live sockets (newest first, as workerd) or those with a tag.
            assert ctx.get_web_sockets() == servers[::-1]
            assert ctx.get_web_sockets("b") == servers[:2]
            assert ctx.get_web_sockets("zzz") == []
            _, standard = WebSocketPair()
            with pytest.raises(DurableObjectError, match="^you must call 'acceptWebSocket"):
                ctx.get_tags(standard)
            standard.accept()
            with pytest.raises(DurableObjectError, match="^only hibernatable websockets can"):
                ctx.get_tags(standard)

        await in_object(stub, check)

    run(main)


def test_132_socket_limit(tmp_path: Path) -> None:
    async def main() -> None:
        stub = make_namespace(tmp_path, Room).get_by_name("r")

        def fill(instance: Any) -> None:
            for _ in range(32_768):
                instance.ctx.accept_web_socket(WebSocketPair().server)
            with pytest.raises(DurableObjectError) as caught:
                instance.ctx.accept_web_socket(WebSocketPair().server)
            assert str(caught.value) == (
                "only 32768 websockets can be accepted on a single Durable Object instance"
            )

        await in_object(stub, fill)

    run(main)


# -- attachments (136, 137) ---------------------------------------------------------------


def test_136_137_attachments() -> None:
    _, server = WebSocketPair()
    assert server.deserialize_attachment() is None
    value = {"user": "ana", "seen": {1, 2}, "at": datetime(2026, 1, 1)}
    server.serializeAttachment(value)
    value["user"] = "changed"
    copy = server.deserializeAttachment()
    assert copy == {"user": "ana", "seen": {1, 2}, "at": datetime(2026, 1, 1)}
    assert server.deserialize_attachment() is not copy  # a fresh copy each time
    with pytest.raises(DurableObjectError) as caught:
        server.serialize_attachment("x" * 16_384)
    assert str(caught.value) == (
        "A WebSocket 'attachment' cannot be larger than 16384 bytes.'attachment' was 16387 bytes."
    )
    with pytest.raises(TypeError, match="cannot"):
        server.serialize_attachment(object())


# -- events (133, 141-143) ----------------------------------------------------------------


def test_133_messages_reach_the_handler_not_listeners(tmp_path: Path) -> None:
    async def main() -> None:
        stub = make_namespace(tmp_path, Room).get_by_name("r")
        link, wire = await connect(stub, "tag=red&name=ana&hello=1")
        assert wire.sent == ["hello"]  # sent in fetch, before the client end was bound
        link.message("text")
        link.message(b"\x00bin")
        link.message("echo")
        await settle()
        attachment, tags = {"name": "ana"}, ["red"]
        assert log[1:] == [
            ("message", "text", attachment, tags),
            ("message", b"\x00bin", attachment, tags),
            ("message", "echo", attachment, tags),
        ]
        assert wire.sent == ["hello", "echoed"]
        assert "listener" not in log  # events of a hibernatable socket go to handlers only

    run(main)


def test_141_142_143_peer_close(tmp_path: Path) -> None:
    async def main() -> None:
        stub = make_namespace(tmp_path, Room).get_by_name("r")
        link, wire = await connect(stub)
        other, _ = await connect(stub)
        link.closed(4001, "bye")
        # checklist 142: the reciprocal Close went out at once, before the handler ran.
        assert wire.sent == [("close", 4001, "bye")]
        await settle()
        # The handler saw CLOSED, the socket already left get_web_sockets(), and its
        # ws.close() was a no-op (nothing more on the wire).
        assert log[-1] == ("close", 4001, "bye", True, ReadyState.CLOSED, 1)
        assert wire.sent == [("close", 4001, "bye")]
        other.lost()
        await settle()
        assert log[-1] == ("close", 1006, LOST, False, ReadyState.CLOSED, 0)  # checklist 141
        count = await in_object(stub, lambda i: len(i.ctx.get_web_sockets()))
        assert count == 0  # checklist 143
        link.message("after close")
        await settle()
        assert log[-1][0] == "close"

    run(main)


def test_162_a_failed_connection_calls_web_socket_error(tmp_path: Path) -> None:
    """The front reports a connection that failed (a bad frame, an oversized message): a
    hibernatable socket's object gets ``web_socket_error``, a standard one an ``error``
    event; neither a close, and the socket leaves ``get_web_sockets()``."""

    async def main() -> None:
        stub = make_namespace(tmp_path, Room).get_by_name("r")
        link, _ = await connect(stub)
        link.failed("WebSocket protocol error (1002): invalid opcode")
        await settle()
        assert log[-1] == ("error", "WebSocket protocol error (1002): invalid opcode")
        assert await in_object(stub, lambda i: len(i.ctx.get_web_sockets())) == 0
        link.failed("again")  # the socket is closed: nothing more happens
        link.lost()
        await settle()
        assert [entry[0] for entry in log if entry != "constructed"] == ["error"]
        standard, _ = await connect(stub, "standard=1")
        standard.failed("WebSocket protocol error (1009): too big")
        await until(lambda: log[-1] == ("std-error", "WebSocket protocol error (1009): too big"))

    run(main)


def test_server_initiated_close_reports_the_echo(tmp_path: Path) -> None:
    async def main() -> None:
        stub = make_namespace(tmp_path, Room).get_by_name("r")
        link, wire = await connect(stub)

        def close_all(instance: Any) -> None:
            for ws in instance.ctx.get_web_sockets():
                ws.close(4002, "server out")
                assert ws.ready_state == ReadyState.CLOSING
                with pytest.raises(TypeError, match="after close"):
                    ws.send("x")

        await in_object(stub, close_all)
        assert wire.sent == [("close", 4002, "server out")]
        assert await in_object(stub, lambda i: len(i.ctx.get_web_sockets())) == 1  # CLOSING
        link.closed(4002, "server out")  # the client echoes
        await settle()
        assert log[-1] == ("close", 4002, "server out", True, ReadyState.CLOSED, 0)

    run(main)


def test_a_peer_whose_send_buffer_is_full_is_closed_at_once(tmp_path: Path) -> None:
    """Issue 9 point 4: the front refuses a message (the peer is too far behind) and closes
    the connection; the object sees the close at once, as for a lost connection, and later
    sends to that socket are dropped."""

    async def main() -> None:
        stub = make_namespace(tmp_path, Room).get_by_name("r")
        link, wire = await connect(stub)
        _, other = await connect(stub)
        wire.full = True

        def broadcast(instance: Any) -> None:
            for ws in instance.ctx.get_web_sockets():
                ws.send("one")
                ws.send("two")  # dropped: that socket is closed

        await in_object(stub, broadcast)
        assert wire.sent == [("close", OVERFLOW_CODE, OVERFLOW_REASON)]
        assert other.sent == ["one", "two"]
        await settle()
        assert log[-1] == ("close", OVERFLOW_CODE, OVERFLOW_REASON, False, ReadyState.CLOSED, 1)
        link.closed(OVERFLOW_CODE, "")  # the peer's answer comes later: nothing more happens
        link.lost()
        await settle()
        assert [entry[0] for entry in log].count("close") == 1
        assert wire.sent == [("close", OVERFLOW_CODE, OVERFLOW_REASON)]

    run(main)


def test_relaxed_handler_and_missing_or_failing_handlers(tmp_path: Path) -> None:
    async def main() -> None:
        link, _ = await connect(make_namespace(tmp_path, ThreeArgClose).get_by_name("a"))
        link.closed(1000, "")
        await settle()
        assert log == [("close3", 1000, "")]
        link, wire = await connect(make_namespace(tmp_path, Silent).get_by_name("a"))
        link.message("dropped")
        link.closed(1001, "gone")
        await settle()
        assert wire.sent == [("close", 1001, "gone")]
        stub = make_namespace(tmp_path, Room).get_by_name("a")
        link, wire = await connect(stub)
        link.message("raise")
        link.message("echo")
        await settle()
        assert wire.sent == ["echoed"]  # the socket stayed open after the handler raised
        assert await in_object(stub, lambda i: len(i.ctx.get_web_sockets())) == 1

    run(main)


# -- auto-response (138, 139) and event timeout (140) -------------------------------------


def test_138_139_auto_response(tmp_path: Path) -> None:
    async def main() -> None:
        clock = FakeClock()
        settings = RuntimeSettings(clock=clock)
        stub = make_namespace(tmp_path, Room, settings=settings).get_by_name("r")
        link, wire = await connect(stub)
        sockets = await in_object(stub, lambda i: i.ctx.get_web_sockets())
        ws = sockets[0]

        def configure(instance: Any) -> Any:
            ctx: DurableObjectState = instance.ctx
            assert ctx.get_web_socket_auto_response() is None
            assert ctx.get_web_socket_auto_response_timestamp(ws) is None
            ctx.setWebSocketAutoResponse(WebSocketRequestResponsePair("ping", "pong"))
            pair = ctx.get_web_socket_auto_response()
            return (pair.request, pair.response) if pair else None

        assert await in_object(stub, configure) == ("ping", "pong")
        constructed = log.count("constructed")
        link.message("ping")
        assert wire.sent == ["pong"]  # answered at once: no event, no handler
        link.message("ping ")  # near misses and binary frames reach the handler
        link.message(b"ping")
        await settle()
        assert [entry[1] for entry in log if entry[0] == "message"] == ["ping ", b"ping"]
        assert log.count("constructed") == constructed

        def stamp(instance: Any) -> Any:
            return instance.ctx.getWebSocketAutoResponseTimestamp(ws)

        assert await in_object(stub, stamp) == datetime.fromtimestamp(clock.now(), UTC)

        def limits(instance: Any) -> None:
            ctx: DurableObjectState = instance.ctx
            with pytest.raises(DurableObjectRangeError) as caught:
                ctx.set_web_socket_auto_response(WebSocketRequestResponsePair("p" * 2049, "x"))
            assert str(caught.value) == (
                "Request cannot be larger than 2048 bytes. A request of size 2049 was provided."
            )
            with pytest.raises(ValueError, match="^Response cannot be larger than 2048 bytes"):
                ctx.set_web_socket_auto_response(WebSocketRequestResponsePair("p", "é" * 1025))
            with pytest.raises(TypeError, match="WebSocketRequestResponsePair"):
                ctx.set_web_socket_auto_response("ping")  # type: ignore[arg-type]
            ctx.set_web_socket_auto_response()  # clears; timestamps stay readable
            assert ctx.get_web_socket_auto_response() is None
            assert ctx.get_web_socket_auto_response_timestamp(ws) is not None

        await in_object(stub, limits)
        link.message("ping")
        await settle()
        assert log[-1][1] == "ping"

    run(main)


def test_140_event_timeout(tmp_path: Path) -> None:
    async def main() -> None:
        clock = FakeClock()
        settings = RuntimeSettings(clock=clock)
        stub = make_namespace(tmp_path, Room, settings=settings).get_by_name("r")

        def check(instance: Any) -> None:
            ctx: DurableObjectState = instance.ctx
            assert ctx.get_hibernatable_web_socket_event_timeout() is None
            with pytest.raises(DurableObjectError, match="^Event timeout should not exceed"):
                ctx.set_hibernatable_web_socket_event_timeout(604_800_001)
            with pytest.raises(TypeError, match="negative"):
                ctx.set_hibernatable_web_socket_event_timeout(-1)
            ctx.setHibernatableWebSocketEventTimeout(1500.7)
            assert ctx.getHibernatableWebSocketEventTimeout() == 1500
            ctx.set_hibernatable_web_socket_event_timeout(0)
            assert ctx.get_hibernatable_web_socket_event_timeout() is None
            ctx.set_hibernatable_web_socket_event_timeout(604_800_000)
            ctx.set_hibernatable_web_socket_event_timeout()
            assert ctx.get_hibernatable_web_socket_event_timeout() is None
            ctx.set_hibernatable_web_socket_event_timeout(5)

        await in_object(stub, check)
        link, wire = await connect(stub)
        link.message("hang")  # runs past 5 ms: the object is shut down, sockets dropped
        await clock.advance(0.004)
        assert wire.sent == []  # the limit is on the injected clock: not reached yet
        await clock.advance(0.001)
        assert wire.sent == ["abort"]
        assert await in_object(stub, lambda i: i.ctx.get_web_sockets()) == []

    run(main)


# -- the output gate (075) and resets ------------------------------------------------------


def test_075_sends_wait_for_earlier_writes(tmp_path: Path) -> None:
    async def main() -> None:
        syncer = RecordingSyncer()
        ns = make_namespace(tmp_path, Room, committer=Committer(syncer=syncer))
        link, wire = await connect(ns.get_by_name("a"))
        other, other_wire = await connect(ns.get_by_name("b"))
        link.message("write-then-send")
        other.message("write-then-send")
        await until(lambda: len(wire.sent) == len(other_wire.sent) == 1)
        syncer.release.clear()
        # Two objects dirty in one turn: their syncs go to the thread pool and hang there.
        link.message("write-then-send")
        other.message("write-then-send")
        await settle()
        link.message("echo")  # not gated itself, but it must not overtake the held send
        await settle()
        assert wire.sent == ["after write"]  # held: the write is not durable yet
        syncer.release.set()
        await until(lambda: len(wire.sent) == 3)
        assert wire.sent == ["after write", "after write", "echoed"]

    run(main)


def test_reset_disconnects_every_socket(tmp_path: Path) -> None:
    async def main() -> None:
        stub = make_namespace(tmp_path, Room).get_by_name("r")
        first, wire1 = await connect(stub, "tag=a")
        _, wire2 = await connect(stub)
        first.message("abort")  # ctx.abort() in the handler resets the object
        await settle()
        assert wire1.sent == wire2.sent == ["abort"]
        assert await in_object(stub, lambda i: i.ctx.get_web_sockets()) == []
        first.message("echo")  # a disconnected socket delivers nothing
        await settle()
        assert wire1.sent == ["abort"]

    run(main)


# -- hibernation (146-148) -----------------------------------------------------------------


def lifecycle_namespace(tmp_path: Path, cls: type) -> tuple[DurableObjectNamespace, FakeClock]:
    clock = FakeClock()
    settings = RuntimeSettings(idle_timeout_s=10.0, clock=clock)
    return make_namespace(tmp_path, cls, settings=settings, lifecycle=True), clock


def test_146_147_hibernation_keeps_sockets_tags_and_attachments(tmp_path: Path) -> None:
    async def main() -> None:
        ns, clock = lifecycle_namespace(tmp_path, Room)
        stub = ns.get_by_name("r")
        link, wire = await connect(stub, "tag=blue&tag=x&name=bo")
        ws_before = (await in_object(stub, lambda i: i.ctx.get_web_sockets()))[0]
        await in_object(
            stub,
            lambda i: i.ctx.set_web_socket_auto_response(
                WebSocketRequestResponsePair("ping", "pong")
            ),
        )
        host = ns._class.hosts[stub.id]
        lifecycle = ns._class.lifecycle
        assert lifecycle is not None
        await clock.advance(11)
        assert lifecycle.reap() == 1  # checklist 146: evicted although a socket is open
        assert host.instance is None and ns._class.hosts[stub.id] is host
        link.message("ping")  # the auto-response does not wake it
        assert wire.sent == ["pong"] and host.instance is None
        link.message("echo")  # checklist 147: constructed again, same socket, tags, attachment
        await until(lambda: len(wire.sent) == 2)  # (the evicted file closes in a thread)
        assert log.count("constructed") == 2
        assert log[-1] == ("message", "echo", {"name": "bo"}, ["blue", "x"])
        assert wire.sent == ["pong", "echoed"]
        ws_after = (await in_object(stub, lambda i: i.ctx.get_web_sockets("blue")))[0]
        assert ws_after is ws_before
        link.closed(1000, "")
        await until(lambda: log[-1][0] == "close")
        await clock.advance(11)
        assert lifecycle.reap() == 1
        assert stub.id not in ns._class.hosts  # no sockets left: the host is dropped too

    run(main)


def test_148_standard_socket_pins_the_object(tmp_path: Path) -> None:
    async def main() -> None:
        ns, clock = lifecycle_namespace(tmp_path, Room)
        stub = ns.get_by_name("r")
        link, wire = await connect(stub, "standard=1")
        link.message("hi")
        await settle()
        assert wire.sent == ["std:hi"]
        lifecycle = ns._class.lifecycle
        assert lifecycle is not None
        await clock.advance(60)
        assert lifecycle.reap() == 0  # checklist 148: never hibernated while it is open
        link.closed(1000, "")
        await settle()
        await clock.advance(60)
        assert lifecycle.reap() == 1

    run(main)


# -- names -----------------------------------------------------------------------------------
# The camelCase aliases are checked against the classes' own names in tests/unit/test_aliases.py.


def test_js_compat_module(tmp_path: Path) -> None:
    from objectd.runtime.loader import install_workers_compat

    install_workers_compat()
    import js  # type: ignore[import-not-found]

    assert js.WebSocketPair is WebSocketPair
    assert MessageEvent("x").data == "x"
