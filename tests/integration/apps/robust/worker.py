"""Handlers that misbehave, for the robustness tests (issue 9 §2, §3).

``/health`` and ``/entry/<what>`` (``exit``, ``interrupt``, ``cancel``, ``spin``,
``wait-until-exit``, ``task-spin``, and ``ws``: a standard-API WebSocket whose listener
echoes, or spins on ``spin``)
are answered by the Worker itself; every other path is
``/<object name>/<what>``, answered by that ``Robust`` object:

* ``count``: increment and answer a stored counter (is the object fine?);
* ``get``: the stored ``dirty`` key (a write the bad requests made before failing);
* ``endless`` / ``huge``: a SQL statement that never ends / would take hours;
* ``rows`` / ``blobs``: ``to_array()`` of a statement whose rows (ints / 1 MB blobs)
  never end;
* ``spin``: a Python loop that never ends;
* ``spin-bare`` / ``retry-bare``: a loop or an endless statement retried forever under a
  bare ``except:``, which swallows every CPU interrupt (the process has to end);
* ``task-spin`` / ``task-sql``: a task the object creates that spins / runs endless SQL;
* ``exit`` / ``interrupt``: ``sys.exit(3)`` / ``raise KeyboardInterrupt`` in fetch;
* ``rpc-exit``: ``sys.exit()`` in an RPC method; ``bcw-exit``: in a
  ``block_concurrency_while`` callback; ``wait-until-exit``: in a ``wait_until`` task;
* ``alarm-exit``: an alarm whose ``alarm()`` calls ``sys.exit()``;
* ``ws``: a hibernatable WebSocket whose ``web_socket_message`` calls ``sys.exit()``
  (message ``exit``) or raises ``CancelledError`` (``cancel``), and echoes otherwise;
* ``cancel``: ``raise asyncio.CancelledError()`` in fetch; ``alarm-cancel``: an alarm
  whose ``alarm()`` counts its runs (``alarms``) and raises it.

An object whose name starts with ``ctor-exit`` calls ``sys.exit()`` in its constructor.
"""

from __future__ import annotations

import asyncio
import sys
import time
from urllib.parse import urlsplit

from objectd import DurableObject, Request, Response, WebSocketPair, WorkerEntrypoint

ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"
ROWS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT x FROM c"
BLOBS = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) "
    "SELECT randomblob(1000000) FROM c"
)
HUGE = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 100000000000) "
    "SELECT count(*) FROM c"
)


class Robust(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        if (ctx.id.name or "").startswith("ctor-exit"):
            sys.exit()

    async def fetch(self, request: Request) -> Response:
        what = urlsplit(request.url).path.strip("/")
        storage = self.ctx.storage
        if what == "count":
            value = (await storage.get("count") or 0) + 1
            await storage.put("count", value)
            return Response(str(value))
        if what == "get":
            return Response(repr(await storage.get("dirty")))
        if what in ("endless", "huge"):
            await storage.put("dirty", what)  # in the batch the statement's failure discards
            storage.sql.exec(ENDLESS if what == "endless" else HUGE)
            return Response("unreachable")
        if what in ("rows", "blobs"):
            rows = storage.sql.exec(ROWS if what == "rows" else BLOBS).to_array()
            return Response(f"unreachable: {len(rows)} rows")
        if what == "spin":
            while True:
                pass
        if what == "spin-bare":
            while True:
                try:
                    while True:
                        pass
                except:  # noqa: E722 -- the unlucky user's retry loop
                    pass
        if what == "retry-bare":
            while True:
                try:
                    return Response(str(storage.sql.exec(ENDLESS).one()))
                except:  # noqa: E722
                    continue
        if what in ("task-spin", "task-sql"):
            self._task = asyncio.get_running_loop().create_task(self._stuck_later(what))
            return Response("spawned")
        if what == "exit":
            await storage.put("dirty", what)
            sys.exit(3)
        if what == "interrupt":
            raise KeyboardInterrupt
        if what == "cancel":
            await storage.put("dirty", what)
            raise asyncio.CancelledError()
        if what == "alarms":
            return Response(repr(await storage.get("alarms")))
        if what == "bcw-exit":
            await self.ctx.block_concurrency_while(self._exit_later)
            return Response("unreachable")
        if what == "wait-until-exit":
            self.ctx.wait_until(self._exit_later())
            return Response("scheduled")
        if what in ("alarm-exit", "alarm-cancel"):
            await storage.put("alarm", what)
            await storage.set_alarm(time.time() * 1000 + 50)
            return Response("set")
        if what == "ws":
            client, server = WebSocketPair()
            self.ctx.accept_web_socket(server)
            return Response(None, status=101, web_socket=client)
        return Response("Not found", status=404)

    async def _stuck_later(self, what: str) -> None:
        await asyncio.sleep(0.05)
        if what == "task-sql":
            self.ctx.storage.sql.exec(ENDLESS)
        while True:
            pass

    async def rpc_exit(self) -> None:
        sys.exit()

    async def _exit_later(self) -> None:
        await asyncio.sleep(0)
        sys.exit(4)

    async def alarm(self) -> None:
        storage = self.ctx.storage
        if await storage.get("alarm") == "alarm-cancel":
            await storage.put("alarms", (await storage.get("alarms") or 0) + 1)
            raise asyncio.CancelledError()
        sys.exit(5)

    async def web_socket_message(self, ws, message) -> None:
        if message == "exit":
            sys.exit()
        if message == "cancel":
            raise asyncio.CancelledError()
        ws.send(f"echo {message}")


_tasks: set[asyncio.Task[None]] = set()  # the Worker's own tasks, kept referenced


class Default(WorkerEntrypoint):
    async def fetch(self, request: Request) -> Response:
        parts = urlsplit(request.url).path.strip("/").split("/")
        if parts == ["health"]:
            return Response("ok")
        if parts == ["entry", "exit"]:
            sys.exit(2)
        if parts == ["entry", "interrupt"]:
            raise KeyboardInterrupt
        if parts == ["entry", "cancel"]:
            raise asyncio.CancelledError()
        if parts == ["entry", "wait-until-exit"]:

            async def exit_later() -> None:
                await asyncio.sleep(0)
                sys.exit(6)

            self.ctx.wait_until(exit_later())
            return Response("scheduled")
        if parts == ["entry", "spin"]:
            while True:
                pass
        if parts == ["entry", "task-spin"]:

            async def spin_later() -> None:
                await asyncio.sleep(0.05)
                while True:
                    pass

            _tasks.add(asyncio.get_running_loop().create_task(spin_later()))
            return Response("spawned")
        if parts == ["entry", "ws"]:
            client, server = WebSocketPair()
            server.accept()

            def on_message(event) -> None:
                if event.data == "spin":
                    while True:
                        pass
                server.send(f"echo {event.data}")

            server.add_event_listener("message", on_message)
            return Response(None, status=101, web_socket=client)
        if len(parts) != 2:
            return Response("Not found", status=404)
        name, what = parts
        stub = self.env.ROBUST.get_by_name(name)
        if what == "rpc-exit":
            await stub.rpc_exit()
            return Response("unreachable")
        return await stub.fetch(f"http://robust/{what}", headers=request.headers)
