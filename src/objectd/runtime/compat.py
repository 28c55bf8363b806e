"""The ``workers`` module for code written for Cloudflare Python Workers.

Registered as ``sys.modules["workers"]`` when no real ``workers`` package is
installed (see ``loader``), so ``from workers import DurableObject, Response``
runs unchanged on objectd.  ``WebSocketPair`` and ``WebSocketRequestResponsePair``
live in ``js`` on Cloudflare (``compat_js``); importing them from ``workers`` is a
common slip, so they are offered here too.

Besides the classes, Python Workers code imports helpers that convert values at the
JavaScript boundary.  objectd has no such boundary (arguments, results and bindings are
Python values already), so they keep only what a caller can observe:

* ``python_to_rpc(value)`` refuses what Cloudflare refuses to send over RPC (a tuple, a
  bytearray, an awaitable not awaited, anywhere in the value) with its ``TypeError``,
  and returns the value;
* ``python_from_rpc(value)`` returns the value with its dicts as :class:`JsDict` (a dict
  whose keys are also attributes: ``row.name``), as a JavaScript object arrives;
* ``@handler`` (for ``on_fetch``-style handlers) has nothing to convert: it returns the
  function unchanged.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from objectd.errors import DurableObjectAbort
from objectd.fetch import Headers, Request, Response
from objectd.forms import Blob, BlobEnding, BlobValue, File, FormData, FormDataValue
from objectd.runtime.hibernation import WebSocketRequestResponsePair
from objectd.runtime.objects import DurableObject, WorkerEntrypoint
from objectd.runtime.outbound import fetch
from objectd.runtime.state import DurableObjectState
from objectd.runtime.websockets import WebSocketPair

__all__ = [
    "Blob",
    "BlobEnding",
    "BlobValue",
    "DurableObject",
    "DurableObjectAbort",
    "DurableObjectContext",
    "DurableObjectState",
    "File",
    "FormData",
    "FormDataValue",
    "Headers",
    "JsDict",
    "Request",
    "Response",
    "WebSocketPair",
    "WebSocketRequestResponsePair",
    "WorkerEntrypoint",
    "fetch",
    "handler",
    "python_from_rpc",
    "python_to_rpc",
]

# Python Workers calls ctx's type DurableObjectContext.
DurableObjectContext = DurableObjectState

F = TypeVar("F", bound=Callable[..., Any])


class JsDict(dict[str, Any]):
    """A dict whose keys are also attributes, as Python Workers shows a JavaScript object."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value


def _refuse(value: Any) -> None:
    if isinstance(value, tuple | bytearray):
        raise TypeError(f"{type(value)} cannot be sent over RPC.")
    if inspect.isawaitable(value):
        raise TypeError(f"Awaitable {type(value)} cannot be sent over RPC.")
    if isinstance(value, dict):
        for item in value.values():
            _refuse(item)
    elif isinstance(value, list | set | frozenset):
        for item in value:
            _refuse(item)


def python_to_rpc(value: Any) -> Any:
    """``value`` as it would cross RPC; refuses tuples, bytearrays and awaitables."""
    _refuse(value)
    return value


def python_from_rpc(value: Any) -> Any:
    """``value`` with its dicts (nested ones too) as :class:`JsDict`."""
    if isinstance(value, dict):
        return JsDict({key: python_from_rpc(item) for key, item in value.items()})
    if isinstance(value, list):
        return [python_from_rpc(item) for item in value]
    return value


def handler(func: F) -> F:
    """Python Workers' ``@handler``: its arguments are native already, so ``func`` itself."""
    return func
