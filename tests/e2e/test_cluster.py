"""Two `sluice serve` processes on one bucket, through real clients: they form
one cluster (membership, spread partitions, NOT_LEADER_OR_FOLLOWER re-routing),
and a broker that shuts down cleanly hands its partitions to the other, which
serves every acknowledged record from the bucket.

Reassignment, draining and scaling under load are in test_reassign.py and
test_scaling.py; failover of a dead broker is a later issue (docs/cluster.md)."""
from __future__ import annotations

import json
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.protocol.admin import CreateTopicsRequest
from kafka.protocol.consumer import FetchRequest
from kafka.protocol.metadata import MetadataRequest
from kafka.protocol.producer import ProduceRequest
from wire import WireClient, make_batch

from tests.e2e.test_crash import wait_until

FAST = ("broker.heartbeat.interval.ms=200", "num.partitions=1")


@pytest.fixture
def two_brokers(broker_factory, minio, minio_bucket):
    """Brokers 1 and 2 on the session MinIO's fresh bucket."""
    def start(node: int):
        return broker_factory(*FAST, f"node.id={node}", name=f"node{node}", env=minio.env(),
                              extra_args=["--object-store", f"s3://{minio_bucket}"])
    one = start(1)
    two = start(2)
    return one, two, minio, minio_bucket


def leaders(admin: AdminClient, topic: str) -> dict[int, int]:
    md = admin.list_topics(topic, timeout=10)
    return {p.id: p.leader for p in md.topics[topic].partitions.values()}


pytestmark = pytest.mark.minio


def test_two_brokers_on_one_bucket_spread_serve_and_hand_over(two_brokers):
    one, two, minio, bucket = two_brokers
    admin = AdminClient({"bootstrap.servers": one.bootstrap})
    # both brokers are members; Metadata from either lists both
    wait_until(lambda: len(admin.list_topics(timeout=10).brokers) == 2, 10, "broker 1 to see broker 2")
    md = AdminClient({"bootstrap.servers": two.bootstrap}).list_topics(timeout=10)
    assert sorted(md.brokers) == [1, 2]
    assert md.controller_id in (1, 2)

    # a new topic's partitions spread over both, and each broker serves its own
    admin.create_topics([NewTopic("spread", 4, 1)])["spread"].result(15)
    wait_until(lambda: sorted(leaders(admin, "spread").values()) == [1, 1, 2, 2], 10, "leaders on both")

    producer = Producer({"bootstrap.servers": one.bootstrap, "enable.idempotence": True, "acks": "all",
                         "linger.ms": 5})
    acked: dict[int, list[bytes]] = {p: [] for p in range(4)}

    def on_delivery(err, msg):
        assert err is None, err
        acked[msg.partition()].append(msg.value())
    for i in range(400):
        producer.produce("spread", value=b"v%d" % i, partition=i % 4, on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert sum(map(len, acked.values())) == 400

    # a broker asked for a partition it does not own answers NOT_LEADER_OR_FOLLOWER:
    # the client, bootstrapped on broker 2 only, still reaches broker 1's partitions
    c = Consumer({"bootstrap.servers": two.bootstrap, "group.id": "g1", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.assign([TopicPartition("spread", p, 0) for p in range(4)])
    got = read_all(c, 400)
    c.close()
    assert got == acked

    # broker 2 shuts down cleanly: it uploads, deregisters, and broker 1 adopts its partitions
    assert two.stop() == 0, two.log_text()[-3000:]
    assert [o["Key"] for o in minio.objects(bucket, "cluster/brokers/")] == \
        ["cluster/brokers/1.beat", "cluster/brokers/1.json"]
    wait_until(lambda: set(leaders(admin, "spread").values()) == {1}, 15, "broker 1 to own every partition")
    doc = json.loads(minio.client().get_object(Bucket=bucket, Key="cluster/metadata.json")["Body"].read())
    spread = next(t for t in doc["topics"] if t["name"] == "spread")
    assert spread["owners"] == [1, 1, 1, 1]
    assert sorted(spread["epochs"]) == [1, 1, 2, 2]     # the two that moved: epoch + 1

    # every acknowledged record is served by the new owner, in order, exactly once
    c = Consumer({"bootstrap.servers": one.bootstrap, "group.id": "g2", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.assign([TopicPartition("spread", p, 0) for p in range(4)])
    assert read_all(c, 400) == acked
    c.close()

    # and the idempotent producer carries on against the new owner
    for i in range(400, 440):
        producer.produce("spread", value=b"v%d" % i, partition=i % 4, on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert sum(map(len, acked.values())) == 440


def read_all(consumer: Consumer, n: int, timeout: float = 30) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = {p: [] for p in range(4)}
    deadline = time.monotonic() + timeout
    count = 0
    while count < n and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
            continue
        out[msg.partition()].append(msg.value())
        count += 1
    return out


def test_brokers_listening_on_port_0_advertise_the_bound_port(broker_factory, tmp_path):
    """`--listen 127.0.0.1:0`: the port is bound before the broker registers,
    so the other broker's Metadata names the real one (not 0). With both up
    (cheaper here than two more processes): an explicit replica assignment
    gives each partition to its list's first broker, and a replication factor
    above the two brokers is refused as Kafka refuses it."""
    bucket = f"file://{tmp_path / 'bucket'}"
    one, two = (broker_factory(*FAST, f"node.id={n}", name=f"node{n}",
                               extra_args=["--object-store", bucket, "--listen", "127.0.0.1:0"])
                for n in (1, 2))
    admin = AdminClient({"bootstrap.servers": one.bootstrap})
    wait_until(lambda: len(admin.list_topics(timeout=10).brokers) == 2, 10, "broker 1 to see broker 2")
    brokers = admin.list_topics(timeout=10).brokers
    assert {b.id: b.port for b in brokers.values()} == {1: one.port, 2: two.port}
    assert 0 not in (one.port, two.port)

    futures = admin.create_topics([NewTopic("placed", num_partitions=3, replica_assignment=[[2, 1], [1, 2], [2, 1]]),
                                   NewTopic("rf3", num_partitions=1, replication_factor=3)])
    futures["placed"].result(15)
    with pytest.raises(KafkaException) as refused:
        futures["rf3"].result(15)
    assert refused.value.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR
    wait_until(lambda: leaders(admin, "placed") == {0: 2, 1: 1, 2: 2}, 10, "each partition on its first broker")
    # one copy in the bucket: the owner is the one replica listed (docs/cluster.md section 4)
    md = admin.list_topics("placed", timeout=10).topics["placed"].partitions
    assert {p: (md[p].replicas, md[p].isrs) for p in md} == {0: ([2], [2]), 1: ([1], [1]), 2: ([2], [2])}


def test_not_leader_answers_name_the_current_leader(two_brokers):
    """KIP-951 through real sockets: Produce (v10+) and Fetch (v16+) sent to the
    broker that does not own a partition answer NOT_LEADER_OR_FOLLOWER with the
    partition's current leader and epoch, and the owner's endpoint, as Kafka does."""
    one, two, _minio, _bucket = two_brokers
    brokers = {1: one, 2: two}
    with WireClient(one.port) as c:
        resp = c.request(CreateTopicsRequest(topics=[CreateTopicsRequest.CreatableTopic(
            name="routed", num_partitions=2, replication_factor=1, assignments=[], configs=[])],
            timeout_ms=10_000, validate_only=False), 7)
        assert resp.topics[0].error_code == 0, resp

    def described(node: int):
        with WireClient(brokers[node].port) as c:
            md = c.request(MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name="routed")],
                                           allow_auto_topic_creation=False), 12)
        return md
    # both brokers see both members and the same owners, one partition each
    wait_until(lambda: all(
        len(md.brokers) == 2 and md.topics[0].error_code == 0
        and sorted(p.leader_id for p in md.topics[0].partitions) == [1, 2]
        for md in map(described, (1, 2))), 15, "both brokers to agree on the owners")
    md = described(1)
    endpoint = {b.node_id: (b.node_id, b.host, b.port, b.rack) for b in md.brokers}
    [topic] = md.topics
    assert endpoint[1][2] == one.port and endpoint[2][2] == two.port
    for p in topic.partitions:
        owner, epoch = p.leader_id, p.leader_epoch
        other = 3 - owner
        records = make_batch([b"misrouted"])
        with WireClient(brokers[other].port) as c:
            for version in (10, 13):    # by name; by topic id (the highest Sluice speaks)
                P = ProduceRequest
                resp = c.request(P(transactional_id=None, acks=-1, timeout_ms=10_000, topic_data=[
                    P.TopicProduceData(name="routed", topic_id=topic.topic_id, partition_data=[
                        P.TopicProduceData.PartitionProduceData(index=p.partition_index, records=records)])]),
                    version)
                [pr] = resp.responses[0].partition_responses
                assert pr.error_code == 6, (version, pr)
                assert (pr.current_leader.leader_id, pr.current_leader.leader_epoch) == (owner, epoch)
                assert [(e.node_id, e.host, e.port, e.rack) for e in resp.node_endpoints] == [endpoint[owner]]
            for version in (16, 18):
                F = FetchRequest
                resp = c.request(F(replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=1 << 20,
                                   isolation_level=0, session_id=0, session_epoch=-1, topics=[F.FetchTopic(
                                       topic="routed", topic_id=topic.topic_id, partitions=[F.FetchTopic.FetchPartition(
                                           partition=p.partition_index, current_leader_epoch=-1, fetch_offset=0,
                                           log_start_offset=-1, partition_max_bytes=1 << 20)])],
                                   forgotten_topics_data=[], rack_id=""), version)
                assert resp.error_code == 0
                [fp] = resp.responses[0].partitions
                assert fp.error_code == 6, (version, fp)
                assert (fp.current_leader.leader_id, fp.current_leader.leader_epoch) == (owner, epoch)
                assert [(e.node_id, e.host, e.port, e.rack) for e in resp.node_endpoints] == [endpoint[owner]]
        # and the named broker takes the write (once it has loaded the partition:
        # until then it answers NOT_LEADER_OR_FOLLOWER too, naming itself)
        with WireClient(endpoint[owner][2]) as c:
            def produce_to_owner():
                resp = c.request(ProduceRequest(transactional_id=None, acks=-1, timeout_ms=10_000, topic_data=[
                    ProduceRequest.TopicProduceData(name="routed", partition_data=[
                        ProduceRequest.TopicProduceData.PartitionProduceData(
                            index=p.partition_index, records=make_batch([b"routed"]))])]), 10)
                [pr] = resp.responses[0].partition_responses
                if pr.error_code == 6:
                    assert (pr.current_leader.leader_id, pr.current_leader.leader_epoch) == (owner, epoch)
                    assert [(e.node_id, e.host, e.port, e.rack) for e in resp.node_endpoints] == \
                        [endpoint[owner]]
                    return False
                assert (pr.error_code, pr.base_offset, pr.current_leader, resp.node_endpoints) == \
                    (0, 0, None, [])
                return True
            wait_until(produce_to_owner, 15, f"broker {owner} to take the write")
