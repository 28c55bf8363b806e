"""Where an object's host is in its life: the file and the instance, as one checked state.

An object's file must be opened at most once at a time in this process (one live
instance per id; two exclusive SQLite connections on one file wait on each other).
Rather than several fields that together mean "opening" or "live", a host has one
:class:`HostPhase`, changed only through :func:`advance`, which refuses a transition
the table below does not allow:

    COLD ──────────────▶ OPEN ──▶ CONSTRUCTING ──▶ LIVE
      │  (inline open)    ▲  ▲          │             │
      └──▶ OPENING ───────┘  └──────────┴─────────────┘ (reset: instance dropped)
            │ (failed, or nobody waits)
            ▼
           COLD ◀──────────── OPEN, LIVE (evicted or closed: the file is closed)

The file's connection exists exactly in OPEN, CONSTRUCTING and LIVE.
"""

from __future__ import annotations

import enum

__all__ = ["HostPhase", "PhaseError", "advance"]


class HostPhase(enum.Enum):
    COLD = "cold"  # no file open, no instance; the next event opens the file
    OPENING = "opening"  # a worker thread is opening the file; events wait for it
    OPEN = "open"  # the file is open; no instance (not constructed yet, or reset)
    CONSTRUCTING = "constructing"  # the constructor is running
    LIVE = "live"  # the instance serves events


class PhaseError(RuntimeError):
    """An impossible transition: a bug in the runtime, never the user's fault."""


_ALLOWED: dict[HostPhase, frozenset[HostPhase]] = {
    HostPhase.COLD: frozenset({HostPhase.OPENING, HostPhase.OPEN}),
    HostPhase.OPENING: frozenset({HostPhase.OPEN, HostPhase.COLD}),
    HostPhase.OPEN: frozenset({HostPhase.CONSTRUCTING, HostPhase.COLD}),
    HostPhase.CONSTRUCTING: frozenset({HostPhase.LIVE, HostPhase.OPEN}),
    HostPhase.LIVE: frozenset({HostPhase.OPEN, HostPhase.COLD}),
}

HAS_FILE = frozenset({HostPhase.OPEN, HostPhase.CONSTRUCTING, HostPhase.LIVE})


def advance(current: HostPhase, target: HostPhase) -> HostPhase:
    """``target`` if the table allows ``current -> target``; else :class:`PhaseError`."""
    if target not in _ALLOWED[current]:
        raise PhaseError(f"object host cannot go from {current.name} to {target.name}")
    return target
