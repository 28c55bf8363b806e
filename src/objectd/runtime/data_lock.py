"""One server per data folder: a lock held for the server's whole life (issue 15 §3).

Two servers on one data folder would both open its object files.  SQLite's lock on a
live object's file lets only one of them write it, so the second would answer every
request that reaches such an object with ``database is locked``, and its migrations
could change folders the first one serves.  Instead the second refuses to start, with
a message naming the folder and the running server's pid.

The lock is ``flock(2)`` on a file of its own, ``<data>/<script>/server.lock``, which
holds the holder's pid.  flock locks belong to an open file description and are
independent of the POSIX record locks (``fcntl``) SQLite takes on object files, so
neither can block or release the other, and the object files are never opened here
(a process that opens and closes an object file beside SQLite drops SQLite's record
locks on it).  The kernel drops a flock when the process dies, however it dies
(SIGKILL included), so a restart after a crash takes it again at once: the file is
left in place and never needs cleaning up.  The descriptor is not inherited by
programs the server runs (``O_CLOEXEC``).

Who holds it.  :meth:`Project.load <objectd.runtime.project.Project.load>` takes it
(``lock_data_folder=True``) and :meth:`Project.close` releases it, so a process may
load and close a project on the same folder as often as it likes.  A supervisor of
worker processes that share one data folder (the coming ``serve --workers N``) holds a
:class:`DataFolderLock` itself, for its whole life, and loads each worker's project
with ``lock_data_folder=False``: the workers need no lock of their own, and a worker's
restart never leaves a moment in which another server could take the folder.

The admin address.  A server with an admin surface (``/__objectd/``) writes its URL
into the same file, on the line after the pid (:meth:`DataFolderLock.record_address`),
so that ``objectd inspect`` finds the server holding a folder without being told:
when the lock is held, :func:`read_holder` says by whom and where to ask.  A lock
that is free makes whatever the file says stale.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from objectd.config import ProjectConfig, load_project
from objectd.errors import ConfigError, DataFolderInUseError

__all__ = [
    "LOCK_NAME",
    "DataFolderLock",
    "Holder",
    "check_data_folder",
    "data_root",
    "read_holder",
]

LOCK_NAME = "server.lock"


def data_root(config: ProjectConfig, data_dir: str | Path | None) -> Path:
    """The data folder: ``data_dir``, or ``.objectd/`` in the project by default."""
    return Path(data_dir) if data_dir is not None else config.root / ".objectd"


class DataFolderLock:
    """The exclusive right to serve the script data folder ``folder`` (``<data>/<script>``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        """Take the lock, or raise :class:`DataFolderInUseError` naming the holder's pid.

        Returns False, holding nothing, while ``folder`` does not exist: nothing is
        stored there yet (migrations create it).  Taking a held lock again is a no-op.
        """
        if self._fd is not None:
            return True
        if sys.platform == "win32":  # pragma: no cover - no flock; objectd serves on POSIX
            return False
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            if self.folder.is_dir():
                raise
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise DataFolderInUseError(
                f"{self.folder}: this data folder is in use by another objectd server "
                f"(pid {pid if pid is not None else 'unknown'}); stop that server first, "
                "or serve this one with another --data-dir"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        # Written over the old pid, then cut to length: a reader sees one or the other.
        text = f"{os.getpid()}\n".encode()
        os.pwrite(fd, text, 0)
        os.ftruncate(fd, len(text))
        self._fd = fd
        return True

    def record_address(self, url: str) -> None:
        """Write the holder's admin URL after its pid (see the module docstring)."""
        if self._fd is None or "\n" in url:
            return
        text = f"{os.getpid()}\n{url}\n".encode()
        os.pwrite(self._fd, text, 0)
        os.ftruncate(self._fd, len(text))

    def release(self) -> None:
        """Let another server take the folder (closing the descriptor drops the flock)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> DataFolderLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<DataFolderLock {self.path} {'held' if self.held else 'free'}>"


@dataclass(frozen=True, slots=True)
class Holder:
    """What the lock file of a held folder says: the server's pid and admin URL."""

    pid: int | None
    admin_url: str | None


def read_holder(folder: Path) -> Holder:
    """The holder's pid and admin URL (None where the file does not say)."""
    try:
        lines = (folder / LOCK_NAME).read_text("utf-8", "replace").splitlines()
    except OSError:
        return Holder(None, None)
    pid = int(lines[0]) if lines and lines[0].isdigit() else None
    url = lines[1].strip() if len(lines) > 1 and lines[1].startswith("http") else None
    return Holder(pid, url)


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).split(b"\n", 1)[0])
    return None


def check_data_folder(
    project_dir: str | Path, *, data_dir: str | Path | None = None, environment: str | None = None
) -> Path | None:
    """Raise :class:`DataFolderInUseError` if a server already serves this project's data;
    else return that data folder (``None`` if the config does not load).

    For ``objectd dev``, whose serving process is restarted by a reloader that would
    otherwise keep waiting after that process refused to start.  The lock is taken and
    released at once; the serving process takes it again.  A project whose config does
    not load is not checked: loading it reports that.
    """
    quiet = logging.getLogger("objectd.config")  # its warnings are the serving process's
    was_disabled, quiet.disabled = quiet.disabled, True
    try:
        config = load_project(project_dir, env=environment)
    except ConfigError:
        return None
    finally:
        quiet.disabled = was_disabled
    folder = data_root(config, data_dir) / config.name
    with DataFolderLock(folder):
        pass
    return folder
