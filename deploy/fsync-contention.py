#!/usr/bin/env python3
"""How much do the object store's writes and deletes stall a WAL's fdatasync on this disk?

One thread acts like the WAL at ~75 MB/s: 300 KiB written and fdatasync'ed
every 4 ms, timing each fdatasync -- appended to a growing file, or (--wal
recycle) overwriting a file written before, as wal/log.py's recycled
segments do. Another acts like the object store: every --object-period
seconds (2) it writes an --object-mib (64) MiB file in 1 MiB sync_file_range
steps (as objectstore/filesystem.py does), fsyncs it, and deletes the
previous one -- with plain unlink, or (--delete steps) truncated 4 MiB at a
time 20 ms apart first (as wal/reclaim.py does). Prints fdatasync and write
p50/p99/p99.9/max in ms.

    .venv/bin/python deploy/fsync-contention.py --dir /path/on/the/disk --delete unlink
    .venv/bin/python deploy/fsync-contention.py --dir /path/on/the/disk --delete steps
    .venv/bin/python deploy/fsync-contention.py --dir D --delete steps --object-mib 8 \
        --object-period 0.11 --wal append|recycle      # uploads at 75 MB/s

Alternate the two a few times: shared machines are noisy.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import threading
import time

from wal.reclaim import reclaim_file

CHUNK, PERIOD, OBJECT, STEP = 300 << 10, 0.004, 64 << 20, 1 << 20


def wal_writer(path: str, mode: str, stop: threading.Event, out: list[float],
               writes: list[float]) -> None:
    """``append``: a growing file (each fdatasync commits the new size to the
    journal). ``recycle``: overwrite a file written before, wrapping around
    (no metadata for fdatasync to commit)."""
    buf = os.urandom(CHUNK)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    size = 64 << 20
    if mode == "recycle":
        for _ in range(size // CHUNK):
            os.write(fd, buf)
        os.fsync(fd)
    pos = 0
    try:
        while not stop.is_set():
            t0 = time.perf_counter()
            if mode == "recycle":
                if pos + CHUNK > size:
                    pos = 0
                os.pwrite(fd, buf, pos)
                pos += CHUNK
            else:
                os.write(fd, buf)
            t1 = time.perf_counter()
            os.fdatasync(fd)
            t2 = time.perf_counter()
            out.append((t2 - t1) * 1000)
            writes.append((t1 - t0) * 1000)
            time.sleep(max(0.0, PERIOD - (t2 - t0)))
    finally:
        os.close(fd)
        os.unlink(path)


def set_io_class(cls: str) -> None:
    """ioprio_set(2) for the calling thread: ``idle`` only gets the disk when
    nothing else wants it (honoured by mq-deadline and bfq, not by ``none``)."""
    if cls == "be":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    idle = 3 << 13                                    # IOPRIO_CLASS_IDLE, level 0
    if libc.syscall(251, 1, threading.get_native_id(), idle) != 0:   # x86_64 ioprio_set, IOPRIO_WHO_PROCESS
        raise OSError(ctypes.get_errno(), "ioprio_set")


def object_writer(directory: str, delete: str, size: int, period: float,
                  stop: threading.Event, sync: str = "fsync", io_class: str = "be") -> None:
    set_io_class(io_class)
    libc = ctypes.CDLL(None, use_errno=True)
    sfr = libc.sync_file_range
    sfr.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    block = os.urandom(STEP)
    previous = None
    n = 0
    while not stop.is_set():
        path = os.path.join(directory, f"object-{n}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        for i in range(size // STEP):
            os.write(fd, block)
            sfr(fd, i * STEP, STEP, 2)                   # start writeback
            if i:
                sfr(fd, (i - 1) * STEP, STEP, 1)         # wait for the step before
        sfr(fd, (size // STEP - 1) * STEP, STEP, 1)
        if sync == "fsync":
            os.fsync(fd)
        os.close(fd)
        if previous:
            if delete == "steps":
                reclaim_file(previous)
            else:
                os.unlink(previous)
        previous, n = path, n + 1
        stop.wait(period)
    if previous:
        os.unlink(previous)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", required=True, help="a directory on the disk to test")
    p.add_argument("--delete", choices=("unlink", "steps"), default="unlink")
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--wal", choices=("append", "recycle"), default="append",
                   help="append to a growing file, or overwrite a file written before")
    p.add_argument("--object-mib", type=int, default=OBJECT >> 20)
    p.add_argument("--object-period", type=float, default=2.0, help="seconds between objects")
    p.add_argument("--object-sync", choices=("fsync", "none"), default="fsync",
                   help="fsync each object, or only wait for its writeback (sync_file_range)")
    p.add_argument("--object-io-class", choices=("be", "idle"), default="be",
                   help="the object writer's I/O priority class (ioprio_set)")
    p.add_argument("--no-objects", action="store_true", help="the WAL alone: the disk's own floor")
    a = p.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    stop, lat, wlat = threading.Event(), [], []
    threads = [threading.Thread(target=wal_writer, args=(os.path.join(a.dir, "wal"), a.wal, stop, lat, wlat))]
    if not a.no_objects:
        threads.append(threading.Thread(target=object_writer,
                                        args=(a.dir, a.delete, a.object_mib << 20, a.object_period, stop,
                                              a.object_sync, a.object_io_class)))
    for t in threads:
        t.start()
    time.sleep(a.seconds)
    stop.set()
    for t in threads:
        t.join()

    def q(xs: list[float], f: float) -> float:
        return xs[min(len(xs) - 1, int(f * len(xs)))]
    for name, xs in (("fdatasync", sorted(lat)), ("write", sorted(wlat))):
        objects = "none" if a.no_objects else (f"{a.object_mib} MiB/{a.object_period}s "
                                               f"sync={a.object_sync} io={a.object_io_class}")
        print(f"wal={a.wal} delete={a.delete} objects={objects}: "
              f"{len(xs)} {name}s, p50 {q(xs, .5):.2f} p99 {q(xs, .99):.2f} "
              f"p99.9 {q(xs, .999):.2f} max {xs[-1]:.1f} ms")


if __name__ == "__main__":
    main()
