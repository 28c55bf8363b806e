"""A handler's ``SystemExit`` or ``KeyboardInterrupt``: that event's failure, not the server's.

asyncio lets both escape the event loop when a task raises them, so one ``sys.exit()``
in a handler used to end the whole process (issue 9 §3).  Every place objectd runs
user code catches them: an object's events and constructor, ``block_concurrency_while``
callbacks and ``wait_until`` tasks (``runtime.host``), the Worker's entrypoint and its
``wait_until`` tasks (``runtime.project``), WebSocket listeners outside objects.

Inside an object the exception **resets the object**, with :func:`exit_error`: the
code asked for its program to end, and an object's program is its live instance (on
Cloudflare, its isolate).  So, as after ``ctx.abort()`` (also a BaseException),
in-memory state and the writes not yet committed are dropped, the events waiting
for the object and its WebSockets get the reset, and the next event constructs it
again.  In the Worker's entrypoint it fails that request only (:func:`worker_exit_error`).

Real signals still stop the process.  Under ``objectd serve`` / ``dev``, uvicorn's
handlers take SIGINT and SIGTERM and shut down gracefully: they never raise, so there
every ``SystemExit`` / ``KeyboardInterrupt`` seen in a handler is the code's own.  A
process that installed a Python signal handler that raises (``signal.signal(SIGTERM,
lambda *_: sys.exit())``, or asyncio.run's second Ctrl-C) gets it through: the
exception's traceback runs through that handler's frame (:func:`from_signal`).  Python's
default SIGINT handler is C and leaves no frame, so while it is installed every
``KeyboardInterrupt`` counts as a real Ctrl-C, as it always did.
"""

from __future__ import annotations

import asyncio
import functools
import signal
import traceback
from types import CodeType
from typing import Any

from objectd.errors import ObjectResetError

__all__ = ["describe", "exit_error", "from_signal", "stray_cancel_error", "worker_exit_error"]


def describe(exc: BaseException) -> str:
    """``SystemExit``, ``SystemExit(3)``, ``SystemExit('bye')`` or ``KeyboardInterrupt``."""
    if isinstance(exc, SystemExit) and exc.code is not None:
        return f"SystemExit({exc.code!r})"
    return type(exc).__name__


def exit_error(exc: BaseException) -> ObjectResetError:
    """What the caller gets when an object's code raised ``exc`` (the object is reset)."""
    error = ObjectResetError(
        f"The Durable Object's code raised {describe(exc)}, which cannot stop the server: "
        "the Durable Object was reset.",
        remote=True,
    )
    error.remote_traceback = "".join(traceback.format_exception(exc))  # type: ignore[attr-defined]
    return error


def worker_exit_error(exc: BaseException) -> RuntimeError:
    """What the front gets when the Worker's entrypoint raised ``exc`` (a 500, logged)."""
    return RuntimeError(
        f"the Worker's code raised {describe(exc)}, which cannot stop the server: "
        "the request failed"
    )


def stray_cancel_error(exc: asyncio.CancelledError) -> RuntimeError | None:
    """The failure to report for a ``CancelledError`` nothing cancelled; None if it is real.

    Call it where the ``CancelledError`` is caught, in the task that runs the code.
    """
    task = asyncio.current_task()
    if task is None or task.cancelling() > 0:
        return None
    message = f": {exc}" if str(exc) else ""
    error = RuntimeError(
        f"the code raised CancelledError{message}, but nothing cancelled its event: "
        "it is that event's failure (raise another exception to fail a handler)"
    )
    error.__cause__ = exc
    return error


def from_signal(exc: BaseException) -> bool:
    """Was ``exc`` raised by a signal delivered to the process, not by the code itself?"""
    if isinstance(exc, KeyboardInterrupt) and (
        signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ):
        return True  # cannot tell, and a real Ctrl-C must stop the program as always
    handlers = _python_handlers()
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code in handlers:
            return True
        tb = tb.tb_next
    return False


def _python_handlers() -> set[CodeType]:
    """The code of every signal handler written in Python that is installed now."""
    codes: set[CodeType] = set()
    for sig in signal.valid_signals():
        try:
            handler = signal.getsignal(sig)
        except (OSError, ValueError):
            continue
        code = _code_of(handler)
        if code is not None:
            codes.add(code)
    return codes


def _code_of(handler: Any) -> CodeType | None:
    while isinstance(handler, functools.partial):
        handler = handler.func
    handler = getattr(handler, "__func__", handler)  # a bound method
    code = getattr(handler, "__code__", None)
    return code if isinstance(code, CodeType) else None
