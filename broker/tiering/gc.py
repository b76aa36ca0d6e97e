"""The garbage-collection task: deletes this broker's data objects no manifest references.

Every ``s3.gc.interval.ms``. What is referenced comes from EVERY manifest in
the bucket, not only this broker's partitions: a partition that moved to
another broker (or was claimed by one: this broker is fenced) still points
into objects this broker wrote. So a run

1. takes ``now`` (before reading anything: the scan must not eat the grace);
2. collects, from memory, the manifests of the partitions this broker owns
   and the segments it uploaded whose manifest update has not landed
   (``unconfirmed``: in flight, only their writer knows them);
3. LISTs ``manifests/`` and GETs every manifest it does not own (fenced
   partitions included: the bucket's copy is the truth); a manifest gone
   meanwhile (a deleted topic) references nothing; one that cannot be read
   aborts the run (never counted as empty);
4. deletes, under its own prefix ``data/<node.id>/`` only (only the writer
   knows its own objects in flight), the objects nothing references that
   are older than ``s3.gc.grace.ms`` by their key and were seen unreferenced
   for that long (``objectstore.merge.collect_garbage``).

Cost per run: one LIST of ``data/<node.id>/``, one LIST of ``manifests/``
(1000 keys a page), one GET per manifest owned by another broker, and one
DELETE per object deleted. With one broker there is nothing to GET.
"""
from __future__ import annotations

import asyncio
import logging
import time

from objectstore import Manifest, NotFound, collect_garbage, manifest_key
from objectstore.manifest import MANIFEST_PREFIX

from ..log.replica_manager import ReplicaManager
from .periodic import PeriodicTask

log = logging.getLogger(__name__)
GET_CONCURRENCY = 16     # manifest GETs in flight per run


class GarbageCollector(PeriodicTask):
    name = "garbage collection"

    def __init__(self, rm: ReplicaManager, metrics) -> None:
        super().__init__(rm, rm.config["s3.gc.interval.ms"] / 1000)
        self.metrics = metrics
        self._unreferenced_since: dict[str, int] = {}  # an object must stay unreferenced a grace period

    async def run_once(self) -> None:
        await self.collect()

    async def referenced(self) -> set[str]:
        """Every data object key some manifest in the bucket (or an upload of
        ours in flight) references. Raises if a manifest cannot be read."""
        rm = self.rm
        referenced: set[str] = set()
        owned: dict[str, Manifest] = {}
        for p in list(rm.partitions.values()):
            st = p.storage
            referenced.update(ref.object_key for ref, _, _ in st.unconfirmed)
            if st.manifest is not None and st.epoch is not None and not st.fenced:
                owned[manifest_key(p.topic_id, p.index)] = st.manifest
        for m in owned.values():
            referenced.update(s.object_key for s in m.segments)
        foreign = [k for k in await rm.store.list(MANIFEST_PREFIX) if k.endswith(".json") and k not in owned]
        sem = asyncio.Semaphore(GET_CONCURRENCY)

        async def read(key: str) -> Manifest | None:
            async with sem:
                try:
                    data = await rm.store.get(key)
                except NotFound:
                    return None     # deleted since the LIST (a deleted topic): references nothing
            return Manifest.decode(data, key=key)
        for other in await asyncio.gather(*(read(k) for k in foreign)):
            if other is not None:
                referenced.update(s.object_key for s in other.segments)
        return referenced

    async def collect(self, *, now_ns: int | None = None) -> list[str]:
        """One run; returns the keys deleted. ``now_ns`` (tests) must be taken
        before the references are read."""
        rm = self.rm
        now_ns = time.time_ns() if now_ns is None else now_ns
        referenced = await self.referenced()
        deleted = await collect_garbage(rm.store, referenced, now_ns=now_ns,
                                        grace_seconds=rm.config["s3.gc.grace.ms"] / 1000,
                                        prefix=f"data/{rm.node_id}/",
                                        unreferenced_since=self._unreferenced_since)
        for key in deleted:
            rm.block_cache.discard(key)
        if deleted:
            self.metrics.gc_deleted.inc(len(deleted))
            log.info("garbage collection: deleted %d unreferenced data objects", len(deleted))
        return deleted
