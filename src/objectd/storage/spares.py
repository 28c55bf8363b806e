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

from objectd.storage.syncing import fsync_path, sync_files

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
        """Make spares until ``keep`` are ready (blocking: run it in a worker thread).

        The missing ones are written first and then made durable together: one
        ``syncfs`` where Linux has it (``storage.syncing``), so a refill adds one
        journal commit to the disk's work, not two per file.
        """
        with self._lock:
            if self._filling:
                return
            self._filling = True
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with self._lock:
                missing = self.keep - len(self._ready)
            made = [self._write() for _ in range(missing)]
            if made:
                files: list[_NewSpare] = []
                try:
                    files.extend(_NewSpare(spare) for spare in made)
                    sync_files(files, shared=False)  # not an object's error to take
                finally:
                    for file in files:
                        file.close()
            with self._lock:
                self._ready.extend(made)
        finally:
            with self._lock:
                self._filling = False

    def _write(self) -> Path:
        spare = self.folder / f"{secrets.token_hex(8)}.sqlite"
        for path, data in ((Path(f"{spare}-wal"), self._wal), (spare, self._main)):
            with open(path, "wb") as out:
                out.write(data)
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


class _NewSpare:
    """A just-written spare as ``sync_files`` sees it: synced alone, its two files and
    its folder are synced one by one; covered by a ``syncfs``, nothing more is needed."""

    def __init__(self, spare: Path) -> None:
        self.spare = spare
        self.device = os.stat(spare).st_dev
        self._fd = os.open(spare, os.O_RDONLY)
        self.sync_fd = self._fd

    def sync(self) -> None:
        try:
            fsync_path(f"{self.spare}-wal")
            fsync_path(self.spare.parent)
            os.fsync(self._fd)
        finally:
            self.close()

    def synced_with_filesystem(self) -> None:
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
