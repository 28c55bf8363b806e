"""``fetch()`` from user code: an outgoing HTTP request, held behind the output gate.

Called inside an object, the request leaves only once every write the object made
before it is durable (spec §6, checklist 75).  httpx carries it (a well-kept async
client with connection pooling); the response comes back as an objectd ``Response``
as soon as its head has arrived, as the fetch API's does: its body is streamed
(``async for chunk in response.stream()``, or ``await response.text()`` to read it
whole), and a request body may be streamed too (``body=`` an async iterable).

A response body nobody reads would keep its pooled connection forever; when its
``Response`` is dropped unread, the connection is closed (``_ReplyBody.__del__``).

The pool holds ``MAX_CONNECTIONS`` connections for the whole process (httpx's default),
and a streamed response holds its connection until its body ends or is closed.  A
``fetch()`` that finds them all in use waits at most ``POOL_TIMEOUT_S`` for one, then
fails with an ``OverloadedError`` that says so (without the bound, 100 open streams
froze every later ``fetch()`` for good); connecting waits at most
``CONNECT_TIMEOUT_S``.  Reads and writes have no timeout: a stream may be quiet for
as long as it likes (Server-Sent Events).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from objectd.errors import OverloadedError
from objectd.fetch import Request, Response, streamed_body
from objectd.runtime.host import current_host
from objectd.streams import BodyStream

__all__ = ["CONNECT_TIMEOUT_S", "MAX_CONNECTIONS", "POOL_TIMEOUT_S", "close_client", "fetch"]

# Outbound connections open at once, all fetch() calls of the process (httpx's default),
# and how many idle ones are kept for reuse.
MAX_CONNECTIONS = 100
MAX_KEEPALIVE_CONNECTIONS = 20
# How long a fetch() waits for a pooled connection to come free, and to connect.
POOL_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 30.0
_POOL_FULL = (
    f"fetch(): all {MAX_CONNECTIONS} outbound connections are in use (each streamed "
    f"response not yet read to its end or closed holds one) and none came free within "
    f"{POOL_TIMEOUT_S:g} s"
)

_client: httpx.AsyncClient | None = None
# Closing the connections of replies dropped unread: owned here, awaited by close_client.
_closing: set[asyncio.Task[None]] = set()
_NO_BODY_STATUSES = frozenset({101, 204, 205, 304})


def _get_client() -> httpx.AsyncClient:
    global _client
    if _client is None:
        _client = httpx.AsyncClient(
            follow_redirects=True,
            timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT_S, pool=POOL_TIMEOUT_S),
            limits=httpx.Limits(
                max_connections=MAX_CONNECTIONS,
                max_keepalive_connections=MAX_KEEPALIVE_CONNECTIONS,
            ),
        )
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
    client = _get_client()
    stream = streamed_body(request)
    outgoing = client.build_request(
        request.method,
        request.url,
        headers=list(request.headers.items()),
        content=stream if stream is not None else request.body,
    )
    try:
        reply = await client.send(outgoing, stream=True)
    except httpx.PoolTimeout:
        raise OverloadedError(_POOL_FULL, retryable=True) from None
    headers = [(k, v) for k, v in reply.headers.multi_items() if k.lower() != "content-encoding"]
    if reply.status_code in _NO_BODY_STATUSES or request.method == "HEAD":
        await reply.aclose()
        response = Response(None, status=reply.status_code, headers=headers)
    else:
        response = Response(
            BodyStream(_ReplyBody(reply)), status=reply.status_code, headers=headers
        )
    if host is not None:
        await host.gate.wait_open()
    return response


class _ReplyBody:
    """An httpx reply's body as chunks (decoded as httpx decodes it); closed at its end."""

    __slots__ = ("_chunks", "_closed", "_reply")

    def __init__(self, reply: httpx.Response) -> None:
        self._reply = reply
        self._chunks: AsyncIterator[bytes] | None = None
        self._closed = False

    def __aiter__(self) -> _ReplyBody:
        return self

    async def __anext__(self) -> bytes:
        if self._chunks is None:
            self._chunks = self._reply.aiter_bytes()
        try:
            return await anext(self._chunks)
        except BaseException:  # the end, a failure, or a cancelled read: give it back
            await self.aclose()
            raise

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._reply.aclose()

    def __del__(self) -> None:
        if self._closed:
            return
        with contextlib.suppress(RuntimeError):  # no loop running: the pool is gone too
            task = asyncio.get_running_loop().create_task(self._reply.aclose())
            _closing.add(task)
            task.add_done_callback(_closing.discard)


async def close_client() -> None:
    global _client
    if _closing:
        await asyncio.gather(*_closing, return_exceptions=True)
    if _client is not None:
        await _client.aclose()
        _client = None
