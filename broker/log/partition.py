"""A partition: offsets, high watermark, idempotent-producer state, batch index.

Kafka semantics live here; bytes live in the WAL (and later the object store)
behind ``BatchStore``. Appends are synchronous up to queueing the WAL write, so
pipelined produce requests to one partition are appended in request order.

Offsets:
  log_start_offset <= high_watermark <= log_end_offset
  log_end_offset  next offset to assign (includes not-yet-fsynced batches)
  high_watermark  end of what is fsynced; fetches never read past it
"""
from __future__ import annotations

import asyncio
import bisect
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import ErrorCode
from ..tiering.state import PartitionStorage
from .leader_epochs import LeaderEpochCache
from .records import BatchHeader, assign_offset, set_log_append_time

PRODUCER_WINDOW = 5  # batches per producer remembered for de-duplication (Kafka's)


class BatchStore(Protocol):
    """Where a partition's batch bytes are written and read back.

    ``read_batch`` answers from memory or local disk without waiting, or None
    when the bytes must come from the object store (``read_remote``). An index
    entry whose location is a ``RemoteSegment`` stands for a whole uploaded
    range whose batches are not known yet; ``expand`` replaces it by one entry
    per batch (``replace_entries``).
    """

    def write_batch(self, partition: "Partition", base_offset: int, buf: bytearray, start: int,
                    end: int) -> tuple[object, asyncio.Future]: ...
    def read_batch(self, partition: "Partition", base_offset: int, location: object) -> bytes | None: ...
    async def read_remote(self, partition: "Partition", base_offset: int, location: object) -> bytes: ...
    async def expand(self, partition: "Partition", segment: "RemoteSegment") -> None: ...


@dataclass(frozen=True, slots=True)
class RemoteSegment:
    """Index entry for an uploaded range known only from the manifest: offsets
    ``first..last`` in ``ref`` (a SegmentRef). Expanded to batches on first read."""

    ref: object


class AppendError(Exception):
    def __init__(self, code: ErrorCode, message: str = "") -> None:
        super().__init__(message or code.name)
        self.code = code


@dataclass(slots=True)
class ProducerEntry:
    epoch: int
    # (first_seq, last_seq, base_offset) of the last appended batches
    batches: deque = field(default_factory=lambda: deque(maxlen=PRODUCER_WINDOW))
    last_timestamp: int = -1   # max timestamp of its last batch (DescribeProducers)

    @property
    def last_seq(self) -> int:
        return self.batches[-1][1] if self.batches else -1


@dataclass(slots=True)
class AppendResult:
    base_offset: int
    log_append_time: int  # -1 unless LogAppendTime
    durable: asyncio.Future | None  # None for a duplicate already durable
    duplicate: bool = False


class Partition:
    def __init__(self, topic_id: bytes, topic: str, index: int, store: BatchStore) -> None:
        self.topic_id = topic_id
        self.topic = topic
        self.index = index
        self.key = topic_id + index.to_bytes(4, "big", signed=True)
        self.store = store
        self.leader_epoch = 0
        self.log_start_offset = 0
        self.log_end_offset = 0
        self.high_watermark = 0
        # being handed off to another broker (docs/cluster.md section 7): no more appends
        self.sealed = False
        self.bytes_in = 0           # bytes appended by producers since start (the balancer's rates)
        self.producers: dict[int, ProducerEntry] = {}
        # which offset each leader epoch began at (OffsetForLeaderEpoch)
        self.leader_epochs = LeaderEpochCache()
        # Batch index, parallel lists sorted by offset.
        self._bases: list[int] = []
        self._lasts: list[int] = []
        self._max_ts: list[int] = []
        self._sizes: list[int] = []
        self._locs: list[object] = []
        self._waiters: set[asyncio.Future] = set()
        # Object storage: epoch, manifest, upload progress, offline (its writers
        # are listed in broker/tiering/state.py; read-only here).
        self.storage = PartitionStorage()

    # --------------------------------------------------------------- producers
    def check_producer(self, h: BatchHeader) -> tuple[ErrorCode, int | None]:
        """Validate an idempotent batch; return (error, base offset of a duplicate)."""
        if h.producer_id < 0 or h.base_sequence < 0:
            return ErrorCode.NONE, None
        entry = self.producers.get(h.producer_id)
        if entry is None:
            return ErrorCode.NONE, None  # unknown producer: accept any first sequence, as Kafka
        if h.producer_epoch < entry.epoch:
            return ErrorCode.INVALID_PRODUCER_EPOCH, None
        if h.producer_epoch > entry.epoch:
            if h.base_sequence != 0:
                return ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, None
            return ErrorCode.NONE, None
        for first, last, base in entry.batches:
            if first == h.base_sequence and last == h.last_sequence:
                return ErrorCode.NONE, base
        expected = (entry.last_seq + 1) % (1 << 31)
        if h.base_sequence != expected:
            return ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, None
        return ErrorCode.NONE, None

    def _record_producer(self, h: BatchHeader) -> None:
        if h.producer_id < 0 or h.base_sequence < 0:
            return
        entry = self.producers.get(h.producer_id)
        if entry is None or h.producer_epoch != entry.epoch:
            entry = self.producers[h.producer_id] = ProducerEntry(h.producer_epoch)
        entry.batches.append((h.base_sequence, h.last_sequence, h.base_offset))
        entry.last_timestamp = h.max_timestamp

    # ------------------------------------------------------------------ append
    def append(self, buf: bytearray, headers: list[BatchHeader], *,
               log_append_time_ms: int | None = None) -> AppendResult:
        """Assign offsets to ``buf``'s batches and queue them for the WAL.

        Raises AppendError with the partition-level Kafka error code.
        """
        for h in headers:
            code, dup_base = self.check_producer(h)
            if code:
                raise AppendError(code)
            if dup_base is not None:
                if len(headers) != 1:
                    raise AppendError(ErrorCode.DUPLICATE_SEQUENCE_NUMBER)
                return AppendResult(dup_base, -1, None, duplicate=True)
        base = self.log_end_offset
        next_offset = base
        for h in headers:
            assign_offset(buf, h, next_offset, self.leader_epoch)
            if log_append_time_ms is not None:
                set_log_append_time(buf, h, log_append_time_ms)
            next_offset += h.last_offset_delta + 1
        durable = None
        for h in headers:
            loc, durable = self.store.write_batch(self, h.base_offset, buf, h.position, h.position + h.size)
            self._index(h, loc)
            self._record_producer(h)
        self.log_end_offset = next_offset
        if self.leader_epochs.latest_epoch != self.leader_epoch:
            self.leader_epochs.assign(self.leader_epoch, base)
        assert durable is not None
        end = next_offset
        durable.add_done_callback(lambda f: f.exception() is None and self.advance_high_watermark(end))
        return AppendResult(base, log_append_time_ms if log_append_time_ms is not None else -1, durable)

    def index_entries(self):
        """(base, last, max_timestamp, size, location) of every indexed batch or segment."""
        return zip(self._bases, self._lasts, self._max_ts, self._sizes, self._locs)

    def add_segment(self, first: int, last: int, max_ts: int, size: int, ref: object) -> None:
        """Index an uploaded range from the manifest (recovery); see RemoteSegment."""
        self._bases.append(first)
        self._lasts.append(last)
        self._max_ts.append(max_ts)
        self._sizes.append(size)
        self._locs.append(RemoteSegment(ref))

    def replace_entries(self, first: int, last: int, entries: Sequence[tuple[int, int, int, int, object]]) -> bool:
        """Replace the index entries covering exactly offsets ``first..last`` by
        ``entries`` (base, last, max_ts, size, loc), for an upload (new
        locations), an expansion or a merge. False (nothing changed) if
        the entries there no longer span exactly that range, e.g. the log
        start moved past part of it."""
        i = bisect.bisect_left(self._lasts, first)
        j = bisect.bisect_left(self._lasts, last)
        if i >= len(self._bases) or j >= len(self._bases) or self._lasts[j] != last \
                or entries[-1][1] != last:
            return False
        self._splice(i, j + 1, entries)
        return True

    def replace_segment(self, segment: "RemoteSegment", entries: Sequence[tuple[int, int, int, int, object]]) -> bool:
        """Replace the one index entry that is ``segment`` by ``entries`` (its
        batches). False if that entry is gone (a merge or retention replaced
        it meanwhile): the reader then finds the new entry and goes on."""
        i = bisect.bisect_left(self._lasts, segment.ref.last_offset)
        if i >= len(self._locs) or self._locs[i] is not segment:
            return False
        keep = [e for e in entries if e[1] >= min(self.log_start_offset, self.storage.upload_from)]
        self._splice(i, i + 1, keep)
        return True

    def _splice(self, i: int, j: int, entries: Sequence[tuple[int, int, int, int, object]]) -> None:
        """Index positions [i, j) become ``entries`` (base, last, max_ts, size, loc)."""
        self._bases[i:j] = [e[0] for e in entries]
        self._lasts[i:j] = [e[1] for e in entries]
        self._max_ts[i:j] = [e[2] for e in entries]
        self._sizes[i:j] = [e[3] for e in entries]
        self._locs[i:j] = [e[4] for e in entries]

    def set_location(self, base_offset: int, loc: object) -> bool:
        """Point the batch at ``base_offset`` to a new location (after upload)."""
        i = bisect.bisect_left(self._bases, base_offset)
        if i < len(self._bases) and self._bases[i] == base_offset:
            self._locs[i] = loc
            return True
        return False

    def _index(self, h: BatchHeader, loc: object) -> None:
        self._bases.append(h.base_offset)
        self._lasts.append(h.last_offset)
        self._max_ts.append(h.max_timestamp)
        self._sizes.append(h.size)
        self._locs.append(loc)

    def replay_batch(self, h: BatchHeader, loc: object) -> None:
        """Rebuild state from a durable batch found during WAL recovery."""
        if h.base_offset < self.log_end_offset:
            return  # already known (should not happen in one WAL)
        self._index(h, loc)
        self._record_producer(h)
        self.leader_epochs.assign(h.partition_leader_epoch, h.base_offset)
        self.log_end_offset = self.high_watermark = h.last_offset + 1

    def became_owner(self) -> None:
        """This broker serves the partition from now on at ``leader_epoch``
        (loaded, WAL replayed or taken over): that epoch begins at the log
        end offset, as Kafka's leader records it when it becomes leader."""
        self.leader_epochs.assign(self.leader_epoch, self.log_end_offset)

    def advance_high_watermark(self, offset: int) -> None:
        if offset > self.high_watermark:
            self.high_watermark = offset
            self.wake_waiters()

    def wake_waiters(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for w in waiters:
            if not w.done():
                w.set_result(None)

    def add_waiter(self, fut: asyncio.Future) -> None:
        self._waiters.add(fut)

    def remove_waiter(self, fut: asyncio.Future) -> None:
        self._waiters.discard(fut)

    # ------------------------------------------------------------------- reads
    async def read(self, offset: int, max_bytes: int, *, min_one: bool,
                   remote_max_bytes: int | None = None) -> list[bytes]:
        """Whole batches from ``offset`` below the high watermark, up to max_bytes,
        of which at most ``remote_max_bytes`` from the object store (after the
        first batch; catch-up pacing).

        ``min_one`` returns the first batch even when it exceeds max_bytes, so a
        consumer can always make progress (Kafka's KIP-74 rule). Batches in
        memory or the WAL are read without awaiting; uploaded ones may wait for
        the object store. The index can change while waiting (log start,
        merges), so the position is found again by offset after each wait.
        """
        out: list[bytes] = []
        total = remote = 0
        next_offset = offset
        while True:
            i = bisect.bisect_left(self._lasts, next_offset)
            if i >= len(self._bases) or self._bases[i] >= self.high_watermark:
                return out
            base, last, size, loc = self._bases[i], self._lasts[i], self._sizes[i], self._locs[i]
            if type(loc) is RemoteSegment:
                await self.store.expand(self, loc)
                continue
            if total + size > max_bytes and (out or not min_one):
                return out
            data = self.store.read_batch(self, base, loc)
            if data is None:
                if remote_max_bytes is not None and remote + size > remote_max_bytes and out:
                    return out
                data = await self.store.read_remote(self, base, loc)
                remote += size
            out.append(data)
            total += size
            next_offset = last + 1

    def offset_for_timestamp(self, ts: int) -> tuple[int, int] | None:
        """First batch whose max timestamp >= ts: (batch index position, base offset)."""
        for i in self._live_durable():
            if self._max_ts[i] >= ts:
                return i, self._bases[i]
        return None

    def max_timestamp_batch(self) -> int | None:
        """Index of the (first) durable live batch holding the largest timestamp."""
        best = None
        for i in self._live_durable():
            if best is None or self._max_ts[i] > self._max_ts[best]:
                best = i
        return best

    def _live_durable(self):
        """Index positions of batches at or above the log start and below the high watermark."""
        hw = self.high_watermark
        for i in range(bisect.bisect_left(self._lasts, self.log_start_offset), len(self._bases)):
            if self._bases[i] >= hw:
                return
            yield i

    def is_segment(self, i: int) -> bool:
        return type(self._locs[i]) is RemoteSegment

    async def expand_at(self, i: int) -> None:
        if type(self._locs[i]) is RemoteSegment:
            await self.store.expand(self, self._locs[i])

    async def batch_at(self, i: int) -> bytes:
        """The batch at index position ``i`` (a segment is expanded first)."""
        while type(self._locs[i]) is RemoteSegment:
            base = self._bases[i]
            await self.store.expand(self, self._locs[i])
            i = bisect.bisect_left(self._lasts, base)
        data = self.store.read_batch(self, self._bases[i], self._locs[i])
        if data is None:
            data = await self.store.read_remote(self, self._bases[i], self._locs[i])
        return data

    def entries_from(self, offset: int):
        """Index entries (base, last, max_ts, size, loc) from the one holding ``offset`` on."""
        b, la, ts, sz, lo = self._bases, self._lasts, self._max_ts, self._sizes, self._locs
        for i in range(bisect.bisect_left(la, offset), len(b)):  # no list copies; callers never await
            yield b[i], la[i], ts[i], sz[i], lo[i]

    def retention_offset(self, now_ms: int, retention_ms: int, retention_bytes: int, limit: int) -> int | None:
        """Kafka's retention as a new log start: the first entry (batch or segment)
        to keep when older ones exceed ``retention.ms`` or the log exceeds
        ``retention.bytes``; only entries ending below ``limit`` (the uploaded
        end) may go. None when nothing expires."""
        total = sum(self._sizes)
        new_start = None
        for i in range(bisect.bisect_left(self._lasts, self.log_start_offset), len(self._bases)):
            if self._lasts[i] >= limit:
                break
            too_old = retention_ms >= 0 and self._max_ts[i] < now_ms - retention_ms
            too_big = retention_bytes >= 0 and total - self._sizes[i] >= retention_bytes
            if not (too_old or too_big):
                break
            total -= self._sizes[i]
            new_start = self._lasts[i] + 1
        return new_start

    def set_log_start_offset(self, offset: int, *, force: bool = False) -> None:
        """Advance the log start (DeleteRecords, retention); drop index entries below it.
        ``force`` re-applies the current one (after the index gained entries)."""
        if offset <= self.log_start_offset and not force:
            return
        self.log_start_offset = max(offset, self.log_start_offset)
        self.leader_epochs.truncate_from_start(self.log_start_offset)
        # Batches not uploaded yet stay indexed (but unreadable: below the log
        # start) so that the next upload stays contiguous with the manifest.
        i = bisect.bisect_left(self._lasts, min(self.log_start_offset, self.storage.upload_from))
        if i:
            del self._bases[:i], self._lasts[:i], self._max_ts[:i], self._sizes[:i], self._locs[:i]

    @property
    def size_bytes(self) -> int:
        return sum(self._sizes)
