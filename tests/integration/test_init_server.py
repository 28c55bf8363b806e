"""objectd init: each template is served by a real ``objectd dev`` at once, and its own
tests pass when pytest runs them (issue 14 §5)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import Server

from objectd.cli import main
from objectd.templates import TEMPLATES

# A request each template's Worker answers, and the start of the answer.
FIRST_REQUEST = {
    "counter": ("/increment", "1"),
    "chat": ("/", "<!doctype html>"),
    "fastapi": ("/counters/a", "0"),
}


def init(tmp_path: Path, template: str) -> Path:
    target = tmp_path / f"new-{template}"
    result = CliRunner().invoke(main, ["init", str(target), "--template", template])
    assert result.exit_code == 0, result.output
    return target


@pytest.mark.parametrize("template", TEMPLATES)
def test_objectd_dev_serves_a_new_project_at_once(tmp_path: Path, template: str) -> None:
    project = init(tmp_path, template)
    server = Server(project, tmp_path / "data", mode="dev").start()
    try:
        path, start = FIRST_REQUEST[template]
        with server.client() as client:
            response = client.post(path) if template == "counter" else client.get(path)
        assert response.status_code == 200, server.output
        assert response.text.lower().startswith(start)
    finally:
        server.kill()


@pytest.mark.parametrize("template", TEMPLATES)
def test_a_new_projects_own_tests_pass(tmp_path: Path, template: str) -> None:
    project = init(tmp_path, template)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project / "tests")],
        cwd=tmp_path,  # not objectd's checkout: the project's own pytest settings (none)
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "failed" not in result.stdout
