"""ReplicaManager: the broker's partitions over one WAL, the caches and the object store.

It is the single storage-facing interface the API handlers call (create and
delete topics, find a partition, append, read). It implements ``BatchStore``
for its partitions. A batch lives in up to three places, and its index entry
says which:

  WAL ``Location``   appended, not yet uploaded: tail cache, else the WAL file
  ``ObjectRange``    uploaded: tail cache, else block cache, else a ranged GET
  ``RemoteSegment``  uploaded before this process started: known from the
                     manifest only as a range; read once as a whole and split
                     into ``ObjectRange`` batches (``expand``)

WAL entry kinds (key = topic id (16 bytes) + partition (int32)):
  1 BATCH      data = one record batch, offsets already assigned
  2 LOG_START  data = int64 new log start offset (DeleteRecords, retention)
Kind 4 GROUP (key = group id, UTF-8; data = u32 epoch of its coordinator
partition, then the entry) belongs to the group coordinator: offset commits,
offset deletes, group tombstones and group metadata; the encoding is in
``broker/coordinator/group.py``, its snapshots in ``broker/coordinator/snapshot.py``.
Kind 3 is the same without the epoch (written by older brokers; still replayed).

The WAL is a file log in the data dir (``wal.type=file``) or objects in the
bucket (``wal.type=s3``, ``wal/object_log.py``), which survivors read to take
over a dead broker's partitions (``takeover.py``, docs/failover.md).

What it hosts comes only from the cluster package, as ``OwnershipDelta``s
applied in one place (``apply_delta``): a gained partition is claimed at the
epoch the cluster metadata gave it (its manifest's epoch and the leader epoch
stamped into its batches), a lost one stops being served.

Start (``start``, after the cluster's first delta): per gained partition claim
+ load its manifest (log start, uploaded end, segments, producer state as of
the uploaded end), then the WAL replay of whatever was not uploaded yet
(docs/storage.md section 7), group entries to ``groups.replay`` (the Broker
loads the group snapshots before).
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
import os
import struct
import time
import uuid
from typing import Callable

import crc32c

from cache import BlockCache, TailCache
from objectstore import CorruptObject, Fenced, ManifestStore, ObjectStore, ObjectStoreError, data_object
from wal import WriteAheadLog
from wal.dir_objects import DirWalObjects
from wal.log import is_location
from wal.object_log import ObjectWriteAheadLog

from ..cluster import MetadataStore, OwnershipDelta, PartitionGain, Topic
from ..cluster.ownership import Sources
from ..config import TOPIC_CONFIGS, BrokerConfig
from ..errors import ErrorCode
from ..store_errors import StoreErrors
from .leader_epochs import LeaderEpochCache
from .partition import Partition, ProducerEntry, RemoteSegment
from .read_pacer import RemoteReadPacer
from .records import read_header
from .takeover import DeadWals, StoreWalObjects, select_batches, wal_prefix

log = logging.getLogger(__name__)

KIND_BATCH = 1
KIND_LOG_START = 2
KIND_GROUP = 3          # without epoch (older brokers)
KIND_GROUP_EPOCH = 4
KIND_SHARE = 5           # share-partition state (key: partition key + group id; data: u32 epoch + entry)
_I64 = struct.Struct(">q")
_U32 = struct.Struct(">I")
_PARTITION_KEY_SIZE = 20      # a partition's WAL key: topic id (16) + i32 index


# An uploaded batch: (data object key, position, length), bytes
# [position, position + length) of the object. A plain tuple like the WAL's
# Location, for the same reason (one per batch, never tracked by the GC); the
# str key tells the two apart.
ObjectRange = tuple[str, int, int]


def is_object_range(loc: object) -> bool:
    return type(loc) is tuple and type(loc[0]) is str


def _fetch_cap(cap: int) -> float:
    """``remote.log.manager.fetch.max.bytes.per.second`` as the pacer's cap (Long.MAX_VALUE: none)."""
    return math.inf if cap >= 1 << 62 else float(max(cap, 1))


class ReplicaManager:
    def __init__(self, config: BrokerConfig, data_dir: str, store: ObjectStore, *, metrics=None,
                 metadata: MetadataStore | None = None) -> None:
        self.config = config
        self.data_dir = data_dir
        self.metrics = metrics
        self.node_id: int = config["node.id"]
        os.makedirs(data_dir, exist_ok=True)
        self.metadata = metadata if metadata is not None else MetadataStore(store)  # read only here
        self.wal: WriteAheadLog | ObjectWriteAheadLog
        objects: StoreWalObjects | DirWalObjects = StoreWalObjects(store)
        if config["wal.shared.dir"]:
            objects = DirWalObjects(config["wal.shared.dir"])
        if config["wal.type"] == "s3" or config["wal.shared.dir"]:
            # the bucket, or a volume the others mount: either way one object per group
            # commit, which survivors fence and read (docs/failover.md)
            in_bucket = config["wal.type"] == "s3"
            self.wal = ObjectWriteAheadLog(objects, wal_prefix(self.node_id),
                                           interval_ms=config["wal.s3.interval.ms"] if in_bucket else 0,
                                           batch_bytes=config["wal.s3.batch.bytes"],
                                           on_fsync=metrics.observe_fsync if metrics else None)
        else:
            self.wal = WriteAheadLog(os.path.join(data_dir, "wal"),
                                     segment_bytes=config["wal.segment.bytes"],
                                     on_fsync=metrics.observe_fsync if metrics else None)
        self._wal_objects = objects
        self.dead_wals = DeadWals(objects)
        # partitions lost or fenced with batches only in our WAL: (topic id, index) ->
        # (oldest WAL segment, epoch); kept while a takeover may still read them
        self._lost_pins: dict[tuple[bytes, int], tuple[int, int]] = {}
        # (topic id, index, epoch, dead node, generation): a takeover replayed (set by the Broker)
        self.on_recovered: Callable[[uuid.UUID, int, int, Sources], None] | None = None
        # share-partition state (KIP-932; set by the Broker): a group's stored
        # state for a partition (from its manifest or a replayed WAL entry), and
        # the snapshots a manifest update carries: group id -> payload
        self.on_share_state: Callable[[Partition, str, bytes], None] = lambda p, group, data: None
        self.share_snapshots: Callable[[Partition], dict[str, bytes]] = lambda p: {}
        # a partition serves from now on, claimed and loaded (share-group resets wait for it)
        self.on_serving: Callable[[Partition], None] = lambda p: None
        self.store = store
        self.manifests = ManifestStore(store)
        self.tail_cache = TailCache(config["cache.tail.bytes"])
        self.block_cache = BlockCache(config["cache.block.bytes"], config["cache.block.size"],
                                      fetch=store.get_range,
                                      fetch_parts=getattr(store, "get_range_parts", None),
                                      readahead_blocks=config["cache.readahead.blocks"])
        self.read_pacer = RemoteReadPacer(max_rate=_fetch_cap(config["remote.log.manager.fetch.max.bytes.per.second"]),
                                          target=max(config["remote.fetch.produce.latency.target.ms"], 0) / 1000)
        config.watch("remote.log.manager.fetch.max.bytes.per.second",     # a dynamic broker config
                     lambda cap: self.read_pacer.set_max_rate(_fetch_cap(cap)))
        self.partitions: dict[tuple[str, int], Partition] = {}
        self.deleted_topics: list[Topic] = []   # manifests to delete from the bucket
        self.pending_upload_bytes = 0           # appended since the last upload's cut
        self.upload_wanted = asyncio.Event()    # set when pending bytes reach s3.upload.bytes
        self.wal_room = asyncio.Event()         # set while the WAL is under wal.max.bytes
        self.wal_room.set()
        self._expanding: dict[int, asyncio.Future] = {}
        self._to_load: list[tuple[Partition, int]] = []   # gained before start: loaded by start()
        self._claims: set[asyncio.Task] = set()          # gained after start: claimed in the background
        self._wanted: dict[tuple[str, int], tuple[bytes, int]] = {}   # (topic id, epoch) last gained
        self._recovering: dict[tuple[bytes, int], Sources] = {}   # gains to take over: their dead owners
        self._started = False
        self._store_errors = StoreErrors(log)
        self._tier_counters: dict = {}

    # ---------------------------------------------------------------- start
    async def start(self, groups) -> None:
        """Load what the bucket and the WAL hold for the partitions of the
        cluster's first delta; see the module docstring."""
        sem = asyncio.Semaphore(32)

        async def load(p: Partition, epoch: int) -> None:
            if self._wanted.get((p.topic, p.index)) != (p.topic_id, epoch):
                return          # lost again meanwhile
            async with sem:
                try:
                    await self._claim_and_load(p, epoch)
                except Fenced:  # a newer owner claimed it: ours no longer (its loss is on the way)
                    p.storage.fence()
        # Partitions gained while this runs (a hand-off, a takeover: the cluster's
        # heartbeat is already on) join ``_to_load`` too, and are loaded here before
        # any of them serves: none is left in ``partitions`` unloaded, at offset 0.
        todo: list[tuple[Partition, int]] = []
        wal_loaded = False
        while self._to_load or not wal_loaded:
            if self._to_load:
                batch, self._to_load = self._to_load, []
                await asyncio.gather(*(load(p, e) for p, e in batch))
                todo += batch
            else:
                await self.wal_load()
                wal_loaded = True
        self._started = True
        self._recover_wal(groups.replay)
        takeovers = [(p, epoch, self._recovering.pop((p.topic_id, p.index)))
                     for p, epoch in todo if (p.topic_id, p.index) in self._recovering
                     and self.partitions.get((p.topic, p.index)) is p]
        # taken over from a dead broker: its WAL tail on top (one read of it for all)
        await asyncio.gather(*(self._take_over(p, epoch, rec) for p, epoch, rec in takeovers))
        for p, _epoch in todo:
            p.became_owner()
        for p, _epoch in todo:
            self.on_serving(p)

    async def wal_load(self) -> None:
        if isinstance(self.wal, ObjectWriteAheadLog):
            if isinstance(self._wal_objects, DirWalObjects):
                await self._wal_objects.remove_temps(wal_prefix(self.node_id))   # a crash's leftovers
            await self.wal.load()

    # --------------------------------------------------------- ownership
    def apply_delta(self, delta: OwnershipDelta) -> None:
        """Start serving what this broker gained, stop serving what it lost.

        The one place partitions are opened, claimed and closed. A partition
        gained at epoch 1 is new (its topic or partition was just created):
        it serves at once while its manifest is claimed in the background. One
        gained at a higher epoch has a history in the bucket: before start it
        is loaded by ``start``; later (a move: docs/cluster.md section 7) it
        serves only once claimed and loaded. A lost partition stops serving
        here; its hand-off (seal, upload, flip) is ``broker/handoff.py``'s.
        """
        for loss in delta.lost:
            if self._wanted.get((loss.topic.name, loss.index), (b"",))[0] == loss.topic.topic_id.bytes:
                del self._wanted[(loss.topic.name, loss.index)]   # a claim in flight gives up
            p = self.partitions.pop((loss.topic.name, loss.index), None)
            if p is not None and p.topic_id == loss.topic.topic_id.bytes:
                self.keep_lost(p)
                self.tail_cache.discard_partition(p.key)
                p.wake_waiters()
                log.info("partition %s-%d: no longer ours", p.topic, p.index)
            elif p is not None:
                self.partitions[(p.topic, p.index)] = p   # a newer topic of the same name
        self.deleted_topics.extend(delta.deleted_topics)
        for gain in delta.gained:
            rec = delta.recovering.get((gain.topic.topic_id.bytes, gain.index))
            if rec is not None:
                self._recovering[(gain.topic.topic_id.bytes, gain.index)] = rec
            self._gain(gain)

    def _gain(self, gain: PartitionGain) -> None:
        t = gain.topic
        key = (t.name, gain.index)
        self._wanted[key] = (t.topic_id.bytes, gain.epoch)
        p = self.partitions.get(key)
        if p is not None and p.topic_id == t.topic_id.bytes:
            # already ours: a higher epoch for a partition we serve (not produced yet
            # by the cluster package; a move away and back comes as loss + gain)
            log.warning("partition %s-%d: epoch %d while serving at %d; re-claiming", t.name,
                        gain.index, gain.epoch, p.leader_epoch)
            p.leader_epoch = gain.epoch
            p.became_owner()
            self._claim_in_background(p, gain.epoch, load=False)
            return
        p = Partition(t.topic_id.bytes, t.name, gain.index, self)
        p.leader_epoch = gain.epoch
        if not self._started:
            self.partitions[key] = p
            self._to_load.append((p, gain.epoch))
        elif gain.epoch == 1:
            p.became_owner()
            self.partitions[key] = p
            self._claim_in_background(p, gain.epoch, load=False)
        else:
            self._claim_in_background(p, gain.epoch, load=True)

    def _claim_in_background(self, p: Partition, epoch: int, *, load: bool) -> None:
        async def claim() -> None:
            delay = 0.1
            while self._wanted.get((p.topic, p.index)) == (p.topic_id, epoch):   # still ours at that epoch
                try:
                    if load:
                        await self._claim_and_load(p, epoch)
                        rec = self._recovering.get((p.topic_id, p.index))
                        if rec is not None:
                            await self._take_over(p, epoch, rec)
                            self._recovering.pop((p.topic_id, p.index), None)
                        p.became_owner()
                        self.partitions[(p.topic, p.index)] = p
                    else:
                        p.storage.claimed(await self.manifests.claim(p.topic_id, p.index, self.node_id,
                                                                     epoch=epoch))
                        p.storage.set_manifest((await self.manifests.load(p.topic_id, p.index))[0])
                    self.storage_ok("claim")
                    self.on_serving(p)
                    return
                except ObjectStoreError as exc:
                    self.storage_error("claim", exc)
                    if isinstance(exc, Fenced):   # a newer owner exists: not ours after all
                        p.storage.fence()
                        return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        task = asyncio.get_running_loop().create_task(claim())
        self._claims.add(task)
        task.add_done_callback(self._claims.discard)

    async def claims_settled(self) -> None:
        """Wait until every partition gained so far is claimed (or given up)."""
        while self._claims:
            await asyncio.gather(*list(self._claims), return_exceptions=True)

    async def _claim_and_load(self, p: Partition, epoch: int) -> None:
        """Claim at ``epoch`` (fences every older owner) and adopt the manifest."""
        p.storage.claimed(await self.manifests.claim(p.topic_id, p.index, self.node_id, epoch=epoch))
        m, _ = await self.manifests.load(p.topic_id, p.index)
        assert m is not None
        p.storage.loaded(m)  # merge and GC need it even if the partition never uploads again
        p.log_start_offset = m.log_start_offset
        p.log_end_offset = p.high_watermark = m.next_offset
        for s in m.segments:
            p.add_segment(s.first_offset, s.last_offset, s.max_timestamp, s.length, s)
        p.set_log_start_offset(m.log_start_offset)
        p.producers = decode_producer_state(m.producer_state)
        p.leader_epochs = LeaderEpochCache(m.leader_epochs)
        for group_id, payload in m.share_state:
            self.on_share_state(p, group_id, base64.b64decode(payload))

    def _recover_wal(self, on_group_entry) -> None:
        """Replay WAL entries above each manifest's uploaded end.

        Per partition, in WAL order; a batch at an offset below what was
        already replayed for it replaces what follows from there: it was
        written by a later life of this broker that recovered less (the
        earlier ones were never acknowledged; docs/failover.md invariant 4).
        """
        by_key = {p.key: p for p in self.partitions.values()}
        kept: dict[bytes, list] = {}      # partition key -> [(header, entry)] of its batches
        log_starts: dict[bytes, list[tuple[int, int]]] = {}   # partition key -> [(offset, WAL segment)]
        ends: dict[bytes, int] = {}       # partition key -> end of the batches kept
        skipped = 0
        for entry in self.wal.recover():
            if entry.kind == KIND_GROUP:
                on_group_entry(bytes(entry.key), bytes(entry.data))
                continue
            if entry.kind == KIND_GROUP_EPOCH:
                on_group_entry(bytes(entry.key), bytes(entry.data[_U32.size:]))
                continue
            if entry.kind == KIND_SHARE:
                p = by_key.get(bytes(entry.key[:_PARTITION_KEY_SIZE]))
                if p is not None and not p.storage.offline:
                    self.on_share_state(p, bytes(entry.key[_PARTITION_KEY_SIZE:]).decode(),
                                        bytes(entry.data[_U32.size:]))
                    p.storage.share_written(entry.location[0])
                continue
            p = by_key.get(entry.key)
            if p is None or p.storage.offline:
                continue  # topic deleted since
            items = kept.setdefault(p.key, [])
            if entry.kind == KIND_BATCH:
                h = read_header(entry.data)
                if h.last_offset < p.storage.uploaded_end:
                    skipped += 1
                    continue  # uploaded already
                if h.base_offset < ends.get(p.key, p.log_end_offset):     # rewritten by a later life
                    while items and items[-1][0].base_offset >= h.base_offset:
                        items.pop()
                items.append((h, entry))
                ends[p.key] = h.last_offset + 1
            elif entry.kind == KIND_LOG_START:
                log_starts.setdefault(p.key, []).append((_I64.unpack(entry.data)[0], entry.location[0]))
        batches = 0
        for key in kept.keys() | log_starts.keys():
            p = by_key[key]
            for h, entry in kept.get(key, []):
                if h.base_offset != p.log_end_offset:
                    log.error("partition %s-%d: the WAL continues at offset %d but the log ends at %d; "
                              "acknowledged data is missing, the partition is offline (KAFKA_STORAGE_ERROR)",
                              p.topic, p.index, h.base_offset, p.log_end_offset)
                    p.storage.storage_failed(entry.location[0])
                    break
                p.replay_batch(h, entry.location)
                self.tail_cache.put(p.key, h.base_offset, bytes(entry.data))
                batches += 1
            for offset, segment in log_starts.get(key, []):
                p.set_log_start_offset(offset)
                p.storage.log_start_written(offset, segment)
        log.info("recovered %d batches across %d partitions from the WAL (%d already uploaded)",
                 batches, len(by_key), skipped)
        self._check_wal_room()

    # ------------------------------------------------------------- BatchStore
    def write_batch(self, partition: Partition, base_offset: int, buf: bytearray, start: int, end: int):
        loc, fut = self.wal.append(KIND_BATCH, partition.key, memoryview(buf)[start:end])
        self.tail_cache.put_slice(partition.key, base_offset, buf, start, end)
        self.pending_upload_bytes += end - start
        partition.bytes_in += end - start
        if self.pending_upload_bytes >= self.config["s3.upload.bytes"]:
            self.upload_wanted.set()
        if self.wal.size_bytes >= self.config["wal.max.bytes"]:
            self.wal_room.clear()
        return loc, fut

    def read_batch(self, partition: Partition, base_offset: int, location):
        data = self.tail_cache.get(partition.key, base_offset)
        if data is not None:
            self._read_tier("tail_cache", len(data))
            return data
        if is_location(location):
            if partition.storage.fenced:    # no longer ours: its WAL segments may be trimmed
                raise ObjectStoreError(f"partition {partition.topic}-{partition.index} was fenced "
                                       f"by a newer owner")
            data = self.wal.read(location)
            self._read_tier("wal", len(data))
            return data
        return None

    async def read_remote(self, partition: Partition, base_offset: int, location: ObjectRange) -> bytes:
        fetched = self.block_cache.bytes_fetched
        key, position, length = location
        data = await self.block_cache.read(key, position, position + length)
        missed = self.block_cache.bytes_fetched != fetched
        self.read_pacer.charge(len(data))
        self._read_tier("object_store" if missed else "block_cache", len(data))
        _verify_batch(data, location)
        if missed:
            self._read_ahead(partition, base_offset)
        return data

    def _read_ahead(self, p: Partition, base_offset: int) -> None:
        """A sequential reader that just missed will want what follows: warm the
        ranges of the next ``cache.readahead.bytes`` of this partition."""
        budget = self.config["cache.readahead.bytes"]
        ranges: dict[str, list[int]] = {}
        for _base, _last, _ts, size, loc in p.entries_from(base_offset + 1):
            if budget <= 0:
                break
            if is_object_range(loc):
                key, start, length = loc
                end = start + length
            elif type(loc) is RemoteSegment:
                key, start, end = loc.ref.object_key, loc.ref.position, loc.ref.position + loc.ref.length
            else:
                break   # local from here on
            span = ranges.get(key)
            if span is not None and span[1] == start:
                span[1] = end
            else:
                ranges[key] = [start, end]
            budget -= size
        for key, (start, end) in ranges.items():
            self.block_cache.prefetch(key, start, end)

    async def expand(self, partition: Partition, segment: RemoteSegment) -> None:
        """Read an uploaded segment once and index its batches one by one."""
        fut = self._expanding.get(id(segment))
        if fut is not None:
            await asyncio.shield(fut)
            return
        fut = self._expanding[id(segment)] = asyncio.get_running_loop().create_future()
        try:
            ref = segment.ref
            parts = await self.block_cache.read_parts(ref.object_key, ref.position,
                                                      ref.position + ref.length)
            # Checking and indexing a 50 MB segment (a few thousand batches) took
            # the event loop 50-100 ms: produce acks waited behind it. In a
            # thread, the loop gets the GIL back every switch interval.
            entries = await asyncio.to_thread(_index_segment, parts, ref)
            if not entries or entries[0][0] != ref.first_offset or entries[-1][1] != ref.last_offset:
                raise CorruptObject(ref.object_key, f"chunk at {ref.position} holds offsets "
                                                    f"{entries[0][0] if entries else None}.."
                                                    f"{entries[-1][1] if entries else None}, the "
                                                    f"manifest says {ref.first_offset}..{ref.last_offset}")
            partition.replace_segment(segment, entries)
            self._read_ahead(partition, ref.last_offset)
            fut.set_result(None)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()
            raise
        finally:
            del self._expanding[id(segment)]

    def _read_tier(self, tier: str, n: int) -> None:
        child = self._tier_counters.get(tier)  # labels() per batch was a lookup on the fetch path
        if child is None and self.metrics is not None:
            child = self._tier_counters[tier] = self.metrics.read_bytes.labels(tier)
        if child is not None:
            child.inc(n)

    # ------------------------------------------------------------------ topics
    def topic_config(self, topic: Topic, name: str):
        if name in topic.configs:
            return TOPIC_CONFIGS[name][0](topic.configs[name])
        return self.config.topic_default(name)

    def get(self, topic: str, index: int) -> Partition | None:
        return self.partitions.get((topic, index))

    def get_for_write(self, topic: str, index: int) -> Partition | None:
        """The partition if this broker may append to it: not being handed off."""
        p = self.partitions.get((topic, index))
        return None if p is None or p.sealed else p

    def missing(self, topic: str | None, index: int, unknown: ErrorCode = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                ) -> ErrorCode:
        """The error for a partition this broker does not serve: NOT_LEADER_OR_FOLLOWER
        when it exists (another broker owns it, or it is still loading here:
        clients refresh their metadata and retry), else ``unknown``."""
        t = self.metadata.topics.get(topic) if topic is not None else None
        return ErrorCode.NOT_LEADER_OR_FOLLOWER if t is not None and 0 <= index < t.partitions else unknown

    def topic_by_id(self, topic_id: uuid.UUID) -> Topic | None:
        return self.metadata.by_id(topic_id)

    # ---------------------------------------------------------- log start
    def delete_records(self, partition: Partition, offset: int) -> asyncio.Future:
        """Advance the log start offset durably (DeleteRecords, retention)."""
        loc, fut = self.wal.append(KIND_LOG_START, partition.key, _I64.pack(offset))
        partition.set_log_start_offset(offset)
        partition.storage.log_start_written(offset, loc[0])   # the WAL keeps it until the manifest does
        return fut

    def append_share_entry(self, partition: Partition, group_id: str, data: bytes) -> asyncio.Future:
        """Queue a share-partition state entry (kind 5, stamped with the
        partition's epoch); the WAL keeps it until a manifest holds a snapshot
        taken after it."""
        loc, fut = self.wal.append(KIND_SHARE, partition.key + group_id.encode(),
                                   _U32.pack(partition.storage.epoch or 0) + data)
        partition.storage.share_written(loc[0])
        return fut

    def append_group_entry(self, group_id: str, data: bytes, epoch: int = 0) -> asyncio.Future:
        """Queue a group-coordinator entry (kind 4, stamped with its coordinator
        partition's ``epoch``); the future resolves once it is durable."""
        _, fut = self.wal.append(KIND_GROUP_EPOCH, group_id.encode(), _U32.pack(epoch) + data)
        return fut

    # ------------------------------------------------------------ takeover
    async def _take_over(self, p: Partition, epoch: int, sources: Sources) -> None:
        """Replay dead owners' WAL tails for ``p`` (claimed and loaded at
        ``epoch``) into our own WAL, durably, before ``p`` serves
        (docs/failover.md §3 steps 4-6). Several owners when one died
        before it had recovered from the one before: oldest first."""
        async with contextlib.AsyncExitStack() as stack:
            tails = [(await stack.enter_async_context(self.dead_wals.reading(dead, generation)), dead_epoch)
                     for dead, dead_epoch, generation in sources]
            batches, log_start = select_batches(tails, p.key, p.log_end_offset, KIND_BATCH, KIND_LOG_START)
            fut = None
            for data in batches:
                h = read_header(data)
                loc, fut = self.wal.append(KIND_BATCH, p.key, data)
                p.replay_batch(h, loc)
                self.tail_cache.put(p.key, h.base_offset, data)
                self.pending_upload_bytes += len(data)
            if log_start is not None and log_start > p.log_start_offset:
                fut = self.delete_records(p, min(log_start, p.log_end_offset))
            shares = _share_entries(tails, p.key)
            for group_id, data in shares:       # over the manifest's share_state, in WAL order
                fut = self.append_share_entry(p, group_id, data)
                self.on_share_state(p, group_id, data)
            if fut is not None:
                await fut
        log.info("partition %s-%d: taken over from node %s at epoch %d, %d batches and %d share-state entries "
                 "replayed from its WAL", p.topic, p.index, "/".join(str(src[0]) for src in sources), epoch,
                 len(batches), len(shares))
        if self.on_recovered is not None:
            self.on_recovered(uuid.UUID(bytes=p.topic_id), p.index, epoch, sources)

    def keep_lost(self, p: Partition) -> None:
        """``p`` is lost or fenced: its batches only in our WAL stay there while
        a takeover may still read them (docs/failover.md invariant 5). A file
        WAL nobody else reads keeps nothing."""
        if not isinstance(self.wal, ObjectWriteAheadLog):
            return
        pin = p.storage.wal_pin(p)
        if pin is not None:
            self._lost_pins[(p.topic_id, p.index)] = (pin, p.leader_epoch)

    def lost_pins(self) -> list[int]:
        """WAL segments still pinned by lost partitions; releases the others."""
        me = self.node_id
        for key, (_seg, epoch) in list(self._lost_pins.items()):
            t = self.metadata.by_id(uuid.UUID(bytes=key[0]))
            i = key[1]
            if t is None or i >= t.partitions:
                del self._lost_pins[key]
            elif t.owners[i] == me and t.epochs[i] > epoch:
                del self._lost_pins[key]        # ours again, reloaded from the bucket
            elif t.owners[i] != me and not any(src[0] == me for src in t.recover[i] or ()):
                del self._lost_pins[key]        # recovered by its new owner, or never to be
        return [seg for seg, _ in self._lost_pins.values()]

    def drop_all(self) -> None:
        """Our WAL was fenced: stop serving everything (docs/failover.md §4)."""
        for task in list(self._claims):
            task.cancel()
        for p in self.partitions.values():
            self.tail_cache.discard_partition(p.key)
            p.storage.fence()
            p.wake_waiters()
        self.partitions.clear()
        self._wanted.clear()
        self._to_load.clear()
        self._recovering.clear()
        self._lost_pins.clear()
        self.pending_upload_bytes = 0

    # ------------------------------------------------------------ backpressure
    def _check_wal_room(self) -> None:
        if self.wal.size_bytes < self.config["wal.max.bytes"]:
            self.wal_room.set()
        else:
            self.wal_room.clear()

    async def wait_for_wal_room(self, timeout: float) -> bool:
        """False if the WAL is still full (the object store is behind) after ``timeout`` s."""
        if self.wal_room.is_set():
            return True
        try:
            await asyncio.wait_for(self.wal_room.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def storage_error(self, what: str, exc: BaseException) -> None:
        """Log an object-store failure once per kind until that kind succeeds again."""
        self._store_errors.failed(what, exc)

    def storage_ok(self, what: str) -> None:
        self._store_errors.ok(what)

    async def close(self) -> None:
        for task in list(self._claims):
            task.cancel()
        await asyncio.gather(*self._claims, return_exceptions=True)
        await self.wal.close()
        await self.dead_wals.close()
        if isinstance(self._wal_objects, DirWalObjects):
            self._wal_objects.close()
        await self.store.close()


# -- producer state in the bucket ------------------------------------------------------


def encode_producer_state(producers: dict[int, ProducerEntry]) -> dict:
    """Plain JSON for a manifest: {pid: [epoch, [[first_seq, last_seq, base_offset], ...],
    last_timestamp]}."""
    return {str(pid): [e.epoch, [list(b) for b in e.batches], e.last_timestamp]
            for pid, e in producers.items()}


def decode_producer_state(state: dict) -> dict[int, ProducerEntry]:
    out = {}
    for pid, (epoch, batches, *rest) in state.items():
        e = ProducerEntry(epoch, last_timestamp=rest[0] if rest else -1)   # absent: written before it
        e.batches.extend(tuple(b) for b in batches)
        out[int(pid)] = e
    return out


def _verify_batch(data, loc: ObjectRange) -> None:
    """A batch read back from the object store must be the one uploaded: check
    its length and its own CRC32C (covers attributes to the end)."""
    key, position, length = loc
    if len(data) != length or len(data) < 61 \
            or crc32c.crc32c(memoryview(data)[21:]) != int.from_bytes(data[17:21], "big"):
        raise CorruptObject(key, f"batch at {position} (+{length}) fails its CRC")


def now_ms() -> int:
    return int(time.time() * 1000)


def _index_segment(parts: list, ref) -> list[tuple]:
    """Verify an uploaded segment (its pieces, never joined) and list its
    batches as partition index entries pointing into the object."""
    data_object.verify_chunk(parts, ref, key=ref.object_key)
    return [(s.base_offset, s.last_offset, s.max_timestamp, s.size,
             (ref.object_key, ref.position + s.position, s.size))
            for s in data_object.iter_batches(parts, key=ref.object_key)]


def _share_entries(tails: list, key: bytes) -> list[tuple[str, bytes]]:
    """A partition's share-state entries (kind 5) in dead brokers' WAL entries,
    oldest owner first, each stamped with at most the epoch its broker owned
    the partition at: (group id, entry payload), in WAL order."""
    out = []
    for entries, max_epoch in tails:
        for e in entries:
            if e.kind != KIND_SHARE or len(e.key) <= len(key) or not bytes(e.key).startswith(key):
                continue
            if _U32.unpack_from(e.data, 0)[0] > max_epoch:
                continue
            out.append((bytes(e.key[len(key):]).decode(), bytes(e.data[_U32.size:])))
    return out
