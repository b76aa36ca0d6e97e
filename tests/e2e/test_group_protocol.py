"""Group coordinator error paths at the wire level (what real clients rarely show):
KIP-394 member ids, generations, session expiry, static membership, offsets (by
topic id at v10), the loading coordinator, rebalance timeout and initial delay."""
from __future__ import annotations

import signal
import struct
import threading
import time
import uuid

import pytest
from kafka.protocol.admin import DeleteGroupsRequest, DescribeGroupsRequest, ListGroupsRequest
from kafka.protocol.consumer import (
    HeartbeatRequest,
    JoinGroupRequest,
    LeaveGroupRequest,
    OffsetCommitRequest,
    OffsetDeleteRequest,
    OffsetFetchRequest,
    SyncGroupRequest,
)
from kafka.protocol.metadata import ApiVersionsRequest, FindCoordinatorRequest, MetadataRequest

from tests.wire import WireClient

pytestmark = pytest.mark.timeout(60)

NONE, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS = 0, 22, 25, 27
COORDINATOR_NOT_AVAILABLE, MEMBER_ID_REQUIRED, FENCED_INSTANCE_ID = 15, 79, 82
GROUP_SUBSCRIBED_TO_TOPIC, UNKNOWN_TOPIC_OR_PARTITION = 86, 3
COORDINATOR_LOAD_IN_PROGRESS, UNKNOWN_TOPIC_ID = 14, 100


def subscription(*topics: str) -> bytes:
    out = struct.pack(">hi", 0, len(topics))
    for t in topics:
        out += struct.pack(">h", len(t)) + t.encode()
    return out + struct.pack(">i", -1)


def join(port, group, member_id="", *, instance=None, session=6000, rebalance=None, protocols=None,
         version=9):
    P = JoinGroupRequest.JoinGroupRequestProtocol
    protocols = protocols or [("range", subscription("t"))]
    with WireClient(port, timeout=30) as c:
        return c.request(JoinGroupRequest(
            group_id=group, session_timeout_ms=session, rebalance_timeout_ms=rebalance or session,
            member_id=member_id, group_instance_id=instance, protocol_type="consumer",
            protocols=[P(name=n, metadata=m) for n, m in protocols], reason=None), version=version)


def sync(port, group, gen, member_id, assignments=(), instance=None):
    A = SyncGroupRequest.SyncGroupRequestAssignment
    with WireClient(port, timeout=30) as c:
        return c.request(SyncGroupRequest(
            group_id=group, generation_id=gen, member_id=member_id, group_instance_id=instance,
            protocol_type="consumer", protocol_name="range",
            assignments=[A(member_id=m, assignment=a) for m, a in assignments]), version=5)


def heartbeat(port, group, gen, member_id, instance=None):
    with WireClient(port) as c:
        return c.request(HeartbeatRequest(group_id=group, generation_id=gen, member_id=member_id,
                                          group_instance_id=instance), version=4).error_code


def unique(p):
    return f"{p}-{uuid.uuid4().hex[:8]}"


TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53


def test_find_coordinator(broker):
    with WireClient(broker.port) as c:
        for v in range(4):
            kw = {"key_type": 0} if v >= 1 else {}
            r = c.request(FindCoordinatorRequest(key="g", **kw), version=v)
            assert (r.error_code, r.node_id, r.port) == (0, 1, broker.port)
        r = c.request(FindCoordinatorRequest(key_type=0, coordinator_keys=["a", "b"]), version=4)
        assert [(x.key, x.error_code, x.port) for x in r.coordinators] == [("a", 0, broker.port), ("b", 0, broker.port)]
        # no transactions: a fatal answer, so transactional clients fail at once
        r = c.request(FindCoordinatorRequest(key_type=1, coordinator_keys=["txn"]), version=6)
        assert r.coordinators[0].error_code == TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        assert "does not support transactions" in r.coordinators[0].error_message
        r = c.request(FindCoordinatorRequest(key="txn", key_type=1), version=3)
        assert r.error_code == TRANSACTIONAL_ID_AUTHORIZATION_FAILED


def test_join_sync_heartbeat_generation_checks(broker_factory):
    b = broker_factory("group.initial.rebalance.delay.ms=0", "group.min.session.timeout.ms=1000")
    g = unique("g")
    r = join(b.port, g)
    assert r.error_code == MEMBER_ID_REQUIRED and r.member_id
    mid = r.member_id
    assert join(b.port, g, "bogus").error_code == UNKNOWN_MEMBER_ID
    r = join(b.port, g, mid)
    assert (r.error_code, r.generation_id, r.leader, r.protocol_name) == (NONE, 1, mid, "range")
    assert [(m.member_id, bytes(m.metadata)) for m in r.members] == [(mid, subscription("t"))]
    assert heartbeat(b.port, g, 1, mid) == NONE  # CompletingRebalance: fine
    s = sync(b.port, g, 1, mid, [(mid, b"my-assignment")])
    assert (s.error_code, bytes(s.assignment)) == (NONE, b"my-assignment")
    assert heartbeat(b.port, g, 1, mid) == NONE
    assert heartbeat(b.port, g, 2, mid) == ILLEGAL_GENERATION
    assert heartbeat(b.port, g, 1, "nobody") == UNKNOWN_MEMBER_ID
    assert sync(b.port, g, 0, mid).error_code == ILLEGAL_GENERATION
    with WireClient(b.port) as c:
        d = c.request(DescribeGroupsRequest(groups=[g], include_authorized_operations=False), version=5)
        dg = d.groups[0]
        assert (dg.group_state, dg.protocol_data, len(dg.members)) == ("Stable", "range", 1)
        assert bytes(dg.members[0].member_assignment) == b"my-assignment"
        lg = c.request(ListGroupsRequest(states_filter=["Stable"], types_filter=[]), version=5)
        assert g in [x.group_id for x in lg.groups]

    # a second member joins: the first one hears REBALANCE_IN_PROGRESS and rejoins
    results = {}
    t = threading.Thread(target=lambda: results.update(second=join(b.port, g, version=3, session=1000)))
    t.start()
    deadline = time.monotonic() + 10
    while heartbeat(b.port, g, 1, mid) != REBALANCE_IN_PROGRESS:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    r1 = join(b.port, g, mid)
    t.join(10)
    r2 = results["second"]
    assert r1.error_code == r2.error_code == NONE and r1.generation_id == r2.generation_id == 2
    assert r1.leader == mid and len(r1.members) == 2 and r2.members == []
    # the second member (session 1000 ms) goes silent: its session expires, a rebalance follows
    deadline = time.monotonic() + 10
    while heartbeat(b.port, g, 2, mid) != REBALANCE_IN_PROGRESS:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    r = join(b.port, g, mid)
    assert (r.error_code, r.generation_id, len(r.members)) == (NONE, 3, 1)
    # leave (v3 batch, one unknown): the group becomes Empty
    with WireClient(b.port) as c:
        M = LeaveGroupRequest.MemberIdentity
        lr = c.request(LeaveGroupRequest(group_id=g, members=[
            M(member_id=mid, group_instance_id=None, reason=None),
            M(member_id="ghost", group_instance_id=None, reason=None)]), version=5)
        assert [m.error_code for m in lr.members] == [NONE, UNKNOWN_MEMBER_ID]
        lg = c.request(ListGroupsRequest(states_filter=["Empty"], types_filter=[]), version=5)
        assert g in [x.group_id for x in lg.groups]


def test_static_membership(broker_factory):
    b = broker_factory("group.initial.rebalance.delay.ms=0")
    g = unique("static")
    r = join(b.port, g, instance="inst-1")
    assert r.error_code == NONE and r.generation_id == 1  # static members need no KIP-394 round
    old = r.member_id
    assert sync(b.port, g, 1, old, [(old, b"A")], instance="inst-1").error_code == NONE
    # restart of the static member: new member id, same generation, no rebalance
    r = join(b.port, g, instance="inst-1")
    assert r.error_code == NONE and r.generation_id == 1 and r.member_id != old
    new = r.member_id
    s = sync(b.port, g, 1, new, instance="inst-1")
    assert (s.error_code, bytes(s.assignment)) == (NONE, b"A")
    assert heartbeat(b.port, g, 1, old, instance="inst-1") == FENCED_INSTANCE_ID
    assert heartbeat(b.port, g, 1, new, instance="inst-1") == NONE


def test_offsets_commit_fetch_delete(broker_factory):
    from confluent_kafka.admin import AdminClient, NewTopic
    b = broker_factory("group.initial.rebalance.delay.ms=0")
    topic = unique("t")
    admin = AdminClient({"bootstrap.servers": b.bootstrap})  # must outlive the future
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(15)
    g1, g2 = unique("simple"), unique("simple")
    T = OffsetCommitRequest.OffsetCommitRequestTopic
    P = T.OffsetCommitRequestPartition
    with WireClient(b.port) as c:
        for g, off in ((g1, 7), (g2, 9)):
            r = c.request(OffsetCommitRequest(
                group_id=g, generation_id_or_member_epoch=-1, member_id="", group_instance_id=None,
                topics=[T(name=topic, partitions=[
                    P(partition_index=0, committed_offset=off, committed_leader_epoch=3, committed_metadata="hello"),
                    P(partition_index=5, committed_offset=1, committed_leader_epoch=-1, committed_metadata=None)])]),
                version=8)
            assert [p.error_code for p in r.topics[0].partitions] == [NONE, UNKNOWN_TOPIC_OR_PARTITION]
        # v7: one group, null topics = everything committed
        r = c.request(OffsetFetchRequest(group_id=g1, topics=None, require_stable=False), version=7)
        [(name, parts)] = [(t.name, t.partitions) for t in r.topics]
        assert name == topic
        assert [(p.partition_index, p.committed_offset, p.committed_leader_epoch, p.metadata) for p in parts] == \
            [(0, 7, 3, "hello")]
        # v8: several groups at once
        G = OffsetFetchRequest.OffsetFetchRequestGroup
        TT = G.OffsetFetchRequestTopics
        r = c.request(OffsetFetchRequest(groups=[
            G(group_id=g1, member_id=None, member_epoch=-1, topics=[TT(name=topic, partition_indexes=[0, 1])]),
            G(group_id=g2, member_id=None, member_epoch=-1, topics=None)], require_stable=False), version=8)
        got = {x.group_id: [(p.partition_index, p.committed_offset) for t in x.topics for p in t.partitions]
               for x in r.groups}
        assert got == {g1: [(0, 7), (1, -1)], g2: [(0, 9)]}
        # OffsetDelete on an empty group removes the offset
        DT = OffsetDeleteRequest.OffsetDeleteRequestTopic
        r = c.request(OffsetDeleteRequest(group_id=g2, topics=[
            DT(name=topic, partitions=[DT.OffsetDeleteRequestPartition(partition_index=0)])]), version=0)
        assert r.error_code == NONE and r.topics[0].partitions[0].error_code == NONE
        r = c.request(OffsetFetchRequest(group_id=g2, topics=None, require_stable=False), version=7)
        assert r.topics == []

    # a group with a live member: generation-checked commits; subscribed topics cannot be deleted
    r = join(b.port, g1, protocols=[("range", subscription(topic))], version=3)
    mid = r.member_id
    assert sync(b.port, g1, 1, mid, [(mid, b"")]).error_code == NONE
    with WireClient(b.port) as c:
        def commit(gen, member):
            return c.request(OffsetCommitRequest(
                group_id=g1, generation_id_or_member_epoch=gen, member_id=member, group_instance_id=None,
                topics=[T(name=topic, partitions=[P(partition_index=1, committed_offset=4,
                                                    committed_leader_epoch=-1, committed_metadata="")])]),
                version=8).topics[0].partitions[0].error_code
        assert commit(-1, "") == UNKNOWN_MEMBER_ID
        assert commit(5, mid) == ILLEGAL_GENERATION
        assert commit(1, "nope") == UNKNOWN_MEMBER_ID
        assert commit(1, mid) == NONE
        DT = OffsetDeleteRequest.OffsetDeleteRequestTopic
        r = c.request(OffsetDeleteRequest(group_id=g1, topics=[
            DT(name=topic, partitions=[DT.OffsetDeleteRequestPartition(partition_index=0)])]), version=0)
        assert r.topics[0].partitions[0].error_code == GROUP_SUBSCRIBED_TO_TOPIC

    # offsets and deletes are durable: SIGKILL and restart
    b.kill()
    b.start()
    with WireClient(b.port) as c:
        r = c.request(OffsetFetchRequest(group_id=g1, topics=None, require_stable=False), version=7)
        assert [(p.partition_index, p.committed_offset) for t in r.topics for p in t.partitions] == [(0, 7), (1, 4)]
        r = c.request(OffsetFetchRequest(group_id=g2, topics=None, require_stable=False), version=7)
        assert r.topics == []
        # the member is restored (Kafka's loadGroup): Stable, its generation's commits work
        d = c.request(DescribeGroupsRequest(groups=[g1], include_authorized_operations=False), version=5)
        assert (d.groups[0].group_state, d.groups[0].protocol_type) == ("Stable", "consumer")
        assert [m.member_id for m in d.groups[0].members] == [mid]
    with WireClient(b.port) as c:
        assert commit(1, mid) == NONE
        # it never heartbeats: its session (6 s, from the load) expires and the group is Empty
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            d = c.request(DescribeGroupsRequest(groups=[g1], include_authorized_operations=False), version=5)
            if d.groups[0].group_state == "Empty":
                break
            time.sleep(0.2)
        assert (d.groups[0].group_state, d.groups[0].protocol_type, d.groups[0].members) == \
            ("Empty", "consumer", [])


def test_offset_retention(broker_factory):
    """offsets.retention.minutes (here Sluice's millisecond override): offsets of an
    Empty consumer group expire the retention after it became Empty, simple commits
    the retention after their commit; a Stable group keeps offsets of topics it
    subscribes to. Expired groups disappear, and stay gone after a restart."""
    from confluent_kafka.admin import AdminClient, NewTopic
    retention = ("offsets.retention.ms=3000", "offsets.retention.check.interval.ms=200")
    b = broker_factory("group.initial.rebalance.delay.ms=0", *retention)
    topic = unique("t")
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(15)
    T = OffsetCommitRequest.OffsetCommitRequestTopic
    P = T.OffsetCommitRequestPartition
    simple, consumer = unique("simple"), unique("consumer")

    def commit(c, group, offset, gen=-1, member=""):
        r = c.request(OffsetCommitRequest(
            group_id=group, generation_id_or_member_epoch=gen, member_id=member, group_instance_id=None,
            topics=[T(name=topic, partitions=[P(partition_index=0, committed_offset=offset,
                                                committed_leader_epoch=-1, committed_metadata="")])]),
            version=8)
        assert r.topics[0].partitions[0].error_code == NONE

    def fetch(c, group):
        r = c.request(OffsetFetchRequest(group_id=group, topics=None, require_stable=False), version=7)
        return {p.partition_index: p.committed_offset for t in r.topics for p in t.partitions}

    def listed(c):
        return {x.group_id for x in c.request(ListGroupsRequest(states_filter=[], types_filter=[]),
                                              version=5).groups}

    r = join(b.port, consumer, protocols=[("range", subscription(topic))], version=3)
    mid = r.member_id
    assert sync(b.port, consumer, 1, mid, [(mid, b"")]).error_code == NONE
    with WireClient(b.port) as c:
        commit(c, simple, 5)
        commit(c, consumer, 7, gen=1, member=mid)
        t_commit = time.monotonic()
        # the member stays (heartbeats) well past the retention: its offsets stay
        while time.monotonic() - t_commit < 4.5:
            assert heartbeat(b.port, consumer, 1, mid) == NONE
            time.sleep(0.5)
        assert fetch(c, consumer) == {0: 7}
        # the simple commit expired the retention after it was made
        assert fetch(c, simple) == {} and simple not in listed(c)
        # the member leaves: the group is Empty; its offsets expire 3 s later
        M = LeaveGroupRequest.MemberIdentity
        c.request(LeaveGroupRequest(group_id=consumer, members=[
            M(member_id=mid, group_instance_id=None, reason=None)]), version=5)
        t_empty = time.monotonic()
        while fetch(c, consumer):
            assert time.monotonic() - t_empty < 8, "consumer group offsets expired"
            time.sleep(0.1)
        assert time.monotonic() - t_empty >= 2.5
        assert consumer not in listed(c)
        commit(c, simple, 9)  # a fresh commit: present after the restart below
    # tombstones: a restart with the default retention does not bring them back
    b.kill()
    b.overrides = ["group.initial.rebalance.delay.ms=0"]
    b.start()
    with WireClient(b.port) as c:
        assert fetch(c, consumer) == {}
        assert fetch(c, simple) == {0: 9}
        assert consumer not in listed(c) and simple in listed(c)


# ------------------------------------------------------------ v10: topic ids
def create_topic(b, partitions=1):
    from confluent_kafka.admin import AdminClient, NewTopic
    topic = unique("t")
    admin = AdminClient({"bootstrap.servers": b.bootstrap})  # must outlive the future
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(15)
    return topic, admin


def topic_id(c, topic):
    M = MetadataRequest.MetadataRequestTopic
    r = c.request(MetadataRequest(topics=[M(topic_id=None, name=topic)], allow_auto_topic_creation=False,
                                  include_topic_authorized_operations=False), version=12)
    return r.topics[0].topic_id


def fetch_v10(c, group, topics):
    """topics: [(topic id, [partitions])] or None; returns {(id, partition): (offset, epoch, metadata, error)}."""
    G = OffsetFetchRequest.OffsetFetchRequestGroup
    TT = G.OffsetFetchRequestTopics
    wanted = None if topics is None else [TT(topic_id=t, partition_indexes=ps) for t, ps in topics]
    r = c.request(OffsetFetchRequest(groups=[G(group_id=group, member_id=None, member_epoch=-1, topics=wanted)],
                                     require_stable=False), version=10)
    [g] = r.groups
    assert g.error_code == NONE
    return {(t.topic_id, p.partition_index): (p.committed_offset, p.committed_leader_epoch, p.metadata, p.error_code)
            for t in g.topics for p in t.partitions}


def test_offset_commit_fetch_v10_topic_ids(broker_factory):
    """v10 names topics by id: commit and fetch round-trip offset, leader epoch and
    metadata; an unknown id answers UNKNOWN_TOPIC_ID; offsets of a deleted topic
    have no id and are left out of an "all topics" fetch (a v8 fetch still names them)."""
    b = broker_factory("group.initial.rebalance.delay.ms=0")
    topic, admin = create_topic(b, 2)
    g = unique("v10")
    bogus = uuid.uuid4()
    T = OffsetCommitRequest.OffsetCommitRequestTopic
    P = T.OffsetCommitRequestPartition
    with WireClient(b.port) as c:
        versions = {k.api_key: k.max_version for k in c.request(
            ApiVersionsRequest(client_software_name="t", client_software_version="1"), 3).api_keys}
        assert (versions[8], versions[9]) == (10, 10)
        tid = topic_id(c, topic)
        r = c.request(OffsetCommitRequest(
            group_id=g, generation_id_or_member_epoch=-1, member_id="", group_instance_id=None, topics=[
                T(topic_id=tid, partitions=[
                    P(partition_index=0, committed_offset=7, committed_leader_epoch=3, committed_metadata="hello"),
                    P(partition_index=1, committed_offset=9, committed_leader_epoch=-1, committed_metadata=None),
                    P(partition_index=5, committed_offset=1, committed_leader_epoch=-1, committed_metadata="")]),
                T(topic_id=bogus, partitions=[
                    P(partition_index=0, committed_offset=1, committed_leader_epoch=-1, committed_metadata="")])]),
            version=10)
        assert [(t.topic_id, [(p.partition_index, p.error_code) for p in t.partitions]) for t in r.topics] == [
            (tid, [(0, NONE), (1, NONE), (5, UNKNOWN_TOPIC_OR_PARTITION)]), (bogus, [(0, UNKNOWN_TOPIC_ID)])]
        assert fetch_v10(c, g, [(tid, [0, 1, 2]), (bogus, [3])]) == {
            (tid, 0): (7, 3, "hello", NONE), (tid, 1): (9, -1, None, NONE), (tid, 2): (-1, -1, "", NONE),
            (bogus, 3): (-1, -1, "", UNKNOWN_TOPIC_ID)}
        assert fetch_v10(c, g, None) == {(tid, 0): (7, 3, "hello", NONE), (tid, 1): (9, -1, None, NONE)}
        # the same offsets by name (v8)
        r = c.request(OffsetFetchRequest(group_id=g, topics=None, require_stable=False), version=7)
        assert [(t.name, p.partition_index, p.committed_offset) for t in r.topics for p in t.partitions] == [
            (topic, 0, 7), (topic, 1, 9)]
    admin.delete_topics([topic])[topic].result(15)
    with WireClient(b.port) as c:
        assert fetch_v10(c, g, None) == {}
        assert fetch_v10(c, g, [(tid, [0])]) == {(tid, 0): (-1, -1, "", UNKNOWN_TOPIC_ID)}
        r = c.request(OffsetFetchRequest(group_id=g, topics=None, require_stable=False), version=7)
        assert [t.name for t in r.topics] == [topic]


# ------------------------------------------------------- loading coordinator
def loading_answers(port, group, topic):
    """What each group API answers; Kafka's codes while the coordinator loads."""
    out = {}
    with WireClient(port) as c:
        out["FindCoordinator"] = c.request(FindCoordinatorRequest(key=group, key_type=0), version=3).error_code
        out["JoinGroup"] = join(port, group).error_code
        out["SyncGroup"] = sync(port, group, 1, "m").error_code
        out["Heartbeat"] = heartbeat(port, group, 1, "m")
        M = LeaveGroupRequest.MemberIdentity
        out["LeaveGroup"] = c.request(LeaveGroupRequest(group_id=group, members=[
            M(member_id="m", group_instance_id=None, reason=None)]), version=5).error_code
        T = OffsetCommitRequest.OffsetCommitRequestTopic
        P = T.OffsetCommitRequestPartition
        r = c.request(OffsetCommitRequest(
            group_id=group, generation_id_or_member_epoch=-1, member_id="", group_instance_id=None,
            topics=[T(name=topic, partitions=[P(partition_index=0, committed_offset=1, committed_leader_epoch=-1,
                                                committed_metadata="")])]), version=8)
        out["OffsetCommit"] = r.topics[0].partitions[0].error_code
        TF = OffsetFetchRequest.OffsetFetchRequestTopic
        r = c.request(OffsetFetchRequest(group_id=group, topics=[TF(name=topic, partition_indexes=[0])]), version=1)
        out["OffsetFetch v1"] = r.topics[0].partitions[0].error_code
        out["OffsetFetch v7"] = c.request(OffsetFetchRequest(group_id=group, topics=None, require_stable=False),
                                          version=7).error_code
        G = OffsetFetchRequest.OffsetFetchRequestGroup
        out["OffsetFetch v8"] = c.request(OffsetFetchRequest(groups=[
            G(group_id=group, member_id=None, member_epoch=-1, topics=None)], require_stable=False),
            version=8).groups[0].error_code
        out["DescribeGroups"] = c.request(DescribeGroupsRequest(groups=[group], include_authorized_operations=False),
                                          version=5).groups[0].error_code
        out["ListGroups"] = c.request(ListGroupsRequest(states_filter=[], types_filter=[]), version=5).error_code
        out["DeleteGroups"] = c.request(DeleteGroupsRequest(groups_names=[group]), version=2).results[0].error_code
        DT = OffsetDeleteRequest.OffsetDeleteRequestTopic
        out["OffsetDelete"] = c.request(OffsetDeleteRequest(group_id=group, topics=[
            DT(name=topic, partitions=[DT.OffsetDeleteRequestPartition(partition_index=0)])]), version=0).error_code
    return out


def test_coordinator_loading(broker_factory):
    """While the group coordinator loads (held there by the groups.loading failpoint,
    SLUICE_HOLD_AT, after a restart), FindCoordinator answers COORDINATOR_NOT_AVAILABLE
    (Kafka: the offsets partition has no online leader yet), the group APIs answer
    Kafka's COORDINATOR_LOAD_IN_PROGRESS to clients that already know the coordinator
    (SyncGroup: REBALANCE_IN_PROGRESS, Heartbeat: NONE, as Kafka), and a librdkafka
    consumer started meanwhile keeps looking for its coordinator, then joins and
    resumes from the loaded committed offset once loading completes."""
    from confluent_kafka import Consumer, Producer
    b = broker_factory("group.initial.rebalance.delay.ms=0")
    topic, _admin = create_topic(b)
    producer = Producer({"bootstrap.servers": b.bootstrap})
    for i in range(10):
        producer.produce(topic, value=f"m{i}".encode(), partition=0)
    assert producer.flush(15) == 0
    g = unique("loading")
    T = OffsetCommitRequest.OffsetCommitRequestTopic
    P = T.OffsetCommitRequestPartition
    with WireClient(b.port) as c:
        r = c.request(OffsetCommitRequest(
            group_id=g, generation_id_or_member_epoch=-1, member_id="", group_instance_id=None,
            topics=[T(name=topic, partitions=[P(partition_index=0, committed_offset=4, committed_leader_epoch=-1,
                                                committed_metadata="")])]), version=8)
        assert r.topics[0].partitions[0].error_code == NONE
    b.kill()
    b.env = {"SLUICE_HOLD_AT": "groups.loading"}
    b.start()

    L, RIP = COORDINATOR_LOAD_IN_PROGRESS, REBALANCE_IN_PROGRESS
    assert loading_answers(b.port, g, topic) == {
        "FindCoordinator": COORDINATOR_NOT_AVAILABLE, "JoinGroup": L, "SyncGroup": RIP, "Heartbeat": NONE,
        "LeaveGroup": L,
        "OffsetCommit": L, "OffsetFetch v1": L, "OffsetFetch v7": L, "OffsetFetch v8": L,
        "DescribeGroups": L, "ListGroups": L, "DeleteGroups": L, "OffsetDelete": L}
    logs = []

    class Capture:  # librdkafka's log lines (debug=cgrp) go here
        def log(self, level, fmt, *args):
            logs.append(fmt % args if args else fmt)

    consumer = Consumer({"bootstrap.servers": b.bootstrap, "group.id": g, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "debug": "cgrp", "logger": Capture()})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 20
        while not any("COORDINATOR_NOT_AVAILABLE" in line for line in logs):  # it met the loading coordinator
            assert time.monotonic() < deadline, "the consumer never heard COORDINATOR_NOT_AVAILABLE: " + \
                "\n".join(line for line in logs if "coord" in line.lower())[-3000:]
            assert consumer.poll(0.1) is None
        b.proc.send_signal(signal.SIGUSR1)  # loading completes
        got = []
        while len(got) < 6:
            assert time.monotonic() < deadline + 20, f"consumed only {got}"
            m = consumer.poll(0.5)
            if m is not None and not m.error():
                got.append((m.offset(), m.value()))
        assert got == [(i, f"m{i}".encode()) for i in range(4, 10)]  # from the loaded commit
    finally:
        consumer.close()
    with WireClient(b.port) as c:
        r = c.request(OffsetFetchRequest(group_id=g, topics=None, require_stable=False), version=7)
        assert r.error_code == NONE and [p.committed_offset for t in r.topics for p in t.partitions] == [4]
        lg = c.request(ListGroupsRequest(states_filter=[], types_filter=[]), version=5)
        assert lg.error_code == NONE and g in [x.group_id for x in lg.groups]
        d = c.request(DescribeGroupsRequest(groups=[g], include_authorized_operations=False), version=5)
        assert d.groups[0].error_code == NONE and d.groups[0].group_state == "Empty"  # it left on close
    assert "failpoint: holding at groups.loading" in b.log_text()


# --------------------------------------------- rebalance timeout, initial delay
def in_thread(fn, *args, **kw):
    box = {}
    t = threading.Thread(target=lambda: box.update(r=fn(*args, **kw)), daemon=True)
    t.start()
    return t, box


def describe(port, group):
    with WireClient(port) as c:
        return c.request(DescribeGroupsRequest(groups=[group], include_authorized_operations=False),
                         version=5).groups[0]


def rejoin_after(port, group, gen, member_id, **kw):
    """The member hears of the rebalance through its heartbeat, then rejoins."""
    deadline = time.monotonic() + 10
    while heartbeat(port, group, gen, member_id) != REBALANCE_IN_PROGRESS:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return join(port, group, member_id, **kw)


def test_rebalance_timeout_drops_member_that_does_not_rejoin(broker_factory):
    """A rebalance waits for known members only up to the rebalance timeout (here
    1.5 s; sessions are 30 s, so no session expires): a member that does not rejoin
    is removed and the others form the next generation without it."""
    b = broker_factory("group.initial.rebalance.delay.ms=0")
    g = unique("rebalance")
    kw = dict(session=30000, rebalance=1500, version=3)  # v3: no KIP-394 round
    a = join(b.port, g, **kw)
    assert (a.error_code, a.generation_id) == (NONE, 1)
    A = a.member_id
    assert sync(b.port, g, 1, A, [(A, b"A")]).error_code == NONE
    tb, box = in_thread(join, b.port, g, **kw)
    r = rejoin_after(b.port, g, 1, A, **kw)
    tb.join(30)
    B = box["r"].member_id
    assert (r.error_code, box["r"].error_code, r.generation_id, box["r"].generation_id) == (NONE, NONE, 2, 2)
    assert sync(b.port, g, 2, A, [(A, b"A"), (B, b"B")]).error_code == NONE
    assert sync(b.port, g, 2, B).error_code == NONE
    # a third member joins; A rejoins, B stays silent (its session is far from over)
    tc, box = in_thread(join, b.port, g, **kw)
    r = rejoin_after(b.port, g, 2, A, **kw)
    tc.join(30)
    C = box["r"].member_id
    assert (r.error_code, box["r"].error_code, r.generation_id, box["r"].generation_id) == (NONE, NONE, 3, 3)
    assert r.leader == A and sorted(m.member_id for m in r.members) == sorted([A, C])
    assert heartbeat(b.port, g, 3, B) == UNKNOWN_MEMBER_ID
    assert sync(b.port, g, 3, A, [(A, b"A"), (C, b"C")]).error_code == NONE
    assert bytes(sync(b.port, g, 3, C).assignment) == b"C"
    d = describe(b.port, g)
    assert d.group_state == "Stable" and sorted(m.member_id for m in d.members) == sorted([A, C])


def wait_for_state(port: int, group: str, state: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while describe(port, group).group_state != state:
        assert time.monotonic() < deadline, f"{group} never reached {state}"
        time.sleep(0.02)


def test_initial_rebalance_delay_holds_first_join(broker_factory):
    """group.initial.rebalance.delay.ms: the first join into an Empty group is held
    for the delay, so a member joining meanwhile lands in the same generation (1)."""
    b = broker_factory("group.initial.rebalance.delay.ms=1500")
    g = unique("delay")
    kw = dict(session=10000, rebalance=20000, version=3)
    ta, a = in_thread(join, b.port, g, **kw)
    wait_for_state(b.port, g, "PreparingRebalance")
    assert ta.is_alive()  # held: the delay has not passed
    tb, bb = in_thread(join, b.port, g, **kw)
    ta.join(30)
    tb.join(30)
    ra, rb = a["r"], bb["r"]
    assert ra.error_code == rb.error_code == NONE
    assert ra.generation_id == rb.generation_id == 1
    assert ra.leader == rb.leader == ra.member_id  # the first to join leads
    assert sorted(m.member_id for m in ra.members) == sorted([ra.member_id, rb.member_id])


def test_initial_rebalance_delay_extends_per_new_member(broker_factory):
    """Kafka's InitialDelayedJoin: each member joining during the initial delay buys
    another delay (within the rebalance timeout). The third member is sent only once
    the first delay is over for certain, and still lands in generation 1."""
    delay = 1.5
    b = broker_factory(f"group.initial.rebalance.delay.ms={int(delay * 1000)}")
    g = unique("extend")
    kw = dict(session=10000, rebalance=20000, version=3)
    ta, a = in_thread(join, b.port, g, **kw)
    wait_for_state(b.port, g, "PreparingRebalance")
    seen = time.monotonic()  # the first delay started before this: it is over by seen + delay
    tb, bb = in_thread(join, b.port, g, **kw)  # joins during the first delay
    time.sleep(max(0.0, seen + delay + 0.3 - time.monotonic()))
    assert ta.is_alive() and tb.is_alive()  # extended: still no generation
    tc, cc = in_thread(join, b.port, g, **kw)
    for t in (ta, tb, tc):
        t.join(30)
    rs = [a["r"], bb["r"], cc["r"]]
    assert [r.error_code for r in rs] == [NONE] * 3
    assert [r.generation_id for r in rs] == [1, 1, 1]
    assert sorted(m.member_id for m in rs[0].members) == sorted(r.member_id for r in rs)
