"""The one boundary where ``sqlite3`` errors become objectd errors (STYLE.md, Errors).

User SQL (``storage.sql``), the KV table (``storage.kv``) and the batch itself
(``storage.database``: BEGIN, COMMIT, metadata) all translate here, so a caller, and a
stub caller through the remote copy, only ever sees :class:`~objectd.errors.SqlError`
(``<SQLite's message>: <SQLITE_CODE>``, as workerd words it), never an
``OperationalError`` from the standard library.

This layer is synchronous and never awaits.
"""

from __future__ import annotations

import sqlite3

from objectd.errors import SqlError

__all__ = ["sql_error"]

# Primary result codes by number (https://www.sqlite.org/rescode.html); workerd names
# the primary code, so "UNIQUE constraint failed: t.x: SQLITE_CONSTRAINT".
_PRIMARY_CODE_NAMES = (
    "SQLITE_ERROR", "SQLITE_INTERNAL", "SQLITE_PERM", "SQLITE_ABORT", "SQLITE_BUSY",
    "SQLITE_LOCKED", "SQLITE_NOMEM", "SQLITE_READONLY", "SQLITE_INTERRUPT", "SQLITE_IOERR",
    "SQLITE_CORRUPT", "SQLITE_NOTFOUND", "SQLITE_FULL", "SQLITE_CANTOPEN", "SQLITE_PROTOCOL",
    "SQLITE_EMPTY", "SQLITE_SCHEMA", "SQLITE_TOOBIG", "SQLITE_CONSTRAINT", "SQLITE_MISMATCH",
    "SQLITE_MISUSE", "SQLITE_NOLFS", "SQLITE_AUTH", "SQLITE_FORMAT", "SQLITE_RANGE",
    "SQLITE_NOTADB", "SQLITE_NOTICE", "SQLITE_WARNING",
)  # fmt: skip
_PRIMARY_CODES = {
    code: name
    for name in _PRIMARY_CODE_NAMES
    if isinstance(code := getattr(sqlite3, name, None), int)
}


def sql_error(exc: sqlite3.Error) -> SqlError:
    """``exc`` as a :class:`SqlError` named by its primary result code (raise it ``from exc``)."""
    code = getattr(exc, "sqlite_errorcode", None)
    name = _PRIMARY_CODES.get(code & 0xFF, "SQLITE_ERROR") if isinstance(code, int) else None
    return SqlError(str(exc), code=name or "SQLITE_ERROR")
