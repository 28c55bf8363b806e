"""What user SQL may do: the SQLite authorizer behind ``ctx.storage.sql`` (spec §5.9).

SQLite calls the authorizer while it *prepares* a statement (and again if it
re-prepares one after a schema change), once per table, column, function, pragma
and so on that the statement touches.  The rules follow workerd's ``isAuthorized``
(``W:src/workerd/util/sqlite.c++``):

* Names starting with ``_cf_`` (any case) are objectd's own tables: user SQL may
  not read, write, create, drop, alter or index them.  SQLite reports a denied read
  as ``access to _cf_KV.key is prohibited`` and anything else as ``not authorized``.
* No ATTACH/DETACH, no TEMP objects, no transaction or savepoint statements, no
  virtual table modules but ``fts5``, ``fts5vocab``, ``rtree`` and ``rtree_i32``.
* Functions and PRAGMAs are allowlisted (below); everything else is denied.
* Eponymous virtual tables that expose SQLite internals (``sqlite_stmt`` shows the
  text of every prepared statement, ``dbstat``/``sqlite_dbpage`` show pages of
  reserved tables) are denied; workerd's SQLite build does not have them at all.

The guard is active only while objectd runs *user* SQL; objectd's own statements
(marked with :func:`objectd.storage.database.internal_sql`) run with it off.
Python's sqlite3 does not re-authorize a statement it takes from its statement
cache, so user text must never be executed with the guard off, and never equal an
internal statement's text (the internal nonce guarantees the latter).
"""

from __future__ import annotations

import re
import sqlite3

__all__ = [
    "ALLOWED_FUNCTIONS",
    "ALLOWED_VTABLE_MODULES",
    "READ_ONLY_PRAGMAS",
    "UserSqlGuard",
    "is_authorized",
    "is_reserved_name",
]

RESERVED_PREFIX = "_cf_"

ALLOWED_VTABLE_MODULES = frozenset({"fts5", "fts5vocab", "rtree", "rtree_i32"})

# Eponymous virtual tables compiled into common system SQLite builds that leak
# internals: statement texts (and so the internal nonce) or the pages of _cf_ tables.
_DENIED_TABLES = frozenset(
    {"sqlite_stmt", "dbstat", "sqlite_dbpage", "sqlite_dbdata", "sqlite_dbptr"}
)

ALLOWED_FUNCTIONS = frozenset(
    {
        # https://www.sqlite.org/lang_corefunc.html (no load_extension, sqlite_version,
        # sqlite_source_id, sqlite_compileoption_*, sqlite_offset: they reveal or extend
        # the build)
        "abs", "changes", "char", "coalesce", "concat", "concat_ws", "format", "glob",
        "hex", "if", "ifnull", "iif", "instr", "last_insert_rowid", "length", "like",
        "likelihood", "likely", "lower", "ltrim", "max", "min", "nullif", "octet_length",
        "printf", "quote", "random", "randomblob", "replace", "round", "rtrim", "sign",
        "soundex", "substr", "substring", "total_changes", "trim", "typeof", "unhex",
        "unicode", "unistr", "unistr_quote", "unlikely", "upper", "zeroblob",
        # https://www.sqlite.org/lang_datefunc.html
        "date", "time", "datetime", "julianday", "unixepoch", "strftime", "timediff",
        "current_date", "current_time", "current_timestamp",
        # https://www.sqlite.org/lang_aggfunc.html
        "avg", "count", "group_concat", "string_agg", "sum", "total",
        # https://www.sqlite.org/windowfunctions.html#biwinfunc
        "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag",
        "lead", "first_value", "last_value", "nth_value",
        # https://www.sqlite.org/lang_mathfunc.html
        "acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "ceil", "ceiling",
        "cos", "cosh", "degrees", "exp", "floor", "ln", "log", "log10", "log2", "mod", "pi",
        "pow", "power", "radians", "sin", "sinh", "sqrt", "tan", "tanh", "trunc",
        # https://www.sqlite.org/json1.html (JSONB names exist from SQLite 3.45)
        "json", "jsonb", "json_array", "jsonb_array", "json_array_length",
        "json_error_position", "json_extract", "jsonb_extract", "->", "->>",
        "json_insert", "jsonb_insert", "json_object", "jsonb_object", "json_patch",
        "jsonb_patch", "json_pretty", "json_remove", "jsonb_remove", "json_replace",
        "jsonb_replace", "json_set", "jsonb_set", "json_type", "json_valid", "json_quote",
        "json_group_array", "jsonb_group_array", "json_group_object",
        "jsonb_group_object", "json_each", "json_tree",
        # https://www.sqlite.org/fts5.html and https://www.sqlite.org/rtree.html
        "match", "highlight", "bm25", "snippet", "rtreecheck",
        # Called by SQLite itself while it runs ALTER TABLE (src/alter.c).
        "sqlite_rename_column", "sqlite_rename_table", "sqlite_rename_test",
        "sqlite_drop_column", "sqlite_rename_quotefix",
    }
)  # fmt: skip

# PRAGMA allowlist by argument shape (spec §5.9).
_ANY = frozenset({"table_list"})
_NO_ARG = frozenset({"data_version", "page_size"})
_BOOLEAN = frozenset(
    {
        "case_sensitive_like",
        "foreign_keys",
        "defer_foreign_keys",
        "ignore_check_constraints",
        "legacy_alter_table",
        "recursive_triggers",
        "reverse_unordered_selects",
    }
)
_OBJECT_NAME = frozenset(
    {"table_info", "table_xinfo", "foreign_key_list", "index_info", "index_list", "index_xinfo"}
)
_OPTIONAL_OBJECT_NAME = frozenset({"foreign_key_check"})
_NUMBER_OR_OBJECT_NAME = frozenset({"quick_check"})
_OPTIONAL_NUMBER = frozenset({"optimize"})

# Allowed pragmas that never write to the database file (``optimize`` may ANALYZE).
READ_ONLY_PRAGMAS = (
    _ANY | _NO_ARG | _BOOLEAN | _OBJECT_NAME | _OPTIONAL_OBJECT_NAME | _NUMBER_OR_OBJECT_NAME
)

_BOOLEAN_VALUES = frozenset({"true", "false", "yes", "no", "on", "off", "1", "0"})
_INTEGER = re.compile(r"-?(?:0x[0-9a-f]+|[0-9]+)", re.IGNORECASE)
_UNSIGNED = re.compile(r"[0-9]+")

_OK = sqlite3.SQLITE_OK
_DENY = sqlite3.SQLITE_DENY


def is_reserved_name(name: str) -> bool:
    """True for objectd's own table/index/trigger/view names (``_cf_`` in any case)."""
    return name[:4].lower() == RESERVED_PREFIX


def _user_name(name: str | None) -> bool:
    return name is not None and not is_reserved_name(name)


def _pragma_allowed(pragma: str | None, arg: str | None) -> bool:
    if pragma is None:
        return False
    name = pragma.lower()
    if name in _ANY:
        return True
    if name in _NO_ARG:
        return arg is None
    if name in _BOOLEAN:
        if arg is None:
            return True
        value = arg.strip()
        if len(value) >= 2 and value[0] in "'\"" and value[-1] == value[0]:
            value = value[1:-1]
        return value.lower() in _BOOLEAN_VALUES
    if name in _OBJECT_NAME:
        return _user_name(arg)
    if name in _OPTIONAL_OBJECT_NAME:
        return arg is None or _user_name(arg)
    if name in _NUMBER_OR_OBJECT_NAME:
        return arg is None or _UNSIGNED.fullmatch(arg) is not None or _user_name(arg)
    if name in _OPTIONAL_NUMBER:
        return arg is None or _INTEGER.fullmatch(arg) is not None
    return False


def is_authorized(action: int, arg1: str | None, arg2: str | None, db_name: str | None) -> bool:
    """Whether user SQL may perform ``action`` (a ``sqlite3.SQLITE_*`` authorizer code)."""
    if action == sqlite3.SQLITE_ALTER_TABLE:
        # SQLite passes the schema as arg1 and the table as arg2 for this action only.
        db_name, arg1, arg2 = arg1, arg2, None
    if db_name is not None and db_name != "main":
        # Only the temp schema's own catalog may be consulted (ALTER TABLE reads and
        # rewrites sqlite_temp_master); every other schema would be an attached file.
        return (
            db_name == "temp"
            and action in (sqlite3.SQLITE_READ, sqlite3.SQLITE_UPDATE)
            and _user_name(arg1)
        )
    if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_RECURSIVE, sqlite3.SQLITE_ANALYZE):
        # ANALYZE (also run by PRAGMA optimize) visits every table, reserved ones
        # included; it only records statistics in sqlite_stat1.
        return True
    if action in (sqlite3.SQLITE_READ, sqlite3.SQLITE_UPDATE):
        return _user_name(arg1) and arg1 is not None and arg1.lower() not in _DENIED_TABLES
    if action in _ONE_NAME_ACTIONS:
        return _user_name(arg1)
    if action in _TWO_NAME_ACTIONS:
        return _user_name(arg1) and _user_name(arg2)
    if action == sqlite3.SQLITE_FUNCTION:
        return arg2 is not None and arg2.lower() in ALLOWED_FUNCTIONS
    if action == sqlite3.SQLITE_PRAGMA:
        return _pragma_allowed(arg1, arg2)
    if action in (sqlite3.SQLITE_CREATE_VTABLE, sqlite3.SQLITE_DROP_VTABLE):
        return _user_name(arg1) and arg2 is not None and arg2.lower() in ALLOWED_VTABLE_MODULES
    # Transactions and savepoints (use storage.transaction()), ATTACH/DETACH, TEMP
    # objects, and any action code this list does not know.
    return False


_ONE_NAME_ACTIONS = frozenset(
    {
        sqlite3.SQLITE_CREATE_TABLE,
        sqlite3.SQLITE_DROP_TABLE,
        sqlite3.SQLITE_INSERT,
        sqlite3.SQLITE_DELETE,
        sqlite3.SQLITE_CREATE_VIEW,
        sqlite3.SQLITE_DROP_VIEW,
        sqlite3.SQLITE_REINDEX,
        sqlite3.SQLITE_ALTER_TABLE,
    }
)
_TWO_NAME_ACTIONS = frozenset(
    {
        sqlite3.SQLITE_CREATE_INDEX,
        sqlite3.SQLITE_DROP_INDEX,
        sqlite3.SQLITE_CREATE_TRIGGER,
        sqlite3.SQLITE_DROP_TRIGGER,
    }
)


class UserSqlGuard:
    """The authorizer callback of one connection; enforces the rules while ``active``."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active = False

    def __call__(
        self,
        action: int,
        arg1: str | None,
        arg2: str | None,
        db_name: str | None,
        _source: str | None,
    ) -> int:
        if not self.active:
            return _OK
        return _OK if is_authorized(action, arg1, arg2, db_name) else _DENY
