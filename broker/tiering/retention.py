"""The retention task: Kafka's ``retention.ms`` / ``retention.bytes`` over uploaded data.

Every ``log.retention.check.interval.ms``, per partition of a topic whose
``cleanup.policy`` includes ``delete``: the log start moves past the whole
uploaded entries (batches or segments) that are older than ``retention.ms``
or beyond ``retention.bytes`` (Kafka's defaults: 7 days / unlimited). It is
written as a log-start WAL entry, as DeleteRecords does; the upload task's
next manifest update records it and drops the segments below it, and GC
deletes the objects nothing references any more. Only uploaded entries may
go (below the manifest's uploaded end), so a retention never outruns the
bucket.
"""
from __future__ import annotations

import logging

from ..log.replica_manager import ReplicaManager, now_ms
from .periodic import PeriodicTask

log = logging.getLogger(__name__)


class RetentionTask(PeriodicTask):
    name = "retention"

    def __init__(self, rm: ReplicaManager) -> None:
        super().__init__(rm, rm.config["log.retention.check.interval.ms"] / 1000)

    async def run_once(self) -> None:
        self.enforce()

    def enforce(self) -> int:
        """Advance log starts past expired uploaded data; returns how many moved."""
        rm = self.rm
        moved = 0
        now = now_ms()
        for p in list(rm.partitions.values()):
            topic = rm.metadata.topics.get(p.topic)
            if topic is None or p.storage.offline:
                continue
            if "delete" not in rm.topic_config(topic, "cleanup.policy"):
                continue
            offset = p.retention_offset(now, rm.topic_config(topic, "retention.ms"),
                                        rm.topic_config(topic, "retention.bytes"), p.storage.uploaded_end)
            if offset is not None and offset > p.log_start_offset:
                fut = rm.delete_records(p, offset)
                fut.add_done_callback(lambda f: f.exception())
                log.info("partition %s-%d: retention moved the log start to %d", p.topic, p.index, offset)
                moved += 1
        return moved
