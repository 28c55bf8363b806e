"""Ready-made object files, so a new object's first request does not create them.

A new object needs a database file and its WAL.  Writing both from the template and
then syncing them and their folder costs three disk flushes and two file creations
on the first request (``cold_start`` in the bench).  A :class:`SpareFiles` pool keeps
a few empty object files in ``<script folder>/.spares``, written and synced ahead of
time in a worker thread; a new object takes one with two renames, and its first
sync then flushes only its WAL and its folder (``ObjectDatabase.sync``).

Spares are interchangeable copies of the template, so nothing in them belongs to
anyone: at start the folder is emptied (a crash may have left one half written) and
filled again.  When the pool is empty a new object's files are written from the
template on the spot, as without a pool.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import threading
from pathlib import Path

__all__ = ["SpareFiles"]

SPARES_FOLDER = ".spares"


class SpareFiles:
    """A pool of synced, empty object files in one folder; thread-safe."""

    def __init__(self, folder: Path, files: tuple[bytes, bytes], *, keep: int = 8) -> None:
        self.folder = folder
        self._main, self._wal = files
        self.keep = keep
        self._ready: list[Path] = []
        self._lock = threading.Lock()
        self._filling = False

    def reset(self) -> None:
        """Empty the folder (blocking): spares left by an earlier process are not trusted."""
        with self._lock:
            self._ready.clear()
        shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def needs_refill(self) -> bool:
        with self._lock:
            return not self._filling and len(self._ready) < self.keep

    def refill(self) -> None:
        """Make spares until ``keep`` are ready (blocking: run it in a worker thread)."""
        with self._lock:
            if self._filling:
                return
            self._filling = True
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            while True:
                with self._lock:
                    if len(self._ready) >= self.keep:
                        return
                spare = self._make()
                with self._lock:
                    self._ready.append(spare)
        finally:
            with self._lock:
                self._filling = False

    def _make(self) -> Path:
        spare = self.folder / f"{secrets.token_hex(8)}.sqlite"
        for path, data in ((Path(f"{spare}-wal"), self._wal), (spare, self._main)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        return spare

    def take(self, path: Path) -> bool:
        """Move a spare to ``path`` (its WAL first); False when none is ready.

        The files' contents are already durable; the caller's first sync must still
        make ``path``'s folder durable, which holds the two new names.
        """
        with self._lock:
            if not self._ready:
                return False
            spare = self._ready.pop()
        try:
            os.replace(f"{spare}-wal", f"{path}-wal")
            os.replace(spare, path)
        except OSError:  # e.g. another filesystem: the caller writes the template instead
            for leftover in (spare, Path(f"{spare}-wal")):
                with contextlib.suppress(OSError):
                    leftover.unlink()
            return False
        return True
