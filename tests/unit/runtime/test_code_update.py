"""Project.retire: what a code update does to calls into objects (checklist 152)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from objectd.errors import DurableObjectError, ObjectResetError
from objectd.runtime.project import Project

WRANGLER = """
name = "app"
main = "worker.py"

[[durable_objects.bindings]]
name = "THING"
class_name = "Thing"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Thing"]
"""
WORKER = """
import asyncio

from workers import DurableObject, WorkerEntrypoint

STARTED = asyncio.Event()


class Thing(DurableObject):
    async def slow(self):
        await self.ctx.storage.put("in-flight", True)
        STARTED.set()
        await asyncio.sleep(3600)

    async def quick(self):
        return "quick"


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        raise AssertionError("not used")
"""
MESSAGE = "Durable Object reset because its code was updated."


def test_152_retire_fails_in_flight_queued_and_later_calls(tmp_path: Path) -> None:
    root = tmp_path / "app"
    root.mkdir()
    (root / "wrangler.toml").write_text(WRANGLER)
    (root / "worker.py").write_text(WORKER)
    sys.modules.pop("worker", None)

    async def main() -> None:
        project = Project.load(root)
        await project.start()
        try:
            stub = project.env.THING.get_by_name("a")
            other = project.env.THING.get_by_name("b")
            in_flight = asyncio.ensure_future(stub.slow())
            await asyncio.wait_for(project.module.STARTED.wait(), timeout=10)
            queued = asyncio.ensure_future(stub.quick())  # submitted, not started yet
            project.retire(ObjectResetError(MESSAGE, retryable=True))
            # In flight, queued, a later call, and a call to an object not live before.
            for call in (in_flight, queued, stub.quick(), other.quick()):
                with pytest.raises(DurableObjectError) as info:
                    await asyncio.wait_for(call, timeout=10)
                assert str(info.value) == MESSAGE
                assert info.value.retryable and info.value.durable_object_reset
        finally:
            await project.close()

    asyncio.run(main())
