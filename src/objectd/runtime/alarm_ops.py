"""An object's alarm, from inside the object: the storage methods and the alarm event (§7).

An object's alarm is one row of its own ``_cf_METADATA`` table (epoch ms), written
in the object's open batch like a KV write: it commits with the writes around it,
holds the output gate unless ``allow_unconfirmed``, and a rolled-back transaction
or a reset takes it back.  Setting an alarm also tells the scheduler, which moves
the object's index row earlier if needed *before* the object's batch can commit
(see ``storage.alarm_index``); deleting one only writes the object (and flags the
object's slot): the scheduler finds the row stale when it comes due.

While ``alarm()`` runs, ``host.current_alarm`` holds its :class:`AlarmRun`:
``get_alarm()`` then answers None until the alarm is set again (checklist 124), a
set or delete marks the run ``changed`` (so success does not clear the new alarm,
125), and ``ctx.abort(retry_alarm=False)`` turns its retry off (45).  The stored
alarm stays in place until the run succeeds, so between a failed attempt and its
retry ``get_alarm()`` returns the original time (127).  :func:`run_alarm` is the body
of the alarm event the scheduler (``runtime.alarms``) delivers.
"""

from __future__ import annotations

import datetime
import enum
import functools
import inspect
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from objectd.errors import DurableObjectError, DurableObjectTypeError
from objectd.runtime.objects import find_handler
from objectd.storage.alarm_index import ALARM_META_KEY

if TYPE_CHECKING:
    from objectd.runtime.host import ObjectHost
    from objectd.runtime.storage_api import DurableObjectStorage

__all__ = [
    "AlarmInfo",
    "AlarmRun",
    "Seen",
    "clear_alarm",
    "delete_alarm",
    "get_alarm",
    "run_alarm",
    "set_alarm",
    "stored_alarm",
    "to_epoch_ms",
]

log = logging.getLogger("objectd.alarms")

_AT_OR_BELOW_ZERO = "setAlarm() cannot be called with an alarm time <= 0"
_NO_HANDLER = "Your Durable Object class must have an alarm() handler in order to call setAlarm()"
# The largest JavaScript Date (ms since the epoch); later times are not dates at all.
_MAX_TIME_MS = 8_640_000_000_000_000
_TIMEOUT_MESSAGE = "Alarm exceeded its allowed execution time"


@dataclass(frozen=True, slots=True)
class AlarmInfo:
    """What ``alarm(alarm_info)`` receives: which attempt this is, and for what time."""

    retry_count: int  # counted retries before this attempt (0 on the first)
    is_retry: bool  # retry_count > 0
    scheduled_time: int  # the alarm's time, epoch ms

    @property
    def retryCount(self) -> int:
        return self.retry_count

    @property
    def isRetry(self) -> bool:
        return self.is_retry

    @property
    def scheduledTime(self) -> int:
        return self.scheduled_time


@dataclass(slots=True, eq=False)
class AlarmRun:
    """The ``alarm()`` invocation in progress on one object (``host.current_alarm``)."""

    scheduled_time: int
    retry_count: int
    changed: bool = False  # the alarm was set or deleted since the run began
    retry: bool = True  # False after ctx.abort(retry_alarm=False)


def to_epoch_ms(when: object) -> int:
    """``setAlarm``'s time as whole epoch milliseconds; refuses what is not a time.

    Numbers are epoch milliseconds; a ``datetime`` is converted with ``timestamp()``
    (a naive one is local time, as in Python Workers).
    """
    if isinstance(when, datetime.datetime):
        ms: float = when.timestamp() * 1000
    elif isinstance(when, (int, float)) and not isinstance(when, bool):
        ms = when
    else:
        raise DurableObjectTypeError(
            "setAlarm() takes epoch milliseconds (int or float) or a datetime, "
            f"got {type(when).__name__}: {when!r}"
        )
    if math.isnan(ms):
        raise DurableObjectTypeError("setAlarm() needs a time, got NaN")
    if ms <= 0:
        raise DurableObjectTypeError(_AT_OR_BELOW_ZERO)
    if ms > _MAX_TIME_MS:
        raise DurableObjectTypeError(
            f"setAlarm() time {when!r} is past the latest date ({_MAX_TIME_MS} ms)"
        )
    return math.floor(ms)


def stored_alarm(storage: DurableObjectStorage) -> int | None:
    """The alarm in the object's database (this turn's writes included)."""
    value = storage.database.get_meta(ALARM_META_KEY)
    return None if value is None else int(value)  # type: ignore[call-overload]


def get_alarm(storage: DurableObjectStorage) -> int | None:
    stored = stored_alarm(storage)
    run: AlarmRun | None = storage._host.current_alarm
    if run is not None and not run.changed and stored == run.scheduled_time:
        return None  # the alarm being handled no longer counts as set (checklist 124)
    return stored


def set_alarm(storage: DurableObjectStorage, when: object, opts: Mapping[str, Any]) -> None:
    ms = to_epoch_ms(when)
    host = storage._host
    instance = None if host.constructing else host.instance  # the constructor may set one
    if instance is not None and find_handler(instance, "alarm") is None:
        raise DurableObjectTypeError(_NO_HANDLER)
    # Past times run as soon as possible; workerd stores them as "now" (getAlarm shows it).
    ms = max(ms, math.floor(host.clock.now() * 1000))
    with storage._writing(opts):
        storage.database.set_meta(ALARM_META_KEY, ms)
    _changed(host)
    scheduler = host.object_class.alarms
    if scheduler is not None:
        scheduler.note_set(host.object_class, host.id, ms)


def delete_alarm(storage: DurableObjectStorage, opts: Mapping[str, Any]) -> None:
    """Delete the alarm; a no-op (no write) when there is none."""
    if stored_alarm(storage) is None:
        return
    with storage._writing(opts):
        storage.database.set_meta(ALARM_META_KEY, None)
    _deleted(storage._host)


def clear_alarm(storage: DurableObjectStorage) -> None:
    """Delete the alarm as part of the current batch (deleteAll, a finished alarm)."""
    if stored_alarm(storage) is not None:
        storage.database.set_meta(ALARM_META_KEY, None)
        _deleted(storage._host)


def _deleted(host: ObjectHost) -> None:
    _changed(host)
    scheduler = host.object_class.alarms
    if scheduler is not None:
        scheduler.note_deleted(host.object_class, host.id)


def _changed(host: ObjectHost) -> None:
    run: AlarmRun | None = host.current_alarm
    if run is not None:
        run.changed = True


class Seen(enum.Enum):
    """What the alarm event found in the object."""

    GONE = "gone"  # no alarm stored
    LATER = "later"  # an alarm is stored, not due yet
    RAN = "ran"  # alarm() ran and returned


async def run_alarm(
    host: ObjectHost,
    instance: Any,
    run: AlarmRun,
    *,
    now: float,
    failed: tuple[int | None, int],
    timeout_s: float,
) -> tuple[Seen, int]:
    """The body of the alarm event, inside the object: check the alarm, then run it.

    Reads the stored alarm before it first awaits.  ``failed`` is the (alarm time,
    retries so far) of earlier failed attempts.  On success the alarm is cleared in
    this event (checklist 123) unless it was set or deleted meanwhile; an exception
    or a run past ``timeout_s`` propagates (the scheduler retries it).
    """
    storage = host.storage
    assert storage is not None
    stored = stored_alarm(storage)
    if stored is None:
        return Seen.GONE, 0
    if stored > now:
        return Seen.LATER, stored
    handler = find_handler(instance, "alarm")
    if handler is None:
        log.warning(
            "objectd: %s %s has an alarm but no alarm() handler; the alarm is deleted",
            host.object_class.name,
            host.id,
        )
        delete_alarm(storage, {})
        return Seen.GONE, 0
    run.scheduled_time = stored
    run.retry_count = failed[1] if stored == failed[0] else 0
    info = AlarmInfo(run.retry_count, run.retry_count > 0, stored)
    host.current_alarm = run
    timeout = host.clock.timeout(timeout_s)
    try:
        async with timeout:
            result = handler(info) if _takes_argument(handler) else handler()
            if inspect.isawaitable(result):
                await result
    except TimeoutError:
        if timeout.expired():
            raise DurableObjectError(_TIMEOUT_MESSAGE) from None
        raise
    finally:
        if host.current_alarm is run:
            host.current_alarm = None
    if not run.changed:
        delete_alarm(storage, {})
    return Seen.RAN, stored


_POSITIONAL = (
    inspect.Parameter.POSITIONAL_ONLY,
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
    inspect.Parameter.VAR_POSITIONAL,
)


def _takes_argument(handler: Callable[..., Any]) -> bool:
    """Whether ``alarm`` accepts ``alarm_info`` (handlers are called "relaxed")."""
    function = getattr(handler, "__func__", None)
    if function is not None:
        return _method_takes_argument(function)  # cached per class, not per instance
    try:
        parameters = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError):
        return True
    return any(p.kind in _POSITIONAL for p in parameters)


@functools.lru_cache(maxsize=1024)
def _method_takes_argument(function: Callable[..., Any]) -> bool:
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return True
    if parameters and parameters[0].kind is not inspect.Parameter.VAR_POSITIONAL:
        parameters = parameters[1:]  # self
    return any(p.kind in _POSITIONAL for p in parameters)
