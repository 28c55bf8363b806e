"""``objectd init``: the starting projects, written from files shipped in the package (L0).

Each folder here is one template: a wrangler.toml, a worker and tests that run against a
real server.  The files are package data (pyproject's ``tool.setuptools.package-data``),
not code of objectd: they are never imported here.  In a template, ``__NAME__`` in
``wrangler.toml`` becomes the project's name, and a file named ``_gitignore`` is written
as ``.gitignore``.
"""

from __future__ import annotations

import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

__all__ = ["TEMPLATES", "InitError", "project_name", "write_project"]

TEMPLATES = ("counter", "chat", "fastapi")
_SKIPPED = frozenset({"__pycache__", "__init__.py"})
_RENAMED = {"_gitignore": ".gitignore"}


class InitError(Exception):
    """The project cannot be written there; nothing was written."""


def project_name(directory: Path) -> str:
    """A Worker name from the folder's name: lowercase letters, digits and dashes."""
    name = re.sub(r"[^a-z0-9-]+", "-", directory.resolve().name.lower()).strip("-")
    return name[:63].rstrip("-") or "app"


def write_project(directory: Path, template: str = "counter") -> list[Path]:
    """Write ``template`` into ``directory`` (created if missing, else it must be empty);
    returns the files written, relative to ``directory``."""
    if template not in TEMPLATES:
        raise InitError(f"unknown template {template!r}; choose one of {', '.join(TEMPLATES)}")
    if directory.exists() and not directory.is_dir():
        raise InitError(f"{directory} exists and is not a folder; nothing was written")
    if directory.is_dir() and any(directory.iterdir()):
        raise InitError(
            f"{directory} is not empty; nothing was written (objectd init writes a new "
            "project into an empty or new folder)"
        )
    files = list(_files(resources.files(__name__) / template, Path()))
    name = project_name(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for source, relative in files:
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        text = source.read_text(encoding="utf-8")
        if relative.name == "wrangler.toml":
            text = text.replace("__NAME__", name)
        target.write_text(text, encoding="utf-8")
        written.append(relative)
    return written


def _files(folder: Traversable, relative: Path) -> list[tuple[Traversable, Path]]:
    found: list[tuple[Traversable, Path]] = []
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        if entry.name in _SKIPPED or entry.name.endswith(".pyc"):
            continue
        if entry.is_dir():
            found.extend(_files(entry, relative / entry.name))
        else:
            found.append((entry, relative / _RENAMED.get(entry.name, entry.name)))
    return found
