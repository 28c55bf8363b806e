"""Every public snake_case name of the Cloudflare-facing classes has its camelCase alias.

STYLE.md: the public API is snake_case derived mechanically from Cloudflare's names,
and each camelCase name exists too.  The expected aliases are derived here from the
classes themselves (every public name with an underscore), not from a hand-written
table, so a method added without its alias fails this test.  The only names exempt
are listed in :data:`OBJECTD_ONLY`, each with why it has no Cloudflare spelling.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import pytest

import objectd
from objectd.runtime.alarm_ops import AlarmInfo
from objectd.runtime.hibernation import WebSocketContext
from objectd.runtime.namespace import DurableObjectNamespace
from objectd.runtime.socket_events import CloseEvent, ErrorEvent, EventTarget, MessageEvent
from objectd.runtime.state import DurableObjectState
from objectd.runtime.storage_api import (
    DurableObjectStorage,
    DurableObjectTransaction,
    SyncKvStorage,
)
from objectd.runtime.websockets import WebSocket, WebSocketPair
from objectd.storage.sql import SqlStorage, SqlStorageCursor

# The classes user code reaches, as Cloudflare names them (their objectd-only bases too).
CLASSES: list[type] = [
    objectd.DurableObject,
    objectd.WorkerEntrypoint,
    objectd.ExecutionContext,
    objectd.DurableObjectId,
    DurableObjectNamespace,
    DurableObjectState,
    WebSocketContext,
    DurableObjectStorage,
    DurableObjectTransaction,
    SyncKvStorage,
    SqlStorage,
    SqlStorageCursor,
    AlarmInfo,
    objectd.Request,
    objectd.Response,
    objectd.Headers,
    WebSocket,
    WebSocketPair,
    EventTarget,
    MessageEvent,
    CloseEvent,
    ErrorEvent,
    objectd.DurableObjectError,
]

# Public names with no Cloudflare spelling: objectd's own machinery that other objectd
# layers call (the committer, the host, the ASGI front), not part of the user API.
OBJECTD_ONLY: dict[type, frozenset[str]] = {
    DurableObjectStorage: frozenset(
        {
            "commit_batch",  # runtime.committer's Committable protocol
            "sync_file",
            "batch_failed",
            "close_for_reset",  # runtime.host, on a reset
            "discard_uncommitted",
            "last_batch",
            "wait_output_gate",  # the output gate (spec §6)
            "output_gate_batch",
        }
    ),
    SqlStorage: frozenset({"drop_all_user_objects"}),  # the SQL half of delete_all()
    objectd.Headers: frozenset({"from_raw"}),  # the ASGI front's constructor
    # Pyodide code writes Object.values(pair) as pair.object_values(): no JS method.
    WebSocketPair: frozenset({"object_values"}),
    objectd.DurableObjectError: frozenset({"remote_trace"}),  # objectd.report
}

_SNAKE_PART = re.compile(r"_([a-z0-9])")


def camel(snake: str) -> str:
    """Cloudflare's spelling of a snake_case name: ``get_web_sockets`` -> ``getWebSockets``."""
    return _SNAKE_PART.sub(lambda m: m.group(1).upper(), snake)


def public_snake_names(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is object or klass.__module__ in ("builtins", "typing", "collections.abc"):
            continue
        if not klass.__module__.startswith("objectd"):
            continue
        names.update(
            name
            for name in vars(klass)
            if not name.startswith("_") and "_" in name and name == name.lower()
        )
    names.update(getattr(cls, "__dataclass_fields__", {}))  # slots dataclass fields
    return {name for name in names if "_" in name and not name.startswith("_")}


# Instances to read data attributes and fields through (a class attribute or a slot
# cannot be compared by identity with the property that aliases it).
SAMPLES: dict[type, Any] = {
    AlarmInfo: AlarmInfo(retry_count=2, is_retry=True, scheduled_time=1234),
    CloseEvent: CloseEvent(4000, "bye", True),
    objectd.DurableObjectError: objectd.DurableObjectError(
        "m", durable_object_reset=True, durable_object_id="abc"
    ),
}

PAIRS = sorted(
    (
        (cls, name)
        for cls in CLASSES
        for name in public_snake_names(cls) - OBJECTD_ONLY.get(cls, frozenset())
    ),
    key=lambda pair: (pair[0].__name__, pair[1]),
)


def test_the_derivation_finds_the_known_names() -> None:
    """The derivation is not vacuous: it finds names every version has had."""
    found = {(cls.__name__, name) for cls, name in PAIRS}
    assert {
        ("DurableObjectNamespace", "id_from_name"),
        ("DurableObjectState", "block_concurrency_while"),
        ("DurableObjectStorage", "delete_all"),
        ("DurableObjectTransaction", "set_alarm"),
        ("SqlStorageCursor", "rows_read"),
        ("WebSocketContext", "get_web_socket_auto_response_timestamp"),
        ("WebSocket", "serialize_attachment"),
        ("CloseEvent", "was_clean"),
        ("AlarmInfo", "retry_count"),
        ("DurableObjectError", "durable_object_reset"),
    } <= found


@pytest.mark.parametrize(
    ("cls", "snake"), PAIRS, ids=[f"{cls.__name__}.{name}" for cls, name in PAIRS]
)
def test_camel_case_alias(cls: type, snake: str) -> None:
    alias = camel(snake)
    assert hasattr(cls, alias), f"{cls.__name__}.{snake} has no camelCase alias {alias}"
    sample = SAMPLES.get(cls)
    static = inspect.getattr_static(cls, snake)
    if sample is not None and not callable(static):
        assert getattr(sample, alias) == getattr(sample, snake)
        return
    assert inspect.getattr_static(cls, alias) is static, (
        f"{cls.__name__}.{alias} is not the same object as {cls.__name__}.{snake}"
    )
