"""A chat app: one ChatRoom object per room name, WebSocket Hibernation API.

* ``GET /`` and ``GET /r/<room>``: the page (``page.py``), which connects to
* ``GET /api/rooms/<room>/websocket?user=<name>``: the room's WebSocket.

Each room keeps its messages in its own SQL table and sends the latest 100 to every
newcomer before anything else.  A message is broadcast to everyone in the room, the
sender included, once it is stored: sends wait for the write to be durable (the output
gate), so what a client shows has been saved.  Idle rooms hibernate; their sockets stay
open.  The page pings every 30 s; the runtime answers ``pong`` without waking the room.
Presence is per user, not per socket: someone with several tabs open joins the room with
the first and leaves it with the last.
"""

from __future__ import annotations

import json
import time
from contextlib import suppress
from urllib.parse import parse_qs, unquote, urlsplit

from page import HTML

from objectd import (
    DurableObject,
    Request,
    Response,
    WebSocketPair,
    WebSocketRequestResponsePair,
    WorkerEntrypoint,
)

HISTORY = 100
MAX_TEXT = 2000
MAX_NAME = 32


def not_found() -> Response:
    return Response("Not found", status=404)


class ChatRoom(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        ctx.storage.sql.exec(
            "CREATE TABLE IF NOT EXISTS messages ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " user TEXT NOT NULL, text TEXT NOT NULL, at INTEGER NOT NULL)"
        )
        ctx.set_web_socket_auto_response(WebSocketRequestResponsePair("ping", "pong"))

    async def fetch(self, request: Request) -> Response:
        if request.headers.get("upgrade") != "websocket":
            return Response("Expected Upgrade: websocket", status=426)
        user = (parse_qs(urlsplit(request.url).query).get("user") or [""])[0].strip()
        if not user or len(user) > MAX_NAME:
            return Response(f"user must be 1 to {MAX_NAME} characters", status=400)
        # Presence is per user, sockets per tab: each socket is tagged with its user.
        first = not self.ctx.get_web_sockets(user)
        client, server = WebSocketPair()
        self.ctx.accept_web_socket(server, [user])
        server.serialize_attachment({"user": user})
        rows = self.ctx.storage.sql.exec(
            "SELECT id, user, text, at FROM messages ORDER BY id DESC LIMIT ?", HISTORY
        ).to_array()
        server.send(json.dumps({"type": "history", "messages": rows[::-1]}))
        join = {"type": "join", "user": user, "online": self.online()}
        if first:
            self.broadcast(join)
        else:  # another tab of someone already here: only it needs the list
            server.send(json.dumps(join))
        return Response(None, status=101, web_socket=client)

    def web_socket_message(self, ws, message) -> None:
        try:
            text = str(json.loads(message)["text"]).strip()
        except (ValueError, TypeError, KeyError):
            ws.send(json.dumps({"type": "error", "error": 'send {"text": "..."}'}))
            return
        if not text or len(text) > MAX_TEXT:
            ws.send(json.dumps({"type": "error", "error": f"1 to {MAX_TEXT} characters"}))
            return
        user = ws.deserialize_attachment()["user"]
        at = int(time.time() * 1000)
        row = self.ctx.storage.sql.exec(
            "INSERT INTO messages (user, text, at) VALUES (?, ?, ?) RETURNING id", user, text, at
        ).one()
        # Sent only once the insert is durable (the output gate holds it until then).
        self.broadcast({"type": "message", "id": row["id"], "user": user, "text": text, "at": at})

    def web_socket_close(self, ws, code, reason, was_clean) -> None:
        user = ws.deserialize_attachment()["user"]
        # A user leaves with their last socket; closing one of several tabs is no news.
        if all(other is ws for other in self.ctx.get_web_sockets(user)):
            self.broadcast({"type": "leave", "user": user, "online": self.online()})

    def web_socket_error(self, ws, error) -> None:
        self.web_socket_close(ws, 1006, str(error), False)

    def online(self) -> list[str]:
        return sorted({ws.deserialize_attachment()["user"] for ws in self.ctx.get_web_sockets()})

    def broadcast(self, event: dict) -> None:
        data = json.dumps(event)
        for ws in self.ctx.get_web_sockets():
            with suppress(TypeError):  # closing
                ws.send(data)


class Default(WorkerEntrypoint):
    async def fetch(self, request: Request) -> Response:
        parts = urlsplit(request.url).path.split("/")[1:]
        if parts in ([""], ["r", parts[-1]]) and request.method == "GET":
            return Response(HTML, headers={"content-type": "text/html;charset=UTF-8"})
        if len(parts) == 4 and parts[:2] == ["api", "rooms"] and parts[3] == "websocket":
            room = unquote(parts[2])
            if not room:
                return not_found()
            return await self.env.ROOMS.get_by_name(room).fetch(request)
        return not_found()
