"""The ``js`` module for code written for Cloudflare Python Workers.

Python Workers reach JavaScript globals through ``from js import WebSocketPair``.
When no real ``js`` module exists (outside Pyodide), ``loader`` registers this one,
with the globals objectd provides, so such code runs unchanged:
``client, server = WebSocketPair.new().object_values()`` or ``WebSocketPair.new()``.
"""

from __future__ import annotations

from objectd.runtime.hibernation import WebSocketRequestResponsePair
from objectd.runtime.websockets import WebSocket, WebSocketPair

__all__ = ["WebSocket", "WebSocketPair", "WebSocketRequestResponsePair"]
