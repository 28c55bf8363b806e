"""The key-value table ``_cf_KV`` of one object, shared by the async and synchronous KV APIs.

Keys are stored as their UTF-8 bytes in a BLOB primary key, so SQLite's memcmp order
is exactly Cloudflare's order (ascending by the key's UTF-8 bytes, spec §5.2), and a
prefix's upper bound can be computed exactly.  Values are stored encoded by the value
codec.  Limits and their messages follow spec §5.2 / §5.3.  SQLite's errors leave as
:class:`~objectd.errors.SqlError` (``storage.sqlite_errors``), never as ``sqlite3`` ones.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from objectd import codec
from objectd.errors import DurableObjectRangeError, DurableObjectTypeError
from objectd.storage.database import Backend, ObjectDatabase, internal_sql
from objectd.storage.interrupts import interruptible
from objectd.storage.sqlite_errors import sql_error

__all__ = [
    "MAX_BATCH_KEYS",
    "MAX_KEY_BYTES",
    "MAX_KV_BACKED_VALUE_BYTES",
    "MAX_SQLITE_ENTRY_BYTES",
    "KvStore",
    "ListRange",
    "compile_list_options",
]

MAX_KEY_BYTES = 2048
MAX_KV_BACKED_VALUE_BYTES = 131072
# workerd allows 34 bytes of serialization overhead on top of the advertised limit.
_KV_BACKED_VALUE_SLACK = 34
# SQLite-backed objects: key + value <= 2 MiB (spec §5.2 "Re-implementation: enforce 2 MB").
MAX_SQLITE_ENTRY_BYTES = 2 * 1024 * 1024
MAX_BATCH_KEYS = 128


@dataclass(frozen=True, slots=True)
class ListRange:
    """A compiled ``list()`` request: ``start <= key < end`` (bytes), order and limit."""

    start: bytes | None
    end: bytes | None
    reverse: bool
    limit: int | None
    empty: bool = False


def encode_key(key: object) -> bytes:
    if not isinstance(key, str):
        raise DurableObjectTypeError(
            f"Storage keys must be strings, got {type(key).__name__}: {key!r}"
        )
    try:
        raw = key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DurableObjectTypeError(
            f"Storage keys must be valid Unicode (no lone surrogates): {key!r}"
        ) from exc
    if len(raw) > MAX_KEY_BYTES:
        raise DurableObjectRangeError(
            f"Keys cannot be larger than {MAX_KEY_BYTES} bytes. "
            f"A key of size {len(raw)} was provided."
        )
    return raw


def check_batch_size(count: int) -> None:
    if count > MAX_BATCH_KEYS:
        raise DurableObjectRangeError(
            f"Maximum number of key value pairs is {MAX_BATCH_KEYS}. {count} pairs were provided."
        )


def _prefix_end(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with ``prefix``."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


def _optional_str(options: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = options.get(name)
        if value is not None:
            if not isinstance(value, str):
                raise DurableObjectTypeError(
                    f"list() option {names[0]} must be a string, got {type(value).__name__}"
                )
            return value
    return None


_LIST_OPTION_NAMES = frozenset(
    {
        "start",
        "start_after",
        "startAfter",
        "end",
        "prefix",
        "reverse",
        "limit",
        "allow_concurrency",
        "allowConcurrency",
        "no_cache",
        "noCache",
    }
)


def compile_list_options(options: Mapping[str, Any]) -> ListRange:
    """Turn ``list()`` options (snake_case or camelCase) into a key range (spec §5.3)."""
    unknown = set(options) - _LIST_OPTION_NAMES
    if unknown:
        raise DurableObjectTypeError(
            f"list() got unknown option(s) {sorted(unknown)}; allowed: "
            "start, start_after, end, prefix, reverse, limit, allow_concurrency, no_cache"
        )
    start_s = _optional_str(options, "start")
    after_s = _optional_str(options, "start_after", "startAfter")
    end_s = _optional_str(options, "end")
    prefix_s = _optional_str(options, "prefix")
    if start_s is not None and after_s is not None:
        raise DurableObjectTypeError(
            "list() cannot be called with both start and startAfter values."
        )
    limit = options.get("limit")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, (int, float)):
            raise DurableObjectTypeError(
                f"list() option limit must be a number, got {type(limit).__name__}"
            )
        if limit <= 0:
            raise DurableObjectTypeError("List limit must be positive.")
        limit = int(limit)
    reverse = bool(options.get("reverse") or False)

    start = start_s.encode() if start_s is not None else None
    if after_s is not None:
        start = after_s.encode() + b"\x00"
    end = end_s.encode() if end_s is not None else None
    if prefix_s:
        prefix = prefix_s.encode()
        if start is None or start < prefix:
            start = prefix
        prefix_end = _prefix_end(prefix)
        if prefix_end is not None and (end is None or end > prefix_end):
            end = prefix_end
    empty = start is not None and end is not None and end <= start
    return ListRange(start=start, end=end, reverse=reverse, limit=limit, empty=empty)


class KvStore:
    """Typed access to ``_cf_KV``: values go through the value codec."""

    def __init__(self, db: ObjectDatabase) -> None:
        self._db = db
        self._conn = db.conn

    # -- validation ------------------------------------------------------------------

    def encode_entry(self, key: str, value: object) -> tuple[bytes, bytes]:
        """Validate and encode one pair; raises before anything is written."""
        raw_key = encode_key(key)
        raw_value = codec.encode(value)
        if self._db.backend is Backend.KV:
            if len(raw_value) > MAX_KV_BACKED_VALUE_BYTES + _KV_BACKED_VALUE_SLACK:
                raise DurableObjectRangeError(
                    f"Values cannot be larger than {MAX_KV_BACKED_VALUE_BYTES} bytes. "
                    f"A value of size {len(raw_value)} was provided."
                )
        elif len(raw_key) + len(raw_value) > MAX_SQLITE_ENTRY_BYTES:
            raise DurableObjectRangeError(
                f"A key and value together cannot be larger than {MAX_SQLITE_ENTRY_BYTES} "
                f"bytes. A key and value of size {len(raw_key) + len(raw_value)} were provided."
            )
        return raw_key, raw_value

    # -- reads -----------------------------------------------------------------------

    def get(self, key: str) -> tuple[bool, Any]:
        """``(found, value)`` for one key."""
        raw = encode_key(key)
        try:
            row = self._conn.execute(_GET, (raw,)).fetchone()
        except sqlite3.Error as exc:
            raise sql_error(exc) from exc
        if row is None:
            return False, None
        return True, codec.decode(row[0])

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        raw_keys = sorted({encode_key(k) for k in keys})
        out: dict[str, Any] = {}
        try:
            for raw in raw_keys:
                row = self._conn.execute(_GET, (raw,)).fetchone()
                if row is not None:
                    out[raw.decode()] = codec.decode(row[0])
        except sqlite3.Error as exc:
            raise sql_error(exc) from exc
        return out

    def list_range(self, rng: ListRange) -> list[tuple[str, Any]]:
        """Every pair in the range, in order; read at once (no statement left open)."""
        if rng.empty:
            return []
        clauses = []
        params: list[object] = []
        if rng.start is not None:
            clauses.append("key >= ?")
            params.append(rng.start)
        if rng.end is not None:
            clauses.append("key < ?")
            params.append(rng.end)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        order = "DESC" if rng.reverse else "ASC"
        limit = " LIMIT ?" if rng.limit is not None else ""
        if rng.limit is not None:
            params.append(rng.limit)
        # Keys are written from valid str, so SQLite can hand them back as text directly.
        sql = internal_sql(
            f"SELECT CAST(key AS TEXT), value FROM _cf_KV{where} ORDER BY key {order}{limit}"
        )
        try:
            return codec.decode_pairs(self._conn.execute(sql, params))
        except sqlite3.Error as exc:
            raise sql_error(exc) from exc

    # -- writes (each opens the batch) -----------------------------------------------------

    # A write SQLite refuses fails the whole batch (ObjectDatabase.write_failed).

    def put_encoded(self, pairs: Iterable[tuple[bytes, bytes]]) -> None:
        self._db.begin_write()
        try:
            self._conn.executemany(_PUT, pairs)
        except sqlite3.Error as exc:
            raise self._db.write_failed(exc) from exc

    def put(self, key: str, value: object) -> None:
        self.put_encoded([self.encode_entry(key, value)])

    def delete(self, key: str) -> bool:
        raw = encode_key(key)
        self._db.begin_write()
        try:
            cursor = self._conn.execute(_DELETE, (raw,))
        except sqlite3.Error as exc:
            raise self._db.write_failed(exc) from exc
        return cursor.rowcount > 0

    def delete_many(self, keys: Iterable[str]) -> int:
        raw_keys = {encode_key(k) for k in keys}
        self._db.begin_write()
        deleted = 0
        try:
            for raw in raw_keys:
                deleted += self._conn.execute(_DELETE, (raw,)).rowcount
        except sqlite3.Error as exc:
            raise self._db.write_failed(exc) from exc
        return deleted

    def delete_all(self) -> None:
        self._db.begin_write()
        try:
            with interruptible(self._db):  # one statement over every row: may run long
                self._conn.execute(_DELETE_ALL)
        except sqlite3.Error as exc:  # an interrupt is CpuLimitExceeded, not caught here
            raise self._db.write_failed(exc) from exc


_GET = internal_sql("SELECT value FROM _cf_KV WHERE key = ?")
_PUT = internal_sql("INSERT OR REPLACE INTO _cf_KV (key, value) VALUES (?, ?)")
_DELETE = internal_sql("DELETE FROM _cf_KV WHERE key = ?")
_DELETE_ALL = internal_sql("DELETE FROM _cf_KV")
