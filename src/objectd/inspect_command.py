"""``objectd inspect``, ``objectd export`` and ``objectd import`` (L4, issue 14 §2).

Where the data is read from.  A live object's file is locked by the one connection of
the server that holds it, and another process must never open it (it would fail, or
break that lock), so:

* when a server holds the data folder (its lock, ``runtime.data_lock``, is taken),
  these commands ask that server, through its admin API (``asgi.inspector``) at the
  address it wrote into the lock file, with the token from ``--admin-token`` or
  ``OBJECTD_ADMIN_TOKEN``;
* when none does, they take the lock themselves, so that no server can start while
  they read, and open the files read-only (``runtime.inspection.FolderInspector``).

``import`` writes, so it runs only on a folder no server holds, and refuses the whole
import before writing anything when an object's class is missing here, its id was
made under another namespace's secret (so the class here could never reach it), a
file does not match the manifest or is not fit to be the object
(``storage.inspection.check_object_file``: a damaged database, SQL tables for a
KV-backend class, triggers or views on objectd's tables), or an object exists already
(unless ``--replace``).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import os
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import httpx
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from objectd.config import load_project
from objectd.errors import ConfigError, DataFolderInUseError, InvalidIdError
from objectd.runtime import data_lock
from objectd.runtime.inspection import HEX_ID, FolderInspector, InspectError, read_classes
from objectd.storage import inspection
from objectd.storage.alarm_index import ALARM_INDEX_NAME, AlarmIndex
from objectd.storage.syncing import fsync_path

__all__ = ["export_command", "import_command", "inspect_command"]

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
_HTTP_TIMEOUT_S = 60.0
_SQLITE_HEADER = b"SQLite format 3\x00"


class Source:
    """Where the data is read from: a running server's API, or the files."""

    description = ""

    def get(self, what: str, **params: str) -> Any:
        raise NotImplementedError

    def snapshot(self, class_name: str, oid: str) -> bytes:
        raise NotImplementedError


class ServerSource(Source):
    def __init__(self, admin_url: str, token: str | None, pid: int | None) -> None:
        self.url = admin_url.rstrip("/") + "/api/"
        self.description = f"the server at {admin_url} (pid {pid})"
        headers = {"authorization": f"Bearer {token}"} if token else {}
        # trust_env=False: the admin API is on this machine, and a proxy from the
        # environment (HTTP_PROXY, ALL_PROXY) would see the token.
        self._http = httpx.Client(headers=headers, timeout=_HTTP_TIMEOUT_S, trust_env=False)

    def _fetch(self, what: str, params: dict[str, str]) -> httpx.Response:
        try:
            response = self._http.get(self.url + what, params=params)
        except httpx.HTTPError as exc:
            raise click.ClickException(f"{self.description} does not answer: {exc}") from None
        if response.status_code == 401:
            raise click.ClickException(
                f"{self.description} needs its admin token: pass --admin-token or set "
                "OBJECTD_ADMIN_TOKEN"
            )
        if response.status_code != 200:
            try:
                message = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                message = f"HTTP {response.status_code}: {response.text[:200]}"
            raise click.ClickException(message)
        return response

    def get(self, what: str, **params: str) -> Any:
        return self._fetch(what, params).json()

    def snapshot(self, class_name: str, oid: str) -> bytes:
        return self._fetch("snapshot", {"class": class_name, "id": oid}).content


class FolderSource(Source):
    def __init__(self, folder: Path) -> None:
        self.inspector = FolderInspector(folder)
        self.description = f"the files in {folder} (no server holds them)"

    def get(self, what: str, **params: str) -> Any:
        inspector = self.inspector
        calls = {
            "summary": lambda: inspector.summary(),
            "objects": lambda: inspector.objects(params["class"], search=params.get("search")),
            "ids": lambda: inspector.ids(params["class"]),
            "object": lambda: inspector.object(
                params["class"],
                params["id"],
                kv_prefix=params.get("kv_prefix", ""),
                kv_after=params.get("kv_after"),
            ),
            "query": lambda: inspector.query(params["class"], params["id"], params["sql"]),
            "alarms": lambda: inspector.alarms(),
        }
        try:
            return asyncio.run(calls[what]())
        except InspectError as exc:
            raise click.ClickException(str(exc)) from None

    def snapshot(self, class_name: str, oid: str) -> bytes:
        return asyncio.run(self.inspector.snapshot(class_name, oid))


def _script_folder(directory: Path, data_dir: Path | None, environment: str | None) -> Path:
    try:
        config = load_project(directory, env=environment)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    return data_lock.data_root(config, data_dir) / config.name


@contextmanager
def _source(folder: Path, token: str | None) -> Iterator[Source]:
    """The running server's API if one holds ``folder``, else the files, under its lock."""
    lock = data_lock.DataFolderLock(folder)
    try:
        taken = lock.acquire()
    except DataFolderInUseError:
        holder = data_lock.read_holder(folder)
        if holder.admin_url is None:
            raise click.ClickException(
                f"{folder}: a server (pid {holder.pid}) holds this data folder and has no "
                "admin pages: serve it with --admin-token (or use objectd dev), or stop it. "
                "Its live files are never opened from another process."
            ) from None
        yield ServerSource(holder.admin_url, token, holder.pid)
        return
    if not taken:
        raise click.ClickException(f"{folder}: no data yet (nothing has been stored)")
    try:
        yield FolderSource(folder)
    finally:
        lock.release()


def _common(function: Any) -> Any:
    options = [
        click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path)),
        click.option(
            "--data-dir",
            type=click.Path(file_okay=False, path_type=Path),
            help="The data folder the server uses [default: DIRECTORY/.objectd].",
        ),
        click.option("--env", "environment", help="Wrangler environment ([env.NAME])."),
        click.option(
            "--admin-token",
            envvar="OBJECTD_ADMIN_TOKEN",
            default=None,
            help="The running server's admin token (also OBJECTD_ADMIN_TOKEN).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


# -- inspect -------------------------------------------------------------------------------


@click.command("inspect")
@_common
@click.option("--class", "class_name", help="List this class's objects.")
@click.option("--object", "object_ref", help="Dump one object (an id, or the name it came from).")
@click.option("--sql", help="Run a read-only SQL query against --object.")
@click.option("--search", help="With --class: ids starting with, or names containing, this.")
@click.option("--prefix", default="", help="With --object: only KV keys starting with this.")
@click.option("--after", help="With --object: KV keys after this one (the next page).")
@click.option("--alarms", is_flag=True, help="List the stored alarms, soonest first.")
@click.option("--due", is_flag=True, help="With --alarms: only those whose time has come.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def inspect_command(
    directory: Path,
    data_dir: Path | None,
    environment: str | None,
    admin_token: str | None,
    class_name: str | None,
    object_ref: str | None,
    sql: str | None,
    search: str | None,
    prefix: str,
    after: str | None,
    alarms: bool,
    due: bool,
    as_json: bool,
) -> None:
    """Show what DIRECTORY's objects have stored: classes and objects, one object's KV
    pairs and tables, a read-only query, or the alarms.

    Reads through the admin API of the server that holds the data when one runs, else
    from the files.
    """
    if object_ref is not None and class_name is None:
        raise click.UsageError("--object needs --class")
    if sql is not None and object_ref is None:
        raise click.UsageError("--sql needs --class and --object")
    folder = _script_folder(directory.resolve(), data_dir, environment)
    console = Console(highlight=False)
    with _source(folder, admin_token) as source:
        click.echo(f"objectd: reading {source.description}", err=True)
        show: Callable[[Console, dict[str, Any]], None]
        if alarms or due:
            result = source.get("alarms")
            if due:
                result["alarms"] = [a for a in result["alarms"] if a["due"]]
            show = _show_alarms
        elif sql is not None:
            assert class_name is not None
            assert object_ref is not None
            result = source.get("query", **{"class": class_name, "id": object_ref, "sql": sql})
            show = _show_query
        elif object_ref is not None:
            assert class_name is not None
            params = {"class": class_name, "id": object_ref}
            if prefix:
                params["kv_prefix"] = prefix
            if after is not None:
                params["kv_after"] = after
            result = source.get("object", **params)
            show = _show_object
        elif class_name is not None:
            params = {"class": class_name, **({"search": search} if search else {})}
            result = source.get("objects", **params)
            show = _show_objects
        else:
            summary = source.get("summary")
            result = {
                **summary,
                "classes": [
                    {**c, **source.get("objects", **{"class": c["class"]})}
                    for c in summary["classes"]
                ],
            }
            show = _show_summary
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        show(console, result)


# C0 and C1 control characters and DEL: stored data holding them (ESC sequences) could
# retitle the terminal, move the cursor or hide lines; shown as \x.. instead.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _safe(value: Any) -> Text:
    """``value`` for the terminal: Text (never read as rich markup), controls escaped."""
    text = "" if value is None else str(value)
    return Text(_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text))


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=_safe(title), title_justify="left")
    for column in columns:
        table.add_column(_safe(column), overflow="fold")
    for row in rows:
        table.add_row(*(_safe(v) for v in row))
    return table


def _object_rows(objects: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [o["id"], o["name"], o["size"], o["last_write"], o["alarm"], o["sockets"]] for o in objects
    ]


_OBJECT_COLUMNS = ["id", "name", "bytes", "last write", "alarm", "sockets"]


def _show_summary(console: Console, result: dict[str, Any]) -> None:
    if not result["classes"]:
        console.print(Text(f"script {result['script']}: no classes"))
    for c in result["classes"]:
        title = f"{c['class']} ({c['backend']}): {len(c['objects'])} objects"
        console.print(_table(title, _OBJECT_COLUMNS, _object_rows(c["objects"])))


def _show_objects(console: Console, result: dict[str, Any]) -> None:
    title = f"{result['class']}: {len(result['objects'])} objects"
    console.print(_table(title, _OBJECT_COLUMNS, _object_rows(result["objects"])))
    if result["truncated"]:
        console.print(Text("(more objects than shown: narrow them with --search)"))


def _show_object(console: Console, item: dict[str, Any]) -> None:
    facts = [
        ["class", item["class"]],
        ["id", item["id"]],
        ["name", item["name"]],
        ["bytes", item["size"]],
        ["last write", item["last_write"]],
        ["alarm", item["alarm"]],
    ]
    console.print(_table("object", ["", ""], facts))
    kv_rows = [[kv["key"], kv["repr"], kv["size"]] for kv in item["kv"]]
    console.print(_table(f"KV: {len(kv_rows)} pairs", ["key", "value", "bytes"], kv_rows))
    if item["kv_truncated"] and item["kv"]:
        last = item["kv"][-1]["key"]
        console.print(Text(f"(more pairs: --after {json.dumps(last)} shows the next ones)"))
    for table in item["tables"]:
        title = f"table {table['name']}: {_counted(table)}"
        console.print(_table(title, table["columns"], table["rows"]))
    sockets = item.get("socket_list")
    if sockets:
        rows = [[s["state"], ", ".join(s["tags"])] for s in sockets]
        console.print(_table("live WebSockets", ["state", "tags"], rows))


def _counted(table: dict[str, Any]) -> str:
    """``3 rows``, and whether only some are shown; a table too slow to count says so."""
    count = table["count"]
    text = "? rows (too slow to count)" if count is None else f"{count} rows"
    if table.get("truncated"):
        text += f", the first {len(table['rows'])} shown"
    return text


def _show_query(console: Console, result: dict[str, Any]) -> None:
    console.print(_table(f"{len(result['rows'])} rows", result["columns"], result["rows"]))
    if result["truncated"]:
        console.print(Text("(more rows than shown)"))


def _show_alarms(console: Console, result: dict[str, Any]) -> None:
    rows = [
        [a["alarm"], "due" if a["due"] else "", a["class"], a["id"], a["name"]]
        for a in result["alarms"]
    ]
    if not rows:
        console.print(Text(f"no alarms (at {result['now']})"))
        return
    title = f"alarms at {result['now']}"
    console.print(_table(title, ["time", "", "class", "id", "name"], rows))


# -- export --------------------------------------------------------------------------------


@click.command("export")
@_common
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option("--class", "class_name", help="Only this class's objects.")
@click.option("--object", "object_ref", help="Only this object (needs --class).")
def export_command(
    directory: Path,
    data_dir: Path | None,
    environment: str | None,
    admin_token: str | None,
    dest: Path,
    class_name: str | None,
    object_ref: str | None,
) -> None:
    """Copy DIRECTORY's objects into DEST: one SQLite file each, and a manifest.json."""
    if object_ref is not None and class_name is None:
        raise click.UsageError("--object needs --class")
    if dest.exists() and any(dest.iterdir()):
        raise click.ClickException(f"{dest}: not empty; export into a new or empty folder")
    folder = _script_folder(directory.resolve(), data_dir, environment)
    with _source(folder, admin_token) as source:
        click.echo(f"objectd: reading {source.description}", err=True)
        summary = source.get("summary")
        known = [c["class"] for c in summary["classes"]]
        if class_name is not None and class_name not in known:
            script = summary["script"]
            raise click.ClickException(f"no class {class_name!r} in script {script!r}")
        chosen: list[tuple[str, str, str | None]] = []  # (class, id, name)
        if object_ref is not None:
            assert class_name is not None
            one = source.get("object", **{"class": class_name, "id": object_ref})
            chosen.append((class_name, one["id"], one["name"]))
        else:
            for name in known:
                if class_name is None or name == class_name:
                    listing = source.get("ids", **{"class": name})
                    names = listing["names"]
                    chosen.extend((name, oid, names.get(oid)) for oid in listing["ids"])
        dest.mkdir(parents=True, exist_ok=True)
        entries = []
        with Progress(console=Console(stderr=True)) as progress:
            task = progress.add_task("exporting", total=len(chosen))
            for object_class, oid, object_name in chosen:
                data = source.snapshot(object_class, oid)
                relative = f"{object_class}/{oid}.sqlite"
                target = dest / relative
                target.parent.mkdir(exist_ok=True)
                target.write_bytes(data)
                entries.append(
                    {
                        "class": object_class,
                        "id": oid,
                        "name": object_name,
                        "alarm_ms": _alarm_of(target),
                        "file": relative,
                        "bytes": len(data),
                        "sha256": hashlib.sha256(data).hexdigest(),
                    }
                )
                progress.advance(task)
    manifest = {
        "format": MANIFEST_FORMAT,
        "script": summary["script"],
        "exported_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "objects": entries,
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    click.echo(f"objectd: exported {len(entries)} objects to {dest}", err=True)


# -- import --------------------------------------------------------------------------------


@click.command("import")
@_common
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--replace", is_flag=True, help="Overwrite objects that exist here already.")
def import_command(
    directory: Path,
    data_dir: Path | None,
    environment: str | None,
    admin_token: str | None,
    source: Path,
    replace: bool,
) -> None:
    """Copy the objects exported into SOURCE into DIRECTORY's data folder.

    The data folder must not be in use by a server, and must have the objects' classes
    (serve the project once first).
    """
    folder = _script_folder(directory.resolve(), data_dir, environment)
    manifest = _read_manifest(source)
    lock = data_lock.DataFolderLock(folder)
    try:
        taken = lock.acquire()
    except DataFolderInUseError as exc:
        raise click.ClickException(f"{exc}; import writes, so it needs the folder free") from None
    if not taken or not read_classes(folder):
        lock.release()
        raise click.ClickException(
            f"{folder}: no classes here yet: serve the project once (objectd serve or dev) "
            "so that its migrations create them, stop it, then import"
        )
    try:
        plan = _check_import(folder, source, manifest, replace=replace)
        _write_import(folder, plan)
    finally:
        lock.release()
    click.echo(f"objectd: imported {len(plan)} objects into {folder}", err=True)


def _alarm_of(path: Path) -> int | None:
    """The alarm stored in an exported copy (its own file: nobody else has it open)."""
    with inspection.open_read_only(path) as conn:
        return inspection.stored_alarm(conn)


def _read_manifest(source: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{source / MANIFEST}: cannot read it: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise click.ClickException(
            f"{source / MANIFEST}: not a manifest of format {MANIFEST_FORMAT} "
            "(written by objectd export)"
        )
    objects = manifest.get("objects")
    if not isinstance(objects, list):
        raise click.ClickException(f'{source / MANIFEST}: "objects" must be a list')
    problems = []
    for number, entry in enumerate(objects, 1):
        problem = _entry_problem(entry)
        if problem is not None:
            problems.append(f"object {number}: {problem}")
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise click.ClickException(f"{source / MANIFEST}: nothing imported:\n  {shown}{more}")
    return manifest


def _entry_problem(entry: Any) -> str | None:
    """What is wrong with one manifest entry's shape, or None.  Its file must be where
    export puts it, ``CLASS/ID.sqlite`` in the export folder: never a path elsewhere."""
    if not isinstance(entry, dict):
        return "not a JSON object"
    for field in ("class", "id", "file", "sha256"):
        if not isinstance(entry.get(field), str):
            return f'"{field}" must be a string'
    if not HEX_ID.fullmatch(entry["id"]):
        return f'"id" must be 64 hex digits, not {entry["id"]!r}'
    if entry.get("name") is not None and not isinstance(entry["name"], str):
        return '"name" must be a string or null'
    if not entry["class"].isidentifier():
        return f'"class" is not a class name: {entry["class"]!r}'
    expected = f"{entry['class']}/{entry['id']}.sqlite"
    if entry["file"] != expected:
        return f'"file" must be "{expected}" (where objectd export puts it), not {entry["file"]!r}'
    return None


def _check_import(
    folder: Path, source: Path, manifest: dict[str, Any], *, replace: bool
) -> list[tuple[dict[str, Any], Path, Path, str]]:
    """Every object's (entry, file, target, alarm index key), or a refusal naming all
    that is wrong; nothing is written here."""
    classes = read_classes(folder)
    problems: list[str] = []
    plan = []
    for entry in manifest.get("objects", []):
        name, oid = entry.get("class"), entry.get("id")
        info = classes.get(name)
        if info is None:
            problems.append(f"{name}/{oid}: no class {name!r} here")
            continue
        try:
            info.minter.id_from_string(oid)
        except InvalidIdError:
            problems.append(
                f"{name}/{oid}: not an id of class {name} here (it was made under another "
                "namespace's secret, so this class could never reach it)"
            )
            continue
        file = source / entry["file"]
        try:
            data = file.read_bytes()
        except OSError as exc:
            problems.append(f"{name}/{oid}: {exc}")
            continue
        if hashlib.sha256(data).hexdigest() != entry.get("sha256") or not data.startswith(
            _SQLITE_HEADER
        ):
            problems.append(f"{name}/{oid}: {file} does not match the manifest")
            continue
        unfit = inspection.check_object_file(file, info.backend)
        if unfit:
            problems.extend(f"{name}/{oid}: {file}: {problem}" for problem in unfit)
            continue
        entry = {**entry, "alarm_ms": _alarm_of(file)}  # the file's own, not the manifest's
        target = info.directory / f"{oid}.sqlite"
        if target.exists() and not replace:
            problems.append(f"{name}/{oid}: exists here already (--replace overwrites it)")
            continue
        plan.append((entry, file, target, info.namespace_key))
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise click.ClickException(f"nothing imported:\n  {shown}{more}")
    return plan


def _write_import(folder: Path, plan: list[tuple[dict[str, Any], Path, Path, str]]) -> None:
    index = AlarmIndex(folder / ALARM_INDEX_NAME)
    try:
        with Progress(console=Console(stderr=True)) as progress:
            task = progress.add_task("importing", total=len(plan))
            for entry, file, target, namespace in plan:
                target.parent.mkdir(parents=True, exist_ok=True)
                temp = target.with_name(f".{target.name}.import")
                temp.write_bytes(file.read_bytes())
                with open(temp, "rb+") as handle:
                    os.fsync(handle.fileno())
                for stale in (f"{target}-wal", f"{target}-shm"):
                    if os.path.exists(stale):
                        os.unlink(stale)
                os.replace(temp, target)
                fsync_path(target.parent)
                alarm = entry.get("alarm_ms")
                if isinstance(alarm, int):
                    index.put(namespace, entry["id"], entry.get("name"), alarm, urgent=True)
                progress.advance(task)
        index.commit(sync=True)
    except (OSError, sqlite3.Error) as exc:
        raise click.ClickException(f"import failed: {exc}") from None
    finally:
        index.close()
