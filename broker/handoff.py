"""The old owner's side of a move: seal, upload, flip (docs/cluster.md section 7).

The cluster metadata says a partition this broker owns should move (its
target is set: AlterPartitionReassignments, the balancer, a drain); the
ownership delta hands that to ``HandOffs.note``. One pass over everything
pending, so that moves started together cost one upload and one metadata
update between them:

1. seal each partition (no more appends: Produce answers
   NOT_LEADER_OR_FOLLOWER) and each coordinator partition (its groups answer
   NOT_COORDINATOR);
2. one forced upload: every batch appended before the seal lands in one data
   object and in the partitions' manifests, with their producer state; then
   the group snapshots of sealed coordinator partitions are written;
3. flip, in one conditional metadata update: each partition that is fully
   recorded and still ours at the same epoch and target goes to its target at
   epoch + 1. The delta that follows makes this broker stop serving it.

A partition not ready (still being claimed, or the bucket refused the upload)
stays sealed and is retried after a back-off; a cancelled move (target
cleared) unseals it. Nothing here is needed for correctness of what others
read: the flip is conditional and the new owner's claim fences this broker.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING

from objectstore import ObjectStoreError

from .cluster import NO_OWNER, HandOff
from .coordinator.shards import ACTIVE, SEALED
from .failpoints import crash_point
from .store_errors import StoreErrors

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger(__name__)

Key = tuple[uuid.UUID, int]     # (topic id, partition index)


class HandOffs:
    def __init__(self, broker: "Broker") -> None:
        self.broker = broker
        self.pending: dict[Key, HandOff] = {}
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._stopped = False
        self._errors = StoreErrors(log)
        self.moved = 0          # partitions handed off by this broker (tests, metrics)

    def note(self, handoffs: list[HandOff]) -> None:
        """Moves set, changed or cancelled for partitions this broker owns."""
        for h in handoffs:
            key = (h.topic.topic_id, h.index)
            if h.target == NO_OWNER:
                if self.pending.pop(key, None) is not None:
                    self._unseal(h)
                    log.info("partition %s-%d: move cancelled; serving it again", h.topic.name, h.index)
            else:
                self.pending[key] = h
        if self.pending and not self._stopped:
            self._wake.set()
            if self._task is None or self._task.done():
                self._task = asyncio.get_running_loop().create_task(self._run(), name="hand-offs")

    def forget(self, topic_id: uuid.UUID, index: int) -> None:
        """The partition is no longer ours (moved, or taken by an unclean election)."""
        self.pending.pop((topic_id, index), None)

    async def stop(self) -> None:
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        delay = 0.05
        while self.pending and not self._stopped:
            self._wake.clear()
            try:
                progressed = await self.hand_off_once()
                self._errors.ok("hand-off")
            except ObjectStoreError as exc:
                self._errors.failed("hand-off", exc)
                progressed = False
            except Exception:       # a bug must not leave partitions sealed for good
                log.exception("hand-off failed; retrying")
                progressed = False
            if not self.pending:
                return
            delay = 0.05 if progressed else min(delay * 2, 2.0)
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except asyncio.TimeoutError:
                pass

    async def hand_off_once(self) -> bool:
        """Steps 1-3 of the module docstring for everything pending; True if
        some partition moved."""
        b = self.broker
        batch = dict(self.pending)
        for h in batch.values():
            self._seal(h)
        await b.tiering.upload.upload_once(force=True)
        if any(h.coordinator for h in batch.values()):
            await b.group_snapshots.flush()
        ready = [h for h in batch.values() if self._recorded(h)]
        if not ready:
            return False
        crash_point("handoff.before_flip")
        moved = await b.cluster.flip([(h.topic.topic_id, h.index, h.epoch, h.target) for h in ready])
        crash_point("handoff.after_flip")
        for h in ready:
            key = (h.topic.topic_id, h.index)
            current = self.pending.get(key)
            if key in moved:        # (the flip's own delta may have forgotten it already)
                if current is h:
                    del self.pending[key]
                self.moved += 1
                log.info("partition %s-%d: handed off to node %d at epoch %d", h.topic.name, h.index,
                         h.target, h.epoch + 1)
            elif current is h:      # the condition failed: no longer ours, or another target
                del self.pending[key]
                self._unseal(h)
            # else changed meanwhile: the next pass has the new one
        return bool(moved)

    def _seal(self, h: HandOff) -> None:
        self._set_sealed(h, True)

    def _unseal(self, h: HandOff) -> None:
        self._set_sealed(h, False)

    def _set_sealed(self, h: HandOff, sealed: bool) -> None:
        """Seal (no appends; a coordinator partition's groups answer
        NOT_COORDINATOR) or unseal the partition, if it is still this one."""
        b = self.broker
        if h.coordinator:
            before, after = (ACTIVE, SEALED) if sealed else (SEALED, ACTIVE)
            if b.coordinator_shards.state.get(h.index) == before:
                b.coordinator_shards.state[h.index] = after
            return
        p = b.replicas.get(h.topic.name, h.index)
        if p is not None and p.topic_id == h.topic.topic_id.bytes:
            p.sealed = sealed

    def _recorded(self, h: HandOff) -> bool:
        b = self.broker
        if h.coordinator:
            return (b.coordinator_shards.state.get(h.index) == SEALED
                    and h.index not in b.group_snapshots.dirty)
        p = b.replicas.get(h.topic.name, h.index)
        return (p is not None and p.topic_id == h.topic.topic_id.bytes and p.sealed
                and p.storage.all_recorded(p))
