"""A request body still arriving when the worker is called: streamed, or read whole.

Most bodies arrive with their head (one ASGI message): the front hands them to the
worker whole, as bytes.  A body that does not (a large upload, a slow client, or a
``Content-Length`` over the buffered limit) becomes an :class:`IncomingBody`, the
source of the request's streamed body, read only when the worker asks:

- ``async for chunk in request.stream()`` takes each chunk as it arrives, through the
  worker or the object it was passed to with ``stub.fetch(request)``; nothing is
  buffered here, and uvicorn stops reading the socket while the reader is behind
  (about 64 KiB per connection), so a slow reader slows the client down.  The 100 MiB
  limit does not apply to a streamed body.
- ``await request.bytes()`` (``text()``, ``json()``) reads it whole, with the limits a
  buffered body always had (issue 9 §8): at most ``MAX_BODY_BYTES`` (refused at once
  when the announced length is larger, before any of it is read, so no "100 Continue"
  invites it) and a share of the process-wide budget, taken as the bytes arrive.  A
  refused read raises, and the front answers 413 or 503 whatever the worker then does,
  as a platform limit.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from objectd.errors import ConnectionLostError, DurableObjectRangeError, OverloadedError

__all__ = ["IncomingBody"]

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]

_TOO_LARGE = (413, b"Payload Too Large")
_BUSY = (503, b"Service Unavailable")
_LOST = "the client went away before it sent the whole request body"


class IncomingBody:
    """The rest of one request's body, read from ASGI ``receive`` on demand."""

    __slots__ = (
        "_finished",
        "_first",
        "_limit",
        "_more",
        "_receive",
        "_reserve",
        "announced",
        "lost",
        "refused",
        "reserved",
    )

    def __init__(
        self,
        receive: Receive,
        first: bytes | None,
        *,
        announced: int | None,
        limit: int,
        reserve: Callable[[int], bool],
    ) -> None:
        self._receive = receive
        self._first = first  # received already (None: nothing received yet)
        self._more = True  # the body has not all been received
        self._finished: asyncio.Event | None = None  # set once it has (receive_after)
        self._limit = limit
        self._reserve = reserve
        self.announced = announced  # Content-Length, if any
        self.lost = False  # the client went away before it sent the whole body
        self.reserved = 0  # bytes of the budget taken by a whole read (given back by the front)
        # The answer the front owes when a whole read was refused: (status, reason).
        self.refused: tuple[int, bytes] | None = None

    async def receive_after(self) -> MutableMapping[str, Any]:
        """``receive()``, once the body has all been received: a second reader would take
        the body's messages."""
        if self._more:
            if self._finished is None:
                self._finished = asyncio.Event()
            await self._finished.wait()
        return await self._receive()

    def _end(self) -> None:
        self._more = False
        if self._finished is not None:
            self._finished.set()

    def __aiter__(self) -> IncomingBody:
        return self

    async def __anext__(self) -> bytes:
        first, self._first = self._first, None
        if first:
            return first
        while self._more:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._end()
                self.lost = True
                raise ConnectionLostError(_LOST)
            if not message.get("more_body", False):
                self._end()
            chunk: bytes = message.get("body", b"")
            if chunk:
                return chunk
        raise StopAsyncIteration

    async def read_whole(self) -> bytes:
        """The whole body, within the buffered limits (see the module docstring)."""
        if self.announced is not None and self.announced > self._limit:
            raise self._refuse(_TOO_LARGE, f"more than {self._limit} bytes announced")
        # Each chunk is copied in as it comes, and getvalue() hands over the buffer itself
        # (CPython's BytesIO does not copy it when nothing else refers to it): the body is
        # held once, where a list of chunks and their join held it twice at the end.
        whole = io.BytesIO()
        size = 0
        async for chunk in self:
            size += len(chunk)
            if size > self._limit:
                raise self._refuse(_TOO_LARGE, f"more than {self._limit} bytes")
            if not self._reserve(len(chunk)):
                raise self._refuse(_BUSY, "the server's body buffer is full")
            self.reserved += len(chunk)
            whole.write(chunk)
        return whole.getvalue()

    def _refuse(self, answer: tuple[int, bytes], why: str) -> Exception:
        self.refused = answer
        message = f"the request body cannot be read whole: {why}; read it with request.stream()"
        if answer is _BUSY:
            return OverloadedError(message)
        return DurableObjectRangeError(message)
