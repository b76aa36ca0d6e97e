"""End-to-end: real Kafka clients against a real ``sluice serve`` subprocess.

Clients: kafka-python, aiokafka, confluent-kafka (librdkafka) and kcat.
Consumers here use manual assignment and commit nothing; consumer groups
are tested in test_groups.py.

Every produced value carries its partition and a per-partition sequence
number, so a consumed stream can be checked for exactly-once, in-order
delivery per partition and for key/value/header round trips.
"""
from __future__ import annotations

import asyncio
import json
import socket
import struct
import subprocess
import time
import uuid
from collections import defaultdict

import pytest
from confluent_kafka import (
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

PARTITIONS = 4
PER_PARTITION = 2500  # x 4 partitions = 10,000 records per client
FILLER = b"." * 40
KCAT = "/usr/bin/kcat"
CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}

pytestmark = pytest.mark.timeout(120)


# ------------------------------------------------------------------ helpers
def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def expected(client: str, p: int, seq: int) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    key = f"{client}-{p}-{seq}".encode()
    value = f"{p}:{seq}:".encode() + FILLER
    headers = [("seq", str(seq).encode()), ("client", client.encode()), ("part", str(p).encode())]
    return key, value, headers


def all_expected(client: str, per_partition: int = PER_PARTITION, partitions: int = PARTITIONS):
    """(partition, seq) in an interleaved order, so every batch targets one partition at a time."""
    for seq in range(per_partition):
        for p in range(partitions):
            yield p, seq


def check_stream(records, client: str, *, per_partition: int = PER_PARTITION,
                 partitions: int = PARTITIONS, expect=expected, first_offset: int = 0) -> None:
    """records: iterable of (partition, offset, key, value, headers).

    Asserts every expected record arrives exactly once, in order per partition,
    at consecutive offsets, with its key, value and headers intact.
    """
    by_part: dict[int, list] = defaultdict(list)
    for r in records:
        by_part[r[0]].append(r)
    assert sorted(by_part) == list(range(partitions)), f"partitions seen: {sorted(by_part)}"
    for p in range(partitions):
        got = by_part[p]
        assert len(got) == per_partition, f"partition {p}: {len(got)} records, want {per_partition}"
        for seq, (part, offset, key, value, headers) in enumerate(got):
            ekey, evalue, eheaders = expect(client, p, seq)
            # value carries "partition:seq:", so this proves order and exactly-once
            assert value == evalue, f"p{p} offset {offset}: value {value[:30]!r} want {evalue[:30]!r}"
            assert offset == first_offset + seq, f"p{p}: seq {seq} at offset {offset}"
            assert key == ekey
            assert [(k, bytes(v) if v is not None else None) for k, v in headers] == eheaders


def confluent_admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})


def create_topic(bootstrap: str, name: str, partitions: int = PARTITIONS,
                 config: dict[str, str] | None = None) -> None:
    admin = confluent_admin(bootstrap)  # must outlive the future
    fs = admin.create_topics([NewTopic(name, partitions, 1, config=config or {})],
                             operation_timeout=10, request_timeout=15)
    fs[name].result(15)


def confluent_consumer(bootstrap: str, **extra) -> Consumer:
    conf = {"bootstrap.servers": bootstrap,
            # librdkafka insists on a group.id even for assign(); nothing is committed.
            "group.id": unique("unused"), "enable.auto.commit": False,
            "enable.auto.offset.store": False, "auto.offset.reset": "earliest"}
    conf.update(extra)
    return Consumer(conf)


def confluent_consume(bootstrap: str, topic: str, partitions: int, total: int, *,
                      start: int = 0, timeout: float = 45.0, **extra) -> list:
    """Consume ``total`` messages from ``start`` on each partition; returns Message objects."""
    c = confluent_consumer(bootstrap, **extra)
    out = []
    try:
        c.assign([TopicPartition(topic, p, start) for p in range(partitions)])
        deadline = time.monotonic() + timeout
        while len(out) < total and time.monotonic() < deadline:
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(m.error())
                out.append(m)
        # nothing beyond what was expected
        extra_msgs = [m for m in c.consume(num_messages=100, timeout=0.3) if not m.error()]
        assert not extra_msgs, f"unexpected extra messages: {len(extra_msgs)}"
    finally:
        c.close()
    assert len(out) == total, f"consumed {len(out)} of {total} from {topic}"
    return out


def confluent_rows(msgs) -> list:
    return [(m.partition(), m.offset(), m.key(), m.value(), list(m.headers() or [])) for m in msgs]


def kafka_python_consume(bootstrap: str, topic: str, partitions: int, total: int, *,
                         timeout: float = 45.0) -> list:
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", request_timeout_ms=20000)
    rows = []
    try:
        tps = [KTP(topic, p) for p in range(partitions)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while len(rows) < total and time.monotonic() < deadline:
            for tp, recs in c.poll(timeout_ms=500, max_records=5000).items():
                rows.extend((r.partition, r.offset, r.key, r.value, list(r.headers), r) for r in recs)
    finally:
        c.close()
    assert len(rows) == total, f"kafka-python consumed {len(rows)} of {total} from {topic}"
    return rows


async def aiokafka_consume(bootstrap: str, topic: str, partitions: int, total: int, *,
                           timeout: float = 45.0) -> list:
    from aiokafka import AIOKafkaConsumer
    from aiokafka import TopicPartition as ATP

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest")
    await c.start()
    rows = []
    try:
        tps = [ATP(topic, p) for p in range(partitions)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while len(rows) < total and time.monotonic() < deadline:
            batch = await c.getmany(timeout_ms=500, max_records=5000)
            for tp, recs in batch.items():
                rows.extend((r.partition, r.offset, r.key, r.value, list(r.headers)) for r in recs)
    finally:
        await c.stop()
    assert len(rows) == total, f"aiokafka consumed {len(rows)} of {total} from {topic}"
    return rows


def raw_fetch_batch_attributes(bootstrap: str, topic: str, partition: int,
                               offset: int = 0) -> list[int]:
    """Fetch v4 over a bare socket; return the attributes of each stored batch.

    Proves what the broker stores and serves (e.g. compression codec bits),
    independent of any client's decoding.
    """
    from kafka.protocol.consumer import FetchRequest, FetchResponse

    FT = FetchRequest.FetchTopic
    req = FetchRequest(version=4, replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=16 << 20,
                       isolation_level=0,
                       topics=[FT(topic=topic, partitions=[FT.FetchPartition(
                           partition=partition, fetch_offset=offset, partition_max_bytes=16 << 20)])])
    body = req.encode(version=4)
    client_id = b"e2e-raw"
    header = struct.pack(">hhih", 1, 4, 7, len(client_id)) + client_id
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        frame = header + body
        s.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", _recv_exact(s, 4))[0]
        data = _recv_exact(s, size)
    assert struct.unpack(">i", data[:4])[0] == 7
    resp = FetchResponse.decode(memoryview(data[4:]), version=4)
    pdata = resp.responses[0].partitions[0]
    assert pdata.error_code == 0
    records = bytes(pdata.records or b"")
    attrs, pos = [], 0
    while pos + 61 <= len(records):
        length = struct.unpack_from(">i", records, pos + 8)[0]
        assert records[pos + 16] == 2  # magic
        attrs.append(struct.unpack_from(">h", records, pos + 21)[0])
        pos += 12 + length
    return attrs


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        buf += chunk
    return bytes(buf)


def confluent_produce_all(bootstrap: str, topic: str, client: str, *, per_partition: int = PER_PARTITION,
                          partitions: int = PARTITIONS, **extra) -> None:
    conf = {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
            "linger.ms": 5}
    conf.update(extra)
    p = Producer(conf)
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)

    for part, seq in all_expected(client, per_partition, partitions):
        key, value, headers = expected(client, part, seq)
        while True:
            try:
                p.produce(topic, value=value, key=key, partition=part, headers=headers,
                          on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    assert p.flush(30) == 0, "messages still in flight after 30 s"
    assert not errors, errors[:5]


# ------------------------------------------------------------ 1. clients
def test_kafka_python_roundtrip(broker):
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient
    from kafka.admin import NewTopic as KNewTopic

    topic = unique("kp")
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        admin.create_topics([KNewTopic(topic, PARTITIONS, 1)])
        assert topic in admin.list_topics()
    finally:
        admin.close()

    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5,
                             request_timeout_ms=20000)
    futures = []
    try:
        for part, seq in all_expected("kafka-python"):
            key, value, headers = expected("kafka-python", part, seq)
            futures.append((part, seq, producer.send(topic, key=key, value=value, headers=headers,
                                                     partition=part)))
        producer.flush(timeout=30)
        for part, seq, f in futures:
            md = f.get(timeout=10)
            assert (md.partition, md.offset) == (part, seq)
    finally:
        producer.close(timeout=10)

    rows = kafka_python_consume(broker.bootstrap, topic, PARTITIONS, PARTITIONS * PER_PARTITION)
    check_stream([r[:5] for r in rows], "kafka-python")


async def test_aiokafka_roundtrip(broker):
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin import NewTopic as ANewTopic

    topic = unique("aio")
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await asyncio.wait_for(admin.create_topics([ANewTopic(topic, PARTITIONS, 1)]), 15)
        assert topic in await asyncio.wait_for(admin.list_topics(), 15)
    finally:
        await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5,
                                enable_idempotence=True)
    await producer.start()
    try:
        pending = []
        for part, seq in all_expected("aiokafka"):
            key, value, headers = expected("aiokafka", part, seq)
            pending.append((part, seq, await producer.send(topic, value=value, key=key,
                                                           partition=part, headers=headers)))
        metas = await asyncio.wait_for(asyncio.gather(*(f for _, _, f in pending)), 30)
        for (part, seq, _), md in zip(pending, metas):
            assert (md.partition, md.offset) == (part, seq)
    finally:
        await producer.stop()

    rows = await aiokafka_consume(broker.bootstrap, topic, PARTITIONS, PARTITIONS * PER_PARTITION)
    check_stream(rows, "aiokafka")


def test_confluent_idempotent_roundtrip(broker):
    topic = unique("ck")
    create_topic(broker.bootstrap, topic)
    confluent_produce_all(broker.bootstrap, topic, "confluent")
    msgs = confluent_consume(broker.bootstrap, topic, PARTITIONS, PARTITIONS * PER_PARTITION)
    check_stream(confluent_rows(msgs), "confluent")
    assert all(m.timestamp()[0] == TIMESTAMP_CREATE_TIME for m in msgs)


def _kcat(args: list[str], *, stdin: bytes | None = None, timeout: float = 60.0) -> bytes:
    proc = subprocess.run([KCAT, *args], input=stdin, capture_output=True, timeout=timeout)
    assert proc.returncode == 0, f"kcat {args} exited {proc.returncode}: {proc.stderr.decode()[-2000:]}"
    return proc.stdout


def kcat_expected(client: str, p: int, seq: int):
    return (f"{client}-{p}-{seq}".encode(), f"{p}:{seq}:".encode() + FILLER,
            [("client", b"kcat"), ("part", str(p).encode())])


def test_kcat_roundtrip(broker):
    topic = unique("kcat")
    create_topic(broker.bootstrap, topic)
    # -H applies to every message of one invocation, so produce one partition per invocation.
    for p in range(PARTITIONS):
        lines = b"".join(b"%s|%s\n" % kcat_expected("kcat", p, seq)[:2] for seq in range(PER_PARTITION))
        _kcat(["-b", broker.bootstrap, "-P", "-t", topic, "-p", str(p), "-K", "|",
               "-H", "client=kcat", "-H", f"part={p}",
               "-X", "enable.idempotence=true", "-X", "acks=all"], stdin=lines)

    # Read everything back as JSON (all partitions, no group), exiting at the end.
    out = _kcat(["-b", broker.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-J", "-q"])
    rows = []
    for line in out.splitlines():
        d = json.loads(line)
        h = d.get("headers") or []
        headers = [(h[i], h[i + 1].encode()) for i in range(0, len(h), 2)]
        rows.append((d["partition"], d["offset"], d["key"].encode(), d["payload"].encode(), headers))
    check_stream(rows, "kcat", expect=kcat_expected)

    # And one partition through a -f format string, bounded by -c.
    out = _kcat(["-b", broker.bootstrap, "-C", "-t", topic, "-p", "2", "-o", "beginning",
                 "-c", str(PER_PARTITION), "-e", "-q", "-f", "%p|%o|%k|%s|%h\n"])
    lines = out.decode().splitlines()
    assert len(lines) == PER_PARTITION
    for seq, line in enumerate(lines):
        part, offset, key, value, headers = line.split("|")
        ekey, evalue, _ = kcat_expected("kcat", 2, seq)
        assert (int(part), int(offset), key.encode(), value.encode()) == (2, seq, ekey, evalue)
        assert headers == "client=kcat,part=2"


# ------------------------------------------------------- 2. compression
def kafka_python_produce(bootstrap: str, topic: str, client: str, partitions, per_partition: int,
                         **extra) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                             request_timeout_ms=20000, **extra)
    try:
        futures = []
        for seq in range(per_partition):
            for part in partitions:
                key, value, headers = expected(client, part, seq)
                futures.append(producer.send(topic, key=key, value=value, headers=headers,
                                             partition=part))
        producer.flush(timeout=30)
        for f in futures:
            f.get(timeout=10)
    finally:
        producer.close(timeout=10)


async def aiokafka_produce(bootstrap: str, topic: str, client: str, partitions, per_partition: int,
                           **extra) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                                enable_idempotence=True, **extra)
    await producer.start()
    try:
        pending = []
        for seq in range(per_partition):
            for part in partitions:
                key, value, headers = expected(client, part, seq)
                pending.append(await producer.send(topic, value=value, key=key, partition=part,
                                                   headers=headers))
        await asyncio.wait_for(asyncio.gather(*pending), 30)
    finally:
        await producer.stop()


@pytest.mark.parametrize("codec", list(CODEC_IDS))
async def test_compression_codecs(broker, codec):
    """Partition 0 written by librdkafka, partition 1
    by aiokafka; every batch must be stored with the producer's codec and be
    readable by every client."""
    per_part, parts = 1000, 2
    topic = unique(f"z-{codec}")
    create_topic(broker.bootstrap, topic, parts)
    confluent_produce_all(broker.bootstrap, topic, codec, per_partition=per_part, partitions=1,
                          **{"compression.type": codec, "linger.ms": 20})
    await aiokafka_produce(broker.bootstrap, topic, codec, [1], per_part,
                           compression_type=None if codec == "none" else codec)

    # The broker stores and serves the producers' batches with their codec intact.
    for p in range(parts):
        attrs = raw_fetch_batch_attributes(broker.bootstrap, topic, p)
        assert attrs, f"no batches fetched for partition {p}"
        assert {a & 0x07 for a in attrs} == {CODEC_IDS[codec]}, f"partition {p}: {attrs}"

    total = per_part * parts
    # librdkafka decodes it ...
    msgs = confluent_consume(broker.bootstrap, topic, parts, total)
    check_stream(confluent_rows(msgs), codec, per_partition=per_part, partitions=parts)
    # ... and so do the pure-Python clients. kafka-python needs python-snappy for
    # snappy (not installed); aiokafka decodes snappy through cramjam.
    if codec != "snappy":
        rows = kafka_python_consume(broker.bootstrap, topic, parts, total)
        check_stream([r[:5] for r in rows], codec, per_partition=per_part, partitions=parts)
    rows = await aiokafka_consume(broker.bootstrap, topic, parts, total)
    check_stream(rows, codec, per_partition=per_part, partitions=parts)


def test_librdkafka_lz4_needs_find_coordinator(broker):
    """librdkafka enables lz4 only when ApiVersions lists FindCoordinator (key 10) v0
    (its "LZ4 feature" probe); without it, it silently sends lz4 batches uncompressed."""
    topic = unique("lz4-rdk")
    create_topic(broker.bootstrap, topic, 1)
    confluent_produce_all(broker.bootstrap, topic, "lz4", per_partition=200, partitions=1,
                          **{"compression.type": "lz4", "linger.ms": 20})
    attrs = raw_fetch_batch_attributes(broker.bootstrap, topic, 0)
    assert {a & 0x07 for a in attrs} == {CODEC_IDS["lz4"]}


# -------------------------------------------------------- 3. admin APIs
def _result(fut, timeout: float = 15):
    return fut.result(timeout)


def test_admin_create_delete_topics_confluent(broker):
    admin = confluent_admin(broker.bootstrap)
    topic = unique("adm")
    _result(admin.create_topics([NewTopic(topic, 3, 1)], request_timeout=15)[topic])
    md = admin.list_topics(timeout=10)
    assert len(md.topics[topic].partitions) == 3
    assert md.topics[topic].error is None

    # Already exists
    with pytest.raises(KafkaException) as ei:
        _result(admin.create_topics([NewTopic(topic, 3, 1)], request_timeout=15)[topic])
    assert ei.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS

    # Invalid names
    for bad in ("bad/name", "x" * 250, "..", "has space"):
        with pytest.raises(KafkaException) as ei:
            _result(admin.create_topics([NewTopic(bad, 1, 1)], request_timeout=15)[bad])
        assert ei.value.args[0].code() == KafkaError.TOPIC_EXCEPTION, bad

    # Invalid partition count / config
    bad_parts = unique("badparts")
    with pytest.raises(KafkaException) as ei:
        _result(admin.create_topics([NewTopic(bad_parts, 1, 1, config={"retention.ms": "soon"})],
                                    request_timeout=15)[bad_parts])
    assert ei.value.args[0].code() == KafkaError.INVALID_CONFIG
    assert bad_parts not in admin.list_topics(timeout=10).topics

    # validate_only creates nothing
    dry = unique("dry")
    _result(admin.create_topics([NewTopic(dry, 2, 1)], validate_only=True, request_timeout=15)[dry])
    assert dry not in admin.list_topics(timeout=10).topics

    # Delete; then it is gone, and deleting again is UNKNOWN_TOPIC_OR_PART
    _result(admin.delete_topics([topic], request_timeout=15)[topic])
    md = admin.list_topics(timeout=10)
    assert topic not in md.topics
    with pytest.raises(KafkaException) as ei:
        _result(admin.delete_topics([topic], request_timeout=15)[topic])
    assert ei.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART

    # A deleted name can be created afresh, empty.
    _result(admin.create_topics([NewTopic(topic, 1, 1)], request_timeout=15)[topic])
    lo = admin.list_offsets({TopicPartition(topic, 0): OffsetSpec.latest()})
    assert _result(lo[TopicPartition(topic, 0)]).offset == 0


def test_admin_kafka_python(broker):
    from kafka.admin import ConfigResource as KConfigResource
    from kafka.admin import ConfigResourceType, KafkaAdminClient
    from kafka.admin import NewPartitions as KNewPartitions
    from kafka.admin import NewTopic as KNewTopic
    from kafka.errors import InvalidPartitionsError, InvalidTopicError, TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        topic = unique("kpadm")
        admin.create_topics([KNewTopic(topic, 2, 1, topic_configs={"retention.ms": "3600000"})])
        assert topic in admin.list_topics()
        with pytest.raises(TopicAlreadyExistsError):
            admin.create_topics([KNewTopic(topic, 2, 1)])
        with pytest.raises(InvalidTopicError):
            admin.create_topics([KNewTopic("no/slashes", 1, 1)])

        described = admin.describe_topics([topic])
        assert len(described) == 1 and len(described[0]["partitions"]) == 2

        admin.create_partitions({topic: KNewPartitions(total_count=5)})
        assert len(admin.describe_topics([topic])[0]["partitions"]) == 5
        with pytest.raises(InvalidPartitionsError):
            admin.create_partitions({topic: KNewPartitions(total_count=3)})

        res = admin.describe_configs([KConfigResource(ConfigResourceType.TOPIC, topic)],
                                     config_filter="all")
        cfg = res["topic"][topic]
        assert cfg["retention.ms"]["value"] == "3600000"
        assert cfg["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
        assert cfg["cleanup.policy"]["value"] == "delete"
        assert cfg["cleanup.policy"]["config_source"] == "DEFAULT_CONFIG"
        # default filter: only what was set
        res = admin.describe_configs([KConfigResource(ConfigResourceType.TOPIC, topic)])
        assert set(res["topic"][topic]) == {"retention.ms"}
        res = admin.describe_configs([KConfigResource(ConfigResourceType.BROKER, "1")],
                                     config_filter="all")
        assert res["broker"]["1"]["delete.topic.enable"]["value"] == "true"

        cluster = admin.describe_cluster()
        host, port = broker.bootstrap.rsplit(":", 1)
        assert cluster["controller_id"] == 1 and cluster["cluster_id"]
        assert [(b["broker_id"], b["host"], b["port"]) for b in cluster["brokers"]] == \
            [(1, host, int(port))]

        # delete_records and list_partition_offsets
        from kafka import KafkaProducer
        from kafka import TopicPartition as KTP
        from kafka.admin import OffsetSpec as KOffsetSpec
        kp = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        try:
            for i in range(30):
                kp.send(topic, b"r%d" % i, partition=3)
            kp.flush(timeout=15)
        finally:
            kp.close(timeout=10)
        tp = KTP(topic, 3)
        out = admin.delete_records({tp: 12})
        assert out[tp]["low_watermark"] == 12 and out[tp]["error_code"] == 0
        offs = admin.list_partition_offsets({tp: KOffsetSpec.EARLIEST})
        assert offs[tp].offset == 12
        offs = admin.list_partition_offsets({tp: KOffsetSpec.LATEST})
        assert offs[tp].offset == 30

        admin.delete_topics([topic])
        assert topic not in admin.list_topics()
    finally:
        admin.close()


def test_admin_partitions_and_configs(broker):
    admin = confluent_admin(broker.bootstrap)
    topic = unique("cfg")
    create_topic(broker.bootstrap, topic, 2, config={"cleanup.policy": "delete"})

    # create_partitions: 2 -> 5, then the new partitions take writes
    _result(admin.create_partitions([NewPartitions(topic, 5)], request_timeout=15)[topic])
    assert len(admin.list_topics(topic=topic, timeout=10).topics[topic].partitions) == 5
    with pytest.raises(KafkaException) as ei:
        _result(admin.create_partitions([NewPartitions(topic, 4)], request_timeout=15)[topic])
    assert ei.value.args[0].code() == KafkaError.INVALID_PARTITIONS
    nope = unique("nope")
    fs = admin.create_partitions([NewPartitions(nope, 4)], request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        _result(fs[nope])
    assert ei.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    delivered = []
    p.produce(topic, value=b"in-new-partition", partition=4,
              on_delivery=lambda err, m: delivered.append((err, m.partition(), m.offset())))
    assert p.flush(15) == 0
    assert delivered == [(None, 4, 0)]

    # describe_configs on the topic: defaults and the set value
    res = ConfigResource(ResourceType.TOPIC, topic)
    entries = _result(admin.describe_configs([res])[res])
    assert entries["retention.ms"].value == "604800000"
    assert entries["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert entries["cleanup.policy"].value == "delete"
    assert entries["cleanup.policy"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert entries["message.timestamp.type"].value == "CreateTime"

    # incremental_alter_configs SET retention.ms; describe shows it
    alter = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "12345", incremental_operation=AlterConfigOpType.SET)])
    _result(admin.incremental_alter_configs([alter])[alter])
    entries = _result(admin.describe_configs([res])[res])
    assert entries["retention.ms"].value == "12345"
    assert entries["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    # DELETE reverts to the default
    alter = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    _result(admin.incremental_alter_configs([alter])[alter])
    entries = _result(admin.describe_configs([res])[res])
    assert entries["retention.ms"].value == "604800000"

    # An invalid value is refused and changes nothing
    alter = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "not-a-number", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as ei:
        _result(admin.incremental_alter_configs([alter])[alter])
    assert ei.value.args[0].code() == KafkaError.INVALID_CONFIG
    assert _result(admin.describe_configs([res])[res])["retention.ms"].value == "604800000"

    # Unknown topic
    missing = ConfigResource(ResourceType.TOPIC, unique("missing"))
    with pytest.raises(KafkaException) as ei:
        _result(admin.describe_configs([missing])[missing])
    assert ei.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART

    # Broker configs
    bres = ConfigResource(ResourceType.BROKER, "1")
    bentries = _result(admin.describe_configs([bres])[bres])
    assert bentries["auto.create.topics.enable"].value == "true"
    assert bentries["num.partitions"].value == "1"
    assert bentries["log.retention.ms"].value == "604800000"
    assert bentries["num.partitions"].is_read_only


def test_cleanup_policy_compact_is_refused_with_invalid_config(broker):
    """Sluice has no log compaction yet: asking for it is Kafka's INVALID_CONFIG
    with a clear message, on create and on alter, and changes nothing."""
    admin = confluent_admin(broker.bootstrap)
    message = "cleanup.policy=compact is not supported yet: Sluice has no log compaction; use delete"
    for policy in ("compact", "delete,compact"):
        topic = unique("compacted")
        for validate_only in (True, False):
            with pytest.raises(KafkaException) as ei:
                _result(admin.create_topics([NewTopic(topic, 1, 1, config={"cleanup.policy": policy})],
                                            validate_only=validate_only, request_timeout=15)[topic])
            err = ei.value.args[0]
            assert err.code() == KafkaError.INVALID_CONFIG and message in err.str(), err
        assert topic not in admin.list_topics(timeout=10).topics

    topic = unique("deleted")
    create_topic(broker.bootstrap, topic, 1, config={"cleanup.policy": "delete"})
    res = ConfigResource(ResourceType.TOPIC, topic)
    for op in (AlterConfigOpType.SET, AlterConfigOpType.APPEND):
        alter = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
            ConfigEntry("cleanup.policy", "compact", incremental_operation=op)])
        with pytest.raises(KafkaException) as ei:
            _result(admin.incremental_alter_configs([alter])[alter])
        err = ei.value.args[0]
        assert err.code() == KafkaError.INVALID_CONFIG and message in err.str(), (op, err)
        assert _result(admin.describe_configs([res])[res])["cleanup.policy"].value == "delete"


def test_admin_describe_cluster(broker):
    admin = confluent_admin(broker.bootstrap)
    desc = _result(admin.describe_cluster(request_timeout=15))
    assert desc.cluster_id and desc.cluster_id == admin.list_topics(timeout=10).cluster_id
    assert len(desc.nodes) == 1
    node = desc.nodes[0]
    host, port = broker.bootstrap.rsplit(":", 1)
    assert (node.id, node.host, node.port) == (1, host, int(port))
    assert desc.controller.id == 1


def test_admin_delete_records(broker):
    admin = confluent_admin(broker.bootstrap)
    topic = unique("delrec")
    create_topic(broker.bootstrap, topic, 2)
    confluent_produce_all(broker.bootstrap, topic, "dr", per_partition=100, partitions=2,
                          **{"linger.ms": 0, "batch.num.messages": 7})

    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    res = admin.delete_records([TopicPartition(topic, 0, 40)], request_timeout=15)
    assert _result(res[tp0]).low_watermark == 40
    # OFFSET_END (-1) means "up to the high watermark"
    res = admin.delete_records([TopicPartition(topic, 1, -1)], request_timeout=15)
    assert _result(res[tp1]).low_watermark == 100
    # Beyond the high watermark: OFFSET_OUT_OF_RANGE
    res = admin.delete_records([TopicPartition(topic, 0, 1000)], request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        _result(res[tp0])
    assert ei.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE

    lo = admin.list_offsets({tp0: OffsetSpec.earliest(), tp1: OffsetSpec.earliest()})
    assert (_result(lo[tp0]).offset, _result(lo[tp1]).offset) == (40, 100)
    hi = admin.list_offsets({tp0: OffsetSpec.latest(), tp1: OffsetSpec.latest()})
    assert (_result(hi[tp0]).offset, _result(hi[tp1]).offset) == (100, 100)

    # Consuming "from the beginning" starts at the new log start offset.
    c = confluent_consumer(broker.bootstrap)
    got = []
    try:
        c.assign([TopicPartition(topic, 0, -2)])  # OFFSET_BEGINNING
        deadline = time.monotonic() + 20
        while len(got) < 60 and time.monotonic() < deadline:
            for m in c.consume(100, timeout=0.5):
                assert not m.error(), m.error()
                got.append(m)
    finally:
        c.close()
    assert [m.offset() for m in got] == list(range(40, 100))
    assert [m.value() for m in got] == [expected("dr", 0, s)[1] for s in range(40, 100)]

    # Fetching below the log start is OFFSET_OUT_OF_RANGE; with reset=error the consumer sees it.
    c = confluent_consumer(broker.bootstrap, **{"auto.offset.reset": "error"})
    try:
        c.assign([TopicPartition(topic, 0, 10)])
        deadline = time.monotonic() + 20
        err = None
        while err is None and time.monotonic() < deadline:
            for m in c.consume(10, timeout=0.5):
                assert m.error(), f"read offset {m.offset()} below the log start"
                err = m.error()
        assert err is not None and err.code() == KafkaError._AUTO_OFFSET_RESET, err
    finally:
        c.close()

    # kafka-python sees the same log start
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    kc = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False)
    try:
        assert kc.beginning_offsets([KTP(topic, 0), KTP(topic, 1)]) == {KTP(topic, 0): 40,
                                                                         KTP(topic, 1): 100}
    finally:
        kc.close()


def test_list_offsets_by_timestamp(broker):
    admin = confluent_admin(broker.bootstrap)
    topic = unique("ts")
    create_topic(broker.bootstrap, topic, 1)
    base = 1_700_000_000_000
    # record i has timestamp base + 1000*i, except record 50 which has the largest
    stamps = [base + 1000 * i for i in range(100)]
    stamps[50] = base + 10_000_000
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 0, "batch.num.messages": 8})
    for i, ts in enumerate(stamps):
        p.produce(topic, value=b"v%d" % i, partition=0, timestamp=ts)
    assert p.flush(15) == 0

    tp = TopicPartition(topic, 0)

    def lookup(spec):
        return _result(admin.list_offsets({tp: spec})[tp])

    assert lookup(OffsetSpec.earliest()).offset == 0
    assert lookup(OffsetSpec.latest()).offset == 100
    r = lookup(OffsetSpec.max_timestamp())
    assert (r.offset, r.timestamp) == (50, base + 10_000_000)
    r = lookup(OffsetSpec.for_timestamp(base + 5500))  # first ts >= -> record 6
    assert (r.offset, r.timestamp) == (6, base + 6000)
    r = lookup(OffsetSpec.for_timestamp(base))
    assert (r.offset, r.timestamp) == (0, base)
    r = lookup(OffsetSpec.for_timestamp(base + 60_500))  # record 50 (ts max) is the first >=
    assert r.offset == 50
    r = lookup(OffsetSpec.for_timestamp(base + 20_000_000))  # none: offset -1
    assert r.offset == -1

    # Consumer-side offsets_for_times, two clients
    c = confluent_consumer(broker.bootstrap)
    try:
        found = c.offsets_for_times([TopicPartition(topic, 0, base + 30_200)], timeout=10)
        assert found[0].offset == 31
    finally:
        c.close()
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    kc = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False)
    try:
        ktp = KTP(topic, 0)
        found = kc.offsets_for_times({ktp: base + 70_000})
        assert (found[ktp].offset, found[ktp].timestamp) == (50, base + 10_000_000)
        found = kc.offsets_for_times({ktp: base + 10_000_001})
        assert found[ktp] is None
        assert kc.end_offsets([ktp]) == {ktp: 100}
    finally:
        kc.close()

    # List offsets on a missing partition
    bad = TopicPartition(topic, 7)
    with pytest.raises(KafkaException):
        _result(admin.list_offsets({bad: OffsetSpec.latest()})[bad])


# ------------------------------------------------------ 4. LogAppendTime
@pytest.mark.parametrize("codec", ["none", "gzip"])
def test_log_append_time(broker, codec):
    topic = unique("lat")
    create_topic(broker.bootstrap, topic, 2, config={"message.timestamp.type": "LogAppendTime"})
    old = 1_000_000_000_000  # 2001: the producer's CreateTime, which must be replaced
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "acks": "all",
                  "compression.type": codec, "linger.ms": 5})
    reports = []
    before = int(time.time() * 1000)
    for i in range(200):
        p.produce(topic, key=b"k%d" % i, value=b"v%d" % i, partition=i % 2, timestamp=old,
                  on_delivery=lambda err, m: reports.append((err, m.timestamp())))
    assert p.flush(15) == 0
    after = int(time.time() * 1000)
    assert all(err is None for err, _ in reports)
    # The produce response carries the broker's LogAppendTime back to the producer.
    for _, (ts_type, ts) in reports:
        assert ts_type == TIMESTAMP_LOG_APPEND_TIME and before - 1000 <= ts <= after + 1000

    msgs = confluent_consume(broker.bootstrap, topic, 2, 200)
    for m in msgs:
        ts_type, ts = m.timestamp()
        assert ts_type == TIMESTAMP_LOG_APPEND_TIME
        assert before - 1000 <= ts <= after + 1000, (ts, before, after)
    assert sorted(m.value() for m in msgs) == sorted(b"v%d" % i for i in range(200))
    # Stored batches are marked LogAppendTime (attribute bit 3) and keep their codec.
    for part in range(2):
        attrs = raw_fetch_batch_attributes(broker.bootstrap, topic, part)
        assert attrs and all(a & 0x08 for a in attrs), attrs
        assert {a & 0x07 for a in attrs} == {CODEC_IDS[codec]}

    rows = kafka_python_consume(broker.bootstrap, topic, 2, 200)
    for *_, r in rows:
        assert r.timestamp_type == 1 and before - 1000 <= r.timestamp <= after + 1000

    # A CreateTime topic keeps the producer's timestamp
    ct = unique("ct")
    create_topic(broker.bootstrap, ct, 1)
    p.produce(ct, value=b"x", partition=0, timestamp=old)
    assert p.flush(15) == 0
    (m,) = confluent_consume(broker.bootstrap, ct, 1, 1)
    assert m.timestamp() == (TIMESTAMP_CREATE_TIME, old)


# -------------------------------------------------------- 5. auto-create
def test_auto_create_on_produce(broker):
    topic = unique("auto")
    admin = confluent_admin(broker.bootstrap)
    assert topic not in admin.list_topics(timeout=10).topics
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "message.timeout.ms": 20000})
    delivered = []
    for i in range(10):
        p.produce(topic, value=b"a%d" % i, on_delivery=lambda err, m: delivered.append((err, m.offset())))
    assert p.flush(25) == 0
    assert [err for err, _ in delivered] == [None] * 10
    assert sorted(o for _, o in delivered) == list(range(10))
    md = admin.list_topics(timeout=10).topics[topic]
    assert md.error is None and len(md.partitions) == 1  # num.partitions default
    msgs = confluent_consume(broker.bootstrap, topic, 1, 10)
    assert [m.value() for m in msgs] == [b"a%d" % i for i in range(10)]

    # An invalid name is not auto-created: INVALID_TOPIC_EXCEPTION in metadata
    md = admin.list_topics(topic="bad/name", timeout=10)
    assert md.topics["bad/name"].error.code() == KafkaError.TOPIC_EXCEPTION
    assert "bad/name" not in admin.list_topics(timeout=10).topics

    # kafka-python's producer also triggers auto-creation through metadata
    from kafka import KafkaProducer
    t2 = unique("auto-kp")
    kp = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", max_block_ms=15000)
    try:
        md2 = kp.send(t2, b"hello").get(timeout=15)
        assert (md2.topic, md2.partition, md2.offset) == (t2, 0, 0)
    finally:
        kp.close(timeout=10)


def test_auto_create_disabled(broker_factory):
    b = broker_factory("auto.create.topics.enable=false", "num.partitions=3")
    admin = confluent_admin(b.bootstrap)
    topic = unique("noauto")
    md = admin.list_topics(topic=topic, timeout=10)
    assert md.topics[topic].error is not None
    assert md.topics[topic].error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert topic not in admin.list_topics(timeout=10).topics

    # A producer cannot deliver to it.
    # (librdkafka waits topic.metadata.propagation.max.ms for the topic to appear)
    p = Producer({"bootstrap.servers": b.bootstrap, "message.timeout.ms": 20000,
                  "topic.metadata.propagation.max.ms": 1000})
    errors = []
    p.produce(topic, value=b"x", on_delivery=lambda err, m: errors.append(err))
    p.flush(15)
    assert len(errors) == 1 and errors[0] is not None
    assert errors[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, errors[0]
    assert topic not in admin.list_topics(timeout=10).topics

    # Explicit creation still works and uses num.partitions when unspecified (-1).
    _result(admin.create_topics([NewTopic(topic)], request_timeout=15)[topic])
    assert len(admin.list_topics(topic=topic, timeout=10).topics[topic].partitions) == 3
