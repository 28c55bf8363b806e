"""objectd inside another program: :class:`Runtime` (L3).

A FastAPI or Starlette app (or any asyncio program) uses objects without being written
as a Worker::

    runtime = objectd.Runtime("objects/", data_dir="data/")
    app = FastAPI(lifespan=runtime.lifespan)
    app.mount("/do", runtime.asgi)            # the Worker's own fetch, if it has one

    @app.post("/count/{name}")
    async def count(name: str) -> str:
        stub = runtime.env.COUNTER.get_by_name(name)
        return await stub.increment()

The Runtime is :class:`~objectd.asgi.app.ObjectdApp` with its lifespan driven by its
owner rather than by a server: ``async with runtime`` (or the app's lifespan) loads the
project, holds the data folder's lock, and closes it on the way out, every write synced
and every file closed, also when the block raises.  Starlette gives a mounted app no
lifespan events, so :attr:`Runtime.asgi` serves the project the Runtime loaded and never
loads one itself: before the Runtime starts, and once it has closed, it answers 503.

The project may have no Worker entrypoint (only classes and bindings); then
:attr:`Runtime.asgi` answers 500 saying so, as a server could not serve it at all.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from objectd.asgi.answers import ERROR_HEADERS
from objectd.asgi.app import ObjectdApp, Receive, Scope, Send
from objectd.asgi.upgrade import serve_upgrade
from objectd.asgi.websocket import DEFAULT_SEND_BUFFER
from objectd.errors import ConfigError
from objectd.fetch import Request, Response
from objectd.report import format_report
from objectd.runtime.committer import Durability
from objectd.runtime.exits import from_signal
from objectd.runtime.loader import describe_load_error
from objectd.runtime.namespace import DurableObjectStub
from objectd.runtime.project import Env
from objectd.runtime.settings import RuntimeSettings

__all__ = ["Runtime", "WebSocketLike"]

log = logging.getLogger("objectd")


class WebSocketLike(Protocol):
    """A not yet accepted server-side WebSocket of an ASGI framework (Starlette's and
    FastAPI's ``WebSocket``): its scope and its ASGI message channels."""

    @property
    def scope(self) -> Scope: ...

    async def receive(self) -> Any: ...

    async def send(self, message: Any) -> None: ...


class Runtime:
    """A project loaded inside another asyncio program; see the module docstring.

    ``secrets``: the secrets' values; None reads ``.dev.vars`` (development), as
    ``objectd dev`` does.  A Runtime may be started again once closed.
    """

    def __init__(
        self,
        project_dir: str | Path,
        *,
        data_dir: str | Path | None = None,
        durability: Durability | str = Durability.FSYNC,
        environment: str | None = None,
        settings: RuntimeSettings | None = None,
        secrets: Mapping[str, str] | None = None,
        ws_send_buffer: int = DEFAULT_SEND_BUFFER,
    ) -> None:
        self._app = ObjectdApp(
            project_dir,
            data_dir=data_dir,
            durability=Durability(durability),
            environment=environment,
            settings=settings,
            secrets=secrets,
            ws_send_buffer=ws_send_buffer,
            load_on_demand=False,
            require_entrypoint=False,
        )
        self.asgi = _MountedWorker(self)
        self._owned_by_asgi = False  # started by runtime.asgi's own lifespan events
        self._starting = False

    @property
    def started(self) -> bool:
        return self._app.project is not None

    @property
    def env(self) -> Env:
        """The project's ``env``: bindings, vars and secrets (``runtime.env.COUNTER``)."""
        project = self._app.project
        if project is None:
            raise RuntimeError(
                f"objectd.Runtime({str(self._app.project_dir)!r}) is not started: use "
                "`async with runtime:` or FastAPI(lifespan=runtime.lifespan) first"
            )
        return project.env

    async def start(self) -> None:
        """Load the project and start its alarms, or raise why not (a ConfigError, also
        for ``sys.exit()`` while the worker module is imported, or DataFolderInUseError
        when a server or another Runtime holds the data folder)."""
        if self._app.project is not None or self._starting:
            raise RuntimeError("this objectd.Runtime is already started")
        self._starting = True
        try:
            await self._app.startup()
        except (SystemExit, KeyboardInterrupt) as exc:
            # sys.exit() in the worker module must not end the program embedding it.
            if from_signal(exc):
                raise  # a real Ctrl-C
            directory = self._app.project_dir
            raise ConfigError(
                f"objectd: cannot load {directory}:\n{describe_load_error(exc, directory)}"
            ) from exc
        finally:
            self._starting = False

    async def close(self) -> None:
        """Close the project: every committed write synced, every file closed, the data
        folder's lock released.  Closing a Runtime that is not started does nothing."""
        await self._app.shutdown()

    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def lifespan(self, app: object) -> contextlib.AbstractAsyncContextManager[None]:
        """For ``FastAPI(lifespan=runtime.lifespan)`` / ``Starlette(lifespan=...)``."""
        return self._lifespan()

    @contextlib.asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        async with self:
            yield

    async def connect_websocket(
        self, stub: DurableObjectStub, websocket: WebSocketLike, *, url: str | None = None
    ) -> None:
        """Relay ``websocket`` (a framework's, not yet accepted) to ``stub``'s object.

        The object's ``fetch`` gets the upgrade request (the client's headers, and its URL
        unless ``url`` is given) and answers it as it would through objectd's own front:
        a 101 with a ``WebSocketPair`` end is accepted and relayed until the connection
        ends, with the same send buffer and back-pressure; any other answer (a 404, a 426)
        denies the upgrade with that response.  Returns when the connection has ended.
        """

        async def send(message: Any) -> None:
            try:
                await websocket.send(message)
            except OSError:
                raise
            except Exception as exc:  # Starlette's WebSocketDisconnect, a closed state
                # The relay ends on OSError: the peer is gone, whatever the framework says.
                raise ConnectionError(f"the WebSocket's send failed: {exc!r}") from exc

        async def fetch(request: Request) -> Response:
            return await stub.fetch(request)

        first = await websocket.receive()
        if first["type"] == "websocket.disconnect":
            return  # the client went away before the handshake
        if first["type"] != "websocket.connect":
            raise RuntimeError(
                "connect_websocket() needs a WebSocket that is not accepted yet (the object's "
                f"fetch answers the handshake); its first message was {first['type']!r}"
            )
        await serve_upgrade(
            websocket.scope, send, websocket.receive, fetch, self._app.ws_send_buffer,
            _uncaught, url=url,
        )  # fmt: skip

    def __repr__(self) -> str:
        state = "started" if self.started else "not started"
        return f"<objectd.Runtime {self._app.project_dir} {state}>"


def _uncaught(exc: Exception) -> bytes:
    log.error("objectd: uncaught exception in an object's fetch\n%s", format_report(exc).rstrip())
    return b"Internal Server Error"


class _MountedWorker:
    """``runtime.asgi``: the Worker's own ``fetch``, mountable under a path.

    The Worker sees the URL below the mount point (mounted at ``/do``, a request for
    ``/do/counter`` reaches it as ``/counter``), so a Worker written to be served at
    ``/`` runs unchanged.  Served on its own by an ASGI server, its lifespan events start
    and close the Runtime, unless the Runtime was started already.
    """

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind not in ("http", "websocket"):
            return
        app = self._runtime._app
        project = app.project
        if project is not None and not project.has_entrypoint:
            await self._no_entrypoint(scope, receive, send, project.config.main)
            return
        await app(_below_mount(scope), receive, send)

    async def _no_entrypoint(self, scope: Scope, receive: Receive, send: Send, main: Path) -> None:
        body = (
            f"objectd: {main} has no Worker entrypoint (class Default(WorkerEntrypoint) or "
            "on_fetch), so runtime.asgi has no fetch to serve; call the objects through "
            "runtime.env instead\n"
        ).encode()
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 500, "headers": ERROR_HEADERS})
            await send({"type": "http.response.body", "body": body})
        elif (await receive())["type"] == "websocket.connect":
            if "websocket.http.response" in scope.get("extensions", {}):
                start = {"type": "websocket.http.response.start", "status": 500}
                await send({**start, "headers": ERROR_HEADERS})
                await send({"type": "websocket.http.response.body", "body": body})
            else:
                await send({"type": "websocket.close", "code": 1011})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        runtime = self._runtime
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if not runtime.started:
                    try:
                        await runtime.start()
                    except Exception as exc:
                        log.exception("objectd: the Runtime did not start")
                        await send({"type": "lifespan.startup.failed", "message": str(exc)})
                        return
                    runtime._owned_by_asgi = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if runtime._owned_by_asgi:
                    runtime._owned_by_asgi = False
                    try:
                        await runtime.close()
                    except Exception as exc:
                        log.exception("objectd: the Runtime did not close cleanly")
                        await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                        return
                await send({"type": "lifespan.shutdown.complete"})
                return


def _below_mount(scope: Scope) -> Scope:
    """``scope`` as the Worker sees it: its path without the mount point's ``root_path``.

    Starlette keeps the full path in ``path`` and ``raw_path`` and puts the mount point
    in ``root_path`` (the ASGI spec's reading); an older one stripped ``path`` itself.
    """
    root = scope.get("root_path") or ""
    if not root:
        return scope
    path: str = scope["path"]
    if path == root or path.startswith(root + "/"):
        path = path[len(root) :] or "/"
    raw: bytes | None = scope.get("raw_path")
    raw_root = root.encode("utf-8")
    if raw is not None and (raw == raw_root or raw.startswith(raw_root + b"/")):
        raw = raw[len(raw_root) :] or b"/"
    elif raw is not None:
        raw = None  # percent-encoded differently from root_path: the decoded path is used
    return {**scope, "path": path, "raw_path": raw, "root_path": ""}
