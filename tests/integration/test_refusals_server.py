"""Issue 10 §2 against a real ``objectd serve``: async APIs refuse on await.

A bad argument to a stub call or a storage method fails only the awaitable it
returned: the good call gathered with it is delivered (and in call order), nothing of
the bad call is sent or written, and a refusal nobody awaited is logged once.
Checklist 25 (a value RPC cannot carry) and 50-62 (storage argument errors).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import Server

REFUSALS_APP = Path(__file__).resolve().parent / "apps" / "refusals"

pytestmark = pytest.mark.integration


def test_025_stub_gather_bad_then_good_delivers_the_good_call(tmp_path: Path) -> None:
    project = tmp_path / "refusals"
    shutil.copytree(REFUSALS_APP, project, ignore=shutil.ignore_patterns(".objectd"))
    server = Server(project, tmp_path / "data").start()
    try:
        with server.client() as http:
            answer = http.get("/gather/one")
            assert answer.status_code == 200, server.output
            body = answer.json()
            assert body["first"][1] == "b"
            assert body["first"][0]["error"] == "SerializationError"
            assert "Unstorable" in body["first"][0]["message"]
            assert body["second"]["error"] == "SerializationError"
            assert body["received"] == ["b", "c"]  # the refused calls never arrived

            stored = http.get("/storage/two")
            assert stored.status_code == 200, server.output
            bad, good = stored.json()
            assert bad["error"] == "SerializationError" and good is None
            assert http.get("/stored/two").json() == {"ok": 1}
        assert server.stop() == 0
        assert server.output.count("was refused and never awaited") == 1, server.output
        assert "objectd: storage.put() was refused and never awaited" in server.output
        assert "never retrieved" not in server.output  # no asyncio noise for the gathered ones

        server.start()  # what was committed is on disk: the good put, never the bad ones
        with server.client() as http:
            assert http.get("/stored/two").json() == {"ok": 1}
    finally:
        server.kill()
