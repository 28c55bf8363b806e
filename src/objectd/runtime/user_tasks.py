"""Tasks the project's code creates itself (``asyncio.create_task``, ``gather``, ``TaskGroup``).

objectd's own runners handle what a handler raises that must not reach asyncio: the CPU
limit's :class:`CpuLimitExceeded`, ``SystemExit`` and ``KeyboardInterrupt``
(``runtime.exits``).  A task the code creates has no such runner: the CPU limit's
exception just failed it, unseen, and ``sys.exit()`` in it ended the process.  So
while a project runs, the loop's task factory gives each task whose coroutine is the
project's (``runtime.user_code``) a guard around it, which does what an event's runner
does:

* in a task created inside an object (its event's context: ``current_host``), the CPU
  limit or an exit resets that object (if the instance that created it is still the
  live one) and the task fails with the reset error;
* in a task of the Worker, it is logged and the task fails with a ``RuntimeError``.

Either failure is logged here, so asyncio does not report it again when nobody awaits
the task.  Anything else passes through unchanged, cancellation included.  The guard is
one more coroutine under the task (``task.get_coro()`` returns it); objectd's own tasks
and those of libraries are not wrapped.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Callable, Coroutine
from types import CodeType, FrameType
from typing import Any, cast

from objectd.errors import ObjectResetError
from objectd.report import object_label
from objectd.runtime.exits import describe, exit_error, from_signal, worker_exit_error
from objectd.runtime.host import EVENT_CODE, ObjectHost, current_host
from objectd.runtime.metrics import ResetCause
from objectd.runtime.phase import HostPhase
from objectd.runtime.watchdog import CPU_LIMIT_MESSAGE, CpuLimitExceeded

__all__ = ["install_task_guard", "stuck_in"]

log = logging.getLogger("objectd.runtime")


def install_task_guard(
    loop: asyncio.AbstractEventLoop, user_code: Callable[[CodeType], bool]
) -> Callable[[], None]:
    """Guard the project's tasks on ``loop`` from now on; returns the function that stops it.

    A task factory already installed (by the application) keeps making the tasks.
    """
    # (typeshed's factory type has no ``context``, which 3.11's loops pass when given)
    previous: Any = loop.get_task_factory()

    def factory(
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, Any],
        *,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[Any]:
        code = getattr(coro, "cr_code", None)
        logged: list[BaseException] | None = None
        if code is not None and user_code(code):
            host = current_host.get() if context is None else context.get(current_host)
            logged = []
            coro = _guarded(coro, host, host.activations if host is not None else 0, logged)
        if previous is None:
            task = asyncio.Task(coro, loop=loop, context=context)
        elif context is None:
            task = previous(loop, coro)
        else:
            task = previous(loop, coro, context=context)
        if logged is not None:
            task.add_done_callback(functools.partial(_retrieve_logged, logged))
        return task

    loop.set_task_factory(cast(Any, factory))

    def uninstall() -> None:
        if loop.get_task_factory() is factory:
            loop.set_task_factory(previous)

    return uninstall


async def _guarded(
    coro: Coroutine[Any, Any, Any],
    host: ObjectHost | None,
    activation: int,
    logged: list[BaseException],
) -> Any:
    try:
        return await coro
    except CpuLimitExceeded:
        if host is None:
            log.error("a task of the Worker was stopped: %s", CPU_LIMIT_MESSAGE)
            error: BaseException = RuntimeError(CPU_LIMIT_MESSAGE)
        else:
            error = ObjectResetError(CPU_LIMIT_MESSAGE)
            _reset(host, activation, error, ResetCause.CPU_LIMIT)
        logged.append(error)
        raise error from None
    except (SystemExit, KeyboardInterrupt) as exc:
        if from_signal(exc):
            raise
        if host is None:
            log.error("a task of the Worker raised %s", describe(exc), exc_info=exc)
            error = worker_exit_error(exc)
        else:
            error = exit_error(exc)
            _reset(host, activation, error, ResetCause.EXIT)
        logged.append(error)
        raise error from None


def _reset(host: ObjectHost, activation: int, error: ObjectResetError, cause: ResetCause) -> None:
    label = object_label(host.object_class.name, host.id)
    if host.activations == activation and host.phase is HostPhase.LIVE:
        log.error("%s: a task it created failed: %s", label, error, extra=host.about)
        host.reset(error, cause=cause)  # logs the reset too
    else:  # the instance that created it is gone already: never reset its successor
        log.error("%s: a task of a former instance failed: %s", label, error, extra=host.about)


def _retrieve_logged(logged: list[BaseException], task: asyncio.Task[Any]) -> None:
    """A failure the guard logged is not reported again when nobody awaits the task."""
    if logged and not task.cancelled():
        task.exception()


GUARD_CODE = _guarded.__code__


def stuck_in(frame: FrameType | None) -> str | None:
    """The object whose code runs in ``frame``'s stack, for the CPU watchdog's report."""
    while frame is not None:
        code = frame.f_code
        if code in EVENT_CODE or code is GUARD_CODE:
            host = frame.f_locals.get("self" if code in EVENT_CODE else "host")
            if isinstance(host, ObjectHost):
                return object_label(host.object_class.name, host.id)
        frame = frame.f_back
    return None
