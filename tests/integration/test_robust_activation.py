"""Activation under load against a real server: an object's file is opened once (issue 9 §1).

Concurrent first events to cold objects used to race the file open done in a worker
thread: an event arriving between the thread's return and the adoption of its
connection opened the file a second time on the event loop, and the two exclusive
connections then waited on each other inside SQLite's busy handler, on the loop, which
froze every request of the server.  The same path was taken by a mass disconnect of
hibernated WebSockets (every close wakes its object).

Spec checklist: 16 (an object is constructed by its first event), 48/49 (eviction and
hibernation), 110 (one live instance per id).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import httpx
import pytest
from conftest import Server
from websockets.asyncio.client import connect

HIBERNATE_APP = Path(__file__).resolve().parent / "apps" / "hibernate"

# Each request must be answered well within this; a frozen loop answers nothing at all.
_REQUEST_TIMEOUT = 20.0


async def _burst(http: httpx.AsyncClient, names: list[str], count: int) -> list[str]:
    responses = await asyncio.gather(
        *(http.get(f"/counter/{names[i % len(names)]}/increment") for i in range(count))
    )
    assert [r.status_code for r in responses] == [200] * count, [r.text for r in responses]
    return [r.text for r in responses]


@pytest.mark.parametrize("project", ["bench"], indirect=True)
def test_016_110_bursts_of_first_events_to_cold_objects(project: Path, tmp_path: Path) -> None:
    """64 concurrent increments to 4 new objects, 6 rounds, objects evicted in between."""
    server = Server(project, tmp_path / "data", "--idle-timeout", "0.5").start()
    try:

        async def main() -> None:
            limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
            async with httpx.AsyncClient(
                base_url=server.url, timeout=_REQUEST_TIMEOUT, limits=limits
            ) as http:
                for round_ in range(6):
                    names = [f"r{round_}n{i}" for i in range(4)]
                    values = await _burst(http, names, 64)
                    # Each object counted its 16 increments exactly once each.
                    assert sorted(int(v) for v in values) == sorted(list(range(1, 17)) * 4)
                    health = await http.get("/health")
                    assert health.status_code == 200
                    # Cold again: evicted (idle timeout 0.5 s; the reaper runs every 0.25 s).
                    await asyncio.sleep(1.2)
                # A second touch of every object finds its count (one file, one instance).
                for round_ in range(6):
                    for i in range(4):
                        got = await http.get(f"/counter/r{round_}n{i}/get")
                        assert got.text == "16"

        asyncio.run(asyncio.wait_for(main(), 120))
        assert "database is locked" not in server.output
    finally:
        server.kill()


def test_048_mass_disconnect_of_hibernated_sockets(tmp_path: Path) -> None:
    """300 hibernated sockets over 30 rooms closed at once: every close reaches its room."""
    app = tmp_path / "hibernate"
    shutil.copytree(HIBERNATE_APP, app)
    server = Server(app, tmp_path / "data", "--idle-timeout", "0.5").start()
    rooms, per_room = 30, 10
    base = server.url.replace("http://", "ws://", 1)
    try:

        async def main() -> None:
            sockets = []
            for i in range(rooms * per_room):
                sockets.append(await connect(f"{base}/ws/room{i % rooms}", max_size=None))
            await asyncio.sleep(1.5)  # every room hibernates: its instance is evicted
            await asyncio.gather(*(ws.close() for ws in sockets))
            async with httpx.AsyncClient(base_url=server.url, timeout=_REQUEST_TIMEOUT) as http:
                deadline = time.monotonic() + 30
                for r in range(rooms):
                    while True:
                        state = (await http.get(f"/state/room{r}")).json()
                        if len(state["closes"]) == per_room or time.monotonic() > deadline:
                            break
                        await asyncio.sleep(0.1)
                    assert len(state["closes"]) == per_room, (r, state)
                    assert state["sockets"] == 0

        asyncio.run(asyncio.wait_for(main(), 120))
        assert "database is locked" not in server.output
    finally:
        server.kill()
