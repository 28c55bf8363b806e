"""A real ``uvicorn app:app`` for the tests: a free port, fresh data."""

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
_READY = re.compile(r"Uvicorn running on (http://\S+)")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """The URL of the FastAPI app served by uvicorn, its data under ``tmp_path``."""
    command = [sys.executable, "-m", "uvicorn", "app:app", "--app-dir", str(PROJECT)]
    command += ["--host", "127.0.0.1", "--port", "0"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "APP_DATA_DIR": str(tmp_path / "data")}
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
        assert match, "the app did not start:\n" + "".join(lines)
        yield match.group(1)
    finally:
        proc.terminate()
        proc.wait(30)
        reader.join(10)
        assert proc.stdout is not None
        proc.stdout.close()
