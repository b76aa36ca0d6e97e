"""Kafka 4 admin APIs (issue 15), answered as Apache Kafka 4.4 answers them,
each shown with the client or tool that calls it against a real ``sluice
serve``, and compared with the Kafka reference (one KRaft node, node id 1,
like the Sluice broker) where the shape of the answer matters:

- DescribeTopicPartitions (75): raw requests (pagination, cursors, unknown
  and invalid names, bad cursors) to both; ``kafka-topics --describe`` (the
  broker's per-API request metric shows it used API 75, not Metadata);
  kafka-python's ``describe_topic_partitions``.

Differences that must exist are named where they are checked.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from kafka import KafkaAdminClient
from kafka.protocol.admin import DescribeTopicPartitionsRequest
from wire import WireClient

from bench.launch import BrokerProcess
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
