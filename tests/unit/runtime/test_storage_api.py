"""ctx.storage: the KV API, transactions, storage.kv and backends (spec §5, checklist 47-93)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from runtime_kit import make_namespace, run_in

from objectd.errors import DurableObjectRangeError, DurableObjectTypeError, StorageError
from objectd.runtime.objects import DurableObject
from objectd.runtime.storage_api import DurableObjectStorage
from objectd.storage.database import Backend


class Plain(DurableObject):
    pass


Body = Callable[[DurableObjectStorage], Awaitable[Any]]


def in_object(
    tmp_path: Path, body: Body, *, backend: Backend = Backend.SQLITE, name: str = "a"
) -> Any:
    """Run ``body(storage)`` inside a fresh object and return its result."""

    async def main() -> Any:
        ns = make_namespace(tmp_path, Plain, backend=backend)
        try:
            return await run_in(ns.get_by_name(name), lambda instance: body(instance.ctx.storage))
        finally:
            await ns._class.close()

    return asyncio.run(main())


def test_047_048_get_put_copies(tmp_path: Path) -> None:
    async def body(s: DurableObjectStorage) -> None:
        assert await s.get("missing") is None
        value = {"list": [1, 2], "n": None}
        await s.put("k", value)
        value["list"].append(3)
        got = await s.get("k")
        assert got == {"list": [1, 2], "n": None}
        got["list"].append(9)
        assert await s.get("k") == {"list": [1, 2], "n": None}

    in_object(tmp_path, body)


def test_049_structured_clone_types(tmp_path: Path) -> None:
    samples = {
        "nested": {"a": [1, {"b": [True, None, 2.5]}]},
        "bytes": b"\x00\xff",
        "datetime": dt.datetime(2026, 11, 26, 12, 0, 1, 5, tzinfo=dt.UTC),
        "map": {1: "int key", "s": "str key"},
        "set": {1, 2, 3},
        "bigint": 2**100,
        "null": None,
    }

    async def body(s: DurableObjectStorage) -> None:
        for key, value in samples.items():
            await s.put(key, value)
        for key, value in samples.items():
            assert await s.get(key) == value, key

    in_object(tmp_path, body)


def test_050_052_put_argument_errors(tmp_path: Path) -> None:
    async def body(s: DurableObjectStorage) -> None:
        with pytest.raises(TypeError, match=r"put\(\) called with undefined value."):
            await s.put("k")
        with pytest.raises(TypeError, match=r"put\(\) may only be called with"):
            await s.put({"a": 1}, 2, {})
        with pytest.raises(TypeError, match="tuple"):
            await s.put("k", (1, 2))
        assert await s.list() == {}  # nothing was written by a refused call

    in_object(tmp_path, body)


def test_053_054_get_many(tmp_path: Path) -> None:
    async def body(s: DurableObjectStorage) -> None:
        await s.put({"b": 2, "a": 1, "é": 3, "z": 4})
        got = await s.get(["z", "é", "missing", "a"])
        assert list(got) == ["a", "z", "é"]  # by UTF-8 bytes; missing omitted
        with pytest.raises(
            DurableObjectRangeError,
            match="Maximum number of key value pairs is 128. 129 pairs were provided.",
        ):
            await s.get([f"k{i}" for i in range(129)])
        with pytest.raises(DurableObjectRangeError, match="128"):
            await s.put({f"k{i}": i for i in range(129)})
        with pytest.raises(DurableObjectRangeError, match="128"):
            await s.delete([f"k{i}" for i in range(129)])

    in_object(tmp_path, body)


def test_055_056_kv_backed_limits(tmp_path: Path) -> None:
    async def body(s: DurableObjectStorage) -> None:
        with pytest.raises(
            DurableObjectRangeError,
            match="Keys cannot be larger than 2048 bytes. A key of size 2049 was provided.",
        ):
            await s.put("k" * 2049, 1)
        await s.put("k" * 2048, 1)
        with pytest.raises(
            DurableObjectRangeError, match="Values cannot be larger than 131072 bytes"
        ):
            await s.put("big", b"x" * 131200)
        await s.put("ok", b"x" * 131000)
        with pytest.raises(DurableObjectRangeError):
            await s.put({"fine": 1, "big": b"x" * 131200})
        assert await s.get("fine") is None  # all-or-nothing validation

    in_object(tmp_path, body, backend=Backend.KV)


def test_057_sqlite_entry_limit(tmp_path: Path) -> None:
    async def body(s: DurableObjectStorage) -> None:
        await s.put("big", b"x" * 1_000_000)
        with pytest.raises(DurableObjectRangeError, match="cannot be larger than 2097152"):
            await s.put("huge", b"x" * 2_100_000)
        with pytest.raises(DurableObjectRangeError, match="Keys cannot be larger than 2048"):
            await s.put("k" * 3000, 1)

    in_object(tmp_path, body)


def test_058_delete(tmp_path: Path) -> None:
    async def body(s: DurableObjectStorage) -> None:
        await s.put({"a": 1, "b": 2, "c": 3})
        assert await s.delete("a") is True
        assert await s.delete("a") is False
        assert await s.delete(["b", "c", "zz"]) == 2
        assert await s.list() == {}

    in_object(tmp_path, body)


def test_059_065_list(tmp_path: Path) -> None:
    keys = ["", "a", "ab", "abc", "b", "ba", "z", "é", "\U0001f600"]

    async def body(s: DurableObjectStorage) -> None:
        await s.put({k: i for i, k in enumerate(keys)})
        assert list(await s.list()) == sorted(keys, key=lambda k: k.encode())  # 59
        assert list(await s.list({"start": "ab"})) == [
            "ab",
            "abc",
            "b",
            "ba",
            "z",
            "é",
            "\U0001f600",
        ]
        assert list(await s.list(start_after="ab", end="ba")) == ["abc", "b"]  # 60
        assert list(await s.list({"startAfter": "ab", "end": "ba"})) == ["abc", "b"]
        with pytest.raises(TypeError, match="both start and startAfter"):  # 61
            await s.list(start="a", start_after="b")
        with pytest.raises(TypeError, match="List limit must be positive."):  # 62
            await s.list(limit=0)
        assert list(await s.list(prefix="a")) == ["a", "ab", "abc"]  # 63
        assert list(await s.list(prefix="a", start="ab")) == ["ab", "abc"]
        assert list(await s.list(prefix="a", end="abc")) == ["a", "ab"]
        assert list(await s.list(reverse=True, limit=2)) == ["\U0001f600", "é"]  # 64
        assert list(await s.list(prefix="a", reverse=True, limit=2)) == ["abc", "ab"]
        assert await s.list(start="z", end="a") == {}  # 65
        assert await s.list(prefix="q") == {}
        assert await s.list(prefix="b", start="c") == {}
        assert list(await s.list(limit=3)) == ["", "a", "ab"]

    in_object(tmp_path, body)


def test_163_list_returns_ordered_dict_and_missing_is_none(tmp_path: Path) -> None:
    async def body(s: DurableObjectStorage) -> None:
        await s.put({"b": 1, "a": 2})
        listed = await s.list()
        assert isinstance(listed, dict) and list(listed) == ["a", "b"]
        assert await s.get("nope") is None

    in_object(tmp_path, body)


def test_066_read_sees_unawaited_write(tmp_path: Path) -> None:
    async def body(s: DurableObjectStorage) -> None:
        s.put("k", "v")  # not awaited: Cloudflare code often does this
        assert await s.get("k") == "v"

    in_object(tmp_path, body)


def test_077_options_accepted_and_checked(tmp_path: Path) -> None:
    async def body(s: DurableObjectStorage) -> None:
        await s.put("k", 1, {"noCache": True, "allowUnconfirmed": False})
        assert await s.get("k", {"allowConcurrency": True, "noCache": True}) == 1
        assert await s.get("k", no_cache=True) == 1
        with pytest.raises(DurableObjectTypeError, match="unknown option"):
            await s.get("k", {"bogus": 1})
        with pytest.raises(DurableObjectTypeError, match="must be a dict"):
            await s.get("k", 5)  # type: ignore[arg-type]

    in_object(tmp_path, body)


def test_078_079_transaction(tmp_path: Path) -> None:
    async def body(s: DurableObjectStorage) -> None:
        async def ok(txn: Any) -> int:
            await txn.put("a", 1)
            assert await txn.get("a") == 1
            return 42

        assert await s.transaction(ok) == 42
        assert await s.get("a") == 1

        async def fails(txn: Any) -> None:
            await txn.put("a", 2)
            await txn.put("b", 2)
            raise RuntimeError("no")

        with pytest.raises(RuntimeError, match="no"):
            await s.transaction(fails)
        assert await s.get("a") == 1
        assert await s.get("b") is None

    in_object(tmp_path, body)


def test_080_081_082_transaction_misuse(tmp_path: Path) -> None:
    async def body(s: DurableObjectStorage) -> None:
        kept: list[Any] = []

        async def rolls_back(txn: Any) -> None:
            await txn.put("a", 1)
            txn.rollback()
            txn.rollback()  # idempotent
            with pytest.raises(StorageError, match=r"Cannot get\(\) on rolled back transaction"):
                await txn.get("a")
            kept.append(txn)

        await s.transaction(rolls_back)
        assert await s.get("a") is None

        async def keep(txn: Any) -> None:
            kept.append(txn)

        await s.transaction(keep)
        with pytest.raises(StorageError, match="already committed"):
            await kept[-1].put("x", 1)

        async def delete_all(txn: Any) -> None:
            await txn.delete_all()

        with pytest.raises(StorageError, match=r"Cannot call deleteAll\(\) within a transaction"):
            await s.transaction(delete_all)

        async def storage_delete_all(txn: Any) -> None:
            await s.delete_all()

        with pytest.raises(StorageError, match=r"Cannot call deleteAll\(\) within a transaction"):
            await s.transaction(storage_delete_all)

    in_object(tmp_path, body)


def test_084_085_sqlite_transaction_covers_everything_and_nests(tmp_path: Path) -> None:
    async def body(s: DurableObjectStorage) -> None:
        s.sql.exec("CREATE TABLE t (v INTEGER)")

        async def inner(txn: Any) -> None:
            await txn.put("inner", 1)
            s.sql.exec("INSERT INTO t VALUES (2)")

        async def outer(txn: Any) -> None:
            await s.put("outer", 1)  # through ctx.storage: still part of the transaction
            s.sql.exec("INSERT INTO t VALUES (1)")
            await s.transaction(inner)
            raise RuntimeError("undo all")

        with pytest.raises(RuntimeError):
            await s.transaction(outer)
        assert await s.get("outer") is None
        assert await s.get("inner") is None
        assert s.sql.exec("SELECT count(*) AS n FROM t").one()["n"] == 0

    in_object(tmp_path, body)


def test_086_087_transaction_sync(tmp_path: Path) -> None:
    async def body(s: DurableObjectStorage) -> None:
        s.sql.exec("CREATE TABLE t (v INTEGER)")

        def inner() -> None:
            s.sql.exec("INSERT INTO t VALUES (2)")
            raise ValueError("inner fails")

        def outer() -> str:
            s.sql.exec("INSERT INTO t VALUES (1)")
            s.kv.put("k", "v")
            with pytest.raises(ValueError, match="inner fails"):
                s.transaction_sync(inner)
            return "done"

        assert s.transaction_sync(outer) == "done"
        rows = s.sql.exec("SELECT v FROM t").to_array()
        assert rows == [{"v": 1}]  # only the inner part rolled back
        assert s.kv.get("k") == "v"

        async def not_sync() -> None:
            return None

        with pytest.raises(TypeError, match="must be synchronous"):
            s.transactionSync(not_sync)  # type: ignore[arg-type]

    in_object(tmp_path, body)


def test_088_093_kv_backed_refuses_sql_apis(tmp_path: Path) -> None:
    async def body(s: DurableObjectStorage) -> None:
        with pytest.raises(StorageError, match="Durable Object is not backed by SQL."):
            s.transaction_sync(lambda: None)
        with pytest.raises(StorageError, match="not backed by SQLite storage, so the SQL API"):
            s.sql  # noqa: B018
        with pytest.raises(StorageError, match="storage.kv"):
            s.kv  # noqa: B018
        await s.put("still", "works")
        assert await s.get("still") == "works"

    in_object(tmp_path, body, backend=Backend.KV)


def test_089_delete_all(tmp_path: Path) -> None:
    async def body(s: DurableObjectStorage) -> None:
        s.sql.exec("CREATE TABLE t (v)")
        s.sql.exec("INSERT INTO t VALUES (1)")
        await s.put({"a": 1, "b": 2})
        await s.delete_all()
        assert await s.list() == {}
        tables = s.sql.exec("SELECT name FROM sqlite_master WHERE name = 't'").to_array()
        assert tables == []

    in_object(tmp_path, body)


def test_091_092_sync_kv(tmp_path: Path) -> None:
    async def body(s: DurableObjectStorage) -> None:
        s.kv.put("a", 1)
        await s.put("b", 2)
        assert s.kv.get("b") == 2
        assert await s.get("a") == 1
        assert s.kv.delete("a") is True
        assert s.kv.get("a") is None
        s.kv.put("c", 3)
        first = s.kv.list()
        assert next(first) == ("b", 2)
        second = s.kv.list(prefix="c")
        with pytest.raises(StorageError, match="iterator was invalidated"):
            next(first)
        assert list(second) == [("c", 3)]
        with pytest.raises(TypeError, match="undefined value"):
            s.kv.put("x")

    in_object(tmp_path, body)


def test_storage_survives_reopening(tmp_path: Path) -> None:
    # Data is in the object's file: a new namespace over the same folder sees it.
    async def write(s: DurableObjectStorage) -> None:
        await s.put("persisted", [1, 2])

    async def read(s: DurableObjectStorage) -> Any:
        return await s.get("persisted")

    in_object(tmp_path, write)
    assert in_object(tmp_path, read) == [1, 2]
    files = list((tmp_path / "Plain").glob("*.sqlite"))
    assert len(files) == 1 and len(files[0].stem) == 64
