"""The tiering tasks of one broker, started and stopped together (``Tiering``).

Each is a small task with its own state and its own interval, so none waits
for another:

==================  ==============================  ===========================================
task                module                          every
==================  ==============================  ===========================================
upload              ``upload.UploadTask``           ``s3.upload.interval.ms``, or sooner once
                                                    ``s3.upload.bytes`` are pending
merge               ``merge.MergeTask``             ``s3.merge.interval.ms``
retention           ``retention.RetentionTask``     ``log.retention.check.interval.ms``
garbage collection  ``gc.GarbageCollector``         ``s3.gc.interval.ms``
==================  ==============================  ===========================================

Uploads and merges both write manifests, with conditional updates at the
partition's epoch (either may retry after the other); a merge only re-points
index entries of ranges already uploaded. Retention only appends log-start
entries (as DeleteRecords does), which the next upload records. GC only reads
manifests and deletes unreferenced objects of this broker older than the
grace period, which covers the objects of uploads and merges in flight.
"""
from __future__ import annotations

import asyncio

from objectstore import data_object

from .gc import GarbageCollector
from .merge import MergeTask
from .retention import RetentionTask
from .upload import UploadTask


class Tiering:
    """Starts and stops the tiering tasks; the broker's one handle on them."""

    def __init__(self, rm, groups, metrics) -> None:
        keys = data_object.ObjectKeys(rm.node_id)    # one sequence for uploads and merges
        self.upload = UploadTask(rm, groups, metrics, keys=keys)
        self.merge = MergeTask(rm, metrics, keys=keys)
        self.merge.recorded = self.upload.recorded
        self.retention = RetentionTask(rm)
        self.gc = GarbageCollector(rm, metrics)

    def start(self) -> None:
        for task in (self.upload, self.merge, self.retention, self.gc):
            task.start()

    async def halt(self) -> None:
        """Stop every task now, uploading nothing more (what a crash leaves)."""
        await asyncio.gather(self.upload.halt(), self.merge.stop(), self.retention.stop(), self.gc.stop())

    async def stop(self, timeout: float) -> bool:
        """Clean shutdown: let the upload in progress finish, stop the other
        tasks (a merge not yet swapped in is garbage; one swapped in is
        complete), then upload everything left, for up to ``timeout`` s; True
        if nothing is left only in the WAL."""
        await self.upload.stop_loop()
        await asyncio.gather(self.merge.stop(), self.retention.stop(), self.gc.stop())
        return await self.upload.drain(timeout)
