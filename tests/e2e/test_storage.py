"""Shared storage end to end, on real MinIO: the bucket is the partition's home.

- 200 MB over 8 partitions survives a restart with the data dir wiped, byte
  for byte, read from offset 0 (segments from the manifest, ranged GETs) and
  from the middle (block cache and readahead);
- a consumer at the tail is served from the tail cache: zero object reads;
- retention (retention.ms, retention.bytes) and DeleteRecords advance the log
  start, survive an empty data dir, and garbage collection deletes the objects;
- topic configs and consumer-group offsets come back from the bucket alone;
- catch-up Fetch answers are paced by the remote fetch quota.
"""
from __future__ import annotations

import hashlib
import os
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from tests.e2e.test_crash import wait_until
from tests.e2e.test_metrics import _scrape as scrape

pytestmark = pytest.mark.minio


def metric(port: int, name: str, **labels) -> float:
    return scrape(port).get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def s3_broker(broker_factory, minio, minio_bucket):
    """Start brokers on the session MinIO's fresh bucket, with metrics."""
    def make(*overrides: str, name: str = "broker"):
        b = broker_factory(*overrides, name=name, env=minio.env(),
                           extra_args=["--object-store", f"s3://{minio_bucket}",
                                       "--metrics", "127.0.0.1:0"])
        return b
    make.bucket = minio_bucket
    make.minio = minio
    return make


def restart_empty(b) -> None:
    """Clean shutdown (uploads everything), delete the data dir, start again."""
    assert b.stop() == 0, b.log_text()[-2000:]
    b.wipe()
    b.start()


def digest(key: bytes | None, value: bytes | None) -> bytes:
    return hashlib.sha1((key or b"") + b"\0" + (value or b"")).digest()


def produce_acked(bootstrap: str, topic: str, partitions: int, total_bytes: int,
                  value_size: int = 1000) -> dict[int, dict[int, bytes]]:
    """Produce distinct records round-robin; returns {partition: {offset: digest}} of the acked."""
    pool = os.urandom(1 << 20)
    acked: dict[int, dict[int, bytes]] = {p: {} for p in range(partitions)}
    errors = []

    def report(err, msg):
        if err is not None:
            errors.append(err)
        else:
            acked[msg.partition()][msg.offset()] = digest(msg.key(), msg.value())

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 20, "batch.size": 256 << 10, "queue.buffering.max.kbytes": 65536,
                  "compression.type": "none"})
    n = total_bytes // value_size
    for i in range(n):
        start = (i * 7919) % (len(pool) - value_size)
        while True:
            try:
                p.produce(topic, key=b"%d" % i, value=pool[start:start + value_size],
                          partition=i % partitions, on_delivery=report)
                break
            except BufferError:
                p.poll(0.05)
        if i % 2000 == 0:
            p.poll(0)
    assert p.flush(120) == 0
    assert not errors, errors[:5]
    assert sum(map(len, acked.values())) == n
    return acked


def consume_range(bootstrap: str, topic: str, starts: dict[int, int], ends: dict[int, int],
                  timeout: float = 180.0) -> dict[int, dict[int, bytes]]:
    """{partition: {offset: digest}} for [start, end) of every partition."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.monotonic_ns()}",
                  "enable.auto.commit": False, "fetch.max.bytes": 16 << 20,
                  "max.partition.fetch.bytes": 4 << 20})
    c.assign([TopicPartition(topic, p, o) for p, o in starts.items()])
    got: dict[int, dict[int, bytes]] = {p: {} for p in starts}
    todo = {p for p in starts if starts[p] < ends[p]}
    deadline = time.monotonic() + timeout
    try:
        while todo and time.monotonic() < deadline:
            for m in c.consume(5000, 1.0):
                assert m.error() is None, m.error()
                got[m.partition()][m.offset()] = digest(m.key(), m.value())
                if m.offset() >= ends[m.partition()] - 1:
                    todo.discard(m.partition())
    finally:
        c.close()
    assert not todo, f"partitions not read to the end: {sorted(todo)}"
    return got


def test_200mb_over_8_partitions_survives_an_empty_data_dir(s3_broker):
    b = s3_broker("num.partitions=8")
    acked = produce_acked(b.bootstrap, "bulk", 8, 200 << 20)
    assert metric(b.metrics_port, "sluice_uploads_total") >= 1
    ends = {p: max(offs) + 1 for p, offs in acked.items()}
    assert all(len(acked[p]) == ends[p] for p in acked)  # contiguous from 0

    restart_empty(b)
    got = consume_range(b.bootstrap, "bulk", {p: 0 for p in range(8)}, ends)
    for p in range(8):
        assert got[p] == acked[p], f"partition {p} differs after the restart"
    m = scrape(b.metrics_port)
    assert m[("sluice_objectstore_requests_total", (("op", "get_range"), ("outcome", "ok")))] > 0
    assert m[("sluice_objectstore_bytes_total", (("direction", "get"),))] >= 200 << 20

    # A consumer starting mid-log: its partitions' ranges come from the object
    # store through the block cache, with readahead serving later blocks.
    restart_empty(b)
    mids = {p: ends[p] // 2 for p in range(8)}
    got = consume_range(b.bootstrap, "bulk", mids, ends)
    for p in range(8):
        assert got[p] == {o: d for o, d in acked[p].items() if o >= mids[p]}
    m = scrape(b.metrics_port)
    assert m[("sluice_fetch_read_bytes_total", (("tier", "block_cache"),))] >= 100 << 20
    assert m[("sluice_objectstore_bytes_total", (("direction", "get"),))] >= 100 << 20


def test_catch_up_fetches_are_paced_by_the_remote_fetch_quota(s3_broker):
    """remote.log.manager.fetch.max.bytes.per.second holds back Fetch answers
    served from the object store (the same pacer steers by produce latency);
    every record still arrives, in order."""
    b = s3_broker("num.partitions=2", "remote.log.manager.fetch.max.bytes.per.second=4000000")
    acked = produce_acked(b.bootstrap, "paced", 2, 24 << 20)
    ends = {p: max(offs) + 1 for p, offs in acked.items()}
    restart_empty(b)
    assert metric(b.metrics_port, "sluice_remote_fetch_paced_seconds_total") == 0
    got = consume_range(b.bootstrap, "paced", {0: 0, 1: 0}, ends)
    assert got == acked
    m = scrape(b.metrics_port)
    assert m[("sluice_remote_fetch_paced_seconds_total", ())] > 0
    assert m[("sluice_remote_fetch_rate_bytes_per_second", ())] == 4000000
    assert m[("sluice_fetch_read_bytes_total", (("tier", "block_cache"),))] >= 24 << 20


def test_a_tail_consumer_never_reads_the_object_store(s3_broker):
    b = s3_broker("num.partitions=4", "s3.merge.interval.ms=3600000")
    produce_acked(b.bootstrap, "tail", 4, 2 << 20)  # older data, uploaded
    wait_until(lambda: metric(b.metrics_port, "sluice_wal_size_bytes") == 0, 30, "the upload")
    ends = {p: list_offsets(b.bootstrap, "tail", p)[1] for p in range(4)}
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "tail", "enable.auto.commit": False})
    c.assign([TopicPartition("tail", p, ends[p]) for p in range(4)])
    try:
        c.consume(100, 0.5)  # connected and long-polling at the end
        acked = produce_acked(b.bootstrap, "tail", 4, 20 << 20)
        want = {p: offs for p, offs in acked.items()}
        got = {p: {} for p in range(4)}
        deadline = time.monotonic() + 60
        while sum(map(len, got.values())) < sum(map(len, want.values())):
            for m in c.consume(5000, 0.5):
                assert m.error() is None, m.error()
                got[m.partition()][m.offset()] = digest(m.key(), m.value())
            assert time.monotonic() < deadline, "tail consumer fell behind"
        assert got == want
    finally:
        c.close()
    m = scrape(b.metrics_port)
    assert m[("sluice_uploads_total", ())] >= 1           # the data did go to the bucket
    assert m[("sluice_fetch_read_bytes_total", (("tier", "tail_cache"),))] >= 20 << 20
    assert m.get(("sluice_fetch_read_bytes_total", (("tier", "object_store"),)), 0) == 0
    assert m.get(("sluice_fetch_read_bytes_total", (("tier", "block_cache"),)), 0) == 0
    assert m.get(("sluice_objectstore_requests_total", (("op", "get_range"), ("outcome", "ok"))), 0) == 0


def list_offsets(bootstrap: str, topic: str, partition: int) -> tuple[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "wm"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
    finally:
        c.close()


def data_objects(minio, bucket: str) -> list[str]:
    resp = minio.client().list_objects_v2(Bucket=bucket, Prefix="data/")
    return [o["Key"] for o in resp.get("Contents", [])]


def test_retention_advances_the_log_start_and_deletes_objects(s3_broker):
    b = s3_broker("log.retention.check.interval.ms=300", "s3.gc.interval.ms=300",
                  "s3.gc.grace.ms=300", "s3.upload.interval.ms=100",
                  "s3.merge.interval.ms=3600000")
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    for f in admin.create_topics([
            NewTopic("short", 1, 1, config={"retention.ms": "1500"}),
            NewTopic("small", 1, 1, config={"retention.bytes": str(300 << 10)})]).values():
        f.result(15)
    produce_acked(b.bootstrap, "short", 1, 1 << 20)
    # retention.bytes: produce in pieces so there are several segments to drop
    for _ in range(4):
        produce_acked(b.bootstrap, "small", 1, 256 << 10)
        time.sleep(0.3)
    wait_until(lambda: list_offsets(b.bootstrap, "short", 0)[0] == list_offsets(b.bootstrap, "short", 0)[1],
               30, "retention.ms to expire the whole log")
    wait_until(lambda: list_offsets(b.bootstrap, "small", 0)[0] > 0, 30, "retention.bytes")
    # Retention only drops uploaded segments, and uploads reach the manifest
    # every s3.manifest.interval.ms: wait until all is uploaded and the log
    # start has held still for a few retention checks.
    wait_until(lambda: metric(b.metrics_port, "sluice_wal_size_bytes") == 0, 30, "the uploads")
    seen = [list_offsets(b.bootstrap, "small", 0), time.monotonic()]

    def settled() -> bool:
        now = list_offsets(b.bootstrap, "small", 0)
        if now != seen[0]:
            seen[:] = [now, time.monotonic()]
        return time.monotonic() - seen[1] >= 1.5
    wait_until(settled, 30, "retention.bytes to settle")
    lo, hi = list_offsets(b.bootstrap, "small", 0)
    assert hi == 4 * (256 << 10) // 1000
    kept = consume_range(b.bootstrap, "small", {0: lo}, {0: hi})[0]
    # Kafka's rule: drop the oldest while what remains is still >= retention.bytes
    assert len(kept) == hi - lo and len(kept) >= (300 << 10) // 1100
    # objects holding only expired data are deleted
    wait_until(lambda: metric(b.metrics_port, "sluice_gc_deleted_objects_total") > 0, 30, "GC")
    # all of it holds after a restart with nothing local
    restart_empty(b)
    assert list_offsets(b.bootstrap, "short", 0)[0] == list_offsets(b.bootstrap, "short", 0)[1] > 0
    assert list_offsets(b.bootstrap, "small", 0) == (lo, hi)


def test_delete_records_and_topic_configs_survive_an_empty_data_dir(s3_broker):
    from kafka.admin import KafkaAdminClient
    from kafka.structs import TopicPartition as KTP

    b = s3_broker()
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    for f in admin.create_topics([NewTopic("cfg", 2, 1, config={"retention.ms": "86400000",
                                                                 "max.message.bytes": "2000000"})]).values():
        f.result(15)
    produce_acked(b.bootstrap, "cfg", 2, 400 << 10)
    ka = KafkaAdminClient(bootstrap_servers=b.bootstrap)
    try:
        ka.delete_records({KTP("cfg", 0): 50})
    finally:
        ka.close()
    assert list_offsets(b.bootstrap, "cfg", 0)[0] == 50
    restart_empty(b)
    assert list_offsets(b.bootstrap, "cfg", 0) == (50, 205)
    assert list_offsets(b.bootstrap, "cfg", 1) == (0, 204)
    res = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "cfg")])
    configs = list(res.values())[0].result(15)
    assert configs["retention.ms"].value == "86400000"
    assert configs["max.message.bytes"].value == "2000000"
    got = consume_range(b.bootstrap, "cfg", {0: 50}, {0: 205})[0]
    assert sorted(got) == list(range(50, 205))


def test_group_resumes_after_kill9_and_an_empty_data_dir(s3_broker):
    """Issue 4: committed offsets live in the bucket once uploaded, so a broker
    with nothing local resumes the group exactly where it committed."""
    b = s3_broker("num.partitions=3", "group.initial.rebalance.delay.ms=0")
    acked = produce_acked(b.bootstrap, "orders", 3, 300 << 10)
    conf = {"bootstrap.servers": b.bootstrap, "group.id": "billing", "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "session.timeout.ms": 6000}
    c = Consumer(conf)
    c.subscribe(["orders"])
    seen: dict[int, list[int]] = {0: [], 1: [], 2: []}
    half = sum(map(len, acked.values())) // 2
    deadline = time.monotonic() + 60
    while sum(map(len, seen.values())) < half:
        for m in c.consume(100, 0.5):
            assert m.error() is None
            seen[m.partition()].append(m.offset())
        assert time.monotonic() < deadline
    committed = {p: (offs[-1] + 1 if offs else None) for p, offs in seen.items()}
    c.commit(asynchronous=False)
    c.close()
    # wait until the commit is uploaded (the WAL holds nothing), then lose the disk
    wait_until(lambda: metric(b.metrics_port, "sluice_wal_size_bytes") == 0, 30, "the upload")
    b.kill()
    b.wipe()
    b.start()
    c = Consumer(conf)
    try:
        tps = c.committed([TopicPartition("orders", p) for p in range(3)], timeout=15)
        for tp in tps:
            if committed[tp.partition] is not None:
                assert tp.offset == committed[tp.partition]
        c.subscribe(["orders"])
        rest: dict[int, list[int]] = {0: [], 1: [], 2: []}
        want = sum(len(acked[p]) - (committed[p] or 0) for p in range(3))
        deadline = time.monotonic() + 60
        while sum(map(len, rest.values())) < want:
            for m in c.consume(100, 0.5):
                assert m.error() is None
                rest[m.partition()].append(m.offset())
            assert time.monotonic() < deadline, "group did not resume"
        for p in range(3):  # exactly the records after the commit, none twice
            assert rest[p] == list(range(committed[p] or 0, len(acked[p])))
    finally:
        c.close()
