"""Where ``objectd inspect`` and ``objectd export`` read a project's data from (L4).

A live object's file is locked by the one connection of the server that holds it, and
another process must never open it (it would fail, or break that lock), so:

* when a server holds the data folder (its lock, ``runtime.data_lock``, is taken),
  the commands ask that server, through its admin API (``asgi.inspector``) at the
  address it wrote into the lock file, with the token from ``--admin-token`` or
  ``OBJECTD_ADMIN_TOKEN``;
* when none does, they take the lock themselves, so that no server can start while
  they read, and open the files read-only (``runtime.inspection.FolderInspector``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import httpx

from objectd.config import load_project
from objectd.errors import ConfigError, DataFolderInUseError
from objectd.runtime import data_lock
from objectd.runtime.inspection import FolderInspector, InspectError

__all__ = [
    "FolderSource",
    "ServerSource",
    "Source",
    "common_options",
    "open_source",
    "script_folder",
]

_HTTP_TIMEOUT_S = 60.0


class Source:
    """Where the data is read from: a running server's API, or the files."""

    description = ""

    def get(self, what: str, **params: str) -> Any:
        raise NotImplementedError

    def snapshot(self, class_name: str, oid: str) -> bytes:
        raise NotImplementedError


class ServerSource(Source):
    def __init__(self, admin_url: str, token: str | None, pid: int | None) -> None:
        self.url = admin_url.rstrip("/") + "/api/"
        self.description = f"the server at {admin_url} (pid {pid})"
        headers = {"authorization": f"Bearer {token}"} if token else {}
        # trust_env=False: the admin API is on this machine, and a proxy from the
        # environment (HTTP_PROXY, ALL_PROXY) would see the token.
        self._http = httpx.Client(headers=headers, timeout=_HTTP_TIMEOUT_S, trust_env=False)

    def _fetch(self, what: str, params: dict[str, str]) -> httpx.Response:
        try:
            response = self._http.get(self.url + what, params=params)
        except httpx.HTTPError as exc:
            raise click.ClickException(f"{self.description} does not answer: {exc}") from None
        if response.status_code == 401:
            raise click.ClickException(
                f"{self.description} needs its admin token: pass --admin-token or set "
                "OBJECTD_ADMIN_TOKEN"
            )
        if response.status_code != 200:
            try:
                message = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                message = f"HTTP {response.status_code}: {response.text[:200]}"
            raise click.ClickException(message)
        return response

    def get(self, what: str, **params: str) -> Any:
        return self._fetch(what, params).json()

    def snapshot(self, class_name: str, oid: str) -> bytes:
        return self._fetch("snapshot", {"class": class_name, "id": oid}).content


class FolderSource(Source):
    def __init__(self, folder: Path) -> None:
        self.inspector = FolderInspector(folder)
        self.description = f"the files in {folder} (no server holds them)"

    def get(self, what: str, **params: str) -> Any:
        inspector = self.inspector
        calls = {
            "summary": lambda: inspector.summary(),
            "objects": lambda: inspector.objects(params["class"], search=params.get("search")),
            "ids": lambda: inspector.ids(params["class"]),
            "object": lambda: inspector.object(
                params["class"],
                params["id"],
                kv_prefix=params.get("kv_prefix", ""),
                kv_after=params.get("kv_after"),
            ),
            "query": lambda: inspector.query(params["class"], params["id"], params["sql"]),
            "alarms": lambda: inspector.alarms(),
        }
        try:
            return asyncio.run(calls[what]())
        except InspectError as exc:
            raise click.ClickException(str(exc)) from None

    def snapshot(self, class_name: str, oid: str) -> bytes:
        return asyncio.run(self.inspector.snapshot(class_name, oid))


def script_folder(directory: Path, data_dir: Path | None, environment: str | None) -> Path:
    try:
        config = load_project(directory, env=environment)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    return data_lock.data_root(config, data_dir) / config.name


@contextmanager
def open_source(folder: Path, token: str | None) -> Iterator[Source]:
    """The running server's API if one holds ``folder``, else the files, under its lock."""
    lock = data_lock.DataFolderLock(folder)
    try:
        taken = lock.acquire()
    except DataFolderInUseError:
        holder = data_lock.read_holder(folder)
        if holder.admin_url is None:
            raise click.ClickException(
                f"{folder}: a server (pid {holder.pid}) holds this data folder and has no "
                "admin pages: serve it with --admin-token (or use objectd dev), or stop it. "
                "Its live files are never opened from another process."
            ) from None
        yield ServerSource(holder.admin_url, token, holder.pid)
        return
    if not taken:
        raise click.ClickException(f"{folder}: no data yet (nothing has been stored)")
    try:
        yield FolderSource(folder)
    finally:
        lock.release()


def common_options(function: Any) -> Any:
    options = [
        click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path)),
        click.option(
            "--data-dir",
            type=click.Path(file_okay=False, path_type=Path),
            help="The data folder the server uses [default: DIRECTORY/.objectd].",
        ),
        click.option("--env", "environment", help="Wrangler environment ([env.NAME])."),
        click.option(
            "--admin-token",
            envvar="OBJECTD_ADMIN_TOKEN",
            default=None,
            help="The running server's admin token (also OBJECTD_ADMIN_TOKEN).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


# -- inspect -------------------------------------------------------------------------------
