"""Moving partitions between three `sluice serve` processes on one MinIO bucket,
with Apache Kafka's own tools and Sluice's (docs/cluster.md sections 7-11):

- kafka-reassign-partitions --generate, --execute of a plan that moves a
  partition while an idempotent acks=all producer keeps producing, --verify
  until complete (which clears the replication throttles); every acknowledged
  record is then read back once, in order, from the new owner, and a consumer
  group's committed offsets are kept;
- kafka-leader-election --election-type preferred (nothing to elect: each
  partition's one replica leads it);
- `sluice reassign` moves a partition and lists the moves;
- `sluice drain` empties a broker, which then exits cleanly by itself, and
  the others serve everything it held, group offsets included.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from bench.launch import ROOT, wait_for_cluster
from tests.e2e.test_crash import consume_all, wait_until

pytestmark = pytest.mark.minio

TOPIC = "moving"
PARTITIONS = 3
GROUP = "keeps-its-offsets"
COMMITTED = {0: 7, 1: 3, 2: 5}
OVERRIDES = (
    "broker.heartbeat.interval.ms=200", "broker.session.timeout.ms=2000",
    "autobalancer.controller.enable=false",     # it would even out the moves the test makes
    "offsets.topic.num.partitions=6", "group.initial.rebalance.delay.ms=0",
)


class SteadyProducer(threading.Thread):
    """An idempotent acks=all producer sending ``rate`` records/s round-robin
    over the partitions until stopped; ``acked[partition]`` lists (offset,
    value) of every acknowledged record."""

    def __init__(self, bootstrap: str, rate: int = 400) -> None:
        super().__init__(daemon=True)
        self.conf = {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                     "linger.ms": 5, "message.timeout.ms": 60000, "error_cb": self._error}
        self.rate = rate
        self.acked: dict[int, list[tuple[int, str]]] = {p: [] for p in range(PARTITIONS)}
        self.failed: list[str] = []
        self.fatal: list[KafkaError] = []
        self.stop_event = threading.Event()
        self.unflushed = -1
        self.lock = threading.Lock()

    def _error(self, err: KafkaError) -> None:
        if err.fatal():
            self.fatal.append(err)

    def _delivered(self, err, msg) -> None:
        with self.lock:
            if err is None:
                self.acked[msg.partition()].append((msg.offset(), msg.value().decode()))
            else:
                self.failed.append(f"{msg.value()!r}: {err}")

    def count(self, partition: int | None = None) -> int:
        with self.lock:
            return sum(len(v) for p, v in self.acked.items() if partition in (None, p))

    def run(self) -> None:
        p = Producer(self.conf)
        seq, start = 0, time.monotonic()
        while not self.stop_event.is_set():
            ahead = seq / self.rate - (time.monotonic() - start)
            if ahead > 0:
                p.poll(min(ahead, 0.05))
                continue
            p.produce(TOPIC, value=str(seq).encode(), partition=seq % PARTITIONS, on_delivery=self._delivered)
            seq += 1
            p.poll(0)
        self.unflushed = p.flush(60)

    def finish(self) -> None:
        self.stop_event.set()
        self.join(90)
        assert not self.is_alive(), "the producer did not finish"
        assert self.unflushed == 0, f"{self.unflushed} records not delivered"
        assert not self.fatal, self.fatal
        assert not self.failed, self.failed[:5]


@pytest.fixture
def three_brokers(broker_factory, minio, minio_bucket):
    brokers = {n: broker_factory(*OVERRIDES, f"node.id={n}", name=f"node{n}", env=minio.env(),
                                 extra_args=["--object-store", f"s3://{minio_bucket}"]) for n in (1, 2, 3)}
    addresses = [("127.0.0.1", b.port) for b in brokers.values()]
    seen = wait_for_cluster(addresses, timeout=20)
    assert all(len(v) == 3 for v in seen.values()), seen
    admin = AdminClient({"bootstrap.servers": brokers[1].bootstrap})
    admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])[TOPIC].result(15)
    for b in brokers.values():      # each broker learns of the topic on its next heartbeat
        each = AdminClient({"bootstrap.servers": b.bootstrap})
        wait_until(lambda: sorted(owners(each).values()) == [1, 2, 3], 10, "one partition on each broker")
    return brokers, admin, minio, minio_bucket


def owners(admin: AdminClient) -> dict[int, int]:
    """partition -> leader, as the broker asked last heard (-1: none)."""
    md = admin.list_topics(TOPIC, timeout=10)
    t = md.topics[TOPIC]
    return {p.id: p.leader for p in t.partitions.values()} if t.error is None else {}


def bootstrap(brokers) -> str:
    return ",".join(b.bootstrap for b in brokers.values() if b.running)


def commit_offsets(bs: str) -> None:
    c = Consumer({"bootstrap.servers": bs, "group.id": GROUP, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(TOPIC, p, o) for p, o in COMMITTED.items()], asynchronous=False)
    finally:
        c.close()


def committed(bs: str) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bs, "group.id": GROUP, "enable.auto.commit": False})
    try:
        return {tp.partition: tp.offset for tp in
                c.committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=15)}
    finally:
        c.close()


def check_every_record(bs: str, producer: SteadyProducer) -> None:
    """Every acknowledged record, once, in order, at the offset it was acknowledged at."""
    consumed = consume_all(bs, TOPIC, PARTITIONS, timeout=30)
    for p in range(PARTITIONS):
        assert consumed[p] == sorted(producer.acked[p]), f"partition {p} differs from what was acknowledged"


def sluice(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    import os
    return subprocess.run([sys.executable, "-m", "broker", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, **(env or {})))


def test_kafka_reassign_partitions_moves_a_partition_under_load(three_brokers, kafka_tools, tmp_path):
    brokers, admin, _, _ = three_brokers
    bs = bootstrap(brokers)
    commit_offsets(bs)
    producer = SteadyProducer(bs)
    producer.start()
    wait_until(lambda: producer.count() >= 300, 20, "records acknowledged before the move")

    topics = tmp_path / "topics.json"
    topics.write_text(json.dumps({"version": 1, "topics": [{"topic": TOPIC}]}))
    gen = kafka_tools.run("kafka-reassign-partitions", "--bootstrap-server", bs, "--generate",
                          "--topics-to-move-json-file", str(topics), "--broker-list", "1,2,3")
    lines = gen.lines
    current = json.loads(lines[lines.index("Current partition replica assignment") + 1])
    proposed = json.loads(lines[lines.index("Proposed partition reassignment configuration") + 1])
    was = {p["partition"]: p["replicas"] for p in current["partitions"]}
    assert sorted(was) == [0, 1, 2] and sorted(r for rs in was.values() for r in rs) == [1, 2, 3], gen.describe()
    assert all(len(p["replicas"]) == 1 and p["log_dirs"] == ["any"] for p in proposed["partitions"])

    # the plan: partition 0 to the next broker, the others where they are
    source = was[0][0]
    target = source % 3 + 1
    plan_doc = {"version": 1, "partitions": [
        {"topic": TOPIC, "partition": p, "replicas": [target] if p == 0 else was[p], "log_dirs": ["any"]}
        for p in range(PARTITIONS)]}
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(plan_doc))
    args = ("--bootstrap-server", bs, "--reassignment-json-file", str(plan))
    before_move = producer.count(0)
    # --throttle sets replication throttles on the brokers and the topic: accepted, nothing to throttle
    res = kafka_tools.run("kafka-reassign-partitions", *args, "--execute", "--throttle", "1000000")
    assert "Successfully started partition reassignments for moving-0,moving-1,moving-2" in res.stdout, \
        res.describe()
    assert "The inter-broker throttle limit was set to 1000000 B/s" in res.stdout, res.describe()
    deadline = time.monotonic() + 30
    while True:
        res = kafka_tools.run("kafka-reassign-partitions", *args, "--verify")
        if f"Reassignment of partition {TOPIC}-0 is completed." in res.stdout:
            break
        assert f"Reassignment of partition {TOPIC}-0 is still in progress." in res.stdout, res.describe()
        assert time.monotonic() < deadline, res.describe()
    for p in (1, 2):
        assert f"Reassignment of partition {TOPIC}-{p} is completed." in res.stdout, res.describe()
    # --verify clears the replication throttles once nothing is moving (no-ops here)
    assert "Clearing broker-level throttles on brokers 1,2,3" in res.stdout, res.describe()
    assert f"Clearing topic-level throttles on topic {TOPIC}" in res.stdout, res.describe()
    listed = kafka_tools.run("kafka-reassign-partitions", "--bootstrap-server", bs, "--list")
    assert "No partition reassignments found." in listed.stdout, listed.describe()

    wait_until(lambda: owners(admin)[0] == target, 10, "Metadata to name the new owner")
    n = producer.count(0)
    wait_until(lambda: producer.count(0) >= n + 100, 20, "records acknowledged by the new owner")
    assert producer.count(0) > before_move

    # nothing to elect: each partition's one replica leads it
    every, one, unclean = kafka_tools.run_many([
        ("kafka-leader-election", ("--bootstrap-server", bs, "--election-type", "preferred",
                                   "--all-topic-partitions")),
        ("kafka-leader-election", ("--bootstrap-server", bs, "--election-type", "preferred",
                                   "--topic", TOPIC, "--partition", "0")),
        ("kafka-leader-election", ("--bootstrap-server", bs, "--election-type", "unclean",
                                   "--all-topic-partitions")),
    ])
    for res in (every, unclean):     # as Kafka: no partition needed an election, none is listed
        assert res.stdout.strip() == "", res.describe()
    assert f"Valid replica already elected for partitions {TOPIC}-0" in one.stdout, one.describe()

    # sluice reassign: partition 1 to another broker, progress until it leads it
    to = owners(admin)[1] % 3 + 1
    res = sluice("reassign", "--bootstrap-server", bs, "--topic", TOPIC, "--partition", "1", "--to", str(to),
                 "--timeout", "30")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{TOPIC}-1: done: node {to} leads it" in res.stdout, res.stdout
    res = sluice("reassign", "--bootstrap-server", bs, "--list")
    assert res.returncode == 0 and "No partition reassignments found." in res.stdout, res.stdout + res.stderr
    res = sluice("reassign", "--bootstrap-server", bs, "--topic", TOPIC, "--partition", "1", "--to", "9")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "INVALID_REPLICA_ASSIGNMENT: the node is not a live broker" in res.stderr, res.stderr

    n = producer.count(1)
    wait_until(lambda: producer.count(1) >= n + 100, 20, "records acknowledged after the second move")
    producer.finish()
    assert owners(admin)[0] == target and owners(admin)[1] == to
    check_every_record(bs, producer)
    assert committed(bs) == COMMITTED


def test_sluice_drain_empties_a_broker_which_then_exits(three_brokers):
    brokers, admin, minio, bucket = three_brokers
    bs = bootstrap(brokers)
    commit_offsets(bs)
    producer = SteadyProducer(bs)
    producer.start()
    wait_until(lambda: producer.count() >= 300, 20, "records acknowledged before the drain")
    # node 1, the first to start, claimed every group coordinator partition: its drain moves
    # them too, with the group's committed offsets
    node = 1
    doc = json.loads(minio.client().get_object(Bucket=bucket, Key="cluster/metadata.json")["Body"].read())
    assert doc["offsets"]["owners"].count(node) == 6 and node in owners(admin).values()
    started = time.monotonic()
    res = sluice("drain", "--object-store", f"s3://{bucket}", "--node-id", str(node), "--timeout", "30",
                 env=minio.env())
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"node {node}: drained; it shuts down by itself" in res.stdout, res.stdout
    assert brokers[node].proc.wait(30) == 0, brokers[node].log_tail()
    print(f"\ndrain of node {node}: {time.monotonic() - started:.1f} s to empty it and exit")
    assert "drained: every partition was handed off" in brokers[node].log_text()
    doc = json.loads(minio.client().get_object(Bucket=bucket, Key="cluster/metadata.json")["Body"].read())
    assert doc["draining"] == []
    assert node not in [o for t in doc["topics"] + [doc["offsets"]] for o in t["owners"]]
    assert [o["Key"] for o in minio.objects(bucket, "cluster/brokers/")] == \
        [f"cluster/brokers/{n}.{kind}" for n in (1, 2, 3) if n != node for kind in ("beat", "json")]

    rest = bootstrap(brokers)
    admin = AdminClient({"bootstrap.servers": rest})
    wait_until(lambda: node not in owners(admin).values() and -1 not in owners(admin).values(), 10,
               "the others to lead every partition")
    n = producer.count()
    wait_until(lambda: producer.count() >= n + 300, 20, "records acknowledged after the drain")
    producer.finish()
    check_every_record(rest, producer)
    assert committed(rest) == COMMITTED

    res = sluice("drain", "--object-store", f"s3://{bucket}", "--node-id", str(node), env=minio.env())
    assert res.returncode == 1 and "not registered" in res.stderr, res.stdout + res.stderr
