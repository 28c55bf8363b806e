"""Ending tasks of user code that ignore their cancellation, so that shutdown ends.

A coroutine that catches ``CancelledError`` and goes on waiting cannot be cancelled: a
shutdown that waits for it never ends, and neither does ``asyncio.run``'s own clean-up
(it cancels every task left and waits for all of them).  After a bounded wait, the
runtime gives up on such a task: :func:`abandon` closes its coroutine
(``GeneratorExit`` at its ``await``, which ``except CancelledError`` does not catch, so
its ``finally`` blocks run) and cancels the task once more, which then ends at its next
step, with asyncio's ``RuntimeError: cannot reuse already awaited coroutine``: what an
awaiter of the task sees (the abandonment itself is logged).  Code that catches even
``GeneratorExit`` and awaits again cannot be stopped from outside: it is left running
(``coroutine.close()`` says so with a RuntimeError).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

__all__ = ["abandon", "stop_tasks"]


def abandon(tasks: Iterable[asyncio.Task[Any]]) -> int:
    """Stop ``tasks`` (already cancelled, still running); the number that could not be."""
    left = 0
    for task in tasks:
        if task.done():
            continue
        try:
            task.get_coro().close()
        except RuntimeError:  # "coroutine ignored GeneratorExit"
            left += 1
            continue
        task.cancel()  # its next step throws into the closed coroutine: the task ends
    return left


async def stop_tasks(
    tasks: Iterable[asyncio.Task[Any]],
    *,
    grace_s: float,
    cancel_wait_s: float,
    log: logging.Logger,
    late_warning: str,
) -> set[asyncio.Task[Any]]:
    """Give ``tasks`` ``grace_s`` to finish; cancel the rest (logging ``late_warning`` for
    each, unless there was no grace); give those ``cancel_wait_s`` to end; abandon the
    ones that did not.  Returns those, for the caller to name in its log."""
    late = set(tasks)
    if not late:
        return set()
    if grace_s > 0:
        _, late = await asyncio.wait(late, timeout=grace_s)
    for task in late:
        if grace_s > 0:
            log.warning(late_warning)
        task.cancel()
    if not late:
        return set()
    _, stuck = await asyncio.wait(late, timeout=cancel_wait_s)
    abandon(stuck)
    return stuck
