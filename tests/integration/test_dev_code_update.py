"""A code reload in ``objectd dev`` is a code update: calls in flight into objects fail
with Cloudflare's reset error, retryable (spec §9 and §12, checklist 152)."""

from __future__ import annotations

import concurrent.futures
import signal
import time
from pathlib import Path

from conftest import Server, wait_until

WRANGLER = """
name = "update"
main = "worker.py"

[[durable_objects.bindings]]
name = "SLOW"
class_name = "Slow"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Slow"]
"""
# The worker reports what its await of the object raised: type, message and flags.
WORKER = """
import asyncio

from workers import DurableObject, Response, WorkerEntrypoint

VERSION = "v1"


class Slow(DurableObject):
    async def wait(self):
        print("objectd-test: slow call started", flush=True)
        await asyncio.sleep(120)
        return "finished on the old code"

    async def version(self):
        return VERSION


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        stub = self.env.SLOW.getByName("one")
        if request.url.endswith("/slow"):
            try:
                return Response(await stub.wait())
            except Exception as exc:
                return Response(
                    f"{type(exc).__name__}|{exc}|retryable={exc.retryable}"
                    f"|reset={exc.durableObjectReset}"
                )
        return Response(await stub.version())
"""


def _served(server: Server) -> int:
    return server.output.count("objectd: serving update on")


def test_152_a_reload_fails_in_flight_calls_as_a_code_update(tmp_path: Path) -> None:
    project = tmp_path / "update"
    project.mkdir()
    (project / "wrangler.toml").write_text(WRANGLER)
    worker = project / "worker.py"
    worker.write_text(WORKER)
    server = Server(project, tmp_path / "data", mode="dev").start()
    try:
        with server.client() as http:
            assert http.get("/version").text == "v1"
        with concurrent.futures.ThreadPoolExecutor(1) as pool, server.client() as http:
            slow = pool.submit(http.get, "/slow")
            wait_until(lambda: "slow call started" in server.output, timeout=30)
            time.sleep(0.2)  # let the watcher settle before the edit
            worker.write_text(WORKER.replace('VERSION = "v1"', 'VERSION = "v2"'))
            answer = slow.result(timeout=60)  # not the 120 s sleep, not a hang
        assert answer.status_code == 200, answer.text
        assert answer.text == (
            "ObjectResetError|Durable Object reset because its code was updated."
            "|retryable=True|reset=True"
        ), server.output
        wait_until(lambda: _served(server) == 2, timeout=30)
        with server.client() as http:
            assert http.get("/version").text == "v2"  # the new code serves the next call
        assert server.stop(signal.SIGINT) == 0
    finally:
        server.kill()


def test_152_stopping_dev_is_not_a_code_update(tmp_path: Path) -> None:
    """Only a reload resets objects: stopping ``objectd dev`` is a shutdown, in which a
    call in flight keeps running (uvicorn's graceful shutdown) and is not told otherwise."""
    project = tmp_path / "update"
    project.mkdir()
    (project / "wrangler.toml").write_text(WRANGLER)
    (project / "worker.py").write_text(WORKER.replace("sleep(120)", "sleep(1)"))
    server = Server(project, tmp_path / "data", mode="dev").start()
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool, server.client() as http:
            slow = pool.submit(http.get, "/slow")
            wait_until(lambda: "slow call started" in server.output, timeout=30)
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            answer = slow.result(timeout=60)
        assert answer.text == "finished on the old code", server.output
        assert server.stop() == 0
    finally:
        server.kill()
    assert "code was updated" not in server.output
