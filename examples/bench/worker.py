"""The bench app: the routes of shared/bench/API.md, with the exact responses workerd gives.

Paths are ``/<kind>/<name>/<op>``; ``<name>`` is percent-decoded and mapped to an
object with ``id_from_name``.
"""

from __future__ import annotations

import math
import time
from contextlib import suppress
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from objectd import (
    DurableObject,
    Request,
    Response,
    WebSocketPair,
    WebSocketRequestResponsePair,
    WorkerEntrypoint,
)

TEXT = {"content-type": "text/plain;charset=UTF-8"}


def not_found() -> Response:
    return Response("Not found", status=404, headers=TEXT)


def error_json(exc: BaseException, status: int) -> Response:
    name = getattr(exc, "js_name", None) or _js_name(exc)
    message = getattr(exc, "message", None) or str(exc)
    return Response.json({"error": name, "message": message}, status=status)


def _js_name(exc: BaseException) -> str:
    """The JavaScript error name a workerd app would report for ``exc``."""
    if isinstance(exc, TypeError):
        return "TypeError"
    if isinstance(exc, ValueError) and "cannot be larger" in str(exc):
        return "RangeError"
    return "Error"


def forward(stub, request: Request, op: str):
    """Send the request to the object with the path rewritten to /<op>."""
    parts = urlsplit(request.url)
    inner = urlunsplit((parts.scheme, parts.netloc, "/" + op, parts.query, ""))
    return stub.fetch(
        Request(inner, method=request.method, headers=request.headers, body=request.body)
    )


class Counter(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        ctx.storage.sql.exec(
            "CREATE TABLE IF NOT EXISTS counter "
            "(id INTEGER PRIMARY KEY CHECK (id = 0), value INTEGER NOT NULL)"
        )

    async def fetch(self, request: Request) -> Response:
        path = urlsplit(request.url).path
        value = await self.ctx.storage.get("value") or 0
        if path == "/increment":
            value += 1
        elif path == "/decrement":
            value -= 1
        elif path == "/get":
            return Response(str(value), headers=TEXT)
        else:
            return not_found()
        await self.ctx.storage.put("value", value)
        return Response(str(value), headers=TEXT)

    def sql_increment(self, by: int) -> int:
        row = self.ctx.storage.sql.exec(
            "INSERT INTO counter (id, value) VALUES (0, ?) "
            "ON CONFLICT(id) DO UPDATE SET value = value + excluded.value RETURNING value",
            by,
        ).one()
        return row["value"]

    def sql_get(self) -> int:
        rows = self.ctx.storage.sql.exec("SELECT value FROM counter WHERE id = 0").to_array()
        return rows[0]["value"] if rows else 0


class KV(DurableObject):
    async def fetch(self, request: Request) -> Response:
        parts = urlsplit(request.url)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        storage = self.ctx.storage
        try:
            if parts.path == "/put":
                if "key" not in query:
                    return Response.json(
                        {"error": "TypeError", "message": "missing key"}, status=400
                    )
                if request.method == "POST":
                    value = await request.text()
                else:
                    value = query.get("value", "")
                await storage.put(query["key"], value)
                return Response.json({"ok": True})
            if parts.path == "/get":
                if "key" not in query:
                    return Response.json(
                        {"error": "TypeError", "message": "missing key"}, status=400
                    )
                key = query["key"]
                got = await storage.get([key])
                found = key in got
                return Response.json({"key": key, "value": got.get(key), "found": found})
            if parts.path == "/delete":
                if "key" not in query:
                    return Response.json(
                        {"error": "TypeError", "message": "missing key"}, status=400
                    )
                return Response.json({"deleted": await storage.delete(query["key"])})
            if parts.path == "/list":
                options = {
                    k: query[k] for k in ("prefix", "start", "startAfter", "end") if k in query
                }
                if "limit" in query:
                    options["limit"] = _number(query["limit"])
                if "reverse" in query:
                    options["reverse"] = query["reverse"] in ("true", "1")
                entries = await storage.list(options)
                return Response.json({"entries": [[k, v] for k, v in entries.items()]})
            if parts.path == "/txn":
                a = query.get("a", "a")
                b = query.get("b", "b")
                fail = query.get("fail") == "1"

                async def increment_both(txn):
                    va = (await txn.get(a) or 0) + 1
                    vb = (await txn.get(b) or 0) + 1
                    await txn.put(a, va)
                    if fail:
                        raise Exception("intentional failure inside transaction")
                    await txn.put(b, vb)
                    return {a: va, b: vb}

                return Response.json(await storage.transaction(increment_both))
            return not_found()
        except Exception as exc:
            return error_json(exc, 500)


class ChatRoom(DurableObject):
    """WebSocket Hibernation API: every message goes to every OTHER socket of the room.

    ``ping`` is answered ``pong`` by the runtime (the auto-response), without waking
    the object, and is not broadcast.
    """

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        ctx.set_web_socket_auto_response(WebSocketRequestResponsePair("ping", "pong"))

    async def fetch(self, request: Request) -> Response:
        path = urlsplit(request.url).path
        if path == "/count":
            return Response.json({"count": len(self.ctx.get_web_sockets())})
        if path != "/websocket":
            return not_found()
        if request.headers.get("Upgrade") != "websocket":
            return Response("Expected Upgrade: websocket", status=426, headers=TEXT)
        client, server = WebSocketPair()
        self.ctx.accept_web_socket(server)
        return Response(None, status=101, web_socket=client)

    def web_socket_message(self, ws, message) -> None:
        for other in self.ctx.get_web_sockets():
            if other is not ws:
                with suppress(Exception):  # already closing
                    other.send(message)

    def web_socket_close(self, ws, code, reason, was_clean) -> None:
        with suppress(Exception):  # the runtime already answered the close
            ws.close(code, reason)

    def web_socket_error(self, ws, error) -> None:
        pass


class AlarmObject(DurableObject):
    """``/set?ms=N`` schedules an alarm N ms from now (replacing a pending one); alarm() counts."""

    async def fetch(self, request: Request) -> Response:
        parts = urlsplit(request.url)
        storage = self.ctx.storage
        if parts.path == "/set":
            query = parse_qs(parts.query, keep_blank_values=True)
            ms = _number(query.get("ms", ["0"])[0])
            if not math.isfinite(ms):
                return Response.json(
                    {"error": "TypeError", "message": "ms must be a number"}, status=400
                )
            when = _integral(time.time_ns() // 1_000_000 + ms)  # Date.now() + ms
            await storage.set_alarm(when)
            return Response.json({"scheduledTime": when})
        if parts.path == "/count":
            return Response.json({"count": await storage.get("count") or 0})
        if parts.path == "/get":
            return Response.json({"scheduledTime": await storage.get_alarm()})
        if parts.path == "/delete":
            await storage.delete_alarm()
            return Response.json({"deleted": True})
        return not_found()

    async def alarm(self) -> None:
        count = (await self.ctx.storage.get("count") or 0) + 1
        await self.ctx.storage.put("count", count)


_NOT_NUMBERS = frozenset({"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"})


def _number(text: str) -> float | int:
    """JavaScript's Number(text): '' is 0, junk is NaN (which list() then refuses)."""
    text = text.strip()
    if not text:
        return 0
    if text in ("Infinity", "+Infinity", "-Infinity"):
        return float(text.replace("Infinity", "inf"))
    lowered = text.lower()
    if "_" in text or lowered in _NOT_NUMBERS or "nan" in lowered:
        return float("nan")  # Python's int()/float() accept these, JavaScript does not
    try:
        return int(text, 0) if lowered[:2] in ("0x", "0o", "0b") else int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return float("nan")


def _integral(value: float | int) -> float | int:
    """A float with no fraction as an int, so JSON shows it as JavaScript would (no .0)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


class Default(WorkerEntrypoint):
    async def fetch(self, request: Request) -> Response:
        path = urlsplit(request.url).path
        parts = path.split("/")
        kind = parts[1] if len(parts) > 1 else ""
        if kind == "health" and len(parts) == 2:
            return Response("ok", headers=TEXT)
        if kind == "throw" and len(parts) == 2:
            raise RuntimeError("intentional uncaught exception")
        if len(parts) != 4 or not parts[2] or not parts[3]:
            return not_found()
        try:
            name = unquote(parts[2], errors="strict")
        except UnicodeDecodeError:
            return Response.json({"error": "URIError", "message": "URI malformed"}, status=400)
        op = parts[3]
        env = self.env
        if kind == "counter":
            object_id = env.COUNTER.id_from_name(name)
            if op == "id":
                return Response.json({"id": str(object_id), "name": name})
            stub = env.COUNTER.get(object_id)
            if op == "sql-increment":
                return Response(str(await stub.sqlIncrement(1)), headers=TEXT)
            if op == "sql-get":
                return Response(str(await stub.sqlGet()), headers=TEXT)
            return await forward(stub, request, op)
        if kind == "byid":
            try:
                object_id = env.COUNTER.id_from_string(name)
            except TypeError as exc:
                return error_json(exc, 400)
            return await forward(env.COUNTER.get(object_id), request, op)
        if kind == "byid-raw":
            object_id = env.COUNTER.id_from_string(name)
            return await forward(env.COUNTER.get(object_id), request, op)
        if kind == "kv":
            return await forward(env.KV.get(env.KV.id_from_name(name)), request, op)
        if kind == "room":
            return await forward(env.ROOM.get(env.ROOM.id_from_name(name)), request, op)
        if kind == "alarm":
            return await forward(env.ALARM.get(env.ALARM.id_from_name(name)), request, op)
        return not_found()
