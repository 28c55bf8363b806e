"""The alarm scheduler: runs each object's ``alarm()`` at or after its time (spec §7).

One scheduler per project, started by ``Project.start`` and stopped by
``Project.close``.  It owns one task, and that task owns (through a TaskGroup)
every delivery in flight, so stopping the scheduler stops them all.

What it knows.  The script's index (``storage.alarm_index``) has a row for every
object that may have an alarm, never later than that alarm.  In memory each row is
a *slot*, and a heap orders the slots by when to look at them next (``due``: the
row's time, or a retry's backoff).  Heap items are never removed: an item is live
only while its sequence number is its slot's, so moving a slot costs one push,
O(log n), and the dead item is skipped when it surfaces.  Nothing scans objects:
the index is read once at start.

Delivery.  When a slot comes due the scheduler reads the object's stored alarm --
from its file, without constructing it, when the object is not in memory, and
again inside the event -- and then either

* drops the slot and its row (the alarm was deleted),
* moves them to the stored time (the alarm was replaced by a later one), or
* runs ``alarm(alarm_info)`` as an ordinary event of the object (``host.submit``
  constructs the object first when it is not in memory).

A successful run clears the stored alarm in the same event, unless the alarm was
set or deleted while it ran: then the slot is looked at again right after, so a
new alarm set inside ``alarm()`` runs once this run completed (checklist 125).  A
failed run -- an exception, a run past ``alarm_timeout_s``, a reset -- is retried
after ``2 s << n`` plus up to 25 % jitter, at most six times; then the alarm is
abandoned: deleted, with a warning (126, 128).  Retry state lives in memory only:
after a restart a failed alarm starts again at retry 0 (delivery is at least once).

Races.  ``set_alarm`` moves a slot earlier at once, and its row too (synced before
the object's batch commits).  Moving a slot later or dropping it acts on a read of
the object's alarm; a ``set_alarm`` after that read bumps the slot's ``version``,
and the scheduler then looks again instead of acting on what it read.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import random
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from objectd.errors import InvalidIdError
from objectd.ids import DurableObjectId, IdMinter
from objectd.report import format_report
from objectd.runtime.alarm_ops import AlarmRun, Seen, delete_alarm, run_alarm, stored_alarm
from objectd.runtime.committer import Committer
from objectd.runtime.exits import stray_cancel_error
from objectd.runtime.settings import RuntimeSettings
from objectd.runtime.watchdog import CpuLimitExceeded
from objectd.storage.alarm_index import AlarmIndex, read_object_alarm

if TYPE_CHECKING:
    from objectd.runtime.host import ObjectHost
    from objectd.runtime.registry import ObjectClass

__all__ = ["MAX_RETRIES", "AlarmScheduler", "minter_key", "namespace_key", "retry_delay"]

log = logging.getLogger("objectd.alarms")

MAX_RETRIES = 6  # workerd's ALARM_RETRY_MAX_TRIES
RETRY_START_S = 2  # workerd's ALARM_RETRY_START_SECONDS
MAX_RUNNING = 1_000  # deliveries in flight at once; the rest wait their turn

_Key = tuple[str, str]  # (namespace key, object id as 64 hex digits)


def namespace_key(object_class: ObjectClass) -> str:
    """The index key of a class: a keyed hash of its namespace secret, not its name.

    A renamed class keeps its secret (so its ids stay valid), and so keeps its alarms.
    """
    return minter_key(object_class.minter)


def minter_key(minter: IdMinter) -> str:
    """:func:`namespace_key` of the class whose ids ``minter`` makes."""
    return minter.id_from_name("objectd:alarm-index").to_string()[:32]


def retry_delay(retry_count: int, rng: random.Random) -> float:
    """Seconds before retry ``retry_count + 1``: ``2 s << retry_count`` plus up to 25 %."""
    return (RETRY_START_S << retry_count) * (1 + 0.25 * rng.random())


@dataclass(slots=True, eq=False)
class _Slot:
    time: int  # the index row's time: never later than the object's durable alarm
    due: float  # epoch ms when to look next: ``time``, or a retry after its backoff
    name: str | None  # the name the object id came from, if known (ctx.id.name)
    seq: int = -1  # the slot's live heap item
    version: int = 0  # bumped by every set_alarm: a read older than it may be stale
    failed_time: int | None = None  # the alarm time whose attempts failed
    retries: int = 0  # counted retries of failed_time so far
    # The object set this alarm in this process and has not deleted one since, so the
    # row is very likely current: no need to peek at its file before constructing it.
    trusted: bool = False


@dataclass(frozen=True, slots=True)
class _Outcome:
    seen: Seen
    version: int  # the slot's version when the object was read (after the run, for RAN)
    time: int  # the stored alarm (LATER)


class AlarmScheduler:
    """Delivers the alarms of every class of one script."""

    def __init__(
        self,
        index_path: Path,
        classes: Mapping[str, ObjectClass],
        *,
        settings: RuntimeSettings,
        committer: Committer,
        rng: random.Random | None = None,
        max_running: int = MAX_RUNNING,
    ) -> None:
        self._clock = settings.clock
        self._timeout_s = settings.alarm_timeout_s
        self._committer = committer
        self._rng = rng or random.Random()
        self._max_running = max_running
        self._classes: dict[str, ObjectClass] = {}
        self._keys: dict[str, str] = {}  # class name -> namespace key
        for object_class in classes.values():
            key = namespace_key(object_class)
            if key in self._classes:
                raise ValueError(
                    f"classes {self._classes[key].name} and {object_class.name} share a "
                    "namespace secret; each class needs its own"
                )
            self._classes[key] = object_class
            self._keys[object_class.name] = key
        for object_class in self._classes.values():
            object_class.alarms = self
        self._slots: dict[_Key, _Slot] = {}
        self._heap: list[tuple[float, int, _Key]] = []
        self._seq = itertools.count()
        self._running: set[_Key] = set()
        self._wake: asyncio.Future[None] | None = None
        self._sleep_until = math.inf
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.fired = 0  # alarm() runs that succeeded
        self.retried = 0  # alarm() runs that failed and were scheduled to run again
        self.abandoned = 0  # alarms deleted after their last retry (or abort(retry_alarm=False))
        self._index = AlarmIndex(index_path)
        # Rows of classes that are gone (deleted, or moved to another script).
        self._index.keep_only(self._classes)
        for row in self._index.load():
            slot = _Slot(time=row.time, due=row.time, name=row.name, seq=next(self._seq))
            self._slots[(row.namespace, row.object_id)] = slot
            self._heap.append((slot.due, slot.seq, (row.namespace, row.object_id)))
        heapq.heapify(self._heap)
        self._index.set_dirty_listener(self._index_dirty)

    @property
    def pending(self) -> int:
        """Objects the scheduler will look at (index rows)."""
        return len(self._slots)

    @property
    def running(self) -> int:
        """Deliveries in flight."""
        return len(self._running)

    # -- lifetime ------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="objectd-alarms")
            self._task.add_done_callback(_report_crash)

    async def stop(self) -> None:
        """Stop delivering; alarm() runs in flight are cancelled (they run again later)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def close(self) -> None:
        """Close the index (after the committer drained: it commits what is left)."""
        if not self._closed:
            self._closed = True
            for object_class in self._classes.values():
                if object_class.alarms is self:
                    object_class.alarms = None
            self._index.close()

    # -- what set_alarm tells the scheduler --------------------------------------------------

    def note_set(self, object_class: ObjectClass, object_id: DurableObjectId, time: int) -> None:
        """``set_alarm(time)`` was just written to the object's open batch.

        The slot (and the index row, synced before the object's batch commits) moves
        earlier if needed; never later, since the write may still be rolled back.
        """
        namespace = self._keys.get(object_class.name)
        if namespace is None or self._closed:
            return
        key = (namespace, object_id.to_string())
        slot = self._slots.get(key)
        if slot is None:
            slot = _Slot(time=time, due=time, name=object_id.name, trusted=True)
            self._slots[key] = slot
            self._index.put(*key, object_id.name, time, urgent=True)
            self._push(key, slot)
            return
        slot.version += 1
        slot.trusted = time <= slot.time  # a later time leaves the row early: peek then
        if time < slot.time:
            slot.time = time
            self._index.put(*key, object_id.name, time, urgent=True)
        if time < slot.due:  # also supersedes a pending retry
            slot.due = time
            self._push(key, slot)

    def note_deleted(self, object_class: ObjectClass, object_id: DurableObjectId) -> None:
        """The object deleted its alarm: its row is stale, left for the scheduler to find."""
        namespace = self._keys.get(object_class.name)
        slot = None if namespace is None else self._slots.get((namespace, object_id.to_string()))
        if slot is not None:
            slot.trusted = False

    def indexed(self, object_class: ObjectClass) -> dict[str, str | None]:
        """The class's objects that have index rows, by id, with their names if known.

        Every object with an alarm is among them (the index's rule), so the inspector
        reads only these objects' files to list alarms.
        """
        namespace = self._keys.get(object_class.name)
        return {oid: slot.name for (ns, oid), slot in self._slots.items() if ns == namespace}

    def _index_dirty(self) -> None:
        self._committer.enqueue_first(self._commit_index)

    def _commit_index(self, sync: bool) -> None:
        self._index.commit(sync=sync)

    # -- the loop ------------------------------------------------------------------------

    def _now(self) -> float:
        return self._clock.now() * 1000

    def _push(self, key: _Key, slot: _Slot) -> None:
        slot.seq = next(self._seq)
        heapq.heappush(self._heap, (slot.due, slot.seq, key))
        if len(self._heap) > 2 * len(self._slots) + 1024:
            self._compact()
        if slot.due < self._sleep_until:
            self._wake_up()

    def _compact(self) -> None:
        """Rebuild the heap without dead items (amortised O(1) per push)."""
        self._heap = [(s.due, s.seq, k) for k, s in self._slots.items() if k not in self._running]
        heapq.heapify(self._heap)

    def _wake_up(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as group:
            while True:
                self._start_due(group)
                await self._sleep()

    def _start_due(self, group: asyncio.TaskGroup) -> None:
        now = self._now()
        heap = self._heap
        while heap and len(self._running) < self._max_running:
            due, seq, key = heap[0]
            slot = self._slots.get(key)
            if slot is None or slot.seq != seq or key in self._running:
                heapq.heappop(heap)  # dead, or running: looked at again when the run ends
                continue
            if due > now:
                break
            heapq.heappop(heap)
            self._running.add(key)
            group.create_task(self._deliver(key, slot))

    async def _sleep(self) -> None:
        """Until the next slot is due, or something earlier (or a free delivery) wakes us."""
        loop = asyncio.get_running_loop()
        full = len(self._running) >= self._max_running
        next_due = self._heap[0][0] if self._heap and not full else math.inf
        wake: asyncio.Future[None] = loop.create_future()
        waiters: set[asyncio.Future[Any]] = {wake}
        sleeper = None
        if next_due < math.inf:
            sleeper = loop.create_task(self._clock.sleep((next_due - self._now()) / 1000))
            waiters.add(sleeper)
        self._wake, self._sleep_until = wake, next_due
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._wake, self._sleep_until = None, math.inf
            if sleeper is not None:
                sleeper.cancel()
                await asyncio.gather(sleeper, return_exceptions=True)

    # -- one delivery --------------------------------------------------------------------

    async def _deliver(self, key: _Key, slot: _Slot) -> None:
        try:
            await self._attempt(key, slot)
        except (Exception, CpuLimitExceeded):  # a stray CPU interrupt must not stop alarms
            log.exception("objectd: delivering an alarm failed; trying again in 1 s")
            slot.due = self._now() + 1000
        except asyncio.CancelledError as exc:
            # A stray one would re-run the alarm at once, forever; only stop() cancels.
            if stray_cancel_error(exc) is None:
                raise
            log.exception("objectd: delivering an alarm failed; trying again in 1 s")
            slot.due = self._now() + 1000
        finally:
            was_full = len(self._running) >= self._max_running
            self._running.discard(key)
            if self._slots.get(key) is slot:
                self._push(key, slot)
            if was_full:
                self._wake_up()

    async def _attempt(self, key: _Key, slot: _Slot) -> None:
        object_class = self._classes[key[0]]
        object_id = self._object_id(object_class, key[1], slot.name)
        if object_id is None:
            self._drop(key, slot, slot.version)
            return
        if not slot.trusted and not self._in_memory(object_class, object_id):
            closing = object_class.closing.get(object_id)
            if closing is not None:  # just evicted: its file is being closed in a thread
                await asyncio.wait([closing])
        if not slot.trusted and not self._in_memory(object_class, object_id):
            # Not in memory: read its file first, so a stale row does not construct it.
            version = slot.version
            try:
                stored = read_object_alarm(object_class.object_path(object_id))
            except sqlite3.Error as exc:
                log.warning("objectd: cannot peek at %s's alarm: %s", object_id, exc)
            else:
                if stored is None:
                    self._drop(key, slot, version)
                    return
                if stored > self._now():
                    self._move(key, slot, stored, version)
                    return
        host = object_class.host(object_id)
        start_version = slot.version
        current = slot.failed_time == slot.time
        run = AlarmRun(scheduled_time=slot.time, retry_count=slot.retries if current else 0)
        try:
            outcome = await host.submit(self._event(host, slot, run))
        except Exception as exc:
            await self._failed(key, slot, run, start_version, exc, host)
            return
        if outcome.seen is Seen.GONE:
            self._drop(key, slot, outcome.version)
        elif outcome.seen is Seen.LATER:
            self._move(key, slot, outcome.time, outcome.version)
        else:
            self.fired += 1
            if run.changed:
                self._look_again(slot)
            else:
                self._drop(key, slot, outcome.version)

    @staticmethod
    def _in_memory(object_class: ObjectClass, object_id: DurableObjectId) -> bool:
        host = object_class.hosts.get(object_id)
        return host is not None and host.live

    def _event(self, host: ObjectHost, slot: _Slot, run: AlarmRun) -> Callable[[Any], Any]:
        """The alarm event: runs inside the object, in turn with its other events."""

        async def alarm_event(instance: Any) -> _Outcome:
            version = slot.version  # run_alarm reads the stored alarm before it awaits
            seen, stored = await run_alarm(
                host,
                instance,
                run,
                now=self._now(),
                failed=(slot.failed_time, slot.retries),
                timeout_s=self._timeout_s,
            )
            return _Outcome(seen, version if seen is not Seen.RAN else slot.version, stored)

        return alarm_event

    async def _failed(
        self,
        key: _Key,
        slot: _Slot,
        run: AlarmRun,
        start_version: int,
        error: Exception,
        host: ObjectHost,
    ) -> None:
        label = f"{host.object_class.name} {host.id}"
        about = host.about  # --log-format json
        if run.changed or slot.version != start_version:
            # The alarm was set again meanwhile: the new one supersedes these retries.
            log.warning("objectd: alarm() of %s failed: %s", label, error, extra=about)
            self._look_again(slot)
            return
        if not run.retry or run.retry_count >= MAX_RETRIES:
            why = "abort(retry_alarm=False)" if not run.retry else f"{MAX_RETRIES} retries"
            tail, extra = _traceback(error, about)
            log.warning(
                "objectd: alarm() of %s failed after %s; the alarm is abandoned: %s%s",
                label,
                why,
                error,
                tail,
                extra=extra,
            )
            self.abandoned += 1
            await self._abandon(key, slot, run.scheduled_time, host)
            return
        self.retried += 1
        delay = retry_delay(run.retry_count, self._rng)
        slot.failed_time = run.scheduled_time
        slot.retries = run.retry_count + 1
        slot.due = self._now() + delay * 1000
        tail, extra = _traceback(error, about)
        log.warning(
            "objectd: alarm() of %s failed; retry %d of %d in %.1f s: %s%s",
            label,
            slot.retries,
            MAX_RETRIES,
            delay,
            error,
            tail,
            extra=extra,
        )

    async def _abandon(self, key: _Key, slot: _Slot, scheduled_time: int, host: ObjectHost) -> None:
        """Delete the alarm that kept failing (unless it was set again meanwhile)."""

        async def clear(instance: Any) -> None:
            storage = host.storage
            if storage is not None and stored_alarm(storage) == scheduled_time:
                delete_alarm(storage, {})

        version = slot.version
        try:
            await host.submit(clear)
        except Exception as exc:
            log.warning(
                "objectd: cannot delete the abandoned alarm of %s: %s",
                host.id,
                exc,
                extra=host.about,
            )
            self._drop(key, slot, version)  # forget it: it is not retried either way
            return
        self._look_again(slot)

    # -- slot moves ----------------------------------------------------------------------

    def _drop(self, key: _Key, slot: _Slot, version: int) -> None:
        """No alarm (as of ``version``): forget the slot and its row."""
        if slot.version != version:
            self._look_again(slot)
        elif self._slots.get(key) is slot:
            del self._slots[key]
            self._index.delete(*key)

    def _move(self, key: _Key, slot: _Slot, time: int, version: int) -> None:
        """The stored alarm is ``time`` (as of ``version``): look again then."""
        if slot.version != version:
            self._look_again(slot)
            return
        slot.time = slot.due = time
        slot.failed_time, slot.retries = None, 0
        slot.trusted = True  # just read from the object
        self._index.put(*key, slot.name, time, urgent=False)

    def _look_again(self, slot: _Slot) -> None:
        slot.due = self._now()
        slot.failed_time, slot.retries = None, 0
        slot.trusted = False

    @staticmethod
    def _object_id(
        object_class: ObjectClass, hex_id: str, name: str | None
    ) -> DurableObjectId | None:
        try:
            parsed = object_class.minter.id_from_string(hex_id)
        except InvalidIdError:
            log.warning("objectd: alarm index names a foreign id %s; row dropped", hex_id)
            return None
        return parsed if name is None else DurableObjectId(parsed.raw, name, parsed.jurisdiction)


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error(
            "objectd: the alarm scheduler stopped: no alarm runs until a restart", exc_info=error
        )


def _traceback(error: BaseException, about: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """The report of an error alarm() raised, to end a log message (none for objectd's own:
    a reset, a timeout), and the record's ``extra``: ``about`` and the report as
    ``traceback`` (a field of its own with ``--log-format json``)."""
    if getattr(error, "remote_trace", None) is not None:
        report = format_report(error).rstrip("\n")
    else:
        report = getattr(error, "remote_traceback", "")  # an error that carries only the text
    if not report:
        return "", about
    return "\n" + report, {**about, "traceback": report}
