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
from dataclasses import dataclass, field
from typing import Protocol

from .errors import ErrorCode
from .records import BatchHeader, assign_offset, set_log_append_time

PRODUCER_WINDOW = 5  # batches per producer remembered for de-duplication (Kafka's)


class BatchStore(Protocol):
    """Where a partition's batch bytes are written and read back."""

    def write_batch(self, partition: "Partition", base_offset: int, data) -> tuple[object, asyncio.Future]: ...
    def read_batch(self, partition: "Partition", base_offset: int, location: object) -> bytes: ...


class AppendError(Exception):
    def __init__(self, code: ErrorCode, message: str = "") -> None:
        super().__init__(message or code.name)
        self.code = code


@dataclass(slots=True)
class ProducerEntry:
    epoch: int
    # (first_seq, last_seq, base_offset) of the last appended batches
    batches: deque = field(default_factory=lambda: deque(maxlen=PRODUCER_WINDOW))

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
        self.producers: dict[int, ProducerEntry] = {}
        # Batch index, parallel lists sorted by offset.
        self._bases: list[int] = []
        self._lasts: list[int] = []
        self._max_ts: list[int] = []
        self._sizes: list[int] = []
        self._locs: list[object] = []
        self._waiters: set[asyncio.Future] = set()

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
        view = memoryview(buf)
        durable = None
        for h in headers:
            data = view[h.position:h.position + h.size]
            loc, durable = self.store.write_batch(self, h.base_offset, data)
            self._index(h, loc)
            self._record_producer(h)
        self.log_end_offset = next_offset
        assert durable is not None
        end = next_offset
        durable.add_done_callback(lambda f: f.exception() is None and self.advance_high_watermark(end))
        return AppendResult(base, log_append_time_ms if log_append_time_ms is not None else -1, durable)

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
        self.log_end_offset = self.high_watermark = h.last_offset + 1

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
    def read(self, offset: int, max_bytes: int, *, min_one: bool) -> list[bytes]:
        """Whole batches from ``offset`` below the high watermark, up to max_bytes.

        ``min_one`` returns the first batch even when it exceeds max_bytes, so a
        consumer can always make progress (Kafka's KIP-74 rule).
        """
        i = bisect.bisect_left(self._lasts, offset)
        out: list[bytes] = []
        total = 0
        hw = self.high_watermark
        while i < len(self._bases) and self._bases[i] < hw:
            size = self._sizes[i]
            if total + size > max_bytes and (out or not min_one):
                break
            out.append(self.store.read_batch(self, self._bases[i], self._locs[i]))
            total += size
            i += 1
        return out

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

    def batch_at(self, i: int) -> bytes:
        return self.store.read_batch(self, self._bases[i], self._locs[i])

    def set_log_start_offset(self, offset: int) -> None:
        """Advance the log start (DeleteRecords, retention); drop index entries below it."""
        if offset <= self.log_start_offset:
            return
        self.log_start_offset = offset
        i = bisect.bisect_left(self._lasts, offset)
        if i:
            del self._bases[:i], self._lasts[:i], self._max_ts[:i], self._sizes[:i], self._locs[:i]

    @property
    def size_bytes(self) -> int:
        return sum(self._sizes)
