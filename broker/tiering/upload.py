"""The upload task: moves durable WAL bytes to the object store, then lets the WAL drop them.

Each upload (every ``s3.upload.interval.ms``, or sooner once ``s3.upload.bytes``
are pending):

1. delete the manifests of topics deleted since the last one (the
   cluster package writes topics and claims partitions, not this task);
2. ``wal.cut()`` and, without awaiting, gather every partition's batches not
   yet uploaded and its producer state: all of them lie below the cut;
3. wait for the WAL fsync covering them;
4. ONE data object for all partitions (built in a thread), ONE PUT;
5. per partition, one conditional manifest update: new segment(s), producer
   state as of its end, log start; then the batches' index entries point at
   the object (``ObjectRange``); the tail cache still serves recent ones.
   Manifests are written every ``s3.manifest.interval.ms``, not every upload:
   segments uploaded in between wait as "unconfirmed" (``_manifests_due``);
6. the group snapshots of the coordinator partitions whose groups changed
   (``GroupSnapshots.flush``; not when step 5 was deferred: the WAL keeps
   everything anyway, and a flush is one PUT per dirty coordinator partition);
7. WAL trim, per partition: the WAL drops every segment below the oldest one
   still pinned (``_trim_point``). A partition pins the segment of its oldest
   batch at or above its manifest's uploaded end (uploaded-but-unconfirmed
   batches included) and that of a log-start entry its manifest does not hold
   yet (``PartitionStorage.wal_pin``); group entries pin from the cut of the
   last complete group snapshot flush while newer ones exist. A fenced partition (no
   longer ours) pins nothing; one offline from a storage error keeps pinning.
   So one stuck partition holds only its own stretch of the WAL, never the
   others' uploads.

A failed PUT changes nothing and is retried with everything pending. A failed
manifest update keeps its segment as "unconfirmed" and retries exactly that
change (docs/storage.md section 5), so no byte is uploaded twice for it; the
partition's pin keeps its WAL bytes until then, so a crash at any step loses
nothing acked.

This task never waits for merging, retention or garbage collection: they are
tasks of their own (``broker/tiering/tasks.py``). The partition storage state
it writes is described in ``broker/tiering/state.py``.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Protocol

from objectstore import Fenced, ObjectStoreError, SegmentRef, data_object
from objectstore.manifest import Manifest
from wal import WalError

from ..failpoints import crash_point
from ..log.leader_epochs import LeaderEpochCache
from ..log.partition import Partition
from ..log.replica_manager import ReplicaManager, encode_producer_state
from .metered_store import MeteredStore

log = logging.getLogger(__name__)
MAX_UNCONFIRMED = 64     # uploaded segments a partition may have waiting for its manifest


class GroupSnapshotFlush(Protocol):
    """What the upload task needs of the group snapshots (coordinator/snapshot.py)."""

    dirty: Mapping[int, int]   # coordinator partitions with entries not stored yet

    async def flush(self) -> bool: ...


class UploadTask:
    def __init__(self, rm: ReplicaManager, groups: GroupSnapshotFlush, metrics, *,
                 keys: data_object.ObjectKeys | None = None) -> None:
        self.rm = rm
        self.groups = groups              # the group snapshots: flush() -> bool, dirty
        self.metrics = metrics
        self.config = rm.config
        self.keys = keys or data_object.ObjectKeys(rm.node_id)
        self._task: asyncio.Task | None = None
        self._stopping = False
        # every group entry before this WAL cut is in the stored snapshots
        self._snapshot_cut = 0
        self.recorded = asyncio.Event()   # set after each manifest-recording upload (the merge waits for it)
        self._failures = 0
        self._lock = asyncio.Lock()       # one upload at a time: the loop, a hand-off, shutdown
        self._next_manifests = time.monotonic()   # the first upload records at once
        self.uploads = 0

    # ------------------------------------------------------------------ loop
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="tiering upload")

    async def _run(self) -> None:
        interval = self.config["s3.upload.interval.ms"] / 1000
        delay = interval
        while not self._stopping:
            try:
                await asyncio.wait_for(self.rm.upload_wanted.wait(), delay)
            except asyncio.TimeoutError:
                pass
            self.rm.upload_wanted.clear()
            if self._stopping:
                break
            try:
                await self.upload_once()
                self._failures = 0
            except asyncio.CancelledError:
                raise
            except ObjectStoreError as exc:
                self.rm.storage_error("upload", exc)
                self._failures += 1
            except WalError as exc:     # fenced: the broker is rejoining; nothing of that life to upload
                log.warning("upload skipped: %s", exc)
                self._failures += 1
            except Exception:  # a bug must not stop uploads for good
                log.exception("upload failed")
                self._failures += 1
            delay = interval if not self._failures else min(interval * 2 ** self._failures, 5.0)

    async def halt(self) -> None:
        """Stop the loop now, mid-upload if need be (what a crash leaves)."""
        self._stopping = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def stop_loop(self) -> None:
        """Stop the loop after the upload in progress, if any."""
        self._stopping = True
        self.rm.upload_wanted.set()
        if self._task is not None:
            await self._task

    async def drain(self, timeout: float) -> bool:
        """Upload everything left (clean shutdown), for up to ``timeout`` s;
        True if nothing is left only in the WAL."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if await self.upload_once(force=True):
                    log.info("shutdown: everything is uploaded; the WAL is empty of data")
                    return True
            except ObjectStoreError as exc:
                self.rm.storage_error("upload", exc)
                await asyncio.sleep(0.5)
            except WalError as exc:     # fenced (declared dead): nothing of ours is left to upload
                log.warning("shutdown: %s", exc)
                return False
        log.warning("shutdown: the object store did not take everything within %.0f s; "
                    "the WAL keeps the rest for the next start", timeout)
        return False

    async def stop(self, timeout: float) -> bool:
        await self.stop_loop()
        return await self.drain(timeout)

    # ---------------------------------------------------------------- upload
    def _manifests_due(self, force: bool) -> bool:
        """Whether this upload records its segments in the manifests.

        A manifest update is one conditional PUT per partition (plus a GET when
        another writer moved it): per upload, that was most of the PUTs per GB
        and of the embedded store's fsyncs. Deferred, the uploaded segments wait
        as ``unconfirmed`` and the WAL keeps their bytes, so a crash in between
        replays them (the orphaned object is garbage-collected). They are
        recorded every ``s3.manifest.interval.ms``, at shutdown, and early when
        the WAL is half full or a partition has many segments waiting.
        """
        if force or time.monotonic() >= self._next_manifests:
            return True
        if self.rm.wal.size_bytes >= self.config["wal.max.bytes"] // 2:
            return True
        return any(len(p.storage.unconfirmed) >= MAX_UNCONFIRMED for p in self.rm.partitions.values())

    async def upload_once(self, *, force: bool = False) -> bool:
        """One upload; True when everything appended before it (by partitions
        this broker still owns) is now in the object store, recorded in the
        manifests, and the WAL segments holding it were deleted. ``force``
        records the manifests now (shutdown, a hand-off, tests)."""
        async with self._lock:
            return await self._upload_once(force)

    async def record(self, p: Partition) -> bool:
        """Record ``p``'s manifest now (its share state, say), outside the
        interval; True when stored."""
        async with self._lock:
            if p.storage.offline or p.storage.epoch is None:
                return False
            return await self._update_manifest(p)

    async def _upload_once(self, force: bool) -> bool:
        rm = self.rm
        await self._delete_manifests_of_deleted_topics()
        # -- cut and gather, without awaiting in between
        cut = rm.wal.cut()
        rm.pending_upload_bytes = 0
        work: list[tuple[Partition, list, dict | None]] = []
        for p in list(rm.partitions.values()):
            st = p.storage
            if st.offline or st.epoch is None:
                continue
            entries = list(p.entries_from(st.upload_from))
            if entries or st.unconfirmed or p.log_start_offset > st.manifest_log_start \
                    or _epochs_unrecorded(p) or st.share_pins:
                work.append((p, entries, encode_producer_state(p.producers) if entries else None))
        await rm.wal.sync()
        await asyncio.sleep(0)  # let fsync callbacks (group commits) apply first
        # -- one data object for all partitions
        started = time.perf_counter()
        chunks = {p.key: [self._bytes_of(p, e) for e in entries] for p, entries, _ in work if entries}
        key = None
        if chunks:
            body, refs = await asyncio.to_thread(self._build, chunks)
            key = self.keys.next()
            crash_point("upload.before_put")
            await rm.store.put(key, body)
            crash_point("upload.after_put")
            rm.storage_ok("upload")
            refs_by_key = {r.partition_key: r for r in refs}
            batch_bytes = sum(r.length for r in refs)
            self.metrics.uploads.inc()
            self.metrics.uploaded_bytes.inc(batch_bytes)
            for p, entries, pstate in work:
                if entries:
                    p.storage.uploaded(SegmentRef.from_chunk(key, refs_by_key[p.key]), entries, pstate)
        # -- manifests: recorded every s3.manifest.interval.ms, not every upload
        manifests_due = self._manifests_due(force)
        if manifests_due:
            self._next_manifests = time.monotonic() + self.config["s3.manifest.interval.ms"] / 1000
            sem = asyncio.Semaphore(64)

            async def update(p: Partition) -> bool:
                async with sem:
                    return await self._update_manifest(p)
            await asyncio.gather(*(update(p) for p, _, _ in work))
            self.recorded.set()     # partitions have no segments waiting: a merge may take them
        if key is not None:
            crash_point("upload.after_manifests")
        # Every group entry before the cut was noted (its shard dirty) before this
        # call and applied in memory by now: a complete flush covers all of them.
        if (manifests_due or not work) and await self.groups.flush():
            self._snapshot_cut = cut
        if key is not None:
            self.metrics.upload_seconds.observe(time.perf_counter() - started)
            self.uploads += 1
        self._update_cost_gauges()
        # -- WAL trim: below the oldest segment any partition (or the groups) still needs
        before = self._trim_point(cut)
        freed = rm.wal.trim(before)
        if freed:
            log.debug("WAL: %d bytes uploaded and dropped", freed)
        rm._check_wal_room()
        return before == cut and not self._anything_local()

    def _group_pin(self) -> int | None:
        """Group entries not in the stored snapshots lie at or after the cut of
        the last complete flush; None when there are none."""
        return self._snapshot_cut if self.groups.dirty else None

    def _trim_point(self, cut: int) -> int:
        """The WAL segment below which nothing is needed any more: ``cut``
        (everything gathered lies below it) unless a partition's
        ``wal_pin`` or the group entries' pin is older."""
        before = cut
        for p in self.rm.partitions.values():
            pin = p.storage.wal_pin(p)
            if pin is not None and pin < before:
                before = pin
        pin = self._group_pin()
        if pin is not None and pin < before:
            before = pin
        for pin in self.rm.lost_pins():     # lost with batches a takeover may still read
            before = min(before, pin)
        return before

    def _anything_local(self) -> bool:
        return any(not p.storage.fenced and (p.storage.upload_from < p.log_end_offset or p.storage.unconfirmed)
                   for p in self.rm.partitions.values())

    def _bytes_of(self, p: Partition, entry):
        base, _last, _ts, _size, loc = entry
        data = self.rm.tail_cache.peek(p.key, base)
        return data if data is not None else loc   # a WAL Location: read in the build thread

    def _build(self, chunks: dict) -> tuple[list, list]:
        wal = self.rm.wal
        resolved = {k: [wal.read(b) if type(b) is tuple else b for b in bufs]
                    for k, bufs in chunks.items()}
        return data_object.build_parts(resolved)

    async def _update_manifest(self, p: Partition) -> bool:
        """Record the partition's unconfirmed segments and log start; True when stored."""
        st = p.storage
        refs = [ref for ref, _, _ in st.unconfirmed]
        pstate = next((s for _, _, s in reversed(st.unconfirmed) if s is not None), None)
        log_start = p.log_start_offset
        leader_epochs = LeaderEpochCache(p.leader_epochs.entries)
        # share-partition snapshots, taken now: they hold every share entry written so far
        share_upto = st.share_seq
        share = tuple(sorted((g, base64.b64encode(data).decode())
                             for g, data in self.rm.share_snapshots(p).items())) if st.share_pins else None
        epoch = st.epoch
        assert epoch is not None  # upload_once works on claimed partitions only (never unclaimed)

        def record(m: Manifest) -> Manifest:
            todo = [r for r in refs if r.last_offset >= m.next_offset]
            if todo:
                m = m.appended(todo, producer_state=pstate)
            m = replace(m, leader_epochs=leader_epochs.upto(m.next_offset))
            if share is not None:
                m = replace(m, share_state=share)
            return m.with_log_start(min(log_start, m.next_offset))
        try:
            m = await self.rm.manifests.update(p.topic_id, p.index, record, epoch=epoch)
        except Fenced as exc:
            log.error("partition %s-%d: fenced by a newer owner (%s); no longer serving it",
                      p.topic, p.index, exc)
            self.rm.keep_lost(p)
            st.fence()
            return False
        except ObjectStoreError as exc:
            self.rm.storage_error("manifest update", exc)
            return False
        self.rm.storage_ok("manifest update")
        for ref, entries, _ in st.unconfirmed:
            pos = ref.position
            for base, _last, _ts, size, _loc in entries:
                p.set_location(base, (ref.object_key, pos, size))
                pos += size
        st.recorded(m)
        st.share_recorded(share_upto)
        return True

    def _update_cost_gauges(self) -> None:
        ingested = self.metrics.bytes_in_total._value.get()
        if ingested > 0:
            store = self.rm.store
            assert isinstance(store, MeteredStore)  # the broker's store counts its requests
            self.metrics.puts_per_gb.set(store.puts / (ingested / 1e9))
            self.metrics.gets_per_gb.set(store.gets / (ingested / 1e9))
        tc, bc = self.rm.tail_cache, self.rm.block_cache
        self.metrics.cache_hit_ratio.labels("tail").set(tc.hits / max(1, tc.hits + tc.misses))
        self.metrics.cache_hit_ratio.labels("block").set(bc.hit_ratio)
        self.metrics.cache_bytes.labels("tail").set(tc.size_bytes)
        self.metrics.cache_bytes.labels("block").set(bc.size_bytes)

    async def _delete_manifests_of_deleted_topics(self) -> None:
        from objectstore import manifest_key
        while self.rm.deleted_topics:
            topic = self.rm.deleted_topics[0]
            for i in range(topic.partitions):
                await self.rm.store.delete(manifest_key(topic.topic_id.bytes, i))
            self.rm.deleted_topics.pop(0)


def _epochs_unrecorded(p: Partition) -> bool:
    """The partition's leader-epoch history has entries its manifest lacks
    (a new owner that has not appended yet): worth one manifest update."""
    m = p.storage.manifest
    return isinstance(m, Manifest) and p.leader_epochs.upto(m.next_offset) != m.leader_epochs
