"""The ASGI front's HTTP path, in process: bad input and oversized bodies (issue 2 §8)."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import objectd.asgi.app as asgi_app
from objectd.asgi import ObjectdApp

WRANGLER = 'name = "app"\nmain = "worker.py"\n'
WORKER = """
from objectd import Response, WorkerEntrypoint

class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response(f"{request.method} {len(await request.bytes())}")
"""


def make_app(tmp_path: Path) -> ObjectdApp:
    root = tmp_path / "app"
    root.mkdir()
    (root / "wrangler.toml").write_text(WRANGLER)
    (root / "worker.py").write_text(textwrap.dedent(WORKER))
    sys.modules.pop("worker", None)
    return ObjectdApp(root, data_dir=tmp_path / "data")


def call(
    app: ObjectdApp,
    headers: list[tuple[bytes, bytes]],
    body_chunks: list[bytes],
    method: str = "POST",
) -> tuple[int, bytes]:
    """One HTTP request through the app; returns (status, body)."""
    sent = exchange(app, headers, body_chunks, method)
    return sent[0]["status"], sent[1]["body"]


def exchange(
    app: ObjectdApp,
    headers: list[tuple[bytes, bytes]],
    body_chunks: list[bytes],
    method: str = "POST",
    **extra: Any,
) -> list[dict[str, Any]]:
    """One HTTP request through the app; returns the ASGI messages it sent."""

    async def main() -> list[dict[str, Any]]:
        await app.startup()
        incoming = [
            {"type": "http.request", "body": chunk, "more_body": i < len(body_chunks) - 1}
            for i, chunk in enumerate(body_chunks)
        ]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return incoming.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": method,
            "path": "/",
            "raw_path": b"/",
            "query_string": b"",
            "headers": headers,
            "scheme": "http",
            **extra,
        }
        try:
            await app(scope, receive, send)
        finally:
            await app.shutdown()
        return sent

    return asyncio.run(main())


def test_well_formed_request(tmp_path: Path) -> None:
    assert call(make_app(tmp_path), [(b"host", b"h")], [b"abc"]) == (200, b"POST 3")


@pytest.mark.parametrize("host", [b"[::1", b"h:99999"])
def test_malformed_request_is_400_not_a_worker_error(tmp_path: Path, host: bytes) -> None:
    status, body = call(make_app(tmp_path), [(b"host", host)], [b""], method="GET")
    assert (status, body) == (400, b"Bad Request")


def test_get_with_a_body_is_400(tmp_path: Path) -> None:
    assert call(make_app(tmp_path), [(b"host", b"h")], [b"xyz"], method="GET")[0] == 400


def test_oversized_body_is_413(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asgi_app, "MAX_BODY_BYTES", 10)
    status, _ = call(make_app(tmp_path), [(b"host", b"h")], [b"123456", b"789012"])
    assert status == 413


FRAMING_WORKER = """
from objectd import Response, WorkerEntrypoint

class Default(WorkerEntrypoint):
    async def fetch(self, request):
        if request.method == "DELETE":
            return Response(None, status=204, headers={"content-length": "7"})
        if request.method == "HEAD":
            return Response(None, headers={"content-length": "1234"})
        if request.method == "PUT":
            return Response(None, status=304, headers={"transfer-encoding": "chunked"})
        # A stale length (as a relayed upstream response may carry) must not reach the wire.
        return Response("hello", headers={"content-length": "99", "x-kept": "1"})
"""


@pytest.mark.parametrize(
    ("method", "status", "length"),
    [("GET", 200, b"5"), ("DELETE", 204, None), ("HEAD", 200, b"1234"), ("PUT", 304, None)],
)
def test_responses_carry_their_real_content_length(
    tmp_path: Path, method: str, status: int, length: bytes | None
) -> None:
    app = make_app(tmp_path)
    (app.project_dir / "worker.py").write_text(textwrap.dedent(FRAMING_WORKER))
    start, body = exchange(app, [(b"host", b"h")], [b""], method=method)
    assert start["status"] == status
    headers = start["headers"]
    lengths = [value for name, value in headers if name == b"content-length"]
    assert lengths == ([length] if length is not None else [])
    assert all(name != b"transfer-encoding" for name, _ in headers)
    if method == "GET":
        assert (b"x-kept", b"1") in headers  # only the framing header was replaced
        assert body["body"] == b"hello"
    else:
        assert body["body"] == b""


def test_content_length_over_the_limit_is_413_before_any_receive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 9 §8: refused from the header, so uvicorn sends no "100 Continue"."""
    monkeypatch.setattr(asgi_app, "MAX_BODY_BYTES", 10)
    app = make_app(tmp_path)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("the body was read")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [(b"host", b"h"), (b"content-length", b"11")],
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413


def test_bodies_share_one_budget_and_give_it_back(tmp_path: Path) -> None:
    """Issue 9 §8: past the process-wide budget a request gets 503 (never a wait)."""
    app = make_app(tmp_path)
    app.body_buffer_bytes = 8
    sized = [(b"host", b"h"), (b"content-length", b"6")]
    assert call(app, sized, [b"123", b"456"]) == (200, b"POST 6")
    app._buffered = 4  # another request holds 4 bytes
    status, body = call(app, sized, [b"123", b"456"])
    assert (status, body) == (503, b"Service Unavailable")
    assert call(app, [(b"host", b"h")], [b"123", b"456"])[0] == 503  # chunked: as it comes
    assert app._buffered == 4  # refused requests hold nothing
    app._buffered = 0
    assert call(app, [(b"host", b"h")], [b"123", b"456"]) == (200, b"POST 6")
    assert app._buffered == 0


def test_an_announced_length_holds_none_of_the_budget(tmp_path: Path) -> None:
    """Adversarial re-test of issue 9, finding 5: a body takes the budget as its bytes
    arrive, so heads announcing bodies that never come hold none of it."""
    app = make_app(tmp_path)
    app.body_buffer_bytes = 8
    held: list[int] = []
    chunks = [b"", b"123", b"456"]

    async def main() -> int:
        await app.startup()
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            held.append(app._buffered)
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/",
            "raw_path": b"/",
            "query_string": b"",
            "headers": [(b"host", b"h"), (b"content-length", b"6")],
        }
        try:
            await app(scope, receive, send)
        finally:
            await app.shutdown()
        return int(sent[0]["status"])

    assert asyncio.run(main()) == 200
    assert held == [0, 0, 3]  # nothing for the announced 6 bytes until they come
    assert app._buffered == 0


@pytest.mark.parametrize(
    ("version", "status"), [("0.9", 400), ("2.0", 505), ("1.2", 505), ("1.0", 200), ("2", 200)]
)
def test_http_versions(tmp_path: Path, version: str, status: int) -> None:
    """Issue 9 §9: an HTTP/0.9-style request line (llhttp reads it as 0.9) is refused."""
    sent = exchange(make_app(tmp_path), [(b"host", b"h")], [b""], "GET", http_version=version)
    assert sent[0]["status"] == status
