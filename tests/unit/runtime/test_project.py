"""Loading a project: entrypoints, env, compatibility module, refusals (issue 2 §2, §8, §9)."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

import pytest

from objectd.errors import ConfigError, ObjectResetError
from objectd.fetch import Request
from objectd.runtime.project import Env, Project

WRANGLER = """
name = "app"
main = "worker.py"

[vars]
GREETING = "hello"

[[durable_objects.bindings]]
name = "THING"
class_name = "Thing"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Thing"]
"""


def write_project(tmp_path: Path, worker: str, wrangler: str = WRANGLER) -> Path:
    root = tmp_path / "app"
    root.mkdir(parents=True)
    (root / "wrangler.toml").write_text(wrangler)
    (root / "worker.py").write_text(textwrap.dedent(worker))
    (root / ".dev.vars").write_text('TOKEN="s3cret"\n')
    sys.modules.pop("worker", None)
    return root


def serve(root: Path, *paths: str) -> list[tuple[int, str]]:
    async def main() -> list[tuple[int, str]]:
        project = Project.load(root)
        try:
            out = []
            for path in paths:
                response = await project.fetch(Request(f"http://localhost{path}"))
                out.append((response.status, await response.text()))
            return out
        finally:
            await project.close()

    return asyncio.run(main())


def test_cloudflare_python_worker_runs_unchanged(tmp_path: Path) -> None:
    # Issue 2 §9: written exactly as a Cloudflare Python Worker (camelCase, `workers`).
    root = write_project(
        tmp_path,
        """
        from workers import DurableObject, Response, WorkerEntrypoint

        class Thing(DurableObject):
            def __init__(self, ctx, env):
                super().__init__(ctx, env)
                self.ready = False
                ctx.blockConcurrencyWhile(self.load)

            async def load(self):
                self.ready = True

            async def fetch(self, request):
                storage = self.ctx.storage
                await storage.put({"a": 1, "b": 2})
                listed = await storage.list({"prefix": "a"})
                rows = storage.sql.exec("SELECT 40 + ? AS v", 2).toArray()
                return Response(f"{self.ready} {dict(listed)} {rows[0]['v']} {self.ctx.id.name}")

            async def greet(self, who):
                return f"{self.env.GREETING}, {who}"

        class Default(WorkerEntrypoint):
            async def fetch(self, request):
                stub = self.env.THING.getByName("x")
                if request.url.endswith("/rpc"):
                    return Response(await stub.greet("you"))
                if request.url.endswith("/env"):
                    return Response(f"{self.env.GREETING} {self.env.TOKEN}")
                return await stub.fetch(request)
    """,
    )
    assert serve(root, "/", "/rpc", "/env") == [
        (200, "True {'a': 1} 42 x"),
        (200, "hello, you"),
        (200, "hello s3cret"),
    ]


def test_web_socket_pair_from_workers_and_camel_case_response(tmp_path: Path) -> None:
    # Issue 15 §5: `WebSocketPair` imported from `workers` (Cloudflare has it in `js`) and
    # the JavaScript init's `webSocket=` spelling, in a worker written the Cloudflare way.
    root = write_project(
        tmp_path,
        """
        from workers import DurableObject, Response, WebSocketPair, WorkerEntrypoint

        class Thing(DurableObject):
            async def fetch(self, request):
                client, server = WebSocketPair()
                self.ctx.acceptWebSocket(server, ["room"])
                return Response(None, status=101, webSocket=client)

            def sockets(self):
                return len(self.ctx.getWebSockets("room"))

        class Default(WorkerEntrypoint):
            async def fetch(self, request):
                stub = self.env.THING.getByName("x")
                if request.url.endswith("/count"):
                    return Response(str(await stub.sockets()))
                return await stub.fetch(request)
    """,
    )

    async def main() -> tuple[int, bool, str]:
        project = Project.load(root)
        try:
            upgrade = Request("http://localhost/ws", headers={"upgrade": "websocket"})
            response = await project.fetch(upgrade)
            count = await project.fetch(Request("http://localhost/count"))
            return response.status, response.web_socket is not None, await count.text()
        finally:
            await project.close()

    assert asyncio.run(main()) == (101, True, "1")


def test_module_level_on_fetch(tmp_path: Path) -> None:
    root = write_project(
        tmp_path,
        """
        from objectd import DurableObject, Response

        class Thing(DurableObject):
            def hi(self):
                return "hi"

        async def on_fetch(request, env, ctx):
            return Response(await env.THING.get_by_name("a").hi())
    """,
    )
    assert serve(root, "/") == [(200, "hi")]


def test_missing_entrypoint_and_unexported_class_are_refused(tmp_path: Path) -> None:
    root = write_project(
        tmp_path,
        """
        from objectd import DurableObject

        class Thing(DurableObject):
            pass
    """,
    )
    with pytest.raises(ConfigError, match="no entrypoint"):
        Project.load(root)
    other = write_project(
        tmp_path / "b",
        """
        from objectd import WorkerEntrypoint

        class Default(WorkerEntrypoint):
            pass
    """,
    )
    with pytest.raises(ConfigError, match="Thing"):
        Project.load(other)


def test_binding_to_another_script_is_refused(tmp_path: Path) -> None:
    root = write_project(
        tmp_path,
        """
        from objectd import DurableObject, WorkerEntrypoint

        class Thing(DurableObject):
            pass

        class Default(WorkerEntrypoint):
            pass
    """,
        WRANGLER.replace('class_name = "Thing"', 'class_name = "Thing"\nscript_name = "other"'),
    )
    with pytest.raises(ConfigError, match="script_name 'other' is another worker"):
        Project.load(root)


def test_env_is_read_only_and_explains_missing_names(tmp_path: Path) -> None:
    root = write_project(
        tmp_path,
        """
        from objectd import DurableObject, Response, WorkerEntrypoint

        class Thing(DurableObject):
            pass

        class Default(WorkerEntrypoint):
            async def fetch(self, request):
                try:
                    self.env.NOPE
                except AttributeError as exc:
                    return Response(str(exc))
                return Response("unreachable")
    """,
    )
    [(status, text)] = serve(root, "/")
    assert status == 200
    assert "no binding, var or secret named 'NOPE'" in text
    assert "THING" in text


def test_env_bindings_are_attributes_and_methods_stay_methods() -> None:
    env = Env({"COUNTER": 1, "get": "a var named get", "my-var": 2})
    assert env.COUNTER == 1 and env["my-var"] == 2
    assert env.get("COUNTER") == 1  # a binding named "get" does not hide the method
    assert env["get"] == "a var named get"
    with pytest.raises(AttributeError, match="no binding, var or secret named 'MISSING'"):
        env.MISSING  # noqa: B018
    with pytest.raises(AttributeError, match="read-only"):
        env.COUNTER = 2


def test_env_vars_named_like_internals_stay_items() -> None:
    env = Env({"_values": "a var", "A": 1})
    assert env["A"] == 1 and env["_values"] == "a var"  # the internal dict is untouched


@pytest.mark.parametrize(
    ("settings", "kept"),
    [
        ('compatibility_date = "2026-02-23"\n', True),
        ('compatibility_date = "2026-02-24"\n', False),
        ('compatibility_date = "2025-06-01"\n', True),
        ("", False),  # no date: today's behaviour, as wrangler uses today's date
        (
            'compatibility_date = "2025-06-01"\n'
            'compatibility_flags = ["delete_all_deletes_alarm"]\n',
            False,
        ),
        (
            'compatibility_date = "2026-11-01"\n'
            'compatibility_flags = ["delete_all_preserves_alarm"]\n',
            True,
        ),
    ],
)
def test_90_delete_all_and_the_alarm_follow_the_compatibility_date(
    tmp_path: Path, settings: str, kept: bool
) -> None:
    root = write_project(
        tmp_path,
        """
        from workers import DurableObject, Response, WorkerEntrypoint

        class Thing(DurableObject):
            async def fetch(self, request):
                await self.ctx.storage.put("k", 1)
                await self.ctx.storage.setAlarm(4102444800000)  # 2100-01-01
                await self.ctx.storage.deleteAll()
                alarm = await self.ctx.storage.getAlarm()
                return Response(f"{alarm} {await self.ctx.storage.get('k')}")

            async def alarm(self):
                pass

        class Default(WorkerEntrypoint):
            async def fetch(self, request):
                return await self.env.THING.getByName("x").fetch(request)
        """,
        wrangler=settings + WRANGLER,
    )
    assert serve(root, "/") == [(200, f"{4102444800000 if kept else None} None")]


def test_90_conflicting_delete_all_flags_are_refused(tmp_path: Path) -> None:
    root = write_project(
        tmp_path,
        """
        from workers import DurableObject

        class Thing(DurableObject):
            pass
        """,
        wrangler='compatibility_flags = ["delete_all_deletes_alarm", '
        '"delete_all_preserves_alarm"]\n' + WRANGLER,
    )
    with pytest.raises(ConfigError, match="delete_all_deletes_alarm.*delete_all_preserves_alarm"):
        Project.load(root)


def test_workers_forms_blobs_and_rpc_helpers_written_the_cloudflare_way(tmp_path: Path) -> None:
    # Issue 10 §4: what Python Workers code imports from `workers` besides the classes.
    root = write_project(
        tmp_path,
        """
        from workers import (
            Blob, DurableObject, File, FormData, Response, WorkerEntrypoint, handler,
            python_from_rpc, python_to_rpc,
        )

        class Thing(DurableObject):
            async def fetch(self, request):
                form = await request.form_data()
                upload = form["upload"]
                await self.ctx.storage.put("upload", [upload.name, await upload.text()])
                reply = FormData({"note": f"got {form['title']}"})
                reply.append("echo", Blob([await upload.bytes()], "text/plain"), "echo.txt")
                return Response(reply)

            async def describe(self, data):
                name, text = await self.ctx.storage.get("upload")
                return {"file": {"name": name, "text": text}, "sent": data}

        class Default(WorkerEntrypoint):
            @handler
            async def fetch(self, request):
                stub = self.env.THING.getByName("x")
                if request.url.endswith("/upload"):
                    form = FormData()
                    form["title"] = "notes"
                    form.append("upload", File(["hello"], "hello.txt", "text/plain"))
                    response = await stub.fetch("http://thing/", method="POST", body=form)
                    back = await response.form_data()
                    echo = back["echo"]
                    return Response(f"{back['note']} {echo.name} {await echo.text()}")
                try:
                    python_to_rpc({"bad": (1, 2)})
                except TypeError as exc:
                    refused = str(exc)
                result = python_from_rpc(await stub.describe(python_to_rpc({"n": [1, None]})))
                return Response(f"{result.file.name} {result.file.text} {result.sent.n} {refused}")
        """,
    )
    assert serve(root, "/upload", "/describe") == [
        (200, "got notes echo.txt hello"),
        (200, "hello.txt hello [1, None] <class 'tuple'> cannot be sent over RPC."),
    ]


def test_workers_rpc_helpers_refuse_what_cloudflare_refuses() -> None:
    from objectd.runtime import compat

    assert compat.python_to_rpc({"a": [1, {"b": None}]}) == {"a": [1, {"b": None}]}
    for bad, message in [
        ((1,), "<class 'tuple'> cannot be sent over RPC."),
        ([bytearray(b"x")], "<class 'bytearray'> cannot be sent over RPC."),
        ({"later": asyncio.sleep(0)}, "Awaitable <class 'coroutine'> cannot be sent over RPC."),
    ]:
        with pytest.raises(TypeError) as caught:
            compat.python_to_rpc(bad)
        assert str(caught.value) == message
        for value in (bad if isinstance(bad, dict) else {}).values():
            value.close()  # the coroutine, never awaited
    row = compat.python_from_rpc({"user": {"name": "ada"}, "tags": [{"t": 1}]})
    assert (
        row.user.name == "ada"
        and row.tags[0].t == 1
        and row
        == {
            "user": {"name": "ada"},
            "tags": [{"t": 1}],
        }
    )
    with pytest.raises(AttributeError):
        _ = row.missing
    assert compat.python_from_rpc(None) is None

    async def on_fetch(request: Request) -> str:
        return "ok"

    assert compat.handler(on_fetch) is on_fetch


def test_close_resets_an_object_still_at_work_after_the_grace(tmp_path: Path) -> None:
    """An object's event that never returns (nothing cancels it) held the shutdown up
    for ever: after ``grace_s`` the objects still at work are reset, their calls fail
    with the shutdown's reset error, and every file is closed."""
    root = write_project(
        tmp_path,
        """
        import asyncio
        from objectd import DurableObject

        class Thing(DurableObject):
            async def hang(self):
                await asyncio.Event().wait()

        def on_fetch(request):
            pass
        """,
    )

    async def main() -> None:
        project = Project.load(root, data_dir=tmp_path / "data")
        await project.start()
        call = project.env.THING.get_by_name("a").hang()
        await asyncio.sleep(0.05)  # it runs, and waits
        await asyncio.wait_for(project.close(grace_s=0.05), timeout=10)
        with pytest.raises(ObjectResetError, match="the server is shutting down"):
            await asyncio.wait_for(call, timeout=10)
        assert project.classes["Thing"].hosts == {}

    asyncio.run(main())
