"""What the server prints (asgi/logs.py, issue 15 §4): which of uvicorn's lines are shown
at which level, and objectd's lines without their logger's name said twice."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator

import pytest

from objectd.asgi import logs


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    uvicorn_log = logging.getLogger("uvicorn.error")
    filters = list(uvicorn_log.filters)
    formatters = [handler.formatter for handler in handlers]
    yield
    for handler, formatter in zip(handlers, formatters, strict=True):
        handler.setFormatter(formatter)
    logs.configure(logging.WARNING, access_log=False)  # the text format again
    root.handlers[:], uvicorn_log.filters[:] = handlers, filters
    root.setLevel(level)
    logging.getLogger("watchfiles").setLevel(logging.NOTSET)


def _shown(level: str, access_log: bool, message: str) -> bool:
    logs.configure(level, access_log=access_log)
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, message, (), None)
    return logging.getLogger("uvicorn.error").filter(record) is not False


def test_uvicorn_lines_by_level() -> None:
    running = "Uvicorn running on %s://%s:%d (Press CTRL+C to quit)"
    accepted = '%s - "WebSocket %s" [accepted]'
    assert not _shown("info", False, running)
    assert _shown("debug", False, running)
    assert not _shown("info", False, accepted) and not _shown("info", False, "connection open")
    assert _shown("info", True, accepted) and _shown("info", True, "connection closed")
    assert not _shown("info", True, running)  # the access log is about connections only
    assert _shown("info", False, "Waiting for connections to close. (CTRL+C to force quit)")
    assert _shown("info", False, "Invalid HTTP request received.")


def test_configure_twice_adds_one_handler_and_one_filter() -> None:
    logs.configure("info", access_log=False)
    logs.configure(logging.WARNING, access_log=True)  # uvicorn's log_level may be a number
    root = logging.getLogger()
    assert sum(isinstance(h.formatter, logs._Formatter) for h in root.handlers) == 1
    assert root.level == logging.WARNING
    uvicorn_filters = logging.getLogger("uvicorn.error").filters
    assert sum(isinstance(f, logs._UvicornFilter) for f in uvicorn_filters) == 1
    assert logging.getLogger("watchfiles").level == logging.WARNING  # its change counts


@pytest.mark.parametrize(
    ("name", "message", "line"),
    [
        ("objectd", "objectd: serving x", "INFO objectd: serving x"),
        ("objectd.runtime", "objectd: evicted", "INFO objectd: evicted"),
        ("objectd.config", "x.toml: bad", "INFO objectd.config: x.toml: bad"),
    ],
)
def test_formatter_names_the_logger_once(name: str, message: str, line: str) -> None:
    record = logging.LogRecord(name, logging.INFO, __file__, 1, message, (), None)
    assert logs._Formatter().format(record) == line


def _ours() -> logging.Handler:
    (handler,) = [
        h for h in logging.getLogger().handlers if type(h.formatter).__module__ == logs.__name__
    ]
    return handler


def test_json_format_one_object_per_record_with_the_report_as_a_field() -> None:
    logs.configure("info", access_log=False, log_format="json")
    formatter = _ours().formatter
    assert formatter is not None
    try:
        raise ValueError("bad value")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "objectd.runtime", logging.ERROR, __file__, 1, "it failed: %s", ("x",), exc_info
    )
    record.__dict__.update({"class": "Counter", "id": "ab" * 32})
    line = formatter.format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["logger"] == "objectd.runtime"
    assert entry["message"] == "it failed: x"
    assert entry["class"] == "Counter" and entry["id"] == "ab" * 32
    assert entry["traceback"].startswith("Traceback (most recent call last):")
    assert entry["traceback"].endswith("ValueError: bad value")
    assert entry["time"].endswith("+00:00")


def test_a_report_at_the_end_of_a_message_moves_to_its_field() -> None:
    logs.configure("info", access_log=False, log_format="json")
    formatter = _ours().formatter
    assert formatter is not None
    report = "Traceback (most recent call last):\n  ...\nZeroDivisionError: division by zero"
    record = logging.LogRecord("objectd", logging.ERROR, __file__, 1, "boom\n%s", (report,), None)
    record.traceback = report
    entry = json.loads(formatter.format(record))
    assert entry["message"] == "boom" and entry["traceback"] == report
    assert "class" not in entry  # not about one object
    logs.configure("info", access_log=False)  # text again, on the same handler
    assert _ours().format(record) == f"ERROR objectd: boom\n{report}"


def test_an_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="log format 'xml': expected one of text, json"):
        logs.configure("info", access_log=False, log_format="xml")
