"""The data folder's server lock, and Project.load holding it until close (issue 15 §3)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from objectd.errors import ConfigError, DataFolderInUseError
from objectd.runtime.data_lock import (
    LOCK_NAME,
    DataFolderLock,
    Holder,
    check_data_folder,
    read_holder,
)
from objectd.runtime.project import Project

WRANGLER = """
name = "app"
main = "worker.py"

[[durable_objects.bindings]]
name = "THING"
class_name = "Thing"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Thing"]
"""

WORKER = """
from objectd import DurableObject, Response, WorkerEntrypoint

class Thing(DurableObject):
    pass

class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response("ok")
"""

# Holds the lock of the folder in argv[1] until its stdin closes.
_HOLDER = """
import sys
from pathlib import Path
from objectd.runtime.data_lock import DataFolderLock
lock = DataFolderLock(Path(sys.argv[1]))
assert lock.acquire()
print("held", flush=True)
sys.stdin.read()
"""


def write_project(tmp_path: Path, worker: str = WORKER) -> Path:
    root = tmp_path / "app"
    root.mkdir(exist_ok=True)
    (root / "wrangler.toml").write_text(WRANGLER)
    (root / "worker.py").write_text(textwrap.dedent(worker))
    sys.modules.pop("worker", None)
    return root


def test_a_second_holder_is_refused_with_the_folder_and_pid(tmp_path: Path) -> None:
    first, second = DataFolderLock(tmp_path), DataFolderLock(tmp_path)
    assert first.acquire() and first.held
    assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    with pytest.raises(DataFolderInUseError) as info:
        second.acquire()  # flock is per open file: this process is refused too
    assert str(tmp_path) in str(info.value)
    assert f"pid {os.getpid()}" in str(info.value)
    assert not second.held
    assert first.acquire()  # taking a held lock again is a no-op
    first.release()
    assert not first.held
    assert second.acquire()
    second.release()
    second.release()  # releasing twice is harmless


def test_a_missing_folder_holds_nothing(tmp_path: Path) -> None:
    lock = DataFolderLock(tmp_path / "not-yet")
    assert lock.acquire() is False
    assert not lock.held and not (tmp_path / "not-yet").exists()


def test_the_lock_dies_with_its_process(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(DataFolderInUseError, match=f"pid {holder.pid}"):
            DataFolderLock(tmp_path).acquire()
        holder.kill()  # SIGKILL: nothing is released by the holder itself
        holder.wait(10)
        with DataFolderLock(tmp_path) as lock:
            assert lock.held
    finally:
        holder.kill()
        holder.wait(10)
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.close()
        holder.stdout.close()


def test_the_lock_leaves_sqlite_locks_alone(tmp_path: Path) -> None:
    """SQLite's record locks on a file in the folder survive the lock's whole life."""
    path = tmp_path / "object.sqlite"
    owner = sqlite3.connect(path, isolation_level=None)
    try:
        owner.execute("PRAGMA locking_mode = EXCLUSIVE")
        owner.execute("CREATE TABLE t (x)")  # takes and keeps the exclusive lock
        lock = DataFolderLock(tmp_path)
        lock.acquire()
        lock.release()
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("INSERT INTO t VALUES (1)")
        finally:
            other.close()
    finally:
        owner.close()


def test_load_holds_the_lock_until_close(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    data = tmp_path / "data"

    async def main() -> None:
        project = Project.load(root, data_dir=data)
        assert project.folder_lock is not None and project.folder_lock.held
        with pytest.raises(DataFolderInUseError, match=str(data / "app")):
            Project.load(root, data_dir=data)
        with pytest.raises(DataFolderInUseError):
            check_data_folder(root, data_dir=data)
        # Under a supervisor that holds the lock, a worker process loads without it.
        worker = Project.load(root, data_dir=data, lock_data_folder=False)
        assert worker.folder_lock is None
        await worker.close()
        await project.close()
        assert not project.folder_lock.held
        again = Project.load(root, data_dir=data)  # loading twice in a row works
        await again.close()
        check_data_folder(root, data_dir=data)

    asyncio.run(main())


def test_a_load_that_fails_releases_the_lock(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    data = tmp_path / "data"

    async def main() -> None:
        await Project.load(root, data_dir=data).close()  # the folder exists now
        write_project(tmp_path, WORKER.replace("class Default", "class Other"))
        with pytest.raises(ConfigError, match="no entrypoint") as info:
            Project.load(root, data_dir=data)  # refused after the lock was taken
        write_project(tmp_path)
        # Released at once, not when the traceback (which still holds load's frames) goes.
        await Project.load(root, data_dir=data).close()
        assert info.value.__traceback__ is not None

    asyncio.run(main())


def test_a_project_without_data_takes_no_lock(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    (root / "wrangler.toml").write_text('name = "app"\nmain = "worker.py"\n')

    async def main() -> None:
        project = Project.load(root, data_dir=tmp_path / "data")
        assert project.folder_lock is not None and not project.folder_lock.held
        await project.close()

    asyncio.run(main())
    assert not (tmp_path / "data").exists()


def test_the_holder_records_its_admin_address(tmp_path: Path) -> None:
    """issue 14 §2: objectd inspect finds the server holding a folder from its lock file."""
    folder = tmp_path / "script"
    folder.mkdir()
    lock = DataFolderLock(folder)
    lock.acquire()
    try:
        assert read_holder(folder) == Holder(os.getpid(), None)
        lock.record_address("http://127.0.0.1:8787/__objectd/")
        assert read_holder(folder) == Holder(os.getpid(), "http://127.0.0.1:8787/__objectd/")
        with pytest.raises(DataFolderInUseError, match=f"pid {os.getpid()}"):
            DataFolderLock(folder).acquire()  # the pid line is still the first
    finally:
        lock.release()
    assert read_holder(tmp_path / "nowhere") == Holder(None, None)
