"""objectd's HTTP protocol for uvicorn, in process on loopback: what the app is handed for
the request targets a client may send (adversarial re-test of issue 9, finding 9)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn

from objectd.asgi.limits import FrontLimits
from objectd.asgi.protocol import ServerConfig

Seen = list[tuple[str, str | None]]


def serve_requests(requests: list[bytes]) -> tuple[list[bytes], Seen]:
    """Each request on its own connection; the status lines, and the target path and Host
    the app saw for each request that reached it."""
    seen: Seen = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        host = dict(scope["headers"]).get(b"host")
        path = scope["raw_path"].decode()
        if scope["query_string"]:
            path += "?" + scope["query_string"].decode()
        seen.append((path, host and host.decode()))
        headers = [(b"content-length", b"2"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main() -> list[bytes]:
        config = ServerConfig(
            app, limits=FrontLimits(), host="127.0.0.1", port=0, lifespan="off", log_level="error"
        )
        server = uvicorn.Server(config)
        sock = config.bind_socket()
        sock.listen()
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        lines = []
        try:
            for request in requests:
                reader, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
                writer.write(request)
                answer = await asyncio.wait_for(reader.read(), 5)
                lines.append(answer.partition(b"\r\n")[0])
                writer.close()
        finally:
            server.should_exit = True
            await serving
        return lines

    return asyncio.run(main()), seen


@pytest.mark.parametrize(
    ("request_line", "host", "status", "seen"),
    [
        (b"GET http://a/counter/x HTTP/1.1", b"a", 200, ("/counter/x", "a")),
        (b"GET HTTP://A:80/p?q=1 HTTP/1.1", b"a", 200, ("/p?q=1", "a")),
        (b"GET http://a:8080/p HTTP/1.1", b"A:8080", 200, ("/p", "A:8080")),
        (b"GET http://[::1]/p HTTP/1.1", b"[::1]:80", 200, ("/p", "[::1]:80")),
        (b"GET http://a HTTP/1.1", b"a", 200, ("/", "a")),
        (b"GET http://a?q HTTP/1.1", b"a", 200, ("/?q", "a")),
        (b"GET /p HTTP/1.1", b"a", 200, ("/p", "a")),  # origin form: as it was
        # The authority wins: HTTP/1.0 needs no Host, so the target's is what the app sees.
        (b"GET http://a/p HTTP/1.0", None, 200, ("/p", "a")),
        # Refused: the worker would see one host and a proxy in front may have routed on
        # the other.
        (b"GET http://x/counter/victim HTTP/1.1", b"a", 400, None),
        (b"GET http://a:81/p HTTP/1.1", b"a", 400, None),
        (b"GET https://a/p HTTP/1.1", b"a:80", 400, None),
        (b"GET http://a/p HTTP/1.1", None, 400, None),  # HTTP/1.1 requires Host
        (b"GET http://u@a/p HTTP/1.1", b"a", 400, None),
        (b"GET http://a:99999/p HTTP/1.1", b"a:99999", 400, None),
    ],
)
def test_absolute_form_targets(
    request_line: bytes, host: bytes | None, status: int, seen: tuple[str, str] | None
) -> None:
    head = request_line + b"\r\n" + (b"Host: " + host + b"\r\n" if host is not None else b"")
    lines, reached = serve_requests([head + b"\r\n"])
    assert lines == [b"HTTP/1.1 %d %s" % (status, b"OK" if status == 200 else b"Bad Request")]
    assert reached == ([seen] if seen is not None else [])
