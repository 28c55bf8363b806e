"""SQLite errors of KV operations and of the batch commit reach callers as objectd errors.

Issue 10 §5: they used to escape as raw ``sqlite3`` errors (a stub caller saw a
``RemoteError`` named ``OperationalError``).  Each test provokes a real SQLite error
on a real file: a full database (``PRAGMA max_page_count`` at the file's size) or a
deferred foreign-key violation found only by ``COMMIT``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from runtime_kit import make_namespace, run_in

from objectd.errors import ObjectResetError, SqlError, StorageError
from objectd.runtime.objects import DurableObject
from objectd.storage.database import Backend, ObjectDatabase, internal_sql

BIG = b"x" * 100_000  # more pages than a full file has left; under the KV backend's limit


def fill_up(storage: Any) -> None:
    """No page may be added to the object's file from now on (SQLITE_FULL)."""
    conn = storage.database.conn
    pages = conn.execute(internal_sql("PRAGMA page_count")).fetchone()[0]
    conn.execute(internal_sql(f"PRAGMA max_page_count = {pages}"))


class Full(DurableObject):
    async def write_big(self) -> None:
        fill_up(self.ctx.storage)
        await self.ctx.storage.put("big", BIG)

    async def write_big_caught(self) -> str:
        await self.ctx.storage.put("before", 1)
        fill_up(self.ctx.storage)
        pending = self.ctx.storage.put("big", BIG)  # refused when awaited, like any refusal
        try:
            await pending
        except SqlError as exc:
            return f"{type(exc).__name__} {exc.code}"
        return "no error"

    async def full_then_good(self) -> str:
        fill_up(self.ctx.storage)
        with pytest.raises(SqlError, match="SQLITE_FULL"):
            await self.ctx.storage.put("big", BIG)
        conn = self.ctx.storage.database.conn
        conn.execute(internal_sql("PRAGMA max_page_count = 1073741823"))
        await self.ctx.storage.put("after", 1)
        return "ok"

    async def stored(self) -> dict[str, Any]:
        return await self.ctx.storage.list()


def with_stub(tmp_path: Path, body: Any, *, backend: Backend = Backend.SQLITE) -> Any:
    async def main() -> Any:
        ns = make_namespace(tmp_path, Full, backend=backend)
        try:
            return await body(ns)
        finally:
            await ns._class.close()

    return asyncio.run(main())


@pytest.mark.parametrize("backend", [Backend.SQLITE, Backend.KV])
def test_kv_put_on_a_full_file_is_an_sql_error_not_operational_error(
    tmp_path: Path, backend: Backend
) -> None:
    async def body(ns: Any) -> Any:
        with pytest.raises(SqlError) as info:
            await ns.get_by_name("a").write_big()
        return info.value

    error = with_stub(tmp_path, body, backend=backend)
    assert type(error).__name__ == "SqlError"
    assert isinstance(error, StorageError) and not isinstance(error, sqlite3.Error)
    assert error.remote
    assert error.code == "SQLITE_FULL"
    assert str(error) == "database or disk is full: SQLITE_FULL"


def test_a_failed_kv_write_fails_its_whole_batch(tmp_path: Path) -> None:
    """A write SQLite refused may have ended the transaction: the turn's batch never commits."""

    async def body(ns: Any) -> Any:
        stub = ns.get_by_name("a")
        with pytest.raises(ObjectResetError) as info:
            await stub.write_big_caught()
        return info.value, await ns.get_by_name("a").stored()

    error, stored = with_stub(tmp_path, body)
    assert str(error).startswith("Durable Object storage failed to commit a write")
    assert stored == {}  # "before" was in the failed batch: nothing of it is kept


def test_a_failed_first_write_fails_only_its_call(tmp_path: Path) -> None:
    """Nothing else was in the batch: the object goes on, the next write commits."""

    async def body(ns: Any) -> Any:
        stub = ns.get_by_name("a")
        return await stub.full_then_good(), await stub.stored()

    answer, stored = with_stub(tmp_path, body)
    assert (answer, stored) == ("ok", {"after": 1})


def test_kv_get_refused_by_sqlite_is_an_sql_error(tmp_path: Path) -> None:
    async def body(ns: Any) -> Any:
        async def read(instance: Any) -> Any:
            storage = instance.ctx.storage
            # A read SQLite cannot do: the KV table is gone (as after file damage).
            storage.database.conn.execute(internal_sql("DROP TABLE _cf_KV"))
            pending = storage.get("k")
            with pytest.raises(SqlError) as info:
                await pending
            return info.value

        return await run_in(ns.get_by_name("a"), read)

    error = with_stub(tmp_path, body)
    assert error.code == "SQLITE_ERROR"
    assert "no such table" in str(error)


def test_a_commit_sqlite_refuses_is_an_sql_error(tmp_path: Path) -> None:
    db = ObjectDatabase(tmp_path / "o.sqlite", backend=Backend.SQLITE)
    try:
        conn = db.conn
        conn.execute(internal_sql("CREATE TABLE p (id INTEGER PRIMARY KEY)"))
        conn.execute(
            internal_sql(
                "CREATE TABLE c (p INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)"
            )
        )
        db.begin_write()
        conn.execute(internal_sql("INSERT INTO c VALUES (1)"))  # only COMMIT checks it
        with pytest.raises(SqlError) as info:
            db.commit()
        assert info.value.code == "SQLITE_CONSTRAINT"
        assert str(info.value) == "FOREIGN KEY constraint failed: SQLITE_CONSTRAINT"
        assert isinstance(info.value.__cause__, sqlite3.IntegrityError)
    finally:
        db.close()
