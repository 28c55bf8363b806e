"""The ledger app: writes whose acknowledgement the crash tests hold the runtime to.

* ``/inc/<name>``: increment the object's ``value``; answers the new value.
* ``/multi/<name>?n=K``: in one turn, stamp keys ``k0..k{K-1}`` and ``gen`` with the next
  generation; answers it.  The writes are coalesced into one batch, so after any crash
  every stored ``k*`` key equals the stored ``gen`` (all there or all absent).
* ``/check/<name>``: ``{"value": ..., "gen": ..., "keys": {...}}`` as stored.
"""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

from objectd import DurableObject, Request, Response, WorkerEntrypoint

TEXT = {"content-type": "text/plain;charset=UTF-8"}
MAX_KEYS = 127  # with "gen", one more key than that would exceed a KV batch of 128 anyway


def not_found() -> Response:
    return Response("Not found", status=404, headers=TEXT)


class Ledger(DurableObject):
    async def fetch(self, request: Request) -> Response:
        parts = urlsplit(request.url)
        storage = self.ctx.storage
        if parts.path == "/inc":
            value = (await storage.get("value") or 0) + 1
            await storage.put("value", value)
            return Response(str(value), headers=TEXT)
        if parts.path == "/multi":
            n_text = parse_qs(parts.query).get("n", ["8"])[-1]
            n = int(n_text) if n_text.isdigit() else 0
            if not 1 <= n <= MAX_KEYS:
                return Response(
                    f"n must be 1..{MAX_KEYS}, got {n_text!r}", status=400, headers=TEXT
                )
            gen = (await storage.get("gen") or 0) + 1
            # One awaited put per key, "gen" in the middle: none of these awaits suspends,
            # so all n + 1 writes belong to one batch; a torn batch shows as keys that
            # disagree with each other or with "gen".
            for i in range(n // 2):
                await storage.put(f"k{i}", gen)
            await storage.put("gen", gen)
            for i in range(n // 2, n):
                await storage.put(f"k{i}", gen)
            return Response(str(gen), headers=TEXT)
        if parts.path == "/check":
            keys = await storage.list(prefix="k")
            return Response.json(
                {
                    "value": await storage.get("value"),
                    "gen": await storage.get("gen"),
                    "keys": keys,
                }
            )
        return not_found()


class Default(WorkerEntrypoint):
    async def fetch(self, request: Request) -> Response:
        parts = urlsplit(request.url)
        segments = parts.path.split("/")
        if len(segments) != 3 or segments[1] not in ("inc", "multi", "check") or not segments[2]:
            return not_found()
        stub = self.env.LEDGER.get_by_name(unquote(segments[2]))
        inner = f"http://ledger/{segments[1]}" + (f"?{parts.query}" if parts.query else "")
        return await stub.fetch(inner, method=request.method)
