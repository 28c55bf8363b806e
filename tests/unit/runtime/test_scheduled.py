"""The worker's scheduled() handler through a loaded project (issue 10 §3)."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import pytest
from runtime_kit import settle_io

from objectd.errors import ConfigError
from objectd.fetch import Request
from objectd.runtime.clock import FakeClock
from objectd.runtime.project import Project
from objectd.runtime.settings import RuntimeSettings

START = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
WRANGLER = """
name = "app"
main = "worker.py"

[vars]
GREETING = "hello"

[triggers]
crons = {crons}

[[durable_objects.bindings]]
name = "TALLY"
class_name = "Tally"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Tally"]
"""
# Written as Cloudflare's Python Workers docs write it; every run is recorded in an
# object (through env, as a real cleanup job would) and in RUNS.
WORKER = """
from workers import DurableObject, Response, WorkerEntrypoint

RUNS = []


class Tally(DurableObject):
    async def add(self, line):
        lines = await self.ctx.storage.get("lines") or []
        lines.append(line)
        await self.ctx.storage.put("lines", lines)

    async def lines(self):
        return await self.ctx.storage.get("lines") or []


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        lines = await self.env.TALLY.getByName("runs").lines()
        return Response("\\n".join(lines))
{handler}
"""
FULL_HANDLER = """
    async def scheduled(self, controller, env, ctx):
        assert env is self.env and ctx is self.ctx
        line = f"{controller.type} {controller.cron} {controller.scheduledTime}"
        assert controller.scheduled_time == controller.scheduledTime
        controller.noRetry()
        RUNS.append(line)
        done = asyncio.Event()

        async def later():
            await env.TALLY.getByName("runs").add(line + " " + env.GREETING)
            done.set()

        ctx.waitUntil(later())
        await done.wait()
"""


def write_project(
    tmp_path: Path, handler: str, crons: str = '["*/5 * * * *", "0 8 * * 6"]'
) -> Path:
    root = tmp_path / "app"
    root.mkdir()
    (root / "wrangler.toml").write_text(WRANGLER.replace("{crons}", crons))
    # Indented handlers are methods of Default; unindented ones module-level functions.
    (root / "worker.py").write_text("import asyncio\n" + WORKER.replace("{handler}", handler))
    sys.modules.pop("worker", None)
    return root


def load(root: Path, clock: FakeClock) -> Project:
    project = Project.load(root, settings=RuntimeSettings(clock=clock))
    clock.settle = settle_io(project.committer)  # runs write (and sync) in its commits
    return project


def test_cron_triggers_call_scheduled_as_cloudflare_does(tmp_path: Path) -> None:
    """Each matching minute once, with controller.cron / scheduledTime / type, env and a
    ctx whose waitUntil() work completes.  2027-01-15 is a Friday: 6 in Cloudflare's
    numbering (1 = Sunday), so "0 8 * * 6" runs at 08:00 that day."""
    root = write_project(tmp_path, FULL_HANDLER)

    async def main() -> list[str]:
        clock = FakeClock(START - 60)  # 07:59, Friday 2027-01-15
        project = load(root, clock)
        await project.start()
        try:
            await clock.advance(0)
            await clock.advance(6 * 60)  # to 08:05
            response = await project.fetch(Request("http://localhost/"))
            return (await response.text()).splitlines()
        finally:
            await project.close()

    ms = int(START * 1000)
    assert asyncio.run(main()) == [
        f"scheduled */5 * * * * {ms} hello",
        f"scheduled 0 8 * * 6 {ms} hello",
        f"scheduled */5 * * * * {ms + 5 * 60_000} hello",
    ]


@pytest.mark.parametrize(
    "handler",
    [
        # The short form the docs allow.
        """
    async def scheduled(self, controller):
        RUNS.append((controller.cron, controller.scheduled_time, controller.type))
""",
        # A module-level function, as with on_fetch.
        """
async def on_scheduled(controller, env, ctx):
    RUNS.append((controller.cron, controller.scheduled_time, controller.type))
""",
    ],
    ids=["method-with-controller-only", "on_scheduled-function"],
)
def test_other_handler_shapes_are_called(tmp_path: Path, handler: str) -> None:
    root = write_project(tmp_path, handler, crons='["* * * * *"]')

    async def main() -> list[object]:
        clock = FakeClock(START)
        project = load(root, clock)
        await project.start()
        try:
            await project.scheduled("manual", 123)  # as /__scheduled does
            await clock.advance(0)
            await clock.advance(60)
            return list(project.module.RUNS)
        finally:
            await project.close()

    assert asyncio.run(main()) == [
        ("manual", 123, "scheduled"),
        ("* * * * *", int(START * 1000) + 60_000, "scheduled"),
    ]


def test_a_raising_scheduled_is_logged_and_the_next_minute_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = write_project(
        tmp_path,
        """
    async def scheduled(self, controller, env, ctx):
        RUNS.append(controller.scheduledTime)
        if len(RUNS) == 1:
            raise RuntimeError("the first cleanup failed")
""",
        crons='["* * * * *"]',
    )

    async def main() -> list[int]:
        clock = FakeClock(START)
        project = load(root, clock)
        await project.start()
        try:
            await clock.advance(0)
            await clock.advance(120)
            return list(project.module.RUNS)
        finally:
            await project.close()

    with caplog.at_level(logging.INFO):
        runs = asyncio.run(main())
    assert runs == [int(START * 1000) + 60_000, int(START * 1000) + 120_000]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, caplog.text
    assert 'worker.py", line' in errors[0] and "RuntimeError: the first cleanup failed" in errors[0]


def test_crons_without_a_scheduled_handler_are_refused_changing_nothing(
    tmp_path: Path,
) -> None:
    root = write_project(tmp_path, "")
    with pytest.raises(ConfigError, match=r"wrangler.toml: triggers.crons: the worker has no"):
        Project.load(root)
    assert not (root / ".objectd").exists()  # no migration applied, no data folder made


def test_scheduled_without_a_handler_fails_as_workerd_says(tmp_path: Path) -> None:
    root = write_project(tmp_path, "", crons="[]")

    async def main() -> None:
        project = Project.load(root)
        try:
            with pytest.raises(TypeError, match=r"does not export a scheduled\(\) function"):
                await project.scheduled("* * * * *")
        finally:
            await project.close()

    asyncio.run(main())
