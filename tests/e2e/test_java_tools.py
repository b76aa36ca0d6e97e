"""End-to-end: Apache Kafka's own command-line tools against ``sluice serve``.

These are Kafka 4.x's Java clients (deploy/install-kafka.sh pins the version):
the AdminClient behind kafka-topics / kafka-configs / kafka-get-offsets /
kafka-delete-records, the Java producer (idempotent by default, so
InitProducerId and sequence numbers are exercised) and the Java consumer
(KIP-227 incremental fetch sessions). Consumer groups are not implemented yet,
so consumers use ``--partition`` (manual assignment) and commit nothing.

Needs the ``kafka_tools`` fixture from tests/kafka_tools.py. JVM start-up
dominates, so each test keeps its tool runs few and runs independent ones
concurrently.
"""
from __future__ import annotations

import json
import re
import uuid
from collections import defaultdict

import pytest

pytestmark = pytest.mark.timeout(240)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2`` (what the Java producer hashes keys with), as a signed int32."""
    m, r, mask = 0x5BD1E995, 24, 0xFFFFFFFF
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    for i in range(length // 4):
        k = int.from_bytes(data[4 * i:4 * i + 4], "little")
        k = (k * m) & mask
        k ^= k >> r
        k = (k * m) & mask
        h = (h * m) & mask
        h ^= k
    tail = length & ~3
    rest = length % 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def java_partition(key: bytes, partitions: int) -> int:
    """The Java producer's partition for a keyed record: toPositive(murmur2(key)) % n."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def test_murmur2_matches_kafka():
    # Vectors from Kafka's UtilsTest.testMurmur2.
    assert murmur2(b"21") == -973932308
    assert murmur2(b"foobar") == -790332482
    assert murmur2(b"a-little-bit-long-string") == -985981536
    assert murmur2(b"a-little-bit-longer-string") == -1486304829
    assert murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") == -58897971
    assert murmur2(bytes([ord("a"), ord("b"), ord("c")])) == 479470107


def offsets(result) -> dict[int, int]:
    """kafka-get-offsets output ``topic:partition:offset`` -> {partition: offset}."""
    out = {}
    for line in result.lines:
        _topic, part, off = line.rsplit(":", 2)
        out[int(part)] = int(off)
    return out


def describe_topic(result) -> tuple[dict[str, str], list[dict[str, str]]]:
    """kafka-topics --describe output -> (topic line fields, partition line fields)."""
    head, parts = {}, []
    for line in result.lines:
        fields = dict(f.split(": ", 1) for f in line.strip().split("\t") if ": " in f)
        if "Partition" in fields:
            parts.append(fields)
        else:
            head = fields
    return head, parts


# ------------------------------------------------------------------ kafka-topics
def test_kafka_topics_create_list_describe_alter_delete(broker, kafka_tools):
    b = broker.bootstrap
    topic = unique("jt-topics")
    res = kafka_tools.run("kafka-topics", "--bootstrap-server", b, "--create", "--topic", topic,
                          "--partitions", "3", "--replication-factor", "1",
                          "--config", "retention.ms=3600000")
    assert f"Created topic {topic}." in res.stdout, res.describe()

    # A second create of the same name fails with TOPIC_ALREADY_EXISTS, as in Kafka.
    dup = kafka_tools.run("kafka-topics", "--bootstrap-server", b, "--create", "--topic", topic,
                          "--partitions", "3", check=False)
    assert dup.returncode != 0 and "already exists" in dup.stdout + dup.stderr, dup.describe()

    listed, described = kafka_tools.run_many([
        ("kafka-topics", ("--bootstrap-server", b, "--list")),
        ("kafka-topics", ("--bootstrap-server", b, "--describe", "--topic", topic)),
    ])
    assert topic in listed.lines, listed.describe()
    head, parts = describe_topic(described)
    assert head["Topic"] == topic and head["PartitionCount"] == "3", described.describe()
    assert head["ReplicationFactor"] == "1"
    assert "retention.ms=3600000" in head["Configs"], described.describe()
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", head["TopicId"]), described.describe()
    assert sorted(int(p["Partition"]) for p in parts) == [0, 1, 2]
    for p in parts:
        assert p["Leader"] == p["Replicas"] == p["Isr"] != "none", described.describe()

    kafka_tools.run("kafka-topics", "--bootstrap-server", b, "--alter", "--topic", topic, "--partitions", "4")
    described = kafka_tools.run("kafka-topics", "--bootstrap-server", b, "--describe", "--topic", topic)
    head2, parts = describe_topic(described)
    assert head2["PartitionCount"] == "4" and head2["TopicId"] == head["TopicId"], described.describe()
    assert sorted(int(p["Partition"]) for p in parts) == [0, 1, 2, 3]

    kafka_tools.run("kafka-topics", "--bootstrap-server", b, "--delete", "--topic", topic)
    listed = kafka_tools.run("kafka-topics", "--bootstrap-server", b, "--list")
    assert topic not in listed.lines, listed.describe()


# ------------------------------------------------------------------ kafka-configs
def test_kafka_configs_topic_and_broker(broker_factory, kafka_tools):
    broker = broker_factory("log.retention.ms=86400000")  # a static broker config, for the synonyms
    b = broker.bootstrap
    topic = unique("jt-configs")
    kafka_tools.run("kafka-topics", "--bootstrap-server", b, "--create", "--topic", topic,
                    "--partitions", "1", "--config", "retention.ms=3600000")

    def describe_topic_configs() -> dict[str, str]:
        res = kafka_tools.run("kafka-configs", "--bootstrap-server", b, "--entity-type", "topics",
                              "--entity-name", topic, "--describe")
        assert f"Dynamic configs for topic {topic} are:" in res.stdout, res.describe()
        out = {}
        for line in res.lines[1:]:
            name, _, rest = line.strip().partition("=")
            out[name] = rest.split(" sensitive=")[0]
        return out

    assert describe_topic_configs() == {"retention.ms": "3600000"}
    res = kafka_tools.run("kafka-configs", "--bootstrap-server", b, "--entity-type", "topics",
                          "--entity-name", topic, "--describe", "--all")
    # Kafka lists a config's sources most specific first: topic override, static broker, default.
    assert ("retention.ms=3600000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=3600000, "
            "STATIC_BROKER_CONFIG:log.retention.ms=86400000, DEFAULT_CONFIG:log.retention.ms=604800000}"
            in res.stdout), res.describe()
    assert ("max.message.bytes=1048588 sensitive=false synonyms={DEFAULT_CONFIG:message.max.bytes=1048588}"
            in res.stdout), res.describe()

    res = kafka_tools.run("kafka-configs", "--bootstrap-server", b, "--entity-type", "topics",
                          "--entity-name", topic, "--alter",
                          "--add-config", "retention.ms=7200000,max.message.bytes=2000000")
    assert f"Completed updating config for topic {topic}." in res.stdout, res.describe()
    assert describe_topic_configs() == {"retention.ms": "7200000", "max.message.bytes": "2000000"}

    kafka_tools.run("kafka-configs", "--bootstrap-server", b, "--entity-type", "topics",
                    "--entity-name", topic, "--alter", "--delete-config", "max.message.bytes")
    assert describe_topic_configs() == {"retention.ms": "7200000"}

    # Broker configs: the dynamic ones (none) and --all (static and defaults).
    dyn, full = kafka_tools.run_many([
        ("kafka-configs", ("--bootstrap-server", b, "--entity-type", "brokers", "--describe")),
        ("kafka-configs", ("--bootstrap-server", b, "--entity-type", "brokers", "--entity-name", "1",
                           "--describe", "--all")),
    ])
    assert "Dynamic configs for broker 1 are:" in dyn.stdout, dyn.describe()
    assert "All configs for broker 1 are:" in full.stdout, full.describe()
    values = {}
    for line in full.lines[1:]:
        name, _, rest = line.strip().partition("=")
        values[name] = rest.split(" sensitive=")[0]
    assert values.get("num.partitions") == "1", full.describe()
    assert values.get("log.retention.ms") == "86400000", full.describe()
    assert "auto.create.topics.enable" in values
    assert "num.partitions=1 sensitive=false synonyms={DEFAULT_CONFIG:num.partitions=1}" in full.stdout
    assert ("log.retention.ms=86400000 sensitive=false synonyms={STATIC_BROKER_CONFIG:log.retention.ms=86400000, "
            "DEFAULT_CONFIG:log.retention.ms=604800000}" in full.stdout), full.describe()


# ------------------------------------------------------------------ console producer / consumer
LINES = 3000
KEYS = 13


def test_console_producer_then_console_consumer_per_partition(broker, kafka_tools):
    b = broker.bootstrap
    topic = unique("jt-console")
    partitions = 3
    kafka_tools.run("kafka-topics", "--bootstrap-server", b, "--create", "--topic", topic,
                    "--partitions", str(partitions))

    sent = [(f"k{i % KEYS}", f"line-{i:05d}") for i in range(LINES)]
    res = kafka_tools.run("kafka-console-producer", "--bootstrap-server", b, "--topic", topic,
                          "--reader-property", "parse.key=true", "--reader-property", "key.separator=:",
                          "--command-property", "linger.ms=5",
                          input="".join(f"{k}:{v}\n" for k, v in sent), timeout=90)
    assert "ERROR" not in res.stderr, res.describe()

    # The Java producer puts a keyed record on toPositive(murmur2(key)) % partitions and
    # keeps stdin order per partition (idempotent, in-flight <= 5).
    expected: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for k, v in sent:
        expected[java_partition(k.encode(), partitions)].append((k, v))
    assert sum(len(v) for v in expected.values()) == LINES

    calls = []
    for p in range(partitions):
        calls.append(("kafka-console-consumer", (
            "--bootstrap-server", b, "--topic", topic, "--partition", str(p), "--offset", "earliest",
            "--max-messages", str(len(expected[p])), "--timeout-ms", "60000",
            "--formatter-property", "print.key=true", "--formatter-property", "print.offset=true",
            "--formatter-property", "print.partition=true")))
    results = kafka_tools.run_many(calls, timeout=120)

    for p, res in enumerate(results):
        assert f"Processed a total of {len(expected[p])} messages" in res.stderr, res.describe()
        got = []
        for line in res.lines:
            part, off, key, value = line.split("\t")
            assert part == f"Partition:{p}", line
            got.append((int(off.removeprefix("Offset:")), key, value))
        assert [o for o, _, _ in got] == list(range(len(expected[p]))), f"partition {p}: offsets not 0..n-1"
        assert [(k, v) for _, k, v in got] == expected[p], f"partition {p}: records differ or out of order"

    ends = offsets(kafka_tools.run("kafka-get-offsets", "--bootstrap-server", b, "--topic", topic,
                                   "--time", "-1"))
    assert ends == {p: len(expected[p]) for p in range(partitions)}


# ------------------------------------------------------------------ producer perf test
PERF_LINE = re.compile(r"^(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), "
                       r"([\d.]+) ms avg latency, ([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, "
                       r"(\d+) ms 99th, (\d+) ms 99.9th\.$")


def test_producer_perf_test_20000_records(broker, kafka_tools):
    b = broker.bootstrap
    topic = unique("jt-perf")
    kafka_tools.run("kafka-topics", "--bootstrap-server", b, "--create", "--topic", topic, "--partitions", "3")
    res = kafka_tools.run("kafka-producer-perf-test", "--topic", topic, "--num-records", "20000",
                          "--record-size", "1024", "--throughput", "-1",
                          "--producer-props", "acks=all", f"bootstrap.servers={b}", timeout=150)
    finals = [m for m in map(PERF_LINE.match, res.lines) if m]
    assert finals, res.describe()
    sent, rps, mbps = int(finals[-1].group(1)), float(finals[-1].group(2)), float(finals[-1].group(3))
    assert sent == 20000, res.describe()
    assert rps > 0 and mbps > 0
    print(f"kafka-producer-perf-test vs sluice: {finals[-1].group(0)}")

    latest, earliest = kafka_tools.run_many([
        ("kafka-get-offsets", ("--bootstrap-server", b, "--topic", topic, "--time", "-1")),
        ("kafka-get-offsets", ("--bootstrap-server", b, "--topic", topic, "--time", "-2")),
    ])
    ends = offsets(latest)
    assert set(ends) == {0, 1, 2} and sum(ends.values()) == 20000, latest.describe()
    assert offsets(earliest) == {0: 0, 1: 0, 2: 0}, earliest.describe()


# ------------------------------------------------------------------ get-offsets / delete-records
def test_get_offsets_and_delete_records(broker, kafka_tools, tmp_path):
    b = broker.bootstrap
    topic = unique("jt-delete")
    kafka_tools.run("kafka-topics", "--bootstrap-server", b, "--create", "--topic", topic, "--partitions", "3")
    # kafka-verifiable-producer: keys "0".."9" repeating, one JSON event per line on stdout.
    res = kafka_tools.run("kafka-verifiable-producer", "--bootstrap-server", b, "--topic", topic,
                          "--max-messages", "1500", "--acks", "-1", "--repeating-keys", "10", timeout=90)
    events = [json.loads(line) for line in res.lines if line.startswith("{")]
    summary = [e for e in events if e.get("name") == "tool_data"]
    assert summary and summary[-1]["sent"] == 1500 and summary[-1]["acked"] == 1500, res.describe()
    acked = [e for e in events if e.get("name") == "producer_send_success"]
    assert len(acked) == 1500
    per_part: dict[int, list[int]] = defaultdict(list)
    for e in acked:
        assert e["partition"] == java_partition(e["key"].encode(), 3), e
        per_part[e["partition"]].append(e["offset"])
    for p, offs in per_part.items():
        assert sorted(offs) == list(range(len(offs))), f"partition {p}: acked offsets not 0..n-1"

    latest, earliest = kafka_tools.run_many([
        ("kafka-get-offsets", ("--bootstrap-server", b, "--topic", topic, "--time", "-1")),
        ("kafka-get-offsets", ("--bootstrap-server", b, "--topic", topic, "--time", "-2")),
    ])
    ends = offsets(latest)
    assert ends == {p: len(per_part.get(p, [])) for p in range(3)}, latest.describe()
    assert sum(ends.values()) == 1500
    assert offsets(earliest) == {0: 0, 1: 0, 2: 0}, earliest.describe()
    p_mid, p_all, p_over = sorted(range(3), key=lambda p: -ends[p])
    assert ends[p_mid] > 10 and ends[p_all] > 0, ends

    cut = ends[p_mid] // 2
    spec = {"version": 1, "partitions": [
        {"topic": topic, "partition": p_mid, "offset": cut},
        {"topic": topic, "partition": p_all, "offset": -1},                # -1: up to the high watermark
        {"topic": topic, "partition": p_over, "offset": ends[p_over] + 50},  # beyond it: OFFSET_OUT_OF_RANGE
    ]}
    spec_file = tmp_path / "delete.json"
    spec_file.write_text(json.dumps(spec))
    res = kafka_tools.run("kafka-delete-records", "--bootstrap-server", b,
                          "--offset-json-file", str(spec_file))
    assert "Records delete operation completed:" in res.stdout, res.describe()
    assert f"partition: {topic}-{p_mid}\tlow_watermark: {cut}" in res.stdout, res.describe()
    assert f"partition: {topic}-{p_all}\tlow_watermark: {ends[p_all]}" in res.stdout, res.describe()
    assert re.search(rf"partition: {re.escape(topic)}-{p_over}\terror: .*OffsetOutOfRange", res.stdout), \
        res.describe()

    earliest, latest, first = kafka_tools.run_many([
        ("kafka-get-offsets", ("--bootstrap-server", b, "--topic", topic, "--time", "-2")),
        ("kafka-get-offsets", ("--bootstrap-server", b, "--topic", topic, "--time", "-1")),
        ("kafka-console-consumer", ("--bootstrap-server", b, "--topic", topic, "--partition", str(p_mid),
                                    "--offset", "earliest", "--max-messages", "1", "--timeout-ms", "60000",
                                    "--formatter-property", "print.offset=true")),
    ])
    assert offsets(earliest) == {p_mid: cut, p_all: ends[p_all], p_over: 0}, earliest.describe()
    assert offsets(latest) == ends, latest.describe()
    assert first.lines and first.lines[0].startswith(f"Offset:{cut}\t"), first.describe()
