"""Async APIs refuse on await, never at call time (issue 10 §2; workerd's
``capture_async_api_throws``).

Every case runs through the real runtime (an object's event on real SQLite files):
the bad call itself returns, awaiting it raises the error, a good call made after it
still happens, and the refused call writes nothing (also after a reopen: the batch
committed without it).  Checklist numbers in the case ids: 50 (undefined value), 54
(more than 128 keys), 55 (key size), 61-62 (list options), 115-116 (alarm times); 25-26
for stub calls (a value RPC cannot carry, 32 MiB).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from runtime_kit import make_namespace, run_in

from objectd.errors import (
    DurableObjectError,
    DurableObjectRangeError,
    DurableObjectTypeError,
    SerializationError,
    StorageError,
)
from objectd.fetch import Request, Response
from objectd.runtime.objects import DurableObject
from objectd.runtime.storage_api import DurableObjectStorage

BIG_KEY = "k" * 3000  # 3 KB: over the 2048-byte key limit (checklist 54)
MANY = [f"k{i}" for i in range(129)]  # over the 128-key batch limit (checklist 53)


class Alarmed(DurableObject):
    async def alarm(self) -> None:
        pass


@dataclass(frozen=True)
class Case:
    id: str
    call: Callable[[DurableObjectStorage], Awaitable[Any]]
    error: type[BaseException]
    match: str


CASES = [
    Case("put_unstorable_value", lambda s: s.put("bad", object()), SerializationError, "object"),
    Case("050_put_undefined_value", lambda s: s.put("bad"), DurableObjectTypeError, "undefined"),
    Case(
        "put_mapping_one_bad",
        lambda s: s.put({"fine": 1, "bad": object()}),
        SerializationError,
        "object",
    ),
    Case("055_put_big_key", lambda s: s.put(BIG_KEY, 1), DurableObjectRangeError, "2048 bytes"),
    Case(
        "054_put_129_pairs",
        lambda s: s.put({k: 1 for k in MANY}),
        DurableObjectRangeError,
        "129 pairs",
    ),
    Case(
        "put_bad_option", lambda s: s.put("bad", 1, {"bogus": 1}), DurableObjectTypeError, "bogus"
    ),
    Case("054_get_129_keys", lambda s: s.get(MANY), DurableObjectRangeError, "129 pairs"),
    Case("055_get_big_key", lambda s: s.get(BIG_KEY), DurableObjectRangeError, "2048 bytes"),
    Case("get_not_a_key", lambda s: s.get(5), DurableObjectTypeError, "int"),  # type: ignore[arg-type]
    Case("055_delete_big_key", lambda s: s.delete(BIG_KEY), DurableObjectRangeError, "2048 bytes"),
    Case("054_delete_129_keys", lambda s: s.delete(MANY), DurableObjectRangeError, "129 pairs"),
    Case("062_list_limit_0", lambda s: s.list(limit=0), DurableObjectTypeError, "must be positive"),
    Case(
        "061_list_start_and_start_after",
        lambda s: s.list(start="a", start_after="b"),
        DurableObjectTypeError,
        "both start and startAfter",
    ),
    Case("list_unknown_option", lambda s: s.list(bogus=1), DurableObjectTypeError, "bogus"),
    Case("115_set_alarm_not_a_time", lambda s: s.set_alarm("soon"), DurableObjectTypeError, "soon"),
    Case("116_set_alarm_at_zero", lambda s: s.set_alarm(0), DurableObjectTypeError, "<= 0"),
    Case("get_alarm_bad_option", lambda s: s.get_alarm(bogus=1), DurableObjectTypeError, "bogus"),
    Case(
        "delete_alarm_bad_option",
        lambda s: s.delete_alarm(bogus=1),
        DurableObjectTypeError,
        "bogus",
    ),
    Case(
        "delete_all_bad_option",
        lambda s: s.delete_all(bogus=1),
        DurableObjectTypeError,
        "bogus",
    ),
]


def in_object(tmp_path: Path, body: Callable[[DurableObjectStorage], Awaitable[Any]]) -> Any:
    """``body(storage)`` in an event of a fresh object; then what its file holds on reopen."""

    async def main() -> Any:
        ns = make_namespace(tmp_path, Alarmed)
        try:
            result = await run_in(ns.get_by_name("a"), lambda o: body(o.ctx.storage))
        finally:
            await ns._class.close()
        ns = make_namespace(tmp_path, Alarmed)  # the same files, a new process's view
        try:

            async def stored(o: Any) -> Any:
                return (await o.ctx.storage.list(), await o.ctx.storage.get_alarm())

            return result, await run_in(ns.get_by_name("a"), stored)
        finally:
            await ns._class.close()

    return asyncio.run(main())


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_refused_at_await_not_at_call(tmp_path: Path, case: Case) -> None:
    async def body(s: DurableObjectStorage) -> None:
        pending = case.call(s)  # must not raise here
        with pytest.raises(case.error, match=case.match):
            await pending
        with pytest.raises(case.error, match=case.match):  # a refusal stays refused
            await pending
        await s.put("after", 1)  # the object goes on

    _, (stored, alarm) = in_object(tmp_path, body)
    assert stored == {"after": 1}
    assert alarm is None


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_refused_in_gather_does_not_stop_the_next_call(tmp_path: Path, case: Case) -> None:
    async def body(s: DurableObjectStorage) -> list[Any]:
        results = await asyncio.gather(
            s.put("before", 1), case.call(s), s.put("next", 2), return_exceptions=True
        )
        with pytest.raises(case.error, match=case.match):
            await asyncio.gather(case.call(s), s.put("raised", 3))
        return results

    results, (stored, alarm) = in_object(tmp_path, body)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], case.error)
    # The refused call is not part of the batch; the calls around it are.
    assert stored == {"before": 1, "next": 2, "raised": 3}
    assert alarm is None


def test_refused_put_left_unawaited_is_logged_once_and_writes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(s: DurableObjectStorage) -> None:
        s.put("bad", object())  # dropped: nobody awaits it
        s.put("good", 1)  # dropped too, but it writes (Cloudflare's put() without await)

    with caplog.at_level(logging.WARNING, logger="objectd.runtime"):
        _, (stored, _) = in_object(tmp_path, body)
    assert stored == {"good": 1}
    refusals = [r.getMessage() for r in caplog.records if "never awaited" in r.getMessage()]
    assert refusals == [
        "objectd: storage.put() was refused and never awaited: SerializationError: "
        + str(_serialization_error())
    ]


def _serialization_error() -> SerializationError:
    from objectd import codec

    try:
        codec.encode(object())
    except SerializationError as exc:
        return exc
    raise AssertionError("codec.encode(object()) was expected to refuse")


def test_refused_call_awaited_is_not_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(s: DurableObjectStorage) -> None:
        with pytest.raises(SerializationError):
            await s.put("bad", object())

    with caplog.at_level(logging.WARNING, logger="objectd.runtime"):
        in_object(tmp_path, body)
    assert [r for r in caplog.records if "never awaited" in r.getMessage()] == []


def test_delete_all_in_transaction_refused_on_await(tmp_path: Path) -> None:
    async def body(s: DurableObjectStorage) -> None:
        await s.put("kept", 1)

        async def closure(txn: Any) -> None:
            pending = s.delete_all()  # must not raise here
            await txn.put("in_txn", 2)
            with pytest.raises(StorageError, match=r"Cannot call deleteAll\(\) within"):
                await pending

        await s.transaction(closure)

    _, (stored, _) = in_object(tmp_path, body)
    assert stored == {"in_txn": 2, "kept": 1}


def test_finished_transaction_refuses_on_await(tmp_path: Path) -> None:
    async def body(s: DurableObjectStorage) -> None:
        kept: list[Any] = []

        async def closure(txn: Any) -> None:
            kept.append(txn)

        await s.transaction(closure)
        pending = kept[0].put("late", 1)  # must not raise here
        with pytest.raises(StorageError, match="already committed"):
            await pending

    _, (stored, _) = in_object(tmp_path, body)
    assert stored == {}


# -- stubs: fetch and RPC ----------------------------------------------------------------

received: list[Any] = []


class Recorder(DurableObject):
    def record(self, value: Any) -> Any:
        received.append(value)
        return value

    async def fetch(self, request: Request) -> Response:
        received.append(("fetch", request.method))
        return Response("ok")


@pytest.fixture(autouse=True)
def _fresh() -> None:
    received.clear()


def with_stub(tmp_path: Path, body: Callable[[Any], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        ns = make_namespace(tmp_path, Recorder)
        try:
            return await body(ns.get_by_name("r"))
        finally:
            await ns._class.close()

    return asyncio.run(main())


def test_025_rpc_unserializable_argument_refused_on_await(tmp_path: Path) -> None:
    async def body(stub: Any) -> None:
        pending = stub.record(object())  # must not raise here
        with pytest.raises(SerializationError, match="object"):
            await pending
        assert await stub.record("next") == "next"  # the stub is not broken by it

    with_stub(tmp_path, body)
    assert received == ["next"]  # the refused call was never delivered


def test_rpc_gather_bad_then_good_delivers_the_good_one_in_order(tmp_path: Path) -> None:
    async def body(stub: Any) -> list[Any]:
        results = await asyncio.gather(
            stub.record(1), stub.record(object()), stub.record(2), return_exceptions=True
        )
        with pytest.raises(SerializationError):
            await asyncio.gather(stub.record(object()), stub.record(3))
        return results

    results = with_stub(tmp_path, body)
    assert results[0] == 1 and results[2] == 2
    assert isinstance(results[1], SerializationError)
    assert received == [1, 2, 3]  # call order kept; the refused ones never arrived


def test_026_rpc_argument_over_32_mib_refused_on_await(tmp_path: Path) -> None:
    async def body(stub: Any) -> None:
        pending = stub.record(b"x" * (32 * 1024 * 1024 + 1))  # must not raise here
        after = stub.record("after")
        with pytest.raises(DurableObjectError, match="limited to 32MiB"):
            await pending
        assert await after == "after"

    with_stub(tmp_path, body)
    assert received == ["after"]


def test_stub_fetch_bad_request_refused_on_await(tmp_path: Path) -> None:
    async def body(stub: Any) -> None:
        bad_method = stub.fetch("http://o/", method="NOT A METHOD")  # must not raise here
        bad_body = stub.fetch("http://o/", method="GET", body="x")
        unknown_init = stub.fetch("http://o/", bogus=1)
        good = stub.fetch("http://o/")
        with pytest.raises(DurableObjectTypeError, match="Invalid HTTP method"):
            await bad_method
        with pytest.raises(DurableObjectTypeError, match="cannot have a body"):
            await bad_body
        with pytest.raises(TypeError, match="bogus"):
            await unknown_init
        assert await (await good).text() == "ok"
        refused, answered = await asyncio.gather(
            stub.fetch("http://o/", method="NOT A METHOD"),
            stub.fetch("http://o/", method="POST"),
            return_exceptions=True,
        )
        assert isinstance(refused, DurableObjectTypeError)
        assert await answered.text() == "ok"

    with_stub(tmp_path, body)
    assert received == [("fetch", "GET"), ("fetch", "POST")]
