"""The committer's group commit: who is synced with whom, and in what order (spec §4)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runtime_kit import make_namespace

from objectd.runtime.committer import Batch, Committable, Committer, Durability
from objectd.runtime.objects import DurableObject


class FakeStorage:
    """A committable whose every commit yields a fresh batch; records failures."""

    def __init__(self, name: str, file: object | None = None) -> None:
        self.name = name
        self.failed: list[tuple[Batch | None, BaseException]] = []
        self.sync_file: Any = file if file is not None else object()
        self.raise_on_failure = False

    def commit_batch(self) -> Batch | None:
        return Batch(asyncio.get_running_loop())

    def batch_failed(self, batch: Batch | None, error: BaseException) -> None:
        self.failed.append((batch, error))
        if self.raise_on_failure:
            raise RuntimeError("resetting the object failed too")
        if batch is not None:
            batch.settle(error)


class GroupSyncer:
    """Records each sync call's group; ``release`` holds calls from worker threads."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.release = threading.Event()
        self.release.set()
        self.fail_with: BaseException | None = None

    def __call__(self, storages: Sequence[Committable]) -> None:
        names = [s.name for s in storages]  # type: ignore[attr-defined]
        if threading.current_thread() is not threading.main_thread():
            self.release.wait(10)
        self.groups.append(names)
        if self.fail_with is not None:
            raise self.fail_with


async def commit(committer: Committer, *storages: FakeStorage) -> list[Batch]:
    """Enqueue ``storages`` in one turn; return their batches once the flush ran."""
    batches: list[Batch] = []
    for storage in storages:
        original = storage.commit_batch

        def capture(original: Any = original) -> Batch:
            batch: Batch = original()
            batches.append(batch)
            return batch

        storage.commit_batch = capture  # type: ignore[method-assign]
        committer.enqueue(storage)
    await asyncio.sleep(0)  # the flush runs in the next turn
    for storage in storages:
        del storage.commit_batch
    return batches


async def settled(batch: Batch) -> None:
    for _ in range(200):
        if batch.done:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("batch never settled")


def test_066_one_dirty_object_is_synced_inline() -> None:
    async def main() -> None:
        syncer = GroupSyncer()
        committer = Committer(syncer=syncer)
        (batch,) = await commit(committer, FakeStorage("a"))
        assert batch.done and batch.error is None  # synced before the flush returned
        assert syncer.groups == [["a"]]
        await committer.close()

    asyncio.run(main())


def test_066_with_other_events_in_flight_one_object_is_synced_in_a_thread() -> None:
    async def main() -> None:
        syncer = GroupSyncer()
        committer = Committer(syncer=syncer)
        committer.events_in_flight = 5  # as the hosts count them: other events could run
        syncer.release.clear()
        (batch,) = await commit(committer, FakeStorage("a"))
        assert not batch.done  # the loop is free while the sync runs in its thread
        syncer.release.set()
        await settled(batch)
        assert syncer.groups == [["a"]]
        await committer.close()

    asyncio.run(main())


def test_066_dirty_objects_of_one_turn_share_one_group_sync() -> None:
    async def main() -> None:
        syncer = GroupSyncer()
        committer = Committer(syncer=syncer)
        batches = await commit(committer, *(FakeStorage(n) for n in "abcd"))
        for batch in batches:
            await settled(batch)
        assert syncer.groups == [["a", "b", "c", "d"]]
        assert committer.syncs == 1 and committer.commits == 4
        await committer.close()

    asyncio.run(main())


def test_033_group_syncs_run_one_at_a_time_and_keep_an_objects_order() -> None:
    async def main() -> None:
        syncer = GroupSyncer()
        committer = Committer(syncer=syncer)
        a, b, c = FakeStorage("a"), FakeStorage("b"), FakeStorage("c")
        syncer.release.clear()
        first = await commit(committer, a, b)  # a group sync, held in its thread
        # a alone: it has a batch in flight, so it waits for the next group instead of
        # being synced inline (its newer batch must not become durable first).
        (a_again,) = await commit(committer, a)
        # c alone, with nothing in flight: synced inline at once.
        (c_batch,) = await commit(committer, c)
        assert c_batch.done
        second = await commit(committer, b, c)
        await asyncio.sleep(0.02)
        assert not any(batch.done for batch in [*first, a_again, *second])
        syncer.release.set()
        for batch in [*first, a_again, *second]:
            await settled(batch)
        assert syncer.groups == [["c"], ["a", "b"], ["a", "b", "c"]]
        await committer.close()

    asyncio.run(main())


def test_071_a_failed_group_sync_fails_every_batch_of_the_group() -> None:
    async def main() -> None:
        syncer = GroupSyncer()
        committer = Committer(syncer=syncer)
        syncer.fail_with = OSError(5, "Input/output error")
        a, b = FakeStorage("a"), FakeStorage("b")
        batches = await commit(committer, a, b)
        for batch in batches:
            await settled(batch)
            assert isinstance(batch.error, OSError)
        assert [len(s.failed) for s in (a, b)] == [1, 1]
        syncer.fail_with = None
        (ok,) = await commit(committer, a)
        assert ok.done and ok.error is None  # the next commit is not affected
        await committer.close()

    asyncio.run(main())


def test_033_a_reset_objects_new_storage_waits_behind_its_files_batches() -> None:
    async def main() -> None:
        syncer = GroupSyncer()
        committer = Committer(syncer=syncer)
        file = object()
        old, other = FakeStorage("old", file), FakeStorage("other")
        syncer.release.clear()
        first = await commit(committer, old, other)  # old's batch is in the group in flight
        new = FakeStorage("new", file)  # the instance after a reset: same file
        (later,) = await commit(committer, new)
        assert not later.done  # not synced inline ahead of the older batch of its file
        syncer.release.set()
        for batch in [*first, later]:
            await settled(batch)
        assert syncer.groups == [["old", "other"], ["new"]]
        await committer.close()

    asyncio.run(main())


def test_071_a_failed_group_fails_later_batches_of_its_files() -> None:
    async def main() -> None:
        syncer = GroupSyncer()
        committer = Committer(syncer=syncer)
        a, b, c = FakeStorage("a"), FakeStorage("b"), FakeStorage("c")
        syncer.release.clear()
        syncer.fail_with = OSError(5, "Input/output error")
        first = await commit(committer, a, b)
        queued = await commit(committer, a, c)  # a's second batch follows the first in its WAL
        syncer.release.set()
        await settled(queued[1])
        for batch in [*first, queued[0]]:
            await settled(batch)
            assert isinstance(batch.error, OSError)
        assert syncer.groups == [["a", "b"], ["c"]]  # c alone is synced, and fails too here
        await committer.close()

    asyncio.run(main())


def test_a_failure_that_raises_does_not_strand_the_next_group() -> None:
    async def main() -> None:
        syncer = GroupSyncer()
        committer = Committer(syncer=syncer)
        a, b = FakeStorage("a"), FakeStorage("b")
        a.raise_on_failure = True
        syncer.release.clear()
        syncer.fail_with = OSError(5, "Input/output error")
        first = await commit(committer, a, b)
        queued = await commit(committer, FakeStorage("c"), FakeStorage("d"))
        syncer.release.set()
        for batch in [*first, *queued]:
            await settled(batch)  # the next group still ran, and every batch has its outcome
        assert syncer.groups == [["a", "b"], ["c", "d"]]
        assert all(isinstance(batch.error, OSError) for batch in [*first, *queued])
        assert len(b.failed) == 1  # b was failed although a's failure raised first
        await committer.close()

    asyncio.run(main())


def test_drain_waits_for_every_group() -> None:
    async def main() -> None:
        syncer = GroupSyncer()
        committer = Committer(syncer=syncer)
        syncer.release.clear()
        first = await commit(committer, FakeStorage("a"), FakeStorage("b"))
        second = await commit(committer, FakeStorage("c"), FakeStorage("d"))
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, syncer.release.set)
        await committer.drain()
        assert all(batch.done for batch in [*first, *second])
        await committer.close()

    asyncio.run(main())


def test_process_durability_never_syncs() -> None:
    async def main() -> None:
        syncer = GroupSyncer()
        committer = Committer(durability=Durability.PROCESS, syncer=syncer)
        batches = await commit(committer, FakeStorage("a"), FakeStorage("b"))
        assert all(batch.done for batch in batches)
        assert syncer.groups == []
        await committer.close()

    asyncio.run(main())


class Bumper(DurableObject):
    async def bump(self, fail: bool) -> int:
        value = (await self.ctx.storage.get("n") or 0) + 1
        await self.ctx.storage.put("n", value)
        if fail:
            raise ValueError("failed after writing")
        return int(value)


def test_hosts_keep_the_count_of_events_in_flight(tmp_path: Path) -> None:
    async def main() -> None:
        committer = Committer()
        ns = make_namespace(tmp_path, Bumper, committer=committer)
        calls = [ns.get_by_name(f"o{i % 3}").bump(i % 4 == 0) for i in range(20)]
        assert committer.events_in_flight == 20  # counted when submitted
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert sum(isinstance(r, ValueError) for r in results) == 5
        assert committer.events_in_flight == 0
        await committer.close()

    asyncio.run(main())
