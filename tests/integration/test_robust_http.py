"""Issue 9 §5-§9: what a client sends may fail its own request, never the server.

Each test replays one attack or accident against a real ``objectd serve`` process over
raw sockets (so nothing in a client library tidies the bytes up), with the server's
timeouts and limits made small through its command-line options.  The assertions are
behaviour: status codes, a connection closed by the server, ``/health`` answering while
the attack goes on, and the server's memory (``VmRSS``/``VmHWM`` from ``/proc``).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import Server

MiB = 1024 * 1024
STREAMS_APP = Path(__file__).resolve().parent / "apps" / "streams"


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


STALLED = b"POST /kv/a/put?key=k HTTP/1.1\r\nHost: localhost\r\ncontent-length: %d\r\n\r\n"


def post_small(server: Server) -> int:
    return httpx.post(server.url + "/kv/b/put?key=k", content=b"v", timeout=5).status_code


@pytest.fixture
def tuned(project: Path, tmp_path: Path) -> Iterator[Server]:
    """A server with small timeouts, so the timeout tests take a second or two."""
    srv = start(project, tmp_path, "--header-timeout", "1", "--keep-alive-timeout", "1")
    try:
        yield srv
    finally:
        srv.kill()


# -- §5 request-header size ------------------------------------------------------------------


def test_5_header_over_128_kib_is_431(server: Server) -> None:
    fits = get("/health", extra=b"x-big: " + b"a" * (120 * 1024) + b"\r\nconnection: close\r\n")
    assert status(exchange(server, fits)) == 200
    big = get("/health", extra=b"x-big: " + b"a" * (200 * 1024) + b"\r\n")
    response = exchange(server, big)
    assert status(response) == 431
    assert header(response, b"connection") == b"close"
    many = get("/health", extra=b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 100) for i in range(2000)))
    assert status(exchange(server, many)) == 431


def test_5_unterminated_heads_neither_stall_nor_grow_the_server(server: Server) -> None:
    """Four connections stream a header that never ends (the issue: 200 MB stalled every
    request for 43 s); each is cut near the limit, and /health answers meanwhile."""
    rss_before = proc_status(server, "VmRSS")
    sent: list[int] = []
    stop = threading.Event()

    def attack() -> None:
        while not stop.is_set():  # reconnect at once, so the attack lasts the whole test
            total = 0
            with connect(server) as sock:
                try:
                    sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nx-endless: ")
                    chunk = b"a" * 65536
                    while total < 32 * MiB and not stop.is_set():
                        sock.sendall(chunk)
                        total += len(chunk)
                except OSError:  # cut by the server
                    pass
            sent.append(total)

    attackers = [threading.Thread(target=attack) for _ in range(4)]
    for thread in attackers:
        thread.start()
    try:
        for _ in range(20):
            assert health(server) == 200
            time.sleep(0.05)
        rss_during = proc_status(server, "VmRSS")
    finally:
        stop.set()
        for thread in attackers:
            thread.join(30)
    assert sent, "no attack finished"
    # What one connection got to send: the server reads ~128 KiB, the rest is what the
    # kernel buffers on loopback before the close arrives.
    assert max(sent) <= 16 * MiB, f"the server read {max(sent)} bytes of one head"
    assert rss_during - rss_before < 48 * MiB, (rss_before, rss_during)


def test_5_websocket_upgrades_accept_the_heads_plain_requests_accept(server: Server) -> None:
    """Adversarial re-test, finding 7: an 8.5 KiB Cookie or 130 headers got 431 on an
    upgrade (websockets' own parser: 8,192-byte lines, 128 headers) while a plain GET
    took a 127 KiB head.  Now both have the one 128 KiB limit."""
    upgrade = (
        b"connection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\n"
        b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    )
    fitting = {
        "8.5 KiB cookie": b"cookie: a=" + b"b" * 8700 + b"\r\n",
        "127 KiB cookie": b"cookie: a=" + b"b" * (127 * 1024 - 300) + b"\r\n",
        "130 headers": b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 30) for i in range(130)),
        "3,000 headers": b"".join(b"x%d: v\r\n" % i for i in range(3000)),
    }
    for label, extra in fitting.items():
        request = get("/room/big/websocket", extra=upgrade + extra)
        assert len(request) < 128 * 1024, label
        with connect(server) as sock:
            sock.sendall(request)
            assert status(sock.recv(65536)) == 101, label
    too_big = get(
        "/room/big/websocket", extra=upgrade + b"cookie: a=" + b"b" * (129 * 1024) + b"\r\n"
    )
    assert status(exchange(server, too_big)) == 431


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


def test_6_absolute_form_target_must_agree_with_host(server: Server) -> None:
    """Adversarial re-test, finding 9.  RFC 9112 §3.2.2: an absolute-form target's
    authority is the request's host.  One that disagrees with Host is refused (400), so a
    proxy that routed on either value and the worker see the same host."""
    attack = b"GET http://x/counter/victim/increment HTTP/1.1\r\nHost: a\r\n\r\n"
    assert status(exchange(server, attack)) == 400
    ws_attack = (
        b"GET http://x/room/victim/websocket HTTP/1.1\r\nHost: a\r\nconnection: upgrade\r\n"
        b"upgrade: websocket\r\nsec-websocket-version: 13\r\n"
        b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    assert status(exchange(server, ws_attack)) == 400
    with server.client() as http:
        assert http.get("/counter/victim/get").text == "0"
    for target, host in [
        (b"http://localhost/counter/abs/increment", b"localhost"),
        (b"http://LocalHost:80/counter/abs/increment?x=1", b"localhost"),
    ]:
        agreed = b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\nconnection: close\r\n\r\n"
        assert status(exchange(server, agreed)) == 200, target
    for target in [b"http://u@localhost/health", b"http:///health", b"http://x:99999/health"]:
        bad = b"GET " + target + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"
        assert status(exchange(server, bad)) == 400, target
    with server.client() as http:
        assert http.get("/counter/abs/get").text == "2"


# -- §7 slow and idle connections, connection limit, descriptors -----------------------------


def test_7_slowloris_is_cut_by_the_header_timeout(tuned: Server) -> None:
    """One byte every 0.2 s never completes a head; --header-timeout 1 closes it."""
    with connect(tuned) as sock:
        request = get("/health")
        answer = b""
        try:
            for byte in request[:-2]:
                sock.sendall(bytes([byte]))
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_until_closed(sock)
    assert answer == b"" or status(answer) == 408
    assert health(tuned) == 200


def test_7_silent_and_idle_connections_are_closed(tuned: Server) -> None:
    with connect(tuned) as silent:  # opens and sends nothing: closed, no answer needed
        assert read_until_closed(silent) == b""
    with connect(tuned) as idle:  # one request, then idle past --keep-alive-timeout
        idle.sendall(get("/health"))
        assert status(read_response(idle)) == 200
        assert read_until_closed(idle) == b""


def test_7_connections_past_the_limit_get_503(project: Path, tmp_path: Path) -> None:
    server = start(project, tmp_path, "--max-connections", "8")
    try:
        held = [connect(server) for _ in range(8)]
        try:
            response = exchange(server, get("/health"))
            assert status(response) == 503
            assert header(response, b"connection") == b"close"
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.2)  # the server sees the closes
        assert health(server) == 200
    finally:
        server.kill()


def test_7_sockets_never_take_the_descriptors_objects_need(project: Path, tmp_path: Path) -> None:
    """With 4,096 descriptors and 4,000 connections open, new objects still open their files:
    connections past the fd-derived limit are refused, not objects."""
    server = start(
        project, tmp_path, "--max-live-objects", "100", "--header-timeout", "30", nofile=4096
    )
    held: list[socket.socket] = []
    try:
        refused = 0
        for _ in range(4000):
            try:
                held.append(connect(server))
            except OSError:
                refused += 1
        time.sleep(0.5)
        assert server.proc is not None
        descriptors = len(list(Path(f"/proc/{server.proc.pid}/fd").iterdir()))
        assert descriptors < 4096 - 300, descriptors  # room for 100 objects' files is left
        for sock in held[:50]:
            sock.close()
        del held[:50]
        time.sleep(0.2)
        with httpx.Client(base_url=server.url, timeout=10) as http:
            for i in range(150):  # past --max-live-objects, so eviction runs too
                response = http.get(f"/counter/fd{i}/increment")
                assert response.status_code == 200, response.text
    finally:
        for sock in held:
            sock.close()
        server.kill()
    assert "Too many open files" not in server.output


def test_7_open_files_soft_limit_is_raised_to_the_hard_limit(project: Path, tmp_path: Path) -> None:
    server = start(project, tmp_path, nofile=(1024, 8192))
    try:
        assert server.proc is not None
        limits = Path(f"/proc/{server.proc.pid}/limits").read_text()
        line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
        assert line.split()[3:5] == ["8192", "8192"], line
    finally:
        server.kill()


def test_7_stalled_bodies_are_cut_by_the_body_timeout(project: Path, tmp_path: Path) -> None:
    """Body slowloris (adversarial re-test, finding 5b): heads announcing a 1-byte body
    that never comes, as many as --max-connections allows, locked every client out (503)
    for as long as they stayed.  --body-timeout cuts them with 408; a body that keeps
    arriving, however slowly, is never cut."""
    server = start(project, tmp_path, "--max-connections", "21", "--body-timeout", "1")
    try:
        with connect(server) as slow:  # one byte every 0.3 s: idle less than the timeout
            body = b"12345678"
            slow.sendall(STALLED % len(body))
            for byte in body:
                time.sleep(0.3)
                slow.sendall(bytes([byte]))
            assert status(read_response(slow)) == 200  # 2.4 s in all, past the timeout
        stalled = [connect(server) for _ in range(20)]
        try:
            for sock in stalled:
                sock.sendall(STALLED % 1)
            time.sleep(0.3)
            answers = [read_until_closed(sock) for sock in stalled]  # cut within seconds
        finally:
            for sock in stalled:
                sock.close()
        assert [status(answer) for answer in answers] == [408] * 20
        assert health(server) == 200
        assert post_small(server) == 200
    finally:
        server.kill()


# -- §8 request bodies -----------------------------------------------------------------------


def test_8_content_length_over_100_mib_is_refused_from_the_header(server: Server) -> None:
    """A body the worker reads whole (this route does) is refused from its announced
    length, before any of it is read; a streamed one may be larger (issue 10 §1:
    test_asgi_request_body)."""
    post = b"POST /kv/a/put?key=k HTTP/1.1\r\nHost: localhost\r\ncontent-length: %d\r\n"
    response = exchange(server, post % (300 * MiB) + b"\r\n" + b"x" * 1000)
    assert status(response) == 413
    with connect(server) as sock:  # with Expect, no "100 Continue" invites the body
        sock.sendall(post % (300 * MiB) + b"expect: 100-continue\r\n\r\n")
        response = read_until_closed(sock)
    assert status(response) == 413, response[:100]


def test_8_buffered_bodies_share_one_budget(tmp_path: Path) -> None:
    """Bodies take the budget as their bytes arrive: the request whose bytes would take it
    past the budget gets 503, the others go on, and what a request held is given back.
    (A body is buffered when the worker reads it whole, as this route does.)"""
    project = tmp_path / "streams"
    shutil.copytree(STREAMS_APP, project)
    server = start(project, tmp_path, "--body-buffer", "4MiB")
    post = b"POST /worker/size HTTP/1.1\r\nHost: localhost\r\ncontent-length: %d\r\n\r\n" % (
        3 * MiB
    )
    try:
        with connect(server) as first:
            first.sendall(post + b"x" * (2 * MiB + MiB // 2))  # holds 2.5 MiB of the 4 MiB
            time.sleep(0.3)
            response = exchange(server, post + b"x" * (3 * MiB))  # past 4 MiB at 1.5 MiB
            assert status(response) == 503
            assert header(response, b"retry-after") is not None
            first.sendall(b"x" * (MiB // 2))
            assert status(read_response(first)) == 200
        with connect(server) as again:  # the budget was given back
            again.sendall(post + b"x" * (3 * MiB))
            assert status(read_response(again)) == 200
    finally:
        server.kill()


def test_8_announced_bodies_hold_no_budget_until_their_bytes_arrive(server: Server) -> None:
    """Body slowloris (adversarial re-test, finding 5a): three heads announcing 100 +
    100 + 56 MiB and sending nothing took the whole 256 MiB budget, and every other upload
    got 503 for as long as they stayed.  Bodies now take the budget as their bytes come."""
    held = [connect(server) for _ in range(3)]
    try:
        for sock, size in zip(held, [100 * MiB, 100 * MiB, 56 * MiB], strict=True):
            sock.sendall(STALLED % size)
        time.sleep(0.3)  # the server has read the three heads
        assert post_small(server) == 200
        assert health(server) == 200
    finally:
        for sock in held:
            sock.close()


def test_8_many_large_bodies_keep_memory_bounded(tmp_path: Path) -> None:
    """The issue: 16 concurrent 99 MiB bodies held 1.6 GB.  Here 8 concurrent 10 MiB
    bodies, read whole by the worker, against a 16 MiB budget: each gets 200 or 503, and
    the peak stays bounded."""
    project = tmp_path / "streams"
    shutil.copytree(STREAMS_APP, project)
    server = start(project, tmp_path, "--body-buffer", "16MiB")
    try:
        rss_before = proc_status(server, "VmRSS")
        body = b"x" * (10 * MiB)
        statuses: list[int] = []

        def upload() -> None:
            with contextlib.suppress(httpx.TransportError):
                response = httpx.post(server.url + "/worker/size", content=body, timeout=30)
                statuses.append(response.status_code)

        threads = [threading.Thread(target=upload) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        peak = proc_status(server, "VmHWM")
        assert statuses and set(statuses) <= {200, 503}, statuses
        assert 200 in statuses
        assert peak - rss_before < 48 * MiB, (rss_before, peak)
        assert health(server) == 200
    finally:
        server.kill()


# -- §9 smaller ------------------------------------------------------------------------------


def test_9_http_0_9_request_lines_are_refused(server: Server) -> None:
    assert status(exchange(server, b"GET /health\r\n\r\n")) == 400
    assert status(exchange(server, b"GET /health HTTP/0.9\r\n\r\n")) == 400
    assert status(exchange(server, b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n")) == 505
    assert status(exchange(server, get("/health", extra=b"connection: close\r\n"))) == 200


def test_9_no_server_header(server: Server) -> None:
    response = exchange(server, get("/health", extra=b"connection: close\r\n"))
    assert status(response) == 200
    assert header(response, b"server") is None
    assert header(exchange(server, b"GET /health\r\n\r\n"), b"server") is None
