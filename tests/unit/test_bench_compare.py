"""bench/compare without the shared harness next to the clone: it says what it needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

COMPARE = Path(__file__).resolve().parents[2] / "bench" / "compare"


def test_missing_harness_names_shared_and_what_it_must_contain(tmp_path: Path) -> None:
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "bench.py").write_text("")  # a partial copy
    done = subprocess.run(
        [sys.executable, str(COMPARE), "--shared", str(tmp_path), "--scratch", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    first, *rest = done.stderr.splitlines()
    assert first == (
        f"compare: no benchmark harness in {tmp_path}; missing bench/requirements.txt, "
        "bench/workerd/package.json, bench/workerd/start.sh, bench/workerd/stop.sh"
    )
    text = "\n".join(rest)
    assert "--shared DIR" in text
    for needed in ("bench/bench.py", "bench/requirements.txt", "bench/workerd/", "start.sh"):
        assert needed in text
    assert not (tmp_path / "s").exists()  # nothing was set up
