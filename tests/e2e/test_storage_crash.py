"""Crash safety of the object-store path, on real MinIO.

The broker SIGKILLs itself at a chosen instant of an upload or a merge
(``SLUICE_CRASH_AT``, broker/failpoints.py), or loses its object store for a
while. In every case, what an acks=all produce promised still holds: every
acknowledged record is readable exactly once at its acknowledged offset, no
value that was never sent appears, offsets stay contiguous; and after a clean
stop and a restart with the data dir wiped, the same records come back from
the bucket alone.
"""
from __future__ import annotations

import json
import signal

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from kafka.protocol.producer import ProduceRequest, ProduceResponse

from tests.e2e.test_crash import (
    BackgroundProducer,
    RawClient,
    consume_all,
    create_topic,
    plain_batch,
    verify,
    wait_until,
)
from tests.e2e.test_metrics import _scrape

pytestmark = pytest.mark.minio

NONE, REQUEST_TIMED_OUT = 0, 7


# ------------------------------------------------------------------ helpers
def s3_broker(broker_factory, minio, bucket: str, *overrides: str, crash_at: str | None = None):
    """A broker on ``bucket`` with a metrics endpoint (``b.metrics_port``)."""
    env = minio.env()
    if crash_at is not None:
        env["SLUICE_CRASH_AT"] = crash_at
    b = broker_factory(*overrides, env=env,
                       extra_args=["--object-store", f"s3://{bucket}", "--metrics", "127.0.0.1:0"])
    return b


def metric(b, name: str, **labels) -> float:
    return _scrape(b.metrics_port).get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for_death(b, prod: BackgroundProducer, timeout: float = 60.0) -> None:
    """The broker kills itself at its crash point; it must be SIGKILL, not a crash of its own."""
    wait_until(lambda: b.proc.poll() is not None, timeout, "the broker to reach its crash point", prod)
    assert b.proc.returncode == -signal.SIGKILL, \
        f"broker exited with {b.proc.returncode}, not by its crash point; log: {b.log_text()[-3000:]}"


def restart_without_crash_point(b, minio, *overrides: str) -> None:
    b.env = minio.env()
    if overrides:
        b.overrides = list(overrides)
    b.start()


def bucket_state(minio, bucket: str) -> tuple[set[str], set[str], dict[str, dict]]:
    """(data object keys, keys referenced by some manifest, manifests by key)."""
    s3 = minio.client()
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys += [o["Key"] for o in page.get("Contents", [])]
    data = {k for k in keys if k.startswith("data/")}
    manifests = {k: json.loads(s3.get_object(Bucket=bucket, Key=k)["Body"].read())
                 for k in keys if k.startswith("manifests/")}
    referenced = {s["object"] for m in manifests.values() for s in m["segments"]}
    return data, referenced, manifests


def check_log(b) -> None:
    text = b.log_text()
    assert "acknowledged data is missing" not in text, text[-3000:]
    assert "Traceback" not in text, text[-5000:]


def stop_wipe_start(b) -> None:
    """Clean shutdown (uploads what is left), delete the data dir, start from the bucket alone."""
    assert b.stop() == 0, b.log_text()[-3000:]
    b.wipe()
    b.start()


def run_until_crash_and_restart(b, minio, restart_overrides: tuple[str, ...], crash_at: str,
                                after_crash=None, after_restart=None):
    """Produce until the broker kills itself; restart it without the crash
    point while the same idempotent producer carries on; return (acked, sent)."""
    create_topic(b.bootstrap)
    prod = BackgroundProducer(b.bootstrap)
    prod.start()
    try:
        wait_for_death(b, prod)
        acked_at_crash, sent_at_crash = prod.snapshot()
        assert acked_at_crash, f"no acknowledgement before the crash at {crash_at}"
        if after_crash is not None:
            after_crash()
        restart_without_crash_point(b, minio, *restart_overrides)
        # The producer retries its in-flight batches with their sequence numbers and goes on.
        wait_until(lambda: prod.n_acked() >= len(acked_at_crash) + 2000, 60,
                   "acknowledgements after the restart", prod)
        if after_restart is not None:
            after_restart(prod)
    finally:
        prod.finish()
    acked, sent = prod.snapshot()
    assert prod.unflushed == 0, f"{prod.unflushed} records never delivered; errors: {prod.errors[:5]}"
    prod.check_healthy()
    assert acked_at_crash.items() <= acked.items()
    return acked, sent


def verify_all(b, acked, sent) -> dict:
    consumed = consume_all(b.bootstrap)
    verify(consumed, acked, sent)
    # everything sent was eventually acknowledged, so nothing is missing or doubled at all
    assert sum(len(r) for r in consumed.values()) == len(acked) == sent
    return consumed


# ------------------------------------------------------ crash during upload
@pytest.mark.timeout(120)
@pytest.mark.parametrize("crash_at", ["upload.before_put", "upload.after_put", "upload.after_manifests"])
def test_crash_during_upload_loses_and_doubles_nothing(broker_factory, minio, minio_bucket, crash_at):
    # No timed uploads: the first one starts once 256 KiB are pending, so some
    # records are acknowledged (fsynced) before the broker reaches the crash point.
    b = s3_broker(broker_factory, minio, minio_bucket,
                  "s3.upload.interval.ms=3600000", "s3.upload.bytes=262144", crash_at=crash_at)
    state = {}

    def after_crash():
        data, referenced, manifests = bucket_state(minio, minio_bucket)
        state.update(data=data, referenced=referenced)
        assert len(manifests) == 3  # claimed (created empty) before the first data object
        if crash_at == "upload.before_put":
            assert not data, data
        elif crash_at == "upload.after_put":
            assert len(data) == 1 and not referenced, (data, manifests)
        else:
            assert len(data) == 1 and referenced == data, (data, manifests)

    acked, sent = run_until_crash_and_restart(b, minio, ("s3.upload.interval.ms=200",), crash_at,
                                              after_crash=after_crash)
    verify_all(b, acked, sent)
    assert metric(b, "sluice_uploads_total") >= 1     # the recovered WAL went up after the restart
    check_log(b)
    consumed_before = consume_all(b.bootstrap)

    stop_wipe_start(b)
    consumed = verify_all(b, acked, sent)
    assert consumed == consumed_before
    check_log(b)


# ------------------------------------------------------- crash during merge
MERGE = ("s3.upload.interval.ms=50", "s3.upload.bytes=16384",
         "s3.merge.interval.ms=300", "s3.merge.target.bytes=262144",
         "s3.merge.max.segments=4",
         "s3.gc.interval.ms=300", "s3.gc.grace.ms=1000")


@pytest.mark.timeout(150)
@pytest.mark.parametrize("crash_at", ["merge.before_put", "merge.after_put", "merge.after_manifest"])
def test_crash_during_merge_loses_and_doubles_nothing(broker_factory, minio, minio_bucket, crash_at):
    b = s3_broker(broker_factory, minio, minio_bucket, *MERGE, crash_at=crash_at)
    # A partition that is idle by the time of the crash: all of it uploaded, so
    # after the restart it has nothing to upload. Merging and GC must still
    # run (GC needs every partition's manifest to know what is referenced).
    create_topic(b.bootstrap, "idle", 1)
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "enable.idempotence": True})
    idle = {}
    for i in range(10):
        p.produce("idle", value=b"idle-%d" % i,
                  on_delivery=lambda err, msg: idle.__setitem__(msg.value().decode(), (err, msg.offset())))
    assert p.flush(15) == 0
    assert idle == {f"idle-{i}": (None, i) for i in range(10)}
    wait_until(lambda: metric(b, "sluice_wal_size_bytes") == 0, 30, "the idle topic's upload")
    state = {}

    def after_crash():
        data, referenced, _ = bucket_state(minio, minio_bucket)
        state["orphans"] = data - referenced
        if crash_at == "merge.after_put":
            # the merged object is in the bucket, and no manifest knows it
            assert state["orphans"], (data, referenced)
        elif crash_at == "merge.before_put":
            assert not state["orphans"], state["orphans"]

    def after_restart(prod):
        wait_until(lambda: metric(b, "sluice_merges_total") >= 1, 30,
                   "a merge after the restart", prod)
        if state["orphans"]:
            # garbage collection deletes what the crash left unreferenced
            wait_until(lambda: not (bucket_state(minio, minio_bucket)[0] & state["orphans"]), 30,
                       "GC to delete the orphaned objects", prod)
            assert metric(b, "sluice_gc_deleted_objects_total") > 0

    acked, sent = run_until_crash_and_restart(b, minio, MERGE, crash_at,
                                              after_crash=after_crash, after_restart=after_restart)
    consumed_before = verify_all(b, acked, sent)
    # the bucket itself is consistent: every referenced object exists
    data, referenced, _ = bucket_state(minio, minio_bucket)
    assert referenced <= data, referenced - data
    check_log(b)

    assert consume_all(b.bootstrap, "idle", 1)[0] == [(i, f"idle-{i}") for i in range(10)]

    stop_wipe_start(b)
    consumed = verify_all(b, acked, sent)
    assert consumed == consumed_before
    assert consume_all(b.bootstrap, "idle", 1)[0] == [(i, f"idle-{i}") for i in range(10)]
    check_log(b)


# ---------------------------------------------------------------- outage
def produce_raw(c: RawClient, topic: str, values: list[bytes], timeout_ms: int) -> tuple[int, int]:
    """One acks=all produce of one batch; (error_code, base_offset)."""
    PD = ProduceRequest.TopicProduceData
    req = ProduceRequest(transactional_id=None, acks=-1, timeout_ms=timeout_ms, topic_data=[
        PD(name=topic, partition_data=[PD.PartitionProduceData(index=0, records=plain_batch(values))])])
    resp = c.request(req, ProduceResponse, 9)
    [tr] = resp.responses
    [pr] = tr.partition_responses
    return pr.error_code, pr.base_offset


WAL_MAX = 4 << 20
PAD = b"x" * 1000


@pytest.mark.timeout(150)
def test_object_store_outage_backpressure_and_recovery(broker_factory, minio_factory):
    m = minio_factory()
    bucket = m.create_bucket()
    b = s3_broker(broker_factory, m, bucket, f"wal.max.bytes={WAL_MAX}", "s3.upload.interval.ms=100")
    create_topic(b.bootstrap, "outage", 1)
    c = RawClient(b.port)
    acked: dict[str, int] = {}   # value -> offset
    seq = 0

    def produce(timeout_ms: int = 1000) -> int:
        nonlocal seq
        values = [b"%d:" % (seq + i) + PAD for i in range(32)]
        code, base = produce_raw(c, "outage", values, timeout_ms)
        if code == NONE:
            for i, v in enumerate(values):
                acked[v.decode()] = base + i
        seq += len(values)
        return code

    try:
        for _ in range(20):
            assert produce() == NONE
        wait_until(lambda: metric(b, "sluice_wal_size_bytes") == 0, 30, "the first uploads")
        uploads_before = metric(b, "sluice_uploads_total")
        assert uploads_before >= 1

        m.stop()
        # The WAL has room: produce is still acknowledged.
        n_before_outage = len(acked)
        code = NONE
        for _ in range(1000):     # ~33 MB at most; the WAL fills after ~4 MiB
            code = produce()
            if code != NONE:
                break
        assert code == REQUEST_TIMED_OUT, code
        acked_in_outage = len(acked) - n_before_outage
        assert acked_in_outage * len(PAD) >= WAL_MAX * 3 // 4, acked_in_outage
        assert metric(b, "sluice_wal_size_bytes") >= WAL_MAX
        # Full stays full while the store is down; nothing of a refused request is stored.
        assert produce(timeout_ms=200) == REQUEST_TIMED_OUT
        assert metric(b, "sluice_produce_partition_errors_total", error="REQUEST_TIMED_OUT") >= 2
        # The broker lives on and answers Metadata.
        assert b.proc.poll() is None
        md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=10)
        assert "outage" in md.topics and md.topics["outage"].error is None
        # The store failure is logged once per kind, not once per failed upload
        # or refused request (a failed PUT surfaces after the client's own retries).
        wait_until(lambda: metric(b, "sluice_objectstore_requests_total", op="put", outcome="error") >= 2,
                   60, "repeated failed uploads")
        for _ in range(5):
            assert produce(timeout_ms=100) == REQUEST_TIMED_OUT
        failures = [ln for ln in b.log_text().splitlines() if "object store" in ln and "failed" in ln]
        assert 1 <= len(failures) <= 5, "\n".join(failures[:20])

        m.start()
        wait_until(lambda: metric(b, "sluice_wal_size_bytes") == 0, 60, "the WAL to drain")
        assert metric(b, "sluice_uploads_total") > uploads_before
        assert "works again" in b.log_text()
        assert produce() == NONE       # backpressure released
    finally:
        c.close()

    def read_and_check() -> list[tuple[int, str]]:
        recs = consume_all(b.bootstrap, "outage", 1)[0]
        assert [o for o, _ in recs] == list(range(len(recs))), "offsets not contiguous from 0"
        got = {v: o for o, v in recs}
        assert len(got) == len(recs), "a value stored twice"
        assert got == acked, "consumed records differ from the acknowledged ones"
        return recs

    before = read_and_check()
    stop_wipe_start(b)
    assert read_and_check() == before
    check_log(b)
