"""The Durable Objects app.py uses, and a small Worker for ``objectd dev .``.

* ``Counter``: a named counter, called by RPC (``await stub.increment()``).
* ``Room``: a room whose WebSockets each get every message sent in the room.
* ``Default``: ``GET``/``POST /counters/<name>`` without FastAPI; app.py mounts it at
  ``/worker``.  A project used only through ``objectd.Runtime`` may leave it out.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from objectd import DurableObject, Request, Response, WebSocket, WebSocketPair, WorkerEntrypoint


class Counter(DurableObject):
    async def increment(self) -> int:
        value = (await self.ctx.storage.get("value") or 0) + 1
        await self.ctx.storage.put("value", value)
        return value

    async def value(self) -> int:
        return await self.ctx.storage.get("value") or 0


class Room(DurableObject):
    async def fetch(self, request: Request) -> Response:
        if request.headers.get("upgrade") != "websocket":
            return Response("Expected Upgrade: websocket", status=426)
        client, server = WebSocketPair()
        self.ctx.accept_web_socket(server)
        return Response(None, status=101, web_socket=client)

    async def web_socket_message(self, ws: WebSocket, message: str | bytes) -> None:
        for peer in self.ctx.get_web_sockets():
            peer.send(message)


class Default(WorkerEntrypoint):
    async def fetch(self, request: Request) -> Response:
        parts = urlsplit(request.url).path.strip("/").split("/")
        if len(parts) != 2 or parts[0] != "counters" or not parts[1]:
            return Response("Not found", status=404)
        counter = self.env.COUNTERS.get_by_name(parts[1])
        if request.method == "POST":
            return Response(str(await counter.increment()))
        return Response(str(await counter.value()))
