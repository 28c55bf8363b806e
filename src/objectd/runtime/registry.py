"""The runtime view of one Durable Object class: where its objects live and who hosts them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from objectd.errors import DurableObjectError
from objectd.ids import DurableObjectId, IdMinter
from objectd.runtime.committer import Committer
from objectd.runtime.host import ObjectHost
from objectd.runtime.lifecycle import Lifecycle
from objectd.runtime.metrics import ClassCounts, ResetCause
from objectd.runtime.settings import RuntimeSettings
from objectd.storage.database import Backend
from objectd.storage.spares import SpareFiles

if TYPE_CHECKING:
    from objectd.runtime.alarms import AlarmScheduler

__all__ = ["ObjectClass"]

_MAX_INSIDE_NAME = 1024  # bytes of UTF-8 (spec §1.2, CL 2026-03-26)


def _inside(object_id: DurableObjectId) -> DurableObjectId:
    """``object_id`` as the object sees it in ``ctx.id``."""
    name = object_id.name
    if name is None or len(name) * 4 <= _MAX_INSIDE_NAME:  # cheap common case
        return object_id
    if len(name.encode("utf-8", "surrogatepass")) <= _MAX_INSIDE_NAME:
        return object_id
    return DurableObjectId(object_id.raw, None, object_id.jurisdiction)


@dataclass(eq=False)
class ObjectClass:
    """A bound class: its Python type, storage backend, id minter and live hosts."""

    name: str
    cls: type
    backend: Backend
    directory: Path
    minter: IdMinter
    committer: Committer
    env: Any = None
    settings: RuntimeSettings = field(default_factory=RuntimeSettings)
    lifecycle: Lifecycle | None = None  # None: objects stay in memory (unit tests)
    alarms: AlarmScheduler | None = None  # None: alarms are stored but never fire
    spares: SpareFiles | None = None  # ready-made files for new objects (None: none)
    hosts: dict[DurableObjectId, ObjectHost] = field(default_factory=dict)
    # Files of evicted objects being closed in a worker thread (a close checkpoints the
    # WAL and syncs): the next activation of the same id waits for its close.
    closing: dict[DurableObjectId, asyncio.Future[None]] = field(default_factory=dict)
    # Set by retire(): every event, in flight or new, fails with it (see ObjectHost.submit).
    retired: BaseException | None = None
    # Events, activations, overloads, resets of its objects (runtime.metrics).
    counts: ClassCounts = field(default_factory=ClassCounts)
    # Set by close(): the project is closed, so its data folder is no longer this
    # process's to touch.  Every later event fails with it, nothing is opened.
    closed: bool = False

    def host(self, object_id: DurableObjectId) -> ObjectHost:
        """The host of ``object_id`` in this process (one instance per id).

        ``ctx.id`` is the host's id.  A host first reached through ``id_from_string``
        has no name; the first stub whose id carries the name gives it one (checklist
        38), so ``ctx.id.name`` does not depend on which stub came first.  Names over
        1,024 UTF-8 bytes are not shown inside the object, as on Cloudflare.
        """
        if self.closed:
            raise self.closed_error()
        host = self.hosts.get(object_id)
        if host is None:
            host = ObjectHost(self, _inside(object_id))
            self.hosts[object_id] = host
        elif host.id.name is None and object_id.name is not None:
            host.id = _inside(object_id)
        return host

    def closed_error(self) -> DurableObjectError:
        """What a call after :meth:`close` fails with (a new one each time: a raised
        exception keeps its traceback)."""
        return DurableObjectError(
            f"Durable Object class {self.name}: the objectd.Runtime or project that "
            "served it is closed; get a new stub from the env of a started Runtime"
        )

    def object_path(self, object_id: DurableObjectId) -> Path:
        return self.directory / f"{object_id.to_string()}.sqlite"

    def stored_ids(self) -> list[str]:
        """Ids of every object with a database file (listing, migrations)."""
        if not self.directory.is_dir():
            return []
        return sorted(p.name.removesuffix(".sqlite") for p in self.directory.glob("*.sqlite"))

    def retire(self, error: BaseException) -> None:
        """This process serves the class no more (its code was updated, checklist 152):
        reset every object with ``error``, and fail every later call with it too, since
        only the new process has the new code."""
        self.retired = error
        for host in list(self.hosts.values()):
            host.reset(error, cause=ResetCause.CODE_UPDATED)

    async def close(self) -> None:
        """Let the objects' work finish and close their files; from now on every way of
        reaching an object (a stub kept from before, a socket, an alarm) is refused:
        the data folder's lock is about to be released, so another server may own it."""
        self.closed = True
        if self.closing:
            await asyncio.gather(*self.closing.values(), return_exceptions=True)
        for host in list(self.hosts.values()):
            await host.close()
        self.hosts.clear()
