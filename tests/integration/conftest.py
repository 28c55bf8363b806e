"""Integration tier: real ``objectd`` server processes on port 0, real HTTP clients."""

from __future__ import annotations

import contextlib
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# Ready: serving, or (objectd dev, code that does not load) answering every request 500.
# The URL ends at a quote too: with --log-format json the line is a JSON object.
_READY = re.compile(r"objectd: (?:serving \S+ on|every request to) (http://[^\s\"]+)")


class Server:
    """One ``objectd serve`` process; its output is kept for failure messages."""

    def __init__(
        self,
        project: Path,
        data_dir: Path,
        *args: str,
        mode: str = "serve",
        nofile: int | tuple[int, int] | None = None,
    ) -> None:
        """``nofile``: the open-files limit (soft, hard) the server process starts with."""
        self.mode = mode
        self.nofile = (nofile, nofile) if isinstance(nofile, int) else nofile
        self.project = project
        self.data_dir = data_dir
        self.args = args
        self.lines: list[str] = []
        self.url = ""
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 30.0) -> Server:
        self.lines = []
        self.url = ""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        nofile = self.nofile
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "objectd",
                self.mode,
                str(self.project),
                "--port",
                "0",
                "--data-dir",
                str(self.data_dir),
                *self.args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            # objectd dev serves from a child of its reloader: kill() ends the group.
            start_new_session=self.mode == "dev",
            preexec_fn=(
                (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, nofile))
                if nofile is not None
                else None
            ),
        )
        ready = threading.Event()
        self._drainer = threading.Thread(target=self._drain, args=(ready,), daemon=True)
        self._drainer.start()
        if not ready.wait(timeout) or not self.url:
            self.kill()
            raise RuntimeError("objectd did not start:\n" + self.output)
        return self

    def _drain(self, ready: threading.Event) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            match = _READY.search(line)
            if match and not self.url:
                self.url = match.group(1)
                ready.set()
        ready.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self._close_output()
        return code

    def kill(self) -> None:
        if self.proc is not None:
            if self.mode == "dev":
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
            elif self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(10)
            self._close_output()

    def _close_output(self) -> None:
        assert self.proc is not None
        self._drainer.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0)


@pytest.fixture
def project(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A copy of the example named by ``@pytest.mark.parametrize('project', [...])``."""
    name = getattr(request, "param", "bench")
    target = tmp_path / name
    shutil.copytree(EXAMPLES / name, target, ignore=shutil.ignore_patterns(".objectd"))
    return target


@pytest.fixture
def server(project: Path, tmp_path: Path) -> Iterator[Server]:
    srv = Server(project, tmp_path / "data").start()
    try:
        yield srv
    finally:
        srv.kill()


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)
