"""bench/kafka_reference.py: a real Apache Kafka KRaft broker starts, serves a
confluent-kafka producer and consumer, and stops (every step bounded); a 3-node
cluster moves a partition with Kafka's own kafka-reassign-partitions."""
import json
import os
import re
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def test_kafka_reference_produce_consume(kafka_reference):
    kb = kafka_reference
    assert kb.proc.poll() is None
    topic = f"ref-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kb.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(timeout=30)

    p = Producer({"bootstrap.servers": kb.bootstrap, "acks": "all", "enable.idempotence": True})
    sent = [f"value-{i}".encode() for i in range(20)]
    errors = []
    for i, v in enumerate(sent):
        p.produce(topic, v, key=str(i).encode(),
                  on_delivery=lambda err, msg: errors.append(err) if err else None)
    assert p.flush(30) == 0
    assert errors == []

    c = Consumer({"bootstrap.servers": kb.bootstrap, "group.id": f"g-{topic}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + 60
    try:
        while len(got) < len(sent) and time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is None or m.error():
                continue
            got.append(m.value())
    finally:
        c.close()
    assert sorted(got) == sorted(sent)
    assert os.path.getsize(kb.log_path) > 0


def test_kafka_reference_stops(kafka_tools, tmp_path):
    from bench.kafka_reference import KafkaBroker

    kb = KafkaBroker(tmp_path / "k", heap="-Xmx512m", libs=str(kafka_tools.libs))
    kb.start(timeout=120)
    pid = kb.pid
    t = time.monotonic()
    kb.stop(timeout=30)
    assert time.monotonic() - t < 45
    assert kb.proc.poll() is not None
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    assert "shut down completed" in kb.log_tail(20000) or "shutdown completed" in kb.log_tail(20000).lower()


def test_cluster_ids_are_valid_arguments():
    from bench.kafka_reference import random_cluster_id

    ids = {random_cluster_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


@pytest.mark.timeout(180)
def test_kafka_cluster_reassign_partition(kafka_tools, tmp_path):
    """bench/kafka_reference.KafkaCluster: three KRaft nodes start; Kafka's own
    kafka-reassign-partitions moves a one-partition RF=1 topic from broker 1 to broker 2
    (--execute, then --verify until complete); kafka-topics --describe and Metadata show it
    on broker 2 only, and every record is still readable. The nodes stop and are gone."""
    from bench.kafka_reference import KafkaCluster

    cluster = KafkaCluster(tmp_path / "cluster", nodes=3, heap="-Xmx512m", libs=str(kafka_tools.libs))
    cluster.start(timeout=120)
    pids = [node.pid for node in cluster.nodes]
    try:
        bs = cluster.bootstrap
        admin = AdminClient({"bootstrap.servers": bs, "log_level": 0})
        assert sorted(admin.list_topics(timeout=10).brokers) == [1, 2, 3]
        topic = f"move-{uuid.uuid4().hex[:8]}"
        admin.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[[1]])])[topic].result(timeout=30)
        _wait_partition(admin, topic, replicas=[1], timeout=30)

        p = Producer({"bootstrap.servers": bs, "acks": "all", "linger.ms": 5, "log_level": 0})
        sent = [f"record-{i}-".encode() + b"x" * 200 for i in range(3000)]
        for v in sent:
            p.produce(topic, v, partition=0)
        assert p.flush(30) == 0
        assert any(f.endswith(".log") and os.path.getsize(cluster.node(1).log_dir / f"{topic}-0" / f) > 0
                   for f in os.listdir(cluster.node(1).log_dir / f"{topic}-0"))

        plan = tmp_path / "plan.json"
        plan.write_text(json.dumps({"version": 1, "partitions": [{"topic": topic, "partition": 0, "replicas": [2]}]}))
        args = ("--bootstrap-server", bs, "--reassignment-json-file", str(plan))
        res = kafka_tools.run("kafka-reassign-partitions", *args, "--execute", timeout=60)
        assert "Successfully started partition reassignment" in res.stdout, res.describe()
        deadline = time.monotonic() + 60
        while True:
            res = kafka_tools.run("kafka-reassign-partitions", *args, "--verify", timeout=60)
            if f"Reassignment of partition {topic}-0 is completed" in res.stdout:
                break
            assert "still in progress" in res.stdout, res.describe()
            assert time.monotonic() < deadline, res.describe()
            time.sleep(0.5)

        desc = kafka_tools.run("kafka-topics", "--bootstrap-server", bs, "--describe", "--topic", topic)
        assert re.search(r"Partition: 0\s+Leader: 2\s+Replicas: 2\s+Isr: 2\b", desc.stdout), desc.describe()
        _wait_partition(admin, topic, replicas=[2], timeout=30)
        assert (cluster.node(2).log_dir / f"{topic}-0").is_dir()
        assert not (cluster.node(1).log_dir / f"{topic}-0").exists()   # renamed for deletion, then deleted

        c = Consumer({"bootstrap.servers": bs, "group.id": f"g-{topic}", "enable.auto.commit": False,
                      "log_level": 0})
        got = []
        try:
            assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=30, cached=False) == (0, len(sent))
            c.assign([TopicPartition(topic, 0, 0)])
            deadline = time.monotonic() + 30
            while len(got) < len(sent) and time.monotonic() < deadline:
                for m in c.consume(1000, 1.0):
                    if not m.error():
                        got.append(m.value())
        finally:
            c.close()
        assert got == sent   # all of them, in order
    finally:
        codes = cluster.stop(timeout=30)
        cluster.cleanup()
    assert all(rc is not None for rc in codes), codes
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def _wait_partition(admin, topic: str, replicas: list[int], timeout: float) -> None:
    """Until Metadata shows partition 0 of ``topic`` on exactly ``replicas``, led by and in sync on them."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        t = admin.list_topics(topic, timeout=10).topics.get(topic)
        if t is not None and not t.error and 0 in t.partitions:
            p = t.partitions[0]
            last = (p.replicas, p.isrs, p.leader)
            if p.replicas == replicas and sorted(p.isrs) == sorted(replicas) and p.leader == replicas[0]:
                return
        time.sleep(0.2)
    raise AssertionError(f"{topic}-0: (replicas, isr, leader) = {last}, expected {replicas}")
