"""Import a project's main module, and serve ``workers`` to code written for Cloudflare.

Code written for Cloudflare Python Workers does ``from workers import DurableObject``.
When no real ``workers`` package is installed, objectd registers its compatibility
module (``objectd.runtime.compat``) under that name before importing user code, so
such code runs unchanged.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from objectd.errors import ConfigError

__all__ = ["install_workers_compat", "load_module"]


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


def load_module(path: Path) -> ModuleType:
    """Import ``path`` as a top-level module; its folder goes on ``sys.path`` for siblings."""
    install_workers_compat()
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(name)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if previous is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = previous
        raise
    return module
