"""The ``workers`` module for code written for Cloudflare Python Workers.

Registered as ``sys.modules["workers"]`` when no real ``workers`` package is
installed (see ``loader``), so ``from workers import DurableObject, Response``
runs unchanged on objectd.  ``WebSocketPair`` and ``WebSocketRequestResponsePair``
live in ``js`` on Cloudflare (``compat_js``); importing them from ``workers`` is a
common slip, so they are offered here too.
"""

from __future__ import annotations

from objectd.errors import DurableObjectAbort
from objectd.fetch import Headers, Request, Response
from objectd.runtime.hibernation import WebSocketRequestResponsePair
from objectd.runtime.objects import DurableObject, WorkerEntrypoint
from objectd.runtime.outbound import fetch
from objectd.runtime.state import DurableObjectState
from objectd.runtime.websockets import WebSocketPair

__all__ = [
    "DurableObject",
    "DurableObjectAbort",
    "DurableObjectContext",
    "DurableObjectState",
    "Headers",
    "Request",
    "Response",
    "WebSocketPair",
    "WebSocketRequestResponsePair",
    "WorkerEntrypoint",
    "fetch",
]

# Python Workers calls ctx's type DurableObjectContext.
DurableObjectContext = DurableObjectState
