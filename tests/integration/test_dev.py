"""objectd dev: serves, reloads when the code changes, keeps the data (issue 2 §8)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from conftest import Server, wait_until


@pytest.mark.parametrize("project", ["counter"], indirect=True)
def test_dev_reloads_on_code_change_and_keeps_data(project: Path, tmp_path: Path) -> None:
    server = Server(project, tmp_path / "data", mode="dev").start()
    try:
        with server.client() as http:
            assert http.get("/increment").text == "1"
            assert http.get("/missing").text == "Not found"
        worker = project / "worker.py"
        time.sleep(0.2)  # let the watcher settle before the edit
        worker.write_text(worker.read_text().replace('"Not found"', '"No such route"'))

        def reloaded() -> bool:
            return server.output.count("objectd: serving counter on") >= 2

        try:
            wait_until(reloaded, timeout=30)
        except AssertionError:
            raise AssertionError("no reload:\n" + server.output) from None
        with server.client() as http:
            assert http.get("/missing").text == "No such route"
            assert http.get("/get").text == "1"  # the data survived the reload
        assert server.stop(signal.SIGINT) == 0
    finally:
        server.kill()
