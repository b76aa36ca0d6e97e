"""Uploader: moves durable WAL bytes to the object store, then lets the WAL drop them.

One task does every object-store write of a broker, so no two writes to one
manifest race in this process. Each upload (every ``s3.upload.interval.ms``,
or sooner once ``s3.upload.bytes`` are pending):

1. delete the manifests of topics deleted since the last one;
2. ``wal.cut()`` and, without awaiting, gather every partition's batches not
   yet uploaded and its producer state: all of them lie below the cut;
3. wait for the WAL fsync covering them (and the group commits before the cut);
4. ONE data object for all partitions (built in a thread), ONE PUT;
5. per partition, one conditional manifest update: new segment(s), producer
   state as of its end, log start; then the batches' index entries point at
   the object (``ObjectRange``); the tail cache still serves recent ones.
   Manifests are written every ``s3.manifest.interval.ms``, not every upload:
   segments uploaded in between wait as "unconfirmed" (``_manifests_due``);
6. the group snapshots of the coordinator partitions whose groups changed
   (not when step 5 was deferred: the WAL stays anyway);
7. only if every step succeeded for every partition: ``wal.trim(cut)``.

A failed PUT changes nothing and is retried with everything pending. A failed
manifest update keeps its segment as "unconfirmed" and retries exactly that
change (docs/storage.md section 5), so no byte is uploaded twice for it. The
WAL keeps everything until then, so a crash at any step loses nothing acked.

Between uploads, at their own intervals: retention (``retention.ms``,
``retention.bytes``) advances log start offsets; compaction merges small
segments into per-partition objects; garbage collection deletes data objects
no manifest references once they are older than ``s3.gc.grace.ms``.
Compaction runs as a task of its own next to the upload loop: its reads and
writes are paced (``s3.compaction.io.max.bytes.per.second``), so a pass takes seconds,
and uploads must not wait for it. Its manifest swaps are conditional writes
like the uploads' (either may retry after the other), and it only re-points
index entries of ranges already uploaded.
"""
from __future__ import annotations

import asyncio
import logging
import time

from objectstore import Fenced, ObjectStoreError, SegmentRef, data_object
from objectstore.compaction import (CompactionConflict, RatePacer, collect_garbage, compact_run,
                                    plan_compaction, replace_segments)
from objectstore.manifest import Manifest


from ..failpoints import crash_point
from ..log.partition import Partition, RemoteSegment
from ..log.replica_manager import ReplicaManager, is_object_range, encode_producer_state, now_ms

log = logging.getLogger(__name__)
MAX_RUN_SEGMENTS = 256
MAX_UNCONFIRMED = 64     # uploaded segments a partition may have waiting for its manifest


class Uploader:
    def __init__(self, rm: ReplicaManager, groups, metrics) -> None:
        self.rm = rm
        self.groups = groups              # the group snapshots: async flush() -> bool
        self.metrics = metrics
        self.config = rm.config
        self.keys = data_object.ObjectKeys(rm.node_id)
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._unreferenced_since: dict[str, int] = {}  # GC: an object must stay unreferenced a grace period
        self._failures = 0
        now = time.monotonic()
        self._next_retention = now + self.config["log.retention.check.interval.ms"] / 1000
        self._next_compaction = now + self.config["s3.compaction.interval.ms"] / 1000
        rate = self.config["s3.compaction.io.max.bytes.per.second"]
        self._compaction_pacer = RatePacer(rate) if rate > 0 else None
        self._compacting: asyncio.Task | None = None
        self._next_gc = now + self.config["s3.gc.interval.ms"] / 1000
        self._next_manifests = now   # the first upload records at once
        self.uploads = 0

    # ------------------------------------------------------------------ loop
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

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
                await self.housekeeping()
                self._failures = 0
            except asyncio.CancelledError:
                raise
            except ObjectStoreError as exc:
                self.rm.storage_error("upload", exc)
                self._failures += 1
            except Exception:  # a bug must not stop uploads for good
                log.exception("upload failed")
                self._failures += 1
            delay = interval if not self._failures else min(interval * 2 ** self._failures, 5.0)

    async def stop(self, timeout: float) -> bool:
        """Stop the loop, then upload everything left (clean shutdown), for up to
        ``timeout`` s; True if nothing is left only in the WAL."""
        self._stopping = True
        self.rm.upload_wanted.set()
        if self._task is not None:
            await self._task
        if self._compacting is not None and not self._compacting.done():
            # a merge not yet swapped in is garbage (GC takes it); one swapped in is complete
            if self._compaction_pacer is not None:
                self._compaction_pacer.stop()      # a paced write in the store's thread ends too
            self._compacting.cancel()
            await asyncio.gather(self._compacting, return_exceptions=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if await self.upload_once(force=True):
                    log.info("shutdown: everything is uploaded; the WAL is empty of data")
                    return True
            except ObjectStoreError as exc:
                self.rm.storage_error("upload", exc)
                await asyncio.sleep(0.5)
        log.warning("shutdown: the object store did not take everything within %.0f s; "
                    "the WAL keeps the rest for the next start", timeout)
        return False

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
        return any(len(p.unconfirmed) >= MAX_UNCONFIRMED for p in self.rm.partitions.values())

    async def upload_once(self, *, force: bool = False) -> bool:
        """One upload; True when everything appended before it is now in the
        object store, recorded in the manifests, and the WAL segments holding it
        were deleted. ``force`` records the manifests now (shutdown, tests)."""
        rm = self.rm
        await self._delete_manifests_of_deleted_topics()
        # -- cut and gather, without awaiting in between
        cut = rm.wal.cut()
        rm.pending_upload_bytes = 0
        complete = True
        work: list[tuple[Partition, list, dict | None]] = []
        for p in list(rm.partitions.values()):
            if p.offline or p.epoch is None:
                complete = False
                continue
            entries = list(p.entries_from(p.upload_from))
            if entries or p.unconfirmed or p.log_start_offset > p.manifest_log_start:
                work.append((p, entries, encode_producer_state(p.producers) if entries else None))
        await rm.wal.sync()
        await asyncio.sleep(0)  # let fsync callbacks (group commits) apply first
        # -- one data object for all partitions
        started = time.perf_counter()
        chunks = {p.key: [self._bytes_of(p, e) for e in entries] for p, entries, _ in work if entries}
        refs_by_key = {}
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
                    ref = SegmentRef.from_chunk(key, refs_by_key[p.key])
                    p.unconfirmed.append((ref, entries, pstate))
                    p.upload_from = ref.last_offset + 1
        # -- manifests: recorded every s3.manifest.interval.ms, not every upload
        manifests_due = self._manifests_due(force)
        if manifests_due:
            self._next_manifests = time.monotonic() + self.config["s3.manifest.interval.ms"] / 1000
            sem = asyncio.Semaphore(64)

            async def update(p: Partition) -> bool:
                async with sem:
                    return await self._update_manifest(p)
            results = await asyncio.gather(*(update(p) for p, _, _ in work))
            complete = complete and all(results)
        elif work:
            complete = False    # the WAL keeps these bytes until their manifests say so
        if key is not None:
            crash_point("upload.after_manifests")
        # Every group entry before the cut was noted (its shard dirty) before this
        # call and applied in memory by now: the shards flushed cover it. Not when
        # this upload deferred its manifests: the WAL stays anyway, and a flush is
        # one PUT per dirty coordinator partition.
        if (manifests_due or not work) and not await self.groups.flush():
            complete = False
        if key is not None:
            self.metrics.upload_seconds.observe(time.perf_counter() - started)
            self.uploads += 1
        self._update_cost_gauges()
        if complete:
            freed = rm.wal.trim(cut)
            if freed:
                log.debug("WAL: %d bytes uploaded and dropped", freed)
            rm._check_wal_room()
        return complete and not self._anything_local()

    def _anything_local(self) -> bool:
        return any(p.upload_from < p.log_end_offset or p.unconfirmed
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
        refs = [ref for ref, _, _ in p.unconfirmed]
        pstate = next((s for _, _, s in reversed(p.unconfirmed) if s is not None), None)
        log_start = p.log_start_offset

        def record(m: Manifest) -> Manifest:
            todo = [r for r in refs if r.last_offset >= m.next_offset]
            if todo:
                m = m.appended(todo, producer_state=pstate)
            return m.with_log_start(min(log_start, m.next_offset))
        try:
            m = await self.rm.manifests.update(p.topic_id, p.index, record, epoch=p.epoch)
        except Fenced as exc:
            log.error("partition %s-%d: fenced by a newer owner (%s); no longer serving it",
                      p.topic, p.index, exc)
            p.offline = True
            return False
        except ObjectStoreError as exc:
            self.rm.storage_error("manifest update", exc)
            return False
        self.rm.storage_ok("manifest update")
        p.manifest = m
        p.uploaded_end = m.next_offset
        p.manifest_log_start = m.log_start_offset
        for ref, entries, _ in p.unconfirmed:
            pos = ref.position
            for base, _last, _ts, size, _loc in entries:
                p.set_location(base, (ref.object_key, pos, size))
                pos += size
        p.unconfirmed.clear()
        return True

    async def _delete_manifests_of_deleted_topics(self) -> None:
        from objectstore import manifest_key
        while self.rm.deleted_topics:
            topic = self.rm.deleted_topics[0]
            for i in range(topic.partitions):
                await self.rm.store.delete(manifest_key(topic.topic_id.bytes, i))
            self.rm.deleted_topics.pop(0)

    def _update_cost_gauges(self) -> None:
        ingested = self.metrics.bytes_in_total._value.get()
        if ingested > 0:
            store = self.rm.store
            self.metrics.puts_per_gb.set(store.puts / (ingested / 1e9))
            self.metrics.gets_per_gb.set(store.gets / (ingested / 1e9))
        tc, bc = self.rm.tail_cache, self.rm.block_cache
        self.metrics.cache_hit_ratio.labels("tail").set(tc.hits / max(1, tc.hits + tc.misses))
        self.metrics.cache_hit_ratio.labels("block").set(bc.hit_ratio)
        self.metrics.cache_bytes.labels("tail").set(tc.size_bytes)
        self.metrics.cache_bytes.labels("block").set(bc.size_bytes)

    # ----------------------------------------------------------- housekeeping
    async def housekeeping(self) -> None:
        now = time.monotonic()
        if now >= self._next_retention:
            self._next_retention = now + self.config["log.retention.check.interval.ms"] / 1000
            self.enforce_retention()
        if now >= self._next_compaction and (self._compacting is None or self._compacting.done()):
            self._next_compaction = now + self.config["s3.compaction.interval.ms"] / 1000
            self._compacting = asyncio.get_running_loop().create_task(self._compact_in_background())
        if now >= self._next_gc:
            self._next_gc = now + self.config["s3.gc.interval.ms"] / 1000
            await self.collect_garbage()

    def enforce_retention(self) -> int:
        """Advance log starts past expired uploaded data (retention.ms, retention.bytes)."""
        rm = self.rm
        moved = 0
        now = now_ms()
        for p in list(rm.partitions.values()):
            topic = rm.metadata.topics.get(p.topic)
            if topic is None or p.offline:
                continue
            if "delete" not in rm.topic_config(topic, "cleanup.policy"):
                continue
            offset = p.retention_offset(now, rm.topic_config(topic, "retention.ms"),
                                        rm.topic_config(topic, "retention.bytes"), p.uploaded_end)
            if offset is not None and offset > p.log_start_offset:
                fut = rm.delete_records(p, offset)
                fut.add_done_callback(lambda f: f.exception())
                log.info("partition %s-%d: retention moved the log start to %d", p.topic, p.index, offset)
                moved += 1
        return moved

    async def _compact_in_background(self) -> None:
        try:
            await self.compact()
        except asyncio.CancelledError:
            raise
        except ObjectStoreError as exc:
            self.rm.storage_error("compaction", exc)
        except Exception:  # a bug must not stop compaction for good, nor go unseen
            log.exception("compaction failed")

    async def compact(self) -> int:
        """Merge runs of small segments into per-partition objects (a bounded amount per call)."""
        rm = self.rm
        budget = self.config["s3.compaction.max.bytes.per.run"]
        merged = 0
        for p in list(rm.partitions.values()):
            m = getattr(p, "manifest", None)
            if m is None or p.offline or p.unconfirmed or budget <= 0:
                continue
            for run in plan_compaction(m, target_bytes=self.config["s3.compaction.target.bytes"],
                                       max_segments=self.config["s3.compaction.max.segments"]):
                if budget <= 0:
                    break
                run = run[:MAX_RUN_SEGMENTS]  # bound the GETs of one merge
                crash_point("compaction.before_put")
                waited = self._compaction_pacer.waited if self._compaction_pacer else 0.0
                new = await compact_run(rm.store, self.keys, run, p.key, pacer=self._compaction_pacer)
                if self._compaction_pacer:
                    self.metrics.compaction_paced.inc(self._compaction_pacer.waited - waited)
                crash_point("compaction.after_put")
                try:
                    m = await rm.manifests.update(p.topic_id, p.index, replace_segments(run, new),
                                                  epoch=p.epoch)
                except (CompactionConflict, Fenced) as exc:
                    log.info("partition %s-%d: compaction skipped: %s", p.topic, p.index, exc)
                    break
                crash_point("compaction.after_manifest")
                p.manifest = m
                self._reindex_compacted(p, run, new)
                size = sum(s.length for s in run)
                budget -= size
                merged += 1
                self.metrics.compactions.inc()
                self.metrics.compacted_bytes.inc(new.length)
                log.debug("partition %s-%d: merged %d segments (%d bytes) into %s", p.topic, p.index,
                          len(run), size, new.object_key)
        self._segment_size_gauge()
        return merged

    @staticmethod
    def _reindex_compacted(p: Partition, run, new: SegmentRef) -> None:
        """Point the index entries of the merged range at the new object.

        The new chunk is the old chunks back to back, so expanded batches keep
        their order and sizes: their new positions follow by adding up sizes.
        """
        entries = [e for e in p.entries_from(run[0].first_offset) if e[0] <= run[-1].last_offset]
        if not entries or entries[-1][1] != run[-1].last_offset:
            return
        if all(is_object_range(e[4]) for e in entries):
            # position of the first kept batch inside the merged chunk
            pos = new.position
            for seg in run:
                if seg.last_offset >= entries[0][0]:
                    pos += entries[0][4][1] - seg.position
                    break
                pos += seg.length
            out = []
            for base, last, ts, size, _loc in entries:
                out.append((base, last, ts, size, (new.object_key, pos, size)))
                pos += size
        else:
            out = [(new.first_offset, new.last_offset, new.max_timestamp, new.length, RemoteSegment(new))]
        p.replace_entries(entries[0][0], run[-1].last_offset, out)
        p.set_log_start_offset(p.log_start_offset, force=True)

    def _segment_size_gauge(self) -> None:
        sizes = [s.length for p in self.rm.partitions.values()
                 if getattr(p, "manifest", None) is not None for s in p.manifest.segments]
        if sizes:
            self.metrics.avg_object_bytes.set(sum(sizes) / len(sizes))

    async def collect_garbage(self) -> list[str]:
        """Delete this broker's data objects that no manifest references any more."""
        rm = self.rm
        now_ns = time.time_ns()  # before reading references (the scan must not eat the grace)
        referenced = set()
        for p in rm.partitions.values():
            m = getattr(p, "manifest", None)
            if m is None or p.offline:
                return []  # not every reference is known: collect nothing
            referenced.update(s.object_key for s in m.segments)
            referenced.update(ref.object_key for ref, _, _ in p.unconfirmed)
        deleted = await collect_garbage(rm.store, referenced, now_ns=now_ns,
                                        grace_seconds=self.config["s3.gc.grace.ms"] / 1000,
                                        prefix=f"data/{rm.node_id}/",
                                        unreferenced_since=self._unreferenced_since)
        for key in deleted:
            rm.block_cache.discard(key)
        if deleted:
            self.metrics.gc_deleted.inc(len(deleted))
            log.info("garbage collection: deleted %d unreferenced data objects", len(deleted))
        return deleted
