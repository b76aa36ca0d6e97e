"""The KIP-848 consumer group coordinator (and its assignors) on a ManualClock:
pure logic, no network; timers fire only when the test advances time."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from broker.clock import ManualClock
from broker.config import BrokerConfig
from broker.coordinator.assignors import MemberSubscription, range_assign, uniform_assign
from broker.coordinator.consumer_group import (
    G_EMPTY,
    G_RECONCILING,
    G_STABLE,
    UNRELEASED,
    UNREVOKED,
    ConsumerGroupCoordinator,
)
from broker.coordinator.group import GroupCoordinator, Member
from broker.errors import ErrorCode

T1, T2 = uuid.UUID(int=1), uuid.UUID(int=2)


@dataclass
class FakeTopic:
    topic_id: uuid.UUID
    partitions: int


class MemLog:
    """A group log in memory (entries are never awaited here: heartbeat is synchronous)."""

    def __init__(self):
        self.entries = []

    def append(self, group_id, data):
        self.entries.append((group_id.encode(), bytes(data)))
        return None


def make(**overrides):
    config = BrokerConfig()
    for k, v in overrides.items():
        config.set(k, str(v))
    clock = ManualClock()
    classic = GroupCoordinator(config, MemLog(), clock)
    classic.loading = False
    topics = {"t": FakeTopic(T1, 6), "other": FakeTopic(T2, 2)}
    cgc = ConsumerGroupCoordinator(config, clock, classic, lambda: topics)
    classic.consumer = cgc
    return cgc, clock, topics


def hb(cgc, member_id, epoch, *, group="g", names=None, regex=None, owned=None, instance=None,
       assignor=None, rebalance=-1, version=1):
    joining = epoch == 0
    return cgc.heartbeat(
        version=version, group_id=group, member_id=member_id, member_epoch=epoch, instance_id=instance,
        rack_id=None, rebalance_timeout_ms=30000 if joining and rebalance == -1 else rebalance,
        subscribed_topic_names=(["t"] if joining and names is None and regex is None else names),
        subscribed_topic_regex=regex, server_assignor=assignor,
        owned={} if joining and owned is None else owned, client_id="c", client_host="/h")


def parts(a, tid=T1):
    return sorted((a or {}).get(tid, set()))


def test_first_member_gets_everything_at_epoch_one():
    cgc, _, _ = make()
    r = hb(cgc, "a", 0)
    assert (r.error, r.member_id, r.member_epoch, r.heartbeat_interval_ms) == (0, "a", 1, 5000)
    assert parts(r.assignment) == [0, 1, 2, 3, 4, 5]
    assert cgc.get("g").state == G_STABLE


def test_partitions_move_only_after_the_previous_owner_revoked_them():
    cgc, _, _ = make()
    hb(cgc, "a", 0)
    b = hb(cgc, "b", 0)
    assert b.member_epoch == 2 and parts(b.assignment) == []      # waits: a still owns them
    g = cgc.get("g")
    assert g.members["b"].state == UNRELEASED and g.state == G_RECONCILING
    a = hb(cgc, "a", 1)                                             # a is asked to revoke, keeps epoch 1
    assert a.member_epoch == 1 and g.members["a"].state == UNREVOKED
    kept = set(parts(a.assignment))
    assert len(kept) == 3
    # b still gets nothing while a has not confirmed the revocation
    assert parts(hb(cgc, "b", 2).assignment) == [] and hb(cgc, "b", 2).assignment is None
    a = hb(cgc, "a", 1, owned={T1: kept})                           # revoked: a moves to epoch 2
    assert a.member_epoch == 2 and g.members["a"].state == "STABLE"
    b = hb(cgc, "b", 2)
    assert set(parts(b.assignment)) == {0, 1, 2, 3, 4, 5} - kept
    assert g.state == G_STABLE


def test_epoch_checks_fence_as_kafka():
    cgc, _, _ = make()
    hb(cgc, "a", 0)
    r = hb(cgc, "a", 5)
    assert r.error == ErrorCode.FENCED_MEMBER_EPOCH and "greater member epoch (5)" in r.message
    hb(cgc, "b", 0)
    hb(cgc, "a", 1)
    hb(cgc, "a", 1, owned={T1: {0, 1, 2}})                          # a now at epoch 2, previous 1
    assert hb(cgc, "a", 1, owned={T1: {0}}).error == ErrorCode.NONE  # previous epoch, subset: a lost response
    assert hb(cgc, "a", 1, owned={T1: {5}}).error == ErrorCode.FENCED_MEMBER_EPOCH
    assert hb(cgc, "zz", 3).error == ErrorCode.UNKNOWN_MEMBER_ID
    assert hb(cgc, "x", 3, group="nope").error == ErrorCode.GROUP_ID_NOT_FOUND


@pytest.mark.parametrize("kw, code, text", [
    (dict(group="", member_id="m", epoch=0), ErrorCode.INVALID_REQUEST, "GroupId can't be empty."),
    (dict(member_id="", epoch=0), ErrorCode.INVALID_REQUEST, "MemberId can't be empty."),
    (dict(member_id="m", epoch=-3), ErrorCode.INVALID_REQUEST, "MemberEpoch is invalid."),
    (dict(member_id="m", epoch=-2), ErrorCode.INVALID_REQUEST, "InstanceId can't be null."),
    (dict(member_id="m", epoch=0, assignor="sticky"), ErrorCode.UNSUPPORTED_ASSIGNOR,
     "ServerAssignor sticky is not supported. Supported assignors: uniform, range."),
    (dict(member_id="m", epoch=0, regex="("), ErrorCode.INVALID_REGULAR_EXPRESSION, "SubscribedTopicRegex `(`"),
    (dict(member_id="m", epoch=0, owned={T1: {1}}), ErrorCode.INVALID_REQUEST,
     "TopicPartitions must be empty when (re-)joining."),
])
def test_bad_requests(kw, code, text):
    cgc, _, _ = make()
    r = hb(cgc, kw.pop("member_id"), kw.pop("epoch"), **kw)
    assert r.error == code and r.message.startswith(text), r


def test_leave_frees_partitions_and_unknown_after():
    cgc, _, _ = make()
    hb(cgc, "a", 0)
    hb(cgc, "b", 0)
    r = hb(cgc, "a", -1)
    assert (r.error, r.member_epoch, r.assignment) == (0, -1, None)
    assert hb(cgc, "a", -1).error == ErrorCode.UNKNOWN_MEMBER_ID
    b = hb(cgc, "b", 2)
    assert parts(b.assignment) == [0, 1, 2, 3, 4, 5] and b.member_epoch == 3
    hb(cgc, "b", -1)
    assert cgc.get("g").state == G_EMPTY


def test_session_timeout_removes_member():
    cgc, clock, _ = make(**{"group.consumer.session.timeout.ms": 10000})
    hb(cgc, "a", 0)
    hb(cgc, "b", 0)
    clock.advance(6)
    hb(cgc, "b", 2)
    clock.advance(6)                                  # a silent for 12 s: gone
    assert "a" not in cgc.get("g").members
    assert parts(hb(cgc, "b", 2).assignment) == [0, 1, 2, 3, 4, 5]


def test_member_that_does_not_revoke_in_its_rebalance_timeout_is_removed():
    cgc, clock, _ = make()
    hb(cgc, "a", 0, rebalance=5000)
    hb(cgc, "b", 0)
    hb(cgc, "a", 1)                                   # asked to revoke
    for _ in range(3):
        clock.advance(2)
        hb(cgc, "a", 1)                               # heartbeats but never revokes
    assert "a" not in cgc.get("g").members
    assert hb(cgc, "a", 1).error == ErrorCode.UNKNOWN_MEMBER_ID


def test_static_member_leaves_temporarily_and_is_replaced():
    cgc, clock, _ = make()
    hb(cgc, "a", 0, instance="i1")
    assert hb(cgc, "b", 0, instance="i1").error == ErrorCode.UNRELEASED_INSTANCE_ID
    r = hb(cgc, "a", -2, instance="i1")
    assert (r.error, r.member_epoch) == (0, -2)
    r = hb(cgc, "b", 0, instance="i1")                  # takes over a's assignment and epoch
    assert (r.error, r.member_epoch, parts(r.assignment)) == (0, 1, [0, 1, 2, 3, 4, 5])
    assert set(cgc.get("g").members) == {"b"}
    assert hb(cgc, "a", 1, instance="i1").error == ErrorCode.FENCED_INSTANCE_ID
    assert hb(cgc, "c", 1, instance="i2").error == ErrorCode.UNKNOWN_MEMBER_ID


def test_regex_subscription_and_new_topics():
    cgc, _, topics = make()
    r = hb(cgc, "a", 0, regex="o.*")
    assert parts(r.assignment, T2) == [0, 1] and parts(r.assignment, T1) == []
    topics["other2"] = FakeTopic(uuid.UUID(int=3), 1)   # a new matching topic bumps the epoch
    r = hb(cgc, "a", 1)
    assert r.member_epoch == 2 and parts(r.assignment, uuid.UUID(int=3)) == [0]


def test_classic_group_with_members_is_not_a_consumer_group():
    cgc, _, _ = make()
    g = cgc.classic.groups["cg"] = __import__("broker.coordinator.group", fromlist=["Group"]).Group("cg")
    g.members["x"] = Member("x", None, "c", "h", 10000, 10000, "consumer", [])
    r = hb(cgc, "a", 0, group="cg")
    assert r.error == ErrorCode.GROUP_ID_NOT_FOUND
    g.members.clear()                                      # empty: converted
    assert hb(cgc, "a", 0, group="cg").error == ErrorCode.NONE


def test_offset_checks():
    cgc, _, _ = make()
    hb(cgc, "a", 0)
    g = cgc.get("g")
    assert cgc.check_commit(g, "a", 1, 9) == ErrorCode.NONE
    assert cgc.check_commit(g, "a", 2, 9) == ErrorCode.STALE_MEMBER_EPOCH
    assert cgc.check_commit(g, "a", 1, 8) == ErrorCode.UNSUPPORTED_VERSION
    assert cgc.check_commit(g, "", -1, 9) == ErrorCode.UNKNOWN_MEMBER_ID
    assert cgc.check_fetch(g, None, -1) == ErrorCode.NONE
    assert cgc.check_fetch(g, "a", 0) == ErrorCode.STALE_MEMBER_EPOCH
    assert cgc.check_fetch(g, "b", 1) == ErrorCode.UNKNOWN_MEMBER_ID
    hb(cgc, "a", -1)
    assert cgc.check_commit(g, "", -1, 9) == ErrorCode.NONE   # simple commit into an empty group


def _subs(n, topics=frozenset({T1})):
    return [MemberSubscription(f"m{i}", None, frozenset(topics)) for i in range(n)]


def test_uniform_is_balanced_and_sticky():
    subs = _subs(3)
    first = uniform_assign(subs, {T1: 8}, {})
    counts = sorted(len(a.get(T1, ())) for a in first.values())
    assert counts == [2, 3, 3]
    assert set().union(*(a[T1] for a in first.values())) == set(range(8))
    second = uniform_assign(subs + [MemberSubscription("m9", None, frozenset({T1}))], {T1: 8}, first)
    moved = sum(len(first[m][T1] - second[m].get(T1, set())) for m in first)
    assert moved == 2 and sorted(len(a.get(T1, ())) for a in second.values()) == [2, 2, 2, 2]


def test_uniform_heterogeneous_subscriptions():
    subs = [MemberSubscription("a", None, frozenset({T1, T2})), MemberSubscription("b", None, frozenset({T2}))]
    out = uniform_assign(subs, {T1: 4, T2: 2}, {})
    assert out["a"].get(T1) == {0, 1, 2, 3} and out["b"].get(T2) == {0, 1}


def test_range_assigns_contiguous_ranges():
    out = range_assign(_subs(2, {T1, T2}), {T1: 3, T2: 2}, {})
    assert out["m0"] == {T1: {0, 1}, T2: {0}} and out["m1"] == {T1: {2}, T2: {1}}


def test_group_configs_override_session_and_interval():
    cgc, clock, _ = make()
    cgc.group_configs = lambda gid: ({"consumer.session.timeout.ms": "50000",
                                      "consumer.heartbeat.interval.ms": "7000"} if gid == "own" else {})
    assert hb(cgc, "a", 0, group="own").heartbeat_interval_ms == 7000
    assert hb(cgc, "a", 0).heartbeat_interval_ms == 5000
    clock.advance(46)                                      # past the broker's 45 s, within the group's 50 s
    assert "a" in cgc.get("own").members and "a" not in cgc.get("g").members


def test_state_survives_replay_of_the_log_and_of_a_snapshot():
    cgc, clock, topics = make()
    hb(cgc, "a", 0, instance="i1")
    hb(cgc, "b", 0)
    hb(cgc, "a", 1)                                        # a revoking, b waiting
    before = {m.member_id: (m.member_epoch, m.state, parts(m.assigned), parts(m.pending_revocation))
              for m in cgc.get("g").members.values()}
    writes = len(cgc.classic.log.entries)
    hb(cgc, "b", 2)                                        # nothing changed: nothing written
    assert len(cgc.classic.log.entries) == writes
    for source in (cgc.classic.log.entries, cgc.classic.snapshot_entries()):
        fresh, _, _ = make()
        for key, data in source:
            fresh.classic.replay(key, data)
        g = fresh.get("g")
        assert {m.member_id: (m.member_epoch, m.state, parts(m.assigned), parts(m.pending_revocation))
                for m in g.members.values()} == before
        assert (g.group_epoch, g.assignment_epoch, g.static_members) == (2, 2, {"i1": "a"})
        kept = set(parts(g.members["a"].assigned))
        assert hb(fresh, "a", 1, owned={T1: kept}).member_epoch == 2
    cgc.delete_empty("nope")
    hb(cgc, "a", -1, instance="i1")
    hb(cgc, "b", -1)
    assert cgc.delete_empty("g")
    fresh, _, _ = make()
    for key, data in cgc.classic.log.entries:
        fresh.classic.replay(key, data)
    assert fresh.get("g") is None


def test_empty_group_without_offsets_goes_at_the_expiry_check():
    cgc, _, _ = make()
    hb(cgc, "a", 0)
    hb(cgc, "a", 0, group="kept")
    hb(cgc, "a", -1)
    from broker.coordinator.group import Group, OffsetAndMetadata
    cgc.classic.groups["kept"] = Group("kept")
    cgc.classic.groups["kept"].offsets[("t", 0)] = OffsetAndMetadata(5, -1, None, cgc.clock.now_ms())
    hb(cgc, "a", -1, group="kept")
    cgc.classic.expire_offsets()
    assert cgc.get("g") is None and cgc.get("kept") is not None
    assert cgc.classic.log.entries[-1] == (b"g", bytes([33]))


def test_v0_join_without_member_id_gets_one():
    cgc, _, _ = make()
    r = hb(cgc, "", 0, version=0)
    assert r.error == 0 and len(r.member_id) == 22 and r.member_id in cgc.get("g").members
    assert hb(cgc, "", 1, version=0).error == ErrorCode.INVALID_REQUEST


def test_group_consumer_max_size():
    cgc, _, _ = make(**{"group.consumer.max.size": 1})
    assert hb(cgc, "a", 0).error == 0
    r = hb(cgc, "b", 0, instance="i")
    assert (r.error, r.message) == (ErrorCode.GROUP_MAX_SIZE_REACHED,
                                    "The consumer group has reached its maximum capacity of 1 members.")
    assert hb(cgc, "a", 0).error == 0              # a member already in may rejoin


def test_a_refused_join_creates_no_group():
    cgc, _, _ = make(**{"group.consumer.max.size": 0})
    assert hb(cgc, "a", 0).error == ErrorCode.GROUP_MAX_SIZE_REACHED
    assert cgc.get("g") is None and cgc.classic.log.entries == []
