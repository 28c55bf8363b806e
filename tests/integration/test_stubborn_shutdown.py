"""A real ``objectd serve`` stops even when user code swallows its cancellation.

A ``wait_until()`` task that catches ``CancelledError`` and waits again used to hold the
shutdown (and ``asyncio.run``'s clean-up after it) up for ever; now it is cancelled after
the grace period, abandoned after a bounded wait (logged), and the process exits 0 with
every file closed: a second server then gets the data folder.
"""

from __future__ import annotations

import signal
from pathlib import Path

from conftest import Server

WRANGLER = """
name = "stubborn"
main = "worker.py"
compatibility_date = "2026-11-01"

[[durable_objects.bindings]]
name = "THING"
class_name = "Thing"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Thing"]
"""

WORKER = """
import asyncio

from objectd import DurableObject, Response, WorkerEntrypoint


class Thing(DurableObject):
    async def bump(self):
        value = (await self.ctx.storage.get("n") or 0) + 1
        await self.ctx.storage.put("n", value)
        return value


async def stubborn():
    while True:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            print("swallowing a cancel", flush=True)


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        if request.url.endswith("/stubborn"):
            self.ctx.wait_until(stubborn())
        return Response(str(await self.env.THING.get_by_name("x").bump()))
"""


def test_a_stubborn_wait_until_task_does_not_stop_the_server_from_stopping(
    tmp_path: Path,
) -> None:
    project = tmp_path / "stubborn"
    project.mkdir()
    (project / "wrangler.toml").write_text(WRANGLER)
    (project / "worker.py").write_text(WORKER)
    server = Server(project, tmp_path / "data").start()
    try:
        with server.client() as http:
            assert http.get("/stubborn").text == "1"
        # 10 s of grace, then at most 5 s for the cancelled task: bounded well under 60 s.
        assert server.stop(signal.SIGTERM, timeout=60) == 0, server.output
    finally:
        server.kill()
    assert "swallowing a cancel" in server.output
    assert "abandoning 1 wait_until() task(s) that ignored their cancellation" in server.output
    again = Server(project, tmp_path / "data").start()
    try:
        with again.client() as http:
            assert http.get("/").text == "2"  # the write was kept, the folder is free
    finally:
        again.stop()
        again.kill()
