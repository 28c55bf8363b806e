"""In-process runtime fixtures: real SQLite files under tmp_path, no server."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import CodeType
from typing import Any

from objectd.ids import IdMinter
from objectd.runtime.alarms import AlarmScheduler
from objectd.runtime.committer import Committable, Committer, Durability
from objectd.runtime.lifecycle import Lifecycle
from objectd.runtime.namespace import DurableObjectNamespace, DurableObjectStub
from objectd.runtime.registry import ObjectClass
from objectd.runtime.settings import RuntimeSettings
from objectd.runtime.user_code import UserCode
from objectd.runtime.user_tasks import stuck_in
from objectd.runtime.watchdog import CpuWatchdog
from objectd.storage.database import Backend
from objectd.storage.syncing import sync_files


class RecordingSyncer:
    """A syncer that records each sync and can hold it (threading.Event) or fail it."""

    def __init__(self) -> None:
        self.synced = 0
        self.release = threading.Event()
        self.release.set()
        self.fail_with: BaseException | None = None
        self.log: list[str] | None = None

    def __call__(self, storages: Sequence[Committable]) -> None:
        self.release.wait(10)
        if self.fail_with is not None:
            raise self.fail_with
        sync_files([storage.sync_file for storage in storages])
        self.synced += 1
        if self.log is not None:
            self.log.append("synced")


def settle_io(committer: Committer) -> Callable[[], Awaitable[None]]:
    """A ``FakeClock(settle=...)`` that also waits (for real, at most 10 s) for the
    committer's I/O in threads: fake time must not outrun a real sync or file open, or
    the output gate's 30 s limit on the fake clock times it out."""

    async def settle() -> None:
        deadline = time.monotonic() + 10
        while True:
            for _ in range(20):
                await asyncio.sleep(0)
            if committer.idle:
                return
            if time.monotonic() > deadline:
                raise AssertionError("storage I/O still running after 10 s")
            await asyncio.sleep(0.001)

    return settle


def make_namespace(
    tmp_path: Path,
    cls: type,
    *,
    backend: Backend = Backend.SQLITE,
    committer: Committer | None = None,
    env: Any = None,
    settings: RuntimeSettings | None = None,
    lifecycle: bool = False,
    secret: bytes = b"k" * 32,
) -> DurableObjectNamespace:
    settings = settings or RuntimeSettings()
    object_class = ObjectClass(
        name=cls.__name__,
        cls=cls,
        backend=backend,
        directory=tmp_path / cls.__name__,
        minter=IdMinter(secret),
        committer=committer or Committer(durability=Durability.FSYNC),
        env=env,
        settings=settings,
        lifecycle=Lifecycle(settings) if lifecycle else None,
    )
    return DurableObjectNamespace(object_class)


def run_in(stub: DurableObjectStub, fn: Callable[[Any], Awaitable[Any]]) -> Awaitable[Any]:
    """Run ``fn(instance)`` as an event of the stub's object (like run_in_durable_object)."""
    return stub._class.host(stub.id).submit(fn)


def attach_alarms(
    tmp_path: Path, *namespaces: DurableObjectNamespace, rng: random.Random | None = None
) -> AlarmScheduler:
    """An alarm scheduler for the namespaces' classes (index in tmp_path, not started).

    The classes should share one committer: the scheduler's index is committed by it.
    """
    classes = {ns._class.name: ns._class for ns in namespaces}
    first = namespaces[0]._class
    return AlarmScheduler(
        tmp_path / "alarms.sqlite",
        classes,
        settings=first.settings,
        committer=first.committer,
        rng=rng,
    )


# The tests' own modules play the project's code for the CPU watchdog.
TEST_CODE = UserCode([Path(__file__).parent])


def kit_watchdog(
    limit_s: float = 0.2,
    *,
    grace_s: float | None = None,
    on_stuck: Callable[[str], None] | None = None,
    user_code: Callable[[CodeType], bool] = TEST_CODE,
) -> CpuWatchdog:
    """A CPU watchdog polling every 50 ms; when it gives up on the loop it calls
    ``on_stuck(report)`` (the real one ends the process; by default nothing happens)."""
    return CpuWatchdog(
        limit_s,
        user_code=user_code,
        poll_s=0.05,
        grace_s=grace_s,
        describe=stuck_in,
        on_stuck=on_stuck or (lambda report: None),
    )
