"""An error inside an object is logged with the user's lines, not objectd's (issue 15 §1).

Real servers run ``apps/faulty``: objects that raise in a helper under ``fetch``, in an
RPC method, in a constructor, from inside another object and in ``alarm()``.  The log
must show the line that raised (inside the object) and the line that awaited it (the
Worker's, or the first object's), with objectd's own frames folded away unless
``--log-level debug``; ``objectd dev`` answers the 500 with the same report, ``serve``
never does.
"""

from __future__ import annotations

import re
import shutil
import signal
from pathlib import Path

import pytest
from conftest import Server, wait_until

FAULTY_APP = Path(__file__).resolve().parent / "apps" / "faulty"
INTERNAL = re.compile(r'File "[^"]*/objectd/(runtime|asgi)/[a-z_]+\.py"')


@pytest.fixture
def app(tmp_path: Path) -> Path:
    target = tmp_path / "faulty"
    shutil.copytree(FAULTY_APP, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def where(app: Path, marker: str) -> str:
    """``File "<worker.py>", line N`` of the line that ends with ``# marker``."""
    worker = app / "worker.py"
    for number, text in enumerate(worker.read_text().splitlines(), 1):
        if text.endswith(f"# {marker}"):
            return f'File "{worker}", line {number}'
    raise AssertionError(f"no line marked {marker}")


def report_after(output: str, start: int) -> str:
    """The report logged for the 500 that followed ``start`` (an offset in the log)."""
    logged = output[start:]
    begin = logged.index("uncaught exception in the worker")
    end = logged.find("\nINFO", begin)
    return logged[begin:] if end < 0 else logged[begin:end]


def test_the_log_shows_the_raise_and_the_await_and_hides_objectd(app: Path, tmp_path: Path) -> None:
    server = Server(app, tmp_path / "data").start()
    try:
        with server.client() as http:
            cases = {
                "fetch": ("RAISE-RATIO", "AWAIT-FETCH"),
                "rpc": ("RAISE-RATIO", "AWAIT-RPC"),
                "ctor": ("RAISE-CTOR", "AWAIT-CTOR"),
                "nested": ("RAISE-CTOR", "AWAIT-IN-THING", "AWAIT-NESTED"),
            }
            for path, markers in cases.items():
                start = len(server.output)
                response = http.get(f"/{path}")
                assert response.status_code == 500
                assert response.text == "Internal Server Error"  # serve: never the report
                wait_until(lambda start=start: "uncaught" in server.output[start:])
                report = report_after(server.output, start)
                positions = [report.index(where(app, marker)) for marker in reversed(markers)]
                assert positions == sorted(positions), report  # awaits above, the raise last
                assert "objectd frames hidden (--log-level debug shows them)" in report
                assert not INTERNAL.search(report), report
            # The caller still gets the builtin type, flagged remote.
            assert http.get("/caught").text == "ZeroDivisionError remote=True"
    finally:
        server.kill()


def test_alarm_failures_show_the_alarm_handler(app: Path, tmp_path: Path) -> None:
    server = Server(app, tmp_path / "data").start()
    try:
        with server.client() as http:
            assert http.get("/alarm").text == "armed"
        wait_until(lambda: "retry 1 of 6" in server.output, timeout=20)
        logged = server.output[server.output.index("retry 1 of 6") :]
        assert 'inside Durable Object Thing "x"' in logged
        assert logged.index("in alarm") < logged.index(where(app, "RAISE-RATIO"))
        assert not INTERNAL.search(logged.split("ZeroDivisionError: division by zero")[0])
    finally:
        server.kill()


def test_debug_shows_objectd_frames(app: Path, tmp_path: Path) -> None:
    server = Server(app, tmp_path / "data", "--log-level", "debug").start()
    try:
        with server.client() as http:
            assert http.get("/fetch").status_code == 500
        wait_until(lambda: "uncaught" in server.output)
        report = report_after(server.output, 0)
        assert where(app, "RAISE-RATIO") in report and where(app, "AWAIT-FETCH") in report
        assert INTERNAL.search(report), report
        assert "hidden" not in report
    finally:
        server.kill()


def test_dev_answers_500_with_the_report(app: Path, tmp_path: Path) -> None:
    server = Server(app, tmp_path / "data", mode="dev").start()
    try:
        with server.client() as http:
            response = http.get("/rpc")
        assert response.status_code == 500
        assert response.headers["content-type"].startswith("text/plain")
        body = response.text
        assert body.startswith("Internal Server Error\n\nTraceback (most recent call last):")
        assert body.index(where(app, "AWAIT-RPC")) < body.index(where(app, "RAISE-RATIO"))
        assert body.rstrip().endswith("ZeroDivisionError: division by zero")
        assert not INTERNAL.search(body), body
        # The same report is in the log.
        wait_until(lambda: "uncaught" in server.output)
        assert where(app, "RAISE-RATIO") in report_after(server.output, 0)
    finally:
        stop_dev(server)


def stop_dev(server: Server) -> None:
    """Stop the reloader with Ctrl-C, so it stops its serving process (a kill would not)."""
    try:
        server.stop(signal.SIGINT, timeout=20)
    finally:
        server.kill()
