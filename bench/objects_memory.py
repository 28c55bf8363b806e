#!/usr/bin/env python3
"""Resident memory of a real `objectd serve` after touching many objects (issue 3, issue 5).

Starts `objectd serve examples/bench` on a loopback port with a scratch data folder,
increments N distinct counters (one new object each) with C concurrent clients, then
reads the server's VmRSS/VmHWM from /proc: right after touching, and again after the
objects went idle and were evicted. Prints one JSON line. Bounded: N requests, then it
stops the server.

    .venv/bin/python bench/objects_memory.py --objects 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def memory_kb(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {k: int(re.search(rf"{k}:\s+(\d+)", status).group(1)) for k in ("VmRSS", "VmHWM")}  # type: ignore[union-attr]


async def touch(url: str, objects: int, clients: int) -> tuple[int, float]:
    errors = 0
    names = iter(range(objects))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:

        async def worker() -> None:
            nonlocal errors
            for i in names:
                r = await http.get(f"/counter/mem-{i}/increment")
                if r.status_code != 200 or r.text != "1":
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return errors, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--idle-wait", type=float, default=15.0, help="s to wait for eviction")
    parser.add_argument("--durability", default="fsync", choices=["fsync", "process"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "objectd",
                "serve",
                str(ROOT / "examples/bench"),
                "--port",
                "0",
                "--data-dir",
                data,
                "--log-level",
                "warning",
                "--durability",
                args.durability,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            url = ""
            assert proc.stdout is not None
            for line in proc.stdout:
                if m := re.search(r"serving \S+ on (http://\S+)", line):
                    url = m.group(1)
                    break
            if not url:
                raise SystemExit("objectd did not start")
            baseline = memory_kb(proc.pid)
            errors, seconds = asyncio.run(touch(url, args.objects, args.clients))
            touched = memory_kb(proc.pid)
            time.sleep(args.idle_wait)
            idle = memory_kb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
    print(
        json.dumps(
            {
                "bench": "objects_memory",
                "objects": args.objects,
                "clients": args.clients,
                "durability": args.durability,
                "errors": errors,
                "touch_seconds": round(seconds, 1),
                "objects_per_s": round(args.objects / seconds),
                "rss_mb_start": baseline["VmRSS"] // 1024,
                "rss_mb_after_touch": touched["VmRSS"] // 1024,
                "rss_mb_peak": touched["VmHWM"] // 1024,
                "rss_mb_after_idle": idle["VmRSS"] // 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
