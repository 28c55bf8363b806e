"""Streamed bodies: a body given as an async iterable of chunks, read once (L0).

``Response(body)`` (and ``Request(body=)``) also take an async iterable of ``bytes`` or
``str`` chunks, an async generator most often.  Such a body is a :class:`BodyStream`:
read once, chunk by chunk (``async for chunk in response.stream()``), or all at once
(``await response.bytes()``), after which it is kept as bytes like any whole body.
Read whole, a stream may hold at most ``MAX_WHOLE_BYTES`` (100 MiB, the limit of a
request body read whole): past it the read fails with ``DurableObjectRangeError`` and
the stream is closed, so an endless stream read whole cannot take the process's memory.
A ``str`` chunk is sent as UTF-8; any other chunk type is refused with the offending
type when it is produced.  Closing a stream (``aclose()``) closes its source, so an
async generator's ``finally`` runs: the front closes it when the client goes away.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from objectd.errors import DurableObjectRangeError, DurableObjectTypeError

__all__ = ["MAX_WHOLE_BYTES", "BodyStream", "stream_of"]

# The most of a streamed body read whole (bytes(), text(), json()...): 100 MiB.
MAX_WHOLE_BYTES = 100 * 1024 * 1024

_USED = (
    "Body has already been used. It can only be used once: read it with "
    "await bytes()/text()/json() or iterate stream(), not both."
)


class BodyStream:
    """A streamed body: an async iterator of ``bytes`` chunks, iterated once."""

    __slots__ = ("_iterator", "_source", "_used")

    def __init__(self, source: AsyncIterable[Any]) -> None:
        if not isinstance(source, AsyncIterable):
            raise DurableObjectTypeError(
                f"a streamed body must be an async iterable of bytes or str chunks, "
                f"got {type(source).__name__}"
            )
        self._source = source
        self._iterator: AsyncIterator[Any] | None = None
        self._used = False

    @classmethod
    def of_bytes(cls, body: bytes | None) -> BodyStream:
        """A whole body as a stream of one chunk (none if it is empty)."""
        return cls(_once(body))

    @property
    def used(self) -> bool:
        """Iteration has begun (or the whole body was read): it cannot start again."""
        return self._used

    def __aiter__(self) -> BodyStream:
        if self._used:
            raise DurableObjectTypeError(_USED)
        self._used = True
        self._iterator = aiter(self._source)
        return self

    async def __anext__(self) -> bytes:
        if self._iterator is None:
            self.__aiter__()
            assert self._iterator is not None
        chunk = await anext(self._iterator)
        if type(chunk) is bytes:
            return chunk
        if isinstance(chunk, str):
            return chunk.encode("utf-8")
        if isinstance(chunk, bytes | bytearray | memoryview):
            return bytes(chunk)
        raise DurableObjectTypeError(
            f"a streamed body's chunks must be bytes or str, got {type(chunk).__name__}"
        )

    async def aclose(self) -> None:
        """Close the source (an async generator's ``finally`` runs); idempotent."""
        source = self._iterator if self._iterator is not None else self._source
        self._used = True
        closer = getattr(source, "aclose", None)
        if closer is not None:
            await closer()

    async def read(self, limit: int | None = None) -> bytes:
        """Every chunk, joined; past ``limit`` bytes the stream is closed and refused."""
        if self._used:
            raise DurableObjectTypeError(_USED)
        # A source may read itself whole, with limits of its own (a request body that
        # is still arriving: asgi.request_body).
        read_whole = getattr(self._source, "read_whole", None)
        if read_whole is not None:
            self._used = True
            whole: bytes = await read_whole()
            return whole
        parts: list[bytes] = []
        size = 0
        try:
            async for chunk in self:
                size += len(chunk)
                if limit is not None and size > limit:
                    raise DurableObjectRangeError(
                        f"a streamed body of more than {limit} bytes cannot be read whole; "
                        "iterate stream() instead"
                    )
                parts.append(chunk)
        finally:
            await self.aclose()
        return b"".join(parts)

    def __repr__(self) -> str:
        return f"<BodyStream of {type(self._source).__name__}{' (used)' if self._used else ''}>"


def stream_of(body: object) -> BodyStream:
    """The :class:`BodyStream` of a body that is neither None, str nor bytes."""
    if isinstance(body, BodyStream):
        if body.used:
            raise DurableObjectTypeError(_USED)
        return body
    if isinstance(body, AsyncIterable):
        return BodyStream(body)
    raise DurableObjectTypeError(
        f"a body must be str, bytes, Blob, FormData or an async iterable of chunks, got "
        f"{type(body).__name__}"
    )


async def _once(body: bytes | None) -> AsyncIterator[bytes]:
    if body:
        yield body
