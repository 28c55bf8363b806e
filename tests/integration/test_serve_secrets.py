"""``objectd serve`` takes secrets from the environment, not ``.dev.vars`` (issue 15 §6)."""

from __future__ import annotations

import signal
import textwrap
from pathlib import Path

import pytest
from conftest import Server

WORKER = """
from workers import Response, WorkerEntrypoint

class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response(repr(getattr(self.env, "TOKEN", None)))
"""


@pytest.fixture
def app(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    root.mkdir()
    (root / "wrangler.toml").write_text('name = "app"\nmain = "worker.py"\n')
    (root / "worker.py").write_text(textwrap.dedent(WORKER))
    (root / ".dev.vars").write_text("TOKEN=from-dev-vars\n")
    return root


def token(server: Server) -> str:
    with server.client() as http:
        return http.get("/").text


def test_serve_reads_prefixed_environment_variables_and_not_dev_vars(
    app: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OBJECTD_SECRET_TOKEN", "from-environment")
    server = Server(app, tmp_path / "data").start()
    try:
        assert token(server) == "'from-environment'"
    finally:
        server.kill()
    assert ".dev.vars not read: it is for local development (`objectd dev`)" in server.output
    monkeypatch.delenv("OBJECTD_SECRET_TOKEN")
    server = Server(app, tmp_path / "data").start()
    try:
        assert token(server) == "None"  # the dev secret never reaches production
    finally:
        server.kill()


def test_dev_still_reads_dev_vars(app: Path, tmp_path: Path) -> None:
    server = Server(app, tmp_path / "data", mode="dev").start()
    try:
        assert token(server) == "'from-dev-vars'"
        assert server.stop(signal.SIGINT) == 0  # the reloader's child stops with it
    finally:
        server.kill()
    assert "not read" not in server.output
