"""A hibernatable room written as a Cloudflare Python Worker (camelCase, ``workers``, ``js``).

* ``/ws/<room>?tag=..&name=..``: upgrade; the socket is accepted with those tags and the
  attachment ``{"name": name}``.
* a message ``info`` is answered with JSON: constructions so far, this socket's tags and
  attachment, and how many sockets the room holds; ``abort`` resets the object.
* ``/state/<room>``: JSON of the constructions and the close and error events seen.
"""

import json
from urllib.parse import parse_qs, urlsplit

from js import WebSocketPair
from workers import DurableObject, Response, WorkerEntrypoint


class Room(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        ctx.storage.kv.put("constructed", (ctx.storage.kv.get("constructed") or 0) + 1)

    async def fetch(self, request):
        url = urlsplit(request.url)
        if url.path == "/state":
            return Response.json(
                {
                    "constructed": self.ctx.storage.kv.get("constructed"),
                    "closes": self.ctx.storage.kv.get("closes") or [],
                    "errors": self.ctx.storage.kv.get("errors") or [],
                    "sockets": len(self.ctx.getWebSockets()),
                }
            )
        query = parse_qs(url.query)
        client, server = WebSocketPair.new().object_values()
        self.ctx.acceptWebSocket(server, query.get("tag", []))
        server.serializeAttachment({"name": query.get("name", [""])[0]})
        return Response(None, status=101, web_socket=client)

    async def webSocketMessage(self, ws, message):
        if message == "abort":
            self.ctx.abort("asked to")
        info = {
            "constructed": self.ctx.storage.kv.get("constructed"),
            "tags": self.ctx.getTags(ws),
            "attachment": ws.deserializeAttachment(),
            "sockets": len(self.ctx.getWebSockets()),
        }
        ws.send(json.dumps(info))

    async def webSocketClose(self, ws, code, reason, wasClean):
        closes = self.ctx.storage.kv.get("closes") or []
        self.ctx.storage.kv.put("closes", [*closes, [code, reason, wasClean]])

    async def webSocketError(self, ws, error):
        errors = self.ctx.storage.kv.get("errors") or []
        entry = [type(error).__name__, str(error), len(self.ctx.getWebSockets())]
        self.ctx.storage.kv.put("errors", [*errors, entry])


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = urlsplit(request.url)
        _, kind, name = url.path.split("/")[:3]
        stub = self.env.ROOM.getByName(name)
        return await stub.fetch(f"http://room/{kind}?{url.query}", headers=request.headers)
