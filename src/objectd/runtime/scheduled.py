"""The worker's ``scheduled`` handler, as Cloudflare's Python Workers call it.

A cron trigger (``runtime.crons``) or ``objectd dev``'s ``/__scheduled`` route runs
``scheduled(controller, env, ctx)`` on a fresh ``Default(WorkerEntrypoint)`` (or the
shorter ``scheduled(controller)``; a module-level ``on_scheduled(controller, env, ctx)``
too, like ``on_fetch``).  ``controller`` is a :class:`ScheduledController`: the
cron that fired, its minute in epoch milliseconds, and ``type == "scheduled"``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

from objectd.runtime.objects import ExecutionContext, WorkerEntrypoint

__all__ = ["ScheduledController", "ScheduledEntry", "find_scheduled"]


class ScheduledController:
    """What ``scheduled()`` is told: ``cron``, ``scheduled_time`` (ms since the epoch), ``type``."""

    __slots__ = ("cron", "scheduled_time")

    type = "scheduled"

    def __init__(self, cron: str, scheduled_time: int) -> None:
        self.cron = cron
        self.scheduled_time = scheduled_time

    def no_retry(self) -> None:
        """Accepted for compatibility: a failed run is never retried here (the next
        matching minute runs as usual)."""

    @property
    def scheduledTime(self) -> int:
        return self.scheduled_time

    def __repr__(self) -> str:
        return f"ScheduledController(cron={self.cron!r}, scheduled_time={self.scheduled_time})"

    noRetry = no_retry


# Runs the handler for one controller: (controller, env, ctx) -> its awaited result.
ScheduledEntry = Callable[[ScheduledController, Any, ExecutionContext], Awaitable[Any]]


def find_scheduled(module: ModuleType) -> ScheduledEntry | None:
    """The worker's ``scheduled`` handler, or None if it has none."""
    default = getattr(module, "Default", None)
    # One spelling: Cloudflare's name is already snake_case (the base defines none).
    if (
        isinstance(default, type)
        and issubclass(default, WorkerEntrypoint)
        and callable(getattr(default, "scheduled", None))
    ):
        entry_cls = default

        async def call_default(controller: ScheduledController, env: Any, ctx: Any) -> Any:
            handler = getattr(entry_cls(ctx, env), "scheduled")  # noqa: B009 (not a base method)
            return await _call(handler, controller, env, ctx)

        return call_default
    on_scheduled = getattr(module, "on_scheduled", None)
    if callable(on_scheduled):
        function = on_scheduled

        async def call_function(controller: ScheduledController, env: Any, ctx: Any) -> Any:
            return await _call(function, controller, env, ctx)

        return call_function
    return None


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


async def _call(handler: Callable[..., Any], *args: Any) -> Any:
    """``handler`` with as many of (controller, env, ctx) as it takes (at least one)."""
    try:
        parameters = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):  # no signature to read: give it everything
        taken = len(args)
    else:
        kinds = [parameter.kind for parameter in parameters]
        if inspect.Parameter.VAR_POSITIONAL in kinds:
            taken = len(args)
        else:
            taken = sum(1 for kind in kinds if kind in _POSITIONAL)
    result = handler(*args[: max(1, min(taken, len(args)))])
    return await result if inspect.isawaitable(result) else result
