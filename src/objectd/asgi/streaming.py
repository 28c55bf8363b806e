"""Sending a streamed response: each chunk as it is produced, chunked (L3).

A worker's ``Response`` whose body is an async iterable goes out without a
Content-Length, so uvicorn frames it with chunked transfer encoding and writes each
chunk to the socket as it is sent (its only wait is for a slow client to drain, which
is the stream's back-pressure: the next chunk is asked for only then).  While the
body is produced, the client connection is watched: when the client goes away the
chunk being produced is cancelled and the stream closed (``aclose()``: an async
generator's ``finally`` runs), whether it was sending or waiting for its next chunk.

A stream that raises ends the connection without the closing chunk, so the client
sees a truncated body, never a complete one; the error is logged once, here.  A
graceful shutdown ends the streams in progress the same way, as lost connections (their
generators are closed), rather than waiting up to its timeout for them: an
``EventSource`` reconnects by itself.  Under
objectd's own HTTP protocol the connection is ended through the ``objectd.abort``
scope extension (``asgi.protocol``); in another ASGI server the exception is left to
the server, which closes the connection and logs it.

The client's leaving is seen through the connection, not only through ``receive()``:
while a request body nobody read is still announced, ``receive()`` belongs to that
body's reader and says nothing of the connection (a PUT announcing 200 MiB that sent
none of it, then closed, left its stream running forever).  objectd's protocol offers
the ``objectd.disconnected`` scope extension, an ``asyncio.Event`` set when the
connection is gone; another ASGI server is watched through ``receive()`` alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from objectd.asgi.answers import FRAMING
from objectd.report import format_report
from objectd.streams import BodyStream

__all__ = ["ABORT_EXTENSION", "DISCONNECTED_EXTENSION", "STREAMING", "send_streamed"]

log = logging.getLogger("objectd")

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# The scope extension objectd's HTTP protocol offers: end the connection at once.
ABORT_EXTENSION = "objectd.abort"
# The scope extension objectd's HTTP protocol offers: an asyncio.Event set once the
# connection is gone (lost, or ended by the server).
DISCONNECTED_EXTENSION = "objectd.disconnected"
# Set in the scope while a streamed body is being sent: a graceful shutdown ends such a
# response at once (it may last forever, as Server-Sent Events do) instead of waiting.
STREAMING = "objectd.streaming"


async def send_streamed(
    scope: MutableMapping[str, Any],
    receive: Receive,
    send: Send,
    status: int,
    headers: list[tuple[bytes, bytes]],
    stream: BodyStream,
    *,
    head: bool = False,
) -> None:
    """Send the head, then every chunk of ``stream`` as it comes; always close it."""
    headers = [(name, value) for name, value in headers if name not in FRAMING]
    try:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if head:  # HEAD: nothing of the body is produced
            await send({"type": "http.response.body", "body": b""})
            return
        scope[STREAMING] = True
        gone: asyncio.Event | None = scope.get("extensions", {}).get(DISCONNECTED_EXTENSION)
        pump = asyncio.ensure_future(_pump(send, stream, gone))
        tasks: list[asyncio.Future[Any]] = [pump, asyncio.ensure_future(_watch(receive))]
        if gone is not None:
            tasks.append(asyncio.ensure_future(gone.wait()))
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:  # the tasks are ours: none outlives this call
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if not pump.cancelled() and pump.exception() is not None:
            error = pump.exception()
            assert error is not None
            report = format_report(error)
            log.error("objectd: a streamed response failed\n%s", report.rstrip("\n"))
            abort = scope.get("extensions", {}).get(ABORT_EXTENSION)
            if abort is None:
                raise error
            abort()
    finally:
        with contextlib.suppress(Exception):  # the stream's own failure was reported above
            await stream.aclose()


async def _pump(send: Send, stream: BodyStream, gone: asyncio.Event | None) -> None:
    """Send each chunk; stop as soon as the connection is gone.

    A disconnected connection's send() returns without suspending, and so does a
    connected one whose transport keeps up: a generator that never awaits would then
    hold the loop (every other request, and the watch that would stop it).  So the
    loop gets a turn after each chunk, and ``gone`` is checked after each send."""
    async for chunk in stream:
        if chunk:  # an empty chunk would read as the end of a chunked body
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if gone is not None and gone.is_set():
                return
        await asyncio.sleep(0)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _watch(receive: Receive) -> None:
    """Return when ``receive()`` says the client has gone away (once a request body
    still arriving was read, if ``receive`` waits for that)."""
    while (await receive())["type"] != "http.disconnect":
        pass
