"""Which objects stay in memory: idle eviction and the live-object cap (spec §9).

Live hosts are kept in least-recently-used order (touched when an event enters).
A reaper evicts hosts idle longer than ``idle_timeout_s`` (Cloudflare hibernates an
idle object after 10 s); whenever more than ``max_live_objects`` are live, the least
recently used idle ones are evicted at once, so memory stays bounded however many
objects are touched.  Eviction closes the object's file; storage is untouched and
the next event constructs the object again.  Scans stop at the first recently
touched host, so a reap costs what it evicts, not the number of live objects.

``max_live_objects`` is a hard limit on open files: every live object counts, pinned
ones too (an open streamed response, a standard WebSocket, work in progress), since the
descriptor plan (``asgi.limits``) gives objects exactly that many files.  An object is
opened only once :meth:`Lifecycle.admit` found room, evicting idle ones if it must;
when every live object is pinned, the activation is refused (``OverloadedError``,
retryable: the front answers 503 with Retry-After) rather than opened past the plan.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import TYPE_CHECKING

from objectd.runtime.memory import release_free_memory
from objectd.runtime.settings import RuntimeSettings

if TYPE_CHECKING:
    from objectd.runtime.host import ObjectHost

__all__ = ["LIVE_LIMIT_MESSAGE", "Lifecycle"]

LIVE_LIMIT_MESSAGE = (
    "Durable Object is overloaded: the server has its limit of live objects open "
    "(--max-live-objects), each held by a stream, a WebSocket or work in progress; "
    "retry later."
)

log = logging.getLogger("objectd.runtime")


class Lifecycle:
    def __init__(self, settings: RuntimeSettings) -> None:
        self.settings = settings
        self._live: OrderedDict[ObjectHost, None] = OrderedDict()
        self.evictions = 0
        self._last_trim = 0.0
        self._opening = 0  # admitted opens not finished yet: they count against the limit
        self.refusals = 0  # activations refused: every live object was pinned
        self._refusal_logged_at = float("-inf")

    @property
    def live_count(self) -> int:
        return len(self._live)

    def touch(self, host: ObjectHost) -> None:
        host.last_touch = self.settings.clock.monotonic()
        if host in self._live:
            self._live.move_to_end(host)

    def activated(self, host: ObjectHost) -> None:
        """``host`` has its file open (after :meth:`admit`, which made the room)."""
        self._live[host] = None
        self._live.move_to_end(host)

    def admit(self) -> bool:
        """Room for one more open file: evict idle objects if the limit is reached.

        True reserves the room until :meth:`admitted`; False: every live object is
        pinned (the caller refuses the activation)."""
        limit = self.settings.max_live_objects
        excess = len(self._live) + self._opening - limit + 1
        if excess > 0:
            evicted = 0
            # Pinned objects drift to the front of the LRU order: look at all of them.
            for host in list(self._live):
                if evicted >= excess:
                    break
                if host.can_evict():
                    host.evict()
                    evicted += 1
            self._evicted(evicted)
            if evicted < excess:
                self._refused()
                return False
        self._opening += 1
        return True

    def _refused(self) -> None:
        """Count a refusal; tell the operator at most once every 10 s."""
        self.refusals += 1
        now = self.settings.clock.monotonic()
        if now - self._refusal_logged_at >= 10.0:
            self._refusal_logged_at = now
            log.warning(
                "objectd: %d activation(s) refused so far: %d live objects, the limit "
                "(--max-live-objects), are all held by streams, WebSockets or work",
                self.refusals,
                len(self._live),
            )

    def admitted(self) -> None:
        """An admitted open has ended (its host is live now, or the open failed)."""
        self._opening -= 1

    def forget(self, host: ObjectHost) -> None:
        self._live.pop(host, None)

    def _evicted(self, count: int) -> None:
        """Account for evictions and give freed memory back, at most once a second."""
        if count <= 0:
            return
        self.evictions += count
        now = self.settings.clock.monotonic()
        if now - self._last_trim >= 1.0:
            self._last_trim = now
            release_free_memory()

    def reap(self) -> int:
        """Evict every host idle past the timeout; returns how many."""
        now = self.settings.clock.monotonic()
        timeout = self.settings.idle_timeout_s
        evicted = 0
        for host in list(self._live):
            if now - host.last_touch < timeout:
                break  # LRU order: everything after was touched more recently
            if now - host.idle_since >= timeout and host.can_evict():
                host.evict()
                evicted += 1
        self._evicted(evicted)
        return evicted

    async def run(self) -> None:
        """Reap every half timeout (at most every second) until cancelled."""
        interval = min(1.0, self.settings.idle_timeout_s / 2)
        while True:
            await self.settings.clock.sleep(interval)
            try:
                self.reap()
            except Exception:
                log.exception("objectd: eviction pass failed")

    async def close(self) -> None:
        self._live.clear()
