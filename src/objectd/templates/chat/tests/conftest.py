"""A real ``objectd serve`` of this project for the tests: a free port, fresh data."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
_READY = re.compile(r"objectd: serving \S+ on (http://\S+)")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """The URL of ``objectd serve`` on this project, its data under ``tmp_path``."""
    command = [sys.executable, "-m", "objectd", "serve", str(PROJECT), "--port", "0"]
    command += ["--data-dir", str(tmp_path / "data")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if _READY.search(line):
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        ready.wait(30)
        match = _READY.search("".join(lines))
        assert match, "objectd did not start:\n" + "".join(lines)
        yield match.group(1)
    finally:
        proc.terminate()
        proc.wait(30)
        reader.join(10)
        assert proc.stdout is not None
        proc.stdout.close()
