"""Issue 9 §5-§9: what a client sends may fail its own request, never the server.

Each test replays one attack or accident against a real ``objectd serve`` process over
raw sockets (so nothing in a client library tidies the bytes up), with the server's
timeouts and limits made small through its command-line options.  The assertions are
behaviour: status codes, a connection closed by the server, ``/health`` answering while
the attack goes on, and the server's memory (``VmRSS``/``VmHWM`` from ``/proc``).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import Server

MiB = 1024 * 1024


# -- helpers ---------------------------------------------------------------------------------


def address(server: Server) -> tuple[str, int]:
    parts = urlsplit(server.url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def connect(server: Server, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(address(server), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def read_until_closed(sock: socket.socket, limit: int = 1 * MiB) -> bytes:
    """What the server sends until it closes the connection (a timeout fails the test)."""
    data = b""
    while len(data) < limit:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def read_response(sock: socket.socket) -> bytes:
    """One response's head and body (the server's framing: Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def exchange(server: Server, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a new connection; everything the server answers until it closes."""
    with connect(server, timeout) as sock:
        sock.sendall(data)
        return read_until_closed(sock)


def status(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response[9:12])


def header(response: bytes, name: bytes) -> bytes | None:
    head = response.partition(b"\r\n\r\n")[0]
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def get(path: str, host: bytes = b"localhost", extra: bytes = b"") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: " + host + b"\r\n" + extra + b"\r\n"


def proc_status(server: Server, field: str) -> int:
    assert server.proc is not None
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field}")


def health(server: Server, timeout: float = 5.0) -> int:
    return httpx.get(server.url + "/health", timeout=timeout).status_code


def start(project: Path, tmp_path: Path, *args: str, **kwargs: object) -> Server:
    return Server(project, tmp_path / "data", *args, **kwargs).start()  # type: ignore[arg-type]


@pytest.fixture
def tuned(project: Path, tmp_path: Path) -> Iterator[Server]:
    """A server with small timeouts, so the timeout tests take a second or two."""
    srv = start(project, tmp_path, "--header-timeout", "1", "--keep-alive-timeout", "1")
    try:
        yield srv
    finally:
        srv.kill()


# -- §6 Host ---------------------------------------------------------------------------------


def test_6_host_cannot_rewrite_the_url_the_worker_sees(server: Server) -> None:
    response = exchange(server, get("/health", host=b"x/counter/victim/increment?"))
    assert status(response) == 400
    for host in [b"x?counter", b"x#y", b"user@x", b"a b", b"[::1", b"x:99999", b"x:8a", b""]:
        assert status(exchange(server, get("/health", host=host))) == 400, host
    twice = b"GET /health HTTP/1.1\r\nHost: localhost\r\nHost: x/counter/victim\r\n\r\n"
    assert status(exchange(server, twice)) == 400
    assert status(exchange(server, b"GET /health HTTP/1.1\r\n\r\n")) == 400  # 1.1 needs Host
    star = b"GET * HTTP/1.1\r\nHost: x\r\n\r\n"  # the target would become part of the host
    assert status(exchange(server, star)) == 400
    with server.client() as http:
        assert http.get("/counter/victim/get").text == "0"  # the worker never saw the requests
    for host in [b"localhost", b"127.0.0.1:8787", b"[::1]:80", b"ex-ample.com.", b"a%41b"]:
        response = exchange(server, get("/health", host=host, extra=b"connection: close\r\n"))
        assert status(response) == 200, host


def test_6_websocket_upgrade_with_a_bad_host_is_400(server: Server) -> None:
    upgrade = (
        b"connection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\n"
        b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    )
    response = exchange(server, get("/health", host=b"x/room/victim/websocket?", extra=upgrade))
    assert status(response) == 400
    with server.client() as http:
        assert http.get("/room/victim/count").text == '{"count":0}'
    with connect(server) as sock:  # the same upgrade with a good Host is accepted
        sock.sendall(get("/room/ok/websocket", host=b"localhost", extra=upgrade))
        assert status(sock.recv(65536)) == 101
