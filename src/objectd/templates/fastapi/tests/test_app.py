"""The FastAPI app under a real uvicorn, with real HTTP and WebSocket clients: ``pytest tests``."""

from __future__ import annotations

import asyncio

import httpx
import websockets


def test_counters_through_fastapi_and_through_the_worker(server: str) -> None:
    with httpx.Client(base_url=server, timeout=10) as client:
        assert client.post("/counters/a").json() == {"name": "a", "value": 1}
        assert client.post("/counters/a").json()["value"] == 2
        assert client.get("/counters/a").json()["value"] == 2
        # The same object through the Worker's own fetch, mounted at /worker.
        assert client.post("/worker/counters/a").text == "3"


def test_the_room_websocket_reaches_everyone_in_the_room(server: str) -> None:
    room = server.replace("http://", "ws://") + "/rooms/lobby/ws"

    async def chat() -> tuple[str, str]:
        async with (
            websockets.connect(room, open_timeout=10) as ada,
            websockets.connect(room, open_timeout=10) as bob,
        ):
            await ada.send("hello")
            return str(await asyncio.wait_for(ada.recv(), 10)), str(
                await asyncio.wait_for(bob.recv(), 10)
            )

    assert asyncio.run(chat()) == ("hello", "hello")
