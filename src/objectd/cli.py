"""The ``objectd`` command (L4): parse arguments, call the library, exit.

``objectd dev [DIR]`` serves a project on 127.0.0.1:8787 with its data in
``DIR/.objectd/`` and restarts the serving process when code or config changes
(the data stays).  ``objectd serve [DIR]`` serves without reloading.  Both bind the
socket first, so ``--port 0`` works, and print ``objectd: serving <name> on <url>``
once the project is loaded and ready.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import warnings
from pathlib import Path
from typing import Any

import click
import uvicorn

from objectd import __version__
from objectd.asgi import ObjectdApp
from objectd.config import find_config, secrets_from_environ
from objectd.errors import ConfigError
from objectd.runtime.committer import Durability
from objectd.runtime.settings import RuntimeSettings

__all__ = ["main"]

MAX_WS_MESSAGE_BYTES = 32 * 1024 * 1024
_RELOAD_INCLUDES = ["*.py", "wrangler.toml", "wrangler.json", "wrangler.jsonc", ".dev.vars*"]


def _common(function: click.decorators.FC) -> click.decorators.FC:
    options = [
        click.argument(
            "directory",
            default=".",
            type=click.Path(exists=True, file_okay=False, path_type=Path),
        ),
        click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind."),
        click.option("--port", default=8787, show_default=True, type=int, help="0: any free port."),
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
            "--log-level",
            type=click.Choice(["debug", "info", "warning", "error"]),
            default="info",
            show_default=True,
        ),
        click.option("--access-log/--no-access-log", default=False, show_default=True),
        click.option(
            "--idle-timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=None,
            help="Seconds an idle object stays in memory before it is evicted (hibernated; "
            "its hibernatable WebSockets stay open) [default: 10].",
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
def dev(
    directory: Path,
    host: str,
    port: int,
    data_dir: Path | None,
    durability: str,
    environment: str | None,
    log_level: str,
    access_log: bool,
    idle_timeout: float | None,
) -> None:
    """Serve DIRECTORY for development, reloading when its code or config changes."""
    directory = directory.resolve()
    _check_project(directory)
    config = _uvicorn_config(
        "objectd.asgi:app_from_environment",
        host,
        port,
        log_level,
        access_log,
        factory=True,
        reload=True,
        reload_dirs=[str(directory)],
        reload_includes=_RELOAD_INCLUDES,
        reload_excludes=[".objectd/*", ".venv/*"],
    )
    sock = _listen(config)
    url = _url(host, sock.getsockname()[1])
    os.environ.update(
        OBJECTD_PROJECT=str(directory),
        OBJECTD_DATA_DIR=str(data_dir.resolve()) if data_dir else "",
        OBJECTD_DURABILITY=durability,
        OBJECTD_ENV=environment or "",
        OBJECTD_ANNOUNCE=url,
        OBJECTD_IDLE_TIMEOUT=str(idle_timeout or ""),
    )
    from uvicorn.supervisors import ChangeReload

    server = uvicorn.Server(config)
    ChangeReload(config, target=server.run, sockets=[sock]).run()


@main.command()
@_common
def serve(
    directory: Path,
    host: str,
    port: int,
    data_dir: Path | None,
    durability: str,
    environment: str | None,
    log_level: str,
    access_log: bool,
    idle_timeout: float | None,
) -> None:
    """Serve DIRECTORY in production (no reloading).

    Secrets come from OBJECTD_SECRET_<NAME> environment variables, not .dev.vars.
    """
    directory = directory.resolve()
    _check_project(directory)
    try:
        secrets = secrets_from_environ(os.environ)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    app = ObjectdApp(
        directory,
        data_dir=data_dir.resolve() if data_dir else None,
        durability=Durability(durability),
        environment=environment,
        settings=RuntimeSettings(idle_timeout_s=idle_timeout) if idle_timeout else None,
        secrets=secrets,
    )
    config = _uvicorn_config(app, host, port, log_level, access_log)
    sock = _listen(config)
    app.announce = _url(host, sock.getsockname()[1])
    server = uvicorn.Server(config)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal with the
    # handlers it found installed. With these in place, a graceful stop exits 0.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(1)


def _check_project(directory: Path) -> None:
    try:
        find_config(directory)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _uvicorn_config(
    app: Any, host: str, port: int, log_level: str, access_log: bool, **extra: Any
) -> uvicorn.Config:
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    # uvicorn's `websockets` protocol is chosen on purpose: it tells a peer's Close frame from
    # a lost connection (1006), which WebSocket close events need.
    warnings.filterwarnings("ignore", message="The `websockets` implementation is deprecated")
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="httptools",
        ws="websockets",
        lifespan="on",
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=30,
        # Keep idle client connections longer than uvicorn's 5 s, so a busy moment on the
        # loop does not race a client reusing a connection the server just closed.
        timeout_keep_alive=30,
        ws_max_size=MAX_WS_MESSAGE_BYTES,  # spec §8: received messages up to 32 MiB
        # No permessage-deflate: its zlib state costs ~90 KB per socket (measured: 119 KB
        # -> 28 KB per idle socket), which hibernation is meant to make cheap.
        ws_per_message_deflate=False,
        **extra,
    )


def _listen(config: uvicorn.Config) -> socket.socket:
    """Bind and listen at once: "serving" is printed before uvicorn starts accepting, and a
    client that connects in between must wait in the backlog, not be refused."""
    sock = config.bind_socket()
    sock.listen(config.backlog)
    return sock


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"
