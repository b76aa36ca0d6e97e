"""SharePartition: the records of one partition in flight to one share group.

Kafka keeps this in the partition leader (core/.../share/SharePartition.java);
this is the same state machine as pure logic: no I/O, no asyncio, the time
passed in (``now_ms``). Each operation that changes durable state returns the
``ShareUpdate`` (``state.py``) the caller must make durable before it answers
the client (docs/share-groups.md).

The in-flight window is the offsets ``start_offset`` (SPSO, Kafka's
share-partition start offset) .. ``next_offset - 1``, held as a sorted,
contiguous list of ranges, each one state, delivery count, member and lock
deadline: a batch of 1000 records is one range until an acknowledgement
splits it, and adjacent ranges that become equal merge again. Record states
and transitions are Kafka's (RecordState.validateTransition)::

    AVAILABLE --acquire (count + 1)--> ACQUIRED
    ACQUIRED --accept--> ACKNOWLEDGED                          (terminal)
    ACQUIRED --reject / gap--> ARCHIVED                        (terminal)
    ACQUIRED --release, lock expiry, member gone--> AVAILABLE,
             or ARCHIVED once count >= group.share.delivery.count.limit
    ACQUIRED --renew--> ACQUIRED with a new lock deadline

The delivery count only grows (acquisition); a release keeps it. The window
never starts with a terminal record: SPSO advances past every acknowledged or
archived prefix, so what is kept is at most the in-flight stretch.
New records are acquired only while the window holds fewer than
``group.share.partition.max.record.locks`` offsets (whole log batches in the
batch-optimized mode, so it can exceed the limit by less than one batch);
records already in the window can be acquired again at any time. A range
delivered ``ceil(limit / 2)`` times or more goes out alone and in halves, a
record on its last attempt alone (Kafka's throttling), so that one bad
record archives only itself.

Acknowledgement errors are Kafka's, per partition and all-or-nothing for one
request: INVALID_REQUEST for malformed batches (empty, unordered or
overlapping ranges, a type count that matches neither 1 nor the range,
an unknown type, offsets past the window), INVALID_RECORD_STATE for a record
that is not acquired or is acquired by another member (and for any ack while
nothing is in flight). Offsets below SPSO are skipped, as Kafka skips them.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Callable, Sequence

from ..errors import ErrorCode
from .errors import ShareErrorCode
from .state import TERMINAL, DurableShareState, RecordState, ShareSnapshot, ShareUpdate, StateBatch, merge

NO_MEMBER = ""


class AcknowledgeType(IntEnum):
    """ShareFetch/ShareAcknowledge ``acknowledge_types`` (clients' AcknowledgeType; 0 is a gap)."""

    GAP = 0
    ACCEPT = 1
    RELEASE = 2
    REJECT = 3
    RENEW = 4


class AcquireMode(IntEnum):
    """ShareFetch v2 ``share_acquire_mode`` (KIP-1206)."""

    BATCH_OPTIMIZED = 0    # whole log batches; max_records is a soft limit
    RECORD_LIMIT = 1       # exactly up to max_records


@dataclass(frozen=True, slots=True)
class ShareConfig:
    """The group's share configs (GroupConfig share.*, broker defaults group.share.*)."""

    delivery_count_limit: int = 5          # group.share.delivery.count.limit
    record_lock_duration_ms: int = 30_000  # group.share.record.lock.duration.ms
    max_record_locks: int = 2000           # group.share.partition.max.record.locks

    @property
    def throttle_limit(self) -> int:
        """From this delivery count on, a redelivered range goes out in ever smaller
        pieces (Kafka's throttleRecordsDeliveryLimit: half the limit, at least 2)."""
        return max(2, math.ceil(self.delivery_count_limit / 2))


@dataclass(frozen=True, slots=True)
class AcquiredRecords:
    """One ``acquired_records`` entry of a ShareFetch response."""

    first_offset: int
    last_offset: int
    delivery_count: int


@dataclass(frozen=True, slots=True)
class AcknowledgementBatch:
    """One ``acknowledgement_batches`` entry: one type for the range, or one per offset."""

    first_offset: int
    last_offset: int
    acknowledge_types: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an acknowledgement did: an error (nothing changed), or the update to persist."""

    error: int = ErrorCode.NONE
    message: str | None = None
    update: ShareUpdate | None = None


@dataclass(slots=True)
class InFlight:
    """A range of offsets in one state (member and deadline only while ACQUIRED)."""

    first: int
    last: int
    state: RecordState
    delivery_count: int
    member_id: str = NO_MEMBER
    deadline_ms: int = 0

    def same(self, other: InFlight) -> bool:
        return (self.state, self.delivery_count, self.member_id, self.deadline_ms) == \
            (other.state, other.delivery_count, other.member_id, other.deadline_ms)


_ACK_TYPES = frozenset(int(t) for t in AcknowledgeType)


def validate_acknowledgements(batches: Sequence[AcknowledgementBatch], *, renew_allowed: bool = True) -> str | None:
    """Why a partition's acknowledgement batches are malformed (INVALID_REQUEST), or None."""
    prev_last = None
    for b in batches:
        if b.first_offset < 0 or b.last_offset < b.first_offset:
            return f"acknowledgement batch {b.first_offset}..{b.last_offset} is empty"
        if prev_last is not None and b.first_offset <= prev_last:
            return "acknowledgement batches overlap or are out of order"
        n = len(b.acknowledge_types)
        if n != 1 and n != b.last_offset - b.first_offset + 1:
            return (f"{n} acknowledge types for {b.last_offset - b.first_offset + 1} offsets "
                    f"({b.first_offset}..{b.last_offset})")
        for t in b.acknowledge_types:
            if t not in _ACK_TYPES:
                return f"invalid acknowledge type {t}"
            if t == AcknowledgeType.RENEW and not renew_allowed:
                return "renew acknowledgements are not enabled"
        prev_last = b.last_offset
    return None


class SharePartition:
    """See the module docstring. ``ranges`` covers ``start_offset..next_offset - 1``."""

    def __init__(self, config: ShareConfig | Callable[[], ShareConfig], start_offset: int, *,
                 state_epoch: int = 0, leader_epoch: int = 0) -> None:
        self._config = config if callable(config) else lambda: config
        self.start_offset = start_offset
        self.next_offset = start_offset
        self.state_epoch = state_epoch
        self.snapshot_epoch = 0
        self.leader_epoch = leader_epoch
        self.reset_id = 0          # the last cluster-metadata reset applied (state.py)
        self.ranges: list[InFlight] = []

    @property
    def config(self) -> ShareConfig:
        """The group's share configs at this moment (a callable given: read at each
        use, as Kafka's SharePartition does, so a group config change applies at once)."""
        return self._config()

    # ---------------------------------------------------------------- reads
    def next_fetch_offset(self) -> int:
        """Where the next log read starts: the first AVAILABLE record in flight, else the window's end."""
        for r in self.ranges:
            if r.state == RecordState.AVAILABLE:
                return r.first
        return self.next_offset

    def can_acquire(self) -> bool:
        """Whether a fetch could acquire anything (Kafka's canAcquireRecords)."""
        return self.next_fetch_offset() != self.next_offset \
            or self.next_offset - self.start_offset < self.config.max_record_locks

    def in_flight(self) -> int:
        return self.next_offset - self.start_offset

    def delivery_complete_count(self) -> int:
        """Records at or above SPSO already acknowledged or archived (Kafka's deliveryCompleteCount)."""
        return sum(r.last - r.first + 1 for r in self.ranges if r.state in TERMINAL)

    def lag(self, high_watermark: int) -> int:
        """Records not yet delivered to completion (DescribeShareGroupOffsets v1 ``lag``)."""
        return max(0, high_watermark - self.start_offset - self.delivery_complete_count())

    def next_deadline(self) -> int | None:
        """The earliest acquisition lock deadline (when to call ``expire_locks``)."""
        deadlines = [r.deadline_ms for r in self.ranges if r.state == RecordState.ACQUIRED]
        return min(deadlines) if deadlines else None

    def record(self, offset: int) -> InFlight | None:
        """The range holding ``offset`` (None: outside the window)."""
        i = self._at(offset)
        if i < len(self.ranges) and self.ranges[i].first <= offset <= self.ranges[i].last:
            return self.ranges[i]
        return None

    # -------------------------------------------------------------- acquire
    def acquire(self, member_id: str, fetch_offset: int, batches: Sequence[tuple[int, int]],
                max_records: int, now_ms: int, *, batch_size: int | None = None,
                mode: AcquireMode = AcquireMode.BATCH_OPTIMIZED) -> list[AcquiredRecords]:
        """Acquire for ``member_id`` what a log read from ``fetch_offset`` returned:
        ``batches`` are its record batches as ``(base offset, last offset)``, in
        order and contiguous. AVAILABLE records in flight are acquired again
        (count + 1), then records past the window (count 1), at most
        ``max_records`` (rounded up to whole log batches unless RECORD_LIMIT)
        and within the record-lock limit. ``batch_size``: new records are
        handed out in acquired ranges of about that many records, cut at log
        batch boundaries. Nothing here is persisted (Kafka writes no state on
        acquisition)."""
        if not member_id:
            raise ValueError("acquire needs a member id")
        if max_records <= 0 or not batches:
            return []
        config = self.config        # the group's configs, read once per call
        lock_until = now_ms + config.record_lock_duration_ms
        fetch_first, fetch_last = batches[0][0], batches[-1][1]
        limit = min(max_records, config.max_record_locks - self.in_flight())
        last_to_acquire = fetch_last
        if limit <= 0:
            if not self.ranges or fetch_offset >= self.next_offset:
                return []                      # at the record-lock limit: nothing new
            # Re-acquire inside the window only.
            limit = min(max_records, self.next_offset - max(fetch_offset, self.start_offset))
            last_to_acquire = min(fetch_last, self.next_offset - 1)
        out: list[AcquiredRecords] = []
        acquired = 0
        stop = False
        lo = max(fetch_first, self.start_offset)
        i = self._at(lo)
        limit_count = config.delivery_count_limit
        throttle = config.throttle_limit
        while i < len(self.ranges) and not stop:
            r = self.ranges[i]
            if r.first > last_to_acquire or acquired >= limit:
                break
            if r.last < lo or r.state != RecordState.AVAILABLE:
                i += 1
                continue
            first = max(r.first, lo)
            last = min(r.last, last_to_acquire)
            if mode == AcquireMode.RECORD_LIMIT:
                last = min(last, first + limit - acquired - 1)
            else:
                # Whole log batches, as for new records (a merged range may span many).
                last = min(last, _batch_end(batches, first + limit - acquired - 1))
            n = last - first + 1
            if r.delivery_count >= throttle:
                # Redelivered too often: isolate it, in ever smaller pieces.
                if acquired > 0:
                    break
                n = min(n, max(1, (r.last - r.first + 1) >> (r.delivery_count - throttle + 1)))
                stop = True
            if limit_count > 2 and r.delivery_count == limit_count - 1:
                # Its last delivery goes alone, so that one bad record archives only itself.
                if acquired > 0:
                    break
                n = 1
                stop = True
            last = first + n - 1
            i = self._set(first, last, RecordState.ACQUIRED, r.delivery_count + 1, member_id, lock_until)
            out.append(AcquiredRecords(first, last, r.delivery_count + 1))
            acquired += n
        if not stop and acquired < limit and last_to_acquire >= self.next_offset:
            out.extend(self._acquire_new(member_id, batches, limit - acquired, last_to_acquire,
                                         lock_until, batch_size, mode))
        self._normalize()
        return out

    def _acquire_new(self, member_id: str, batches: Sequence[tuple[int, int]], remaining: int,
                     last_to_acquire: int, lock_until: int, batch_size: int | None,
                     mode: AcquireMode) -> list[AcquiredRecords]:
        first = max(self.next_offset, batches[0][0])
        if first > self.next_offset:
            if not self.ranges:
                self.start_offset = first      # the log starts later (retention, DeleteRecords)
            else:
                # Offsets the log no longer holds, inside the window: nothing to deliver.
                self.ranges.append(InFlight(self.next_offset, first - 1, RecordState.ARCHIVED, 0))
            self.next_offset = first
        if first > last_to_acquire:
            return []
        last = last_to_acquire
        end = last                              # the window's new end (inclusive)
        if last - first + 1 > remaining:
            want = first + remaining - 1
            end = _batch_end(batches, want)
            last = end if mode == AcquireMode.BATCH_OPTIMIZED else want
        cuts = [first]
        if mode == AcquireMode.BATCH_OPTIMIZED and batch_size and last - first + 1 > batch_size:
            for base, _ in batches:
                if cuts[-1] < base <= last and base - cuts[-1] >= batch_size:
                    cuts.append(base)
        out = []
        for k, start in enumerate(cuts):
            stop = cuts[k + 1] - 1 if k + 1 < len(cuts) else last
            self.ranges.append(InFlight(start, stop, RecordState.ACQUIRED, 1, member_id, lock_until))
            out.append(AcquiredRecords(start, stop, 1))
        if end > last:
            # RECORD_LIMIT: the rest of the last log batch is in flight but not delivered.
            self.ranges.append(InFlight(last + 1, end, RecordState.AVAILABLE, 0))
        self.next_offset = end + 1
        return out

    # ---------------------------------------------------------- acknowledge
    def acknowledge(self, member_id: str, batches: Sequence[AcknowledgementBatch], now_ms: int, *,
                    renew_allowed: bool = True) -> Outcome:
        """Apply ``member_id``'s acknowledgements, all or nothing (see the module docstring)."""
        problem = validate_acknowledgements(batches, renew_allowed=renew_allowed)
        if problem is not None:
            return Outcome(ErrorCode.INVALID_REQUEST, problem)
        plan: list[tuple[int, int, int]] = []      # (first, last, ack type), in order
        for b in batches:
            if b.last_offset < self.start_offset:
                continue                            # already past SPSO: nothing to do
            if not self.ranges:
                return Outcome(ShareErrorCode.INVALID_RECORD_STATE,
                               "Batch record not found. The request batch offsets are not found in the cache.")
            if b.first_offset >= self.next_offset:
                return Outcome(ErrorCode.INVALID_REQUEST,
                               "Batch record not found. The first offset in request is past acquired records.")
            if b.last_offset >= self.next_offset:
                return Outcome(ErrorCode.INVALID_REQUEST,
                               "Batch record not found. The last offset in request is past acquired records.")
            first = max(b.first_offset, self.start_offset)
            for r in self.ranges[self._at(first):]:
                if r.first > b.last_offset:
                    break
                if r.state != RecordState.ACQUIRED:
                    return Outcome(ShareErrorCode.INVALID_RECORD_STATE,
                                   "The record cannot be acknowledged. It is not in the acquired state.")
                if r.member_id != member_id:
                    return Outcome(ShareErrorCode.INVALID_RECORD_STATE, "Member is not the owner of the record")
            plan.extend(_runs(b, first))
        changed: list[StateBatch] = []
        renewed_until = now_ms + self.config.record_lock_duration_ms
        for first, last, ack in plan:
            if ack == AcknowledgeType.RENEW:
                self._for_each(first, last, lambda r: self._set(
                    r.first, r.last, RecordState.ACQUIRED, r.delivery_count, r.member_id, renewed_until))
                continue
            target = {AcknowledgeType.ACCEPT: RecordState.ACKNOWLEDGED,
                      AcknowledgeType.RELEASE: RecordState.AVAILABLE}.get(AcknowledgeType(ack), RecordState.ARCHIVED)
            changed.extend(self._release_or_settle(first, last, target))
        self._normalize()
        return Outcome(update=self._update(changed) if changed else None)

    # --------------------------------------------------------- lock release
    def expire_locks(self, now_ms: int) -> ShareUpdate | None:
        """Locks past their deadline: back to AVAILABLE (ARCHIVED at the delivery limit)."""
        changed: list[StateBatch] = []
        for r in [r for r in self.ranges if r.state == RecordState.ACQUIRED and r.deadline_ms <= now_ms]:
            changed.extend(self._release_or_settle(r.first, r.last, RecordState.AVAILABLE))
        self._normalize()
        return self._update(changed) if changed else None

    def release_member(self, member_id: str) -> ShareUpdate | None:
        """The member left (share session closed, connection gone): its records as at lock expiry."""
        changed: list[StateBatch] = []
        for r in [r for r in self.ranges if r.state == RecordState.ACQUIRED and r.member_id == member_id]:
            changed.extend(self._release_or_settle(r.first, r.last, RecordState.AVAILABLE))
        self._normalize()
        return self._update(changed) if changed else None

    def advance_log_start(self, log_start_offset: int) -> None:
        """The log no longer holds offsets below ``log_start_offset`` (retention,
        DeleteRecords): SPSO moves there. Not persisted here, as in Kafka: the
        next write carries the new start, and a reload applies the log start again."""
        if log_start_offset <= self.start_offset:
            return
        self.ranges = [r for r in self.ranges if r.last >= log_start_offset]
        if self.ranges and self.ranges[0].first < log_start_offset:
            self.ranges[0] = replace(self.ranges[0], first=log_start_offset)
        self.start_offset = log_start_offset
        self.next_offset = max(self.next_offset, log_start_offset)
        self._normalize()

    def reset(self, start_offset: int) -> ShareSnapshot:
        """Admin reset (AlterShareGroupOffsets; the group is empty): a new state
        epoch, nothing in flight, SPSO at ``start_offset``. Returns the snapshot
        to persist."""
        self.state_epoch += 1
        self.ranges = []
        self.start_offset = self.next_offset = start_offset
        return self.take_snapshot()

    # -------------------------------------------------------------- durable
    def take_snapshot(self) -> ShareSnapshot:
        """A snapshot to persist: the snapshot epoch grows, so that updates
        written before it are told apart on replay (``state.py``)."""
        self.snapshot_epoch += 1
        return self.snapshot()

    def snapshot(self) -> ShareSnapshot:
        """The durable state now (at the current snapshot epoch): every acquired
        range as its lock expiry would leave it (a crash is a lock expiry),
        never-delivered tail ranges left out."""
        batches = []
        for r in self.ranges:
            state, count = r.state, r.delivery_count
            if state == RecordState.ACQUIRED:
                state = self._expired_state(count)
            batches.append(StateBatch(r.first, r.last, state, count))
        batches = merge(batches)
        done = 0
        while done < len(batches) and batches[done].delivery_state in TERMINAL:
            done += 1            # archived by the expiry: the start moves past them
        start = batches[done].first_offset if done < len(batches) else self.next_offset
        batches = batches[done:]
        while batches and batches[-1].delivery_state == RecordState.AVAILABLE and batches[-1].delivery_count == 0:
            batches.pop()
        return ShareSnapshot(self.state_epoch, self.snapshot_epoch, self.leader_epoch, start, tuple(batches),
                             self.reset_id)

    @classmethod
    def from_durable(cls, config: ShareConfig | Callable[[], ShareConfig], durable: DurableShareState, *,
                     leader_epoch: int | None = None) -> SharePartition:
        """The share-partition a new owner serves from the replayed state: nothing
        acquired; offsets no batch covers were never delivered (AVAILABLE, 0)."""
        if not durable.initialized:
            raise ValueError("no state to load: initialize the share-partition first")
        sp = cls(config, durable.start_offset, state_epoch=durable.state_epoch,
                 leader_epoch=durable.leader_epoch if leader_epoch is None else leader_epoch)
        sp.snapshot_epoch = durable.snapshot_epoch
        sp.reset_id = durable.reset_id
        at = durable.start_offset
        for b in durable.batches:
            if b.last_offset < at:
                continue
            first = max(b.first_offset, at)
            if first > at:
                sp.ranges.append(InFlight(at, first - 1, RecordState.AVAILABLE, 0))
            sp.ranges.append(InFlight(first, b.last_offset, b.delivery_state, b.delivery_count))
            at = b.last_offset + 1
        sp.next_offset = at
        sp._normalize()
        return sp

    # -------------------------------------------------------------- helpers
    def _expired_state(self, count: int) -> RecordState:
        return RecordState.ARCHIVED if count >= self.config.delivery_count_limit else RecordState.AVAILABLE

    def _release_or_settle(self, first: int, last: int, target: RecordState) -> list[StateBatch]:
        """Set ``first..last`` (all ACQUIRED) to ``target``; a release at the
        delivery limit archives. Returns the state batches written."""
        changed: list[StateBatch] = []

        def settle(r: InFlight) -> None:
            state = self._expired_state(r.delivery_count) if target == RecordState.AVAILABLE else target
            self._set(r.first, r.last, state, r.delivery_count, NO_MEMBER, 0)
            changed.append(StateBatch(r.first, r.last, state, r.delivery_count))

        self._for_each(first, last, settle)
        return changed

    def _for_each(self, first: int, last: int, fn: Callable[[InFlight], object]) -> None:
        """Call ``fn`` with each range's part inside ``first..last`` (as a copy)."""
        parts = []
        for r in self.ranges[self._at(first):]:
            if r.first > last:
                break
            parts.append(InFlight(max(r.first, first), min(r.last, last), r.state, r.delivery_count,
                                  r.member_id, r.deadline_ms))
        for p in parts:
            fn(p)

    def _set(self, first: int, last: int, state: RecordState, count: int, member: str, deadline: int) -> int:
        """Give ``first..last`` (inside the window) one state; returns the index after it."""
        i = self._split(first)
        j = self._split(last + 1)
        self.ranges[i:j] = [InFlight(first, last, state, count, member, deadline)]
        return i + 1

    def _at(self, offset: int) -> int:
        """The index of the range holding ``offset``, or of the first range after it."""
        i = bisect.bisect_right(self.ranges, offset, key=_first) - 1
        if i < 0:
            return 0
        return i if offset <= self.ranges[i].last else i + 1

    def _split(self, offset: int) -> int:
        """Make ``offset`` start a range (or be the window's end); its index."""
        i = self._at(offset)
        if i < len(self.ranges):
            r = self.ranges[i]
            if r.first < offset <= r.last:
                self.ranges[i:i + 1] = [replace(r, last=offset - 1), replace(r, first=offset)]
                return i + 1
        return i

    def _normalize(self) -> None:
        """Merge equal neighbours; advance SPSO past the terminal prefix."""
        merged: list[InFlight] = []
        for r in self.ranges:
            if merged and merged[-1].last + 1 == r.first and merged[-1].same(r):
                merged[-1] = replace(merged[-1], last=r.last)
            else:
                merged.append(r)
        while merged and merged[0].state in TERMINAL:
            merged.pop(0)
        self.ranges = merged
        self.start_offset = merged[0].first if merged else self.next_offset

    def _update(self, changed: list[StateBatch]) -> ShareUpdate:
        return ShareUpdate(self.state_epoch, self.snapshot_epoch, self.leader_epoch, self.start_offset,
                           tuple(merge(changed)))

    def check_invariants(self) -> None:
        """Raise AssertionError if the window is inconsistent (tests, and a debug aid)."""
        at = self.start_offset
        assert self.start_offset <= self.next_offset, (self.start_offset, self.next_offset)
        for k, r in enumerate(self.ranges):
            assert r.first == at and r.first <= r.last, f"range {k} {r} not contiguous from {at}"
            at = r.last + 1
            if r.state == RecordState.ACQUIRED:
                assert r.member_id and r.deadline_ms > 0 and r.delivery_count >= 1, r
            else:
                assert r.member_id == NO_MEMBER and r.deadline_ms == 0, r
        assert at == self.next_offset, (at, self.next_offset)
        assert not self.ranges or self.ranges[0].state not in TERMINAL, self.ranges[0]


def _first(r: InFlight) -> int:
    return r.first


def _batch_end(batches: Sequence[tuple[int, int]], offset: int) -> int:
    """The last offset of the log batch holding ``offset`` (``offset`` if none does)."""
    for base, last in batches:
        if base <= offset <= last:
            return last
    return offset


def _runs(b: AcknowledgementBatch, first: int) -> list[tuple[int, int, int]]:
    """``b`` from ``first`` on as (first, last, type) runs of one type each."""
    if len(b.acknowledge_types) == 1:
        return [(first, b.last_offset, b.acknowledge_types[0])]
    runs: list[tuple[int, int, int]] = []
    for offset in range(first, b.last_offset + 1):
        t = b.acknowledge_types[offset - b.first_offset]
        if runs and runs[-1][2] == t and runs[-1][1] + 1 == offset:
            runs[-1] = (runs[-1][0], offset, t)
        else:
            runs.append((offset, offset, t))
    return runs
