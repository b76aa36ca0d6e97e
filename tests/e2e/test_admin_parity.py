"""Kafka 4 admin APIs (issue 15), answered as Apache Kafka 4.4 answers them,
each shown with the client or tool that calls it against a real ``sluice
serve``, and compared with the Kafka reference (one KRaft node, node id 1,
like the Sluice broker) where the shape of the answer matters:

- DescribeTopicPartitions (75): raw requests (pagination, cursors, unknown
  and invalid names, bad cursors) to both; ``kafka-topics --describe`` (the
  broker's per-API request metric shows it used API 75, not Metadata);
  kafka-python's ``describe_topic_partitions``.
- AlterConfigs (33, non-incremental: the given configs replace the
  resource's dynamic ones): raw requests to both (replacement, validate
  only, Kafka's refusals); kafkajs's ``admin.alterConfigs`` and
  ``describeConfigs`` (tests/e2e/js/alter_configs.js, kafkajs from
  deploy/install-kafkajs.sh) run against both; kafka-python's
  ``alter_configs(incremental=False)``.
- DescribeLogDirs (35) with bytes: the same batches produced to both give
  the same partition sizes in raw answers and in ``kafka-log-dirs
  --describe``; AlterReplicaLogDirs (34) answered alike for a replica kept
  in place, an unknown directory and an unknown topic; and on two brokers
  sharing a bucket, kafka-reassign-partitions executes the rollback plan it
  printed (which names each replica's log directory) and verifies it.
- Group and broker configs at work (issue 16): the same group configs on
  both govern a KIP-848 member's heartbeat interval and a share member's
  interval, acquisition lock and start offset alike; broker and group
  configs set through confluent-kafka's ``incremental_alter_configs`` are
  in the bucket's metadata document and survive a restart, still acting.

Differences that must exist are named where they are checked.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.protocol.admin import (
    AlterConfigsRequest,
    AlterReplicaLogDirsRequest,
    DescribeConfigsRequest,
    DescribeLogDirsRequest,
    DescribeTopicPartitionsRequest,
    IncrementalAlterConfigsRequest,
)
from kafka.protocol.producer import ProduceRequest
from wire import WireClient, make_batch

from bench.launch import ROOT, BrokerProcess, wait_for_cluster
from tests.e2e.test_admin_conformance import Pair, until

pytestmark = pytest.mark.timeout(300)

DTP = DescribeTopicPartitionsRequest
TOPIC_OPS_BITS = sum(1 << op for op in (3, 4, 5, 6, 7, 8, 10, 11))   # Kafka's, without an authorizer
ZERO_ID = uuid.UUID(int=0)


@dataclass
class ParityPair(Pair):
    sluice_process: BrokerProcess


@pytest.fixture(scope="module")
def pair(kafka_tools, tmp_path_factory):
    """One Kafka 4.4 node and one Sluice broker (with --metrics) for the module."""
    from bench.kafka_reference import KafkaBroker

    kb = KafkaBroker(tmp_path_factory.mktemp("kafka"), heap="-Xmx512m", libs=str(kafka_tools.libs))
    sluice = BrokerProcess(tmp_path_factory.mktemp("sluice") / "broker", metrics=True)
    try:
        kb.start(timeout=120)
        sluice.start()
        yield ParityPair(kb.port, sluice.port, kb.bootstrap, sluice.bootstrap, sluice)
    finally:
        sluice.stop()
        rc = kb.stop(timeout=30)
        kb.cleanup()
        assert rc is not None, "Kafka broker did not exit"


def _create(pair: ParityPair, topics: dict[str, int]) -> None:
    """The same topics on both, and wait until each side describes them."""
    from confluent_kafka.admin import NewTopic
    for side, admin in pair.admins().items():
        futures = admin.create_topics([NewTopic(n, num_partitions=p, replication_factor=1)
                                       for n, p in topics.items()], request_timeout=15)
        for f in futures.values():
            f.result(20)
    port = {"kafka": pair.kafka_port, "sluice": pair.sluice_port}

    def described(side):
        with WireClient(port[side], timeout=20) as c:
            resp = c.request(DTP(topics=[DTP.TopicRequest(name=n) for n in topics],
                                 response_partition_limit=2000, cursor=None), 0)
        return all(t.error_code == 0 and len(t.partitions) == topics[t.name] for t in resp.topics)
    for side in port:
        until(f"{side} describes {sorted(topics)}", lambda side=side: described(side))


def _dtp(names: list[str], limit: int = 2000, cursor: tuple[str, int] | None = None):
    return DTP(topics=[DTP.TopicRequest(name=n) for n in names], response_partition_limit=limit,
               cursor=None if cursor is None else DTP.Cursor(topic_name=cursor[0], partition_index=cursor[1]))


def _shape(resp) -> tuple:
    """Everything of an answer but topic ids' values and leader epochs (Kafka's
    count its controller's elections, Sluice's the partition's owner claims)."""
    topics = []
    for t in resp.topics:
        parts = [(p.error_code, p.partition_index, p.leader_id, list(p.replica_nodes), list(p.isr_nodes),
                  p.eligible_leader_replicas, p.last_known_elr, list(p.offline_replicas)) for p in t.partitions]
        topics.append((t.error_code, t.name, t.topic_id not in (None, ZERO_ID), t.is_internal, parts,
                       t.topic_authorized_operations))
    cursor = resp.next_cursor
    return topics, None if cursor is None else (cursor.topic_name, cursor.partition_index)


def test_describe_topic_partitions_as_kafka(pair):
    run = uuid.uuid4().hex[:8]
    a, b = f"dtp-{run}-a", f"dtp-{run}-b"
    _create(pair, {a: 3, b: 2})
    missing, invalid = f"dtp-{run}-missing", "bad/name"
    cases = {
        "named, unsorted, twice, and missing": _dtp([b, a, missing, a]),
        "invalid name": _dtp([invalid]),
        "cut inside a topic": _dtp([a, b], limit=2),
        "from a cursor": _dtp([a, b], limit=2, cursor=(a, 2)),
        "limit used up at a topic's end": _dtp([a, b], limit=3),
        "limit 0 is 1": _dtp([a, b], limit=0),
        "cursor past the partitions": _dtp([a, b], cursor=(a, 7)),
        "all topics from a cursor": _dtp([], limit=3, cursor=(a, 1)),
        "cursor topic not named": _dtp([a], cursor=(b, 0)),
        "negative cursor partition": _dtp([a, b], cursor=(a, -1)),
        "missing topic at the cursor": _dtp([missing, b], limit=1, cursor=(missing, 0)),
    }
    for case, request in cases.items():
        try:
            kafka, sluice = pair.both(request, 0)
        except Exception as exc:
            raise AssertionError(case) from exc
        assert _shape(kafka) == _shape(sluice), case
    # what the cases show, on Sluice's answers
    _, sluice = pair.both(cases["named, unsorted, twice, and missing"], 0)
    topics, cursor = _shape(sluice)
    assert [(t[0], t[1]) for t in topics] == [(0, a), (0, b), (3, missing)] and cursor is None
    assert topics[0][4] == [(0, i, 1, [1], [1], [], [], []) for i in range(3)]
    assert topics[0][5] == topics[2][5] == TOPIC_OPS_BITS
    assert _shape(pair.both(cases["cut inside a topic"], 0)[1])[1] == (a, 2)
    assert _shape(pair.both(cases["limit used up at a topic's end"], 0)[1])[1] == (b, 0)
    assert {t[0] for t in _shape(pair.both(cases["cursor topic not named"], 0)[1])[0]} == {42}
    assert _shape(pair.both(cases["invalid name"], 0)[1])[0][0][0] == 17


def test_kafka_topics_describe_uses_describe_topic_partitions(pair, kafka_tools):
    """kafka-topics --describe prints the same partitions for both, and Sluice's
    request metrics show it asked DescribeTopicPartitions."""
    run = uuid.uuid4().hex[:8]
    name = f"described-{run}"
    _create(pair, {name: 3})
    sluice = pair.sluice_process
    before = _requests(sluice, "DescribeTopicPartitions")
    out = {}
    for side, bootstrap in (("kafka", pair.kafka_bootstrap), ("sluice", pair.sluice_bootstrap)):
        res = kafka_tools.run("kafka-topics", "--bootstrap-server", bootstrap, "--describe", "--topic", name)
        out[side] = [line.strip().split("\t") for line in res.lines if line.strip().startswith("Topic:")]
    assert _requests(sluice, "DescribeTopicPartitions") > before
    # the header line: TopicId differs, and so do the Configs (Kafka's server.properties sets segment.bytes)
    (k_head, *k_parts), (s_head, *s_parts) = out["kafka"], out["sluice"]
    assert [f for f in k_head if f.split(":")[0] in ("Topic", "PartitionCount", "ReplicationFactor")] \
        == [f for f in s_head if f.split(":")[0] in ("Topic", "PartitionCount", "ReplicationFactor")] \
        == [f"Topic: {name}", "PartitionCount: 3", "ReplicationFactor: 1"]
    assert k_parts == s_parts == [[f"Topic: {name}", f"Partition: {i}", "Leader: 1", "Replicas: 1", "Isr: 1",
                                   "Elr: ", "LastKnownElr:"] for i in range(3)]
    # every topic (listed by Metadata, then described with DescribeTopicPartitions)
    before = _requests(sluice, "DescribeTopicPartitions")
    res = kafka_tools.run("kafka-topics", "--bootstrap-server", pair.sluice_bootstrap, "--describe")
    assert [line.strip().split("\t") for line in res.lines if line.strip().startswith(f"Topic: {name}\t")
            and "Partition:" in line] == s_parts, res.describe()
    assert _requests(sluice, "DescribeTopicPartitions") > before
    # an unknown topic: the same failure
    for bootstrap in (pair.kafka_bootstrap, pair.sluice_bootstrap):
        res = kafka_tools.run("kafka-topics", "--bootstrap-server", bootstrap, "--describe", "--topic",
                              f"nope-{run}", check=False)
        assert res.returncode != 0 and f"Topic 'nope-{run}' does not exist" in res.stdout + res.stderr


def test_kafka_python_pages_through_describe_topic_partitions(pair):
    run = uuid.uuid4().hex[:8]
    names = {f"paged-{run}-{c}": n for c, n in (("a", 3), ("b", 1), ("c", 4))}
    _create(pair, names)
    admin = KafkaAdminClient(bootstrap_servers=pair.sluice_bootstrap, request_timeout_ms=15000)
    try:
        seen, cursor = [], None
        for _ in range(20):
            page = admin.describe_topic_partitions(sorted(names), response_partition_limit=3, cursor=cursor)
            seen += [(t["name"], p["partition_index"], p["leader_id"]) for t in page["topics"]
                     for p in t["partitions"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [(n, i, 1) for n in sorted(names) for i in range(names[n])]
    finally:
        admin.close()


def _requests(broker: BrokerProcess, api: str) -> float:
    return broker.scrape().get(("sluice_request_seconds_count", (("api", api),)), 0.0)


# ------------------------------------------------------------------ AlterConfigs (33)
ACR = AlterConfigsRequest.AlterConfigsResource
TOPIC, BROKER, GROUP = 2, 4, 32
DYNAMIC_TOPIC, DYNAMIC_BROKER = 1, 2


def _alter(resources: list[tuple[int, str, dict[str, str | None]]], validate_only: bool = False):
    return AlterConfigsRequest(resources=[ACR(resource_type=t, resource_name=n, configs=[
        ACR.AlterableConfig(name=k, value=v) for k, v in c.items()]) for t, n, c in resources],
        validate_only=validate_only)


def _dynamic(pair: ParityPair, side: str, rtype: int, name: str, keys: list[str]) -> dict[str, str]:
    """The resource's configs among ``keys`` whose source is a dynamic one."""
    port = pair.kafka_port if side == "kafka" else pair.sluice_port
    DR = DescribeConfigsRequest.DescribeConfigsResource
    with WireClient(port, timeout=20) as c:
        resp = c.request(DescribeConfigsRequest(resources=[DR(resource_type=rtype, resource_name=name,
                                                              configuration_keys=keys)],
                                                include_synonyms=False, include_documentation=False), 4)
    return {c.name: c.value for c in resp.results[0].configs if c.config_source in (DYNAMIC_TOPIC, DYNAMIC_BROKER)}


def test_alter_configs_replaces_the_set_as_kafka(pair):
    run = uuid.uuid4().hex[:8]
    topic = f"legacy-{run}"
    _create(pair, {topic: 1})
    keys = ["retention.ms", "max.message.bytes", "retention.bytes"]
    steps = [
        ("set two", _alter([(TOPIC, topic, {"retention.ms": "3600000", "max.message.bytes": "2000"})]),
         {"retention.ms": "3600000", "max.message.bytes": "2000"}),
        ("set one: the other goes", _alter([(TOPIC, topic, {"retention.bytes": "100000"})]),
         {"retention.bytes": "100000"}),
        ("validate only changes nothing", _alter([(TOPIC, topic, {"retention.ms": "1"})], validate_only=True),
         {"retention.bytes": "100000"}),
        ("none: all go", _alter([(TOPIC, topic, {})]), {}),
    ]
    for case, request, expected in steps:
        for version in (0, 2):
            kafka, sluice = pair.both(request, version)
            assert [(r.error_code, r.resource_type, r.resource_name) for r in kafka.responses] \
                == [(r.error_code, r.resource_type, r.resource_name) for r in sluice.responses] \
                == [(0, TOPIC, topic)], case
        assert _dynamic(pair, "sluice", TOPIC, topic, keys) == expected, case
        until(f"kafka: {case}", lambda expected=expected: _dynamic(pair, "kafka", TOPIC, topic, keys) == expected)

    # refusals: codes alike, and Kafka's words where Sluice words it as Kafka does
    refused = {
        "unknown topic": ([(TOPIC, f"nope-{run}", {"retention.ms": "1"})], True),
        "bad value": ([(TOPIC, topic, {"retention.ms": "soon"})], False),
        "unknown config": ([(TOPIC, topic, {"no.such.config": "1"})], False),
        "config twice": ([(TOPIC, topic, {"retention.ms": "1"})] * 1, True),
        "null value": ([(TOPIC, topic, {"retention.ms": None, "retention.bytes": None})], True),
        "another broker": ([(BROKER, "7", {"log.retention.ms": "1000"})], True),
        "broker id not a number": ([(BROKER, "one", {"log.retention.ms": "1000"})], True),
        "unknown resource type": ([(99, "x", {"a": "1"})], True),
    }
    for case, (resources, same_words) in refused.items():
        request = _alter(resources)
        if case == "config twice":      # a dict cannot hold a name twice
            request.resources[0].configs *= 2
        kafka, sluice = pair.both(request, 2)
        k = [(r.error_code, r.resource_name) for r in kafka.responses]
        s = [(r.error_code, r.resource_name) for r in sluice.responses]
        assert k == s and all(code != 0 for code, _ in s), (case, kafka, sluice)
        if same_words:
            assert [r.error_message for r in kafka.responses] == [r.error_message for r in sluice.responses], case
    # A resource named twice: Kafka 4.4 means to answer INVALID_REQUEST for both
    # (ConfigAdminManager.preprocess), but then fails building the answer
    # ("IllegalStateException: Duplicate key ConfigResource...") and never
    # answers, so the client times out. Sluice answers what Kafka means to.
    with WireClient(pair.sluice_port, timeout=20) as c:
        resp = c.request(_alter([(TOPIC, topic, {"retention.ms": "1"}), (TOPIC, topic, {})]), 2)
    assert [(r.error_code, r.error_message) for r in resp.responses] == \
        [(42, "Each resource must appear at most once.")] * 2
    assert _dynamic(pair, "sluice", TOPIC, topic, keys) == {}


def test_alter_configs_on_a_broker_as_kafka(pair):
    """A broker's dynamic configs replaced whole, per broker; the cluster-wide
    default ("") on Sluice only: the reference's ``kafka-storage format`` stored
    a cluster-wide ``min.insync.replicas``, which Kafka refuses to remove while
    ELR is enabled ("Cluster-level min.insync.replicas cannot be removed ..."),
    and Sluice has no such config."""
    key = ["log.retention.ms"]
    for case, configs, expected in (("set", {"log.retention.ms": "86400000"}, {"log.retention.ms": "86400000"}),
                                    ("emptied", {}, {})):
        kafka, sluice = pair.both(_alter([(BROKER, "1", configs)]), 2)
        assert [r.error_code for r in kafka.responses] == [r.error_code for r in sluice.responses] == [0], case
        assert _dynamic(pair, "sluice", BROKER, "1", key) == expected, case
        until(f"kafka: {case}", lambda expected=expected: _dynamic(pair, "kafka", BROKER, "1", key) == expected)
    with WireClient(pair.sluice_port, timeout=20) as c:
        for configs, expected in (({"log.retention.ms": "86400000"}, "86400000"), ({}, "604800000")):
            assert c.request(_alter([(BROKER, "", configs)]), 2).responses[0].error_code == 0
            DR = DescribeConfigsRequest.DescribeConfigsResource
            resp = c.request(DescribeConfigsRequest(resources=[DR(resource_type=BROKER, resource_name="1",
                                                                  configuration_keys=key)],
                                                    include_synonyms=False, include_documentation=False), 4)
            assert resp.results[0].configs[0].value == expected
    # read-only: refused alike
    kafka, sluice = pair.both(_alter([(BROKER, "1", {"node.id": "5"})]), 2)
    assert kafka.responses[0].error_code == sluice.responses[0].error_code == 42


def test_kafka_python_alter_configs_non_incremental(pair):
    run = uuid.uuid4().hex[:8]
    topic = f"kp-legacy-{run}"
    _create(pair, {topic: 1})
    admin = KafkaAdminClient(bootstrap_servers=pair.sluice_bootstrap, request_timeout_ms=15000)
    try:
        res = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.ms": "4000000"})],
                                  incremental=False)
        assert res == {"topic": {topic: "OK"}}
        assert _dynamic(pair, "sluice", TOPIC, topic, ["retention.ms"]) == {"retention.ms": "4000000"}
        res = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.ms": "soon"})],
                                  incremental=False)
        assert "InvalidConfigurationError" in res["topic"][topic], res
    finally:
        admin.close()


@pytest.fixture(scope="module")
def kafkajs() -> Path:
    """kafkajs's node_modules (deploy/install-kafkajs.sh, cached); fails, never skips, without it."""
    out = subprocess.run([str(ROOT / "deploy" / "install-kafkajs.sh")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"kafkajs could not be installed:\n{out.stderr}"
    return Path(out.stdout.strip().splitlines()[-1])


def _kafkajs_alter_configs(modules: Path, bootstrap: str, topic: str) -> list[dict]:
    res = subprocess.run(["node", str(ROOT / "tests" / "e2e" / "js" / "alter_configs.js"), bootstrap, topic, "1"],
                         env=dict(os.environ, NODE_PATH=str(modules)), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]


def test_kafkajs_alter_configs_and_describe_configs(pair, kafkajs):
    """kafkajs's admin.alterConfigs (AlterConfigs v0) replaces a topic's and a
    broker's dynamic configs on Sluice as on Kafka; every alter step ends alike."""
    run = uuid.uuid4().hex[:8]
    topic = f"kafkajs-{run}"
    _create(pair, {topic: 1})
    sluice = _kafkajs_alter_configs(kafkajs, pair.sluice_bootstrap, topic)
    kafka = _kafkajs_alter_configs(kafkajs, pair.kafka_bootstrap, topic)
    assert [s["step"] for s in sluice] == [k["step"] for k in kafka] and len(sluice) == 12
    for k, s in zip(kafka, sluice):
        if "described" not in s["step"] and s["step"] != "unchanged":      # Kafka applies configs asynchronously
            assert (k["ok"], k.get("type")) == (s["ok"], s.get("type")), (k, s)
    got = {s["step"]: s for s in sluice}
    assert got["described"]["out"]["configs"] == {"retention.ms": {"value": "3600000", "isDefault": False},
                                                  "max.message.bytes": {"value": "2000", "isDefault": False}}
    assert got["described again"]["out"]["configs"]["max.message.bytes"]["isDefault"] is True
    assert got["described again"]["out"]["configs"]["retention.ms"]["value"] == "7200000"
    assert got["unchanged"]["out"] == got["described again"]["out"]
    assert (got["bad value"]["ok"], got["bad value"]["type"]) == (False, "INVALID_CONFIG")
    assert (got["unknown topic"]["ok"], got["unknown topic"]["type"]) == (False, "UNKNOWN_TOPIC_OR_PARTITION")
    assert got["broker described"]["out"]["configs"]["log.retention.ms"] == {"value": "86400000",
                                                                             "isDefault": False}
    assert got["broker described again"]["out"]["configs"]["log.retention.ms"]["isDefault"] is True, sluice[-1]


# ------------------------------------------------------------------ DescribeLogDirs (35), AlterReplicaLogDirs (34)
PR = ProduceRequest
DT = DescribeLogDirsRequest.DescribableLogDirTopic
AD = AlterReplicaLogDirsRequest.AlterReplicaLogDir


def _produce_same(pair: ParityPair, topic: str, batches: dict[int, list[bytes]]) -> None:
    """The same record batches (same bytes) appended to both, acks=all."""
    for port in (pair.kafka_port, pair.sluice_port):
        with WireClient(port, timeout=20) as c:
            for partition, batch in batches.items():
                resp = c.request(PR(transactional_id=None, acks=-1, timeout_ms=10000, topic_data=[
                    PR.TopicProduceData(name=topic, partition_data=[PR.TopicProduceData.PartitionProduceData(
                        index=partition, records=batch)])]), 9)
                assert resp.responses[0].partition_responses[0].error_code == 0


def _log_dirs(port: int, topics: list[tuple[str, list[int]]] | None, version: int = 4):
    with WireClient(port, timeout=20) as c:
        return c.request(DescribeLogDirsRequest(topics=None if topics is None else [
            DT(topic=t, partitions=ps) for t, ps in topics]), version)


def _mine(resp, names: set[str]) -> tuple:
    """An answer's shape, restricted to ``names`` (Kafka's directory also holds
    its internal topics and every other test's)."""
    [d] = resp.results
    topics = sorted((t.name, [(p.partition_index, p.partition_size, p.offset_lag, p.is_future_key)
                              for p in sorted(t.partitions, key=lambda p: p.partition_index)])
                    for t in d.topics if t.name in names)
    return d.error_code, topics


def test_describe_log_dirs_reports_the_bytes_as_kafka(pair, kafka_tools):
    run = uuid.uuid4().hex[:8]
    a, b = f"dirs-{run}-a", f"dirs-{run}-b"
    _create(pair, {a: 2, b: 1})
    ts = 1_700_000_000_000
    _produce_same(pair, a, {0: make_batch([b"x" * 300] * 5, timestamp_ms=ts), 1: make_batch([b"y"], timestamp_ms=ts)})
    _produce_same(pair, a, {0: make_batch([b"z" * 40], timestamp_ms=ts)})
    names = {a, b}
    cases = {"all": None, "one partition": [(a, [1])], "one topic": [(b, [0])], "unknown": [(f"nope-{run}", [0])]}
    for version in (1, 3, 4):
        for case, topics in cases.items():
            kafka = _log_dirs(pair.kafka_port, topics, version)
            sluice = _log_dirs(pair.sluice_port, topics, version)
            assert _mine(kafka, names) == _mine(sluice, names), (version, case)
            if version >= 3:
                assert kafka.error_code == sluice.error_code == 0
    _, topics = _mine(_log_dirs(pair.sluice_port, None), names)
    sizes = dict(topics)
    assert sizes[b] == [(0, 0, 0, False)] and [p[0] for p in sizes[a]] == [0, 1]
    assert sizes[a][0][1] == len(make_batch([b"x" * 300] * 5, timestamp_ms=ts)) + len(
        make_batch([b"z" * 40], timestamp_ms=ts))
    # the one directory: named after the object store and the WAL; the store's volume is known (file://)
    [d] = _log_dirs(pair.sluice_port, None).results
    objects = pair.sluice_process.data_dir / "objects"
    assert d.log_dir == f"file://{objects}#wal={pair.sluice_process.data_dir / 'wal'}"
    assert d.total_bytes >= d.usable_bytes > 0
    # the sizes stay once uploaded and recorded (bytes in the bucket per the manifest)
    with WireClient(pair.sluice_port, timeout=20) as c:
        topic_id = c.request(_dtp([a]), 0).topics[0].topic_id
    manifest = objects / "manifests" / topic_id.hex / "0.json"
    until("partition 0's batches in its manifest",
          lambda: manifest.exists() and json.loads(manifest.read_text()).get("next_offset") == 6)
    assert _mine(_log_dirs(pair.sluice_port, None), names) == _mine(_log_dirs(pair.kafka_port, None), names)

    # kafka-log-dirs --describe prints the same partitions and sizes
    out = {}
    for side, bootstrap in (("kafka", pair.kafka_bootstrap), ("sluice", pair.sluice_bootstrap)):
        res = kafka_tools.run("kafka-log-dirs", "--bootstrap-server", bootstrap, "--describe",
                              "--broker-list", "1", "--topic-list", f"{a},{b}")
        doc = json.loads(next(line for line in res.lines if line.startswith("{")))
        [broker] = doc["brokers"]
        [logdir] = broker["logDirs"]
        assert broker["broker"] == 1 and logdir["error"] is None, res.describe()
        out[side] = sorted((p["partition"], p["size"], p["offsetLag"], p["isFuture"]) for p in logdir["partitions"])
    assert out["kafka"] == out["sluice"] and len(out["sluice"]) == 3

    # AlterReplicaLogDirs: each broker asked about its own directory, and another
    replies = {}
    for side, port in (("kafka", pair.kafka_port), ("sluice", pair.sluice_port)):
        own = _log_dirs(port, None).results[0].log_dir
        with WireClient(port, timeout=20) as c:
            resp = c.request(AlterReplicaLogDirsRequest(dirs=[
                AD(path=own, topics=[AD.AlterReplicaLogDirTopic(name=a, partitions=[0, 1]),
                                     AD.AlterReplicaLogDirTopic(name=f"nope-{run}", partitions=[0])]),
                AD(path="/no/such/dir", topics=[AD.AlterReplicaLogDirTopic(name=b, partitions=[0])])]), 2)
        replies[side] = sorted((t.topic_name, p.partition_index, p.error_code) for t in resp.results
                               for p in t.partitions)
    assert replies["kafka"] == replies["sluice"] == sorted(
        [(a, 0, 0), (a, 1, 0), (f"nope-{run}", 0, 3), (b, 0, 57)])


def test_kafka_reassign_partitions_rolls_back_with_log_dirs(broker_factory, tmp_path, kafka_tools):
    """Two brokers on one (file) bucket: a move with a plan saying "any", then the
    rollback plan kafka-reassign-partitions printed, which names the partition's
    log directory: the tool asks AlterReplicaLogDirs until the move back lands,
    and --verify reports the replica in that directory."""
    objects = f"file://{tmp_path / 'bucket'}"
    overrides = ("broker.heartbeat.interval.ms=200", "broker.session.timeout.ms=2000",
                 "autobalancer.controller.enable=false")
    brokers = {n: broker_factory(*overrides, f"node.id={n}", name=f"node{n}",
                                 extra_args=["--object-store", objects]) for n in (1, 2)}
    seen = wait_for_cluster([("127.0.0.1", b.port) for b in brokers.values()], timeout=20)
    assert all(len(v) == 2 for v in seen.values()), seen
    bs = ",".join(b.bootstrap for b in brokers.values())
    topic = "rolled"
    kafka_tools.run("kafka-topics", "--bootstrap-server", bs, "--create", "--topic", topic,
                    "--replica-assignment", "1,2")

    def placed() -> dict[int, int]:
        with WireClient(brokers[1].port, timeout=20) as c:
            resp = c.request(_dtp([topic]), 0)
        return {p.partition_index: p.leader_id for t in resp.topics for p in t.partitions}
    until("both brokers to know the topic", lambda: placed() == {0: 1, 1: 2} and all(
        _log_dirs(b.port, None).results[0].topics for b in brokers.values()))

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": topic, "partition": 0, "replicas": [2], "log_dirs": ["any"]}]}))
    res = kafka_tools.run("kafka-reassign-partitions", "--bootstrap-server", bs, "--reassignment-json-file",
                          str(plan), "--execute")
    lines = res.lines
    rollback = json.loads(lines[lines.index("Current partition replica assignment") + 1])
    dir1 = _log_dirs(brokers[1].port, None).results[0].log_dir
    assert rollback["partitions"] == [{"topic": topic, "partition": 0, "replicas": [1], "log_dirs": [dir1]}], \
        res.describe()
    until("the move", lambda: placed() == {0: 2, 1: 2}, timeout=60)

    back = tmp_path / "rollback.json"
    back.write_text(json.dumps(rollback))
    args = ("--bootstrap-server", bs, "--reassignment-json-file", str(back))
    res = kafka_tools.run("kafka-reassign-partitions", *args, "--execute", "--timeout", "60000", timeout=120)
    assert f"Successfully started moving log directory to {dir1} for replica {topic}-0 with broker 1" \
        in res.stdout, res.describe()
    until("the move back", lambda: placed() == {0: 1, 1: 2}, timeout=60)
    res = kafka_tools.run("kafka-reassign-partitions", *args, "--verify")
    assert f"Reassignment of partition {topic}-0 is completed." in res.stdout, res.describe()
    assert f"Reassignment of replica {topic}-0-1 completed successfully." in res.stdout, res.describe()


# ------------------------------------------------------------------ group and broker configs at work (issue 16)
def _coordinator_ready(c: WireClient, group: str) -> bool:
    """FindCoordinator (Kafka creates __consumer_offsets on the first lookup): is the group served?"""
    from kafka.protocol.metadata import FindCoordinatorRequest
    return c.request(FindCoordinatorRequest(key_type=0, coordinator_keys=[group]), 4).coordinators[0].error_code == 0


def _join_consumer(port: int, group: str, topic: str) -> int:
    """A KIP-848 member joins (epoch 0) and leaves: the heartbeat interval it was given."""
    from broker.apis.specs import ConsumerGroupHeartbeatRequest as H

    member = uuid.uuid4().hex[:22]
    with WireClient(port, timeout=20) as c:
        if not _coordinator_ready(c, group):
            return -1
        r = c.request(H(group_id=group, member_id=member, member_epoch=0, instance_id=None, rack_id=None,
                        rebalance_timeout_ms=30000, subscribed_topic_names=[topic], subscribed_topic_regex=None,
                        server_assignor=None, topic_partitions=[]), 1)
        assert r.error_code in (0, 14, 15, 16), r       # Kafka: until its coordinator is loaded
        if r.error_code == 0:
            c.request(H(group_id=group, member_id=member, member_epoch=-1, instance_id=None, rack_id=None,
                        rebalance_timeout_ms=-1, subscribed_topic_names=None, subscribed_topic_regex=None,
                        server_assignor=None, topic_partitions=None), 1)
    return r.heartbeat_interval_ms if r.error_code == 0 else -1


def _share_member(port: int, group: str, topic: str) -> tuple[int, int, list[int]]:
    """A share member joins, fetches once (waiting for its assignment) and leaves:
    (heartbeat interval, acquisition lock timeout, offsets acquired)."""
    from broker.apis.specs import ShareFetchRequest as F
    from broker.apis.specs import ShareGroupHeartbeatRequest as H

    member = uuid.uuid4().hex[:22]
    with WireClient(port, timeout=20) as c:
        if not _coordinator_ready(c, group):
            return -1, -1, []
        hb = c.request(H(group_id=group, member_id=member, member_epoch=0, rack_id=None,
                         subscribed_topic_names=[topic]), 1)
        if hb.error_code != 0:
            return -1, -1, []                           # Kafka: until its coordinator is loaded
        epoch = hb.member_epoch
        while hb.assignment is None or not hb.assignment.topic_partitions:
            time.sleep(0.2)
            hb = c.request(H(group_id=group, member_id=member, member_epoch=epoch, rack_id=None,
                             subscribed_topic_names=None), 1)
            assert hb.error_code == 0, hb
            epoch = hb.member_epoch
        tid = hb.assignment.topic_partitions[0].topic_id
        acquired: list[int] = []
        lock_ms = -1
        for session_epoch in range(20):                 # Kafka loads the share-partition asynchronously
            r = c.request(F(group_id=group, member_id=member, share_session_epoch=session_epoch, max_wait_ms=1000,
                            min_bytes=1, max_bytes=1 << 20, max_records=10, batch_size=10,
                            topics=[F.FetchTopic(topic_id=tid, partitions=[
                                F.FetchTopic.FetchPartition(partition_index=0, acknowledgement_batches=[])])],
                            forgotten_topics_data=[]), 1)
            assert r.error_code == 0, r
            lock_ms = r.acquisition_lock_timeout_ms
            acquired = [o for t in r.responses for p in t.partitions for a in p.acquired_records
                        for o in range(a.first_offset, a.last_offset + 1)]
            if acquired:
                break
        c.request(H(group_id=group, member_id=member, member_epoch=-1, rack_id=None, subscribed_topic_names=None), 1)
    return hb.heartbeat_interval_ms, lock_ms, acquired


def test_group_configs_govern_consumer_and_share_groups_as_kafka(pair):
    """kafka-configs' group configs at work on both: a KIP-848 member is asked to
    heartbeat at the group's consumer.heartbeat.interval.ms, a share member at
    its share.heartbeat.interval.ms; its ShareFetch states the group's
    share.record.lock.duration.ms and starts at its share.auto.offset.reset
    (earliest: the record produced before the group existed)."""
    from tests.e2e.test_admin_conformance import alter, describe

    topic, consumer, share = f"gc-{uuid.uuid4().hex[:8]}", f"gc-{uuid.uuid4().hex[:8]}", f"gs-{uuid.uuid4().hex[:8]}"
    _create(pair, {topic: 1})
    _produce_same(pair, topic, {0: make_batch([b"before the group"])})
    kafka, sluice = alter(pair, [
        (GROUP, consumer, [("consumer.heartbeat.interval.ms", 0, "6000"), ("consumer.session.timeout.ms", 0, "50000")]),
        (GROUP, share, [("share.heartbeat.interval.ms", 0, "7000"), ("share.record.lock.duration.ms", 0, "20000"),
                        ("share.auto.offset.reset", 0, "earliest")])], validate_only=False)
    assert kafka == sluice == [(0, None)] * 2
    # Kafka applies group configs once its broker replays the controller's record: before a
    # share member's first fetch, or its share-partition would start at the default, latest
    until("Kafka applies the share group's configs", lambda: describe(
        pair, GROUP, share, ["share.auto.offset.reset"])[0][1]["share.auto.offset.reset"][0] == "earliest")
    port = {"kafka": pair.kafka_port, "sluice": pair.sluice_port}
    for side in port:
        assert until(f"{side}: consumer group's interval", lambda side=side: _join_consumer(
            port[side], consumer, topic) == 6000)
        got = until(f"{side}: share group's configs", lambda side=side: (
            lambda r: r if r[0] == 7000 else None)(_share_member(port[side], share, topic)))
        assert got == (7000, 20000, [0]), side
    # a broker's bounds are checked against the group's whole set: the same refusal from both
    kafka, sluice = alter(pair, [(GROUP, consumer, [("consumer.heartbeat.interval.ms", 0, "16000")])],
                          validate_only=True)
    assert kafka == sluice == [(40, "consumer.heartbeat.interval.ms must be in the range 5000 to 15000 inclusive.")]


def test_broker_and_group_configs_survive_a_restart_from_the_bucket(broker_factory, tmp_path):
    """Set through confluent-kafka's incremental_alter_configs (broker 1) and
    IncrementalAlterConfigs (the cluster-wide default, a group) on a short-lived
    broker; they are in the bucket's cluster/metadata.json, and after a restart
    the broker describes them with their sources and acts on them: a batch above
    the dynamic message.max.bytes is MESSAGE_TOO_LARGE, a consumer member gets the
    group's heartbeat interval. On the way, a group config is checked as Kafka's
    GroupConfig checks it: within the broker's (here lowered) bounds, and the
    session above the group's heartbeat interval."""
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    DYNAMIC_DEFAULT = 3     # DYNAMIC_DEFAULT_BROKER_CONFIG

    bucket = tmp_path / "bucket"
    b = broker_factory("group.consumer.min.session.timeout.ms=1000", "group.consumer.min.heartbeat.interval.ms=500",
                       extra_args=["--object-store", f"file://{bucket}"])
    topic, group = "kept", "kept-group"
    _create_one(b.bootstrap, topic)
    admin = AdminClient({"bootstrap.servers": b.bootstrap, "log_level": 0})
    res = ConfigResource(ResourceType.BROKER, "1", incremental_configs=[
        ConfigEntry("message.max.bytes", "2000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res])[res].result(15)
    AR = IncrementalAlterConfigsRequest.AlterConfigsResource
    with WireClient(b.port, timeout=20) as c:      # librdkafka names no default broker, nor group configs
        r = c.request(IncrementalAlterConfigsRequest(validate_only=False, resources=[
            AR(resource_type=BROKER, resource_name="", configs=[AR.AlterableConfig(
                name="log.retention.ms", config_operation=0, value="7200000")]),
            AR(resource_type=GROUP, resource_name=group, configs=[AR.AlterableConfig(
                name="consumer.heartbeat.interval.ms", config_operation=0, value="6000")])]), 1)
    assert [x.error_code for x in r.responses] == [0, 0], r
    with WireClient(b.port, timeout=20) as c:      # the broker's lowered bounds, and the group's whole set
        answers = [c.request(IncrementalAlterConfigsRequest(validate_only=True, resources=[AR(
            resource_type=GROUP, resource_name=group, configs=[AR.AlterableConfig(
                name="consumer.session.timeout.ms", config_operation=0, value=v)])]), 1).responses[0]
            for v in ("6000", "7000")]
    assert [(x.error_code, x.error_message) for x in answers] == [
        (40, "consumer.session.timeout.ms must be greater than consumer.heartbeat.interval.ms"), (0, None)]
    doc = json.loads((bucket / "cluster" / "metadata.json").read_bytes())
    assert doc["broker_configs"] == {"1": {"message.max.bytes": "2000"}, "": {"log.retention.ms": "7200000"}}
    assert doc["group_configs"] == {group: {"consumer.heartbeat.interval.ms": "6000"}}

    b.stop()
    b.start()
    with WireClient(b.port, timeout=20) as c:
        d = c.request(DescribeConfigsRequest(resources=[DescribeConfigsRequest.DescribeConfigsResource(
            resource_type=BROKER, resource_name="1", configuration_keys=["message.max.bytes", "log.retention.ms"])],
            include_synonyms=False, include_documentation=False), 4)
        assert {e.name: (e.value, e.config_source) for e in d.results[0].configs} == {
            "message.max.bytes": ("2000", DYNAMIC_BROKER), "log.retention.ms": ("7200000", DYNAMIC_DEFAULT)}
        produced = c.request(ProduceRequest(transactional_id=None, acks=-1, timeout_ms=10000, topic_data=[
            PR.TopicProduceData(name=topic, partition_data=[PR.TopicProduceData.PartitionProduceData(
                index=0, records=make_batch([b"x" * 3000]))])]), 9)
        assert produced.responses[0].partition_responses[0].error_code == 10      # MESSAGE_TOO_LARGE
    assert _join_consumer(b.port, group, topic) == 6000


def _create_one(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    admin.create_topics([NewTopic(topic, 1, 1)], request_timeout=15)[topic].result(20)
