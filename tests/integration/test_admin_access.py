"""/__objectd/ on a real server (issue 14): ``serve`` has no admin surface without
``--admin-token``; with it, every admin request needs the token; ``dev`` is open."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Server

TOKEN = "an-admin-token-for-tests-0123"
_WORKER = """\
from urllib.parse import urlparse

from workers import Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response("worker saw " + urlparse(request.url).path)
"""


@pytest.fixture
def echo(tmp_path: Path) -> Path:
    project = tmp_path / "echo"
    project.mkdir()
    (project / "wrangler.toml").write_text('name = "echo"\nmain = "worker.py"\n')
    (project / "worker.py").write_text(_WORKER)
    return project


def test_serve_without_a_token_gives_the_path_to_the_worker(echo: Path, tmp_path: Path) -> None:
    server = Server(echo, tmp_path / "data").start()
    try:
        with server.client() as http:
            assert http.get("/__objectd/metrics").text == "worker saw /__objectd/metrics"
    finally:
        server.kill()


def test_serve_with_a_token_checks_it_on_every_admin_request(echo: Path, tmp_path: Path) -> None:
    server = Server(echo, tmp_path / "data", "--admin-token", TOKEN).start()
    try:
        with server.client() as http:
            refused = http.get("/__objectd/nothing-here")
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"].startswith("Bearer")
            bad = http.get("/__objectd/nothing-here", headers={"authorization": "Bearer nope"})
            assert bad.status_code == 401
            good = http.get("/__objectd/nothing-here", headers={"authorization": f"Bearer {TOKEN}"})
            assert good.status_code == 404  # admitted: no feature serves that path
            assert http.get("/elsewhere").text == "worker saw /elsewhere"
    finally:
        server.kill()


def test_a_short_token_is_refused_at_start(echo: Path, tmp_path: Path) -> None:
    server = Server(echo, tmp_path / "data", "--admin-token", "short")
    with pytest.raises(RuntimeError, match="16 characters or more"):
        server.start()
    server.kill()


def test_dev_is_open_without_a_token(echo: Path, tmp_path: Path) -> None:
    server = Server(echo, tmp_path / "data", mode="dev").start()
    try:
        with server.client() as http:
            assert http.get("/__objectd/nothing-here").status_code == 404  # admitted
    finally:
        server.kill()
