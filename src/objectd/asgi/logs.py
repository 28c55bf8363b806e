"""What the server prints (L3): objectd's lines, and uvicorn's only where they say something.

By default the log of a start is objectd's own: the descriptor plan, migrations applied,
``objectd: serving <name> on <url>`` once the project is ready, and problems.  Quieted
to ``--log-level debug`` are uvicorn's lifecycle lines (its ``Uvicorn running on …`` comes
before the project has loaded, so it announced a server that could still fail to start)
and watchfiles' change counts (the reloader says which file changed).  The lines uvicorn
and websockets log for every WebSocket (``[accepted]``, ``connection open``,
``connection closed``) are access-log lines: shown with ``--access-log`` or at debug.

:func:`configure` runs in every process that serves: the ``objectd`` command, and each
process ``objectd dev``'s reloader starts (``ServerConfig.configure_logging``), which
would otherwise drop objectd's INFO lines.
"""

from __future__ import annotations

import logging

__all__ = ["configure"]

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


def configure(log_level: str | int, *, access_log: bool) -> None:
    """Set up this process's log; idempotent (uvicorn reconfigures its loggers in a
    reloaded process, so this runs again after it).  ``log_level``: a name or a number."""
    level = log_level if isinstance(log_level, int) else logging.getLevelName(log_level.upper())
    root = logging.getLogger()
    if not any(isinstance(handler.formatter, _Formatter) for handler in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(_Formatter())
        root.addHandler(handler)
    root.setLevel(level)
    debug = level <= logging.DEBUG
    uvicorn_log = logging.getLogger("uvicorn.error")
    for old in [f for f in uvicorn_log.filters if isinstance(f, _UvicornFilter)]:
        uvicorn_log.removeFilter(old)
    uvicorn_log.addFilter(_UvicornFilter(debug=debug, access_log=access_log))
    # At debug its change counts, never its "all changes filtered out" for each storage write.
    logging.getLogger("watchfiles").setLevel(logging.INFO if debug else logging.WARNING)
