"""``ctx.storage.sql``: user SQL against the object's own SQLite file (spec §5.9).

``exec()`` runs its statements before it returns: a write is part of the object's
implicit batch (``ObjectDatabase.begin_write``) as soon as ``exec`` is back, so it
commits with the KV writes and alarm of the same turn.  The cursor then hands out
rows already fetched (the last statement is run to completion inside ``exec``), so
no user statement is ever stepped outside the authorizer's watch.

Because the rows are fetched eagerly, what one statement may hold is bounded:
:data:`MAX_RESULT_BYTES` (128 MiB, Cloudflare's isolate memory limit), counted as the
Python memory of the rows as ``to_array()`` hands them out (a dict per row, each
value's own size).  A ``SELECT`` over an endless ``WITH RECURSIVE`` used to fill
gigabytes before the CPU limit fired.  Rows are fetched in chunks of about 1 MiB (the
first chunk is one row, so a row of 400 MiB, the most SQLite's limits allow, is the
worst overshoot); past the bound ``exec`` fails with :class:`DurableObjectRangeError`.
That is a plain error, not a reset: nothing was changed by a read, and the object can
go on (a page with ``LIMIT`` works).  A writing statement (``RETURNING``) had finished
its write when its rows came: its batch then fails, as after SQLite's own rollbacks,
so no write is kept for a call that failed.

Safety comes from three places: the authorizer (``storage.authorizer``) checks
every name, function and pragma while SQLite prepares a statement; SQLite limits
(``sqlite3_limit``) bound sizes; and the text checks below refuse transaction
statements, parameters on non-final statements, a rename into the reserved
``_cf_`` namespace (the authorizer sees only the old name) and any text carrying
objectd's internal-statement marker.

Two SQLite features a workerd build has are out of reach of Python's sqlite3 on
3.11: defensive mode (FTS5/R*Tree shadow tables stay writable by user SQL, as they
are to their owner anyway) and the ``at offset <n>`` part of syntax error messages.

This layer is synchronous and never awaits.
"""

from __future__ import annotations

import sqlite3
import weakref
from collections import deque
from itertools import chain, repeat
from operator import length_hint
from sys import getsizeof
from typing import TypeAlias

from objectd.errors import DurableObjectRangeError, DurableObjectTypeError, SqlError, StorageError
from objectd.storage.authorizer import READ_ONLY_PRAGMAS, UserSqlGuard, is_reserved_name
from objectd.storage.database import ObjectDatabase, internal_sql, is_internal_sql
from objectd.storage.interrupts import abort_interrupted, interruptible, is_interrupt, running
from objectd.storage.sql_split import Statement, split_statements
from objectd.storage.sqlite_errors import sql_error

__all__ = [
    "MAX_RESULT_BYTES",
    "MAX_SQL_LENGTH",
    "RawCursor",
    "SqlStorage",
    "SqlStorageCursor",
    "SqlValue",
    "installed_guard",
]

SqlValue: TypeAlias = int | float | str | bytes | None
_Row: TypeAlias = tuple[SqlValue, ...]

MAX_SQL_LENGTH = 100_000  # bytes of UTF-8, the whole exec() text
# What the rows of one exec() may take in memory (Cloudflare's isolate memory limit).
MAX_RESULT_BYTES = 128 * 1024 * 1024
_CHUNK_BYTES = 1024 * 1024  # rows fetched between two checks of the bound, about
_MAX_CHUNK_ROWS = 4096
# rows_read's progress handler: called every 8 VM steps of a statement.  At every step
# it cost about 0.05 us per step (a scan returning nothing ran 5x slower); every 8th
# step costs little, and overstates rows_read by at most 7 per statement.
_STEPS_PER_CALL = 8
_TICKS = 2**62  # calls the handler can count (it would stop the statement after them)

# sqlite3_limit() values (spec §5.9 table, workerd's column).  None of objectd's own
# statements come near them: KV entries are at most 2 MiB and use at most 3 variables.
_LIMITS = {
    sqlite3.SQLITE_LIMIT_LENGTH: 4 * 1024 * 1024,
    sqlite3.SQLITE_LIMIT_SQL_LENGTH: MAX_SQL_LENGTH,
    sqlite3.SQLITE_LIMIT_COLUMN: 100,
    sqlite3.SQLITE_LIMIT_EXPR_DEPTH: 100,
    sqlite3.SQLITE_LIMIT_COMPOUND_SELECT: 5,
    sqlite3.SQLITE_LIMIT_VDBE_OP: 25_000,
    sqlite3.SQLITE_LIMIT_FUNCTION_ARG: 127,
    sqlite3.SQLITE_LIMIT_ATTACHED: 0,
    sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH: 50,
    sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER: 100,
    sqlite3.SQLITE_LIMIT_TRIGGER_DEPTH: 10,
    sqlite3.SQLITE_LIMIT_WORKER_THREADS: 0,
}

_NO_STATEMENT = "SQL code did not contain a statement."
_PARAMETERS_ONLY_LAST = (
    "When executing multiple SQL statements in a single call, "
    "only the last statement can have parameters."
)
_WRONG_BINDING_COUNT = "Wrong number of parameter bindings for SQL query."
_USE_TRANSACTION_API = (
    "To execute a transaction, please use the state.storage.transaction() or "
    "state.storage.transactionSync() APIs instead of the SQL BEGIN TRANSACTION or SAVEPOINT "
    "statements. The JavaScript API is safer because it will automatically roll back on "
    "exceptions, and because it interacts correctly with Durable Objects' automatic atomic "
    "write coalescing."
)
_TRANSACTION_KEYWORDS = frozenset({"BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE"})
_READ_ONLY_KEYWORDS = frozenset({"SELECT", "VALUES", "EXPLAIN"})
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# One guard per database: a second SqlStorage over the same file must not install a
# second callback (sqlite3_set_authorizer also expires every prepared statement).
_guards: weakref.WeakKeyDictionary[ObjectDatabase, UserSqlGuard] = weakref.WeakKeyDictionary()


def _install_guard(db: ObjectDatabase) -> UserSqlGuard:
    guard = _guards.get(db)
    if guard is None:
        guard = UserSqlGuard()
        for category, limit in _LIMITS.items():
            db.conn.setlimit(category, limit)
        # Foreign keys are enforced from the moment the file opens (ObjectDatabase).
        db.conn.set_authorizer(guard)
        _guards[db] = guard
    return guard


def installed_guard(db: ObjectDatabase) -> UserSqlGuard | None:
    """The user-SQL authorizer on ``db``'s connection, if any (to set it back after a
    reader replaced it for a moment: ``storage.inspection``)."""
    return _guards.get(db)


def _binding(position: int, value: object) -> SqlValue:
    if value is None or isinstance(value, str | float | bytes):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise DurableObjectRangeError(
                f"SQL binding {position} is an integer outside SQLite's 64-bit range: {value}; "
                f"allowed: {_INT64_MIN} to {_INT64_MAX} (bind a float or str instead)"
            )
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise DurableObjectTypeError(
        f"SQL binding {position} has unsupported type {type(value).__name__}; "
        "allowed: None, bool, int, float, str, bytes, bytearray, memoryview"
    )


def _may_write(statement: Statement) -> bool:
    """Conservative: only SELECT/VALUES/EXPLAIN and read-only PRAGMAs skip the batch."""
    if statement.calls_rtreecheck:
        return True  # it would BEGIN its own transaction (denied) outside the batch
    if statement.keyword in _READ_ONLY_KEYWORDS:
        return False
    # PRAGMA foreign_keys = ... must stay outside the batch to take effect.
    return not (statement.keyword == "PRAGMA" and statement.pragma in READ_ONLY_PRAGMAS)


def _parse(query: str) -> list[Statement]:
    """Split and check ``query``; raises before anything has run."""
    try:
        size = len(query.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise DurableObjectTypeError(f"SQL text is not valid Unicode: {exc}") from exc
    if size > MAX_SQL_LENGTH:
        raise SqlError("statement too long", code="SQLITE_TOOBIG")
    statements, tail = split_statements(query)
    if not statements or tail.strip(" \t\n\f\r\v"):
        raise StorageError(_NO_STATEMENT)
    if any(statement.has_parameters for statement in statements[:-1]):
        raise StorageError(_PARAMETERS_ONLY_LAST)
    for statement in statements:
        if statement.keyword in _TRANSACTION_KEYWORDS:
            raise StorageError(_USE_TRANSACTION_API)
        target = statement.rename_target
        if is_internal_sql(statement.text) or (target is not None and is_reserved_name(target)):
            raise SqlError("not authorized", code="SQLITE_AUTH")
    return statements


def _counted(rows: list[_Row]) -> int:
    """What the rows of a ``SELECT count(*)`` count: rows it read."""
    return sum(row[0] for row in rows if row and type(row[0]) is int)


class _TooLarge(Exception):
    pass


def _fetch_rows(cursor: sqlite3.Cursor, width: int, limit: int) -> list[_Row]:
    """Every row of ``cursor``'s statement; raises :class:`_TooLarge` past ``limit`` bytes.

    A row costs its dict (what ``to_array()`` builds: 184 bytes and about 32 per column)
    plus ``sys.getsizeof`` of each value; the sums run in C (``map``), once per chunk.
    """
    row_bytes = 184 + 32 * width
    rows: list[_Row] = []
    size = 0
    want = 1
    while True:
        chunk = cursor.fetchmany(want)
        if not chunk:
            return rows
        rows += chunk
        size += len(chunk) * row_bytes + sum(map(getsizeof, chain.from_iterable(chunk)))
        if size > limit:
            raise _TooLarge
        if len(chunk) < want:
            return rows
        per_row = size // len(rows) or 1
        want = max(1, min(want * 4, _MAX_CHUNK_ROWS, _CHUNK_BYTES // per_row))


def _too_large(limit: int) -> DurableObjectRangeError:
    return DurableObjectRangeError(
        f"the rows of this SQL statement take more than {limit} bytes "
        f"({limit / 2**20:g} MiB), the most one sql.exec() may hold in memory; "
        "fetch fewer rows or smaller values at a time (LIMIT, then WHERE past the last key)"
    )


def _translate(exc: Exception) -> StorageError | DurableObjectTypeError:
    """User SQL's errors as objectd errors: ``sql_error`` plus what only user SQL meets."""
    if isinstance(exc, UnicodeEncodeError):
        return DurableObjectTypeError(f"SQL binding is not valid Unicode: {exc}")
    if isinstance(exc, MemoryError):
        # Python's sqlite3 turns SQLITE_NOMEM into MemoryError; SQLite also reports the
        # SQLITE_LIMIT_VDBE_OP limit that way.
        return SqlError(
            f"out of memory (a statement may compile to at most "
            f"{_LIMITS[sqlite3.SQLITE_LIMIT_VDBE_OP]} VDBE operations)",
            code="SQLITE_NOMEM",
        )
    if str(exc).startswith("Incorrect number of bindings supplied"):
        return StorageError(_WRONG_BINDING_COUNT)
    assert isinstance(exc, sqlite3.Error)
    return sql_error(exc)


class SqlStorage:
    """The SQL API of one SQLite-backed object (Cloudflare's ``SqlStorage``)."""

    def __init__(self, db: ObjectDatabase, *, max_result_bytes: int = MAX_RESULT_BYTES) -> None:
        self._db = db
        self._guard = _install_guard(db)
        self._max_result_bytes = max_result_bytes

    def exec(self, query: str, /, *bindings: object) -> SqlStorageCursor:
        """Run ``query`` now and return a cursor over the last statement's rows."""
        # rows_read (checklist 105) is bounded by SQLite's virtual-machine steps (every
        # row read takes at least one), which a progress handler counts: SQLite calls it
        # once per _STEPS_PER_CALL steps of a statement, so a statement of s steps makes
        # at least s // _STEPS_PER_CALL calls, and s <= _STEPS_PER_CALL * calls + slack.
        # The handler is repeat(0).__next__: C only, no Python frame per call, 0 lets
        # the statement go on; what is left of the repeat tells how many calls there were.
        # It is installed for user SQL only: KV operations and commits do not pay for it.
        conn = self._db.conn
        ticks = repeat(0, _TICKS)
        conn.set_progress_handler(ticks.__next__, _STEPS_PER_CALL)
        try:
            cursor, statements = self._exec(query, bindings)
        finally:
            conn.set_progress_handler(None, 0)
        calls = _TICKS - length_hint(ticks)
        cursor._steps(_STEPS_PER_CALL * calls + (_STEPS_PER_CALL - 1) * statements)
        return cursor

    def _exec(self, query: str, bindings: tuple[object, ...]) -> tuple[SqlStorageCursor, int]:
        if not isinstance(query, str):
            raise DurableObjectTypeError(f"SQL query must be a str, got {type(query).__name__}")
        values = tuple(_binding(i, value) for i, value in enumerate(bindings, start=1))
        statements = _parse(query)
        db, conn, guard, slot = self._db, self._db.conn, self._guard, running
        last = len(statements) - 1
        rows: list[_Row] = []
        columns: list[str] = []
        changes = 0
        counted = 0
        for index, statement in enumerate(statements):
            if _may_write(statement):
                db.begin_write()
            if statement.pragma == "defer_foreign_keys":
                db.deferred_foreign_keys_set()
            before = conn.total_changes
            guard.active = True
            slot.conn = conn  # the CPU watchdog may interrupt it (storage.interrupts)
            try:
                cursor = conn.execute(statement.text, values if index == last else ())
                if index == last:
                    columns = [entry[0] for entry in cursor.description or ()]
                    rows = _fetch_rows(cursor, len(columns), self._max_result_bytes)
                elif statement.counts_rows:  # its count is rows read (SqlStorageCursor)
                    counted += _counted(cursor.fetchmany(_MAX_CHUNK_ROWS))
                cursor.close()
            except _TooLarge:
                guard.active = False
                slot.conn = None
                cursor.close()  # resets the statement: nothing is left running
                if db.batch_open and conn.total_changes != before:
                    db.batch_aborted()  # its write is done: the batch must not commit it
                raise _too_large(self._max_result_bytes) from None
            except (sqlite3.Error, UnicodeEncodeError, MemoryError) as exc:
                guard.active = False
                slot.conn = None
                self._resync_after_failure()
                if is_interrupt(exc):
                    raise abort_interrupted(db, exc) from exc
                raise _translate(exc) from exc
            finally:
                guard.active = False
                slot.conn = None
            changes += conn.total_changes - before
        if statements[last].counts_rows:
            counted += _counted(rows)
        return SqlStorageCursor(columns, rows, changes, counted), len(statements)

    def _resync_after_failure(self) -> None:
        # ON CONFLICT ROLLBACK, RAISE(ROLLBACK) and SQLite's critical errors (FULL,
        # IOERR, NOMEM, INTERRUPT) end the whole transaction, and with it the batch and
        # any open savepoints; bring ObjectDatabase's bookkeeping back in line.
        if self._db.batch_open and not self._db.conn.in_transaction:
            self._db.batch_aborted()

    @property
    def database_size(self) -> int:
        """Bytes in use by the whole file: (page_count - freelist_count) * page_size."""
        return self._db.size()

    def drop_all_user_objects(self) -> None:
        """Drop every user table, index, view and trigger (for SQLite ``deleteAll()``).

        Runs inside the open batch (opening it if needed); objectd's ``_cf_`` tables,
        SQLite's own ``sqlite_*`` tables and ``sqlite_sequence`` stay.
        """
        self._db.begin_write()
        with interruptible(self._db):  # dropping huge tables can take long
            self._drop_all_user_objects()

    def _drop_all_user_objects(self) -> None:
        conn = self._db.conn
        deferred = conn.execute(internal_sql("PRAGMA defer_foreign_keys")).fetchone()[0]
        # Dropping a parent table before its children would be an immediate foreign key
        # violation; with every table gone by the end there is nothing left to violate.
        conn.execute(internal_sql("PRAGMA defer_foreign_keys = ON"))
        try:
            # Virtual tables first: dropping one drops its shadow tables, which would
            # otherwise be dropped on their own and break the virtual table's xDestroy.
            for kind, name in self._user_objects(virtual_only=True):
                conn.execute(internal_sql(f"DROP {kind} IF EXISTS {_quote(name)}"))
            for kind, name in self._user_objects(virtual_only=False):
                conn.execute(internal_sql(f"DROP {kind} IF EXISTS {_quote(name)}"))
        finally:
            conn.execute(internal_sql(f"PRAGMA defer_foreign_keys = {int(deferred)}"))

    def _user_objects(self, *, virtual_only: bool) -> list[tuple[str, str]]:
        # Indexes and triggers go with their tables and views; sqlite_stat* tables may
        # be dropped (ANALYZE recreates them), other sqlite_* tables may not.
        query = (
            "SELECT upper(type), name FROM sqlite_schema "
            "WHERE type IN ('table', 'view') AND lower(substr(name, 1, 4)) != '_cf_' "
            "AND (lower(substr(name, 1, 7)) != 'sqlite_' "
            "OR lower(substr(name, 1, 11)) = 'sqlite_stat')"
        )
        if virtual_only:
            query += " AND substr(sql, 1, 20) = 'CREATE VIRTUAL TABLE'"
        return [(str(kind), str(name)) for kind, name in self._db.conn.execute(internal_sql(query))]

    # Cloudflare's names.
    databaseSize = database_size


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class SqlStorageCursor:
    """Rows of the last statement of one ``exec()``: an iterator of dicts.

    ``rows_written`` is SQLite's change count (``total_changes``) over every statement
    of the ``exec()`` call, triggers included, index entries not.

    ``rows_read`` is never less than the rows SQLite read (checklist 105).  Python's
    sqlite3 does not expose the per-statement row counters workerd's patched SQLite
    keeps, so it is a bound from SQLite's own count of virtual-machine steps over the
    whole call (every row read takes at least one step; a scan takes three to five per
    row; the bound adds at most 7 per statement), and at least the rows handed out plus
    ``rows_written`` plus, for ``SELECT count(*)`` without ``WHERE`` (which SQLite may
    answer from the table's b-tree pages without stepping through its rows), the count.
    It is an upper bound: a scan of 1,000 rows reads as about 3,000-5,000, a lookup by
    key as about 15.  It grows by one per row as the cursor is consumed and reaches the
    total with the last row.
    """

    __slots__ = ("_columns", "_consumed", "_read", "_rows", "_rows_written")

    def __init__(
        self, columns: list[str], rows: list[_Row], rows_written: int, counted: int = 0
    ) -> None:
        self._columns = columns
        self._rows: deque[_Row] = deque(rows)
        self._consumed = 0
        self._rows_written = rows_written
        self._read = len(rows) + rows_written + counted  # raised by _steps

    def _steps(self, steps: int) -> None:
        self._read = max(self._read, steps)

    def __iter__(self) -> SqlStorageCursor:
        return self

    def __next__(self) -> dict[str, SqlValue]:
        # Duplicate column names: the last one wins, as in a JavaScript object.
        return dict(zip(self._columns, self._next_row(), strict=True))

    def _next_row(self) -> _Row:
        if not self._rows:
            raise StopIteration
        self._consumed += 1
        return self._rows.popleft()

    def next(self) -> dict[str, object]:
        """JavaScript-style step: ``{"done": False, "value": row}`` or ``{"done": True}``."""
        for row in self:
            return {"done": False, "value": row}
        return {"done": True}

    def to_array(self) -> list[dict[str, SqlValue]]:
        """The remaining rows."""
        return list(self)

    def one(self) -> dict[str, SqlValue]:
        """The only remaining row; raises unless exactly one is left."""
        if not self._rows:
            raise StorageError("Expected exactly one result from SQL query, but got no results.")
        if len(self._rows) > 1:
            raise StorageError(
                "Expected exactly one result from SQL query, but got multiple results."
            )
        return next(self)

    def raw(self) -> RawCursor:
        """The remaining rows as lists in column order; shares this cursor's position."""
        return RawCursor(self)

    @property
    def column_names(self) -> list[str]:
        """Column names in order, duplicates kept; empty for statements without rows."""
        return list(self._columns)

    @property
    def rows_read(self) -> int:
        return self._read - len(self._rows)

    @property
    def rows_written(self) -> int:
        return self._rows_written

    # Cloudflare's names.
    toArray = to_array
    columnNames = column_names
    rowsRead = rows_read
    rowsWritten = rows_written


class RawCursor:
    """``cursor.raw()``: the same rows as lists of values."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: SqlStorageCursor) -> None:
        self._cursor = cursor

    def __iter__(self) -> RawCursor:
        return self

    def __next__(self) -> list[SqlValue]:
        return list(self._cursor._next_row())

    def next(self) -> dict[str, object]:
        """JavaScript-style step: ``{"done": False, "value": [...]}`` or ``{"done": True}``."""
        for row in self:
            return {"done": False, "value": row}
        return {"done": True}

    def to_array(self) -> list[list[SqlValue]]:
        """The remaining rows."""
        return list(self)

    # Cloudflare's name.
    toArray = to_array
