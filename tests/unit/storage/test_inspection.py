"""storage.inspection: reading an object's file from outside; read-only queries (issue 14)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from objectd import codec
from objectd.errors import SqlError
from objectd.storage import inspection
from objectd.storage.database import Backend, ObjectDatabase, internal_sql
from objectd.storage.sql import SqlStorage, installed_guard


@pytest.fixture
def db(tmp_path: Path) -> Iterator[ObjectDatabase]:
    database = ObjectDatabase(tmp_path / "o.sqlite", backend=Backend.SQLITE)
    yield database
    database.close()


def _fill(db: ObjectDatabase) -> SqlStorage:
    sql = SqlStorage(db)
    db.begin_write()
    for key, value in (("b", {"x": [1, 2]}), ("a", "text")):
        db.conn.execute(
            internal_sql("INSERT INTO _cf_KV (key, value) VALUES (?, ?)"),
            (key.encode(), codec.encode(value)),
        )
    sql.exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    sql.exec("INSERT INTO notes (body) VALUES ('one'), ('two')")
    db.commit()
    return sql


def test_kv_pairs_are_decoded_in_key_order(db: ObjectDatabase) -> None:
    _fill(db)
    entries, more = inspection.read_kv(db.conn)
    assert [(e.key, e.value) for e in entries] == [("a", "text"), ("b", {"x": [1, 2]})]
    assert not more
    first, more = inspection.read_kv(db.conn, limit=1)
    assert [e.key for e in first] == ["a"]
    assert more


def test_tables_are_the_objects_own_not_objectds(db: ObjectDatabase) -> None:
    _fill(db)
    tables = inspection.read_tables(db.conn)
    assert [t.name for t in tables] == ["notes"]
    assert tables[0].count == 2
    assert tables[0].columns == ["id", "body"]
    assert tables[0].rows == [(1, "one"), (2, "two")]


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM notes",
        "INSERT INTO notes (body) VALUES ('three')",
        "UPDATE notes SET body = 'x'",
        "DROP TABLE notes",
        "CREATE TABLE t (x)",
        "PRAGMA query_only=0",
        "PRAGMA journal_mode=DELETE",
        "ATTACH DATABASE ':memory:' AS other",
        "WITH x AS (SELECT 1) DELETE FROM notes",
        "SELECT load_extension('x')",
        "VACUUM",
    ],
)
def test_a_query_that_writes_is_refused_and_changes_nothing(
    db: ObjectDatabase, statement: str
) -> None:
    _fill(db)
    with pytest.raises(sqlite3.Error):
        inspection.read_only_query(db.conn, statement)
    rows = db.conn.execute(internal_sql("SELECT body FROM notes ORDER BY id")).fetchall()
    assert rows == [("one",), ("two",)]
    assert db.conn.execute(internal_sql("PRAGMA query_only")).fetchone() == (0,)


def test_a_query_reads_rows_up_to_the_limit(db: ObjectDatabase) -> None:
    _fill(db)
    result = inspection.read_only_query(db.conn, "SELECT body FROM notes ORDER BY id", limit=1)
    assert result.columns == ["body"]
    assert result.rows == [("one",)]
    assert result.truncated


def test_a_query_that_runs_too_long_is_stopped(db: ObjectDatabase) -> None:
    endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT max(i) FROM n"
    with pytest.raises(sqlite3.OperationalError, match="interrupted"):
        inspection.read_only_query(db.conn, endless, seconds=0.05)


def test_on_a_live_connection_the_objects_guard_and_writes_come_back(db: ObjectDatabase) -> None:
    """The object's own SQL works as before afterwards: its authorizer is set back (so
    it still may not touch _cf_ tables) and the connection may write again."""
    sql = _fill(db)
    guard = installed_guard(db)
    assert guard is not None
    inspection.read_only_query(db.conn, "SELECT count(*) FROM notes", restore=guard)
    with pytest.raises(SqlError, match="SQLITE_AUTH"):
        sql.exec("SELECT * FROM _cf_KV")
    sql.exec("INSERT INTO notes (body) VALUES ('three')")
    db.commit()
    assert sql.exec("SELECT count(*) AS n FROM notes").one()["n"] == 3


def test_a_query_never_reuses_a_statement_the_object_prepared(db: ObjectDatabase) -> None:
    """The object ran this exact DELETE (so it is in the statement cache, authorized by
    the object's guard); typed into the inspector, it is still refused."""
    sql = _fill(db)
    sql.exec("DELETE FROM notes WHERE id = 99")
    db.commit()
    with pytest.raises(sqlite3.Error):
        inspection.read_only_query(
            db.conn, "DELETE FROM notes WHERE id = 99", restore=installed_guard(db)
        )


def test_a_read_only_connection_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    db = ObjectDatabase(tmp_path / "o.sqlite", backend=Backend.SQLITE)
    _fill(db)
    db.close()  # a clean close checkpoints the WAL away
    before = sorted(p.name for p in tmp_path.iterdir())
    with inspection.open_read_only(tmp_path / "o.sqlite") as conn:
        assert inspection.read_tables(conn)[0].count == 2
        with pytest.raises(sqlite3.OperationalError):
            conn.execute("DELETE FROM notes")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_read_only_connection_does_not_wait_for_a_live_file(db: ObjectDatabase) -> None:
    """The object's connection holds the file exclusively: a second one fails at once."""
    _fill(db)
    with (
        pytest.raises(sqlite3.OperationalError, match="locked"),
        inspection.open_read_only(db.path) as conn,
    ):
        conn.execute("SELECT * FROM notes").fetchall()


def test_a_snapshot_is_a_whole_database(db: ObjectDatabase, tmp_path: Path) -> None:
    _fill(db)
    data = inspection.snapshot(db.conn)
    copy = tmp_path / "copy.sqlite"
    copy.write_bytes(data)
    with inspection.open_read_only(copy) as conn:
        assert [e.key for e in inspection.read_kv(conn)[0]] == ["a", "b"]
        assert inspection.read_tables(conn)[0].rows == [(1, "one"), (2, "two")]


def test_large_values_are_counted_not_read(db: ObjectDatabase) -> None:
    """Reads are bounded: a 2 MiB value is not loaded to be shown."""
    db.begin_write()
    big = codec.encode("x" * (inspection.MAX_VALUE_BYTES + 1))
    db.conn.execute(internal_sql("INSERT INTO _cf_KV (key, value) VALUES (?, ?)"), (b"big", big))
    db.commit()
    (entry,), _ = inspection.read_kv(db.conn)
    assert (entry.key, entry.value, entry.size, entry.shown) == ("big", None, len(big), False)


def test_a_query_stops_at_its_byte_budget(
    db: ObjectDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    sql = _fill(db)
    sql.exec("INSERT INTO notes (body) VALUES (?)", "y" * 100)
    db.commit()
    monkeypatch.setattr(inspection, "MAX_READ_BYTES", 50)
    result = inspection.read_only_query(
        db.conn, "SELECT body FROM notes ORDER BY length(body) DESC"
    )
    assert result.rows == [("y" * 100,)]
    assert result.truncated


def test_kv_pages_by_prefix_and_last_key(db: ObjectDatabase) -> None:
    db.begin_write()
    for key in ("", "a", "user:1", "user:2", "user:3", "z"):
        db.conn.execute(
            internal_sql("INSERT INTO _cf_KV (key, value) VALUES (?, ?)"),
            (key.encode(), codec.encode(key)),
        )
    db.commit()
    keys = [e.key for e in inspection.read_kv(db.conn)[0]]
    assert keys == ["", "a", "user:1", "user:2", "user:3", "z"]
    page, more = inspection.read_kv(db.conn, prefix="user:", limit=2)
    assert ([e.key for e in page], more) == (["user:1", "user:2"], True)
    page, more = inspection.read_kv(db.conn, prefix="user:", after="user:2", limit=2)
    assert ([e.key for e in page], more) == (["user:3"], False)


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT hex(zeroblob(400000000))",
        "SELECT length(randomblob(900000000))",
        "SELECT replace(hex(zeroblob(300000)), '0', '0000')",
    ],
)
def test_a_query_may_not_build_a_huge_value(db: ObjectDatabase, statement: str) -> None:
    """One SQL function call is not interrupted by the time limit, and a 400 MB value
    costs its memory at once: while a query runs, no value may exceed QUERY_VALUE_BYTES."""
    _fill(db)
    before = db.conn.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)
    with pytest.raises(sqlite3.DataError, match="too big"):
        inspection.read_only_query(db.conn, statement)
    assert db.conn.getlimit(sqlite3.SQLITE_LIMIT_LENGTH) == before  # the object's own again
    assert inspection.QUERY_VALUE_BYTES == 1024 * 1024


@pytest.mark.parametrize(
    "statement", ["SELECT printf('%.*c', 900000000, 'x')", "SELECT format('%d', 1)"]
)
def test_printf_is_refused_in_a_query(db: ObjectDatabase, statement: str) -> None:
    """printf's repeated %c runs for seconds inside one call, past any limit."""
    with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
        inspection.read_only_query(db.conn, statement)


def test_after_a_query_the_object_may_store_large_values_again(db: ObjectDatabase) -> None:
    sql = _fill(db)
    inspection.read_only_query(db.conn, "SELECT count(*) FROM notes")
    sql.exec("INSERT INTO notes (body) VALUES (?)", "z" * (2 * 1024 * 1024))
    db.commit()
    assert sql.exec("SELECT max(length(body)) AS n FROM notes").one()["n"] == 2 * 1024 * 1024


def _tables(db: ObjectDatabase, tables: int, rows: int, size: int) -> None:
    sql = SqlStorage(db)
    db.begin_write()
    for t in range(tables):
        sql.exec(f"CREATE TABLE t{t} (id INTEGER PRIMARY KEY, body TEXT, data BLOB, n INT)")
        for _ in range(rows):
            sql.exec(f"INSERT INTO t{t} (body, data, n) VALUES (?, ?, 7)", "é" * size, b"\1" * size)
    db.commit()


def test_table_values_are_cut_as_they_are_read(db: ObjectDatabase) -> None:
    """A page of 30 tables of 1 MB values must not hold 500 MB: each value is cut in
    SQLite (substr), and its full length is kept for the page to say."""
    _tables(db, 1, 2, 1000)
    (table,) = inspection.read_tables(db.conn, value_chars=10)
    assert table.columns == ["id", "body", "data", "n"]
    row = table.rows[0]
    assert row[0] == 1 and row[3] == 7
    assert row[1] == inspection.Cut("é" * 10, 1000)
    assert row[2] == inspection.Cut(b"\1" * 10, 1000)
    assert (table.count, table.truncated) == (2, False)
    small = inspection.read_tables(db.conn, value_chars=5000)[0].rows[0]
    assert small[1] == "é" * 1000  # short enough: as it is


def test_one_byte_budget_for_all_tables_of_a_page(db: ObjectDatabase) -> None:
    _tables(db, 3, 5, 100)
    # The budget is charged what SQLite reads, the whole values: 100 characters and
    # 100 bytes a row, 200, though only 10 of each are kept; a row is taken if it fits.
    tables = inspection.read_tables(db.conn, value_chars=10, max_bytes=1500)
    assert [t.name for t in tables] == ["t0", "t1", "t2"]
    assert [len(t.rows) for t in tables] == [5, 2, 0]
    assert [t.truncated for t in tables] == [False, True, True]
    assert [t.count for t in tables] == [5, 5, 5]


def test_counting_and_reading_stop_at_the_time_limit(db: ObjectDatabase) -> None:
    """A plain table's count(*) is one SQLite step (its B-tree's count); a virtual
    table's is a scan, and it is stopped at the limit like the reading of rows."""
    db.begin_write()
    db.conn.execute(internal_sql("CREATE VIRTUAL TABLE words USING fts5(w)"))
    db.conn.execute(
        internal_sql(
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c LIMIT 20000) "
            "INSERT INTO words SELECT 'w' || i FROM c"
        )
    )
    db.commit()
    (words,) = [t for t in inspection.read_tables(db.conn, seconds=0) if t.name == "words"]
    assert words.count is None  # not counted: too slow
    assert (words.rows, words.truncated) == ([], True)
    (words,) = [t for t in inspection.read_tables(db.conn) if t.name == "words"]
    assert (words.count, len(words.rows)) == (20000, inspection.MAX_ROWS)
    db.begin_write()  # the connection has no handler left behind
    db.conn.execute(internal_sql("INSERT INTO words VALUES ('more')"))
    db.commit()


def _object_file(tmp_path: Path, backend: Backend, *statements: str) -> Path:
    path = tmp_path / "export" / "o.sqlite"
    path.parent.mkdir(parents=True)
    database = ObjectDatabase(path, backend=backend)
    database.begin_write()
    for statement in statements:
        database.conn.execute(internal_sql(statement))
    database.commit()
    database.close()
    return path


def test_a_sound_object_file_passes_the_import_check(tmp_path: Path) -> None:
    path = _object_file(tmp_path, Backend.SQLITE, "CREATE TABLE notes (body TEXT)")
    assert inspection.check_object_file(path, Backend.SQLITE) == []
    kv = _object_file(tmp_path / "kv", Backend.KV)
    assert inspection.check_object_file(kv, Backend.KV) == []
    assert sorted(p.name for p in path.parent.iterdir()) == ["o.sqlite"]  # looked, no trace


def test_a_file_corrupted_past_its_header_is_refused(tmp_path: Path) -> None:
    path = _object_file(
        tmp_path,
        Backend.SQLITE,
        "CREATE TABLE notes (body TEXT)",
        "INSERT INTO notes VALUES ('hello')",
    )
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    assert len(data) >= 3 * page
    data[page:] = b"\xa5" * (len(data) - page)  # every page but the first (the schema)
    path.write_bytes(bytes(data))
    (problem,) = inspection.check_object_file(path, Backend.SQLITE)
    assert "not a sound SQLite file" in problem


def test_a_file_with_sql_tables_is_not_a_kv_objects(tmp_path: Path) -> None:
    path = _object_file(tmp_path, Backend.SQLITE, "CREATE TABLE notes (body TEXT)")
    (problem,) = inspection.check_object_file(path, Backend.KV)
    assert "SQL tables" in problem and "notes" in problem


@pytest.mark.parametrize(
    "statements",
    [
        ["CREATE TRIGGER t AFTER INSERT ON _cf_KV BEGIN SELECT 1; END"],
        [
            "CREATE TABLE notes (b)",
            "CREATE TRIGGER t AFTER INSERT ON notes BEGIN DELETE FROM _CF_kv; END",
        ],
        ["CREATE VIEW v AS SELECT * FROM _cf_METADATA"],
    ],
)
def test_triggers_and_views_on_objectds_tables_are_refused(
    tmp_path: Path, statements: list[str]
) -> None:
    path = _object_file(tmp_path, Backend.SQLITE, *statements)
    problems = inspection.check_object_file(path, Backend.SQLITE)
    assert len(problems) == 1 and "objectd's own tables" in problems[0]


def test_a_file_that_is_not_an_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.sqlite"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.commit()
    (problem,) = inspection.check_object_file(path, Backend.SQLITE)
    assert "not an objectd object" in problem
