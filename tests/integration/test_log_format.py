"""``--log-format json`` on a real server (issue 14 §3): every line it prints is one JSON
object; an object's lines carry its class and id; an error report is one object with the
traceback as a field.  Text stays the default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Server, wait_until

pytestmark = pytest.mark.integration

_WORKER = """\
import logging
from urllib.parse import urlsplit

from workers import DurableObject, Response, WorkerEntrypoint


class Thing(DurableObject):
    async def fetch(self, request):
        path = urlsplit(request.url).path
        if path == "/abort":
            self.ctx.abort("told to")
        if path == "/alarm":
            await self.ctx.storage.set_alarm(1)  # long past: due at once
            return Response("set")
        logging.getLogger("user").warning("inside the object")
        return Response("ok")

    async def alarm(self):
        raise LookupError("no such thing")


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = urlsplit(request.url).path
        if path == "/boom":
            raise ZeroDivisionError("division by zero")
        return await self.env.THING.get_by_name("t").fetch(request)
"""
_CONFIG = """\
name = "logged"
main = "worker.py"

[[durable_objects.bindings]]
name = "THING"
class_name = "Thing"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Thing"]
"""


@pytest.fixture
def logged(tmp_path: Path) -> Path:
    project = tmp_path / "logged"
    project.mkdir()
    (project / "wrangler.toml").write_text(_CONFIG)
    (project / "worker.py").write_text(_WORKER)
    return project


def _traffic(server: Server) -> None:
    with server.client() as http:
        assert http.get("/hello").text == "ok"
        assert http.get("/boom").status_code == 500
        assert http.get("/abort").status_code == 500
        assert http.get("/alarm").text == "set"


@pytest.mark.parametrize("mode", ["serve", "dev"])
def test_json_logs_are_one_object_per_line(logged: Path, tmp_path: Path, mode: str) -> None:
    server = Server(logged, tmp_path / "data", "--log-format", "json", mode=mode).start()
    try:
        _traffic(server)
        wait_until(lambda: any("retry 1 of 6" in line for line in server.lines))
    finally:
        if mode == "serve":  # a graceful stop: its lines are JSON too
            assert server.stop() == 0
        server.kill()
    records = [json.loads(line) for line in server.lines]  # every line is JSON
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records), records
    serving = [r for r in records if r["message"].startswith("objectd: serving logged on")]
    assert len(serving) == 1 and serving[0]["level"] == "INFO"
    reports = [r for r in records if "uncaught exception" in r["message"]]
    assert len(reports) == 2  # /boom, and /abort's reset reaching the worker
    report = reports[0]
    assert report["level"] == "ERROR"
    assert report["message"] == "objectd: uncaught exception in the worker"
    assert report["traceback"].startswith("Traceback (most recent call last):")
    assert report["traceback"].endswith("ZeroDivisionError: division by zero")
    (user,) = [r for r in records if r["message"] == "inside the object"]
    assert user["logger"] == "user"
    assert user["class"] == "Thing" and len(user["id"]) == 64
    (reset,) = [r for r in records if " reset: " in r["message"]]
    assert reset["level"] == "WARNING"
    assert reset["class"] == "Thing" and reset["id"] == user["id"]
    (alarm,) = [r for r in records if "retry 1 of 6" in r["message"]]
    assert alarm["class"] == "Thing" and alarm["id"] == user["id"]
    assert alarm["message"].endswith(": no such thing")  # the report is not in the message
    assert alarm["traceback"].endswith("LookupError: no such thing")
    assert 'in alarm\n    raise LookupError("no such thing")' in alarm["traceback"]


def test_text_stays_the_default(logged: Path, tmp_path: Path) -> None:
    server = Server(logged, tmp_path / "data").start()
    try:
        _traffic(server)
        wait_until(lambda: any("retry 1 of 6" in line for line in server.lines))
    finally:
        server.kill()
    assert any(line.startswith("objectd: serving logged on") for line in server.lines)
    output = server.output
    assert "ERROR objectd: uncaught exception in the worker\nTraceback" in output
    assert "ZeroDivisionError: division by zero\n" in output
    assert "failed; retry 1 of 6 in" in output  # the alarm's report follows its line:
    assert ": no such thing\nTraceback (most recent call last):" in output
    assert not any(line.startswith("{") for line in server.lines)
