"""Limits and timeouts of the runtime, with Cloudflare's defaults (spec §9, §11).

One frozen value, shared by every class of a project; the CLI and tests override
fields.  Each field says where its default comes from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from objectd.runtime.clock import Clock, SystemClock

__all__ = ["RuntimeSettings"]


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    # An object with no work in progress is evicted (hibernated) after this long idle:
    # workerd evicts after 10 s of inactivity; hibernatable sockets stay open.
    idle_timeout_s: float = 10.0
    # Live instances kept in memory at most; past it the least recently used idle
    # object is evicted at once (bounded memory when 100,000 objects are touched).
    # An open object file costs about 160 KB (mostly SQLite's per-connection lookaside).
    max_live_objects: int = 2_000
    # Events queued or running in one object; past it callers get an overloaded error.
    max_queued_events: int = 10_000
    # CPU time one uninterrupted run of a handler may take (Cloudflare: 30 s, raisable
    # to 300 s with limits.cpu_ms).
    cpu_limit_s: float = 30.0
    # Wall time of one alarm() invocation (Cloudflare: 15 minutes).
    alarm_timeout_s: float = 15 * 60.0
    # Wall time of one scheduled() run of a cron trigger (Cloudflare: 15 minutes, the
    # "Duration" limit of Cron Triggers in its Workers limits); past it, it is cancelled.
    scheduled_timeout_s: float = 15 * 60.0
    # A storage commit or output-gate wait longer than this resets the object (30 s).
    output_gate_timeout_s: float = 30.0
    # blockConcurrencyWhile() longer than this resets the object (30 s).
    critical_section_timeout_s: float = 30.0
    # At shutdown, how long (real time) a cancelled task of user code (scheduled(),
    # wait_until(), an object's event after its reset) may take to end; one that swallows
    # its cancellation is then abandoned, logged, so that the shutdown does not hang.
    cancel_wait_s: float = 5.0
    # deleteAll() also deletes the alarm: compatibility_date 2026-02-24 or later, or the
    # flag delete_all_deletes_alarm; earlier dates (or delete_all_preserves_alarm) keep it.
    delete_all_deletes_alarm: bool = True
    clock: Clock = field(default_factory=SystemClock)
