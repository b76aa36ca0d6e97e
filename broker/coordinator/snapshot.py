"""Group coordinator snapshots in the bucket, one object per coordinator partition.

A group belongs to the coordinator partition Kafka would put it in
(``partition_for``: ``Utils.abs(groupId.hashCode()) % offsets.topic.num.partitions``),
and each partition ("shard") that holds state has one object::

    groups/<partition>.snapshot

holding the durable state of exactly the groups of that partition, as the
coordinator's own log-entry payloads (the last GROUP_META, members included,
then one COMMIT of all offsets, per group; see ``broker.coordinator.group``).
Format v2, big-endian::

    "SLGS" u8 0 u8 2          magic, version
    u32 partition             the coordinator partition (shard) it holds
    u32 partitions            offsets.topic.num.partitions when written
    u64 epoch                 the writer's epoch for that coordinator partition
    u32 count, then count x (u16 key_len, key = group id, u32 data_len, data = entry)
    u32 crc32c of everything before

Version 1 (``cluster/groups.snapshot``, written by older brokers) is the same
without the three header fields, and held every group.

Writes are conditional: ``If-None-Match: *`` while we believe the object
absent, ``If-Match: <etag of our last read or write>`` after. On
PreconditionFailed the object is read again: a stored epoch above ours means a
newer owner has the partition (Fenced: logged once, never written again by this
process); an equal or lower one (our own write whose answer was lost, or an
older owner) is overwritten with the fresh etag.

Freshness: ``note(group_id)`` (called for every entry appended to the log, and
for every log entry replayed at start) marks the group's shard dirty with a
sequence number; ``flush()`` writes every shard dirty at its call, each with
its current state, and a shard stays dirty if it was noted again meanwhile.
The uploader calls ``flush()`` after the WAL fsync that covers its cut and
trims the WAL only if it returned True: every group entry before the cut was
noted before the call, and its effect was applied in memory by then, so the
stored shards cover it. An entry is noted twice, when appended and once it is
durable and applied (``WalGroupLog``): one appended after a cut but applied
only after the flush that followed would otherwise leave its shard stored
without it and clean, and the next round would trim it.

Start (``load``, before the WAL replay): every ``groups/*.snapshot`` is read and
crc-checked (CorruptObject if bad) and replayed; the legacy
``cluster/groups.snapshot`` too, for shards that have no object of their own
(a shard object is always newer: it was written by a broker that had read the
legacy one). Shards whose groups came from the legacy object are dirty, and
once a flush has stored all of them the legacy object is deleted. Then the
WAL's group entries replay on top (``replay``; each entry sets state, so one
that a snapshot already covers changes nothing).

The epoch of a shard comes from ``epoch_of(partition)``: the epoch at which
this broker owns that coordinator partition in the cluster metadata
(``Cluster.coordinator``), bumped at every owner change and restart, so a
coordinator that lost its partition can no longer overwrite its snapshot.
"""
from __future__ import annotations

import asyncio
import logging
import re
import struct
from dataclasses import dataclass
from typing import Callable, Protocol

import crc32c

from objectstore import CorruptObject, Fenced, NotFound, ObjectStore, ObjectStoreError, PreconditionFailed

from ..store_errors import StoreErrors
from .log import partition_for

log = logging.getLogger(__name__)

LEGACY_KEY = "cluster/groups.snapshot"
PREFIX = "groups/"
_KEY_RE = re.compile(r"^groups/(0|[1-9][0-9]*)\.snapshot$")
_MAGIC = b"SLGS\x00"
_V1, _V2 = 1, 2
_V2_HEAD = struct.Struct(">IIQ")  # partition, partitions, epoch
ATTEMPTS = 16   # conditional puts lost in a row before giving up until the next flush


def shard_key(partition: int) -> str:
    return f"{PREFIX}{partition}.snapshot"


@dataclass(frozen=True, slots=True)
class GroupSnapshot:
    entries: list[tuple[bytes, bytes]]   # (group id, entry data)
    partition: int | None = None         # None: version 1 (all groups)
    partitions: int | None = None
    epoch: int = 0


def encode_group_snapshot(entries: list[tuple[bytes, bytes]], *, partition: int, partitions: int,
                          epoch: int) -> bytes:
    """A v2 shard object (see the module docstring)."""
    out = [_MAGIC, bytes([_V2]), _V2_HEAD.pack(partition, partitions, epoch),
           struct.pack(">I", len(entries))]
    for key, data in entries:
        out.append(struct.pack(">H", len(key)) + key + struct.pack(">I", len(data)))
        out.append(data)
    body = b"".join(out)
    return body + struct.pack(">I", crc32c.crc32c(body))


def encode_legacy_snapshot(entries: list[tuple[bytes, bytes]]) -> bytes:
    """Version 1, as older brokers wrote ``cluster/groups.snapshot`` (tests)."""
    out = [_MAGIC, bytes([_V1]), struct.pack(">I", len(entries))]
    for key, data in entries:
        out.append(struct.pack(">H", len(key)) + key + struct.pack(">I", len(data)))
        out.append(data)
    body = b"".join(out)
    return body + struct.pack(">I", crc32c.crc32c(body))


def decode_group_snapshot(data: bytes | bytearray, key: str) -> GroupSnapshot:
    """Either version; CorruptObject if the magic, version, crc32c or layout is wrong."""
    data = bytes(data)
    if len(data) < 14 or not data.startswith(_MAGIC) \
            or crc32c.crc32c(data[:-4]) != struct.unpack(">I", data[-4:])[0]:
        raise CorruptObject(key, "bad group snapshot (magic or crc32c)")
    version = data[5]
    pos = 6
    partition = partitions = None
    epoch = 0
    try:
        if version == _V2:
            partition, partitions, epoch = _V2_HEAD.unpack_from(data, pos)
            pos += _V2_HEAD.size
        elif version != _V1:
            raise CorruptObject(key, f"group snapshot version {version} is not 1 or 2")
        (n,) = struct.unpack_from(">I", data, pos)
        pos += 4
        entries = []
        for _ in range(n):
            (kl,) = struct.unpack_from(">H", data, pos)
            gk = data[pos + 2:pos + 2 + kl]
            pos += 2 + kl
            (dl,) = struct.unpack_from(">I", data, pos)
            entries.append((gk, data[pos + 4:pos + 4 + dl]))
            pos += 4 + dl
    except struct.error as e:
        raise CorruptObject(key, f"group snapshot truncated: {e}") from e
    if pos != len(data) - 4:
        raise CorruptObject(key, f"group snapshot: {len(data) - 4 - pos} bytes after the last entry")
    return GroupSnapshot(entries, partition, partitions, epoch)


class SnapshotSource(Protocol):
    """What the snapshots need from the coordinator."""

    def replay(self, key: bytes, data: bytes) -> None: ...

    def shard_entries(self, shard: int, shard_of: Callable[[str], int]) -> list[tuple[bytes, bytes]]: ...


class GroupSnapshots:
    """The group coordinator's state in the bucket, per coordinator partition.

    ``note`` marks a group's shard dirty; ``flush`` stores the dirty shards;
    ``load`` reads them all at start; ``replay`` applies a WAL entry at start
    (and notes it: the WAL is trimmed only after the entry's shard is stored).
    """

    def __init__(self, store: ObjectStore, source: SnapshotSource, *, partitions: int,
                 epoch_of: Callable[[int], int]) -> None:
        if partitions < 1:
            raise ValueError(f"offsets.topic.num.partitions must be >= 1, not {partitions}")
        self.store = store
        self.source = source
        self.partitions = partitions
        self.epoch_of = epoch_of
        self._seq = 0
        self.dirty: dict[int, int] = {}        # shard -> sequence number of its last noted entry
        self._etags: dict[int, str] = {}       # shard -> etag of our last read or write (absent: none)
        self.fenced: set[int] = set()          # shards a newer owner holds: never written again
        self._legacy_pending: set[int] = set()  # shards holding legacy groups, not yet stored
        self._legacy_present = False           # cluster/groups.snapshot still exists
        self._lock = asyncio.Lock()
        self._errors = StoreErrors(log)
        self.writes = 0                         # shard objects stored (tests, metrics)
        self.snapshot_epochs: dict[int, int] = {}   # shard -> epoch of the snapshot last loaded

    def shard_of(self, group_id: str) -> int:
        return partition_for(group_id, self.partitions)

    # ------------------------------------------------------------ freshness
    def note(self, group_id: str) -> None:
        """An entry of ``group_id`` was appended: its shard must be stored again."""
        shard = self.shard_of(group_id)
        if shard in self.fenced:
            return
        self._seq += 1
        self.dirty[shard] = self._seq

    def replay(self, key: bytes, data: bytes) -> None:
        """A group entry found in the WAL at start: apply it, and note it (the
        WAL segment holding it may be trimmed only once its shard is stored)."""
        self.source.replay(key, data)
        self.note(bytes(key).decode())

    # ---------------------------------------------------------------- start
    async def load(self) -> None:
        """Replay the bucket's group state into the coordinator (see the module docstring)."""
        keys = await self.store.list(PREFIX)
        shards: dict[int, GroupSnapshot] = {}
        for key in keys:
            m = _KEY_RE.match(key)
            if m is None:
                log.warning("group snapshots: ignoring %r (not groups/<partition>.snapshot)", key)
                continue
            shard = int(m.group(1))
            data, etag = await self.store.get_with_etag(key)
            snap = decode_group_snapshot(data, key)
            if snap.partition is None or snap.partition != shard:
                raise CorruptObject(key, f"holds coordinator partition {snap.partition}, not {shard}")
            if snap.partitions != self.partitions:
                raise ValueError(
                    f"{key} was written with offsets.topic.num.partitions={snap.partitions}, this "
                    f"broker has {self.partitions}: the count cannot change once groups are stored "
                    f"(as the partition count of Kafka's __consumer_offsets)")
            for gk, _ in snap.entries:
                gid = gk.decode()
                if self.shard_of(gid) != shard:
                    raise CorruptObject(key, f"group {gid!r} belongs to partition "
                                             f"{self.shard_of(gid)}, not {shard}")
            self._etags[shard] = etag
            self.snapshot_epochs[shard] = snap.epoch
            if snap.epoch > self.epoch_of(shard):
                self._fence(shard, Fenced(key, snap.epoch, self.epoch_of(shard)))
            shards[shard] = snap
        legacy: dict[int, list[tuple[bytes, bytes]]] = {}
        try:
            data = await self.store.get(LEGACY_KEY)
        except NotFound:
            pass
        else:
            self._legacy_present = True
            snap = decode_group_snapshot(data, LEGACY_KEY)
            for gk, entry in snap.entries:
                legacy.setdefault(self.shard_of(gk.decode()), []).append((gk, entry))
        groups = 0
        for shard in sorted(shards.keys() | legacy.keys()):
            if shard in shards:         # newer than the legacy object: it replaces its groups there
                entries = shards[shard].entries
            else:
                entries = legacy[shard]
                self._legacy_pending.add(shard)
                self._seq += 1
                self.dirty[shard] = self._seq
            for gk, entry in entries:
                self.source.replay(gk, entry)
            groups += len({gk for gk, _ in entries})
        log.info("group snapshots: %d groups from %d partition objects%s", groups, len(shards),
                 f" and the legacy {LEGACY_KEY} ({len(legacy)} partitions)" if self._legacy_present else "")

    async def load_shard(self, shard: int) -> int:
        """Replay one coordinator partition's snapshot, gained from another
        broker after start (it wrote the snapshot before handing it off);
        returns how many groups it held. 1 GET."""
        key = shard_key(shard)
        try:
            data, etag = await self.store.get_with_etag(key)
        except NotFound:
            self._etags.pop(shard, None)
            self.fenced.discard(shard)
            self.snapshot_epochs[shard] = 0
            return 0
        snap = decode_group_snapshot(data, key)
        if snap.partition != shard:
            raise CorruptObject(key, f"holds coordinator partition {snap.partition}, not {shard}")
        self._etags[shard] = etag
        self.fenced.discard(shard)
        self.snapshot_epochs[shard] = snap.epoch
        for gk, entry in snap.entries:
            self.source.replay(gk, entry)
        return len({gk for gk, _ in snap.entries})

    def forget(self, shard: int) -> None:
        """The shard moved to another broker: never write its snapshot again
        (unless it comes back, through ``load_shard``)."""
        self.dirty.pop(shard, None)
        self._etags.pop(shard, None)
        self._legacy_pending.discard(shard)

    # ---------------------------------------------------------------- flush
    async def flush(self) -> bool:
        """Store every shard dirty now; True only when all of them (and the
        deletion of a legacy object they replace) succeeded."""
        async with self._lock:
            due = dict(self.dirty)
            ok = True
            for shard, seq in sorted(due.items()):
                try:
                    await self._write(shard)
                except Fenced as exc:
                    self._fence(shard, exc)
                    ok = False
                    continue
                except ObjectStoreError as exc:
                    self._errors.failed("group snapshot", exc)
                    ok = False
                    continue
                if self.dirty.get(shard) == seq:
                    del self.dirty[shard]
                self._legacy_pending.discard(shard)
            if ok and self._legacy_present and not self._legacy_pending:
                try:
                    await self.store.delete(LEGACY_KEY)
                except ObjectStoreError as exc:
                    self._errors.failed("legacy group snapshot delete", exc)
                    ok = False
                else:
                    self._legacy_present = False
                    log.info("group snapshots: every group of %s is stored per partition; deleted it",
                             LEGACY_KEY)
            if ok:
                self._errors.ok("group snapshot")
                self._errors.ok("legacy group snapshot delete")
            return ok

    async def _write(self, shard: int) -> None:
        """One shard, conditionally; raises Fenced, or the store's error."""
        key = shard_key(shard)
        for _ in range(ATTEMPTS):
            epoch = self.epoch_of(shard)
            body = encode_group_snapshot(self.source.shard_entries(shard, self.shard_of),
                                         partition=shard, partitions=self.partitions, epoch=epoch)
            etag = self._etags.get(shard)
            try:
                if etag is None:
                    new = await self.store.put(key, body, if_none_match=True)
                else:
                    new = await self.store.put(key, body, if_match=etag)
            except PreconditionFailed:
                pass
            else:
                self._etags[shard] = new
                self.writes += 1
                return
            # Someone else's write, or our own whose answer was lost: look again.
            try:
                data, fresh = await self.store.get_with_etag(key)
            except NotFound:
                self._etags.pop(shard, None)
                continue
            stored = decode_group_snapshot(data, key)
            if stored.epoch > epoch:
                raise Fenced(key, stored.epoch, epoch)
            self._etags[shard] = fresh
        raise PreconditionFailed(key, f"{key!r}: conditional put lost {ATTEMPTS} times in a row")

    def _fence(self, shard: int, exc: Fenced) -> None:
        if shard not in self.fenced:
            self.fenced.add(shard)
            log.warning("group snapshots: coordinator partition %d is fenced (%s); this broker no "
                        "longer writes its snapshot", shard, exc)
        self.dirty.pop(shard, None)
        self._legacy_pending.discard(shard)
