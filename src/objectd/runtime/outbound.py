"""``fetch()`` from user code: an outgoing HTTP request, held behind the output gate.

Called inside an object, the request leaves only once every write the object made
before it is durable (spec §6, checklist 75).  httpx carries it (a well-kept async
client with connection pooling); the response comes back as an objectd ``Response``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from objectd.fetch import Request, Response
from objectd.runtime.host import current_host

__all__ = ["close_client", "fetch"]

_client: httpx.AsyncClient | None = None


def _get_client() -> httpx.AsyncClient:
    global _client
    if _client is None:
        _client = httpx.AsyncClient(follow_redirects=True, timeout=None)
    return _client


async def fetch(
    input: str | Request, init: Mapping[str, Any] | None = None, /, **kwargs: Any
) -> Response:
    """Like the fetch API: ``await fetch(url, method=..., headers=..., body=...)``."""
    if isinstance(input, Request) and init is None and not kwargs:
        request = input
    else:
        request = Request(input, **{**(init or {}), **kwargs})
    host = current_host.get()
    if host is not None and host.storage is not None:
        batch = host.storage.output_gate_batch()
        if batch is not None:
            await batch.wait()
    reply = await _get_client().request(
        request.method, request.url, headers=list(request.headers.items()), content=request.body
    )
    response = Response(
        reply.content,
        status=reply.status_code,
        headers=[(k, v) for k, v in reply.headers.multi_items() if k.lower() != "content-encoding"],
    )
    if host is not None:
        await host.gate.wait_open()
    return response


async def close_client() -> None:
    global _client
    if _client is not None:
        await _client.aclose()
        _client = None
