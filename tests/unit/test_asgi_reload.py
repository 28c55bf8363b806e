"""Which saves restart ``objectd dev`` (asgi/reload.py, issue 15 §4): code, config and
``.dev.vars``, never a file in a data folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from watchfiles import Change

from objectd.asgi.reload import ProjectFilter


@pytest.mark.parametrize(
    ("name", "reloads"),
    [
        ("worker.py", True),
        ("lib/helper.py", True),
        ("wrangler.toml", True),
        ("wrangler.jsonc", True),
        (".dev.vars", True),
        (".dev.vars.staging", True),
        ("database.py", True),  # next to the data folder "data", not in it
        ("data.py", True),
        (".objectd/counter/Counter/abc.sqlite", False),
        (".objectd/counter/Counter/abc.sqlite-wal", False),
        (".objectd/worker.py", False),
        ("data/counter/Counter/abc.sqlite", False),
        ("data/helper.py", False),
        ("data", False),
        ("__pycache__/worker.cpython-311.pyc", False),
        (".venv/lib/site.py", False),
        (".git/HEAD", False),
        (".dev.vars.swp", False),  # an editor's swap file
        ("notes.txt", False),
    ],
)
def test_reload_filter(tmp_path: Path, name: str, reloads: bool) -> None:
    watch = ProjectFilter([tmp_path / ".objectd", tmp_path / "data"])
    assert watch(Change.modified, str(tmp_path.resolve() / name)) is reloads


def test_a_folder_moved_or_copied_in_reloads(tmp_path: Path) -> None:
    """A package moved or copied into the project: its folder's event is the one sure to come
    (the files inside can land before watchfiles watches the new folder)."""
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "sub" / "mod.py").write_text("")
    (tmp_path / ".objectd" / "counter" / "Counter").mkdir(parents=True)
    (tmp_path / "storage" / ".spares").mkdir(parents=True)
    (tmp_path / "storage" / ".spares" / "a.sqlite").write_text("")
    watch = ProjectFilter([tmp_path / ".objectd"])
    assert watch(Change.added, str(tmp_path.resolve() / "pkg")) is True
    # A folder without code (storage in a --data-dir that is the project itself) is not.
    assert watch(Change.added, str(tmp_path.resolve() / "storage")) is False
    assert watch(Change.added, str(tmp_path.resolve() / "storage" / ".spares")) is False
    # A folder of objects made in the data folder is storage, not code.
    assert watch(Change.added, str(tmp_path.resolve() / ".objectd/counter/Counter")) is False


def test_a_folder_moved_away_reloads(tmp_path: Path) -> None:
    """Gone, so it cannot be asked whether it was a folder: a name without a suffix may be one
    (a package); a file with another suffix is not code."""
    watch = ProjectFilter([tmp_path / ".objectd"])
    assert watch(Change.deleted, str(tmp_path.resolve() / "greet")) is True
    assert watch(Change.deleted, str(tmp_path.resolve() / "notes.txt")) is False
    assert watch(Change.deleted, str(tmp_path.resolve() / ".objectd" / "counter")) is False
    assert watch(Change.deleted, str(tmp_path.resolve() / "__pycache__")) is False
