"""``objectd export`` and ``objectd import`` (L4, issue 14 §2): objects as SQLite files plus
a manifest, read through :mod:`objectd.data_source`.

``import`` writes, so it runs only on a folder no server holds, and refuses the whole
import before writing anything when an object's class is missing here, its id was
made under another namespace's secret (so the class here could never reach it), a
file does not match the manifest or is not fit to be the object
(``storage.inspection.check_object_file``: a damaged database, SQL tables for a
KV-backend class, triggers or views on objectd's tables), or an object exists already
(unless ``--replace``).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import Progress

from objectd.data_source import common_options, open_source, script_folder
from objectd.errors import DataFolderInUseError, InvalidIdError
from objectd.runtime import data_lock
from objectd.runtime.inspection import HEX_ID, read_classes
from objectd.storage import inspection
from objectd.storage.alarm_index import ALARM_INDEX_NAME, AlarmIndex
from objectd.storage.syncing import fsync_path

__all__ = ["MANIFEST", "MANIFEST_FORMAT", "export_command", "import_command"]

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
_SQLITE_HEADER = b"SQLite format 3\x00"


# -- export --------------------------------------------------------------------------------


@click.command("export")
@common_options
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
    folder = script_folder(directory.resolve(), data_dir, environment)
    with open_source(folder, admin_token) as source:
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
@common_options
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
    folder = script_folder(directory.resolve(), data_dir, environment)
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
