"""The durable form of a share-partition: snapshots, updates, and their replay.

Kafka's share coordinator keeps each share-partition (group, topic, partition)
as ``ShareSnapshot`` and ``ShareUpdate`` records in ``__share_group_state``
(share-coordinator/src/main/resources/common/message/ShareSnapshotValue.json,
ShareUpdateValue.json): a snapshot holds the whole state (state epoch, leader
epoch, start offset, state batches), an update only the batches a write
changed, laid over what came before; replay is the last snapshot plus the
updates after it. Sluice keeps the same two shapes as payloads of WAL entries
and of the snapshot objects in the bucket (docs/share-groups.md).

A state batch is ``(first_offset, last_offset, delivery_state, delivery_count)``
with Kafka's durable states: 0 AVAILABLE, 2 ACKNOWLEDGED, 4 ARCHIVED (1,
ACQUIRED, exists only in memory: an acquisition is never written, and a
snapshot writes an acquired range as its lock expiry would leave it).
Offsets at or above the start offset that no batch covers were never
delivered (AVAILABLE, count 0).

Payload (big-endian)::

    u8 version = 1 | u8 type (0 snapshot, 1 update)
    i32 state_epoch | i32 snapshot_epoch | i32 leader_epoch | i64 start_offset
    u32 n, then n x (i64 first_offset, i64 last_offset, u8 delivery_state, u16 delivery_count)

Version 2 (a snapshot written by a reset another broker asked for, and every
snapshot after it) adds ``i64 reset_id`` after ``start_offset``: the id of
the last ``share_resets`` entry of the cluster metadata applied to this
state (docs/share-groups.md §10), so an owner can tell a pending reset it
already applied from one it has not. Version 1 reads as reset id 0.

Key: topic id (16 bytes) + i32 partition + group id (UTF-8), so a partition's
entries share the partition's WAL key as a prefix.

Epochs: the state epoch changes only with an admin reset (Kafka's
InitializeShareGroupState); the snapshot epoch grows with every snapshot
taken, and each update carries the snapshot epoch current when it was
written (Kafka's SnapshotEpoch), so an update written before a snapshot can
be told from one written after it.

Replay (``DurableShareState``): an entry of an older state epoch is ignored
(written before an admin reset, Kafka's FENCED_STATE_EPOCH), and so is an
update of an older snapshot epoch than the last snapshot applied (that
snapshot already holds it): a restart may replay the snapshot in the bucket
and then WAL entries from before it. A snapshot replaces everything; an
update's batches overwrite those offsets and the start offset moves to the
update's if higher; batches below the start offset are dropped. Applying an
entry twice changes nothing.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Iterable


class RecordState(IntEnum):
    """Kafka's RecordState ids (server/share/fetch/RecordState.java)."""

    AVAILABLE = 0
    ACQUIRED = 1          # in memory only
    ACKNOWLEDGED = 2
    ARCHIVED = 4


TERMINAL = frozenset({RecordState.ACKNOWLEDGED, RecordState.ARCHIVED})
DURABLE_STATES = frozenset({RecordState.AVAILABLE, RecordState.ACKNOWLEDGED, RecordState.ARCHIVED})


class CorruptShareState(ValueError):
    """A payload that does not decode (bad version, type, state or length)."""


@dataclass(frozen=True, slots=True)
class StateBatch:
    """Offsets ``first_offset..last_offset`` (inclusive) in one durable state."""

    first_offset: int
    last_offset: int
    delivery_state: RecordState
    delivery_count: int

    def __post_init__(self) -> None:
        if self.first_offset > self.last_offset:
            raise ValueError(f"state batch {self.first_offset}..{self.last_offset} is empty")
        if self.delivery_state not in DURABLE_STATES:
            raise ValueError(f"state batch in state {self.delivery_state!r} is not durable")
        if not 0 <= self.delivery_count <= 0xFFFF:
            raise ValueError(f"delivery count {self.delivery_count} out of range")


@dataclass(frozen=True, slots=True)
class ShareSnapshot:
    """The whole state of one share-partition (Kafka's ShareSnapshotValue)."""

    state_epoch: int
    snapshot_epoch: int
    leader_epoch: int
    start_offset: int
    batches: tuple[StateBatch, ...]
    reset_id: int = 0       # the last cluster-metadata reset applied (0: none)


@dataclass(frozen=True, slots=True)
class ShareUpdate:
    """The batches one write changed, and the start offset after it (ShareUpdateValue)."""

    state_epoch: int
    snapshot_epoch: int
    leader_epoch: int
    start_offset: int
    batches: tuple[StateBatch, ...]


_VERSION, _VERSION_RESET_ID = 1, 2
_SNAPSHOT, _UPDATE = 0, 1
_HEAD = struct.Struct(">BBiiiqI")
_HEAD2 = struct.Struct(">BBiiiqqI")
_BATCH = struct.Struct(">qqBH")
_KEY_HEAD = struct.Struct(">16si")


def encode(entry: ShareSnapshot | ShareUpdate) -> bytes:
    kind = _SNAPSHOT if isinstance(entry, ShareSnapshot) else _UPDATE
    reset_id = entry.reset_id if isinstance(entry, ShareSnapshot) else 0
    if reset_id:
        out = [_HEAD2.pack(_VERSION_RESET_ID, kind, entry.state_epoch, entry.snapshot_epoch, entry.leader_epoch,
                           entry.start_offset, reset_id, len(entry.batches))]
    else:
        out = [_HEAD.pack(_VERSION, kind, entry.state_epoch, entry.snapshot_epoch, entry.leader_epoch,
                          entry.start_offset, len(entry.batches))]
    out.extend(_BATCH.pack(b.first_offset, b.last_offset, b.delivery_state, b.delivery_count)
               for b in entry.batches)
    return b"".join(out)


def decode(data: bytes | bytearray | memoryview) -> ShareSnapshot | ShareUpdate:
    data = bytes(data)
    reset_id = 0
    try:
        version = data[0] if data else 0
        head = _HEAD2 if version == _VERSION_RESET_ID else _HEAD
        if version == _VERSION_RESET_ID:
            _, kind, state_epoch, snapshot_epoch, leader_epoch, start, reset_id, n = head.unpack_from(data, 0)
        else:
            version, kind, state_epoch, snapshot_epoch, leader_epoch, start, n = head.unpack_from(data, 0)
    except struct.error as e:
        raise CorruptShareState(f"share state entry too short: {e}") from e
    if version not in (_VERSION, _VERSION_RESET_ID):
        raise CorruptShareState(f"share state entry version {version}, not {_VERSION} or {_VERSION_RESET_ID}")
    if kind not in (_SNAPSHOT, _UPDATE):
        raise CorruptShareState(f"share state entry type {kind}")
    if len(data) != head.size + n * _BATCH.size:
        raise CorruptShareState(f"share state entry of {len(data)} bytes does not hold {n} batches")
    batches = []
    for i in range(n):
        first, last, state, count = _BATCH.unpack_from(data, head.size + i * _BATCH.size)
        try:
            batches.append(StateBatch(first, last, RecordState(state), count))
        except ValueError as e:
            raise CorruptShareState(f"share state batch {i}: {e}") from e
    if kind == _SNAPSHOT:
        return ShareSnapshot(state_epoch, snapshot_epoch, leader_epoch, start, tuple(batches), reset_id)
    return ShareUpdate(state_epoch, snapshot_epoch, leader_epoch, start, tuple(batches))


def encode_key(topic_id: bytes, partition: int, group_id: str) -> bytes:
    if len(topic_id) != 16:
        raise ValueError("a topic id is 16 bytes")
    return _KEY_HEAD.pack(topic_id, partition) + group_id.encode()


def decode_key(key: bytes | bytearray | memoryview) -> tuple[bytes, int, str]:
    key = bytes(key)
    if len(key) < _KEY_HEAD.size:
        raise CorruptShareState("share state key too short")
    topic_id, partition = _KEY_HEAD.unpack_from(key, 0)
    return topic_id, partition, key[_KEY_HEAD.size:].decode()


def overlay(base: Iterable[StateBatch], top: Iterable[StateBatch]) -> list[StateBatch]:
    """``base`` with every offset ``top`` covers replaced by ``top``'s state;
    sorted, non-overlapping, adjacent equal batches merged. ``top``'s batches
    are applied in order (a later one wins where two overlap)."""
    out = sorted(base, key=lambda b: b.first_offset)
    for t in top:
        kept: list[StateBatch] = []
        for b in out:
            if b.last_offset < t.first_offset or b.first_offset > t.last_offset:
                kept.append(b)
                continue
            if b.first_offset < t.first_offset:
                kept.append(StateBatch(b.first_offset, t.first_offset - 1, b.delivery_state, b.delivery_count))
            if b.last_offset > t.last_offset:
                kept.append(StateBatch(t.last_offset + 1, b.last_offset, b.delivery_state, b.delivery_count))
        kept.append(t)
        out = sorted(kept, key=lambda b: b.first_offset)
    return merge(out)


def merge(batches: Iterable[StateBatch]) -> list[StateBatch]:
    """Adjacent batches with the same state and count become one."""
    out: list[StateBatch] = []
    for b in batches:
        if out and out[-1].last_offset + 1 == b.first_offset \
                and (out[-1].delivery_state, out[-1].delivery_count) == (b.delivery_state, b.delivery_count):
            out[-1] = StateBatch(out[-1].first_offset, b.last_offset, b.delivery_state, b.delivery_count)
        else:
            out.append(b)
    return out


def clip(batches: Iterable[StateBatch], start_offset: int) -> list[StateBatch]:
    """The batches from ``start_offset`` on (a batch straddling it is cut)."""
    out = []
    for b in batches:
        if b.last_offset < start_offset:
            continue
        if b.first_offset < start_offset:
            b = StateBatch(start_offset, b.last_offset, b.delivery_state, b.delivery_count)
        out.append(b)
    return out


class DurableShareState:
    """One share-partition as replayed from its snapshot and updates."""

    def __init__(self) -> None:
        self.state_epoch = -1          # nothing applied yet
        self.snapshot_epoch = -1
        self.leader_epoch = -1
        self.start_offset = -1
        self.batches: list[StateBatch] = []
        self.reset_id = 0               # the last cluster-metadata reset applied (ids only grow)

    @property
    def initialized(self) -> bool:
        return self.state_epoch >= 0

    def apply(self, entry: ShareSnapshot | ShareUpdate) -> bool:
        """Lay ``entry`` over the state; False if it was ignored (see the module docstring)."""
        if entry.state_epoch < self.state_epoch:
            return False
        newer = entry.state_epoch > self.state_epoch
        if not newer and entry.snapshot_epoch < self.snapshot_epoch:
            return False
        if isinstance(entry, ShareSnapshot):
            self.start_offset = entry.start_offset
            self.batches = merge(sorted(entry.batches, key=lambda b: b.first_offset))
        else:
            if newer:
                # An update of a newer state epoch without its snapshot: it starts from nothing.
                self.batches = []
                self.start_offset = entry.start_offset
            else:
                self.start_offset = max(self.start_offset, entry.start_offset)
            self.batches = overlay(self.batches, entry.batches)
        self.state_epoch = entry.state_epoch
        self.snapshot_epoch = entry.snapshot_epoch if newer else max(self.snapshot_epoch, entry.snapshot_epoch)
        self.leader_epoch = max(self.leader_epoch, entry.leader_epoch)
        if isinstance(entry, ShareSnapshot):
            self.reset_id = max(self.reset_id, entry.reset_id)
        self.batches = clip(self.batches, self.start_offset)
        return True

    def snapshot(self) -> ShareSnapshot:
        return ShareSnapshot(self.state_epoch, self.snapshot_epoch, self.leader_epoch, self.start_offset,
                             tuple(self.batches), self.reset_id)
