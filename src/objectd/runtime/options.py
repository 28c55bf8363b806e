"""Storage call options: Cloudflare's camelCase or Python's snake_case, checked per method."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from objectd.errors import DurableObjectTypeError

__all__ = ["storage_options"]

_SNAKE = {
    "allowConcurrency": "allow_concurrency",
    "allowUnconfirmed": "allow_unconfirmed",
    "noCache": "no_cache",
}
_READ = frozenset({"allow_concurrency", "no_cache"})
_WRITE = frozenset({"allow_concurrency", "allow_unconfirmed", "no_cache"})
_ALLOWED: dict[str, frozenset[str]] = {
    "get": _READ,
    "put": _WRITE,
    "delete": _WRITE,
    "deleteAll": _WRITE,
    "getAlarm": frozenset({"allow_concurrency"}),
    "setAlarm": frozenset({"allow_concurrency", "allow_unconfirmed"}),
    "deleteAlarm": frozenset({"allow_concurrency", "allow_unconfirmed"}),
}
_EMPTY: Mapping[str, Any] = {}


def storage_options(method: str, options: object, kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
    """Merge ``options`` (a dict, as Cloudflare passes it) and keyword options.

    Every option is a hint or a relaxation (``allow_concurrency``, ``no_cache``,
    ``allow_unconfirmed``), so accepting them never changes what a read returns.
    """
    if options is None and not kwargs:
        return _EMPTY
    if options is not None and not isinstance(options, Mapping):
        raise DurableObjectTypeError(
            f"{method}() options must be a dict, got {type(options).__name__}: {options!r}"
        )
    merged: dict[str, Any] = {}
    for source in (options or {}, kwargs):
        for name, value in source.items():
            merged[_SNAKE.get(name, name)] = value
    unknown = set(merged) - _ALLOWED[method]
    if unknown:
        allowed = ", ".join(sorted(_ALLOWED[method]))
        raise DurableObjectTypeError(
            f"{method}() got unknown option(s) {sorted(unknown)}; allowed: {allowed}"
        )
    return merged
