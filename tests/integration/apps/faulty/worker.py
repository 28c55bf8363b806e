"""Objects that fail; the tests read the log and the 500 page for these lines.

* ``/fetch``: ``Thing.fetch`` calls ``ratio(1, 0)``, which divides by zero.
* ``/rpc``: the RPC method ``Thing.divide`` calls ``ratio(1, 0)``.
* ``/ctor``: ``Broken.__init__`` raises ``KeyError``.
* ``/nested``: ``Thing.relay`` awaits ``Broken`` (whose constructor raises) from inside
  ``Thing``: the report shows both objects.
* ``/alarm``: ``Thing.alarm`` divides by zero; ``/alarm`` sets it and answers at once.
* ``/caught``: the Worker catches the remote error and answers with its flags.
"""

from __future__ import annotations

import time

from objectd import DurableObject, Request, Response, WorkerEntrypoint


def ratio(a: int, b: int) -> float:
    return a / b  # RAISE-RATIO


class Thing(DurableObject):
    async def fetch(self, request: Request) -> Response:
        return Response(str(ratio(1, 0)))

    async def divide(self, a: int, b: int) -> float:
        return ratio(a, b)

    async def relay(self) -> str:
        return await self.env.BROKEN.get_by_name("inner").hello()  # AWAIT-IN-THING

    async def arm(self) -> None:
        await self.ctx.storage.set_alarm(time.time() * 1000 + 10)

    async def alarm(self) -> None:
        ratio(2, 0)


def load_settings(source: dict[str, str]) -> str:
    return source["missing"]  # RAISE-CTOR


class Broken(DurableObject):
    def __init__(self, ctx: object, env: object) -> None:
        super().__init__(ctx, env)
        self.settings = load_settings({})

    async def hello(self) -> str:
        return "hello"


class Default(WorkerEntrypoint):
    async def fetch(self, request: Request) -> Response:
        path = request.url.rsplit("/", 1)[-1]
        thing = self.env.THING.get_by_name("x")
        if path == "fetch":
            return await thing.fetch(request)  # AWAIT-FETCH
        if path == "rpc":
            return Response(str(await thing.divide(1, 0)))  # AWAIT-RPC
        if path == "ctor":
            return Response(await self.env.BROKEN.get_by_name("y").hello())  # AWAIT-CTOR
        if path == "nested":
            return Response(await thing.relay())  # AWAIT-NESTED
        if path == "alarm":
            await thing.arm()
            return Response("armed")
        if path == "caught":
            try:
                await thing.divide(1, 0)
            except ZeroDivisionError as exc:
                flags = f"{type(exc).__name__} remote={exc.remote}"  # type: ignore[attr-defined]
                return Response(flags)
        return Response("Not found", status=404)
