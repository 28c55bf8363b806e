"""A loaded project: its config, user code, classes, ``env`` and front entrypoint.

Loading is where bad configuration is refused: the wrangler file is parsed, the
main module imported, migrations applied to the data folder (or refused), and
every binding checked against a created, exported class.  After that,
:meth:`Project.fetch` serves one HTTP request through the worker's entrypoint.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import os
import stat
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from objectd.config import ProjectConfig, load_project
from objectd.errors import ConfigError, ObjectResetError
from objectd.fetch import Request, Response
from objectd.ids import IdMinter
from objectd.runtime import data_lock
from objectd.runtime.abandon import stop_tasks
from objectd.runtime.alarms import AlarmScheduler
from objectd.runtime.committer import Committer, Durability
from objectd.runtime.crons import CronScheduler
from objectd.runtime.exits import describe, from_signal, stray_cancel_error, worker_exit_error
from objectd.runtime.host import CPU_LIMIT_MESSAGE
from objectd.runtime.lifecycle import Lifecycle
from objectd.runtime.loader import load_module
from objectd.runtime.metrics import NO_METRICS, Metrics, ResetCause
from objectd.runtime.migrations import apply_migrations
from objectd.runtime.namespace import DurableObjectNamespace
from objectd.runtime.objects import (
    ExecutionContext,
    WorkerEntrypoint,
    check_handler_spellings,
    find_handler,
)
from objectd.runtime.outbound import close_client
from objectd.runtime.registry import ObjectClass
from objectd.runtime.scheduled import ScheduledController, find_scheduled
from objectd.runtime.settings import RuntimeSettings
from objectd.runtime.user_code import UserCode
from objectd.runtime.user_tasks import install_task_guard, stuck_in
from objectd.runtime.watchdog import CpuLimitExceeded, CpuWatchdog
from objectd.storage.alarm_index import ALARM_INDEX_NAME
from objectd.storage.database import template_files
from objectd.storage.spares import SPARES_FOLDER, SpareFiles

__all__ = ["Env", "Project"]

log = logging.getLogger("objectd")
T = TypeVar("T")

BACKGROUND_GRACE_S = 10.0


class Env:
    """``env``: bindings, vars and secrets, by attribute (``env.COUNTER``) or key."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.__dict__["_values"] = dict(values)
        # Plain attributes too, so ``env.COUNTER`` on a hot path skips __getattr__; a
        # name that is also a method here (``get``) stays the method, as before.
        for name, value in values.items():
            if name.isidentifier() and not name.startswith("_") and not hasattr(Env, name):
                self.__dict__[name] = value

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(
                f"env has no binding, var or secret named {name!r}; "
                f"it has: {', '.join(sorted(self._values)) or 'nothing'}"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("env is read-only")

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def get(self, name: str, default: Any = None) -> Any:
        return self._values.get(name, default)

    def __repr__(self) -> str:
        return f"<Env {', '.join(sorted(self._values))}>"


class Project:
    def __init__(
        self,
        config: ProjectConfig,
        module: ModuleType,
        classes: dict[str, ObjectClass],
        env: Env,
        committer: Committer,
        settings: RuntimeSettings,
        lifecycle: Lifecycle,
    ) -> None:
        self.config = config
        self.module = module
        self.classes = classes
        self.env = env
        self.committer = committer
        self.settings = settings
        self.lifecycle = lifecycle
        self._entry = _find_entrypoint(module)
        self._scheduled = find_scheduled(module)
        # Runs scheduled() on the cron triggers' minutes; None without triggers.
        self.crons: CronScheduler | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._services: list[asyncio.Task[Any]] = []
        self.folder_lock: data_lock.DataFolderLock | None = None  # held until close()
        # Delivers the alarms of every class (bound or not); None without classes.
        self.alarms: AlarmScheduler | None = None
        # Ready-made files for new objects, shared by the classes; None without classes.
        self.spares: SpareFiles | None = None
        # The CPU limit applies to the project's code wherever it runs (the Worker's
        # too, as on Cloudflare): its files are under the project's folders.
        self.user_code = UserCode({config.root, config.main.parent})
        self._watchdog = CpuWatchdog(
            settings.cpu_limit_s, user_code=self.user_code, describe=stuck_in
        )
        self._unguard_tasks: Callable[[], None] | None = None

    @classmethod
    def load(
        cls,
        directory: str | Path,
        *,
        data_dir: str | Path | None = None,
        durability: Durability = Durability.FSYNC,
        environment: str | None = None,
        settings: RuntimeSettings | None = None,
        secrets: Mapping[str, str] | None = None,  # None: from .dev.vars (development)
        lock_data_folder: bool = True,
        require_entrypoint: bool = True,
        metrics: Metrics = NO_METRICS,
    ) -> Project:
        """Load the project in ``directory`` against its data folder, or refuse it.

        ``require_entrypoint``: refuse a main module without a Worker entrypoint (a
        ``Default(WorkerEntrypoint)`` class or ``on_fetch``).  False for a project that
        only holds classes and bindings, used through ``env`` from another program
        (``objectd.Runtime``): its :meth:`fetch` then raises, see :attr:`has_entrypoint`.

        ``lock_data_folder``: hold the data folder's server lock until :meth:`close`
        (``runtime.data_lock``); a second server on the same folder then raises
        :class:`~objectd.errors.DataFolderInUseError`.  False only in a process whose
        supervisor holds the lock for it.  ``metrics``: where the runtime reports its
        timings (``runtime.metrics``; by default nowhere).
        """
        locks: list[data_lock.DataFolderLock] | None = [] if lock_data_folder else None
        try:
            project = cls._load(
                directory, data_dir, durability, environment, settings, secrets, locks, metrics
            )
            if require_entrypoint and not project.has_entrypoint:
                raise ConfigError(_no_entrypoint(project.config))
            if locks:
                locks[0].acquire()  # a data folder that the migrations have just created
        except BaseException:
            for lock in locks or ():
                lock.release()
            raise
        project.folder_lock = locks[0] if locks else None
        return project

    @classmethod
    def _load(
        cls,
        directory: str | Path,
        data_dir: str | Path | None,
        durability: Durability,
        environment: str | None,
        settings: RuntimeSettings | None,
        secrets: Mapping[str, str] | None,
        locks: list[data_lock.DataFolderLock] | None,
        metrics: Metrics,
    ) -> Project:
        config = load_project(directory, env=environment, secrets=secrets)
        settings = settings or RuntimeSettings()
        if config.limits.cpu_ms is not None:
            settings = dataclasses.replace(settings, cpu_limit_s=config.limits.cpu_ms / 1000)
        # Spec §5.5: deleteAll() deletes the alarm from 2026-02-24 on (checklist 90).
        deletes_alarm = config.compatible(
            enable="delete_all_deletes_alarm",
            disable="delete_all_preserves_alarm",
            since="2026-02-24",
        )
        if deletes_alarm != settings.delete_all_deletes_alarm:
            settings = dataclasses.replace(settings, delete_all_deletes_alarm=deletes_alarm)
        lifecycle = Lifecycle(settings)
        root = data_lock.data_root(config, data_dir)
        module = load_module(config.main, project_folders=[config.root])
        if config.crons and find_scheduled(module) is None:  # refused before any migration
            raise ConfigError(
                f"{config.config_path}: triggers.crons: the worker has no scheduled handler; "
                "define `async def scheduled(self, controller, env, ctx)` on "
                "`class Default(WorkerEntrypoint)`"
            )
        exported = {name: value for name, value in vars(module).items() if isinstance(value, type)}
        if locks is not None:
            locks.append(data_lock.DataFolderLock(root / config.name))
            locks[0].acquire()  # before migrations can change what a running server serves
        states = apply_migrations(config, exported, root)
        _make_private(root)
        committer = Committer(durability=durability, metrics=metrics)
        # <root>/<script>/: the folder apply_migrations created for this script.
        spares = SpareFiles(root / config.name / SPARES_FOLDER, template_files())
        classes: dict[str, ObjectClass] = {}
        for name, state in states.items():
            if name not in exported:
                continue  # refused by apply_migrations when it has objects
            check_handler_spellings(exported[name])
            classes[name] = ObjectClass(
                name=name,
                cls=exported[name],
                backend=state.backend,
                directory=state.directory,
                minter=IdMinter(state.secret),
                committer=committer,
                settings=settings,
                lifecycle=lifecycle,
                spares=spares,
            )
        values: dict[str, Any] = dict(config.vars)
        for secret, value in config.secrets.items():
            values[secret] = value
        for binding in config.durable_objects:
            if binding.script_name not in (None, config.name):
                raise ConfigError(
                    f"{config.config_path}: durable_objects.bindings ({binding.name}): "
                    f"script_name {binding.script_name!r} is another worker, which this "
                    f"objectd does not serve; only {config.name!r} is served here"
                )
            object_class = classes.get(binding.class_name)
            if object_class is None:
                raise ConfigError(
                    f"{config.config_path}: durable_objects.bindings ({binding.name}): "
                    f"class {binding.class_name!r} is not exported by {config.main.name}"
                )
            values[binding.name] = DurableObjectNamespace(object_class)
        env = Env(values)
        for object_class in classes.values():
            object_class.env = env
        project = cls(config, module, classes, env, committer, settings, lifecycle)
        if classes:
            project.spares = spares
            index_path = root / config.name / ALARM_INDEX_NAME
            project.alarms = AlarmScheduler(
                index_path, classes, settings=settings, committer=committer
            )
        return project

    async def start(self) -> None:
        """Start the runtime's own tasks: eviction, the CPU watchdog and the alarm scheduler."""
        loop = asyncio.get_running_loop()
        self._services.append(loop.create_task(self.lifecycle.run(), name="objectd-evictor"))
        self._unguard_tasks = install_task_guard(loop, self.user_code)
        self._watchdog.start()
        if self.alarms is not None:
            self.alarms.start()
        if self.config.crons:
            self.crons = CronScheduler(
                self.config.crons,
                self.scheduled,
                self.settings.clock,
                timeout_s=self.settings.scheduled_timeout_s,
            )
            self.crons.start()
        if self.spares is not None:
            spares = self.spares

            def fill() -> None:
                spares.reset()
                spares.refill()

            self.committer.run_in_thread(fill, failure="could not make spare object files")

    @property
    def has_entrypoint(self) -> bool:
        """Whether the main module has a Worker entrypoint for :meth:`fetch`."""
        return self._entry is not None

    async def fetch(self, request: Request) -> Response:
        """Serve one request through the worker's entrypoint."""
        if self._entry is None:
            raise TypeError(_no_entrypoint(self.config))
        ctx = ExecutionContext(self._wait_until)
        response = await _as_worker_code(self._entry(request, self.env, ctx))
        if not isinstance(response, Response):
            raise TypeError(
                f"the worker's fetch handler returned {type(response).__name__}, "
                "expected a Response"
            )
        return response

    async def scheduled(self, cron: str, scheduled_time: int | None = None) -> None:
        """Run the worker's ``scheduled`` handler once for ``cron`` (a cron trigger's
        minute, or now), failing as :meth:`fetch` fails."""
        if self._scheduled is None:
            raise TypeError("Handler does not export a scheduled() function.")
        if scheduled_time is None:
            scheduled_time = int(self.settings.clock.now() * 1000)
        controller = ScheduledController(cron, scheduled_time)
        await _as_worker_code(
            self._scheduled(controller, self.env, ExecutionContext(self._wait_until))
        )

    def retire(self, error: BaseException) -> None:
        """Reset every object with ``error`` and fail every later call into one with it:
        this process's code is outdated (``objectd dev`` reloads, checklist 152)."""
        for object_class in self.classes.values():
            object_class.retire(error)

    def _wait_until(self, awaitable: Any) -> None:
        task = asyncio.get_running_loop().create_task(self._run_background(awaitable))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _run_background(self, awaitable: Any) -> None:
        try:
            await awaitable
        except CpuLimitExceeded:
            log.error("a wait_until() task of the worker failed: %s", CPU_LIMIT_MESSAGE)
        except (SystemExit, KeyboardInterrupt) as exc:
            if from_signal(exc):
                raise
            log.error("a wait_until() task of the worker raised %s", describe(exc), exc_info=exc)
        except Exception:
            log.exception("a wait_until() task of the worker failed")
        except asyncio.CancelledError as exc:
            failure = stray_cancel_error(exc)
            if failure is None:
                raise
            log.error("a wait_until() task of the worker failed: %s", failure, exc_info=exc)

    async def close(self, *, grace_s: float = BACKGROUND_GRACE_S) -> None:
        """Finish background work, commit and sync everything, close every file.

        Running ``scheduled()`` runs, ``wait_until()`` tasks and objects' events get
        ``grace_s`` (real time) each to finish, then are cancelled (the objects reset);
        one that ignores its cancellation is abandoned after ``settings.cancel_wait_s``,
        logged, so that shutdown does not hang on it (the test kit passes 0: it cancels
        them at once).
        The CPU watchdog runs until the end: handlers still run while work finishes.
        """
        if self.crons is not None:  # no new scheduled() runs; those running may finish
            await self.crons.stop(grace_s, cancel_wait_s=self.settings.cancel_wait_s)
        if self.alarms is not None:
            await self.alarms.stop()  # no new alarm() runs while objects close
        for task in self._services:
            task.cancel()
        await asyncio.gather(*self._services, return_exceptions=True)
        self._services.clear()
        # wait_until() work gets a grace period; shutdown must not hang on it.
        stuck = await stop_tasks(
            self._background,
            grace_s=grace_s,
            cancel_wait_s=self.settings.cancel_wait_s,
            log=log,
            late_warning="objectd: cancelling a wait_until() task still running at shutdown",
        )
        if stuck:
            log.error(
                "objectd: abandoning %d wait_until() task(s) that ignored their "
                "cancellation: a task must not catch CancelledError without re-raising it",
                len(stuck),
            )
        await self._stop_objects(grace_s)
        for object_class in self.classes.values():
            await object_class.close()
        await self.committer.close()
        if self.alarms is not None:
            self.alarms.close()  # after the committer: it commits the index's last rows
        await close_client()
        self._watchdog.stop()
        if self._unguard_tasks is not None:
            self._unguard_tasks()
            self._unguard_tasks = None
        if self.folder_lock is not None:  # every file is closed: another server may start
            self.folder_lock.release()

    async def _stop_objects(self, grace_s: float) -> None:
        """Objects' work still running gets ``grace_s`` (real time) to finish; then the
        objects still at work are reset, as a deploy resets them: a handler that never
        returns must not hold the shutdown up (its file is closed after the reset)."""
        hosts = [host for oc in self.classes.values() for host in oc.hosts.values()]
        running = {task for host in hosts for task in host.running_tasks()}
        if not running:
            return
        if grace_s > 0:
            await asyncio.wait(running, timeout=grace_s)
        for host in hosts:
            if host.running_tasks():
                host.reset(ObjectResetError(SHUTDOWN_RESET), cause=ResetCause.OTHER)


_Entry = Callable[[Request, Env, ExecutionContext], Any]
SHUTDOWN_RESET = "Durable Object reset because the server is shutting down."


async def _as_worker_code(work: Awaitable[T]) -> T:
    """Await the worker's own code (a fetch or scheduled handler): what stops it becomes
    that call's failure, never the server's (``runtime.exits``): the CPU limit, a
    ``sys.exit()`` or ``KeyboardInterrupt`` it raised, a stray ``CancelledError`` (a 500,
    unless the call itself was cancelled)."""
    try:
        return await work
    except CpuLimitExceeded:
        raise RuntimeError(CPU_LIMIT_MESSAGE) from None
    except (SystemExit, KeyboardInterrupt) as exc:
        if from_signal(exc):
            raise
        raise worker_exit_error(exc) from exc
    except asyncio.CancelledError as exc:
        failure = stray_cancel_error(exc)
        if failure is None:
            raise
        raise failure from exc


def _no_entrypoint(config: ProjectConfig) -> str:
    return (
        f"{config.main}: no entrypoint: define `class Default(WorkerEntrypoint)` with "
        "`async def fetch(self, request)`, or a module-level `on_fetch(request, env, ctx)`"
    )


def _find_entrypoint(module: ModuleType) -> _Entry | None:
    default = getattr(module, "Default", None)
    if isinstance(default, type) and issubclass(default, WorkerEntrypoint):
        entry_cls = default

        async def call_default(request: Request, env: Env, ctx: ExecutionContext) -> Any:
            handler = find_handler(entry_cls(ctx, env), "fetch")
            if handler is None:
                raise TypeError("Method fetch does not exist")
            result = handler(request)
            return await result if inspect.isawaitable(result) else result

        return call_default
    on_fetch = getattr(module, "on_fetch", None)
    if callable(on_fetch):
        accepted = len(inspect.signature(on_fetch).parameters)
        function = on_fetch

        async def call_function(request: Request, env: Env, ctx: ExecutionContext) -> Any:
            result = function(*(request, env, ctx)[: max(1, accepted)])
            return await result if inspect.isawaitable(result) else result

        return call_function
    return None


def _make_private(root: Path) -> None:
    """The data folder is the server user's alone: it holds every object's data and the
    namespace secrets that ids are derived from (each secret file is 0600 too)."""
    try:
        mode = root.stat().st_mode
    except FileNotFoundError:
        return  # nothing stored yet (a project without migrations)
    if stat.S_IMODE(mode) & 0o077:
        os.chmod(root, 0o700)
