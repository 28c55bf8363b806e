"""One object's SQLite database file: schema, the implicit write batch, and syncing.

Layout and durability (ARCHITECTURE §3, §4):

* One file per object in WAL mode. objectd's own data lives in reserved ``_cf_``
  tables in the same file, so a KV write, an alarm and user SQL commit together.
* Writes made during one event-loop turn form one *batch*: the first write opens
  ``BEGIN`` and tells the owner (the runtime's committer) that the file is dirty;
  the committer later calls :meth:`commit` and then :meth:`sync`.
* ``synchronous=NORMAL``: SQLite does not sync the WAL on COMMIT, but it still syncs
  correctly around checkpoints.  Durability of a commit is provided by
  :meth:`sync`, an ``fdatasync`` of the WAL file, which the committer may run in a
  worker thread (it touches only file descriptors, never the connection), so many
  objects' syncs overlap and the event loop never waits on a connection mutex.
* Internal statements start with a per-process nonce comment.  Python's sqlite3
  caches prepared statements by their text, and a cached statement is not
  re-authorized, so user SQL must never share text with an internal statement:
  the nonce makes that impossible (see ``storage.sql`` for the authorizer).

This layer is synchronous and never awaits.
"""

from __future__ import annotations

import enum
import os
import secrets
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from objectd.errors import SqlError, StorageError
from objectd.storage.spares import SpareFiles
from objectd.storage.sqlite_errors import sql_error
from objectd.storage.syncing import fsync_path

__all__ = ["Backend", "ObjectDatabase", "internal_sql", "template_files"]

_NONCE = f"/*objectd:{secrets.token_hex(8)}*/ "


def internal_sql(statement: str) -> str:
    """``statement`` marked as objectd's own, so the user-SQL authorizer lets it through."""
    return _NONCE + statement


def is_internal_sql(statement: str) -> bool:
    return statement.startswith(_NONCE)


class Backend(enum.Enum):
    """How a class's objects store data (spec §5.1); fixed by the class's create migration."""

    KV = "kv"  # new_classes: async KV API only
    SQLITE = "sqlite"  # new_sqlite_classes: KV, storage.kv, SQL and transactionSync


_ABORTED = "Cannot commit transaction due to an earlier SQL critical error"

_SCHEMA_VERSION = 1
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS _cf_KV (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS _cf_METADATA (key TEXT PRIMARY KEY, value) WITHOUT ROWID",
)


_template: tuple[bytes, bytes] | None = None


def template_files() -> tuple[bytes, bytes]:
    """A new object's database and WAL file (schema and version committed in the WAL).

    Built once per process.  A new object starts with a WAL that already holds a
    commit, so SQLite appends to it: starting an empty WAL would make SQLite sync the
    WAL header and the folder on the event loop, two disk flushes per new object that
    our own sync after the first commit makes redundant.
    """
    global _template
    if _template is None:
        with tempfile.TemporaryDirectory(prefix="objectd-template-") as folder:
            path = os.path.join(folder, "template.sqlite")
            conn = sqlite3.connect(path, isolation_level=None)
            try:
                conn.execute("PRAGMA locking_mode=EXCLUSIVE")
                conn.execute("PRAGMA synchronous=OFF")
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("BEGIN")
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
                conn.execute("COMMIT")
                # Read while the connection is open: closing would checkpoint the WAL away.
                with open(path, "rb") as main, open(f"{path}-wal", "rb") as wal:
                    _template = (main.read(), wal.read())
            finally:
                conn.close()
    return _template


def _create_from_template(path: Path) -> None:
    """Create a new object's files: the WAL, then the database atomically by a rename.

    No SQLite work and no sync on the event loop; a crash leaves at most a temp file or
    a WAL without its database, which the next creation overwrites.  The first sync of
    the object makes the files and their folder entries durable (``_needs_full_sync``).
    """
    main, wal = template_files()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}-wal", "wb") as out:
        out.write(wal)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with open(temp, "wb") as out:
        out.write(main)
    os.replace(temp, path)


def _non_empty(path: str) -> bool:
    try:
        return os.stat(path).st_size > 0
    except FileNotFoundError:
        return False


class ObjectDatabase:
    """The SQLite file of one object, opened for the life of its instance."""

    def __init__(
        self,
        path: Path,
        *,
        backend: Backend,
        spares: SpareFiles | None = None,
    ) -> None:
        self.path = path
        self.backend = backend
        self._on_batch_open: Callable[[ObjectDatabase], None] | None = None
        self._batch_open = False
        self._savepoint_depth = 0
        # SQLite ended the open batch itself (ON CONFLICT ROLLBACK, RAISE(ROLLBACK), a
        # critical error): the batch's earlier writes are gone, so it must fail, not commit.
        self._aborted = False
        # The write in progress is the open batch's first: if SQLite refuses it, rolling
        # the batch back loses nothing else (write_failed).
        self._first_write = False
        # User SQL set PRAGMA defer_foreign_keys in the open transaction (see
        # deferred_foreign_keys_set).
        self._expire_at_end = False
        created = not path.exists()
        taken = False
        # A WAL left with data means the last process did not close the file cleanly (a
        # clean close checkpoints it away): maybe before the file's first sync, so the
        # file and its folder entries may not be durable yet.  Sync them again.
        unclean = not created and _non_empty(f"{path}-wal")
        if created:
            taken = spares is not None and spares.take(path)
            if not taken:
                _create_from_template(path)
        self.created = created
        # timeout=0: SQLite never waits for a lock.  This connection is meant to be the
        # file's only one; if another holds it (a second process, a routing bug), opening
        # fails at once with "database is locked" instead of sleeping in SQLite's busy
        # handler, which would stall the event loop it runs on.
        self.conn = sqlite3.connect(
            path, timeout=0, isolation_level=None, check_same_thread=False, cached_statements=256
        )
        self._wal_fd = -1
        # A new file's folder entries (and, unless it was a synced spare, its contents)
        # must reach the disk with its first sync.
        self._needs_full_sync = created or unclean
        # The main file is synced through a descriptor kept open until close(), never one
        # opened and closed for the sync: POSIX record locks belong to the process, and
        # closing *any* descriptor of the file drops the lock SQLite holds on it, which
        # would let another process write a live object's file.
        self._main_fd = os.open(path, os.O_RDONLY) if (created and not taken) or unclean else -1
        try:
            # One live instance per object: this connection is the file's only user, so
            # it holds the lock for its lifetime and keeps the WAL index in its own memory
            # (no -shm file, no shared mmap, faster opens).
            self.conn.execute(internal_sql("PRAGMA locking_mode=EXCLUSIVE"))
            self.conn.execute(internal_sql("PRAGMA synchronous=NORMAL"))
            self.conn.execute(internal_sql("PRAGMA journal_mode=WAL"))
            # As workerd: foreign keys are enforced unless the object's SQL turns them off.
            self.conn.execute(internal_sql("PRAGMA foreign_keys=ON"))
            version = self.conn.execute(internal_sql("PRAGMA user_version")).fetchone()[0]
            if version > _SCHEMA_VERSION:
                # Written by a newer objectd: stamping our version on it would pass its
                # data off as a format it is not.  There are no downgrades.
                raise StorageError(
                    f"{path}: data format {version} is newer than this objectd's "
                    f"({_SCHEMA_VERSION}): a newer objectd wrote it; run that version"
                )
            if version != _SCHEMA_VERSION:  # 0: a file made before its schema was written
                self.conn.execute(internal_sql("BEGIN"))
                for statement in _SCHEMA:
                    self.conn.execute(internal_sql(statement))
                self.conn.execute(internal_sql(f"PRAGMA user_version={_SCHEMA_VERSION}"))
                self.conn.execute(internal_sql("COMMIT"))
            # Opened (and created if missing) after the first write so that it is the
            # same inode SQLite appends to; it stays valid while the connection is open.
            self._wal_fd = os.open(f"{path}-wal", os.O_RDWR | os.O_CREAT, 0o644)
            self.device = os.fstat(self._wal_fd).st_dev
        except BaseException:
            self.conn.close()
            self._close_descriptors()
            raise

    # -- the implicit batch -------------------------------------------------------------

    def set_batch_listener(self, listener: Callable[[ObjectDatabase], None] | None) -> None:
        """``listener(db)`` runs whenever a write opens a new batch (the runtime enqueues it)."""
        self._on_batch_open = listener

    @property
    def batch_open(self) -> bool:
        return self._batch_open

    @property
    def in_savepoint(self) -> bool:
        return self._savepoint_depth > 0

    def begin_write(self) -> None:
        """Open the implicit batch transaction if it is not open yet."""
        if self._aborted:
            raise StorageError(_ABORTED)
        if not self._batch_open:
            try:
                self.conn.execute(internal_sql("BEGIN"))
            except sqlite3.Error as exc:
                raise sql_error(exc) from exc
            self._batch_open = True
            self._first_write = True
            if self._on_batch_open is not None:
                self._on_batch_open(self)
        else:
            self._first_write = False

    def commit(self) -> None:
        """Commit the open batch (not yet synced; see :meth:`sync`)."""
        if self._aborted:
            self._aborted = False
            raise StorageError(_ABORTED)
        if self._savepoint_depth:
            raise RuntimeError("cannot commit a batch while a transaction() is open")
        if self._batch_open:
            self._batch_open = False
            try:
                self.conn.execute(internal_sql("COMMIT"))
            except sqlite3.Error as exc:  # e.g. a deferred foreign key: the caller resets
                raise sql_error(exc) from exc
            if self._expire_at_end:
                self._expire_statements()

    def write_failed(self, exc: sqlite3.Error) -> SqlError:
        """The error for a write of objectd's own that SQLite refused; the batch fails.

        SQLite may have rolled the whole transaction back (``SQLITE_FULL``, ``IOERR``:
        its critical errors) or only the failed statement, after part of a multi-row
        write.  If the write was the batch's first, rolling the batch back leaves the
        object as it was before the call: only the call fails.  Otherwise the turn's
        earlier writes may be gone, so the batch must fail at commit (the object is
        reset), never commit a part of them; workerd does the same after a critical error.
        """
        if self._batch_open and not (self._first_write and self._empty_batch()):
            self.batch_aborted()
        return sql_error(exc)

    def _empty_batch(self) -> bool:
        """Roll the open batch back and begin it again; False if SQLite refused.

        The batch stays open, so the runtime's bookkeeping of it (the output gate, the
        committer) goes on as for any batch.
        """
        try:
            if self.conn.in_transaction:
                self.conn.execute(internal_sql("ROLLBACK"))
            self.conn.execute(internal_sql("BEGIN"))
        except sqlite3.Error:
            return False
        return True

    def deferred_foreign_keys_set(self) -> None:
        """User SQL set ``PRAGMA defer_foreign_keys``: prepared statements are expired when
        the transaction ends.

        SQLite decides at prepare time whether a statement's foreign key checks are
        deferred, and the flag switches itself off at COMMIT or ROLLBACK without expiring
        what was prepared under it.  A cached statement would then go on deferring: its
        violation is reported at the end of the statement, but the row stays, and commits.
        """
        self._expire_at_end = True

    def _expire_statements(self) -> None:
        self._expire_at_end = False
        # Setting a flag pragma expires every prepared statement (SQLite's OP_Expire);
        # outside a transaction OFF is also what the flag already is.
        self.conn.execute(internal_sql("PRAGMA defer_foreign_keys = OFF"))

    def batch_aborted(self) -> None:
        """SQLite rolled the open batch back on its own: fail it at commit time."""
        self.rollback(keep_aborted=True)
        self._aborted = True

    def rollback(self, *, keep_aborted: bool = False) -> None:
        """Discard the open batch (object reset or a failed commit)."""
        if not keep_aborted:
            self._aborted = False
        self._savepoint_depth = 0
        if self._batch_open:
            self._batch_open = False
        if self.conn.in_transaction:
            self.conn.execute(internal_sql("ROLLBACK"))
        if self._expire_at_end:
            self._expire_statements()

    def sync(self) -> None:
        """Make every committed batch durable. Thread-safe: touches file descriptors only."""
        os.fdatasync(self._wal_fd)
        if self._needs_full_sync:
            if self._main_fd >= 0:
                os.fsync(self._main_fd)
            fsync_path(self.path.parent)
            self._needs_full_sync = False  # only once both made it: a failure retries

    @property
    def sync_fd(self) -> int:
        return self._wal_fd

    def synced_with_filesystem(self) -> None:
        """A ``syncfs`` of this file's filesystem returned after the last commit.

        It wrote back the WAL, the main file and the folder entries, so a new file
        needs no separate sync of its own (``storage.syncing``).
        """
        self._needs_full_sync = False

    # -- savepoints (transaction() / transactionSync()) -----------------------------------

    @contextmanager
    def savepoint(self, prefix: str) -> Iterator[None]:
        """A nested SAVEPOINT inside the batch; released on success, rolled back on error."""
        self.begin_write()
        depth = self._savepoint_depth
        name = f"_cf_{prefix}_{depth}"
        self.conn.execute(internal_sql(f"SAVEPOINT {name}"))
        self._savepoint_depth += 1
        try:
            yield
        except BaseException:
            if self._savepoint_depth > depth:
                self._savepoint_depth = depth
                self.conn.execute(internal_sql(f"ROLLBACK TO {name}"))
                self.conn.execute(internal_sql(f"RELEASE {name}"))
            raise
        else:
            if self._savepoint_depth > depth:
                self._savepoint_depth = depth
                self.conn.execute(internal_sql(f"RELEASE {name}"))

    def rollback_savepoint(self, prefix: str, depth: int) -> None:
        """``txn.rollback()``: undo the savepoint at ``depth`` now; the context exits quietly."""
        name = f"_cf_{prefix}_{depth}"
        self.conn.execute(internal_sql(f"ROLLBACK TO {name}"))
        self.conn.execute(internal_sql(f"RELEASE {name}"))
        self._savepoint_depth = depth

    @property
    def savepoint_depth(self) -> int:
        return self._savepoint_depth

    # -- metadata ------------------------------------------------------------------------

    def get_meta(self, key: str) -> object:
        try:
            row = self.conn.execute(_GET_META, (key,)).fetchone()
        except sqlite3.Error as exc:
            raise sql_error(exc) from exc
        return None if row is None else row[0]

    def set_meta(self, key: str, value: object) -> None:
        self.begin_write()
        try:
            if value is None:
                self.conn.execute(_DELETE_META, (key,))
            else:
                self.conn.execute(_PUT_META, (key, value))
        except sqlite3.Error as exc:
            raise self.write_failed(exc) from exc

    def size(self) -> int:
        """Bytes in use: (page_count - freelist_count) * page_size."""
        try:
            pages = self.conn.execute(internal_sql("PRAGMA page_count")).fetchone()[0]
            free = self.conn.execute(internal_sql("PRAGMA freelist_count")).fetchone()[0]
            page_size = self.conn.execute(internal_sql("PRAGMA page_size")).fetchone()[0]
        except sqlite3.Error as exc:
            raise sql_error(exc) from exc
        return int((pages - free) * page_size)

    def close(self) -> None:
        """Close the file; an open batch is rolled back (the caller commits first)."""
        try:
            if self.conn.in_transaction:
                self.conn.execute(internal_sql("ROLLBACK"))
        finally:
            self.conn.close()
            self._close_descriptors()

    def _close_descriptors(self) -> None:
        """Close our own descriptors of the files, after SQLite's connection is closed."""
        for fd in (self._wal_fd, self._main_fd):
            if fd >= 0:
                os.close(fd)
        self._wal_fd = self._main_fd = -1


_GET_META = internal_sql("SELECT value FROM _cf_METADATA WHERE key = ?")
_PUT_META = internal_sql("INSERT OR REPLACE INTO _cf_METADATA (key, value) VALUES (?, ?)")
_DELETE_META = internal_sql("DELETE FROM _cf_METADATA WHERE key = ?")
