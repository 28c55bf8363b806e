"""storage.sql: the SQL API, its authorizer and limits (spec §5.9, checklist 94-113)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from objectd.errors import (
    DurableObjectError,
    DurableObjectRangeError,
    DurableObjectTypeError,
    SqlError,
    StorageError,
)
from objectd.storage.database import Backend, ObjectDatabase, internal_sql
from objectd.storage.kv import KvStore, compile_list_options
from objectd.storage.sql import MAX_RESULT_BYTES, SqlStorage

NO_STATEMENT = "SQL code did not contain a statement."


@pytest.fixture
def db(tmp_path: Path) -> Iterator[ObjectDatabase]:
    database = ObjectDatabase(tmp_path / "o.sqlite", backend=Backend.SQLITE)
    yield database
    database.close()


@pytest.fixture
def sql(db: ObjectDatabase) -> SqlStorage:
    return SqlStorage(db)


def raw_rows(db: ObjectDatabase, query: str) -> list[tuple[object, ...]]:
    """Read as objectd itself does (authorizer off), to check what user SQL did."""
    return db.conn.execute(internal_sql(query)).fetchall()


def auth_denied(sql: SqlStorage, query: str, *bindings: object) -> SqlError:
    with pytest.raises(SqlError) as info:
        sql.exec(query, *bindings)
    assert info.value.code == "SQLITE_AUTH", str(info.value)
    return info.value


def has_module(db: ObjectDatabase, module: str) -> bool:
    return bool(raw_rows(db, f"SELECT 1 FROM pragma_module_list WHERE name = '{module}'"))


# -- 94, 95, 96: execution --------------------------------------------------------------


def test_94_write_runs_before_exec_returns_inside_the_batch(
    db: ObjectDatabase, sql: SqlStorage
) -> None:
    sql.exec("CREATE TABLE t (v TEXT)")
    db.commit()
    sql.exec("INSERT INTO t VALUES ('a')")  # cursor never consumed
    assert db.batch_open
    assert raw_rows(db, "SELECT v FROM t") == [("a",)]
    db.rollback()  # the write belonged to the implicit batch, not to an autocommit
    assert raw_rows(db, "SELECT v FROM t") == []


def test_94_read_only_statements_leave_the_batch_closed(
    db: ObjectDatabase, sql: SqlStorage
) -> None:
    sql.exec("CREATE TABLE t (v)")
    db.commit()
    sql.exec("SELECT * FROM t").to_array()
    sql.exec("VALUES (1)").to_array()
    sql.exec("PRAGMA table_info(t)").to_array()
    assert not db.batch_open


def test_94_reads_see_uncommitted_batch_writes(db: ObjectDatabase, sql: SqlStorage) -> None:
    sql.exec("CREATE TABLE t (v); INSERT INTO t VALUES (1)")
    assert db.batch_open
    assert sql.exec("SELECT v FROM t").one() == {"v": 1}


def test_95_multiple_statements_run_and_cursor_is_for_the_last(sql: SqlStorage) -> None:
    cursor = sql.exec(
        "CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (1), (2); SELECT sum(v) AS s FROM t"
    )
    assert cursor.to_array() == [{"s": 3}]
    assert cursor.column_names == ["s"]
    # Intermediate statements that return rows run too; their rows are discarded.
    assert sql.exec("SELECT 1; SELECT 2 AS two").to_array() == [{"two": 2}]


def test_95_only_the_last_statement_takes_the_bindings(sql: SqlStorage) -> None:
    cursor = sql.exec("CREATE TABLE t (v); INSERT INTO t VALUES (?), (?)", "x", "y")
    assert cursor.rows_written == 2
    assert sql.exec("SELECT count(*) AS n FROM t").one() == {"n": 2}


def test_95_semicolons_inside_literals_comments_and_triggers(sql: SqlStorage) -> None:
    sql.exec(
        """
        CREATE TABLE log (msg TEXT);
        CREATE TABLE "odd;name" (v);
        CREATE TRIGGER note AFTER INSERT ON "odd;name" BEGIN
            INSERT INTO log VALUES ('one;');  -- a comment; with a semicolon
            INSERT INTO log VALUES ('two' /* ; */);
        END;
        INSERT INTO "odd;name" VALUES ('it''s; fine');
        """
    )
    assert sql.exec("SELECT msg FROM log ORDER BY msg").raw().to_array() == [["one;"], ["two"]]
    assert sql.exec('SELECT v FROM "odd;name"').one() == {"v": "it's; fine"}


def test_95_empty_statements_between_statements_are_skipped(sql: SqlStorage) -> None:
    assert sql.exec("; SELECT 1 AS a;; ; SELECT 2 AS b;\n").to_array() == [{"b": 2}]


def test_96_bindings_on_a_non_final_statement_are_refused_before_anything_runs(
    db: ObjectDatabase, sql: SqlStorage
) -> None:
    sql.exec("CREATE TABLE t (v)")
    for query in (
        "INSERT INTO t VALUES (?); SELECT 1",
        "INSERT INTO t VALUES (?1); SELECT 1",
        "INSERT INTO t VALUES (:v); SELECT ?",
    ):
        with pytest.raises(StorageError) as info:
            sql.exec(query, 1)
        assert str(info.value) == (
            "When executing multiple SQL statements in a single call, "
            "only the last statement can have parameters."
        )
    assert raw_rows(db, "SELECT * FROM t") == []


# -- 97, 98: bindings and empty SQL ---------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "bindings"),
    [("SELECT ?", ()), ("SELECT ?, ?", (1,)), ("SELECT 1", (1,)), ("SELECT ?2", (1,))],
)
def test_97_wrong_number_of_bindings(
    sql: SqlStorage, query: str, bindings: tuple[object, ...]
) -> None:
    with pytest.raises(StorageError) as info:
        sql.exec(query, *bindings)
    assert str(info.value) == "Wrong number of parameter bindings for SQL query."


@pytest.mark.parametrize(
    "query",
    ["", "   \n", ";", " ; ;", "-- only a comment", "/* only a comment */", "SELECT 1; -- tail",
     "SELECT 1; /* tail */", "SELECT 1;;", "SELECT 1; ;"],
)  # fmt: skip
def test_98_no_statement(sql: SqlStorage, query: str) -> None:
    with pytest.raises(StorageError) as info:
        sql.exec(query)
    assert str(info.value) == NO_STATEMENT


def test_98_trailing_whitespace_and_comments_inside_the_statement_are_fine(
    sql: SqlStorage,
) -> None:
    assert sql.exec("SELECT 1 AS a; \r\n\t").one() == {"a": 1}
    assert sql.exec("SELECT 1 AS a -- no semicolon, so part of the statement").one() == {"a": 1}
    assert sql.exec("/* lead */ SELECT 1 AS a").one() == {"a": 1}


# -- 99, 100: values ----------------------------------------------------------------------------


def test_99_result_types(sql: SqlStorage) -> None:
    row = sql.exec(
        "SELECT 42 AS i, 9223372036854775807 AS big, 1.5 AS r, 'text' AS t, x'00ff' AS b, NULL AS n"
    ).one()
    assert row == {"i": 42, "big": 2**63 - 1, "r": 1.5, "t": "text", "b": b"\x00\xff", "n": None}
    assert [type(v) for v in row.values()] == [int, int, float, str, bytes, type(None)]


def test_100_bindings_become_the_matching_sqlite_types(sql: SqlStorage) -> None:
    sql.exec("CREATE TABLE t (v)")
    values: list[object] = [
        None, True, False, 7, -(2**63), 2.5, "s", b"\x01", bytearray(b"\x02"), memoryview(b"\x03"),
    ]  # fmt: skip
    for value in values:
        sql.exec("INSERT INTO t VALUES (?)", value)
    rows = sql.exec("SELECT typeof(v) AS type, v FROM t ORDER BY rowid").raw().to_array()
    assert rows == [
        ["null", None], ["integer", 1], ["integer", 0], ["integer", 7], ["integer", -(2**63)],
        ["real", 2.5], ["text", "s"], ["blob", b"\x01"], ["blob", b"\x02"], ["blob", b"\x03"],
    ]  # fmt: skip


@pytest.mark.parametrize("value", [object(), [1], (1,), {"a": 1}, 1j])
def test_100_unsupported_binding_types_are_refused(sql: SqlStorage, value: object) -> None:
    with pytest.raises(DurableObjectTypeError, match=type(value).__name__):
        sql.exec("SELECT ?", value)


def test_100_integers_must_fit_int64(sql: SqlStorage) -> None:
    with pytest.raises(DurableObjectRangeError, match="64-bit"):
        sql.exec("SELECT ?", 2**63)
    with pytest.raises(TypeError):
        sql.exec(b"SELECT 1")  # type: ignore[arg-type]


def test_100_text_must_be_valid_unicode(sql: SqlStorage) -> None:
    with pytest.raises(DurableObjectTypeError, match="Unicode"):
        sql.exec("SELECT ?", "\udc80")
    with pytest.raises(DurableObjectTypeError, match="Unicode"):
        sql.exec("SELECT '\udc80'")
    assert sql.exec("SELECT ? AS s", "ünïcødé ✓").one() == {"s": "ünïcødé ✓"}


# -- 101-105: the cursor ---------------------------------------------------------------------


@pytest.fixture
def three_rows(sql: SqlStorage) -> SqlStorage:
    sql.exec("CREATE TABLE t (id INTEGER, name TEXT); INSERT INTO t VALUES (1,'a'),(2,'b'),(3,'c')")
    return sql


def test_101_to_array_returns_the_remaining_rows(three_rows: SqlStorage) -> None:
    cursor = three_rows.exec("SELECT id, name FROM t ORDER BY id")
    assert next(cursor) == {"id": 1, "name": "a"}
    assert cursor.to_array() == [{"id": 2, "name": "b"}, {"id": 3, "name": "c"}]
    assert cursor.toArray() == []
    assert list(three_rows.exec("SELECT id FROM t WHERE id > 1 ORDER BY id")) == [
        {"id": 2},
        {"id": 3},
    ]


def test_101_js_style_next(three_rows: SqlStorage) -> None:
    cursor = three_rows.exec("SELECT id FROM t WHERE id = 1")
    assert cursor.next() == {"done": False, "value": {"id": 1}}
    assert cursor.next() == {"done": True}


def test_102_one(three_rows: SqlStorage) -> None:
    assert three_rows.exec("SELECT name FROM t WHERE id = 2").one() == {"name": "b"}
    with pytest.raises(StorageError) as none:
        three_rows.exec("SELECT * FROM t WHERE id = 99").one()
    assert str(none.value) == "Expected exactly one result from SQL query, but got no results."
    with pytest.raises(StorageError) as many:
        three_rows.exec("SELECT * FROM t").one()
    assert str(many.value) == (
        "Expected exactly one result from SQL query, but got multiple results."
    )


def test_103_raw_shares_position_with_the_row_iterator(three_rows: SqlStorage) -> None:
    cursor = three_rows.exec("SELECT name, id FROM t ORDER BY id")
    raw = cursor.raw()
    assert next(raw) == ["a", 1]
    assert next(cursor) == {"name": "b", "id": 2}
    assert raw.next() == {"done": False, "value": ["c", 3]}
    assert raw.next() == {"done": True}
    assert cursor.to_array() == []
    assert three_rows.exec("SELECT id FROM t ORDER BY id").raw().toArray() == [[1], [2], [3]]


def test_104_duplicate_column_names(sql: SqlStorage) -> None:
    sql.exec("CREATE TABLE abc (a, b, c); CREATE TABLE cde (c, d, e)")
    sql.exec("INSERT INTO abc VALUES (1, 2, 3); INSERT INTO cde VALUES (7, 8, 9)")
    cursor = sql.exec("SELECT * FROM abc, cde")
    assert cursor.column_names == ["a", "b", "c", "c", "d", "e"]
    assert cursor.columnNames == cursor.column_names
    assert sql.exec("SELECT * FROM abc, cde").one() == {"a": 1, "b": 2, "c": 7, "d": 8, "e": 9}
    assert cursor.raw().to_array() == [[1, 2, 3, 7, 8, 9]]
    assert sql.exec("UPDATE abc SET a = 1 WHERE b = 99").column_names == []


def test_105_row_counters(three_rows: SqlStorage) -> None:
    insert = three_rows.exec("INSERT INTO t VALUES (4, 'd'), (5, 'e')")
    assert insert.rows_written == insert.rowsWritten == 2
    update = three_rows.exec("UPDATE t SET name = upper(name) WHERE id <= 3")
    assert update.rows_written == 3
    assert update.rows_read >= 3
    select = three_rows.exec("SELECT * FROM t")
    assert select.rows_written == 0
    list(select)
    assert select.rows_read == select.rowsRead >= 5
    delete = three_rows.exec("DELETE FROM t")
    assert delete.rows_written == 5
    assert delete.rows_read >= 5


def test_105_rows_read_grows_as_the_cursor_is_consumed(three_rows: SqlStorage) -> None:
    cursor = three_rows.exec("SELECT * FROM t")
    total = three_rows.exec("SELECT * FROM t").rows_read  # the same statement, unread
    start = cursor.rows_read
    seen = []
    for _ in cursor:
        seen.append(cursor.rows_read)
    assert seen == [start + 1, start + 2, start + 3]
    assert seen[-1] == total + 3  # the unread cursor counts what it has not handed out


def test_105_rows_read_covers_scans_sqlite_does_not_hand_out(sql: SqlStorage) -> None:
    """Checklist 105: rows_read is at least the rows SQLite read, also when it returns
    few of them (a count, a filter, an aggregate, a write with a WHERE)."""
    sql.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, w INTEGER)")
    sql.exec("CREATE INDEX t_w ON t (w)")
    sql.exec(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) "
        "INSERT INTO t SELECT i, 'x', i % 10 FROM n"
    )

    def read(query: str, *bindings: object) -> int:
        cursor = sql.exec(query, *bindings)
        list(cursor)
        return cursor.rows_read

    assert read("SELECT count(*) FROM t") >= 1000  # answered from b-tree pages
    assert read("SELECT count(*) AS n FROM t;") >= 1000
    assert read("SELECT * FROM t") >= 1000
    assert read("SELECT * FROM t WHERE v = 'y'") >= 1000  # no index: a full scan, no rows
    assert read("SELECT sum(w) FROM t") >= 1000
    assert read("SELECT count(*) FROM t WHERE w = ?", 3) >= 100  # 100 index entries
    assert read("SELECT * FROM t ORDER BY v LIMIT 1") >= 1000  # sorts every row
    assert read("UPDATE t SET v = 'z' WHERE v = 'nothing'") >= 1000
    assert read("SELECT count(*) FROM t; SELECT 1") >= 1000  # over the whole call
    # A lookup by key reads one row and stays small.
    assert 1 <= read("SELECT * FROM t WHERE id = ?", 5) < 50


def test_105_rows_written_counts_trigger_changes(sql: SqlStorage) -> None:
    sql.exec(
        "CREATE TABLE t (v); CREATE TABLE audit (v);"
        "CREATE TRIGGER a AFTER INSERT ON t BEGIN INSERT INTO audit VALUES (new.v); END"
    )
    assert sql.exec("INSERT INTO t VALUES (1)").rows_written == 2


# -- 106: database size --------------------------------------------------------------------


def test_106_database_size_grows_when_a_table_is_created(
    db: ObjectDatabase, sql: SqlStorage
) -> None:
    before = sql.database_size
    assert before > 0
    sql.exec("CREATE TABLE should_make_one_more_page (v TEXT)")
    page_size = raw_rows(db, "PRAGMA page_size")[0][0]
    assert sql.databaseSize == before + page_size
    sql.exec("DROP TABLE should_make_one_more_page")
    assert sql.database_size == before


# -- 107: transaction statements ---------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    ["BEGIN", "begin transaction", "BEGIN IMMEDIATE", "COMMIT", "END", "end transaction",
     "ROLLBACK", "ROLLBACK TO sp", "SAVEPOINT sp", "RELEASE sp", "release savepoint sp",
     "/* comment */ BEGIN", "-- comment\nCOMMIT;", "SELECT 1; BEGIN"],
)  # fmt: skip
def test_107_transaction_statements_refused(sql: SqlStorage, query: str) -> None:
    with pytest.raises(StorageError, match=r"please use the state\.storage\.transaction\(\)"):
        sql.exec(query)


def test_107_transaction_statement_later_in_the_text_runs_nothing(
    db: ObjectDatabase, sql: SqlStorage
) -> None:
    with pytest.raises(StorageError, match="To execute a transaction"):
        sql.exec("CREATE TABLE t (v); COMMIT")
    assert raw_rows(db, "SELECT name FROM sqlite_schema WHERE name = 't'") == []


def test_107_authorizer_also_denies_transaction_opcodes(sql: SqlStorage) -> None:
    auth_denied(sql, "EXPLAIN BEGIN")


def test_107_user_sql_inside_a_savepoint_rolls_back_with_it(
    db: ObjectDatabase, sql: SqlStorage
) -> None:
    sql.exec("CREATE TABLE t (v)")

    def insert_then_fail() -> None:
        with db.savepoint("sync_savepoint"):
            sql.exec("INSERT INTO t VALUES (1)")
            raise RuntimeError("undo")

    with pytest.raises(RuntimeError):
        insert_then_fail()
    assert sql.exec("SELECT count(*) AS n FROM t").one() == {"n": 0}


# -- 108: reserved _cf_ names --------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM _cf_KV",
        "SELECT * FROM _CF_kv",
        'SELECT * FROM "_cf_KV"',
        "SELECT * FROM [_Cf_Kv]",
        "SELECT * FROM main._cf_KV",
        "SELECT value FROM _cf_METADATA",
        "SELECT count(*) FROM _cf_kv",
        "SELECT (SELECT key FROM _cf_KV LIMIT 1)",
        "INSERT INTO _cf_KV VALUES (x'61', x'00')",
        "INSERT INTO _cf_metadata (key, value) VALUES ('alarm', 1)",
        "UPDATE _cf_KV SET value = x'00'",
        "DELETE FROM _cf_KV",
        "DELETE FROM _CF_METADATA",
        "REPLACE INTO _cf_KV VALUES (x'61', x'00')",
        "DROP TABLE _cf_KV",
        "ALTER TABLE _cf_KV ADD COLUMN x",
        "ALTER TABLE _cf_KV RENAME TO mine",
        "CREATE TABLE _cf_mine (v)",
        "CREATE TABLE _CF_MINE (v)",
        "CREATE INDEX i ON _cf_KV (value)",
        "CREATE VIEW _cf_view AS SELECT 1",
        "CREATE TRIGGER tr AFTER DELETE ON _cf_KV BEGIN SELECT 1; END",
        "CREATE VIRTUAL TABLE _cf_search USING fts5(body)",
        "PRAGMA table_info(_cf_KV)",
        "PRAGMA table_xinfo('_CF_KV')",
        "PRAGMA index_list(_cf_KV)",
        "PRAGMA foreign_key_list(_cf_METADATA)",
        "PRAGMA quick_check(_cf_KV)",
        "SELECT * FROM pragma_table_info('_cf_KV')",
    ],
)
def test_108_reserved_names_are_denied(db: ObjectDatabase, sql: SqlStorage, query: str) -> None:
    KvStore(db).put("secret", "value")
    auth_denied(sql, query)
    assert KvStore(db).get("secret") == (True, "value")


def test_108_denied_read_names_the_column(sql: SqlStorage) -> None:
    assert str(auth_denied(sql, "SELECT * FROM _cf_KV")) == (
        "access to _cf_KV.key is prohibited: SQLITE_AUTH"
    )
    assert str(auth_denied(sql, "DELETE FROM _cf_KV")) == "not authorized: SQLITE_AUTH"


def test_108_user_tables_and_indexes_on_user_tables_are_fine(sql: SqlStorage) -> None:
    sql.exec(
        "CREATE TABLE my_cf_table (_cf_column); CREATE INDEX idx_cf_ ON my_cf_table (_cf_column)"
    )
    sql.exec("INSERT INTO my_cf_table VALUES (1)")
    assert sql.exec("SELECT _cf_column FROM my_cf_table").one() == {"_cf_column": 1}


def test_108_rename_into_the_reserved_namespace_is_denied(sql: SqlStorage) -> None:
    sql.exec('CREATE TABLE mine (v); CREATE TABLE "rename" (v)')
    auth_denied(sql, "ALTER TABLE mine RENAME TO _cf_KV2")
    auth_denied(sql, 'ALTER TABLE mine RENAME TO "_CF_x"')
    auth_denied(sql, "ALTER TABLE rename RENAME TO [_cf_y]")
    sql.exec("ALTER TABLE mine RENAME COLUMN v TO _cf_v")  # column names are not reserved
    sql.exec("ALTER TABLE mine RENAME TO yours")


def test_108_trigger_on_a_user_table_cannot_write_reserved_tables(
    db: ObjectDatabase, sql: SqlStorage
) -> None:
    sql.exec("CREATE TABLE t (v)")
    sql.exec(
        "CREATE TRIGGER sneaky AFTER INSERT ON t BEGIN "
        "INSERT INTO _cf_KV VALUES (x'6b', x'00'); DELETE FROM _cf_METADATA; END"
    )
    auth_denied(sql, "INSERT INTO t VALUES (1)")
    assert raw_rows(db, "SELECT count(*) FROM t") == [(0,)]
    assert raw_rows(db, "SELECT count(*) FROM _cf_KV") == [(0,)]


def test_108_view_over_a_reserved_table_cannot_be_read(sql: SqlStorage) -> None:
    sql.exec("CREATE VIEW peek AS SELECT * FROM _cf_KV")  # created, but useless
    auth_denied(sql, "SELECT * FROM peek")


def test_108_internal_statement_text_is_refused(db: ObjectDatabase, sql: SqlStorage) -> None:
    # Python's sqlite3 does not re-authorize a cached statement; objectd's own statements
    # carry a secret marker, and user text carrying it is refused outright.
    statement = internal_sql("SELECT value FROM _cf_KV WHERE key = ?")  # kv.py's get()
    kv = KvStore(db)
    kv.put("k", 1)
    assert kv.get("k") == (True, 1)  # now prepared, authorized with the guard off, and cached
    auth_denied(sql, statement, b"k")


def test_108_statement_introspection_tables_are_denied(sql: SqlStorage) -> None:
    for table in ("sqlite_stmt", "dbstat"):
        with pytest.raises(SqlError):
            sql.exec(f"SELECT * FROM {table}")


def test_108_a_second_sql_storage_shares_the_guard(db: ObjectDatabase, sql: SqlStorage) -> None:
    other = SqlStorage(db)
    auth_denied(sql, "SELECT * FROM _cf_KV")
    auth_denied(other, "SELECT * FROM _cf_KV")


# -- 109: pragmas -------------------------------------------------------------------------------


def test_109_allowed_pragmas(db: ObjectDatabase, sql: SqlStorage) -> None:
    sql.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, p REFERENCES t(id)); CREATE INDEX ti ON t(p)")
    assert any(r["name"] == "t" for r in sql.exec("PRAGMA table_list"))
    assert [r["name"] for r in sql.exec("PRAGMA table_info(t)")] == ["id", "p"]
    assert [r["name"] for r in sql.exec("PRAGMA main.table_xinfo('t')")] == ["id", "p"]
    assert sql.exec("PRAGMA data_version").one()["data_version"] is not None
    assert sql.exec("PRAGMA page_size").one() == {
        "page_size": raw_rows(db, "PRAGMA page_size")[0][0]
    }
    assert sql.exec("PRAGMA foreign_key_check").to_array() == []
    assert sql.exec("PRAGMA foreign_key_check(t)").to_array() == []
    assert sql.exec("PRAGMA foreign_key_list(t)").one()["table"] == "t"
    assert sql.exec("PRAGMA index_list(t)").one()["name"] == "ti"
    assert sql.exec("PRAGMA index_info(ti)").one()["name"] == "p"
    assert len(sql.exec("PRAGMA index_xinfo(ti)").to_array()) == 2
    for query in ("PRAGMA quick_check", "PRAGMA quick_check(10)", "PRAGMA quick_check(t)"):
        assert sql.exec(query).one() == {"quick_check": "ok"}
    sql.exec("PRAGMA optimize")
    sql.exec("PRAGMA optimize(-1)").to_array()
    sql.exec("PRAGMA optimize = 0x10002")
    sql.exec("ANALYZE")


@pytest.mark.parametrize(
    "pragma",
    ["case_sensitive_like", "foreign_keys", "defer_foreign_keys", "ignore_check_constraints",
     "legacy_alter_table", "recursive_triggers", "reverse_unordered_selects"],
)  # fmt: skip
def test_109_boolean_pragmas_get_and_set(db: ObjectDatabase, sql: SqlStorage, pragma: str) -> None:
    for spelling, expected in (
        ("ON", 1), ("off", 0), ("true", 1), ("FALSE", 0), ("yes", 1), ("No", 0), ("1", 1),
        ("0", 0), ("'true'", 1), ('"0"', 0), ("  tRuE  ", 1),
    ):  # fmt: skip
        sql.exec(f"PRAGMA {pragma} = {spelling}")
        if pragma != "case_sensitive_like":  # write-only in SQLite
            assert sql.exec(f"PRAGMA {pragma}").one() == {pragma: expected}
    auth_denied(sql, f"PRAGMA {pragma} = abcd")
    auth_denied(sql, f'PRAGMA {pragma} = "foo"')
    assert not db.batch_open  # setting connection flags is not a write


@pytest.mark.parametrize(
    "query",
    ["PRAGMA journal_mode", "PRAGMA journal_mode = DELETE", "PRAGMA user_version",
     "PRAGMA user_version = 3", "PRAGMA max_page_count = 65536", "PRAGMA page_size = 8192",
     "PRAGMA data_version = 5", "PRAGMA hard_heap_limit = 1024", "PRAGMA synchronous = OFF",
     "PRAGMA writable_schema = ON", "PRAGMA schema_version", "PRAGMA integrity_check",
     "PRAGMA table_info", "PRAGMA temp.foreign_keys", "PRAGMA function_list",
     "SELECT * FROM pragma_user_version", "SELECT * FROM pragma_journal_mode"],
)  # fmt: skip
def test_109_other_pragmas_are_denied(sql: SqlStorage, query: str) -> None:
    auth_denied(sql, query)


def test_109_foreign_keys_are_on_by_default_and_can_be_turned_off(
    db: ObjectDatabase, sql: SqlStorage
) -> None:
    sql.exec("CREATE TABLE p (id INTEGER PRIMARY KEY); CREATE TABLE c (p REFERENCES p(id))")
    with pytest.raises(SqlError, match="FOREIGN KEY constraint failed: SQLITE_CONSTRAINT"):
        sql.exec("INSERT INTO c VALUES (1)")
    db.commit()  # the pragma only takes effect outside a transaction (as in SQLite)
    sql.exec("PRAGMA foreign_keys = OFF")
    sql.exec("INSERT INTO c VALUES (1)")
    assert sql.exec("PRAGMA foreign_key_check").one()["parent"] == "p"


# -- 110: attach, temp, virtual tables ----------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    ["ATTACH DATABASE 'other.sqlite' AS other", "ATTACH ':memory:' AS m", "DETACH DATABASE temp",
     "CREATE TEMP TABLE tt (v)", "CREATE TEMPORARY TABLE tt (v)", "CREATE TABLE temp.tt (v)",
     "CREATE TEMP VIEW tv AS SELECT 1",
     "CREATE TEMP TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END",
     "CREATE VIRTUAL TABLE v3 USING fts3(body)", "CREATE VIRTUAL TABLE v4 USING fts4(body)",
     "CREATE VIRTUAL TABLE s USING fts5abcd(body)"],
)  # fmt: skip
def test_110_attach_temp_and_other_modules_are_denied(sql: SqlStorage, query: str) -> None:
    sql.exec("CREATE TABLE t (v)")
    auth_denied(sql, query)


def test_110_fts5(db: ObjectDatabase, sql: SqlStorage) -> None:
    if not has_module(db, "fts5"):
        pytest.skip("this SQLite build has no fts5 module")
    sql.exec(
        "CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT);"
        "CREATE VIRTUAL TABLE docs_fts USING FtS5(body, tokenize = porter);"
        "CREATE VIRTUAL TABLE docs_vocab USING fts5vocab(docs_fts, row);"
        "CREATE TRIGGER docs_ai AFTER INSERT ON docs BEGIN "
        "  INSERT INTO docs_fts (rowid, body) VALUES (new.id, new.body); END"
    )
    sql.exec("INSERT INTO docs (body) VALUES (?), (?)", "the contents of one", "content two two")
    hits = sql.exec(
        "SELECT rowid, highlight(docs_fts, 0, '[', ']') AS h, bm25(docs_fts) AS score, "
        "snippet(docs_fts, 0, '<', '>', '...', 4) AS s "
        "FROM docs_fts WHERE docs_fts MATCH 'content' ORDER BY rank"
    ).to_array()
    assert {hit["rowid"] for hit in hits} == {1, 2}
    assert "[contents]" in str(hits[0]["h"]) + str(hits[1]["h"])
    assert sql.exec("SELECT doc, cnt FROM docs_vocab WHERE term = 'two'").one() == {
        "doc": 1,
        "cnt": 2,
    }
    sql.exec("DROP TABLE docs_vocab; DROP TABLE docs_fts")


def test_110_rtree(db: ObjectDatabase, sql: SqlStorage) -> None:
    if not has_module(db, "rtree"):
        pytest.skip("this SQLite build has no rtree module")
    sql.exec("CREATE VIRTUAL TABLE boxes USING rtree(id, min_x, max_x, min_y, max_y)")
    sql.exec("CREATE VIRTUAL TABLE iboxes USING rtree_i32(id, min_x, max_x)")
    sql.exec("INSERT INTO boxes VALUES (1, 0, 10, 0, 10), (2, 20, 30, 20, 30)")
    assert sql.exec("SELECT id FROM boxes WHERE max_x >= 5 AND min_x <= 6").one() == {"id": 1}
    db.commit()
    assert sql.exec("SELECT rtreecheck('boxes') AS c").one() == {"c": "ok"}


# -- 111: limits -----------------------------------------------------------------------------------


def test_111_column_limit(sql: SqlStorage) -> None:
    sql.exec("CREATE TABLE ok (" + ", ".join(f"c{i}" for i in range(100)) + ")")
    with pytest.raises(SqlError, match="too many columns"):
        sql.exec("CREATE TABLE wide (" + ", ".join(f"c{i}" for i in range(101)) + ")")


def test_111_bound_parameter_limit(sql: SqlStorage) -> None:
    assert len(sql.exec("SELECT " + ", ".join(["?"] * 100), *range(100)).column_names) == 100
    with pytest.raises(SqlError, match="too many SQL variables"):
        sql.exec("SELECT " + ", ".join(["?"] * 101), *range(101))
    with pytest.raises(SqlError, match=r"between \?1 and \?100"):
        sql.exec("SELECT ?101", 1)


def test_111_statement_length_limit(sql: SqlStorage) -> None:
    base = "SELECT 1 AS a /*  */"
    assert sql.exec(base[:-2] + "x" * (100_000 - len(base)) + "*/").one() == {"a": 1}
    with pytest.raises(SqlError) as info:
        sql.exec(base[:-2] + "x" * (100_001 - len(base)) + "*/")
    assert info.value.code == "SQLITE_TOOBIG"
    with pytest.raises(SqlError, match="SQLITE_TOOBIG"):  # measured in UTF-8 bytes
        sql.exec("SELECT '" + "é" * 50_000 + "'")


def test_111_like_pattern_limit(sql: SqlStorage) -> None:
    assert sql.exec("SELECT 'a' LIKE ? AS m", "%" * 50).one() == {"m": 1}
    with pytest.raises(SqlError, match="LIKE or GLOB pattern too complex"):
        sql.exec("SELECT 'a' LIKE ?", "%" * 51)


def test_111_other_limits(sql: SqlStorage) -> None:
    five = " UNION ALL ".join(f"SELECT {i}" for i in range(5))
    assert len(sql.exec(five).to_array()) == 5
    with pytest.raises(SqlError, match="too many terms in compound SELECT"):
        sql.exec(five + " UNION ALL SELECT 5")
    with pytest.raises(SqlError, match="Expression tree is too large"):
        sql.exec("SELECT " + " + ".join(["1"] * 150))
    with pytest.raises(SqlError, match="string or blob too big: SQLITE_TOOBIG"):
        sql.exec("SELECT zeroblob(5 * 1024 * 1024)")
    sql.exec("CREATE TABLE t (a, b, c)")
    with pytest.raises(SqlError) as info:
        sql.exec("INSERT INTO t VALUES " + ", ".join(["(1, 2, 3)"] * 8000))
    assert info.value.code == "SQLITE_NOMEM"  # SQLite reports the VDBE op limit this way
    assert sql.exec("SELECT count(*) AS n FROM t").one() == {"n": 0}


def test_111_internal_kv_still_works_under_the_limits(db: ObjectDatabase, sql: SqlStorage) -> None:
    kv = KvStore(db)
    big = "x" * (2 * 1024 * 1024 - 64)
    kv.put("big", big)
    kv.put_encoded(kv.encode_entry(f"k{i:03}", i) for i in range(128))
    assert kv.get("big") == (True, big)
    assert len(kv.get_many(f"k{i:03}" for i in range(128))) == 128
    assert kv.delete_many(f"k{i:03}" for i in range(128)) == 128


# -- 112: error messages ---------------------------------------------------------------------------


def test_112_errors_carry_the_sqlite_message_and_code(sql: SqlStorage) -> None:
    with pytest.raises(SqlError) as info:
        sql.exec("SELECT * FROM misspelled_table_name")
    assert str(info.value) == "no such table: misspelled_table_name: SQLITE_ERROR"
    assert info.value.code == "SQLITE_ERROR"
    assert isinstance(info.value, StorageError)
    assert isinstance(info.value, DurableObjectError)
    assert isinstance(info.value.__cause__, sqlite3.Error)

    with pytest.raises(SqlError, match=r'^near "bunk": syntax error'):
        sql.exec("SELECT * bunk")
    sql.exec("CREATE TABLE t (name TEXT, n INTEGER UNIQUE CHECK (n < 10))")
    with pytest.raises(SqlError) as mismatch:
        sql.exec("INSERT INTO t (rowid, name) VALUES ('yeah', 'nah')")
    assert str(mismatch.value) == "datatype mismatch: SQLITE_MISMATCH"
    sql.exec("INSERT INTO t VALUES ('a', 1)")
    with pytest.raises(SqlError) as unique:
        sql.exec("INSERT INTO t VALUES ('b', 1)")
    assert str(unique.value) == "UNIQUE constraint failed: t.n: SQLITE_CONSTRAINT"
    with pytest.raises(SqlError, match=r"^CHECK constraint failed: n < 10: SQLITE_CONSTRAINT$"):
        sql.exec("INSERT INTO t VALUES ('c', 11)")
    assert str(auth_denied(sql, "CREATE TEMP TABLE x (v)")) == "not authorized: SQLITE_AUTH"


def test_112_functions_outside_the_allowlist(sql: SqlStorage) -> None:
    for function in ("sqlite_version()", "sqlite_source_id()", "load_extension('x')",
                     "sqlite_compileoption_used('X')", "sqlite_compileoption_get(0)",
                     "fts3_tokenizer('simple')", "readfile('/etc/passwd')",
                     "writefile('/tmp/x', 'y')", "sqlite_offset(1)"):  # fmt: skip
        with pytest.raises(SqlError, match=r"not authorized to use function|no such function"):
            sql.exec(f"SELECT {function}")


def test_112_ordinary_sql_keeps_working(sql: SqlStorage) -> None:
    sql.exec(
        "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, "
        "score REAL DEFAULT 0, doc TEXT, created TEXT DEFAULT CURRENT_TIMESTAMP)"
    )
    sql.exec(
        "INSERT INTO t (name, score, doc) VALUES ('ann', 1.5, '{\"a\": [1, 2]}'), "
        "('bob', 2.5, '{\"a\": []}') RETURNING id"
    )
    row = sql.exec(
        """
        WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 3)
        SELECT abs(-1) AS a, upper(name) AS u, lower('X') AS l, length(name) AS len,
               substr(name, 1, 1) AS s, replace(name, 'a', 'e') AS r, instr(name, 'n') AS i,
               trim('  x ') AS tr, coalesce(NULL, 1) AS c, ifnull(NULL, 2) AS f,
               iif(score > 2, 'hi', 'lo') AS iif_, nullif(1, 1) AS nf, typeof(score) AS ty,
               round(score) AS ro, printf('%05.1f', score) AS pf, hex('a') AS hx,
               quote(name) AS q, date('2024-01-02') AS d, strftime('%Y', created) IS NOT NULL
               AS y, json_extract(doc, '$.a[1]') AS je, doc ->> '$.a' AS arrow,
               json_array_length(doc, '$.a') AS jl, json_object('k', name) AS jo,
               (SELECT group_concat(x) FROM n) AS gc, (SELECT sum(x) FROM n) AS total_x,
               row_number() OVER (ORDER BY id) AS rn, count(*) OVER () AS cnt,
               max(score, 2) AS mx, min(score, 2) AS mn, cast(score AS INTEGER) AS ci,
               sqrt(16) AS sq, pow(2, 3) AS pw, floor(1.5) AS fl, ceil(1.2) AS ce,
               name LIKE 'A%' AS lk, name GLOB 'a*' AS gl, likely(1) AS lkl,
               unicode('a') AS uc, char(97) AS ch, zeroblob(2) AS zb, last_insert_rowid() > 0
               AS lr, changes() >= 0 AS ch2, total_changes() >= 0 AS tc,
               random() IS NOT NULL AS rnd, length(randomblob(4)) AS rb,
               julianday('2024-01-01') > 0 AS jd, unixepoch('2024-01-01') AS ue
        FROM t WHERE id = 1
        """
    ).one()
    expected = {"u": "ANN", "je": 2, "arrow": "[1,2]", "gc": "1,2,3", "total_x": 6}
    expected |= {"rn": 1, "cnt": 1, "zb": b"\x00\x00", "ue": 1704067200, "lk": 1, "rb": 4}
    assert {key: row[key] for key in expected} == expected
    sql.exec(
        "CREATE INDEX t_name ON t(name); CREATE VIEW v AS SELECT name FROM t;"
        "CREATE TRIGGER tr AFTER UPDATE ON t BEGIN UPDATE t SET score = score WHERE 0; END;"
        "ALTER TABLE t ADD COLUMN extra; ALTER TABLE t RENAME COLUMN extra TO more;"
        "ALTER TABLE t DROP COLUMN more; ALTER TABLE t RENAME TO people;"
        "UPDATE people SET score = score + 1; REINDEX; ANALYZE; DROP VIEW v"
    )
    assert sql.exec("SELECT count(*) AS n FROM people").one() == {"n": 2}
    assert sql.exec("SELECT name FROM sqlite_schema WHERE type = 'table' AND name = 'people'").one()


# -- 113: deferred foreign keys (the commit-time reset is the runtime's) ---------------------------


def test_113_defer_foreign_keys(db: ObjectDatabase, sql: SqlStorage) -> None:
    sql.exec(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);"
        "CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id))"
    )
    db.commit()
    with pytest.raises(SqlError, match="FOREIGN KEY constraint failed"):
        sql.exec("INSERT INTO posts (user_id) VALUES (?)", 1)
    sql.exec("PRAGMA defer_foreign_keys = ON")
    sql.exec("INSERT INTO posts (user_id) VALUES (?)", 1)  # violation held until commit
    sql.exec("INSERT INTO users VALUES (?, ?)", 1, "Alice")
    db.commit()
    assert raw_rows(db, "SELECT user_id FROM posts") == [(1,)]

    db.begin_write()  # the flag lasts until the end of the transaction it is set in
    sql.exec("PRAGMA defer_foreign_keys = ON")
    sql.exec("INSERT INTO posts (user_id) VALUES (?)", 2)
    with pytest.raises(SqlError, match="FOREIGN KEY constraint failed: SQLITE_CONSTRAINT"):
        db.commit()  # the runtime turns this into the documented reset (checklist 113)
    db.rollback()


def test_113_statements_prepared_while_deferred_check_again_afterwards(
    db: ObjectDatabase, sql: SqlStorage
) -> None:
    """SQLite decides at prepare time whether a statement's foreign key checks are
    deferred, and does not expire prepared statements when ``defer_foreign_keys`` switches
    itself off at the end of the transaction: a cached statement then let a violating row
    in (its error was raised, the row stayed and was committed)."""
    sql.exec(
        "CREATE TABLE users (id INTEGER PRIMARY KEY);"
        "CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id));"
        "INSERT INTO users VALUES (1)"
    )
    db.commit()
    insert = "INSERT INTO posts (user_id) VALUES (?)"
    sql.exec("PRAGMA defer_foreign_keys = ON")
    sql.exec(insert, 1)
    db.commit()  # a good deferred transaction
    with pytest.raises(SqlError, match="FOREIGN KEY constraint failed"):
        sql.exec(insert, 3)  # the same text: the cached statement
    db.commit()
    assert raw_rows(db, "SELECT user_id FROM posts") == [(1,)]
    # The same after a deferred transaction that failed at COMMIT and was rolled back.
    sql.exec("PRAGMA defer_foreign_keys = ON")
    sql.exec(insert, 4)
    with pytest.raises(SqlError, match="FOREIGN KEY constraint failed: SQLITE_CONSTRAINT"):
        db.commit()
    db.rollback()
    with pytest.raises(SqlError, match="FOREIGN KEY constraint failed"):
        sql.exec(insert, 5)
    db.commit()
    assert raw_rows(db, "SELECT user_id FROM posts") == [(1,)]


# -- statement atomicity and the batch ----------------------------------------------------------


def test_failed_statement_changes_nothing(db: ObjectDatabase, sql: SqlStorage) -> None:
    sql.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER CHECK (v < 3))")
    sql.exec("INSERT INTO t VALUES (1, 1), (2, 2)")
    with pytest.raises(SqlError):
        sql.exec("INSERT INTO t VALUES (3, 1), (4, 2), (5, 9)")
    with pytest.raises(SqlError):
        sql.exec("UPDATE t SET v = v + 1")  # row 2 would break the CHECK
    assert sql.exec("SELECT id, v FROM t ORDER BY id").raw().to_array() == [[1, 1], [2, 2]]
    assert db.batch_open
    db.commit()
    assert raw_rows(db, "SELECT count(*) FROM t") == [(2,)]


def test_earlier_statements_of_a_failing_exec_stay(sql: SqlStorage) -> None:
    sql.exec("CREATE TABLE t (v)")
    with pytest.raises(SqlError, match="no such table: nope"):
        sql.exec("INSERT INTO t VALUES (1); INSERT INTO nope VALUES (2)")
    assert sql.exec("SELECT v FROM t").one() == {"v": 1}


def test_conflict_rollback_ending_the_batch_keeps_the_database_consistent(
    db: ObjectDatabase, sql: SqlStorage
) -> None:
    sql.exec("CREATE TABLE t (v UNIQUE)")
    db.commit()
    KvStore(db).put("k", 1)
    sql.exec("INSERT INTO t VALUES (1)")
    with pytest.raises(SqlError, match="UNIQUE constraint failed"):
        sql.exec("INSERT OR ROLLBACK INTO t VALUES (1)")
    # SQLite rolled back the whole batch, the KV write "k" with it. That batch must fail
    # (its writes may already have been acknowledged), never commit as if it were whole.
    assert not db.batch_open
    assert KvStore(db).get("k") == (False, None)
    critical = "Cannot commit transaction due to an earlier SQL critical error"
    with pytest.raises(StorageError, match=critical):
        sql.exec("INSERT INTO t VALUES (2)")  # no new batch behind the lost one's back
    with pytest.raises(StorageError, match=critical):
        db.commit()  # the runtime's flush: fails, so held outputs fail and the object resets
    sql.exec("INSERT INTO t VALUES (2)")  # a new batch after the failure works
    db.commit()
    assert raw_rows(db, "SELECT v FROM t") == [(2,)]


# -- what one exec() may hold (adversarial finding 3) -------------------------------------------

ENDLESS_ROWS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT x FROM c"
TOO_LARGE = "the most one sql.exec\\(\\) may hold in memory"


def test_the_default_bound_is_cloudflares_isolate_memory() -> None:
    assert MAX_RESULT_BYTES == 128 * 1024 * 1024


@pytest.mark.parametrize(
    "query",
    [
        ENDLESS_ROWS,
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) "
        "SELECT randomblob(100000) FROM c",
    ],
    ids=["endless-small-rows", "endless-large-rows"],
)
def test_rows_that_never_end_fail_the_call_at_the_bound(db: ObjectDatabase, query: str) -> None:
    sql = SqlStorage(db, max_result_bytes=2 * 1024 * 1024)
    with pytest.raises(DurableObjectRangeError, match=TOO_LARGE):
        sql.exec(query)
    # A plain error: the object goes on (the read changed nothing, so its batch commits),
    # and nothing is left running on the connection.
    assert sql.exec("SELECT 1 AS one").one() == {"one": 1}
    sql.exec("CREATE TABLE t (v)")
    db.commit()
    assert not db.conn.in_transaction


def test_rows_under_the_bound_all_arrive_in_order(db: ObjectDatabase) -> None:
    sql = SqlStorage(db, max_result_bytes=16 * 1024 * 1024)
    count = 20_000  # several chunks (they grow from one row)
    query = f"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT {count}) "
    rows = sql.exec(query + "SELECT x, 'v' || x AS v FROM c").raw().to_array()
    assert rows == [[i, f"v{i}"] for i in range(1, count + 1)]
    assert sql.exec("SELECT 1 AS a WHERE 0").to_array() == []


def test_one_value_past_the_bound_fails(db: ObjectDatabase) -> None:
    sql = SqlStorage(db, max_result_bytes=1024 * 1024)
    assert len(sql.exec("SELECT randomblob(900000) AS b").one()["b"]) == 900_000  # type: ignore[arg-type]
    with pytest.raises(DurableObjectRangeError, match=TOO_LARGE):
        sql.exec("SELECT randomblob(600000), randomblob(600000)")


def test_a_write_whose_returned_rows_pass_the_bound_fails_its_batch(db: ObjectDatabase) -> None:
    sql = SqlStorage(db, max_result_bytes=256 * 1024)
    sql.exec("CREATE TABLE t (v)")
    db.commit()
    KvStore(db).put("k", 1)
    query = (
        "INSERT INTO t WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 5000) "
        "SELECT x FROM c RETURNING v, randomblob(100)"
    )
    with pytest.raises(DurableObjectRangeError, match=TOO_LARGE):
        sql.exec(query)
    # SQLite had made the whole write when its rows came: the batch must not commit it.
    critical = "Cannot commit transaction due to an earlier SQL critical error"
    with pytest.raises(StorageError, match=critical):
        db.commit()
    assert raw_rows(db, "SELECT count(*) FROM t") == [(0,)]
    assert KvStore(db).get("k") == (False, None)


# -- internal statements and deleteAll ----------------------------------------------------------


def test_internal_kv_api_works_with_the_authorizer_installed(
    db: ObjectDatabase, sql: SqlStorage
) -> None:
    sql.exec("CREATE TABLE t (v); INSERT INTO t VALUES (1)")
    kv = KvStore(db)
    kv.put("a", {"x": 1})
    kv.put("b", [1, 2])
    assert kv.get("a") == (True, {"x": 1})
    assert [k for k, _ in kv.list_range(compile_list_options({"prefix": ""}))] == ["a", "b"]
    with db.savepoint("sync_savepoint"):
        kv.put("c", 3)
        sql.exec("INSERT INTO t VALUES (2)")
    db.set_meta("alarm", 123)
    assert db.get_meta("alarm") == 123
    assert kv.delete("a")
    db.commit()
    assert db.size() == sql.database_size
    assert raw_rows(db, "SELECT count(*) FROM _cf_KV") == [(2,)]


def test_drop_all_user_objects(db: ObjectDatabase, sql: SqlStorage) -> None:
    kv = KvStore(db)
    kv.put("keep", 1)
    sql.exec(
        "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
        "CREATE TABLE child (id INTEGER PRIMARY KEY AUTOINCREMENT, "
        "  p INTEGER NOT NULL REFERENCES parent(id));"
        "CREATE INDEX child_p ON child(p);"
        "CREATE VIEW kids AS SELECT * FROM child;"
        "CREATE TRIGGER t AFTER INSERT ON parent BEGIN SELECT 1; END;"
        'CREATE TABLE "we""ird name" (v);'
        "INSERT INTO parent VALUES (1); INSERT INTO child (p) VALUES (1); ANALYZE"
    )
    if has_module(db, "fts5"):
        sql.exec("CREATE VIRTUAL TABLE search USING fts5(body)")
    if has_module(db, "rtree"):
        sql.exec("CREATE VIRTUAL TABLE boxes USING rtree(id, a, b)")
    db.commit()
    sql.drop_all_user_objects()
    assert db.batch_open
    left = [name for (name,) in raw_rows(db, "SELECT name FROM sqlite_schema")]
    assert [name for name in left if name[:4] != "_cf_" and name != "sqlite_sequence"] == []
    assert sql.exec("PRAGMA defer_foreign_keys").one() == {"defer_foreign_keys": 0}
    db.commit()
    assert kv.get("keep") == (True, 1)
    sql.exec("CREATE TABLE parent (v)")  # the names are free again


def test_drop_all_user_objects_is_part_of_the_batch(db: ObjectDatabase, sql: SqlStorage) -> None:
    sql.exec("CREATE TABLE t (v)")
    db.commit()
    sql.drop_all_user_objects()
    db.rollback()
    assert sql.exec("SELECT count(*) AS n FROM t").one() == {"n": 0}
