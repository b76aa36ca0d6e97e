"""DescribeProducers (61), ApiVersions' features and UpdateFeatures (57)
against `sluice serve`, with Apache Kafka's own tools and compared with
Apache Kafka 4.4 on the wire:

- ``kafka-transactions describe-producers`` lists an idempotent
  confluent-kafka producer (id, epoch, last sequence, last timestamp,
  coordinator epoch -1, no open transaction) on the partition it wrote, none
  on the other; DescribeProducers answers as Kafka for an unknown topic or
  partition and with the same producer shape;
- ``kafka-features describe`` lists what Sluice implements (group.version 1:
  KIP-848 consumer groups; share.version 1: share groups;
  broker/apis/features.py says why the others are absent),
  ``kafka-features upgrade`` /
  ``disable`` fail with Kafka's messages, and UpdateFeatures answers as
  Kafka's controller for the updates both refuse alike.

Differences that must exist: Kafka supports and finalizes its 4.4 features
(metadata.version 33, transaction.version 2, streams.version 1, ...), Sluice
only group.version 1 and share.version 1, so an update of one of the others is refused by
Sluice and applied (or validated) by Kafka.
"""
from __future__ import annotations

import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.protocol.admin import DescribeProducersRequest, UpdateFeaturesRequest
from kafka.protocol.metadata import ApiVersionsRequest

from tests.wire import WireClient

TOPIC = "producers"


def make_topic_and_produce(bootstrap: str, records: int = 5) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(TOPIC, 2, 1)])[TOPIC].result(30)
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 0})
    for _ in range(records):
        p.produce(TOPIC, value=b"v", partition=0)
    assert p.flush(30) == 0


def describe_producers(port: int, topics: list[tuple[str, list[int]]]) -> list:
    T = DescribeProducersRequest.TopicRequest
    with WireClient(port) as c:
        r = c.request(DescribeProducersRequest(topics=[T(name=n, partition_indexes=ps) for n, ps in topics]),
                      version=0)
    return [(t.name, p.partition_index, p.error_code, p.error_message,
             [(s.producer_epoch, s.last_sequence, s.coordinator_epoch, s.current_txn_start_offset,
               s.producer_id >= 0, s.last_timestamp > 1_600_000_000_000) for s in p.active_producers])
            for t in r.topics for p in t.partitions]


def test_kafka_transactions_describe_producers(broker, kafka_tools):
    make_topic_and_produce(broker.bootstrap)
    started_ms = int(time.time() * 1000)
    res = kafka_tools.run("kafka-transactions", "--bootstrap-server", broker.bootstrap, "describe-producers",
                          "--topic", TOPIC, "--partition", "0")
    header, *rows = [line.split() for line in res.lines]
    assert header == ["ProducerId", "ProducerEpoch", "LatestCoordinatorEpoch", "LastSequence", "LastTimestamp",
                      "CurrentTransactionStartOffset"], res.describe()
    [(pid, epoch, coordinator_epoch, last_seq, last_ts, txn_start)] = rows
    assert int(pid) >= 0 and (epoch, coordinator_epoch, last_seq, txn_start) == ("0", "-1", "4", "None")
    assert started_ms - 120_000 < int(last_ts) <= started_ms + 1000, res.describe()
    res = kafka_tools.run("kafka-transactions", "--bootstrap-server", broker.bootstrap, "describe-producers",
                          "--topic", TOPIC, "--partition", "1")
    assert [line.split() for line in res.lines] == [header], res.describe()    # nobody wrote there


UNKNOWN_FEATURE_UPDATES = [   # (feature, level, upgrade type, validate only): refused alike by both
    ("no.such.feature", 1, 1, False), ("no.such.feature", 0, 2, True), ("no.such.feature", 0, 1, False),
    ("no.such.feature", -1, 1, True), ("no.such.feature", 1, 0, True), ("no.such.feature", 3, 3, True),
]


def update_features(port: int) -> list:
    F = UpdateFeaturesRequest.FeatureUpdateKey
    out = []
    with WireClient(port) as c:
        for version in (0, 1, 2):
            for name, level, upgrade, validate in UNKNOWN_FEATURE_UPDATES:
                key = (F(feature=name, max_version_level=level, allow_downgrade=upgrade != 1) if version == 0
                       else F(feature=name, max_version_level=level, upgrade_type=upgrade))
                r = c.request(UpdateFeaturesRequest(timeout_ms=10000, feature_updates=[key],
                                                    validate_only=validate), version=version)
                out.append((version, name, level, upgrade, r.error_code, r.error_message,
                            [(x.feature, x.error_code, x.error_message) for x in r.results] if version < 2 else None))
            r = c.request(UpdateFeaturesRequest(timeout_ms=10000, feature_updates=[], validate_only=True),
                          version=version)
            out.append((version, "none", r.error_code, r.error_message))
    return out


def features(port: int) -> tuple[dict, dict, int]:
    with WireClient(port) as c:
        r = c.request(ApiVersionsRequest(client_software_name="t", client_software_version="1"), version=4)
    return ({f.name: (f.min_version, f.max_version) for f in r.supported_features},
            {f.name: (f.min_version_level, f.max_version_level) for f in r.finalized_features},
            r.finalized_features_epoch)


def test_producers_and_features_as_kafka(broker, kafka_reference):
    answers = {}
    for name, bootstrap, port in (("sluice", broker.bootstrap, broker.port),
                                  ("kafka", kafka_reference.bootstrap, kafka_reference.port)):
        make_topic_and_produce(bootstrap)
        answers[name] = {
            "producers": describe_producers(port, [(TOPIC, [0, 1, 9]), ("no-such-topic", [0])]),
            "update": update_features(port),
            "features": features(port),
        }
    sluice, kafka = answers["sluice"], answers["kafka"]
    assert sluice["producers"] == kafka["producers"]
    assert sluice["producers"][0] == (TOPIC, 0, 0, None, [(0, 4, -1, -1, True, True)])
    assert sluice["producers"][2][2:4] == (3, None)       # an unknown partition
    assert sluice["producers"][3][2:4] == (3, "This server does not host this topic-partition.")
    assert sluice["update"] == kafka["update"]
    # what Sluice advertises is a subset of Kafka's features, at levels Kafka knows
    supported, finalized, epoch = sluice["features"]
    k_supported, k_finalized, _ = kafka["features"]
    assert "metadata.version" in k_supported and "transaction.version" in k_finalized
    for f, (lo, hi) in supported.items():
        assert k_supported[f][0] <= lo <= hi <= k_supported[f][1]
    assert set(finalized) <= set(supported)
    assert epoch == (0 if finalized else -1)


def test_kafka_features_describe_and_refused_updates(broker, kafka_tools):
    b = broker.bootstrap
    res = kafka_tools.run("kafka-features", "--bootstrap-server", b, "describe")
    assert sorted(line.split() for line in res.lines) == [     # KIP-848 and share groups (apis/features.py)
        ["Feature:", "group.version", "SupportedMinVersion:", "0", "SupportedMaxVersion:", "1",
         "FinalizedVersionLevel:", "1", "Epoch:", "0"],
        ["Feature:", "share.version", "SupportedMinVersion:", "0", "SupportedMaxVersion:", "1",
         "FinalizedVersionLevel:", "1", "Epoch:", "0"]], res.describe()
    calls = [("upgrade", "--feature", "transaction.version=2"),
             ("upgrade", "--feature", "transaction.version=2", "--dry-run"),
             ("disable", "--feature", "streams.version")]
    results = kafka_tools.run_many([("kafka-features", ("--bootstrap-server", b, *args)) for args in calls],
                                  check=False)
    upgrade, dry_run, disable = results
    for r in results:
        assert r.returncode == 1 and "1 out of 1 operation(s) failed." in r.stderr, r.describe()
    assert ("Could not upgrade transaction.version to 2. The update failed for all features since the "
            "following feature had an error: Invalid update version 2 for feature transaction.version. "
            "Local controller 1 does not support this feature.") in upgrade.stdout, upgrade.describe()
    assert "Can not upgrade transaction.version to 2." in dry_run.stdout, dry_run.describe()
    assert "Feature streams.version not found." in disable.stdout, disable.describe()
