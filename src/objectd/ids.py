"""Durable Object ids: ``id_from_name``, ``new_unique_id`` and ``id_from_string``.

An id is 32 bytes, ``base[16] || mac[16]``, shown as 64 lower-case hex digits. The
derivation is workerd's (``src/workerd/server/actor-id-impl.c++``, spec §1.3), keyed by a
per-namespace secret so that an id string is only valid for the namespace that minted it
and cannot be forged without the secret::

    key  = SHA-256(secret)
    base = HMAC-SHA256(key, utf8(name))[:16]       id_from_name
         = 16 random bytes                          new_unique_id
    mac  = HMAC-SHA256(key, base || tag)[:16]

Jurisdictions are an objectd extension of that scheme: ``tag`` is empty without a
jurisdiction (so plain ids are exactly workerd's) and ``0xFF || jurisdiction`` with one.
``0xFF`` never occurs in UTF-8, so a jurisdictional name derivation (``tag || name``) can
never collide with a plain name, and ``id_from_string`` recovers the jurisdiction by
checking the mac against each possible tag.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from objectd.errors import DurableObjectTypeError, InvalidIdError

__all__ = [
    "JURISDICTIONS",
    "LOCATION_HINTS",
    "DurableObjectId",
    "IdMinter",
    "new_namespace_secret",
]

JURISDICTIONS: tuple[str, ...] = ("eu", "fedramp", "fedramp-high", "us")
LOCATION_HINTS: tuple[str, ...] = (
    "wnam",
    "enam",
    "sam",
    "weur",
    "eeur",
    "apac",
    "apac-ne",
    "apac-se",
    "oc",
    "afr",
    "me",
)

_ID_BYTES = 32
_HALF = 16
_BAD_FORMAT = "Invalid Durable Object ID: must be 64 hex digits"
_FOREIGN = "Durable Object ID is not valid for this namespace."
# The mac tags to try in id_from_string: no jurisdiction first (the common case).
_TAGS: tuple[tuple[str | None, bytes], ...] = (
    (None, b""),
    *((j, b"\xff" + j.encode("ascii")) for j in JURISDICTIONS),
)
_TAG_OF: dict[str | None, bytes] = dict(_TAGS)


@dataclass(frozen=True, slots=True, repr=False)
class DurableObjectId:
    """The id of one Durable Object; equal and hashed by its 32 bytes only.

    ``name`` is the name it was derived from (``None`` for unique ids and for ids parsed
    with ``id_from_string``); ``jurisdiction`` is the jurisdiction encoded in the id.
    """

    _raw: bytes
    name: str | None = field(default=None, compare=False)
    jurisdiction: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if type(self._raw) is not bytes or len(self._raw) != _ID_BYTES:
            raise DurableObjectTypeError(f"a Durable Object id is {_ID_BYTES} bytes")

    @property
    def raw(self) -> bytes:
        """The 32 id bytes."""
        return self._raw

    def to_string(self) -> str:
        """The id as 64 lower-case hex digits, accepted by ``id_from_string``."""
        return self._raw.hex()

    def equals(self, other: DurableObjectId) -> bool:
        """True if ``other`` has the same id bytes (names are not compared)."""
        if not isinstance(other, DurableObjectId):
            raise DurableObjectTypeError(
                f"equals() needs a DurableObjectId, got {type(other).__name__}"
            )
        return self._raw == other._raw

    def __str__(self) -> str:
        return self._raw.hex()

    def __repr__(self) -> str:
        extra = "" if self.name is None else f", name={self.name!r}"
        if self.jurisdiction is not None:
            extra += f", jurisdiction={self.jurisdiction!r}"
        return f"DurableObjectId({self._raw.hex()!r}{extra})"

    toString = to_string


def _check_jurisdiction(jurisdiction: object) -> str | None:
    if jurisdiction is None:
        return None
    if isinstance(jurisdiction, str) and jurisdiction in JURISDICTIONS:
        return JURISDICTIONS[JURISDICTIONS.index(jurisdiction)]  # the canonical str
    raise DurableObjectTypeError(
        f"unknown jurisdiction {jurisdiction!r}; allowed: {', '.join(JURISDICTIONS)}"
    )


_NAME_MEMO_LIMIT = 4096


class IdMinter:
    """Mints and checks the ids of one namespace; ``secret`` is the namespace's key.

    Only ``SHA-256(secret)`` is kept, and it never appears in a repr.
    """

    __slots__ = ("_by_name", "_key")

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, bytes) or not secret:
            raise DurableObjectTypeError("a namespace secret must be non-empty bytes")
        self._key = hashlib.sha256(secret).digest()
        # Recently minted name ids: two HMACs per request add up on a hot path, and ids
        # are immutable.  Bounded: cleared when full.
        self._by_name: dict[tuple[str, str | None], DurableObjectId] = {}

    def __repr__(self) -> str:
        return "IdMinter(<secret>)"

    def _mac(self, base: bytes, jurisdiction: str | None) -> bytes:
        return hmac.digest(self._key, base + _TAG_OF[jurisdiction], "sha256")[:_HALF]

    def _make(self, base: bytes, name: str | None, jurisdiction: str | None) -> DurableObjectId:
        return DurableObjectId(base + self._mac(base, jurisdiction), name, jurisdiction)

    def id_from_name(self, name: str, *, jurisdiction: str | None = None) -> DurableObjectId:
        """The id for ``name``: the same on every call, different per namespace/jurisdiction."""
        if not isinstance(name, str):
            raise DurableObjectTypeError(
                f"idFromName() needs a str name, got {type(name).__name__}"
            )
        jurisdiction = _check_jurisdiction(jurisdiction)
        known = self._by_name.get((name, jurisdiction))
        if known is not None and type(name) is str:
            return known
        # surrogatepass keeps the mapping injective for names with lone surrogates.
        message = _TAG_OF[jurisdiction] + name.encode("utf-8", "surrogatepass")
        base = hmac.digest(self._key, message, "sha256")[:_HALF]
        minted = self._make(base, name, jurisdiction)
        if type(name) is str and len(name) <= 1024:
            if len(self._by_name) >= _NAME_MEMO_LIMIT:
                self._by_name.clear()
            self._by_name[(name, jurisdiction)] = minted
        return minted

    def new_unique_id(self, *, jurisdiction: str | None = None) -> DurableObjectId:
        """A new random id (128 random bits), never equal to a name-derived one in practice."""
        jurisdiction = _check_jurisdiction(jurisdiction)
        return self._make(secrets.token_bytes(_HALF), None, jurisdiction)

    def id_from_string(self, value: str, *, jurisdiction: str | None = None) -> DurableObjectId:
        """Parse an id minted by this namespace; ``name`` is ``None``.

        ``jurisdiction`` restricts the namespace: an id of another jurisdiction is then
        refused. Without it, ids of any jurisdiction are accepted and keep theirs.
        """
        jurisdiction = _check_jurisdiction(jurisdiction)
        if not isinstance(value, str) or len(value) != 2 * _ID_BYTES:
            raise InvalidIdError(_BAD_FORMAT)
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise InvalidIdError(_BAD_FORMAT) from None
        if len(raw) != _ID_BYTES:  # fromhex skips whitespace, so " " could shorten it
            raise InvalidIdError(_BAD_FORMAT)
        base, mac = raw[:_HALF], raw[_HALF:]
        for found, tag in _TAGS:
            expected = hmac.digest(self._key, base + tag, "sha256")[:_HALF]
            if hmac.compare_digest(mac, expected):
                if jurisdiction is not None and found != jurisdiction:
                    break
                return DurableObjectId(raw, None, found)
        raise InvalidIdError(_FOREIGN)


def new_namespace_secret() -> bytes:
    """32 random bytes: a fresh namespace key (the runtime keeps it in the data folder)."""
    return secrets.token_bytes(32)
