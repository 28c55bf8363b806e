"""Server memory per idle, hibernated WebSocket: one JSON line.

Starts ``objectd serve`` on a copy of ``examples/bench`` (127.0.0.1, a port of its own,
a short ``--idle-timeout``), opens ``--sockets`` WebSockets spread over ``--objects``
ChatRooms, waits until the rooms hibernate, and reports the server's resident memory
growth divided by the number of sockets.  It then checks that the sockets are still
open (``ping`` is answered ``pong`` by the runtime, without waking a room), closes
everything and stops the server.

    .venv/bin/python bench/ws_memory.py                 # 10,000 sockets over 100 rooms
    .venv/bin/python bench/ws_memory.py --sockets 2000  # a quicker look

Loopback only; bounded by ``--deadline`` seconds; the open-files soft limit is raised
to the hard limit (the server inherits it).  Needs about one client and one server file
descriptor per socket.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parents[1]
READY = re.compile(r"objectd: serving \S+ on (http://\S+)")


def raise_open_files(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < needed:
        sys.exit(f"ws_memory: the open-files hard limit is {hard}; {needed} are needed")
    return hard


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class ServerProcess:
    def __init__(self, project: Path, data_dir: Path, idle_timeout: float) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "objectd",
                "serve",
                str(project),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--data-dir",
                str(data_dir),
                "--idle-timeout",
                str(idle_timeout),
                "--log-level",
                "warning",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.url = ""
        self.lines: list[str] = []
        ready = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(ready,), daemon=True)
        self._reader.start()
        if not ready.wait(60) or not self.url:
            self.stop()
            raise RuntimeError("objectd did not start:\n" + "".join(self.lines))

    def _read(self, ready: threading.Event) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            match = READY.search(line)
            if match and not self.url:
                self.url = match.group(1)
                ready.set()
        ready.set()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(10)


async def open_sockets(
    base: str, sockets: int, objects: int, parallel: int
) -> list[ClientConnection]:
    ws_base = base.replace("http://", "ws://", 1)
    opened: list[ClientConnection] = []
    limit = asyncio.Semaphore(parallel)

    async def one(i: int) -> None:
        async with limit:
            # No client pings: idle means idle (the server's keepalive pings still run).
            ws = await connect(
                f"{ws_base}/room/mem-{i % objects}/websocket", ping_interval=None, open_timeout=60
            )
            opened.append(ws)

    await asyncio.gather(*(one(i) for i in range(sockets)))
    return opened


async def measure(args: argparse.Namespace, server: ServerProcess) -> dict[str, Any]:
    pid = server.proc.pid
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        # Warm up every code path (and the rooms' files) before the baseline.
        warm = await open_sockets(server.url, args.objects, args.objects, args.parallel)
        for ws in warm:
            await ws.send("ping")
            assert await ws.recv() == "pong"
            await ws.close()
        for i in range(args.objects):
            assert (await http.get(f"/room/mem-{i}/count")).json() == {"count": 0}
    await asyncio.sleep(args.idle_timeout + 2.0)
    baseline = rss_bytes(pid)
    started = time.perf_counter()
    sockets = await open_sockets(server.url, args.sockets, args.objects, args.parallel)
    connect_s = time.perf_counter() - started
    loaded = rss_bytes(pid)
    await asyncio.sleep(args.idle_timeout + 2.0)  # every room hibernates
    hibernated = rss_bytes(pid)
    sample = sockets[:: max(1, len(sockets) // 100)]
    for ws in sample:
        await ws.send("ping")
    answered = sum([await asyncio.wait_for(ws.recv(), 30) == "pong" for ws in sample])
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return {
        "bench": "ws_memory",
        "sockets": len(sockets),
        "objects": args.objects,
        "idle_timeout_s": args.idle_timeout,
        "rss_baseline_mb": round(baseline / 2**20, 1),
        "rss_open_mb": round(loaded / 2**20, 1),
        "rss_hibernated_mb": round(hibernated / 2**20, 1),
        "bytes_per_socket": round((hibernated - baseline) / len(sockets)),
        "bytes_per_socket_before_hibernation": round((loaded - baseline) / len(sockets)),
        "connect_per_s": round(len(sockets) / connect_s),
        "still_open": f"{answered}/{len(sample)}",
        "loadavg1": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=10_000)
    parser.add_argument("--objects", type=int, default=100)
    parser.add_argument("--idle-timeout", type=float, default=1.0)
    parser.add_argument("--parallel", type=int, default=200, help="connections being opened")
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds, in all")
    args = parser.parse_args()
    raise_open_files(args.sockets + args.objects + 200)
    with tempfile.TemporaryDirectory(prefix="objectd-ws-memory-") as tmp:
        project = Path(tmp) / "bench"
        shutil.copytree(ROOT / "examples" / "bench", project, ignore=shutil.ignore_patterns(".*"))
        server = ServerProcess(project, Path(tmp) / "data", args.idle_timeout)
        try:
            result = asyncio.run(asyncio.wait_for(measure(args, server), args.deadline))
        finally:
            server.stop()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
