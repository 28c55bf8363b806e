"""What ``objectd dev`` and ``objectd serve`` print (issue 15 §4): one line when ready and
nothing of uvicorn's own start-up before it, objectd's lines from the process that serves,
no line per connection unless ``--access-log``, and a port in use is one line naming it."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES, Server
from websockets.sync.client import connect

_PER_CONNECTION = re.compile(r"connection open|connection closed|\[accepted\]|WebSocket /")


@pytest.mark.parametrize("project", ["chat"], indirect=True)
@pytest.mark.parametrize("access_log", [False, True])
def test_serve_prints_one_line_when_ready_and_no_line_per_connection(
    project: Path, tmp_path: Path, access_log: bool
) -> None:
    args = ["--access-log"] if access_log else []
    server = Server(project, tmp_path / "data", *args).start()
    try:
        with server.client() as http:
            assert http.get("/").status_code == 200
        url = server.url.replace("http", "ws") + "/api/rooms/lobby/websocket?user=ann"
        with connect(url, open_timeout=10) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "history"
        assert server.stop(signal.SIGINT) == 0
    finally:
        server.kill()
    lines = server.output.splitlines()
    ready = [line for line in lines if "objectd: serving chat on" in line]
    assert len(ready) == 1, server.output
    # Nothing of uvicorn's own start-up (its "running on" came before the project loaded).
    assert not any("Uvicorn running on" in line for line in lines), server.output
    assert not any("Started server process" in line for line in lines), server.output
    per_connection = [line for line in lines if _PER_CONNECTION.search(line)]
    if access_log:
        assert any("[accepted]" in line for line in per_connection), server.output
        assert any('"GET / HTTP/1.1" 200' in line for line in lines), server.output
    else:
        assert per_connection == [], server.output
        assert not any("HTTP/1.1" in line for line in lines), server.output


@pytest.mark.parametrize("project", ["counter"], indirect=True)
def test_dev_start_log_is_short(project: Path, tmp_path: Path) -> None:
    """objectd's lines only, those of the serving process included (its INFO lines, such
    as a migration applied, were dropped), and one ready line."""
    server = Server(project, tmp_path / "data", mode="dev").start()
    try:
        with server.client() as http:
            assert http.get("/increment").text == "1"
        assert server.stop(signal.SIGINT) == 0
    finally:
        server.kill()
    lines = server.output.splitlines()
    assert not any(
        marker in line
        for line in lines
        for marker in ("Uvicorn running on", "Will watch", "reloader process", "server process")
    ), server.output
    assert sum("objectd: serving counter on" in line for line in lines) == 1, server.output
    assert "INFO objectd: counter: applied migration 'v1'" in server.output
    assert "objectd: objectd:" not in server.output  # the logger's name, then the message's


@pytest.mark.parametrize("mode", ["serve", "dev"])
def test_port_in_use_is_one_clear_line(tmp_path: Path, mode: str) -> None:
    """It was uvicorn's bare ``[Errno 98] Address already in use``, after the start log."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                *(sys.executable, "-m", "objectd", mode, str(EXAMPLES / "counter")),
                *("--port", str(port), "--data-dir", str(tmp_path / "data")),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode != 0
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1, done.stderr
    assert f"port {port}" in errors[0] and "--port 0" in errors[0], errors
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--port", "70000"), "70000 is not in the range 0<=x<=65535"),
        (("--port", "-1"), "-1 is not in the range 0<=x<=65535"),
        (("--host", "[::1]", "--port", "0"), "write an IPv6 address without brackets: ::1"),
    ],
)
def test_bad_listen_options_are_one_clear_line(
    tmp_path: Path, options: tuple[str, ...], message: str
) -> None:
    """A port out of range ended in a traceback (``OverflowError``); ``--host [::1]`` in
    ``cannot listen on http://[[::1]]:0: Name or service not known``."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "objectd", "serve", str(EXAMPLES / "counter")),
            *(*options, "--data-dir", str(tmp_path / "data")),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
