"""A data folder of a newer format than this objectd's is refused, never rewritten (issue 15 §6).

The metadata file and each object's file record their format in ``PRAGMA user_version``.
An older objectd must not open what a newer one wrote: the server refuses to start on a
newer metadata file, and an object whose file is newer fails its events while the
other objects are served.  Neither file is stamped with this objectd's format.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

from conftest import Server

LEDGER_APP = Path(__file__).resolve().parent / "apps" / "ledger"


def set_format(path: Path, version: int) -> None:
    with closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA user_version = {version}")


def get_format(path: Path) -> int:
    with closing(sqlite3.connect(path)) as db:
        version: int = db.execute("PRAGMA user_version").fetchone()[0]
    return version


def populated(data: Path) -> None:
    server = Server(LEDGER_APP, data).start()
    try:
        with server.client() as http:
            assert http.get("/inc/a").text == "1"
            assert http.get("/inc/b").text == "1"
    finally:
        assert server.stop() == 0


def test_a_newer_metadata_file_stops_the_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    populated(data)
    metadata = data / "ledger" / "objectd.sqlite"
    set_format(metadata, 2)
    command = [sys.executable, "-m", "objectd", "serve", str(LEDGER_APP), "--port", "0"]
    run = subprocess.run(
        [*command, "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    output = run.stdout + run.stderr
    assert run.returncode != 0, output
    assert (
        f"{metadata}: data format 2 is newer than this objectd's (1): "
        "a newer objectd wrote this data folder; run that version"
    ) in output
    assert "objectd: serving" not in output
    assert get_format(metadata) == 2


def test_a_newer_object_file_fails_only_that_object(tmp_path: Path) -> None:
    data = tmp_path / "data"
    populated(data)
    files = sorted((data / "ledger" / "Ledger").glob("*.sqlite"))
    assert len(files) == 2
    newer = files[0]
    set_format(newer, 2)
    server = Server(LEDGER_APP, data).start()
    try:
        with server.client() as http:
            answers = {name: http.get(f"/inc/{name}") for name in ("a", "b")}
        assert sorted(answer.status_code for answer in answers.values()) == [200, 500]
        assert [answer.text for answer in answers.values() if answer.status_code == 200] == ["2"]
    finally:
        assert server.stop() == 0
    assert f"{newer}: data format 2 is newer than this objectd's (1)" in server.output
    assert get_format(newer) == 2
