"""The error report: captured traces, stitched stacks, folded objectd frames (issue 15 §1)."""

from __future__ import annotations

import gc
import logging
import re
import weakref
from collections.abc import Iterator

import pytest

from objectd import codec
from objectd.errors import SerializationError, as_remote
from objectd.report import ErrorTrace, capture, format_report

HERE = __file__


def ratio(a: int, b: int) -> float:
    return a / b  # RAISED-HERE


def in_object() -> BaseException:
    """What a host does: run user code, turn its failure into the caller's copy."""
    try:
        ratio(1, 0)
    except ZeroDivisionError as exc:
        return as_remote(exc, where='Durable Object Thing "x"')
    raise AssertionError("ratio(1, 0) returned")


def awaited(error: BaseException) -> BaseException:
    """What a caller sees: the copy raised again at its own line."""
    try:
        raise error  # AWAITED-HERE
    except BaseException as exc:
        return exc


def line_of(marker: str) -> int:
    with open(HERE) as source:
        for number, text in enumerate(source, 1):
            if text.rstrip().endswith(f"# {marker}"):
                return number
    raise AssertionError(marker)


def test_a_remote_error_is_reported_from_the_await_to_the_raise() -> None:
    error = awaited(in_object())
    assert getattr(error, "remote", False) is True
    assert isinstance(error, ZeroDivisionError)  # the builtin type still catches it
    report = format_report(error, full=False)
    lines = report.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[-1] == "ZeroDivisionError: division by zero"
    awaited_at = report.index(f'File "{HERE}", line {line_of("AWAITED-HERE")}, in awaited')
    boundary = report.index('↳ inside Durable Object Thing "x"')
    raised_at = report.index(f'File "{HERE}", line {line_of("RAISED-HERE")}, in ratio')
    assert awaited_at < boundary < raised_at  # one stack, outermost first
    assert "in in_object" in report
    assert "objectd.remote" not in report  # the user's type, as they raised it


def test_objectd_frames_are_folded_unless_full() -> None:
    def store_a_tuple() -> None:
        codec.encode((1, 2))  # USER-CALL

    with pytest.raises(SerializationError) as info:
        store_a_tuple()
    folded = format_report(info.value, full=False)
    assert f"line {line_of('USER-CALL')}, in store_a_tuple" in folded
    assert "codec.py" not in folded
    hidden = re.findall(r"… (\d+) objectd frames? hidden(.*)", folded)
    assert hidden and int(hidden[0][0]) >= 1
    assert hidden[0][1] == " (--log-level debug shows them)"
    full = format_report(info.value, full=True)
    assert "codec.py" in full and "hidden" not in full
    assert full.splitlines()[-1].startswith("objectd.errors.SerializationError: ")


def test_full_follows_the_objectd_logger_level() -> None:
    with pytest.raises(SerializationError) as info:
        codec.encode((1,))
    logger = logging.getLogger("objectd")
    previous = logger.level
    try:
        logger.setLevel(logging.INFO)
        assert "codec.py" not in format_report(info.value)
        logger.setLevel(logging.DEBUG)
        assert "codec.py" in format_report(info.value)
    finally:
        logger.setLevel(previous)


def test_the_hint_is_given_once() -> None:
    def store_twice() -> None:
        try:
            codec.encode((1,))
        except SerializationError:
            codec.encode((2,))  # fails again while handling the first

    with pytest.raises(SerializationError) as info:
        store_twice()
    report = format_report(info.value, full=False)
    assert "During handling of the above exception" in report
    assert report.count("objectd frame") == 2  # in the first error and in the second
    assert report.count("--log-level debug shows them") == 1


def test_chained_exceptions_inside_the_object_come_first() -> None:
    def load() -> dict[str, int]:
        try:
            return {"a": 1}["b"]  # type: ignore[return-value]
        except KeyError as exc:
            raise ValueError("bad config") from exc

    try:
        load()
    except ValueError as exc:
        remote = as_remote(exc, where="Durable Object Cfg")
    report = format_report(awaited(remote), full=False)
    cause, _, error = report.partition(
        "The above exception was the direct cause of the following exception:"
    )
    assert "KeyError: 'b'" in cause
    assert "↳ inside Durable Object Cfg" in error
    assert error.rstrip().endswith("ValueError: bad config")


def test_an_error_passed_on_by_a_second_object_shows_both() -> None:
    inner = in_object()
    try:
        raise inner  # IN-SECOND-OBJECT
    except ZeroDivisionError as exc:
        outer = as_remote(exc, where='Durable Object Relay "r"')
    report = format_report(awaited(outer), full=False)
    order = [
        report.index("in awaited"),
        report.index('↳ inside Durable Object Relay "r"'),
        report.index(f"line {line_of('IN-SECOND-OBJECT')},"),
        report.index('↳ inside Durable Object Thing "x"'),
        report.index("in ratio"),
    ]
    assert order == sorted(order)
    assert report.count("ZeroDivisionError: division by zero") == 1


def test_exception_groups_show_each_sub_exception() -> None:
    def fail_both() -> None:
        errors: list[Exception] = []
        for value in (0, 1):
            try:
                ratio(value, 0)
            except ZeroDivisionError as exc:
                errors.append(exc)
        raise ExceptionGroup("two failures", errors)

    with pytest.raises(ExceptionGroup) as info:
        fail_both()
    report = format_report(info.value, full=False)
    assert "ExceptionGroup: two failures (2 sub-exceptions)" in report
    assert "+-- 1 of 2 --" in report and "+-- 2 of 2 --" in report
    assert report.count("| ZeroDivisionError: division by zero") == 2


def test_deep_recursion_is_summarised() -> None:
    def down(n: int) -> int:
        return down(n - 1) if n else 1 // 0

    with pytest.raises(ZeroDivisionError) as info:
        down(50)
    report = format_report(info.value, full=False)
    assert "more times]" in report
    assert len(report.splitlines()) < 30


def test_a_cycle_of_contexts_ends() -> None:
    first, second = ValueError("first"), ValueError("second")
    first.__context__, second.__context__ = second, first
    report = format_report(first, full=False)
    assert report.count("ValueError: first") == 1
    assert report.count("ValueError: second") == 1


def test_the_trace_keeps_no_frames_or_locals() -> None:
    class Payload:
        pass

    def fail_holding(payload: Payload) -> None:
        raise RuntimeError("with a big local")

    payload = Payload()
    alive = weakref.ref(payload)
    try:
        fail_holding(payload)
    except RuntimeError as exc:
        remote = as_remote(exc)
    del payload
    gc.collect()
    assert alive() is None  # the copy the caller holds keeps none of the object's state
    assert isinstance(remote.remote_trace, ErrorTrace)
    assert "with a big local" in format_report(remote, full=False)


def test_the_value_codec_carries_no_trace() -> None:
    remote = awaited(in_object())
    copy = codec.decode(codec.encode(remote))  # a type name and a message, nothing more
    assert str(copy) == "division by zero"
    assert getattr(copy, "remote_trace", None) is None


def test_the_trace_alone_renders_the_object_side() -> None:
    trace = in_object().remote_trace  # type: ignore[attr-defined]
    assert isinstance(trace, ErrorTrace) and trace.where == 'Durable Object Thing "x"'
    text = format_report(trace, full=True)
    assert "in in_object" in text and "in ratio" in text and "hidden" not in text
    assert text.rstrip().endswith("ZeroDivisionError: division by zero")


def test_capture_of_an_exception_without_traceback() -> None:
    trace = capture(KeyError("k"))
    assert trace.frames == ()
    assert format_report(trace, full=False) == "KeyError: 'k'\n"


@pytest.fixture(autouse=True)
def _no_leaked_levels() -> Iterator[None]:
    level = logging.getLogger("objectd").level
    yield
    assert logging.getLogger("objectd").level == level
