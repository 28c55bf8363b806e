"""/__objectd/ on a real server (issue 14): ``serve`` has no admin surface without
``--admin-token``; with it, every admin request needs the token; ``dev`` is open."""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path

import httpx
import pytest
from conftest import Server

TOKEN = "an-admin-token-for-tests-0123"
INSPECT_APP = Path(__file__).parent / "apps" / "inspect"
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


def _this_machines_address() -> str | None:
    """A non-loopback address of this machine (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if ipaddress.ip_address(address).is_loopback else address


def test_dev_on_every_address_answers_admin_requests_only_from_this_machine(
    tmp_path: Path,
) -> None:
    """``dev --host 0.0.0.0``: another machine can send ``Host: localhost``; only a
    loopback peer gets the pages without a token.  The lock file names an address that
    ``objectd inspect`` can connect to (not 0.0.0.0)."""
    address = _this_machines_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    project = tmp_path / "inspect"
    shutil.copytree(INSPECT_APP, project, ignore=shutil.ignore_patterns(".objectd", "__pycache__"))
    data = tmp_path / "data"
    server = Server(project, data, "--host", "0.0.0.0", mode="dev").start()
    try:
        port = urllib.parse.urlsplit(server.url).port
        headers = {"host": f"localhost:{port}"}
        with httpx.Client(timeout=30.0, trust_env=False) as http:
            remote = http.get(f"http://{address}:{port}/__objectd/api/summary", headers=headers)
            assert remote.status_code == 403
            assert "--admin-token" in remote.text
            put = {"name": "a", "key": "k", "value": "v"}
            worker = http.get(f"http://{address}:{port}/put", params=put)
            assert worker.text == "ok"  # the Worker still serves the network
            local = http.get(f"http://127.0.0.1:{port}/__objectd/api/summary", headers=headers)
            assert local.status_code == 200
            assert local.json()["script"] == "inspect"
        lock = (data / "inspect" / "server.lock").read_text()
        assert f"http://127.0.0.1:{port}/__objectd/" in lock
        done = subprocess.run(
            [sys.executable, "-m", "objectd", "inspect", project, "--data-dir", data, "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["script"] == "inspect"
    finally:
        server.kill()


def test_dev_refuses_admin_requests_from_other_sites_pages(echo: Path, tmp_path: Path) -> None:
    server = Server(echo, tmp_path / "data", mode="dev").start()
    try:
        with server.client() as http:
            blind = http.get(
                "/__objectd/api/summary",
                headers={"sec-fetch-site": "cross-site", "origin": "https://attacker.example"},
            )
            assert blind.status_code == 403
            assert "another site" in blind.text
            own = http.get("/__objectd/api/summary", headers={"sec-fetch-site": "same-origin"})
            assert own.status_code == 200
    finally:
        server.kill()
