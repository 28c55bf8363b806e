"""Which running code is the project's own: the CPU watchdog stops only that code.

The watchdog (``runtime.watchdog``) used to know user code by objectd's frames around
it (an object's event, the Worker's entrypoint), and missed user code that runs
elsewhere: a standard-API WebSocket listener in a plain Worker, a task the code created
with ``create_task`` (adversarial finding 2).  Code is now known by its file: a
project's code is every module file under the project's folder (the wrangler file's
folder, and the main module's, from which the loader imports it and its siblings),
whenever it was imported.  Installed packages are not, even when a virtual environment
lives inside the project folder, and neither is objectd itself.

:data:`OBJECTD_DIR` names objectd's own files: the watchdog never raises its exception
while one of them runs on behalf of user code (it waits for a safe point instead).
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path
from types import CodeType

__all__ = ["OBJECTD_DIR", "UserCode", "is_objectd"]

OBJECTD_DIR = str(Path(__file__).resolve().parents[1]) + os.sep
_PACKAGE_FOLDERS = frozenset({"site-packages", "dist-packages"})


def is_objectd(code: CodeType) -> bool:
    return code.co_filename.startswith(OBJECTD_DIR)


class UserCode:
    """``user_code(code)``: is ``code`` the project's?  Cached per file name; thread-safe."""

    def __init__(self, roots: Iterable[Path]) -> None:
        self._roots = tuple(sorted({str(Path(root).resolve()) + os.sep for root in roots}))
        installed = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
        installed.update(
            sysconfig.get_paths()[name] for name in ("stdlib", "platstdlib", "purelib", "platlib")
        )
        self._installed = tuple(str(Path(path).resolve()) + os.sep for path in installed)
        self._known: dict[str, bool] = {}

    def __call__(self, code: CodeType) -> bool:
        filename = code.co_filename
        known = self._known.get(filename)
        if known is None:
            known = self._known[filename] = self._judge(filename)
        return known

    def _judge(self, filename: str) -> bool:
        if not os.path.isabs(filename):
            return False  # "<string>", "<frozen ...>": not a file of the project
        path = os.path.realpath(filename)
        if path.startswith(OBJECTD_DIR):
            return False
        for root in self._roots:
            if path.startswith(root):
                inside = path[len(root) :].split(os.sep)
                if _PACKAGE_FOLDERS.intersection(inside):
                    return False  # a virtual environment inside the project folder
                # A project folder that is itself inside an installation (unusual) still
                # counts; an installation inside the project folder does not.
                return not any(
                    path.startswith(prefix) and len(prefix) > len(root)
                    for prefix in self._installed
                )
        return False
