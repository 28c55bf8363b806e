"""One test's runtime: the project loaded on a fresh data folder, on a fake clock.

:class:`KitRuntime` is what the fixtures hand out pieces of: ``env``, the Worker's own
``fetch`` (:class:`SelfClient`) and the clock (:class:`KitClock`).  Everything runs on
the test's event loop (``objectd.testing.plugin``), in process: no server, no socket.

Determinism.  Time moves only when the test advances it.  Storage I/O still takes real
time (a file opened or closed in a thread), so before the clock moves past a timer it
waits until that I/O is over (:meth:`KitRuntime.settle`): a write is never timed out by
the output gate, nor an object evicted mid-open, because fake time outran the disk.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from objectd.errors import ObjectResetError
from objectd.fetch import Request, Response
from objectd.runtime.clock import FakeClock
from objectd.runtime.committer import Durability
from objectd.runtime.project import Env, Project
from objectd.runtime.settings import RuntimeSettings

__all__ = ["IO_TIMEOUT_S", "TEST_ENDED", "KitClock", "KitRuntime", "SelfClient"]

# The longest real wait for storage I/O in progress (a file open, close or sync in a
# thread) before the clock moves: past it the test fails instead of hanging.
IO_TIMEOUT_S = 30.0
TEST_ENDED = "Durable Object reset because the test ended."
_TURNS = 20  # loop turns given to woken tasks (they block again, or finish)
_EXTRA_TURNS = 200  # more, at most, while alarm deliveries are still running


class KitRuntime:
    """The project of one test, on its own data folder and a fake clock."""

    def __init__(self, project_dir: Path, data_dir: Path) -> None:
        self.project_dir = project_dir
        self.data_dir = data_dir
        # Wall time at the start of the test, so times user code computes from
        # time.time() (an alarm in a minute) mean the same on the fake clock.
        self.fake = FakeClock(round(time.time(), 3), settle=self.settle)
        self.project: Project | None = None

    async def start(self) -> None:
        # ``process`` durability: commits are not fsynced.  Nothing a test sees changes
        # (the output gate still waits for each commit), and no sync runs in a thread.
        project = Project.load(
            self.project_dir,
            data_dir=self.data_dir,
            durability=Durability.PROCESS,
            settings=RuntimeSettings(clock=self.fake),
        )
        try:
            await project.start()
        except BaseException:
            await project.close()
            raise
        self.project = project

    async def close(self) -> None:
        """Stop the runtime at the end of the test.  Work the test left running (a call
        never awaited that waits forever) would hold the shutdown up: the objects still
        at work are reset first, as a deploy would, and ``scheduled()`` runs and
        ``wait_until()`` tasks are cancelled at once (no grace period in real time), so a
        teardown never hangs."""
        project, self.project = self.project, None
        if project is None:
            return
        await _turns(_TURNS)  # what is ready finishes first
        ended = ObjectResetError(TEST_ENDED)
        for object_class in project.classes.values():
            for host in list(object_class.hosts.values()):
                if host.busy:
                    host.reset(ended)
        await project.close(grace_s=0)

    def _loaded(self) -> Project:
        if self.project is None:
            raise RuntimeError("the objectd test runtime is closed (the test is over)")
        return self.project

    @property
    def env(self) -> Env:
        return self._loaded().env

    async def settle(self) -> None:
        """Let woken work run: loop turns, then, while storage I/O is in a thread,
        real waits for it (bounded), and a few more turns for alarm deliveries."""
        project = self.project
        if project is None:
            await _turns(_TURNS)
            return
        deadline = time.monotonic() + IO_TIMEOUT_S
        extra = 0
        while True:
            await _turns(_TURNS)
            if not project.committer.idle:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"objectd test kit: storage I/O still running after {IO_TIMEOUT_S} s"
                    )
                await asyncio.sleep(0.001)  # a thread is at work: give it real time
                continue
            alarms = project.alarms
            if alarms is None or not alarms.running or extra >= _EXTRA_TURNS:
                return
            extra += _TURNS  # a delivery in flight, not waiting for I/O: a few more turns


class KitClock:
    """``objectd_clock``: the runtime's clock, which moves only when the test says."""

    def __init__(self, runtime: KitRuntime) -> None:
        self._runtime = runtime

    def now(self) -> float:
        """The runtime's time, in seconds since the epoch (``set_alarm`` compares to it)."""
        return self._runtime.fake.now()

    def now_ms(self) -> int:
        """:meth:`now` in whole epoch milliseconds, the unit of alarm times."""
        return int(self._runtime.fake.now() * 1000)

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``: each timer that comes due on the way runs in
        its turn (alarms, their retries, idle eviction, the runtime's timeouts), and
        what it started runs until it waits again before time moves on."""
        if not isinstance(seconds, int | float) or isinstance(seconds, bool):
            raise TypeError(
                f"advance() takes seconds as a number, got {type(seconds).__name__}: {seconds!r}"
            )
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"advance() takes a finite number of seconds >= 0, got {seconds!r}")
        await self._runtime.fake.advance(seconds)

    def __repr__(self) -> str:
        return f"<objectd test clock at {self.now():.3f}>"


class SelfClient:
    """``objectd_self``: the Worker's own ``fetch``, called in process (no socket).

    ``await objectd_self.fetch(url, method=..., headers=..., body=...)`` returns the
    Worker's :class:`~objectd.Response`.  An upgrade (``headers={"Upgrade":
    "websocket"}``) returns the 101 response: ``response.web_socket`` is the client
    end; ``accept()`` it, then ``send()`` and ``async for message in ws``.  An exception
    the Worker raises is raised here (no 500 page), so a test sees its traceback.
    """

    def __init__(self, runtime: KitRuntime) -> None:
        self._runtime = runtime

    async def fetch(
        self, input: str | Request, init: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> Response:
        if isinstance(input, Request) and init is None and not kwargs:
            request = Request(input)
        else:
            request = Request(input, **{**(init or {}), **kwargs})
        return await self._runtime._loaded().fetch(request)

    def __repr__(self) -> str:
        return f"<objectd test client of {self._runtime.project_dir}>"


async def _turns(count: int) -> None:
    """Up to ``count`` loop turns, fewer once nothing else is ready to run.

    A day of fake time is some 86,400 timer runs (the idle reaper wakes every second),
    so stopping early matters.  "Nothing ready" is read from asyncio's ready queue, an
    internal: a loop without one just gets every turn.
    """
    ready = getattr(asyncio.get_running_loop(), "_ready", None)
    for _ in range(count):
        await asyncio.sleep(0)
        if ready is not None and not ready:
            return
