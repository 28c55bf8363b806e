"""The counter through a real server and a real HTTP client: ``pytest tests``."""

from __future__ import annotations

import httpx


def test_the_counter_counts(server: str) -> None:
    with httpx.Client(base_url=server, timeout=10) as client:
        assert client.get("/get").text == "0"
        assert [client.post("/increment").text for _ in range(3)] == ["1", "2", "3"]
        assert client.post("/decrement").text == "2"
        assert client.get("/get").text == "2"
        assert client.get("/elsewhere").status_code == 404
