"""Share group membership (coordinator/share_group.py) and share sessions
(share/sessions.py) and the share-partition manager's timers (share/manager.py)
on a ManualClock: pure logic, no network."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from broker.clock import ManualClock
from broker.config import BrokerConfig
from broker.coordinator.consumer_group import ConsumerGroupCoordinator
from broker.coordinator.group import GroupCoordinator
from broker.coordinator.share_group import G_EMPTY, G_STABLE, ShareGroupCoordinator
from broker.errors import ErrorCode
from broker.share.errors import ShareErrorCode
from broker.share.manager import SharePartitionManager
from broker.share.partition import AcknowledgementBatch, AcquireMode
from broker.share.sessions import ShareSessionCache, ShareSessionError
from broker.share.state import RecordState

T1 = uuid.UUID(int=1)


@dataclass
class FakeTopic:
    topic_id: uuid.UUID
    partitions: int


class MemLog:
    def __init__(self):
        self.entries = []

    def append(self, group_id, data):
        self.entries.append((group_id, bytes(data)))
        return None


def make(**overrides):
    config = BrokerConfig()
    for k, v in overrides.items():
        config.set(k, str(v))
    clock = ManualClock()
    classic = GroupCoordinator(config, MemLog(), clock)
    classic.loading = False
    topics = {"t": FakeTopic(T1, 2)}
    cgc = ConsumerGroupCoordinator(config, clock, classic, lambda: topics)
    classic.consumer = cgc
    sgc = ShareGroupCoordinator(config, clock, classic, cgc, lambda: topics)
    return sgc, cgc, clock, topics


def hb(sgc, member, epoch, names=("t",), group="g"):
    return sgc.heartbeat(group_id=group, member_id=member, member_epoch=epoch, rack_id=None,
                         subscribed_topic_names=list(names) if names is not None else None,
                         client_id="c", client_host="/h")


def test_every_member_gets_every_partition_and_epochs_follow_the_group():
    sgc, _, _, _ = make()
    a = hb(sgc, "a", 0)
    assert (a.error, a.member_epoch, a.heartbeat_interval_ms, a.assignment) == (0, 1, 5000, {T1: {0, 1}})
    b = hb(sgc, "b", 0)
    assert (b.member_epoch, b.assignment) == (2, {T1: {0, 1}})
    again = hb(sgc, "a", 1, names=None)
    assert (again.error, again.member_epoch, again.assignment) == (0, 2, None)
    assert sgc.get("g").state == G_STABLE
    assert hb(sgc, "a", 7, names=None).error == ErrorCode.FENCED_MEMBER_EPOCH
    assert hb(sgc, "a", -1, names=None).member_epoch == -1
    assert hb(sgc, "b", -1, names=None).error == 0
    assert sgc.get("g").state == G_EMPTY


def test_validation_and_foreign_group_ids():
    sgc, cgc, _, _ = make()
    assert (hb(sgc, "", 0).error, hb(sgc, "", 0).message) == (ErrorCode.INVALID_REQUEST, None)
    assert hb(sgc, "a", 0, names=()).message == "SubscribedTopicNames must be set in first request."
    assert hb(sgc, "a", -2).message == "MemberEpoch is invalid."
    assert hb(sgc, "a", 3, names=None).error == ErrorCode.GROUP_ID_NOT_FOUND
    cgc.heartbeat(version=1, group_id="cg", member_id="m", member_epoch=0, instance_id=None, rack_id=None,
                  rebalance_timeout_ms=1000, subscribed_topic_names=["t"], subscribed_topic_regex=None,
                  server_assignor=None, owned={}, client_id="c", client_host="h")
    r = hb(sgc, "a", 0, group="cg")
    assert (r.error, r.message) == (ErrorCode.GROUP_ID_NOT_FOUND, "Group cg is not a share group.")
    cgc.share = sgc
    hb(sgc, "a", 0, group="sg")
    r = cgc.heartbeat(version=1, group_id="sg", member_id="m", member_epoch=0, instance_id=None, rack_id=None,
                      rebalance_timeout_ms=1000, subscribed_topic_names=["t"], subscribed_topic_regex=None,
                      server_assignor=None, owned={}, client_id="c", client_host="h")
    assert (r.error, r.message) == (ErrorCode.GROUP_ID_NOT_FOUND, "Group sg is not a consumer group.")


def test_session_expiry_removes_the_member_and_tells_the_owner():
    sgc, _, clock, _ = make(**{"group.share.session.timeout.ms": 45000})
    gone = []
    sgc.on_member_gone = lambda g, m: gone.append((g, m))
    hb(sgc, "a", 0)
    clock.advance(44)
    assert not gone
    clock.advance(2)
    assert gone == [("g", "a")] and not sgc.get("g").members


def test_share_sessions_epochs():
    cache = ShareSessionCache(max_sessions=1)
    with pytest.raises(ShareSessionError) as e:
        cache.resolve("g", "m", 1, 1, [], [])
    assert e.value.code == ShareErrorCode.SHARE_SESSION_NOT_FOUND
    s = cache.resolve("g", "m", 0, 1, [(T1, 0)], [])
    assert s.epoch == 1 and list(s.partitions) == [(T1, 0)]
    with pytest.raises(ShareSessionError) as e:
        cache.resolve("g", "m", 2, 1, [], [])
    assert e.value.code == ShareErrorCode.INVALID_SHARE_SESSION_EPOCH
    s = cache.resolve("g", "m", 1, 1, [(T1, 1)], [(T1, 0)])
    assert s.epoch == 2 and list(s.partitions) == [(T1, 1)]
    with pytest.raises(ShareSessionError) as e:
        cache.resolve("g", "other", 0, 1, [], [])
    assert e.value.code == ShareErrorCode.SHARE_SESSION_LIMIT_REACHED
    cache.close(cache.resolve("g", "m", -1, 1, [], []))
    assert cache.get("g", "m") is None


def test_manager_expires_locks_on_its_timer_and_wakes_waiters():
    config = BrokerConfig()
    config.set("group.share.record.lock.duration.ms", "2000")
    clock = ManualClock()
    mgr = SharePartitionManager(config, clock, lambda g: {"share.auto.offset.reset": "earliest"})
    key = ("g", T1, 0)
    sp = mgr.get_or_create(key, log_start=0, log_end=10, leader_epoch=0, offset_for_timestamp=lambda ts: None)
    assert sp.start_offset == 0
    got = mgr.acquire(key, sp, "m", 0, [(0, 4), (5, 9)], 100, batch_size=None, mode=AcquireMode.BATCH_OPTIMIZED)
    assert [(a.first_offset, a.last_offset, a.delivery_count) for a in got] == [(0, 9, 1)]
    outcome, fut = mgr.acknowledge(key, sp, "m", [AcknowledgementBatch(0, 4, (1,))], renew_allowed=True)
    assert outcome.error == 0 and fut is None and sp.start_offset == 5
    clock.advance(2.5)
    assert sp.record(5).state == RecordState.AVAILABLE and sp.record(5).delivery_count == 1
    again = mgr.acquire(key, sp, "n", 5, [(5, 9)], 100, batch_size=None, mode=AcquireMode.BATCH_OPTIMIZED)
    assert [(a.first_offset, a.delivery_count) for a in again] == [(5, 2)]
    mgr.release_member("g", "n")
    assert sp.record(5).state == RecordState.AVAILABLE


def test_share_partitions_read_group_configs_at_each_use():
    """As Kafka's SharePartition asks its config provider: a lock duration or
    delivery limit changed by kafka-configs applies to a share-partition that exists."""
    own: dict[str, str] = {"share.auto.offset.reset": "earliest"}
    clock = ManualClock()
    mgr = SharePartitionManager(BrokerConfig(), clock, lambda g: own)
    key = ("g", T1, 0)
    sp = mgr.get_or_create(key, log_start=0, log_end=10, leader_epoch=0, offset_for_timestamp=lambda ts: None)
    start = clock.now_ms()
    mgr.acquire(key, sp, "m", 0, [(0, 9)], 100, batch_size=None, mode=AcquireMode.BATCH_OPTIMIZED)
    assert sp.record(0).deadline_ms == start + 30000
    own.update({"share.record.lock.duration.ms": "15000", "share.delivery.count.limit": "2"})
    assert mgr.lock_duration_ms("g") == 15000
    clock.advance(31)
    assert sp.record(0).state == RecordState.AVAILABLE
    mgr.acquire(key, sp, "m", 0, [(0, 9)], 100, batch_size=None, mode=AcquireMode.BATCH_OPTIMIZED)
    assert sp.record(0).deadline_ms == start + 31000 + 15000
    clock.advance(16)
    assert sp.start_offset == 10 and sp.record(0) is None   # archived: the second delivery was the group's last


def test_share_entries_pin_the_wal_until_a_manifest_holds_them():
    from broker.tiering.state import PartitionStorage

    class NoBatches:
        log_end_offset = log_start_offset = 0

        def entries_from(self, offset):
            return iter(())

    st = PartitionStorage(epoch=1)
    assert st.wal_pin(NoBatches()) is None
    st.share_written(4)
    upto = st.share_seq                 # a manifest update takes its snapshots here
    st.share_written(6)                 # ... while another entry is written
    assert st.wal_pin(NoBatches()) == 4 and not st.all_recorded(NoBatches())
    st.share_recorded(upto)
    assert st.wal_pin(NoBatches()) == 6
    st.share_recorded(st.share_seq)
    assert st.wal_pin(NoBatches()) is None


def test_manager_loads_stored_state_and_snapshots_it():
    from broker.share.state import ShareUpdate, StateBatch, decode, encode
    config = BrokerConfig()
    mgr = SharePartitionManager(config, ManualClock())
    key = ("g", T1, 0)
    mgr.load(key, encode(ShareUpdate(0, 0, 0, 3, (StateBatch(3, 4, RecordState.ACKNOWLEDGED, 1),
                                               StateBatch(5, 6, RecordState.AVAILABLE, 2)))))
    snap = decode(mgr.snapshots(T1, 0)["g"])
    assert snap.start_offset == 3
    sp = mgr.get_or_create(key, log_start=0, log_end=10, leader_epoch=1, offset_for_timestamp=lambda ts: None)
    assert (sp.start_offset, sp.next_offset, sp.record(5).delivery_count) == (5, 7, 2)
    again = decode(mgr.snapshots(T1, 0)["g"])
    assert again.snapshot_epoch == 1 and again.start_offset == 5
    mgr.forget(lambda tid, index: True)
    assert not mgr.partitions and not mgr.durable


def test_manager_reset_and_delete_write_snapshots_of_a_new_state_epoch():
    from broker.share.state import DurableShareState, ShareSnapshot, decode, encode
    written = []
    mgr = SharePartitionManager(BrokerConfig(), ManualClock(), lambda g: {"share.auto.offset.reset": "earliest"},
                                persist=lambda key, entry: written.append(entry))
    key = ("g", T1, 0)
    sp = mgr.get_or_create(key, log_start=0, log_end=10, leader_epoch=0, offset_for_timestamp=lambda ts: None)
    mgr.acquire(key, sp, "m", 0, [(0, 9)], 100, batch_size=None, mode=AcquireMode.BATCH_OPTIMIZED)
    mgr.reset(key, 4, leader_epoch=0)
    assert isinstance(written[-1], ShareSnapshot) and (written[-1].state_epoch, written[-1].start_offset) == (1, 4)
    assert mgr.summary(key, 10) == (4, 6)
    mgr.reset(key, -1, leader_epoch=0)                 # delete
    assert (written[-1].state_epoch, written[-1].start_offset) == (2, -1) and mgr.summary(key, 10) is None
    # a restart replays the deletion; the next fetch starts over at a newer state epoch
    replay = SharePartitionManager(BrokerConfig(), ManualClock(), lambda g: {"share.auto.offset.reset": "earliest"},
                                   persist=lambda key, entry: written.append(entry))
    replay.load(key, encode(written[-1]))
    sp = replay.get_or_create(key, log_start=2, log_end=10, leader_epoch=0, offset_for_timestamp=lambda ts: None)
    assert (sp.start_offset, written[-1].state_epoch, written[-1].start_offset) == (2, 3, 2)
    d = DurableShareState()
    for e in written:
        d.apply(decode(encode(e)))
    assert (d.state_epoch, d.start_offset) == (3, 2)


def test_membership_is_written_and_replayed():
    sgc, cgc, _, _ = make()
    cgc.share = sgc
    hb(sgc, "a", 0)
    hb(sgc, "b", 0)
    hb(sgc, "a", 1, names=None)                     # a moves to epoch 2
    hb(sgc, "a", 2, names=None)                     # nothing changed: nothing written
    log = sgc.classic.log.entries
    assert [d[0] for _, d in log] == [34, 34, 34]
    fresh, fresh_cgc, _, _ = make()
    fresh_cgc.share = fresh
    for gid, data in log:
        fresh_cgc.replay(gid, data)                 # as the group log's replay routes it
    g = fresh.get("g")
    assert (g.group_epoch, sorted(g.members), g.members["a"].member_epoch) == (2, ["a", "b"], 2)
    assert hb(fresh, "a", 2, names=None).error == 0
    assert [gid for gid, _ in fresh_cgc.entries(lambda gid: True)] == [b"g"]
    hb(fresh, "a", -1, names=None)
    hb(fresh, "b", -1, names=None)
    assert fresh.delete_empty("g") and fresh.classic.log.entries[-1][1] == bytes([35])
