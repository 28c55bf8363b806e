"""The HTTP/WebSocket front (L3): an ASGI application that serves a project.

``app`` holds :class:`ObjectdApp` (lifespan, HTTP requests, upgrades); ``websocket``
the network side of a relayed WebSocket.
"""

from objectd.asgi.app import MAX_BODY_BYTES, ObjectdApp, app_from_environment

__all__ = ["MAX_BODY_BYTES", "ObjectdApp", "app_from_environment"]
