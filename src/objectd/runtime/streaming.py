"""A streamed body leaving a Durable Object: produced in the object, gated per chunk.

An object's ``fetch`` may answer ``Response(generator())``.  The generator is the
object's code, so each chunk is produced as an event's code is: in a task the object's
host owns (``current_host`` is the object, so calls the generator makes wait for the
object's output gate; a reset cancels it), after any critical section of the object
(``block_concurrency_while``) ends.  Each chunk is an output (spec §6, checklist 75): it
is handed over only once every write the object made before producing it is durable,
as a whole response is.

The caller pulls: the next chunk is produced only when the previous one was taken, so
a slow client slows the generator down instead of filling a queue (there is none: what
waits is what the connection's transport holds and the one chunk produced next).
While the stream is open the object is not evicted (a long-lived stream keeps its
object live, as a standard WebSocket does); it is released when the stream ends, fails,
or is closed because the client went away: the chunk being produced is cancelled and
the generator closed, so its ``finally`` runs inside the object.  A reset of the
object ends its streams with the reset error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from objectd.errors import DurableObjectAbort, ObjectResetError, as_remote
from objectd.fetch import Response, streamed_body
from objectd.report import object_label
from objectd.runtime.host import current_host
from objectd.runtime.watchdog import CpuLimitExceeded
from objectd.streams import BodyStream

if TYPE_CHECKING:
    from objectd.runtime.host import ObjectHost

__all__ = ["stream_from_object"]

_RESET = "Durable Object was reset while it was streaming a response."


def stream_from_object(response: Response, host: ObjectHost) -> Response:
    """``response`` as its caller gets it: a streamed body pulled through ``host``."""
    stream = streamed_body(response)
    if stream is None:
        return response
    chunks = _ObjectChunks(host, stream)
    out = Response(
        BodyStream(chunks),
        status=response.status,
        status_text=response.status_text,
        headers=response.headers,
    )
    out.url = response.url
    return out


class _ObjectChunks:
    """The object's chunks, each produced in a task its host owns (see the module)."""

    __slots__ = ("_activation", "_closed", "_done", "_host", "_iterator", "_stream")

    def __init__(self, host: ObjectHost, stream: BodyStream) -> None:
        self._host = host
        self._stream = stream
        self._iterator: BodyStream | None = None
        self._activation = host.activations
        self._done = False  # ended, failed or closed: it no longer pins the object
        self._closed = False  # aclose() ran (the generator is closed)
        host.streams += 1  # until the stream ends: the object stays live

    def __aiter__(self) -> _ObjectChunks:
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        chunk: bytes | None = await self._in_object(self._next_chunk)
        if chunk is None:
            self._finish()
            raise StopAsyncIteration
        return chunk

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._in_object(self._stream.aclose)
        finally:
            self._finish()

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self._host.streams -= 1

    def __del__(self) -> None:
        # A caller that dropped the stream unread must not keep the object live forever.
        self._finish()

    async def _in_object(self, work: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``work()`` in a task of the object's; the caller's cancellation reaches it."""
        host = self._host
        task = asyncio.get_running_loop().create_task(_as_object(host, work))
        host.own(task)
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                self._finish()  # the caller went away: the generator was cancelled
                raise
            # Not ours: the object was reset, which cancels every task it owns.
            self._finish()
            raise ObjectResetError(_RESET, remote=True) from None
        except BaseException:
            self._finish()
            raise

    async def _next_chunk(self) -> bytes | None:
        host = self._host
        if host.activations != self._activation or host.instance is None:
            raise ObjectResetError(_RESET, remote=True)
        await host.gate.wait_open()  # not while another event's critical section runs
        if self._iterator is None:
            self._iterator = aiter(self._stream)
        try:
            chunk = await anext(self._iterator)
        except StopAsyncIteration:
            return None
        storage = host.storage
        if storage is not None:
            batch = storage.output_gate_batch()
            if batch is not None:  # the writes made before this chunk must be durable
                await batch.wait()
        return chunk


async def _as_object(host: ObjectHost, work: Callable[[], Awaitable[Any]]) -> Any:
    """``work()`` as the object's code: its failures reach the caller as an event's do."""
    current_host.set(host)  # this task's own context: calls made here are the object's
    try:
        return await work()
    except DurableObjectAbort as abort:  # ctx.abort() in the generator has reset the object
        raise ObjectResetError(abort.reason, remote=True) from None
    except CpuLimitExceeded:  # counted as the CPU limit's reset, as for any event
        raise host.cpu_limit_reset() from None
    except ObjectResetError:
        raise
    except Exception as exc:  # the stream fails; the object goes on
        raise as_remote(exc, where=object_label(host.object_class.name, host.id)) from None
