"""pytest plugin of objectd (registered through the ``pytest11`` entry point).

Which project: the ``objectd`` marker's ``project`` (``@pytest.mark.objectd(project=
"..")``, relative to the test file's folder), else the ``objectd_project`` ini option
(relative to the ini file's folder); the marker wins.

Fixtures, each test its own: ``objectd_env``, ``objectd_self``, ``objectd_clock``, and
``objectd_run`` (calls a function on the test's loop, for plain ``def`` tests).  They
share one runtime per test on a fresh data folder under ``tmp_path``, so tests do not
see each other's storage in any order, and parallel workers (pytest-xdist) never share
a folder.

Event loop.  The kit owns one asyncio loop per test (an ``asyncio.Runner``): the
runtime starts and stops on it, and an ``async def`` test that uses a kit fixture or
the ``objectd`` marker runs on it too, so no async plugin (pytest-asyncio, anyio) is
needed, nor should one also be applied to such a test.  A plain ``def`` test reaches
the runtime through ``objectd_run(fn, *args)``, which calls ``fn`` on that loop and
awaits its result.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from objectd.runtime.project import Env
from objectd.testing.session import KitClock, KitRuntime, SelfClient

T = TypeVar("T")

INI_OPTION = "objectd_project"
MARKER = "objectd"
_FIXTURES = frozenset(
    {"objectd_env", "objectd_self", "objectd_clock", "objectd_run", "objectd_runtime"}
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        INI_OPTION,
        "objectd: the project folder the objectd_* fixtures load (relative to the ini "
        "file's folder); @pytest.mark.objectd(project=...) overrides it",
        type="string",
        default="",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "objectd(project=None): run this test on objectd's test runtime; project= is the "
        "project folder, relative to the test file (default: the objectd_project ini "
        "option)",
    )


def _uses_kit(item: pytest.Item) -> bool:
    names = getattr(item, "fixturenames", ())
    return item.get_closest_marker(MARKER) is not None or not _FIXTURES.isdisjoint(names)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not isinstance(item, pytest.Function) or "objectd_loop" in item.fixturenames:
            continue
        if _is_async(item) and _uses_kit(item):
            item.fixturenames.insert(0, "objectd_loop")


def _is_async(item: pytest.Function) -> bool:
    return inspect.iscoroutinefunction(item.obj)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run an ``async def`` kit test on the kit's loop; leave every other test alone."""
    if not (_is_async(pyfuncitem) and "objectd_loop" in pyfuncitem.funcargs):
        return None
    runner = pyfuncitem.funcargs["objectd_loop"]
    assert isinstance(runner, asyncio.Runner)
    names = pyfuncitem._fixtureinfo.argnames
    runner.run(pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in names}))
    return True


def project_dir(item: pytest.Item) -> Path:
    """The project a kit test loads: the marker's, else the ini option's."""
    marker = item.get_closest_marker(MARKER)
    if marker is not None:
        unknown = set(marker.kwargs) - {"project"}
        if unknown or len(marker.args) > 1:
            raise pytest.UsageError(
                f"{item.nodeid}: @pytest.mark.objectd takes project=PATH only, got "
                f"{marker.args!r} {marker.kwargs!r}"
            )
        project = marker.kwargs.get("project", marker.args[0] if marker.args else None)
        if project is not None:
            return (item.path.parent / str(project)).resolve()
    configured = str(item.config.getini(INI_OPTION))
    if configured:
        base = item.config.inipath.parent if item.config.inipath else item.config.rootpath
        return (base / configured).resolve()
    raise pytest.UsageError(
        f"{item.nodeid}: which objectd project should it load? Set `{INI_OPTION} = "
        "path/to/project` in the pytest configuration, or mark the test "
        '@pytest.mark.objectd(project="path/to/project")'
    )


@pytest.fixture
def objectd_loop() -> Iterator[asyncio.Runner]:
    """The test's event loop: the runtime and ``async def`` kit tests run on it."""
    with asyncio.Runner() as runner:
        yield runner


@pytest.fixture
def objectd_runtime(
    request: pytest.FixtureRequest, objectd_loop: asyncio.Runner, tmp_path: Path
) -> Iterator[KitRuntime]:
    """The test's project, loaded on ``tmp_path / "objectd-data"`` and started."""
    runtime = KitRuntime(project_dir(request.node), tmp_path / "objectd-data")
    objectd_loop.run(runtime.start())
    try:
        yield runtime
    finally:
        objectd_loop.run(runtime.close())


@pytest.fixture
def objectd_env(objectd_runtime: KitRuntime) -> Env:
    """The project's ``env``: its Durable Object namespaces, vars and secrets."""
    return objectd_runtime.env


@pytest.fixture
def objectd_self(objectd_runtime: KitRuntime) -> SelfClient:
    """The Worker's own ``fetch``, in process: ``await objectd_self.fetch(url, ...)``."""
    return SelfClient(objectd_runtime)


@pytest.fixture
def objectd_clock(objectd_runtime: KitRuntime) -> KitClock:
    """The runtime's fake clock: ``now()``, and ``await advance(seconds)``."""
    return KitClock(objectd_runtime)


@pytest.fixture
def objectd_run(objectd_loop: asyncio.Runner, objectd_runtime: KitRuntime) -> Callable[..., Any]:
    """``objectd_run(fn, *args, **kwargs)``: call ``fn`` on the test's loop and await what
    it returns, from a plain ``def`` test (``objectd_run(stub.increment, 2)``).

    The function, not its call: a stub call starts at once and needs the running loop.
    A coroutine object (``objectd_run(response.text())``) is accepted too.
    """

    def run(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        if _loop_running():
            if inspect.iscoroutine(fn):
                fn.close()  # never run: no "was never awaited" warning on top
            raise RuntimeError(
                "objectd_run() is for plain `def` tests: in an async test, await the call "
                "directly (`await stub.increment(2)`), on the loop the test already runs on"
            )
        if inspect.iscoroutine(fn):
            if args or kwargs:
                raise TypeError("objectd_run(coroutine) takes no arguments")
            return objectd_loop.run(fn)
        if not callable(fn):
            raise TypeError(
                f"objectd_run() takes a function (or a coroutine), got {type(fn).__name__}"
            )

        async def call() -> Any:
            result = fn(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result

        return objectd_loop.run(call())

    return run


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
