"""storage.interrupts: a statement stopped mid-run by the CPU watchdog (issue 9 §2).

A timer thread plays the watchdog: it interrupts whatever statement is in the slot.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from objectd.storage.database import Backend, ObjectDatabase, internal_sql
from objectd.storage.interrupts import CpuLimitExceeded, interrupt_running, running
from objectd.storage.kv import KvStore
from objectd.storage.sql import SqlStorage

ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"
ENDLESS_INSERT = (
    "INSERT INTO t WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT x FROM c"
)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[ObjectDatabase]:
    database = ObjectDatabase(tmp_path / "o.sqlite", backend=Backend.SQLITE)
    yield database
    database.close()


class Watchdog:
    """Interrupts the running statement every 20 ms until stopped."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.hits = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.02):
            self.hits += interrupt_running()

    def __enter__(self) -> Watchdog:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)


def integrity(db: ObjectDatabase) -> str:
    return str(db.conn.execute(internal_sql("PRAGMA integrity_check")).fetchone()[0])


def test_the_slot_is_empty_outside_statements(db: ObjectDatabase) -> None:
    sql = SqlStorage(db)
    sql.exec("CREATE TABLE t (x)")
    assert running.conn is None
    assert interrupt_running() is False
    with pytest.raises(Exception, match="no such table"):
        sql.exec("SELECT * FROM missing")
    assert running.conn is None


def test_an_endless_read_is_interrupted_and_the_batch_kept(db: ObjectDatabase) -> None:
    sql = SqlStorage(db)
    kv = KvStore(db)
    kv.put("before", 1)  # the open batch
    with Watchdog() as watchdog, pytest.raises(CpuLimitExceeded) as info:
        sql.exec(ENDLESS)
    assert watchdog.hits >= 1
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)  # never seen raw
    assert running.conn is None
    # A read does not end SQLite's transaction: the batch can still commit (the runtime
    # resets the object anyway, which rolls it back).
    assert db.batch_open and db.conn.in_transaction
    db.commit()
    assert kv.get("before") == (True, 1)
    assert sql.exec("SELECT 1 AS one").one() == {"one": 1}  # no stale interrupt
    assert integrity(db) == "ok"


def test_an_endless_write_is_interrupted_and_its_batch_fails(db: ObjectDatabase) -> None:
    sql = SqlStorage(db)
    kv = KvStore(db)
    sql.exec("CREATE TABLE t (x)")
    kv.put("committed", 1)
    db.commit()
    kv.put("in-batch", 2)
    with Watchdog(), pytest.raises(CpuLimitExceeded):
        sql.exec(ENDLESS_INSERT)
    # SQLite rolled the whole transaction back: the batch must fail, never half-commit.
    assert not db.conn.in_transaction
    with pytest.raises(Exception, match="earlier SQL critical error"):
        db.commit()
    assert kv.get("in-batch") == (False, None)
    assert kv.get("committed") == (True, 1)
    assert sql.exec("SELECT count(*) AS n FROM t").one() == {"n": 0}
    assert integrity(db) == "ok"


def test_an_interrupted_statement_inside_a_savepoint_unwinds_it(db: ObjectDatabase) -> None:
    sql = SqlStorage(db)
    sql.exec("CREATE TABLE t (x)")
    db.commit()

    def in_savepoint(statement: str) -> None:
        with db.savepoint("savepoint"):
            sql.exec("INSERT INTO t VALUES (1)")
            sql.exec(statement)

    for statement in (ENDLESS, ENDLESS_INSERT):
        with Watchdog(), pytest.raises(CpuLimitExceeded):
            in_savepoint(statement)
        assert db.savepoint_depth == 0
        db.rollback()
        assert sql.exec("SELECT count(*) AS n FROM t").one() == {"n": 0}
    assert integrity(db) == "ok"


def test_delete_all_is_interruptible(db: ObjectDatabase) -> None:
    kv = KvStore(db)
    seen: list[sqlite3.Connection | None] = []
    # A trace callback runs while the statement runs: the slot names the connection.
    db.conn.set_trace_callback(lambda _: seen.append(running.conn))
    kv.delete_all()
    db.conn.set_trace_callback(None)
    assert db.conn in seen
    assert running.conn is None
