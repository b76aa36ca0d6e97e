"""broker.fetch_session: KIP-227 (session_id, epoch) semantics, eviction, forgotten partitions."""
from __future__ import annotations

import uuid

import pytest

from broker.errors import ErrorCode
from broker.fetch_session import FetchSessionCache, FetchSessionError, SessionPartition


def sp(topic="t", partition=0, offset=0, max_bytes=1 << 20, topic_id=None) -> SessionPartition:
    return SessionPartition(topic, topic_id, partition, offset, max_bytes)


def keys(parts) -> list[tuple]:
    return [(p.topic_id or p.topic, p.partition) for p in parts]


def open_session(cache: FetchSessionCache, parts=None):
    session, fetch, incremental = cache.resolve(0, 0, parts if parts is not None else [sp()], [])
    assert session is not None and not incremental
    return session


def expect_error(cache, session_id, epoch, code):
    with pytest.raises(FetchSessionError) as ei:
        cache.resolve(session_id, epoch, [], [])
    assert ei.value.code == code


# ----------------------------------------------------- the (id, epoch) table
def test_0_minus1_is_a_sessionless_full_fetch():
    cache = FetchSessionCache(10)
    req = [sp(partition=0), sp(partition=1)]
    session, parts, incremental = cache.resolve(0, -1, req, [])
    assert session is None
    assert parts == req
    assert incremental is False
    assert len(cache) == 0


def test_0_0_opens_a_session_with_a_full_fetch():
    cache = FetchSessionCache(10)
    req = [sp(partition=0), sp(partition=1)]
    session, parts, incremental = cache.resolve(0, 0, req, [])
    assert session is not None and session.id != 0
    assert session.epoch == 1  # the next incremental request must carry epoch 1
    assert parts == req and incremental is False
    assert keys(session.partitions.values()) == [("t", 0), ("t", 1)]
    assert len(cache) == 1


def test_x_minus1_closes_the_session_and_fetches_sessionless():
    cache = FetchSessionCache(10)
    s = open_session(cache)
    req = [sp(partition=3)]
    session, parts, incremental = cache.resolve(s.id, -1, req, [])
    assert session is None and parts == req and not incremental
    assert len(cache) == 0
    expect_error(cache, s.id, 1, ErrorCode.FETCH_SESSION_ID_NOT_FOUND)


def test_x_0_closes_the_session_and_opens_a_new_one():
    cache = FetchSessionCache(10)
    s = open_session(cache, [sp(partition=0)])
    req = [sp(partition=7)]
    new, parts, incremental = cache.resolve(s.id, 0, req, [])
    assert new is not None and new.id != s.id and new.epoch == 1
    assert parts == req and not incremental
    assert keys(new.partitions.values()) == [("t", 7)]
    assert len(cache) == 1
    expect_error(cache, s.id, 1, ErrorCode.FETCH_SESSION_ID_NOT_FOUND)


def test_x_n_is_incremental_and_epochs_advance():
    cache = FetchSessionCache(10)
    s = open_session(cache, [sp(partition=0, offset=5), sp(partition=1, offset=9)])
    for epoch in (1, 2, 3):
        session, parts, incremental = cache.resolve(s.id, epoch, [], [])
        assert session is s and incremental is True
        # An incremental request lists only changes; the session supplies the rest.
        assert keys(parts) == [("t", 0), ("t", 1)]
        assert [p.fetch_offset for p in parts] == [5, 9]
        assert s.epoch == epoch + 1


def test_incremental_updates_offsets_and_adds_partitions():
    cache = FetchSessionCache(10)
    s = open_session(cache, [sp(partition=0, offset=5), sp(partition=1, offset=9)])
    _, parts, _ = cache.resolve(s.id, 1, [sp(partition=1, offset=20, max_bytes=100),
                                          sp(partition=2, offset=1)], [])
    assert keys(parts) == [("t", 0), ("t", 1), ("t", 2)]
    by_key = {(p.topic, p.partition): p for p in parts}
    assert by_key[("t", 0)].fetch_offset == 5
    assert (by_key[("t", 1)].fetch_offset, by_key[("t", 1)].max_bytes) == (20, 100)
    assert by_key[("t", 2)].fetch_offset == 1


def test_incremental_keeps_last_reported_state_of_existing_partitions():
    cache = FetchSessionCache(10)
    s = open_session(cache, [sp(partition=0)])
    stored = s.partitions[("t", 0)]
    stored.last_hw, stored.last_log_start = 50, 3
    _, parts, _ = cache.resolve(s.id, 1, [sp(partition=0, offset=10)], [])
    assert parts[0] is stored  # same object: what the client last heard survives
    assert (parts[0].last_hw, parts[0].last_log_start, parts[0].fetch_offset) == (50, 3, 10)


def test_unknown_session_id_is_fetch_session_id_not_found():
    cache = FetchSessionCache(10)
    expect_error(cache, 12345, 1, ErrorCode.FETCH_SESSION_ID_NOT_FOUND)
    expect_error(cache, 0, 1, ErrorCode.FETCH_SESSION_ID_NOT_FOUND)


@pytest.mark.parametrize("bad_epoch", [2, 5, 1000])
def test_wrong_epoch_is_invalid_fetch_session_epoch(bad_epoch):
    cache = FetchSessionCache(10)
    s = open_session(cache)
    expect_error(cache, s.id, bad_epoch, ErrorCode.INVALID_FETCH_SESSION_EPOCH)
    # The error leaves the session as it was: the right epoch still works.
    session, _, incremental = cache.resolve(s.id, 1, [], [])
    assert session is s and incremental and s.epoch == 2


def test_replayed_epoch_is_rejected():
    cache = FetchSessionCache(10)
    s = open_session(cache)
    cache.resolve(s.id, 1, [], [])
    expect_error(cache, s.id, 1, ErrorCode.INVALID_FETCH_SESSION_EPOCH)


def test_epoch_wraps_to_1_after_int32_max():
    cache = FetchSessionCache(10)
    s = open_session(cache)
    s.epoch = 2**31 - 1
    cache.resolve(s.id, 2**31 - 1, [], [])
    assert s.epoch == 1
    cache.resolve(s.id, 1, [], [])
    assert s.epoch == 2


def test_zero_slots_never_creates_sessions():
    cache = FetchSessionCache(0)
    req = [sp()]
    session, parts, incremental = cache.resolve(0, 0, req, [])
    assert session is None and parts == req and not incremental
    assert len(cache) == 0


def test_session_ids_are_unique_and_nonzero():
    cache = FetchSessionCache(100)
    ids = [open_session(cache).id for _ in range(50)]
    assert 0 not in ids
    assert len(set(ids)) == 50


# ----------------------------------------------------------------- eviction
def test_eviction_beyond_max_slots_drops_the_oldest():
    cache = FetchSessionCache(3)
    s = [open_session(cache) for _ in range(5)]
    assert len(cache) == 3
    for old in s[:2]:
        expect_error(cache, old.id, 1, ErrorCode.FETCH_SESSION_ID_NOT_FOUND)
    for live in s[2:]:
        session, _, _ = cache.resolve(live.id, 1, [], [])
        assert session is live


def test_eviction_is_least_recently_used():
    cache = FetchSessionCache(2)
    a = open_session(cache)
    b = open_session(cache)
    cache.resolve(a.id, 1, [], [])  # a is now the most recently used
    c = open_session(cache)
    assert len(cache) == 2
    expect_error(cache, b.id, 1, ErrorCode.FETCH_SESSION_ID_NOT_FOUND)
    assert cache.resolve(a.id, 2, [], [])[0] is a
    assert cache.resolve(c.id, 1, [], [])[0] is c


# ------------------------------------------------------- forgotten partitions
def test_forgotten_partitions_leave_the_session():
    cache = FetchSessionCache(10)
    s = open_session(cache, [sp(partition=i) for i in range(4)])
    _, parts, _ = cache.resolve(s.id, 1, [], [("t", 1), ("t", 3)])
    assert keys(parts) == [("t", 0), ("t", 2)]
    _, parts, _ = cache.resolve(s.id, 2, [], [])
    assert keys(parts) == [("t", 0), ("t", 2)]


def test_forgetting_unknown_partition_is_harmless():
    cache = FetchSessionCache(10)
    s = open_session(cache, [sp(partition=0)])
    _, parts, _ = cache.resolve(s.id, 1, [], [("t", 9), ("other", 0)])
    assert keys(parts) == [("t", 0)]


def test_forgotten_and_re_added_in_one_request():
    """Kafka applies additions before removals: a partition in both lists is dropped."""
    cache = FetchSessionCache(10)
    s = open_session(cache, [sp(partition=0), sp(partition=1)])
    _, parts, _ = cache.resolve(s.id, 1, [sp(partition=1, offset=4)], [("t", 1)])
    assert keys(parts) == [("t", 0)]


def test_sessions_keyed_by_topic_id():
    cache = FetchSessionCache(10)
    tid = uuid.uuid4()
    s = open_session(cache, [sp(topic="t", topic_id=tid, partition=0),
                             sp(topic="t", topic_id=tid, partition=1)])
    assert keys(s.partitions.values()) == [(tid, 0), (tid, 1)]
    _, parts, _ = cache.resolve(s.id, 1, [sp(topic=None, topic_id=tid, partition=0, offset=8)],
                                [(tid, 1)])
    assert keys(parts) == [(tid, 0)]
    assert parts[0].fetch_offset == 8
