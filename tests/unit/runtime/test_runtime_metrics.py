"""What the runtime counts for metrics (runtime/metrics.py, issue 14 §3): histogram buckets,
commit and sync timings only when metrics are on, and the counts kept per class."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from runtime_kit import make_namespace
from test_committer import FakeStorage, GroupSyncer, commit, settled

from objectd.errors import ObjectResetError, OverloadedError
from objectd.runtime.committer import Committer
from objectd.runtime.metrics import NO_METRICS, Histogram, RecordingMetrics, ResetCause
from objectd.runtime.objects import DurableObject
from objectd.runtime.settings import RuntimeSettings


def test_histogram_buckets_are_upper_bounds() -> None:
    histogram = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        histogram.observe(value)
    assert histogram.counts == [2, 2, 1]  # <= 0.1, <= 1.0, above every bound
    assert histogram.count == 5
    assert histogram.total == pytest.approx(8.65)


def test_histogram_bounds_must_increase() -> None:
    with pytest.raises(ValueError, match="must increase strictly"):
        Histogram((1.0, 0.5))
    with pytest.raises(ValueError, match="must increase strictly"):
        Histogram((1.0, 1.0))


def test_metrics_are_off_by_default() -> None:
    assert Committer().metrics is NO_METRICS
    assert NO_METRICS.enabled is False
    NO_METRICS.committed(1.0)  # records nothing, raises nothing
    NO_METRICS.synced(1.0)


def test_committer_times_commits_and_syncs_when_metrics_are_on() -> None:
    async def main() -> None:
        metrics = RecordingMetrics()
        committer = Committer(syncer=GroupSyncer(), metrics=metrics)
        await commit(committer, FakeStorage("a"))  # one object: an inline sync
        for batch in await commit(committer, *(FakeStorage(n) for n in "bcd")):
            await settled(batch)  # three objects: one group sync in a thread
        assert committer.commits == 4 and committer.syncs == 2
        assert metrics.commit_seconds.count == 2  # one per flush
        assert metrics.sync_seconds.count == 2  # one per sync, inline or grouped
        await committer.close()

    asyncio.run(main())


class Counted(DurableObject):
    def __init__(self, ctx, env) -> None:  # type: ignore[no-untyped-def]
        super().__init__(ctx, env)
        self.gate = asyncio.Event()

    async def write(self) -> int:
        await self.ctx.storage.put("k", 1)
        return 1

    async def read(self) -> object:
        return await self.ctx.storage.get("k")

    async def wait(self) -> str:
        await self.gate.wait()
        return "released"

    def quit(self) -> None:
        self.ctx.abort("done")


def test_counts_per_class_events_activations_gate_waits_resets(tmp_path: Path) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Counted)
        stub = ns.get_by_name("a")
        assert await stub.write() == 1
        assert await stub.read() == 1
        with pytest.raises(ObjectResetError, match="done"):
            await stub.quit()
        assert await ns.get_by_name("a").read() == 1  # constructed again
        counts = ns._class.counts
        assert counts.events == 4
        assert counts.activations == 2
        assert counts.output_gate_waits == 1  # only the write waited for its commit
        assert counts.resets == {ResetCause.ABORT: 1}
        assert counts.overloads == 0
        await ns._class.close()
        await ns._class.committer.close()

    asyncio.run(main())


def test_queue_overloads_are_counted(tmp_path: Path) -> None:
    async def main() -> None:
        ns = make_namespace(tmp_path, Counted, settings=RuntimeSettings(max_queued_events=2))
        stub = ns.get_by_name("a")
        waiting = [asyncio.ensure_future(ns.get_by_name("a").wait()) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(OverloadedError, match="Too many requests queued."):
            await stub.read()
        counts = ns._class.counts
        assert counts.overloads == 1 and counts.events == 2
        host = ns._class.hosts[stub.id]
        for _ in range(500):  # with events queued, its file opens in a worker thread
            if host.instance is not None:
                break
            await asyncio.sleep(0.01)
        host.instance.gate.set()
        assert await asyncio.gather(*waiting) == ["released"] * 2
        await ns._class.close()
        await ns._class.committer.close()

    asyncio.run(main())
