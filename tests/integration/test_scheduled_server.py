"""Cron triggers on a real server (issue 10 §3): ``objectd dev`` serves ``/__scheduled``
as ``wrangler dev --test-scheduled`` does; ``objectd serve`` leaves the path to the worker."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Server

# A schedule that does not come during a test (midnight, January 1st): only the route runs it.
WRANGLER = """
name = "crons"
main = "worker.py"

[triggers]
crons = ["0 0 1 JAN *"]

[[durable_objects.bindings]]
name = "LOG"
class_name = "Log"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Log"]
"""
WORKER = """
from workers import DurableObject, Response, WorkerEntrypoint


class Log(DurableObject):
    async def note(self, line):
        await self.ctx.storage.put("last", line)

    async def last(self):
        return await self.ctx.storage.get("last") or "nothing ran"


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        if request.url.endswith("/last"):
            return Response(await self.env.LOG.getByName("log").last())
        return Response(f"the worker answered {request.url}")

    async def scheduled(self, controller, env, ctx):
        if controller.cron == "fail":
            raise ValueError("the cleanup job broke")
        line = f"{controller.type}|{controller.cron}|{controller.scheduledTime}"
        await env.LOG.getByName("log").note(line)
"""


@pytest.fixture
def crons_project(tmp_path: Path) -> Path:
    root = tmp_path / "crons"
    root.mkdir()
    (root / "wrangler.toml").write_text(WRANGLER)
    (root / "worker.py").write_text(WORKER)
    return root


def test_dev_serves_test_scheduled_route(crons_project: Path, tmp_path: Path) -> None:
    server = Server(crons_project, tmp_path / "data", mode="dev").start()
    try:
        with server.client() as http:
            assert http.get("/last").text == "nothing ran"
            ran = http.get("/__scheduled", params={"cron": "*/5 * * * *", "time": "1234"})
            assert (ran.status_code, ran.text) == (200, "Ran scheduled event")
            assert http.get("/last").text == "scheduled|*/5 * * * *|1234"
            # wrangler's own spelling, with + for the spaces; no time: now, in ms.
            assert http.get("/__scheduled?cron=*+*+*+*+*").status_code == 200
            kind, cron, when = http.get("/last").text.split("|")
            assert (kind, cron) == ("scheduled", "* * * * *")
            assert int(when) > 1_700_000_000_000
            failed = http.get("/__scheduled?cron=fail")
            assert failed.status_code == 500
            assert "ValueError: the cleanup job broke" in failed.text  # dev's report
            assert http.get("/__scheduled?time=soon").status_code == 400
    finally:
        server.kill()
    assert server.output.count("ValueError: the cleanup job broke") == 1, server.output


def test_serve_leaves_the_path_to_the_worker(crons_project: Path, tmp_path: Path) -> None:
    server = Server(crons_project, tmp_path / "data").start()
    try:
        with server.client() as http:
            answer = http.get("/__scheduled?cron=*+*+*+*+*")
            assert answer.status_code == 200
            assert answer.text == f"the worker answered {server.url}/__scheduled?cron=*+*+*+*+*"
            assert http.get("/last").text == "nothing ran"
    finally:
        server.kill()


def test_a_bad_cron_refuses_to_start_with_the_string(crons_project: Path, tmp_path: Path) -> None:
    wrangler = crons_project / "wrangler.toml"
    wrangler.write_text(wrangler.read_text().replace("0 0 1 JAN *", "0 0 * * 0"))
    server = Server(crons_project, tmp_path / "data")
    with pytest.raises(RuntimeError, match="did not start"):
        server.start(timeout=30)
    assert (
        f"{wrangler}: triggers.crons[0]: invalid cron expression '0 0 * * 0': day of week '0'"
        in server.output
    ), server.output
