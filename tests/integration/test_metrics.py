"""/__objectd/metrics on a real ``objectd serve --admin-token`` (issue 14 §3).

The traffic is chosen so that every count it implies is exact: one live object at most
(``--max-live-objects 1``), so touching another object evicts the idle one at once and a
hibernatable socket's object is evicted deterministically; sequential requests, so each
write is one commit and one sync.  Scrapes are admin requests and are not counted.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from conftest import Server, wait_until
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

pytestmark = pytest.mark.integration

TOKEN = "metrics-admin-token-0123456789"
_WORKER = """\
from urllib.parse import urlsplit

from workers import DurableObject, Response, WorkerEntrypoint


class Counter(DurableObject):
    async def fetch(self, request):
        value = (await self.ctx.storage.get("n") or 0) + 1
        await self.ctx.storage.put("n", value)
        return Response(str(value))


class Room(DurableObject):
    async def fetch(self, request):
        from workers import WebSocketPair

        client, server = WebSocketPair.new().object_values()
        self.ctx.accept_web_socket(server)
        return Response(None, status=101, web_socket=client)

    async def web_socket_message(self, ws, message):
        ws.send("echo " + message)


class Alarmer(DurableObject):
    async def fetch(self, request):
        mode = urlsplit(request.url).path.rsplit("/", 1)[1]
        await self.ctx.storage.put("mode", mode)
        await self.ctx.storage.set_alarm(1)  # long past: due at once
        return Response("set")

    async def alarm(self):
        mode = await self.ctx.storage.get("mode")
        if mode == "abandon":
            self.ctx.abort("give up", {"retryAlarm": False})
        attempts = (await self.ctx.storage.get("attempts") or 0) + 1
        await self.ctx.storage.put("attempts", attempts)
        if attempts == 1:
            raise RuntimeError("first attempt fails")


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = urlsplit(request.url).path
        if path == "/count":
            return await self.env.COUNTER.get_by_name("c").fetch(request)
        if path == "/room":
            return await self.env.ROOM.get_by_name("r").fetch(request)
        if path.startswith("/alarm/"):
            name = path.rsplit("/", 1)[1]
            return await self.env.ALARMER.get_by_name(name).fetch(request)
        return Response("no such route", status=404)
"""
_CONFIG = """\
name = "metered"
main = "worker.py"

[[durable_objects.bindings]]
name = "COUNTER"
class_name = "Counter"

[[durable_objects.bindings]]
name = "ROOM"
class_name = "Room"

[[durable_objects.bindings]]
name = "ALARMER"
class_name = "Alarmer"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Counter", "Room", "Alarmer"]
"""


@pytest.fixture
def metered(tmp_path: Path) -> Path:
    project = tmp_path / "metered"
    project.mkdir()
    (project / "wrangler.toml").write_text(_CONFIG)
    (project / "worker.py").write_text(_WORKER)
    return project


def scrape(http: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /__objectd/metrics: (sample name, sorted labels) -> value."""
    answer = http.get("/__objectd/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_metrics_count_what_the_traffic_did(metered: Path, tmp_path: Path) -> None:
    server = Server(
        metered, tmp_path / "data", "--admin-token", TOKEN, "--max-live-objects", "1"
    ).start()
    try:
        with server.client() as http:
            assert http.get("/__objectd/metrics").status_code == 401  # the admin rule holds
            before = scrape(http)
            assert value(before, "objectd_live_objects") == 0
            assert value(before, "objectd_commits_total") == 0
            assert value(before, "objectd_events_total", **{"class": "Counter"}) == 0

            ws_url = server.url.replace("http://", "ws://") + "/room"
            with connect(ws_url, open_timeout=10) as ws:
                ws.send("hi")
                assert ws.recv(timeout=10) == "echo hi"
                for expected in range(1, 6):  # evicts the Room: one live object at most
                    assert http.get("/count").text == str(expected)
                assert http.get("/nowhere").status_code == 404
                now = scrape(http)
                assert value(now, "objectd_http_requests_total", status="200") == 5
                assert value(now, "objectd_http_requests_total", status="404") == 1
                assert value(now, "objectd_http_request_duration_seconds_count") == 6
                assert value(now, "objectd_websockets_open") == 1
                assert value(now, "objectd_websockets_accepted_total") == 1
                # the upgrade's fetch and one message; five increments
                assert value(now, "objectd_events_total", **{"class": "Room"}) == 2
                assert value(now, "objectd_events_total", **{"class": "Counter"}) == 5
                assert value(now, "objectd_activations_total", **{"class": "Room"}) == 1
                assert value(now, "objectd_activations_total", **{"class": "Counter"}) == 1
                assert value(now, "objectd_live_objects") == 1
                assert value(now, "objectd_evictions_total") == 1
                assert value(now, "objectd_websockets_hibernated", **{"class": "Room"}) == 1
                # each increment: one commit, one inline sync, one result held for it
                assert value(now, "objectd_commits_total") == 5
                assert value(now, "objectd_commit_duration_seconds_count") == 5
                assert value(now, "objectd_syncs_total") == 5
                assert value(now, "objectd_sync_duration_seconds_count") == 5
                assert value(now, "objectd_output_gate_waits_total", **{"class": "Counter"}) == 5
                assert value(now, "objectd_output_gate_waits_total", **{"class": "Room"}) == 0
                assert value(now, "objectd_queue_overloads_total", **{"class": "Counter"}) == 0
                # a message wakes the hibernated Room (and evicts the Counter)
                ws.send("again")
                assert ws.recv(timeout=10) == "echo again"
                woken = scrape(http)
                assert value(woken, "objectd_activations_total", **{"class": "Room"}) == 2
                assert value(woken, "objectd_websockets_hibernated", **{"class": "Room"}) == 0
                assert value(woken, "objectd_evictions_total") == 2
            wait_until(lambda: value(scrape(http), "objectd_websockets_open") == 0)

            # One alarm fails once and is retried (about 2 s later); one aborts without retry.
            assert http.get("/alarm/retry").text == "set", server.output
            assert http.get("/alarm/abandon").text == "set"

            def alarms_done() -> bool:
                samples = scrape(http)
                return (
                    value(samples, "objectd_alarms_fired_total") == 1
                    and value(samples, "objectd_alarms_abandoned_total") == 1
                )

            wait_until(alarms_done, timeout=30)
            done = scrape(http)
            assert value(done, "objectd_alarms_retried_total") == 1
            resets = {k[1]: v for k, v in done.items() if k[0] == "objectd_resets_total"}
            assert resets == {(("cause", "abort"), ("class", "Alarmer")): 1}
    finally:
        server.kill()


def test_serve_without_a_token_has_no_metrics_path(metered: Path, tmp_path: Path) -> None:
    server = Server(metered, tmp_path / "data").start()
    try:
        with server.client() as http:  # no admin surface: the Worker answers the path
            assert http.get("/__objectd/metrics").status_code == 404
    finally:
        server.kill()


def test_dev_serves_metrics_without_a_token(metered: Path, tmp_path: Path) -> None:
    server = Server(metered, tmp_path / "data", mode="dev").start()
    try:
        with server.client() as http:
            assert http.get("/count").text == "1"
            answer = http.get("/__objectd/metrics")
            assert answer.status_code == 200
            samples = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(answer.text)
                for s in family.samples
            }
            assert value(samples, "objectd_http_requests_total", status="200") == 1
            assert value(samples, "objectd_commits_total") == 1
    finally:
        server.kill()
