#!/usr/bin/env python3
"""How much a broker's retained log adds to a full (gen 2) garbage collection.

A full collection stops the event loop for as long as it walks every object
the cyclic collector tracks. This builds a real ReplicaManager (filesystem
object store, temp dir), appends N record batches over P partitions, uploads
them (the index then points into data objects) and keeps a tail cache of the
last ones, then reports the tracked objects that the batches left behind and
the time of a full collection (median of 5), against the same process before
the batches.

    .venv/bin/python deploy/gc-pause.py --batches 200000 --partitions 6
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _batch(n_records: int, size: int) -> bytearray:
    from kafka.record.default_records import DefaultRecordBatchBuilder
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                  producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    for i in range(n_records):
        b.append(i, timestamp=1_700_000_000_000 + i, key=None, value=b"v" * size, headers=[])
    return bytearray(b.build())


def _full_collection_ms() -> float:
    times = []
    for _ in range(5):
        t = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


async def main(args) -> None:
    from broker.clock import ManualClock
    from broker.cluster import Cluster
    from broker.config import BrokerConfig
    from broker.log.records import parse_batches
    from broker.log.replica_manager import ReplicaManager
    from broker.metrics import BrokerMetrics
    from broker.tiering.upload import UploadTask
    from objectstore import FilesystemObjectStore

    class NoGroups:
        """No consumer groups: nothing to replay or snapshot."""
        def replay(self, key, data):
            pass

        dirty: dict[int, int] = {}

        async def flush(self):
            return True

    tmp = Path(tempfile.mkdtemp(prefix="sluice-gc-"))
    config = BrokerConfig.load(overrides=[f"cache.tail.bytes={args.tail_cache_mib << 20}"])
    metrics = BrokerMetrics()
    store = FilesystemObjectStore(str(tmp / "objects"))
    cluster = Cluster(config, store, host="127.0.0.1", port=9092, clock=ManualClock())
    rm = ReplicaManager(config, str(tmp / "data"), store, metrics=metrics, metadata=cluster.metadata)
    await cluster.start(rm.apply_delta)
    await rm.start(NoGroups())
    up = UploadTask(rm, NoGroups(), metrics)
    await cluster.create_topic("gc", args.partitions)
    await rm.claims_settled()
    template = _batch(args.records_per_batch, args.record_bytes)
    gc.collect()
    gc.freeze()                                   # as `sluice serve` does after start-up
    before_ms = _full_collection_ms()
    before = Counter(type(o).__name__ for o in gc.get_objects())
    done, per_round = 0, max(1, args.batches // 20)
    while done < args.batches:
        futs = []
        for _ in range(min(per_round, args.batches - done)):
            p = rm.get("gc", done % args.partitions)
            buf = bytearray(template)
            futs.append(p.append(buf, parse_batches(buf)).durable)
            done += 1
        await asyncio.gather(*futs)
        await up.upload_once(force=True)          # the index now points into data objects
        print(f"\r{done:,}/{args.batches:,} batches appended and uploaded", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    after_ms = _full_collection_ms()
    grown = Counter(type(o).__name__ for o in gc.get_objects()) - before
    print(f"batches {args.batches:,} over {args.partitions} partitions, tail cache {args.tail_cache_mib} MiB "
          f"({rm.tail_cache.size_bytes >> 20} MiB held)")
    print(f"tracked objects added: {sum(grown.values()):,}  top: {grown.most_common(4)}")
    print(f"full collection: {before_ms:.1f} ms before, {after_ms:.1f} ms after the batches (median of 5)")
    await up.stop(5)
    await rm.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, default=200_000)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--records-per-batch", type=int, default=4)
    ap.add_argument("--record-bytes", type=int, default=100)
    ap.add_argument("--tail-cache-mib", type=int, default=256)
    asyncio.run(main(ap.parse_args()))
