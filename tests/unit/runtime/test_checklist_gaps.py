"""Checklist items that had no test or did not hold (spec §16), in process on real files."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from runtime_kit import make_namespace

from objectd.runtime.objects import DurableObject


class Named(DurableObject):
    def my_name(self) -> str | None:
        return self.ctx.id.name

    def my_id(self) -> str:
        return self.ctx.id.to_string()


def test_038_ctx_id_name_whichever_stub_came_first(tmp_path: Path) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Named)
        named = ns.id_from_name("room-1")
        by_string = ns.get(ns.id_from_string(named.to_string()))
        # Reached by its string alone, the object cannot know a name yet (spec §1.2).
        assert await by_string.my_name() is None
        # Reached by name: the id carries the name, so ctx.id has it from now on,
        # also for calls that come through the string stub again.
        assert await ns.get(named).my_name() == "room-1"
        assert await by_string.my_name() == "room-1"
        assert await by_string.my_id() == named.to_string()
        host = ns._class.hosts[named]
        assert host.can_evict()
        host.evict()
        # After eviction, first again through the string, then by name.
        assert await by_string.my_name() is None
        assert await ns.get_by_name("room-1").my_name() == "room-1"
        await ns._class.close()
        # After a restart (a new runtime on the same files).
        again = make_namespace(tmp_path, Named)
        assert await again.get(again.id_from_string(named.to_string())).my_name() is None
        assert await again.get_by_name("room-1").my_name() == "room-1"
        # A unique id never has a name.
        assert await again.get(again.new_unique_id()).my_name() is None
        await again._class.close()

    asyncio.run(main())


def test_038_long_names_are_not_seen_inside(tmp_path: Path) -> None:
    """Names over 1,024 bytes reach the object with ``ctx.id.name`` unset (spec §1.2)."""

    async def main() -> None:
        ns = make_namespace(tmp_path, Named)
        long = "é" * 513  # 1,026 bytes in UTF-8
        stub = ns.get_by_name(long)
        assert stub.name == long  # the client side keeps it
        assert await stub.my_name() is None
        assert await ns.get_by_name("é" * 512).my_name() == "é" * 512
        await ns._class.close()

    asyncio.run(main())
