"""The ``objectd`` command (L4): parse arguments, call the library, exit.

``objectd dev [DIR]`` serves a project on 127.0.0.1:8787 with its data in
``DIR/.objectd/`` and restarts the serving process when code, config or ``.dev.vars``
changes (the data stays; ``asgi.reload``).  ``objectd serve [DIR]`` serves without
reloading.  Both bind the socket first, so ``--port 0`` works, and print ``objectd:
serving <name> on <url>`` once the project is loaded and ready.  A port in use is one
line naming it.  In ``dev``, code that does not load is answered 500 with its error until
a save fixes it; ``serve`` exits instead.  ``objectd init DIR`` writes a new project
from a template shipped in the package (``objectd.templates``).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import uvicorn

from objectd import __version__
from objectd.asgi import ObjectdApp, logs
from objectd.asgi.limits import (
    DescriptorPlan,
    FrontLimits,
    plan_descriptors,
    raise_open_files_limit,
)
from objectd.asgi.protocol import ServerConfig
from objectd.asgi.reload import DevReload
from objectd.asgi.websocket import DEFAULT_SEND_BUFFER
from objectd.config import find_config, secrets_from_environ
from objectd.errors import ConfigError, DataFolderInUseError
from objectd.inspect_command import inspect_command
from objectd.runtime.committer import Durability
from objectd.runtime.data_lock import check_data_folder
from objectd.runtime.settings import RuntimeSettings
from objectd.templates import TEMPLATES, InitError, write_project
from objectd.transfer_command import export_command, import_command

__all__ = ["main"]

MAX_WS_MESSAGE_BYTES = 32 * 1024 * 1024
_DEFAULT_LIMITS = FrontLimits()
_DEFAULT_SETTINGS = RuntimeSettings()
# click's ParamType is generic from click 8.4 on; older ones cannot be subscripted.
if TYPE_CHECKING:
    _IntParamType = click.ParamType[int]
else:
    _IntParamType = click.ParamType
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


class ByteSize(_IntParamType):
    """A size in bytes: ``131072``, ``128KiB``, ``256MiB``, ``1GiB`` (K/M/G mean the same)."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        match = re.fullmatch(r"(\d+)\s*(?:([kmg])i?)?b?", str(value).strip(), re.IGNORECASE)
        size = int(match.group(1)) * _UNITS[(match.group(2) or "").lower()] if match else 0
        if size < 1:
            self.fail(f"{value!r} is not a size (e.g. 131072, 128KiB, 256MiB)", param, ctx)
        return size


def _check_host(_context: click.Context, _param: click.Parameter, host: str) -> str:
    if host.startswith("[") and host.endswith("]"):  # as in a URL; bind() wants it bare
        raise click.BadParameter(f"write an IPv6 address without brackets: {host[1:-1]}")
    return host


def _check_admin_token(
    _context: click.Context, _param: click.Parameter, token: str | None
) -> str | None:
    if token is not None and len(token) < 16:
        raise click.BadParameter("use a token of 16 characters or more (a random one)")
    return token


def _common(function: click.decorators.FC) -> click.decorators.FC:
    options = [
        click.argument(
            "directory",
            default=".",
            type=click.Path(exists=True, file_okay=False, path_type=Path),
        ),
        click.option(
            "--host",
            default="127.0.0.1",
            show_default=True,
            callback=_check_host,
            help="Address to bind.",
        ),
        click.option(
            "--port",
            default=8787,
            show_default=True,
            type=click.IntRange(0, 65535),
            help="0: any free port.",
        ),
        click.option(
            "--data-dir",
            type=click.Path(file_okay=False, path_type=Path),
            help="Where object data lives [default: DIRECTORY/.objectd].",
        ),
        click.option(
            "--durability",
            type=click.Choice([d.value for d in Durability]),
            default=Durability.FSYNC.value,
            show_default=True,
            help="fsync: every acknowledged write is synced to disk (survives power loss). "
            "process: committed to the OS only (survives a killed process, not power loss).",
        ),
        click.option("--env", "environment", help="Wrangler environment ([env.NAME])."),
        click.option(
            "--admin-token",
            envvar="OBJECTD_ADMIN_TOKEN",
            default=None,
            callback=_check_admin_token,
            help="Token for objectd's pages and endpoints under /__objectd/ (sent as "
            "Authorization: Bearer TOKEN). serve: without it they do not exist; dev: they "
            "are open unless it is set. Also OBJECTD_ADMIN_TOKEN.",
        ),
        click.option(
            "--log-level",
            type=click.Choice(["debug", "info", "warning", "error"]),
            default="info",
            show_default=True,
        ),
        click.option(
            "--log-format",
            type=click.Choice(list(logs.LOG_FORMATS)),
            default="text",
            show_default=True,
            help="text: LEVEL name: message. json: one JSON object per line (time, level, "
            "logger, message; class and id on an object's lines; traceback).",
        ),
        click.option("--access-log/--no-access-log", default=False, show_default=True),
        click.option(
            "--idle-timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=None,
            help="Seconds an idle object stays in memory before it is evicted (hibernated; "
            "its hibernatable WebSockets stay open) [default: 10].",
        ),
        click.option(
            "--max-live-objects",
            type=click.IntRange(min=1),
            default=None,
            help="Objects kept in memory at most (the least recently used idle one goes "
            "first) [default: 2000, fewer if the open-files limit is too low for them].",
        ),
        click.option(
            "--max-header-bytes",
            type=ByteSize(),
            default=_DEFAULT_LIMITS.max_header_bytes,
            help="Total size of a request's head; past it 431 (Cloudflare: 128 KB) "
            "[default: 128KiB].",
        ),
        click.option(
            "--header-timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=_DEFAULT_LIMITS.header_timeout_s,
            show_default=True,
            help="Seconds a connection has to send a complete request head; past it 408.",
        ),
        click.option(
            "--body-timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=_DEFAULT_LIMITS.body_timeout_s,
            show_default=True,
            help="Seconds a request body may go without a byte before it has all arrived; "
            "past it 408.",
        ),
        click.option(
            "--keep-alive-timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=_DEFAULT_LIMITS.keep_alive_timeout_s,
            show_default=True,
            help="Seconds an idle kept-alive connection stays open.",
        ),
        click.option(
            "--max-connections",
            type=click.IntRange(min=1),
            default=None,
            help="Open client connections at most (WebSockets included); past it 503 "
            "[default: what the open-files limit leaves after the descriptors kept for "
            "objects].",
        ),
        click.option(
            "--body-buffer",
            type=ByteSize(),
            default=_DEFAULT_LIMITS.body_buffer_bytes,
            help="Request-body bytes buffered across all requests at most; past it 503 "
            "[default: 256MiB].",
        ),
        # WebSockets
        click.option(
            "--ws-send-buffer",
            type=ByteSize(),
            default=DEFAULT_SEND_BUFFER,
            help="Bytes buffered for one WebSocket peer before it is behind; a peer behind "
            "that does not drain for --ws-ping-timeout, or 4 times as far behind, is closed "
            "with 1008 [default: 4MiB].",
        ),
        click.option(
            "--ws-receive-buffer",
            type=ByteSize(),
            default=_DEFAULT_LIMITS.ws_receive_buffer_bytes,
            help="Bytes of incoming WebSocket messages held across all connections at most "
            "(being assembled, or waiting for their object); past it the connection is "
            "closed with 1013 [default: 256MiB].",
        ),
        click.option(
            "--ws-ping-interval",
            type=click.FloatRange(min=0),
            default=20.0,
            show_default=True,
            help="Seconds between keepalive pings to each WebSocket peer (0: none).",
        ),
        click.option(
            "--ws-ping-timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=20.0,
            show_default=True,
            help="Seconds a WebSocket peer has to answer a ping or our Close (or to read what "
            "is left once closed, or to drain once behind) before it is dropped.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@click.group()
@click.version_option(__version__, prog_name="objectd")
def main() -> None:
    """objectd: Durable Objects for Python, on your own machines."""


@main.command()
@_common
def dev(directory: Path, data_dir: Path | None, durability: str, **options: Any) -> None:
    """Serve DIRECTORY for development, reloading when its code or config changes."""
    directory = directory.resolve()
    _check_project(directory)
    limits, plan = _front_limits(options)
    # A name, not the app: each process the reloader starts imports the code afresh.
    config = _uvicorn_config(
        "objectd.asgi:app_from_environment", limits, plan, options, factory=True
    )
    sock = _listen(config)
    _log_plan(limits, plan)
    url = _url(options["host"], sock.getsockname()[1])
    os.environ.update(
        OBJECTD_PROJECT=str(directory),
        OBJECTD_DATA_DIR=str(data_dir.resolve()) if data_dir else "",
        OBJECTD_DURABILITY=durability,
        OBJECTD_ENV=options["environment"] or "",
        OBJECTD_ANNOUNCE=url,
        OBJECTD_IDLE_TIMEOUT=str(options["idle_timeout"] or ""),
        OBJECTD_MAX_LIVE_OBJECTS=str(plan.max_live_objects),
        OBJECTD_BODY_BUFFER=str(limits.body_buffer_bytes),
        OBJECTD_WS_SEND_BUFFER=str(options["ws_send_buffer"]),
        OBJECTD_ADMIN_TOKEN=options["admin_token"] or "",
    )
    # For the serving process: 500s carry the error report (dev only).  Its log is set up
    # from the config it is handed (ServerConfig.configure_logging).
    os.environ.update(OBJECTD_SHOW_ERRORS="1")
    folder = _check_data_folder()
    server = uvicorn.Server(config)
    # Storage writes are not changes: the data folders are ignored, but never one that
    # holds the code (a --data-dir naming the project or a folder above it): there the
    # file names tell storage from code.
    candidates = [directory / ".objectd", folder, data_dir.resolve() if data_dir else None]
    ignored = [path for path in candidates if path and directory in path.resolve().parents]
    DevReload(config, server.run, [sock], directory=directory, ignored=ignored).run()


@main.command()
@_common
def serve(directory: Path, data_dir: Path | None, durability: str, **options: Any) -> None:
    """Serve DIRECTORY in production (no reloading).

    Secrets come from OBJECTD_SECRET_<NAME> environment variables, not .dev.vars.
    """
    directory = directory.resolve()
    _check_project(directory)
    try:
        secrets = secrets_from_environ(os.environ)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    limits, plan = _front_limits(options)
    app = ObjectdApp(
        directory,
        data_dir=data_dir.resolve() if data_dir else None,
        durability=Durability(durability),
        environment=options["environment"],
        settings=_settings(options, plan),
        body_buffer_bytes=limits.body_buffer_bytes,
        ws_send_buffer=options["ws_send_buffer"],
        secrets=secrets,
        admin_token=options["admin_token"],
    )
    config = _uvicorn_config(app, limits, plan, options)
    sock = _listen(config)
    _log_plan(limits, plan)
    app.announce = _url(options["host"], sock.getsockname()[1])
    server = uvicorn.Server(config)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal with the
    # handlers it found installed. With these in place, a graceful stop exits 0.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(1)


@main.command()
@click.argument("directory", type=click.Path(file_okay=True, path_type=Path))
@click.option(
    "--template",
    type=click.Choice(TEMPLATES),
    default="counter",
    show_default=True,
    help="counter: one object behind a Worker; chat: rooms over WebSockets with a page; "
    "fastapi: a FastAPI app using objects through objectd.Runtime.",
)
def init(directory: Path, template: str) -> None:
    """Write a new project (wrangler.toml, a worker, tests) into DIRECTORY.

    DIRECTORY must be empty or not exist yet; nothing is written otherwise.
    """
    try:
        written = write_project(directory, template)
    except InitError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"objectd: wrote a {template} project in {directory}:")
    for path in written:
        click.echo(f"  {path}")
    click.echo("next:")
    if template == "fastapi":
        click.echo(f"  cd {directory} && uvicorn app:app   # the FastAPI app (needs fastapi)")
    click.echo(f"  objectd dev {directory}")
    click.echo(f"  pytest {directory / 'tests'}")


main.add_command(inspect_command)
main.add_command(export_command)
main.add_command(import_command)


def _settings(options: dict[str, Any], plan: DescriptorPlan) -> RuntimeSettings | None:
    changed: dict[str, Any] = {}
    if options["idle_timeout"]:
        changed["idle_timeout_s"] = options["idle_timeout"]
    if plan.max_live_objects != _DEFAULT_SETTINGS.max_live_objects:
        changed["max_live_objects"] = plan.max_live_objects
    return RuntimeSettings(**changed) if changed else None


def _front_limits(options: dict[str, Any]) -> tuple[FrontLimits, DescriptorPlan]:
    """The front's limits from the options, and how descriptors are shared between
    objects and connections, after raising the open-files limit to the hard limit."""
    given = options["max_live_objects"]
    try:
        plan = plan_descriptors(
            raise_open_files_limit(),
            given if given is not None else _DEFAULT_SETTINGS.max_live_objects,
            max_connections=options["max_connections"],
            live_objects_given=given is not None,
        )
    except ValueError as exc:
        raise click.ClickException(
            f"{exc}; raise the limit (ulimit -n), or lower --max-live-objects or --max-connections"
        ) from None
    limits = FrontLimits(
        max_header_bytes=options["max_header_bytes"],
        header_timeout_s=options["header_timeout"],
        body_timeout_s=options["body_timeout"],
        keep_alive_timeout_s=options["keep_alive_timeout"],
        max_connections=plan.max_connections,
        body_buffer_bytes=options["body_buffer"],
        ws_receive_buffer_bytes=options["ws_receive_buffer"],
    )
    return limits, plan


def _check_project(directory: Path) -> None:
    try:
        find_config(directory)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _check_data_folder() -> Path | None:
    """dev: refuse now if another server serves the data the serving process would load
    (its OBJECTD_* settings say which); the reloader would wait on after it refused.
    Returns that data folder, if the config loads."""
    env = os.environ
    try:
        return check_data_folder(
            env["OBJECTD_PROJECT"],
            data_dir=env["OBJECTD_DATA_DIR"] or None,
            environment=env["OBJECTD_ENV"] or None,
        )
    except DataFolderInUseError as exc:
        raise click.ClickException(str(exc)) from None


def _uvicorn_config(
    app: Any, limits: FrontLimits, plan: DescriptorPlan, options: dict[str, Any], **extra: Any
) -> uvicorn.Config:
    log_level = options["log_level"]
    log_format = options["log_format"]
    logs.configure(log_level, access_log=options["access_log"], log_format=log_format)
    return ServerConfig(
        app,
        limits=limits,
        log_format=log_format,
        host=options["host"],
        port=options["port"],
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        # uvicorn's maintained sans-I/O implementation, with objectd's close codes and bounds
        # (a name, not the class: `objectd dev` hands the config to a reloaded process).
        ws="objectd.asgi.ws_protocol:WebSocketProtocol",
        ws_ping_interval=options["ws_ping_interval"] or None,
        ws_ping_timeout=options["ws_ping_timeout"],
        lifespan="on",
        log_level=log_level,
        access_log=options["access_log"],
        backlog=plan.backlog,
        timeout_graceful_shutdown=30,
        ws_max_size=MAX_WS_MESSAGE_BYTES,  # spec §8: received messages up to 32 MiB
        # No permessage-deflate: its zlib state costs ~90 KB per socket (measured: 119 KB
        # -> 28 KB per idle socket), which hibernation is meant to make cheap.
        ws_per_message_deflate=False,
        **extra,
    )


def _log_plan(limits: FrontLimits, plan: DescriptorPlan) -> None:
    log = logging.getLogger("objectd")
    if plan.scaled:
        log.warning(
            "objectd: the open-files limit (%d) is low: at most %d objects stay live (not "
            "%d) so that connections cannot take their descriptors; raise it (ulimit -n)",
            plan.open_files,
            plan.max_live_objects,
            _DEFAULT_SETTINGS.max_live_objects,
        )
    log.info(
        "objectd: %d open files: up to %d live objects and %d connections; %d bytes of "
        "request head, %g s header timeout, %g s body timeout, %g s keep-alive, %d bytes of "
        "buffered bodies",
        plan.open_files,
        plan.max_live_objects,
        limits.max_connections,
        limits.max_header_bytes,
        limits.header_timeout_s,
        limits.body_timeout_s,
        limits.keep_alive_timeout_s,
        limits.body_buffer_bytes,
    )


def _listen(config: uvicorn.Config) -> socket.socket:
    """Bind and listen at once: "serving" is printed before uvicorn starts accepting, and a
    client that connects in between must wait in the backlog, not be refused.

    Bound here rather than by uvicorn, whose ``bind_socket`` logs ``Uvicorn running on``
    before the project has loaded, and logs a port in use as a bare ``[Errno 98]``.
    """
    host, port = config.host, config.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(config.backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise click.ClickException(
                f"port {port} on {host} is in use (another server?): stop it, choose "
                "another --port, or --port 0 for any free port"
            ) from None
        raise click.ClickException(f"cannot listen on {_url(host, port)}: {exc.strerror}") from None
    sock.set_inheritable(True)  # objectd dev's serving processes inherit it
    return sock


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"
