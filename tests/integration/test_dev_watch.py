"""What ``objectd dev`` watches (issue 15 §4): storage writes in the data folder are not
code changes, and an edit to ``.dev.vars`` reloads."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from conftest import Server, wait_until

_VARS_WORKER = """\
from workers import Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response(self.env.GREETING)
"""
# watchfiles' own line for each batch of changes it yields, at any log level.
_CHANGES = re.compile(r"\d+ changes? detected")


def _reloads(server: Server) -> int:
    return server.output.count("objectd: serving ") - 1


@pytest.mark.parametrize("data", [".objectd", "data"])
@pytest.mark.parametrize("project", ["counter"], indirect=True)
def test_dev_storage_writes_are_not_changes(project: Path, data: str) -> None:
    """Writes in the data folder (the default ``DIR/.objectd`` or a ``--data-dir`` inside DIR)
    do not reload and log nothing, even at debug (where watchfiles' lines are shown, but
    not its "all changes filtered out" for every storage write); a code edit still reloads,
    once."""
    server = Server(project, project / data, "--log-level", "debug", mode="dev").start()
    try:
        with server.client() as http:
            for expected in range(1, 21):
                assert http.get("/increment").text == str(expected)
        time.sleep(2.0)  # longer than watchfiles' grouping of changes (1.6 s)
        assert not _CHANGES.search(server.output), server.output
        assert "filtered out" not in server.output, server.output
        assert _reloads(server) == 0, server.output
        worker = project / "worker.py"
        worker.write_text(worker.read_text().replace('"Not found"', '"No such route"'))
        wait_until(lambda: _reloads(server) == 1, timeout=30)
        assert "objectd: worker.py changed: reloading" in server.output
        with server.client() as http:
            assert http.get("/get").text == "20"
            assert http.get("/increment").text == "21"
        time.sleep(2.0)
        assert _reloads(server) == 1, server.output
    finally:
        server.kill()


def test_dev_reloads_when_dev_vars_change(tmp_path: Path) -> None:
    """It did not: uvicorn's default exclude ``.*`` won over the include ``.dev.vars*``."""
    project = tmp_path / "vars"
    project.mkdir()
    (project / "wrangler.toml").write_text('name = "vars"\nmain = "worker.py"\n')
    (project / "worker.py").write_text(_VARS_WORKER)
    (project / ".dev.vars").write_text("GREETING=hello\n")
    server = Server(project, tmp_path / "data", mode="dev").start()
    try:
        with server.client() as http:
            assert http.get("/").text == "hello"
        time.sleep(0.2)  # let the watcher settle before the edit
        (project / ".dev.vars").write_text("GREETING=goodbye\n")
        try:
            wait_until(lambda: _reloads(server) == 1, timeout=30)
        except AssertionError:
            raise AssertionError("no reload:\n" + server.output) from None
        with server.client() as http:
            assert http.get("/").text == "goodbye"
    finally:
        server.kill()


@pytest.mark.parametrize("where", ["project", "parent"])
@pytest.mark.parametrize("project", ["counter"], indirect=True)
def test_dev_reloads_with_the_data_folder_around_the_code(project: Path, where: str) -> None:
    """``--data-dir`` naming the project itself or a folder above it: the data then lives in
    ``<data>/<name>``.  Ignoring the whole ``--data-dir`` ignored the code too: no save
    reloaded.  Only the project's data folder is ignored; storage writes still never reload."""
    data = project if where == "project" else project.parent
    server = Server(project, data, mode="dev").start()
    try:
        with server.client() as http:
            for expected in range(1, 6):
                assert http.get("/increment").text == str(expected)
        time.sleep(2.0)  # longer than watchfiles' grouping of changes (1.6 s)
        assert _reloads(server) == 0, server.output
        worker = project / "worker.py"
        worker.write_text(worker.read_text().replace('"Not found"', '"No such route"'))
        try:
            wait_until(lambda: _reloads(server) == 1, timeout=30)
        except AssertionError:
            raise AssertionError("no reload:\n" + server.output) from None
        with server.client() as http:
            assert http.get("/nowhere").text == "No such route"
            assert http.get("/get").text == "5"
    finally:
        server.kill()


@pytest.mark.parametrize("project", ["counter"], indirect=True)
def test_dev_reloads_when_a_package_is_moved_in_or_away(project: Path, tmp_path: Path) -> None:
    """``mv`` of a folder is one event for the folder; its files change nothing (the filter
    asked for names ending in ``.py`` only, so the move reloaded nothing)."""
    package = tmp_path / "greet"
    package.mkdir()
    (package / "__init__.py").write_text("")
    server = Server(project, tmp_path / "data", mode="dev").start()
    try:
        time.sleep(0.2)  # let the watcher settle before the move
        package.rename(project / "greet")
        try:
            wait_until(lambda: _reloads(server) == 1, timeout=30)
            assert "objectd: greet changed: reloading" in server.output
            (project / "greet").rename(tmp_path / "greet-away")
            wait_until(lambda: _reloads(server) == 2, timeout=30)
        except AssertionError:
            raise AssertionError("no reload:\n" + server.output) from None
    finally:
        server.kill()
