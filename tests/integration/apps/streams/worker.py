"""Streamed bodies: from the worker, from an object, and into an object."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlsplit

from objectd import DurableObject, Response, WebSocketPair, WorkerEntrypoint, fetch

# The worker's own streams, counted in this process: open now, and closed so far.
WORKER_STREAMS = {"open": 0, "closed": 0}
# Outbound streamed responses held open by /out/hold (each holds a pooled connection).
HELD: list[Response] = []


class Streamer(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.instance = uuid.uuid4().hex
        self.step = asyncio.Event()
        self.open = 0

    async def fetch(self, request):
        path = urlsplit(request.url).path
        if path.startswith("/named/"):  # /named/<name>/object/...: the object <name>
            path = "/" + path.split("/", 3)[3]
        if path == "/object/stream":
            return Response(self.steps(), headers={"content-type": "text/plain"})
        if path == "/object/ws":  # a standard (not hibernatable) WebSocket: echoes
            client, server = WebSocketPair()
            server.accept()
            server.add_event_listener("message", lambda event: server.send(event.data))
            return Response(None, status=101, web_socket=client)
        if path == "/object/ticks":  # never ends, never reads the request body
            return Response(self.ticks())
        if path == "/object/raise":
            return Response(self.raises())
        if path == "/object/step":
            self.step.set()
            self.step = asyncio.Event()
            return Response("stepped")
        if path == "/object/stats":
            closed = await self.ctx.storage.get("closed") or 0
            return Response.json({"instance": self.instance, "closed": closed, "open": self.open})
        if path == "/object/upload":
            size = chunks = 0
            async for chunk in request.stream():
                size += len(chunk)
                chunks += 1
            return Response.json({"size": size, "chunks": chunks})
        return Response("Not found", status=404)

    async def steps(self):
        self.open += 1
        try:
            yield "one\n"
            await self.step.wait()
            yield "two\n"
        finally:
            self.open -= 1
            self.ctx.storage.put("closed", (await self.ctx.storage.get("closed") or 0) + 1)

    async def ticks(self):
        self.open += 1
        try:
            while True:
                yield "tick\n"
                await asyncio.sleep(0.05)
        finally:
            self.open -= 1
            self.ctx.storage.put("closed", (await self.ctx.storage.get("closed") or 0) + 1)

    async def raises(self):
        yield "ok\n"
        raise ValueError("stream broke: 7")

    async def wait_step(self) -> None:
        await self.step.wait()


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = urlsplit(request.url).path
        stub = self.env.OBJ.get_by_name("x")
        if path.startswith("/named/"):
            stub = self.env.OBJ.get_by_name(path.split("/")[2])
        if path == "/worker/stream":
            return Response(self.steps(stub))
        if path == "/health":
            return Response("ok")
        if path == "/worker/ticks":  # never ends, never reads the request body
            return Response(counted(ticks()))
        if path == "/worker/rows":  # never awaits between its chunks
            return Response(counted(rows()))
        if path == "/out/hold":  # holds n outbound streams open, unread
            origin = request.url.split("/out/", 1)[0]
            for _ in range(int(request.url.rsplit("=", 1)[1])):
                HELD.append(await fetch(origin + "/worker/ticks"))
            return Response(str(len(HELD)))
        if path == "/out/release":
            while HELD:
                await HELD.pop().body.aclose()
            return Response("released")
        if path == "/out/fetch":
            try:
                reply = await fetch(request.url.split("/out/", 1)[0] + "/health")
            except Exception as exc:
                return Response(f"{type(exc).__name__}: {exc}", status=502)
            return Response(await reply.text())
        if path == "/worker/streams":
            return Response.json(WORKER_STREAMS)
        if path == "/worker/size":
            return Response(str(len(await request.bytes())))
        return await stub.fetch(request)

    async def steps(self, stub):
        yield b"one\n"
        await stub.wait_step()
        yield b"two\n"


async def counted(chunks):
    WORKER_STREAMS["open"] += 1
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        WORKER_STREAMS["open"] -= 1
        WORKER_STREAMS["closed"] += 1


async def ticks():
    while True:
        yield b"tick\n"
        await asyncio.sleep(0.05)


async def rows():
    for i in range(10**9):
        yield b"row %d\n" % i
