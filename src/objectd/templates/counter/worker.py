"""A counter: /increment, /decrement and /get on one Durable Object, id_from_name("global").

Serve it with ``objectd dev .``; test it with ``pytest tests``.

Written as a Cloudflare Python Worker (``from workers import ...``, camelCase); it
runs unchanged on objectd.
"""

from urllib.parse import urlparse

from workers import DurableObject, Response, WorkerEntrypoint


class Counter(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.value = 0
        # Load the stored value before any request is delivered.
        ctx.blockConcurrencyWhile(self.load)

    async def load(self):
        self.value = await self.ctx.storage.get("value") or 0

    async def fetch(self, request):
        path = urlparse(request.url).path
        if path == "/increment":
            self.value += 1
            await self.ctx.storage.put("value", self.value)
        elif path == "/decrement":
            self.value -= 1
            await self.ctx.storage.put("value", self.value)
        elif path != "/get":
            return Response("Not found", status=404)
        return Response(str(self.value))


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        stub = self.env.COUNTER.get(self.env.COUNTER.idFromName("global"))
        return await stub.fetch(request)
