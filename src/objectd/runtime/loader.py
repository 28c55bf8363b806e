"""Import a project's main module, and serve ``workers`` to code written for Cloudflare.

Code written for Cloudflare Python Workers does ``from workers import DurableObject``.
When no real ``workers`` package is installed, objectd registers its compatibility
module (``objectd.runtime.compat``) under that name before importing user code, so
such code runs unchanged.

:func:`describe_load_error` says why a project did not load, pointing at the user's
line: the file and line of a syntax error, and for an import error (or any exception
while the module runs) the user's frames, the importing lines included, with the
loader's and importlib's folded away.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from objectd.errors import ConfigError, DataFolderInUseError

__all__ = ["describe_load_error", "install_workers_compat", "load_module"]

# Installed packages, also those of a virtualenv inside the project: not the user's code.
_PACKAGES = frozenset({"site-packages", "dist-packages"})
# The project's own modules the last load imported (name -> module): the next load
# drops them from sys.modules, so that it imports its own.
_loaded: dict[str, ModuleType] = {}


def install_workers_compat() -> None:
    if "js" not in sys.modules and importlib.util.find_spec("js") is None:
        from objectd.runtime import compat_js

        sys.modules["js"] = compat_js  # `from js import WebSocketPair`
    if "workers" in sys.modules:
        return
    if importlib.util.find_spec("workers") is not None:
        return  # a real workers package is installed: leave it alone
    from objectd.runtime import compat

    sys.modules["workers"] = compat


def load_module(path: Path, *, project_folders: Iterable[Path] = ()) -> ModuleType:
    """Import ``path`` as a top-level module; its folder goes first on ``sys.path`` for
    its siblings.

    The project's own modules that an earlier load imported (from its folders, not from
    installed packages there) are dropped from ``sys.modules`` first, so this load
    imports ``helper.py`` afresh from its own folder: not another project's module of
    the same name loaded before, nor, in the test kit, the state the previous test left
    in it.  A module loaded earlier keeps the modules it imported.  Modules the loads did
    not import (a test module, or a module first imported at run time) are left alone.
    """
    install_workers_compat()
    folder = str(path.parent)
    if folder in sys.path:
        sys.path.remove(folder)  # first, ahead of another project's folder
    sys.path.insert(0, folder)
    _forget_loaded()
    name = path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(name)
    before = set(sys.modules)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if previous is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = previous
        raise
    finally:
        _remember_loaded(set(sys.modules) - before, [path.parent, *project_folders])
    return module


def _forget_loaded() -> None:
    for name, module in _loaded.items():
        if sys.modules.get(name) is module:
            del sys.modules[name]
    _loaded.clear()


def _remember_loaded(names: set[str], folders: list[Path]) -> None:
    """Record which of the modules in ``names`` (new since the load began) are the project's."""
    roots = [folder.resolve() for folder in folders]
    for name in names:
        module = sys.modules.get(name)
        where = None if module is None else _location(module)
        if (
            module is not None
            and where is not None
            and any(_is_user_file(where, root) for root in roots)
        ):
            _loaded[name] = module


def _location(module: object) -> str | None:
    """A module's file; for a namespace package (no file), its first folder."""
    where = getattr(module, "__file__", None)
    if isinstance(where, str):
        return where
    try:
        first = next(iter(getattr(module, "__path__", ())), None)
    except TypeError:
        return None
    return first if isinstance(first, str) else None


def describe_load_error(exc: BaseException, directory: Path) -> str:
    """Why the project in ``directory`` did not load, as the user needs to read it.

    A :class:`ConfigError` names its file already, and a :class:`DataFolderInUseError`
    the folder and the server holding it: their message is the whole report.
    Otherwise the traceback is cut to the frames of files in ``directory`` (not in a
    virtualenv there): ``worker.py``'s ``import helper``, then the line of ``helper.py``
    that failed.  With no such frame
    (a syntax error names its own file and line) only the exception is shown, unless
    it did not come from user code at all: then the whole traceback is.
    """
    if isinstance(exc, ConfigError | DataFolderInUseError):
        return str(exc)
    frames = traceback.extract_tb(exc.__traceback__)
    root = directory.resolve()
    mine = [frame for frame in frames if _is_user_file(frame.filename, root)]
    lines = traceback.format_exception_only(exc)
    if mine:
        lines = ["Traceback (most recent call last):\n", *traceback.format_list(mine), *lines]
    elif not isinstance(exc, SyntaxError):
        lines = traceback.format_exception(exc)
    return "".join(lines).rstrip("\n")


def _is_user_file(filename: str, root: Path) -> bool:
    if not os.path.isabs(filename):
        return False  # "<frozen importlib._bootstrap>", "<string>"
    path = Path(filename).resolve()
    return path.is_relative_to(root) and not _PACKAGES.intersection(path.parts)
