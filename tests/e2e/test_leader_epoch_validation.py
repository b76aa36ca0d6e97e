"""KIP-320 against `sluice serve`: OffsetForLeaderEpoch and the
current_leader_epoch checks, through librdkafka and on the wire.

- A librdkafka consumer reading a partition that moves to another broker
  (a 2-broker cluster on MinIO) validates its position with
  OffsetForLeaderEpoch at the new owner, and goes on from exactly where it
  was: no reset, no record twice or lost.
- On the wire, OffsetForLeaderEpoch, Fetch and ListOffsets answer a stale
  current_leader_epoch FENCED_LEADER_EPOCH and a newer one
  UNKNOWN_LEADER_EPOCH, and a broker that does not own the partition
  NOT_LEADER_OR_FOLLOWER, as Apache Kafka 4.4 does (compared with it).
"""
from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka.protocol.admin import CreateTopicsRequest
from kafka.protocol.consumer import FetchRequest, ListOffsetsRequest, OffsetForLeaderEpochRequest
from kafka.protocol.metadata import MetadataRequest

from bench.launch import BrokerProcess, wait_for_cluster
from tests.e2e.test_crash import wait_until
from tests.e2e.test_reassign import sluice
from tests.wire import WireClient, make_batch

TOPIC = "validated"
OVERRIDES = ("broker.heartbeat.interval.ms=200", "broker.session.timeout.ms=2000",
             "autobalancer.controller.enable=false")
FENCED, UNKNOWN, NOT_LEADER = 74, 75, 6


@pytest.fixture
def two_brokers(tmp_path, minio, minio_bucket):
    brokers = [BrokerProcess(tmp_path / f"node{n}", [*OVERRIDES, f"node.id={n}"],
                             ["--object-store", f"s3://{minio_bucket}"], minio.env(), metrics=True)
               for n in (1, 2)]
    try:
        for b in brokers:
            b.start()
        seen = wait_for_cluster([("127.0.0.1", b.port) for b in brokers], timeout=20)
        assert all(len(v) == 2 for v in seen.values()), seen
        yield brokers
    finally:
        for b in brokers:
            b.stop()


def requests_of(b: BrokerProcess, api: str) -> float:
    return sum(v for (name, labels), v in b.scrape().items()
               if name == "sluice_requests_total" and ("api", api) in labels)


def leader(port: int, topic: str) -> tuple[int, int]:
    """(leader node, leader epoch) of partition 0 as the broker at ``port`` sees it."""
    with WireClient(port) as c:
        md = c.request(MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name=topic)],
                                       allow_auto_topic_creation=False), version=12)
    [t] = md.topics
    return (t.partitions[0].leader_id, t.partitions[0].leader_epoch) if t.partitions else (-1, -1)


def test_librdkafka_validates_its_position_after_a_move(two_brokers):
    a_broker, _ = two_brokers
    bs = ",".join(b.bootstrap for b in two_brokers)
    with WireClient(a_broker.port) as c:
        CT = CreateTopicsRequest.CreatableTopic
        resp = c.request(CreateTopicsRequest(topics=[CT(name=TOPIC, num_partitions=1, replication_factor=1,
                                                        assignments=[], configs=[])],
                                             timeout_ms=10000, validate_only=False), version=7)
        assert resp.topics[0].error_code == 0
    by_node = {n + 1: b for n, b in enumerate(two_brokers)}
    wait_until(lambda: all(leader(b.port, TOPIC)[0] in (1, 2) for b in two_brokers), 10, "the topic everywhere")
    owner, epoch = leader(a_broker.port, TOPIC)
    target = 3 - owner
    producer = Producer({"bootstrap.servers": bs, "enable.idempotence": True, "linger.ms": 0})
    for i in range(10):
        producer.produce(TOPIC, value=b"%d" % i, partition=0)
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": bs, "group.id": "kip320", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "fetch.wait.max.ms": 50,
                         "topic.metadata.refresh.interval.ms": 500})
    got: list[tuple[int, bytes]] = []

    def poll_until(n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(got) < n and time.monotonic() < deadline:
            m = consumer.poll(0.2)
            if m is not None and m.error() is None:
                got.append((m.offset(), m.value()))
    try:
        consumer.assign([TopicPartition(TOPIC, 0, 0)])
        poll_until(10, 30)
        assert [o for o, _ in got] == list(range(10))
        before = requests_of(by_node[target], "OffsetForLeaderEpoch")
        res = sluice("reassign", "--bootstrap-server", bs, "--topic", TOPIC, "--partition", "0",
                     "--to", str(target))
        assert res.returncode == 0, res.stderr
        wait_until(lambda: leader(by_node[target].port, TOPIC) == (target, epoch + 1), 15, "the move")
        for i in range(10, 15):
            producer.produce(TOPIC, value=b"%d" % i, partition=0)
        assert producer.flush(30) == 0
        poll_until(15, 30)
        assert got == [(i, b"%d" % i) for i in range(15)]      # nothing reset, lost or repeated
        wait_until(lambda: requests_of(by_node[target], "OffsetForLeaderEpoch") > before, 15,
                   "librdkafka's OffsetForLeaderEpoch at the new owner")
        assert requests_of(by_node[target], "OffsetForLeaderEpoch") > before
    finally:
        consumer.close()


# ------------------------------------------------------------------ the wire
def epoch_answers(port: int, topic: str, epoch: int) -> dict[str, tuple]:
    """OffsetForLeaderEpoch, Fetch and ListOffsets with current_leader_epoch
    stale (-2: Kafka's new partitions are at epoch 0, and only -1 means "no
    check"), current, newer and -1: error codes and answers, the partition's
    epoch written "E" (Kafka's first epoch is 0, Sluice's 1)."""
    T = OffsetForLeaderEpochRequest.OffsetForLeaderTopic
    FT = FetchRequest.FetchTopic
    L = ListOffsetsRequest.ListOffsetsTopic

    def rel(e: int):
        return "E" if e == epoch else e
    out: dict[str, tuple] = {}
    with WireClient(port) as c:
        for label, current in (("stale", -2), ("current", epoch), ("newer", epoch + 1), ("none", -1)):
            r = c.request(OffsetForLeaderEpochRequest(replica_id=-1, topics=[T(topic=topic, partitions=[
                T.OffsetForLeaderPartition(partition=0, current_leader_epoch=current,
                                           leader_epoch=epoch)])]), version=4)
            p = r.topics[0].partitions[0]
            out[f"ofle {label}"] = (p.error_code, rel(p.leader_epoch), p.end_offset)
            r = c.request(FetchRequest(
                replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=1 << 20, isolation_level=0,
                session_id=0, session_epoch=-1, topics=[FT(topic=topic, partitions=[FT.FetchPartition(
                    partition=0, current_leader_epoch=current, fetch_offset=0, log_start_offset=-1,
                    partition_max_bytes=1 << 20)])], forgotten_topics_data=[], rack_id=""), version=12)
            fp = r.responses[0].partitions[0]
            out[f"fetch {label}"] = (fp.error_code,)
            r = c.request(ListOffsetsRequest(replica_id=-1, isolation_level=0, topics=[L(name=topic, partitions=[
                L.ListOffsetsPartition(partition_index=0, current_leader_epoch=current, timestamp=-1)])]),
                version=7)
            lp = r.topics[0].partitions[0]
            out[f"list {label}"] = (lp.error_code, lp.offset, rel(lp.leader_epoch))
        # older than any known epoch: itself and the first start; newer: undefined
        for label, asked in (("older", -2), ("newer", epoch + 5)):
            r = c.request(OffsetForLeaderEpochRequest(replica_id=-1, topics=[T(topic=topic, partitions=[
                T.OffsetForLeaderPartition(partition=0, current_leader_epoch=-1, leader_epoch=asked)])]),
                version=4)
            p = r.topics[0].partitions[0]
            out[f"ofle asked {label}"] = (p.error_code, rel(p.leader_epoch), p.end_offset)
        r = c.request(OffsetForLeaderEpochRequest(replica_id=-1, topics=[T(topic="no-such-topic", partitions=[
            T.OffsetForLeaderPartition(partition=0, current_leader_epoch=-1, leader_epoch=0)])]), version=4)
        out["unknown topic"] = (r.topics[0].partitions[0].error_code,)
    return out


def produce_three(port: int, topic: str) -> None:
    from kafka.protocol.producer import ProduceRequest
    PD = ProduceRequest.TopicProduceData
    with WireClient(port) as c:
        CT = CreateTopicsRequest.CreatableTopic
        r = c.request(CreateTopicsRequest(topics=[CT(name=topic, num_partitions=1, replication_factor=1,
                                                     assignments=[], configs=[])],
                                          timeout_ms=10000, validate_only=False), version=7)
        assert r.topics[0].error_code == 0, r
        for _ in range(50):       # the new partition's leader may take a moment
            r = c.request(ProduceRequest(transactional_id=None, acks=-1, timeout_ms=10000, topic_data=[
                PD(name=topic, partition_data=[PD.PartitionProduceData(
                    index=0, records=make_batch([b"x", b"y", b"z"]))])]), version=9)
            if r.responses[0].partition_responses[0].error_code == 0:
                return
            time.sleep(0.1)
    raise AssertionError("could not produce")


def test_epoch_errors_on_the_wire_as_kafka(broker_factory, kafka_reference):
    answers = {}
    for name, port in (("sluice", broker_factory().port), ("kafka", kafka_reference.port)):
        produce_three(port, "epochs")
        _, epoch = leader(port, "epochs")
        answers[name] = epoch_answers(port, "epochs", epoch)
    assert answers["sluice"] == answers["kafka"]
    s = answers["sluice"]
    assert s["ofle none"] == s["ofle current"] == (0, "E", 3)
    assert {s[f"{api} stale"][0] for api in ("ofle", "list")} == {FENCED}
    assert s["fetch stale"] == (0,)     # Fetch: any negative epoch is "no check"
    assert {s[f"{api} newer"][0] for api in ("ofle", "fetch", "list")} == {UNKNOWN}
    assert s["ofle asked older"] == (0, -2, 0) and s["ofle asked newer"] == (0, -1, -1)
    assert s["unknown topic"] == (3,)


def test_not_the_owner_answers_not_leader(two_brokers):
    a, b = two_brokers
    produce_three(a.port, "owned")
    wait_until(lambda: leader(b.port, "owned")[0] in (1, 2), 10, "the topic on both")
    owner, epoch = leader(a.port, "owned")
    other = two_brokers[2 - owner]
    T = OffsetForLeaderEpochRequest.OffsetForLeaderTopic
    with WireClient(other.port) as c:
        r = c.request(OffsetForLeaderEpochRequest(replica_id=-1, topics=[T(topic="owned", partitions=[
            T.OffsetForLeaderPartition(partition=0, current_leader_epoch=epoch, leader_epoch=epoch)])]),
            version=4)
    assert r.topics[0].partitions[0].error_code == NOT_LEADER
