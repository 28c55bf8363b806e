#!/usr/bin/env python3
"""Disk flush cost of many dirty object files: one fdatasync each (4 threads) vs one syncfs.

Writes one small commit to each of N object files, then times making them durable
both ways (median of --rounds).  Real files in --dir (default: a temp folder under
/tmp, which should be on the disk the data lives on)::

    .venv/bin/python bench/syncing.py --files 1,4,16,64
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from objectd.storage.database import Backend, ObjectDatabase, internal_sql
from objectd.storage.syncing import filesystem_sync_available, sync_files


def _write(db: ObjectDatabase, value: bytes) -> None:
    db.begin_write()
    db.conn.execute(internal_sql("INSERT OR REPLACE INTO _cf_KV VALUES (?, ?)"), (b"k", value))
    db.commit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", default="1,2,4,16,64")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    counts = [int(n) for n in args.files.split(",")]
    if not filesystem_sync_available():
        print("syncfs(2) is not available here: objectd syncs every file on its own")
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        dbs = [
            ObjectDatabase(Path(folder) / f"{i}.sqlite", backend=Backend.KV)
            for i in range(max(counts))
        ]
        for db in dbs:
            _write(db, b"\x00")
            db.sync()
        pool = ThreadPoolExecutor(4)
        print(f"{'files':>5}  {'fdatasync x4 threads':>20}  {'sync_files':>10}")
        for n in counts:
            times: dict[str, list[float]] = {"threads": [], "group": []}
            for _ in range(args.rounds):
                for way in times:
                    for db in dbs[:n]:
                        _write(db, os.urandom(16))
                    start = time.perf_counter()
                    if way == "threads":
                        list(pool.map(lambda db: db.sync(), dbs[:n]))
                    else:
                        sync_files(dbs[:n])
                    times[way].append(time.perf_counter() - start)
            t, g = (statistics.median(times[w]) * 1000 for w in ("threads", "group"))
            print(f"{n:>5}  {t:>17.2f} ms  {g:>7.2f} ms")
        pool.shutdown()
        for db in dbs:
            db.close()


if __name__ == "__main__":
    main()
