"""``/__objectd/metrics``: the runtime's numbers in Prometheus' text format (L3).

Served under the admin rule (``asgi.admin``: open in ``objectd dev``, only with
``--admin-token`` in ``serve``); when the admin surface is off, nothing is counted
here and the runtime reports its timings nowhere (``runtime.metrics.NO_METRICS``).

Nothing is incremented through ``prometheus_client`` on a request's path: its
``Counter.inc`` and ``Histogram.observe`` take a lock and make several calls each.
The front and the runtime keep plain integers and :class:`~objectd.runtime.metrics.
Histogram` buckets, and a custom collector turns them into metric families when
``/__objectd/metrics`` is scraped.  Each app has its own ``CollectorRegistry``: two
apps in one process (tests, an app embedding objectd) never mix their numbers, and the
process-wide default registry is left to the host application.

The numbers are those of one process.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from objectd.runtime.metrics import Histogram, RecordingMetrics
from objectd.runtime.phase import HostPhase

if TYPE_CHECKING:
    from objectd.runtime.project import Project

__all__ = ["METRIC_NAMES", "FrontCounts", "MetricsEndpoint"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Handler = Callable[[Scope, Receive, Send], Awaitable[None]]

# What generate_latest() writes: the text format every Prometheus version reads.
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

# Every family the endpoint serves (the README lists them).
METRIC_NAMES = (
    "objectd_http_requests",
    "objectd_http_request_duration_seconds",
    "objectd_websockets_open",
    "objectd_websockets_accepted",
    "objectd_websockets_hibernated",
    "objectd_events",
    "objectd_live_objects",
    "objectd_activations",
    "objectd_evictions",
    "objectd_commits",
    "objectd_commit_duration_seconds",
    "objectd_syncs",
    "objectd_sync_duration_seconds",
    "objectd_output_gate_waits",
    "objectd_alarms_fired",
    "objectd_alarms_retried",
    "objectd_alarms_abandoned",
    "objectd_queue_overloads",
    "objectd_resets",
)
# Counts kept per class (runtime.metrics.ClassCounts): attribute, family, help.
_PER_CLASS = (
    ("events", "objectd_events", "Events delivered to objects (fetch, RPC, alarm, socket)."),
    ("activations", "objectd_activations", "Object instances constructed."),
    (
        "output_gate_waits",
        "objectd_output_gate_waits",
        "Results held by the output gate until their writes were durable.",
    ),
    ("overloads", "objectd_queue_overloads", "Events refused because the object's queue was full."),
)


class FrontCounts:
    """What the HTTP front counts: answers by status, their latency, open WebSockets."""

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}
        self.latency = Histogram()
        self.websockets_open = 0
        self.websockets_accepted = 0

    async def serve(self, handler: Handler, scope: Scope, receive: Receive, send: Send) -> None:
        """Run ``handler`` for an HTTP request, counting its answer's status and the time
        from the app's receiving the request (its head parsed) to the last byte of the
        answer handed to the server.  A request whose client left before an answer is not
        counted."""
        started = time.perf_counter()
        status = 0

        async def counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await handler(scope, receive, counted)
        finally:
            if status:
                self.statuses[status] = self.statuses.get(status, 0) + 1
                self.latency.observe(time.perf_counter() - started)


class MetricsEndpoint:
    """The admin handler for ``/__objectd/metrics``, and the registry behind it."""

    def __init__(self, project: Callable[[], Project | None]) -> None:
        self.front = FrontCounts()
        self.runtime = RecordingMetrics()  # handed to Project.load: commit and sync timings
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(project, self.front, self.runtime))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method", "GET") not in ("GET", "HEAD"):
            body = b"objectd admin: metrics are read with GET\n"
            await _answer(send, 405, body, b"text/plain", [(b"allow", b"GET, HEAD")])
            return
        body = generate_latest(self.registry)
        await _answer(send, 200, b"" if scope.get("method") == "HEAD" else body)


class _Collector:
    """Reads the counts the front and the runtime keep, at scrape time."""

    def __init__(
        self,
        project: Callable[[], Project | None],
        front: FrontCounts,
        runtime: RecordingMetrics,
    ) -> None:
        self._project = project
        self._front = front
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        front = self._front
        requests = CounterMetricFamily(
            "objectd_http_requests", "HTTP requests answered, by status.", labels=["status"]
        )
        for status, count in sorted(front.statuses.items()):
            requests.add_metric([str(status)], count)
        yield requests
        yield _histogram(
            "objectd_http_request_duration_seconds",
            "Seconds from a request reaching the app to its whole answer.",
            front.latency,
        )
        yield GaugeMetricFamily(
            "objectd_websockets_open",
            "Client WebSocket connections this process holds open.",
            value=front.websockets_open,
        )
        yield CounterMetricFamily(
            "objectd_websockets_accepted",
            "Client WebSocket connections accepted.",
            value=front.websockets_accepted,
        )
        yield from self._runtime_families()

    def _runtime_families(self) -> Iterator[Metric]:
        project = self._project()
        families = {
            attr: CounterMetricFamily(name, doc, labels=["class"]) for attr, name, doc in _PER_CLASS
        }
        resets = CounterMetricFamily(
            "objectd_resets", "Objects reset, by cause.", labels=["class", "cause"]
        )
        hibernated = GaugeMetricFamily(
            "objectd_websockets_hibernated",
            "Hibernatable WebSockets of objects that are not in memory.",
            labels=["class"],
        )
        classes = project.classes.values() if project is not None else ()
        for object_class in classes:
            counts = object_class.counts
            for attr, family in families.items():
                family.add_metric([object_class.name], getattr(counts, attr))
            for cause, count in sorted(counts.resets.items()):
                resets.add_metric([object_class.name, cause.value], count)
            sleeping = 0
            for host in list(object_class.hosts.values()):
                sockets = host.websockets
                if sockets is not None and host.phase is HostPhase.COLD:
                    sleeping += sockets.hibernatable_count
            hibernated.add_metric([object_class.name], sleeping)
        yield from families.values()
        yield resets
        yield hibernated
        lifecycle = project.lifecycle if project is not None else None
        committer = project.committer if project is not None else None
        alarms = project.alarms if project is not None else None
        yield GaugeMetricFamily(
            "objectd_live_objects",
            "Objects whose file is open in this process.",
            value=lifecycle.live_count if lifecycle is not None else 0,
        )
        yield CounterMetricFamily(
            "objectd_evictions",
            "Idle objects evicted (their instance dropped, storage kept).",
            value=lifecycle.evictions if lifecycle is not None else 0,
        )
        yield CounterMetricFamily(
            "objectd_commits",
            "Object write batches committed.",
            value=committer.commits if committer is not None else 0,
        )
        yield _histogram(
            "objectd_commit_duration_seconds",
            "Seconds one flush took to commit its objects' transactions (before the sync).",
            self._runtime.commit_seconds,
        )
        yield CounterMetricFamily(
            "objectd_syncs",
            "Syncs to disk (one object's, or one group's).",
            value=committer.syncs if committer is not None else 0,
        )
        yield _histogram(
            "objectd_sync_duration_seconds",
            "Seconds one sync to disk took.",
            self._runtime.sync_seconds,
        )
        for what, doc in (
            ("fired", "alarm() runs that succeeded."),
            ("retried", "alarm() runs that failed and were retried later."),
            ("abandoned", "Alarms deleted after their last retry failed."),
        ):
            yield CounterMetricFamily(
                f"objectd_alarms_{what}", doc, value=getattr(alarms, what) if alarms else 0
            )


def _histogram(name: str, doc: str, histogram: Histogram) -> HistogramMetricFamily:
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip(histogram.bounds, histogram.counts, strict=False):
        running += count
        buckets.append((repr(float(bound)), running))
    buckets.append(("+Inf", running + histogram.counts[-1]))
    family = HistogramMetricFamily(name, doc)
    family.add_metric([], buckets, histogram.total)
    return family


async def _answer(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = b"",
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        *(extra or []),
        (b"content-type", content_type or CONTENT_TYPE),
        (b"cache-control", b"no-store"),
        (b"content-length", b"%d" % len(body)),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
