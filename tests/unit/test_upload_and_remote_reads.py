"""ReplicaManager + the tiering tasks over the filesystem store: uploads move
batches out of the WAL, reads come back through the block cache, a new data dir
rebuilds from the manifests, merging re-points the index, retention drops whole
entries."""
from __future__ import annotations

import asyncio

from kafka.record.default_records import DefaultRecordBatch
from test_partition import NoGroups, append, batch, create_topic, open_replicas  # same directory (rootdir-inserted)

from broker.config import BrokerConfig
from broker.log.partition import RemoteSegment
from broker.log.replica_manager import is_object_range
from broker.metrics import BrokerMetrics
from broker.tiering.metered_store import MeteredStore
from broker.tiering.tasks import Tiering
from objectstore import FilesystemObjectStore
from wal.log import is_location


async def open_broker(tmp_path, data: str = "data", **overrides):
    config = BrokerConfig.load(overrides=[f"{k}={v}" for k, v in overrides.items()])
    metrics = BrokerMetrics()
    store = MeteredStore(FilesystemObjectStore(str(tmp_path / "objects")), metrics)
    rm = await open_replicas(tmp_path, data, config, store, metrics)
    return rm, Tiering(rm, NoGroups(), metrics)


def values(chunks) -> list[bytes]:
    return [r.value for c in chunks for r in DefaultRecordBatch(bytes(c))]


async def produce(rm, topic: str, n_batches: int, per_batch: int = 3) -> list[bytes]:
    p = rm.get(topic, 0)
    sent = []
    for i in range(n_batches):
        buf = batch(per_batch, size=50 + i)
        sent += [r.value for r in DefaultRecordBatch(bytes(buf))]
        res = append(p, buf)
        await res.durable
    await asyncio.sleep(0)
    return sent


async def test_upload_then_read_back_from_objects_and_from_an_empty_data_dir(tmp_path):
    rm, tier = await open_broker(tmp_path)
    try:
        await create_topic(rm, "t", 1)
        sent = await produce(rm, "t", 20)
        assert await tier.upload.upload_once(force=True)
        p = rm.get("t", 0)
        locs = [e[4] for e in p.entries_from(0)]
        assert locs and all(is_object_range(loc) for loc in locs)
        assert rm.wal.size_bytes == 0                     # everything uploaded, WAL trimmed
        rm.tail_cache.discard_partition(p.key)            # force the object-store path
        # a paced answer: the first batch always, then no more object-store bytes than allowed
        full = await p.read(0, 10**9, min_one=True)
        assert values(full) == sent
        assert values(await p.read(0, 10**9, min_one=True, remote_max_bytes=0)) == sent[:3]
        two = await p.read(0, 10**9, min_one=True, remote_max_bytes=len(full[0]) + len(full[1]))
        assert values(two) == sent[:6]
        assert rm.block_cache.fetches >= 1
        # more data after the upload stays in the WAL until the next one
        more = await produce(rm, "t", 5)
        assert any(is_location(e[4]) for e in p.entries_from(0))
        assert values(await p.read(0, 10**9, min_one=True)) == sent + more
    finally:
        await tier.stop(5)
        await rm.close()

    # an empty data dir, the same objects: the manifest alone
    rm2, tier2 = await open_broker(tmp_path, data="data2")
    try:
        p2 = rm2.get("t", 0)
        assert (p2.log_start_offset, p2.high_watermark) == (0, 75)
        assert any(type(e[4]) is RemoteSegment for e in p2.entries_from(0))
        assert values(await p2.read(0, 10**9, min_one=True)) == sent + more
        assert all(is_object_range(e[4]) for e in p2.entries_from(0))  # expanded once
        assert values(await p2.read(31, 10**9, min_one=True))[0] == (sent + more)[30]
    finally:
        await rm2.close()


async def test_manifests_are_recorded_every_interval_and_the_wal_waits_for_them(tmp_path):
    rm, tier = await open_broker(tmp_path, **{"s3.manifest.interval.ms": 3_600_000})
    try:
        await create_topic(rm, "d", 1)
        p = rm.get("d", 0)
        sent = await produce(rm, "d", 4)
        assert await tier.upload.upload_once()             # the first upload records at once
        assert len(p.storage.manifest.segments) == 1 and rm.wal.size_bytes == 0
        puts = rm.metrics.store_requests.labels("put", "ok")._value.get()
        for _ in range(3):                                 # three more uploads, within the interval
            sent += await produce(rm, "d", 2)
            assert not await tier.upload.upload_once()
        # three data objects, no manifest write; the WAL keeps the bytes, reads still work
        assert rm.metrics.store_requests.labels("put", "ok")._value.get() == puts + 3
        assert len(p.storage.manifest.segments) == 1 and len(p.storage.unconfirmed) == 3
        assert rm.wal.size_bytes > 0
        assert values(await p.read(0, 10**9, min_one=True)) == sent
        # one manifest update records all three segments; then the WAL is trimmed
        assert await tier.upload.upload_once(force=True)
        assert len(p.storage.manifest.segments) == 4 and not p.storage.unconfirmed
        assert rm.wal.size_bytes == 0
        assert p.storage.manifest.next_offset == p.high_watermark
        rm.tail_cache.discard_partition(p.key)
        assert values(await p.read(0, 10**9, min_one=True)) == sent
    finally:
        await rm.close()

    # what the manifest recorded is all an empty data dir needs
    rm2, _ = await open_broker(tmp_path, data="data2")
    try:
        assert values(await rm2.get("d", 0).read(0, 10**9, min_one=True)) == sent
    finally:
        await rm2.close()


async def test_merge_repoints_the_index_and_reads_stay_identical(tmp_path):
    rm, tier = await open_broker(tmp_path, **{"s3.merge.target.bytes": 1 << 20,
                                            "s3.merge.max.segments": 3})
    try:
        await create_topic(rm, "c", 1)
        sent = []
        for _ in range(6):                                 # six uploads, six small segments
            sent += await produce(rm, "c", 4)
            assert await tier.upload.upload_once(force=True)
        p = rm.get("c", 0)
        assert len(p.storage.manifest.segments) == 6
        before = {e[4][0] for e in p.entries_from(0)}   # (object key, position, length)
        assert await tier.merge.merge() >= 1
        assert len(p.storage.manifest.segments) < 6
        after = {e[4][0] for e in p.entries_from(0)}
        assert after != before and after <= {s.object_key for s in p.storage.manifest.segments}
        rm.tail_cache.discard_partition(p.key)
        assert values(await p.read(0, 10**9, min_one=True)) == sent
    finally:
        await rm.close()


async def test_paced_merge_runs_beside_uploads_and_stops_with_the_tiering_tasks(tmp_path):
    """Merge I/O is paced (s3.merge.io.max.bytes.per.second), so a pass may
    take long: it runs as its own task, uploads go on meanwhile, and stopping
    the tiering tasks cancels a merge not yet swapped in (nothing changes)."""
    rm, tier = await open_broker(tmp_path, **{"s3.merge.target.bytes": 1 << 20,
                                            "s3.merge.max.segments": 3,
                                            "s3.merge.interval.ms": 0,
                                            "s3.merge.io.max.bytes.per.second": 50})
    try:
        await create_topic(rm, "c", 1)
        sent = []
        for _ in range(4):
            sent += await produce(rm, "c", 4)
            assert await tier.upload.upload_once(force=True)
        p = rm.get("c", 0)
        segments = p.storage.manifest.segments
        tier.merge.start()                           # waits for the next recording upload,
        await asyncio.sleep(0.05)                    # (after its interval of 0)
        assert await tier.upload.upload_once(force=True)   # then starts the pass, not waiting for it
        await asyncio.sleep(0)
        assert tier.merge._task is not None and not tier.merge._task.done()
        for _ in range(50):                          # its first read is taken, the rest wait
            if tier.merge.pacer.waited or tier.merge.pacer._next:
                break
            await asyncio.sleep(0.01)
        assert tier.merge.busy
        sent += await produce(rm, "c", 4)            # an upload while the merge is paced
        assert await asyncio.wait_for(tier.upload.upload_once(force=True), 10)
        assert len(p.storage.manifest.segments) == len(segments) + 1
        assert not tier.merge._task.done() and tier.merge.busy
        await asyncio.wait_for(tier.stop(10), 20)     # cancels the merge
        assert tier.merge._task.cancelled()
        assert p.storage.manifest.segments[:len(segments)] == segments
        rm.tail_cache.discard_partition(p.key)
        assert values(await p.read(0, 10**9, min_one=True)) == sent
    finally:
        await rm.close()


async def test_retention_bytes_advances_the_log_start_over_uploaded_data(tmp_path):
    rm, tier = await open_broker(tmp_path)
    try:
        # retention.ms off: the test batches carry 2023 timestamps, which 7 days would expire
        await create_topic(rm, "r", 1, {"retention.bytes": "600", "retention.ms": "-1"})
        await produce(rm, "r", 10)
        p = rm.get("r", 0)
        assert tier.retention.enforce() == 0               # nothing uploaded yet: nothing may go
        assert await tier.upload.upload_once(force=True)
        assert tier.retention.enforce() == 1
        await rm.wal.sync()
        assert p.log_start_offset > 0
        assert p.size_bytes >= 600                         # Kafka's rule: keep at least the bound
        assert await tier.upload.upload_once(force=True)
        assert p.storage.manifest.log_start_offset == p.log_start_offset
        first = values(await p.read(p.log_start_offset, 10**9, min_one=True))
        assert len(first) == 3 * 10 - p.log_start_offset
    finally:
        await rm.close()


async def test_index_locations_leave_the_garbage_collectors_tracked_set(tmp_path):
    """One location per batch, for as long as the data is retained: if the cyclic
    GC tracked them, every full collection (an event-loop stall) would grow with
    the log. WAL and object locations alike are plain tuples of str/int."""
    import gc

    rm, tier = await open_broker(tmp_path)
    try:
        await create_topic(rm, "g", 1)
        await produce(rm, "g", 10)
        assert await tier.upload.upload_once(force=True)
        await produce(rm, "g", 10)
        p = rm.get("g", 0)
        locs = [e[4] for e in p.entries_from(0)]
        assert any(is_object_range(loc) for loc in locs) and any(is_location(loc) for loc in locs)
        gc.collect()
        assert not any(gc.is_tracked(loc) for loc in locs)
        await p.read(0, 10**9, min_one=True)      # reading does not wrap them again
        gc.collect()
        assert not any(gc.is_tracked(e[4]) for e in p.entries_from(0))
    finally:
        await tier.stop(5)
        await rm.close()
