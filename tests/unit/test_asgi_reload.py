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
