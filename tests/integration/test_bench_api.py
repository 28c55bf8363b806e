"""examples/bench answers the routes of shared/bench/API.md exactly (a real server process)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import Server

TEXT = "text/plain;charset=UTF-8"
JSON = "application/json"


def check(response, status: int, body: str, content_type: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.text == body
    assert response.headers["content-type"] == content_type


def test_health_and_not_found(server: Server) -> None:
    with server.client() as http:
        check(http.get("/health"), 200, "ok", TEXT)
        for path in [
            "/nope/a/b",
            "/counter/a",
            "/counter//get",
            "/counter/a/",
            "/counter/a/get/x",
            "/health/x",
            "/",
            "/counter/a/unknown-op",
        ]:
            check(http.get(path), 404, "Not found", TEXT)


def test_throw_is_500_connection_close(server: Server) -> None:
    with server.client() as http:
        response = http.get("/throw")
        check(response, 500, "Internal Server Error", TEXT)
        assert response.headers["connection"] == "close"
    assert "intentional uncaught exception" in server.output  # the traceback is logged


def test_counter_routes(server: Server) -> None:
    with server.client() as http:
        check(http.get("/counter/c1/get"), 200, "0", TEXT)
        check(http.get("/counter/c1/increment"), 200, "1", TEXT)
        check(http.get("/counter/c1/increment"), 200, "2", TEXT)
        check(http.get("/counter/c1/decrement"), 200, "1", TEXT)
        check(http.get("/counter/c2/decrement"), 200, "-1", TEXT)
        check(http.get("/counter/c1/get"), 200, "1", TEXT)
        check(http.get("/counter/c1/sql-get"), 200, "0", TEXT)
        check(http.get("/counter/c1/sql-increment"), 200, "1", TEXT)
        check(http.get("/counter/c1/sql-increment"), 200, "2", TEXT)
        check(http.get("/counter/c1/sql-get"), 200, "2", TEXT)
        check(http.get("/counter/c1/get"), 200, "1", TEXT)  # separate counters


def test_counter_id_and_byid(server: Server) -> None:
    with server.client() as http:
        response = http.get("/counter/hello%20w%C3%B6rld/id")
        assert response.status_code == 200
        assert response.headers["content-type"] == JSON
        payload = response.json()
        assert payload["name"] == "hello wörld"
        object_id = payload["id"]
        assert len(object_id) == 64 and object_id == object_id.lower()
        assert response.text == json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        # checklist 1: the same name gives the same id
        assert http.get("/counter/hello%20w%C3%B6rld/id").json()["id"] == object_id
        check(http.get("/counter/hello%20w%C3%B6rld/increment"), 200, "1", TEXT)
        check(http.get(f"/byid/{object_id}/increment"), 200, "2", TEXT)
        check(http.get(f"/byid/{object_id.upper()}/get"), 200, "2", TEXT)
        check(http.get(f"/byid-raw/{object_id}/get"), 200, "2", TEXT)
        check(
            http.get("/byid/xyz/get"),
            400,
            '{"error":"TypeError","message":"Invalid Durable Object ID: must be 64 hex digits"}',
            JSON,
        )
        foreign = "0" * 64
        check(
            http.get(f"/byid/{foreign}/get"),
            400,
            '{"error":"TypeError","message":"Durable Object ID is not valid for this namespace."}',
            JSON,
        )
        check(http.get("/byid-raw/xyz/get"), 500, "Internal Server Error", TEXT)


def test_ids_survive_restart(server: Server) -> None:
    with server.client() as http:
        before = http.get("/counter/persist/id").json()["id"]
        check(http.get("/counter/persist/increment"), 200, "1", TEXT)
    assert server.stop() == 0
    server.start()
    with server.client() as http:
        assert http.get("/counter/persist/id").json()["id"] == before
        check(http.get("/counter/persist/get"), 200, "1", TEXT)
        check(http.get(f"/byid/{before}/get"), 200, "1", TEXT)


def test_kv_routes(server: Server) -> None:
    with server.client() as http:
        check(http.get("/kv/k1/put", params={"key": "b", "value": "2"}), 200, '{"ok":true}', JSON)
        check(http.get("/kv/k1/put", params={"key": "a", "value": "1"}), 200, '{"ok":true}', JSON)
        check(
            http.post("/kv/k1/put", params={"key": "é"}, content="body text"),
            200,
            '{"ok":true}',
            JSON,
        )
        check(
            http.get("/kv/k1/put", params={"value": "x"}),
            400,
            '{"error":"TypeError","message":"missing key"}',
            JSON,
        )
        check(
            http.get("/kv/k1/get", params={"key": "a"}),
            200,
            '{"key":"a","value":"1","found":true}',
            JSON,
        )
        check(
            http.get("/kv/k1/get", params={"key": "zz"}),
            200,
            '{"key":"zz","value":null,"found":false}',
            JSON,
        )
        check(
            http.get("/kv/k1/list"),
            200,
            '{"entries":[["a","1"],["b","2"],["é","body text"]]}',
            JSON,
        )
        check(
            http.get("/kv/k1/list", params={"reverse": "true", "limit": "2"}),
            200,
            '{"entries":[["é","body text"],["b","2"]]}',
            JSON,
        )
        check(
            http.get("/kv/k1/list", params={"startAfter": "a", "end": "é"}),
            200,
            '{"entries":[["b","2"]]}',
            JSON,
        )
        check(http.get("/kv/k1/list", params={"prefix": "b"}), 200, '{"entries":[["b","2"]]}', JSON)
        check(
            http.get("/kv/k1/list", params={"start": "b", "reverse": "1"}),
            200,
            '{"entries":[["é","body text"],["b","2"]]}',
            JSON,
        )
        check(
            http.get("/kv/k1/list", params={"limit": "0"}),
            500,
            '{"error":"TypeError","message":"List limit must be positive."}',
            JSON,
        )
        check(http.get("/kv/k1/delete", params={"key": "a"}), 200, '{"deleted":true}', JSON)
        check(http.get("/kv/k1/delete", params={"key": "a"}), 200, '{"deleted":false}', JSON)


def test_kv_txn(server: Server) -> None:
    with server.client() as http:
        check(http.get("/kv/t/txn"), 200, '{"a":1,"b":1}', JSON)
        check(http.get("/kv/t/txn", params={"a": "x", "b": "y"}), 200, '{"x":1,"y":1}', JSON)
        check(
            http.get("/kv/t/txn", params={"fail": "1"}),
            500,
            '{"error":"Error","message":"intentional failure inside transaction"}',
            JSON,
        )
        check(http.get("/kv/t/txn"), 200, '{"a":2,"b":2}', JSON)  # the failed one changed nothing
        check(
            http.get("/kv/t/get", params={"key": "a"}),
            200,
            '{"key":"a","value":2,"found":true}',
            JSON,
        )


def test_concurrent_increments_are_not_lost(server: Server) -> None:
    # The bench's concurrency contract: N concurrent increments return exactly 1..N.
    def increment(_: int) -> int:
        with server.client() as http:
            return int(http.get("/counter/hot/increment").text)

    with ThreadPoolExecutor(16) as pool:
        values = list(pool.map(increment, range(200)))
    assert sorted(values) == list(range(1, 201))


@pytest.mark.parametrize("project", ["counter"], indirect=True)
def test_counter_example_written_as_a_python_worker(server: Server) -> None:
    # checklist 161/162 and issue 2 §9: `from workers import ...`, camelCase, unchanged.
    with server.client() as http:
        check(http.get("/get"), 200, "0", TEXT)
        check(http.get("/increment"), 200, "1", TEXT)
        check(http.get("/increment"), 200, "2", TEXT)
        check(http.get("/decrement"), 200, "1", TEXT)
        check(http.get("/other"), 404, "Not found", TEXT)
    server.stop()
    server.start()
    with server.client() as http:
        check(http.get("/get"), 200, "1", TEXT)
