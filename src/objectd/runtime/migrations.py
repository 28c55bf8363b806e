"""Apply a script's ``migrations`` to the data folder, or refuse them (spec §10, checklist 153-159).

Data layout.  ``root`` is the data folder (``<project>/.objectd`` by default)::

    <root>/<script>/objectd.sqlite        metadata of script <script> (config.name)
    <root>/<script>/alarms.sqlite         its alarm index (storage.alarm_index)
    <root>/<script>/<ClassName>/          one folder per active class
    <root>/<script>/<ClassName>/<64-hex-id>.sqlite (+ -wal, -shm)   one file per object

The metadata database is plain sqlite3 in WAL mode with ``synchronous=FULL`` (it is
written rarely).  Table ``migrations`` holds the applied tags (``position`` from 0,
``tag``, ``applied_at``); table ``classes`` holds every class the script ever had:
``name``, ``backend`` (``kv``/``sqlite``), the 32-byte ``secret`` its object ids are
derived from, ``state`` (``active``/``deleted``/``transferred``), the ``tag`` that put
it in that state and, for a transferred class, the script it ``moved_to``.  Renames
and transfers keep the secret and backend, so existing ids stay valid (156, 158).

Refusing changes nothing.  Every pending migration, and the bindings and exports
of the result, are checked against an in-memory model before anything is written,
so a bad list leaves metadata and folders as they were.  (A foreign, non-empty
folder in the way of a class is only noticed when its tag is applied; earlier tags
stay applied then.)

Crash safety.  Each tag is applied under the metadata database's write lock
(``BEGIN IMMEDIATE``, which also serialises two processes starting the same
script): first the filesystem work, made durable with directory fsyncs, then one
commit that updates ``classes`` and records the tag.  Every step can be redone
after a crash: a folder already moved or deleted is left alone, and a transfer
marks the source class ``transferred`` (naming this script and tag) *before*
moving its folder, so the source script can no longer use it and a restart
recognises its own half-done transfer.  The source script of a transfer must not
be running while the transfer is applied.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import logging
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from objectd.config import Migration, ProjectConfig
from objectd.errors import MigrationError
from objectd.ids import new_namespace_secret
from objectd.storage.database import Backend
from objectd.storage.syncing import fsync_path

__all__ = ["METADATA_NAME", "ClassState", "apply_migrations"]

log = logging.getLogger("objectd")

METADATA_NAME = "objectd.sqlite"
_SCHEMA_VERSION = 1
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS migrations (position INTEGER PRIMARY KEY,"
    " tag TEXT NOT NULL UNIQUE, applied_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS classes (name TEXT PRIMARY KEY,"
    " backend TEXT NOT NULL CHECK (backend IN ('kv', 'sqlite')),"
    " secret BLOB NOT NULL CHECK (length(secret) = 32),"
    " state TEXT NOT NULL CHECK (state IN ('active', 'deleted', 'transferred')),"
    " tag TEXT, moved_to TEXT)",
)
_ACTIVE, _DELETED, _TRANSFERRED = "active", "deleted", "transferred"
_NEW = (("new_classes", Backend.KV), ("new_sqlite_classes", Backend.SQLITE))


@dataclass(frozen=True, slots=True)
class ClassState:
    """An active class of the script after migrations."""

    name: str
    backend: Backend  # KV for new_classes, SQLITE for new_sqlite_classes; never changes
    secret: bytes  # the namespace key its object ids are derived from
    directory: Path  # <root>/<script>/<name>/: its object files


@dataclass(frozen=True, slots=True)
class _Row:
    name: str
    backend: Backend
    secret: bytes
    state: str
    tag: str | None
    moved_to: str | None


def apply_migrations(
    config: ProjectConfig, exported: Mapping[str, type], root: Path
) -> dict[str, ClassState]:
    """Apply the pending migrations of ``config`` under ``root``; return the active classes.

    ``exported`` maps the names the main module exports to its classes.  Raises
    ``MigrationError`` (naming the wrangler file, ``migrations[i]`` and the tag) for a
    list that cannot be applied, a binding to a class that is not active, or an
    unexported class that still has objects; nothing is changed then.
    """
    root = Path(root)
    script_dir = root / _script_name(config, config.name, "name")
    db_path = script_dir / METADATA_NAME
    try:
        if not db_path.exists():
            # Check before creating anything, so a refusal leaves no trace.
            _validate(config, exported, root, [], {})
            if not config.migrations:
                return {}
            _create_metadata(db_path)
        with _connect(db_path) as db:
            while True:
                with _write_lock(db):
                    rows = _read_classes(db)
                    applied = [
                        tag for (tag,) in db.execute("SELECT tag FROM migrations ORDER BY position")
                    ]
                    pending = _validate(config, exported, root, applied, rows)
                    if not pending:
                        return {
                            row.name: ClassState(
                                row.name, row.backend, row.secret, script_dir / row.name
                            )
                            for row in rows.values()
                            if row.state == _ACTIVE
                        }
                    # One tag per lock: the next round re-reads what is recorded.
                    _apply(db, config, root, *pending[0])
    except (sqlite3.Error, OSError) as exc:
        raise MigrationError(f"{script_dir}: cannot apply migrations: {exc}") from exc


# --- validation against an in-memory model ----------------------------------------------


def _validate(
    config: ProjectConfig,
    exported: Mapping[str, type],
    root: Path,
    applied: list[str],
    rows: Mapping[str, _Row],
) -> list[tuple[int, Migration]]:
    """The pending ``(index, migration)`` pairs, after checking all of them and the result."""
    pending = _pending(config, applied, root)
    script_dir = root / config.name
    _check_applied(config, applied, rows, script_dir)
    # The model: the backend of every class that is active after each migration.
    active = {name: row.backend for name, row in rows.items() if row.state == _ACTIVE}
    sources: dict[tuple[str, str], _Row | None] = {}
    deleted_by: dict[str, str] = {}
    for index, migration in pending:
        at = functools.partial(_error, config, index, migration.tag)
        for key, backend in _NEW:
            for j, name in enumerate(getattr(migration, key)):
                if name in active:
                    raise at(
                        f"{key}[{j}]",
                        f"class {name!r} already exists ({active[name].value} backend); a "
                        "class is created once and its storage backend cannot change later",
                    )
                if name not in exported:
                    raise at(
                        f"{key}[{j}]",
                        f"Cannot apply new-class migration to class {name} that is not exported "
                        f"by script [code: 10070]. Export the class from {config.main.name} or "
                        "remove it from the migration.",
                    )
                active[name] = backend
        for j, rename in enumerate(migration.renamed_classes):
            where = f"renamed_classes[{j}]"
            old = active.pop(rename.from_name, None)
            if old is None:
                raise at(
                    where + ".from",
                    f"Cannot apply renamed_classes migration from non-existent class "
                    f"{rename.from_name}; only an active class of this script can be renamed",
                )
            if problem := _destination_problem(active, exported, rename.to, "renamed_classes"):
                raise at(where + ".to", problem)
            active[rename.to] = old
        for j, name in enumerate(migration.deleted_classes):
            if active.pop(name, None) is None:
                raise at(
                    f"deleted_classes[{j}]",
                    f"Cannot apply deleted_classes migration to non-existent class {name}",
                )
            deleted_by[name] = f"migrations[{index}].deleted_classes[{j}] (tag {migration.tag!r})"
        for j, move in enumerate(migration.transferred_classes):
            where = f"transferred_classes[{j}]"
            if move.from_script == config.name:
                raise at(
                    where + ".from_script",
                    f"{move.from_script!r} is this script; use renamed_classes within a script",
                )
            _script_name(config, move.from_script, f"migrations[{index}].{where}.from_script")
            source = (move.from_script, move.from_name)
            if source not in sources:
                sources[source] = _read_source(root, *source)
            row = sources[source]
            if row is None or not (row.state == _ACTIVE or _marked_for(row, config, migration)):
                raise at(
                    where + ".from",
                    f"Cannot apply transferred_classes migration from non-existent class "
                    f"{move.from_name} of script {move.from_script!r} (under {root}): "
                    + ("it was never created there" if row is None else f"it is {row.state}"),
                )
            if problem := _destination_problem(active, exported, move.to, "transferred_classes"):
                raise at(where + ".to", problem)
            # Gone from the source: a second transfer of it fails.
            sources[source] = replace(row, state=_TRANSFERRED, tag=None)
            active[move.to] = row.backend
    _check_result(config, exported, script_dir, active, deleted_by)
    return pending


def _error(config: ProjectConfig, index: int, tag: str, where: str, text: str) -> MigrationError:
    key = f"migrations[{index}]" + (f".{where}" if where else "")
    return MigrationError(f"{config.config_path}: {key} (tag {tag!r}): {text}")


def _destination_problem(
    active: Mapping[str, Backend], exported: Mapping[str, type], name: str, directive: str
) -> str | None:
    if name in active:
        return (
            f"Cannot apply {directive} migration to class {name} because it already exists; "
            "the destination must not be created beforehand"
        )
    if name not in exported:
        return (
            f"Cannot apply {directive} migration to class {name} that is not exported by "
            "script; the destination of a rename or transfer must be exported"
        )
    return None


def _marked_for(row: _Row, config: ProjectConfig, migration: Migration) -> bool:
    """True if ``row`` was marked transferred by this very migration (a half-done transfer)."""
    return (row.state, row.moved_to, row.tag) == (_TRANSFERRED, config.name, migration.tag)


def _pending(config: ProjectConfig, applied: list[str], root: Path) -> list[tuple[int, Migration]]:
    """Tags after the applied prefix; refuse if the applied tags are not that prefix (155)."""
    tags = [migration.tag for migration in config.migrations]
    if tags[: len(applied)] != applied:
        current = applied[-1]
        head = f"Migration tag precondition failed; current tag is {current} [code: 10079]."
        shown = ", ".join(map(repr, applied))
        for index, (tag, done) in enumerate(zip(tags, applied, strict=False)):
            if tag != done:
                raise MigrationError(
                    f"{config.config_path}: migrations[{index}] (tag {tag!r}): {head} "
                    f"{root / config.name} has applied tags [{shown}], and migration {index} "
                    f"there is {done!r}; applied migrations must stay first in the list, in "
                    "order and unchanged, with new ones added after them"
                )
        raise MigrationError(
            f"{config.config_path}: migrations: {head} {root / config.name} has applied tags "
            f"[{shown}] but the file lists only {len(tags)}; tag {applied[len(tags)]!r} "
            "(and any after it) is missing: applied migrations cannot be removed"
        )
    return [(i, config.migrations[i]) for i in range(len(applied), len(tags))]


def _check_applied(
    config: ProjectConfig, applied: list[str], rows: Mapping[str, _Row], script_dir: Path
) -> None:
    """Refuse an applied migration edited since it was applied (155).

    An applied tag is never applied again, so an edit to it would silently do nothing and
    surface later as a puzzling binding or export error.  The metadata keeps the tags and
    their result (the ``classes`` rows), not the migrations' text: replaying the file's
    applied migrations must give the classes recorded.  Edits that change no class (order,
    formatting) pass.  A class another script took over (``transferred``) is not compared.
    """
    expected: dict[str, Backend | None] = {}  # None: a transfer keeps the source's backend
    touched_by: dict[str, int] = {}  # the last applied migration of the file naming a class
    for index, migration in enumerate(config.migrations[: len(applied)]):
        for key, backend in _NEW:
            for name in getattr(migration, key):
                expected[name], touched_by[name] = backend, index
        for rename in migration.renamed_classes:
            expected[rename.to] = expected.pop(rename.from_name, None)
            touched_by[rename.from_name] = touched_by[rename.to] = index
        for name in migration.deleted_classes:
            expected.pop(name, None)
            touched_by[name] = index
        for move in migration.transferred_classes:
            expected[move.to], touched_by[move.to] = None, index
    recorded = {name: row.backend for name, row in rows.items() if row.state == _ACTIVE}
    moved_away = {name for name, row in rows.items() if row.state == _TRANSFERRED}
    missing = sorted(recorded.keys() - expected.keys())
    extra = sorted(expected.keys() - recorded.keys() - moved_away)
    changed = sorted(
        name
        for name in expected.keys() & recorded.keys()
        if expected[name] not in (None, recorded[name])
    )
    if not (missing or extra or changed):
        return
    # The edited tag: for a recorded class, the tag that put it in its state; else the
    # file's last applied migration that names it.
    candidates = []
    for name in (*missing, *extra, *changed):
        row = rows.get(name)
        if row is not None and row.tag in applied:
            candidates.append(applied.index(row.tag))
        elif name in touched_by:
            candidates.append(touched_by[name])
    index = min(candidates, default=len(applied) - 1)
    tag = applied[index]
    text = (
        f"migration {tag!r} was applied to {script_dir} with different contents: the data "
        f"folder has {_classes(recorded)}, but the file's applied migrations now give "
        f"{_classes(expected)}. An applied migration is never applied again, so editing it "
        f"changes nothing: restore {tag!r} as it was applied"
    )
    advice = [
        f"class {name} is {recorded[name].value} in the data folder, and a class's storage "
        "backend cannot change"
        for name in changed
    ]
    step = f"make the change in a new migration: {_directive(config, 'tag', _next_tag(config))}, "
    if missing and extra:
        renames = [{"from": old, "to": new} for old, new in zip(missing, extra, strict=False)]
        advice.append(step + _directive(config, "renamed_classes", renames))
    elif extra:
        key = "new_classes" if expected[extra[0]] is Backend.KV else "new_sqlite_classes"
        advice.append(step + _directive(config, key, extra))
    elif missing:
        advice.append(step + _directive(config, "deleted_classes", missing))
    raise _error(config, index, tag, "", "; ".join([text, *advice]))


def _classes(classes: Mapping[str, Backend | None]) -> str:
    if not classes:
        return "no class"
    shown = [name if b is None else f"{name} ({b.value})" for name, b in sorted(classes.items())]
    return ("class " if len(shown) == 1 else "classes ") + ", ".join(shown)


def _next_tag(config: ProjectConfig) -> str:
    """A tag after the file's last one, for advice: "v1" -> "v2"."""
    tags = {migration.tag for migration in config.migrations}
    last = config.migrations[-1].tag if config.migrations else "v0"
    match = re.fullmatch(r"(.*?)([0-9]+)", last)
    prefix, number = (match[1], int(match[2])) if match else (last + "-", 1)
    while f"{prefix}{number + 1}" in tags:
        number += 1
    return f"{prefix}{number + 1}"


def _directive(config: ProjectConfig, key: str, value: object) -> str:
    """``key = value`` as the user's wrangler file spells it (TOML or JSON)."""
    if config.config_path.suffix != ".toml":
        return f"{json.dumps(key)}: {json.dumps(value)}"

    def toml(item: object) -> str:
        if isinstance(item, dict):
            return "{" + ", ".join(f"{k} = {toml(v)}" for k, v in item.items()) + "}"
        if isinstance(item, list):
            return "[" + ", ".join(map(toml, item)) + "]"
        return json.dumps(item)

    return f"{key} = {toml(value)}"


def _check_result(
    config: ProjectConfig,
    exported: Mapping[str, type],
    script_dir: Path,
    active: Mapping[str, Backend],
    deleted_by: Mapping[str, str],
) -> None:
    """Bindings name active, exported classes (153, 157); unexported ones hold no objects (159)."""
    prefix = f"env.{config.environment}." if config.environment else ""
    for index, binding in enumerate(config.durable_objects):
        name = binding.class_name
        where = f"{config.config_path}: {prefix}durable_objects.bindings[{index}] ({binding.name})"
        if binding.script_name not in (None, config.name):
            continue  # a class of another script: not ours to check
        if name in deleted_by and name not in active:
            raise MigrationError(
                f"{config.config_path}: {deleted_by[name]}: Cannot apply --delete-class migration "
                f"to class '{name}' without also removing the binding that references it. "
                f"[code: 10061] The binding is {prefix}durable_objects.bindings[{index}] "
                f"({binding.name})."
            )
        if name not in active:
            raise MigrationError(
                f"{where}: Cannot create binding for class '{name}' because it is not currently "
                "configured to implement Durable Objects. [code: 10061] Add a migration with "
                f"{_directive(config, 'new_sqlite_classes', [name])} (or rename/transfer a "
                "class to it)."
            )
        if name not in exported:
            raise MigrationError(
                f"{where}: class {name!r} is bound but not exported by {config.main.name}"
            )
    # Renamed and transferred classes are exported (checked above) and new ones are
    # empty, so only a class the pending migrations leave alone can have objects here.
    for name in sorted(active):
        folder = script_dir / name
        if name not in exported and folder.is_dir() and any(folder.glob("*.sqlite")):
            raise MigrationError(
                f"{config.config_path}: New version of script does not export class '{name}' "
                "which is depended on by existing Durable Objects. Did you forget to export it "
                "or did you want to delete it? Use a delete-class migration. [code: 10064] "
                f"({config.main.name} has no class {name})"
            )


# --- applying one tag ---------------------------------------------------------------------


def _apply(
    db: sqlite3.Connection, config: ProjectConfig, root: Path, index: int, migration: Migration
) -> None:
    """Do the filesystem work of ``migration``, then stage its rows and its tag (caller commits)."""
    script_dir = root / config.name
    tag = migration.tag
    _check_disk(config, root, index, migration)
    for key, backend in _NEW:
        for name in getattr(migration, key):
            # A redo after a crash finds the empty folder and mints a new secret: harmless,
            # no object can have been created before the tag was recorded.
            (script_dir / name).mkdir(exist_ok=True)
            db.execute(
                "INSERT OR REPLACE INTO classes VALUES (?, ?, ?, ?, ?, NULL)",
                (name, backend.value, new_namespace_secret(), _ACTIVE, tag),
            )
    for rename in migration.renamed_classes:
        _move(script_dir / rename.from_name, script_dir / rename.to)
        db.execute("DELETE FROM classes WHERE name = ?", (rename.to,))  # an old, inactive row
        update = "UPDATE classes SET name = ?, tag = ? WHERE name = ?"
        db.execute(update, (rename.to, tag, rename.from_name))
    for name in migration.deleted_classes:
        if (script_dir / name).exists():
            shutil.rmtree(script_dir / name)
        db.execute("UPDATE classes SET state = ?, tag = ? WHERE name = ?", (_DELETED, tag, name))
    for move in migration.transferred_classes:
        row = _mark_transferred(config, root, index, migration, move.from_script, move.from_name)
        _move(root / move.from_script / move.from_name, script_dir / move.to)
        db.execute(
            "INSERT OR REPLACE INTO classes VALUES (?, ?, ?, ?, ?, NULL)",
            (move.to, row.backend.value, row.secret, _ACTIVE, tag),
        )
    _sync_dir(script_dir)
    applied_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    db.execute("INSERT INTO migrations VALUES (?, ?, ?)", (index, tag, applied_at))
    log.info("%s: applied migration %r (migrations[%d])", config.name, tag, index)


def _check_disk(config: ProjectConfig, root: Path, index: int, migration: Migration) -> None:
    """Refuse, before touching anything, a destination folder that holds someone else's files."""
    script_dir = root / config.name
    moves: list[tuple[Path | None, str]] = [
        (None, n) for k, _ in _NEW for n in getattr(migration, k)
    ]
    moves += [(script_dir / r.from_name, r.to) for r in migration.renamed_classes]
    moves += [(root / t.from_script / t.from_name, t.to) for t in migration.transferred_classes]
    for source, name in moves:
        target = script_dir / name
        # A full destination whose source is gone is a move done before a crash: redo.
        if (source is None or source.exists()) and target.is_dir() and any(target.iterdir()):
            problem = f"{target} already holds files, but no active class {name!r} owns them"
            raise _error(config, index, migration.tag, "", problem + "; move that folder away")


def _move(source: Path, target: Path) -> None:
    """Move a class folder; a redo finds it already moved (or never created) and goes on."""
    if source.exists():
        if target.exists():
            target.rmdir()  # empty (_check_disk): left by an earlier crashed attempt
        os.replace(source, target)  # atomic within the data folder
        _sync_dir(source.parent)
    else:
        target.mkdir(exist_ok=True)
    _sync_dir(target.parent)


def _mark_transferred(
    config: ProjectConfig, root: Path, index: int, migration: Migration, script: str, name: str
) -> _Row:
    """Mark the source class transferred to this script (before its folder moves); its row."""
    with _connect(root / script / METADATA_NAME) as db, _write_lock(db):
        row = _read_classes(db).get(name)
        if row is not None and _marked_for(row, config, migration):
            return row  # marked by an attempt that crashed later
        if row is None or row.state != _ACTIVE:
            problem = f"class {name} of script {script!r} changed during the transfer; try again"
            raise _error(config, index, migration.tag, "transferred_classes", problem)
        db.execute(
            "UPDATE classes SET state = ?, tag = ?, moved_to = ? WHERE name = ?",
            (_TRANSFERRED, migration.tag, config.name, name),
        )
        return row


# --- files and the metadata database --------------------------------------------------------


def _script_name(config: ProjectConfig, name: str, key: str) -> str:
    """``name`` as a single folder name under the data folder."""
    if name in ("", ".", "..") or any(c in name for c in "/\\\0:"):
        raise MigrationError(
            f"{config.config_path}: {key}: script name {name!r} cannot be a folder name in the "
            "data folder; use letters, digits, '-', '_' or '.'"
        )
    return name


def _sync_dir(path: Path) -> None:
    """Make renames, creations and removals in ``path`` durable (POSIX; a no-op elsewhere)."""
    if os.name == "posix":
        fsync_path(path)


def _create_metadata(path: Path) -> None:
    """Create the metadata database atomically, so that concurrent starts see all or nothing.

    Switching a new file to WAL races with a second opener (SQLite reports "database is
    locked" without waiting), so the file is built aside and hard-linked into place.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".objectd-", suffix=".sqlite", dir=path.parent)
    os.close(fd)
    try:
        with closing(sqlite3.connect(name, isolation_level=None)) as db:
            db.execute("PRAGMA journal_mode = WAL")  # persistent: stored in the file
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        with contextlib.suppress(FileExistsError):  # another process was first
            os.link(name, path)
        _sync_dir(path.parent)
    finally:
        os.unlink(name)


@contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    uri = f"{path.resolve().as_uri()}?mode=rw"  # never creates: see _create_metadata
    with closing(sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)) as db:
        db.execute("PRAGMA synchronous = FULL")
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version > _SCHEMA_VERSION:  # there are no downgrades
            raise MigrationError(
                f"{path}: data format {version} is newer than this objectd's "
                f"({_SCHEMA_VERSION}): a newer objectd wrote this data folder; run that version"
            )
        if version != _SCHEMA_VERSION:
            raise MigrationError(
                f"{path}: metadata schema {version} is not the one this objectd "
                f"understands ({_SCHEMA_VERSION}); use a matching objectd"
            )
        yield db


@contextmanager
def _write_lock(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: committed if the block finishes, rolled back if it raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.in_transaction:  # SQLite may have rolled back already (e.g. disk full)
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _read_classes(db: sqlite3.Connection) -> dict[str, _Row]:
    rows = db.execute("SELECT name, backend, secret, state, tag, moved_to FROM classes")
    return {
        name: _Row(name, Backend(backend), bytes(secret), state, tag, moved_to)
        for name, backend, secret, state, tag, moved_to in rows
    }


def _read_source(root: Path, script: str, name: str) -> _Row | None:
    """Class ``name`` of another script sharing ``root``, or None if it has no such class."""
    path = root / script / METADATA_NAME
    if not path.is_file():
        return None
    with _connect(path) as db:
        return _read_classes(db).get(name)
