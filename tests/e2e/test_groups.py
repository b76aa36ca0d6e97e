"""End-to-end: consumer groups (classic protocol) with real clients.

librdkafka (confluent-kafka) consumers share partitions and commit synchronously;
kafka-python's KafkaConsumer joins a group and commits; confluent's AdminClient
lists, describes, deletes groups and reads / rewinds committed offsets.
Committed offsets survive a SIGKILL of the broker. Three kafka-python members
(cooperative-sticky, range, roundrobin) and three aiokafka members (sticky) share
a topic and one leaves; static aiokafka members restart without a rebalance.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest
from confluent_kafka import Consumer, ConsumerGroupState, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

pytestmark = pytest.mark.timeout(180)

GROUP_CONF = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000,
              "enable.auto.commit": False, "auto.offset.reset": "earliest"}
FAST = ("group.initial.rebalance.delay.ms=0",)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    a = admin(bootstrap)
    fs = a.create_topics([NewTopic(name, partitions, 1)], operation_timeout=10, request_timeout=15)
    fs[name].result(15)


def produce(bootstrap: str, topic: str, partitions: int, per_partition: int, start: int = 0) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    for seq in range(start, start + per_partition):
        for part in range(partitions):
            p.produce(topic, value=f"{part}:{seq}".encode(), partition=part)
            if seq % 500 == 0:
                p.poll(0)
    assert p.flush(30) == 0


def consumer(bootstrap: str, group: str, **extra) -> Consumer:
    conf = {"bootstrap.servers": bootstrap, "group.id": group, **GROUP_CONF}
    conf.update(extra)
    return Consumer(conf)


class Worker(threading.Thread):
    """A group member that polls, records what it got, and commits synchronously."""

    def __init__(self, bootstrap: str, group: str, topic: str, name: str, **extra) -> None:
        super().__init__(daemon=True, name=name)
        self.c = consumer(bootstrap, group, **extra)
        self.c.subscribe([topic])
        self.seen: list[tuple[int, int, bytes]] = []
        self.stop_flag = threading.Event()
        self.error: BaseException | None = None
        self.assigned: set[int] = set()

    def run(self) -> None:
        try:
            while not self.stop_flag.is_set():
                msgs = self.c.consume(num_messages=500, timeout=0.2)
                good = []
                for m in msgs:
                    if m.error():
                        if m.error().code() == KafkaError._PARTITION_EOF:
                            continue
                        raise KafkaException(m.error())
                    good.append(m)
                if good:
                    self.seen.extend((m.partition(), m.offset(), m.value()) for m in good)
                    self.c.commit(asynchronous=False)
                self.assigned = {tp.partition for tp in self.c.assignment()}
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def close(self) -> None:
        self.stop_flag.set()
        self.join(20)
        self.c.close()  # LeaveGroup


def wait_until(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    c = consumer(bootstrap, group)
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=15)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def test_three_consumers_exactly_once(broker_factory):
    # A short initial rebalance delay: the three members that start together
    # land in the first generation together.
    b = broker_factory("group.initial.rebalance.delay.ms=1500")
    topic, group, parts, per = unique("g3"), unique("grp"), 6, 5000
    create_topic(b.bootstrap, topic, parts)
    workers = [Worker(b.bootstrap, group, topic, f"w{i}") for i in range(3)]
    for w in workers:
        w.start()
    try:
        wait_until(lambda: all(len(w.assigned) == 2 for w in workers), 45, "two partitions each")
        produce(b.bootstrap, topic, parts, per)
        wait_until(lambda: sum(len(w.seen) for w in workers) >= parts * per or any(w.error for w in workers),
                   90, "30,000 records")
        time.sleep(1.0)  # nothing more may arrive
    finally:
        for w in workers:
            w.close()
    for w in workers:
        assert w.error is None, w.error
    got = [r for w in workers for r in w.seen]
    counts = Counter((p, o) for p, o, _ in got)
    assert len(got) == parts * per, f"{len(got)} records, duplicates: {[k for k, n in counts.items() if n > 1][:5]}"
    assert set(counts) == {(p, o) for p in range(parts) for o in range(per)}
    # every consumer got work, and every partition belonged to one consumer
    assert all(w.seen for w in workers), [len(w.seen) for w in workers]
    owners = {p: {w.name for w in workers if any(r[0] == p for r in w.seen)} for p in range(parts)}
    assert all(len(o) == 1 for o in owners.values()), owners
    assert committed(b.bootstrap, group, topic, parts) == {p: per for p in range(parts)}


def test_member_leaving_moves_partitions(broker_factory):
    b = broker_factory(*FAST)
    topic, group, parts = unique("leave"), unique("grp"), 4
    create_topic(b.bootstrap, topic, parts)
    produce(b.bootstrap, topic, parts, 100)
    w1, w2 = Worker(b.bootstrap, group, topic, "w1"), Worker(b.bootstrap, group, topic, "w2")
    w1.start()
    w2.start()
    try:
        wait_until(lambda: len(w1.assigned) + len(w2.assigned) == parts and w1.assigned and w2.assigned,
                   45, "both members assigned")
        wait_until(lambda: len(w1.seen) + len(w2.seen) == parts * 100, 30, "first 400 records")
        w2.close()  # leaves the group: w1 must take over everything
        wait_until(lambda: w1.assigned == set(range(parts)), 30, "w1 owns every partition")
        produce(b.bootstrap, topic, parts, 100, start=100)
        wait_until(lambda: len(w1.seen) + len(w2.seen) == parts * 200, 30, "second 400 records")
    finally:
        w1.close()
        if w2.is_alive():
            w2.close()
    assert w1.error is None and w2.error is None
    got = Counter((p, o) for p, o, _ in w1.seen + w2.seen)
    assert set(got) == {(p, o) for p in range(parts) for o in range(200)} and max(got.values()) == 1
    assert {p for p, o, _ in w1.seen if o >= 100} == set(range(parts))


def test_committed_offsets_survive_sigkill(broker_factory):
    b = broker_factory(*FAST)
    topic, group, parts = unique("crash"), unique("grp"), 3
    create_topic(b.bootstrap, topic, parts)
    produce(b.bootstrap, topic, parts, 200)
    c = consumer(b.bootstrap, group)
    c.subscribe([topic])
    got = 0
    deadline = time.monotonic() + 45
    while got < parts * 100 and time.monotonic() < deadline:
        for m in c.consume(num_messages=50, timeout=0.5):
            if m.error():
                continue
            got += 1
    # commit exactly offset 100 on every partition (with metadata), synchronously
    c.commit(offsets=[TopicPartition(topic, p, 100, metadata=f"md-{p}") for p in range(parts)],
             asynchronous=False)
    c.close()
    b.kill()
    b.start()
    # the group exists again (Empty) and its offsets survived
    a = admin(b.bootstrap)
    listed = a.list_consumer_groups(request_timeout=15).result(15)
    assert group in {g.group_id for g in listed.valid}
    res = a.list_consumer_group_offsets([_group_tps(group, topic, parts)])[group].result(15)
    assert {tp.partition: (tp.offset, tp.metadata) for tp in res.topic_partitions} == \
        {p: (100, f"md-{p}") for p in range(parts)}
    # a new member of the group resumes from the committed offsets
    c = consumer(b.bootstrap, group)
    c.subscribe([topic])
    seen = []
    deadline = time.monotonic() + 45
    while len(seen) < parts * 100 and time.monotonic() < deadline:
        seen += [(m.partition(), m.offset()) for m in c.consume(num_messages=500, timeout=0.5)
                 if not m.error()]
    c.close()
    assert sorted(seen) == [(p, o) for p in range(parts) for o in range(100, 200)]


def _group_tps(group: str, topic: str, parts: int):
    from confluent_kafka import ConsumerGroupTopicPartitions
    return ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(parts)])


def test_kafka_python_group_commit(broker_factory):
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    b = broker_factory(*FAST)
    topic, group, parts = unique("kp"), unique("grp"), 2
    create_topic(b.bootstrap, topic, parts)
    produce(b.bootstrap, topic, parts, 50)
    kc = KafkaConsumer(topic, bootstrap_servers=b.bootstrap, group_id=group,
                       auto_offset_reset="earliest", enable_auto_commit=False,
                       session_timeout_ms=6000, heartbeat_interval_ms=1000,
                       consumer_timeout_ms=15000)
    try:
        seen = []
        for m in kc:
            seen.append((m.partition, m.offset))
            if len(seen) == parts * 50:
                break
        assert sorted(seen) == [(p, o) for p in range(parts) for o in range(50)]
        kc.commit()
        assert {p: kc.committed(KTP(topic, p)) for p in range(parts)} == {p: 50 for p in range(parts)}
    finally:
        kc.close()
    assert committed(b.bootstrap, group, topic, parts) == {p: 50 for p in range(parts)}


def test_admin_groups(broker_factory):
    from confluent_kafka import ConsumerGroupTopicPartitions
    b = broker_factory(*FAST)
    topic, group, parts = unique("adm"), unique("grp"), 2
    create_topic(b.bootstrap, topic, parts)
    produce(b.bootstrap, topic, parts, 20)
    a = admin(b.bootstrap)
    w = Worker(b.bootstrap, group, topic, "w", **{"client.id": "admin-test-client"})
    w.start()
    try:
        wait_until(lambda: len(w.seen) == parts * 20, 45, "40 records")
        listed = a.list_consumer_groups(request_timeout=15).result(15)
        assert group in {g.group_id for g in listed.valid}
        stable = a.list_consumer_groups(request_timeout=15, states={ConsumerGroupState.STABLE}).result(15)
        assert group in {g.group_id for g in stable.valid}
        empty = a.list_consumer_groups(request_timeout=15, states={ConsumerGroupState.EMPTY}).result(15)
        assert group not in {g.group_id for g in empty.valid}
        desc = a.describe_consumer_groups([group], request_timeout=15)[group].result(15)
        assert desc.state == ConsumerGroupState.STABLE
        assert desc.partition_assignor == "range" or desc.partition_assignor
        assert len(desc.members) == 1 and desc.members[0].client_id == "admin-test-client"
        assert {tp.partition for tp in desc.members[0].assignment.topic_partitions} == set(range(parts))
        # a group with a member cannot be deleted
        fut = a.delete_consumer_groups([group], request_timeout=15)[group]
        with pytest.raises(KafkaException) as ei:
            fut.result(15)
        assert ei.value.args[0].code() == KafkaError.NON_EMPTY_GROUP
    finally:
        w.close()
    wait_until(lambda: a.describe_consumer_groups([group], request_timeout=15)[group].result(15).state
               == ConsumerGroupState.EMPTY, 20, "group empty")
    res = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(15)
    assert {tp.partition: tp.offset for tp in res.topic_partitions} == {p: 20 for p in range(parts)}
    # rewind partition 0 to offset 5 and check that a consumer starts there
    a.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 5)])])[
        group].result(15)
    assert committed(b.bootstrap, group, topic, parts) == {0: 5, 1: 20}
    c = consumer(b.bootstrap, group)
    c.subscribe([topic])
    seen = []
    deadline = time.monotonic() + 30
    while len(seen) < 15 and time.monotonic() < deadline:
        seen += [(m.partition(), m.offset()) for m in c.consume(num_messages=100, timeout=0.5) if not m.error()]
    c.close()
    assert sorted(seen) == [(0, o) for o in range(5, 20)]
    # empty now: delete works, the group and its offsets are gone
    a.delete_consumer_groups([group], request_timeout=15)[group].result(15)
    listed = a.list_consumer_groups(request_timeout=15).result(15)
    assert group not in {g.group_id for g in listed.valid}
    assert committed(b.bootstrap, group, topic, parts) == {p: -1001 for p in range(parts)}
    # deleting an unknown group answers GROUP_ID_NOT_FOUND
    with pytest.raises(KafkaException) as ei:
        a.delete_consumer_groups([group], request_timeout=15)[group].result(15)
    assert ei.value.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND


def test_java_console_consumer_group_and_consumer_groups_tool(broker_factory, kafka_tools):
    """Apache Kafka's Java consumer (classic protocol) in a group, then kafka-consumer-groups:
    describe (offsets, lag), reset offsets, delete."""
    b = broker_factory(*FAST)
    bs = b.bootstrap
    topic, group, parts = unique("java"), unique("jgrp"), 3
    create_topic(bs, topic, parts)
    produce(bs, topic, parts, 40)
    res = kafka_tools.run("kafka-console-consumer", "--bootstrap-server", bs, "--topic", topic,
                          "--group", group, "--from-beginning", "--max-messages", str(parts * 40),
                          "--timeout-ms", "60000", "--consumer-property", "group.protocol=classic",
                          timeout=120)
    assert f"Processed a total of {parts * 40} messages" in res.stderr, res.describe()
    assert committed(bs, group, topic, parts) == {p: 40 for p in range(parts)}

    res = kafka_tools.run("kafka-consumer-groups", "--bootstrap-server", bs, "--describe",
                          "--group", group, timeout=60)
    rows = [line.split() for line in res.lines if line.split()[:2] == [group, topic]]
    assert sorted((int(r[2]), int(r[3]), int(r[5])) for r in rows) == \
        [(p, 40, 0) for p in range(parts)], res.describe()

    res = kafka_tools.run("kafka-consumer-groups", "--bootstrap-server", bs, "--reset-offsets",
                          "--group", group, "--topic", topic, "--to-offset", "10", "--execute", timeout=60)
    assert committed(bs, group, topic, parts) == {p: 10 for p in range(parts)}, res.describe()

    res = kafka_tools.run("kafka-consumer-groups", "--bootstrap-server", bs, "--list", timeout=60)
    assert group in res.lines, res.describe()
    res = kafka_tools.run("kafka-consumer-groups", "--bootstrap-server", bs, "--delete",
                          "--group", group, timeout=60)
    res = kafka_tools.run("kafka-consumer-groups", "--bootstrap-server", bs, "--list", timeout=60)
    assert group not in res.lines, res.describe()


# --------------------------------------------------------------------------- aiokafka
@pytest.mark.parametrize("assignor", ["range", "roundrobin"])
def test_aiokafka_group_exactly_once(broker_factory, assignor):
    """Two aiokafka members (range, the default, then roundrobin) share a topic and
    commit after each batch: every record once, committed offsets at the end."""
    import asyncio

    from aiokafka import AIOKafkaConsumer
    from aiokafka.coordinator.assignors.range import RangePartitionAssignor
    from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    b = broker_factory(*FAST)
    topic, group, parts, per = unique("aio"), unique("grp"), 4, 500
    create_topic(b.bootstrap, topic, parts)
    strategy = RangePartitionAssignor if assignor == "range" else RoundRobinPartitionAssignor

    async def main():
        consumers = [AIOKafkaConsumer(topic, bootstrap_servers=b.bootstrap, group_id=group,
                                      enable_auto_commit=False, auto_offset_reset="earliest",
                                      session_timeout_ms=6000, heartbeat_interval_ms=1000,
                                      partition_assignment_strategy=(strategy,))
                     for _ in range(2)]
        for c in consumers:
            await c.start()
        seen: list[list[tuple[int, int]]] = [[], []]
        stop = asyncio.Event()

        async def run(i, c):
            while not stop.is_set():
                batches = await c.getmany(timeout_ms=200, max_records=200)
                for tp, msgs in batches.items():
                    seen[i].extend((m.partition, m.offset) for m in msgs)
                if batches:
                    await c.commit()

        tasks = [asyncio.create_task(run(i, c)) for i, c in enumerate(consumers)]
        try:
            deadline = time.monotonic() + 45
            while not (all(c.assignment() for c in consumers)
                       and sum(len(c.assignment()) for c in consumers) == parts):
                assert time.monotonic() < deadline, "both members assigned"
                assert not any(t.done() for t in tasks), [t.exception() for t in tasks if t.done()]
                await asyncio.sleep(0.1)
            assignments = [{tp.partition for tp in c.assignment()} for c in consumers]
            await asyncio.get_running_loop().run_in_executor(None, produce, b.bootstrap, topic, parts, per)
            deadline = time.monotonic() + 60
            while sum(map(len, seen)) < parts * per:
                assert time.monotonic() < deadline, sum(map(len, seen))
                assert not any(t.done() for t in tasks), [t.exception() for t in tasks if t.done()]
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # nothing more may arrive
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            for c in consumers:
                await c.stop()
        return seen, assignments

    seen, assignments = asyncio.run(main())
    assert all(seen), [len(s) for s in seen]
    got = Counter(r for s in seen for r in s)
    assert set(got) == {(p, o) for p in range(parts) for o in range(per)} and max(got.values()) == 1
    assert sorted(p for a in assignments for p in a) == list(range(parts))
    expected = [{0, 1}, {2, 3}] if assignor == "range" else [{0, 2}, {1, 3}]
    assert sorted(assignments, key=min) == expected
    for i, s in enumerate(seen):
        assert {p for p, _ in s} == assignments[i]
    assert committed(b.bootstrap, group, topic, parts) == {p: per for p in range(parts)}


# --------------------------------------------------------------- cooperative-sticky
class RecordingWorker(Worker):
    """A Worker that subscribes with rebalance callbacks and records them."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.events: list[tuple[str, frozenset[int]]] = []
        topic = a[2]
        self.c.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _on_assign(self, c, tps) -> None:
        self.events.append(("assign", frozenset(tp.partition for tp in tps)))

    def _on_revoke(self, c, tps) -> None:
        self.events.append(("revoke", frozenset(tp.partition for tp in tps)))


def test_cooperative_sticky_incremental_rebalances(broker_factory):
    """Three librdkafka members with cooperative-sticky join one after another.
    Each join is an incremental rebalance: members keep (and keep consuming)
    the partitions they are not asked to give up, and only moved partitions are
    revoked and assigned. Every record is consumed exactly once."""
    b = broker_factory(*FAST)
    topic, group, parts, per = unique("coop"), unique("grp"), 6, 200
    create_topic(b.bootstrap, topic, parts)
    conf = {"partition.assignment.strategy": "cooperative-sticky"}
    workers: list[RecordingWorker] = []
    produced = 0
    try:
        for n in range(1, 4):
            before = [set(w.assigned) for w in workers]
            w = RecordingWorker(b.bootstrap, group, topic, f"w{n}", **conf)
            w.start()
            workers.append(w)
            # two partitions each (6 / n) and everything assigned once
            wait_until(lambda: sorted(p for x in workers for p in x.assigned) == list(range(parts))
                       and all(len(x.assigned) == parts // n for x in workers)
                       or any(x.error for x in workers), 45, f"{n} members balanced")
            assert not any(x.error for x in workers), [x.error for x in workers]
            # sticky: earlier members only lost partitions, never swapped them
            for x, old in zip(workers, before):
                assert x.assigned <= old, (x.name, old, x.assigned)
            produce(b.bootstrap, topic, parts, per, start=produced)
            produced += per
            wait_until(lambda: sum(len(x.seen) for x in workers) >= parts * produced
                       or any(x.error for x in workers), 60, f"{parts * produced} records")
            # the newest member consumed what it was given
            assert {p for p, o, _ in w.seen if o >= produced - per} == w.assigned
        time.sleep(1.0)
        w1_events, w1_final = list(workers[0].events), set(workers[0].assigned)  # before close revokes
    finally:
        for w in workers:
            w.close()
    for w in workers:
        assert w.error is None, w.error
    got = Counter((p, o) for w in workers for p, o, _ in w.seen)
    assert set(got) == {(p, o) for p in range(parts) for o in range(produced)} and max(got.values()) == 1
    # incremental: w1 was assigned everything once, then only saw revocations
    # of moved partitions (never an eager revoke-all followed by re-assign)
    assert w1_events[0] == ("assign", frozenset(range(parts))), w1_events
    assert all(kind == "revoke" for kind, ps in w1_events[1:] if ps), w1_events
    revoked = set().union(*(ps for kind, ps in w1_events if kind == "revoke"))
    assert len(revoked) == 4 and not revoked & w1_final, (revoked, w1_final)
    assert committed(b.bootstrap, group, topic, parts) == {p: produced for p in range(parts)}


# ------------------------------------------------------------------- session expiry
def test_silent_member_is_evicted_and_partitions_move(broker_factory):
    """A raw protocol member joins next to a librdkafka consumer, takes its
    share of partitions, then never heartbeats again: after session.timeout.ms
    the coordinator evicts it and the survivor gets (and consumes) everything."""
    from kafka.protocol.admin import DescribeGroupsRequest

    from tests.e2e.test_group_protocol import join, subscription, sync
    from tests.wire import WireClient

    b = broker_factory(*FAST)
    topic, group, parts = unique("evict"), unique("grp"), 4
    create_topic(b.bootstrap, topic, parts)
    produce(b.bootstrap, topic, parts, 50)
    w = Worker(b.bootstrap, group, topic, "survivor")
    w.start()
    try:
        wait_until(lambda: w.assigned == set(range(parts)), 45, "survivor owns everything")
        r = join(b.port, group)
        assert r.error_code == 79  # MEMBER_ID_REQUIRED
        r = join(b.port, group, r.member_id, protocols=[("range", subscription(topic))])
        assert r.error_code == 0 and r.leader != r.member_id
        silent = r.member_id
        s = sync(b.port, group, r.generation_id, silent)
        assert s.error_code == 0 and s.assignment  # the leader gave it a share
        wait_until(lambda: len(w.assigned) == parts // 2, 20, "survivor gave up half")
        last_heartbeat = time.monotonic()
        with WireClient(b.port) as c:
            d = c.request(DescribeGroupsRequest(groups=[group], include_authorized_operations=False), version=5)
            assert silent in {m.member_id for m in d.groups[0].members}
        wait_until(lambda: w.assigned == set(range(parts)), 30, "survivor owns everything again")
        evicted_after = time.monotonic() - last_heartbeat
        with WireClient(b.port) as c:
            d = c.request(DescribeGroupsRequest(groups=[group], include_authorized_operations=False), version=5)
            assert silent not in {m.member_id for m in d.groups[0].members}
            assert d.groups[0].group_state == "Stable" and len(d.groups[0].members) == 1
        # session timeout is 6 s; the rebalance itself takes at most ~a heartbeat interval more
        assert 5.0 <= evicted_after <= 20, evicted_after
        assert "session expired" in b.log_text()
        # the survivor consumed every record, including the evicted member's share
        produce(b.bootstrap, topic, parts, 50, start=50)
        wait_until(lambda: {(p, o) for p, o, _ in w.seen} >= {(p, o) for p in range(parts) for o in range(100)},
                   30, "all records")
    finally:
        w.close()
    assert w.error is None, w.error


# ---------------------------------------------------------------- static membership
def test_static_member_restart_without_rebalance(broker_factory):
    """Two static members (group.instance.id). One closes (a static member sends
    no LeaveGroup) and a new consumer with the same instance id starts within
    session.timeout.ms: it gets the same partitions back, the other member sees
    no rebalance, and the generation stays the same."""
    b = broker_factory(*FAST)
    topic, group, parts = unique("static"), unique("grp"), 4
    create_topic(b.bootstrap, topic, parts)
    produce(b.bootstrap, topic, parts, 20)
    conf = {"session.timeout.ms": 30000}
    w1 = RecordingWorker(b.bootstrap, group, topic, "w1", **{"group.instance.id": "inst-1", **conf})
    w1.start()
    w2 = w2b = None
    try:
        wait_until(lambda: w1.assigned == set(range(parts)), 45, "w1 owns everything")
        w2 = RecordingWorker(b.bootstrap, group, topic, "w2", **{"group.instance.id": "inst-2", **conf})
        w2.start()
        wait_until(lambda: len(w1.assigned) == len(w2.assigned) == parts // 2, 45, "balanced")
        wait_until(lambda: len(w1.seen) + len(w2.seen) == parts * 20, 30, "first records")
        w1_events, w2_assigned = list(w1.events), set(w2.assigned)
        generations = b.log_text().count(f"group {group}: generation ")
        w2.close()
        w2b = RecordingWorker(b.bootstrap, group, topic, "w2b", **{"group.instance.id": "inst-2", **conf})
        w2b.start()
        wait_until(lambda: w2b.assigned == w2_assigned, 30, "restarted member has its partitions back")
        produce(b.bootstrap, topic, parts, 20, start=20)
        wait_until(lambda: len(w1.seen) + len(w2.seen) + len(w2b.seen) == parts * 40, 30, "second records")
        time.sleep(2.0)  # a few heartbeats: a rebalance would show now
        assert w1.events == w1_events  # w1's rebalance callbacks were not called again
        assert b.log_text().count(f"group {group}: generation ") == generations
        assert "without rebalance" in b.log_text()
        assert_stable_with_instances(b.bootstrap, group, ["inst-1", "inst-2"])
    finally:
        for w in (w1, w2, w2b):
            if w is not None and w.is_alive():
                w.close()
    for w in (w1, w2, w2b):
        assert w.error is None, w.error
    got = Counter((p, o) for w in (w1, w2, w2b) for p, o, _ in w.seen)
    assert set(got) == {(p, o) for p in range(parts) for o in range(40)} and max(got.values()) == 1
    # w2b resumed from w2's commits
    assert {p for p, o, _ in w2b.seen} == w2_assigned and min(o for _, o, _ in w2b.seen) == 20


# ------------------------------------------------------------ kafka-python members
def assert_stable_with_instances(bootstrap: str, group: str, instance_ids: list[str]) -> None:
    """DescribeGroups (confluent's admin): Stable, with exactly these static members."""
    a = admin(bootstrap)  # must outlive the future
    desc = a.describe_consumer_groups([group], request_timeout=15)[group].result(15)
    assert desc.state == ConsumerGroupState.STABLE
    assert sorted(m.group_instance_id for m in desc.members) == sorted(instance_ids)


def assert_each_read_once(members, parts: int, per_partition: int) -> None:
    """Between them the members read offsets 0..per_partition-1 of every partition,
    each exactly once, with the values ``produce`` wrote."""
    got = Counter((p, o) for m in members for p, o, _ in m.seen)
    assert set(got) == {(p, o) for p in range(parts) for o in range(per_partition)}, len(got)
    assert max(got.values()) == 1, [k for k, n in got.items() if n > 1][:5]
    assert all(v == f"{p}:{o}".encode() for m in members for p, o, v in m.seen)


def recording_listener(base: type, events: list) -> object:
    """A rebalance listener (kafka-python's or aiokafka's ``base``) that records
    ("revoke" | "assign", partitions) in ``events``."""
    class Listener(base):
        def on_partitions_revoked(self, revoked):
            events.append(("revoke", frozenset(tp.partition for tp in revoked)))

        def on_partitions_assigned(self, assigned):
            events.append(("assign", frozenset(tp.partition for tp in assigned)))
    return Listener()


class KafkaPythonWorker(Worker):
    """A Worker backed by kafka-python's KafkaConsumer: polls, records, commits
    synchronously after each batch; a rebalance listener records callbacks."""

    def __init__(self, bootstrap: str, group: str, topic: str, name: str, assignor) -> None:
        from kafka import KafkaConsumer
        from kafka.consumer.subscription_state import ConsumerRebalanceListener
        threading.Thread.__init__(self, daemon=True, name=name)
        self.seen: list[tuple[int, int, bytes]] = []
        self.stop_flag = threading.Event()
        self.error: BaseException | None = None
        self.assigned: set[int] = set()
        self.events: list[tuple[str, frozenset[int]]] = []

        self.c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                               enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=1000,
                               partition_assignment_strategy=(assignor,))
        self.c.subscribe([topic], listener=recording_listener(ConsumerRebalanceListener, self.events))

    def run(self) -> None:
        try:
            while not self.stop_flag.is_set():
                batch = self.c.poll(timeout_ms=200, max_records=500)
                msgs = [m for ms in batch.values() for m in ms]
                if msgs:
                    self.seen.extend((m.partition, m.offset, m.value) for m in msgs)
                    self.c.commit()  # synchronous
                self.assigned = {tp.partition for tp in self.c.assignment()}
        except BaseException as exc:  # surfaced by the test
            self.error = exc


@pytest.mark.parametrize("assignor", ["cooperative-sticky", "range", "roundrobin"])
def test_kafka_python_three_members_then_one_leaves(broker_factory, assignor):
    """Three kafka-python members share 6 partitions (2 each) and read every
    record once with synchronous commits; one closes (LeaveGroup) and the two
    others take over its partitions and read what is produced afterwards.
    cooperative-sticky: the survivors keep their partitions and are never asked
    to revoke any; range / roundrobin: the usual eager placement."""
    from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    strategy = {"cooperative-sticky": CooperativeStickyAssignor, "range": RangePartitionAssignor,
                "roundrobin": RoundRobinPartitionAssignor}[assignor]
    b = broker_factory("group.initial.rebalance.delay.ms=1500")
    topic, group, parts, per = unique("kp3"), unique("grp"), 6, 150
    create_topic(b.bootstrap, topic, parts)
    workers = [KafkaPythonWorker(b.bootstrap, group, topic, f"w{i}", strategy) for i in range(3)]
    for w in workers:
        w.start()
    leaver, survivors = workers[2], workers[:2]
    try:
        wait_until(lambda: sorted(p for w in workers for p in w.assigned) == list(range(parts))
                   and all(len(w.assigned) == 2 for w in workers) or any(w.error for w in workers),
                   45, "two partitions each")
        assert not any(w.error for w in workers), [w.error for w in workers]
        first = [set(w.assigned) for w in workers]
        produce(b.bootstrap, topic, parts, per)
        wait_until(lambda: sum(len(w.seen) for w in workers) >= parts * per or any(w.error for w in workers),
                   60, f"{parts * per} records")
        events_before = [len(w.events) for w in survivors]
        leaver.close()
        wait_until(lambda: sorted(p for w in survivors for p in w.assigned) == list(range(parts))
                   and all(len(w.assigned) == 3 for w in survivors) or any(w.error for w in survivors),
                   30, "survivors own every partition")
        assert not any(w.error for w in survivors), [w.error for w in survivors]
        second = [set(w.assigned) for w in survivors]
        produce(b.bootstrap, topic, parts, per, start=per)
        wait_until(lambda: sum(len(w.seen) for w in workers) >= 2 * parts * per
                   or any(w.error for w in workers), 60, f"{2 * parts * per} records")
        time.sleep(1.0)  # nothing more may arrive
        later_events = [w.events[n:] for w, n in zip(survivors, events_before)]
    finally:
        for w in workers:
            if w.is_alive():
                w.close()
    for w in workers:
        assert w.error is None, (w.name, w.error)
    assert_each_read_once(workers, parts, 2 * per)
    # before the leave each member read its own partitions; after it the survivors read all
    for w, mine in zip(workers, first):
        assert {p for p, o, _ in w.seen if o < per} == mine, (w.name, mine)
    for w, mine in zip(survivors, second):
        assert {p for p, o, _ in w.seen if o >= per} == mine, (w.name, mine)
    assert not [r for r in leaver.seen if r[1] >= per]
    if assignor == "cooperative-sticky":
        for mine_before, mine_after, ev in zip(first, second, later_events):
            assert mine_before < mine_after  # kept its two, gained one of the leaver's
            assert not [ps for kind, ps in ev if kind == "revoke" and ps], ev
            assert ("assign", frozenset(mine_after - mine_before)) in ev, ev
    else:
        expected = {"range": [{0, 1}, {2, 3}, {4, 5}], "roundrobin": [{0, 3}, {1, 4}, {2, 5}]}[assignor]
        assert sorted(first, key=min) == expected
        expected = {"range": [{0, 1, 2}, {3, 4, 5}], "roundrobin": [{0, 2, 4}, {1, 3, 5}]}[assignor]
        assert sorted(second, key=min) == expected
    assert committed(b.bootstrap, group, topic, parts) == {p: 2 * per for p in range(parts)}


# ------------------------------------------------------------- aiokafka: leave, static
class AioMember:
    """An aiokafka group member: a task fetches, records and commits after each
    batch (stopped between batches, so all it read is committed); a rebalance
    listener records the callbacks."""

    def __init__(self, bootstrap: str, group: str, topic: str, name: str, strategy=None, **extra) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.abc import ConsumerRebalanceListener
        from aiokafka.coordinator.assignors.range import RangePartitionAssignor
        self.name = name
        self.seen: list[tuple[int, int, bytes]] = []
        self.events: list[tuple[str, frozenset[int]]] = []
        self.stopping = False
        self.task = None

        conf = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000, **extra}
        self.c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                  auto_offset_reset="earliest",
                                  partition_assignment_strategy=(strategy or RangePartitionAssignor,), **conf)
        self.c.subscribe([topic], listener=recording_listener(ConsumerRebalanceListener, self.events))

    async def start(self) -> "AioMember":
        import asyncio
        await self.c.start()
        self.task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while not self.stopping:
            batches = await self.c.getmany(timeout_ms=200, max_records=200)
            for msgs in batches.values():
                self.seen.extend((m.partition, m.offset, m.value) for m in msgs)
            if batches:
                await self.c.commit()

    @property
    def assigned(self) -> set[int]:
        return {tp.partition for tp in self.c.assignment()}

    def check(self) -> None:
        if self.task is not None and self.task.done():
            self.task.result()  # raises what the member failed with

    async def stop(self) -> None:
        self.stopping = True
        if self.task is not None:
            await self.task
        await self.c.stop()  # LeaveGroup unless group_instance_id is set


async def _await_until(cond, timeout: float, what: str, members) -> None:
    import asyncio
    deadline = time.monotonic() + timeout
    while not cond():
        for m in members:
            m.check()
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def _produce_async(*args, **kw) -> None:
    import asyncio
    import functools
    await asyncio.get_running_loop().run_in_executor(None, functools.partial(produce, *args, **kw))


def test_aiokafka_sticky_member_leaves(broker_factory):
    """Three aiokafka members with the sticky assignor over 6 partitions read
    every record once; one stops (LeaveGroup): each survivor keeps its two
    partitions and gains one of the leaver's, and reads the records produced
    afterwards. Committed offsets end at the log end."""
    import asyncio

    from aiokafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
    b = broker_factory("group.initial.rebalance.delay.ms=1500")
    topic, group, parts, per = unique("aiost"), unique("grp"), 6, 150
    create_topic(b.bootstrap, topic, parts)

    async def main():
        # aiokafka's sticky assignor keeps the previous assignment it reports in
        # class attributes: members in one process need their own subclass.
        members = [AioMember(b.bootstrap, group, topic, f"m{i}",
                             type(f"Sticky{i}", (StickyPartitionAssignor,), {})) for i in range(3)]
        await asyncio.gather(*(m.start() for m in members))
        leaver, survivors = members[2], members[:2]
        try:
            await _await_until(lambda: sorted(p for m in members for p in m.assigned) == list(range(parts))
                               and all(len(m.assigned) == 2 for m in members), 45, "two each", members)
            first = [m.assigned for m in members]
            await _produce_async(b.bootstrap, topic, parts, per)
            await _await_until(lambda: sum(len(m.seen) for m in members) >= parts * per, 60,
                               f"{parts * per} records", members)
            await leaver.stop()
            await _await_until(lambda: sorted(p for m in survivors for p in m.assigned) == list(range(parts))
                               and all(len(m.assigned) == 3 for m in survivors), 30,
                               "survivors own every partition", survivors)
            second = [m.assigned for m in survivors]
            await _produce_async(b.bootstrap, topic, parts, per, start=per)
            await _await_until(lambda: sum(len(m.seen) for m in members) >= 2 * parts * per, 60,
                               f"{2 * parts * per} records", survivors)
            await asyncio.sleep(1.0)  # nothing more may arrive
            for m in survivors:
                m.check()
        finally:
            for m in members:
                if not m.stopping:
                    await m.stop()
        return members, first, second

    members, first, second = asyncio.run(main())
    assert_each_read_once(members, parts, 2 * per)
    for m, mine in zip(members, first):
        assert {p for p, o, _ in m.seen if o < per} == mine, (m.name, mine)
    for m, mine_before, mine in zip(members, first, second):
        assert mine_before < mine, (m.name, mine_before, mine)  # sticky: kept its own
        assert {p for p, o, _ in m.seen if o >= per} == mine, (m.name, mine)
    assert not [r for r in members[2].seen if r[1] >= per]
    assert committed(b.bootstrap, group, topic, parts) == {p: 2 * per for p in range(parts)}


def test_aiokafka_static_member_restart_without_rebalance(broker_factory):
    """Two static aiokafka members (group_instance_id). One stops (aiokafka sends
    no LeaveGroup for a static member) and a new consumer with the same instance
    id starts: it joins into the same generation with the same partitions, the
    other member's rebalance listener is not called again, and the restarted
    member resumes from the committed offsets."""
    import asyncio

    b = broker_factory(*FAST)
    topic, group, parts, per = unique("aiostatic"), unique("grp"), 4, 100
    create_topic(b.bootstrap, topic, parts)
    conf = {"session_timeout_ms": 30000}

    async def main():
        m1 = await AioMember(b.bootstrap, group, topic, "m1", group_instance_id="inst-1", **conf).start()
        m2 = m2b = None
        try:
            await _await_until(lambda: m1.assigned == set(range(parts)), 45, "m1 owns everything", [m1])
            m2 = await AioMember(b.bootstrap, group, topic, "m2", group_instance_id="inst-2", **conf).start()
            await _await_until(lambda: len(m1.assigned) == len(m2.assigned) == parts // 2, 45, "balanced",
                               [m1, m2])
            await _produce_async(b.bootstrap, topic, parts, per)
            await _await_until(lambda: len(m1.seen) + len(m2.seen) == parts * per, 30, "first records",
                               [m1, m2])
            generation = m1.c._coordinator.generation
            assert m2.c._coordinator.generation == generation
            m1_events, m2_assigned = list(m1.events), m2.assigned
            joins = b.log_text().count(f"group {group}: generation ")
            await m2.stop()
            m2b = await AioMember(b.bootstrap, group, topic, "m2b", group_instance_id="inst-2", **conf).start()
            await _await_until(lambda: m2b.assigned == m2_assigned, 30, "m2b has m2's partitions", [m1, m2b])
            await _produce_async(b.bootstrap, topic, parts, per, start=per)
            await _await_until(lambda: len(m1.seen) + len(m2.seen) + len(m2b.seen) == 2 * parts * per, 30,
                               "second records", [m1, m2b])
            await asyncio.sleep(2.0)  # a few heartbeats: a rebalance would show now
            m1.check()
            m2b.check()
            assert m1.events == m1_events  # no rebalance callbacks on the other member
            assert [e for e in m2b.events if e[1]] == [("assign", frozenset(m2_assigned))]
            assert m1.c._coordinator.generation == m2b.c._coordinator.generation == generation
            assert m1.assigned | m2b.assigned == set(range(parts))
            assert b.log_text().count(f"group {group}: generation ") == joins
            assert_stable_with_instances(b.bootstrap, group, ["inst-1", "inst-2"])
        finally:
            for m in (m1, m2, m2b):
                if m is not None and not m.stopping:
                    await m.stop()
        return m1, m2, m2b, m2_assigned

    m1, m2, m2b, m2_assigned = asyncio.run(main())
    got = Counter((p, o) for m in (m1, m2, m2b) for p, o, _ in m.seen)
    assert set(got) == {(p, o) for p in range(parts) for o in range(2 * per)} and max(got.values()) == 1
    # m2b resumed from m2's commits
    assert {p for p, o, _ in m2b.seen} == m2_assigned and min(o for _, o, _ in m2b.seen) == per
