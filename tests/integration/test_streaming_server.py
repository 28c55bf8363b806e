"""Streamed bodies and Server-Sent Events on a real ``objectd serve`` (issue 10 §1).

Real HTTP clients (httpx, streaming) read each chunk or event as it arrives; the
objects say through their own routes what their generators did.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import EXAMPLES, Server, wait_until
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

STREAMS_APP = Path(__file__).resolve().parent / "apps" / "streams"
MiB = 1024 * 1024

pytestmark = pytest.mark.integration


@pytest.fixture
def streams(tmp_path: Path) -> Iterator[Server]:
    project = tmp_path / "streams"
    shutil.copytree(STREAMS_APP, project)
    server = Server(project, tmp_path / "data", "--idle-timeout", "0.3").start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Server]:
    project = tmp_path / "live"
    shutil.copytree(EXAMPLES / "live", project, ignore=shutil.ignore_patterns(".objectd"))
    server = Server(project, tmp_path / "data").start()
    try:
        yield server
    finally:
        server.kill()


def stats(server: Server) -> dict[str, Any]:
    with server.client() as http:
        response = http.get("/object/stats")
        assert response.status_code == 200, response.text
        return response.json()


def step(server: Server) -> None:
    with server.client() as http:
        assert http.post("/object/step").text == "stepped"


def sse_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Server-Sent Events from a stream of lines: one dict per event or comment."""
    event: dict[str, Any] = {}
    for line in lines:
        if line == "":
            if event:
                yield event
            event = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            field, _, value = line.partition(":")
            event[field] = value.removeprefix(" ")


def test_a_streamed_response_is_chunked_and_each_chunk_leaves_as_produced(
    streams: Server,
) -> None:
    """The second chunk is produced only after the test reads the first one and then
    asks for it: so nothing on the way (uvicorn included) waits for the whole body."""
    for path in ("/worker/stream", "/object/stream"):
        with streams.client() as http, http.stream("GET", path) as response:
            assert response.status_code == 200
            assert "content-length" not in response.headers
            assert response.headers["transfer-encoding"] == "chunked"
            lines = response.iter_lines()
            assert next(lines) == "one"
            step(streams)
            assert next(lines) == "two"
            assert list(lines) == []
    assert stats(streams)["closed"] == 1  # the object's generator ran to its end


def test_a_client_that_goes_away_closes_the_objects_generator(streams: Server) -> None:
    before = stats(streams)
    with streams.client() as http, http.stream("GET", "/object/stream") as response:
        lines = response.iter_lines()  # kept: a dropped iterator closes the response
        assert next(lines) == "one"
        assert stats(streams)["open"] == 1
    # Leaving the block closes the connection mid-body: the generator waits for a step
    # that never comes, and only the front closing it runs its finally.
    wait_until(lambda: stats(streams)["closed"] == 1, timeout=10)
    after = stats(streams)
    assert after == {"instance": before["instance"], "closed": 1, "open": 0}
    step(streams)  # nothing else of the object was affected
    with streams.client() as http:
        assert http.get("/worker/size").text == "0"


def test_a_raising_stream_ends_the_connection_and_is_logged_once(streams: Server) -> None:
    instance = stats(streams)["instance"]
    with streams.client() as http, http.stream("GET", "/object/raise") as response:
        lines = response.iter_lines()
        assert next(lines) == "ok"
        with pytest.raises(httpx.RemoteProtocolError):  # no closing chunk: truncated
            list(lines)
    wait_until(lambda: "stream broke: 7" in streams.output)
    assert streams.output.count("objectd: a streamed response failed") == 1
    assert streams.output.count("ValueError: stream broke: 7") == 1
    assert stats(streams)["instance"] == instance  # not reset


def test_a_long_lived_stream_keeps_its_object_live_until_it_ends(streams: Server) -> None:
    """As a standard WebSocket does: with a stream open the object is not evicted
    (idle timeout 0.3 s here); once the stream ends it is, as any idle object."""
    instance = stats(streams)["instance"]
    with streams.client() as http, http.stream("GET", "/object/stream") as response:
        lines = response.iter_lines()
        assert next(lines) == "one"
        time.sleep(1.5)  # five idle timeouts with no event: only the stream holds it
        assert stats(streams)["instance"] == instance
        step(streams)
        assert next(lines) == "two"
    # Polled less often than the idle timeout, so the object can go between polls.
    wait_until(lambda: stats(streams)["instance"] != instance, timeout=15, interval=1.0)


def test_an_upload_past_the_buffered_limit_streams_into_an_object(streams: Server) -> None:
    """120 MiB, over the 100 MiB limit of a buffered body, passed by the worker to the
    object unread (``stub.fetch(request)``) and counted there chunk by chunk; the server
    never holds it whole (its peak memory grows by far less than the body)."""
    size = 120 * MiB
    piece = b"x" * MiB

    def body() -> Iterator[bytes]:
        for _ in range(size // MiB):
            yield piece

    before = _peak_memory(streams)
    with streams.client() as http:
        response = http.post(
            "/object/upload", content=body(), headers={"content-length": str(size)}
        )
    assert response.status_code == 200, response.text
    counted = response.json()
    assert counted["size"] == size and counted["chunks"] > 1
    assert _peak_memory(streams) - before < 48 * MiB
    with streams.client() as http:  # read whole, the same body is refused from its length
        refused = http.post("/worker/size", content=body(), headers={"content-length": str(size)})
    assert refused.status_code == 413


def _leave_after_head(server: Server, head: bytes) -> None:
    """Send ``head`` on a raw connection, read the start of the answer, and leave."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(head)
        assert raw.recv(200).startswith(b"HTTP/1.1 200")


def worker_streams(server: Server) -> dict[str, int]:
    with server.client() as http:
        return http.get("/worker/streams").json()


def test_a_client_that_leaves_is_noticed_when_the_request_body_was_not_read(
    streams: Server,
) -> None:
    """A PUT announcing 200 MiB that sends none of it, to streams that never read it:
    the body's reader never finished, so the front used to wait for it before watching
    the connection, and the generators ran forever after the client left."""
    for path in ("/object/ticks", "/worker/ticks"):
        for _ in range(3):
            _leave_after_head(
                streams,
                b"PUT %s HTTP/1.1\r\nHost: x\r\nContent-Length: 209715200\r\n\r\n" % path.encode(),
            )
    wait_until(lambda: stats(streams)["closed"] == 3, timeout=10)
    assert stats(streams)["open"] == 0
    wait_until(lambda: worker_streams(streams) == {"open": 0, "closed": 3}, timeout=10)


def test_a_stream_that_never_awaits_stops_when_its_client_leaves(streams: Server) -> None:
    """Once disconnected, uvicorn's send() returns without suspending: a generator that
    never awaits between its rows then held the loop, so every other request waited
    for the 30 s CPU limit.  Now the stream is closed and the server answers at once
    (a bounded wait: the client's 10 s timeout is a third of that limit)."""
    _leave_after_head(streams, b"GET /worker/rows HTTP/1.1\r\nHost: x\r\n\r\n")
    with httpx.Client(base_url=streams.url, timeout=10.0) as http:
        assert http.get("/health").text == "ok"
    wait_until(lambda: worker_streams(streams) == {"open": 0, "closed": 1}, timeout=10)
    assert "CPU time limit" not in streams.output


def test_open_streams_count_against_the_live_object_limit(tmp_path: Path) -> None:
    """An open stream pins its object, so it cannot be evicted to make room: past
    ``--max-live-objects`` a new object is refused (503, Retry-After) instead of opening
    files past the descriptor plan (issue 9 §7: EMFILE on .sqlite files, 500s to other
    clients); once a stream ends, its object can be evicted and the new one opens."""
    project = tmp_path / "streams"
    shutil.copytree(STREAMS_APP, project)
    server = Server(project, tmp_path / "data", "--max-live-objects", "2").start()
    try:
        with (
            server.client() as a,
            server.client() as b,
            a.stream("GET", "/named/a/object/stream") as first,
        ):
            lines_a = first.iter_lines()  # kept: a dropped iterator closes the response
            assert next(lines_a) == "one"
            with b.stream("GET", "/named/b/object/stream") as second:
                lines_b = second.iter_lines()
                assert next(lines_b) == "one"
                with server.client() as http:
                    refused = http.get("/named/c/object/stats")
                assert refused.status_code == 503, refused.text
                assert refused.headers["retry-after"] == "1"
                assert "live objects" in refused.text
        with server.client() as http:  # both streams are closed: their objects can go
            wait_until(lambda: http.get("/named/c/object/stats").status_code == 200)
            assert http.get("/named/a/object/stats").json()["closed"] == 1
    finally:
        server.kill()


def test_outbound_streams_that_fill_the_pool_fail_a_fetch_clearly(streams: Server) -> None:
    """100 streamed outbound responses held open take every pooled connection; a further
    fetch() used to wait forever (no pool timeout), freezing every outbound call.  It
    now fails with an error that says so, within the pool timeout (10 s), and works
    again once a connection is given back."""
    with httpx.Client(base_url=streams.url, timeout=60.0) as http:
        assert http.get("/out/hold?n=100").text == "100"
        refused = http.get("/out/fetch")
        assert refused.status_code == 502
        assert "all 100 outbound connections are in use" in refused.text
        assert http.get("/out/release").text == "released"
        assert http.get("/out/fetch").text == "ok"


def test_a_body_read_whole_is_held_once(streams: Server) -> None:
    """Read whole, an 80 MiB upload arriving in many reads was held twice at its end (its
    chunks, and their join), so the body budget was exceeded by a whole body; now the
    server's peak memory grows by the body and a small margin, not twice the body."""
    size = 80 * MiB
    piece = b"x" * MiB

    def body() -> Iterator[bytes]:
        for _ in range(size // MiB):
            yield piece

    before = _peak_memory(streams)
    with streams.client() as http:
        response = http.post("/worker/size", content=body(), headers={"content-length": str(size)})
    assert response.text == str(size)
    assert _peak_memory(streams) - before < size * 3 // 2


def test_standard_websockets_count_against_the_live_object_limit(tmp_path: Path) -> None:
    """A standard WebSocket pins its object as a stream does: past the limit a new
    object's upgrade is denied with 503 and Retry-After, not opened past the plan."""
    project = tmp_path / "streams"
    shutil.copytree(STREAMS_APP, project)
    server = Server(project, tmp_path / "data", "--max-live-objects", "2").start()
    ws = server.url.replace("http://", "ws://", 1)

    async def main() -> None:
        async with connect(ws + "/named/a/object/ws") as a, connect(ws + "/named/b/object/ws") as b:
            await a.send("hi")
            assert await a.recv() == "hi"
            await b.send("hi")
            assert await b.recv() == "hi"
            with pytest.raises(InvalidStatus) as denied:
                async with connect(ws + "/named/c/object/ws"):
                    pass
            assert denied.value.response.status_code == 503
            assert denied.value.response.headers["retry-after"] == "1"

    try:
        asyncio.run(asyncio.wait_for(main(), 30))
        with server.client() as http:  # both sockets are closed: their objects can go
            wait_until(lambda: http.get("/named/c/object/stats").status_code == 200)
    finally:
        server.kill()


def _peak_memory(server: Server) -> int:
    assert server.proc is not None
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_a_graceful_stop_ends_open_streams_and_closes_their_generators(
    streams: Server,
) -> None:
    """Without it, a stream that never ends (Server-Sent Events) held the shutdown for
    uvicorn's whole graceful timeout (30 s), past this stop's bound."""
    with streams.client() as http, http.stream("GET", "/object/stream") as response:
        lines = response.iter_lines()
        assert next(lines) == "one"
        assert streams.stop(timeout=20) == 0
        with pytest.raises(httpx.RemoteProtocolError):  # cut: no closing chunk
            list(lines)
    streams.start()  # the same data folder: the generator's finally was committed
    assert stats(streams)["closed"] == 1


# -- the live-updates example --------------------------------------------------------------


def test_live_example_pushes_each_change_as_an_event(live: Server) -> None:
    with live.client() as http, http.stream("GET", "/api/boards/t/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert "content-length" not in response.headers
        events = sse_events(response.iter_lines())
        first = next(events)  # the board as it is, while the stream goes on
        assert first == {"id": "0", "data": json.dumps({"version": 0, "text": ""})}
        assert not response.is_closed  # the first event came before the stream ended
        with live.client() as writer:
            assert writer.post("/api/boards/t", content="hello").json()["version"] == 1
            assert writer.post("/api/boards/t", content="again").json()["version"] == 2
        assert next(events) == {"id": "1", "data": json.dumps({"version": 1, "text": "hello"})}
        assert next(events) == {"id": "2", "data": json.dumps({"version": 2, "text": "again"})}
    with live.client() as http:  # a reconnect with Last-Event-ID gets only what it missed
        http.post("/api/boards/t", content="third")
        headers = {"last-event-id": "1"}
        with http.stream("GET", "/api/boards/t/events", headers=headers) as response:
            events = sse_events(response.iter_lines())
            assert [next(events)["id"], next(events)["id"]] == ["2", "3"]


def test_live_example_sends_heartbeats_and_closes_a_gone_subscriber(live: Server) -> None:
    def board_stats() -> dict[str, Any]:
        with live.client() as http:
            return http.get("/api/boards/h/stats").json()

    with live.client() as http, http.stream("GET", "/api/boards/h/events?heartbeat=0.1") as r:
        events = sse_events(r.iter_lines())
        assert next(events)["id"] == "0"
        assert next(events) == {"comment": "heartbeat"}
        assert board_stats() == {"subscribers": 1, "closed": 0}
    wait_until(lambda: board_stats() == {"subscribers": 0, "closed": 1}, timeout=10)
    with live.client() as http:
        assert http.get("/").headers["content-type"].startswith("text/html")
        assert "EventSource" in http.get("/").text


def test_live_example_answers_400_to_a_bad_heartbeat_or_last_event_id(live: Server) -> None:
    """These were a 500 (``float("abc")``; ``int()`` of 5,000 digits, past Python's digit
    limit), or no heartbeat at all (``nan``)."""
    with live.client() as http:
        for query in ("heartbeat=abc", "heartbeat=nan", "heartbeat=inf", "heartbeat=-1e999"):
            answer = http.get(f"/api/boards/q/events?{query}")
            assert answer.status_code == 400, (query, answer.text)
            assert "heartbeat" in answer.text
        for last in ("9" * 5000, "-1", "1.5", "x"):
            answer = http.get("/api/boards/q/events", headers={"last-event-id": last})
            assert answer.status_code == 400, (last[:20], answer.text)
            assert "Last-Event-ID" in answer.text
        assert http.get("/api/boards/q/stats").json() == {"subscribers": 0, "closed": 0}
