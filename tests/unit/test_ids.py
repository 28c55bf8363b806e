"""Durable Object ids (spec §1, checklist 1-10 and 12)."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable

import pytest

from objectd import ids
from objectd.errors import DurableObjectTypeError, InvalidIdError
from objectd.ids import (
    JURISDICTIONS,
    LOCATION_HINTS,
    DurableObjectId,
    IdMinter,
    new_namespace_secret,
)

HEX64 = re.compile(r"[0-9a-f]{64}")


@pytest.fixture
def minter() -> IdMinter:
    return IdMinter(b"namespace-a-secret")


def test_constants_match_the_spec() -> None:
    assert JURISDICTIONS == ("eu", "fedramp", "fedramp-high", "us")
    hints = "wnam enam sam weur eeur apac apac-ne apac-se oc afr me"
    assert hints.split() == list(LOCATION_HINTS)


def test_id_from_name_is_deterministic(minter: IdMinter) -> None:  # checklist 1
    first = minter.id_from_name("room-1")
    assert first == minter.id_from_name("room-1")
    assert first.to_string() == minter.id_from_name("room-1").to_string()
    assert first == IdMinter(b"namespace-a-secret").id_from_name("room-1")


def test_id_from_name_differs_between_namespaces(minter: IdMinter) -> None:  # checklist 2
    other = IdMinter(b"namespace-b-secret")
    assert minter.id_from_name("room-1") != other.id_from_name("room-1")
    assert minter.id_from_name("room-1") != minter.id_from_name("room-2")


def test_name_is_kept_for_named_ids_only(minter: IdMinter) -> None:  # checklist 3
    assert minter.id_from_name("room-1").name == "room-1"
    assert minter.new_unique_id().name is None
    assert minter.id_from_name("").name == ""


def test_new_unique_id_differs_each_call(minter: IdMinter) -> None:  # checklist 4
    ids = {minter.new_unique_id() for _ in range(100)}
    assert len(ids) == 100


def test_to_string_is_64_lower_case_hex(minter: IdMinter) -> None:  # checklist 5
    for id_ in (minter.id_from_name("x"), minter.new_unique_id()):
        text = id_.to_string()
        assert HEX64.fullmatch(text)
        assert str(id_) == text == id_.toString() == id_.raw.hex()
        assert len(id_.raw) == 32
        assert text in repr(id_)
    assert "name='x'" in repr(minter.id_from_name("x"))


def test_id_from_string_round_trips(minter: IdMinter) -> None:  # checklist 6
    for id_ in (minter.id_from_name("x"), minter.new_unique_id()):
        parsed = minter.id_from_string(id_.to_string())
        assert parsed.equals(id_)
        assert parsed == id_
        assert hash(parsed) == hash(id_)


def test_id_from_string_accepts_upper_case_hex(minter: IdMinter) -> None:  # checklist 6
    id_ = minter.id_from_name("x")
    assert minter.id_from_string(id_.to_string().upper()) == id_


def test_id_from_string_has_no_name(minter: IdMinter) -> None:  # checklist 7
    assert minter.id_from_string(minter.id_from_name("x").to_string()).name is None


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "abc",
        "0" * 63,
        "0" * 65,
        "g" * 64,
        "0" * 62 + " 0",
        " " + "0" * 63,
        "０" * 64,  # full-width digits are not hex
        123,
        None,
        b"0" * 64,
    ],
)
def test_id_from_string_rejects_malformed(minter: IdMinter, bad: object) -> None:  # checklist 8
    with pytest.raises(InvalidIdError, match=r"^Invalid Durable Object ID: must be 64 hex digits$"):
        minter.id_from_string(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        minter.id_from_string(bad)  # type: ignore[arg-type]


def test_id_from_string_rejects_foreign_ids(minter: IdMinter) -> None:  # checklist 9
    foreign = IdMinter(b"namespace-b-secret").id_from_name("x").to_string()
    with pytest.raises(
        InvalidIdError, match=r"^Durable Object ID is not valid for this namespace\.$"
    ):
        minter.id_from_string(foreign)
    tampered = minter.id_from_name("x").to_string()
    tampered = tampered[:-1] + ("0" if tampered[-1] != "0" else "1")
    with pytest.raises(TypeError, match="not valid for this namespace"):
        minter.id_from_string(tampered)


def test_equals_compares_bytes_not_identity(minter: IdMinter) -> None:  # checklist 10
    named = minter.id_from_name("x")
    parsed = minter.id_from_string(named.to_string())
    assert named is not parsed
    assert named.equals(parsed)
    assert named == parsed  # the name differs (x vs None) but is not compared
    assert not named.equals(minter.id_from_name("y"))
    text: object = "not an id"
    assert named != text
    with pytest.raises(DurableObjectTypeError, match="needs a DurableObjectId"):
        named.equals(named.to_string())  # type: ignore[arg-type]


def test_plain_ids_follow_workerd_algorithm() -> None:  # spec §1.3
    secret = b"unique-key"
    key = hashlib.sha256(secret).digest()
    base = hmac.new(key, b"foo", "sha256").digest()[:16]
    mac = hmac.new(key, base, "sha256").digest()[:16]
    assert IdMinter(secret).id_from_name("foo").raw == base + mac


@pytest.mark.parametrize("jurisdiction", JURISDICTIONS)
def test_jurisdiction_changes_named_ids(minter: IdMinter, jurisdiction: str) -> None:
    # checklist 12
    plain = minter.id_from_name("room")
    restricted = minter.id_from_name("room", jurisdiction=jurisdiction)
    assert restricted != plain
    assert restricted.jurisdiction == jurisdiction
    assert restricted.name == "room"
    assert plain.jurisdiction is None
    assert restricted == minter.id_from_name("room", jurisdiction=jurisdiction)
    assert f"jurisdiction={jurisdiction!r}" in repr(restricted)


def test_jurisdictions_give_distinct_ids(minter: IdMinter) -> None:  # checklist 12
    ids = {minter.id_from_name("room", jurisdiction=j) for j in (None, *JURISDICTIONS)}
    assert len(ids) == len(JURISDICTIONS) + 1


def test_id_from_string_recovers_jurisdiction(minter: IdMinter) -> None:  # checklist 12
    for id_ in (
        minter.id_from_name("room", jurisdiction="eu"),
        minter.new_unique_id(jurisdiction="fedramp-high"),
    ):
        parsed = minter.id_from_string(id_.to_string())
        assert parsed == id_
        assert parsed.jurisdiction == id_.jurisdiction
        assert minter.id_from_string(id_.to_string(), jurisdiction=id_.jurisdiction) == id_


def test_restricted_namespace_refuses_other_jurisdictions(minter: IdMinter) -> None:
    eu = minter.id_from_name("room", jurisdiction="eu").to_string()
    plain = minter.id_from_name("room").to_string()
    for text in (eu, plain):
        with pytest.raises(InvalidIdError, match="not valid for this namespace"):
            minter.id_from_string(text, jurisdiction="us")


def test_unknown_jurisdiction_is_refused(minter: IdMinter) -> None:
    calls: tuple[Callable[[], object], ...] = (
        lambda: minter.id_from_name("x", jurisdiction="mars"),
        lambda: minter.new_unique_id(jurisdiction="EU"),
        lambda: minter.id_from_string("0" * 64, jurisdiction="mars"),
        lambda: minter.new_unique_id(jurisdiction=1),  # type: ignore[arg-type]
    )
    for call in calls:
        with pytest.raises(DurableObjectTypeError, match=r"unknown jurisdiction .*eu, fedramp"):
            call()


def test_name_must_be_str(minter: IdMinter) -> None:
    with pytest.raises(DurableObjectTypeError, match="needs a str name, got int"):
        minter.id_from_name(5)  # type: ignore[arg-type]


def test_names_with_odd_characters(minter: IdMinter) -> None:
    names = ["\x00", "\ud800", "\udfff", "é", "e\u0301", "\xff", "a" * 5000]
    ids = [minter.id_from_name(n) for n in names]
    assert len(set(ids)) == len(names)


def test_ids_are_immutable(minter: IdMinter) -> None:
    id_ = minter.id_from_name("x")
    with pytest.raises(AttributeError):
        id_.name = "y"  # type: ignore[misc]
    with pytest.raises(DurableObjectTypeError):
        DurableObjectId(b"short")


def test_minter_checks_and_hides_secret() -> None:
    secret = new_namespace_secret()
    assert isinstance(secret, bytes)
    assert len(secret) == 32
    assert secret != new_namespace_secret()
    assert secret.hex() not in repr(IdMinter(secret))
    for bad in (b"", "text", None):
        with pytest.raises(DurableObjectTypeError, match="non-empty bytes"):
            IdMinter(bad)  # type: ignore[arg-type]


def test_remembered_name_ids_stay_correct_and_bounded(minter: IdMinter) -> None:  # checklist 1
    first = minter.id_from_name("hot")
    assert minter.id_from_name("hot") is first  # served from the memo
    assert minter.id_from_name("hot", jurisdiction="eu") != first  # keyed by jurisdiction
    for n in range(ids._NAME_MEMO_LIMIT + 10):
        minter.id_from_name(f"name-{n}")
    assert len(minter._by_name) <= ids._NAME_MEMO_LIMIT
    again = minter.id_from_name("hot")
    assert again == first and again.name == "hot"  # recomputed after the memo was cleared
