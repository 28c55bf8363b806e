"""The last fence: a live object's file cannot be written by another process (issue 9 §10).

The server's one connection to an object's file holds SQLite's exclusive lock for the
file's whole life.  POSIX record locks belong to the process and drop when *any*
descriptor of the file is closed in it, so the server must never open and close the
file beside SQLite (one opened only to fsync it did exactly that).  The riskiest moment
is the first sync of a file recovered after a crash (and of a file created without a
spare), which syncs the main file too: the test writes after a SIGKILL and a restart,
then tries to write the file from a second process.

Spec checklist: 110 (one live instance per id).
"""

from __future__ import annotations

import signal
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Server

_WRITER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)
try:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("CREATE TABLE intruder (x)")
    conn.execute("COMMIT")
except sqlite3.OperationalError as exc:
    print("refused:", exc)
else:
    print("written")
"""


def _object_files(data_dir: Path) -> list[Path]:
    return [
        path
        for path in data_dir.rglob("*.sqlite")
        if not path.name.startswith(".")
        and "spare" not in str(path.relative_to(data_dir))
        and path.parent.name == "Counter"
    ]


def _second_process_writes(path: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _WRITER, str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip()


@pytest.mark.parametrize("project", ["bench"], indirect=True)
def test_110_lock_holds_after_crash_recovery(project: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = Server(project, data).start()
    try:
        with server.client() as http:
            for _ in range(3):
                assert http.get("/counter/victim/increment").status_code == 200
        [path] = _object_files(data)
        assert _second_process_writes(path).startswith("refused")
        server.stop(signal.SIGKILL)  # the WAL keeps its frames: the restart recovers them

        server.start()
        with server.client() as http:
            # The first writes after recovery sync the main file and its folder again.
            for expected in (4, 5, 6):
                assert http.get("/counter/victim/increment").text == str(expected)
        result = _second_process_writes(path)
        assert result.startswith("refused"), result
        with server.client() as http:
            assert http.get("/counter/victim/increment").text == "7"
    finally:
        server.kill()
    conn = sqlite3.connect(path)
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()
    assert "intruder" not in tables


@pytest.mark.parametrize("project", ["bench"], indirect=True)
def test_the_data_folder_is_private(project: Path, tmp_path: Path) -> None:
    """Object files and the id secrets are the server user's alone (issue 9 §9)."""
    data = tmp_path / "data"
    server = Server(project, data).start()
    try:
        with server.client() as http:
            assert http.get("/counter/private/increment").status_code == 200
    finally:
        server.stop()
    # The folder is private, so nothing below it is reachable by other users, whatever
    # mode SQLite gives the files it creates.
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
