"""The HTTP front: an ASGI application that serves a project (L3).

uvicorn serves it in ``objectd dev`` / ``objectd serve``, and it can be mounted in
any ASGI server.  The project is loaded at lifespan startup, in the serving process
(so ``objectd dev``'s reloader gets fresh code), and closed at shutdown: every
committed write synced and every object file closed.  An exception the worker does
not catch becomes ``500 Internal Server Error`` with ``Connection: close`` (as
workerd answers) and a logged traceback.

A WebSocket upgrade is a request like any other: the worker answers it, and a 101
response carrying the client end of a ``WebSocketPair`` is accepted on this same
connection and relayed to the object (``runtime.websockets.relay``); any other
answer reaches the client as HTTP.  The process that accepted a connection holds it
(ARCHITECTURE decision 8).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from objectd.asgi.websocket import Connection
from objectd.errors import DurableObjectError
from objectd.fetch import Headers, Request
from objectd.runtime.committer import Durability
from objectd.runtime.project import Project
from objectd.runtime.relay import relay
from objectd.runtime.settings import RuntimeSettings

__all__ = ["ObjectdApp", "app_from_environment"]

log = logging.getLogger("objectd")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_HTTP_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
# Handshake headers the server writes itself; the rest of a 101 response's headers go out.
_HANDSHAKE_HEADERS = frozenset(
    {
        b"upgrade",
        b"connection",
        b"sec-websocket-accept",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"content-length",
        b"transfer-encoding",
    }
)
# Statuses whose responses have no body, so no Content-Length either (RFC 9110 §8.6).
_NULL_BODY_STATUSES = frozenset({204, 304})
# Cloudflare's smallest plan accepts request bodies of up to 100 MB.
MAX_BODY_BYTES = 100 * 1024 * 1024

_ERROR_HEADERS = [
    (b"content-type", b"text/plain;charset=UTF-8"),
    (b"connection", b"close"),
]


class ObjectdApp:
    """ASGI app for one project directory."""

    def __init__(
        self,
        project_dir: str | Path,
        *,
        data_dir: str | Path | None = None,
        durability: Durability = Durability.FSYNC,
        environment: str | None = None,
        announce: str | None = None,
        settings: RuntimeSettings | None = None,
        secrets: Mapping[str, str] | None = None,  # None: from .dev.vars (development)
    ) -> None:
        self.project_dir = Path(project_dir)
        self.secrets = secrets
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.durability = durability
        self.environment = environment
        self.announce = announce
        self.settings = settings
        self.project: Project | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)

    async def startup(self) -> Project:
        if self.project is None:
            project = Project.load(
                self.project_dir,
                data_dir=self.data_dir,
                durability=self.durability,
                environment=self.environment,
                settings=self.settings,
                secrets=self.secrets,
            )
            await project.start()
            self.project = project
        return self.project

    async def shutdown(self) -> None:
        if self.project is not None:
            project, self.project = self.project, None
            await project.close()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    project = await self.startup()
                except Exception as exc:
                    log.error("objectd: cannot load %s: %s", self.project_dir, exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                if self.announce:
                    print(f"objectd: serving {project.config.name} on {self.announce}", flush=True)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.shutdown()
                except Exception as exc:
                    log.exception("objectd: shutdown failed")
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:  # one request must not exhaust the whole process
                await _send_plain(send, 413, b"Payload Too Large", _ERROR_HEADERS)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        project = self.project or await self.startup()
        try:
            request = _request_from_scope(scope, b"".join(chunks))
        except (DurableObjectError, ValueError) as exc:  # the client's fault, not the worker's
            log.info("objectd: bad request: %s", exc)
            await _send_plain(send, 400, b"Bad Request", _ERROR_HEADERS)
            return
        try:
            response = await project.fetch(request)
        except Exception:
            log.exception("objectd: uncaught exception in the worker")
            await _send_plain(send, 500, b"Internal Server Error", _ERROR_HEADERS)
            return
        if response.web_socket is not None:
            log.error(
                "objectd: the worker answered %s with a WebSocket (101), but the request did "
                "not ask for one (no Upgrade: websocket)",
                request.url,
            )
            await _send_plain(send, 500, b"Internal Server Error", _ERROR_HEADERS)
            return
        await _send_plain(
            send,
            response.status,
            response.body or b"",
            response.headers.raw(),
            head=request.method == "HEAD",
        )

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """An upgrade request: the worker's 101 response is accepted and relayed (spec §8).

        Any other response reaches the client as plain HTTP (the ASGI WebSocket denial
        response), so an upgrade to a route that answers 404 or 426 gets that answer.
        """
        if (await receive())["type"] != "websocket.connect":
            return
        project = self.project or await self.startup()
        try:
            request = _request_from_scope(scope, b"")
            request.headers.set("upgrade", "websocket")
            response = await project.fetch(request)
            socket = response.web_socket
            connection = Connection(send)
            link = relay(socket, connection) if socket is not None else None
        except Exception:
            log.exception("objectd: uncaught exception in the worker")
            await _deny(scope, send, 500, b"Internal Server Error", _ERROR_HEADERS)
            return
        if link is None:
            await _deny(scope, send, response.status, response.body, response.headers.raw())
            return
        await send(_accept_message(response.headers))
        del request, response, socket  # an idle connection should hold only what it needs
        await connection.run(receive, link)


def _request_from_scope(scope: Scope, body: bytes) -> Request:
    headers = Headers.from_raw(list(scope["headers"]))
    host = headers.get("host")
    if host is None:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else scope["path"]
    query = scope.get("query_string", b"").decode("latin-1")
    scheme = _HTTP_SCHEMES.get(scope.get("scheme", "http"), "http")
    url = f"{scheme}://{host}{path}" + (f"?{query}" if query else "")
    method = scope.get("method", "GET")  # a websocket scope has none: the upgrade is a GET
    return Request(url, method=method, headers=headers, body=body if body else None)


_FRAMING = (b"content-length", b"transfer-encoding")


async def _send_plain(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    head: bool = False,
) -> None:
    """Send a whole response.  The body is known, so it goes with its Content-Length (as
    workerd sends it), not chunked: less to write and less for the client to parse.

    204 and 304 responses carry no framing headers at all (they have no body); an
    empty answer to HEAD keeps the length the worker gave, which describes the GET.
    """
    framed = any(name in _FRAMING for name, _ in headers)
    if status in _NULL_BODY_STATUSES:
        if framed:
            headers = [(name, value) for name, value in headers if name not in _FRAMING]
    elif not (head and not body and framed):
        if framed:  # the body's real size wins
            headers = [(name, value) for name, value in headers if name not in _FRAMING]
        headers = [*headers, (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def app_from_environment() -> ObjectdApp:
    """Factory used by ``objectd dev``'s reloader: settings come from OBJECTD_* variables."""
    env = os.environ
    idle = env.get("OBJECTD_IDLE_TIMEOUT")
    return ObjectdApp(
        env["OBJECTD_PROJECT"],
        data_dir=env.get("OBJECTD_DATA_DIR") or None,
        durability=Durability(env.get("OBJECTD_DURABILITY", "fsync")),
        environment=env.get("OBJECTD_ENV") or None,
        announce=env.get("OBJECTD_ANNOUNCE") or None,
        settings=RuntimeSettings(idle_timeout_s=float(idle)) if idle else None,
    )


async def _deny(
    scope: Scope, send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    """Answer an upgrade request with an HTTP response instead of a WebSocket."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})


def _accept_message(headers: Headers) -> Message:
    message: Message = {"type": "websocket.accept"}
    protocol = headers.get("sec-websocket-protocol")
    if protocol:
        message["subprotocol"] = protocol
    extra = [(k, v) for k, v in headers.raw() if k not in _HANDSHAKE_HEADERS]
    if extra:
        message["headers"] = extra
    return message
