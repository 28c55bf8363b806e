"""The app when the project does not load (asgi/app.py, issue 15 §2): by default (``serve``)
it fails its startup with the error logged once; with ``show_errors`` (``dev``) it answers
every request and upgrade with it."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from objectd.asgi import ObjectdApp

Message = dict[str, Any]


def _broken_project(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    root.mkdir()
    (root / "wrangler.toml").write_text('name = "app"\nmain = "worker.py"\n')
    (root / "worker.py").write_text("def broken(:\n")
    sys.modules.pop("worker", None)
    return root


def _lifespan(app: ObjectdApp) -> list[Message]:
    sent: list[Message] = []
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app({"type": "lifespan"}, receive, send))
    return sent


def _call(app: ObjectdApp, scope: Message, *incoming: Message) -> list[Message]:
    replies: list[Message] = []
    queue = list(incoming)

    async def receive() -> Message:
        if not queue:
            raise AssertionError("the body is not read")
        return queue.pop(0)

    async def send(message: Message) -> None:
        replies.append(message)

    asyncio.run(app(scope, receive, send))
    return replies


def test_serve_fails_the_startup_with_the_error_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = ObjectdApp(_broken_project(tmp_path), data_dir=tmp_path / "data")
    # No message: uvicorn would log it a second time.
    assert _lifespan(app) == [{"type": "lifespan.startup.failed", "message": ""}]
    assert [r.getMessage().count("SyntaxError") for r in caplog.records] == [1]


def test_dev_answers_every_request_with_the_load_error(tmp_path: Path) -> None:
    app = ObjectdApp(_broken_project(tmp_path), data_dir=tmp_path / "data", show_errors=True)
    sent = _lifespan(app)
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]
    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    start, body = _call(app, scope)
    assert start["status"] == 500
    assert dict(start["headers"])[b"content-type"].startswith(b"text/plain")
    text = body["body"].decode()
    assert 'worker.py", line 1' in text and "SyntaxError: " in text


def test_dev_answers_an_upgrade_with_the_load_error(tmp_path: Path) -> None:
    app = ObjectdApp(_broken_project(tmp_path), data_dir=tmp_path / "data", show_errors=True)
    _lifespan(app)
    scope = {
        "type": "websocket",
        "path": "/ws",
        "headers": [],
        "extensions": {"websocket.http.response": {}},
    }
    start, body = _call(app, scope, {"type": "websocket.connect"})
    assert start["type"] == "websocket.http.response.start" and start["status"] == 500
    assert "SyntaxError: " in body["body"].decode()


@pytest.mark.parametrize("statement", ["raise SystemExit(3)", "raise KeyboardInterrupt"])
def test_dev_answers_a_module_that_exits(tmp_path: Path, statement: str) -> None:
    """``sys.exit()`` or ``KeyboardInterrupt`` raised while the module runs is a load error
    like any other: the serving process lives on (a KeyboardInterrupt left it defunct, and
    every request hung until a save)."""
    root = _broken_project(tmp_path)
    (root / "worker.py").write_text(f"{statement}\n")
    app = ObjectdApp(root, data_dir=tmp_path / "data", show_errors=True)
    assert _lifespan(app)[0] == {"type": "lifespan.startup.complete"}
    start, body = _call(app, {"type": "http", "method": "GET", "path": "/", "headers": []})
    assert start["status"] == 500
    assert statement.split()[1].split("(")[0] in body["body"].decode()
