"""The data format an object's file records (``PRAGMA user_version``)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from objectd.errors import StorageError
from objectd.storage.database import Backend, ObjectDatabase, internal_sql


def user_version(path: Path) -> int:
    with closing(sqlite3.connect(path)) as db:
        version: int = db.execute("PRAGMA user_version").fetchone()[0]
    return version


def test_a_new_file_records_format_1(tmp_path: Path) -> None:
    path = tmp_path / "obj.sqlite"
    ObjectDatabase(path, backend=Backend.SQLITE).close()
    assert user_version(path) == 1


def test_a_file_of_a_newer_format_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "obj.sqlite"
    ObjectDatabase(path, backend=Backend.SQLITE).close()
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA user_version = 2")
    with pytest.raises(StorageError) as info:
        ObjectDatabase(path, backend=Backend.SQLITE)
    assert str(info.value) == (
        f"{path}: data format 2 is newer than this objectd's (1): "
        "a newer objectd wrote it; run that version"
    )
    assert user_version(path) == 2  # not stamped with this objectd's format


def test_a_file_without_a_format_gets_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "obj.sqlite"
    with closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE t (x)")  # a file SQLite made, with no objectd schema
    db = ObjectDatabase(path, backend=Backend.SQLITE)
    try:
        assert db.conn.execute(internal_sql("SELECT count(*) FROM _cf_KV")).fetchone() == (0,)
    finally:
        db.close()
    assert user_version(path) == 1
