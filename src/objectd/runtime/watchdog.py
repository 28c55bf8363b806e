"""The CPU-time limit: stop a handler stuck in a Python loop or a SQL statement (spec §11).

A handler that never awaits blocks the event loop, so nothing on the loop can stop
it.  A watchdog thread watches a heartbeat the loop posts every ``poll`` seconds.
When the heartbeat stalls and the loop thread has burnt ``limit`` seconds of CPU
since the last beat, and the stuck code is running inside an object's event (or the
Worker's entrypoint: ``targets``), the watchdog stops it:

* in SQLite (a statement runs in C, where no Python exception can be delivered): it
  interrupts the statement (``storage.interrupts``), and the storage layer raises
  :class:`CpuLimitExceeded`;
* in Python: it raises :class:`CpuLimitExceeded` in the loop thread (CPython's
  ``PyThreadState_SetAsyncExc``).  Never both, so the handler sees one exception.

The event's runner catches it and resets only that object.  Blocking that is not CPU
(a sleeping system call) is not counted, and code outside an object event is never
interrupted.  One stall is interrupted once; if it goes on (the handler swallowed the
exception), again after each further ``limit`` of CPU.  Until then the exception's
unwinding, the reset and the callbacks queued behind it are left alone: the loop is
catching up, and an innocent event running meanwhile must not be hit.

What is measured is one uninterrupted run between two awaits, not the sum over an
event: cooperative code that awaits is never interrupted.  C code other than SQLite
that runs for long (a pathological regular expression, a huge integer power) cannot
be stopped.
"""

from __future__ import annotations

import asyncio
import ctypes
import sys
import threading
import time
from types import CodeType

from objectd.storage.interrupts import CpuLimitExceeded, interrupt_running

__all__ = ["CpuLimitExceeded", "CpuWatchdog"]


class CpuWatchdog:
    def __init__(
        self, limit_s: float, *, targets: tuple[CodeType, ...], poll_s: float = 0.2
    ) -> None:
        self.limit_s = limit_s
        self.poll_s = poll_s
        self._targets = targets
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._loop_ident = 0
        self._cpu_clock = 0
        self._beats = 0
        self._beat_cpu = 0.0
        self._interrupted_beat = -1
        self._interrupted_cpu = 0.0  # the loop thread's CPU time at that interruption
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
        assert self._loop is not None
        self._handle = self._loop.call_later(self.poll_s, self._beat)

    def _watch(self) -> None:
        seen = self._beats
        while not self._stop.wait(self.poll_s):
            beats = self._beats
            if beats != seen:
                seen = beats
                continue
            # The loop missed a beat: how much CPU has its thread used since?
            try:
                cpu = time.clock_gettime(self._cpu_clock)
            except OSError:
                return  # the loop thread is gone
            if cpu - self._beat_cpu < self.limit_s:
                continue
            if self._interrupted_beat == beats and cpu - self._interrupted_cpu < self.limit_s:
                continue  # interrupted already: the loop is unwinding and catching up
            if not self._in_event():
                continue
            self._interrupted_beat, self._interrupted_cpu = beats, cpu
            self.interruptions += 1
            if not interrupt_running():  # not in SQLite: raise in the Python code
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(self._loop_ident), ctypes.py_object(CpuLimitExceeded)
                )

    def _in_event(self) -> bool:
        frame = sys._current_frames().get(self._loop_ident)
        while frame is not None:
            if frame.f_code in self._targets:
                return True
            frame = frame.f_back
        return False
