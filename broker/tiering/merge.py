"""The merge task: small uploaded segments become per-partition objects.

Every ``s3.merge.interval.ms``, right after the next upload that records the
manifests (``ready``), a pass plans, per owned partition, runs of
small adjacent segments (``objectstore.merge.plan_merge``: under
``s3.merge.target.bytes``, or ``s3.merge.max.segments`` tiny ones), merges
each into one new object (``merge_run``) and swaps the run for the new
segment in one conditional manifest write at the partition's epoch
(``replace_segments``); the partition index follows. A pass merges at most
``s3.merge.max.bytes.per.run`` bytes.

Its reads and writes are paced (``s3.merge.io.max.bytes.per.second``, a
``RatePacer``), so a pass takes seconds; it is a task of its own and the
upload task never waits for it. Uploads and merges both write manifests with
conditional updates (either may retry after the other), and a merge only
re-points index entries of ranges already uploaded; partitions with segments
waiting for their manifest are left for the next pass. Stopping cancels a
pass: a merged object not swapped in yet is garbage (GC takes it); one
swapped in is complete.
"""
from __future__ import annotations

import asyncio
import logging

from objectstore import Fenced, SegmentRef, data_object
from objectstore.merge import MergeConflict, RatePacer, merge_run, plan_merge, replace_segments

from ..failpoints import crash_point
from ..log.partition import Partition, RemoteSegment
from ..log.replica_manager import ReplicaManager, is_object_range
from .periodic import PeriodicTask

log = logging.getLogger(__name__)
MAX_RUN_SEGMENTS = 256


class MergeTask(PeriodicTask):
    name = "merge"

    def __init__(self, rm: ReplicaManager, metrics, *, keys: data_object.ObjectKeys | None = None) -> None:
        super().__init__(rm, rm.config["s3.merge.interval.ms"] / 1000)
        self.config = rm.config
        self.metrics = metrics
        self.keys = keys or data_object.ObjectKeys(rm.node_id)
        self.recorded: asyncio.Event | None = None   # the upload task's (Tiering wires it)
        rate = self.config["s3.merge.io.max.bytes.per.second"]
        self.pacer = RatePacer(rate) if rate > 0 else None

    async def ready(self) -> None:
        """Run right after an upload recorded its segments in the manifests.

        A partition with segments waiting for their manifest update is left
        alone (both would write its manifest), and under steady produce that
        is most of the time (an upload every ``s3.upload.interval.ms``, a
        recording every ``s3.manifest.interval.ms``): on a timer of its own a
        pass would find a busy partition eligible only by chance. Without
        recordings (nothing produced), the pass runs after one manifest
        interval anyway."""
        if self.recorded is None:
            return
        self.recorded.clear()
        try:
            await asyncio.wait_for(self.recorded.wait(), self.config["s3.manifest.interval.ms"] / 1000)
        except asyncio.TimeoutError:
            pass

    async def run_once(self) -> None:
        await self.merge()

    async def stop(self) -> None:
        if self.pacer is not None:
            self.pacer.stop()      # a paced write in the store's thread ends too
        await super().stop()

    async def merge(self) -> int:
        """Merge runs of small segments into per-partition objects (a bounded amount per call)."""
        rm = self.rm
        budget = self.config["s3.merge.max.bytes.per.run"]
        merged = 0
        for p in list(rm.partitions.values()):
            st = p.storage
            m = st.manifest
            if m is None or st.offline or st.unconfirmed or budget <= 0:
                continue
            for run in plan_merge(m, target_bytes=self.config["s3.merge.target.bytes"],
                                  max_segments=self.config["s3.merge.max.segments"]):
                if budget <= 0:
                    break
                run = run[:MAX_RUN_SEGMENTS]  # bound the GETs of one merge
                crash_point("merge.before_put")
                waited = self.pacer.waited if self.pacer else 0.0
                new = await merge_run(rm.store, self.keys, run, p.key, pacer=self.pacer)
                if self.pacer:
                    self.metrics.merge_paced.inc(self.pacer.waited - waited)
                crash_point("merge.after_put")
                try:
                    m = await rm.manifests.update(p.topic_id, p.index, replace_segments(run, new),
                                                  epoch=st.epoch)
                except (MergeConflict, Fenced) as exc:
                    log.info("partition %s-%d: merge skipped: %s", p.topic, p.index, exc)
                    break
                crash_point("merge.after_manifest")
                st.set_manifest(m)
                self._reindex_merged(p, run, new)
                size = sum(s.length for s in run)
                budget -= size
                merged += 1
                self.metrics.merges.inc()
                self.metrics.merged_bytes.inc(new.length)
                log.debug("partition %s-%d: merged %d segments (%d bytes) into %s", p.topic, p.index,
                          len(run), size, new.object_key)
        self._segment_size_gauge()
        return merged

    @staticmethod
    def _reindex_merged(p: Partition, run, new: SegmentRef) -> None:
        """Point the index entries of the merged range at the new object.

        The new chunk is the old chunks back to back, so expanded batches keep
        their order and sizes: their new positions follow by adding up sizes.
        """
        entries = [e for e in p.entries_from(run[0].first_offset) if e[0] <= run[-1].last_offset]
        if not entries or entries[-1][1] != run[-1].last_offset:
            return
        out: list[tuple[int, int, int, int, object]]    # (base, last, max_ts, size, loc)
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
                 if p.storage.manifest is not None for s in p.storage.manifest.segments]
        if sizes:
            self.metrics.avg_object_bytes.set(sum(sizes) / len(sizes))
