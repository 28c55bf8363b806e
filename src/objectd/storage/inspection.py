"""Reading one object's file from the outside: its KV pairs, tables, alarm and a read-only query.

For ``objectd inspect``, ``objectd export`` and the web inspector (issue 14 §2).  Every
function takes a ``sqlite3.Connection`` that is either

* the object's own connection, in the server that holds it (its ``ObjectDatabase``),
  used between two of its events: a live file is locked by that one connection for
  its whole life (``locking_mode=EXCLUSIVE``), and opening a second one, even in the
  same process, would fail or, on close, drop SQLite's lock on the file; or
* a connection from :func:`open_read_only`, on a file no connection has open (a cold
  object in the server, every object when no server runs).

Nothing here writes.  A query typed by a person (:func:`read_only_query`) is held to
reading for real, not by looking at its text: SQLite's ``query_only`` refuses any
change to the file, an authorizer admits only reading actions (no ``PRAGMA``, no
``ATTACH``, no functions with side effects), its text carries a marker so that it can
never reuse a statement the object prepared (a cached statement is not authorized
again), and a progress handler stops it after :data:`QUERY_SECONDS` so that it cannot
hold the event loop it runs on.  One SQL function call is not interrupted by that
handler, so while the query runs no string or BLOB may exceed :data:`QUERY_VALUE_BYTES`
(``SQLITE_LIMIT_LENGTH``, set back afterwards: ``hex(zeroblob(4e8))`` is refused at once
instead of building 800 MB), and ``printf``/``format`` are refused (a repeated ``%c``
runs for seconds inside one call).  What is read is bounded: :data:`MAX_ROWS` rows (or KV
pairs), about :data:`MAX_READ_BYTES` of text and BLOBs, and KV values of at most
:data:`MAX_VALUE_BYTES` each (larger ones are counted, not read).

This layer is synchronous and never awaits.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from objectd import codec
from objectd.errors import SerializationError
from objectd.storage.alarm_index import ALARM_META_KEY
from objectd.storage.authorizer import is_reserved_name
from objectd.storage.database import Backend

__all__ = [
    "MAX_READ_BYTES",
    "MAX_ROWS",
    "MAX_VALUE_BYTES",
    "QUERY_SECONDS",
    "QUERY_VALUE_BYTES",
    "Cut",
    "FileStats",
    "KvEntry",
    "QueryResult",
    "Table",
    "check_object_file",
    "database_bytes",
    "file_stats",
    "open_read_only",
    "read_kv",
    "read_only_query",
    "read_tables",
    "snapshot",
    "stored_alarm",
]

MAX_ROWS = 1_000  # rows (or KV pairs) one read returns at most; past it, ``truncated``
MAX_VALUE_BYTES = 64 * 1024  # KV values larger than this (encoded) are counted, not read
MAX_READ_BYTES = 16 * 1024 * 1024  # text and BLOB bytes one table or query read holds, about
QUERY_SECONDS = 2.0  # how long one read-only query may run before it is stopped
QUERY_VALUE_BYTES = 1024 * 1024  # the largest string or BLOB a query may read or build
# Never the text of a statement the object prepared, nor one it could write: a
# statement cached under this text skips the object's authorizer, so the marker holds a
# per-process secret (as ``storage.database.internal_sql`` does).
_MARK = f"/*objectd-inspect:{secrets.token_hex(8)}*/ "
_PROGRESS_STEPS = 10_000  # SQLite VM steps between two looks at the clock
AuthorizerCallback = Callable[[int, str | None, str | None, str | None, str | None], int]

_READING = frozenset(
    {
        sqlite3.SQLITE_SELECT,
        sqlite3.SQLITE_READ,
        sqlite3.SQLITE_FUNCTION,
        getattr(sqlite3, "SQLITE_RECURSIVE", 33),
    }
)
# Functions that do something besides computing a value (the authorizer sees them by name).
# printf and format: a repeated %c (``printf('%.*c', 9e8, 'x')``) loops inside one call.
_UNSAFE_FUNCTIONS = frozenset(
    {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer", "printf", "format"}
)


@dataclass(frozen=True, slots=True)
class KvEntry:
    key: str
    value: Any  # decoded by the value codec; the raw bytes when they do not decode
    size: int  # bytes of the encoded value
    undecodable: bool = False
    shown: bool = True  # False: too large to read here (``value`` is None)


@dataclass(frozen=True, slots=True)
class Cut:
    """A text or BLOB value read only in part: its first characters (or bytes)."""

    head: str | bytes
    size: int  # the whole value's length: characters for text, bytes for a BLOB


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    sql: str
    columns: list[str]
    rows: list[tuple[Any, ...]]
    count: int | None  # rows in the table; None: counting took too long
    truncated: bool = False  # rows left unread (MAX_ROWS, the page's byte budget, the time)


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool


@dataclass(frozen=True, slots=True)
class FileStats:
    size: int  # bytes on disk: the database and its WAL
    last_write: float  # epoch seconds: the later modification of the two


def file_stats(path: Path) -> FileStats:
    """Size and last write of an object's files, from ``stat`` alone (no open)."""
    main = os.stat(path)
    size, last = main.st_size, main.st_mtime
    try:
        wal = os.stat(f"{path}-wal")
    except FileNotFoundError:
        return FileStats(size, last)
    return FileStats(size + wal.st_size, max(last, wal.st_mtime))


@contextmanager
def open_read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to an object file no connection has open; closed on exit.

    ``mode=ro``: the file is never created or written.  ``timeout=0``: if a server holds
    it after all, this fails at once ("database is locked") instead of waiting.
    """
    uri = path.resolve().as_uri() + "?mode=ro"
    # Reading a WAL-mode file makes SQLite create its -wal and -shm files when missing;
    # they are removed again, so that looking leaves the folder as it was.
    sidecars = [Path(f"{path}-wal"), Path(f"{path}-shm")]
    missing = [side for side in sidecars if not side.exists()]
    try:
        with closing(sqlite3.connect(uri, uri=True, timeout=0, isolation_level=None)) as conn:
            conn.execute("PRAGMA query_only=1")
            yield conn
    finally:
        for side in missing:
            with contextlib.suppress(FileNotFoundError):
                if side.name.endswith("-shm") or side.stat().st_size == 0:
                    side.unlink()


def read_kv(
    conn: sqlite3.Connection,
    *,
    prefix: str = "",
    after: str | None = None,
    limit: int = MAX_ROWS,
    max_value_bytes: int = MAX_VALUE_BYTES,
) -> tuple[list[KvEntry], bool]:
    """The first ``limit`` KV pairs in key order whose keys start with ``prefix`` and
    come after ``after`` (a page's last key), decoded; and whether there were more.

    Values over ``max_value_bytes`` (encoded) are not read at all (``shown`` False):
    a thousand 2 MiB values would otherwise take gigabytes to show.
    """
    start = prefix.encode("utf-8", "surrogatepass")
    last = None if after is None else after.encode("utf-8", "surrogatepass")
    rows = conn.execute(
        _MARK + "SELECT key, CASE WHEN length(value) <= :most THEN value END, length(value) "
        "FROM _cf_KV WHERE (:size = 0 OR substr(key, 1, :size) = :prefix) "
        "AND (:last IS NULL OR key > :last) "
        "ORDER BY key LIMIT :limit",
        {
            "most": max_value_bytes,
            "size": len(start),
            "prefix": start,
            "last": last,
            "limit": limit + 1,
        },
    ).fetchall()
    entries = []
    for raw_key, raw, size in rows[:limit]:
        key = bytes(raw_key).decode("utf-8", "surrogatepass")
        if raw is None:
            entries.append(KvEntry(key, None, size, shown=False))
            continue
        data = bytes(raw)
        try:
            entries.append(KvEntry(key, codec.decode(data), size))
        except SerializationError:
            entries.append(KvEntry(key, data, size, undecodable=True))
    return entries, len(rows) > limit


def read_tables(
    conn: sqlite3.Connection,
    *,
    limit: int = MAX_ROWS,
    max_bytes: int = MAX_READ_BYTES,
    value_chars: int | None = None,
    seconds: float = QUERY_SECONDS,
) -> list[Table]:
    """The object's own SQL tables (not objectd's ``_cf_`` ones), each with its first rows.

    Bounded as a whole, since one page shows every table: at most ``limit`` rows a table,
    ``max_bytes`` of stored text and BLOBs read over all of them (whole values, cut or
    not: what SQLite reads; a row is taken if it fits), text and BLOBs longer than
    ``value_chars`` cut by SQLite (a :class:`Cut`, so the whole value never reaches
    Python), and ``seconds`` for all the counting and reading (a count not finished by
    then is None, rows not read by then are left out).
    """
    found = conn.execute(
        _MARK + "SELECT name, sql FROM sqlite_schema WHERE type = 'table' ORDER BY name"
    ).fetchall()
    deadline = time.monotonic() + seconds

    def too_long() -> int:
        return 1 if time.monotonic() > deadline else 0

    tables = []
    budget = max_bytes
    conn.set_progress_handler(too_long, _PROGRESS_STEPS)
    try:
        for name, sql in found:
            if is_reserved_name(name) or name.startswith("sqlite_"):
                continue
            quoted = _quote(name)
            try:
                (count,) = conn.execute(_MARK + f"SELECT count(*) FROM {quoted}").fetchone()
            except sqlite3.OperationalError:  # interrupted: too long
                count = None
            cursor = conn.execute(_MARK + f"SELECT * FROM {quoted} LIMIT 0")
            columns = [d[0] for d in cursor.description or ()]
            cursor.close()
            rows: list[tuple[Any, ...]] = []
            truncated = False
            if budget <= 0 or time.monotonic() > deadline:
                tables.append(Table(name, sql or "", columns, rows, count, True))
                continue
            cursor = conn.execute(_MARK + _cut_select(quoted, columns, value_chars), (limit + 1,))
            try:
                for raw in cursor:
                    row, cost = _uncut(raw, value_chars)
                    if len(rows) == limit or cost > budget:
                        truncated = True
                        break
                    budget -= cost
                    rows.append(row)
            except sqlite3.OperationalError:  # interrupted: the rest is not read
                truncated = True
            finally:
                cursor.close()
            tables.append(Table(name, sql or "", columns, rows, count, truncated))
    finally:
        conn.set_progress_handler(None, 0)
    return tables


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _cut_select(table: str, columns: list[str], value_chars: int | None) -> str:
    """``SELECT`` every column; with ``value_chars``, each as (the value, or its first
    ``value_chars`` when longer; and its length)."""
    if value_chars is None or not columns:
        return f"SELECT * FROM {table} LIMIT ?"
    most = int(value_chars)
    parts = []
    for column in columns:
        c = _quote(column)
        # A number's length is that of its text (never near ``most``); NULL's is NULL.
        parts.append(f"CASE WHEN length({c}) > {most} THEN substr({c}, 1, {most}) ELSE {c} END")
        parts.append(f"length({c})")
    return f"SELECT {', '.join(parts)} FROM {table} LIMIT ?"


def _uncut(raw: tuple[Any, ...], value_chars: int | None) -> tuple[tuple[Any, ...], int]:
    """A row as shown (long values as :class:`Cut`), and the text and BLOB bytes SQLite
    read for it (the whole values: what the page's budget is charged)."""
    if value_chars is None:
        return raw, sum(_size(v) for v in raw)
    row = []
    read = 0
    for value, size in zip(raw[0::2], raw[1::2], strict=True):
        if isinstance(value, str | bytes):
            read += int(size)
            if int(size) > len(value):
                value = Cut(value, int(size))
        row.append(value)
    return tuple(row), read


def _size(value: Any) -> int:
    if isinstance(value, Cut):
        return len(value.head)
    return len(value) if isinstance(value, str | bytes) else 0


def _take(cursor: sqlite3.Cursor, limit: int) -> tuple[list[tuple[Any, ...]], bool]:
    """Up to ``limit`` rows and MAX_READ_BYTES of text and BLOBs; whether more were left."""
    rows: list[tuple[Any, ...]] = []
    budget = MAX_READ_BYTES
    for row in cursor:
        if len(rows) == limit or budget < 0:
            cursor.close()
            return rows, True
        budget -= sum(len(v) for v in row if isinstance(v, str | bytes))
        rows.append(row)
    return rows, False


def stored_alarm(conn: sqlite3.Connection) -> int | None:
    """The object's alarm (epoch ms), or None."""
    row = conn.execute(
        _MARK + "SELECT value FROM _cf_METADATA WHERE key = ?", (ALARM_META_KEY,)
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def read_only_query(
    conn: sqlite3.Connection,
    sql: str,
    *,
    restore: AuthorizerCallback | None = None,
    limit: int = MAX_ROWS,
    seconds: float = QUERY_SECONDS,
) -> QueryResult:
    """Run one statement that only reads; its first ``limit`` rows.

    ``restore``: the connection's own authorizer, set again afterwards (the object's
    user-SQL guard on a live connection).  Raises ``sqlite3.Error`` for a statement
    that does not parse, writes (``not authorized``), or runs too long (``interrupted``).
    """
    deadline = time.monotonic() + seconds

    def too_long() -> int:
        return 1 if time.monotonic() > deadline else 0

    was_query_only = conn.execute(_MARK + "PRAGMA query_only").fetchone()[0]
    conn.execute(_MARK + "PRAGMA query_only=1")
    conn.set_authorizer(_reading_only)
    conn.set_progress_handler(too_long, _PROGRESS_STEPS)
    longest = conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, QUERY_VALUE_BYTES)
    try:
        cursor = conn.execute(_MARK + sql)
        columns = [d[0] for d in cursor.description or ()]
        rows, truncated = _take(cursor, limit)
        cursor.close()
    finally:
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, longest)
        conn.set_progress_handler(None, 0)
        conn.set_authorizer(restore)
        if not was_query_only:
            conn.execute(_MARK + "PRAGMA query_only=0")
    return QueryResult(columns, rows, truncated)


def _reading_only(
    action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None
) -> int:
    if action not in _READING:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _UNSAFE_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def check_object_file(path: Path, backend: Backend) -> list[str]:
    """What makes ``path`` (a file no connection has open) unfit to be an object of a
    class with ``backend``; empty when it is fit.  Read-only, for ``objectd import``.

    ``PRAGMA quick_check`` (every page read, so a file damaged past its header is found
    before it is installed); objectd's own tables present; no SQL tables in a KV-backend
    object (its class could never reach them); and no trigger or view touching
    objectd's ``_cf_`` tables (the object's SQL may not, and one would run inside
    objectd's own writes).
    """
    try:
        with open_read_only(path) as conn:
            checked = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
            if checked != ["ok"]:
                return [f"not a sound SQLite file: {'; '.join(map(str, checked))}"]
            schema = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_schema").fetchall()
    except sqlite3.DatabaseError as exc:
        return [f"not a sound SQLite file: {exc}"]
    tables = {name for kind, name, _, _ in schema if kind == "table"}
    if not {"_cf_KV", "_cf_METADATA"} <= tables:
        return ["not an objectd object's file (it has no _cf_KV and _cf_METADATA tables)"]
    problems = []
    own = sorted(n for n in tables if not is_reserved_name(n) and not n.startswith("sqlite_"))
    if backend is Backend.KV and own:
        problems.append(
            f"has SQL tables ({', '.join(own[:5])}), but its class here is a KV-backend "
            "class (new_classes), which has no SQL"
        )
    touching = sorted(
        f"{kind} {name}"
        for kind, name, table, sql in schema
        if kind in ("trigger", "view")
        and (is_reserved_name(table or "") or "_cf_" in (sql or "").lower())
    )
    if touching:
        problems.append(
            f"has {', '.join(touching[:5])} on objectd's own tables (_cf_…), which an "
            "object's SQL may not create"
        )
    return problems


def database_bytes(conn: sqlite3.Connection) -> int:
    """The database's size as SQLite sees it (page_count x page_size), without reading it."""
    (pages,) = conn.execute(_MARK + "PRAGMA page_count").fetchone()
    (page_size,) = conn.execute(_MARK + "PRAGMA page_size").fetchone()
    return int(pages) * int(page_size)


def snapshot(conn: sqlite3.Connection) -> bytes:
    """The whole database as one self-contained SQLite file's bytes (the backup API)."""
    with closing(sqlite3.connect(":memory:")) as copy:
        conn.backup(copy)
        return copy.serialize()
