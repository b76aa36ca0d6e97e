"""Group coordinator conformance with Apache Kafka (the 4.4 reference broker).

1. Error precedence. ``ROWS`` is a table: a group in a given state, one request
   (raw wire client), and the error Kafka answers. Each row runs on a fresh
   group on a Sluice broker and on the Kafka reference; both must answer what
   the table says. Kafka's ClassicGroup / GroupMetadataManager checks, in
   order: group unknown or Dead, the member (instance id unknown:
   UNKNOWN_MEMBER_ID, mapped to another member: FENCED_INSTANCE_ID, member
   unknown), the generation, and only then the group's state; OffsetCommit's
   REBALANCE_IN_PROGRESS in CompletingRebalance is the last check, so a commit
   of the previous generation sent during a rebalance is ILLEGAL_GENERATION.
   A member whose client disconnected while its JoinGroup was parked still
   counts as joined (the leader's rejoin completes the rebalance with it),
   and a LeaveGroup it had pipelined behind that JoinGroup before closing
   (librdkafka's close mid-join) is still processed once the join completes.
2. Cooperative-sticky librdkafka consumers (``bench.coop_leave``): three on
   six partitions, one leaving, over several rounds; after every rebalance
   settles each partition has one owner. And consumers that commit while a third member joins get no
   REBALANCE_IN_PROGRESS for a commit of a generation that is already gone
   (read from librdkafka's own debug log, on Sluice and on Kafka).

Every wait is bounded; no assertion is about time.
"""
from __future__ import annotations

import re
import struct
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.protocol.admin import DescribeGroupsRequest
from kafka.protocol.consumer import (
    HeartbeatRequest,
    JoinGroupRequest,
    LeaveGroupRequest,
    OffsetCommitRequest,
    OffsetFetchRequest,
    SyncGroupRequest,
)
from kafka.protocol.metadata import FindCoordinatorRequest

from bench import coop_leave
from bench.coop_leave import CoopMember, settled, start_producer
from bench.launch import BrokerProcess
from tests.wire import WireClient

pytestmark = pytest.mark.timeout(300)

NONE, OFFSET_METADATA_TOO_LARGE, UNKNOWN_TOPIC_OR_PARTITION = 0, 12, 3
ILLEGAL_GENERATION, INCONSISTENT_GROUP_PROTOCOL, INVALID_GROUP_ID = 22, 23, 24
UNKNOWN_MEMBER_ID, INVALID_SESSION_TIMEOUT, REBALANCE_IN_PROGRESS = 25, 26, 27
GROUP_ID_NOT_FOUND, MEMBER_ID_REQUIRED, FENCED_INSTANCE_ID = 69, 79, 82

TOPIC = "conformance"
SESSION_MS, REBALANCE_MS = 6000, 30000   # rows finish long before either runs out


def subscription(*topics: str) -> bytes:
    out = struct.pack(">hi", 0, len(topics))
    for t in topics:
        out += struct.pack(">h", len(t)) + t.encode()
    return out + struct.pack(">i", -1)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------------ the targets
@pytest.fixture(scope="module")
def kafka_broker(kafka_tools, tmp_path_factory):
    """The Kafka reference for this module (started once: the table has many rows)."""
    from bench.kafka_reference import KafkaBroker

    kb = KafkaBroker(tmp_path_factory.mktemp("kafka"), heap="-Xmx512m", libs=str(kafka_tools.libs))
    kb.start(timeout=120)
    try:
        yield kb
    finally:
        assert kb.stop(timeout=30) is not None, "Kafka broker did not exit"
        kb.cleanup()


@pytest.fixture(scope="module")
def sluice(tmp_path_factory):
    """A Sluice broker for this module, without the initial rebalance delay (as the reference)."""
    work = tmp_path_factory.mktemp("sluice")
    b = BrokerProcess(work / "data", ["group.initial.rebalance.delay.ms=0"], log_path=work / "broker.log")
    b.start()
    try:
        yield b
    finally:
        b.stop()


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})
    admin.create_topics([NewTopic(name, partitions, 1)], operation_timeout=15)[name].result(30)


@pytest.fixture(scope="module")
def targets(kafka_broker, sluice) -> dict[str, "Wire"]:
    wires = {"sluice": Wire(sluice.port), "kafka": Wire(kafka_broker.port)}
    for b, w in ((sluice, wires["sluice"]), (kafka_broker, wires["kafka"])):
        create_topic(b.bootstrap, TOPIC, 2)
        # A fresh Kafka creates __consumer_offsets on the first FindCoordinator and
        # answers NOT_COORDINATOR / COORDINATOR_NOT_AVAILABLE until it has loaded.
        deadline = time.monotonic() + 60
        while (err := w.request(FindCoordinatorRequest(key_type=0, coordinator_keys=["warm-up"]), 4)
               .coordinators[0].error_code or w.commit(unique("warm-up"), -1, "")) != NONE:
            assert time.monotonic() < deadline, f"group coordinator not ready: error {err}"
            time.sleep(0.2)
    return wires


class Wire:
    """Group requests to one broker, each on its own connection (a member's
    JoinGroup may be parked while others talk)."""

    def __init__(self, port: int) -> None:
        self.port = port

    def request(self, req: Any, version: int) -> Any:
        with WireClient(self.port, timeout=30) as c:
            return c.request(req, version=version)

    @staticmethod
    def join_request(group: str, member_id: str = "", *, instance: str | None = None,
                     protocol_type: str = "consumer", protocols: list[tuple[str, bytes]] | None = None,
                     session: int = SESSION_MS) -> JoinGroupRequest:
        P = JoinGroupRequest.JoinGroupRequestProtocol
        protocols = [("range", subscription(TOPIC))] if protocols is None else protocols
        return JoinGroupRequest(group_id=group, session_timeout_ms=session, rebalance_timeout_ms=REBALANCE_MS,
                                member_id=member_id, group_instance_id=instance, protocol_type=protocol_type,
                                protocols=[P(name=n, metadata=m) for n, m in protocols], reason=None)

    def join(self, group: str, member_id: str = "", **kw) -> Any:
        return self.request(self.join_request(group, member_id, **kw), 9)

    def join_parked(self, group: str, member_id: str) -> WireClient:
        """Send a JoinGroup and leave it waiting for the rebalance (close the client when done)."""
        c = WireClient(self.port, timeout=30)
        c.send(self.join_request(group, member_id), 9)
        return c

    def sync(self, group: str, gen: int, member_id: str, assignments=(), *, instance: str | None = None,
             protocol_type: str | None = "consumer", protocol_name: str | None = "range",
             version: int = 5) -> int:
        A = SyncGroupRequest.SyncGroupRequestAssignment
        return self.request(SyncGroupRequest(
            group_id=group, generation_id=gen, member_id=member_id, group_instance_id=instance,
            protocol_type=protocol_type, protocol_name=protocol_name,
            assignments=[A(member_id=m, assignment=a) for m, a in assignments]), version).error_code

    def heartbeat(self, group: str, gen: int, member_id: str, instance: str | None = None) -> int:
        return self.request(HeartbeatRequest(group_id=group, generation_id=gen, member_id=member_id,
                                             group_instance_id=instance), 4).error_code

    def leave(self, group: str, *members: tuple[str, str | None]) -> tuple[int, list[int]]:
        M = LeaveGroupRequest.MemberIdentity
        r = self.request(LeaveGroupRequest(group_id=group, members=[
            M(member_id=m, group_instance_id=i, reason=None) for m, i in members]), 5)
        return r.error_code, [m.error_code for m in r.members]

    def leave_v1(self, group: str, member_id: str) -> int:
        return self.request(LeaveGroupRequest(group_id=group, member_id=member_id), 1).error_code

    def commit(self, group: str, gen: int, member_id: str, *, instance: str | None = None,
               topic: str = TOPIC, metadata: str = "", version: int = 8) -> int:
        T = OffsetCommitRequest.OffsetCommitRequestTopic
        P = T.OffsetCommitRequestPartition
        r = self.request(OffsetCommitRequest(
            group_id=group, generation_id_or_member_epoch=gen, member_id=member_id, group_instance_id=instance,
            retention_time_ms=-1, topics=[T(name=topic, partitions=[P(
                partition_index=0, committed_offset=1, committed_leader_epoch=-1,
                committed_metadata=metadata)])]), version)
        return r.topics[0].partitions[0].error_code

    def fetch(self, group: str, *, version: int = 8, topic: str = TOPIC, member_id: str | None = None,
              epoch: int = -1) -> tuple[int | None, list[tuple[int, int]]]:
        """(group error (None before v2), [(offset, partition error)]) for partition 0 of ``topic``."""
        if version <= 7:
            Tp = OffsetFetchRequest.OffsetFetchRequestTopic
            r = self.request(OffsetFetchRequest(group_id=group, topics=[Tp(name=topic, partition_indexes=[0])],
                                                require_stable=False), version)
            return (r.error_code if version >= 2 else None,
                    [(p.committed_offset, p.error_code) for t in r.topics for p in t.partitions])
        G = OffsetFetchRequest.OffsetFetchRequestGroup
        r = self.request(OffsetFetchRequest(groups=[G(
            group_id=group, member_id=member_id, member_epoch=epoch,
            topics=[G.OffsetFetchRequestTopics(name=topic, partition_indexes=[0])])], require_stable=False), version)
        g = r.groups[0]
        return g.error_code, [(p.committed_offset, p.error_code) for t in g.topics for p in t.partitions]

    def describe(self, group: str) -> Any:
        r = self.request(DescribeGroupsRequest(groups=[group], include_authorized_operations=False), 5)
        return r.groups[0]

    # --------------------------------------------------------- group states
    def member(self, group: str, instance: str | None = None) -> Any:
        """A member joins (two rounds for a dynamic one, KIP-394); its JoinGroup response."""
        r = self.join(group, instance=instance)
        if r.error_code == MEMBER_ID_REQUIRED:
            r = self.join(group, r.member_id, instance=instance)
        assert r.error_code == NONE, r
        return r

    def wait_state(self, group: str, state: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while (now := self.describe(group).group_state) != state:
            assert time.monotonic() < deadline, f"group {group}: {now}, not {state}"
            time.sleep(0.02)


@dataclass
class Setup:
    """A fresh group in one state: member ``a`` (the leader) at generation ``gen``;
    ``b`` a second member (joining, or a follower); ``parked``: b's parked JoinGroup."""
    group: str
    a: str = ""
    b: str = ""
    gen: int = -1
    parked: WireClient | None = None


def no_group(w: Wire) -> Setup:
    return Setup(unique("none"))


def empty(w: Wire) -> Setup:
    """Empty: a group that only has offsets (a simple commit)."""
    s = Setup(unique("empty"))
    assert w.commit(s.group, -1, "") == NONE
    return s


def stable(w: Wire, instance: str | None = None) -> Setup:
    """Stable at generation 1: one member (the leader), synced."""
    s = Setup(unique("stable"))
    r = w.member(s.group, instance=instance)
    s.a, s.gen = r.member_id, r.generation_id
    assert w.sync(s.group, s.gen, s.a, [(s.a, b"a")], instance=instance) == NONE
    return s


def stable_static(w: Wire) -> Setup:
    return stable(w, instance="static-1")


def preparing(w: Wire) -> Setup:
    """PreparingRebalance at generation 1: ``a`` is stable, ``b`` has joined and waits."""
    s = stable(w)
    r = w.join(s.group)
    assert r.error_code == MEMBER_ID_REQUIRED
    s.b = r.member_id
    s.parked = w.join_parked(s.group, s.b)
    w.wait_state(s.group, "PreparingRebalance")
    return s


def completing(w: Wire) -> Setup:
    """CompletingRebalance at generation 2: both rejoined, nobody synced yet."""
    s = preparing(w)
    r = w.join(s.group, s.a)
    assert s.parked is not None
    _, rb = s.parked.receive()
    s.parked.close()
    s.parked = None
    assert (r.error_code, rb.error_code, r.leader) == (NONE, NONE, s.a) and r.generation_id == s.gen + 1
    s.gen = r.generation_id
    return s


def rejoin_after_a_disconnect(w: Wire, s: Setup) -> tuple[int, int, int]:
    """The joining member's client disconnects while its JoinGroup is parked
    (a consumer closing: its LeaveGroup waits behind the JoinGroup on that
    connection); then the leader rejoins. Kafka still counts the parked
    member as joined: (error, generation step, members the leader is given)."""
    assert s.parked is not None
    s.parked.close()
    s.parked = None
    r = w.join(s.group, s.a)
    return r.error_code, r.generation_id - s.gen, len(r.members)


def leave_queued_behind_a_parked_join(w: Wire, s: Setup) -> tuple[int, int, int, str, int]:
    """What librdkafka does when a consumer closes while its JoinGroup is
    parked: a LeaveGroup (v1, as librdkafka sends it) pipelined behind the
    JoinGroup on the same connection, which it then closes (the LeaveGroup
    timed out). Kafka still processes the requests it had received, in order:
    once the leader's rejoin completes the join, the queued LeaveGroup is
    read and the member leaves, so the group prepares another rebalance.
    (leader's join error, generation step, members it is given; then, once
    the leave is processed or 10 s have passed: the state, how many members)."""
    assert s.parked is not None
    s.parked.send(LeaveGroupRequest(group_id=s.group, member_id=s.b), 1)
    s.parked.close()
    s.parked = None
    r = w.join(s.group, s.a)
    deadline = time.monotonic() + 10
    while len((g := w.describe(s.group)).members) > 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    return r.error_code, r.generation_id - s.gen, len(r.members), g.group_state, len(g.members)


@dataclass(frozen=True)
class Row:
    api: str
    state: Callable[[Wire], Setup]
    request: str
    kafka: Any                              # what Kafka 4.4 answers
    send: Callable[[Wire, Setup], Any]

    @property
    def id(self) -> str:
        return f"{self.api}|{self.state.__name__}|{self.request}"


R = Row
BIG = "x" * 5000   # above offset.metadata.max.bytes (4096) on both
# api            state          request                                   Kafka's answer
ROWS = [
    # OffsetCommit (v8 unless said): ClassicGroup.validateOffsetCommit, after the topic check
    R("OffsetCommit", no_group, "simple commit (generation -1)", NONE, lambda w, s: w.commit(s.group, -1, "")),
    R("OffsetCommit", no_group, "generation 1, v8", ILLEGAL_GENERATION, lambda w, s: w.commit(s.group, 1, "m")),
    R("OffsetCommit", no_group, "generation 1, v9", GROUP_ID_NOT_FOUND,
      lambda w, s: w.commit(s.group, 1, "m", version=9)),
    R("OffsetCommit", no_group, "group id '', simple commit", NONE, lambda w, s: w.commit("", -1, "")),
    R("OffsetCommit", empty, "simple commit", NONE, lambda w, s: w.commit(s.group, -1, "")),
    R("OffsetCommit", empty, "generation 0, no member", UNKNOWN_MEMBER_ID, lambda w, s: w.commit(s.group, 0, "")),
    R("OffsetCommit", empty, "generation 1, unknown member", UNKNOWN_MEMBER_ID,
      lambda w, s: w.commit(s.group, 1, "x")),
    R("OffsetCommit", stable, "simple commit", UNKNOWN_MEMBER_ID, lambda w, s: w.commit(s.group, -1, "")),
    R("OffsetCommit", stable, "member, its generation", NONE, lambda w, s: w.commit(s.group, s.gen, s.a)),
    R("OffsetCommit", stable, "member, generation -1", ILLEGAL_GENERATION, lambda w, s: w.commit(s.group, -1, s.a)),
    R("OffsetCommit", stable, "member, wrong generation", ILLEGAL_GENERATION,
      lambda w, s: w.commit(s.group, s.gen + 5, s.a)),
    R("OffsetCommit", stable, "unknown member, wrong generation", UNKNOWN_MEMBER_ID,
      lambda w, s: w.commit(s.group, s.gen + 5, "x")),
    R("OffsetCommit", stable, "member with an unknown instance id", UNKNOWN_MEMBER_ID,
      lambda w, s: w.commit(s.group, s.gen, s.a, instance="ghost")),
    R("OffsetCommit", stable, "unknown topic, wrong generation", UNKNOWN_TOPIC_OR_PARTITION,
      lambda w, s: w.commit(s.group, s.gen + 5, s.a, topic="no-such-topic")),
    R("OffsetCommit", stable, "metadata too large, wrong generation", ILLEGAL_GENERATION,
      lambda w, s: w.commit(s.group, s.gen + 5, s.a, metadata=BIG)),
    R("OffsetCommit", stable, "metadata too large", OFFSET_METADATA_TOO_LARGE,
      lambda w, s: w.commit(s.group, s.gen, s.a, metadata=BIG)),
    R("OffsetCommit", stable_static, "instance id of another member id", FENCED_INSTANCE_ID,
      lambda w, s: w.commit(s.group, s.gen, "x", instance="static-1")),
    R("OffsetCommit", stable_static, "fenced, wrong generation", FENCED_INSTANCE_ID,
      lambda w, s: w.commit(s.group, s.gen + 1, "x", instance="static-1")),
    R("OffsetCommit", preparing, "member, its generation", NONE, lambda w, s: w.commit(s.group, s.gen, s.a)),
    R("OffsetCommit", preparing, "member, previous generation", ILLEGAL_GENERATION,
      lambda w, s: w.commit(s.group, s.gen - 1, s.a)),
    R("OffsetCommit", preparing, "joining member, current generation", NONE,
      lambda w, s: w.commit(s.group, s.gen, s.b)),
    R("OffsetCommit", completing, "member, its generation", REBALANCE_IN_PROGRESS,
      lambda w, s: w.commit(s.group, s.gen, s.a)),
    R("OffsetCommit", completing, "member, previous generation (the issue)", ILLEGAL_GENERATION,
      lambda w, s: w.commit(s.group, s.gen - 1, s.a)),
    R("OffsetCommit", completing, "member, next generation", ILLEGAL_GENERATION,
      lambda w, s: w.commit(s.group, s.gen + 1, s.b)),
    R("OffsetCommit", completing, "unknown member", UNKNOWN_MEMBER_ID, lambda w, s: w.commit(s.group, s.gen, "x")),
    R("OffsetCommit", completing, "unknown member, previous generation", UNKNOWN_MEMBER_ID,
      lambda w, s: w.commit(s.group, s.gen - 1, "x")),
    R("OffsetCommit", completing, "simple commit", UNKNOWN_MEMBER_ID, lambda w, s: w.commit(s.group, -1, "")),
    R("OffsetCommit", completing, "unknown topic, previous generation", UNKNOWN_TOPIC_OR_PARTITION,
      lambda w, s: w.commit(s.group, s.gen - 1, s.a, topic="no-such-topic")),
    # Heartbeat (v4)
    R("Heartbeat", no_group, "any member", UNKNOWN_MEMBER_ID, lambda w, s: w.heartbeat(s.group, 1, "m")),
    R("Heartbeat", no_group, "group id ''", INVALID_GROUP_ID, lambda w, s: w.heartbeat("", 1, "m")),
    R("Heartbeat", empty, "any member", UNKNOWN_MEMBER_ID, lambda w, s: w.heartbeat(s.group, 0, "")),
    R("Heartbeat", stable, "member, its generation", NONE, lambda w, s: w.heartbeat(s.group, s.gen, s.a)),
    R("Heartbeat", stable, "member, wrong generation", ILLEGAL_GENERATION,
      lambda w, s: w.heartbeat(s.group, s.gen + 1, s.a)),
    R("Heartbeat", stable, "unknown member, wrong generation", UNKNOWN_MEMBER_ID,
      lambda w, s: w.heartbeat(s.group, s.gen + 1, "x")),
    R("Heartbeat", stable, "member with an unknown instance id", UNKNOWN_MEMBER_ID,
      lambda w, s: w.heartbeat(s.group, s.gen, s.a, instance="ghost")),
    R("Heartbeat", stable_static, "fenced, wrong generation", FENCED_INSTANCE_ID,
      lambda w, s: w.heartbeat(s.group, s.gen + 1, "x", instance="static-1")),
    R("Heartbeat", preparing, "member, its generation", REBALANCE_IN_PROGRESS,
      lambda w, s: w.heartbeat(s.group, s.gen, s.a)),
    R("Heartbeat", preparing, "member, previous generation", ILLEGAL_GENERATION,
      lambda w, s: w.heartbeat(s.group, s.gen - 1, s.a)),
    R("Heartbeat", preparing, "member, next generation", ILLEGAL_GENERATION,
      lambda w, s: w.heartbeat(s.group, s.gen + 1, s.a)),
    R("Heartbeat", preparing, "joining member, generation -1", ILLEGAL_GENERATION,
      lambda w, s: w.heartbeat(s.group, -1, s.b)),
    R("Heartbeat", completing, "follower, its generation", NONE, lambda w, s: w.heartbeat(s.group, s.gen, s.b)),
    R("Heartbeat", completing, "member, previous generation", ILLEGAL_GENERATION,
      lambda w, s: w.heartbeat(s.group, s.gen - 1, s.a)),
    R("Heartbeat", completing, "unknown member", UNKNOWN_MEMBER_ID, lambda w, s: w.heartbeat(s.group, s.gen, "x")),
    # SyncGroup (v5 unless said)
    R("SyncGroup", no_group, "any member", UNKNOWN_MEMBER_ID, lambda w, s: w.sync(s.group, 1, "m")),
    R("SyncGroup", no_group, "group id ''", INVALID_GROUP_ID, lambda w, s: w.sync("", 1, "m")),
    R("SyncGroup", empty, "any member", UNKNOWN_MEMBER_ID, lambda w, s: w.sync(s.group, 0, "")),
    R("SyncGroup", stable, "member, its generation", NONE, lambda w, s: w.sync(s.group, s.gen, s.a)),
    R("SyncGroup", stable, "member, v4 (no protocol fields)", NONE,
      lambda w, s: w.sync(s.group, s.gen, s.a, protocol_type=None, protocol_name=None, version=4)),
    R("SyncGroup", stable, "unknown member", UNKNOWN_MEMBER_ID, lambda w, s: w.sync(s.group, s.gen, "x")),
    R("SyncGroup", stable, "member with an unknown instance id", UNKNOWN_MEMBER_ID,
      lambda w, s: w.sync(s.group, s.gen, s.a, instance="ghost")),
    R("SyncGroup", stable, "other protocol name", INCONSISTENT_GROUP_PROTOCOL,
      lambda w, s: w.sync(s.group, s.gen, s.a, protocol_name="roundrobin")),
    R("SyncGroup", stable, "other protocol type", INCONSISTENT_GROUP_PROTOCOL,
      lambda w, s: w.sync(s.group, s.gen, s.a, protocol_type="connect")),
    R("SyncGroup", stable, "other protocol name, wrong generation", ILLEGAL_GENERATION,
      lambda w, s: w.sync(s.group, s.gen + 1, s.a, protocol_name="roundrobin")),
    R("SyncGroup", preparing, "member, its generation", REBALANCE_IN_PROGRESS,
      lambda w, s: w.sync(s.group, s.gen, s.a)),
    R("SyncGroup", preparing, "member, previous generation", ILLEGAL_GENERATION,
      lambda w, s: w.sync(s.group, s.gen - 1, s.a)),
    R("SyncGroup", preparing, "other protocol name", INCONSISTENT_GROUP_PROTOCOL,
      lambda w, s: w.sync(s.group, s.gen, s.a, protocol_name="roundrobin")),
    R("SyncGroup", completing, "member, previous generation", ILLEGAL_GENERATION,
      lambda w, s: w.sync(s.group, s.gen - 1, s.a)),
    R("SyncGroup", completing, "unknown member", UNKNOWN_MEMBER_ID, lambda w, s: w.sync(s.group, s.gen, "x")),
    R("SyncGroup", completing, "follower, other protocol name", INCONSISTENT_GROUP_PROTOCOL,
      lambda w, s: w.sync(s.group, s.gen, s.b, protocol_name="roundrobin")),
    # JoinGroup (v9)
    R("JoinGroup", no_group, "group id ''", INVALID_GROUP_ID, lambda w, s: w.join("").error_code),
    R("JoinGroup", no_group, "group id '', bad session timeout", INVALID_GROUP_ID,
      lambda w, s: w.join("", session=10).error_code),
    R("JoinGroup", no_group, "bad session timeout, unknown member", INVALID_SESSION_TIMEOUT,
      lambda w, s: w.join(s.group, "x", session=10).error_code),
    R("JoinGroup", no_group, "member id", UNKNOWN_MEMBER_ID, lambda w, s: w.join(s.group, "x").error_code),
    R("JoinGroup", no_group, "no protocol type", INCONSISTENT_GROUP_PROTOCOL,
      lambda w, s: w.join(s.group, protocol_type="").error_code),
    R("JoinGroup", no_group, "no protocols", INCONSISTENT_GROUP_PROTOCOL,
      lambda w, s: w.join(s.group, protocols=[]).error_code),
    R("JoinGroup", no_group, "new member", MEMBER_ID_REQUIRED, lambda w, s: w.join(s.group).error_code),
    R("JoinGroup", empty, "member id", UNKNOWN_MEMBER_ID, lambda w, s: w.join(s.group, "x").error_code),
    R("JoinGroup", stable, "unknown member", UNKNOWN_MEMBER_ID, lambda w, s: w.join(s.group, "x").error_code),
    R("JoinGroup", stable, "unknown member, other protocol type", INCONSISTENT_GROUP_PROTOCOL,
      lambda w, s: w.join(s.group, "x", protocol_type="connect").error_code),
    R("JoinGroup", stable, "new member, no common protocol", INCONSISTENT_GROUP_PROTOCOL,
      lambda w, s: w.join(s.group, protocols=[("roundrobin", b"")]).error_code),
    R("JoinGroup", stable, "member with an unknown instance id", UNKNOWN_MEMBER_ID,
      lambda w, s: w.join(s.group, s.a, instance="ghost").error_code),
    R("JoinGroup", stable_static, "instance id of another member id", FENCED_INSTANCE_ID,
      lambda w, s: w.join(s.group, "x", instance="static-1").error_code),
    R("JoinGroup", preparing, "leader, after the joining member's client disconnected", (NONE, 1, 2),
      rejoin_after_a_disconnect),
    R("JoinGroup", preparing, "leader, the joining member's LeaveGroup queued behind its parked join",
      (NONE, 1, 2, "PreparingRebalance", 1), leave_queued_behind_a_parked_join),
    R("JoinGroup", stable_static, "fenced, other protocol type", INCONSISTENT_GROUP_PROTOCOL,
      lambda w, s: w.join(s.group, "x", instance="static-1", protocol_type="connect").error_code),
    # LeaveGroup (v5: top-level error, per-member errors; v1: one error)
    R("LeaveGroup", no_group, "two members", (NONE, [UNKNOWN_MEMBER_ID] * 2),
      lambda w, s: w.leave(s.group, ("m", None), ("", "i"))),
    R("LeaveGroup", no_group, "v1", UNKNOWN_MEMBER_ID, lambda w, s: w.leave_v1(s.group, "m")),
    R("LeaveGroup", no_group, "group id ''", (INVALID_GROUP_ID, []), lambda w, s: w.leave("", ("m", None))),
    R("LeaveGroup", empty, "any member", (NONE, [UNKNOWN_MEMBER_ID]), lambda w, s: w.leave(s.group, ("m", None))),
    R("LeaveGroup", stable, "unknown, '', unknown instance, member+unknown instance, member",
      (NONE, [UNKNOWN_MEMBER_ID] * 4 + [NONE]),
      lambda w, s: w.leave(s.group, ("x", None), ("", None), ("", "ghost"), (s.a, "ghost"), (s.a, None))),
    R("LeaveGroup", stable_static, "fenced, unknown instance, by instance id alone",
      (NONE, [FENCED_INSTANCE_ID, UNKNOWN_MEMBER_ID, NONE]),
      lambda w, s: w.leave(s.group, ("x", "static-1"), ("", "static-2"), ("", "static-1"))),
    R("LeaveGroup", stable, "a pending (KIP-394) member, twice", (NONE, [NONE, UNKNOWN_MEMBER_ID]),
      lambda w, s: w.leave(s.group, (pid := w.join(s.group).member_id, None), (pid, None))),
    R("LeaveGroup", stable, "v1: unknown, then the member", [UNKNOWN_MEMBER_ID, NONE],
      lambda w, s: [w.leave_v1(s.group, "x"), w.leave_v1(s.group, s.a)]),
    # OffsetFetch: classic groups check no member; an unknown group has no offsets
    R("OffsetFetch", no_group, "v8", (NONE, [(-1, NONE)]), lambda w, s: w.fetch(s.group)),
    R("OffsetFetch", no_group, "v7", (NONE, [(-1, NONE)]), lambda w, s: w.fetch(s.group, version=7)),
    R("OffsetFetch", no_group, "v1", (None, [(-1, NONE)]), lambda w, s: w.fetch(s.group, version=1)),
    R("OffsetFetch", no_group, "unknown topic", (NONE, [(-1, NONE)]),
      lambda w, s: w.fetch(s.group, topic="no-such-topic")),
    R("OffsetFetch", empty, "group id '' after a simple commit to it", (NONE, [(1, NONE)]),
      lambda w, s: (w.commit("", -1, ""), w.fetch(""))[1]),
    R("OffsetFetch", stable, "v9, unknown member and epoch", (NONE, [(1, NONE)]),
      lambda w, s: (w.commit(s.group, s.gen, s.a), w.fetch(s.group, version=9, member_id="x", epoch=7))[1]),
    R("OffsetFetch", completing, "v9, member, previous generation", (NONE, [(-1, NONE)]),
      lambda w, s: w.fetch(s.group, version=9, member_id=s.a, epoch=s.gen - 1)),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_error_precedence_matches_kafka(targets, row: Row):
    answers = {}
    for name, w in targets.items():
        s = row.state(w)
        try:
            answers[name] = row.send(w, s)
        finally:
            if s.parked is not None:
                s.parked.close()
    assert answers == {"sluice": row.kafka, "kafka": row.kafka}, row.id


def test_commit_of_previous_generation_while_completing_rebalance(targets):
    """The issue's case in full: a member commits with the generation it had
    while the group completes the next one; both answer ILLEGAL_GENERATION,
    and REBALANCE_IN_PROGRESS only for the current generation's commit; once
    the leader syncs the new generation commits."""
    for name, w in targets.items():
        s = completing(w)
        got = [w.commit(s.group, s.gen - 1, s.b), w.commit(s.group, s.gen, s.b)]
        assert w.sync(s.group, s.gen, s.a, [(s.a, b"a"), (s.b, b"b")]) == NONE
        got.append(w.commit(s.group, s.gen, s.b))
        assert got == [ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS, NONE], name


# --------------------------------------------------------- cooperative consumers
COMMIT_SENT = re.compile(r"Committing offsets for \d+ partition\(s\) with generation-id (-?\d+)")
COMMIT_DONE = re.compile(r"OffsetCommit for \d+ partition\(s\) in join-state \S+: manual: returned: (.*)")
JOINED = re.compile(r"JoinGroup response: GenerationId (-?\d+)")
ILLEGAL_GENERATION_TEXT = "Broker: Specified group generation id is not valid"   # librdkafka's err2str


def test_cooperative_sticky_member_leaves_each_partition_one_owner(sluice):
    """Three cooperative-sticky consumers on six partitions commit as they go;
    one leaves: once it has settled, then right after the others start (the
    leave races their joins and syncs), then a little later. In every round,
    after each rebalance settles, every partition has exactly one owner
    (``bench.coop_leave``; ``sluice bench groups --coop-leave N`` runs many)."""
    rounds = coop_leave.run_rounds(sluice.bootstrap, 6)   # the first six of coop_leave.LEAVES
    assert [r.detail for r in rounds if not r.ok] == []
    assert [r.leave for r in rounds] == list(coop_leave.LEAVES[:6])


def stale_commits(lines: list[str]) -> list[tuple[int, int, str]]:
    """(commit generation, newest generation this consumer had joined, answer) for
    every commit answered after the consumer had joined a newer generation. The
    JoinGroup and the commit share the coordinator connection, whose requests
    the broker handles in order: the commit reached the group after that newer
    generation existed, so its generation was gone."""
    out, sent, joined = [], None, -1
    for line in lines:
        if m := JOINED.search(line):
            joined = max(joined, int(m.group(1)))
        elif m := COMMIT_SENT.search(line):
            sent = int(m.group(1))
        elif (m := COMMIT_DONE.search(line)) and sent is not None:
            if joined > sent:
                out.append((sent, joined, m.group(1)))
            sent = None
    return out


@pytest.mark.parametrize("target", ["sluice", "kafka"])
def test_commit_of_a_gone_generation_is_not_rebalance_in_progress(request, target):
    """Two cooperative-sticky consumers commit every 20 ms while a third joins
    (and leaves, and joins again, up to four times, until a commit has been
    caught behind a rebalance): a commit carrying a generation that is already
    gone is answered ILLEGAL_GENERATION, as Kafka's precedence has it, not
    REBALANCE_IN_PROGRESS (on which librdkafka keeps its partitions)."""
    if target == "kafka":
        b = request.getfixturevalue("kafka_broker")
    else:
        b = request.getfixturevalue("sluice")
    topic, group, parts = unique("coop-commit"), unique("grp"), 4
    create_topic(b.bootstrap, topic, parts)
    stop_producing = start_producer(b.bootstrap, topic, parts)
    committers = [CoopMember(b.bootstrap, group, topic, f"c{i}", commit_every=0.02, debug=True) for i in range(2)]
    try:
        for m in committers:
            m.start()
        settled(b.bootstrap, group, committers, parts)
        stale: list[tuple[int, int, str]] = []
        for attempt in range(4):
            joiner = CoopMember(b.bootstrap, group, topic, f"j{attempt}")
            joiner.start()
            try:
                settled(b.bootstrap, group, [*committers, joiner], parts)
            finally:
                joiner.close()
            settled(b.bootstrap, group, committers, parts)
            stale = [s for m in committers for s in stale_commits(m.log.lines)]
            if stale:
                break
    finally:
        for m in committers:
            m.close()
        stop_producing()
    for m in committers:
        assert m.error is None, (m.name, m.error)
    assert stale, "no commit was caught behind a rebalance: nothing was checked"
    assert {answer for *_, answer in stale} == {ILLEGAL_GENERATION_TEXT}, stale
