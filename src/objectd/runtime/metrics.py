"""What the runtime counts (L2): the seam between the engine and a metrics exporter.

Two kinds of numbers, both read by an exporter when it is scraped
(``objectd.asgi.metrics`` turns them into Prometheus families):

* **Counts kept anyway**, as plain integers where the event happens: the committer's
  ``commits`` and ``syncs``, the lifecycle's ``evictions`` and live objects, the alarm
  scheduler's ``fired``/``retried``/``abandoned``, and per class (:class:`ClassCounts`,
  ``ObjectClass.counts``) events, activations, queue overloads, output-gate waits and
  resets by :class:`ResetCause`.  An integer increment makes no call, so these cost
  the hot path nothing measurable, metrics on or off.
* **Timings** (commit and sync latency) need the clock read twice and a histogram
  updated: the engine asks :class:`Metrics` for them, and only when
  ``metrics.enabled``.  The default, :data:`NO_METRICS`, is disabled, so with metrics
  off the hot path pays one attribute read.

Numbers are per process (``objectd serve`` is one process today).
"""

from __future__ import annotations

import enum
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field

__all__ = [
    "LATENCY_BUCKETS",
    "NO_METRICS",
    "ClassCounts",
    "Histogram",
    "Metrics",
    "RecordingMetrics",
    "ResetCause",
]

# Upper bounds in seconds: sub-millisecond commits up to the output gate's 30 s limit.
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


class ResetCause(enum.StrEnum):
    """Why an object was reset (its instance dropped, uncommitted writes discarded)."""

    ABORT = "abort"  # ctx.abort()
    CONSTRUCTOR = "constructor"  # the constructor raised
    CRITICAL_SECTION = "critical_section"  # a block_concurrency_while() callback raised
    CRITICAL_SECTION_TIMEOUT = "critical_section_timeout"  # ... or ran past its limit
    CPU_LIMIT = "cpu_limit"
    EXIT = "exit"  # sys.exit() or KeyboardInterrupt raised by the object's code
    STORAGE_TIMEOUT = "storage_timeout"  # a commit not durable within the output gate's limit
    COMMIT_FAILED = "commit_failed"
    EVENT_TIMEOUT = "event_timeout"  # a hibernatable WebSocket handler ran past its limit
    CODE_UPDATED = "code_updated"  # objectd dev reloaded the code (the class was retired)
    OTHER = "other"


@dataclass(slots=True)
class ClassCounts:
    """Counts kept per Durable Object class, read at scrape time."""

    events: int = 0  # submitted to an object of the class (fetch, RPC, alarm, socket event)
    activations: int = 0  # instances constructed
    overloads: int = 0  # events refused because the object's queue was full
    output_gate_waits: int = 0  # events whose result waited for their writes to be durable
    resets: Counter[ResetCause] = field(default_factory=Counter)


class Histogram:
    """Observations counted into fixed buckets (``counts[i]``: values ``<= bounds[i]``,
    the last one: above every bound), and their sum.  Not cumulative; an exporter
    accumulates.  One ``observe`` is one call and one C-level bisection."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ValueError(f"histogram bounds must increase strictly, got {bounds!r}")
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)


class Metrics:
    """The timings the engine reports; this base records nothing (:data:`NO_METRICS`).

    The engine reads the clock only when ``enabled`` is true, then calls a method.
    """

    enabled = False

    def committed(self, seconds: float, /) -> None:
        """One flush committed its objects' transactions (no sync) in ``seconds``."""

    def synced(self, seconds: float, /) -> None:
        """One sync (one object's inline ``fdatasync`` or a group sync) took ``seconds``."""


NO_METRICS = Metrics()


class RecordingMetrics(Metrics):
    """Keeps the timings in histograms, for an exporter to read."""

    enabled = True

    def __init__(self) -> None:
        self.commit_seconds = Histogram()
        self.sync_seconds = Histogram()
        # The engine's call goes straight to the histogram: one Python call, not two.
        self.committed = self.commit_seconds.observe  # type: ignore[method-assign]
        self.synced = self.sync_seconds.observe  # type: ignore[method-assign]
