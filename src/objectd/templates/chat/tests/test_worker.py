"""The chat through a real server, a real HTTP client and real WebSockets: ``pytest tests``."""

from __future__ import annotations

import asyncio
import json

import httpx
import websockets


def test_the_page_is_served(server: str) -> None:
    with httpx.Client(base_url=server, timeout=10) as client:
        page = client.get("/r/lobby")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert client.get("/nowhere").status_code == 404


async def receive(ws: websockets.ClientConnection, kind: str) -> dict:
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if event["type"] == kind:
            return event


def test_messages_reach_the_room_and_are_replayed(server: str) -> None:
    room = server.replace("http://", "ws://") + "/api/rooms/lobby/websocket"

    async def chat() -> tuple[dict, dict]:
        async with websockets.connect(f"{room}?user=ada", open_timeout=10) as ada:
            await receive(ada, "history")
            await ada.send(json.dumps({"text": "hello"}))
            said = await receive(ada, "message")
        async with websockets.connect(f"{room}?user=bob", open_timeout=10) as bob:
            history = await receive(bob, "history")
        return said, history

    said, history = asyncio.run(chat())
    assert (said["user"], said["text"]) == ("ada", "hello")
    assert [(m["user"], m["text"]) for m in history["messages"]] == [("ada", "hello")]
