"""A counter with an alarm and a hibernatable echo socket, for the test kit's tests."""

import asyncio
from urllib.parse import urlsplit

from objectd import DurableObject, Response, WebSocketPair, WorkerEntrypoint

CONSTRUCTED = []  # (object name) per constructor run, in this test's module only


class Counter(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        CONSTRUCTED.append(ctx.id.name)
        self.in_memory = 0
        self.release = asyncio.Event()

    async def bump(self) -> int:
        self.in_memory += 1
        value = (await self.ctx.storage.get("n") or 0) + 1
        await self.ctx.storage.put("n", value)
        return value

    async def alarm_in(self, seconds: float, now_ms: int) -> int:
        when = now_ms + int(seconds * 1000)
        await self.ctx.storage.set_alarm(when)
        return when

    async def hold(self) -> str:
        # Holds every other event back until release is set (the input gate).
        await self.ctx.block_concurrency_while(self.release.wait)
        return "released"

    async def alarm(self, alarm_info=None):
        fails = await self.ctx.storage.get("fail_alarms") or 0
        runs = await self.ctx.storage.get("alarm_runs") or []
        runs.append([alarm_info.retry_count, alarm_info.scheduled_time])
        await self.ctx.storage.put("alarm_runs", runs)
        if len(runs) <= fails:
            raise RuntimeError("alarm failed on purpose")

    async def fetch(self, request):
        if request.headers.get("upgrade") == "websocket":
            client, server = WebSocketPair()
            self.ctx.accept_web_socket(server, ["echo"])
            return Response(None, status=101, web_socket=client)
        value = await self.bump()
        return Response(f"{request.method} {value} {await request.text()}")

    async def web_socket_message(self, ws, message):
        ws.send(f"{message} from constructor #{len(CONSTRUCTED)}")


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = urlsplit(request.url).path
        if path == "/boom":
            raise ValueError("the worker failed")
        if path == "/greeting":
            return Response(self.env.GREETING)
        return await self.env.COUNTER.get_by_name(path.strip("/") or "root").fetch(request)
