"""Alarm firing lateness: 10,000 alarms due within the same minute, on one objectd.

What runs: an in-process objectd ``Project`` (no HTTP front; real SQLite files under
a temporary folder, the default ``fsync`` durability, the real clock, the idle
evictor on with ``--idle-timeout``, so by default most objects are evicted before
their alarm and constructed again by it).  The objects' files are created first
(not measured).  Then a fresh Project gives each of ``--count`` objects one alarm at
a random time in a ``--window``-second window that opens ``--lead`` seconds after
that Project started.
``alarm(info)`` records ``now - info.scheduled_time`` (the lateness) and does one
storage write, like the bench app's AlarmObject.  The script stops once every
alarm fired, or ``--window + --lead + 60`` seconds after it started, and prints one
JSON line::

    .venv/bin/python bench/alarms.py [--count 10000] [--window 60] [--lead 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from objectd.runtime.committer import Durability
from objectd.runtime.project import Project
from objectd.runtime.settings import RuntimeSettings

WRANGLER = """
name = "alarm-bench"
main = "worker.py"

[[durable_objects.bindings]]
name = "SLEEPER"
class_name = "Sleeper"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Sleeper"]
"""

WORKER = """
import time

from objectd import DurableObject, Response, WorkerEntrypoint

ON_FIRE = None  # set by the bench: called with each alarm's lateness in ms


class Sleeper(DurableObject):
    async def touch(self):
        await self.ctx.storage.put("ready", True)

    async def arm(self, when):
        await self.ctx.storage.set_alarm(when)

    async def alarm(self, info):
        ON_FIRE(time.time() * 1000 - info.scheduled_time)
        count = (await self.ctx.storage.get("count") or 0) + 1
        await self.ctx.storage.put("count", count)


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response("ok")
"""


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted ``values``."""
    index = max(0, min(len(values) - 1, round(fraction * len(values) + 0.5) - 1))
    return values[index]


async def prepare(count: int, folder: Path) -> float:
    """Create the objects' files first (not measured), so setting alarms is not file creation."""
    started = time.time()
    project = Project.load(folder, durability=Durability.PROCESS)
    try:
        namespace = project.env.SLEEPER
        for first in range(0, count, 500):
            batch = range(first, min(first + 500, count))
            await asyncio.gather(*(namespace.get_by_name(f"s{i}").touch() for i in batch))
    finally:
        await project.close()
    return time.time() - started


async def measure(
    count: int, window: float, lead: float, seed: int, idle_timeout: float, folder: Path
) -> dict[str, object]:
    started = time.time()
    settings = RuntimeSettings(idle_timeout_s=idle_timeout)
    project = Project.load(folder, durability=Durability.FSYNC, settings=settings)
    await project.start()
    try:
        lateness: list[float] = []
        all_fired = asyncio.Event()

        def on_fire(ms: float) -> None:
            lateness.append(ms)
            if len(lateness) >= count:
                all_fired.set()

        project.module.ON_FIRE = on_fire
        namespace = project.env.SLEEPER
        rng = random.Random(seed)
        opens = (started + lead) * 1000
        times = [int(opens + rng.random() * window * 1000) for _ in range(count)]
        for first in range(0, count, 500):  # 500 concurrent RPCs: one group commit each
            batch = range(first, min(first + 500, count))
            await asyncio.gather(*(namespace.get_by_name(f"s{i}").arm(times[i]) for i in batch))
        set_s = time.time() - started
        with contextlib.suppress(TimeoutError):  # bounded: report what fired by then
            async with asyncio.timeout(started + lead + window + 60 - time.time()):
                await all_fired.wait()
        fired = sorted(lateness)
    finally:
        await project.close()
    return {
        "bench": "alarms",
        "runtime": "objectd in-process Project (no HTTP), fsync durability",
        "alarms": count,
        "window_s": window,
        "idle_timeout_s": idle_timeout,
        "max_live_objects": settings.max_live_objects,
        "set_s": round(set_s, 2),
        "set_before_window": set_s < lead,
        "fired": len(fired),
        "lateness_ms": {
            "p50": round(percentile(fired, 0.50), 2) if fired else None,
            "p99": round(percentile(fired, 0.99), 2) if fired else None,
            "max": round(fired[-1], 2) if fired else None,
            "min": round(fired[0], 2) if fired else None,
        },
    }


async def run(args: argparse.Namespace, folder: Path) -> dict[str, object]:
    (folder / "wrangler.toml").write_text(WRANGLER)
    (folder / "worker.py").write_text(textwrap.dedent(WORKER))
    sys.modules.pop("worker", None)
    prepare_s = await prepare(args.count, folder)
    result = await measure(args.count, args.window, args.lead, args.seed, args.idle_timeout, folder)
    return {**result, "prepare_s": round(prepare_s, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--window", type=float, default=60.0, help="seconds the alarms spread over")
    parser.add_argument(
        "--lead",
        type=float,
        default=60.0,
        help="seconds before the window opens (setting 10,000 alarms must fit in it)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=RuntimeSettings().idle_timeout_s,
        help="seconds before an idle object is evicted (a large value keeps all in memory)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="objectd-alarm-bench-") as folder:
        result = asyncio.run(run(args, Path(folder)))
    print(json.dumps(result, separators=(",", ":")))


if __name__ == "__main__":
    main()
