"""Reaching inside objects from a test: the helpers of ``cloudflare:test``, awaited.

Each takes what user code holds (a stub, a namespace) and acts on the object the way
the runtime would: :func:`run_in_durable_object` is one event of the object (input and
output gates included), :func:`run_durable_object_alarm` runs its alarm now, as the
alarm scheduler would, :func:`evict` drops the instance as idle eviction does.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

from objectd.errors import DurableObjectTypeError
from objectd.ids import DurableObjectId
from objectd.runtime.alarm_ops import AlarmRun, Seen, run_alarm, stored_alarm
from objectd.runtime.host import ObjectHost
from objectd.runtime.namespace import DurableObjectNamespace, DurableObjectStub

__all__ = [
    "evict",
    "list_durable_object_ids",
    "run_durable_object_alarm",
    "run_in_durable_object",
]


def _host(stub: object, helper: str) -> ObjectHost:
    if not isinstance(stub, DurableObjectStub):
        raise DurableObjectTypeError(
            f"{helper}() takes a Durable Object stub (env.BINDING.get(id)), "
            f"got {type(stub).__name__}: {stub!r}"
        )
    return stub._class.host(stub.id)


async def run_in_durable_object(stub: DurableObjectStub, fn: Callable[[Any, Any], Any]) -> Any:
    """Call ``fn(instance, state)`` inside the stub's object and return what it returns.

    It runs as one event of the object: after the events before it, with the input gate
    (storage awaits let no other event in) and the output gate (it returns once its
    writes are durable).  ``fn`` may be sync or async; what it returns is handed back
    as is, not serialized.  An exception it raises is raised here.
    """
    host = _host(stub, "run_in_durable_object")

    async def event(instance: Any) -> Any:
        result = fn(instance, host.state)
        if inspect.isawaitable(result):
            result = await result
        return result

    return await host.submit(event)


async def run_durable_object_alarm(stub: DurableObjectStub) -> bool:
    """Run the object's alarm now, if one is set; True if ``alarm()`` ran.

    It runs as the scheduler's delivery does (an event of the object, with
    ``alarm_info``, cleared when it returns unless it set the alarm again), but now,
    whatever the alarm's time.  An exception from ``alarm()`` is raised here and the
    alarm stays set, as after a failed attempt.
    """
    host = _host(stub, "run_durable_object_alarm")
    timeout_s = host.settings.alarm_timeout_s

    async def event(instance: Any) -> bool:
        storage = host.storage
        assert storage is not None
        stored = stored_alarm(storage)
        if stored is None:
            return False
        run = AlarmRun(scheduled_time=stored, retry_count=0)
        seen, _ = await run_alarm(
            host, instance, run, now=math.inf, failed=(None, 0), timeout_s=timeout_s
        )
        return seen is Seen.RAN

    ran: bool = await host.submit(event)
    return ran


async def list_durable_object_ids(namespace: DurableObjectNamespace) -> list[DurableObjectId]:
    """The ids of the namespace's objects that exist: those with storage, and those in
    memory now (an object that never stored anything is gone once evicted)."""
    if not isinstance(namespace, DurableObjectNamespace):
        raise DurableObjectTypeError(
            "list_durable_object_ids() takes a Durable Object namespace (env.BINDING), "
            f"got {type(namespace).__name__}: {namespace!r}"
        )
    object_class = namespace._class
    found = {namespace.id_from_string(text) for text in object_class.stored_ids()}
    found.update(object_id for object_id, host in object_class.hosts.items() if host.live)
    return sorted(found, key=str)


async def evict(stub: DurableObjectStub) -> None:
    """Drop the object's instance as idle eviction does: its storage is kept, its
    hibernatable WebSockets stay open (a message constructs it again), and the next
    event runs a new constructor.  Refused while it has work in progress."""
    host = _host(stub, "evict")
    if not host.live:
        return  # not in memory: nothing to drop
    object_class = host.object_class
    await object_class.committer.drain()
    if not host.can_evict():
        raise RuntimeError(
            f"evict(): object {host.id} of {object_class.name} has work in progress "
            "(an event or a background task running, a write not yet durable, or an "
            "accepted WebSocket, which pins it; hibernatable ones do not); await it first"
        )
    host.evict()
    closing = object_class.closing.get(host.id)
    if closing is not None:
        await closing  # its file is closed in a thread; the next event waits for it anyway


runInDurableObject = run_in_durable_object
runDurableObjectAlarm = run_durable_object_alarm
listDurableObjectIds = list_durable_object_ids
