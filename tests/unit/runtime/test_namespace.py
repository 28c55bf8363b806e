"""Namespaces and the Cloudflare alias table (spec §1, §14; checklist 11-15, 161-162)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from runtime_kit import make_namespace

from objectd.errors import ConfigError, DurableObjectRangeError, DurableObjectTypeError
from objectd.ids import LOCATION_HINTS
from objectd.runtime.namespace import DurableObjectStub
from objectd.runtime.objects import DurableObject, check_handler_spellings, find_handler


class Echo(DurableObject):
    def where(self) -> str:
        return self.ctx.id.to_string()


def test_011_get_by_name_is_get_of_id_from_name(tmp_path: Path) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Echo)
        a = await ns.get_by_name("n").where()
        b = await ns.get(ns.id_from_name("n")).where()
        assert a == b == ns.id_from_name("n").to_string()

    asyncio.run(main())


def test_012_013_jurisdiction(tmp_path: Path) -> None:
    ns = make_namespace(tmp_path, Echo)
    eu = ns.jurisdiction("eu")
    eu_id = eu.id_from_name("n")
    assert eu_id != ns.id_from_name("n")
    assert eu_id.jurisdiction == "eu"
    assert eu.get(eu_id).id == eu_id
    assert ns.get(eu_id).id == eu_id  # an unrestricted namespace accepts any jurisdiction
    with pytest.raises(TypeError, match="jurisdictional subnamespace with an ID from a different"):
        eu.get(ns.id_from_name("n"))
    with pytest.raises(DurableObjectTypeError, match="unknown jurisdiction 'mars'"):
        ns.jurisdiction("mars")
    assert ns.jurisdiction(None).id_from_name("n") == ns.id_from_name("n")
    assert ns.new_unique_id({"jurisdiction": "eu"}).jurisdiction == "eu"


def test_014_015_get_options(tmp_path: Path) -> None:
    ns = make_namespace(tmp_path, Echo)
    object_id = ns.id_from_name("n")
    with pytest.raises(DurableObjectRangeError, match="unknown routingMode: x"):
        ns.get(object_id, {"routingMode": "x"})
    assert ns.get(object_id, routing_mode="primary-only").id == object_id
    for hint in LOCATION_HINTS:
        assert ns.get(object_id, {"locationHint": hint}).id == object_id
        assert ns.get_by_name("n", location_hint=hint).id == object_id
    with pytest.raises(DurableObjectRangeError, match="unknown locationHint"):
        ns.get(object_id, location_hint="mars")
    with pytest.raises(DurableObjectTypeError, match="takes a DurableObjectId"):
        ns.get("n")  # type: ignore[arg-type]


def test_004_new_unique_id_round_trips(tmp_path: Path) -> None:
    ns = make_namespace(tmp_path, Echo)
    first, second = ns.new_unique_id(), ns.new_unique_id()
    assert first != second
    assert first.name is None
    assert ns.id_from_string(first.to_string()) == first


class BothSpellings(DurableObject):
    async def web_socket_message(self, ws: Any, message: Any) -> None: ...

    async def webSocketMessage(self, ws: Any, message: Any) -> None: ...


class CamelHandlers(DurableObject):
    async def webSocketClose(self, ws: Any, code: int, reason: str, clean: bool) -> None: ...


def test_162_handler_lookup_either_spelling() -> None:
    with pytest.raises(ConfigError, match="defines both web_socket_message"):
        check_handler_spellings(BothSpellings)
    check_handler_spellings(CamelHandlers)
    instance = CamelHandlers.__new__(CamelHandlers)
    assert find_handler(instance, "web_socket_close") is not None
    assert find_handler(instance, "alarm") is None


# Spec §14: every camelCase name Python Workers code calls, and its snake_case form.
# The camelCase aliases are checked against the classes' own names in tests/unit/test_aliases.py.


def test_stub_has_only_id_name_fetch_as_own_members(tmp_path: Path) -> None:
    stub = make_namespace(tmp_path, Echo).get_by_name("n")
    own = {name for name in (*vars(DurableObjectStub), *vars(stub)) if not name.startswith("_")}
    assert own == {"fetch", "id", "name"}  # any other public name is an RPC method
    assert stub.name == "n"
    with pytest.raises(AttributeError):
        stub.__missing_dunder__  # noqa: B018
