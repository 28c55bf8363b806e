"""What the server prints (L3): objectd's lines, and uvicorn's only where they say something.

By default the log of a start is objectd's own: the descriptor plan, migrations applied,
``objectd: serving <name> on <url>`` once the project is ready, and problems.  Quieted
to ``--log-level debug`` are uvicorn's lifecycle lines (its ``Uvicorn running on …`` comes
before the project has loaded, so it announced a server that could still fail to start)
and watchfiles' change counts (the reloader says which file changed).  The lines uvicorn
and websockets log for every WebSocket (``[accepted]``, ``connection open``,
``connection closed``) are access-log lines: shown with ``--access-log`` or at debug.

Two formats (``--log-format``).  ``text`` (the default): ``LEVEL name: message``, an
error report on the lines after it.
``json``: one JSON object per line, for a log collector: ``time`` (UTC, ISO 8601),
``level``, ``logger``, ``message``; ``class`` and ``id`` on a record about one object
(given by the runtime, or, for what code logs inside an object's event, taken from the
event); ``traceback`` with the whole report when there is one (a record's exception,
or the report objectd logs at the end of its message and names in ``extra={"traceback":
report}``, so that other log formatters still show it).  uvicorn's own lines and
the ``objectd: serving …`` announcement (:func:`announce`) take the same format.

:func:`configure` runs in every process that serves: the ``objectd`` command, and each
process ``objectd dev``'s reloader starts (``ServerConfig.configure_logging``), which
would otherwise drop objectd's INFO lines.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from objectd.runtime.host import current_host

__all__ = ["LOG_FORMATS", "announce", "configure"]

LOG_FORMATS = ("text", "json")

_FORMAT = "%(levelname)s %(name)s: %(message)s"
# uvicorn's messages (format strings, as logged) that describe its own lifecycle.
_LIFECYCLE = (
    "Started server process",
    "Finished server process",
    "Waiting for application startup.",
    "Application startup complete.",
    "Application startup failed. Exiting.",  # after objectd's own report of why
    "Waiting for application shutdown.",
    "Application shutdown complete.",
    "Shutting down",
    "Uvicorn running on",
    "Will watch for changes",
    "Started reloader process",
    "Stopping reloader process",
)
# One line per WebSocket connection: uvicorn's handshake lines and websockets' own.
_PER_CONNECTION = (
    '%s - "WebSocket %s"',
    "connection open",
    "connection closed",
    "connection rejected",
    "HTTP response sent",
)


class _Formatter(logging.Formatter):
    """``LEVEL name: message``, without the name where the message starts with it
    (objectd's say ``objectd: …`` already)."""

    def __init__(self) -> None:
        super().__init__(_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        if record.message.startswith("objectd:"):
            return f"{record.levelname} {record.message}"
        return super().formatMessage(record)


class _JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        report = getattr(record, "traceback", None)
        if report and message.endswith(report):  # the report is a field, not in the message
            message = message[: -len(report)].rstrip()
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        object_class = getattr(record, "class", None)
        object_id = getattr(record, "id", None)
        if object_class is None:
            host = current_host.get()  # logged inside an object's event
            if host is not None:
                object_class, object_id = host.object_class.name, host.id
        if object_class is not None:
            entry["class"] = object_class
            entry["id"] = str(object_id)
        if record.exc_info:
            report = (f"{report.rstrip()}\n" if report else "") + self.formatException(
                record.exc_info
            )
        if record.stack_info:
            entry["stack"] = record.stack_info
        if report:
            entry["traceback"] = report.rstrip("\n")
        return json.dumps(entry, ensure_ascii=False, default=str)


_FORMATTERS: dict[str, type[logging.Formatter]] = {"text": _Formatter, "json": _JsonFormatter}
_format = "text"  # of this process, set by configure()


def announce(message: str) -> None:
    """Print one of the lines a server always shows (``objectd: serving … on URL``), at
    any log level, in this process's log format."""
    if _format == "json":
        record = logging.LogRecord("objectd", logging.INFO, __file__, 0, message, None, None)
        message = _JsonFormatter().format(record)
    print(message, file=sys.stdout, flush=True)


class _UvicornFilter(logging.Filter):
    """Drops uvicorn's lifecycle lines unless ``debug``, and its per-connection lines
    unless ``debug`` or ``access_log``."""

    def __init__(self, *, debug: bool, access_log: bool) -> None:
        super().__init__()
        self.debug = debug
        self.access_log = access_log

    def filter(self, record: logging.LogRecord) -> bool:
        if self.debug or not isinstance(record.msg, str):
            return True
        if record.msg.startswith(_LIFECYCLE):
            return False
        return self.access_log or not record.msg.startswith(_PER_CONNECTION)


def configure(log_level: str | int, *, access_log: bool, log_format: str = "text") -> None:
    """Set up this process's log; idempotent (uvicorn reconfigures its loggers in a
    reloaded process, so this runs again after it).  ``log_level``: a name or a number;
    ``log_format``: one of :data:`LOG_FORMATS`."""
    global _format
    if log_format not in _FORMATTERS:
        raise ValueError(f"log format {log_format!r}: expected one of {', '.join(LOG_FORMATS)}")
    _format = log_format
    formatter_type = _FORMATTERS[log_format]
    level = log_level if isinstance(log_level, int) else logging.getLevelName(log_level.upper())
    root = logging.getLogger()
    kinds = tuple(_FORMATTERS.values())
    ours: list[logging.Handler] = [h for h in root.handlers if isinstance(h.formatter, kinds)]
    if not ours:
        ours = [logging.StreamHandler()]
        root.addHandler(ours[0])
    for handler in ours:
        if type(handler.formatter) is not formatter_type:
            handler.setFormatter(formatter_type())
    if log_format == "json":  # uvicorn's loggers have handlers of their own
        for name in ("uvicorn", "uvicorn.access"):
            for own in logging.getLogger(name).handlers:
                if type(own) is logging.StreamHandler:  # uvicorn's, not another tool's
                    own.setFormatter(_JsonFormatter())
    root.setLevel(level)
    debug = level <= logging.DEBUG
    uvicorn_log = logging.getLogger("uvicorn.error")
    for old in [f for f in uvicorn_log.filters if isinstance(f, _UvicornFilter)]:
        uvicorn_log.removeFilter(old)
    uvicorn_log.addFilter(_UvicornFilter(debug=debug, access_log=access_log))
    # At debug its change counts, never its "all changes filtered out" for each storage write.
    logging.getLogger("watchfiles").setLevel(logging.INFO if debug else logging.WARNING)
