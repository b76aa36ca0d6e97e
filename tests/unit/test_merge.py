"""Segment merging and garbage collection (objectstore/merge.py), on the
filesystem backend and on a real MinIO. Data objects hold real Kafka v2 record
batches (helpers from test_data_object.py), uploaded and recorded in manifests
the way a broker does (one multi-partition object per upload, then
append_segments per partition); reads go through the manifest as a fetch does.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from dataclasses import replace

import pytest
from minio_server import open_test_store
from test_data_object import batches_for
from test_manifest import CountingStore

from objectstore import (
    CorruptObject,
    InvalidManifest,
    Manifest,
    ManifestStore,
    MergeConflict,
    ObjectStore,
    SegmentRef,
    append_segments,
    collect_garbage,
    merge_run,
    plan_merge,
    referenced_objects,
    replace_segments,
)
from objectstore import data_object as do
from objectstore.filesystem import FilesystemObjectStore
from objectstore.merge import PacerStopped, RatePacer

TOPIC = uuid.UUID("c0de0000-0000-4000-8000-0000000c0a1e").bytes
GRACE = 60.0
LATER = int((GRACE + 1) * 1e9)        # ns: a GC run this much after now sees today's keys as old


@pytest.fixture(params=["filesystem", pytest.param("s3", marks=pytest.mark.minio)])
async def store(request, tmp_path):
    s = open_test_store(request, tmp_path)
    yield s
    await s.close()


def pk(partition: int) -> bytes:
    return do.partition_key(TOPIC, partition)


class Broker:
    """Uploads like a broker: each upload is ONE data object with a chunk per
    partition, then one append_segments per partition."""

    def __init__(self, store: ObjectStore, partitions=(0, 1), broker_id: int = 1) -> None:
        self.store = store
        self.ms = ManifestStore(store)
        self.keys = do.ObjectKeys(broker_id)
        self.partitions = partitions
        self.epoch: dict[int, int] = {}
        self.next: dict[int, int] = {p: 0 for p in partitions}

    async def claim(self) -> "Broker":
        for p in self.partitions:
            self.epoch[p] = await self.ms.claim(TOPIC, p, broker_id=1)
        return self

    async def upload(self, sizes: dict[int, list[int]]) -> str:
        chunks = {}
        for p, batch_sizes in sizes.items():
            chunks[pk(p)] = batches_for(self.next[p], batch_sizes)
            self.next[p] += sum(batch_sizes)
        body, refs = do.build(chunks)
        key = self.keys.next()
        await self.store.put(key, body)
        for r in refs:
            await self.ms.update(TOPIC, r.partition, append_segments([SegmentRef.from_chunk(key, r)]),
                                 epoch=self.epoch[r.partition])
        return key

    async def uploads(self, n: int) -> list[str]:
        """n uploads: partition 0 gets two batches (5 offsets) each, partition 1 one (4)."""
        sizes = {p: sz for p, sz in {0: [3, 2], 1: [4]}.items() if p in self.partitions}
        return [await self.upload(sizes) for _ in range(n)]

    async def load(self, p: int) -> Manifest:
        return (await self.ms.load(TOPIC, p))[0]

    async def swap(self, p: int, run, new) -> Manifest:
        return await self.ms.update(TOPIC, p, replace_segments(run, new), epoch=self.epoch[p])


async def read_all(store: ObjectStore, m: Manifest) -> dict[int, bytes]:
    """offset -> the bytes of the batch holding it, read through the manifest
    as a fetch does (ranged GET of the segment's chunk, crc checked, find_batch)."""
    out: dict[int, bytes] = {}
    chunks: dict[SegmentRef, bytes] = {}
    for off in range(m.log_start_offset, m.next_offset):
        s = m.segment_for(off)
        if s not in chunks:
            chunks[s] = await do.read_chunk(store, s.object_key, s)
        span = do.find_batch(chunks[s], off)
        assert span.base_offset <= off <= span.last_offset
        out[off] = chunks[s][span.position:span.end]
    return out


def assert_contiguous(m: Manifest) -> None:
    m.validate()
    assert m.segments[0].first_offset <= m.log_start_offset
    for a, b in zip(m.segments, m.segments[1:]):
        assert b.first_offset == a.last_offset + 1
    assert m.segments[-1].last_offset + 1 == m.next_offset


# -- plan_merge (pure) --------------------------------------------------------------


def synthetic(lengths: list[int], *, log_start: int = 0) -> Manifest:
    """A manifest whose segment i holds offsets 10i..10i+9 in `lengths[i]` bytes."""
    segs = tuple(SegmentRef(f"data/1/{i:020d}-{'0' * 32}.sldo", 0, n, 10 * i, 10 * i + 9,
                            1_700_000_000_000 + i, i) for i, n in enumerate(lengths))
    m = Manifest(TOPIC, 0, 1, 1, log_start, 10 * len(lengths), segs)
    m.validate()
    return m


def shape(runs: list[list[SegmentRef]]) -> list[list[int]]:
    return [[s.first_offset // 10 for s in run] for run in runs]


def test_plan_merges_small_segments_into_runs_up_to_the_target():
    assert shape(plan_merge(synthetic([30] * 5), target_bytes=100)) == [[0, 1, 2], [3, 4]]
    # the tail run (40 < 50, 2 < max_segments) waits for more data
    assert shape(plan_merge(synthetic([30, 30, 30, 30, 10]), target_bytes=100)) == [[0, 1, 2]]
    # exactly the target is allowed; one byte more cuts
    assert shape(plan_merge(synthetic([50, 50]), target_bytes=100)) == [[0, 1]]
    assert shape(plan_merge(synthetic([50, 51]), target_bytes=100)) == []
    # the cut is greedy from the start of the stretch
    assert shape(plan_merge(synthetic([10, 60, 30, 70, 20]), target_bytes=100)) == [[0, 1, 2], [3, 4]]
    assert plan_merge(synthetic([])) == []
    # deterministic, runs contiguous, in offset order, disjoint
    m = synthetic([7, 3, 90, 12, 40, 40, 40, 5, 60, 1, 1])
    runs = plan_merge(m, target_bytes=100)
    assert runs == plan_merge(m, target_bytes=100)
    flat = [s for run in runs for s in run]
    assert len(set(flat)) == len(flat) and flat == sorted(flat, key=lambda s: s.first_offset)
    for run in runs:
        assert all(b.first_offset == a.last_offset + 1 for a, b in zip(run, run[1:]))
        assert sum(s.length for s in run) <= 100


def test_plan_leaves_big_segments_alone():
    # a segment of target_bytes or more is never merged, and cuts the stretch
    m = synthetic([100, 30, 30, 200, 30, 30, 30, 150])
    assert shape(plan_merge(m, target_bytes=100)) == [[1, 2], [4, 5, 6]]
    assert plan_merge(synthetic([100, 100, 500]), target_bytes=100) == []
    # the default target: 64 MiB objects from ~1 MiB uploads
    mib = 1 << 20
    runs = plan_merge(synthetic([mib] * 100 + [64 * mib] + [mib] * 10))
    assert shape(runs) == [list(range(0, 64)), list(range(64, 100))]


def test_plan_max_segments_tidies_idle_partitions():
    tiny = synthetic([1] * 40)                                   # 40 bytes, far below target / 2
    assert shape(plan_merge(tiny, target_bytes=100)) == [list(range(40))]
    assert plan_merge(tiny, target_bytes=100, max_segments=41) == []
    assert shape(plan_merge(synthetic([1] * 5), target_bytes=100, max_segments=5)) == [[0, 1, 2, 3, 4]]
    assert plan_merge(synthetic([1] * 5), target_bytes=100, max_segments=6) == []


def test_plan_min_run():
    # 60 + 60 > 100: two runs of one segment each, never worth merging
    assert plan_merge(synthetic([60, 60]), target_bytes=100) == []
    assert plan_merge(synthetic([30, 30]), target_bytes=100, min_run=3) == []
    assert shape(plan_merge(synthetic([30, 30, 30]), target_bytes=100, min_run=3)) == [[0, 1, 2]]
    assert plan_merge(synthetic([1] * 40), target_bytes=100, min_run=41) == []
    for bad in (dict(min_run=1), dict(target_bytes=0), dict(max_segments=0)):
        with pytest.raises(ValueError):
            plan_merge(synthetic([30, 30]), **bad)


def test_plan_skips_segments_below_log_start():
    # segment 0 (0..9) is wholly below log start 15 (allowed by the invariants)
    m = synthetic([30, 30, 30], log_start=15)
    assert shape(plan_merge(m, target_bytes=100)) == [[1, 2]]
    assert shape(plan_merge(synthetic([30, 30, 30], log_start=9), target_bytes=100)) == [[0, 1, 2]]


# -- replace_segments (pure) ---------------------------------------------------------------


def merged(run: list[SegmentRef], name: str = "merged") -> SegmentRef:
    return SegmentRef(f"data/2/{name}.sldo", 0, sum(s.length for s in run), run[0].first_offset,
                      run[-1].last_offset, max(s.max_timestamp for s in run), 12345)


def test_replace_segments_cases():
    m = synthetic([30] * 6)
    run = list(m.segments[1:4])                                  # offsets 10..39
    new = merged(run)
    fn = replace_segments(run, new)

    out = fn(m)
    assert out.segments == (m.segments[0], new, m.segments[4], m.segments[5])
    assert_contiguous(out)
    assert fn(out) is out                                        # idempotent
    # retention dropped a prefix of the run: the rest is replaced, new starts below log start
    cut = m.with_log_start(25)
    assert cut.segments[0] == run[1]
    out = fn(cut)
    assert out.segments == (new, m.segments[4], m.segments[5]) and out.log_start_offset == 25
    assert_contiguous(out)
    assert fn(out.with_log_start(38)) == out.with_log_start(38)  # applied, then more retention
    # retention took the whole run: nothing to do (new is left to the GC)
    gone = m.with_log_start(40)
    assert fn(gone) is gone
    # another merge got there first (the whole run, a part of it, or a bigger run)
    for other in (run, run[:2], m.segments[0:3], m.segments[3:5]):
        taken = replace_segments(list(other), merged(list(other), "other"))(m)
        with pytest.raises(MergeConflict, match="no longer in the manifest"):
            fn(taken)
        with pytest.raises(MergeConflict):
            fn(taken.with_log_start(25))
    # the same offsets in another object are not the run
    with pytest.raises(MergeConflict):
        fn(replace(m, segments=m.segments[:2] + (replace(m.segments[2], object_key="data/1/x"),)
                   + m.segments[3:]))
    # bad arguments
    with pytest.raises(ValueError, match="does not cover"):
        replace_segments(run, merged(run[:2]))
    with pytest.raises(ValueError, match="not contiguous"):
        replace_segments([run[0], run[2]], new)
    with pytest.raises(ValueError, match="empty"):
        replace_segments([], new)


# -- merge_run + replace_segments against a store ---------------------------------------------


async def test_merge_keeps_every_batch_byte_identical(store):
    b = await Broker(store).claim()
    uploads = await b.uploads(6)
    m0, m1 = await b.load(0), await b.load(1)
    before0, before1 = await read_all(store, m0), await read_all(store, m1)
    assert len(m0.segments) == 6 and len(before0) == 30
    seg_len = m0.segments[0].length
    assert all(s.length == seg_len for s in m0.segments)

    runs = plan_merge(m0, target_bytes=3 * seg_len)
    assert [[s.object_key for s in run] for run in runs] == [uploads[:3], uploads[3:]]
    counting = CountingStore(store)
    merger_keys = do.ObjectKeys(broker_id=1)
    news = []
    for run in runs:
        counting.counts.clear()
        new = await merge_run(counting, merger_keys, run, pk(0))
        assert counting.counts == {"get": 3, "put": 1}          # one ranged GET per segment
        assert (new.first_offset, new.last_offset) == (run[0].first_offset, run[-1].last_offset)
        assert new.length == sum(s.length for s in run) and new.position == 0
        assert new.max_timestamp == max(s.max_timestamp for s in run)
        index = await do.read_footer(store, new.object_key)     # a per-partition object
        assert [(c.partition_key, SegmentRef.from_chunk(new.object_key, c)) for c in index] == [(pk(0), new)]
        m = await b.swap(0, run, new)
        news.append(new)

    m, etag = await b.ms.load(TOPIC, 0)
    assert m.segments == tuple(news) and (m.log_start_offset, m.next_offset) == (0, 30)
    assert_contiguous(m)
    assert await read_all(store, m) == before0                  # byte-identical batches
    assert plan_merge(m, target_bytes=3 * seg_len) == []        # nothing left to do
    # re-applying (a retry after a lost answer) changes nothing and writes nothing
    for run, new in zip(runs, news):
        assert await b.swap(0, run, new) == m
    assert (await b.ms.load(TOPIC, 0)) == (m, etag)
    # the other partition of the same objects is untouched
    assert await b.load(1) == m1 and await read_all(store, m1) == before1
    # the log goes on: new uploads append after the merged segments
    await b.uploads(1)
    m = await b.load(0)
    assert m.segments[:2] == tuple(news) and m.next_offset == 35
    assert_contiguous(m)


async def test_segments_read_in_paced_pieces_merge_into_the_same_object(store):
    """merge_run reads each segment in ranged GETs of at most piece_bytes (here
    smaller than a batch, so batches straddle pieces), each after the pacer; the
    merged chunk is the one an unpieced read gives, byte for byte."""
    b = await Broker(store, partitions=(0,)).claim()
    await b.uploads(3)
    m = await b.load(0)
    run = list(m.segments)
    whole = await merge_run(store, do.ObjectKeys(5), run, pk(0))
    taken: list[int] = []

    written: list[int] = []

    class Recorder:
        async def take(self, n: int) -> None:
            taken.append(n)

        def take_blocking(self, n: int) -> None:     # the store's writer, between steps
            written.append(n)

    counting = CountingStore(store)
    piece = 37
    pieced = await merge_run(counting, do.ObjectKeys(6), run, pk(0), pacer=Recorder(), piece_bytes=piece)
    assert sum(taken) == sum(s.length for s in run) and max(taken) == piece
    # the filesystem store paces its write step by step (footer included); S3 streams it to the service
    size = (await store.head(pieced.object_key)).size
    assert sum(written) == (size if isinstance(store, FilesystemObjectStore) else 0)
    assert counting.counts["get"] == sum(-(-s.length // piece) for s in run) == len(taken)
    assert (pieced.length, pieced.crc, pieced.first_offset, pieced.last_offset) == (
        whole.length, whole.crc, whole.first_offset, whole.last_offset)
    assert (await store.get(pieced.object_key)) == (await store.get(whole.object_key))
    m2 = await b.swap(0, run, pieced)
    assert await read_all(store, m2) == await read_all(store, m)


async def test_rate_pacer_spaces_reads_and_keeps_no_idle_credit():
    now = [100.0]
    slept: list[float] = []

    async def sleep(d: float) -> None:
        slept.append(round(d, 6))
        now[0] += d

    pacer = RatePacer(1000.0, clock=lambda: now[0], sleep=sleep)
    await pacer.take(500)          # the first read starts at once ...
    await pacer.take(500)          # ... the next once 500 bytes' time (0.5 s) has passed
    await pacer.take(2000)
    assert slept == [0.5, 0.5] and pacer.waited == 1.0
    now[0] += 60.0                 # idle for a minute: no burst allowance builds up
    await pacer.take(100)
    await pacer.take(100)
    assert slept == [0.5, 0.5, 0.1]
    blocked: list[float] = []
    pacer = RatePacer(1000.0, clock=lambda: now[0], sleep=sleep, blocking_sleep=blocked.append)
    await pacer.take(1000)         # reads, then the store's writer thread books the write
    pacer.take_blocking(500)
    assert blocked == [1.0] and pacer.waited == 1.0
    with pytest.raises(ValueError):
        RatePacer(0)


async def test_stopping_the_pacer_ends_a_paced_write_in_the_stores_thread(tmp_path):
    """Stop (the merge task stopping) wakes a write step waiting in the filesystem
    store's thread: the put fails at once, and its temporary file is gone."""
    store = FilesystemObjectStore(str(tmp_path / "objects"))
    pacer = RatePacer(1 << 20)                     # 1 MiB/s: a 4 MiB put would take ~3 s more
    put = asyncio.ensure_future(store.put("data/1/slow", [b"x" * (4 << 20)], pace=pacer.take_blocking))
    await asyncio.sleep(0.2)
    assert not put.done()
    started = time.monotonic()
    pacer.stop()
    with pytest.raises(PacerStopped):
        await asyncio.wait_for(put, 5)
    assert time.monotonic() - started < 1.0
    assert not await store.exists("data/1/slow")
    assert not os.listdir(store._tmp)              # the temporary file is removed
    with pytest.raises(PacerStopped):
        pacer.take_blocking(1)


async def test_merge_racing_the_owners_appends_and_retention(store):
    """A merger with its own ManifestStore swaps a run while the owner keeps
    appending and advances the log start: every change lands."""
    b = await Broker(store, partitions=(0,)).claim()
    await b.uploads(4)
    m = await b.load(0)
    before = await read_all(store, m)
    run = list(m.segments[:3])
    new = await merge_run(store, do.ObjectKeys(9), run, pk(0))
    merger = ManifestStore(store)

    async def owner() -> None:
        for _ in range(4):
            await b.uploads(1)
        await b.ms.update(TOPIC, 0, lambda m: m.with_log_start(3), epoch=b.epoch[0])

    await asyncio.gather(owner(), merger.update(TOPIC, 0, replace_segments(run, new),
                                                   epoch=b.epoch[0]))
    m = await b.load(0)
    assert m.segments[0] == new and len(m.segments) == 1 + 1 + 4
    assert (m.log_start_offset, m.next_offset) == (3, 40)
    assert_contiguous(m)
    after = await read_all(store, m)
    assert {o: after[o] for o in before if o >= 3} == {o: v for o, v in before.items() if o >= 3}


async def test_conflicting_merge_writes_nothing(store):
    b = await Broker(store, partitions=(0,)).claim()
    await b.uploads(4)
    m = await b.load(0)
    before = await read_all(store, m)
    keys = do.ObjectKeys(1)
    run_a, run_b = list(m.segments[0:3]), list(m.segments[1:4])
    new_a = await merge_run(store, keys, run_a, pk(0))
    new_b = await merge_run(store, keys, run_b, pk(0))          # overlaps run_a
    new_a2 = await merge_run(store, keys, run_a, pk(0))         # a second merger, same run
    assert new_a.object_key != new_a2.object_key
    m = await b.swap(0, run_a, new_a)
    _, etag = await b.ms.load(TOPIC, 0)
    for run, new in ((run_b, new_b), (run_a, new_a2)):
        with pytest.raises(MergeConflict):
            await b.swap(0, run, new)
        assert await b.ms.load(TOPIC, 0) == (m, etag)           # nothing written
    assert await read_all(store, m) == before
    # the losers' objects are garbage; the winner's and the unmerged last upload are not
    deleted = await collect_garbage(store, referenced_objects([m]), grace_seconds=GRACE,
                                    now_ns=time.time_ns() + LATER)
    assert sorted(deleted) == sorted([new_b.object_key, new_a2.object_key] +
                                     [s.object_key for s in run_a])
    assert await read_all(store, m) == before


async def test_merge_after_retention_advanced_the_log_start(store):
    b = await Broker(store, partitions=(0,)).claim()
    await b.uploads(5)
    m = await b.load(0)
    before = await read_all(store, m)
    run = list(m.segments[:3])                                   # offsets 0..14
    new = await merge_run(store, do.ObjectKeys(1), run, pk(0))
    # retention moves the log start into the run's third segment while the merge is in flight
    m = await b.ms.update(TOPIC, 0, lambda m: m.with_log_start(12), epoch=b.epoch[0])
    assert m.segments[0] == run[2]
    m = await b.swap(0, run, new)
    assert m.segments[0] == new and new.first_offset == 0 < m.log_start_offset == 12
    assert len(m.segments) == 3
    assert_contiguous(m)
    after = await read_all(store, m)
    assert after == {o: v for o, v in before.items() if o >= 12}
    assert await b.swap(0, run, new) == m                       # idempotent
    # retention takes the whole merged range: a late retry is a no-op, not a conflict
    m = await b.ms.update(TOPIC, 0, lambda m: m.with_log_start(20), epoch=b.epoch[0])
    assert new not in m.segments
    assert await b.swap(0, run, new) == m
    run2 = list(m.segments)                                       # 20..24 only: gone too soon
    m = await b.ms.update(TOPIC, 0, lambda m: m.with_log_start(25), epoch=b.epoch[0])
    assert m.segments == () and await b.swap(0, run2, merged(run2)) == m


async def test_merge_run_refuses_corrupt_input(store):
    b = await Broker(store, partitions=(0,)).claim()
    await b.uploads(3)
    m = await b.load(0)
    run = list(m.segments)
    keys = do.ObjectKeys(1)
    listed = await store.list("data/")
    with pytest.raises(CorruptObject, match="crc32c"):
        await merge_run(store, keys, [run[0], replace(run[1], crc=run[1].crc ^ 1), run[2]], pk(0))
    # a ref that claims offsets its chunk does not hold (consistently re-numbered)
    shifted = [replace(s, first_offset=s.first_offset + 1, last_offset=s.last_offset + 1) for s in run]
    with pytest.raises(CorruptObject, match="the manifest says"):
        await merge_run(store, keys, shifted, pk(0))
    with pytest.raises(ValueError, match="not contiguous"):
        await merge_run(store, keys, [run[0], run[2]], pk(0))
    assert await store.list("data/") == listed                  # nothing written
    # and the manifest refuses a swap that would not fit
    with pytest.raises(InvalidManifest):
        await b.ms.update(TOPIC, 0, lambda m: replace(m, segments=(merged(run[:2]),)), epoch=b.epoch[0])


# -- garbage collection ----------------------------------------------------------------------------


async def test_collect_garbage_deletes_only_old_unreferenced_objects(store, caplog):
    now = time.time_ns()
    hour = 3600 * 10 ** 9
    old_ref = do.object_key(1, now - 2 * hour)
    old_unref = do.object_key(2, now - 2 * hour)
    just_old = do.object_key(1, now - hour - 1)
    young = do.object_key(1, now - hour + 10 ** 9)
    foreign = ["data/README", "data/1/not-a-data-object.sldo", "data/x/y/z.sldo"]
    for k in (old_ref, old_unref, just_old, young, *foreign, "manifests/t/0.json"):
        await store.put(k, b"x")
    referenced = {old_ref, do.object_key(1, 5)}                  # a referenced key may be missing
    with caplog.at_level(logging.WARNING, logger="objectstore.merge"):
        deleted = await collect_garbage(store, referenced, grace_seconds=3600, now_ns=now)
    assert deleted == sorted([old_unref, just_old])              # listing order
    assert sorted(await store.list("")) == sorted([old_ref, young, *foreign, "manifests/t/0.json"])
    assert sum("not a data object key" in r.message for r in caplog.records) == len(foreign)
    # only under the prefix given
    assert await collect_garbage(store, set(), grace_seconds=0, now_ns=now + 1, prefix="data/2/") == []
    assert await collect_garbage(store, set(), grace_seconds=0, prefix="data/1/") == [old_ref, young]
    with pytest.raises(ValueError):
        await collect_garbage(store, set(), grace_seconds=0, prefix="manifests/")
    with pytest.raises(ValueError):
        await collect_garbage(store, set(), grace_seconds=-1)


async def test_unreferenced_since_protects_readers_of_an_old_manifest(store):
    """An old object dropped by a merge is old by its key, but a reader
    that loaded the manifest before the swap still needs it for a while."""
    b = await Broker(store, partitions=(0,)).claim()
    uploads = await b.uploads(3)
    reader_view = await b.load(0)                                # a fetch in flight holds this
    before = await read_all(store, reader_view)
    run = list(reader_view.segments)
    new = await merge_run(store, do.ObjectKeys(1), run, pk(0))
    m = await b.swap(0, run, new)

    state: dict[str, int] = {}
    t0 = time.time_ns() + LATER                                  # the uploads are old by their keys
    assert await collect_garbage(store, referenced_objects([m]), grace_seconds=GRACE, now_ns=t0,
                                 unreferenced_since=state) == []
    assert state == {k: t0 for k in uploads}
    assert await read_all(store, reader_view) == before         # the old reader still reads
    # half a grace later: still there; a re-referenced key leaves the state
    assert await collect_garbage(store, referenced_objects([m]) | {uploads[0]},
                                 grace_seconds=GRACE, now_ns=t0 + LATER // 2,
                                 unreferenced_since=state) == []
    assert state == {k: t0 for k in uploads[1:]}
    # a whole grace period after they were first seen unreferenced: gone
    assert await collect_garbage(store, referenced_objects([m]), grace_seconds=GRACE,
                                 now_ns=t0 + LATER, unreferenced_since=state) == uploads[1:]
    assert state == {uploads[0]: t0 + LATER}
    assert await read_all(store, m) == before                   # the current manifest is whole
    # without the state, the key's age alone decides (the default behaviour)
    assert await collect_garbage(store, referenced_objects([m]), grace_seconds=GRACE,
                                 now_ns=t0) == uploads[:1]


async def test_crash_between_put_and_manifest_update(store):
    b = await Broker(store).claim()
    uploads = await b.uploads(4)
    m0, m1 = await b.load(0), await b.load(1)
    before0, before1 = await read_all(store, m0), await read_all(store, m1)
    (run,) = plan_merge(m0, target_bytes=4 * m0.segments[0].length)
    orphan = await merge_run(store, do.ObjectKeys(1), run, pk(0))
    # "crash": the manifest update never happens. The manifest is as it was and reads as before.
    assert await b.load(0) == m0 and await read_all(store, m0) == before0
    refs = referenced_objects([await b.load(0), await b.load(1)])
    assert orphan.object_key not in refs and set(uploads) == refs
    # within the grace period nobody touches it (its update could still be in flight)
    assert await collect_garbage(store, refs, grace_seconds=GRACE) == []
    assert await store.exists(orphan.object_key)
    # later the orphan, and only it, is collected
    assert await collect_garbage(store, refs, grace_seconds=GRACE,
                                 now_ns=time.time_ns() + LATER) == [orphan.object_key]
    assert await read_all(store, m0) == before0

    # the restarted merger does it again, this time to the end
    new0 = await merge_run(store, do.ObjectKeys(1), run, pk(0))
    m0 = await b.swap(0, run, new0)
    # the old objects still hold partition 1's data: referenced, kept
    refs = referenced_objects([m0, await b.load(1)])
    assert await collect_garbage(store, refs, grace_seconds=GRACE,
                                 now_ns=time.time_ns() + LATER) == []
    (run1,) = plan_merge(m1, target_bytes=4 * m1.segments[0].length)
    m1 = await b.swap(1, run1, await merge_run(store, do.ObjectKeys(1), run1, pk(1)))
    refs = referenced_objects([m0, m1])
    assert await collect_garbage(store, refs, grace_seconds=GRACE,
                                 now_ns=time.time_ns() + LATER) == uploads
    assert sorted(await store.list("data/")) == sorted(refs)
    assert await read_all(store, m0) == before0 and await read_all(store, m1) == before1
