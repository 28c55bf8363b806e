"""runtime.inspection.LiveInspector inside a running runtime: it reads a live object through
its own connection and shows only committed writes (issue 14 §2)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from runtime_kit import make_namespace, run_in

from objectd.runtime import inspection
from objectd.runtime.inspection import InspectError, LiveInspector
from objectd.runtime.objects import DurableObject
from objectd.runtime.settings import RuntimeSettings


class Box(DurableObject):
    async def put(self, key: str, value: str) -> None:
        await self.ctx.storage.put(key, value)


def _inspector(ns: Any) -> LiveInspector:
    object_class = ns._class
    project = SimpleNamespace(
        classes={object_class.name: object_class},
        config=SimpleNamespace(name="script"),
        settings=RuntimeSettings(),
    )
    return LiveInspector(project)  # type: ignore[arg-type]


def _keys(item: dict[str, Any]) -> list[str]:
    return [kv["key"] for kv in item["kv"]]


def test_a_live_object_is_read_through_its_own_connection(tmp_path: Path) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Box)
        stub = ns.get_by_name("a")
        await stub.put("k", "v")
        inspector = _inspector(ns)
        host = ns._class.hosts[ns.id_from_name("a")]
        assert host.live  # its file is open: a second connection would fail ("locked")
        item = await inspector.object("Box", "a")
        assert item["kv"][0]["value"] == "v"
        assert item["name"] == "a"
        await stub.put("k2", "v2")  # the object goes on writing through its connection
        assert _keys(await inspector.object("Box", "a")) == ["k", "k2"]
        await ns._class.close()

    asyncio.run(main())


def test_writes_in_an_open_transaction_are_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction() that spans an await keeps its batch open: the inspector waits for
    it to commit, and says the object is busy rather than show writes that may roll back."""

    async def main() -> None:
        ns = make_namespace(tmp_path, Box)
        stub = ns.get_by_name("a")
        await stub.put("before", 1)
        release = asyncio.Event()

        async def inside(instance: Any) -> None:
            async def closure(txn: Any) -> None:
                await txn.put("during", 2)
                await release.wait()

            await instance.ctx.storage.transaction(closure)

        running = asyncio.ensure_future(run_in(stub, inside))
        host = ns._class.hosts[ns.id_from_name("a")]
        for _ in range(1000):  # until the transaction is open and waiting
            if host.storage is not None and host.storage.database.in_savepoint:
                break
            await asyncio.sleep(0)
        monkeypatch.setattr(inspection, "_BUSY_PAUSE_S", 0)
        inspector = _inspector(ns)
        with pytest.raises(InspectError, match="keeps writing"):
            await inspector.object("Box", "a")
        release.set()
        await running
        assert _keys(await inspector.object("Box", "a")) == ["before", "during"]
        await ns._class.close()

    asyncio.run(main())


def test_an_unknown_object_or_class_is_not_found(tmp_path: Path) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Box)
        await ns.get_by_name("a").put("k", "v")
        inspector = _inspector(ns)
        with pytest.raises(InspectError, match="no stored object"):
            await inspector.object("Box", "nobody")
        with pytest.raises(InspectError, match="no class 'Nope'"):
            await inspector.objects("Nope")
        foreign = "0" * 64
        with pytest.raises(InspectError, match="not an id of class Box"):
            await inspector.object("Box", foreign)
        assert not (tmp_path / "Box" / "nobody.sqlite").exists()
        await ns._class.close()

    asyncio.run(main())


def test_a_live_snapshot_larger_than_the_limit_is_refused_before_it_is_copied(
    tmp_path: Path,
) -> None:
    """api/snapshot copies the object on the server's event loop: past the limit
    (page_count x page_size, checked first) it says how to export instead."""

    async def main() -> None:
        ns = make_namespace(tmp_path, Box)
        stub = ns.get_by_name("a")
        await stub.put("small", "v")
        object_class = ns._class
        project = SimpleNamespace(
            classes={object_class.name: object_class},
            config=SimpleNamespace(name="script"),
            settings=RuntimeSettings(),
        )
        roomy = LiveInspector(project, max_snapshot_bytes=1024 * 1024)  # type: ignore[arg-type]
        data = await roomy.snapshot("Box", "a")
        assert data.startswith(b"SQLite format 3\x00")
        await stub.put("big", "x" * 300_000)
        tight = LiveInspector(project, max_snapshot_bytes=200_000)  # type: ignore[arg-type]
        with pytest.raises(InspectError, match="stop the server") as refused:
            await tight.snapshot("Box", "a")
        assert refused.value.status == 413
        assert "200000 bytes" in str(refused.value)
        assert inspection.MAX_LIVE_SNAPSHOT_BYTES == 64 * 1024 * 1024
        await object_class.close()

    asyncio.run(main())


class Notes(DurableObject):
    async def fill(self, tables: int, rows: int, size: int) -> None:
        sql = self.ctx.storage.sql
        for t in range(tables):
            sql.exec(f"CREATE TABLE n{t} (body TEXT, data BLOB)")
            for _ in range(rows):
                sql.exec(f"INSERT INTO n{t} VALUES (?, ?)", "x" * size, b"\0" * size)


def test_an_object_page_reads_each_value_only_in_part(tmp_path: Path) -> None:
    """A page shows MAX_SHOWN characters of a value; only that much is read, and the
    whole length is said."""

    async def main() -> None:
        ns = make_namespace(tmp_path, Notes)
        stub = ns.get_by_name("a")
        await stub.fill(2, 3, 100_000)
        item = await _inspector(ns).object("Notes", "a")
        first = item["tables"][0]
        assert (first["name"], first["count"], first["truncated"]) == ("n0", 3, False)
        text, blob = first["rows"][0]
        assert text == "x" * inspection.MAX_SHOWN + "… (100000 characters)"
        assert blob == "x'" + "00" * (inspection.MAX_SHOWN // 2) + "'… (100000 bytes)"
        await ns._class.close()

    asyncio.run(main())


def test_stray_files_in_a_class_folder_are_not_objects(tmp_path: Path) -> None:
    """A copy someone left next to the objects (``backup copy.sqlite``), or a file named
    like an id of another namespace, is neither listed nor read."""

    async def main() -> None:
        ns = make_namespace(tmp_path, Box)
        await ns.get_by_name("a").put("k", "v")
        real = ns.id_from_name("a").to_string()
        folder = ns._class.directory
        (folder / "backup copy.sqlite").write_bytes((folder / f"{real}.sqlite").read_bytes())
        (folder / ("ab" * 32 + ".sqlite")).write_bytes(b"")  # 64 hex digits, not its id
        (folder / (real.upper() + ".sqlite")).write_bytes(b"")
        inspector = _inspector(ns)
        assert (await inspector.ids("Box"))["ids"] == [real]
        listing = await inspector.objects("Box")
        assert [o["id"] for o in listing["objects"]] == [real]
        assert (await inspector.summary())["classes"][0]["objects"] == 1
        await ns._class.close()

    asyncio.run(main())
