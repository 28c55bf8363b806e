"""The FastAPI example under a real uvicorn server process, with real HTTP and WebSocket
clients (httpx, websockets); its data in a fresh folder per test.

    pytest examples/fastapi/tests
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

EXAMPLE = Path(__file__).resolve().parents[1]
_READY = re.compile(r"Uvicorn running on (http://\S+)")


class App:
    """``uvicorn app:app`` for the example, on a free port, data in ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.lines: list[str] = []
        self.url = ""

    def start(self, timeout: float = 30.0) -> App:
        self.lines, self.url = [], ""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app:app", "--app-dir", str(EXAMPLE),
             "--host", "127.0.0.1", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "EXAMPLE_DATA_DIR": str(self.data_dir), "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        ready = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(ready,), daemon=True)
        self._reader.start()
        ready.wait(timeout)
        return self

    def _read(self, ready: threading.Event) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            match = _READY.search(line)
            if match:
                self.url = match.group(1)
                ready.set()
        ready.set()

    def stop(self) -> None:
        """SIGTERM: uvicorn runs the lifespan's shutdown, which closes the Runtime (and
        then ends by the same signal)."""
        self.proc.terminate()
        assert self.wait() == -signal.SIGTERM
        assert "Application shutdown complete." in self.output, self.output

    def wait(self) -> int:
        code = self.proc.wait(30)
        self._reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()

    @property
    def output(self) -> str:
        return "".join(self.lines)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    running = App(tmp_path / "data").start()
    assert running.url, running.output
    try:
        yield running
    finally:
        running.kill()


def test_counters_count_and_survive_a_restart(app: App) -> None:
    with httpx.Client(base_url=app.url, timeout=10) as client:
        assert [client.post("/counters/a").json()["value"] for _ in range(3)] == [1, 2, 3]
        assert client.post("/counters/b").json() == {"name": "b", "value": 1}
    app.stop()  # a clean shutdown: the Runtime closed
    app.start()
    assert app.url, app.output
    with httpx.Client(base_url=app.url, timeout=10) as client:
        assert client.get("/counters/a").json() == {"name": "a", "value": 3}
        assert client.post("/counters/b").json()["value"] == 2


def test_the_room_websocket_is_relayed_to_its_object(app: App) -> None:
    address = app.url.replace("http://", "ws://")

    async def chat() -> tuple[str, str, str]:
        async with (
            websockets.connect(f"{address}/rooms/lobby/ws", open_timeout=10) as alice,
            websockets.connect(f"{address}/rooms/lobby/ws", open_timeout=10) as bob,
        ):
            await alice.send("hello")
            heard = (
                await asyncio.wait_for(alice.recv(), 10),
                await asyncio.wait_for(bob.recv(), 10),
            )
            await bob.send("")
            refused = await asyncio.wait_for(bob.recv(), 10)
        return heard[0], heard[1], str(refused)

    said, heard, refused = asyncio.run(chat())
    assert said == heard == "hello"
    assert refused.startswith("error: a message is 1 to 2000 characters")
    with httpx.Client(base_url=app.url, timeout=10) as client:
        assert client.get("/rooms/lobby/messages").json() == ["hello"]
        assert client.get("/rooms/elsewhere/messages").json() == []
    # What was said is stored in the room's object: it survives a restart.
    app.stop()
    app.start()
    with httpx.Client(base_url=app.url, timeout=10) as client:
        assert client.get("/rooms/lobby/messages").json() == ["hello"]


def test_a_second_app_on_the_same_data_is_refused(app: App) -> None:
    second = App(app.data_dir).start()
    try:
        assert second.wait() != 0
        assert not second.url
        assert "this data folder is in use by another objectd server" in second.output
    finally:
        second.kill()
    with httpx.Client(base_url=app.url, timeout=10) as client:  # the first serves on
        assert client.post("/counters/a").json()["value"] == 1
