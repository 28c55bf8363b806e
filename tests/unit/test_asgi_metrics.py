"""/__objectd/metrics in process (asgi/metrics.py, issue 14 §3): which apps count, each app its
own registry, every family served and listed in the README."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from objectd.asgi.app import ObjectdApp
from objectd.asgi.metrics import METRIC_NAMES
from objectd.runtime.committer import Durability
from objectd.runtime.metrics import NO_METRICS

Message = dict[str, Any]
TOKEN = "unit-metrics-token-0123456"
ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "examples" / "bench"


def _scope(path: str, method: str = "GET") -> Message:
    headers = [(b"host", b"example.com"), (b"authorization", f"Bearer {TOKEN}".encode())]
    return {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
    }


async def _call(app: ObjectdApp, path: str, method: str = "GET") -> tuple[int, bytes]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(_scope(path, method), receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def _samples(text: bytes) -> dict[str, float]:
    return {
        sample.name + str(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


def test_without_the_admin_surface_nothing_is_counted(tmp_path: Path) -> None:
    app = ObjectdApp(BENCH, data_dir=tmp_path, durability=Durability.PROCESS)
    assert app.metrics is None

    async def main() -> None:
        project = await app.startup()
        try:
            assert project.committer.metrics is NO_METRICS
        finally:
            await app.shutdown()

    asyncio.run(main())


def test_each_app_counts_its_own_requests_and_serves_every_family(tmp_path: Path) -> None:
    async def main() -> None:
        one = ObjectdApp(BENCH, data_dir=tmp_path / "1", admin_token=TOKEN)
        two = ObjectdApp(BENCH, data_dir=tmp_path / "2", admin_token=TOKEN)
        await one.startup()
        await two.startup()
        try:
            for _ in range(3):
                assert (await _call(one, "/counter/a/increment"))[0] == 200
            status, body = await _call(one, "/__objectd/metrics")
            assert status == 200
            families = {f.name for f in text_string_to_metric_families(body.decode())}
            assert families == set(METRIC_NAMES)
            samples = _samples(body)
            assert samples["objectd_http_requests_total[('status', '200')]"] == 3
            assert samples["objectd_events_total[('class', 'Counter')]"] == 3
            status, other = await _call(two, "/__objectd/metrics")
            assert status == 200
            assert "objectd_http_requests_total[('status', '200')]" not in _samples(other)
            assert _samples(other)["objectd_events_total[('class', 'Counter')]"] == 0
            assert await _call(one, "/__objectd/metrics", "POST") == (
                405,
                b"objectd admin: metrics are read with GET\n",
            )
        finally:
            await one.shutdown()
            await two.shutdown()

    asyncio.run(main())


def test_the_readme_lists_every_family() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in METRIC_NAMES:
        assert f"`{name}" in readme, name
