"""The objects the FastAPI app (``../app.py``) uses: no Worker entrypoint, only classes.

* ``Counter``: a named counter, called by RPC (``await stub.increment()``).
* ``Room``: a chat room.  Its ``fetch`` accepts a hibernatable WebSocket; every message
  is stored in the room's SQL table, then sent to everyone in the room.  ``history()``
  returns what was said, for the app's HTTP route.
"""

from __future__ import annotations

import time

from objectd import DurableObject, Request, Response, WebSocket, WebSocketPair

MAX_TEXT = 2000


class Counter(DurableObject):
    async def increment(self, by: int = 1) -> int:
        value = (await self.ctx.storage.get("value") or 0) + by
        await self.ctx.storage.put("value", value)
        return value

    async def value(self) -> int:
        return await self.ctx.storage.get("value") or 0


class Room(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        ctx.storage.sql.exec(
            "CREATE TABLE IF NOT EXISTS messages ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT, text TEXT NOT NULL, at INTEGER NOT NULL)"
        )

    async def fetch(self, request: Request) -> Response:
        if request.headers.get("upgrade") != "websocket":
            return Response("Expected Upgrade: websocket", status=426)
        client, server = WebSocketPair()
        self.ctx.accept_web_socket(server)
        return Response(None, status=101, web_socket=client)

    async def web_socket_message(self, ws: WebSocket, message: str | bytes) -> None:
        if not isinstance(message, str) or not message or len(message) > MAX_TEXT:
            ws.send(f"error: a message is 1 to {MAX_TEXT} characters of text")
            return
        self.ctx.storage.sql.exec(
            "INSERT INTO messages (text, at) VALUES (?, ?)", message, int(time.time() * 1000)
        )
        for peer in self.ctx.get_web_sockets():
            peer.send(message)

    async def web_socket_close(
        self, ws: WebSocket, code: int, reason: str, was_clean: bool
    ) -> None:
        ws.close(code, reason)

    async def history(self) -> list[str]:
        rows = self.ctx.storage.sql.exec("SELECT text FROM messages ORDER BY id")
        return [row["text"] for row in rows]
