"""The CPU-time limit: stop user code stuck in Python or SQL, end the process if it cannot be.

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

**Ending the process.**  A thread cannot be killed in Python; Cloudflare ends the
isolate.  If the same run is still going ``grace`` of CPU after it passed the limit, it
cannot be stopped: it swallowed every interrupt (``except BaseException: continue``,
a bare ``except:`` around a retried statement), or it is stuck where no interrupt
reaches (C code, objectd's own code).  Every object of the process is frozen behind
it, and only a new process helps: the watchdog logs a critical report (what was
stuck, the object, the stack) and ends the process with :data:`STUCK_EXIT_CODE`, for
its supervisor (systemd's ``Restart=on-failure``, the ``--workers`` supervisor) to
start it again.  Nothing acknowledged is lost: a write is durable before any output
that follows it leaves (the output gate); the events in flight fail and sockets drop,
as when the machine restarts.  ``grace`` is ``limit`` again, at least 1 s and at most
5 s: unwinding from the interrupt takes milliseconds, and meanwhile the process
answers nobody.  During it the run is interrupted again at every poll, so code that
gives up after a few swallowed interrupts still fails only its own event.  Interrupting
faster and longer instead of ending the process would not help code that never gives
up, and would keep every object frozen.

**Stop requests.**  SIGTERM or SIGINT while the loop is stuck used to be ignored:
uvicorn's handler only sets a flag that the stuck loop never reads.  The watchdog
wraps the Python signal handlers installed when it starts, to note the request; if
the loop has not run for ``grace`` (wall time) since, it ends the process the same
way.  A signal's Python handler runs between bytecodes, so one that arrives while
SQLite runs is noted when the CPU limit has interrupted the statement.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

from objectd.runtime.user_code import is_objectd
from objectd.storage.interrupts import CpuLimitExceeded, interrupt_running, pending

__all__ = [
    "CPU_LIMIT_MESSAGE",
    "STUCK_EXIT_CODE",
    "CpuLimitExceeded",
    "CpuWatchdog",
    "default_grace",
    "end_process",
]

log = logging.getLogger("objectd.runtime")

CPU_LIMIT_MESSAGE = "Worker exceeded CPU time limit."
# EX_SOFTWARE (sysexits.h): distinct from 1 (could not start) and from 128 + a signal.
STUCK_EXIT_CODE = 70
_EXIT_WITHIN_S = 2.0  # if writing the report blocks (a lock the stuck code holds), exit anyway
_ASYNCIO_DIR = os.path.dirname(asyncio.__file__) + os.sep


def _set_async_exc(ident: int, exc: type[BaseException] | None) -> None:
    """Raise ``exc`` in thread ``ident`` at its next bytecode; None takes it back (NULL)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(ident), None if exc is None else ctypes.py_object(exc)
    )


def default_grace(limit_s: float) -> float:
    """CPU a run may take past the limit before the process ends: ``limit``, in [1 s, 5 s]."""
    return min(max(limit_s, 1.0), 5.0)


def end_process(report: str) -> None:
    """Log ``report`` and end the process with :data:`STUCK_EXIT_CODE` (from any thread)."""
    bound = threading.Timer(_EXIT_WITHIN_S, os._exit, (STUCK_EXIT_CODE,))
    bound.daemon = True
    bound.start()
    log.critical("%s", report)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(STUCK_EXIT_CODE)


class _Run:
    """One run the loop is stuck in: whose it is and the loop thread's CPU when it began."""

    __slots__ = ("cpu", "interrupts", "key")

    def __init__(self, key: object, cpu: float) -> None:
        self.key = key  # the task, or the callback's outermost frame
        self.cpu = cpu
        self.interrupts = 0


class CpuWatchdog:
    def __init__(
        self,
        limit_s: float,
        *,
        user_code: Callable[[CodeType], bool],
        poll_s: float = 0.2,
        grace_s: float | None = None,
        describe: Callable[[FrameType | None], str | None] | None = None,
        on_stuck: Callable[[str], None] = end_process,
    ) -> None:
        """``describe(frame)`` names the object running there; ``on_stuck(report)`` ends it."""
        self.limit_s = limit_s
        self.poll_s = poll_s
        self.grace_s = default_grace(limit_s) if grace_s is None else grace_s
        self._user_code = user_code
        self._describe = describe
        self._on_stuck = on_stuck
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._loop_ident = 0
        self._cpu_clock = 0
        self._beats = 0
        self._beat_cpu = 0.0
        self._beat_wall = 0.0
        self._stop_requested: float | None = None  # when SIGTERM/SIGINT came (monotonic)
        self._signal_handlers: dict[int, Callable[[int, FrameType | None], Any]] = {}
        self.interruptions = 0
        self.report: str | None = None  # set when the watchdog gave up on the loop

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_ident = threading.get_ident()
        self._cpu_clock = time.pthread_getcpuclockid(self._loop_ident)
        self._note_stop_signals()
        self._beat()
        self._thread = threading.Thread(target=self._watch, name="objectd-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()
        self._restore_signal_handlers()
        if self._thread is not None:
            self._thread.join(5)

    def _beat(self) -> None:
        self._beats += 1
        self._beat_cpu = time.clock_gettime(self._cpu_clock)
        self._beat_wall = time.monotonic()
        pending.task = None  # the loop runs: a stop asked of a stuck run is void
        assert self._loop is not None
        self._handle = self._loop.call_later(self.poll_s, self._beat)

    # -- stop requests -------------------------------------------------------------------

    def _note_stop_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers belong to the main thread; none to wrap here
        for sig in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(sig)
            # Only Python handlers (uvicorn's): a C default stops the process by itself.
            if callable(handler) and handler is not signal.default_int_handler:
                self._signal_handlers[sig] = handler
                signal.signal(sig, self._stop_signal)

    def _stop_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop_requested = time.monotonic()
        handler = self._signal_handlers.get(signum)
        if handler is not None:
            handler(signum, frame)

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig, handler in self._signal_handlers.items():
                if signal.getsignal(sig) == self._stop_signal:
                    signal.signal(sig, handler)
        self._signal_handlers.clear()

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
            requested = self._stop_requested
            if requested is not None:
                waited = time.monotonic() - max(requested, self._beat_wall)
                if waited >= self.grace_s:
                    why = f"a stop was requested and the loop has not run for {waited:.1f} s"
                    self._give_up(why, frame)
                    return
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
            if used >= self.limit_s + self.grace_s:
                self._give_up(self._why(run, used), frame)
                return
            self._interrupt(run, frame, task)

    def _interrupt(
        self, run: _Run, frame: FrameType | None, task: asyncio.Task[Any] | None
    ) -> None:
        if interrupt_running():  # in SQLite: the statement stops, the storage layer raises
            self.interruptions += 1
            run.interrupts += 1
            return
        innermost, user_below = self._whose(frame)
        if innermost == "user":
            _set_async_exc(self._loop_ident, CpuLimitExceeded)
            # The loop thread waits for the GIL this thread holds, so it resumes in the
            # frame just seen.  Should it have moved into objectd's code meanwhile, take
            # the exception back and try at the next poll.
            now = sys._current_frames().get(self._loop_ident)
            if now is not frame and self._whose(now)[0] != "user":
                _set_async_exc(self._loop_ident, None)
                return
            self.interruptions += 1
            run.interrupts += 1
        elif user_below and task is not None and pending.task is not task:
            pending.task = task  # stopped at its next storage call
            self.interruptions += 1
            run.interrupts += 1

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

    def _why(self, run: _Run, used: float) -> str:
        if run.interrupts:
            return (
                f"code ran {used:.1f} s of CPU without yielding and went on after the CPU "
                f"limit ({self.limit_s:g} s) interrupted it"
            )
        return (
            f"code ran {used:.1f} s of CPU without yielding where the CPU limit "
            f"({self.limit_s:g} s) cannot interrupt it (C code, or objectd's own)"
        )

    def _give_up(self, why: str, frame: FrameType | None) -> None:
        where = self._describe(frame) if self._describe is not None else None
        report = (
            f"objectd: the event loop is stuck: {why}. Ending the process with exit code "
            f"{STUCK_EXIT_CODE} for its supervisor to start it again; every acknowledged "
            "write is durable, the events in flight fail.\n"
            f"Stuck in {where or 'code outside any object'}, at (most recent call last):\n"
            + "".join(traceback.format_list(_stack(frame)))
        )
        self.report = report
        self._on_stuck(report)


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


def _stack(frame: FrameType | None) -> traceback.StackSummary:
    """The stuck run's frames, from its callback's outermost frame (or all of them)."""
    frames = _frames(frame)
    entry = _callback_entry(frame)
    if entry is not None:
        frames = frames[frames.index(entry) :]
    return traceback.StackSummary.extract((f, f.f_lineno) for f in frames)
