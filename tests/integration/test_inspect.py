"""objectd inspect / export / import against real servers and real files (issue 14 §2).

A live object's file is locked by the server's one connection, so with a server running
the commands must read through its admin API, and the server must go on serving every
object normally afterwards; with none running they read the files read-only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Server, wait_until
from websockets.sync.client import connect

APP = Path(__file__).parent / "apps" / "inspect"
TOKEN = "an-admin-token-for-inspect-0123"
LATER_MS = 4_102_444_800_000  # 2100-01-01


@pytest.fixture
def project(tmp_path: Path) -> Path:
    target = tmp_path / "inspect"
    shutil.copytree(APP, target, ignore=shutil.ignore_patterns(".objectd", "__pycache__"))
    return target


def objectd(*args: str | Path, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OBJECTD_ADMIN_TOKEN"}
    if token is not None:
        env["OBJECTD_ADMIN_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "objectd", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def inspect_json(project: Path, data: Path, *args: str, token: str | None = None) -> object:
    done = objectd("inspect", project, "--data-dir", data, "--json", *args, token=token)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def fill(server: Server) -> None:
    with server.client() as http:
        for name, value in (("alice", "hello"), ("bob", "<b>bold</b>")):
            assert (
                http.get("/put", params={"name": name, "key": "greeting", "value": value}).text
                == "ok"
            )
        assert http.get("/alarm", params={"name": "alice", "ms": str(LATER_MS)}).text == "ok"


@pytest.fixture
def dev(project: Path, tmp_path: Path) -> Iterator[Server]:
    server = Server(project, tmp_path / "data", mode="dev").start()
    try:
        fill(server)
        yield server
    finally:
        server.kill()


def test_inspect_reads_through_the_running_server(
    dev: Server, project: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    ws_url = dev.url.replace("http://", "ws://") + "/ws?name=alice&tag=room-1"
    with connect(ws_url, open_timeout=10) as ws:
        done = objectd("inspect", project, "--data-dir", data)
        assert done.returncode == 0, done.stderr
        assert "reading the server at" in done.stderr
        assert "alice" in done.stdout  # the table

        summary = inspect_json(project, data)
        (notes,) = summary["classes"]
        assert notes["class"] == "Notes"
        assert sorted(o["name"] for o in notes["objects"]) == ["alice", "bob"]
        assert all(o["size"] > 0 and o["last_write"] for o in notes["objects"])

        alice = inspect_json(project, data, "--class", "Notes", "--object", "alice")
        assert alice["kv"][0]["key"] == "greeting"
        assert alice["kv"][0]["value"] == {"text": "hello", "n": [1, 2]}  # decoded
        assert alice["tables"][0]["name"] == "notes"
        assert alice["tables"][0]["rows"] == [[1, "hello"]]
        assert alice["alarm_ms"] == LATER_MS
        assert alice["socket_list"] == [{"tags": ["room-1"], "state": "open", "hibernatable": True}]

        ws.send("still here")
        assert ws.recv(timeout=10) == "still here"

    by_id = inspect_json(project, data, "--class", "Notes", "--object", alice["id"])
    assert by_id["kv"] == alice["kv"]
    with dev.client() as http:
        for key in ("user:1", "user:2", "user:3"):
            put = {"name": "alice", "key": key, "value": key}
            assert http.get("/put", params=put).text == "ok"
    users = inspect_json(
        project, data, "--class", "Notes", "--object", "alice", "--prefix", "user:"
    )
    assert [kv["key"] for kv in users["kv"]] == ["user:1", "user:2", "user:3"]
    rest = inspect_json(
        project,
        data,
        "--class",
        "Notes",
        "--object",
        "alice",
        "--prefix",
        "user:",
        "--after",
        "user:1",
    )
    assert [kv["key"] for kv in rest["kv"]] == ["user:2", "user:3"]
    found = inspect_json(project, data, "--class", "Notes", "--search", "bo")
    assert [o["name"] for o in found["objects"]] == ["bob"]
    alarms = inspect_json(project, data, "--alarms")
    assert [(a["name"], a["alarm_ms"], a["due"]) for a in alarms["alarms"]] == [
        ("alice", LATER_MS, False)
    ]


def test_sql_is_read_only_and_the_object_goes_on_as_before(
    dev: Server, project: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    query = ("--class", "Notes", "--object", "alice", "--sql")
    rows = inspect_json(project, data, *query, "SELECT id, body FROM notes")
    assert rows["columns"] == ["id", "body"]
    assert rows["rows"] == [[1, "hello"]]
    for statement in ("DELETE FROM notes", "DROP TABLE notes", "PRAGMA query_only=0"):
        refused = objectd("inspect", project, "--data-dir", data, *query, statement)
        assert refused.returncode == 1
        assert "not authorized" in refused.stderr
    with dev.client() as http:
        assert http.get("/count", params={"name": "alice"}).text == "1"
        # The object's file is still its own: it writes as before.
        assert http.get("/put", params={"name": "alice", "key": "k", "value": "two"}).text == "ok"
        assert http.get("/count", params={"name": "alice"}).text == "2"


def test_cold_objects_are_read_through_the_server_with_its_token(
    project: Path, tmp_path: Path
) -> None:
    """After a restart no object is in memory: the server reads their files itself,
    read-only, and afterwards they open as usual."""
    data = tmp_path / "data"
    server = Server(project, data, "--admin-token", TOKEN).start()
    try:
        fill(server)
    finally:
        server.stop()
    server = Server(project, data, "--admin-token", TOKEN).start()
    try:
        refused = objectd("inspect", project, "--data-dir", data)
        assert refused.returncode == 1
        assert "needs its admin token" in refused.stderr
        bob = inspect_json(project, data, "--class", "Notes", "--object", "bob", token=TOKEN)
        assert bob["kv"][0]["value"]["text"] == "<b>bold</b>"
        with server.client() as http:
            assert http.get("/put", params={"name": "bob", "key": "k", "value": "v"}).text == "ok"
            assert http.get("/count", params={"name": "bob"}).text == "2"
        # Bob is live now: read through its own connection, with the new row.
        again = inspect_json(project, data, "--class", "Notes", "--object", "bob", token=TOKEN)
        assert len(again["tables"][0]["rows"]) == 2
    finally:
        server.kill()


def test_a_server_without_admin_pages_is_never_read_around(project: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = Server(project, data).start()
    try:
        fill(server)
        refused = objectd("inspect", project, "--data-dir", data, token=TOKEN)
        assert refused.returncode == 1
        assert f"a server (pid {server.proc.pid if server.proc else '?'})" in refused.stderr
        assert "--admin-token" in refused.stderr
    finally:
        server.kill()


def test_inspect_reads_the_files_when_no_server_runs(project: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = Server(project, data).start()
    try:
        fill(server)
    finally:
        server.stop()
    files = sorted(p.name for p in (data / "inspect" / "Notes").iterdir())
    done = objectd("inspect", project, "--data-dir", data, "--class", "Notes", "--object", "alice")
    assert done.returncode == 0, done.stderr
    assert "no server holds them" in done.stderr
    assert "hello" in done.stdout
    alice = inspect_json(project, data, "--class", "Notes", "--object", "alice")
    assert alice["tables"][0]["rows"] == [[1, "hello"]]
    assert alice["name"] == "alice"  # from the alarm index
    assert inspect_json(project, data, "--alarms")["alarms"][0]["alarm_ms"] == LATER_MS
    refused = objectd(
        "inspect",
        project,
        "--data-dir",
        data,
        "--class",
        "Notes",
        "--object",
        "alice",
        "--sql",
        "DELETE FROM notes",
    )
    assert refused.returncode == 1
    exported = objectd("export", project, "--data-dir", data, tmp_path / "export")
    assert exported.returncode == 0, exported.stderr
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    # Without a server, names are known for objects with an alarm only (the index keeps them).
    assert sorted(str(e["name"]) for e in manifest["objects"]) == ["None", "alice"]
    assert sorted(p.name for p in (data / "inspect" / "Notes").iterdir()) == files
    # The lock was given back: a server starts on the folder, and the data is whole.
    server = Server(project, data).start()
    try:
        with server.client() as http:
            assert http.get("/count", params={"name": "alice"}).text == "1"
    finally:
        server.kill()


def test_pages_escape_what_objects_stored(dev: Server) -> None:
    with dev.client() as http:
        evil = "<script>alert(1)</script>"
        assert http.get("/put", params={"name": "eve", "key": evil, "value": evil}).text == "ok"
        page = http.get("/__objectd/object", params={"class": "Notes", "id": "eve"})
        assert page.status_code == 200
        assert "<script>" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]


def test_export_and_import_round_trip(dev: Server, project: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    dest = tmp_path / "export"
    done = objectd("export", project, "--data-dir", data, dest)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["script"] == "inspect"
    entries = {entry["name"]: entry for entry in manifest["objects"]}
    assert sorted(entries) == ["alice", "bob"]
    assert entries["alice"]["alarm_ms"] == LATER_MS
    assert (dest / entries["alice"]["file"]).read_bytes().startswith(b"SQLite format 3")

    one = tmp_path / "one"
    done = objectd(
        "export", project, "--data-dir", data, one, "--class", "Notes", "--object", "bob"
    )
    assert done.returncode == 0, done.stderr
    assert [e["name"] for e in json.loads((one / "manifest.json").read_text())["objects"]] == [
        "bob"
    ]

    refused = objectd("import", project, "--data-dir", data, dest, "--replace")
    assert refused.returncode == 1
    assert "in use by another objectd server" in refused.stderr
    dev.kill()

    # Another data folder has its own namespace secrets: these ids are not its ids.
    other = tmp_path / "other"
    Server(project, other).start().stop()
    notes = other / "inspect" / "Notes"
    assert notes.is_dir()  # served once: the class's folder exists
    before = sorted(p.name for p in notes.iterdir())
    refused = objectd("import", project, "--data-dir", other, dest)
    assert refused.returncode == 1
    assert "another namespace's secret" in refused.stderr
    assert sorted(p.name for p in notes.iterdir()) == before  # nothing written

    refused = objectd("import", project, "--data-dir", data, dest)
    assert refused.returncode == 1
    assert "exists here already" in refused.stderr

    # Lose the objects and their alarm index, then restore them from the export.
    shutil.rmtree(data / "inspect" / "Notes")
    for index_file in (data / "inspect").glob("alarms.sqlite*"):
        index_file.unlink()
    done = objectd("import", project, "--data-dir", data, dest)
    assert done.returncode == 0, done.stderr
    assert inspect_json(project, data, "--alarms")["alarms"][0]["name"] == "alice"
    server = Server(project, data).start()
    try:
        with server.client() as http:
            assert http.get("/count", params={"name": "alice"}).text == "1"
            assert http.get("/count", params={"name": "bob"}).text == "1"
    finally:
        server.kill()


def test_due_alarms_are_listed_when_no_server_runs_them(project: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = Server(project, data).start()
    soon_ms = int((time.time() + 5) * 1000)
    try:
        with server.client() as http:
            assert http.get("/put", params={"name": "carol", "key": "k", "value": "v"}).text == "ok"
            assert http.get("/alarm", params={"name": "carol", "ms": str(soon_ms)}).text == "ok"
            assert http.get("/alarm", params={"name": "dave", "ms": str(LATER_MS)}).text == "ok"
    finally:
        server.stop()
    wait_until(lambda: time.time() * 1000 > soon_ms + 10, timeout=30)
    due = inspect_json(project, data, "--alarms", "--due")
    assert [(a["name"], a["due"]) for a in due["alarms"]] == [("carol", True)]
    every = inspect_json(project, data, "--alarms")
    assert [a["name"] for a in every["alarms"]] == ["carol", "dave"]


def test_options_that_need_others_are_refused(project: Path, tmp_path: Path) -> None:
    for args in (("--object", "alice"), ("--class", "Notes", "--sql", "SELECT 1")):
        done = objectd("inspect", project, "--data-dir", tmp_path / "data", *args)
        assert done.returncode == 2
        assert "needs --class" in done.stderr
    done = objectd("inspect", project, "--data-dir", tmp_path / "data")
    assert done.returncode == 1
    assert "no data yet" in done.stderr
    assert not (tmp_path / "data").exists()  # looking created nothing


def _exported(project: Path, tmp_path: Path) -> tuple[Path, Path, dict[str, object]]:
    """A data folder with alice and bob (no server running), and an export of it."""
    data = tmp_path / "data"
    server = Server(project, data).start()
    try:
        fill(server)
    finally:
        server.stop()
    dest = tmp_path / "export"
    done = objectd("export", project, "--data-dir", data, dest)
    assert done.returncode == 0, done.stderr
    return data, dest, json.loads((dest / "manifest.json").read_text())


def _rewrite(dest: Path, manifest: dict[str, object]) -> None:
    (dest / "manifest.json").write_text(json.dumps(manifest))


def test_import_refuses_a_file_damaged_past_its_header(project: Path, tmp_path: Path) -> None:
    """The sha256 in the manifest only says the file is the one listed; PRAGMA
    quick_check says it is a sound database, before anything is written."""
    data, dest, manifest = _exported(project, tmp_path)
    entries: list[dict[str, str]] = manifest["objects"]  # type: ignore[assignment]
    victim = dest / entries[0]["file"]
    raw = bytearray(victim.read_bytes())
    page = int.from_bytes(raw[16:18], "big")
    raw[page:] = b"\xa5" * (len(raw) - page)
    victim.write_bytes(bytes(raw))
    entries[0]["sha256"] = hashlib.sha256(raw).hexdigest()
    _rewrite(dest, manifest)
    shutil.rmtree(data / "inspect" / "Notes")
    refused = objectd("import", project, "--data-dir", data, dest)
    assert refused.returncode == 1
    assert "not a sound SQLite file" in refused.stderr
    assert (data / "inspect").is_dir()
    assert not (data / "inspect" / "Notes").exists()  # nothing written, not even bob's


def test_import_takes_each_alarm_from_its_file_not_the_manifest(
    project: Path, tmp_path: Path
) -> None:
    data, dest, manifest = _exported(project, tmp_path)
    entries: list[dict[str, object]] = manifest["objects"]  # type: ignore[assignment]
    for entry in entries:  # both wrong: alice's alarm would never be indexed, so never run
        entry["alarm_ms"] = None if entry["name"] == "alice" else True
    _rewrite(dest, manifest)
    shutil.rmtree(data / "inspect" / "Notes")
    for index_file in (data / "inspect").glob("alarms.sqlite*"):
        index_file.unlink()
    done = objectd("import", project, "--data-dir", data, dest)
    assert done.returncode == 0, done.stderr
    alarms = inspect_json(project, data, "--alarms")["alarms"]  # type: ignore[index]
    assert [(a["name"], a["alarm_ms"]) for a in alarms] == [("alice", LATER_MS)]
