"""Code that does not load: ``objectd dev`` answers 500 with the error at once, until a save
fixes it; ``objectd serve`` refuses to start (issue 15 §2)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import Server, wait_until
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

# Each request must be answered within this, not wait for the code to be fixed.
_HTTP_TIMEOUT_S = 5.0


def _broken_dev(project: Path, tmp_path: Path) -> Server:
    return Server(project, tmp_path / "data", mode="dev").start()


def _wait_for(server: Server, text: str, count: int = 1) -> None:
    try:
        wait_until(lambda: server.output.count(text) >= count, timeout=30)
    except AssertionError:
        raise AssertionError(f"no {text!r} in:\n" + server.output) from None


@pytest.mark.parametrize("project", ["counter"], indirect=True)
def test_dev_syntax_error_is_a_500_with_file_and_line_until_fixed(
    project: Path, tmp_path: Path
) -> None:
    """A save that breaks the worker: the next requests get the error at once (they hung
    until the next good save), then a fix serves again."""
    server = Server(project, tmp_path / "data", mode="dev").start()
    try:
        with httpx.Client(base_url=server.url, timeout=_HTTP_TIMEOUT_S) as http:
            assert http.get("/increment").text == "1"
        worker = project / "worker.py"
        good = worker.read_text()
        broken_line = len(good.splitlines()) + 3  # after two blank lines
        time.sleep(0.2)  # let the watcher settle before the edit
        worker.write_text(good + "\n\ndef broken(:\n    pass\n")
        _wait_for(server, "cannot load")
        with httpx.Client(base_url=server.url, timeout=_HTTP_TIMEOUT_S) as http:
            for path in ("/increment", "/get"):
                response = http.get(path)
                assert response.status_code == 500, response.text
                assert response.headers["content-type"].startswith("text/plain")
                assert f'{worker}", line {broken_line}' in response.text
                assert "SyntaxError" in response.text
                assert "def broken(:" in response.text
        # A WebSocket upgrade gets the same answer, not a hang and not a 403.
        with (
            pytest.raises(InvalidStatus) as refused,
            connect(server.url.replace("http", "ws") + "/ws", open_timeout=_HTTP_TIMEOUT_S),
        ):
            pass
        assert refused.value.response.status_code == 500
        assert f"line {broken_line}" in refused.value.response.body.decode()
        # The error is printed once (not again by uvicorn, not per request).
        assert server.output.count("SyntaxError") == 1, server.output

        worker.write_text(good)
        _wait_for(server, "objectd: serving ", count=2)
        with httpx.Client(base_url=server.url, timeout=_HTTP_TIMEOUT_S) as http:
            assert http.get("/increment").text == "2"
    finally:
        server.kill()


@pytest.mark.parametrize("project", ["counter"], indirect=True)
def test_dev_import_error_names_the_importing_file_and_line(project: Path, tmp_path: Path) -> None:
    worker = project / "worker.py"
    good = worker.read_text()
    # worker.py imports helper.py, which imports a name compat does not have.
    worker.write_text("import helper  # noqa\n" + good)
    (project / "helper.py").write_text('"""A helper."""\n\nfrom workers import NoSuchThing\n')
    server = _broken_dev(project, tmp_path)
    try:
        with httpx.Client(base_url=server.url, timeout=_HTTP_TIMEOUT_S) as http:
            response = http.get("/increment")
        assert response.status_code == 500
        text = response.text
        assert f'{worker}", line 1' in text, text
        assert f'{project / "helper.py"}", line 3' in text, text
        assert "ImportError" in text and "NoSuchThing" in text
        # objectd's own frames (the loader, importlib) are not the user's business.
        frames = [line for line in text.splitlines() if line.strip().startswith('File "')]
        assert len(frames) == 2, text

        time.sleep(0.2)
        (project / "helper.py").write_text('"""A helper."""\n')
        _wait_for(server, "objectd: serving ")
        with httpx.Client(base_url=server.url, timeout=_HTTP_TIMEOUT_S) as http:
            assert http.get("/increment").text == "1"
    finally:
        server.kill()


@pytest.mark.parametrize("project", ["counter"], indirect=True)
def test_dev_bad_wrangler_file_is_a_500_until_fixed(project: Path, tmp_path: Path) -> None:
    config = project / "wrangler.toml"
    good = config.read_text()
    config.write_text(good.replace('main = "worker.py"', 'main = "worker.py'))
    server = _broken_dev(project, tmp_path)
    try:
        with httpx.Client(base_url=server.url, timeout=_HTTP_TIMEOUT_S) as http:
            response = http.get("/increment")
        assert response.status_code == 500
        assert f"{config}:" in response.text and "invalid TOML" in response.text

        time.sleep(0.2)
        config.write_text(good)
        _wait_for(server, "objectd: serving ")
        with httpx.Client(base_url=server.url, timeout=_HTTP_TIMEOUT_S) as http:
            assert http.get("/increment").text == "1"
    finally:
        server.kill()


@pytest.mark.parametrize("project", ["counter"], indirect=True)
def test_serve_refuses_to_start_with_one_message(project: Path, tmp_path: Path) -> None:
    worker = project / "worker.py"
    worker.write_text(worker.read_text() + "\n\ndef broken(:\n    pass\n")
    done = subprocess.run(
        [sys.executable, "-m", "objectd", "serve", str(project), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert output.count("SyntaxError") == 1, output
    assert f'{worker}", line' in output
    assert "objectd: serving" not in output and "Application startup failed" not in output


@pytest.mark.parametrize("project", ["counter"], indirect=True)
def test_dev_misspelt_table_is_refused_with_did_you_mean(project: Path, tmp_path: Path) -> None:
    """issue 15 §5: ``[[durable_object.bindings]]`` was a warning, then every request failed
    with "env has no binding"; now the start is refused, naming the key it resembles."""
    config = project / "wrangler.toml"
    good = config.read_text()
    config.write_text(good.replace("[[durable_objects.bindings]]", "[[durable_object.bindings]]"))
    server = _broken_dev(project, tmp_path)
    try:
        with httpx.Client(base_url=server.url, timeout=_HTTP_TIMEOUT_S) as http:
            response = http.get("/increment")
        assert response.status_code == 500
        assert "durable_object: unknown key; did you mean `durable_objects`?" in response.text
        assert "has no binding" not in response.text + server.output
    finally:
        server.kill()
