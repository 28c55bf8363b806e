"""Syncing many object files with few disk flushes (storage.syncing), on real files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from objectd.storage import syncing
from objectd.storage.database import Backend, ObjectDatabase, internal_sql
from objectd.storage.syncing import sync_files


def _write(db: ObjectDatabase, value: bytes) -> None:
    db.begin_write()
    db.conn.execute(internal_sql("INSERT OR REPLACE INTO _cf_KV VALUES (?, ?)"), (b"k", value))
    db.commit()


class FakeFile:
    def __init__(self, log: list[str], name: str, device: int) -> None:
        self.log, self.name, self.device, self.sync_fd = log, name, device, 100 + device

    def sync(self) -> None:
        self.log.append(f"sync {self.name}")

    def synced_with_filesystem(self) -> None:
        self.log.append(f"covered {self.name}")


def test_files_are_grouped_by_filesystem(monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[str] = []
    monkeypatch.setattr(syncing, "_syncfs", lambda fd: log.append(f"syncfs {fd}"))
    monkeypatch.setattr(syncing, "_devices", {1: 7, 2: 8})
    files = [FakeFile(log, "a", 1), FakeFile(log, "b", 2), FakeFile(log, "c", 1)]
    sync_files(files)
    # Two files on device 1 share one syncfs, through the device's own descriptor (7);
    # the lone file on device 2 is synced alone.
    assert log == ["syncfs 7", "covered a", "covered c", "sync b"]
    log.clear()
    sync_files(files[::2], shared=False)  # spares: through a file's own descriptor
    assert log == ["syncfs 101", "covered a", "covered c"]


def test_filesystems_not_known_to_honour_syncfs_sync_file_by_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log: list[str] = []
    monkeypatch.setattr(syncing, "_syncfs", lambda fd: log.append(f"syncfs {fd}"))
    monkeypatch.setattr(syncing, "_devices", {})
    monkeypatch.setattr(syncing, "_filesystem_type", lambda device: "fuse.sshfs")
    sync_files([FakeFile(log, "a", 3), FakeFile(log, "b", 3)])
    assert log == ["sync a", "sync b"]


def test_without_syncfs_every_file_is_synced(monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[str] = []
    monkeypatch.setattr(syncing, "_syncfs", None)
    sync_files([FakeFile(log, "a", 1), FakeFile(log, "b", 1)])
    assert log == ["sync a", "sync b"]


@pytest.mark.skipif(not syncing.filesystem_sync_available(), reason="no syncfs(2) here")
def test_syncfs_covers_new_files_and_reports_errors(tmp_path: Path) -> None:
    dbs = [ObjectDatabase(tmp_path / f"{n}.sqlite", backend=Backend.KV) for n in "abc"]
    try:
        for db in dbs:
            _write(db, b"\x01")
            assert db._needs_full_sync  # a new file: its folder entry is not durable yet
        sync_files(dbs)
        assert not any(db._needs_full_sync for db in dbs)  # the syncfs covered them
        broken = ObjectDatabase(tmp_path / "d.sqlite", backend=Backend.KV)
        _write(broken, b"\x01")
        os.close(broken._wal_fd)
        broken._wal_fd = -1
        with pytest.raises(OSError, match="Bad file descriptor"):
            sync_files([broken, *dbs], shared=False)  # a syncfs through broken's fd
        assert broken._needs_full_sync  # not marked durable after a failed sync
        broken.conn.close()
    finally:
        for db in dbs:
            db.close()


def test_new_object_files_start_with_a_committed_wal(tmp_path: Path) -> None:
    """A new file's WAL already holds the schema, so SQLite appends to it (no WAL restart,
    whose header and folder syncs would run on the event loop); data survives reopening."""
    path = tmp_path / "obj.sqlite"
    Path(f"{path}-wal").write_bytes(b"garbage left by a crash before the rename")
    db = ObjectDatabase(path, backend=Backend.SQLITE)
    wal = Path(f"{path}-wal")
    # The crash leftover was replaced: a WAL header, then the schema's frames.
    assert wal.read_bytes()[:4] in (b"\x37\x7f\x06\x82", b"\x37\x7f\x06\x83")
    assert wal.stat().st_size > 32
    _write(db, b"\x02")
    db.sync()
    db.close()
    reopened = ObjectDatabase(path, backend=Backend.SQLITE)
    try:
        row = reopened.conn.execute(internal_sql("SELECT value FROM _cf_KV")).fetchone()
        assert row == (b"\x02",)
    finally:
        reopened.close()


def test_a_file_left_by_a_crash_gets_a_full_first_sync(tmp_path: Path) -> None:
    live = ObjectDatabase(tmp_path / "live.sqlite", backend=Backend.KV)
    try:
        _write(live, b"\x05")
        live.sync()
        # What a killed process leaves: the database and a WAL holding its commits.
        for suffix in ("", "-wal"):
            data = Path(f"{tmp_path / 'live.sqlite'}{suffix}").read_bytes()
            Path(f"{tmp_path / 'crashed.sqlite'}{suffix}").write_bytes(data)
    finally:
        live.close()
    reopened = ObjectDatabase(tmp_path / "crashed.sqlite", backend=Backend.KV)
    try:
        assert not reopened.created
        assert reopened._needs_full_sync and reopened._main_fd >= 0
        assert reopened.conn.execute(internal_sql("SELECT value FROM _cf_KV")).fetchone() == (
            b"\x05",
        )
    finally:
        reopened.close()
    clean = ObjectDatabase(tmp_path / "live.sqlite", backend=Backend.KV)
    try:
        assert not clean._needs_full_sync  # closed cleanly: its WAL was checkpointed away
    finally:
        clean.close()


def test_a_failed_first_sync_is_retried_in_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = ObjectDatabase(tmp_path / "new.sqlite", backend=Backend.KV)
    try:
        _write(db, b"\x01")

        def broken_fsync(fd: int) -> None:
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(os, "fsync", broken_fsync)
        with pytest.raises(OSError, match="Input/output error"):
            db.sync()
        assert db._needs_full_sync  # the folder entry is still not known to be durable
        monkeypatch.undo()
        db.sync()
        assert not db._needs_full_sync
    finally:
        db.close()
