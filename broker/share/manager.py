"""SharePartitionManager: the share-partitions this broker serves as partition owner.

One ``SharePartition`` per (group, topic id, partition) fetched, created on
the first ShareFetch with its start offset from ``share.auto.offset.reset``
(group config; ``latest`` by default). It owns the lock-expiry timer of each
(at its ``next_deadline``), releases a departed member's records, and wakes
ShareFetch long polls when records become acquirable again (a release, an
expiry). Each change that Kafka would write to the share coordinator goes to
``persist`` (the broker appends it to its WAL, kind 5), whose future the
caller awaits before answering. State stored earlier (the manifest's
snapshot, then the WAL's entries, replayed at start or when the partition is
gained) is laid into a ``DurableShareState`` per key by ``load`` and becomes
the share-partition at its first fetch (nothing acquired: a crash or a move
is a lock expiry). ``snapshots`` gives a partition's snapshots for its next
manifest update.

Config per share-partition, fixed at its creation: the group's
``share.record.lock.duration.ms`` / ``share.delivery.count.limit`` /
``share.partition.max.record.locks`` if set, else the broker's
``group.share.*`` (Kafka's GroupConfig over ShareGroupConfig).
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, Callable, Mapping, Sequence

from ..clock import Clock, TimerHandle
from ..config import group_config_int
from . import offset_reset
from .partition import AcknowledgementBatch, AcquiredRecords, AcquireMode, Outcome, ShareConfig, SharePartition
from .state import TERMINAL, DurableShareState, ShareSnapshot, ShareUpdate, decode, encode

log = logging.getLogger(__name__)

ShareKey = tuple[str, uuid.UUID, int]          # group id, topic id, partition
Persist = Callable[[ShareKey, "ShareUpdate | ShareSnapshot"], "asyncio.Future | None"]


class SharePartitionManager:
    def __init__(self, config: Any, clock: Clock,
                 group_configs: Callable[[str], Mapping[str, str]] = lambda group_id: {},
                 persist: Persist | None = None) -> None:
        self.config = config
        self.clock = clock
        self.group_configs = group_configs
        self.persist = persist
        self.partitions: dict[ShareKey, SharePartition] = {}
        self.durable: dict[ShareKey, DurableShareState] = {}     # stored, not yet fetched
        self._timers: dict[ShareKey, TimerHandle] = {}
        self._waiters: set[asyncio.Future] = set()

    # -------------------------------------------------------------- config
    def share_config(self, group_id: str) -> ShareConfig:
        """The group's share configs now: a share-partition reads them at each use
        (as Kafka's SharePartition asks its ShareGroupConfigProvider), so
        ``kafka-configs --entity-type groups`` applies to records in flight too."""
        own = self.group_configs(group_id)
        return ShareConfig(
            delivery_count_limit=group_config_int(own, "share.delivery.count.limit", self.config),
            record_lock_duration_ms=group_config_int(own, "share.record.lock.duration.ms", self.config),
            max_record_locks=group_config_int(own, "share.partition.max.record.locks", self.config))

    def _config_of(self, group_id: str) -> Callable[[], ShareConfig]:
        return lambda: self.share_config(group_id)

    def lock_duration_ms(self, group_id: str) -> int:
        return self.share_config(group_id).record_lock_duration_ms

    def renew_allowed(self, group_id: str) -> bool:
        return str(self.group_configs(group_id).get("share.renew.acknowledge.enable", "true")).lower() == "true"

    # ----------------------------------------------------------- partitions
    def get(self, key: ShareKey) -> SharePartition | None:
        return self.partitions.get(key)

    def get_or_create(self, key: ShareKey, *, log_start: int, log_end: int, leader_epoch: int,
                      offset_for_timestamp: Callable[[int], int | None]) -> SharePartition:
        sp = self.partitions.get(key)
        stored = self.durable.pop(key, None) if sp is None else None
        reborn, reset_id = None, 0
        if stored is not None and stored.initialized and stored.start_offset < 0:
            reborn, reset_id, stored = stored.state_epoch + 1, stored.reset_id, None   # deleted offsets: start again
        if stored is not None and stored.initialized:
            sp = self.partitions[key] = SharePartition.from_durable(self._config_of(key[0]), stored,
                                                                    leader_epoch=leader_epoch)
            log.info("share group %s: %s-%d loaded at offset %d", key[0], key[1], key[2], sp.start_offset)
        if sp is None:
            group_id = key[0]
            reset = offset_reset.parse(self.group_configs(group_id).get("share.auto.offset.reset",
                                                                        offset_reset.DEFAULT))
            start = offset_reset.start_offset(reset, log_start=log_start, log_end=log_end,
                                              now_ms=self.clock.now_ms(), offset_for_timestamp=offset_for_timestamp)
            sp = self.partitions[key] = SharePartition(self._config_of(group_id), start, leader_epoch=leader_epoch,
                                                       state_epoch=reborn or 0)
            sp.reset_id = reset_id
            if reborn is not None:      # replay must see this state over the deletion
                self._background(self._persist(key, sp.take_snapshot()))
            log.info("share group %s: %s-%d starts at offset %d (%s)", group_id, key[1], key[2], start,
                     reset.strategy)
        elif sp.start_offset < log_start:
            sp.advance_log_start(log_start)
        return sp

    def acquire(self, key: ShareKey, sp: SharePartition, member_id: str, fetch_offset: int,
                batches: Sequence[tuple[int, int]], max_records: int, *, batch_size: int | None,
                mode: AcquireMode) -> list[AcquiredRecords]:
        out = sp.acquire(member_id, fetch_offset, batches, max_records, self.clock.now_ms(),
                         batch_size=batch_size, mode=mode)
        if out:
            self._schedule(key, sp)
        return out

    def acknowledge(self, key: ShareKey, sp: SharePartition, member_id: str,
                    batches: Sequence[AcknowledgementBatch], *,
                    renew_allowed: bool) -> tuple[Outcome, asyncio.Future | None]:
        outcome = sp.acknowledge(member_id, batches, self.clock.now_ms(), renew_allowed=renew_allowed)
        fut = None
        if outcome.update is not None:
            fut = self._persist(key, outcome.update)
            self._schedule(key, sp)
            self._wake()
        return outcome, fut

    def release_member(self, group_id: str, member_id: str,
                       keys: Sequence[ShareKey] | None = None) -> list[asyncio.Future]:
        """The member's acquired records (in ``keys``, else everywhere in the group) go back."""
        futs = []
        for key in list(keys) if keys is not None else [k for k in self.partitions if k[0] == group_id]:
            sp = self.partitions.get(key)
            if sp is None:
                continue
            update = sp.release_member(member_id)
            if update is not None:
                fut = self._persist(key, update)
                if fut is not None:
                    futs.append(fut)
                self._schedule(key, sp)
                self._wake()
        return futs

    def load(self, key: ShareKey, data: bytes) -> None:
        """A stored snapshot or update (manifest, WAL replay) for ``key``."""
        self.durable.setdefault(key, DurableShareState()).apply(decode(data))

    def snapshots(self, topic_id: uuid.UUID, index: int) -> dict[str, bytes]:
        """Group id -> encoded snapshot of each share-partition of this partition,
        for its manifest; the snapshot epoch of each served one moves on."""
        out = {}
        for key, sp in self.partitions.items():
            if key[1] == topic_id and key[2] == index:
                out[key[0]] = encode(sp.take_snapshot())
        for key, durable in self.durable.items():     # deleted ones too (start -1), so replay keeps them
            if key[1] == topic_id and key[2] == index and durable.initialized and key[0] not in out:
                out[key[0]] = encode(durable.snapshot())
        return out

    def reset(self, key: ShareKey, start_offset: int, *, leader_epoch: int,
              reset_id: int = 0) -> asyncio.Future | None:
        """AlterShareGroupOffsets (the group is empty): a new state epoch, nothing in
        flight, the start offset ``start_offset``; -1 deletes the state
        (DeleteShareGroupOffsets: the next fetch starts at share.auto.offset.reset).
        ``reset_id``: the cluster-metadata entry applied (``resets.py``), kept in
        the state so that it is applied once."""
        sp = self.partitions.pop(key, None)
        stored = self.durable.pop(key, None)
        epoch = sp.state_epoch if sp is not None else stored.state_epoch if stored is not None else -1
        fresh = SharePartition(self._config_of(key[0]), max(start_offset, 0), state_epoch=max(epoch, 0),
                               leader_epoch=leader_epoch)
        fresh.reset_id = max(reset_id, self._reset_id(sp, stored))
        snapshot = fresh.reset(start_offset)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if start_offset >= 0:
            self.partitions[key] = fresh
        else:
            self.durable[key] = DurableShareState()
            self.durable[key].apply(snapshot)
        self._wake()
        return self._persist(key, snapshot)

    @staticmethod
    def _reset_id(sp: SharePartition | None, stored: DurableShareState | None) -> int:
        return sp.reset_id if sp is not None else stored.reset_id if stored is not None else 0

    def applied_reset(self, key: ShareKey) -> int:
        """The id of the last cluster-metadata reset this share-partition's state holds (0: none)."""
        return self._reset_id(self.partitions.get(key), self.durable.get(key))

    def _background(self, fut: asyncio.Future | None) -> None:
        if fut is not None:
            fut.add_done_callback(lambda f: f.cancelled() or f.exception())

    def summary(self, key: ShareKey, high_watermark: int) -> tuple[int, int] | None:
        """(start offset, lag) of a share-partition served or stored here; None: no state."""
        sp = self.partitions.get(key)
        if sp is not None:
            return sp.start_offset, sp.lag(high_watermark)
        durable = self.durable.get(key)
        if durable is None or not durable.initialized or durable.start_offset < 0:
            return None
        return durable_summary(durable, high_watermark)

    def groups_of(self, group_id: str) -> set[tuple[uuid.UUID, int]]:
        """The partitions this broker has share state of for ``group_id``."""
        return {(k[1], k[2]) for k in [*self.partitions, *self.durable]
                if k[0] == group_id and (k in self.partitions or self.durable[k].start_offset >= 0)}

    def forget(self, belongs: Callable[[uuid.UUID, int], bool]) -> None:
        """Drop the share-partitions of partitions this broker no longer owns."""
        for key in [k for k in self.durable if belongs(k[1], k[2])]:
            del self.durable[key]
        for key in [k for k in self.partitions if belongs(k[1], k[2])]:
            del self.partitions[key]
            timer = self._timers.pop(key, None)
            if timer is not None:
                timer.cancel()

    def shutdown(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    # ---------------------------------------------------------------- timers
    def _schedule(self, key: ShareKey, sp: SharePartition) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        deadline = sp.next_deadline()
        if deadline is not None:
            delay = max(0, deadline - self.clock.now_ms()) / 1000
            self._timers[key] = self.clock.call_later(delay, self._expire, key)

    def _expire(self, key: ShareKey) -> None:
        self._timers.pop(key, None)
        sp = self.partitions.get(key)
        if sp is None:
            return
        update = sp.expire_locks(self.clock.now_ms())
        if update is not None:
            fut = self._persist(key, update)
            if fut is not None:
                fut.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._wake()
        self._schedule(key, sp)

    def _persist(self, key: ShareKey, entry: ShareUpdate | ShareSnapshot) -> asyncio.Future | None:
        return self.persist(key, entry) if self.persist is not None else None

    # ----------------------------------------------------------- long polls
    def add_waiter(self, fut: asyncio.Future) -> None:
        self._waiters.add(fut)

    def remove_waiter(self, fut: asyncio.Future) -> None:
        self._waiters.discard(fut)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)


def durable_summary(durable: DurableShareState, high_watermark: int) -> tuple[int, int]:
    """(start offset, lag) as stored: Kafka's ReadShareGroupStateSummary answer."""
    done = sum(b.last_offset - b.first_offset + 1 for b in durable.batches
               if b.delivery_state in TERMINAL and b.first_offset >= durable.start_offset)
    return durable.start_offset, max(0, high_watermark - durable.start_offset - done)
