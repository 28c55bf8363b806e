"""Spare object files: made ahead, taken by rename, never trusted across restarts."""

from __future__ import annotations

from pathlib import Path

from objectd.storage.database import Backend, ObjectDatabase, internal_sql, template_files
from objectd.storage.spares import SpareFiles


def _pool(tmp_path: Path, keep: int = 3) -> SpareFiles:
    return SpareFiles(tmp_path / "script" / ".spares", template_files(), keep=keep)


def test_refill_makes_spares_and_take_moves_them(tmp_path: Path) -> None:
    pool = _pool(tmp_path)
    assert pool.needs_refill
    pool.refill()
    assert not pool.needs_refill
    assert len(list(pool.folder.glob("*.sqlite"))) == 3
    target = tmp_path / "script" / "Counter" / "abc.sqlite"
    target.parent.mkdir(parents=True)
    assert pool.take(target)
    assert target.read_bytes() == template_files()[0]
    assert Path(f"{target}-wal").read_bytes() == template_files()[1]
    assert len(list(pool.folder.glob("*.sqlite"))) == 2 and pool.needs_refill


def test_take_from_an_empty_pool_or_a_vanished_spare_says_no(tmp_path: Path) -> None:
    pool = _pool(tmp_path, keep=1)
    target = tmp_path / "obj.sqlite"
    assert not pool.take(target)  # nothing made yet
    pool.refill()
    for spare in pool.folder.iterdir():
        spare.unlink()  # e.g. a newer process emptied the folder at its start
    assert not pool.take(target)
    assert not target.exists()


def test_reset_forgets_and_removes_earlier_spares(tmp_path: Path) -> None:
    pool = _pool(tmp_path)
    pool.refill()
    (pool.folder / "half-written.sqlite").write_bytes(b"SQLite format 3\0")
    pool.reset()
    assert not pool.folder.exists()
    assert not pool.take(tmp_path / "obj.sqlite")


def test_a_new_object_takes_a_spare_and_keeps_its_data(tmp_path: Path) -> None:
    pool = _pool(tmp_path)
    pool.refill()
    path = tmp_path / "script" / "Counter" / "obj.sqlite"
    path.parent.mkdir(parents=True)
    db = ObjectDatabase(path, backend=Backend.SQLITE, spares=pool)
    assert db.created and db._main_fd < 0  # the spare's contents were synced
    db.begin_write()
    db.conn.execute(internal_sql("INSERT INTO _cf_KV VALUES (?, ?)"), (b"k", b"\x01"))
    db.commit()
    db.sync()
    db.close()
    assert len(list(pool.folder.glob("*.sqlite"))) == 2
    again = ObjectDatabase(path, backend=Backend.SQLITE, spares=pool)
    try:
        assert not again.created
        assert again.conn.execute(internal_sql("SELECT value FROM _cf_KV")).fetchall() == [
            (b"\x01",)
        ]
    finally:
        again.close()
    assert len(list(pool.folder.glob("*.sqlite"))) == 2  # opening an existing one takes none
