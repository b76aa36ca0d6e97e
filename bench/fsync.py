"""``sluice bench fsync``: write + fdatasync latency of the disk under a directory,
the floor under any acks=all latency."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import uuid
from array import array

from .common import MB, machine, percentiles


def add_parser(kinds) -> None:
    f = kinds.add_parser("fsync", help="raw write+fdatasync latency of the disk under a directory",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    f.add_argument("--dir", default=None, help="default: a temp dir")
    f.add_argument("--sizes", default="4096,65536,1048576", help="block sizes in bytes, comma-separated")
    f.add_argument("--count", type=int, default=300, help="writes per size")
    f.add_argument("--json", metavar="FILE")
    f.set_defaults(func=run_fsync)


def run_fsync(args) -> int:
    own = args.dir is None
    d = tempfile.mkdtemp(prefix="sluice-fsync-") if own else args.dir
    path = os.path.join(d, f"fsync-{uuid.uuid4().hex[:8]}.tmp")
    rows = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for size in (int(x) for x in args.sizes.split(",")):
            buf = os.urandom(size)
            lat = array("d")
            for _ in range(args.count):
                t = time.perf_counter()
                os.write(fd, buf)
                os.fdatasync(fd)
                lat.append(time.perf_counter() - t)
            p = percentiles(lat)
            rows.append({"block_bytes": size, "count": args.count, "latency_ms": p,
                         "mb_per_s_at_median": round(size / (p["p50"] / 1000) / MB, 1)})
            print(f"  {size:>9,} B write+fdatasync: p50 {p['p50']:.3f} ms  p99 {p['p99']:.3f} ms  "
                  f"max {p['max']:.3f} ms  ({rows[-1]['mb_per_s_at_median']} MB/s at p50)")
    finally:
        os.close(fd)
        os.unlink(path)
        if own:
            shutil.rmtree(d, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"bench": "fsync", "dir": d, "machine": machine(), "results": rows}, f, indent=2)
            f.write("\n")
    return 0
