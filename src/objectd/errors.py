"""Every public exception objectd raises.

The tree::

    DurableObjectError                       root; carries Cloudflare's flags
    ├── DurableObjectTypeError (TypeError)   bad argument: ids, options, RPC names, codec
    │   ├── InvalidIdError                   malformed or foreign object id
    │   ├── RpcError                         reserved / unknown / non-callable RPC method
    │   └── SerializationError               a value the codec cannot carry
    ├── DurableObjectRangeError (ValueError) a size or count over a documented limit
    ├── StorageError                         misuse of the storage API (transactions, backend)
    │   └── SqlError                         SQLite said no; ``code`` is the SQLITE_* name
    ├── ObjectResetError                     the object was reset (durable_object_reset)
    ├── OverloadedError                      too much queued, or a hang that reset it (overloaded)
    ├── ConnectionLostError                  "Network connection lost." (retryable)
    ├── RemoteError                          base of errors raised inside an object (remote)
    ├── DataFolderInUseError                 another server serves this data folder
    └── ConfigError (ValueError)             wrangler config or migrations refused
        └── MigrationError

    DurableObjectAbort (BaseException)       raised by ctx.abort() inside a handler

An error raised inside an object reaches its caller as a copy (:func:`as_remote`)
whose ``remote_trace`` holds the frames where it was raised; ``objectd.report`` shows
them under the caller's own frames.

Flags mirror the properties workerd sets on errors seen through a stub:
``retryable``, ``overloaded``, ``remote`` and ``durable_object_reset`` (camelCase
``durableObjectReset`` too).  Messages follow Cloudflare's texts so that code
matching on them keeps working.
"""

from __future__ import annotations

import builtins
import threading
from typing import Any

from objectd.report import ErrorTrace, capture

__all__ = [
    "ConfigError",
    "ConnectionLostError",
    "DataFolderInUseError",
    "DurableObjectAbort",
    "DurableObjectError",
    "DurableObjectRangeError",
    "DurableObjectTypeError",
    "InvalidIdError",
    "MigrationError",
    "ObjectResetError",
    "OverloadedError",
    "RemoteError",
    "RpcError",
    "SerializationError",
    "SqlError",
    "StorageError",
    "as_remote",
    "remote_error",
]


class DurableObjectError(Exception):
    """Root of every objectd error."""

    retryable: bool = False
    overloaded: bool = False
    remote: bool = False
    durable_object_reset: bool = False
    durable_object_id: str | None = None
    # Where an error raised inside an object came from (set by as_remote; objectd.report).
    remote_trace: ErrorTrace | None = None

    def __init__(self, message: str = "", **flags: Any) -> None:
        super().__init__(message)
        for name, value in flags.items():
            if name not in _FLAG_NAMES:
                raise TypeError(f"unknown error flag {name!r}; allowed: {sorted(_FLAG_NAMES)}")
            setattr(self, name, value)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    @property
    def durableObjectReset(self) -> bool:
        return self.durable_object_reset

    @property
    def durableObjectId(self) -> str | None:
        return self.durable_object_id


_FLAG_NAMES = frozenset(
    {"retryable", "overloaded", "remote", "durable_object_reset", "durable_object_id"}
)


class DurableObjectTypeError(DurableObjectError, TypeError):
    """A JavaScript ``TypeError`` in Cloudflare's runtime."""


class InvalidIdError(DurableObjectTypeError):
    """An object id string that is malformed or was minted by another namespace."""


class RpcError(DurableObjectTypeError):
    """An RPC call to a reserved, missing or non-callable member."""


class SerializationError(DurableObjectTypeError):
    """A value the value codec cannot carry (storage, RPC, attachments)."""


class DurableObjectRangeError(DurableObjectError, ValueError):
    """A JavaScript ``RangeError``: a size or count over a documented limit."""


class StorageError(DurableObjectError):
    """Misuse of the storage API that Cloudflare reports as a plain ``Error``."""


class SqlError(StorageError):
    """An error from SQLite, as ``<sqlite message>: <SQLITE_CODE>``."""

    def __init__(self, message: str, *, code: str = "SQLITE_ERROR") -> None:
        super().__init__(f"{message}: {code}")
        self.code = code


class ObjectResetError(DurableObjectError):
    """The object was reset; durable data is intact, in-memory state is gone."""

    durable_object_reset = True


class OverloadedError(DurableObjectError):
    """Too many requests queued (do not retry), or a hang that reset the object.

    A hang (critical section or storage wait past its limit) also sets
    ``durable_object_reset``; a full queue leaves the object as it was.
    """

    overloaded = True


class ConnectionLostError(DurableObjectError):
    """The path to the object broke; safe to retry idempotent calls."""

    retryable = True

    def __init__(self, message: str = "Network connection lost.", **flags: Any) -> None:
        super().__init__(message, **flags)


class RemoteError(DurableObjectError):
    """Base of the exception types rebuilt from an error raised inside an object.

    ``remote_error`` derives a class that keeps the original type's name and mixes
    in its nearest builtin base, so ``except ValueError`` still catches a
    ``ValueError`` raised in the object.
    """

    remote = True


class DataFolderInUseError(DurableObjectError):
    """A server refused to start: another one holds the data folder (runtime.data_lock)."""


class ConfigError(DurableObjectError, ValueError):
    """A project configuration objectd refuses; the message names file and key path."""


class MigrationError(ConfigError):
    """A migration list or binding that cannot be applied to the data folder."""


class DurableObjectAbort(BaseException):
    """Raised by ``ctx.abort()``; a BaseException so ``except Exception`` cannot swallow it."""

    def __init__(self, reason: str | None = None) -> None:
        self.reason = reason or "Application called abort() to reset Durable Object."
        super().__init__(self.reason)


_remote_types: dict[tuple[str, type[BaseException]], type[RemoteError]] = {}
_remote_lock = threading.Lock()


def _builtin_base(name: str) -> type[Exception]:
    candidate = getattr(builtins, name, None)
    if isinstance(candidate, type) and issubclass(candidate, Exception):
        return candidate
    return Exception


def remote_error(
    type_name: str, message: str, *, base_names: tuple[str, ...] = (), **flags: Any
) -> RemoteError:
    """An exception named ``type_name`` carrying ``message`` with ``remote=True``.

    ``base_names`` lists the original class's ancestors (nearest first); the first one
    that is a builtin exception becomes a base, so callers can catch it as such.
    """
    builtin_base: type[Exception] = Exception
    for name in (type_name, *base_names):
        found = _builtin_base(name)
        if found is not Exception:
            builtin_base = found
            break
    key = (type_name, builtin_base)
    with _remote_lock:
        cls = _remote_types.get(key)
        if cls is None:
            bases: tuple[type, ...] = (RemoteError,)
            if builtin_base is not Exception and not issubclass(RemoteError, builtin_base):
                bases = (RemoteError, builtin_base)
            cls = type(type_name, bases, {"__module__": "objectd.remote"})
            _remote_types[key] = cls
    return cls(message, **flags)


def as_remote(exc: BaseException, *, where: str | None = None) -> DurableObjectError:
    """A copy of an exception raised inside an object, as its caller sees it (remote).

    An objectd error keeps its class and flags; any other becomes :func:`remote_error`
    of its class name and ancestors.  Either carries ``remote_trace``: the frames where
    ``exc`` was raised, in the object named ``where``, captured as plain values so the
    report (``objectd.report``) can show them where the copy is awaited.
    """
    if isinstance(exc, DurableObjectError):
        copied = exc.__class__.__new__(exc.__class__)
        copied.args = exc.args
        copied.__dict__.update(exc.__dict__)
        copied.remote = True
        error: DurableObjectError = copied
    else:
        bases = tuple(cls.__name__ for cls in type(exc).__mro__[1:])
        error = remote_error(type(exc).__name__, str(exc), base_names=bases)
    error.remote_trace = capture(exc, where=where)
    return error
