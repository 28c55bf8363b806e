"""One server per data folder: a second one refuses to start (issue 15 §3).

Without the lock a second ``objectd serve`` on the same data started, then answered
every request that reached an object with 500 ``database is locked``.  Now it exits
non-zero before serving, naming the data folder and the running server's pid; the
lock dies with its holder, so a restart after SIGKILL starts at once.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Server

LEDGER_APP = Path(__file__).resolve().parent / "apps" / "ledger"


def second_server(mode: str, data: Path) -> subprocess.CompletedProcess[str]:
    """Run another server on ``data`` to its end (it must refuse, not serve)."""
    command = [sys.executable, "-m", "objectd", mode, str(LEDGER_APP), "--port", "0"]
    return subprocess.run(
        [*command, "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("mode", ["serve", "dev"])
def test_a_second_server_on_the_same_data_refuses(mode: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = Server(LEDGER_APP, data).start()
    try:
        with first.client() as http:
            assert http.get("/inc/a").text == "1"
        assert first.proc is not None
        second = second_server(mode, data)
        output = second.stdout + second.stderr
        assert second.returncode != 0, output
        assert str(data) in output
        assert f"pid {first.proc.pid}" in output
        assert "objectd: serving" not in output
        assert "Traceback" not in output  # one line that says it, not objectd's frames
        with first.client() as http:  # the first one serves on, untouched
            assert http.get("/inc/a").text == "2"
    finally:
        first.stop()


def test_a_server_under_dev_is_named_by_its_serving_process(tmp_path: Path) -> None:
    """In ``objectd dev`` the serving process holds the lock (reloads hand it on)."""
    data = tmp_path / "data"
    # uvicorn's "Started server process [pid]" names it; it is shown at debug only.
    dev = Server(LEDGER_APP, data, "--log-level", "debug", mode="dev").start()
    try:
        started = re.search(r"Started server process \[(\d+)\]", dev.output)
        assert started is not None, dev.output
        second = second_server("serve", data)
        assert second.returncode != 0
        assert f"pid {started.group(1)}" in second.stdout + second.stderr
    finally:
        try:
            dev.stop(signal.SIGINT, timeout=20)
        finally:
            dev.kill()


def test_a_restart_after_sigkill_starts_at_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = Server(LEDGER_APP, data).start()
    try:
        with server.client() as http:
            assert http.get("/inc/b").text == "1"
        server.stop(signal.SIGKILL)  # no chance to release anything: the kernel does
        server.start()
        with server.client() as http:
            assert http.get("/inc/b").text == "2"
        assert "in use by another objectd server" not in server.output
    finally:
        server.kill()
