"""Partition manifests and the conditional-update loop (objectstore/manifest.py), on the
filesystem backend and on a real MinIO. No mocks: races are real concurrent
tasks, and a "competing broker" is a real synchronous write to the same store
(``rival_put``) made from inside an update function, between its read and its put.
"""
from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import replace

import pytest
from kafka.record.default_records import DefaultRecordBatchBuilder

from objectstore import (
    CLUSTER_METADATA_KEY,
    CorruptObject,
    Fenced,
    FilesystemObjectStore,
    InvalidManifest,
    Manifest,
    ManifestStore,
    NotFound,
    ObjectStore,
    PreconditionFailed,
    SegmentRef,
    append_segments,
    conditional_update,
    manifest_key,
)
from objectstore import data_object as do
from objectstore.manifest import json_decoder, json_encode
from objectstore.s3 import S3ObjectStore

TOPIC = uuid.UUID("6f1c0de0-0000-4000-8000-00000000abcd").bytes
PREFIX = "cluster-1"


@pytest.fixture(params=["filesystem", pytest.param("s3", marks=pytest.mark.minio)])
async def env(request, tmp_path):
    """(store, rival_put): rival_put(key, data) writes synchronously, as another
    process would, through its own client."""
    if request.param == "filesystem":
        s: ObjectStore = FilesystemObjectStore(tmp_path / "objects")
        rival_store = FilesystemObjectStore(tmp_path / "objects")

        def rival_put(key: str, data: bytes) -> None:
            rival_store._put_sync(key, data, None, False)
    else:
        minio = request.getfixturevalue("minio")
        bucket = request.getfixturevalue("minio_bucket")
        s = S3ObjectStore(bucket, PREFIX, endpoint_url=minio.endpoint,
                          aws_access_key_id=minio.access_key,
                          aws_secret_access_key=minio.secret_key)
        client = minio.client()

        def rival_put(key: str, data: bytes) -> None:
            client.put_object(Bucket=bucket, Key=f"{PREFIX}/{key}", Body=data)
    yield s, rival_put
    await s.close()


def batches_for(first: int, sizes: list[int]) -> list[bytes]:
    """Real magic-2 batches with offsets first, first + sizes[0], ... (baseOffset patched)."""
    out = []
    for n in sizes:
        b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                      producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                      batch_size=1 << 20)
        for i in range(n):
            b.append(i, timestamp=1_700_000_000_000 + first + i, key=None, value=b"v", headers=[])
        buf = b.build()
        buf[0:8] = first.to_bytes(8, "big")
        out.append(bytes(buf))
        first += n
    return out


def seg(first: int, last: int, obj: str = "data/1/x.sldo", position: int = 0) -> SegmentRef:
    return SegmentRef(obj, position, 100 * (last - first + 1), first, last, 1_700_000_000_000 + last,
                      (first * 7919 + last) & 0xFFFFFFFF)


async def stored_bytes(store: ObjectStore, partition: int = 0) -> tuple[bytes, str]:
    return await store.get_with_etag(manifest_key(TOPIC, partition))


# -- create, load, update ------------------------------------------------------------


async def test_claim_creates_then_bumps_the_epoch(env):
    store, _ = env
    ms = ManifestStore(store)
    assert await ms.load(TOPIC, 0) == (None, None)
    assert await ms.claim(TOPIC, 0, broker_id=5) == 1
    m, etag = await ms.load(TOPIC, 0)
    assert m == Manifest(TOPIC, 0, epoch=1, owner=5, leader_epochs=((1, 0),)) and etag   # epoch 1 from 0
    assert (m.log_start_offset, m.next_offset, m.segments, m.producer_state) == (0, 0, (), {})
    assert await store.list("manifests/") == [f"manifests/{TOPIC.hex()}/0.json"]

    assert await ms.claim(TOPIC, 0, broker_id=6) == 2
    with pytest.raises(Fenced, match="stored epoch is 2"):
        await ms.claim(TOPIC, 0, broker_id=7, if_epoch=1)          # someone else moved first
    assert await ms.claim(TOPIC, 0, broker_id=7, if_epoch=2) == 3
    with pytest.raises(Fenced):
        await ms.claim(TOPIC, 1, broker_id=7, if_epoch=3)          # absent = epoch 0
    assert await ms.claim(TOPIC, 1, broker_id=7, if_epoch=0) == 1
    assert (await ms.load(TOPIC, 0))[0].owner == 7


async def test_update_records_an_upload(env):
    store, _ = env
    ms = ManifestStore(store)
    epoch = await ms.claim(TOPIC, 3, broker_id=1)
    # a real upload: one data object holding partitions 3 and 4
    body, refs = do.build([(do.partition_key(TOPIC, 3), batches_for(0, [5, 5])),
                           (do.partition_key(TOPIC, 4), batches_for(0, [1]))])
    key = do.ObjectKeys(1).next()
    await store.put(key, body)
    segs = [SegmentRef.from_chunk(key, refs[0])]
    pstate = {"producers": {"1000": {"epoch": 0, "seqs": [[0, 4, 0], [5, 9, 5]]}}}
    m = await ms.update(TOPIC, 3, append_segments(segs, producer_state=pstate), epoch=epoch)
    assert (m.next_offset, m.segments, m.producer_state) == (10, tuple(segs), pstate)
    loaded, etag = await ms.load(TOPIC, 3)
    assert loaded == m

    raw = json.loads((await stored_bytes(store, 3))[0])
    assert raw["format"] == "sluice.manifest" and raw["version"] == 1
    assert raw["topic_id"] == TOPIC.hex() and raw["segments"][0]["object"] == key
    assert raw["segments"][0]["crc32c"] == refs[0].crc

    # the manifest leads a reader to the bytes
    s = m.segment_for(7)
    chunk = await do.read_chunk(store, s.object_key, s)
    assert do.find_batch(chunk, 7).base_offset == 5

    # the same change again (a retry after a lost answer) is a no-op: no write
    again = await ms.update(TOPIC, 3, append_segments(segs, producer_state=pstate), epoch=epoch)
    assert again == m and (await ms.load(TOPIC, 3))[1] == etag

    # more uploads, then retention drops the first segment
    m = await ms.update(TOPIC, 3, append_segments([seg(10, 19), seg(20, 24)]), epoch=epoch)
    assert m.next_offset == 25 and m.producer_state == pstate         # kept when not given
    assert [m.segment_for(o).first_offset for o in (0, 9, 10, 19, 20, 24)] == [0, 0, 10, 10, 20, 20]
    assert m.segment_for(25) is None
    m = await ms.update(TOPIC, 3, lambda m: m.with_log_start(12), epoch=epoch)
    assert m.log_start_offset == 12 and [s.first_offset for s in m.segments] == [10, 20]
    assert m.segment_for(11) is None and m.segment_for(12).first_offset == 10
    assert (await ms.load(TOPIC, 3))[0] == m


async def test_update_without_a_manifest_creates_nothing(env):
    store, _ = env
    ms = ManifestStore(store)
    with pytest.raises(NotFound, match="claim the partition first"):
        await ms.update(TOPIC, 0, append_segments([seg(0, 9)]), epoch=1)
    assert await store.list("") == []


# -- concurrency -------------------------------------------------------------------------


async def test_concurrent_updaters_all_land(env):
    store, _ = env
    ms = ManifestStore(store)
    epoch = await ms.claim(TOPIC, 0, broker_id=1)
    calls = []

    async def append(i: int) -> None:
        def fn(m: Manifest) -> Manifest:
            calls.append(i)
            return m.appended([seg(m.next_offset, m.next_offset + 9, f"data/1/task-{i}.sldo")])
        await ms.update(TOPIC, 0, fn, epoch=epoch)

    await asyncio.gather(*(append(i) for i in range(10)))
    m, _ = await ms.load(TOPIC, 0)
    assert m.next_offset == 100 and len(m.segments) == 10
    assert [(s.first_offset, s.last_offset) for s in m.segments] == [(i * 10, i * 10 + 9) for i in range(10)]
    assert sorted(s.object_key for s in m.segments) == sorted(f"data/1/task-{i}.sldo" for i in range(10))
    assert len(calls) >= 10         # losers re-read and re-applied


async def test_cluster_metadata_document_uses_the_same_loop(env):
    """Producer-id blocks handed out by concurrent brokers never overlap."""
    store, _ = env
    decode = json_decoder(CLUSTER_METADATA_KEY)

    async def reserve_block() -> int:
        got = []

        def fn(doc):
            doc = doc or {"topics": {}, "next_producer_id": 0}
            got.append(doc["next_producer_id"])
            return {**doc, "next_producer_id": doc["next_producer_id"] + 1000}
        await conditional_update(store, CLUSTER_METADATA_KEY, fn, decode, json_encode)
        return got[-1]

    starts = await asyncio.gather(*(reserve_block() for _ in range(10)))
    assert sorted(starts) == list(range(0, 10_000, 1000))
    doc, etag = await conditional_update(store, CLUSTER_METADATA_KEY, lambda d: d, decode, json_encode)
    assert doc == {"topics": {}, "next_producer_id": 10_000}
    assert (await store.get_with_etag(CLUSTER_METADATA_KEY))[1] == etag
    # in-place mutation is a change too
    def bump(d):
        d["topics"]["t"] = {"id": TOPIC.hex(), "partitions": 3}
        return d
    doc, _ = await conditional_update(store, CLUSTER_METADATA_KEY, bump, decode, json_encode)
    assert json.loads(await store.get(CLUSTER_METADATA_KEY))["topics"]["t"]["partitions"] == 3
    # nothing to create
    assert await conditional_update(store, "cluster/other.json", lambda d: None, decode,
                                    json_encode) == (None, None)
    assert not await store.exists("cluster/other.json")


async def test_gives_up_after_the_attempt_bound(env):
    store, rival_put = env
    calls = []

    def fn(doc):
        calls.append(1)
        rival_put("cluster/contended.json", json_encode({"rival": len(calls)}))
        return {"mine": True}

    with pytest.raises(PreconditionFailed, match="lost 3 races"):
        await conditional_update(store, "cluster/contended.json", fn,
                                 json_decoder("cluster/contended.json"), json_encode, attempts=3)
    assert len(calls) == 3
    assert json.loads(await store.get("cluster/contended.json")) == {"rival": 3}


class CountingStore(ObjectStore):
    """A real store, with the requests made through it counted by kind."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.counts: dict[str, int] = {}

    def _count(self, op: str) -> None:
        self.counts[op] = self.counts.get(op, 0) + 1

    async def put(self, key, data, *, if_match=None, if_none_match=False, **kw):
        self._count("put")
        return await self.inner.put(key, data, if_match=if_match, if_none_match=if_none_match, **kw)

    async def get_with_etag(self, key):
        self._count("get")
        return await self.inner.get_with_etag(key)

    async def get_range(self, key, start, end=None):
        self._count("get")
        return await self.inner.get_range(key, start, end)

    async def head(self, key):
        self._count("head")
        return await self.inner.head(key)

    async def delete(self, key):
        self._count("delete")
        await self.inner.delete(key)

    async def list(self, prefix=""):
        self._count("list")
        return await self.inner.list(prefix)

    async def list_info(self, prefix=""):
        self._count("list")
        return await self.inner.list_info(prefix)


async def test_owner_updates_cost_one_put_and_stale_knowledge_is_safe(env):
    store, _ = env
    counting = CountingStore(store)
    a = ManifestStore(counting)
    epoch = await a.claim(TOPIC, 0, broker_id=1)
    counting.counts.clear()
    for i in range(5):
        await a.update(TOPIC, 0, append_segments([seg(i * 10, i * 10 + 9)]), epoch=epoch)
    assert counting.counts == {"put": 5}             # no GET: the owner knows its last write

    # another ManifestStore (another process) writes: a's knowledge is stale now
    b = ManifestStore(store)
    await b.update(TOPIC, 0, append_segments([seg(50, 59)]), epoch=epoch)
    counting.counts.clear()
    m = await a.update(TOPIC, 0, lambda m: m.appended([seg(m.next_offset, m.next_offset + 9)]),
                       epoch=epoch)
    assert m.next_offset == 70 and [s.first_offset for s in m.segments] == list(range(0, 70, 10))
    assert counting.counts == {"put": 2, "get": 1}   # the blind put lost, re-read, put
    # a decision not to write is never taken on stale knowledge: b moves on, a's
    # "already applied" check must see b's state, not its own
    await b.update(TOPIC, 0, lambda m: m.with_log_start(65), epoch=epoch)
    m = await a.update(TOPIC, 0, append_segments([seg(60, 69)]), epoch=epoch)
    assert m.log_start_offset == 65 and m.next_offset == 70
    assert (await a.load(TOPIC, 0))[0] == m
    # and a claim elsewhere fences a, although a's knowledge says epoch is current
    await b.claim(TOPIC, 0, broker_id=2)
    with pytest.raises(Fenced):
        await a.update(TOPIC, 0, append_segments([seg(70, 79)]), epoch=epoch)


# -- fencing --------------------------------------------------------------------------------


async def test_stale_epoch_is_fenced_and_writes_nothing(env):
    store, _ = env
    ms = ManifestStore(store)
    old = await ms.claim(TOPIC, 0, broker_id=1)
    await ms.update(TOPIC, 0, append_segments([seg(0, 9)]), epoch=old)
    new = await ms.claim(TOPIC, 0, broker_id=2)
    before = await stored_bytes(store)

    called = []
    with pytest.raises(Fenced, match=f"epoch {old}, stored epoch is {new}") as exc:
        await ms.update(TOPIC, 0, lambda m: called.append(1) or m.appended([seg(10, 19)]),
                        epoch=old)
    assert (exc.value.stored_epoch, exc.value.epoch) == (new, old)
    assert called == []                                # fenced before the change is computed
    with pytest.raises(Fenced, match="never granted"):
        await ms.update(TOPIC, 0, append_segments([seg(10, 19)]), epoch=new + 1)
    assert await stored_bytes(store) == before
    m = await ms.update(TOPIC, 0, append_segments([seg(10, 19)]), epoch=new)
    assert m.next_offset == 20 and m.owner == 2


async def test_claim_landing_between_read_and_put_fences_the_old_owner(env):
    store, rival_put = env
    ms = ManifestStore(store)
    epoch = await ms.claim(TOPIC, 0, broker_id=1)
    calls = []

    def fn(m: Manifest) -> Manifest:
        calls.append(m.epoch)
        # broker 2 claims the partition right after our read
        rival_put(m.key, replace(m, epoch=m.epoch + 1, owner=2).encode())
        return m.appended([seg(0, 9)])

    with pytest.raises(Fenced):
        await ms.update(TOPIC, 0, fn, epoch=epoch)
    assert calls == [epoch]                           # the put lost; the re-read fenced us
    m, _ = await ms.load(TOPIC, 0)
    assert (m.epoch, m.owner, m.next_offset) == (epoch + 1, 2, 0)


async def test_updates_racing_a_claim(env):
    """Every update either landed (before the claim) or was fenced: none lost."""
    store, _ = env
    ms = ManifestStore(store)
    epoch = await ms.claim(TOPIC, 0, broker_id=1)
    landed: list[str] = []

    async def append(i: int) -> str:
        obj = f"data/1/task-{i}.sldo"
        try:
            await ms.update(TOPIC, 0, lambda m: m.appended([seg(m.next_offset, m.next_offset + 4, obj)]),
                            epoch=epoch)
        except Fenced:
            return "fenced"
        landed.append(obj)
        return "ok"

    tasks = [asyncio.create_task(append(i)) for i in range(10)]
    await asyncio.sleep(0)
    new_epoch = await ms.claim(TOPIC, 0, broker_id=2)
    results = await asyncio.gather(*tasks)
    m, _ = await ms.load(TOPIC, 0)
    assert m.epoch == new_epoch == epoch + 1 and m.owner == 2
    assert sorted(s.object_key for s in m.segments) == sorted(landed)
    assert results.count("ok") == len(landed) and m.next_offset == 5 * len(landed)


# -- invariants -------------------------------------------------------------------------------


async def test_changes_that_break_invariants_are_refused(env):
    store, _ = env
    ms = ManifestStore(store)
    epoch = await ms.claim(TOPIC, 0, broker_id=1)
    await ms.update(TOPIC, 0, append_segments([seg(0, 9), seg(10, 19)],
                                              producer_state={"p": 1}), epoch=epoch)
    before = await stored_bytes(store)

    bad_changes = {
        "leaves a gap": lambda m: replace(m, segments=m.segments + (seg(21, 29),), next_offset=30),
        "overlaps": lambda m: replace(m, segments=m.segments + (seg(15, 29),), next_offset=30),
        "segment 1 .* overlaps": lambda m: replace(m, segments=m.segments[::-1]),
        "first_offset 25 > last_offset 20": lambda m: replace(
            m, segments=m.segments + (replace(seg(20, 20), first_offset=25),), next_offset=21),
        "last segment ends at 19, next_offset is 25": lambda m: replace(m, next_offset=25),
        "log_start_offset 30 > next_offset 20": lambda m: replace(m, log_start_offset=30),
        "first segment starts at 10, after log_start_offset 5": lambda m: replace(
            m, log_start_offset=5, segments=m.segments[1:]),
        "no segments, but log_start_offset 0": lambda m: replace(m, segments=()),
        "next_offset would go back": lambda m: replace(m, segments=m.segments[:1], next_offset=10),
        "may not change epoch": lambda m: replace(m, epoch=m.epoch + 1),
        "may not change owner": lambda m: replace(m, owner=9),
        "may not change partition": lambda m: replace(m, partition=1),
        "segments start at 25, next_offset is 20": lambda m: m.appended([seg(25, 29)]),
        "already uploaded in other objects": append_segments([seg(0, 9, "data/1/other.sldo")]),
        "length must be an int >= 0": lambda m: replace(
            m, segments=m.segments[:1] + (replace(m.segments[1], length=-1),)),
        "empty, bad crc": lambda m: replace(
            m, segments=m.segments[:1] + (replace(m.segments[1], crc=1 << 32),)),
        "producer_state must be plain JSON": lambda m: replace(m, producer_state={1000: [1, 2]}),
        "log start 21 beyond next_offset": lambda m: m.with_log_start(21),
    }
    for message, change in bad_changes.items():
        with pytest.raises(InvalidManifest, match=message):
            await ms.update(TOPIC, 0, change, epoch=epoch)
    with pytest.raises(TypeError):
        await ms.update(TOPIC, 0, lambda m: None, epoch=epoch)
    assert await stored_bytes(store) == before

    # and a change that keeps them all still works
    m = await ms.update(TOPIC, 0, lambda m: m.with_log_start(20), epoch=epoch)
    assert (m.log_start_offset, m.next_offset, m.segments) == (20, 20, ())


async def test_corrupt_stored_manifest_is_never_overwritten(env):
    store, rival_put = env
    ms = ManifestStore(store)
    key = manifest_key(TOPIC, 0)
    good = Manifest(TOPIC, 0, 4, 1, 0, 10, (seg(0, 9),), {})
    variants = {
        "not a sluice manifest": b"{}",
        "Expecting value": b"\x00garbage",
        "version 2 is not supported": good.encode().replace(b'"version":1', b'"version":2'),
        "last segment ends at 9": good.encode().replace(b'"next_offset":10', b'"next_offset":11'),
        "stored under another key": replace(good, partition=1).encode(),
        "epoch must be an integer": good.encode().replace(b'"epoch":4', b'"epoch":"4"'),
    }
    for message, data in variants.items():
        rival_put(key, data)
        before = await store.get_with_etag(key)
        with pytest.raises(CorruptObject, match=message):
            await ms.load(TOPIC, 0)
        with pytest.raises(CorruptObject):
            await ms.update(TOPIC, 0, lambda m: m, epoch=4)
        with pytest.raises(CorruptObject):
            await ms.claim(TOPIC, 0, broker_id=2)
        assert await store.get_with_etag(key) == before
    rival_put(key, good.encode())
    assert (await ms.load(TOPIC, 0))[0] == good


def test_manifest_share_state_round_trip_and_absence():
    """Share-partition snapshots per group (KIP-932); a manifest without any keeps its old bytes."""
    m = Manifest(TOPIC, 7, 3, None, 0, 30, (seg(0, 29),), {})
    assert b"share_state" not in m.encode()
    with_share = replace(m, share_state=(("g1", "AAEC"), ("g2", "AwQ=")))
    with_share.validate()
    assert Manifest.decode(with_share.encode()) == with_share
    assert Manifest.decode(with_share.encode()).appended((seg(30, 39),)).share_state == with_share.share_state
    with pytest.raises(InvalidManifest):
        replace(m, share_state=(("g1", 5),)).validate()


def test_manifest_encoding_round_trip():
    m = Manifest(TOPIC, 7, 3, None, 5, 30, (seg(0, 9), seg(10, 29, "data/2/y.sldo", 4096)),
                 {"producers": {"42": {"epoch": 1, "last": [[1, 2, 3]]}}, "x": None})
    m.validate()
    assert Manifest.decode(m.encode()) == m
    assert Manifest.decode(m.encode(), key=manifest_key(TOPIC, 7)) == m
    assert m.encode() == Manifest.decode(m.encode()).encode()        # deterministic bytes
    assert manifest_key(TOPIC, 7) == f"manifests/{TOPIC.hex()}/7.json"
    with pytest.raises(ValueError):
        manifest_key(b"short", 0)
