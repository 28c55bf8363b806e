"""What a script has stored, as plain JSON-ready dicts (issue 14 §2).

``objectd inspect``, ``objectd export`` and the web inspector all read through an
:class:`Inspector`, of one of two kinds:

* :class:`LiveInspector`, inside the server that holds the data (the admin API).  A
  live object is read through its own connection, between its events (the file is
  locked by that connection; a second one must never be opened, see
  ``storage.inspection``), after the committer has committed its open batch, so what
  is shown is what was committed.  A cold object (no file open in this process) is
  read through a read-only connection opened and closed without an ``await`` in
  between, so that no event of the object can open the file meanwhile; the alarm
  scheduler peeks at cold files the same way.
* :class:`FolderInspector`, when no server runs: the caller holds the data folder's
  lock (``runtime.data_lock``), so no server can start meanwhile, and every file is
  opened read-only.

Names: an id derived by ``id_from_name`` is a one-way hash, so an object's name is
known only where objectd kept it: for an object in the server's memory (``ctx.id.name``)
and for one with an alarm (the alarm index keeps it).
"""

from __future__ import annotations

import asyncio
import datetime
import re
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from objectd.errors import InvalidIdError
from objectd.ids import DurableObjectId, IdMinter
from objectd.runtime.alarms import minter_key, namespace_key
from objectd.runtime.migrations import METADATA_NAME
from objectd.storage import inspection as files
from objectd.storage.alarm_index import ALARM_INDEX_NAME
from objectd.storage.database import Backend
from objectd.storage.sql import installed_guard

if TYPE_CHECKING:
    from objectd.runtime.project import Project

__all__ = [
    "HEX_ID",
    "MAX_LIVE_SNAPSHOT_BYTES",
    "MAX_OBJECTS",
    "MAX_SHOWN",
    "ClassInfo",
    "FolderInspector",
    "InspectError",
    "Inspector",
    "LiveInspector",
    "ObjectNotFound",
    "read_classes",
]

T = TypeVar("T")
MAX_OBJECTS = 1_000  # objects one listing shows per class at most (then ``truncated``)
# What one object's page or dump shows of each value: KV values of up to
# files.MAX_VALUE_BYTES (encoded), and every repr or SQL value cut at MAX_SHOWN
# characters, so that 1,000 values of 2 MiB each make a page of megabytes, not gigabytes.
MAX_SHOWN = 4_096
# A running server copies an object for ``objectd export`` on its event loop, in memory:
# an object larger than this (page_count x page_size) is refused there, before any copy,
# and is exported from the files with the server stopped.
MAX_LIVE_SNAPSHOT_BYTES = 64 * 1024 * 1024
HEX_ID = re.compile(r"[0-9a-f]{64}")  # how an object id is written
_BUSY_ATTEMPTS = 50  # commits waited for before a live object's read is refused as busy
_BUSY_PAUSE_S = 0.02
_OPEN_WAIT_S = 10.0  # how long to wait for a live object's file to finish opening or closing
Reading = Callable[[sqlite3.Connection, Any], T]  # (connection, the authorizer to restore)


class InspectError(Exception):
    """A request the inspector cannot answer; ``status`` is its HTTP status."""

    status = 400


class ObjectNotFound(InspectError, LookupError):
    status = 404


class TooLarge(InspectError):
    status = 413


@dataclass(frozen=True, slots=True)
class ClassInfo:
    name: str
    backend: Backend
    directory: Path
    minter: IdMinter
    namespace_key: str  # the alarm index's key of the class (runtime.alarms.namespace_key)

    def stored_ids(self) -> list[str]:
        """The ids of the class's object files: names that are one of its ids (64 hex
        digits, made under its secret); any other file there is no object of it."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.glob("*.sqlite"):
            name = path.name.removesuffix(".sqlite")
            if not HEX_ID.fullmatch(name):
                continue
            try:
                self.minter.id_from_string(name)
            except InvalidIdError:
                continue
            found.append(name)
        return sorted(found)


def read_classes(folder: Path) -> dict[str, ClassInfo]:
    """The active classes of the script whose data folder is ``folder`` (read-only)."""
    path = folder / METADATA_NAME
    if not path.is_file():
        return {}
    uri = path.resolve().as_uri() + "?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=5, isolation_level=None)) as db:
        rows = db.execute(
            "SELECT name, backend, secret FROM classes WHERE state = 'active' ORDER BY name"
        ).fetchall()
    out = {}
    for name, backend, secret in rows:
        minter = IdMinter(bytes(secret))
        out[name] = ClassInfo(name, Backend(backend), folder / name, minter, minter_key(minter))
    return out


def render(value: Any) -> Any:
    """``value`` as JSON: JSON's own types as they are, anything else as its ``repr``."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [render(item) for item in value]
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {key: render(item) for key, item in value.items()}
    return repr(value)


def _cell(value: Any) -> Any:
    """A SQL value as JSON (BLOBs as SQL's hex literal), cut to MAX_SHOWN characters."""
    if isinstance(value, files.Cut):  # read only in part
        if isinstance(value.head, bytes):
            return f"x'{value.head[: MAX_SHOWN // 2].hex()}'… ({value.size} bytes)"
        return value.head[:MAX_SHOWN] + f"… ({value.size} characters)"
    if isinstance(value, bytes):
        shown = value[: MAX_SHOWN // 2].hex()
        return f"x'{shown}'" + (f"… ({len(value)} bytes)" if len(value) > MAX_SHOWN // 2 else "")
    if isinstance(value, str) and len(value) > MAX_SHOWN:
        return value[:MAX_SHOWN] + f"… ({len(value)} characters)"
    return value


def _kv(entry: files.KvEntry) -> dict[str, Any]:
    """A KV pair as JSON: the value itself when it is small, and its (cut) ``repr``."""
    if not entry.shown:
        text = f"({entry.size} bytes: too large to show here; objectd export copies it)"
    else:
        text = repr(entry.value)
        if len(text) > MAX_SHOWN:
            text = text[:MAX_SHOWN] + f"… ({entry.size} bytes stored)"
    return {
        "key": entry.key,
        "value": render(entry.value) if entry.shown else None,
        "value_shown": entry.shown,
        "repr": text,
        "size": entry.size,
        "undecodable": entry.undecodable,
    }


def _when(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Inspector:
    """Reads a script's objects; subclasses say how one object's file is reached."""

    def __init__(self, script: str, classes: dict[str, ClassInfo]) -> None:
        self.script = script
        self.classes = classes

    # -- how objects are reached (the two kinds) --------------------------------------

    async def _read(self, info: ClassInfo, object_id: DurableObjectId, read: Reading[T]) -> T:
        raise NotImplementedError

    def _indexed(self, info: ClassInfo) -> dict[str, str | None]:
        """The class's objects in the alarm index (every one with an alarm is), and their
        names where known."""
        raise NotImplementedError

    def _names(self, info: ClassInfo) -> dict[str, str]:
        """Names known for the class's object ids."""
        return {oid: name for oid, name in self._indexed(info).items() if name is not None}

    def _sockets(self, info: ClassInfo, object_id: str) -> list[dict[str, Any]] | None:
        """The object's live WebSockets; None where that cannot be known (no server)."""
        return None

    def now(self) -> float:
        return datetime.datetime.now(datetime.UTC).timestamp()

    # -- what is asked ------------------------------------------------------------------

    def _class(self, name: str) -> ClassInfo:
        info = self.classes.get(name)
        if info is None:
            known = ", ".join(self.classes) or "none"
            raise ObjectNotFound(f"no class {name!r} in script {self.script!r} (classes: {known})")
        return info

    def object_id(self, info: ClassInfo, text: str) -> DurableObjectId:
        """``text`` as one of the class's ids: 64 hex digits, or else a name (id_from_name)."""
        if HEX_ID.fullmatch(text):
            try:
                return info.minter.id_from_string(text)
            except InvalidIdError as exc:
                raise InspectError(f"{text}: not an id of class {info.name}: {exc}") from None
        return info.minter.id_from_name(text)

    async def summary(self) -> dict[str, Any]:
        classes = [
            {"class": info.name, "backend": info.backend.value, "objects": len(info.stored_ids())}
            for info in self.classes.values()
        ]
        return {"script": self.script, "classes": classes}

    async def objects(
        self, class_name: str, *, search: str | None = None, limit: int = MAX_OBJECTS
    ) -> dict[str, Any]:
        """The class's objects whose id starts with, or whose name contains, ``search``."""
        info = self._class(class_name)
        indexed = self._indexed(info)
        names = self._names(info)
        needle = (search or "").strip().lower()
        chosen = [
            oid
            for oid in info.stored_ids()
            if not needle or oid.startswith(needle) or needle in names.get(oid, "").lower()
        ]
        rows = [await self._describe(info, oid, names, indexed) for oid in chosen[:limit]]
        return {"class": info.name, "objects": rows, "truncated": len(chosen) > limit}

    async def ids(self, class_name: str) -> dict[str, Any]:
        """Every stored id of the class, and the names known (for export: no file is read)."""
        info = self._class(class_name)
        return {"class": info.name, "ids": info.stored_ids(), "names": self._names(info)}

    async def _describe(
        self,
        info: ClassInfo,
        oid: str,
        names: dict[str, str],
        indexed: dict[str, str | None] | None = None,
    ) -> dict[str, Any]:
        object_id = info.minter.id_from_string(oid)
        path = info.directory / f"{oid}.sqlite"
        stats = files.file_stats(path)
        alarm = None
        if indexed is None or oid in indexed:  # without an index row, it has no alarm
            alarm = await self._read(info, object_id, lambda conn, _: files.stored_alarm(conn))
        sockets = self._sockets(info, oid)
        return {
            "class": info.name,
            "id": oid,
            "name": names.get(oid),
            "size": stats.size,
            "last_write": _when(stats.last_write),
            "alarm": _when(alarm / 1000) if alarm is not None else None,
            "alarm_ms": alarm,
            "sockets": None if sockets is None else len(sockets),
        }

    async def object(
        self, class_name: str, text: str, *, kv_prefix: str = "", kv_after: str | None = None
    ) -> dict[str, Any]:
        """One object: its summary, KV pairs (decoded; those starting with ``kv_prefix``,
        after the key ``kv_after``), tables with their first rows, and sockets."""
        info = self._class(class_name)
        object_id = self.object_id(info, text)
        oid = object_id.to_string()
        if not (info.directory / f"{oid}.sqlite").exists():
            raise ObjectNotFound(f"class {info.name} has no stored object {oid}")
        names = self._names(info)
        if object_id.name is not None:
            names.setdefault(oid, object_id.name)
        summary = await self._describe(info, oid, names)

        def read(conn: sqlite3.Connection, _restore: Any) -> dict[str, Any]:
            kv, more = files.read_kv(conn, prefix=kv_prefix, after=kv_after)
            tables = files.read_tables(conn, value_chars=MAX_SHOWN)
            return {
                "kv": [_kv(entry) for entry in kv],
                "kv_truncated": more,
                "tables": [
                    {
                        "name": table.name,
                        "sql": table.sql,
                        "count": table.count,
                        "truncated": table.truncated,
                        "columns": table.columns,
                        "rows": [[_cell(v) for v in row] for row in table.rows],
                    }
                    for table in tables
                ],
            }

        details = await self._read(info, object_id, read)
        return {**summary, **details, "socket_list": self._sockets(info, oid)}

    async def query(self, class_name: str, text: str, sql: str) -> dict[str, Any]:
        """A read-only query against one object: its columns and first rows."""
        info = self._class(class_name)
        object_id = self.object_id(info, text)
        if not (info.directory / f"{object_id.to_string()}.sqlite").exists():
            raise ObjectNotFound(f"class {info.name} has no stored object {object_id}")

        def run(conn: sqlite3.Connection, restore: Any) -> files.QueryResult:
            try:
                return files.read_only_query(conn, sql, restore=restore)
            except sqlite3.DataError as exc:  # a value over files.QUERY_VALUE_BYTES
                raise InspectError(
                    f"query refused: {exc} (a query may not read or build a value over "
                    f"{files.QUERY_VALUE_BYTES} bytes; length(x) works on any)"
                ) from None
            except (sqlite3.Error, sqlite3.Warning) as exc:
                raise InspectError(f"query refused: {exc} (only reading is allowed)") from None

        result = await self._read(info, object_id, run)
        return {
            "class": info.name,
            "id": object_id.to_string(),
            "columns": result.columns,
            "rows": [[_cell(v) for v in row] for row in result.rows],
            "truncated": result.truncated,
        }

    async def alarms(self) -> dict[str, Any]:
        """Every stored alarm, soonest first; ``due``: its time has come."""
        now_ms = self.now() * 1000
        found: list[dict[str, Any]] = []
        for info in self.classes.values():
            names = self._names(info)
            stored = set(info.stored_ids())
            # Every object with an alarm has an index row (a row may be stale: the
            # object's own alarm decides).
            for oid in sorted(set(self._indexed(info)) & stored):
                object_id = info.minter.id_from_string(oid)
                ms = await self._read(info, object_id, lambda conn, _: files.stored_alarm(conn))
                if ms is not None:
                    found.append(
                        {
                            "class": info.name,
                            "id": oid,
                            "name": names.get(oid),
                            "alarm": _when(ms / 1000),
                            "alarm_ms": ms,
                            "due": ms <= now_ms,
                        }
                    )
        found.sort(key=lambda row: row["alarm_ms"])
        return {"now": _when(now_ms / 1000), "alarms": found}

    async def snapshot(self, class_name: str, oid: str) -> bytes:
        """The object's database as one SQLite file's bytes (committed state only)."""
        info = self._class(class_name)
        object_id = self.object_id(info, oid)
        return await self._read(info, object_id, lambda conn, _: files.snapshot(conn))


class FolderInspector(Inspector):
    """Reads the files of a data folder no server holds (the caller holds its lock)."""

    def __init__(self, script_folder: Path) -> None:
        super().__init__(script_folder.name, read_classes(script_folder))
        self.folder = script_folder
        self._index = self._read_index()

    def _read_index(self) -> dict[tuple[str, str], str | None]:
        path = self.folder / ALARM_INDEX_NAME
        if not path.is_file():
            return {}
        with files.open_read_only(path) as conn:
            rows = conn.execute("SELECT namespace, object_id, name FROM alarms").fetchall()
        return {(ns, oid): name for ns, oid, name in rows}

    def _indexed(self, info: ClassInfo) -> dict[str, str | None]:
        key = info.namespace_key
        return {oid: name for (ns, oid), name in self._index.items() if ns == key}

    async def _read(self, info: ClassInfo, object_id: DurableObjectId, read: Reading[T]) -> T:
        path = info.directory / f"{object_id.to_string()}.sqlite"
        if not path.exists():
            raise ObjectNotFound(f"class {info.name} has no stored object {object_id}")
        with files.open_read_only(path) as conn:
            return read(conn, None)


class LiveInspector(Inspector):
    """Reads the objects of the project this server serves (see the module docstring)."""

    def __init__(
        self, project: Project, *, max_snapshot_bytes: int = MAX_LIVE_SNAPSHOT_BYTES
    ) -> None:
        self.project = project
        self.max_snapshot_bytes = max_snapshot_bytes
        classes = {
            name: ClassInfo(oc.name, oc.backend, oc.directory, oc.minter, namespace_key(oc))
            for name, oc in sorted(project.classes.items())
        }
        super().__init__(project.config.name, classes)

    def now(self) -> float:
        return self.project.settings.clock.now()

    async def snapshot(self, class_name: str, oid: str) -> bytes:
        """As :meth:`Inspector.snapshot`, for objects up to ``max_snapshot_bytes``: the copy
        is made on the event loop, in memory, so a larger object is refused first."""
        info = self._class(class_name)
        object_id = self.object_id(info, oid)
        most = self.max_snapshot_bytes

        def copy(conn: sqlite3.Connection, _restore: Any) -> bytes:
            size = files.database_bytes(conn)
            if size > most:
                raise TooLarge(
                    f"{info.name} {object_id}: {size} bytes, more than a running server "
                    f"copies ({most} bytes, so as not to stall it): stop the server and "
                    "export from the files (objectd export reads them itself then)"
                )
            return files.snapshot(conn)

        return await self._read(info, object_id, copy)

    def _indexed(self, info: ClassInfo) -> dict[str, str | None]:
        oc = self.project.classes[info.name]
        return {} if oc.alarms is None else oc.alarms.indexed(oc)

    def _names(self, info: ClassInfo) -> dict[str, str]:
        names = super()._names(info)
        for object_id, host in self.project.classes[info.name].hosts.items():
            name = host.id.name or object_id.name
            if name is not None:
                names[object_id.to_string()] = name
        return names

    def _sockets(self, info: ClassInfo, object_id: str) -> list[dict[str, Any]] | None:
        oc = self.project.classes[info.name]
        host = oc.hosts.get(oc.minter.id_from_string(object_id))
        manager = None if host is None else host.websockets
        if manager is None:
            return []
        # The hibernatable sockets (accept_web_socket), newest first, with their tags;
        # then those on the standard API (ws.accept()), which have no tags.
        hibernatable = [
            {"tags": list(ws._tags), "state": ws.ready_state.name.lower(), "hibernatable": True}
            for ws in manager.sockets()
        ]
        standard = [
            {"tags": [], "state": ws.ready_state.name.lower(), "hibernatable": False}
            for ws in manager._pinned
        ]
        return hibernatable + standard

    async def _read(self, info: ClassInfo, object_id: DurableObjectId, read: Reading[T]) -> T:
        oc = self.project.classes[info.name]
        for _attempt in range(_BUSY_ATTEMPTS):
            host = oc.hosts.get(object_id)
            db = None if host is None else host._db
            if db is not None:
                if db.batch_open:  # this turn's writes: read once they are committed
                    await oc.committer.drain()
                    # Still open: a transaction() spanning an await; give it a moment.
                    await asyncio.sleep(0 if _attempt < 3 else _BUSY_PAUSE_S)
                    continue
                return read(db.conn, installed_guard(db))
            if host is not None and host.live:  # its file is being opened in a thread
                await _wait([host._ready])
                continue
            pending = oc.closing.get(object_id)
            if pending is not None:  # evicted: its file is being closed in a thread
                await _wait([pending])
                continue
            path = oc.object_path(object_id)
            if not path.exists():
                raise ObjectNotFound(f"class {info.name} has no stored object {object_id}")
            # No await from here to the close: no event of the object can open it meanwhile.
            with files.open_read_only(path) as conn:
                return read(conn, None)
        raise InspectError(
            f"object {object_id} of class {info.name} keeps writing; try again in a moment"
        )


async def _wait(futures: Iterable[Awaitable[Any] | None]) -> None:
    waiting = {asyncio.ensure_future(f) for f in futures if f is not None}
    if waiting:
        await asyncio.wait(waiting, timeout=_OPEN_WAIT_S)
    else:
        await asyncio.sleep(0)
