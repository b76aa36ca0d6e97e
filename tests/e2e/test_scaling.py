"""A cluster of real `sluice serve` processes on MinIO, changing size under load
(docs/cluster.md sections 6-10): scale 1 -> 3 -> 1 brokers with the balancer
and controlled shutdown under an idempotent producer and a consumer group;
the controller killed with -9 and its lease taken over; a paused (SIGSTOP)
owner fenced after an unclean election."""
from __future__ import annotations

import signal
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.protocol.metadata import MetadataRequest
from wire import WireClient, make_batch

from tests.e2e.test_bad_input import produce_req
from tests.e2e.test_crash import wait_until

pytestmark = pytest.mark.minio
NOT_LEADER = 6

FAST = ("broker.heartbeat.interval.ms=200", "broker.session.timeout.ms=2000", "num.partitions=1",
        "s3.upload.interval.ms=100")


@pytest.fixture
def cluster(broker_factory, minio, minio_bucket):
    """``start(node)`` starts broker ``node`` on the session MinIO's fresh bucket."""
    def start(node: int, *overrides: str):
        return broker_factory(*FAST, *overrides, f"node.id={node}", name=f"node{node}", env=minio.env(),
                              extra_args=["--object-store", f"s3://{minio_bucket}"])
    return start


def leaders(admin: AdminClient, topic: str) -> dict[int, int]:
    md = admin.list_topics(topic, timeout=10)
    return {p.id: p.leader for p in md.topics[topic].partitions.values()}


class SteadyProducer(threading.Thread):
    """An idempotent acks=all producer, ``rate`` records/s round-robin over the
    partitions, until ``stop``; ``acked`` per partition in order, ``errors``
    every delivery error (an idempotent producer retries retriable ones itself)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, rate: int = 300) -> None:
        super().__init__(daemon=True)
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                                  "linger.ms": 5, "message.timeout.ms": 120_000})
        self.topic, self.partitions, self.rate = topic, partitions, rate
        self.acked: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
        self.errors: list[str] = []
        self.halt = threading.Event()
        self.sent = 0

    def _delivered(self, err, msg) -> None:
        if err is not None:
            self.errors.append(str(err))
        else:
            self.acked[msg.partition()].append(msg.value())

    def run(self) -> None:
        for i in range(10**9):
            if self.halt.is_set() or i >= 60 * self.rate:       # bounded: a minute's worth at most
                break
            self.producer.produce(self.topic, value=b"v%d" % i, partition=i % self.partitions,
                                  on_delivery=self._delivered)
            self.sent += 1
            self.producer.poll(0)
            time.sleep(1 / self.rate)

    def finish(self) -> None:
        self.halt.set()
        self.join(30)
        assert self.producer.flush(60) == 0


class GroupConsumer(threading.Thread):
    """One member of a consumer group, committing synchronously every 50 records."""

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
        self.consumer.subscribe([topic])
        self.consumed = 0
        self.commits: list[dict[int, int]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        pending = 0
        deadline = time.monotonic() + 120
        while not self.halt.is_set() and time.monotonic() < deadline:
            msg = self.consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            self.consumed += 1
            pending += 1
            if pending >= 50:
                try:
                    done = self.consumer.commit(asynchronous=False)
                except Exception:       # retriable (a coordinator moving): the next one covers it
                    continue
                self.commits.append({tp.partition: tp.offset for tp in done if tp.offset >= 0})
                pending = 0
        self.consumer.close()


def read_back(bootstrap: str, topic: str, partitions: int, n: int, timeout: float = 60) -> dict[int, list[bytes]]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "enable.partition.eof": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    count = 0
    deadline = time.monotonic() + timeout
    while count < n and time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is None or msg.error():
            continue
        out[msg.partition()].append(msg.value())
        count += 1
    end = time.monotonic() + 2          # anything beyond n would be a duplicate
    while time.monotonic() < end:
        msg = c.poll(0.2)
        if msg is not None and not msg.error():
            out[msg.partition()].append(msg.value())
    c.close()
    return out


def test_scale_one_to_three_to_one_under_load(cluster):
    one = cluster(1)
    admin = AdminClient({"bootstrap.servers": one.bootstrap})
    admin.create_topics([NewTopic("scale", 6, 1)])["scale"].result(15)
    producer = SteadyProducer(one.bootstrap, "scale", 6)
    members = GroupConsumer(one.bootstrap, "scale", "scalers")
    producer.start()
    members.start()
    wait_until(lambda: producer.sent > 300, 20, "the producer to get going")

    # scale out: the new brokers get two partitions each without an operator step
    two, three = cluster(2), cluster(3)
    wait_until(lambda: sorted(leaders(admin, "scale").values()) == [1, 1, 2, 2, 3, 3], 30,
               "the balancer to spread the partitions")
    wait_until(lambda: members.consumed > 600, 30, "the group to consume through the moves")

    # scale in: SIGTERM hands everything off before the broker exits
    assert three.stop() == 0, three.log_tail()
    assert "controlled shutdown: everything handed off" in three.log_text()
    wait_until(lambda: set(leaders(admin, "scale").values()) <= {1, 2}, 20, "broker 3's partitions to move")
    assert two.stop() == 0, two.log_tail()
    wait_until(lambda: set(leaders(admin, "scale").values()) == {1}, 20, "broker 2's partitions to move")
    sent_before = producer.sent
    wait_until(lambda: producer.sent > sent_before + 150, 20, "the producer to carry on with one broker")

    producer.finish()
    members.halt.set()
    members.join(30)
    assert producer.errors == []                 # only retriable errors, retried by the client
    acked = producer.acked
    total = sum(map(len, acked.values()))
    assert total == producer.sent
    # every acknowledged record exactly once, in order, from the remaining broker
    assert read_back(one.bootstrap, "scale", 6, total) == acked
    # the group kept its offsets through every coordinator move: they never went back
    assert members.commits, "the group never committed"
    last: dict[int, int] = {}
    for commit in members.commits:
        for p, offset in commit.items():
            assert offset >= last.get(p, 0), (p, offset, last)
            last[p] = offset
    c = Consumer({"bootstrap.servers": one.bootstrap, "group.id": "scalers", "enable.auto.commit": False})
    committed = {tp.partition: tp.offset for tp in c.committed([TopicPartition("scale", p) for p in range(6)],
                                                                timeout=10)}
    c.close()
    assert all(committed[p] >= last.get(p, 0) for p in range(6)), (committed, last)


def test_the_controller_killed_its_lease_is_taken_over(cluster, kafka_tools):
    """kill -9 of the controller: a survivor takes the lease after it expires;
    the dead broker's partitions answer leader -1 (LEADER_NOT_AVAILABLE: no
    failover yet) and the survivors serve their own; restarted, it serves its
    partitions again with every acknowledged record."""
    brokers = {n: cluster(n) for n in (1, 2, 3)}
    admin = AdminClient({"bootstrap.servers": brokers[1].bootstrap})
    wait_until(lambda: len(admin.list_topics(timeout=10).brokers) == 3, 10, "three brokers")
    admin.create_topics([NewTopic("ctl", 3, 1)])["ctl"].result(15)
    wait_until(lambda: sorted(leaders(admin, "ctl").values()) == [1, 2, 3], 10, "one partition each")
    # each broker learns of the others from its own listing of the bucket, a heartbeat apart
    wait_until(lambda: all(metadata_of(b.port, "ctl")[0] == {1, 2, 3} for b in brokers.values()),
               10, "every broker to list the three")
    # every client sees the three brokers and the spread: kafka-python, and Kafka's own tools
    from kafka import KafkaAdminClient
    kp = KafkaAdminClient(bootstrap_servers=brokers[2].bootstrap)
    try:
        assert sorted(b["broker_id"] for b in kp.describe_cluster()["brokers"]) == [1, 2, 3]
    finally:
        kp.close()
    res = kafka_tools.run("kafka-topics", "--bootstrap-server", brokers[3].bootstrap, "--describe",
                          "--topic", "ctl")
    assert sorted(int(line.split("Leader:")[1].split()[0]) for line in res.lines if "Leader:" in line) == \
        [1, 2, 3], res.describe()
    p = Producer({"bootstrap.servers": brokers[1].bootstrap, "enable.idempotence": True, "acks": "all"})
    for i in range(30):
        p.produce("ctl", value=b"c%d" % i, partition=i % 3)
    assert p.flush(30) == 0

    controller = admin.list_topics(timeout=10).controller_id
    brokers[controller].kill()
    survivor = next(n for n in (1, 2, 3) if n != controller)
    sadmin = AdminClient({"bootstrap.servers": brokers[survivor].bootstrap})

    survivors = sorted(set(brokers) - {controller})

    def taken_over() -> bool:
        if any(controller in metadata_of(brokers[n].port, "ctl")[0] for n in survivors):
            return False        # asked of each survivor: both see it gone
        md = sadmin.list_topics(timeout=10)
        return controller not in md.brokers and md.controller_id in set(md.brokers)
    wait_until(taken_over, 15, "a survivor to take the controller lease")
    md = sadmin.list_topics("ctl", timeout=10)
    dead = [q for q in md.topics["ctl"].partitions.values() if q.leader == -1]
    assert len(dead) == 1
    assert dead[0].error is not None and dead[0].error.code() == KafkaError.LEADER_NOT_AVAILABLE
    # the new controller places a new topic on the live brokers only
    sadmin.create_topics([NewTopic("after", 2, 1)])["after"].result(15)
    wait_until(lambda: sorted(leaders(sadmin, "after").values()) == sorted(set((1, 2, 3)) - {controller}), 10,
               "the new topic on the survivors")

    brokers[controller].start()
    wait_until(lambda: sorted(leaders(sadmin, "ctl").values()) == [1, 2, 3], 20, "the restarted broker to serve")
    got = read_back(brokers[survivor].bootstrap, "ctl", 3, 30)
    assert got == {q: [b"c%d" % i for i in range(q, 30, 3)] for q in range(3)}


def metadata_of(port: int, topic: str) -> tuple[set[int], dict[int, int]]:
    """(live broker ids, partition -> leader) as the broker on ``port`` answers
    Metadata: asked of that broker alone (a client might ask the paused one)."""
    with WireClient(port) as c:
        r = c.request(MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(topic_id=None, name=topic)],
                                      allow_auto_topic_creation=False,
                                      include_topic_authorized_operations=False), 12)
    return {b.node_id for b in r.brokers}, {q.partition_index: q.leader_id for q in r.topics[0].partitions}


def test_a_paused_owner_cannot_make_a_record_visible_after_an_unclean_election(cluster, kafka_tools):
    """SIGSTOP of a partition's owner past its session: the survivors list it as
    gone and its partition without a leader. kafka-leader-election --election-type
    unclean gives the partition to a survivor (losing what the paused owner had
    not uploaded, as Kafka's unclean election may). A produce sent straight to the
    paused owner waits in its socket; resumed, it may append and acknowledge that
    record before its heartbeat tells it the partition is gone, but the record
    never becomes visible: its manifest write is fenced by the new epoch."""
    fast_manifests = "s3.manifest.interval.ms=100"
    brokers = {n: cluster(n, fast_manifests) for n in (1, 2)}
    admin = AdminClient({"bootstrap.servers": brokers[2].bootstrap})
    wait_until(lambda: metadata_of(brokers[2].port, "fence")[0] == {1, 2}, 10, "two brokers")
    admin.create_topics([NewTopic("fence", 2, 1)])["fence"].result(15)
    wait_until(lambda: sorted(leaders(admin, "fence").values()) == [1, 2], 10, "one partition each")
    part = next(q for q, leader in leaders(admin, "fence").items() if leader == 1)
    p = Producer({"bootstrap.servers": brokers[1].bootstrap, "acks": "all"})
    p.produce("fence", value=b"before", partition=part)
    assert p.flush(15) == 0
    time.sleep(1.0)                                  # uploaded and recorded (100 ms intervals)

    old = brokers[1]
    wire = WireClient(old.port, timeout=30)
    old.proc.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: metadata_of(brokers[2].port, "fence")[0] == {2}, 15, "broker 1 to stop being live")
        assert metadata_of(brokers[2].port, "fence")[1][part] == -1         # no leader: no failover yet
        res = kafka_tools.run("kafka-leader-election", "--bootstrap-server", brokers[2].bootstrap,
                              "--election-type", "unclean", "--topic", "fence", "--partition", str(part))
        assert "Successfully completed leader election (UNCLEAN)" in res.stdout, res.describe()
        wait_until(lambda: metadata_of(brokers[2].port, "fence")[1][part] == 2, 10,
                   "broker 2 to lead the partition")
        cid = wire.send(produce_req("fence", part, make_batch([b"late"])), 9)   # queued in its socket
    finally:
        old.proc.send_signal(signal.SIGCONT)
    got_cid, resp = wire.receive()
    wire.close()
    assert got_cid == cid
    late = resp.responses[0].partition_responses[0]
    # acknowledged by the paused owner (it had not learned yet), or refused: either way invisible
    assert late.error_code in (0, NOT_LEADER), late
    wait_until(lambda: old.log_text().count("no longer ours") + old.log_text().count("fenced") > 0, 10,
               "broker 1 to learn it lost the partition")
    time.sleep(1.0)                                  # any upload of "late" has been tried by now
    assert read_back(brokers[2].bootstrap, "fence", 2, 1, timeout=10)[part] == [b"before"]
    p2 = Producer({"bootstrap.servers": brokers[2].bootstrap, "acks": "all"})
    p2.produce("fence", value=b"next", partition=part)
    assert p2.flush(15) == 0
    assert read_back(brokers[2].bootstrap, "fence", 2, 2, timeout=10)[part] == [b"before", b"next"]
    print(f"\nthe paused owner answered the late produce with error {late.error_code}")
