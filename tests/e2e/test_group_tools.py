"""End-to-end: consumer-group tooling against Sluice.

* kcat 1.7.1's balanced consumer mode (``-G group topic``) reads every record
  exactly once and, on exit with ``-e``, its final auto-commit (librdkafka commits
  stored offsets in ``rd_kafka_consumer_close``) leaves the committed offsets
  equal to the log end offsets. A second ``-G`` run without ``-o`` resumes there and
  reads nothing. (Observed: kcat's ``-o beginning`` in ``-G`` mode forces the start
  offset of each assigned partition, so a rerun *with* it rereads everything despite
  the commit -- kcat behaviour, not the broker's.)
* kafka-python 3.0.12's ``KafkaAdminClient`` group operations. In 3.x these are
  named ``list_groups`` / ``describe_groups`` / ``list_group_offsets`` /
  ``alter_group_offsets`` / ``delete_groups`` (the 2.x ``*_consumer_group*``
  names no longer exist), exercised on a group that a kafka-python
  ``KafkaConsumer`` joined and committed for.
* Rewind-to-timestamp recovery: records produced in two phases with explicit
  CreateTime timestamps; after the group consumed everything and stopped, the
  offsets for the phase-B timestamp are looked up (ListOffsets by timestamp) and
  written with AlterConsumerGroupOffsets; a restarted group member replays exactly
  the phase-B records.
* Resetting a stopped group to EARLIEST / LATEST (confluent's ListOffsets +
  AlterConsumerGroupOffsets, as kafka-consumer-groups does; kafka-python's
  ``reset_group_offsets``, also to a timestamp) after DeleteRecords moved the log
  start; a new member replays exactly the records from the reset point on.
* kafka-python's ``delete_group_offsets`` (OffsetDelete): refused while a member
  subscribes to the topic, then the partition is read again from the start.
"""
from __future__ import annotations

import subprocess
import time
import uuid
from collections import Counter

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

pytestmark = pytest.mark.timeout(120)

FAST = ("group.initial.rebalance.delay.ms=0",)
KCAT = "/usr/bin/kcat"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    a = admin(bootstrap)  # keep a reference: the futures die with the handle
    fs = a.create_topics([NewTopic(name, partitions, 1)], operation_timeout=10, request_timeout=15)
    fs[name].result(15)


def produce(bootstrap: str, topic: str, partitions: int, per_partition: int,
            prefix: str = "", timestamp: int | None = None) -> list[str]:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    values = []
    for seq in range(per_partition):
        for part in range(partitions):
            v = f"{prefix}{part}:{seq}"
            values.append(v)
            kw = {"timestamp": timestamp} if timestamp is not None else {}
            p.produce(topic, value=v.encode(), partition=part, **kw)
        if seq % 200 == 0:
            p.poll(0)
    assert p.flush(30) == 0
    return values


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    a = admin(bootstrap)
    fs = a.list_offsets(
        {TopicPartition(topic, p): OffsetSpec.latest() for p in range(partitions)},
        request_timeout=15)
    return {tp.partition: f.result(15).offset for tp, f in fs.items()}


def committed_confluent(bootstrap: str, group: str) -> dict[int, int]:
    from confluent_kafka import ConsumerGroupTopicPartitions
    a = admin(bootstrap)
    fs = a.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)], request_timeout=15)
    res = fs[group].result(15)
    return {tp.partition: tp.offset for tp in res.topic_partitions}


# --------------------------------------------------------------------------- 1. kcat -G

def test_kcat_balanced_consumer_reads_all_once_and_commits(broker_factory):
    b = broker_factory(*FAST)
    topic, group, parts, per = unique("kcatg"), unique("kcat-grp"), 3, 1000
    create_topic(b.bootstrap, topic, parts)
    produce(b.bootstrap, topic, parts, per)
    n = parts * per

    proc = subprocess.run(
        [KCAT, "-b", b.bootstrap, "-G", group, topic, "-o", "beginning", "-e", "-q",
         "-f", "%p %o %s\n",
         "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=1000"],
        capture_output=True, timeout=60, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == n, (len(lines), proc.stderr[-2000:])

    pos = Counter()
    vals = Counter()
    for ln in lines:
        p, o, s = ln.split(" ", 2)
        pos[(int(p), int(o))] += 1
        vals[s] += 1
        assert s.startswith(f"{p}:"), ln
    assert all(c == 1 for c in pos.values())
    assert set(pos) == {(p, o) for p in range(parts) for o in range(per)}
    assert set(vals) == {f"{p}:{s}" for p in range(parts) for s in range(per)}
    assert all(c == 1 for c in vals.values())

    ends = end_offsets(b.bootstrap, topic, parts)
    assert ends == {p: per for p in range(parts)}
    assert committed_confluent(b.bootstrap, group) == ends

    # A second kcat run in the same group (no -o: kcat's -o in -G mode forces the start
    # offset of every assigned partition, overriding the committed ones) resumes at the
    # committed offsets: nothing left to read.
    proc2 = subprocess.run(
        [KCAT, "-b", b.bootstrap, "-G", group, topic, "-e", "-q",
         "-f", "%p %o %s\n", "-X", "session.timeout.ms=6000"],
        capture_output=True, timeout=60, text=True)
    assert proc2.returncode == 0, proc2.stderr[-2000:]
    assert [ln for ln in proc2.stdout.splitlines() if ln.strip()] == []


# --------------------------------------------------------------------------- 2. kafka-python admin

def test_kafka_python_admin_group_operations(broker_factory):
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    from kafka.admin import KafkaAdminClient
    from kafka.structs import OffsetAndMetadata

    b = broker_factory(*FAST)
    topic, group, parts, per = unique("kpadm"), unique("kp-grp"), 2, 50
    create_topic(b.bootstrap, topic, parts)
    produce(b.bootstrap, topic, parts, per)

    c = KafkaConsumer(topic, bootstrap_servers=b.bootstrap, group_id=group,
                      auto_offset_reset="earliest", enable_auto_commit=False,
                      session_timeout_ms=6000, heartbeat_interval_ms=1000,
                      consumer_timeout_ms=1000)
    a = KafkaAdminClient(bootstrap_servers=b.bootstrap, request_timeout_ms=15000)
    try:
        got = 0
        deadline = time.monotonic() + 30
        while got < parts * per and time.monotonic() < deadline:
            batch = c.poll(timeout_ms=500)
            got += sum(len(v) for v in batch.values())
        assert got == parts * per
        c.commit()

        # While the member is active: listed, described as Stable with one member.
        groups = a.list_groups()
        mine = [g for g in groups if g["group_id"] == group]
        assert len(mine) == 1, groups
        assert mine[0]["protocol_type"] == "consumer" and mine[0]["group_state"] == "Stable"
        d = a.describe_groups([group])[group]
        assert d["error"] is None, d
        assert d["group_state"] == "Stable", d
        assert d["protocol_type"] == "consumer" and d["protocol_data"] == "range", d
        assert len(d["members"]) == 1, d
        m = d["members"][0]
        assert m["member_metadata"]["topics"] == [topic], m
        assert m["member_assignment"]["assigned_partitions"] == \
            [{"topic": topic, "partitions": list(range(parts))}], m

        offs = a.list_group_offsets({group: None})[group]
        assert {tp: om.offset for tp, om in offs.items()} == \
            {KTP(topic, p): per for p in range(parts)}
    finally:
        c.close()

    # Group now empty: alter offsets, read them back.
    d = a.describe_groups([group])[group]
    assert d["group_state"] == "Empty" and d["members"] == [], d

    res = a.alter_group_offsets(group, {KTP(topic, 0): OffsetAndMetadata(10, "", -1),
                                        KTP(topic, 1): OffsetAndMetadata(20, "", -1)})
    assert set(res) == {KTP(topic, 0), KTP(topic, 1)}, res
    assert all(getattr(e, "errno", None) == 0 for e in res.values()), res
    offs = a.list_group_offsets({group: None})[group]
    assert {tp: om.offset for tp, om in offs.items()} == {KTP(topic, 0): 10, KTP(topic, 1): 20}

    # Delete the group; it disappears from the listing and has no offsets.
    res = a.delete_groups([group])
    assert list(res) == [group] and str(res[group]) == "OK", res
    assert group not in {g["group_id"] for g in a.list_groups()}
    offs = a.list_group_offsets({group: None})[group]
    assert {tp: om.offset for tp, om in offs.items() if om.offset >= 0} == {}
    a.close()


# --------------------------------------------------------------------------- 3. rewind to timestamp

def _drain(c: Consumer, want: int, seconds: float = 30) -> list:
    out = []
    deadline = time.monotonic() + seconds
    while len(out) < want and time.monotonic() < deadline:
        for m in c.consume(num_messages=500, timeout=0.3):
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(m.error())
            out.append(m)
    return out


def test_rewind_group_to_timestamp(broker_factory):
    from confluent_kafka import ConsumerGroupTopicPartitions

    b = broker_factory(*FAST)
    topic, group, parts, per = unique("rewind"), unique("rw-grp"), 3, 200
    create_topic(b.bootstrap, topic, parts)
    t0 = int(time.time() * 1000) - 600_000
    t1 = t0 + 60_000
    phase_a = produce(b.bootstrap, topic, parts, per, prefix="A", timestamp=t0)
    phase_b = produce(b.bootstrap, topic, parts, per, prefix="B", timestamp=t1)

    conf = {"bootstrap.servers": b.bootstrap, "group.id": group,
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000,
            "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    c = Consumer(conf)
    c.subscribe([topic])
    msgs = _drain(c, len(phase_a) + len(phase_b))
    assert sorted(m.value().decode() for m in msgs) == sorted(phase_a + phase_b)
    assert {m.timestamp()[1] for m in msgs} == {t0, t1}
    c.commit(asynchronous=False)
    c.close()
    assert committed_confluent(b.bootstrap, group) == {p: 2 * per for p in range(parts)}

    # Group stopped: find offsets for phase B's timestamp, rewind the group to them.
    a = admin(b.bootstrap)
    fs = a.list_offsets({TopicPartition(topic, p): OffsetSpec.for_timestamp(t1)
                         for p in range(parts)}, request_timeout=15)
    targets = {tp.partition: f.result(15).offset for tp, f in fs.items()}
    assert targets == {p: per for p in range(parts)}
    # Cross-check with the consumer-side API.
    probe = Consumer({"bootstrap.servers": b.bootstrap, "group.id": unique("probe")})
    fft = probe.offsets_for_times([TopicPartition(topic, p, t1) for p in range(parts)], timeout=15)
    probe.close()
    assert {tp.partition: tp.offset for tp in fft} == targets

    fs = a.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, p, o) for p, o in targets.items()])], request_timeout=15)
    res = fs[group].result(15)
    assert all(tp.error is None for tp in res.topic_partitions), res.topic_partitions
    assert committed_confluent(b.bootstrap, group) == targets

    # Restart a member: it replays exactly phase B.
    c = Consumer(conf)
    c.subscribe([topic])
    replay = _drain(c, len(phase_b))
    extra = _drain(c, 1, seconds=2)
    c.close()
    vals = [m.value().decode() for m in replay + extra]
    assert len(vals) == len(phase_b)
    assert sorted(vals) == sorted(phase_b)
    assert all(m.timestamp()[1] == t1 for m in replay)


# --------------------------------------------------------------------------- 4. reset offsets

def _consume_values(bootstrap: str, group: str, topic: str, want: int) -> list[tuple[int, int, str]]:
    """A member of ``group`` reads ``want`` records, then checks that nothing more arrives."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    try:
        msgs = _drain(c, want)
        msgs += _drain(c, 1, seconds=2)  # nothing beyond what is expected
    finally:
        c.close()
    return [(m.partition(), m.offset(), m.value().decode()) for m in msgs]


@pytest.mark.parametrize("client,spec", [("confluent", "earliest"), ("confluent", "latest"),
                                         ("kafka-python", "earliest"), ("kafka-python", "latest"),
                                         ("kafka-python", "timestamp")])
def test_reset_group_offsets(broker_factory, client, spec):
    """Reset a stopped group's offsets to EARLIEST / LATEST / a timestamp: with
    confluent's AdminClient as kafka-consumer-groups does it (ListOffsets, then
    AlterConsumerGroupOffsets), or with kafka-python's reset_group_offsets. The
    log start was moved by DeleteRecords (so EARLIEST is not 0) and the group sat
    in the middle of phase A. After the reset, phase C is produced and a new member
    replays exactly the records from the reset point on."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    b = broker_factory(*FAST)
    bs = b.bootstrap
    topic, group, parts, per, start = unique("reset"), unique("rs-grp"), 3, 200, 20
    create_topic(bs, topic, parts)
    t0 = int(time.time() * 1000) - 600_000
    t1 = t0 + 60_000
    produce(bs, topic, parts, per, prefix="A", timestamp=t0)
    produce(bs, topic, parts, per, prefix="B", timestamp=t1)
    log = {p: [f"A{p}:{s}" for s in range(per)] + [f"B{p}:{s}" for s in range(per)] +
           [f"C{p}:{s}" for s in range(50)] for p in range(parts)}
    a = admin(bs)
    fs = a.delete_records([TopicPartition(topic, p, start) for p in range(parts)], request_timeout=15)
    assert {tp.partition: f.result(15).low_watermark for tp, f in fs.items()} == \
        {p: start for p in range(parts)}

    # the group reads from the log start and commits a position in phase A
    c = Consumer({"bootstrap.servers": bs, "group.id": group, "session.timeout.ms": 6000,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    msgs = _drain(c, parts * (2 * per - start))
    assert sorted((m.partition(), m.offset()) for m in msgs) == \
        [(p, o) for p in range(parts) for o in range(start, 2 * per)]
    mid = {p: 100 + p for p in range(parts)}
    c.commit(offsets=[TopicPartition(topic, p, o) for p, o in mid.items()], asynchronous=False)
    c.close()
    assert committed_confluent(bs, group) == mid

    target = {"earliest": start, "latest": 2 * per, "timestamp": per}[spec]
    if client == "confluent":
        offset_spec = OffsetSpec.earliest() if spec == "earliest" else OffsetSpec.latest()
        fs = a.list_offsets({TopicPartition(topic, p): offset_spec for p in range(parts)}, request_timeout=15)
        found = {tp.partition: f.result(15).offset for tp, f in fs.items()}
        assert found == {p: target for p in range(parts)}
        fs = a.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(
            group, [TopicPartition(topic, p, o) for p, o in found.items()])], request_timeout=15)
        res = fs[group].result(15)
        assert all(tp.error is None for tp in res.topic_partitions), res.topic_partitions
    else:
        from kafka import TopicPartition as KTP
        from kafka.admin import KafkaAdminClient, OffsetTimestamp
        from kafka.admin import OffsetSpec as KOffsetSpec
        kspec = {"earliest": KOffsetSpec.EARLIEST, "latest": KOffsetSpec.LATEST,
                 "timestamp": OffsetTimestamp(t1)}[spec]
        ka = KafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=15000)
        try:
            res = ka.reset_group_offsets(group, {KTP(topic, p): kspec for p in range(parts)})
            assert {tp.partition: (r["error"].errno, r["offset"]) for tp, r in res.items()} == \
                {p: (0, target) for p in range(parts)}, res
            offs = ka.list_group_offsets({group: None})[group]
            assert {tp.partition: om.offset for tp, om in offs.items()} == {p: target for p in range(parts)}
        finally:
            ka.close()
    assert committed_confluent(bs, group) == {p: target for p in range(parts)}

    produce(bs, topic, parts, 50, prefix="C")
    got = _consume_values(bs, group, topic, parts * (len(log[0]) - target))
    assert sorted(got) == [(p, o, log[p][o]) for p in range(parts) for o in range(target, len(log[p]))]


# --------------------------------------------------------------------------- 5. delete offsets

def test_kafka_python_delete_group_offsets(broker_factory):
    """kafka-python's delete_group_offsets (OffsetDelete): refused per partition
    (GROUP_SUBSCRIBED_TO_TOPIC) while a member subscribes to the topic; once the
    group is empty, the partition's offset is gone, the other one is kept, and a
    new member reads that partition again from the start (auto.offset.reset)."""
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    from kafka import errors as Errors
    from kafka.admin import KafkaAdminClient

    b = broker_factory(*FAST)
    bs = b.bootstrap
    topic, group, parts, per = unique("kpdel"), unique("kd-grp"), 2, 300
    create_topic(bs, topic, parts)
    values = produce(bs, topic, parts, per)
    kc = KafkaConsumer(topic, bootstrap_servers=bs, group_id=group,
                       auto_offset_reset="earliest", enable_auto_commit=False,
                       session_timeout_ms=6000, heartbeat_interval_ms=1000)
    a = KafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=15000)
    try:
        got = []
        deadline = time.monotonic() + 30
        while len(got) < len(values) and time.monotonic() < deadline:
            got += [m.value.decode() for ms in kc.poll(timeout_ms=500).values() for m in ms]
        assert sorted(got) == sorted(values)
        kc.commit()
        assert committed_confluent(bs, group) == {p: per for p in range(parts)}
        res = a.delete_group_offsets(group, [KTP(topic, 0)])
        assert res == {KTP(topic, 0): Errors.GroupSubscribedToTopicError}, res
        assert committed_confluent(bs, group) == {p: per for p in range(parts)}
    finally:
        kc.close()  # LeaveGroup: the group is empty now

    try:
        res = a.delete_group_offsets(group, [KTP(topic, 0)])
        assert res == {KTP(topic, 0): Errors.NoError}, res
        offs = a.list_group_offsets({group: None})[group]
        assert {tp: om.offset for tp, om in offs.items()} == {KTP(topic, 1): per}
        with pytest.raises(Errors.GroupIdNotFoundError):
            a.delete_group_offsets(unique("no-such-grp"), [KTP(topic, 0)])
    finally:
        a.close()
    got = _consume_values(bs, group, topic, per)
    assert sorted(got) == [(0, o, f"0:{o}") for o in range(per)]
