"""The share-partition state machine (broker/share/partition.py), its durable
form (broker/share/state.py) and share.auto.offset.reset (offset_reset.py).

The cases follow what Kafka's SharePartitionTest checks that matters here:
acquire, accept / release / reject, lock expiry with redelivery and the
delivery count, the delivery limit archiving, SPSO over acknowledged and
archived prefixes, gaps, acknowledgements out of range or by another member,
the record-lock limit. A hypothesis test runs random operation sequences and
checks the invariants after every step and that replaying what was persisted
loses no acknowledgement.
"""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.errors import ErrorCode
from broker.share import offset_reset
from broker.share.errors import ShareErrorCode
from broker.share.partition import (
    AcknowledgementBatch,
    AcknowledgeType,
    AcquiredRecords,
    AcquireMode,
    ShareConfig,
    SharePartition,
)
from broker.share.state import (
    TERMINAL,
    CorruptShareState,
    DurableShareState,
    RecordState,
    ShareSnapshot,
    ShareUpdate,
    StateBatch,
    decode,
    decode_key,
    encode,
    encode_key,
)

A, B = "member-a", "member-b"
ACCEPT, RELEASE, REJECT, RENEW, GAP = (AcknowledgeType.ACCEPT, AcknowledgeType.RELEASE,
                                       AcknowledgeType.REJECT, AcknowledgeType.RENEW, AcknowledgeType.GAP)
LOCK = 30_000


def sp(start: int = 0, **kw: int) -> SharePartition:
    return SharePartition(ShareConfig(**kw), start)


def batches(first: int, last: int, size: int = 10) -> list[tuple[int, int]]:
    """The log's record batches covering first..last, ``size`` offsets each."""
    return [(b, min(b + size - 1, last)) for b in range(first, last + 1, size)]


def ack(first: int, last: int, *types: int) -> AcknowledgementBatch:
    return AcknowledgementBatch(first, last, tuple(int(t) for t in types))


def states(p: SharePartition) -> list[tuple[int, int, str, int]]:
    return [(r.first, r.last, r.state.name, r.delivery_count) for r in p.ranges]


# ------------------------------------------------------------------ acquire
def test_acquire_new_records_is_one_range_with_count_one():
    p = sp()
    got = p.acquire(A, 0, batches(0, 999, 100), 5000, now_ms=1000)
    assert got == [AcquiredRecords(0, 999, 1)]
    assert states(p) == [(0, 999, "ACQUIRED", 1)]
    assert p.ranges[0].member_id == A and p.ranges[0].deadline_ms == 1000 + LOCK
    assert (p.start_offset, p.next_offset, p.next_fetch_offset()) == (0, 1000, 1000)
    p.check_invariants()


def test_acquire_rounds_max_records_up_to_whole_log_batches():
    p = sp()
    assert p.acquire(A, 0, batches(0, 29), 15, now_ms=0) == [AcquiredRecords(0, 19, 1)]
    assert p.next_offset == 20


def test_record_limit_mode_acquires_exactly_max_records():
    p = sp()
    got = p.acquire(A, 0, batches(0, 29), 15, now_ms=0, mode=AcquireMode.RECORD_LIMIT)
    assert got == [AcquiredRecords(0, 14, 1)]
    # The rest of the log batch is in flight, never delivered, and fetched next.
    assert states(p) == [(0, 14, "ACQUIRED", 1), (15, 19, "AVAILABLE", 0)]
    assert p.next_fetch_offset() == 15
    assert p.acquire(B, 15, batches(10, 29), 3, now_ms=0, mode=AcquireMode.RECORD_LIMIT) == \
        [AcquiredRecords(15, 17, 1)]
    p.check_invariants()


def test_batch_size_cuts_acquired_ranges_at_log_batch_boundaries():
    p = sp()
    got = p.acquire(A, 0, batches(0, 99, 10), 100, now_ms=0, batch_size=25)
    assert got == [AcquiredRecords(0, 29, 1), AcquiredRecords(30, 59, 1), AcquiredRecords(60, 89, 1),
                   AcquiredRecords(90, 99, 1)]


def test_acquired_records_are_not_acquired_by_another_member():
    p = sp()
    p.acquire(A, 0, batches(0, 9), 10, now_ms=0)
    assert p.acquire(B, 0, batches(0, 9), 10, now_ms=0) == []
    assert p.acquire(B, 10, batches(10, 19), 10, now_ms=0) == [AcquiredRecords(10, 19, 1)]
    assert {r.member_id for r in p.ranges} == {A, B}


def test_record_lock_limit_stops_new_acquisitions_but_not_redelivery():
    p = sp(max_record_locks=100)
    assert p.acquire(A, 0, batches(0, 199), 500, now_ms=0) == [AcquiredRecords(0, 99, 1)]
    assert not p.can_acquire()
    assert p.acquire(B, 100, batches(100, 199), 500, now_ms=0) == []
    p.acknowledge(A, [ack(10, 19, RELEASE)], now_ms=0)
    assert p.can_acquire() and p.next_fetch_offset() == 10
    # Fetched from 10 on: only the released records are acquired, nothing past the window.
    assert p.acquire(B, 10, batches(10, 199), 500, now_ms=0) == [AcquiredRecords(10, 19, 2)]
    assert p.next_offset == 100
    p.acknowledge(A, [ack(0, 9, ACCEPT)], now_ms=0)      # SPSO moves: room for 10 more
    assert p.start_offset == 10 and p.can_acquire()
    assert p.acquire(B, 100, batches(100, 199), 500, now_ms=0) == [AcquiredRecords(100, 109, 1)]


def test_fetch_past_the_window_start_moves_an_empty_window():
    p = sp(start=0)
    assert p.acquire(A, 0, batches(50, 59), 100, now_ms=0) == [AcquiredRecords(50, 59, 1)]
    assert (p.start_offset, p.next_offset) == (50, 60)


def test_a_log_gap_inside_the_window_is_archived():
    p = sp()
    p.acquire(A, 0, batches(0, 9), 100, now_ms=0)
    assert p.acquire(A, 10, batches(20, 29), 100, now_ms=0) == [AcquiredRecords(20, 29, 1)]
    assert states(p) == [(0, 9, "ACQUIRED", 1), (10, 19, "ARCHIVED", 0), (20, 29, "ACQUIRED", 1)]
    p.acknowledge(A, [ack(0, 9, ACCEPT)], now_ms=0)
    assert p.start_offset == 20


# ------------------------------------------------------------- acknowledge
def test_accept_advances_spso_and_empties_the_window():
    p = sp()
    p.acquire(A, 0, batches(0, 9), 10, now_ms=0)
    out = p.acknowledge(A, [ack(0, 9, ACCEPT)], now_ms=5)
    assert out.error == ErrorCode.NONE
    assert out.update == ShareUpdate(0, 0, 0, 10, (StateBatch(0, 9, RecordState.ACKNOWLEDGED, 1),))
    assert (p.start_offset, p.next_offset, p.ranges) == (10, 10, [])


def test_release_makes_records_available_again_with_their_count():
    p = sp()
    p.acquire(A, 0, batches(0, 9), 10, now_ms=0)
    out = p.acknowledge(A, [ack(0, 4, RELEASE)], now_ms=0)
    assert out.update is not None and out.update.batches == (StateBatch(0, 4, RecordState.AVAILABLE, 1),)
    assert states(p) == [(0, 4, "AVAILABLE", 1), (5, 9, "ACQUIRED", 1)]
    assert p.next_fetch_offset() == 0
    assert p.acquire(B, 0, batches(0, 9), 10, now_ms=0) == [AcquiredRecords(0, 4, 2)]


def test_reject_archives_and_spso_passes_it():
    p = sp()
    p.acquire(A, 0, batches(0, 9), 10, now_ms=0)
    out = p.acknowledge(A, [ack(0, 9, REJECT)], now_ms=0)
    assert out.update is not None and out.update.batches == (StateBatch(0, 9, RecordState.ARCHIVED, 1),)
    assert p.start_offset == 10


def test_per_offset_types_split_the_range_and_gaps_archive():
    p = sp()
    p.acquire(A, 0, batches(0, 4), 10, now_ms=0)
    out = p.acknowledge(A, [ack(0, 4, ACCEPT, ACCEPT, RELEASE, GAP, REJECT)], now_ms=0)
    assert out.error == ErrorCode.NONE
    assert out.update is not None and out.update.start_offset == 2
    assert states(p) == [(2, 2, "AVAILABLE", 1), (3, 4, "ARCHIVED", 1)]


def test_spso_waits_for_the_first_unfinished_record():
    p = sp()
    p.acquire(A, 0, batches(0, 29), 30, now_ms=0)
    p.acknowledge(A, [ack(10, 29, ACCEPT)], now_ms=0)
    assert p.start_offset == 0
    p.acknowledge(A, [ack(0, 9, REJECT)], now_ms=0)
    assert (p.start_offset, p.ranges) == (30, [])


def test_acks_by_another_member_are_invalid_record_state_and_change_nothing():
    p = sp()
    p.acquire(A, 0, batches(0, 9), 10, now_ms=0)
    before = states(p)
    out = p.acknowledge(B, [ack(0, 9, ACCEPT)], now_ms=0)
    assert out.error == ShareErrorCode.INVALID_RECORD_STATE and out.update is None
    assert states(p) == before


def test_ack_of_records_not_acquired_is_invalid_record_state_all_or_nothing():
    p = sp()
    p.acquire(A, 0, batches(0, 9), 10, now_ms=0)
    p.acknowledge(A, [ack(5, 9, RELEASE)], now_ms=0)
    before = states(p)
    out = p.acknowledge(A, [ack(0, 4, ACCEPT), ack(5, 9, ACCEPT)], now_ms=0)
    assert out.error == ShareErrorCode.INVALID_RECORD_STATE
    assert states(p) == before                      # the valid first batch was not applied either


def test_acks_out_of_range():
    p = sp()
    assert p.acknowledge(A, [ack(0, 9, ACCEPT)], now_ms=0).error == ShareErrorCode.INVALID_RECORD_STATE
    p.acquire(A, 0, batches(0, 9), 10, now_ms=0)
    assert p.acknowledge(A, [ack(5, 15, ACCEPT)], now_ms=0).error == ErrorCode.INVALID_REQUEST
    assert p.acknowledge(A, [ack(10, 15, ACCEPT)], now_ms=0).error == ErrorCode.INVALID_REQUEST
    p.acknowledge(A, [ack(0, 9, ACCEPT)], now_ms=0)
    # Below SPSO: already done, skipped without an error (as Kafka).
    out = p.acknowledge(A, [ack(0, 9, ACCEPT)], now_ms=0)
    assert out.error == ErrorCode.NONE and out.update is None


@pytest.mark.parametrize("bad", [
    [ack(5, 4, ACCEPT)],                                  # empty range
    [ack(0, 4, ACCEPT), ack(4, 9, ACCEPT)],               # overlapping
    [ack(5, 9, ACCEPT), ack(0, 4, ACCEPT)],               # out of order
    [ack(0, 4, ACCEPT, ACCEPT)],                          # 2 types for 5 offsets
    [AcknowledgementBatch(0, 4, ())],                     # no type
    [ack(0, 4, 7)],                                       # unknown type
])
def test_malformed_acknowledgements_are_invalid_request(bad):
    p = sp()
    p.acquire(A, 0, batches(0, 9), 10, now_ms=0)
    assert p.acknowledge(A, bad, now_ms=0).error == ErrorCode.INVALID_REQUEST
    assert states(p) == [(0, 9, "ACQUIRED", 1)]


def test_renew_extends_the_lock_and_persists_nothing():
    p = sp()
    p.acquire(A, 0, batches(0, 9), 10, now_ms=0)
    out = p.acknowledge(A, [ack(0, 9, RENEW)], now_ms=20_000)
    assert out.error == ErrorCode.NONE and out.update is None
    assert p.next_deadline() == 20_000 + LOCK
    assert p.expire_locks(LOCK) is None
    assert p.acknowledge(A, [ack(0, 9, RENEW)], now_ms=0, renew_allowed=False).error == ErrorCode.INVALID_REQUEST


# ------------------------------------------------- locks and delivery limit
def test_lock_expiry_redelivers_with_a_higher_count():
    p = sp()
    p.acquire(A, 0, batches(0, 9), 10, now_ms=0)
    assert p.expire_locks(LOCK - 1) is None
    up = p.expire_locks(LOCK)
    assert up is not None and up.batches == (StateBatch(0, 9, RecordState.AVAILABLE, 1),)
    assert p.acquire(B, 0, batches(0, 9), 10, now_ms=LOCK) == [AcquiredRecords(0, 9, 2)]
    assert p.ranges[0].member_id == B
    # A's late ack is refused: the records are B's now.
    assert p.acknowledge(A, [ack(0, 9, ACCEPT)], now_ms=LOCK).error == ShareErrorCode.INVALID_RECORD_STATE


def test_delivery_limit_archives_and_the_last_attempts_go_alone():
    p = sp(delivery_count_limit=5)                  # throttled from count 3 on, last attempt is the 5th
    for t in range(3):
        assert p.acquire(A, 0, batches(0, 3, 4), 10, now_ms=t * LOCK) == [AcquiredRecords(0, 3, t + 1)]
        p.expire_locks((t + 1) * LOCK)
    now = 3 * LOCK
    # Delivered 3 times: redelivered in halves, each piece alone.
    assert p.acquire(A, 0, batches(0, 3, 4), 10, now_ms=now) == [AcquiredRecords(0, 1, 4)]
    assert p.acquire(A, 0, batches(0, 3, 4), 10, now_ms=now) == [AcquiredRecords(2, 2, 4)]
    assert p.acquire(A, 0, batches(0, 3, 4), 10, now_ms=now) == [AcquiredRecords(3, 3, 4)]
    p.release_member(A)
    # The last attempt: one record at a time.
    assert p.acquire(B, 0, batches(0, 3, 4), 10, now_ms=now) == [AcquiredRecords(0, 0, 5)]
    assert p.acquire(B, 0, batches(0, 3, 4), 10, now_ms=now) == [AcquiredRecords(1, 1, 5)]
    up = p.acknowledge(B, [ack(0, 0, RELEASE)], now_ms=now).update
    assert up is not None and up.batches == (StateBatch(0, 0, RecordState.ARCHIVED, 5),)
    up = p.expire_locks(now + LOCK)
    assert up is not None and up.batches == (StateBatch(1, 1, RecordState.ARCHIVED, 5),)
    assert p.start_offset == 2
    p.check_invariants()


def test_release_member_returns_its_records_only():
    p = sp()
    p.acquire(A, 0, batches(0, 9), 10, now_ms=0)
    p.acquire(B, 10, batches(10, 19), 10, now_ms=0)
    up = p.release_member(A)
    assert up is not None and up.batches == (StateBatch(0, 9, RecordState.AVAILABLE, 1),)
    assert states(p) == [(0, 9, "AVAILABLE", 1), (10, 19, "ACQUIRED", 1)]
    assert p.release_member(A) is None


def test_log_start_moves_spso_past_what_the_log_dropped():
    p = sp()
    p.acquire(A, 0, batches(0, 19), 20, now_ms=0)
    p.advance_log_start(15)
    assert (p.start_offset, states(p)) == (15, [(15, 19, "ACQUIRED", 1)])
    # A's ack of records below the new start is skipped; the rest applies.
    assert p.acknowledge(A, [ack(0, 19, ACCEPT)], now_ms=0).error == ErrorCode.NONE
    assert (p.start_offset, p.ranges) == (20, [])
    p.advance_log_start(30)
    assert (p.start_offset, p.next_offset) == (30, 30)


def test_reset_starts_a_new_state_epoch():
    p = sp()
    p.acquire(A, 0, batches(0, 9), 10, now_ms=0)
    snap = p.reset(100)
    assert snap == ShareSnapshot(1, 1, 0, 100, ())
    assert (p.start_offset, p.next_offset, p.state_epoch) == (100, 100, 1)


def test_lag_counts_what_is_not_done():
    p = sp()
    p.acquire(A, 0, batches(0, 29), 30, now_ms=0)
    p.acknowledge(A, [ack(10, 19, ACCEPT)], now_ms=0)
    assert p.delivery_complete_count() == 10
    assert p.lag(high_watermark=50) == 40


# ------------------------------------------------------------ durable form
def test_entries_round_trip_and_corruption_is_refused():
    snap = ShareSnapshot(2, 3, 7, 100, (StateBatch(100, 109, RecordState.ARCHIVED, 5),
                                     StateBatch(110, 110, RecordState.AVAILABLE, 2)))
    up = ShareUpdate(2, 3, 7, 105, (StateBatch(105, 109, RecordState.ACKNOWLEDGED, 1),))
    assert decode(encode(snap)) == snap and decode(encode(up)) == up
    data = encode(snap)
    for bad in (data[:-1], b"\x02" + data[1:], data[:1] + b"\x07" + data[2:], data[:-3] + b"\x01" + data[-2:]):
        with pytest.raises(CorruptShareState):
            decode(bad)
    key = encode_key(b"t" * 16, 3, "grp")
    assert decode_key(key) == (b"t" * 16, 3, "grp")


def test_snapshot_writes_acquired_records_as_their_lock_expiry_would():
    p = sp(delivery_count_limit=2)
    p.acquire(A, 0, batches(0, 9), 10, now_ms=0)
    p.expire_locks(LOCK)
    p.acquire(A, 0, batches(0, 19), 20, now_ms=LOCK)   # 0..9 at count 2 (the limit), 10..19 at 1
    snap = p.snapshot()
    # 0..9 are on their last delivery: a crash archives them, so the durable start is past them.
    assert (snap.start_offset, snap.batches) == (10, (StateBatch(10, 19, RecordState.AVAILABLE, 1),))
    assert p.start_offset == 0


def test_replay_of_snapshot_and_updates_loses_no_acknowledgement():
    p = sp()
    log: list[bytes] = [encode(p.take_snapshot())]
    p.acquire(A, 0, batches(0, 29), 30, now_ms=0)
    for out in (p.acknowledge(A, [ack(0, 9, ACCEPT)], now_ms=0).update,
                p.acknowledge(A, [ack(20, 29, REJECT)], now_ms=0).update,
                p.release_member(A)):
        assert out is not None
        log.append(encode(out))
    d = DurableShareState()
    for entry in log:
        d.apply(decode(entry))
    assert d.start_offset == 10
    assert d.batches == [StateBatch(10, 19, RecordState.AVAILABLE, 1), StateBatch(20, 29, RecordState.ARCHIVED, 1)]
    q = SharePartition.from_durable(ShareConfig(), d)
    assert states(q) == [(10, 19, "AVAILABLE", 1), (20, 29, "ARCHIVED", 1)]
    assert q.acquire(B, 10, batches(10, 29), 100, now_ms=0) == [AcquiredRecords(10, 19, 2)]


def test_updates_of_an_older_state_epoch_are_fenced():
    d = DurableShareState()
    assert d.apply(ShareSnapshot(0, 1, 0, 0, ()))
    assert d.apply(ShareSnapshot(1, 1, 0, 500, ()))               # admin reset
    assert not d.apply(ShareUpdate(0, 1, 0, 10, (StateBatch(0, 9, RecordState.ACKNOWLEDGED, 1),)))
    assert (d.start_offset, d.batches) == (500, [])


def test_gaps_in_the_durable_state_are_never_delivered_records():
    d = DurableShareState()
    d.apply(ShareSnapshot(0, 1, 0, 10, (StateBatch(20, 29, RecordState.ACKNOWLEDGED, 1),)))
    q = SharePartition.from_durable(ShareConfig(), d)
    assert states(q) == [(10, 19, "AVAILABLE", 0), (20, 29, "ACKNOWLEDGED", 1)]
    assert q.next_fetch_offset() == 10 and q.next_offset == 30
    assert q.acquire(A, 10, batches(10, 39), 100, now_ms=0) == [AcquiredRecords(10, 19, 1), AcquiredRecords(30, 39, 1)]


def test_applying_an_entry_twice_changes_nothing():
    d = DurableShareState()
    up = ShareUpdate(0, 1, 0, 0, (StateBatch(0, 9, RecordState.AVAILABLE, 2),))
    d.apply(ShareSnapshot(0, 1, 0, 0, ()))
    d.apply(up)
    once = d.snapshot()
    d.apply(up)
    assert d.snapshot() == once


# --------------------------------------------------- share.auto.offset.reset
def test_auto_offset_reset_values():
    assert offset_reset.parse("latest") == offset_reset.AutoOffsetReset("latest")
    assert offset_reset.parse("EARLIEST").strategy == "earliest"
    assert offset_reset.parse("by_duration:PT1H").duration_ms == 3_600_000
    assert offset_reset.parse("by_duration:P1DT2H3M4.5S").duration_ms == ((24 + 2) * 60 + 3) * 60_000 + 4500
    for bad in ("none", "by_duration:", "by_duration:PT", "by_duration:-PT1H", "by_duration:1h"):
        with pytest.raises(ValueError):
            offset_reset.parse(bad)
    kw = dict(log_start=5, log_end=50, now_ms=10_000)
    assert offset_reset.start_offset(offset_reset.parse("latest"), offset_for_timestamp=lambda ts: None, **kw) == 50
    assert offset_reset.start_offset(offset_reset.parse("earliest"), offset_for_timestamp=lambda ts: None, **kw) == 5
    asked = []
    by = offset_reset.parse("by_duration:PT5S")
    assert offset_reset.start_offset(by, offset_for_timestamp=lambda ts: asked.append(ts) or 20, **kw) == 20
    assert asked == [5_000]
    assert offset_reset.start_offset(by, offset_for_timestamp=lambda ts: None, **kw) == 50


# ------------------------------------------------------- random sequences
MEMBERS = ("m1", "m2", "m3")
LOG_END = 120          # the log holds offsets 0..119 in batches of BATCH
BATCH = 7

op = st.one_of(
    st.tuples(st.just("acquire"), st.sampled_from(MEMBERS), st.integers(1, 40), st.sampled_from(list(AcquireMode)),
              st.sampled_from([None, 5])),
    st.tuples(st.just("ack"), st.sampled_from(MEMBERS), st.integers(0, LOG_END), st.integers(0, 12),
              st.lists(st.sampled_from([0, 1, 2, 3, 4]), min_size=1, max_size=3)),
    st.tuples(st.just("expire"), st.integers(0, 3)),           # after 0..3 lock durations
    st.tuples(st.just("leave"), st.sampled_from(MEMBERS)),
    st.tuples(st.just("log_start"), st.integers(0, 20)),
    st.tuples(st.just("snapshot")),
)


def _log_batches(fetch_offset: int) -> list[tuple[int, int]]:
    """What a log read from ``fetch_offset`` returns: whole batches of BATCH offsets."""
    base = fetch_offset - fetch_offset % BATCH
    return [(b, min(b + BATCH - 1, LOG_END - 1)) for b in range(base, LOG_END, BATCH)]


def _expected_ack_error(p: SharePartition, member: str, first: int, last: int) -> int:
    """Kafka's answer to one acknowledgement batch, worked out record by record."""
    if last < p.start_offset:
        return ErrorCode.NONE
    if not p.ranges:
        return ShareErrorCode.INVALID_RECORD_STATE
    if last >= p.next_offset:
        return ErrorCode.INVALID_REQUEST
    for x in range(max(first, p.start_offset), last + 1):
        rec = p.record(x)
        if rec is None or rec.state != RecordState.ACQUIRED or rec.member_id != member:
            return ShareErrorCode.INVALID_RECORD_STATE
    return ErrorCode.NONE


@settings(max_examples=500, deadline=None)
@given(st.lists(op, max_size=60), st.integers(2, 4), st.integers(15, 60))
def test_random_operations_keep_the_invariants_and_replay_loses_nothing(ops, limit, locks):
    cfg = ShareConfig(delivery_count_limit=limit, max_record_locks=locks, record_lock_duration_ms=100)
    p = SharePartition(cfg, 0)
    log: list[bytes] = [encode(p.take_snapshot())]
    done: set[int] = set()          # offsets whose ACKNOWLEDGED/ARCHIVED state was handed to the log
    counts: dict[int, int] = {}     # highest delivery count seen per offset
    now = 0
    log_start = 0
    for o in ops:
        now += 10
        kind = o[0]
        if kind == "acquire":
            _, member, n, mode, size = o
            fetch = p.next_fetch_offset()
            if fetch >= LOG_END:
                continue
            acquired_before = {x for r in p.ranges if r.state == RecordState.ACQUIRED
                               for x in range(r.first, r.last + 1)}
            got = p.acquire(member, fetch, _log_batches(fetch), n, now, batch_size=size, mode=mode)
            for a in got:
                for x in range(a.first_offset, a.last_offset + 1):
                    # Delivered to at most one member at a time, never below SPSO, never after it is done.
                    assert x not in acquired_before and x >= p.start_offset and x not in done
                    assert a.delivery_count <= limit
                if mode == AcquireMode.RECORD_LIMIT:
                    assert sum(a.last_offset - a.first_offset + 1 for a in got) <= n
        elif kind == "ack":
            _, member, first, length, types = o
            last = first + length
            ts = tuple(types) if len(types) == 1 else tuple((types * (length + 1))[:length + 1])
            before = [(r.first, r.last, r.state, r.delivery_count, r.member_id) for r in p.ranges]
            expected = _expected_ack_error(p, member, first, last)
            was = {x: p.record(x) for x in range(first, last + 1)}
            was = {x: (r.state, r.delivery_count) for x, r in was.items() if r is not None}
            out = p.acknowledge(member, [AcknowledgementBatch(first, last, ts)], now)
            assert out.error == expected, (out, expected)
            if out.error:
                after = [(r.first, r.last, r.state, r.delivery_count, r.member_id) for r in p.ranges]
                assert after == before, "a refused acknowledgement changed state"
            else:
                for x, (_, count) in was.items():
                    t = ts[0] if len(ts) == 1 else ts[x - first]
                    rec = p.record(x)
                    got = rec.state if rec is not None else "done"
                    want = {1: {"done", RecordState.ACKNOWLEDGED}, 3: {"done", RecordState.ARCHIVED},
                            0: {"done", RecordState.ARCHIVED}, 4: {RecordState.ACQUIRED},
                            2: {"done", RecordState.ARCHIVED} if count >= limit else {RecordState.AVAILABLE}}[t]
                    assert got in want, (x, t, got)
                    if t == 4:
                        assert rec is not None and rec.member_id == member and rec.deadline_ms == now + 100
            if out.update is not None:
                log.append(encode(out.update))
                done.update(x for b in out.update.batches if b.delivery_state in TERMINAL
                            for x in range(b.first_offset, b.last_offset + 1))
        elif kind == "expire":
            now += o[1] * 100
            up = p.expire_locks(now)
            if up is not None:
                log.append(encode(up))
                done.update(x for b in up.batches if b.delivery_state in TERMINAL
                            for x in range(b.first_offset, b.last_offset + 1))
        elif kind == "leave":
            up = p.release_member(o[1])
            if up is not None:
                log.append(encode(up))
                done.update(x for b in up.batches if b.delivery_state in TERMINAL
                            for x in range(b.first_offset, b.last_offset + 1))
        elif kind == "log_start":
            log_start = max(log_start, min(o[1] + log_start, LOG_END))
            p.advance_log_start(log_start)
        else:
            log.append(encode(p.take_snapshot()))
            done.update(x for r in p.ranges if r.state in TERMINAL for x in range(r.first, r.last + 1))
            done.update(range(0, p.start_offset))
        p.check_invariants()
        assert p.in_flight() <= locks + BATCH
        for r in p.ranges:
            for x in range(r.first, r.last + 1):
                assert r.delivery_count >= counts.get(x, 0), "a delivery count went down"
                counts[x] = r.delivery_count
                if r.state == RecordState.AVAILABLE:
                    assert r.delivery_count < limit
        for x in done:
            rec = p.record(x)
            assert rec is None or rec.state in TERMINAL, f"offset {x} is done but {rec}"
    # Replay: every acknowledgement handed to the log survives; nothing comes back acquired.
    d = DurableShareState()
    persisted_start = 0
    for entry in log:
        e = decode(entry)
        d.apply(e)
        persisted_start = e.start_offset if isinstance(e, ShareSnapshot) else max(persisted_start, e.start_offset)
    assert d.start_offset == persisted_start
    assert all(b.first_offset >= d.start_offset for b in d.batches)
    q = SharePartition.from_durable(cfg, d)
    q.check_invariants()
    for x in range(p.start_offset, q.start_offset):
        # The durable start passes only what is done, or on its last delivery (a crash archives it).
        rec = p.record(x)
        assert rec is None or rec.state in TERMINAL or (
            rec.state == RecordState.ACQUIRED and rec.delivery_count >= limit), f"offset {x}: {rec}"
    for x in done:
        rec = q.record(x)
        assert x < q.start_offset or (rec is not None and rec.state in TERMINAL), f"offset {x} lost: {rec}"
    for r in q.ranges:
        assert r.state != RecordState.ACQUIRED
        for x in range(r.first, r.last + 1):
            assert r.delivery_count <= counts.get(x, 0)
    # A restart replays the last snapshot (from the bucket), then the WAL's entries
    # from an earlier cut: updates the snapshot holds are skipped, the result is the same.
    entries = [decode(e) for e in log]
    last = max(i for i, e in enumerate(entries) if isinstance(e, ShareSnapshot))
    d3 = DurableShareState()
    d3.apply(entries[last])
    for e in entries:
        if isinstance(e, ShareUpdate):
            d3.apply(e)
    assert d3.snapshot() == d.snapshot()
    # And a snapshot replays to exactly the state a lock expiry of everything would leave.
    d2 = DurableShareState()
    d2.apply(decode(encode(p.snapshot())))
    expected = p.snapshot()
    assert SharePartition.from_durable(cfg, d2).snapshot() == expected


def test_updates_written_before_a_snapshot_are_skipped_when_replayed_after_it():
    p = sp()
    p.acquire(A, 0, batches(0, 9), 10, now_ms=0)
    old = p.acknowledge(A, [ack(0, 9, RELEASE)], now_ms=0).update           # 0..9 available, count 1
    p.acquire(B, 0, batches(0, 9), 10, now_ms=0)
    p.acknowledge(B, [ack(0, 4, ACCEPT)], now_ms=0)
    snap = p.take_snapshot()                                                # 5..9 at count 2
    assert old is not None and old.snapshot_epoch < snap.snapshot_epoch
    d = DurableShareState()
    d.apply(snap)
    assert not d.apply(old)             # from the WAL, older than the snapshot in the bucket
    assert (d.start_offset, d.batches) == (5, [StateBatch(5, 9, RecordState.AVAILABLE, 2)])
    new = p.acknowledge(B, [ack(5, 9, REJECT)], now_ms=0).update
    assert new is not None and new.snapshot_epoch == snap.snapshot_epoch and d.apply(new)
    assert (d.start_offset, d.batches) == (10, [])
