"""The alarm index of one script: which objects may have an alarm, and from when (§7).

An object's alarm lives in its own database (``_cf_METADATA``, key ``alarm``), so
it commits together with the writes around it.  The scheduler cannot open every
object file to learn what is due, so each script keeps an index,
``<root>/<script>/alarms.sqlite``, with one row per object that may have an alarm.
It is read once at start.

The rule that keeps alarms from being lost: **a row is never later than the
object's durable alarm, and never missing while the object has one.**  Rows may be
early or stale -- the scheduler checks the object when a row comes due, then moves
the row later or drops it -- but a crash must never leave an object with an alarm
its row does not cover.  So a row that is added or moved *earlier* is ``urgent``:
the committer commits and syncs the index before it commits any object batch of
the same flush.  Rows move later or disappear only after the scheduler read the
object's stored alarm; those changes need no sync (losing them is harmless).

Rows are keyed by a namespace key (a keyed fingerprint of the class's namespace
secret, so a renamed class keeps its alarms) and the object id.

Synchronous, like the rest of this layer; never awaits.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from objectd.storage.syncing import fsync_path

__all__ = ["ALARM_INDEX_NAME", "ALARM_META_KEY", "AlarmIndex", "IndexRow", "read_object_alarm"]

ALARM_INDEX_NAME = "alarms.sqlite"
# The key of an object's alarm (epoch milliseconds) in its _cf_METADATA table.
ALARM_META_KEY = "alarm"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS alarms ("
    " namespace TEXT NOT NULL,"  # fingerprint of the class's namespace secret
    " object_id TEXT NOT NULL,"  # 64 lower-case hex digits
    " name TEXT,"  # the name the id was derived from, when known (ctx.id.name)
    " time INTEGER NOT NULL,"  # epoch ms, never later than the object's durable alarm
    " PRIMARY KEY (namespace, object_id)) WITHOUT ROWID"
)


@dataclass(frozen=True, slots=True)
class IndexRow:
    namespace: str
    object_id: str
    name: str | None
    time: int


class AlarmIndex:
    """The index file of one script; one connection, used from the event loop only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        created = not path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._wal_fd = -1
        # Kept open until close(): closing any descriptor of the file would drop the
        # POSIX locks SQLite holds on it (see ObjectDatabase).
        self._main_fd = os.open(path, os.O_RDONLY) if created else -1
        self._needs_full_sync = created
        self._urgent = False
        self._on_dirty: Callable[[], None] | None = None
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            # Commits are made durable by commit(sync=True) when they must be.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(_SCHEMA)
            self._wal_fd = os.open(f"{path}-wal", os.O_RDWR | os.O_CREAT, 0o644)
        except BaseException:
            self._conn.close()
            self._close_descriptors()
            raise

    def set_dirty_listener(self, listener: Callable[[], None] | None) -> None:
        """``listener()`` runs when a write opens a transaction (the runtime schedules a commit)."""
        self._on_dirty = listener

    @property
    def dirty(self) -> bool:
        return self._conn.in_transaction

    def load(self) -> list[IndexRow]:
        rows = self._conn.execute("SELECT namespace, object_id, name, time FROM alarms")
        return [IndexRow(ns, oid, name, int(time)) for ns, oid, name, time in rows]

    def put(
        self, namespace: str, object_id: str, name: str | None, time: int, *, urgent: bool
    ) -> None:
        """Insert or move a row; ``urgent``: it must be durable before any object commit."""
        self._begin()
        self._urgent = self._urgent or urgent
        self._conn.execute(
            "INSERT INTO alarms (namespace, object_id, name, time) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (namespace, object_id) DO UPDATE SET time = excluded.time, "
            "name = coalesce(excluded.name, alarms.name)",
            (namespace, object_id, name, time),
        )

    def delete(self, namespace: str, object_id: str) -> None:
        self._begin()
        self._conn.execute(
            "DELETE FROM alarms WHERE namespace = ? AND object_id = ?", (namespace, object_id)
        )

    def keep_only(self, namespaces: Collection[str]) -> int:
        """Drop the rows of every other namespace (deleted classes); committed at once."""
        marks = ", ".join("?" for _ in namespaces) or "NULL"
        cursor = self._conn.execute(  # autocommit: one statement, one transaction
            f"DELETE FROM alarms WHERE namespace NOT IN ({marks})", tuple(namespaces)
        )
        return cursor.rowcount

    def _begin(self) -> None:
        if not self._conn.in_transaction:
            self._conn.execute("BEGIN")
            if self._on_dirty is not None:
                self._on_dirty()

    def commit(self, *, sync: bool) -> None:
        """Commit the open transaction; with ``sync``, make urgent rows durable first."""
        if self._conn.in_transaction:
            try:
                self._conn.execute("COMMIT")
            except BaseException:
                self._urgent = False
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        if sync and self._urgent:
            self._sync()
        self._urgent = False

    def _sync(self) -> None:
        os.fdatasync(self._wal_fd)
        if self._needs_full_sync:
            os.fsync(self._main_fd)
            fsync_path(self.path.parent)
            self._needs_full_sync = False  # only once both made it: a failure retries

    def close(self) -> None:
        try:
            self.commit(sync=True)
        finally:
            self._conn.close()
            self._close_descriptors()

    def _close_descriptors(self) -> None:
        for fd in (self._wal_fd, self._main_fd):
            if fd >= 0:
                os.close(fd)
        self._wal_fd = self._main_fd = -1


def read_object_alarm(path: Path) -> int | None:
    """The stored alarm of the object whose (closed) database is ``path``; None if none.

    Only for an object whose file no connection of this process has open: the
    scheduler peeks before it constructs an object for an index row that may be stale.
    Raises ``sqlite3.Error`` when the file cannot be read (the caller then asks the
    object itself).
    """
    if not path.exists():
        return None
    uri = path.resolve().as_uri() + "?mode=rw"  # never creates a missing file
    # timeout=0: called on the event loop, so never wait for a lock (the caller then
    # asks the object itself).
    conn = sqlite3.connect(uri, uri=True, timeout=0, isolation_level=None)
    try:
        row = conn.execute(
            "SELECT value FROM _cf_METADATA WHERE key = ?", (ALARM_META_KEY,)
        ).fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # a file whose schema was never written
            return None
        raise
    finally:
        conn.close()
    return None if row is None else int(row[0])
