"""``objectd dev``'s reloader (L3): which saves restart the serving process.

uvicorn's own reloader watches every file under the project with no filter and
filters afterwards, so each storage write in the data folder (``DIR/.objectd/`` or a
``--data-dir`` inside DIR) was a change watchfiles logged; and its default exclude
``.*`` wins over an include of ``.dev.vars*``, so editing the secrets never reloaded.
Here the filter is given to watchfiles itself: only a change to a Python file, the
wrangler file or ``.dev.vars`` (``.dev.vars.<env>``), or a folder of Python files moved
in or away, reloads; nothing inside the data folders, ``.git``, ``.venv``, ``__pycache__``
and the like (watchfiles' defaults) does.  watchfiles still sees the data folders' files
(it watches the whole tree) but they never pass the filter, and its per-batch log lines
are kept out of the log (:mod:`objectd.asgi.logs`).

A restart is a code update (spec §9, checklist 152): before uvicorn's SIGTERM, the
reloader sends the serving process :data:`CODE_UPDATED`, on which the app resets every
object, so that calls in flight into objects fail with "Durable Object reset because its
code was updated." (retryable) instead of running on in the old code.  Stopping
``objectd dev`` sends only SIGTERM: in-flight work then finishes, as on any shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Iterable
from pathlib import Path
from socket import socket

from uvicorn.config import Config
from uvicorn.supervisors.basereload import BaseReload
from watchfiles import Change, DefaultFilter, watch

__all__ = ["CODE_UPDATED", "DevReload", "ProjectFilter", "expect_code_updates", "on_code_update"]

log = logging.getLogger("objectd")

# A new folder is read this far to see whether it holds code.
_FOLDER_SCAN_ENTRIES = 1000
# The reloader's word to the serving process that its code changed (None on Windows,
# where uvicorn restarts with CTRL_C_EVENT and nothing is told first).
CODE_UPDATED: int | None = getattr(signal, "SIGUSR1", None)
_CONFIG_NAMES = frozenset({"wrangler.toml", "wrangler.json", "wrangler.jsonc", ".dev.vars"})


class ProjectFilter(DefaultFilter):
    """The changes that reload: code, config and secrets, outside the data folders."""

    def __init__(self, ignored: Iterable[Path]) -> None:
        super().__init__()
        # Compared with a separator, so that ``data/`` does not hide ``database.py``.
        self._ignored = tuple(str(path.resolve()) for path in ignored)

    def __call__(self, change: Change, path: str) -> bool:
        if any(path == folder or path.startswith(folder + os.sep) for folder in self._ignored):
            return False
        name = os.path.basename(path)
        wanted = (
            name.endswith(".py")
            or name in _CONFIG_NAMES
            or name.startswith(".dev.vars.")
            or _maybe_package(change, path, name)
        )
        return wanted and super().__call__(change, path)


def _maybe_package(change: Change, path: str, name: str) -> bool:
    """A folder of Python files moved or copied in, or moved away: its own event is the one
    sure to come (files copied into a new folder can land before it is watched).  Asked
    when watchfiles yields the batch, after the copy.  A deleted path cannot be asked what
    it was: a name without a suffix may have been a package."""
    if change == Change.added:
        return os.path.isdir(path) and _holds_python(path)
    return change == Change.deleted and "." not in name


def _holds_python(folder: str, *, budget: int = _FOLDER_SCAN_ENTRIES) -> bool:
    """Whether ``folder`` holds a ``.py`` file, looking at ``budget`` entries at most (a
    huge folder of other files is not read to its end)."""
    for _, _, files in os.walk(folder):
        if any(name.endswith(".py") for name in files):
            return True
        budget -= len(files) + 1
        if budget <= 0:
            return False
    return False


class DevReload(BaseReload):
    """uvicorn's reload loop, watching ``directory`` through a :class:`ProjectFilter`."""

    def __init__(
        self,
        config: Config,
        target: Callable[[list[socket] | None], None],
        sockets: list[socket],
        *,
        directory: Path,
        ignored: Iterable[Path],
    ) -> None:
        super().__init__(config, target, sockets)
        self.reloader_name = "objectd"
        self.directory = directory
        self.watcher = watch(
            directory,
            watch_filter=ProjectFilter(ignored),
            stop_event=self.should_exit,
            yield_on_timeout=True,  # so that a stop is seen without a change
            ignore_permission_denied=True,
        )

    def run(self) -> None:
        self.startup()
        for changes in self:
            if changes:
                log.info("objectd: %s changed: reloading", ", ".join(map(self._shown, changes)))
                self.restart()
        self.shutdown()

    def restart(self) -> None:
        if CODE_UPDATED is not None and self.process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, CODE_UPDATED)
        super().restart()

    def should_restart(self) -> list[Path] | None:
        self.pause()
        changes = next(self.watcher)
        return sorted({Path(path) for _, path in changes}) if changes else None

    def _shown(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.directory))
        except ValueError:
            return str(path)


def expect_code_updates() -> None:
    """In the serving process, as early as it can: a :data:`CODE_UPDATED` that comes before
    :func:`on_code_update` is ignored (nothing runs yet), rather than ending the process."""
    if CODE_UPDATED is not None:
        signal.signal(CODE_UPDATED, signal.SIG_IGN)


def on_code_update(callback: Callable[[], None]) -> None:
    """Call ``callback`` on the running loop when the reloader says the code changed."""
    if CODE_UPDATED is not None:
        asyncio.get_running_loop().add_signal_handler(CODE_UPDATED, callback)
