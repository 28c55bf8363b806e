"""objectd inspect/export/import's own parts (data_source.py, inspect_command.py,
transfer_command.py; issue 14 §2), with real sockets and files."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from objectd.data_source import ServerSource


class _Recorder(BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None]]

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("authorization")))
        body = json.dumps({"script": "s", "classes": []}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _serve() -> tuple[ThreadingHTTPServer, list[tuple[str, str | None]]]:
    seen: list[tuple[str, str | None]] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


@pytest.fixture
def two_servers() -> Iterator[tuple[int, list[tuple[str, str | None]], int, list[Any]]]:
    admin, admin_seen = _serve()
    proxy, proxy_seen = _serve()
    yield admin.server_address[1], admin_seen, proxy.server_address[1], proxy_seen
    for server in (admin, proxy):
        server.shutdown()
        server.server_close()


def test_the_admin_token_never_goes_to_a_proxy(
    two_servers: tuple[int, list[tuple[str, str | None]], int, list[Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The admin API is on this machine: HTTP_PROXY and the like are not asked (they
    would see the token)."""
    admin_port, admin_seen, proxy_port, proxy_seen = two_servers
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{proxy_port}")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    source = ServerSource(f"http://127.0.0.1:{admin_port}/__objectd/", "tok-1234567890abcdef", 1)
    assert source.get("summary") == {"script": "s", "classes": []}
    assert proxy_seen == []
    assert admin_seen == [("/__objectd/api/summary", "Bearer tok-1234567890abcdef")]


def test_control_characters_in_stored_data_never_reach_the_terminal() -> None:
    """A stored key or value (or a table or column name) could hold escape codes that
    retitle the terminal, hide lines or worse: tables show them escaped."""
    import io

    from rich.console import Console

    from objectd.inspect_command import _table

    out = io.StringIO()
    console = Console(file=out, width=300, color_system=None)  # no styles of its own
    evil = "\x1b]0;owned\x07\x1b[2Jkey\r\x9b31m\x7f"
    console.print(_table(f"table {evil}", [f"col{evil}"], [[evil], ["plain é ✓"]]))
    shown = out.getvalue()
    for code in ("\x1b", "\x07", "\r", "\x9b", "\x7f"):
        assert code not in shown, repr(code)
    assert "\\x1b]0;owned\\x07\\x1b[2Jkey\\x0d\\x9b31m\\x7f" in shown
    assert "plain é ✓" in shown


GOOD_ID = "ab" * 32


def _entry(**changes: Any) -> dict[str, Any]:
    entry = {"class": "Box", "id": GOOD_ID, "file": f"Box/{GOOD_ID}.sqlite", "sha256": "0" * 64}
    entry.update(changes)
    return {key: value for key, value in entry.items() if value is not _DROP}


_DROP = object()


@pytest.mark.parametrize(
    ("objects", "message"),
    [
        ("abc", '"objects" must be a list'),
        (None, '"objects" must be a list'),
        (["x"], "object 1: not a JSON object"),
        ([_entry(file=_DROP)], 'object 1: "file" must be a string'),
        ([_entry(**{"class": ["Box"]})], 'object 1: "class" must be a string'),
        ([_entry(id=None)], 'object 1: "id" must be a string'),
        ([_entry(id=123)], 'object 1: "id" must be a string'),
        ([_entry(id="../../x", file="Box/../../x.sqlite")], '"id" must be 64 hex digits'),
        ([_entry(name=7)], '"name" must be a string or null'),
        ([_entry(sha256=_DROP)], 'object 1: "sha256" must be a string'),
        ([_entry(file="../exp1/Box/x.sqlite")], f'"file" must be "Box/{GOOD_ID}.sqlite"'),
        ([_entry(file="/etc/passwd")], f'"file" must be "Box/{GOOD_ID}.sqlite"'),
        ([_entry(), _entry(**{"class": "../x"})], 'object 2: "class" is not a class name'),
    ],
)
def test_a_malformed_manifest_is_refused_with_what_is_wrong(
    tmp_path: Any, objects: Any, message: str
) -> None:
    import click

    from objectd.transfer_command import _read_manifest

    (tmp_path / "manifest.json").write_text(json.dumps({"format": 1, "objects": objects}))
    with pytest.raises(click.ClickException) as refused:
        _read_manifest(tmp_path)
    assert message in refused.value.message


def test_a_sound_manifest_is_read(tmp_path: Any) -> None:
    from objectd.transfer_command import _read_manifest

    manifest = {"format": 1, "objects": [_entry(name=None, alarm_ms=True)]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert _read_manifest(tmp_path)["objects"][0]["id"] == GOOD_ID
