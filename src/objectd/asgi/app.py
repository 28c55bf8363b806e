"""The HTTP front: an ASGI application that serves a project (L3).

uvicorn serves it in ``objectd dev`` / ``objectd serve``, and it can be mounted in
any ASGI server.  The project is loaded at lifespan startup, in the serving process
(so ``objectd dev``'s reloader gets fresh code), and closed at shutdown: every
committed write synced and every object file closed.  A project that does not load
fails the startup (``objectd serve`` exits), except with ``show_errors`` (``objectd
dev``): then every request and upgrade is answered 500 at once with the error, until a
save restarts the process.
An exception the worker does not catch becomes ``500 Internal Server Error`` with
``Connection: close`` (as workerd answers) and a logged traceback.

A WebSocket upgrade is a request like any other: the worker answers it, and a 101
response carrying the client end of a ``WebSocketPair`` is accepted on this same
connection and relayed to the object (``runtime.websockets.relay``); any other
answer reaches the client as HTTP.  The process that accepted a connection holds it
(ARCHITECTURE decision 8).
"""

from __future__ import annotations

import logging
import os
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from objectd.asgi import inspector, logs
from objectd.asgi.admin import AdminRoutes
from objectd.asgi.answers import BUSY_HEADERS, ERROR_HEADERS, deny, live_limit_answer, send_plain
from objectd.asgi.limits import ByteBudget, FrontLimits
from objectd.asgi.metrics import MetricsEndpoint
from objectd.asgi.reload import expect_code_updates, on_code_update
from objectd.asgi.request_body import IncomingBody
from objectd.asgi.requests import request_from_scope, scan_headers
from objectd.asgi.streaming import send_streamed
from objectd.asgi.upgrade import serve_upgrade
from objectd.asgi.websocket import DEFAULT_SEND_BUFFER
from objectd.errors import DurableObjectError, ObjectResetError
from objectd.fetch import streamed_body
from objectd.report import format_report
from objectd.runtime.committer import Durability
from objectd.runtime.loader import describe_load_error
from objectd.runtime.metrics import NO_METRICS
from objectd.runtime.project import Project
from objectd.runtime.settings import RuntimeSettings
from objectd.streams import MAX_WHOLE_BYTES, BodyStream

__all__ = ["NOT_STARTED_MESSAGE", "ObjectdApp", "app_from_environment"]

log = logging.getLogger("objectd")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# The versions an ASGI scope may carry; a request line of another (HTTP/0.9 has none, or
# "HTTP/2.0" over HTTP/1 framing) is refused.
_HTTP_VERSIONS = frozenset({"1.0", "1.1", "2", "3"})
_UNSUPPORTED = (505, b"HTTP Version Not Supported")
# Cloudflare's smallest plan accepts request bodies of up to 100 MB (as streams read whole).
MAX_BODY_BYTES = MAX_WHOLE_BYTES

# objectd dev: this path runs the worker's scheduled() now (wrangler dev --test-scheduled).
TEST_SCHEDULED_PATH = "/__scheduled"
# What callers into objects see when objectd dev reloads (spec §12, checklist 152).
CODE_UPDATED_MESSAGE = "Durable Object reset because its code was updated."
# The answer (503) of an app that loads its project only when told to (``objectd.Runtime``).
NOT_STARTED_MESSAGE = (
    b"Service Unavailable: the objectd Runtime serving this path is not started (use "
    b"`async with runtime:` or FastAPI(lifespan=runtime.lifespan)), or it has closed\n"
)


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
        show_errors: bool = False,
        settings: RuntimeSettings | None = None,
        body_buffer_bytes: int = FrontLimits().body_buffer_bytes,
        ws_send_buffer: int = DEFAULT_SEND_BUFFER,
        secrets: Mapping[str, str] | None = None,  # None: from .dev.vars (development)
        test_scheduled: bool = False,
        code_reloads: bool = False,
        admin_token: str | None = None,
        load_on_demand: bool = True,
        require_entrypoint: bool = True,
    ) -> None:
        self.project_dir = Path(project_dir)
        self.secrets = secrets
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.durability = durability
        self.environment = environment
        self.announce = announce
        # Development (``objectd dev``), never production: a 500 answer carries the error
        # report, and a project that does not load is answered 500 with its error.
        self.show_errors = show_errors
        self.settings = settings
        # Request-body bytes all requests in progress may buffer together (issue 9 §8),
        # and how many they hold now.
        self._body_budget = ByteBudget(body_buffer_bytes)
        self.ws_send_buffer = ws_send_buffer  # bytes buffered per WebSocket peer, at most
        # Development only: TEST_SCHEDULED_PATH runs scheduled() instead of reaching the
        # worker; a code update from objectd dev's reloader resets every object.
        self.test_scheduled = test_scheduled
        self.code_reloads = code_reloads
        # /__objectd/: open in development, else only with the token (asgi/admin.py).
        self.admin = AdminRoutes(token=admin_token, open_without_token=show_errors)
        # A request before the lifespan startup loads the project (a server without
        # lifespan events), unless the app's owner loads it (``objectd.Runtime``): then
        # such a request is answered 503, so that nothing loads what the owner closed.
        self.load_on_demand = load_on_demand
        self.require_entrypoint = require_entrypoint  # False: classes and bindings only
        inspector.install(self)
        # /__objectd/metrics (asgi.metrics): counted only where the admin surface exists.
        self.metrics: MetricsEndpoint | None = None
        if self.admin.enabled:
            self.metrics = MetricsEndpoint(lambda: self.project)
            self.admin.add("/__objectd/metrics", self.metrics)
        self.project: Project | None = None
        # With show_errors: why the project did not load, answered to every request.
        self.load_error: str | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if self.load_error is not None and kind != "lifespan":
            await self._answer_load_error(scope, receive, send)
        elif kind == "http":
            if self.test_scheduled and scope["path"] == TEST_SCHEDULED_PATH:
                await self._run_scheduled(scope, send)
            elif self.admin.handles(scope):
                await self.admin(scope, receive, send)
            elif self.metrics is not None:
                await self.metrics.front.serve(self._http, scope, receive, send)
            else:
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
                require_entrypoint=self.require_entrypoint,
                metrics=self.metrics.runtime if self.metrics is not None else NO_METRICS,
            )
            try:
                await project.start()
            except BaseException:
                await project.close()  # the data-folder lock and every file with it
                raise
            self.project = project
        return self.project

    async def _serving(self) -> Project | None:
        """The project, loaded now if nothing loaded it yet; None if the app must not
        load it itself (``load_on_demand`` false)."""
        if self.project is not None or not self.load_on_demand:
            return self.project
        return await self.startup()

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
                except (Exception, SystemExit, KeyboardInterrupt) as exc:  # raised by the module
                    report = describe_load_error(exc, self.project_dir)
                    log.error(
                        "objectd: cannot load %s:\n%s",
                        self.project_dir,
                        report,
                        extra={"traceback": report},
                    )
                    if not self.show_errors:  # logged once: uvicorn is given no message to repeat
                        await send({"type": "lifespan.startup.failed", "message": ""})
                        return
                    self.load_error = (
                        f"objectd: cannot load {self.project_dir} (a save reloads it):\n\n"
                        f"{report}\n"
                    )
                    if self.announce:
                        logs.announce(
                            f"objectd: every request to {self.announce} gets 500 with this "
                            "error until a save fixes it"
                        )
                    await send({"type": "lifespan.startup.complete"})
                    continue
                if self.code_reloads:
                    on_code_update(self._code_updated)
                inspector.record_address(self, project)
                if self.announce:
                    logs.announce(f"objectd: serving {project.config.name} on {self.announce}")
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
        version = scope.get("http_version", "1.1")
        if version not in _HTTP_VERSIONS:
            # llhttp reads a request line without a version as HTTP/0.9 (issue 9 §9).
            status, text = (400, b"Bad Request") if version[:2] == "0." else _UNSUPPORTED
            await send_plain(send, status, text, ERROR_HEADERS)
            return
        try:
            host, length = scan_headers(scope)
        except ValueError as exc:  # the client's fault, not the worker's
            log.info("objectd: bad request: %s", exc)
            await send_plain(send, 400, b"Bad Request", ERROR_HEADERS)
            return
        # A body that came with its head is handed over whole; one still arriving is the
        # worker's to stream or read whole, within the limits of a buffered body
        # (asgi.request_body).  The budget is taken as the bytes arrive, not from the
        # announced length: heads announcing 256 MiB and sending nothing held the whole
        # budget (adversarial re-test of issue 9, finding 5).
        reserved = 0
        incoming: IncomingBody | None = None
        try:
            body = b""
            if length > MAX_BODY_BYTES:  # too large to buffer: none of it is received here
                incoming = self._incoming(receive, None, length)
            else:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body = message.get("body", b"")
                if message.get("more_body", False):
                    incoming, body = self._incoming(receive, body, length), b""
                elif body:
                    if len(body) > MAX_BODY_BYTES:  # chunked: no length to check
                        await send_plain(send, 413, b"Payload Too Large", ERROR_HEADERS)
                        return
                    if not self._reserve(len(body)):
                        await send_plain(send, 503, b"Service Unavailable", BUSY_HEADERS)
                        return
                    reserved = len(body)
            await self._respond(scope, host, body, incoming, receive, send)
        finally:
            self._body_budget.give(reserved + (incoming.reserved if incoming is not None else 0))

    def _incoming(self, receive: Receive, first: bytes | None, length: int) -> IncomingBody:
        return IncomingBody(
            receive, first, announced=length or None, limit=MAX_BODY_BYTES, reserve=self._reserve
        )

    async def _run_scheduled(self, scope: Scope, send: Send) -> None:
        """``/__scheduled?cron=<expr>[&time=<ms>]``: run scheduled() now; the cron is passed
        as given, as wrangler does (``+`` for the spaces)."""
        project = self.project or await self._serving()
        if project is None:
            await send_plain(send, 503, NOT_STARTED_MESSAGE, BUSY_HEADERS)
            return
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        cron = query.get("cron", [""])[0]
        time = query.get("time", [""])[0]
        if time and not time.isdigit():
            body = f"Bad Request: time={time!r}: expected milliseconds since the epoch\n"
            await send_plain(send, 400, body.encode(), ERROR_HEADERS)
            return
        try:
            await project.scheduled(cron, int(time) if time else None)
        except Exception as exc:
            await send_plain(send, 500, self._uncaught(exc), ERROR_HEADERS)
            return
        await send_plain(send, 200, b"Ran scheduled event", [ERROR_HEADERS[0]])

    def _code_updated(self) -> None:
        """objectd dev is restarting on new code: reset every object (checklist 152)."""
        if self.project is not None:
            log.info("objectd: code updated: resetting every object")
            self.project.retire(ObjectResetError(CODE_UPDATED_MESSAGE, retryable=True))

    async def _answer_load_error(self, scope: Scope, receive: Receive, send: Send) -> None:
        """show_errors with code that does not load: 500 with the error, at once (the body
        is not read), for an upgrade as for any request."""
        assert self.load_error is not None
        body = self.load_error.encode()
        if scope["type"] == "http":
            await send_plain(send, 500, body, ERROR_HEADERS)
        elif scope["type"] == "websocket" and (await receive())["type"] == "websocket.connect":
            await deny(scope, send, 500, body, ERROR_HEADERS)

    def _reserve(self, size: int) -> bool:
        """Take ``size`` bytes of the process-wide body budget, if it has them.

        Past the budget a request is refused (503), never made to wait: requests each
        holding part of the budget would wait for one another, and none would finish.
        """
        return self._body_budget.take(size)

    @property
    def body_buffer_bytes(self) -> int:
        """Request-body bytes all requests in progress may buffer together."""
        return self._body_budget.limit

    @body_buffer_bytes.setter
    def body_buffer_bytes(self, limit: int) -> None:
        self._body_budget.limit = limit

    @property
    def _buffered(self) -> int:
        return self._body_budget.held

    @_buffered.setter
    def _buffered(self, held: int) -> None:
        self._body_budget.held = held

    async def _respond(
        self,
        scope: Scope,
        host: str | None,
        body: bytes,
        incoming: IncomingBody | None,
        receive: Receive,
        send: Send,
    ) -> None:
        project = self.project or await self._serving()
        if project is None:
            await send_plain(send, 503, NOT_STARTED_MESSAGE, BUSY_HEADERS)
            return
        try:
            request = request_from_scope(scope, host, body, incoming)
        except (DurableObjectError, ValueError) as exc:  # the client's fault, not the worker's
            log.info("objectd: bad request: %s", exc)
            await send_plain(send, 400, b"Bad Request", ERROR_HEADERS)
            return
        try:
            response = await project.fetch(request)
        except Exception as exc:
            if incoming is not None and incoming.refused is not None:
                await _send_refusal(send, incoming)
                return
            if incoming is not None and incoming.lost:  # nobody to answer: not the worker's bug
                log.info("objectd: the client went away during its upload: %s", exc)
                return
            busy = live_limit_answer(exc)
            if busy is not None:
                await send_plain(send, 503, busy, BUSY_HEADERS)
                return
            await send_plain(send, 500, self._uncaught(exc), ERROR_HEADERS)
            return
        if incoming is not None:
            if incoming.refused is not None:  # a platform limit: it wins over the answer
                await _send_refusal(send, incoming, streamed_body(response))
                return
            receive = incoming.receive_after  # the body's reader has receive() first
        if response.web_socket is not None:
            log.error(
                "objectd: the worker answered %s with a WebSocket (101), but the request did "
                "not ask for one (no Upgrade: websocket)",
                request.url,
            )
            await send_plain(send, 500, b"Internal Server Error", ERROR_HEADERS)
            return
        answer = response.body
        if isinstance(answer, BodyStream):  # each chunk as it is produced (asgi.streaming)
            await send_streamed(
                scope,
                receive,
                send,
                response.status,
                response.headers.raw(),
                answer,
                head=request.method == "HEAD",
            )
            return
        await send_plain(
            send, response.status, answer, response.headers.raw(), head=request.method == "HEAD"
        )

    def _uncaught(self, exc: Exception) -> bytes:
        """Log the report of an exception the worker did not catch; the 500 body."""
        report = format_report(exc)
        shown = report.rstrip("\n")
        log.error(
            "objectd: uncaught exception in the worker\n%s", shown, extra={"traceback": shown}
        )
        if not self.show_errors:
            return b"Internal Server Error"
        return f"Internal Server Error\n\n{report}".encode()

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """An upgrade request: the worker's 101 response is accepted and relayed (spec §8).

        Any other response reaches the client as plain HTTP (the ASGI WebSocket denial
        response), so an upgrade to a route that answers 404 or 426 gets that answer.
        """
        if (await receive())["type"] != "websocket.connect":
            return
        project = self.project or await self._serving()
        if project is None:
            await deny(scope, send, 503, NOT_STARTED_MESSAGE, BUSY_HEADERS)
            return
        await serve_upgrade(
            scope,
            send,
            receive,
            project.fetch,
            self.ws_send_buffer,
            self._uncaught,
            counts=self.metrics.front if self.metrics is not None else None,
        )


async def _send_refusal(
    send: Send, incoming: IncomingBody, unsent: BodyStream | None = None
) -> None:
    """413 or 503 for a body the worker could not read whole (``asgi.request_body``)."""
    assert incoming.refused is not None
    if unsent is not None:
        await unsent.aclose()
    status, reason = incoming.refused
    log.info("objectd: request body refused: %d %s", status, reason.decode())
    await send_plain(send, status, reason, BUSY_HEADERS if status == 503 else ERROR_HEADERS)


def app_from_environment() -> ObjectdApp:
    """Factory used by ``objectd dev``'s reloader: settings come from OBJECTD_* variables."""
    env = os.environ
    idle = env.get("OBJECTD_IDLE_TIMEOUT")
    live = env.get("OBJECTD_MAX_LIVE_OBJECTS")
    changed: dict[str, Any] = {}
    if idle:
        changed["idle_timeout_s"] = float(idle)
    if live:
        changed["max_live_objects"] = int(live)
    buffer = env.get("OBJECTD_BODY_BUFFER")
    send_buffer = env.get("OBJECTD_WS_SEND_BUFFER")
    development = env.get("OBJECTD_SHOW_ERRORS") == "1"
    if development:
        expect_code_updates()
    return ObjectdApp(
        env["OBJECTD_PROJECT"],
        show_errors=development,
        data_dir=env.get("OBJECTD_DATA_DIR") or None,
        durability=Durability(env.get("OBJECTD_DURABILITY", "fsync")),
        environment=env.get("OBJECTD_ENV") or None,
        announce=env.get("OBJECTD_ANNOUNCE") or None,
        settings=RuntimeSettings(**changed) if changed else None,
        body_buffer_bytes=int(buffer) if buffer else FrontLimits().body_buffer_bytes,
        ws_send_buffer=int(send_buffer) if send_buffer else DEFAULT_SEND_BUFFER,
        test_scheduled=development,
        code_reloads=development,
        admin_token=env.get("OBJECTD_ADMIN_TOKEN") or None,
    )
