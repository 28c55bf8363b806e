"""The value codec: storage values, RPC arguments and results, WebSocket attachments.

Values are CBOR (RFC 8949) written and read by cbor2: a standard, self-describing format
that other languages can read. Unlike pickle it never constructs arbitrary objects: the
decoder accepts only the tags listed in ``TYPE_TABLE`` and refuses every other one.

Encoding first walks the value in Python (``_check``), then hands it to cbor2. The walk
is not optional: it refuses what cbor2 would silently accept or convert (tuples become
arrays; subclasses such as ``IntEnum``, ``OrderedDict`` or a namedtuple are encoded as
their builtin base), and it bounds the nesting depth, because cbor2 6's encoder recurses
on the C stack and kills the process (SIGSEGV, not an exception) at 5,000-8,000 levels on
an 8 MiB stack and at about 600 levels on a 512 KiB thread stack.

The walk also decides two cbor2 options that cost time when they are not needed:

- Value sharing (tags 28/29) is on only when some list, dict or set is reached twice
  (shared or cyclic). Sharing tags every container (+2 bytes each) and makes encoding
  and decoding 5-15% slower, so plain encoding stays the common case; the check is free
  because the walk records every container it enters anyway.
- ``encoders=`` is passed only when a datetime, Decimal or frozenset is present: passing
  any mapping at all makes cbor2 6 about six times slower (10,000 ints: 245 -> 1,450 µs).

Measured with cbor2 6.3.0 on CPython 3.11 (µs per call, and bytes)::

                           dumps  dumps+sharing  _check  encode   size  size+sharing
    small dict (3 keys)     0.53       0.58        0.64    1.55     24       26
    100 dicts of 5 fields     73         75         126     202   5068     5470
    10,000 ints              245        252         191     422  29723    29725
    1,000 nested dicts       509        589         964    1493  15503    19505

Decoding costs a fixed 1.5-2 µs over ``cbor2.loads``: a decoder object, so that data
after the value can be detected (``loads`` ignores it).
"""

from __future__ import annotations

import builtins
import io
import reprlib
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from types import CoroutineType, GeneratorType
from typing import Any, TypeVar
from uuid import UUID

import cbor2

from objectd.errors import SerializationError

__all__ = ["TYPE_TABLE", "clone", "decode", "decode_pairs", "encode"]

T = TypeVar("T")

# objectd's own tags (0x6F64 is "od"). They are part of the storage format: never renumber.
_TAG_DATETIME = 0x6F64  # naive: ISO 8601 string; offset with seconds: [local, µs]
_TAG_FROZENSET = 0x6F65  # array of the elements
_TAG_DECIMAL = 0x6F66  # str(d): exact, keeps NaN, Infinity, -0 and the exponent
_TAG_EXCEPTION = 0x6F67  # [class name, [args]]

TYPE_TABLE = """\
Python value                    CBOR                                   decoded as
------------------------------  -------------------------------------  ----------------------
None, bool                      simple values                          same
int, any size                   integer; tags 2/3 (bignum)             int
float (nan, inf, -0.0)          float16/32/64, shortest exact          float
str, bytes                      text string, byte string               same
list                            array                                  list
dict                            map; keys any hashable type here       dict, same order
set                             tag 258 + array                        set
frozenset                       tag 28517 + array                      frozenset
datetime, aware                 tag 0, RFC 3339 string                 datetime, fixed offset
datetime, naive                 tag 28516, ISO 8601 string             datetime, naive
date                            tag 1004, RFC 3339 full-date           date
Decimal                         tag 28518, str(value)                  Decimal, exact
UUID                            tag 37, 16 bytes                       UUID
builtin exception instance      tag 28519, [class name, args]          same class, same args
other Exception instance        tag 28519, ["Exception", [str(e)]]     Exception(str(e))

- Datetimes are exact to the microsecond. An aware one comes back with a fixed-offset
  tzinfo (a ZoneInfo zone is not kept; the instant and the offset are). An offset with
  seconds, which RFC 3339 cannot express, is written as tag 28516 [local time, offset µs].
- Exception args are kept when they are all None/bool/int/float/str/bytes, otherwise they
  become [str(e)]; tracebacks, __cause__, __context__ and notes are dropped.
- Shared and cyclic lists, dicts and sets keep their identity (tags 28/29).
- Tags 28516-28519 are objectd's own (0x6F64 is "od"); the decoder refuses any other tag.
- Refused with SerializationError (a TypeError) naming the type and where it was found:
  tuple (use a list), bytearray and memoryview (use bytes), functions, methods, classes,
  coroutines (await them first), generators and iterators, instances of any other class,
  subclasses of the types above (IntEnum, OrderedDict, namedtuple, ...), BaseExceptions
  that are not Exceptions, str with lone surrogates, and values nested more than 256
  levels deep.
"""

_MAX_DEPTH = 256
# Leaves cbor2 encodes natively and exactly; everything else is checked by _check.
_LEAVES: frozenset[type] = frozenset({type(None), bool, int, float, str, bytes, date, UUID})
_CUSTOM_LEAVES: frozenset[type] = frozenset({datetime, Decimal})
_CONTAINERS: frozenset[type] = frozenset({list, dict, set, frozenset})
# For the "convert it to a plain ..." hint; datetime must come before date.
_SUPPORTED = (int, float, str, bytes, datetime, date, Decimal, UUID, *_CONTAINERS)
_ARG_TYPES: frozenset[type] = frozenset({type(None), bool, int, float, str, bytes})
_BUILTIN_EXCEPTIONS: dict[str, type[Exception]] = {
    name: cls
    for name, cls in vars(builtins).items()
    if isinstance(cls, type) and issubclass(cls, Exception)
}
_PLAIN = (
    "only plain data (None, bool, int, float, str, bytes, list, dict, set, frozenset, "
    "datetime, date, Decimal, UUID, Exception) can be sent over RPC or stored"
)
_MINUTE = timedelta(minutes=1)
_MICROSECOND = timedelta(microseconds=1)
_MAJOR_ARRAY = 4
_MAJOR_TAG = 6
# What _check found, as bit flags.
_SHARED = 1  # some container is reached twice: turn value sharing on
_CUSTOM = 2  # a datetime, Decimal or frozenset: pass our encoders
_SET = 4  # a set: with sharing on, pass our encoders (cbor2 does not share sets itself)


# -- encoding ----------------------------------------------------------------------------


def encode(value: object) -> bytes:
    """Serialize ``value``; ``SerializationError`` names any type that cannot be carried."""
    kind = type(value)
    flags = 0 if kind in _LEAVES else _check(value, kind, 0, set(), value)
    shared = bool(flags & _SHARED)
    custom = flags & _CUSTOM or (shared and flags & _SET)
    try:
        return cbor2.dumps(  # see the module docstring for why the options vary
            value, value_sharing=shared, encoders=_ENCODERS if custom else None, default=_default
        )
    except UnicodeEncodeError as exc:
        raise SerializationError(f"str with a lone surrogate cannot be stored: {exc}") from exc
    except cbor2.CBOREncodeError as exc:  # pragma: no cover - _check refuses these first
        raise SerializationError(f"cannot encode value: {exc}") from exc


def _check(item: Any, kind: type, depth: int, seen: set[int], root: object) -> int:
    """The flags for a value that is not in _LEAVES; raises if it is unsupported.

    Recursive (``depth`` is bounded), with C-level fast paths for containers of leaves.
    """
    if kind not in _CONTAINERS:
        if kind in _CUSTOM_LEAVES:
            return _CUSTOM
        if isinstance(item, Exception):
            return 0
        raise _refusal(item, root)
    if id(item) in seen:
        return _SHARED
    if depth >= _MAX_DEPTH:
        raise SerializationError(
            f"value is nested more than {_MAX_DEPTH} levels deep and cannot be "
            "sent over RPC or stored"
        )
    seen.add(id(item))
    flags = _CUSTOM if kind is frozenset else _SET if kind is set else 0
    depth += 1
    for children in (item, item.values()) if kind is dict else (item,):
        if not _LEAVES.issuperset(map(type, children)):
            for child in children:
                child_kind = type(child)
                if child_kind not in _LEAVES:
                    flags |= _check(child, child_kind, depth, seen, root)
    return flags


def _refusal(item: object, root: object) -> SerializationError:
    kind = type(item)
    name = kind.__qualname__
    if isinstance(item, tuple):
        message = f"{name} cannot be sent over RPC or stored; use a list"
    elif isinstance(item, bytearray | memoryview):
        message = f"{name} cannot be sent over RPC or stored; use bytes"
    elif isinstance(item, type):
        message = f"class {item.__qualname__!r} cannot be sent over RPC or stored; {_PLAIN}"
    elif isinstance(item, CoroutineType) or hasattr(item, "__await__"):
        message = f"{name} cannot be sent over RPC or stored; await it first"
    elif isinstance(item, GeneratorType) or hasattr(item, "__next__"):
        message = f"{name} cannot be sent over RPC or stored; use a list"
    elif callable(item) and hasattr(item, "__qualname__"):
        message = (
            f"{name} {item.__qualname__!r} cannot be sent over RPC or stored: "
            "functions and methods are not data"
        )
    elif isinstance(item, BaseException):
        message = f"{name} cannot be sent over RPC or stored: only Exception subclasses can"
    else:
        base = next((b.__name__ for b in _SUPPORTED if isinstance(item, b)), None)
        if base is not None:
            message = f"{name} cannot be sent over RPC or stored; convert it to a plain {base}"
        else:
            message = f"{name} cannot be serialized: {_PLAIN}"
    path = _locate(item, root)
    return SerializationError(message if path == "value" else f"{message} (at {path})")


def _locate(target: object, root: object) -> str:
    """A readable path such as ``value['a'][2]`` to ``target`` (only used on errors)."""
    stack: list[tuple[Any, str]] = [(root, "value")]
    seen: set[int] = set()
    while stack:
        item, path = stack.pop()
        if item is target:
            return path
        kind = type(item)
        if kind not in _CONTAINERS or id(item) in seen:
            continue
        seen.add(id(item))
        if kind is list:
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(item))
        elif kind is dict:
            for key, child in item.items():
                stack.append((key, f"key {reprlib.repr(key)} of {path}"))
                stack.append((child, f"{path}[{reprlib.repr(key)}]"))
        else:
            stack.extend((child, f"an element of {kind.__name__} {path}") for child in item)
    return "value"


def _default(encoder: cbor2.CBOREncoder, value: object) -> None:
    # cbor2 calls this for types it does not know: after _check, only exceptions.
    if not isinstance(value, Exception):  # pragma: no cover
        raise _refusal(value, value)
    _encode_exception(encoder, value)


def _encode_datetime(encoder: cbor2.CBOREncoder, value: datetime) -> None:
    offset = value.utcoffset()
    if offset is None:
        encoder.encode_semantic(_TAG_DATETIME, value.isoformat())
    elif not offset % _MINUTE:  # what RFC 3339 (tag 0) can express
        encoder.encode_semantic(0, value.isoformat())
    else:  # [local time, offset in µs]: fromisoformat (3.11) drops µs from an offset
        encoder.encode_length(_MAJOR_TAG, _TAG_DATETIME)
        encoder.encode_length(_MAJOR_ARRAY, 2)
        encoder.encode_string(value.replace(tzinfo=None).isoformat())
        encoder.encode_int(offset // _MICROSECOND)


# The container-shaped tags write their headers by hand: a temporary list would be one
# more container for cbor2's value sharing to track (and tag) when sharing is on.
def _encode_frozenset(encoder: cbor2.CBOREncoder, value: frozenset[Any]) -> None:
    encoder.encode_length(_MAJOR_TAG, _TAG_FROZENSET)
    encoder.encode_length(_MAJOR_ARRAY, len(value))
    for item in value:
        encoder.encode(item)


@cbor2.shareable_encoder
def _encode_set(encoder: cbor2.CBOREncoder, value: set[Any]) -> None:
    encoder.encode_length(_MAJOR_TAG, 258)  # what cbor2 writes, but shareable
    encoder.encode_length(_MAJOR_ARRAY, len(value))
    for item in value:
        encoder.encode(item)


def _encode_decimal(encoder: cbor2.CBOREncoder, value: Decimal) -> None:
    encoder.encode_semantic(_TAG_DECIMAL, str(value))


def _encode_exception(encoder: cbor2.CBOREncoder, value: Exception) -> None:
    kind = type(value)
    args: tuple[Any, ...] = (str(value),)
    if _BUILTIN_EXCEPTIONS.get(kind.__name__) is kind:
        name = kind.__name__
        if all(type(arg) in _ARG_TYPES for arg in value.args):
            args = value.args
    else:
        name = "Exception"
    encoder.encode_length(_MAJOR_TAG, _TAG_EXCEPTION)
    encoder.encode_length(_MAJOR_ARRAY, 2)
    encoder.encode_string(name)
    encoder.encode_length(_MAJOR_ARRAY, len(args))
    for arg in args:
        encoder.encode(arg)


_ENCODERS: dict[type, Callable[[cbor2.CBOREncoder, Any], None]] = {
    datetime: _encode_datetime,
    frozenset: _encode_frozenset,
    set: _encode_set,
    Decimal: _encode_decimal,
}


# -- decoding ----------------------------------------------------------------------------


_SIMPLE = {0xF4: False, 0xF5: True, 0xF6: None}


def decode_pairs(rows: Iterable[tuple[str, bytes]]) -> list[tuple[str, Any]]:
    """``[(key, decode(value)), ...]`` for many stored values (a ``list()`` of 100 entries).

    Short text, the most common KV value, is decoded right here: a call of
    :func:`decode` per value cost more than half of a ``list()`` (61 us of 100 values
    against 25 us this way, in one measurement).
    """
    out: list[tuple[str, Any]] = []
    append = out.append
    for key, value in rows:
        head = value[0] if value else 0xFF  # 0xFF is no fast-path head: decode() reports it
        if 0x60 <= head <= 0x77 and len(value) == head - 0x5F:  # text of 0-23 bytes
            try:
                append((key, value[1:].decode("utf-8")))
                continue
            except UnicodeDecodeError:
                pass
        append((key, decode(value)))
    return out


def decode(data: bytes | bytearray | memoryview) -> Any:
    """The value ``encode`` wrote; ``SerializationError`` for garbage, truncation or
    tags objectd does not write."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SerializationError(f"decode() needs bytes, got {type(data).__name__}")
    # Fast path, inlined (it runs once per stored value read): short text, small
    # integers and the simple values, which most KV values are. Building a CBORDecoder
    # and checking for trailing data costs ten times the value itself. Only complete,
    # well-formed items are taken; anything else goes the long way below.
    if type(data) is bytes and data:
        head = data[0]
        size = len(data)
        if 0x60 <= head <= 0x77 and size == head - 0x5F:  # text of 0-23 bytes
            try:
                return data[1:].decode("utf-8")
            except UnicodeDecodeError:
                pass
        elif head == 0x78 and size >= 2 and size == 2 + data[1]:  # text, 1-byte length
            try:
                return data[2:].decode("utf-8")
            except UnicodeDecodeError:
                pass
        elif head <= 0x17 and size == 1:  # unsigned 0-23
            return head
        elif 0x18 <= head <= 0x1B and size == 1 + (1 << (head - 0x18)):  # unsigned, n bytes
            return int.from_bytes(data[1:], "big")
        elif 0x20 <= head <= 0x37 and size == 1:  # -1..-24
            return 0x1F - head
        elif head in _SIMPLE and size == 1:
            return _SIMPLE[head]
    decoder = cbor2.CBORDecoder(
        io.BytesIO(data),
        tag_hook=_unknown_tag,
        semantic_decoders=_DECODERS,
        # cbor2 counts a tag as a level: a frozenset is two, an exception leaf three.
        max_depth=2 * _MAX_DEPTH + 3,
        allow_duplicate_keys=False,
    )
    try:
        value = decoder.decode()
    except cbor2.CBORDecodeEOF as exc:
        raise SerializationError(f"cannot decode value: truncated data ({exc})") from exc
    except cbor2.CBORDecodeError as exc:
        cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
        raise SerializationError(f"cannot decode value: {exc}{cause}") from exc
    try:
        decoder.read(1)
    except cbor2.CBORDecodeEOF:
        return value
    raise SerializationError("cannot decode value: unexpected data after the value")


def clone(value: T) -> T:
    """An independent deep copy made by the codec (``decode(encode(value))``)."""
    result: T = decode(encode(value))
    return result


def _unknown_tag(tag: cbor2.CBORTag, immutable: bool) -> Any:
    raise ValueError(f"unknown CBOR tag {tag.tag} refused")


def _refuse(tag: int) -> Callable[[Any, bool], Any]:
    def refuse(value: Any, immutable: bool) -> Any:
        raise ValueError(f"CBOR tag {tag} is not one objectd writes and is refused")

    return refuse


def _decode_datetime(value: Any, immutable: bool) -> datetime:
    if type(value) is str:
        return datetime.fromisoformat(value)
    if isinstance(value, list | tuple) and len(value) == 2:
        local, offset = value
        if type(local) is str and type(offset) is int:
            result = datetime.fromisoformat(local)
            if result.tzinfo is None:
                return result.replace(tzinfo=timezone(offset * _MICROSECOND))
    raise ValueError("a datetime must be a string or a [local time, offset] array")


def _decode_aware_datetime(value: Any, immutable: bool) -> datetime:
    result = _decode_datetime(value, immutable)
    if result.utcoffset() is None:
        raise ValueError("a tag 0 datetime needs a UTC offset")
    return result


def _decode_frozenset(value: Any, immutable: bool) -> frozenset[Any]:
    if not isinstance(value, list | tuple):
        raise ValueError("a frozenset must be an array")
    return frozenset(value)


def _decode_decimal(value: Any, immutable: bool) -> Decimal:
    if type(value) is not str:
        raise ValueError("a Decimal must be a string")
    try:
        return Decimal(value)
    except InvalidOperation:
        raise ValueError(f"invalid Decimal {value!r}") from None


def _decode_exception(value: Any, immutable: bool) -> Exception:
    if not (isinstance(value, list | tuple) and len(value) == 2):
        raise ValueError("an exception must be a [name, args] array")
    name, args = value
    if type(name) is not str or not isinstance(args, list | tuple):
        raise ValueError("an exception must be a [name, args] array")
    if any(type(arg) not in _ARG_TYPES for arg in args):
        raise ValueError("exception args must be plain scalars")
    cls = _BUILTIN_EXCEPTIONS.get(name, Exception)
    try:
        return cls(*args)
    except Exception:  # a builtin whose constructor wants other args, e.g. ExceptionGroup
        return Exception(*args)


# Tags cbor2 would decode on its own but objectd never writes: refused, so decoding can
# never compile a regex, parse MIME, build an IP address or a Fraction, and so on.
_FOREIGN_TAGS = (1, 4, 5, 25, 30, 35, 36, 52, 54, 100, 256, 260, 261, 55799)
_DECODERS: dict[int, Callable[[Any, bool], Any]] = {
    **{tag: _refuse(tag) for tag in _FOREIGN_TAGS},
    0: _decode_aware_datetime,
    _TAG_DATETIME: _decode_datetime,
    _TAG_FROZENSET: _decode_frozenset,
    _TAG_DECIMAL: _decode_decimal,
    _TAG_EXCEPTION: _decode_exception,
}
