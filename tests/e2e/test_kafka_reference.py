"""broker/kafka_reference.py: a real Apache Kafka KRaft broker starts, serves a
confluent-kafka producer and consumer, and stops (every step bounded)."""
import os
import time
import uuid

from confluent_kafka import Consumer, Producer
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
    from broker.kafka_reference import KafkaBroker

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
    from broker.kafka_reference import random_cluster_id

    ids = {random_cluster_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
