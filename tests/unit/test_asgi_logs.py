"""What the server prints (asgi/logs.py, issue 15 §4): which of uvicorn's lines are shown
at which level, and objectd's lines without their logger's name said twice."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from objectd.asgi import logs


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    uvicorn_log = logging.getLogger("uvicorn.error")
    filters = list(uvicorn_log.filters)
    yield
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
