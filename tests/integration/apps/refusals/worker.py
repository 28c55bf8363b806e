"""Bad calls next to good ones, written the way Cloudflare's Python Workers code is.

* ``/gather/<name>``: ``gather(stub.record(bad), stub.record("b"))`` with
  ``return_exceptions``, then ``gather(stub.record(bad), stub.record("c"))`` raising;
  answers what the Worker saw and what the object received, as JSON.
* ``/storage/<name>``: in the object, ``gather(storage.put(bad), storage.put("ok", 1))``
  and a bad ``storage.put`` left unawaited; answers what was raised.
* ``/stored/<name>``: the object's stored pairs, as JSON.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import unquote, urlsplit

from objectd import DurableObject, Request, Response, WorkerEntrypoint


class Unstorable:
    """An application class instance: no value the codec carries (checklist 25)."""


def describe(value: Any) -> Any:
    if isinstance(value, BaseException):
        return {"error": type(value).__name__, "message": str(value)}
    return value


class Box(DurableObject):
    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        self.received: list[Any] = []

    def record(self, value: Any) -> Any:
        self.received.append(value)
        return value

    def log(self) -> list[Any]:
        return self.received

    async def fetch(self, request: Request) -> Response:
        storage = self.ctx.storage
        path = urlsplit(request.url).path
        if path == "/storage":
            storage.put("dropped", Unstorable())  # never awaited: logged, writes nothing
            results = await asyncio.gather(
                storage.put("bad", Unstorable()), storage.put("ok", 1), return_exceptions=True
            )
            return Response.json([describe(r) for r in results])
        if path == "/stored":
            return Response.json(await storage.list())
        return Response("Not found", status=404)


class Default(WorkerEntrypoint):
    async def fetch(self, request: Request) -> Response:
        segments = urlsplit(request.url).path.split("/")
        if len(segments) != 3 or not segments[2]:
            return Response("Not found", status=404)
        stub = self.env.BOX.get_by_name(unquote(segments[2]))
        if segments[1] == "gather":
            first = await asyncio.gather(
                stub.record(Unstorable()), stub.record("b"), return_exceptions=True
            )
            try:
                await asyncio.gather(stub.record(Unstorable()), stub.record("c"))
                second: Any = "no error"
            except TypeError as exc:  # SerializationError is a TypeError, as in workerd
                second = describe(exc)
            return Response.json(
                {
                    "first": [describe(r) for r in first],
                    "second": second,
                    "received": await stub.log(),
                }
            )
        return await stub.fetch(f"http://box/{segments[1]}")
