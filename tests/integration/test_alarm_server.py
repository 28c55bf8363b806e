"""Alarms through the bench app's AlarmObject routes (shared/bench/API.md), on a real server.

Real time here: alarms are set a few hundred milliseconds ahead (checklist 114-129).
"""

from __future__ import annotations

import signal
import time

from conftest import Server, wait_until

JSON = "application/json"


def check(response, status: int, body: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.text == body
    assert response.headers["content-type"] == JSON


def count(http, name: str) -> int:  # type: ignore[no-untyped-def]
    return int(http.get(f"/alarm/{name}/count").json()["count"])


def test_alarm_routes(server: Server) -> None:
    with server.client() as http:
        check(http.get("/alarm/r/get"), 200, '{"scheduledTime":null}')
        check(http.get("/alarm/r/count"), 200, '{"count":0}')
        before = int(time.time() * 1000)  # the server floors to whole ms, as Date.now()
        response = http.get("/alarm/r/set", params={"ms": "60000"})
        when = response.json()["scheduledTime"]
        check(response, 200, f'{{"scheduledTime":{when}}}')
        assert isinstance(when, int) and before + 60_000 <= when <= time.time() * 1000 + 60_000
        check(http.get("/alarm/r/get"), 200, f'{{"scheduledTime":{when}}}')
        later = http.get("/alarm/r/set?ms=120000").json()["scheduledTime"]  # replaces (115)
        check(http.get("/alarm/r/get"), 200, f'{{"scheduledTime":{later}}}')
        check(http.get("/alarm/r/delete"), 200, '{"deleted":true}')
        check(http.get("/alarm/r/get"), 200, '{"scheduledTime":null}')
        check(http.get("/alarm/r/delete"), 200, '{"deleted":true}')  # no alarm: a no-op
        for junk in ("abc", "Infinity", "1_000", "NaN"):
            check(
                http.get("/alarm/r/set", params={"ms": junk}),
                400,
                '{"error":"TypeError","message":"ms must be a number"}',
            )
        check(http.get("/alarm/r/get"), 200, '{"scheduledTime":null}')
        assert http.get("/alarm/r/nope").status_code == 404
        assert http.get("/alarm//get").status_code == 404


def test_alarm_fires_once_not_before_its_time(server: Server) -> None:
    with server.client() as http:
        start = time.monotonic()
        when = http.get("/alarm/f/set?ms=400").json()["scheduledTime"]
        assert count(http, "f") == 0
        wait_until(lambda: count(http, "f") == 1)
        assert time.monotonic() - start >= 0.4  # 120: never before its time
        check(http.get("/alarm/f/get"), 200, '{"scheduledTime":null}')  # 123: cleared
        time.sleep(0.3)
        assert count(http, "f") == 1 and when > 0


def test_past_alarm_fires_promptly(server: Server) -> None:
    with server.client() as http:
        http.get("/alarm/p/set?ms=-5000")
        wait_until(lambda: count(http, "p") == 1, timeout=5)
        http.get("/alarm/p/set")  # no ms: Number("0") -> now
        wait_until(lambda: count(http, "p") == 2, timeout=5)


def test_deleted_alarm_does_not_fire(server: Server) -> None:
    with server.client() as http:
        http.get("/alarm/d/set?ms=200")
        http.get("/alarm/d/delete")
        time.sleep(0.6)
        assert count(http, "d") == 0


def test_129_alarms_set_before_sigkill_fire_after_restart(server: Server) -> None:
    with server.client() as http:
        http.get("/alarm/overdue/set?ms=300")  # due while the server is down
        pending = http.get("/alarm/pending/set?ms=5000").json()["scheduledTime"]
        http.get("/alarm/stale/set?ms=300")
        http.get("/alarm/stale/delete")
    server.kill()  # SIGKILL: no shutdown, nothing flushed on the way out
    time.sleep(0.4)
    server.start()
    with server.client() as http:
        wait_until(lambda: count(http, "overdue") == 1, timeout=10)  # late ones at once
        check(http.get("/alarm/pending/get"), 200, f'{{"scheduledTime":{pending}}}')
        assert count(http, "pending") == 0
        wait_until(lambda: count(http, "pending") == 1, timeout=15)
        assert time.time() * 1000 >= pending
        assert count(http, "stale") == 0


def test_alarms_survive_a_graceful_restart(server: Server) -> None:
    with server.client() as http:
        when = http.get("/alarm/g/set?ms=1500").json()["scheduledTime"]
    assert server.stop(signal.SIGTERM) == 0
    server.start()
    with server.client() as http:
        check(http.get("/alarm/g/get"), 200, f'{{"scheduledTime":{when}}}')
        wait_until(lambda: count(http, "g") == 1, timeout=15)
