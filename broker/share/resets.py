"""Share-group offset resets and deletes that reach every partition owner.

AlterShareGroupOffsets and DeleteShareGroupOffsets arrive at the group
coordinator's broker, but a share-partition's state has one writer, the
partition's owner (docs/share-groups.md §5 invariant 6). Sluice has no
broker-to-broker RPC, so the coordinator hands the change over through the
cluster metadata document (docs/share-groups.md §10):

1. Coordinator (``request``): one conditional update adds
   ``share_resets[partition][group] = [reset id, start offset]`` (-1:
   delete) for each partition whose owner is live; the reset id is the
   generation of the document that holds it, so ids only grow. A partition
   whose owner is not live answers COORDINATOR_NOT_AVAILABLE (nothing
   written: its state has no one to change it now).
2. Owner (``apply_pending``, on every version of the document it installs
   and whenever it starts serving a partition): for each entry of a
   partition it serves, claimed at the document's epoch and not sealed for
   a hand-off, it compares the id with the one the state holds
   (``reset_id``, kept in every snapshot): lower, it resets the state in
   memory and appends the snapshot to its WAL (kind 5); equal or higher,
   it was applied already (a crash, a move or a takeover came between).
   After the WAL commit it records the partition's manifest (so a describe
   from elsewhere reads the new offsets), then clears the entries in one
   conditional update, only where the entry is the one it applied and the
   partition is still its own at that epoch.
3. Coordinator: waits until each entry it wrote is gone (or replaced by a
   newer one), woken by every document version it installs (the owner's
   notice) and re-reading the document every ``POLL_S``, at most
   ``share.coordinator.write.timeout.ms``; then withdraws what is left
   (conditional: only its own entries) and answers those partitions
   REQUEST_TIMED_OUT, as Kafka's persister answers a write that timed out.

A move in between: the entry stays with the partition. The old owner either
applied it before sealing (the hand-off's manifest carries the reset id) or
not at all; the new owner applies it, or finds it applied, once it serves.
A takeover likewise: the dead owner's WAL entries are replayed first.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING

from objectstore import ObjectStoreError
from wal import WalError

from ..clock import TimerHandle
from ..cluster.metadata import ClusterImage, Topic, share_reset_key
from ..errors import ErrorCode

if TYPE_CHECKING:
    from ..broker import Broker
    from ..log.partition import Partition

log = logging.getLogger(__name__)

POLL_S = 0.5            # the coordinator re-reads the document this often while it waits
RETRY_S = 1.0           # an owner retries entries it could not apply or record after this
Part = tuple[uuid.UUID, int]            # topic id, partition index
Result = tuple[int, "str | None"]       # error code, message


class ShareResets:
    def __init__(self, broker: "Broker") -> None:
        self.b = broker
        self._waiters: set[asyncio.Future] = set()
        self._task: asyncio.Task | None = None
        self._again = False
        self._retry: TimerHandle | None = None
        self.applied = 0            # resets this broker applied as owner (tests)
        broker.cluster.metadata.listen(self._installed)

    # ------------------------------------------------------------ coordinator
    async def request(self, group_id: str, parts: list[tuple[Topic, int, int]]) -> dict[Part, Result]:
        """Steps 1 and 3: reset (start offset >= 0) or delete (-1) each
        (topic, index, start offset) at its owner; the result per partition."""
        cluster = self.b.cluster
        live = set(cluster.membership.live())
        results: dict[Part, Result] = {}
        ids: dict[Part, int] = {}

        def add(image: ClusterImage) -> None:
            results.clear()
            ids.clear()
            reset_id = image.generation + 1         # the generation this version is stored at
            for topic, index, start in parts:
                part = (topic.topic_id, index)
                t = image.by_id(topic.topic_id)
                if t is None or index >= t.partitions:
                    results[part] = (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, None)
                elif t.owners[index] not in live:
                    results[part] = (ErrorCode.COORDINATOR_NOT_AVAILABLE,
                                     f"Partition {t.name}-{index} has no live owner to change its share-group "
                                     f"state; retry once it has one.")
                else:
                    image.share_resets.setdefault(share_reset_key(t.topic_id, index), {})[group_id] = \
                        [reset_id, start]
                    ids[part] = reset_id
        try:
            await cluster.change(add)
        except ObjectStoreError as exc:
            log.warning("share group %s: could not record its offset change: %s", group_id, exc)
            return {(t.topic_id, i): (ErrorCode.REQUEST_TIMED_OUT, "The cluster metadata could not be written.")
                    for t, i, _ in parts}
        clock = self.b.clock
        deadline = clock.monotonic() + self.b.config["share.coordinator.write.timeout.ms"] / 1000
        while True:
            waiting = {p: i for p, i in ids.items() if self._pending(cluster.metadata.image, group_id, p, i)}
            left = deadline - clock.monotonic()
            if not waiting or left <= 0:
                break
            await self._wait(min(left, POLL_S))
            if not any(self._pending(cluster.metadata.image, group_id, p, i) for p, i in waiting.items()):
                continue
            try:
                await cluster.metadata.refresh()
            except ObjectStoreError:
                pass
        for part in ids:
            results[part] = (ErrorCode.NONE, None)
        if waiting:
            await self._withdraw(group_id, waiting)
            for part in waiting:
                results[part] = (ErrorCode.REQUEST_TIMED_OUT,
                                 "The partition's owner did not apply the change in time; it may still have.")
        return results

    @staticmethod
    def _pending(image: ClusterImage, group_id: str, part: Part, reset_id: int) -> bool:
        found = image.pending_share_reset(part[0], part[1], group_id)
        return found is not None and found[0] == reset_id

    async def _withdraw(self, group_id: str, parts: dict[Part, int]) -> None:
        def withdraw(image: ClusterImage) -> None:
            for (topic_id, index), reset_id in parts.items():
                if self._pending(image, group_id, (topic_id, index), reset_id):
                    _drop(image, share_reset_key(topic_id, index), group_id)
        try:
            await self.b.cluster.change(withdraw)
        except ObjectStoreError as exc:   # the owner applies it when it can: still "may have"
            log.warning("share group %s: could not withdraw a timed-out offset change: %s", group_id, exc)

    async def _wait(self, seconds: float) -> None:
        """Until the next document version installed, at most ``seconds`` (on the broker's clock)."""
        fut = asyncio.get_running_loop().create_future()
        self._waiters.add(fut)
        timer = self.b.clock.call_later(seconds, _resolve, fut)
        try:
            await fut
        finally:
            timer.cancel()
            self._waiters.discard(fut)

    def _installed(self, _old: ClusterImage | None, new: ClusterImage) -> None:
        waiters, self._waiters = self._waiters, set()
        for fut in waiters:
            _resolve(fut)
        if new.share_resets:
            self.kick()

    # ------------------------------------------------------------------ owner
    def kick(self) -> None:
        """Look at the pending entries (again) soon: a new document version, a
        partition that started serving, a retry."""
        if self._task is not None and not self._task.done():
            self._again = True
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._task = loop.create_task(self._run(), name="share-resets")

    def serving(self, _p: "Partition") -> None:
        if self.b.cluster.metadata.image.share_resets:
            self.kick()

    async def stop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        self._again = True
        while self._again:
            self._again = False
            try:
                if not await self.apply_pending():
                    self._retry_later()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("share resets: applying pending entries failed; retrying")
                self._retry_later()

    def _retry_later(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        self._retry = self.b.clock.call_later(RETRY_S, self.kick)

    async def apply_pending(self) -> bool:
        """Step 2 for every entry of a partition this broker serves; False if
        some entry is left for later (sealed, not claimed yet, a failed write)."""
        b = self.b
        if not b._started:
            return False
        image = b.cluster.metadata.image
        me = b.node_id
        complete = True
        done: list[tuple[str, str, int, int]] = []      # (partition key, group, reset id, epoch)
        waits: list[tuple["Partition", list[tuple[str, str, int, int]], list[asyncio.Future]]] = []
        for key, groups in image.share_resets.items():
            topic_id, index = _parse(key)
            t = image.by_id(topic_id) if topic_id is not None else None
            if t is None or topic_id is None or index >= t.partitions or t.owners[index] != me:
                continue
            p = b.replicas.get(t.name, index)
            epoch = t.epochs[index]
            if p is None or p.topic_id != topic_id.bytes or p.storage.epoch != epoch or p.sealed:
                complete = False          # loading, claiming or handing off: later, or the next owner
                continue
            mine, futs = [], []
            for group_id, (reset_id, start) in groups.items():
                share_key = (group_id, topic_id, index)
                if b.share_partitions.applied_reset(share_key) < reset_id:
                    # in memory at once, no await since the seal check: a hand-off's upload has it
                    fut = b.share_partitions.reset(share_key, start, leader_epoch=p.leader_epoch,
                                                   reset_id=reset_id)
                    if fut is not None:
                        futs.append(fut)
                    self.applied += 1
                    log.info("share group %s: %s-%d %s (reset %d)", group_id, t.name, index,
                             f"reset to offset {start}" if start >= 0 else "offsets deleted", reset_id)
                mine.append((key, group_id, reset_id, epoch))
            waits.append((p, mine, futs))
        for p, mine, futs in waits:
            try:
                await asyncio.gather(*futs)
                if futs and not await b.tiering.upload.record(p):
                    raise ObjectStoreError("the manifest update failed")
            except (WalError, ObjectStoreError) as exc:
                log.warning("share resets of %s-%d not recorded yet: %s", p.topic, p.index, exc)
                complete = False
                continue
            done += mine
        if done:
            try:
                await self._clear(done)
            except ObjectStoreError as exc:     # applied and recorded: cleared on the retry
                log.warning("share resets: could not clear applied entries: %s", exc)
                complete = False
        return complete

    async def _clear(self, done: list[tuple[str, str, int, int]]) -> None:
        me = self.b.node_id

        def clear(image: ClusterImage) -> None:
            for key, group_id, reset_id, epoch in done:
                topic_id, index = _parse(key)
                t = image.by_id(topic_id) if topic_id is not None else None
                r = image.share_resets.get(key, {}).get(group_id)
                if t is not None and t.owners[index] == me and t.epochs[index] == epoch \
                        and r is not None and r[0] == reset_id:
                    _drop(image, key, group_id)
        await self.b.cluster.change(clear)


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


def _parse(key: str) -> tuple[uuid.UUID | None, int]:
    topic_id, _, index = key.rpartition(":")
    try:
        return uuid.UUID(topic_id), int(index)
    except ValueError:
        return None, -1


def _drop(image: ClusterImage, key: str, group_id: str) -> None:
    groups = image.share_resets.get(key)
    if groups is not None:
        groups.pop(group_id, None)
        if not groups:
            del image.share_resets[key]
