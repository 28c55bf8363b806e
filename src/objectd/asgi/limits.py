"""The front's limits: what one client may hold of the server, with their defaults.

ARCHITECTURE §11: nothing a client sends may freeze or exhaust the server, so every
resource a connection can take has a bound.  The defaults follow Cloudflare where it
publishes a value and say why where it does not:

======================  ==========  ==================================================
limit                   default     why
======================  ==========  ==================================================
request-header bytes    128 KiB     Cloudflare's total request-header limit (431 past it)
header timeout          10 s        a head not complete 10 s after a connection opens (or
                                    after its first byte, on a kept-alive connection) is
                                    cut with 408; generous for any real client, and it
                                    bounds a slowloris (nginx: 60 s, Apache: 20-40 s)
body timeout            10 s        a request body that goes 10 s without a byte before
                                    it has all arrived is cut with 408 (as the header
                                    timeout; nginx: 60 s, Apache: 20 s): a head announcing
                                    a body that never comes cannot hold its connection
keep-alive timeout      30 s        an idle kept-alive connection is closed; longer than
                                    uvicorn's 5 s, so a busy moment on the loop does not
                                    race a client reusing a connection just closed
connections             derived     what the open-files limit leaves after the
                                    descriptors kept for objects (``plan_descriptors``)
body bytes, one request 100 MiB     Cloudflare's smallest plan, for a body read whole; a
                                    larger Content-Length is refused (413) before any of
                                    it is read (a streamed body has no limit: it holds
                                    one chunk at a time, ``asgi.request_body``)
body bytes, all         256 MiB     room for two 100 MiB uploads at once, taken as the
requests                            bytes arrive (an announced length holds nothing); past
                                    it 503 with Retry-After, never a wait: requests holding
                                    parts of the budget would wait for each other
WebSocket messages      256 MiB     bytes of incoming messages the process holds while
being received, all                 they are assembled (unfinished fragments, a frame
connections                         still arriving) or wait for their object; past it
                                    the connection whose bytes would exceed it is closed
                                    with 1013: room for eight messages at the 32 MiB
                                    message limit at once
======================  ==========  ==================================================

Descriptors: the soft open-files limit is raised to the hard limit at start (Linux's
default soft limit, 1,024, is far below what a server needs; the hard limit is what the
administrator allows).  ``plan_descriptors`` then shares it: the listen backlog (the
kernel hands that many accepted connections over in one burst, before any can be
refused), ``FD_HEADROOM`` for the process, ``FDS_PER_OBJECT`` per live object, and the
rest for connections, so an object never fails to open its file with ``EMFILE``
because sockets took the descriptors (issue 9 §7).
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

__all__ = [
    "FDS_PER_OBJECT",
    "FD_HEADROOM",
    "ByteBudget",
    "DescriptorPlan",
    "FrontLimits",
    "plan_descriptors",
    "raise_open_files_limit",
]

KiB = 1024
MiB = 1024 * KiB

# Measured on a live object: its database file, its WAL, and the WAL descriptor kept for
# syncing; plus, for a file created without a spare or recovered after a crash, the main
# file's descriptor kept for its first sync (storage.database: closing it would drop the
# lock), counted for every object so that a restart after a crash fits too.  SQLite opens
# no shared-memory file (exclusive locking) and temporary files only for large sorts,
# which the headroom covers.
FDS_PER_OBJECT = 4
# The listening socket, stdio, the alarm index, spare object files being made, log files,
# the thread pool's work and user code's own files and outbound connections.
FD_HEADROOM = 256
# What an unlimited soft limit counts as.
_UNLIMITED = 1 << 20


@dataclass(frozen=True, slots=True)
class FrontLimits:
    """The bounds of the HTTP front (see the module docstring for each default)."""

    max_header_bytes: int = 128 * KiB
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    keep_alive_timeout_s: float = 30.0
    # None: no limit of the front's own (``serve`` always derives one from descriptors).
    max_connections: int | None = None
    body_buffer_bytes: int = 256 * MiB
    ws_receive_buffer_bytes: int = 256 * MiB


class ByteBudget:
    """Bytes that the connections of one process hold together, against one limit.  Used
    from the event loop's thread only, so a plain counter."""

    __slots__ = ("held", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> bool:
        """Take ``size`` bytes if the budget has them; False (and nothing taken) if not."""
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def charge(self, size: int) -> None:
        """Count ``size`` bytes that are already held, over the limit or not."""
        self.held += size

    def give(self, size: int) -> None:
        self.held -= size


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return _UNLIMITED
    # An unlimited hard limit (macOS) cannot be the soft one: the kernel caps it lower.
    targets = [hard] if hard != resource.RLIM_INFINITY else [_UNLIMITED, 10_240]
    for target in targets:
        if target <= soft:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            continue
        break
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass(frozen=True, slots=True)
class DescriptorPlan:
    """How the open-files limit is shared: objects, the accept backlog, connections."""

    open_files: int
    backlog: int
    max_live_objects: int
    max_connections: int
    # True when the default max_live_objects was lowered to fit the descriptors.
    scaled: bool = False


def plan_descriptors(
    open_files: int,
    max_live_objects: int,
    *,
    max_connections: int | None = None,
    live_objects_given: bool = False,
) -> DescriptorPlan:
    """Share ``open_files`` so that sockets can never take what objects need.

    The backlog is a sixteenth of the limit (64 to 2,048: uvicorn's default).  Then
    ``FD_HEADROOM`` is set aside and the rest goes to live objects and connections.  A
    value given explicitly must fit (else ``ValueError``, saying what does); by default
    connections get what objects leave, and when descriptors are scarce the default
    ``max_live_objects`` is lowered so that objects take at most half of the rest (an
    evicted object is only constructed again on its next event).
    """
    backlog = min(2048, max(64, open_files // 16))
    available = open_files - backlog - FD_HEADROOM
    live, scaled = max_live_objects, False
    if max_connections is None:
        if not live_objects_given and FDS_PER_OBJECT * live > available // 2:
            live, scaled = available // 2 // FDS_PER_OBJECT, True
        connections = available - FDS_PER_OBJECT * live
    else:
        connections = max_connections
        if not live_objects_given and FDS_PER_OBJECT * live > available - connections:
            live, scaled = (available - connections) // FDS_PER_OBJECT, True
    if live < 1 or connections < 1 or FDS_PER_OBJECT * live + connections > available:
        raise ValueError(
            f"{max(live, 1)} live objects ({FDS_PER_OBJECT} descriptors each) and "
            f"{max(connections, 1)} connections do not fit: the open-files limit "
            f"({open_files}) minus the accept backlog ({backlog}) and {FD_HEADROOM} for the "
            f"process leaves {available}"
        )
    return DescriptorPlan(open_files, backlog, live, connections, scaled)
