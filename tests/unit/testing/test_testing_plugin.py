"""The pytest plugin in real pytest sessions (pytester): which project, which loop,
and that tests do not share storage."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

WRANGLER = """
name = "{name}"
main = "worker.py"
compatibility_date = "2026-11-01"

[vars]
WHICH = "{name}"

[[durable_objects.bindings]]
name = "COUNTER"
class_name = "Counter"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Counter"]
"""

WORKER = """
import asyncio

from objectd import DurableObject, Response, WorkerEntrypoint


class Counter(DurableObject):
    async def hang(self):
        await asyncio.Event().wait()

    async def bump(self):
        value = (await self.ctx.storage.get("n") or 0) + 1
        await self.ctx.storage.put("n", value)
        return value


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response(str(await self.env.COUNTER.get_by_name("x").bump()))
"""


def make_project(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "wrangler.toml").write_text(WRANGLER.format(name=name))
    (folder / "worker.py").write_text(WORKER)
    return folder


def run(pytester: pytest.Pytester, test: str, *, ini: str | None = None) -> pytest.RunResult:
    if ini is not None:
        pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(test_user=textwrap.dedent(test))
    # In process (fast): each session still loads the project afresh, on its own loop.
    return pytester.runpytest("-p", "no:cacheprovider", "-W", "error")


def test_the_ini_option_names_the_project_relative_to_the_ini_file(
    pytester: pytest.Pytester,
) -> None:
    make_project(pytester.path / "apps", "first")
    result = run(
        pytester,
        """
        def test_which(objectd_env):
            assert objectd_env.WHICH == "first"
        """,
        ini="objectd_project = apps/first",
    )
    result.assert_outcomes(passed=1)


def test_the_marker_wins_over_the_ini_option(pytester: pytest.Pytester) -> None:
    make_project(pytester.path / "apps", "first")
    make_project(pytester.path / "apps", "second")
    result = run(
        pytester,
        """
        import pytest

        def test_ini(objectd_env):
            assert objectd_env.WHICH == "first"

        @pytest.mark.objectd(project="apps/second")  # relative to this file
        def test_marker(objectd_env):
            assert objectd_env.WHICH == "second"
        """,
        ini="objectd_project = apps/first",
    )
    result.assert_outcomes(passed=2)


def test_without_a_project_the_error_says_how_to_name_one(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        def test_env(objectd_env):
            pass
        """,
    )
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*objectd_project = path/to/project*"])


def test_sync_and_async_tests_both_run_with_no_async_plugin(pytester: pytest.Pytester) -> None:
    make_project(pytester.path, "app")
    result = run(
        pytester,
        """
        import asyncio

        async def test_async(objectd_env, objectd_self):
            assert asyncio.get_running_loop() is not None
            assert await objectd_env.COUNTER.get_by_name("x").bump() == 1
            response = await objectd_self.fetch("https://example.com/")
            assert await response.text() == "2"

        def test_sync(objectd_env, objectd_run):
            assert objectd_run(objectd_env.COUNTER.get_by_name("x").bump) == 1

        async def test_async_failure_is_reported(objectd_env):
            assert await objectd_env.COUNTER.get_by_name("x").bump() == 99
        """,
        ini="objectd_project = app",
    )
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*assert 1 == 99*"])


def test_async_tests_that_do_not_use_the_kit_are_left_alone(pytester: pytest.Pytester) -> None:
    make_project(pytester.path, "app")
    result = run(
        pytester,
        """
        async def test_not_ours():
            pass
        """,
        ini="objectd_project = app",
    )
    # pytest's own answer to an async test no plugin handles: the kit did not claim it.
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*async def functions are not natively supported*"])


def test_a_marked_async_test_runs_on_the_kit_loop_without_fixtures(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
        import asyncio
        import pytest

        @pytest.mark.objectd
        async def test_marked():
            await asyncio.sleep(0)
        """,
    )
    result.assert_outcomes(passed=1)


def test_167_each_test_has_its_own_storage_in_any_order(pytester: pytest.Pytester) -> None:
    make_project(pytester.path, "app")
    test = """
        import pytest

        @pytest.mark.parametrize("run", range(4))
        async def test_fresh(objectd_env, tmp_path, run):
            assert await objectd_env.COUNTER.get_by_name("x").bump() == 1
            assert list(tmp_path.glob("objectd-data/app/Counter/*.sqlite"))
        """
    result = run(pytester, test, ini="objectd_project = app")
    result.assert_outcomes(passed=4)
    reverse = pytester.runpytest(
        "-p", "no:cacheprovider", "test_user.py::test_fresh[3]", "test_user.py::test_fresh[0]"
    )
    reverse.assert_outcomes(passed=2)


def test_167_parallel_workers_do_not_share_storage(pytester: pytest.Pytester) -> None:
    """pytest-xdist: two worker processes, every test counting on the same object."""
    make_project(pytester.path, "app")
    pytester.makeini("[pytest]\nobjectd_project = app\n")
    pytester.makepyfile(
        test_user="""
        import pytest

        @pytest.mark.parametrize("run", range(6))
        async def test_alone(objectd_env, tmp_path, run):
            stub = objectd_env.COUNTER.get_by_name("x")
            for expected in range(1, 21):
                assert await stub.bump() == expected
            assert list(tmp_path.glob("objectd-data/app/Counter/*.sqlite"))
        """
    )
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*2 workers*"])


def test_a_call_left_hanging_does_not_hang_the_teardown(pytester: pytest.Pytester) -> None:
    make_project(pytester.path, "app")
    result = run(
        pytester,
        """
        import asyncio

        async def test_leaves_a_call_behind(objectd_env):
            call = asyncio.ensure_future(objectd_env.COUNTER.get_by_name("x").hang())
            await asyncio.sleep(0)
            assert not call.done()

        async def test_next(objectd_env):
            assert await objectd_env.COUNTER.get_by_name("x").bump() == 1
        """,
        ini="objectd_project = app\ntimeout = 20",
    )
    result.assert_outcomes(passed=2)


def test_167_sibling_modules_are_fresh_in_each_test_and_each_project(
    pytester: pytest.Pytester,
) -> None:
    """The worker's ``import helper`` imports the project's own helper.py again for each
    test: module state does not leak from one test to the next, and a second project
    with a helper.py of its own gets that one, not the first project's."""
    for name in ("first", "second"):
        folder = make_project(pytester.path, name)
        (folder / "helper.py").write_text(f"WHO = {name!r}\nCALLS = []\n")
        with (folder / "worker.py").open("a") as worker:
            worker.write(
                "\nimport helper\n\ndef on_fetch(request):\n"
                "    helper.CALLS.append(1)\n"
                "    return Response(f'{helper.WHO} {len(helper.CALLS)}')\n"
            )
            worker.write("\ndel Default\n")
    test = """
        import pytest

        @pytest.mark.parametrize("project", ["first", "first", "second", "first"])
        def test_helper(project, request):
            request.applymarker(pytest.mark.objectd(project=project))
            run = request.getfixturevalue("objectd_run")
            client = request.getfixturevalue("objectd_self")
            response = run(client.fetch, "https://x/")
            assert run(response.text()) == f"{project} 1"
        """
    result = run(pytester, test)
    result.assert_outcomes(passed=4)


HANGING = """
import asyncio

from objectd import Response, WorkerEntrypoint


async def stubborn():
    while True:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass  # swallowed: the kit must abandon it, not wait for it


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        if request.url.endswith("/stubborn"):
            self.ctx.wait_until(stubborn())
        else:
            self.ctx.wait_until(asyncio.Event().wait())
        return Response("ok")

    async def scheduled(self, controller, env, ctx):
        await asyncio.Event().wait()
"""


def test_teardown_cancels_hanging_scheduled_runs_and_wait_until_tasks_at_once(
    pytester: pytest.Pytester,
) -> None:
    """A test that leaves a scheduled() run and a wait_until() task hanging ends at once:
    the kit's teardown cancels them rather than giving them a grace period in real time
    (10 s, past this session's 5 s timeout); one that swallows its cancellation is
    abandoned after a bounded wait (under the 20 s timeout)."""
    folder = pytester.path / "app"
    folder.mkdir()
    (folder / "wrangler.toml").write_text(
        'name = "app"\nmain = "worker.py"\ncompatibility_date = "2026-11-01"\n'
        '[triggers]\ncrons = ["* * * * *"]\n'
    )
    (folder / "worker.py").write_text(HANGING)
    pytester.makepyfile(
        test_user="""
        async def test_leaves_work_hanging(objectd_self, objectd_clock):
            assert await (await objectd_self.fetch("https://x/")).text() == "ok"
            await objectd_clock.advance(60)  # a scheduled() run starts, and hangs
        """,
        test_stubborn="""
        async def test_leaves_stubborn_work(objectd_self):
            assert await (await objectd_self.fetch("https://x/stubborn")).text() == "ok"
        """,
    )
    args = ["-p", "no:cacheprovider", "-W", "error", "-o", "objectd_project=app"]
    pytester.runpytest(*args, "-o", "timeout=5", "test_user.py").assert_outcomes(passed=1)
    result = pytester.runpytest(*args, "-o", "timeout=20", "test_stubborn.py")
    result.assert_outcomes(passed=1)


def test_objectd_run_in_an_async_test_says_to_await_instead(pytester: pytest.Pytester) -> None:
    make_project(pytester.path, "app")
    result = run(
        pytester,
        """
        import asyncio

        import pytest

        async def test_async(objectd_env, objectd_run):
            stub = objectd_env.COUNTER.get_by_name("x")
            with pytest.raises(RuntimeError, match="in an async test, await the call directly"):
                objectd_run(stub.bump)
            with pytest.raises(RuntimeError, match="in an async test, await the call directly"):
                objectd_run(asyncio.sleep(0))  # closed, so no "never awaited" warning
            assert await stub.bump() == 1  # the refused call did not run
        """,
        ini="objectd_project = app",
    )
    result.assert_outcomes(passed=1)
