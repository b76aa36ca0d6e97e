"""End-to-end: share groups (KIP-932) with Kafka's own KafkaShareConsumer.

``tests/e2e/java/ShareWorker.java`` (run by Java's single-file launcher
against the kafka-clients 4.4 jar) subscribes a KafkaShareConsumer in
explicit acknowledgement mode and prints what it receives and accepts.

* Three consumers share a one-partition topic: each receives records, and
  every record is accepted exactly once overall.
* A consumer that acquired records and hangs without acknowledging them
  (SIGSTOP, then ``kill -9``) has them redelivered to the others once the
  acquisition lock (``group.share.record.lock.duration.ms``, lowered)
  expires, with delivery count 2.
* A member whose connection closes has its records back at once (Kafka's
  disconnect listener), delivery count 2.
* Raw ShareFetch/ShareAcknowledge session errors (kafka-python's wire client),
  and the share-group answers that depend on neither timing nor epochs
  compared with Apache Kafka 4.4 (``kafka_reference``).
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.protocol.admin import DescribeGroupsRequest, ListGroupsRequest
from kafka.protocol.metadata import FindCoordinatorRequest, MetadataRequest

from broker.apis.specs import (
    AlterShareGroupOffsetsRequest,
    DeleteShareGroupOffsetsRequest,
    DescribeShareGroupOffsetsRequest,
    ShareAcknowledgeRequest,
    ShareFetchRequest,
    ShareGroupDescribeRequest,
    ShareGroupHeartbeatRequest,
)
from tests.wire import WireClient

WORKER = Path(__file__).parent / "java" / "ShareWorker.java"
LOCK_MS = 2000


def _unique(p: str) -> str:
    return f"{p}-{uuid.uuid4().hex[:8]}"


def _create_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)


def _produce(bootstrap: str, topic: str, n: int) -> None:
    """``n`` records, one batch each, so that acquisition (whole batches) spreads them."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for i in range(n):
        p.produce(topic, value=f"v{i}".encode())
        p.flush(10)
    assert p.flush(10) == 0


def _worker(kafka_tools, out: Path, bootstrap: str, group: str, topic: str, mode: str, stop: Path,
            delay_ms: int = 0) -> subprocess.Popen:
    env = dict(os.environ)
    return subprocess.Popen(
        ["java", "-cp", f"{kafka_tools.libs}/*", str(WORKER), bootstrap, group, topic, mode, str(stop),
         str(delay_ms)],
        stdout=out.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _lines(path: Path, prefix: str) -> list[tuple[int, int]]:
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == prefix:
            out.append((int(parts[1]), int(parts[2])))
    return out


def _wait_for(pred, timeout: float, what: str, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n" + "\n".join(
        f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs))


def _set_group_config(kafka_tools, bootstrap: str, group: str, *configs: str) -> None:
    kafka_tools.run("kafka-configs", "--bootstrap-server", bootstrap, "--entity-type", "groups",
                    "--entity-name", group, "--alter", "--add-config", ",".join(configs))


def test_three_share_consumers_and_a_hung_one(broker_factory, kafka_tools, tmp_path):
    b = broker_factory(f"group.share.record.lock.duration.ms={LOCK_MS}")
    topic, group = _unique("share"), _unique("sg")
    _create_topic(b.bootstrap, topic)
    _set_group_config(kafka_tools, b.bootstrap, group, "share.auto.offset.reset=earliest")
    n = 40
    _produce(b.bootstrap, topic, n)
    stop = tmp_path / "stop"
    procs: list[subprocess.Popen] = []
    logs = [tmp_path / f"w{i}.out" for i in range(3)]
    held_log = tmp_path / "held.out"
    try:
        # One consumer acquires the first records and hangs holding them (SIGSTOP: its
        # connection stays open, so only the acquisition lock's expiry frees them).
        held = _worker(kafka_tools, held_log, b.bootstrap, group, topic, "hold", stop)
        procs.append(held)
        _wait_for(lambda: "HOLDING" in held_log.read_text(), 60, "the holding consumer's records", [held_log])
        os.killpg(held.pid, signal.SIGSTOP)
        held_offsets = {o for o, _ in _lines(held_log, "REC")}
        assert held_offsets and all(c == 1 for _, c in _lines(held_log, "REC"))
        # Three consumers share the rest, slowly enough that all of them get some.
        for out in logs:
            procs.append(_worker(kafka_tools, out, b.bootstrap, group, topic, "accept", stop, delay_ms=100))

        def all_accepted() -> bool:
            return {o for p in logs for o, _ in _lines(p, "ACK")} >= set(range(n))
        _wait_for(all_accepted, 90, f"all {n} records accepted", logs + [held_log])
        stop.touch()
        for p in procs[1:]:
            p.wait(30)
    finally:
        stop.touch()
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)
    acks = [a for p in logs for a in _lines(p, "ACK")]
    offsets = [o for o, _ in acks]
    assert sorted(offsets) == list(range(n)), "every record accepted exactly once overall"
    assert all(_lines(p, "ACK") for p in logs), "each of the three consumers received records"
    assert not any("ACKFAIL" in p.read_text() for p in logs)
    counts = dict(acks)
    assert all(counts[o] == 2 for o in held_offsets), "the dead consumer's records came back, delivered twice"
    assert all(c == 1 for o, c in counts.items() if o not in held_offsets)


def test_share_session_errors(broker_factory):
    b = broker_factory()
    topic, group = _unique("share"), _unique("sg")
    _create_topic(b.bootstrap, topic)
    member = uuid.uuid4().hex[:22]
    with WireClient(b.port) as c:
        hb = c.request(ShareGroupHeartbeatRequest(group_id=group, member_id=member, member_epoch=0,
                                                  rack_id=None, subscribed_topic_names=[topic]), 1)
        assert hb.error_code == 0 and hb.member_epoch >= 1
        tid = hb.assignment.topic_partitions[0].topic_id
        assert hb.assignment.topic_partitions[0].partitions == [0]
        bad = c.request(ShareGroupHeartbeatRequest(group_id=group, member_id="", member_epoch=0,
                                                   rack_id=None, subscribed_topic_names=[topic]), 1)
        assert (bad.error_code, bad.error_message) == (42, None)         # as Kafka 4.4: no message

        F = ShareFetchRequest

        def fetch(epoch: int, acks=()):
            return c.request(F(group_id=group, member_id=member, share_session_epoch=epoch,
                               max_wait_ms=0, min_bytes=1, max_bytes=1 << 20, max_records=10, batch_size=10,
                               topics=[F.FetchTopic(topic_id=tid, partitions=[F.FetchTopic.FetchPartition(
                                   partition_index=0, acknowledgement_batches=list(acks))])],
                               forgotten_topics_data=[]), 1)
        assert fetch(1).error_code == 122                      # SHARE_SESSION_NOT_FOUND
        assert fetch(0).error_code == 0
        assert fetch(5).error_code == 123                      # INVALID_SHARE_SESSION_EPOCH
        assert fetch(1).error_code == 0
        ack = F.FetchTopic.FetchPartition.AcknowledgementBatch(first_offset=0, last_offset=0, acknowledge_types=[1])
        assert fetch(0, [ack]).error_code == 42                # acks in the initial fetch
        acked = fetch(2, [ack])                                # nothing acquired: INVALID_RECORD_STATE
        part = acked.responses[0].partitions[0]
        assert (part.acknowledge_error_code, part.records) == (121, b"")   # records never null from v1
        A = ShareAcknowledgeRequest
        r = c.request(A(group_id=group, member_id=member, share_session_epoch=0, topics=[]), 1)
        assert r.error_code == 123
        # nothing acquired: an acknowledgement is INVALID_RECORD_STATE for the partition
        r = c.request(A(group_id=group, member_id=member, share_session_epoch=3, topics=[
            A.AcknowledgeTopic(topic_id=tid, partitions=[A.AcknowledgeTopic.AcknowledgePartition(
                partition_index=0, acknowledgement_batches=[
                    A.AcknowledgeTopic.AcknowledgePartition.AcknowledgementBatch(
                        first_offset=0, last_offset=0, acknowledge_types=[1])])])]), 1)
        assert r.error_code == 0
        assert r.responses[0].partitions[0].error_code == 121
        d = c.request(ShareGroupDescribeRequest(group_ids=[group, "nope", ""], include_authorized_operations=False),
                      1)
        assert [(g.error_code, g.group_state) for g in d.groups] == [(0, "Stable"), (69, ""), (24, "")]
        assert d.groups[0].members[0].member_id == member and d.groups[0].assignor_name == "simple"
        dg = c.request(DescribeGroupsRequest(groups=[group], include_authorized_operations=False), 6)
        assert (dg.groups[0].error_code, dg.groups[0].error_message) == (69, f"Group {group} is not a classic group.")
        lg = c.request(ListGroupsRequest(states_filter=[], types_filter=["share"]), 5)
        assert [(g.group_id, g.group_type, g.group_state) for g in lg.groups] == [(group, "share", "Stable")]


class _Member:
    """A share group member over one connection (kafka-python's codec): join, fetch,
    acknowledge. Its share session ends when the connection closes (``close``)."""

    def __init__(self, port: int, group: str, topic: str, fetch_port: int | None = None) -> None:
        """``port``: the group coordinator's; ``fetch_port``: the partition owner's, if another broker."""
        self.port, self.group, self.topic = port, group, topic
        self.member = uuid.uuid4().hex[:22]
        self.epoch = 0
        self.c = WireClient(port)
        self.f = WireClient(fetch_port) if fetch_port is not None else self.c
        hb = self.c.request(ShareGroupHeartbeatRequest(group_id=group, member_id=self.member, member_epoch=0,
                                                       rack_id=None, subscribed_topic_names=[topic]), 1)
        assert hb.error_code == 0, hb
        self.topic_id = hb.assignment.topic_partitions[0].topic_id

    def fetch(self, max_records: int) -> list[tuple[int, int, int]]:
        """(first, last, delivery count) acquired (one ShareFetch; the session opens at epoch 0)."""
        F = ShareFetchRequest
        r = self.f.request(F(group_id=self.group, member_id=self.member, share_session_epoch=self.epoch,
                             max_wait_ms=2000, min_bytes=1, max_bytes=1 << 20, max_records=max_records,
                             batch_size=max_records,
                             topics=[F.FetchTopic(topic_id=self.topic_id, partitions=[
                                 F.FetchTopic.FetchPartition(partition_index=0, acknowledgement_batches=[])])],
                             forgotten_topics_data=[]), 1)
        assert r.error_code == 0, r
        self.epoch += 1
        return [(a.first_offset, a.last_offset, a.delivery_count)
                for t in r.responses for p in t.partitions for a in p.acquired_records]

    def acknowledge(self, *batches: tuple[int, int, int]) -> None:
        A = ShareAcknowledgeRequest
        B = A.AcknowledgeTopic.AcknowledgePartition.AcknowledgementBatch
        r = self.f.request(A(group_id=self.group, member_id=self.member, share_session_epoch=self.epoch, topics=[
            A.AcknowledgeTopic(topic_id=self.topic_id, partitions=[A.AcknowledgeTopic.AcknowledgePartition(
                partition_index=0, acknowledgement_batches=[
                    B(first_offset=f, last_offset=last, acknowledge_types=[t]) for f, last, t in batches])])]), 1)
        assert r.error_code == 0 and r.responses[0].partitions[0].error_code == 0, r
        self.epoch += 1

    def leave(self) -> None:
        r = self.c.request(ShareGroupHeartbeatRequest(group_id=self.group, member_id=self.member, member_epoch=-1,
                                                      rack_id=None, subscribed_topic_names=None), 1)
        assert r.error_code == 0
        self.c.close()
        if self.f is not self.c:
            self.f.close()


def _offsets(acquired: list[tuple[int, int, int]]) -> dict[int, int]:
    return {o: count for first, last, count in acquired for o in range(first, last + 1)}


def test_acknowledgements_survive_kill_and_a_restart_from_the_bucket(broker_factory, minio, minio_bucket):
    """WAL replay after kill -9 (acknowledgements and membership), then a clean
    stop, an empty data dir and the manifest's share_state."""
    b = broker_factory("s3.manifest.interval.ms=600000", env=minio.env(),
                       extra_args=["--object-store", f"s3://{minio_bucket}"])
    topic, group = _unique("share"), _unique("sg")
    _create_topic(b.bootstrap, topic)
    kafka_configs = AdminClient({"bootstrap.servers": b.bootstrap})
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
    res = ConfigResource(ResourceType.GROUP, group, incremental_configs=[
        ConfigEntry("share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET)])
    kafka_configs.incremental_alter_configs([res])[res].result(30)
    _produce(b.bootstrap, topic, 20)
    m = _Member(b.port, group, topic)
    assert _offsets(m.fetch(10)) == {o: 1 for o in range(10)}
    m.acknowledge((0, 4, 1), (5, 5, 3), (6, 9, 2))        # accept, reject, release
    # kill -9: the WAL holds the acknowledgements (no manifest update in between)
    b.kill()
    b.start()
    with WireClient(b.port) as c:          # the membership is durable too: the member heartbeats on
        hb = c.request(ShareGroupHeartbeatRequest(group_id=group, member_id=m.member, member_epoch=1, rack_id=None,
                                                  subscribed_topic_names=None), 1)
    assert (hb.error_code, hb.member_epoch) == (0, 1), hb
    m = _Member(b.port, group, topic)
    got = _offsets(m.fetch(20))
    assert got == {**{o: 2 for o in range(6, 10)}, **{o: 1 for o in range(10, 20)}}, got
    m.acknowledge((6, 12, 1))
    # a clean stop writes the share state into the manifest; the WAL goes with the data dir
    b.stop()
    b.wipe()
    b.start()
    m = _Member(b.port, group, topic)
    got = _offsets(m.fetch(20))
    assert got == {o: 2 for o in range(13, 20)}, got


def test_kafka_share_groups_describes_members_state_and_offsets(broker_factory, kafka_tools):
    b = broker_factory()
    topic, group = _unique("share"), _unique("sg")
    _create_topic(b.bootstrap, topic)
    _set_group_config(kafka_tools, b.bootstrap, group, "share.auto.offset.reset=earliest")
    _produce(b.bootstrap, topic, 10)
    m = _Member(b.port, group, topic)
    assert _offsets(m.fetch(10)) == {o: 1 for o in range(10)}
    m.acknowledge((0, 3, 1))
    base = ("--bootstrap-server", b.bootstrap)
    listed, offsets, members, state = kafka_tools.run_many([
        ("kafka-share-groups", (*base, "--list")),
        ("kafka-share-groups", (*base, "--describe", "--group", group)),
        ("kafka-share-groups", (*base, "--describe", "--group", group, "--members")),
        ("kafka-share-groups", (*base, "--describe", "--group", group, "--state")),
    ])
    assert group in listed.lines
    assert [line.split() for line in offsets.lines[1:]] == [[group, topic, "0", "4", "6"]], offsets.describe()
    row = members.lines[1].split()
    assert (row[0], row[1], row[-2], row[-1]) == (group, m.member, "1", f"{topic}:0"), members.describe()
    assert state.lines[1].split()[-2:] == ["Stable", "1"], state.describe()


def test_kafka_share_groups_resets_deletes_offsets_and_the_group(broker_factory, kafka_tools):
    b = broker_factory()
    topic, group = _unique("share"), _unique("sg")
    _create_topic(b.bootstrap, topic)
    _produce(b.bootstrap, topic, 10)
    base = ("--bootstrap-server", b.bootstrap, "--group", group)
    m = _Member(b.port, group, topic)
    assert m.fetch(10) == []                            # share.auto.offset.reset=latest: starts at 10
    refused = kafka_tools.run("kafka-share-groups", *base, "--reset-offsets", "--topic", topic, "--to-earliest",
                              "--execute", check=False)
    assert f"Share group '{group}' is not empty." in refused.stdout + refused.stderr, refused.describe()
    m.leave()
    kafka_tools.run("kafka-share-groups", *base, "--reset-offsets", "--topic", f"{topic}:0", "--to-offset", "3",
                    "--execute")
    b.kill()                                            # the reset is in the WAL
    b.start()
    m = _Member(b.port, group, topic)
    assert _offsets(m.fetch(20)) == {o: 1 for o in range(3, 10)}
    m.acknowledge((3, 9, 1))
    m.leave()
    described = kafka_tools.run("kafka-share-groups", *base, "--describe")
    assert [line.split() for line in described.lines[1:]] == [[group, topic, "0", "10", "0"]], described.describe()
    deleted = kafka_tools.run("kafka-share-groups", *base, "--delete-offsets", "--topic", topic)
    assert deleted.lines[1].split() == [topic, "Successful"], deleted.describe()
    gone = kafka_tools.run("kafka-share-groups", *base, "--describe")
    assert f"Share group '{group}' has no offset information." in gone.stdout, gone.describe()
    _set_group_config(kafka_tools, b.bootstrap, group, "share.auto.offset.reset=earliest")
    m = _Member(b.port, group, topic)                   # deleted: starts again at share.auto.offset.reset
    assert _offsets(m.fetch(20)) == {o: 1 for o in range(10)}
    m.acknowledge((0, 9, 1))
    m.leave()
    removed = kafka_tools.run("kafka-share-groups", *base, "--delete")
    assert f"Deletion of requested share groups ('{group}') was successful." in removed.stdout, removed.describe()
    listed = kafka_tools.run("kafka-share-groups", "--bootstrap-server", b.bootstrap, "--list")
    assert group not in listed.lines
    m = _Member(b.port, group, topic)                   # a new group of that name: its state went too
    assert _offsets(m.fetch(20)) == {o: 1 for o in range(10)}


def test_reset_and_delete_reach_a_partition_another_broker_owns(broker_factory, kafka_tools, tmp_path):
    """Two brokers on one file:// bucket, the group's coordinator on one and the
    partition on the other: ``kafka-share-groups --reset-offsets`` and
    ``--delete-offsets`` (sent to the coordinator) change the share-partition
    at its owner (docs/share-groups.md §4.10), ``--describe`` shows it, and a
    member fetching from the owner sees it."""
    bucket = f"file://{tmp_path / 'bucket'}"
    brokers = {n: broker_factory("broker.heartbeat.interval.ms=200", f"node.id={n}", name=f"node{n}",
                                 extra_args=["--object-store", bucket]) for n in (1, 2)}
    admin = AdminClient({"bootstrap.servers": brokers[1].bootstrap})
    _wait_for(lambda: len(admin.list_topics(timeout=10).brokers) == 2, 15, "both brokers", [])
    topic, group = _unique("share"), _unique("sg")
    with WireClient(brokers[1].port) as c:
        [found] = c.request(FindCoordinatorRequest(key_type=0, coordinator_keys=[group]), 4).coordinators
    assert found.error_code == 0, found
    coordinator = found.node_id
    owner = 3 - coordinator
    admin.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[[owner]])])[topic].result(30)
    _wait_for(lambda: admin.list_topics(topic, timeout=10).topics[topic].partitions[0].leader == owner, 15,
              "the partition's owner", [])
    _produce(brokers[owner].bootstrap, topic, 10)
    ports = (brokers[coordinator].port, group, topic, brokers[owner].port)
    m = _Member(*ports)
    assert m.fetch(10) == []                            # share.auto.offset.reset=latest: starts at 10
    m.leave()
    base = ("--bootstrap-server", brokers[coordinator].bootstrap, "--group", group)
    kafka_tools.run("kafka-share-groups", *base, "--reset-offsets", "--topic", topic, "--to-earliest", "--execute")
    described = kafka_tools.run("kafka-share-groups", *base, "--describe")
    assert [line.split() for line in described.lines[1:]] == [[group, topic, "0", "0", "10"]], described.describe()
    m = _Member(*ports)
    assert _offsets(m.fetch(20)) == {o: 1 for o in range(10)}
    m.acknowledge((0, 9, 1))
    m.leave()
    deleted = kafka_tools.run("kafka-share-groups", *base, "--delete-offsets", "--topic", topic)
    assert deleted.lines[1].split() == [topic, "Successful"], deleted.describe()
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
    res = ConfigResource(ResourceType.GROUP, group, incremental_configs=[
        ConfigEntry("share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res])[res].result(30)
    m = _Member(*ports)                                 # deleted: starts again at share.auto.offset.reset
    assert _offsets(m.fetch(20)) == {o: 1 for o in range(10)}
    m.acknowledge((0, 9, 1))
    m.leave()
    removed = kafka_tools.run("kafka-share-groups", *base, "--delete")
    assert f"Deletion of requested share groups ('{group}') was successful." in removed.stdout, removed.describe()
    m = _Member(*ports)                 # the group deleted with its state at the owner: from earliest again
    assert _offsets(m.fetch(20)) == {o: 1 for o in range(10)}
    m.leave()


def test_closed_connection_releases_the_members_records(broker_factory, kafka_tools):
    b = broker_factory()
    topic, group = _unique("share"), _unique("sg")
    _create_topic(b.bootstrap, topic)
    _set_group_config(kafka_tools, b.bootstrap, group, "share.auto.offset.reset=earliest")
    _produce(b.bootstrap, topic, 5)
    a = _Member(b.port, group, topic)
    assert _offsets(a.fetch(10)) == {o: 1 for o in range(5)}
    a.c.close()                    # the lock (30 s) has not expired: only the disconnect frees them
    other = _Member(b.port, group, topic)
    assert _offsets(other.fetch(10)) == {o: 2 for o in range(5)}


def _conformance(port: int, bootstrap: str) -> list[str]:
    """Share-group answers that do not depend on timing or epochs: validation,
    session errors, describe errors, listing, offsets admin errors."""
    topic, group = _unique("cmp"), _unique("cmp-g")
    _create_topic(bootstrap, topic)
    member = uuid.uuid4().hex[:22]
    out: list = []
    with WireClient(port) as c:
        for _ in range(60):      # Kafka: until the group coordinator is loaded
            fc = c.request(FindCoordinatorRequest(key_type=0, coordinator_keys=[group, "fresh", "nope"]), 4)
            if all(x.error_code == 0 for x in fc.coordinators):
                break
            time.sleep(0.5)
        H = ShareGroupHeartbeatRequest
        for mid, epoch, names in (("", 0, [topic]), (member, 0, None), (member, 0, []), (member, -2, [topic]),
                                  (member, 5, [topic])):
            r = c.request(H(group_id=group, member_id=mid, member_epoch=epoch, rack_id=None,
                            subscribed_topic_names=names), 1)
            out.append(("heartbeat", epoch, r.error_code, r.error_message))
        hb = c.request(H(group_id=group, member_id=member, member_epoch=0, rack_id=None,
                         subscribed_topic_names=[topic]), 1)
        out.append(("join", hb.error_code, hb.heartbeat_interval_ms))
        md = c.request(MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(topic_id=None, name=topic)],
                                       allow_auto_topic_creation=False, include_topic_authorized_operations=False), 12)
        tid = md.topics[0].topic_id
        F = ShareFetchRequest
        ack = F.FetchTopic.FetchPartition.AcknowledgementBatch(first_offset=0, last_offset=0, acknowledge_types=[1])
        for epoch, acks in ((1, []), (0, [ack]), (0, []), (5, [])):
            r = c.request(F(group_id=group, member_id=member, share_session_epoch=epoch, max_wait_ms=0, min_bytes=1,
                            max_bytes=1 << 20, max_records=10, batch_size=10, topics=[F.FetchTopic(
                                topic_id=tid, partitions=[F.FetchTopic.FetchPartition(
                                    partition_index=0, acknowledgement_batches=acks)])],
                            forgotten_topics_data=[]), 1)
            out.append(("fetch", epoch, r.error_code, r.error_message))
        r = c.request(ShareAcknowledgeRequest(group_id=group, member_id=member, share_session_epoch=0, topics=[]), 1)
        out.append(("acknowledge", r.error_code, r.error_message))
        d = c.request(ShareGroupDescribeRequest(group_ids=[group, "nope"], include_authorized_operations=False), 1)
        out.append(("describe", [(g.error_code, g.error_message, g.group_state, g.assignor_name,
                                  [m.member_id == member for m in g.members]) for g in d.groups]))
        dg = c.request(DescribeGroupsRequest(groups=[group], include_authorized_operations=False), 6)
        out.append(("describe-groups", dg.groups[0].error_code, dg.groups[0].error_message))
        lg = c.request(ListGroupsRequest(states_filter=[], types_filter=["share"]), 5)
        out.append(("list", [(g.group_id, g.protocol_type, g.group_state, g.group_type) for g in lg.groups]))
        D = DescribeShareGroupOffsetsRequest
        r = c.request(D(groups=[D.DescribeShareGroupOffsetsRequestGroup(group_id="nope", topics=None)]), 1)
        out.append(("offsets-unknown-group", [(g.error_code, g.topics) for g in r.groups]))
        AL = AlterShareGroupOffsetsRequest
        AT = AL.AlterShareGroupOffsetsRequestTopic
        AP = AT.AlterShareGroupOffsetsRequestPartition
        r = c.request(AL(group_id=group, topics=[]), 0)
        out.append(("alter-non-empty", r.error_code))
        r = c.request(AL(group_id="fresh", topics=[
            AT(topic_name=topic, partitions=[AP(partition_index=i, start_offset=0) for i in (0, 5)]),
            AT(topic_name="nosuch", partitions=[AP(partition_index=0, start_offset=0)])]), 0)
        out.append(("alter", r.error_code, [(t.topic_name, [(p.partition_index, p.error_code, p.error_message)
                                                            for p in t.partitions]) for t in r.responses]))
        DL = DeleteShareGroupOffsetsRequest
        r = c.request(DL(group_id="fresh", topics=[DL.DeleteShareGroupOffsetsRequestTopic(topic_name=n)
                                                   for n in (topic, "nosuch")]), 0)
        out.append(("delete", r.error_code, [(t.topic_name, t.error_code, t.error_message) for t in r.responses]))
        r = c.request(H(group_id=group, member_id=member, member_epoch=-1, rack_id=None,
                        subscribed_topic_names=None), 1)
        out.append(("leave", r.error_code, r.member_epoch))
    return [repr(row).replace(topic, "TOPIC").replace(group, "GROUP") for row in out]


def test_share_group_answers_as_kafka(broker_factory, kafka_reference):
    b = broker_factory()
    sluice = _conformance(b.port, b.bootstrap)
    kafka = _conformance(kafka_reference.port, kafka_reference.bootstrap)
    assert sluice == kafka


def test_kafka_console_share_consumer(broker_factory, kafka_tools):
    b = broker_factory()
    topic, group = _unique("share"), _unique("sg")
    _create_topic(b.bootstrap, topic)
    _set_group_config(kafka_tools, b.bootstrap, group, "share.auto.offset.reset=earliest")
    _produce(b.bootstrap, topic, 5)
    res = kafka_tools.run("kafka-console-share-consumer", "--bootstrap-server", b.bootstrap, "--topic", topic,
                          "--group", group, "--max-messages", "5", "--formatter-property", "print.delivery=true",
                          "--timeout-ms", "30000")
    assert res.lines == [f"Delivery:1\tv{i}" for i in range(5)], res.describe()
    described = kafka_tools.run("kafka-share-groups", "--bootstrap-server", b.bootstrap, "--group", group,
                                "--describe")
    assert [line.split() for line in described.lines[1:]] == [[group, topic, "0", "5", "0"]], described.describe()
