"""The tiering tasks' own rules, over the filesystem store: the WAL is trimmed
per partition (a stuck partition pins only its own stretch, a fenced one
nothing), and garbage collection takes its references from every manifest
in the bucket."""
from __future__ import annotations

import os
import time
import uuid

from test_partition import NoGroups, append, batch, create_topic, open_replicas  # same directory (rootdir-inserted)

from broker.config import BrokerConfig
from broker.metrics import BrokerMetrics
from broker.tiering.metered_store import MeteredStore
from broker.tiering.tasks import Tiering
from objectstore import (
    FilesystemObjectStore,
    ManifestStore,
    MemoryObjectStore,
    ObjectInfo,
    SegmentRef,
    StoreUnavailable,
    append_segments,
)
from objectstore import data_object as do
from objectstore.manifest import manifest_key
from wal.log import is_location, segment_path


class FlakyStore(FilesystemObjectStore):
    """A filesystem store whose PUTs to the keys in ``down`` fail (StoreUnavailable)."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.down: set[str] = set()

    async def put(self, key, data, **kw):
        if key in self.down:
            raise StoreUnavailable(f"{key}: down (test)")
        return await super().put(key, data, **kw)


async def open_broker(tmp_path, **overrides):
    config = BrokerConfig.load(overrides=[f"{k}={v}" for k, v in overrides.items()])
    metrics = BrokerMetrics()
    raw = FlakyStore(str(tmp_path / "objects"))
    rm = await open_replicas(tmp_path, "data", config, MeteredStore(raw, metrics), metrics)
    return rm, Tiering(rm, NoGroups(), metrics), raw


async def produce(rm, topic: str, n: int = 3) -> list:
    """n batches appended and durable; returns their WAL locations."""
    p = rm.get(topic, 0)
    locs = []
    for i in range(n):
        res = append(p, batch(3, size=40 + i))
        await res.durable
        locs.append(next(p.entries_from(res.base_offset))[4])
    assert all(is_location(loc) for loc in locs)
    return locs


def wal_has(rm, segment: int) -> bool:
    return os.path.exists(segment_path(rm.wal.directory, segment))


async def test_a_fenced_partition_with_unuploaded_data_does_not_pin_the_wal(tmp_path):
    rm, tier, _ = await open_broker(tmp_path)
    try:
        await create_topic(rm, "moved", 1)
        await create_topic(rm, "stays", 1)
        moved, stays = rm.get("moved", 0), rm.get("stays", 0)
        await produce(rm, "moved")
        await produce(rm, "stays")
        assert await tier.upload.upload_once(force=True)
        assert rm.wal.size_bytes == 0
        # another broker claims "moved" (epoch + 1): this one is fenced at its next manifest update
        await ManifestStore(rm.store).claim(moved.topic_id, 0, broker_id=2)
        await produce(rm, "moved")
        await produce(rm, "stays")
        assert await tier.upload.upload_once(force=True)
        assert moved.storage.fenced and moved.storage.offline and moved.storage.unconfirmed
        assert moved.storage.wal_pin(moved) is None
        assert rm.wal.size_bytes == 0           # its uploaded-but-unrecorded batches do not hold the WAL
        # it keeps data that was never uploaded (appended after the fence), interleaved with
        # the others' in every segment: the others' uploads still empty the WAL each time
        for _ in range(3):
            locs = await produce(rm, "moved", 2) + await produce(rm, "stays", 2)
            assert await tier.upload.upload_once(force=True)
            assert rm.wal.size_bytes == 0 and not any(wal_has(rm, loc[0]) for loc in locs)
        assert stays.storage.manifest.next_offset == stays.log_end_offset == (3 + 3 + 3 * 2) * 3
    finally:
        await tier.stop(5)
        await rm.close()


async def test_a_failing_manifest_update_pins_only_from_its_own_oldest_segment(tmp_path):
    rm, tier, store = await open_broker(tmp_path)
    try:
        await create_topic(rm, "stuck", 1)
        await create_topic(rm, "fine", 1)
        stuck, fine = rm.get("stuck", 0), rm.get("fine", 0)
        await produce(rm, "stuck", 1)
        await produce(rm, "fine", 1)
        assert await tier.upload.upload_once(force=True)           # both manifests exist, WAL empty
        store.down.add(manifest_key(stuck.topic_id, 0))
        older = await produce(rm, "fine")                           # only "fine" writes this segment
        rm.wal.cut()
        mine = await produce(rm, "stuck") + await produce(rm, "fine")
        assert older[0][0] < mine[0][0]
        assert not await tier.upload.upload_once(force=True)       # "stuck"'s manifest update fails
        assert stuck.storage.unconfirmed and not fine.storage.unconfirmed
        assert stuck.storage.wal_pin(stuck) == mine[0][0]
        assert not wal_has(rm, older[0][0])                         # below its pin: trimmed
        assert wal_has(rm, mine[0][0])                              # its own segment stays
        for _ in range(3):                                          # "fine" goes on; later segments
            later = await produce(rm, "fine")                       # above the pin are kept as well
            assert not await tier.upload.upload_once(force=True)
            assert wal_has(rm, mine[0][0]) and wal_has(rm, later[0][0])
        assert fine.storage.manifest.next_offset == fine.log_end_offset
        store.down.clear()                                          # the store takes it again
        assert await tier.upload.upload_once(force=True)
        assert rm.wal.size_bytes == 0 and not wal_has(rm, mine[0][0])
        assert stuck.storage.manifest.next_offset == stuck.log_end_offset
    finally:
        await tier.stop(5)
        await rm.close()


async def test_an_unrecorded_log_start_pins_its_segment(tmp_path):
    rm, tier, store = await open_broker(tmp_path)
    try:
        await create_topic(rm, "d", 1)
        p = rm.get("d", 0)
        await produce(rm, "d")
        assert await tier.upload.upload_once(force=True)
        store.down.add(manifest_key(p.topic_id, 0))
        await rm.delete_records(p, 3)
        (offset, segment), = p.storage.log_start_pins
        assert offset == 3 and p.storage.wal_pin(p) == segment
        assert not await tier.upload.upload_once(force=True)
        assert wal_has(rm, segment)
        store.down.clear()
        assert await tier.upload.upload_once(force=True)
        assert p.storage.manifest.log_start_offset == 3 and not p.storage.log_start_pins
        assert rm.wal.size_bytes == 0
    finally:
        await tier.stop(5)
        await rm.close()


async def test_gc_keeps_objects_that_manifests_of_other_owners_reference(tmp_path):
    """GC reads every manifest in the bucket: an object of broker 1 referenced
    only by a partition broker 1 does not own (it moved away; or broker 1 was
    fenced) is not deleted; an object nothing references is."""
    rm, tier, _ = await open_broker(tmp_path, **{"s3.gc.grace.ms": 1000})
    later = 3 * 10**9                                               # ns: past the 1 s grace
    try:
        # a partition that moved to broker 2; its segments are still in broker 1's object
        ms = ManifestStore(rm.store)
        topic = uuid.uuid4().bytes
        epoch = await ms.claim(topic, 0, broker_id=2)
        body, (ref,) = do.build({do.partition_key(topic, 0): [bytes(batch(3))]})
        moved_key = tier.upload.keys.next()
        await rm.store.put(moved_key, body)
        await ms.update(topic, 0, append_segments([SegmentRef.from_chunk(moved_key, ref)]), epoch=epoch)
        # one of this broker's partitions, then claimed by broker 2: fenced here
        await create_topic(rm, "fenced", 1)
        p = rm.get("fenced", 0)
        await produce(rm, "fenced")
        assert await tier.upload.upload_once(force=True)
        (fenced_key,) = {s.object_key for s in p.storage.manifest.segments}
        await ms.claim(p.topic_id, 0, broker_id=2)
        await produce(rm, "fenced")
        await tier.upload.upload_once(force=True)
        assert p.storage.fenced
        # and an object nobody references
        orphan = tier.upload.keys.next()
        await rm.store.put(orphan, b"garbage")

        now = time.time_ns() + later
        assert await tier.gc.collect(now_ns=now) == []             # first seen unreferenced
        assert await tier.gc.collect(now_ns=now + later) == [orphan]
        listed = set(await rm.store.list("data/1/"))
        assert {moved_key, fenced_key} <= listed and orphan not in listed
        # once no manifest references the moved partition's object, it goes too
        await rm.store.delete(manifest_key(topic, 0))
        assert await tier.gc.collect(now_ns=now + 2 * later) == []
        assert moved_key in await tier.gc.collect(now_ns=now + 3 * later)
    finally:
        await tier.stop(5)
        await rm.close()


async def test_metered_list_info_counts_one_list():
    """list_info is metered as the one listing it is, not as a list and a head per key."""
    metrics = BrokerMetrics()
    inner = MemoryObjectStore()
    store = MeteredStore(inner, metrics)
    etag = await inner.put("cluster/brokers/1.json", b"{}")
    await inner.put("cluster/brokers/2.json", b"{ }")
    assert (await store.list_info("cluster/brokers/"))[0] == ObjectInfo("cluster/brokers/1.json", 2, etag)
    assert metrics.store_requests.labels("list", "ok")._value.get() == 1
    assert metrics.store_requests.labels("head", "ok")._value.get() == 0
