"""Live updates: one Board object per name pushes every change as Server-Sent Events.

* ``GET /`` and ``GET /b/<board>``: the page (``page.py``), which subscribes with
  ``EventSource`` to
* ``GET /api/boards/<board>/events``: the board's event stream (``text/event-stream``).
  The first event is the board as it is; then one event per change, each with its
  version as ``id:``, so a browser that reconnects sends ``Last-Event-ID`` and gets
  what it missed.  A comment line (``: heartbeat``) every 15 s (``?heartbeat=<s>``)
  keeps proxies from closing an idle stream (clamped to 0.05–60 s; a value that is
  not a finite number, or a ``Last-Event-ID`` that is not a version, gets 400).
* ``POST /api/boards/<board>`` with a text body: the new text of the board.
* ``GET /api/boards/<board>/stats``: subscribers now, and streams closed so far.

A change is stored before it is pushed, and each event waits for the writes made
before it to be durable (the output gate), so what a subscriber sees has been saved.
The stream is an async generator returned as the response body; when a subscriber
goes away its generator is closed, and its ``finally`` counts it out.  The board keeps
its last ``LOG`` changes in memory, so a subscriber that fell further behind gets the
current state instead of every change it missed.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections import deque
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, unquote, urlsplit

from page import HTML

from objectd import DurableObject, Request, Response, WorkerEntrypoint

LOG = 100
MAX_TEXT = 2000
HEARTBEAT_S = 15.0
VERSION = re.compile(r"[0-9]{1,18}")  # an event id: ASCII digits, and not 5,000 of them


class Board(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.changes: deque[dict] = deque(maxlen=LOG)  # (version, text) of recent changes
        self.changed = asyncio.Event()  # replaced at each change: set wakes subscribers
        self.subscribers = 0

    async def fetch(self, request: Request) -> Response:
        parts = urlsplit(request.url)
        last = parts.path.rsplit("/", 1)[-1]
        if request.method == "POST":
            text = (await request.text()).strip()
            if len(text) > MAX_TEXT:
                return Response(f"at most {MAX_TEXT} characters", status=400)
            return Response.json(await self.change(text))
        if last == "events":
            heartbeat = _heartbeat(parse_qs(parts.query).get("heartbeat"))
            if heartbeat is None:
                return Response("heartbeat: a number of seconds", status=400)
            after = request.headers.get("last-event-id")
            if after is not None and not VERSION.fullmatch(after):
                return Response("Last-Event-ID: an event's id (a version)", status=400)
            since = int(after) if after is not None else None
            return Response(
                self.events(since, heartbeat),
                headers={
                    "content-type": "text/event-stream",
                    "cache-control": "no-cache",
                },
            )
        if last == "stats":
            closed = await self.ctx.storage.get("closed") or 0
            return Response.json({"subscribers": self.subscribers, "closed": closed})
        return Response("Not found", status=404)

    async def change(self, text: str) -> dict:
        version = (await self.ctx.storage.get("version") or 0) + 1
        self.ctx.storage.put({"version": version, "text": text})
        event = {"version": version, "text": text}
        self.changes.append(event)
        self.changed.set()
        self.changed = asyncio.Event()
        return event

    async def events(self, since: int | None, heartbeat: float) -> AsyncIterator[str]:
        self.subscribers += 1
        try:
            version = await self.ctx.storage.get("version") or 0
            if since is not None and (since == version or self._covers(since, version)):
                version = since  # a reconnect: only what it missed
            else:
                text = await self.ctx.storage.get("text") or ""
                yield _event(version, {"version": version, "text": text})
            while True:
                changed = self.changed
                for event in [c for c in self.changes if c["version"] > version]:
                    version = event["version"]
                    yield _event(version, event)
                try:
                    await asyncio.wait_for(changed.wait(), heartbeat)
                except TimeoutError:
                    yield ": heartbeat\n\n"
        finally:
            # Runs when the subscriber goes away (the runtime closes the generator).
            self.subscribers -= 1
            self.ctx.storage.put("closed", (await self.ctx.storage.get("closed") or 0) + 1)

    def _covers(self, since: int, version: int) -> bool:
        """Every change after ``since`` (up to ``version``) is still in the log."""
        return bool(self.changes) and self.changes[0]["version"] <= since + 1 and since < version


def _heartbeat(given: list[str] | None) -> float | None:
    """The heartbeat interval asked for, clamped to 0.05-60 s; None if it is not a number."""
    if not given:
        return HEARTBEAT_S
    try:
        seconds = float(given[0])
    except ValueError:
        return None
    if not math.isfinite(seconds):  # nan would disable the heartbeat
        return None
    return min(max(seconds, 0.05), 60.0)


def _event(version: int, data: dict) -> str:
    return f"id: {version}\ndata: {json.dumps(data)}\n\n"


class Default(WorkerEntrypoint):
    async def fetch(self, request: Request) -> Response:
        parts = urlsplit(request.url).path.split("/")[1:]
        if parts in ([""], ["b", parts[-1]]) and request.method == "GET":
            return Response(HTML, headers={"content-type": "text/html;charset=UTF-8"})
        if len(parts) in (3, 4) and parts[:2] == ["api", "boards"] and parts[2]:
            board = self.env.BOARDS.get_by_name(unquote(parts[2]))
            return await board.fetch(request)
        return Response("Not found", status=404)
