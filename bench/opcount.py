#!/usr/bin/env python3
"""Operations per request for a fixed workload: a regression guard without timings (issue 5 §4).

Loads ``examples/bench`` in-process (no server, data in a temporary folder, ``fsync``
durability), serves a fixed workload through ``Project.fetch`` and counts, per request:

* ``statements``: SQLite statements executed on every connection the requests use
  (each object's file, the alarm index), from ``sqlite3``'s trace callback;
* ``commits`` and ``syncs``: the committer's counters (group commit shares them);
* ``py_calls`` and ``c_calls``: Python and builtin function calls (a coroutine's
  resumption counts as a call), from a deterministic profiler (``sys.setprofile``).

Counts are deterministic: each workload is warmed up first (activation, statement
caches), requests that dirty several objects in one turn are avoided (their syncs
overlap in threads, whose timing would change the batching), the runtime's clock is a
``FakeClock`` (no eviction pass), the CPU watchdog's heartbeat is not counted, and the
garbage collector is off while counting.  Prints one JSON line::

    .venv/bin/python bench/opcount.py                                   # profile "full"
    .venv/bin/python bench/opcount.py --check bench/opcount-baseline.json
    .venv/bin/python bench/opcount.py --write-baseline bench/opcount-baseline.json
    .venv/bin/python bench/opcount.py --explain hot_seq,kv_put          # what they are
    .venv/bin/python bench/opcount.py --metrics     # with the runtime's timings recorded

``--metrics`` loads the project with ``runtime.metrics.RecordingMetrics`` (as a server with
``/__objectd/metrics`` does): the cost of the commit and sync timings.  The front's own
counts (statuses, request latency) are outside ``Project.fetch`` and not counted here.

``--check`` exits 1 when a count per request grew by more than ``--tolerance`` (25 %)
over the baseline of the same profile; ``--write-baseline`` measures every profile
("full", and "small" for ``tests/unit/test_opcount.py``) and writes the file.

How statements are seen without a hook in ``src/``: the profiler sees every call of a
``sqlite3`` connection or cursor method before it runs, and gives that connection the
trace callback then.  (The audit event ``sqlite3.connect/handle`` is raised before the
connection is usable, so it cannot set one.)
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import re
import sqlite3
import sys
import tempfile
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import objectd
from objectd.runtime.clock import FakeClock
from objectd.runtime.committer import Durability
from objectd.runtime.metrics import NO_METRICS, RecordingMetrics
from objectd.runtime.project import Project
from objectd.runtime.settings import RuntimeSettings
from objectd.runtime.watchdog import CpuWatchdog

ROOT = Path(__file__).resolve().parents[1]
BENCH_APP = ROOT / "examples" / "bench"
METRICS = ("statements", "commits", "syncs", "py_calls", "c_calls")


@dataclasses.dataclass(frozen=True, slots=True)
class Size:
    """Requests per workload; the baseline keeps one set of counts per named size."""

    hot_seq: int  # sequential increments of one counter
    hot_conc: int  # increments of one counter by `clients` concurrent clients
    many_objects: int  # sequential increments spread round-robin over `objects` counters
    objects: int
    kv_put: int  # puts of distinct keys into one KV object by `clients` concurrent clients
    kv_list: int  # list?limit=100 of that object, sequential
    cold_start: int  # first request to a new counter (activation, file creation)
    sql_increment: int  # RPC stub.sqlIncrement(1): sql.exec INSERT ... RETURNING
    clients: int


PROFILES = {
    "full": Size(
        hot_seq=200,
        hot_conc=256,
        many_objects=200,
        objects=100,
        kv_put=100,
        kv_list=50,
        cold_start=50,
        sql_increment=100,
        clients=16,
    ),
    # For tests/unit/test_opcount.py: the same shapes, a few requests each.
    "small": Size(
        hot_seq=20,
        hot_conc=32,
        many_objects=20,
        objects=10,
        kv_put=16,
        kv_list=10,
        cold_start=5,
        sql_increment=10,
        clients=8,
    ),
}
WORKLOADS = tuple(f.name for f in dataclasses.fields(Size) if f.name not in ("objects", "clients"))


# -- SQLite statements: a trace callback on every connection the requests use ------------


class _StatementTracer:
    def __init__(self) -> None:
        self.count = 0
        self.texts: Counter[str] | None = None  # set to record normalised statement texts
        # Strong references (connections take no weak ones), dropped at the end of a run.
        self._traced: dict[int, sqlite3.Connection] = {}

    def attach(self, owner: object) -> None:
        """``owner`` (a connection or cursor) is about to run: trace its connection."""
        conn = owner.connection if isinstance(owner, sqlite3.Cursor) else owner
        if isinstance(conn, sqlite3.Connection) and id(conn) not in self._traced:
            self._traced[id(conn)] = conn
            conn.set_trace_callback(self.statement)

    def statement(self, sql: str) -> None:
        self.count += 1
        if self.texts is not None:
            self.texts[_normalise(sql)] += 1

    def forget(self) -> None:
        self._traced.clear()
        self.texts = None


_tracer = _StatementTracer()
_SQLITE_TYPES = (sqlite3.Connection, sqlite3.Cursor)

_NONCE = re.compile(r"^/\*objectd:[0-9a-f]+\*/ ")
_LITERALS = re.compile(r"X'[0-9A-Fa-f]*'|'(?:[^']|'')*'|\b\d+(?:\.\d+)?\b")


def _normalise(sql: str) -> str:
    """A statement's text without objectd's nonce and with literals as ``?`` (for --explain)."""
    return _LITERALS.sub("?", _NONCE.sub("", sql.strip()))


# -- Python calls: a profile function that counts, skipping timer-driven subtrees -----------


class _CallCounter:
    """Counts ``call`` and ``c_call`` events; the subtrees of ``skip`` code are not counted."""

    def __init__(self, skip: set[CodeType], *, detail: bool) -> None:
        self.py = 0
        self.c = 0
        self.functions: Counter[str] | None = Counter() if detail else None
        self._skip = skip
        self._skipping: FrameType | None = None

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if self._skipping is not None:
            if event == "return" and frame is self._skipping:
                self._skipping = None
            return
        if event == "call":
            code = frame.f_code
            if code in self._skip:
                self._skipping = frame
                return
            if code.co_filename == _OWN_FILE:
                return  # this harness's own helpers are not the runtime's work
            self.py += 1
            if self.functions is not None:
                self.functions[f"{code.co_qualname} ({_short(code.co_filename)})"] += 1
        elif event == "c_call":
            self.c += 1
            # A method of a connection or cursor is about to run: its statements are traced
            # from here on (sqlite3 offers no hook at connect time that could set it).
            owner = getattr(arg, "__self__", None)
            if isinstance(owner, _SQLITE_TYPES):
                _tracer.attach(owner)
            if self.functions is not None:
                self.functions[f"{getattr(arg, '__qualname__', arg)} (builtin)"] += 1


def _short(filename: str) -> str:
    parts = Path(filename).parts
    for anchor in ("objectd", "examples", "asyncio"):
        if anchor in parts:
            return "/".join(parts[parts.index(anchor) :])
    return Path(filename).name


_OWN_FILE = __file__
# Code run by the tools themselves or by a real-time timer, not by the requests.
_SKIP = {
    _StatementTracer.statement.__code__,
    CpuWatchdog._beat.__code__,
}


# -- the workload ------------------------------------------------------------------------


class Meter:
    """Measures phases of one project: per-request deltas of every counter."""

    def __init__(self, project: Project, *, explain: set[str]) -> None:
        self.project = project
        self.explain = explain
        self.counts: dict[str, dict[str, float]] = {}
        self.details: dict[str, dict[str, Counter[str]]] = {}

    @asynccontextmanager
    async def phase(self, name: str, requests: int) -> AsyncIterator[None]:
        committer = self.project.committer
        detail = name in self.explain
        collecting = gc.isenabled()
        gc.collect()
        gc.disable()  # a collection at a timing-dependent moment could run finalizers
        _tracer.count = 0
        _tracer.texts = Counter() if detail else None
        commits, syncs = committer.commits, committer.syncs
        calls = _CallCounter(_SKIP, detail=detail)
        sys.setprofile(calls)
        try:
            yield
        finally:
            sys.setprofile(None)
            if collecting:
                gc.enable()
        per = {
            "statements": _tracer.count,
            "commits": committer.commits - commits,
            "syncs": committer.syncs - syncs,
            "py_calls": calls.py,
            "c_calls": calls.c,
        }
        self.counts[name] = {"requests": requests} | {
            k: round(v / requests, 2) for k, v in per.items()
        }
        if detail:
            assert _tracer.texts is not None
            assert calls.functions is not None
            self.details[name] = {"statements": _tracer.texts, "functions": calls.functions}
        _tracer.texts = None


async def _get(project: Project, path: str, expect: Callable[[str], bool] | None = None) -> str:
    response = await project.fetch(objectd.Request(f"http://bench{path}"))
    body = await response.text()
    if response.status != 200 or (expect is not None and not expect(body)):
        raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
    return body


async def _clients(count: int, requests: int, send: Callable[[int], Awaitable[Any]]) -> None:
    """``requests`` calls of ``send(i)`` spread over ``count`` concurrent clients."""
    numbers = iter(range(requests))

    async def client() -> None:
        for i in numbers:
            await send(i)

    await asyncio.gather(*(client() for _ in range(count)))


async def _workload(project: Project, size: Size, meter: Meter, only: set[str]) -> None:
    async def get(path: str) -> str:
        return await _get(project, path)

    if "hot_seq" in only:
        for _ in range(3):
            await get("/counter/hot/increment")
        async with meter.phase("hot_seq", size.hot_seq):
            for _ in range(size.hot_seq):
                await get("/counter/hot/increment")

    if "hot_conc" in only:
        await _clients(size.clients, size.clients * 2, lambda i: get("/counter/conc/increment"))
        async with meter.phase("hot_conc", size.hot_conc):
            await _clients(size.clients, size.hot_conc, lambda i: get("/counter/conc/increment"))
        expected = str(size.clients * 2 + size.hot_conc)
        await _get(project, "/counter/conc/get", expect=lambda body: body == expected)

    if "many_objects" in only:
        for _ in range(2):
            for i in range(size.objects):
                await get(f"/counter/many{i}/increment")
        async with meter.phase("many_objects", size.many_objects):
            for i in range(size.many_objects):
                await get(f"/counter/many{i % size.objects}/increment")

    if "kv_put" in only or "kv_list" in only:
        for i in range(3):
            await get(f"/kv/store/put?key=warm{i}&value=w")
        async with meter.phase("kv_put", size.kv_put):
            await _clients(
                size.clients, size.kv_put, lambda i: get(f"/kv/store/put?key=key{i:05d}&value=v{i}")
            )
        entries = min(100, size.kv_put + 3)

        def full_page(body: str) -> bool:
            return len(json.loads(body)["entries"]) == entries

        await _get(project, "/kv/store/list?limit=100", expect=full_page)
        async with meter.phase("kv_list", size.kv_list):
            for _ in range(size.kv_list):
                await get("/kv/store/list?limit=100")

    if "cold_start" in only:
        await get("/counter/cold-warm/increment")
        async with meter.phase("cold_start", size.cold_start):
            for i in range(size.cold_start):
                await get(f"/counter/cold{i}/increment")

    if "sql_increment" in only:
        for _ in range(3):
            await get("/counter/sql/sql-increment")
        async with meter.phase("sql_increment", size.sql_increment):
            for _ in range(size.sql_increment):
                await get("/counter/sql/sql-increment")


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop, as ``objectd serve`` runs: its loop internals make no Python calls to count."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported OS
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def _clear_caches() -> None:
    """Empty the process's memo caches that requests fill (``urlsplit``, ``re``, objectd's own
    ``lru_cache``s), so counts do not depend on what ran earlier in the process."""
    re.purge()
    clear_urllib = getattr(urllib.parse, "clear_cache", None)  # undocumented, 3.11 to 3.14
    if clear_urllib is not None:
        clear_urllib()
    for name, module in list(sys.modules.items()):
        if name == "objectd" or name.startswith("objectd."):
            for value in list(vars(module).values()):
                clear = getattr(value, "cache_clear", None)
                if callable(clear):
                    clear()


def measure(
    profile: str = "full",
    *,
    data_dir: Path | None = None,
    only: set[str] | None = None,
    explain: set[str] | None = None,
    metrics: bool = False,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, Counter[str]]]]:
    """Run the workload of ``profile``; per-request counts per workload (and --explain detail)."""
    size = PROFILES[profile]
    only = set(WORKLOADS) if only is None else only

    async def main(root: Path) -> Meter:
        settings = RuntimeSettings(clock=FakeClock())
        project = Project.load(
            BENCH_APP,
            data_dir=root,
            durability=Durability.FSYNC,
            settings=settings,
            metrics=RecordingMetrics() if metrics else NO_METRICS,
        )
        meter = Meter(project, explain=explain or set())
        await project.start()
        try:
            await _workload(project, size, meter, only)
        finally:
            await project.close()
        return meter

    _clear_caches()
    with tempfile.TemporaryDirectory(prefix="opcount-", dir=data_dir) as root:
        try:
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                meter = runner.run(main(Path(root)))
        finally:
            _tracer.forget()
    return meter.counts, meter.details


# -- baseline ---------------------------------------------------------------------------


def environment() -> dict[str, str]:
    return {
        "python": ".".join(map(str, sys.version_info[:3])),
        "objectd": objectd.__version__,
        "sqlite": sqlite3.sqlite_version,
    }


def compare(
    counts: dict[str, dict[str, float]], baseline: dict[str, dict[str, float]], tolerance: float
) -> tuple[list[str], list[str]]:
    """(regressions, improvements): counts above ``baseline * (1 + tolerance)``, and below
    ``baseline * (1 - tolerance)`` (time to refresh the baseline)."""
    worse: list[str] = []
    better: list[str] = []
    for workload, base in baseline.items():
        now = counts.get(workload)
        if now is None:
            continue  # not run (--only)
        for metric in METRICS:
            was, got = base.get(metric, 0.0), now[metric]
            line = f"{workload}.{metric}: {got:g} per request, baseline {was:g}"
            if got > was * (1 + tolerance) + 1e-9:
                worse.append(line)
            elif got < was * (1 - tolerance) - 1e-9:
                better.append(line)
    return worse, better


def write_baseline(path: Path) -> None:
    profiles = {}
    for name, size in PROFILES.items():
        counts, _ = measure(name)
        profiles[name] = {"size": dataclasses.asdict(size), "counts": counts}
    document = {
        "about": "Operations per request of bench/opcount.py; regenerate with "
        "`.venv/bin/python bench/opcount.py --write-baseline bench/opcount-baseline.json`",
        **environment(),
        "profiles": profiles,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def check(
    counts: dict[str, dict[str, float]], path: Path, profile: str, tolerance: float
) -> list[str]:
    """Print the comparison with the baseline at ``path`` to stderr; the regressions."""
    document = json.loads(path.read_text())
    entry = document["profiles"][profile]
    if entry["size"] != dataclasses.asdict(PROFILES[profile]):
        print(f"opcount: note: profile {profile!r} changed since {path}", file=sys.stderr)
    if document.get("python", "").split(".")[:2] != environment()["python"].split(".")[:2]:
        print(
            f"opcount: note: baseline from Python {document.get('python')}, running "
            f"{environment()['python']}: call counts differ a little between versions",
            file=sys.stderr,
        )
    worse, better = compare(counts, entry["counts"], tolerance)
    for line in better:
        print(f"opcount: improved (refresh the baseline): {line}", file=sys.stderr)
    for line in worse:
        print(f"opcount: REGRESSION over {tolerance:.0%}: {line}", file=sys.stderr)
    if not worse:
        print(f"opcount: ok, every count within {tolerance:.0%} of {path}", file=sys.stderr)
    return worse


def _print_details(details: dict[str, dict[str, Counter[str]]], counts: dict[str, Any]) -> None:
    for workload, detail in details.items():
        requests = counts[workload]["requests"]
        print(f"\n== {workload}: statements per request", file=sys.stderr)
        for text, n in detail["statements"].most_common():
            print(f"{n / requests:8.2f}  {text[:150]}", file=sys.stderr)
        print(f"== {workload}: top calls per request", file=sys.stderr)
        for name, n in detail["functions"].most_common(40):
            print(f"{n / requests:8.2f}  {name}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--only", default="", help="comma list of: " + ",".join(WORKLOADS))
    parser.add_argument("--check", type=Path, metavar="BASELINE", help="compare; exit 1 on growth")
    parser.add_argument("--tolerance", type=float, default=0.25, help="allowed growth (0.25)")
    parser.add_argument("--write-baseline", type=Path, metavar="BASELINE")
    parser.add_argument("--metrics", action="store_true", help="record the runtime's timings")
    parser.add_argument(
        "--explain", default="", metavar="WORKLOADS", help="print statements and top calls"
    )
    args = parser.parse_args()
    if args.write_baseline:
        write_baseline(args.write_baseline)
        print(f"opcount: wrote {args.write_baseline}", file=sys.stderr)
        return 0
    only = set(args.only.split(",")) if args.only else None
    explain = set(args.explain.split(",")) if args.explain else set()
    for name in (only or set()) | explain:
        if name not in WORKLOADS:
            parser.error(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")
    counts, details = measure(args.profile, only=only, explain=explain, metrics=args.metrics)
    line = {"tool": "opcount", "profile": args.profile, **environment(), "counts": counts}
    print(json.dumps(line), flush=True)
    _print_details(details, counts)
    if args.check and check(counts, args.check, args.profile, args.tolerance):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
