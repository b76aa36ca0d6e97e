"""End-to-end: the KIP-848 consumer group protocol (``group.protocol=consumer``).

* Kafka's answers to ConsumerGroupHeartbeat (validation, fencing, static
  members, leaving), OffsetCommit/OffsetFetch epoch checks and the group's
  listing, sent raw and checked against Sluice and the Apache Kafka 4.4
  reference with the same table.
* librdkafka (confluent-kafka) consumers: three members, one leaving and one
  joining, a steady producer; every record is consumed exactly once and the
  committed offsets reach the end of every partition. Run against Sluice and,
  as the comparison, the Kafka 4.4 reference.
* Kafka's own Java client (VerifiableConsumer ``--group-protocol consumer``)
  in the same scenario, and ``kafka-consumer-groups`` (--describe, --members,
  --state, --list --type, --reset-offsets, --delete) on the group; also on both.
* Empty groups converting between the protocols (both, online migration
  disabled), and membership surviving a Sluice restart.
* Online migration (both, ``group.consumer.migration.policy=bidirectional``):
  librdkafka classic consumers upgraded one by one to ``group.protocol=consumer``
  while consuming, then the group downgraded when its last consumer-protocol
  member leaves a classic one behind; every record consumed once.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.protocol.admin import ListGroupsRequest
from kafka.protocol.consumer import (
    JoinGroupRequest,
    OffsetCommitRequest,
    OffsetDeleteRequest,
    OffsetFetchRequest,
)
from kafka.protocol.metadata import ApiVersionsRequest, FindCoordinatorRequest

from broker.apis.specs import ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest
from tests.wire import WireClient

# the bounds of the interval and session (defaults 5 s and 45 s) lowered too, as Kafka requires
FAST = {"group.consumer.heartbeat.interval.ms": "500", "group.consumer.session.timeout.ms": "10000",
        "group.consumer.min.heartbeat.interval.ms": "500", "group.consumer.min.session.timeout.ms": "6000"}


def unique(p: str) -> str:
    return f"{p}-{uuid.uuid4().hex[:8]}"


def _target(kind: str, broker_factory, kafka_tools, tmp_path, kafka_extra: dict[str, str] | None = None):
    if kind == "sluice":
        b = broker_factory(*(f"{k}={v}" for k, v in {**FAST, **(kafka_extra or {})}.items()),
                           "group.initial.rebalance.delay.ms=0")
        yield b.bootstrap, b.port
        return
    from bench.kafka_reference import KafkaBroker
    kb = KafkaBroker(tmp_path / "kafka", heap="-Xmx512m", overrides={**FAST, **(kafka_extra or {})},
                     libs=str(kafka_tools.libs))
    kb.start(timeout=120)
    try:
        yield kb.bootstrap, kb.port
    finally:
        kb.stop(timeout=30)
        kb.cleanup()


@pytest.fixture(params=["sluice", "kafka"])
def target(request, broker_factory, kafka_tools, tmp_path):
    """(bootstrap host:port, port) of Sluice or of the Apache Kafka 4.4 reference."""
    yield from _target(request.param, broker_factory, kafka_tools, tmp_path)


@pytest.fixture(params=["sluice", "kafka"])
def target_no_migration(request, broker_factory, kafka_tools, tmp_path):
    """As ``target``, both with ``group.consumer.migration.policy=disabled``: only
    empty groups convert."""
    yield from _target(request.param, broker_factory, kafka_tools, tmp_path,
                       {"group.consumer.migration.policy": "disabled"})


def create_topic(bootstrap: str, partitions: int) -> str:
    topic = unique("t")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
    return topic


def hb(c: WireClient, group: str, member: str, epoch: int, **kw):
    d = dict(group_id=group, member_id=member, member_epoch=epoch, instance_id=None, rack_id=None,
             rebalance_timeout_ms=30000 if epoch == 0 else -1,
             subscribed_topic_names=kw.pop("names", None), subscribed_topic_regex=None, server_assignor=None,
             topic_partitions=[] if epoch == 0 else None)
    d.update(kw)
    return c.request(ConsumerGroupHeartbeatRequest(**d), 1)


def wait_coordinator(c: WireClient, group: str) -> None:
    """Kafka creates __consumer_offsets on the first lookup: wait until the group is served."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        fc = c.request(FindCoordinatorRequest(key_type=0, coordinator_keys=[group]), 4)
        if fc.coordinators[0].error_code == 0 and hb(c, group, "probe", 5).error_code != 16:
            return
        time.sleep(0.5)
    raise AssertionError("no coordinator")


def test_heartbeat_answers_match_kafka(target):
    """The same requests, the same answers (error code and message) from Sluice and Kafka 4.4."""
    _, port = target
    topic = create_topic(target[0], 2)
    g = unique("g")
    with WireClient(port) as c:
        wait_coordinator(c, g)
        a = hb(c, g, "a", 0, names=[topic])
        assert (a.error_code, a.member_id, a.heartbeat_interval_ms) == (0, "a", 500)
        assert a.member_epoch > 0 and sorted(a.assignment.topic_partitions[0].partitions) == [0, 1]
        ep = a.member_epoch
        table = [
            (dict(member="a", epoch=ep + 5), 110, "The consumer group member has a greater member epoch"),
            (dict(member="zz", epoch=1), 25, f"Member zz is not a member of group {g}."),
            (dict(member="zz", epoch=-1), 25, f"Member zz is not a member of group {g}."),
            (dict(member="x", epoch=3, group="nogroup-" + g), 69, f"Consumer group nogroup-{g} not found."),
            (dict(member="x", epoch=-1, group="nogroup-" + g), 69, f"Group nogroup-{g} not found."),
            (dict(member="m", epoch=0, group=""), 42, "GroupId can't be empty."),
            (dict(member="", epoch=0), 42, "MemberId can't be empty."),
            (dict(member="m", epoch=-3), 42, "MemberEpoch is invalid."),
            (dict(member="m", epoch=0, rebalance_timeout_ms=-1), 42,
             "RebalanceTimeoutMs must be provided in first request."),
            (dict(member="m", epoch=0, names=None), 42,
             "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining."),
            (dict(member="m", epoch=0, topic_partitions=None), 42, "TopicPartitions must be empty when (re-)joining."),
            (dict(member="m", epoch=0, server_assignor="nope"), 112,
             "ServerAssignor nope is not supported. Supported assignors: uniform, range."),
            (dict(member="m", epoch=0, names=None, subscribed_topic_regex="("), 128,
             "SubscribedTopicRegex `(` is not a valid regular expression"),
        ]
        for kw, code, text in table:
            kw.setdefault("names", [topic])
            r = hb(c, kw.pop("group", g), kw.pop("member"), kw.pop("epoch"), **kw)
            assert (r.error_code, (r.error_message or "")[:len(text)]) == (code, text), (kw, r)
        # static members: the instance id is held until its member leaves with -2
        s1 = hb(c, g, "s1", 0, names=[topic], instance_id="i1")
        assert s1.error_code == 0
        r = hb(c, g, "s2", 0, names=[topic], instance_id="i1")
        assert (r.error_code, r.error_message) == (
            111, "Static member s2 with instance id i1 cannot join the group because the instance id is owned "
                 "by s1 member.")
        r = hb(c, g, "s1", -2, instance_id="i1")
        assert (r.error_code, r.member_id, r.member_epoch, r.assignment) == (0, "s1", -2, None)
        assert hb(c, g, "s2", 0, names=[topic], instance_id="i1").error_code == 0
        # offsets: the member epoch is checked from v9 on
        a = hb(c, g, "a", ep)
        ep = a.member_epoch
        T = OffsetCommitRequest.OffsetCommitRequestTopic
        P = T.OffsetCommitRequestPartition

        def commit(v, epoch, member):
            r = c.request(OffsetCommitRequest(
                group_id=g, generation_id_or_member_epoch=epoch, member_id=member, group_instance_id=None,
                retention_time_ms=-1, topics=[T(name=topic, partitions=[P(
                    partition_index=0, committed_offset=5, committed_leader_epoch=-1, committed_metadata="")])]), v)
            return r.topics[0].partitions[0].error_code
        assert [commit(9, ep, "a"), commit(9, ep + 7, "a"), commit(9, ep, "zz"), commit(9, -1, ""),
                commit(8, ep, "a")] == [0, 113, 25, 25, 35]
        G = OffsetFetchRequest.OffsetFetchRequestGroup

        def fetch(member, epoch):
            r = c.request(OffsetFetchRequest(groups=[G(group_id=g, member_id=member, member_epoch=epoch, topics=None)],
                                             require_stable=False), 9)
            return r.groups[0].error_code, [p.committed_offset for t in r.groups[0].topics for p in t.partitions]
        assert [fetch("a", ep), fetch("a", ep + 3), fetch(None, -1), fetch("zz", ep)] == [
            (0, [5]), (113, []), (0, [5]), (25, [])]
        DT = OffsetDeleteRequest.OffsetDeleteRequestTopic
        r = c.request(OffsetDeleteRequest(group_id=g, topics=[
            DT(name=topic, partitions=[DT.OffsetDeleteRequestPartition(partition_index=0)])]), 0)
        assert (r.error_code, r.topics[0].partitions[0].error_code) == (0, 86)  # GROUP_SUBSCRIBED_TO_TOPIC
        listed = {x.group_id: x for x in c.request(ListGroupsRequest(states_filter=[], types_filter=["consumer"]),
                                                   5).groups}
        assert (listed[g].group_type, listed[g].protocol_type) == ("consumer", "consumer")
        # ConsumerGroupDescribe, and what ApiVersions says of both APIs
        d = {x.group_id: x for x in c.request(ConsumerGroupDescribeRequest(
            group_ids=[g, "nogroup-" + g, ""], include_authorized_operations=True), 1).groups}
        assert (d[""].error_code, d[""].error_message) == (24, None)
        assert (d["nogroup-" + g].error_code, d["nogroup-" + g].error_message) == (69, f"Group nogroup-{g} not found.")
        assert (d[g].error_code, d[g].assignor_name, d[g].authorized_operations) == (0, "uniform", {3, 6, 8, 10, 11})
        members = {m.member_id: m for m in d[g].members}
        assert set(members) == {"a", "s2"}
        assert (members["s2"].instance_id, members["s2"].subscribed_topic_names, members["s2"].subscribed_topic_regex,
                members["s2"].member_type) == ("i1", [topic], "", 1)
        assert members["a"].member_epoch == ep
        versions = {k.api_key: (k.min_version, k.max_version) for k in c.request(
            ApiVersionsRequest(client_software_name="t", client_software_version="1"), 3).api_keys}
        assert (versions[68], versions[69]) == ((0, 1), (0, 1))
        assert hb(c, g, "a", -1).member_epoch == -1


class Recorder:
    """A librdkafka consumer in its own thread: commits each record synchronously
    after recording it, so a partition handed over resumes right after it."""

    def __init__(self, bootstrap: str, group: str, topic: str, name: str, seen: list, lock: threading.Lock):
        self.name, self.seen, self.lock = name, seen, lock
        self.stop = threading.Event()
        self.partitions = 0
        self.errors: list[str] = []
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "group.protocol": "consumer",
                           "enable.auto.commit": False, "auto.offset.reset": "earliest",
                           "client.id": name})
        self.c.subscribe([topic])
        self.thread = threading.Thread(target=self.run, name=name, daemon=True)
        self.thread.start()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                m = self.c.poll(0.2)
                self.partitions = len(self.c.assignment())
                if m is None:
                    continue
                if m.error():
                    self.errors.append(str(m.error()))
                    continue
                with self.lock:
                    self.seen.append((int(m.value()), self.name))
                self.commit(m)
        finally:
            self.c.close()

    def commit(self, m) -> None:
        """Synchronously; a commit that raced a heartbeat bumping the member epoch gets
        STALE_MEMBER_EPOCH (Kafka too) and is sent again with the new epoch, as the
        Java client does (librdkafka hands the error to the application)."""
        for _ in range(50):
            try:
                self.c.commit(message=m, asynchronous=False)
                return
            except KafkaException as e:
                if e.args[0].code() != KafkaError.STALE_MEMBER_EPOCH:
                    self.errors.append(f"commit: {e}")
                    return
                time.sleep(0.02)
        self.errors.append("commit: STALE_MEMBER_EPOCH 50 times")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def wait_until(cond, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def steady_producer(bootstrap: str, topic: str, stop: threading.Event, produced: list) -> threading.Thread:
    def run() -> None:
        p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        i = 0
        while not stop.is_set() and i < 20000:
            p.produce(topic, str(i).encode(), key=str(i).encode())
            produced.append(i)
            i += 1
            p.poll(0)
            time.sleep(0.005)
        assert p.flush(30) == 0
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def committed_at_end(bootstrap: str, group: str, topic: str, partitions: int) -> bool:
    from confluent_kafka import TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        committed = {tp.partition: tp.offset for tp in c.committed(tps, timeout=15)}
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=15)[1] for p in range(partitions)}
        return committed == ends
    finally:
        c.close()


def test_librdkafka_members_leave_and_join_every_record_once(target):
    bootstrap, _ = target
    topic = create_topic(bootstrap, 6)
    group = unique("cg")
    seen: list[tuple[int, str]] = []
    produced: list[int] = []
    lock = threading.Lock()
    stop_producing = threading.Event()
    members = [Recorder(bootstrap, group, topic, f"c{i}", seen, lock) for i in range(1, 4)]
    producer = steady_producer(bootstrap, topic, stop_producing, produced)
    try:
        wait_until(lambda: all(m.partitions == 2 for m in members), "three members with two partitions each")
        n = len(seen)
        wait_until(lambda: len(seen) > n + 50, "records flowing")
        members[2].close()                                          # leaves the group
        wait_until(lambda: members[0].partitions + members[1].partitions == 6, "two members own all")
        members.append(Recorder(bootstrap, group, topic, "c4", seen, lock))   # joins
        wait_until(lambda: sorted(m.partitions for m in (members[0], members[1], members[3])) == [2, 2, 2],
                   "the new member has its share")
        n = len(seen)
        wait_until(lambda: len(seen) > n + 50, "records flowing after the join")
        stop_producing.set()
        producer.join(60)
        wait_until(lambda: len({v for v, _ in seen}) >= len(produced), "every record consumed")
        time.sleep(1)   # anything consumed twice would show up now
    finally:
        stop_producing.set()
        for m in members:
            if m.thread.is_alive():
                m.close()
    values = sorted(v for v, _ in seen)
    assert values == list(range(len(produced))), "duplicates or gaps"
    assert {name for _, name in seen} == {"c1", "c2", "c3", "c4"}
    assert committed_at_end(bootstrap, group, topic, 6)
    assert not [e for m in members for e in m.errors], [m.errors for m in members]


def test_java_members_leave_and_join_every_record_once(target, kafka_tools):
    """Kafka's VerifiableConsumer (the Java KafkaConsumer, ``group.protocol=consumer``);
    then ``kafka-consumer-groups --describe`` of the consumer group."""
    bootstrap, port = target
    topic = create_topic(bootstrap, 6)
    group = unique("jg")
    produced: list[int] = []
    stop_producing = threading.Event()
    outputs: dict[str, list[dict]] = {}
    procs: dict[str, subprocess.Popen] = {}

    def start(name: str) -> None:
        p = kafka_tools.start("kafka-verifiable-consumer", "--bootstrap-server", bootstrap, "--topic", topic,
                              "--group-id", group, "--group-protocol", "consumer", "--verbose",
                              "--reset-policy", "earliest")
        procs[name] = p
        outputs[name] = []

        def read() -> None:
            assert p.stdout is not None
            for line in p.stdout:
                if line.startswith("{"):
                    outputs[name].append(json.loads(line))
        threading.Thread(target=read, daemon=True).start()

    def owned(name: str) -> int:
        n = 0
        for e in outputs[name]:
            if e["name"] == "partitions_assigned":
                n += len(e["partitions"])
            elif e["name"] in ("partitions_revoked", "partitions_lost"):
                n -= len(e["partitions"])
        return n

    producer = steady_producer(bootstrap, topic, stop_producing, produced)
    try:
        for name in ("j1", "j2", "j3"):
            start(name)
        wait_until(lambda: [owned(n) for n in ("j1", "j2", "j3")] == [2, 2, 2], "three Java members", 120)
        tool = ("kafka-consumer-groups", "--bootstrap-server", bootstrap)
        described, state, listed = kafka_tools.run_many([
            (tool[0], (*tool[1:], "--describe", "--group", group, "--members")),
            (tool[0], (*tool[1:], "--describe", "--group", group, "--state")),
            (tool[0], (*tool[1:], "--list", "--type", "consumer"))], timeout=90)
        rows = [ln.split() for ln in described.lines if ln.startswith(group)]
        assert len(rows) == 3 and all(r[-1] == "2" or r[-2] == "2" for r in rows), described.describe()
        row = next(ln.split() for ln in state.lines if ln.startswith(group))
        assert (row[3], row[-1]) == ("uniform", "3"), state.describe()    # assignor, #members
        assert [group, "Consumer"] in [ln.split() for ln in listed.lines], listed.describe()
        os.killpg(procs["j3"].pid, signal.SIGTERM)                  # closes: leaves the group
        procs["j3"].wait(60)
        wait_until(lambda: owned("j1") + owned("j2") == 6, "two Java members own all", 120)
        start("j4")
        wait_until(lambda: sorted(owned(n) for n in ("j1", "j2", "j4")) == [2, 2, 2], "the new member", 120)
        stop_producing.set()
        producer.join(60)

        def consumed() -> list[int]:
            return [int(e["value"]) for evs in outputs.values() for e in list(evs) if e["name"] == "record_data"]
        wait_until(lambda: len(set(consumed())) >= len(produced), "every record consumed", 120)
        time.sleep(1)
        assert sorted(consumed()) == list(range(len(produced))), "duplicates or gaps"
        assert all(any(e["name"] == "record_data" for e in outputs[n]) for n in ("j1", "j2", "j3", "j4"))
        wait_until(lambda: committed_at_end(bootstrap, group, topic, 6), "offsets committed to the end", 60)
        offsets = kafka_tools.run("kafka-consumer-groups", "--bootstrap-server", bootstrap, "--describe",
                                  "--group", group, timeout=60)
        lags = [ln.split() for ln in offsets.lines if ln.startswith(group)]
        assert len(lags) == 6 and all(r[5] == "0" for r in lags), offsets.describe()
        # every member leaves: the group is Empty, its offsets can be reset, then it can be deleted
        for name in ("j1", "j2", "j4"):
            os.killpg(procs[name].pid, signal.SIGTERM)
        for name in ("j1", "j2", "j4"):
            procs[name].wait(60)
        reset = kafka_tools.run(*tool, "--group", group, "--reset-offsets", "--to-earliest", "--topic", topic,
                                "--execute", timeout=60)
        assert sorted(ln.split()[2:] for ln in reset.lines if ln.startswith(group)) == [
            [str(p), "0"] for p in range(6)], reset.describe()
        deleted = kafka_tools.run(*tool, "--group", group, "--delete", timeout=60)
        assert "was successful" in deleted.stdout, deleted.describe()
        with WireClient(port) as c:
            assert group not in [x.group_id for x in c.request(ListGroupsRequest(states_filter=[], types_filter=[]),
                                                               5).groups]
    finally:
        stop_producing.set()
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def consume_some(bootstrap: str, group: str, topic: str, protocol: str, n: int) -> list[int]:
    """A consumer of ``protocol`` that reads ``n`` records, commits them and leaves."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "group.protocol": protocol,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  **({"session.timeout.ms": 6000} if protocol == "classic" else {})})
    got: list[int] = []
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(got) < n and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(int(m.value()))
                c.commit(message=m, asynchronous=False)
    finally:
        c.close()
    return got


def test_empty_groups_convert_between_protocols(target_no_migration):
    """An empty classic group becomes a consumer group on its first heartbeat and
    back on a JoinGroup, keeping its offsets; a group with live members of the
    other protocol is refused (Kafka's answers with online migration disabled)."""
    bootstrap, port = target_no_migration
    topic = create_topic(bootstrap, 1)
    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(30):
        p.produce(topic, str(i).encode())
    assert p.flush(30) == 0
    group = unique("mig")
    first = consume_some(bootstrap, group, topic, "classic", 10)
    second = consume_some(bootstrap, group, topic, "consumer", 10)
    third = consume_some(bootstrap, group, topic, "classic", 10)
    assert first + second + third == list(range(30))
    with WireClient(port) as c:
        listed = {x.group_id: x for x in c.request(ListGroupsRequest(states_filter=[], types_filter=[]), 5).groups}
        assert (listed[group].group_type, listed[group].group_state) == ("classic", "Empty")
        # a live consumer group refuses classic members; a live classic group consumer members
        live = unique("live")
        assert hb(c, live, "a", 0, names=[topic]).error_code == 0
        j = c.request(JoinGroupRequest(group_id=live, session_timeout_ms=10000, rebalance_timeout_ms=10000,
                                       member_id="", group_instance_id=None, protocol_type="consumer",
                                       protocols=[JoinGroupRequest.JoinGroupRequestProtocol(
                                           name="range", metadata=b"")]), 9)
        assert j.error_code == 23   # INCONSISTENT_GROUP_PROTOCOL
    cl = unique("cl")
    classic = Consumer({"bootstrap.servers": bootstrap, "group.id": cl, "session.timeout.ms": 6000,
                        "auto.offset.reset": "earliest"})
    try:
        classic.subscribe([topic])
        deadline = time.monotonic() + 30
        while not classic.assignment() and time.monotonic() < deadline:
            classic.poll(0.2)
        assert classic.assignment()
        with WireClient(port) as c:
            r = hb(c, cl, "x", 0, names=[topic])
            assert (r.error_code, r.error_message) == (
                69, f"Cannot upgrade classic group {cl} to consumer group because online upgrade is disabled.")
    finally:
        classic.close()


def test_members_survive_a_broker_restart(broker_factory):
    """Membership is durable (WAL + group snapshots): after a restart the members'
    heartbeats at their epochs are answered as before, assignments unchanged."""
    b = broker_factory(*(f"{k}={v}" for k, v in FAST.items()))
    topic = create_topic(b.bootstrap, 4)
    g = unique("dur")
    with WireClient(b.port) as c:
        a = hb(c, g, "a", 0, names=[topic])
        s = hb(c, g, "s", 0, names=[topic], instance_id="i1")
        a = hb(c, g, "a", a.member_epoch)                         # told to revoke two
        kept = sorted(a.assignment.topic_partitions[0].partitions)
        tid = a.assignment.topic_partitions[0].topic_id
        T = ConsumerGroupHeartbeatRequest.TopicPartitions
        a = hb(c, g, "a", a.member_epoch, topic_partitions=[T(topic_id=tid, partitions=kept)])
        s = hb(c, g, "s", s.member_epoch, instance_id="i1")
        assert len(kept) == 2 and sorted(s.assignment.topic_partitions[0].partitions) == sorted(
            set(range(4)) - set(kept))
        before = c.request(ConsumerGroupDescribeRequest(group_ids=[g], include_authorized_operations=False), 1)
    b.stop()
    b.start()
    with WireClient(b.port) as c:
        after = c.request(ConsumerGroupDescribeRequest(group_ids=[g], include_authorized_operations=False), 1)
        assert after.groups[0].error_code == 0
        assert sorted(map(str, after.groups[0].members)) == sorted(map(str, before.groups[0].members))
        r = hb(c, g, "a", a.member_epoch)
        assert (r.error_code, r.member_epoch) == (0, a.member_epoch)
        r = hb(c, g, "s", s.member_epoch, instance_id="i1")
        assert (r.error_code, r.member_epoch) == (0, s.member_epoch)
        assert hb(c, g, "s", -1, instance_id="i1").error_code == 0
        assert hb(c, g, "a", -1).error_code == 0


class ClassicRecorder(Recorder):
    """A librdkafka consumer of ``protocol`` (classic: range; librdkafka's cooperative-sticky
    puts user data in its assignments, which Kafka refuses to upgrade) that counts a
    record only once its offset is committed: a commit refused in a rebalance
    (ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS, a classic member's answers) puts
    the position back, so a record is counted by exactly one member."""

    def __init__(self, bootstrap: str, group: str, topic: str, name: str, seen: list, lock: threading.Lock,
                 protocol: str):
        self.name, self.seen, self.lock = name, seen, lock
        self.stop = threading.Event()
        self.partitions = 0
        self.errors: list[str] = []
        extra = ({"partition.assignment.strategy": "range", "session.timeout.ms": 6000,
                  "heartbeat.interval.ms": 500} if protocol == "classic" else {})
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "group.protocol": protocol,
                           "enable.auto.commit": False, "auto.offset.reset": "earliest", "client.id": name,
                           **extra})
        self.c.subscribe([topic])
        self.thread = threading.Thread(target=self.run, name=name, daemon=True)
        self.thread.start()

    def run(self) -> None:
        from confluent_kafka import TopicPartition
        try:
            while not self.stop.is_set():
                m = self.c.poll(0.2)
                self.partitions = len(self.c.assignment())
                if m is None or m.error():
                    continue
                try:
                    self.c.commit(message=m, asynchronous=False)
                except KafkaException:
                    try:   # not counted: read it again if the partition is still ours
                        self.c.seek(TopicPartition(m.topic(), m.partition(), m.offset()))
                    except KafkaException:
                        pass
                    continue
                with self.lock:
                    self.seen.append((int(m.value()), self.name))
        finally:
            self.c.close()


def group_type(port: int, group: str) -> tuple[str, str] | None:
    with WireClient(port) as c:
        for x in c.request(ListGroupsRequest(states_filter=[], types_filter=[]), 5).groups:
            if x.group_id == group:
                return x.group_type, x.group_state
    return None


def test_online_upgrade_and_downgrade_with_librdkafka(target):
    """Two classic consumers (range) on 6 partitions; a consumer-protocol
    member joins (the group upgrades, the classic members keep working inside it);
    the classic ones are replaced one by one by consumer-protocol ones (a rolling
    upgrade); then a classic member joins and every consumer-protocol member leaves
    (the group downgrades to a classic group). Every record is counted once, by the
    member that committed it, and the committed offsets reach the end."""
    bootstrap, port = target
    topic = create_topic(bootstrap, 6)
    group = unique("mig")
    seen: list[tuple[int, str]] = []
    produced: list[int] = []
    lock = threading.Lock()
    stop_producing = threading.Event()

    def member(name: str, protocol: str) -> ClassicRecorder:
        return ClassicRecorder(bootstrap, group, topic, name, seen, lock, protocol)

    def flowing(what: str) -> None:
        n = len(seen)
        wait_until(lambda: len(seen) > n + 30, f"records flowing {what}")

    members = {"c1": member("c1", "classic"), "c2": member("c2", "classic")}
    producer = steady_producer(bootstrap, topic, stop_producing, produced)
    try:
        wait_until(lambda: members["c1"].partitions == members["c2"].partitions == 3, "two classic members")
        assert group_type(port, group) == ("classic", "Stable")
        flowing("in the classic group")
        members["n1"] = member("n1", "consumer")                      # the upgrade
        wait_until(lambda: members["n1"].partitions == 2 and sum(m.partitions for m in members.values()) == 6,
                   "the consumer-protocol member has its share")
        assert group_type(port, group)[0] == "consumer"
        flowing("after the upgrade")
        for old, new in (("c1", "n2"), ("c2", "n3")):                 # the rolling upgrade
            members.pop(old).close()
            members[new] = member(new, "consumer")
            wait_until(lambda: sorted(m.partitions for m in members.values()) == [2, 2, 2], f"{new} has its share")
            flowing(f"after {new} joined")
        members["c3"] = member("c3", "classic")                       # a classic member inside the consumer group
        wait_until(lambda: members["c3"].partitions >= 1 and sum(m.partitions for m in members.values()) == 6,
                   "the classic member has partitions")
        for name in ("n1", "n2", "n3"):                              # the last one leaving downgrades
            members.pop(name).close()
        wait_until(lambda: members["c3"].partitions == 6, "the classic member owns everything")
        assert group_type(port, group)[0] == "classic"
        flowing("after the downgrade")
        stop_producing.set()
        producer.join(60)
        wait_until(lambda: len({v for v, _ in seen}) >= len(produced), "every record consumed")
        time.sleep(1)   # anything consumed twice would show up now
    finally:
        stop_producing.set()
        for m in members.values():
            if m.thread.is_alive():
                m.close()
    values = sorted(v for v, _ in seen)
    assert values == list(range(len(produced))), "duplicates or gaps"
    assert {"c1", "c2", "n1", "c3"} <= {name for _, name in seen}
    assert committed_at_end(bootstrap, group, topic, 6)
