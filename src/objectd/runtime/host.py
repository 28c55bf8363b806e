"""One object's home in this process: its live instance and every event delivered to it.

An :class:`ObjectHost` exists per object id that has been reached.  It owns:

* the instance (constructed lazily by the first event, again after a reset);
* the object's database file and ``ctx.storage`` (one per activation);
* the input gate, so events enter in arrival order and critical sections hold
  everything else back;
* every task it runs (events, ``block_concurrency_while`` callbacks, ``wait_until``):
  none is left unowned, and a reset cancels them with the reset error.

Each event runs in a task of its own, created when the call is made.  That keeps
delivery order equal to call order (tasks start FIFO and enter the gate at once),
keeps an event running to completion when its caller goes away, and makes the
event's context (``current_host``) available to outgoing calls, which wait for this
object's output gate before they leave.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from objectd.errors import (
    DurableObjectAbort,
    ObjectResetError,
    OverloadedError,
    as_remote,
)
from objectd.ids import DurableObjectId
from objectd.report import object_label
from objectd.runtime.abandon import abandon
from objectd.runtime.committer import Batch
from objectd.runtime.exits import exit_error, from_signal, stray_cancel_error
from objectd.runtime.gates import InputGate, in_critical_section
from objectd.runtime.lifecycle import LIVE_LIMIT_MESSAGE
from objectd.runtime.metrics import ResetCause
from objectd.runtime.phase import HAS_FILE, HostPhase, advance
from objectd.runtime.state import DurableObjectState
from objectd.runtime.storage_api import STORAGE_TIMEOUT, DurableObjectStorage
from objectd.runtime.watchdog import CPU_LIMIT_MESSAGE, CpuLimitExceeded
from objectd.storage.database import ObjectDatabase

if TYPE_CHECKING:
    from objectd.runtime.registry import ObjectClass

__all__ = ["CPU_LIMIT_MESSAGE", "EVENT_CODE", "ObjectHost", "current_host"]

T = TypeVar("T")
log = logging.getLogger("objectd.runtime")

current_host: contextvars.ContextVar[ObjectHost | None] = contextvars.ContextVar(
    "objectd_current_host", default=None
)

_BCW_TIMEOUT = (
    "A call to blockConcurrencyWhile() in a Durable Object waited for too long. "
    "The call was canceled and the Durable Object was reset."
)


class _Event:
    __slots__ = ("reset_error", "started", "task")

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None
        self.started = False
        self.reset_error: BaseException | None = None


class ObjectHost:
    def __init__(self, object_class: ObjectClass, object_id: DurableObjectId) -> None:
        self.object_class = object_class
        self.id = object_id
        self.settings = object_class.settings
        self.clock = self.settings.clock
        self.gate = InputGate()
        # Where the file and the instance are (runtime.phase): the only record of it.
        self.phase = HostPhase.COLD
        self.instance: Any = None
        self.state: DurableObjectState | None = None
        self.storage: DurableObjectStorage | None = None
        self._db: ObjectDatabase | None = None  # set exactly in HAS_FILE phases
        self._tasks: set[asyncio.Task[Any]] = set()
        self._events: set[_Event] = set()
        self._queued = 0  # events submitted and not finished (the overload bound)
        self._previous_batch: Batch | None = None
        self._ready: asyncio.Future[None] | None = None  # OPENING: resolved once adopted
        self.activations = 0
        self.idle_since = self.clock.monotonic()
        self.last_touch = self.idle_since
        # Attached by runtime.websockets when the object accepts a socket: it decides
        # whether the object may be evicted and keeps hibernated sockets across it.
        self.websockets: Any = None
        # Set by runtime.alarms while alarm() runs (getAlarm() semantics, retries).
        self.current_alarm: Any = None
        # Streamed responses of the object still open (runtime.streaming): they pin it.
        self.streams = 0

    @property
    def about(self) -> dict[str, str]:
        """A log record's ``extra`` for lines about this object (``--log-format json``)."""
        return {"class": self.object_class.name, "id": str(self.id)}

    # -- submitting events ---------------------------------------------------------------

    def submit(
        self, call: Callable[[Any], Awaitable[T]], *, after: Batch | None = None
    ) -> asyncio.Task[T]:
        """Deliver ``call(instance)`` as the next event; ``after``: the caller's output gate.

        Raises :class:`OverloadedError` at once when too many events are queued.
        """
        counts = self.object_class.counts
        if self._queued >= self.settings.max_queued_events:
            counts.overloads += 1
            raise OverloadedError("Durable Object is overloaded. Too many requests queued.")
        counts.events += 1
        event = _Event()
        # Fails when it starts, if set: the code was updated, or the project closed.
        event.reset_error = self.object_class.retired
        if self.object_class.closed:
            event.reset_error = self.object_class.closed_error()
        task = asyncio.get_running_loop().create_task(self._run_event(event, call, after))
        event.task = task
        self._events.add(event)  # registered before it starts, so a reset reaches it
        self._queued += 1
        self.object_class.committer.events_in_flight += 1
        task.add_done_callback(self._event_done)
        self.own(task)
        return task

    def _event_done(self, task: asyncio.Task[Any]) -> None:
        self._queued -= 1
        self.object_class.committer.events_in_flight -= 1
        # A caller may drop a stub call without awaiting it (common in JS-style code):
        # its failure then belongs to nobody and must not be logged as unretrieved.
        _mark_retrieved(task)

    def own(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self.idle_since = self.clock.monotonic()

    async def _run_event(
        self, event: _Event, call: Callable[[Any], Awaitable[T]], after: Batch | None
    ) -> T:
        event.started = True
        current_host.set(self)
        lifecycle = self.object_class.lifecycle
        try:
            if event.reset_error is not None:  # reset while queued: fail as in-flight ones do
                raise event.reset_error
            if after is not None:  # the caller's writes before this call must be durable
                try:
                    async with self.clock.timeout(self.settings.output_gate_timeout_s):
                        await after.wait()
                except TimeoutError:
                    raise OverloadedError(STORAGE_TIMEOUT) from None
            await self.gate.enter()
            if lifecycle is not None:
                lifecycle.touch(self)
            if self.phase is not HostPhase.LIVE:
                await self._ensure_open()
                if self.phase is HostPhase.OPEN:
                    try:
                        self._activate()
                    except CpuLimitExceeded:
                        raise self.cpu_limit_reset() from None
            await self.gate.wait_open()  # a constructor's block_concurrency_while
            storage = self.storage
            assert storage is not None
            try:
                result = await call(self.instance)
            except DurableObjectAbort as abort:
                raise ObjectResetError(abort.reason, remote=True) from None
            except CpuLimitExceeded:
                raise self.cpu_limit_reset() from None
            except Exception as exc:
                await self._output_gate(storage)
                raise as_remote(exc, where=object_label(self.object_class.name, self.id)) from None
            except asyncio.CancelledError as exc:
                failure = stray_cancel_error(exc)
                if failure is None:
                    raise  # a real cancellation (a reset, shutdown): handled below
                await self._output_gate(storage)
                where = object_label(self.object_class.name, self.id)
                raise as_remote(failure, where=where) from None
            await self._output_gate(storage)
            return result
        except asyncio.CancelledError:
            if event.reset_error is not None:
                raise event.reset_error from None
            raise
        except (SystemExit, KeyboardInterrupt) as exc:  # in the constructor or the handler
            if from_signal(exc):
                raise
            raise self._reset_with(exit_error(exc), ResetCause.EXIT) from None
        finally:
            self._events.discard(event)

    async def _output_gate(self, storage: DurableObjectStorage) -> None:
        """Wait for this event's writes to be durable (spec §6).

        A batch that takes too long resets the object by its own timer
        (``DurableObjectStorage._batch_expired``), which fails this wait.
        """
        batch = storage._gate_batch
        if batch is None or (batch.done and batch.error is None):
            return  # nothing pending (the common case for reads)
        self.object_class.counts.output_gate_waits += 1
        await storage.wait_output_gate()

    # -- activation and reset ------------------------------------------------------------

    def _advance(self, target: HostPhase) -> None:
        self.phase = advance(self.phase, target)

    @property
    def constructing(self) -> bool:
        """The constructor is running (setAlarm is allowed there without alarm())."""
        return self.phase is HostPhase.CONSTRUCTING

    async def _ensure_open(self) -> None:
        """Bring the file to a HAS_FILE phase: the one way an event gets it opened.

        The file is opened at most once, whatever the events in flight: the first event
        that finds the host COLD opens it (after the previous instance's file finished
        closing), every later one waits in OPENING for that same open, and nothing else
        opens it.  A lone event opens inline (a thread hop would only add latency);
        with other events in flight the open runs in a worker thread, because creating
        files waits for the filesystem's journal, which other objects' syncs keep busy.
        SQLite never waits for a lock here (``busy_timeout`` is 0): if another
        connection holds the file, the open fails at once instead of stalling the loop.
        """
        while self.phase not in HAS_FILE:
            if self.phase is HostPhase.OPENING:
                assert self._ready is not None
                await asyncio.shield(self._ready)  # raises the open's failure
                continue
            closing = self.object_class.closing
            pending = closing.get(self.id)
            if pending is not None:  # the evicted instance's file is still closing
                await asyncio.wait({pending})
                if closing.get(self.id) is pending:
                    del closing[self.id]
                continue
            lifecycle = self.object_class.lifecycle
            if lifecycle is not None and not lifecycle.admit():
                self._refuse_activation()
            if self.object_class.committer.events_in_flight > 1:
                self._open_in_thread()
                continue
            try:
                db = self._open_database()
            finally:
                if lifecycle is not None:
                    lifecycle.admitted()
            self._advance(HostPhase.OPEN)
            self._database_opened(db)

    def _refuse_activation(self) -> NoReturn:
        """Every live object is pinned at ``max_live_objects``: this one is not opened
        (runtime.lifecycle).  A host nothing else waits on leaves the table, so refused
        ids do not pile up there; the next event of the id gets a fresh one."""
        oc = self.object_class
        oc.counts.overloads += 1
        if len(self._events) <= 1 and self.websockets is None and oc.hosts.get(self.id) is self:
            del oc.hosts[self.id]
        raise OverloadedError(LIVE_LIMIT_MESSAGE, retryable=True)

    def _open_database(self) -> ObjectDatabase:
        oc = self.object_class
        return ObjectDatabase(oc.object_path(self.id), backend=oc.backend, spares=oc.spares)

    def _database_opened(self, db: ObjectDatabase) -> None:
        self._db = db
        # Tracked from the moment the file is open, not from construction: a host whose
        # constructor failed (or whose events were reset) holds the file too, and must
        # be evicted like any other idle one.
        lifecycle = self.object_class.lifecycle
        if lifecycle is not None:
            lifecycle.activated(self)
        spares = self.object_class.spares
        if db.created and spares is not None and spares.needs_refill:
            self.object_class.committer.run_in_thread(
                spares.refill, failure="could not make spare object files"
            )

    def _open_in_thread(self) -> None:
        """COLD -> OPENING: open the file in a worker thread; ``_ready`` says when it is in.

        The thread's connection is adopted by :meth:`_opened` before ``_ready`` resolves,
        so a waiter that wakes always finds the host OPEN (or COLD, with the error).
        Eviction waits for it; if every event that asked for it was reset meanwhile, the
        connection is closed again instead of adopted.
        """
        self._advance(HostPhase.OPENING)
        self._ready = asyncio.get_running_loop().create_future()
        opening = self.object_class.committer.run_in_thread(self._open_database)
        opening.add_done_callback(self._opened)

    def _opened(self, opening: asyncio.Future[ObjectDatabase]) -> None:
        if self.object_class.lifecycle is not None:
            self.object_class.lifecycle.admitted()
        ready, self._ready = self._ready, None
        assert ready is not None
        error = None if opening.cancelled() else opening.exception()
        if opening.cancelled() or error is not None:
            self._advance(HostPhase.COLD)
            log.error(
                "object %s of %s: opening its file failed: %r",
                self.id,
                self.object_class.name,
                error,
                extra=self.about,
            )
            if error is None:
                ready.cancel()  # the executor was shut down
            else:
                ready.set_exception(error)
                ready.add_done_callback(_mark_retrieved)  # logged above; waiters get it too
            return
        db = opening.result()
        if any(event.reset_error is None for event in self._events):
            self._advance(HostPhase.OPEN)
            self._database_opened(db)
        else:  # every event that wanted it was reset meanwhile: nobody would use it
            self._advance(HostPhase.COLD)
            self._close_in_thread(db)
        ready.set_result(None)

    def _activate(self) -> None:
        oc = self.object_class
        assert self._db is not None
        self._advance(HostPhase.CONSTRUCTING)
        self.storage = DurableObjectStorage(self._db, oc.committer, self)
        self.state = DurableObjectState(self)
        self.activations += 1
        oc.counts.activations += 1
        cls: Any = oc.cls
        instance = cls.__new__(cls)
        # Set before __init__ runs, so a subclass that forgets super().__init__ still works.
        instance.ctx = self.state
        instance.env = oc.env
        try:
            instance.__init__(self.state, oc.env)
        except DurableObjectAbort as abort:
            self.reset(ObjectResetError(abort.reason), cause=ResetCause.ABORT)
            raise ObjectResetError(abort.reason, remote=True) from None
        except Exception as exc:
            # The triggering call fails; the next one constructs again (spec §3).
            self.reset(ObjectResetError(str(exc)), cause=ResetCause.CONSTRUCTOR)
            raise as_remote(exc, where=object_label(oc.name, self.id)) from None
        except asyncio.CancelledError as exc:
            failure = stray_cancel_error(exc)
            if failure is None:
                raise
            self.reset(ObjectResetError(str(failure)), cause=ResetCause.CONSTRUCTOR)
            raise as_remote(failure, where=object_label(oc.name, self.id)) from None
        self.instance = instance
        self._advance(HostPhase.LIVE)

    def _drop_instance(self, error: BaseException | None = None) -> None:
        """Forget the instance and its storage view; the open batch (if any) is discarded."""
        if self.storage is not None:
            # A committed batch may still be syncing in a thread: eviction waits for it.
            self._previous_batch = self.storage.last_batch
            self.storage.close_for_reset(error)
        self.instance = None
        self.state = None
        self.storage = None
        self.gate = InputGate()
        if self.phase in (HostPhase.CONSTRUCTING, HostPhase.LIVE):
            self._advance(HostPhase.OPEN)

    def cpu_limit_reset(self) -> ObjectResetError:
        """Reset after the CPU limit stopped the object's code; the error for its caller."""
        return self._reset_with(
            ObjectResetError(CPU_LIMIT_MESSAGE, remote=True), ResetCause.CPU_LIMIT
        )

    def _reset_with(self, error: ObjectResetError, cause: ResetCause) -> ObjectResetError:
        self.reset(error, cause=cause)
        return error

    def reset(self, error: BaseException, *, cause: ResetCause = ResetCause.OTHER) -> None:
        """Drop the instance: uncommitted writes vanish; other events fail with ``error``."""
        self.object_class.counts.resets[cause] += 1
        log.warning(
            "object %s of %s reset: %s",
            self.id,
            self.object_class.name,
            error,
            extra=self.about,
        )
        self._drop_instance(error)
        me = asyncio.current_task()
        for event in list(self._events):
            if event.task is not None and event.task is not me and not event.task.done():
                event.reset_error = error
                if event.started:  # a queued event fails when it starts (see _run_event)
                    event.task.cancel()
        for task in list(self._tasks):
            if task is not me and not task.done() and not any(e.task is task for e in self._events):
                task.cancel()
        if self.websockets is not None:
            self.websockets.reset(error)  # spec §8: a reset disconnects every socket

    # -- critical sections ---------------------------------------------------------------

    @asynccontextmanager
    async def critical_section(self) -> AsyncIterator[None]:
        gate = self.gate
        gate.lock()
        token = in_critical_section.set(True)
        try:
            yield
        finally:
            in_critical_section.reset(token)
            gate.unlock()

    def block_concurrency_while(self, callback: Callable[[], Any]) -> asyncio.Task[Any]:
        """Lock the gate now and run ``callback`` to completion; a failure resets the object."""
        gate = self.gate
        gate.lock()
        task = asyncio.get_running_loop().create_task(self._run_critical(gate, callback))
        self.own(task)
        task.add_done_callback(_mark_retrieved)
        return task

    async def _run_critical(self, gate: InputGate, callback: Callable[[], Any]) -> Any:
        in_critical_section.set(True)
        try:
            async with self.clock.timeout(self.settings.critical_section_timeout_s):
                result = callback()
                if inspect.isawaitable(result):
                    result = await result
            return result
        except TimeoutError:
            error = OverloadedError(_BCW_TIMEOUT, durable_object_reset=True)
            self.reset(error, cause=ResetCause.CRITICAL_SECTION_TIMEOUT)
            raise error from None
        except DurableObjectAbort as abort:
            self.reset(ObjectResetError(abort.reason), cause=ResetCause.ABORT)
            raise ObjectResetError(abort.reason, remote=True) from None
        except CpuLimitExceeded:
            raise self.cpu_limit_reset() from None
        except (SystemExit, KeyboardInterrupt) as exc:
            if from_signal(exc):
                raise
            raise self._reset_with(exit_error(exc), ResetCause.EXIT) from None
        except Exception as exc:
            failed = ObjectResetError(f"blockConcurrencyWhile() callback failed: {exc}")
            self.reset(failed, cause=ResetCause.CRITICAL_SECTION)
            raise as_remote(exc) from None
        except asyncio.CancelledError as exc:
            failure = stray_cancel_error(exc)
            if failure is None:
                raise
            failed = ObjectResetError(f"blockConcurrencyWhile() callback failed: {failure}")
            self.reset(failed, cause=ResetCause.CRITICAL_SECTION)
            raise as_remote(failure) from None
        finally:
            gate.unlock()

    def wait_until(self, awaitable: Awaitable[Any]) -> None:
        self.own(asyncio.get_running_loop().create_task(self._run_background(awaitable)))

    async def _run_background(self, awaitable: Awaitable[Any]) -> None:
        try:
            await awaitable
        except CpuLimitExceeded:
            self.reset(ObjectResetError(CPU_LIMIT_MESSAGE), cause=ResetCause.CPU_LIMIT)
        except (SystemExit, KeyboardInterrupt) as exc:
            if from_signal(exc):
                raise
            self.reset(exit_error(exc), cause=ResetCause.EXIT)
        except Exception:
            log.exception("object %s: a wait_until() task failed", self.id, extra=self.about)
        except asyncio.CancelledError as exc:
            failure = stray_cancel_error(exc)
            if failure is None:
                raise
            log.error(
                "object %s: a wait_until() task failed: %s",
                self.id,
                failure,
                exc_info=exc,
                extra=self.about,
            )

    # -- eviction and shutdown -----------------------------------------------------------

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    def running_tasks(self) -> set[asyncio.Task[Any]]:
        """Its tasks still running and not cancelled (a reset cancels them)."""
        return {task for task in self._tasks if not task.done() and not task.cancelling()}

    @property
    def live(self) -> bool:
        """The file is open or being opened: nothing else in this process may touch it."""
        return self.phase is not HostPhase.COLD

    def can_evict(self) -> bool:
        """No work in progress, no stream open, every write durable, and no socket pins
        the instance."""
        if self._tasks or self.streams or self.phase is HostPhase.OPENING:
            return False
        if self.storage is not None and not self.storage.quiescent:
            return False
        if self._previous_batch is not None and not self._previous_batch.done:
            return False
        return self.websockets is None or self.websockets.allows_eviction()

    def evict(self) -> None:
        """Drop the instance and close its file; the next event constructs it again.

        Only called when :meth:`can_evict` holds, so nothing uncommitted is lost.  A host
        whose hibernatable sockets stay open is kept (its sockets wake it); otherwise it
        leaves the class's table.
        """
        self._drop_instance()
        if self._db is not None:
            self._close_in_thread(self._db)
            self._db = None
            self._advance(HostPhase.COLD)
        if self.object_class.lifecycle is not None:
            self.object_class.lifecycle.forget(self)
        keep = self.websockets is not None and self.websockets.holds_sockets()
        if not keep and self.object_class.hosts.get(self.id) is self:
            del self.object_class.hosts[self.id]

    def _close_in_thread(self, db: ObjectDatabase) -> None:
        """Close ``db`` off the event loop; activation of this id waits for it."""
        closing = self.object_class.closing
        fut = self.object_class.committer.run_in_thread(
            db.close, failure=f"object {self.id}: closing its file failed"
        )
        closing[self.id] = fut

        def closed(done: asyncio.Future[None]) -> None:
            if closing.get(self.id) is done:
                del closing[self.id]

        fut.add_done_callback(closed)

    async def close(self) -> None:
        """Let running work finish, then close the database (its writes are committed).

        Work already cancelled (a reset) gets ``settings.cancel_wait_s`` to end: code that
        swallows its cancellation is abandoned, logged, so that shutdown does not hang.
        """
        running = self.running_tasks()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        cancelled = {task for task in self._tasks if not task.done()}
        if cancelled:
            _, stuck = await asyncio.wait(cancelled, timeout=self.settings.cancel_wait_s)
            if stuck:
                abandon(stuck)
                log.error(
                    "object %s of %s: abandoning %d task(s) that ignored their cancellation "
                    "at shutdown: code must not catch CancelledError without re-raising it",
                    self.id,
                    self.object_class.name,
                    len(stuck),
                    extra=self.about,
                )
        if self._ready is not None:  # adopted by _opened, then closed below
            await asyncio.gather(self._ready, return_exceptions=True)
        await self.object_class.committer.drain()
        self._drop_instance()
        if self._db is not None:
            self._db.close()
            self._db = None
            self._advance(HostPhase.COLD)


# The runners of an object's code (``self`` is the host): the CPU watchdog's report names
# the object stuck in one of them (runtime.user_tasks.stuck_in).
EVENT_CODE = (
    ObjectHost._run_event.__code__,
    ObjectHost._run_critical.__code__,
    ObjectHost._run_background.__code__,
)


def _mark_retrieved(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
