"""The CPU-time limit: stop the project's code stuck in a Python loop or a SQL statement.

A handler that never awaits blocks the event loop, so nothing on the loop can stop
it.  A watchdog thread watches a heartbeat the loop posts every ``poll`` seconds.
When the heartbeat stalls, the watchdog looks at what the loop thread runs: one *run*
is one task's step (or one callback) between two awaits, and what is measured is the
loop thread's CPU time during that run.  Blocking that is not CPU (a sleeping system
call) is not counted; cooperative code that awaits is never interrupted.

**Interrupting** (spec §11).  A run past ``limit`` of CPU is stopped if it is the
project's code (``runtime.user_code``: its module files, wherever they run: an
object's event, the Worker's entrypoint, a WebSocket listener, a task the code
created):

* in SQLite (a statement runs in C, where no Python exception can be delivered): the
  statement is interrupted (``storage.interrupts``) and the storage layer raises
  :class:`CpuLimitExceeded`;
* in the project's Python code: :class:`CpuLimitExceeded` is raised in the loop
  thread (CPython's ``PyThreadState_SetAsyncExc``), only while the innermost frame that
  is objectd's or the project's is the project's.  objectd's own code is never
  interrupted mid-step: when user code is stuck calling into it (``while True: await
  storage.get(k)`` spends nearly all its time inside objectd), the run is stopped at
  its next storage call instead (``storage.interrupts.pending``);
* never two of these at once, so the code sees one exception.

Whoever runs the code then handles it: an object's event, ``block_concurrency_while``,
``wait_until`` or a task it created resets the object with Cloudflare's message; the
Worker's request gets a 500; a task of the Worker fails and a listener outside objects
is disconnected, both logged.  C code other than SQLite that runs long (a pathological
regular expression, a huge integer power) cannot be interrupted.

One run is interrupted once; if it goes on (it swallowed the exception), again after
each further ``limit`` of CPU.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import sys
import threading
import time
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

from objectd.runtime.user_code import is_objectd
from objectd.storage.interrupts import CpuLimitExceeded, interrupt_running, pending

__all__ = ["CPU_LIMIT_MESSAGE", "CpuLimitExceeded", "CpuWatchdog"]

CPU_LIMIT_MESSAGE = "Worker exceeded CPU time limit."
_ASYNCIO_DIR = os.path.dirname(asyncio.__file__) + os.sep


def _set_async_exc(ident: int, exc: type[BaseException] | None) -> None:
    """Raise ``exc`` in thread ``ident`` at its next bytecode; None takes it back (NULL)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(ident), None if exc is None else ctypes.py_object(exc)
    )


class _Run:
    """One run the loop is stuck in: whose it is and the loop thread's CPU when it began."""

    __slots__ = ("cpu", "key")

    def __init__(self, key: object, cpu: float) -> None:
        self.key = key  # the task, or the callback's outermost frame
        self.cpu = cpu  # (or when it was last interrupted)


class CpuWatchdog:
    def __init__(
        self,
        limit_s: float,
        *,
        user_code: Callable[[CodeType], bool],
        poll_s: float = 0.2,
    ) -> None:
        self.limit_s = limit_s
        self.poll_s = poll_s
        self._user_code = user_code
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._loop_ident = 0
        self._cpu_clock = 0
        self._beats = 0
        self._beat_cpu = 0.0
        self.interruptions = 0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_ident = threading.get_ident()
        self._cpu_clock = time.pthread_getcpuclockid(self._loop_ident)
        self._beat()
        self._thread = threading.Thread(target=self._watch, name="objectd-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()
        if self._thread is not None:
            self._thread.join(5)

    def _beat(self) -> None:
        self._beats += 1
        self._beat_cpu = time.clock_gettime(self._cpu_clock)
        pending.task = None  # the loop runs: a stop asked of a stuck run is void
        assert self._loop is not None
        self._handle = self._loop.call_later(self.poll_s, self._beat)

    # -- the watchdog thread -------------------------------------------------------------

    def _watch(self) -> None:
        seen = self._beats
        run: _Run | None = None
        while not self._stop.wait(self.poll_s):
            beats = self._beats
            if beats != seen:
                seen, run = beats, None
                continue
            # The loop missed a beat: what is it running, and how much CPU has it used?
            try:
                cpu = time.clock_gettime(self._cpu_clock)
            except OSError:
                return  # the loop thread is gone
            frame = sys._current_frames().get(self._loop_ident)
            assert self._loop is not None
            task = asyncio.current_task(self._loop)
            key = task if task is not None else _callback_entry(frame)
            if run is None or run.key is not key:
                # The first look at this stall counts from the beat; a later run from now.
                run = _Run(key, self._beat_cpu if run is None else cpu)
                pending.task = None
            used = cpu - run.cpu
            if used < self.limit_s:
                continue
            if self._interrupt(frame, task):
                run.cpu = cpu  # if it goes on, again after a further limit

    def _interrupt(self, frame: FrameType | None, task: asyncio.Task[Any] | None) -> bool:
        if interrupt_running():  # in SQLite: the statement stops, the storage layer raises
            self.interruptions += 1
            return True
        innermost, user_below = self._whose(frame)
        if innermost == "user":
            _set_async_exc(self._loop_ident, CpuLimitExceeded)
            # The loop thread waits for the GIL this thread holds, so it resumes in the
            # frame just seen.  Should it have moved into objectd's code meanwhile, take
            # the exception back and try at the next poll.
            now = sys._current_frames().get(self._loop_ident)
            if now is not frame and self._whose(now)[0] != "user":
                _set_async_exc(self._loop_ident, None)
                return False
            self.interruptions += 1
            return True
        if user_below and task is not None and pending.task is not task:
            pending.task = task  # stopped at its next storage call
            self.interruptions += 1
            return True
        return False

    def _whose(self, frame: FrameType | None) -> tuple[str | None, bool]:
        """(whose the innermost frame of objectd or the project is, any user frame?)"""
        innermost: str | None = None
        while frame is not None:
            code = frame.f_code
            if self._user_code(code):
                return innermost or "user", True
            if innermost is None and is_objectd(code):
                innermost = "objectd"
            frame = frame.f_back
        return innermost, False


def _frames(frame: FrameType | None) -> list[FrameType]:
    """``frame`` and its callers, outermost first."""
    frames = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    frames.reverse()
    return frames


def _callback_entry(frame: FrameType | None) -> FrameType | None:
    """The outermost frame of the callback the loop runs: the first above asyncio's own."""
    frames = _frames(frame)
    for index, candidate in enumerate(frames):
        if candidate.f_code.co_filename.startswith(_ASYNCIO_DIR):
            for inner in frames[index:]:
                if not inner.f_code.co_filename.startswith(_ASYNCIO_DIR):
                    return inner
            return None
    return None
