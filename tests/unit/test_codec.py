"""The value codec (ARCHITECTURE: CBOR, no pickle; spec §5.2, §2.2, §14; checklist 24, 25,
48, 49 and 164)."""

from __future__ import annotations

import collections
import contextlib
import enum
import fractions
import ipaddress
import re
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from objectd.codec import TYPE_TABLE, clone, decode, decode_pairs, encode
from objectd.errors import SerializationError


def canon(value: Any) -> Any:
    """A comparable form that keeps exact types, order, float signs and NaNs."""
    kind = type(value)
    if kind is list:
        return ("list", tuple(canon(item) for item in value))
    if kind is dict:
        return ("dict", tuple((canon(k), canon(v)) for k, v in value.items()))
    if kind in (set, frozenset):
        return (kind.__name__, tuple(sorted((canon(item) for item in value), key=repr)))
    if isinstance(value, BaseException):
        return (kind.__name__, canon(list(value.args)))
    if kind is Decimal:
        return ("Decimal", str(value))
    if kind is datetime:
        return ("datetime", value.isoformat())
    return (kind.__name__, repr(value))


def assert_round_trips(value: Any) -> Any:
    result = decode(encode(value))
    assert canon(result) == canon(value)
    return result


# -- what round-trips (checklist 24, 48, 49, 164) ------------------------------------------

SAMPLES = [
    None,
    True,
    False,
    0,
    -1,
    2**63,
    2**64 + 1,
    -(2**200),
    1.5,
    -0.0,
    float("inf"),
    float("-inf"),
    float("nan"),
    "",
    "héllo \U0001f600",
    b"",
    b"\x00\xff",
    [],
    [1, "a", None],
    {},
    {"a": 1, "b": [2, 3]},
    {1: "int", 2.5: "float", None: "none", b"k": "bytes"},
    {True: "bool", False: "bool"},
    {frozenset({1, 2}): "frozenset key", date(2024, 1, 2): "date key"},
    {1, 2, 3},
    set(),
    frozenset(),
    frozenset({1, frozenset({2})}),
    {frozenset({"x"}), 4},
    datetime(2024, 5, 6, 7, 8, 9, 123456),
    datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=14))),
    datetime(2024, 1, 1, tzinfo=timezone(timedelta(seconds=37))),
    datetime(2024, 1, 1, tzinfo=timezone(timedelta(seconds=1, microseconds=1))),
    date(1, 1, 1),
    date(2024, 2, 29),
    Decimal("1.00"),
    Decimal("-0"),
    Decimal("-0.000"),
    Decimal("NaN"),
    Decimal("-NaN"),
    Decimal("sNaN"),
    Decimal("Infinity"),
    Decimal("-Infinity"),
    Decimal("1E-30"),
    Decimal("123456789012345678901234567890.123456789"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    ValueError("x"),
    KeyError("k"),
    OSError(2, "No such file"),
    Exception(),
    UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
    [[[[{"deep": [datetime(2020, 1, 1), Decimal("2.5"), {b"x"}]}]]]],
]


@pytest.mark.parametrize("value", SAMPLES, ids=repr)
def test_supported_values_round_trip_with_their_types(value: Any) -> None:  # checklist 49
    assert_round_trips(value)
    assert canon(clone(value)) == canon(value)


def test_plain_data_round_trips_as_an_independent_copy() -> None:  # checklist 24, 48
    value: dict[str, Any] = {
        "list": [1, {"x": [2]}],
        "set": {1},
        "bytes": b"ab",
        "when": datetime(2024, 1, 1),
    }
    copy = clone(value)
    assert copy == value
    copy["list"][1]["x"].append(3)
    copy["set"].add(2)
    assert value == {
        "list": [1, {"x": [2]}],
        "set": {1},
        "bytes": b"ab",
        "when": datetime(2024, 1, 1),
    }


def test_dict_order_is_kept() -> None:
    value = {"b": 1, "a": 2, 3: 3, "c": 4}
    assert list(decode(encode(value))) == ["b", "a", 3, "c"]


def test_naive_and_aware_datetimes_stay_so() -> None:  # checklist 49, 164
    naive = datetime(2024, 5, 6, 7, 8, 9, 1)
    aware = naive.replace(tzinfo=timezone(timedelta(hours=2)))
    naive_out, aware_out = decode(encode([naive, aware]))
    assert naive_out == naive
    assert naive_out.tzinfo is None
    assert aware_out == aware
    assert aware_out.utcoffset() == timedelta(hours=2)
    assert decode(encode(datetime(2024, 1, 1, tzinfo=UTC))).tzinfo == UTC


def test_aware_datetimes_use_the_standard_tag() -> None:
    # Tag 0 (RFC 3339) for aware datetimes, objectd's own tag for naive ones.
    assert encode(datetime(2024, 1, 1, tzinfo=UTC))[0] == 0xC0
    assert encode(datetime(2024, 1, 1))[:3] == b"\xd9\x6f\x64"
    assert encode(date(2024, 1, 1))[:3] == b"\xd9\x03\xec"  # tag 1004


def test_zoneinfo_comes_back_as_a_fixed_offset() -> None:
    paris = datetime(2024, 7, 1, 12, 30, tzinfo=ZoneInfo("Europe/Paris"))
    result = decode(encode(paris))
    assert result == paris
    assert result.utcoffset() == timedelta(hours=2)
    assert result.replace(tzinfo=None) == paris.replace(tzinfo=None)


def test_float_specials_keep_their_sign_and_kind() -> None:
    result = decode(encode([float("nan"), -0.0, float("-inf")]))
    assert result[0] != result[0]
    assert repr(result[1]) == "-0.0"
    assert result[2] == float("-inf")


def test_builtin_exceptions_keep_class_and_args() -> None:  # checklist 164
    result = decode(encode([ValueError("x"), KeyError("k"), OSError(2, "gone")]))
    assert type(result[0]) is ValueError
    assert result[0].args == ("x",)
    assert type(result[1]) is KeyError
    assert str(result[1]) == "'k'"
    assert type(result[2]) is FileNotFoundError
    assert (result[2].errno, result[2].strerror) == (2, "gone")


def test_other_exceptions_become_exception_with_their_message() -> None:  # checklist 164
    class QuotaExceeded(RuntimeError):
        pass

    result = decode(encode(QuotaExceeded("too many", 3)))
    assert type(result) is Exception
    assert result.args == ("('too many', 3)",)
    assert type(decode(encode(SerializationError("bad")))) is Exception


def test_exception_args_that_are_not_scalars_become_the_message() -> None:
    result = decode(encode(ValueError("x", [1, 2])))
    assert type(result) is ValueError
    assert result.args == ("('x', [1, 2])",)
    group = ExceptionGroup("several", [ValueError("a")])
    result = decode(encode(group))  # ExceptionGroup("...") alone cannot be built
    assert type(result) is Exception
    assert result.args == (str(group),)


# -- identity, sharing and cycles (checklist 24, 49) ---------------------------------------


def test_a_list_containing_itself() -> None:
    value: list[Any] = [1]
    value.append(value)
    result = decode(encode(value))
    assert result[0] == 1
    assert result[1] is result


def test_mutual_cycles_through_dicts_and_lists() -> None:
    a: dict[str, Any] = {"name": "a"}
    b: list[Any] = [a]
    a["b"] = b
    result = decode(encode({"root": a, "again": b}))
    assert result["root"]["b"] is result["again"]
    assert result["again"][0] is result["root"]


def test_shared_containers_stay_shared() -> None:
    inner: dict[str, Any] = {"x": [1]}
    shared_set = {1, 2}
    result = decode(encode([inner, inner, inner["x"], shared_set, {"s": shared_set}]))
    assert result[0] is result[1]
    assert result[2] is result[0]["x"]
    assert result[3] is result[4]["s"]
    assert result[0] == inner


def test_unshared_values_are_encoded_without_sharing_tags() -> None:
    plain = encode({"a": [1, 2], "b": {"c": set()}})
    assert b"\xd8\x1c" not in plain  # tag 28 (shareable)
    x: list[int] = []
    assert b"\xd8\x1c" in encode([x, x])
    same_leaf = "a string used twice"
    assert b"\xd8\x1c" not in encode([same_leaf, same_leaf])


def test_clone_of_cyclic_values() -> None:
    value: dict[str, Any] = {}
    value["self"] = value
    copy = clone(value)
    assert copy is not value
    assert copy["self"] is copy


# -- refusals (checklist 25, 164) ----------------------------------------------------------


class Counter:
    pass


class Color(enum.IntEnum):
    RED = 1


class Name(str):
    pass


class Stamp(datetime):
    pass


Point = collections.namedtuple("Point", "x y")


def _function() -> None:
    pass


def _generator() -> Iterator[int]:
    yield 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ((1, 2), r"^tuple cannot be sent over RPC or stored; use a list$"),
        (Point(1, 2), r"^Point cannot be sent over RPC or stored; use a list$"),
        (bytearray(b"x"), r"^bytearray cannot be sent over RPC or stored; use bytes$"),
        (memoryview(b"x"), r"^memoryview cannot be sent over RPC or stored; use bytes$"),
        (Counter(), r"^Counter cannot be serialized: only plain data \(None, bool, .*\) can be"),
        (object(), r"^object cannot be serialized: only plain data"),
        (_function, r"^function '_function' cannot be sent .*: functions and methods are not"),
        (lambda: 1, r"^function '<lambda>' cannot be sent over RPC or stored"),
        (len, r"^builtin_function_or_method 'len' cannot be sent over RPC or stored"),
        ([].append, r"^builtin_function_or_method 'list.append' cannot be sent"),
        (Counter, r"^class 'Counter' cannot be sent over RPC or stored; only plain data"),
        (_generator(), r"^generator cannot be sent over RPC or stored; use a list$"),
        (iter([1]), r"^list_iterator cannot be sent over RPC or stored; use a list$"),
        (Color.RED, r"^Color cannot be sent over RPC or stored; convert it to a plain int$"),
        (Name("x"), r"^Name cannot be sent over RPC or stored; convert it to a plain str$"),
        (Stamp(2024, 1, 1), r"^Stamp cannot be .*; convert it to a plain datetime$"),
        (collections.OrderedDict(a=1), r"^OrderedDict cannot .*convert it to a plain dict$"),
        (collections.defaultdict(list), r"^defaultdict cannot .*convert it to a plain dict$"),
        (collections.Counter("ab"), r"^Counter cannot .*convert it to a plain dict$"),
        (KeyboardInterrupt(), r"^KeyboardInterrupt cannot be .*: only Exception subclasses"),
        (1j, r"^complex cannot be serialized"),
        (timedelta(1), r"^timedelta cannot be serialized"),
        (time(1), r"^time cannot be serialized"),
        (fractions.Fraction(1, 3), r"^Fraction cannot be serialized"),
        (re.compile("a"), r"^Pattern cannot be serialized"),
        (ipaddress.ip_address("::1"), r"^IPv6Address cannot be serialized"),
        (range(3), r"^range cannot be serialized"),
        ("\ud800", r"^str with a lone surrogate cannot be stored"),
    ],
    ids=lambda v: type(v).__name__,
)
def test_refused_values_name_their_type(value: object, message: str) -> None:  # checklist 25
    with pytest.raises(SerializationError, match=message):
        encode(value)
    with pytest.raises(TypeError):  # SerializationError is a TypeError, like workerd's
        clone(value)


def test_coroutines_are_refused() -> None:
    async def work() -> int:
        return 1

    coroutine = work()
    try:
        with pytest.raises(
            SerializationError,
            match=r"^coroutine cannot .*; await it first \(at value\['pending'\]\)$",
        ):
            encode({"pending": coroutine})
    finally:
        coroutine.close()


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"a": [1, {"b": (1, 2)}]}, "value['a'][1]['b']"),
        ([0, 1, [2, Counter()]], "value[2][1]"),
        ({(1, 2): "tuple key"}, "key (1, 2) of value"),
        ({"s": {(1,)}}, "an element of set value['s']"),
        ([frozenset({(1,)})], "an element of frozenset value[0]"),
    ],
)
def test_nested_refusals_name_the_type_and_place(value: object, where: str) -> None:
    with pytest.raises(SerializationError) as caught:
        encode(value)
    assert str(caught.value).endswith(f"(at {where})")
    assert str(caught.value).split()[0] in {"tuple", "Counter"}


def test_deep_nesting_is_bounded() -> None:
    # cbor2's encoder would crash the process on very deep values; 256 levels are fine.
    value: Any = 1
    for _ in range(256):
        value = [value]
    assert_round_trips(value)
    with pytest.raises(SerializationError, match=r"^value is nested more than 256 levels"):
        encode([value])


def test_deepest_values_decode_in_a_small_thread() -> None:
    value: Any = ValueError("leaf")
    for _ in range(256):
        value = frozenset({value})
    errors: list[BaseException] = []

    def run() -> None:
        try:
            assert_round_trips(value)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    old = threading.stack_size(512 * 1024)
    try:
        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
    finally:
        threading.stack_size(old)
    assert not errors


# -- decoding refuses what objectd does not write --------------------------------------------


@pytest.mark.parametrize(
    "tagged",
    [
        cbor2.CBORTag(9999, 1),  # unknown
        cbor2.CBORTag(1, 1700000000),  # epoch datetime
        cbor2.CBORTag(4, [-2, 100]),  # decimal fraction
        cbor2.CBORTag(5, [1, 3]),  # bigfloat
        cbor2.CBORTag(30, [1, 3]),  # Fraction
        cbor2.CBORTag(35, "a+"),  # regex
        cbor2.CBORTag(36, "Content-Type: text/plain\n\nhi"),  # MIME
        cbor2.CBORTag(54, b"\x00" * 16),  # IPv6
        cbor2.CBORTag(100, 1),  # epoch date
        cbor2.CBORTag(260, b"\x7f\x00\x00\x01"),  # network address
        cbor2.CBORTag(55799, [1]),  # self-described CBOR
    ],
    ids=lambda tag: str(tag.tag),
)
def test_foreign_tags_are_refused(tagged: cbor2.CBORTag) -> None:
    data = cbor2.dumps(["ok", tagged])
    with pytest.raises(SerializationError, match=rf"tag {tagged.tag}\b.*refused"):
        decode(data)


@pytest.mark.parametrize(
    "data",
    [
        cbor2.dumps(cbor2.CBORTag(0x6F64, 5)),  # datetime that is not a string
        cbor2.dumps(cbor2.CBORTag(0x6F64, "yesterday")),
        cbor2.dumps(cbor2.CBORTag(0, "2024-01-01T00:00:00")),  # tag 0 without an offset
        cbor2.dumps(cbor2.CBORTag(0x6F65, 5)),  # frozenset that is not an array
        cbor2.dumps(cbor2.CBORTag(0x6F66, "one")),  # Decimal
        cbor2.dumps(cbor2.CBORTag(0x6F66, 1)),
        cbor2.dumps(cbor2.CBORTag(0x6F67, "ValueError")),  # exception shapes
        cbor2.dumps(cbor2.CBORTag(0x6F67, [1, []])),
        cbor2.dumps(cbor2.CBORTag(0x6F67, ["ValueError", [[1]]])),
    ],
)
def test_malformed_objectd_tags_are_refused(data: bytes) -> None:
    with pytest.raises(SerializationError, match=r"^cannot decode value"):
        decode(data)


def test_exception_names_cannot_reach_other_builtins() -> None:
    for name in ("print", "open", "KeyboardInterrupt", "SystemExit", "object"):
        result = decode(cbor2.dumps(cbor2.CBORTag(0x6F67, [name, ["x"]])))
        assert type(result) is Exception
        assert result.args == ("x",)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff",
        b"\x82\x01",  # array of two with one item
        b"\x62\xff\xfe",  # invalid UTF-8
        b"\xa2\x01\x01\x01\x02",  # duplicate map key
        b"\x01\x02",  # trailing data
        b"\x1c",  # reserved additional information
    ],
)
def test_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(SerializationError, match=r"^cannot decode value"):
        decode(data)


def test_truncated_and_extended_data_is_refused() -> None:
    for value in ({"k": "v"}, [{"id": i, "name": f"user{i}"} for i in range(1000)]):
        data = encode(value)
        assert len(data) > 4
        with pytest.raises(SerializationError, match="truncated"):
            decode(data[:-1])
        with pytest.raises(SerializationError, match="unexpected data after the value"):
            decode(data + b"\x00")
        assert decode(bytearray(data)) == value
        assert decode(memoryview(data)) == value


def test_decode_needs_bytes() -> None:
    with pytest.raises(SerializationError, match="needs bytes, got str"):
        decode("\x01")  # type: ignore[arg-type]


def test_type_table_documents_every_type() -> None:
    for name in (
        "None",
        "bool",
        "int",
        "float",
        "str",
        "bytes",
        "list",
        "dict",
        "set",
        "frozenset",
        "datetime, aware",
        "datetime, naive",
        "date",
        "Decimal",
        "UUID",
        "Exception(str(e))",
        "tuple (use a list)",
        "bytearray",
    ):
        assert name in TYPE_TABLE


# -- property: nested structures of every supported type round-trip (checklist 24, 49) ------

offsets = st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
hashable_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.dates(),
    st.uuids(),
    st.decimals(allow_nan=False, places=3),
)
leaves = st.one_of(
    hashable_leaves,
    st.floats(),
    st.decimals(),
    st.datetimes(),
    st.datetimes(timezones=st.builds(timezone, offsets)),
    st.builds(ValueError, st.text(max_size=5)),
    st.builds(KeyError, st.integers()),
    st.frozensets(hashable_leaves, max_size=3),
)
keys = st.one_of(hashable_leaves, st.frozensets(hashable_leaves, max_size=3))
values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=4),
        st.sets(keys, max_size=4),
    ),
    max_leaves=15,
)


@settings(
    max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(values)
def test_nested_values_round_trip(value: Any) -> None:  # checklist 24, 49
    assert_round_trips(value)


@settings(max_examples=50, deadline=None, database=None)
@given(st.lists(st.dictionaries(st.text(max_size=3), st.integers(), max_size=3), max_size=4))
def test_repeated_references_keep_identity(items: list[dict[str, int]]) -> None:
    value = [*items, *items]  # every dict appears twice
    result = decode(encode(value))
    assert result == value
    half = len(items)
    for i in range(half):
        assert result[i] is result[half + i]


@settings(max_examples=100, deadline=None, database=None)
@given(st.binary(max_size=24))
def test_decoding_any_bytes_returns_or_raises_serialization_error(data: bytes) -> None:
    with contextlib.suppress(SerializationError):  # and nothing else
        decode(data)


_STORED = st.one_of(
    st.text(max_size=40), st.integers(), st.none(), st.booleans(), st.lists(st.text(), max_size=3)
)


@given(st.lists(_STORED, max_size=20))
def test_decode_pairs_agrees_with_decode(values: list[Any]) -> None:  # checklist 49
    rows = [(f"k{i}", encode(value)) for i, value in enumerate(values)]
    assert decode_pairs(rows) == [(key, decode(raw)) for key, raw in rows]


def test_decode_pairs_refuses_what_decode_refuses() -> None:
    bad_utf8 = b"\x62\xff\xfe"  # a text head over bytes that are not UTF-8
    for raw in (b"", bad_utf8, b"\x63ab"):  # empty, invalid text, truncated text
        with pytest.raises(SerializationError):
            decode(raw)
        with pytest.raises(SerializationError):
            decode_pairs([("k", raw)])
