"""A hibernatable room that sends big frames to everyone and records what it sees.

* ``/ws/<room>[?pong=N]``: upgrade; the socket is accepted (hibernatable), ``ping`` is
  answered ``pong`` by the runtime (the auto-response), padded with dots to ``N`` bytes.
* a message ``blast <count> <size>`` sends ``count`` binary frames of ``size`` bytes to
  every socket of the room, the sender included; each frame starts with its sequence
  number (8 bytes, big-endian), counted per room from 0 (in memory).
* ``/state/<room>``: JSON of the close and error events seen and the open sockets.
"""

from urllib.parse import parse_qs, urlsplit

from objectd import (
    DurableObject,
    Response,
    WebSocketPair,
    WebSocketRequestResponsePair,
    WorkerEntrypoint,
)


class Room(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        ctx.set_web_socket_auto_response(WebSocketRequestResponsePair("ping", "pong"))
        self.seq = 0  # in memory: the tests never leave a room idle long enough to evict it

    async def fetch(self, request):
        url = urlsplit(request.url)
        if url.path == "/state":
            return Response.json(
                {
                    "closes": self.ctx.storage.kv.get("closes") or [],
                    "errors": self.ctx.storage.kv.get("errors") or [],
                    "sockets": len(self.ctx.get_web_sockets()),
                }
            )
        size = int(parse_qs(url.query).get("pong", ["4"])[0])
        pong = "pong" + "." * (size - 4)
        self.ctx.set_web_socket_auto_response(WebSocketRequestResponsePair("ping", pong))
        client, server = WebSocketPair()
        self.ctx.accept_web_socket(server)
        return Response(None, status=101, web_socket=client)

    def web_socket_message(self, ws, message):
        kind, count, size = message.split()
        assert kind == "blast"
        padding = bytes(int(size) - 8)
        for _ in range(int(count)):
            frame = self.seq.to_bytes(8, "big") + padding
            self.seq += 1
            for other in self.ctx.get_web_sockets():
                other.send(frame)

    def web_socket_close(self, ws, code, reason, was_clean):
        closes = self.ctx.storage.kv.get("closes") or []
        self.ctx.storage.kv.put("closes", [*closes, [code, reason, was_clean]])

    def web_socket_error(self, ws, error):
        errors = self.ctx.storage.kv.get("errors") or []
        self.ctx.storage.kv.put("errors", [*errors, str(error)])


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = urlsplit(request.url)
        _, kind, name = url.path.split("/")[:3]
        stub = self.env.ROOM.get_by_name(name)
        return await stub.fetch(f"http://room/{kind}?{url.query}", headers=request.headers)
