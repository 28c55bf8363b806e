"""``ctx.storage``: the asynchronous storage API of one object (spec §5, §6).

The async methods never suspend: SQLite answers synchronously, so awaiting a
storage call cannot let another event of the same object in (the input gate holds
by construction).  Writes go into the object's open batch (``storage.database``);
the committer commits and syncs it at the end of the turn.  :meth:`wait_output_gate`
is what every output (response, RPC result, outgoing call) awaits: the latest batch
holding a confirmed write must be durable first.  ``allow_unconfirmed`` writes do
not hold the output gate, but their failure still resets the object.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Generator, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from objectd.errors import (
    DurableObjectError,
    DurableObjectTypeError,
    ObjectResetError,
    OverloadedError,
    StorageError,
)
from objectd.runtime import alarm_ops
from objectd.runtime.commit_failures import commit_failure
from objectd.runtime.committer import Batch, Committer
from objectd.runtime.metrics import ResetCause
from objectd.runtime.options import storage_options
from objectd.runtime.refusal import Refused
from objectd.storage.database import Backend, ObjectDatabase
from objectd.storage.interrupts import pending, raise_pending
from objectd.storage.kv import KvStore, check_batch_size, compile_list_options
from objectd.storage.sql import SqlStorage, SqlStorageCursor

if TYPE_CHECKING:
    from objectd.runtime.host import ObjectHost

__all__ = ["DurableObjectStorage", "DurableObjectTransaction", "SyncKvStorage"]

T = TypeVar("T")
_MISSING: Any = object()

# Cloudflare's message when an output waited too long for its writes (spec §6).
STORAGE_TIMEOUT = (
    "Durable Object storage operation exceeded timeout which caused object to be reset."
)
_NOT_SQL = "Durable Object is not backed by SQL."
_SQL_UNAVAILABLE = (
    "This Durable Object is not backed by SQLite storage, so the SQL API is not available. "
    "SQL can be enabled on a new Durable Object class by using the `new_sqlite_classes` "
    "instead of `new_classes` under `[[migrations]]` in your wrangler.toml, but an "
    "already-deployed class cannot be converted to SQLite (except by deleting the existing data)."
)
_KV_UNAVAILABLE = (
    "The storage.kv (synchronous KV) API is only available for SQLite-backed Durable Objects, "
    "but this object's namespace is not declared to use SQLite. Use `new_sqlite_classes` "
    "instead of `new_classes` under `[[migrations]]` in your wrangler.toml to create "
    "SQLite-backed Durable Objects."
)
_PUT_SHAPE = (
    "put() may only be called with a single key-value pair and optional options as "
    "put(key, value, options) or with multiple key-value pairs and optional options as "
    "put(entries, options)"
)


class Resolved(Generic[T]):
    """An awaitable whose value is already known: awaiting it never suspends.

    Storage calls do their work when they are *called*, as in Cloudflare's runtime,
    so ``storage.put(k, v)`` without ``await`` still writes (and coalesces with the
    turn), and ``await storage.get(k)`` cannot let another event in.
    """

    __slots__ = ("_value",)

    def __init__(self, value: T) -> None:
        self._value = value

    def __await__(self) -> Generator[Any, None, T]:
        return self._value
        yield  # a generator that finishes at once


_DONE: Resolved[None] = Resolved(None)


class _KvOps:
    """The KV operations shared by ``ctx.storage`` and a transaction's ``txn``.

    Each method checks everything before it writes, and hands a refusal back as
    :class:`Refused` (raised when awaited), never raised at call time (issue 10 §2).
    The ``try`` costs nothing when nothing is raised (Python 3.11 zero-cost exceptions).
    """

    _storage: DurableObjectStorage
    _label = "storage"

    def _check(self, op: str) -> None:
        """Hook for transactions to refuse use after rollback or commit."""

    def _refused(self, error: DurableObjectError, op: str) -> Refused[Any]:
        return Refused(error, f"{self._label}.{op}")

    def get(
        self, key: str | list[str], options: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> Awaitable[Any]:
        try:
            self._check("get()")
            storage_options("get", options, kwargs)
            kv = self._storage._kv
            if isinstance(key, str):
                return Resolved(kv.get(key)[1])
            if isinstance(key, (list, tuple)):
                check_batch_size(len(key))
                return Resolved(kv.get_many(key))
            raise DurableObjectTypeError(
                f"get() takes a string key or a list of keys, got {type(key).__name__}"
            )
        except DurableObjectError as exc:
            return self._refused(exc, "get()")

    def put(
        self,
        key: str | Mapping[str, Any],
        value: Any = _MISSING,
        options: Mapping[str, Any] | None = None,
        /,
        **kwargs: Any,
    ) -> Awaitable[None]:
        try:
            self._check("put()")
            storage = self._storage
            kv = storage._kv
            if isinstance(key, Mapping):
                if options is not None:
                    raise DurableObjectTypeError(_PUT_SHAPE)
                opts = storage_options("put", None if value is _MISSING else value, kwargs)
                check_batch_size(len(key))
                pairs = [kv.encode_entry(k, v) for k, v in key.items()]
                with storage._writing(opts):
                    kv.put_encoded(pairs)
                return _DONE
            if value is _MISSING:
                raise DurableObjectTypeError("put() called with undefined value.")
            opts = storage_options("put", options, kwargs)
            pair = kv.encode_entry(key, value)
            with storage._writing(opts):
                kv.put_encoded([pair])
            return _DONE
        except DurableObjectError as exc:
            return self._refused(exc, "put()")

    def delete(
        self, key: str | list[str], options: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> Awaitable[bool] | Awaitable[int]:
        try:
            self._check("delete()")
            storage = self._storage
            opts = storage_options("delete", options, kwargs)
            if isinstance(key, str):
                with storage._writing(opts):
                    return Resolved(storage._kv.delete(key))
            if isinstance(key, (list, tuple)):
                check_batch_size(len(key))
                with storage._writing(opts):
                    return Resolved(storage._kv.delete_many(key))
            raise DurableObjectTypeError(
                f"delete() takes a string key or a list of keys, got {type(key).__name__}"
            )
        except DurableObjectError as exc:
            return self._refused(exc, "delete()")

    def list(
        self, options: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> Awaitable[dict[str, Any]]:
        try:
            self._check("list()")
            merged = {**(options or {}), **kwargs}
            rng = compile_list_options(merged)
            return Resolved(dict(self._storage._kv.list_range(rng)))
        except DurableObjectError as exc:
            return self._refused(exc, "list()")

    # Alarms (spec §7): one per object, epoch milliseconds; see runtime.alarm_ops.

    def get_alarm(
        self, options: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> Awaitable[int | None]:
        try:
            self._check("getAlarm()")
            storage_options("getAlarm", options, kwargs)
            return Resolved(alarm_ops.get_alarm(self._storage))
        except DurableObjectError as exc:
            return self._refused(exc, "getAlarm()")

    def set_alarm(
        self, scheduled_time: Any, options: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> Awaitable[None]:
        """Replace the alarm: ``scheduled_time`` is epoch ms (int/float) or a datetime."""
        try:
            self._check("setAlarm()")
            opts = storage_options("setAlarm", options, kwargs)
            alarm_ops.set_alarm(self._storage, scheduled_time, opts)
            return _DONE
        except DurableObjectError as exc:
            return self._refused(exc, "setAlarm()")

    def delete_alarm(
        self, options: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> Awaitable[None]:
        try:
            self._check("deleteAlarm()")
            opts = storage_options("deleteAlarm", options, kwargs)
            alarm_ops.delete_alarm(self._storage, opts)
            return _DONE
        except DurableObjectError as exc:
            return self._refused(exc, "deleteAlarm()")

    getAlarm = get_alarm
    setAlarm = set_alarm
    deleteAlarm = delete_alarm


class DurableObjectStorage(_KvOps):
    """The storage of one object; one per instance activation."""

    def __init__(self, db: ObjectDatabase, committer: Committer, host: ObjectHost) -> None:
        self._storage = self
        self.database = db
        self._kv = KvStore(db)
        self._committer = committer
        self._host = host
        self._loop = asyncio.get_running_loop()
        self._batch: Batch | None = None  # the open (uncommitted) batch
        self._gate_batch: Batch | None = None  # latest batch holding a confirmed write
        self._committed: Batch | None = None  # latest committed batch of confirmed writes
        self._last_batch: Batch | None = None  # latest batch of any kind (for sync())
        self._unconfirmed = False
        self._sql: SqlStorage | None = None
        self._sync_kv: SyncKvStorage | None = None
        self._transaction_depth = 0
        self._closed = False
        db.set_batch_listener(self._batch_opened)

    # -- the commit path (driven by the committer) ----------------------------------------

    def _batch_opened(self, db: ObjectDatabase) -> None:
        batch = Batch(
            self._loop,
            timeout_s=self._host.settings.output_gate_timeout_s,
            on_timeout=self._batch_expired,
            clock=self._host.clock,
        )
        self._batch = batch
        self._last_batch = batch
        if not self._unconfirmed:
            self._gate_batch = batch
        self._committer.enqueue(self)

    def _writing(self, opts: Mapping[str, Any]) -> _WriteScope:
        return _WriteScope(self, bool(opts.get("allow_unconfirmed")))

    def commit_batch(self) -> Batch | None:
        if self._closed or self.database.in_savepoint:
            return None  # an open transaction(): committed when it ends
        batch, self._batch = self._batch, None
        self.database.commit()
        if batch is not None and batch is self._gate_batch:
            self._committed = batch
        return batch

    @property
    def sync_file(self) -> ObjectDatabase:
        return self.database

    def _batch_expired(self, batch: Batch) -> None:
        """``batch`` is not durable after the output gate's limit: reset (spec §6).

        A hung disk sync or a transaction left open that long; everything held behind
        it fails with Cloudflare's storage timeout error.
        """
        error = OverloadedError(STORAGE_TIMEOUT, durable_object_reset=True)
        for held in {batch, self._batch, self._gate_batch, self._last_batch}:
            if held is not None and not held.done:
                held.settle(error)
        if not self._closed:
            self._host.reset(error, cause=ResetCause.STORAGE_TIMEOUT)

    def batch_failed(self, batch: Batch | None, error: BaseException) -> None:
        failed = commit_failure(error)
        for held in {batch, self._batch, self._gate_batch, self._last_batch}:
            if held is not None and not held.done:
                held.settle(failed)
        if not self._closed:  # a closed view's instance is gone: never reset its successor
            self._host.reset(failed, cause=ResetCause.COMMIT_FAILED)

    def _check(self, op: str) -> None:
        if self._closed:
            raise StorageError("Durable Object storage is no longer accessible.")
        if pending.task is not None:  # the CPU limit stops a stuck handler here
            raise_pending()

    def close_for_reset(self, error: BaseException | None = None) -> None:
        """The instance is going away: discard the open batch and refuse further calls.

        Outputs held behind the discarded writes fail with ``error`` (they must never
        leave: the writes they follow never happened).
        """
        self._closed = True
        self.discard_uncommitted(error)

    def discard_uncommitted(self, error: BaseException | None = None) -> None:
        """Roll back the open batch (abort / reset): its writes never happened."""
        self.database.rollback()
        if self._batch is not None:
            self._batch.settle(error or ObjectResetError("Durable Object was reset."))
            if self._gate_batch is self._batch:
                self._gate_batch = None
            self._batch = None
        self._transaction_depth = 0

    @property
    def last_batch(self) -> Batch | None:
        return self._last_batch

    @property
    def quiescent(self) -> bool:
        """No open batch and every committed batch synced: safe to close the file."""
        last = self._last_batch
        return self._batch is None and (last is None or last.done)

    async def wait_output_gate(self) -> None:
        """Wait until every confirmed write issued so far is durable (spec §6)."""
        batch = self._gate_batch
        if batch is not None:
            await batch.wait()

    def output_gate_batch(self) -> Batch | None:
        """The batch an output issued now must wait for (None: it may leave at once).

        Inside ``transaction()`` the open batch commits only when the closure returns,
        so an outgoing call made in the closure waiting for it would wait forever; it
        waits for the last committed batch instead (the transaction's own writes are
        not yet committed, and a rollback would undo them).
        """
        batch = self._gate_batch
        if batch is None or batch.done:
            return None
        if batch is self._batch and self.database.in_savepoint:
            committed = self._committed
            return committed if committed is not None and not committed.done else None
        return batch

    async def sync(self) -> None:
        """Resolve once every write issued before this call is durable (incl. unconfirmed)."""
        batch = self._last_batch
        if batch is not None:
            await batch.wait()

    # -- other async methods -------------------------------------------------------------

    def delete_all(
        self, options: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> Awaitable[None]:
        try:
            return self._delete_all(options, kwargs)
        except DurableObjectError as exc:
            return self._refused(exc, "deleteAll()")

    def _delete_all(
        self, options: Mapping[str, Any] | None, kwargs: Mapping[str, Any]
    ) -> Resolved[None]:
        self._check("deleteAll()")
        opts = dict(storage_options("deleteAll", options, kwargs))
        if self._transaction_depth:
            raise StorageError("Cannot call deleteAll() within a transaction")
        if self.database.backend is Backend.SQLITE:
            opts.pop("allow_unconfirmed", None)  # ignored for SQLite (spec §5.3)
        with self._writing(opts):
            self._kv.delete_all()
            if self.database.backend is Backend.SQLITE:
                self.sql.drop_all_user_objects()
            if self._host.settings.delete_all_deletes_alarm:  # compat date (checklist 90)
                alarm_ops.clear_alarm(self)
        return _DONE

    async def transaction(self, closure: Callable[[DurableObjectTransaction], Awaitable[T]]) -> T:
        """Run ``closure(txn)`` as a critical section in a savepoint (spec §5.6)."""
        self._check("transaction()")
        async with self._host.critical_section():
            depth = self.database.savepoint_depth
            txn = DurableObjectTransaction(self, depth)
            self._transaction_depth += 1
            try:
                with self.database.savepoint("savepoint"):
                    result = await closure(txn)
                    txn._finished = True
            finally:
                txn._finished = True
                self._transaction_depth -= 1
                if self.database.batch_open and not self.database.in_savepoint:
                    self._committer.enqueue(self)
            return result

    def transaction_sync(self, callback: Callable[[], T]) -> T:
        """Run ``callback()`` synchronously in a savepoint (SQLite only, spec §5.7)."""
        self._check("transactionSync()")
        if self.database.backend is not Backend.SQLITE:
            raise StorageError(_NOT_SQL)
        with self.database.savepoint("sync_savepoint"):
            result = callback()
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()
                raise DurableObjectTypeError(
                    "transactionSync() callback must be synchronous; it returned an awaitable"
                )
        return result

    @property
    def sql(self) -> SqlStorage:
        if self.database.backend is not Backend.SQLITE:
            raise StorageError(_SQL_UNAVAILABLE)
        if self._sql is None:
            self._sql = _GatedSql(self)
        return self._sql

    @property
    def kv(self) -> SyncKvStorage:
        if self.database.backend is not Backend.SQLITE:
            raise StorageError(_KV_UNAVAILABLE)
        if self._sync_kv is None:
            self._sync_kv = SyncKvStorage(self)
        return self._sync_kv

    deleteAll = delete_all
    transactionSync = transaction_sync


class _WriteScope:
    """Marks writes as unconfirmed while they run, and as held by the output gate otherwise."""

    __slots__ = ("_storage", "_unconfirmed")

    def __init__(self, storage: DurableObjectStorage, unconfirmed: bool) -> None:
        self._storage = storage
        self._unconfirmed = unconfirmed

    def __enter__(self) -> None:
        self._storage._unconfirmed = self._unconfirmed

    def __exit__(self, *exc: object) -> None:
        storage = self._storage
        storage._unconfirmed = False
        if not self._unconfirmed and storage._batch is not None:
            storage._gate_batch = storage._batch


class _GatedSql(SqlStorage):
    """User SQL: any exec may write, so it holds the output gate like a confirmed write."""

    def __init__(self, storage: DurableObjectStorage) -> None:
        super().__init__(storage.database)
        self._owner = storage

    def exec(self, query: str, /, *bindings: object) -> SqlStorageCursor:
        self._owner._check("sql.exec()")
        cursor = super().exec(query, *bindings)
        if self._owner._batch is not None:
            self._owner._gate_batch = self._owner._batch
        return cursor


class DurableObjectTransaction(_KvOps):
    """The ``txn`` passed to ``transaction()``'s closure."""

    _label = "txn"

    def __init__(self, storage: DurableObjectStorage, depth: int) -> None:
        self._storage = storage
        self._depth = depth
        self._rolled_back = False
        self._finished = False

    def _check(self, op: str) -> None:
        if pending.task is not None:
            raise_pending()
        if self._rolled_back:
            raise StorageError(f"Cannot {op} on rolled back transaction")
        if self._finished:
            raise StorageError(
                f"Cannot call {op} on transaction that has already committed: "
                "did you move `txn` outside of the closure?"
            )

    def rollback(self) -> None:
        """Discard the transaction's writes; idempotent."""
        if self._rolled_back:
            return
        self._check("rollback()")
        self._storage.database.rollback_savepoint("savepoint", self._depth)
        self._rolled_back = True

    async def delete_all(self, *args: Any, **kwargs: Any) -> None:
        raise StorageError("Cannot call deleteAll() within a transaction")

    deleteAll = delete_all


class SyncKvStorage:
    """``ctx.storage.kv``: synchronous KV over the same table (SQLite only, spec §5.8)."""

    def __init__(self, storage: DurableObjectStorage) -> None:
        self._storage = storage
        self._list_generation = 0

    def get(self, key: str) -> Any:
        self._storage._check("kv.get()")
        return self._storage._kv.get(key)[1]

    def put(self, key: str, value: Any = _MISSING) -> None:
        self._storage._check("kv.put()")
        if value is _MISSING:
            raise DurableObjectTypeError("put() called with undefined value.")
        pair = self._storage._kv.encode_entry(key, value)
        with self._storage._writing({}):
            self._storage._kv.put_encoded([pair])

    def delete(self, key: str) -> bool:
        self._storage._check("kv.delete()")
        with self._storage._writing({}):
            return self._storage._kv.delete(key)

    def list(
        self, options: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> Iterator[tuple[str, Any]]:
        self._storage._check("kv.list()")
        rng = compile_list_options({**(options or {}), **kwargs})
        self._list_generation += 1
        generation = self._list_generation
        rows = self._storage._kv.list_range(rng)  # read at once: no statement left open

        def iterate() -> Iterator[tuple[str, Any]]:
            for row in rows:
                if generation != self._list_generation:
                    raise StorageError(
                        "kv.list() iterator was invalidated because a new call to kv.list() "
                        "was started. Only one kv.list() iterator can exist at a time."
                    )
                yield row

        return iterate()
