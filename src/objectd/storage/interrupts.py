"""Stopping SQLite in the middle of a statement: the slot the CPU watchdog reads (issue 9 §2).

SQLite runs a statement in C with the GIL released, where the CPU watchdog's
asynchronous exception (``runtime.watchdog``) cannot reach: an endless ``WITH
RECURSIVE`` held the event loop, and with it every object and even SIGTERM, forever.
So the storage code that runs a statement a user can make arbitrarily long (user SQL
in ``SqlStorage.exec``, ``deleteAll()``) names its connection in :data:`running` while
SQLite works on it, and the watchdog calls :func:`interrupt_running`:
``sqlite3_interrupt`` is thread-safe and takes no lock, and SQLite stops at its next
step.  The slot costs two attribute stores per statement and no call.

One slot per process: objectd runs one event loop per process (ARCHITECTURE §2), and
user statements run only on it.  An interrupt that arrives just after the statement
ended is harmless: SQLite clears the flag when the next statement starts while none
is running, and these callers never leave a statement running (rows are read at once).

Interrupted, SQLite rolls back the open transaction if the statement wrote and keeps
it if it only read.  The caller brings ``ObjectDatabase``'s bookkeeping in line (the
batch fails, it is never committed half-done) and raises :class:`CpuLimitExceeded`:
only the watchdog interrupts, so ``SQLITE_INTERRUPT`` always means the CPU limit, and
the raw ``sqlite3.OperationalError`` never reaches user code.  The runtime resets the
object with Cloudflare's message.

The same module holds the watchdog's other slot, :data:`pending`: a task stuck in
objectd's own Python code on behalf of user code (``while True: await storage.get(k)``
spends nearly all its time inside objectd) is not interrupted there, mid-step, but at
the next storage call it makes (:func:`raise_pending`, called where every storage
operation starts), a point where nothing is half-done.

This layer is synchronous and never awaits.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from objectd.storage.database import ObjectDatabase

__all__ = [
    "CpuLimitExceeded",
    "abort_interrupted",
    "interrupt_running",
    "interruptible",
    "is_interrupt",
    "pending",
    "raise_pending",
    "running",
]


class CpuLimitExceeded(BaseException):
    """The CPU limit stopped a handler (in Python or in SQLite); never reaches user callers.

    A BaseException, so a handler's ``except Exception`` cannot swallow it.
    """


class _Running:
    __slots__ = ("conn",)

    def __init__(self) -> None:
        self.conn: sqlite3.Connection | None = None


# The connection executing a long-runnable statement on the event loop right now.
running = _Running()


class _Pending:
    __slots__ = ("task",)

    def __init__(self) -> None:
        self.task: asyncio.Task[object] | None = None


# The task the CPU limit is to stop at its next storage call (set by the watchdog, which
# clears it when that run ends); None nearly always, so the check costs one load.
pending = _Pending()


def raise_pending() -> None:
    """Raise :class:`CpuLimitExceeded` here if the watchdog asked to stop this task."""
    task = pending.task
    if task is None:
        return
    try:
        current = asyncio.current_task()
    except RuntimeError:  # no event loop in this thread: not the task it means
        return
    if current is task:
        pending.task = None
        raise CpuLimitExceeded("stopped by the CPU limit at a storage call")


def interrupt_running() -> bool:
    """Interrupt the statement in :data:`running` (from any thread); False if there is none."""
    conn = running.conn
    if conn is None:
        return False
    conn.interrupt()
    return True


def is_interrupt(exc: BaseException) -> bool:
    return (
        isinstance(exc, sqlite3.OperationalError)
        and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_INTERRUPT
    )


def abort_interrupted(db: ObjectDatabase, exc: BaseException) -> CpuLimitExceeded:
    """The error to raise for ``exc`` (an interrupt): ``db``'s open batch fails first.

    A write that SQLite interrupted ended the whole transaction, and with it the batch
    and its savepoints; the batch must then fail at commit time, never half-commit.
    """
    if db.batch_open and not db.conn.in_transaction:
        db.batch_aborted()
    error = CpuLimitExceeded("a SQLite statement was interrupted by the CPU limit")
    error.__cause__ = exc
    return error


@contextmanager
def interruptible(db: ObjectDatabase) -> Iterator[None]:
    """Statements run inside may be interrupted by the CPU watchdog (not for hot paths)."""
    running.conn = db.conn
    try:
        yield
    except sqlite3.OperationalError as exc:
        running.conn = None
        if is_interrupt(exc):
            raise abort_interrupted(db, exc) from exc
        raise
    finally:
        running.conn = None
