#!/usr/bin/env python3
"""How much does a merge pass on the embedded (filesystem) store stall a WAL's fdatasync?

Writes --objects data objects the way the upload task does at 75 MB/s over 6
partitions (~8.6 MB each, one ~1.4 MB chunk per partition), then merges each
partition's run of segments with the broker's own ``merge_run`` (the
store drops written pages, so the merge reads from the disk), one partition
after another with a pause between, while a thread acts like the WAL: 300
KiB written over a recycled file and fdatasync'ed every 4 ms. Prints the
fdatasync p50/p99/max with no merge running and while one runs.

    .venv/bin/python deploy/merge-contention.py --dir /path/on/the/disk --io-rate 0    # unpaced
    .venv/bin/python deploy/merge-contention.py --dir /path/on/the/disk --io-rate 20   # MB/s, reads + write

Alternate the settings a few times: shared machines are noisy.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import struct
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import crc32c  # noqa: E402
from kafka.record.default_records import DefaultRecordBatchBuilder  # noqa: E402

from objectstore import merge  # noqa: E402
from objectstore.data_object import ObjectKeys, build_parts, partition_key  # noqa: E402
from objectstore.filesystem import FilesystemObjectStore  # noqa: E402
from objectstore.manifest import SegmentRef  # noqa: E402

CHUNK, PERIOD = 300 << 10, 0.004


def _batch_template(records: int = 60, size: int = 1024) -> bytes:
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False, producer_id=-1,
                                  producer_epoch=-1, base_sequence=-1, batch_size=1 << 30)
    value = os.urandom(size)
    for i in range(records):
        b.append(i, timestamp=int(time.time() * 1000), key=None, value=value, headers=[])
    return bytes(b.build())


def _wal(path: str, stop: threading.Event, merging: list[bool], idle: list[float], busy: list[float]) -> None:
    buf, size = os.urandom(CHUNK), 64 << 20
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for _ in range(size // CHUNK):
            os.write(fd, buf)
        os.fsync(fd)
        pos = 0
        while not stop.is_set():
            t0 = time.perf_counter()
            if pos + CHUNK > size:
                pos = 0
            os.pwrite(fd, buf, pos)
            pos += CHUNK
            os.fdatasync(fd)
            (busy if merging[0] else idle).append((time.perf_counter() - t0) * 1000)
            time.sleep(max(0.0, PERIOD - (time.perf_counter() - t0)))
    finally:
        os.close(fd)
        os.unlink(path)


async def _run(a: argparse.Namespace) -> None:
    root = Path(a.dir) / f"merge-contention-{uuid.uuid4().hex[:8]}"
    store = FilesystemObjectStore(str(root / "objects"))
    keys = ObjectKeys(1)
    topic = uuid.uuid4().bytes
    pkeys = [partition_key(topic, p) for p in range(a.partitions)]
    template = _batch_template()
    segments: dict[int, list[SegmentRef]] = {p: [] for p in range(a.partitions)}
    next_offset = [0] * a.partitions
    try:
        for _ in range(a.objects):
            chunks = {}
            for p in range(a.partitions):
                batches = []
                for _ in range(a.batches_per_chunk):
                    b = bytearray(template)
                    struct.pack_into(">q", b, 0, next_offset[p])
                    struct.pack_into(">I", b, 17, crc32c.crc32c(bytes(b[21:])))
                    next_offset[p] += 60
                    batches.append(bytes(b))
                chunks[pkeys[p]] = [b"".join(batches)]
            parts, refs = build_parts(chunks)
            key = keys.next()
            await store.put(key, parts)
            for ref in refs:
                segments[pkeys.index(ref.partition_key)].append(SegmentRef.from_chunk(key, ref))
        merge.READ_CONCURRENCY = a.read_concurrency
        pacer = merge.RatePacer(a.io_rate * 1e6) if a.io_rate > 0 else None
        stop, merging, idle, busy = threading.Event(), [False], [], []
        wal = threading.Thread(target=_wal, args=(str(root / "wal"), stop, merging, idle, busy))
        wal.start()
        await asyncio.sleep(2)
        took = []
        for p in range(a.partitions):
            merging[0] = True
            t = time.perf_counter()
            new = await merge.merge_run(store, keys, segments[p], pkeys[p], pacer=pacer)
            took.append(time.perf_counter() - t)
            merging[0] = False
            await asyncio.sleep(1)
        stop.set()
        wal.join()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def q(xs: list[float], f: float) -> float:
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(f * len(xs)))]
    rate = f"paced at {a.io_rate:g} MB/s (reads + write)" if a.io_rate > 0 else "unpaced"
    print(f"{rate}, {a.read_concurrency} reads at a time: {a.partitions} merges of {new.length / 1e6:.1f} MB, "
          f"{min(took) * 1000:.0f}-{max(took) * 1000:.0f} ms each")
    for name, xs in (("no merge running", idle), ("while merging", busy)):
        print(f"  WAL fdatasync, {name}: {len(xs)}, p50 {q(xs, .5):.2f} p99 {q(xs, .99):.2f} "
              f"max {max(xs):.1f} ms")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", required=True, help="a directory on the disk to test")
    p.add_argument("--io-rate", type=float, default=20.0,
                   help="MB/s of merge reads plus writes, as s3.merge.io.max.bytes.per.second "
                        "(0: unpaced)")
    p.add_argument("--read-concurrency", type=int, default=merge.READ_CONCURRENCY)
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--objects", type=int, default=32, help="segments per merge")
    p.add_argument("--batches-per-chunk", type=int, default=23, help="~62 KB batches per partition per object")
    asyncio.run(_run(p.parse_args()))


if __name__ == "__main__":
    main()
