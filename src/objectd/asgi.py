"""The HTTP front: an ASGI application that serves a project (L3).

uvicorn serves it in ``objectd dev`` / ``objectd serve``, and it can be mounted in
any ASGI server.  The project is loaded at lifespan startup, in the serving process
(so ``objectd dev``'s reloader gets fresh code), and closed at shutdown: every
committed write synced and every object file closed.  An exception the worker does
not catch becomes ``500 Internal Server Error`` with ``Connection: close`` (as
workerd answers) and a logged traceback.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from objectd.fetch import Headers, Request
from objectd.runtime.committer import Durability
from objectd.runtime.project import Project
from objectd.runtime.settings import RuntimeSettings

__all__ = ["ObjectdApp", "app_from_environment"]

log = logging.getLogger("objectd")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

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
    ) -> None:
        self.project_dir = Path(project_dir)
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
            await send({"type": "websocket.close", "code": 1011})

    async def startup(self) -> Project:
        if self.project is None:
            project = Project.load(
                self.project_dir,
                data_dir=self.data_dir,
                durability=self.durability,
                environment=self.environment,
                settings=self.settings,
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
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        project = self.project or await self.startup()
        try:
            request = _request_from_scope(scope, b"".join(chunks))
            response = await project.fetch(request)
        except Exception:
            log.exception("objectd: uncaught exception in the worker")
            await _send_plain(send, 500, b"Internal Server Error", _ERROR_HEADERS)
            return
        await _send_plain(send, response.status, response.body or b"", response.headers.raw())


def _request_from_scope(scope: Scope, body: bytes) -> Request:
    headers = Headers.from_raw(list(scope["headers"]))
    host = headers.get("host")
    if host is None:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else scope["path"]
    query = scope.get("query_string", b"").decode("latin-1")
    url = f"{scope.get('scheme', 'http')}://{host}{path}" + (f"?{query}" if query else "")
    method = scope["method"]
    return Request(url, method=method, headers=headers, body=body if body else None)


async def _send_plain(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def app_from_environment() -> ObjectdApp:
    """Factory used by ``objectd dev``'s reloader: settings come from OBJECTD_* variables."""
    env = os.environ
    return ObjectdApp(
        env["OBJECTD_PROJECT"],
        data_dir=env.get("OBJECTD_DATA_DIR") or None,
        durability=Durability(env.get("OBJECTD_DURABILITY", "fsync")),
        environment=env.get("OBJECTD_ENV") or None,
        announce=env.get("OBJECTD_ANNOUNCE") or None,
    )
