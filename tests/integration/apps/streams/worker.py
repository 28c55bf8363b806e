"""Streamed bodies: from the worker, from an object, and into an object."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlsplit

from objectd import DurableObject, Response, WorkerEntrypoint


class Streamer(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.instance = uuid.uuid4().hex
        self.step = asyncio.Event()
        self.open = 0

    async def fetch(self, request):
        path = urlsplit(request.url).path
        if path == "/object/stream":
            return Response(self.steps(), headers={"content-type": "text/plain"})
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

    async def raises(self):
        yield "ok\n"
        raise ValueError("stream broke: 7")

    async def wait_step(self) -> None:
        await self.step.wait()


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = urlsplit(request.url).path
        stub = self.env.OBJ.get_by_name("x")
        if path == "/worker/stream":
            return Response(self.steps(stub))
        if path == "/health":
            return Response("ok")
        if path == "/worker/size":
            return Response(str(len(await request.bytes())))
        return await stub.fetch(request)

    async def steps(self, stub):
        yield b"one\n"
        await stub.wait_step()
        yield b"two\n"
