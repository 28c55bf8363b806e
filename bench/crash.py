"""kill -9 an objectd server many times under load; count acknowledged writes lost.

The long form of ``tests/integration/test_crash.py``.  It serves the ledger app
(``tests/integration/apps/ledger``) on a loopback port, lets client threads drive
``/inc`` and ``/multi`` across many objects, SIGKILLs the server 0.05-0.4 s after each
start, restarts it on the same data folder and checks every object against what the
clients saw acknowledged.  Prints one line of JSON; exits 1 if a write was lost or a
batch torn (details on stderr)::

    python bench/crash.py --kills 100 --clients 8 --objects 50 --seed 1
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

LEDGER_APP = Path(__file__).resolve().parents[1] / "tests" / "integration" / "apps" / "ledger"
READY = re.compile(r"objectd: serving \S+ on (http://\S+)")
BATCH_KEYS = 16  # keys per /multi batch, besides "gen"


@dataclass
class Acknowledged:
    """What the server acknowledged, per object; shared by the client threads."""

    values: dict[str, int] = field(default_factory=dict)  # highest acknowledged /inc
    gens: dict[str, int] = field(default_factory=dict)  # highest acknowledged /multi
    writes: int = 0
    unexpected: int = 0  # non-200 answers
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, op: str, name: str, number: int) -> None:
        with self.lock:
            self.writes += 1
            table = self.values if op == "inc" else self.gens
            table[name] = max(table.get(name, 0), number)


class Server:
    """One ``objectd serve`` process on 127.0.0.1; its output goes to a log file."""

    def __init__(self, data_dir: Path, log: Path, durability: str) -> None:
        self.data_dir = data_dir
        self.log = log
        self.durability = durability
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 30.0) -> None:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "objectd",
                    "serve",
                    str(LEDGER_APP),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--data-dir",
                    str(self.data_dir),
                    "--durability",
                    self.durability,
                    "--log-level",
                    "warning",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            match = READY.search(self.log.read_text(errors="replace"))
            if match:
                self.url = match.group(1)
                return
            time.sleep(0.01)
        self.kill()
        raise RuntimeError("objectd did not start:\n" + self.log.read_text(errors="replace"))

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(30)


def drive(
    url: str, names: list[str], acked: Acknowledged, stop: threading.Event, rng: random.Random
) -> None:
    """One client: /inc and /multi on random objects until stopped; at most 5,000 or 10 s."""
    deadline = time.monotonic() + 10.0
    with httpx.Client(base_url=url, timeout=10.0) as http:
        for _ in range(5_000):
            if stop.is_set() or time.monotonic() > deadline:
                return
            name = rng.choice(names)
            op = "multi" if rng.random() < 0.3 else "inc"
            params = {"n": str(BATCH_KEYS)} if op == "multi" else None
            try:
                response = http.get(f"/{op}/{name}", params=params)
            except httpx.TransportError:
                time.sleep(0.005)  # the server died: not acknowledged
                continue
            if response.status_code == 200:
                acked.record(op, name, int(response.text))
            else:
                with acked.lock:
                    acked.unexpected += 1
                print(f"/{op}/{name}: {response.status_code} {response.text}", file=sys.stderr)


@dataclass
class Findings:
    lost: int = 0
    torn: set[tuple[str, int | None]] = field(default_factory=set)


def verify(url: str, names: list[str], acked: Acknowledged, found: Findings) -> None:
    """Check every object; report each lost write or torn batch once, on stderr."""
    with httpx.Client(base_url=url, timeout=30.0) as http:
        for name in names:
            response = http.get(f"/check/{name}")
            response.raise_for_status()
            stored = response.json()
            value, gen, keys = stored["value"] or 0, stored["gen"], stored["keys"]
            for label, have, table in (
                ("value", value, acked.values),
                ("gen", gen or 0, acked.gens),
            ):
                if have < table.get(name, 0):
                    found.lost += 1
                    print(
                        f"lost: {name} {label} {have} < acknowledged {table[name]}", file=sys.stderr
                    )
                    table[name] = have  # count this loss once
            expected = {f"k{i}": gen for i in range(BATCH_KEYS)} if gen is not None else {}
            if keys != expected and (name, gen) not in found.torn:
                found.torn.add((name, gen))
                print(f"torn batch: {name} gen {gen}, keys {keys}", file=sys.stderr)


def run(args: argparse.Namespace, work: Path) -> dict[str, object]:
    rng = random.Random(args.seed)
    names = [f"o{i}" for i in range(args.objects)]
    server = Server(args.data_dir or work / "data", work / "objectd.log", args.durability)
    acked = Acknowledged()
    found = Findings()
    kills = 0
    started = time.monotonic()
    try:
        while True:
            server.start()
            verify(server.url, names, acked, found)
            if kills == args.kills:
                break
            stop = threading.Event()
            clients = [
                threading.Thread(
                    target=drive,
                    args=(server.url, names, acked, stop, random.Random(rng.getrandbits(64))),
                    daemon=True,
                )
                for _ in range(args.clients)
            ]
            for client in clients:
                client.start()
            time.sleep(rng.uniform(0.05, 0.4))
            server.kill()
            kills += 1
            stop.set()
            for client in clients:
                client.join(15)
        exit_code = server.stop()
    finally:
        server.kill()
    return {
        "kills": kills,
        "acknowledged_writes_checked": acked.writes,
        "lost": found.lost,
        "torn_batches": len(found.torn),
        "unexpected_responses": acked.unexpected,
        "final_exit_code": exit_code,
        "seconds": round(time.monotonic() - started, 1),
        "seed": args.seed,
        "clients": args.clients,
        "objects": args.objects,
        "durability": args.durability,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--objects", type=int, default=50)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one (printed)")
    parser.add_argument(
        "--data-dir", type=Path, help="the server's data folder, kept [default: a temporary one]"
    )
    parser.add_argument("--durability", choices=["fsync", "process"], default="fsync")
    args = parser.parse_args()
    if args.seed is None:
        args.seed = random.randrange(2**32)
    work = Path(tempfile.mkdtemp(prefix="objectd-crash-"))  # the server log; the data by default
    try:
        summary = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(summary))
    failed = summary["lost"] or summary["torn_batches"] or summary["unexpected_responses"]
    return 1 if failed or summary["final_exit_code"] != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
