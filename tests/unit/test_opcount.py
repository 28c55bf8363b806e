"""The operation-count guard (issue 5 §4): bench/opcount.py at its small size stays within
the committed baseline.  Counts, not timings: SQLite statements, commits, syncs and
Python/builtin calls per request are deterministic, so the test is not flaky; a change
that makes them grow by more than the tolerance fails here.  After an intended change,
regenerate the baseline (see bench/opcount.py)."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
TOLERANCE = 0.25


@pytest.fixture
def opcount() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("objectd_bench_opcount", BENCH / "opcount.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Project.load imports examples/bench/worker.py as `worker` and puts its folder on
    # sys.path: leave both as they were for the next test.
    saved_path, saved_worker = list(sys.path), sys.modules.get("worker")
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)
        sys.path[:] = saved_path
        if saved_worker is None:
            sys.modules.pop("worker", None)
        else:
            sys.modules["worker"] = saved_worker


def test_operation_counts_within_baseline(opcount: ModuleType, tmp_path: Path) -> None:
    counts, _ = opcount.measure("small", data_dir=tmp_path)
    baseline = json.loads((BENCH / "opcount-baseline.json").read_text())["profiles"]["small"]
    assert set(counts) == set(baseline["counts"]) == set(opcount.WORKLOADS)
    worse, _ = opcount.compare(counts, baseline["counts"], TOLERANCE)
    assert not worse, "operation counts per request grew:\n" + "\n".join(worse)
    # The shape group commit must keep: one commit and one sync per sequential write,
    # far fewer under concurrency, none for reads.
    assert counts["hot_seq"]["syncs"] == counts["hot_seq"]["commits"] == 1
    assert counts["hot_conc"]["commits"] < 0.5
    assert counts["kv_list"]["commits"] == counts["kv_list"]["syncs"] == 0
