"""The HTTP/WebSocket front (L3): an ASGI application that serves a project.

``app`` holds :class:`ObjectdApp` (lifespan, HTTP requests, upgrades), with
``requests`` (the worker's Request from a scope), ``answers`` (the front's own
responses) and ``upgrade`` (a WebSocket upgrade answered and relayed); ``websocket``
the network side of a relayed WebSocket; ``host`` the Host header check; ``protocol``
the HTTP/1.1 connection uvicorn runs (head size, header timeout, connection limit),
``limits`` the front's bounds with their defaults and how descriptors are shared,
``logs`` what the server prints and ``reload`` which saves restart ``objectd dev``;
``embed`` holds ``objectd.Runtime``, a project inside another ASGI app.
"""

from objectd.asgi.app import MAX_BODY_BYTES, ObjectdApp, app_from_environment

__all__ = ["MAX_BODY_BYTES", "ObjectdApp", "app_from_environment"]
