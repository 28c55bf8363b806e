"""Errors raised inside an object carry the user's frames across the stub (issue 15 §1)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from runtime_kit import make_namespace

from objectd.errors import DurableObjectError
from objectd.fetch import Request, Response
from objectd.report import format_report
from objectd.runtime.objects import DurableObject


def ratio(a: int, b: int) -> float:
    return a / b


def settings_from(source: dict[str, str]) -> str:
    return source["missing"]


class Thing(DurableObject):
    async def fetch(self, request: Request) -> Response:
        return Response(str(ratio(1, 0)))

    async def divide(self, a: int, b: int) -> float:
        return ratio(a, b)

    async def relay(self) -> str:
        return str(await self.env["BROKEN"].get_by_name("inner").hello())


class Broken(DurableObject):
    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        self.settings = settings_from({})

    async def hello(self) -> str:
        return "hello"


def folded(error: BaseException) -> str:
    return format_report(error, full=False)


def test_a_helper_under_fetch_is_reported(tmp_path: Path) -> None:
    async def main() -> None:
        stub = make_namespace(tmp_path, Thing).get_by_name("x")
        with pytest.raises(ZeroDivisionError) as info:
            await stub.fetch("http://thing/")
        assert info.value.remote is True  # type: ignore[attr-defined]
        report = folded(info.value)
        assert 'inside Durable Object Thing "x"' in report
        assert "in fetch\n    return Response(str(ratio(1, 0)))" in report
        assert "in ratio\n    return a / b" in report
        assert "host.py" not in report and "namespace.py" not in report

    asyncio.run(main())


def test_an_rpc_method_is_reported_with_the_await(tmp_path: Path) -> None:
    async def main() -> None:
        stub = make_namespace(tmp_path, Thing).get_by_name("x")
        try:
            await stub.divide(1, 0)  # the caller's line
        except ZeroDivisionError as exc:
            report, full = folded(exc), format_report(exc, full=True)
        else:
            raise AssertionError("no error")
        caller = report.index("await stub.divide(1, 0)  # the caller's line")
        assert caller < report.index("in divide") < report.index("in ratio")
        assert "host.py" in full and "namespace.py" in full

    asyncio.run(main())


def test_a_constructor_crash_is_reported(tmp_path: Path) -> None:
    async def main() -> None:
        stub = make_namespace(tmp_path, Broken).get_by_name("y")
        with pytest.raises(KeyError) as info:
            await stub.hello()
        error = info.value
        assert isinstance(error, DurableObjectError) and error.remote is True
        report = folded(error)
        assert 'inside Durable Object Broken "y"' in report
        assert "in __init__\n    self.settings = settings_from({})" in report
        assert report.rstrip().endswith("KeyError: 'missing'")

    asyncio.run(main())


def test_a_call_through_two_objects_shows_both(tmp_path: Path) -> None:
    async def main() -> None:
        broken = make_namespace(tmp_path, Broken)
        stub = make_namespace(tmp_path, Thing, env={"BROKEN": broken}).get_by_name("x")
        with pytest.raises(KeyError) as info:
            await stub.relay()
        report = folded(info.value)
        order = [
            report.index('inside Durable Object Thing "x"'),
            report.index("in relay"),
            report.index('inside Durable Object Broken "inner"'),
            report.index("in settings_from"),
        ]
        assert order == sorted(order)

    asyncio.run(main())
