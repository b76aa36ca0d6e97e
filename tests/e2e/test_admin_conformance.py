"""Protocol conformance: the same admin requests to Sluice and to Apache Kafka
4.4 (bench/kafka_reference.py, one KRaft node), answered alike.

Both are a cluster of one broker with node id 1, so broker ids in the answers
are the same. Covered: explicit replica assignments and the replication
factor (CreateTopics, CreatePartitions), authorized operations (KIP-430:
Metadata, DescribeCluster, DescribeGroups, ConsumerGroupDescribe,
ShareGroupDescribe, and confluent-kafka's
``describe_topics``/``describe_cluster``/``describe_consumer_groups`` with
``include_authorized_operations``), broker and group configs
(IncrementalAlterConfigs, DescribeConfigs, confluent-kafka's
``incremental_alter_configs`` on a broker, ``kafka-configs --entity-type
brokers|groups``).

The differences that must exist are listed where they are checked:

- a replication factor Kafka cannot place: Kafka's message ends with "... or
  some brokers have all their log directories cordoned" (Sluice has no log
  directories to cordon); the code and the rest of the text are the same;
- Sluice keeps one copy of a partition, so a replication factor it accepts
  is answered as 1 (Kafka: the factor it placed); with one broker both say 1;
- dynamic broker configs: Kafka accepts any name it does not know (a custom
  config, stored and unused) and its dynamic configs Sluice does not act on
  (``compression.type``, ``producer.id.expiration.ms``, ...); Sluice refuses
  both as read-only (INVALID_REQUEST "Cannot update these configs
  dynamically"), since a config it accepts must act as Kafka's does. Those
  configs are therefore read-only in Sluice's DescribeConfigs;
- a broker config's DEFAULT_CONFIG synonym: Kafka names the default of
  ``log.retention.ms`` through ``log.retention.hours`` (168); Sluice has only
  the milliseconds (604800000). Kafka's ``kafka-storage format`` stored
  ``min.insync.replicas`` from the reference's server.properties as a
  cluster-wide dynamic default; Sluice has no such config;
- Kafka applies a dynamic config once its broker replays the controller's
  record, so its answers are polled (bounded); Sluice's writer applies it at once.

The rest (codes, Kafka's messages where Sluice words them as Kafka does,
partition counts, replicas, authorized operations, config values, sources,
types and synonyms) is asserted equal.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import pytest
from confluent_kafka import Consumer, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import (
    AclOperation,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
    ResourceType,
)
from kafka.protocol.admin import (
    CreatePartitionsRequest,
    CreateTopicsRequest,
    DescribeClusterRequest,
    DescribeConfigsRequest,
    DescribeGroupsRequest,
    IncrementalAlterConfigsRequest,
)
from kafka.protocol.consumer import OffsetCommitRequest
from kafka.protocol.metadata import FindCoordinatorRequest, MetadataRequest
from wire import WireClient

from bench.launch import BrokerProcess
from broker.apis.specs import (
    ConsumerGroupDescribeRequest,
    ConsumerGroupHeartbeatRequest,
    ShareGroupDescribeRequest,
    ShareGroupHeartbeatRequest,
)

pytestmark = pytest.mark.timeout(300)

CT = CreateTopicsRequest.CreatableTopic
CP = CreatePartitionsRequest.CreatePartitionsTopic
AR = IncrementalAlterConfigsRequest.AlterConfigsResource
AC = AR.AlterableConfig
DR = DescribeConfigsRequest.DescribeConfigsResource
TOPIC, BROKER, GROUP = 2, 4, 32
SET, DELETE, APPEND = 0, 1, 2
DYNAMIC_BROKER, DYNAMIC_DEFAULT, DEFAULT, GROUP_CONFIG = 2, 3, 5, 8
TOPIC_OPS = {3, 4, 5, 6, 7, 8, 10, 11}       # Kafka's answers, without an authorizer
CLUSTER_OPS = {5, 7, 8, 9, 10, 11, 12}
GROUP_OPS = {3, 6, 8, 10, 11}


@dataclass
class Pair:
    kafka_port: int
    sluice_port: int
    kafka_bootstrap: str
    sluice_bootstrap: str

    def both(self, request, version: int):
        """(Kafka's answer, Sluice's answer) to the same request."""
        out = []
        for port in (self.kafka_port, self.sluice_port):
            with WireClient(port, timeout=20) as c:
                out.append(c.request(request, version))
        return tuple(out)

    def admins(self) -> dict[str, AdminClient]:
        return {name: AdminClient({"bootstrap.servers": bs, "socket.timeout.ms": 10000, "log_level": 0})
                for name, bs in (("kafka", self.kafka_bootstrap), ("sluice", self.sluice_bootstrap))}


@pytest.fixture(scope="module")
def pair(kafka_tools, tmp_path_factory):
    """One Kafka 4.4 node and one Sluice broker for the module (each test names its own topics and groups)."""
    from bench.kafka_reference import KafkaBroker

    kb = KafkaBroker(tmp_path_factory.mktemp("kafka"), heap="-Xmx512m", libs=str(kafka_tools.libs))
    sluice = BrokerProcess(tmp_path_factory.mktemp("sluice") / "broker")
    try:
        kb.start(timeout=120)
        sluice.start()
        yield Pair(kb.port, sluice.port, kb.bootstrap, sluice.bootstrap)
    finally:
        sluice.stop()
        rc = kb.stop(timeout=30)
        kb.cleanup()
        assert rc is not None, "Kafka broker did not exit"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def until(what: str, fn, timeout: float = 30.0):
    """``fn()`` until it returns something true, at most ``timeout`` s (Kafka applies
    dynamic configs asynchronously); the last value if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got or time.monotonic() >= deadline:
            assert got, f"{what}: not within {timeout} s"
            return got
        time.sleep(0.2)


# ------------------------------------------------------------------ item 2: replica assignments
def creatable(name: str, assign: list[list[int]] | None = None, *, partitions: int = -1, rf: int = -1,
              indexes: list[int] | None = None, configs: dict[str, str] | None = None):
    return CT(name=name, num_partitions=partitions, replication_factor=rf,
              assignments=[CT.CreatableReplicaAssignment(partition_index=i, broker_ids=b)
                           for i, b in zip(indexes or range(len(assign or [])), assign or [])],
              configs=[CT.CreatableTopicConfig(name=k, value=v) for k, v in (configs or {}).items()])


# case -> (assignment, keyword arguments); the messages of all but RF_PLACEMENT are Kafka's words
CREATE_CASES = {
    "one": ([[1]], {}),
    "two": ([[1], [1]], {}),
    "unknown-broker": ([[5]], {}),
    "broker-twice": ([[1, 1, 5]], {}),
    "empty-list": ([[]], {}),
    "with-rf": ([[1]], {"rf": 1}),
    "with-count": ([[1]], {"partitions": 1}),
    "gap": ([[1], [1]], {"indexes": [0, 2]}),
    "index-twice": ([[1], [1]], {"indexes": [0, 0]}),
    "starts-at-1": ([[1]], {"indexes": [1]}),
    "negative-index": ([[1]], {"indexes": [-1]}),
    "uneven": ([[1], [1, 5]], {}),
    "bad-config": ([[5]], {"configs": {"cleanup.policy": "shred"}}),
    "rf3": (None, {"partitions": 1, "rf": 3}),
    "rf0": (None, {"partitions": 1, "rf": 0}),
    "rf-2": (None, {"partitions": 1, "rf": -2}),
    "rf0-count0": (None, {"partitions": 0, "rf": 0}),
    "count0-rf3": (None, {"partitions": 0, "rf": 3}),
    "rf1": (None, {"partitions": 2, "rf": 1}),
    "defaults": (None, {}),
}
RF_PLACEMENT = {"rf3"}           # Kafka's message says more (module docstring)
OWN_WORDS = {"bad-config"}       # Sluice words its config errors its own way; the code is Kafka's


def test_create_topics_with_replica_assignments_as_kafka(pair):
    prefix = unique("assign")
    for validate_only in (True, False):
        names = {f"{prefix}-{case}{'-dry' if validate_only else ''}": case for case in CREATE_CASES}
        request = CreateTopicsRequest(topics=[creatable(name, CREATE_CASES[case][0], **CREATE_CASES[case][1])
                                              for name, case in names.items()],
                                      timeout_ms=15000, validate_only=validate_only)
        kafka, sluice = pair.both(request, 7)
        got = {}
        for side, resp in (("kafka", kafka), ("sluice", sluice)):
            got[side] = {names[t.name]: (t.error_code, t.error_message, t.num_partitions, t.replication_factor)
                         for t in resp.topics}
        assert set(got["kafka"]) == set(got["sluice"]) == set(CREATE_CASES)
        for case in CREATE_CASES:
            k, s = got["kafka"][case], got["sluice"][case]
            assert (k[0], k[2], k[3]) == (s[0], s[2], s[3]), (case, k, s)
            if case in RF_PLACEMENT:
                assert k[1].startswith(s[1].rstrip(".")), (case, k[1], s[1])
            elif case not in OWN_WORDS:
                assert k[1] == s[1], (case, k[1], s[1])
        assert got["sluice"]["one"][0] == got["sluice"]["two"][0] == 0
        assert got["sluice"]["unknown-broker"][0] == 39 and got["sluice"]["rf3"][0] == 38

    # what was created is placed alike: every partition on broker 1
    created = [f"{prefix}-{case}" for case in ("one", "two", "rf1", "defaults")]
    kafka, sluice = pair.both(MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name=n, topic_id=None)
                                                      for n in created], allow_auto_topic_creation=False,
                                              include_topic_authorized_operations=False), 12)

    def layout(resp):
        return {t.name: (t.error_code, sorted((p.partition_index, p.leader_id, list(p.replica_nodes),
                                               list(p.isr_nodes)) for p in t.partitions)) for t in resp.topics}
    assert layout(kafka) == layout(sluice)
    assert layout(sluice)[f"{prefix}-two"] == (0, [(0, 1, [1], [1]), (1, 1, [1], [1])])

    # CreatePartitions: explicit lists for the new partitions
    grow = f"{prefix}-two"
    cases = {
        "unknown-broker": (3, [[5]]), "one-of-two-unknown": (3, [[1, 5]]), "too-many": (3, [[1], [1]]),
        "too-few": (4, [[1]]), "none": (3, []), "empty-list": (3, [[]]), "broker-twice": (3, [[1, 1]]),
        "same-count": (2, [[1]]), "fewer": (1, [[1]]), "unknown-topic": (3, [[1]]),
    }
    for case, (count, assign) in cases.items():
        name = f"{prefix}-nope" if case == "unknown-topic" else grow
        request = CreatePartitionsRequest(topics=[CP(name=name, count=count, assignments=[
            CP.CreatePartitionsAssignment(broker_ids=b) for b in assign])], timeout_ms=15000, validate_only=False)
        kafka, sluice = pair.both(request, 3)
        k, s = kafka.results[0], sluice.results[0]
        assert k.error_code == s.error_code != 0, (case, k, s)
        if case != "unknown-topic":           # Kafka gives no message there
            assert k.error_message == s.error_message, (case, k.error_message, s.error_message)
    request = CreatePartitionsRequest(topics=[CP(name=grow, count=3, assignments=[
        CP.CreatePartitionsAssignment(broker_ids=[1])])], timeout_ms=15000, validate_only=False)
    kafka, sluice = pair.both(request, 3)
    assert kafka.results[0].error_code == sluice.results[0].error_code == 0


def test_admin_client_creates_a_topic_with_a_replica_assignment(pair):
    """confluent-kafka's AdminClient: a replica assignment naming the broker is
    created and described alike; one naming an unknown broker and a
    replication factor above the brokers are refused alike."""
    for side, admin in pair.admins().items():
        name = unique(f"placed-{side}")
        futures = admin.create_topics([
            NewTopic(name, num_partitions=3, replica_assignment=[[1], [1], [1]]),
            NewTopic(name + "-unknown", num_partitions=1, replica_assignment=[[7]]),
            NewTopic(name + "-rf3", num_partitions=1, replication_factor=3)], request_timeout=15)
        futures[name].result(15)
        for suffix, code in (("-unknown", "INVALID_REPLICA_ASSIGNMENT"), ("-rf3", "INVALID_REPLICATION_FACTOR")):
            with pytest.raises(KafkaException) as ei:
                futures[name + suffix].result(15)
            assert ei.value.args[0].name() == code, (side, suffix, ei.value)
        desc = until(f"{side}: {name} described", lambda: _describe_topic(admin, name))
        assert [(p.id, p.leader.id, [r.id for r in p.replicas], [r.id for r in p.isr]) for p in desc.partitions] \
            == [(0, 1, [1], [1]), (1, 1, [1], [1]), (2, 1, [1], [1])], side


def _describe_topic(admin: AdminClient, name: str, **kw):
    try:
        return admin.describe_topics(TopicCollection([name]), request_timeout=10, **kw)[name].result(15)
    except KafkaException:
        return None        # Kafka's metadata may not have it yet


# ------------------------------------------------------------------ item 3: authorized operations
def test_authorized_operations_as_kafka(pair):
    """Without an authorizer, every operation of the resource type, when asked
    (topic, cluster at Metadata v8-10 and in DescribeCluster, group); "not
    requested" otherwise; none for a group answered with an error."""
    topic, group = unique("ops"), unique("ops-group")
    for side, admin in pair.admins().items():
        admin.create_topics([NewTopic(topic, 1, 1)], request_timeout=15)[topic].result(15)
        bootstrap = pair.kafka_bootstrap if side == "kafka" else pair.sluice_bootstrap
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                      "log_level": 0})
        try:
            until(f"{side}: commit", lambda: _commit(c, topic))
        finally:
            c.close()

    for v in range(4, 14):
        for asked in (False, True):
            fields = {"topics": [MetadataRequest.MetadataRequestTopic(name=n, topic_id=None)
                                 for n in (topic, unique("missing"))], "allow_auto_topic_creation": False}
            if v >= 8:
                fields["include_topic_authorized_operations"] = asked
            if 8 <= v <= 10:
                fields["include_cluster_authorized_operations"] = asked
            kafka, sluice = pair.both(MetadataRequest(**fields), v)
            got = [(r.authorized_operations if v >= 8 else None,
                    [(t.error_code, t.authorized_operations if v >= 8 else None) for t in r.topics])
                   for r in (kafka, sluice)]
            assert got[0] == got[1], (v, asked, got)
            expect_topic = TOPIC_OPS if asked and v >= 8 else None
            assert got[1] == (CLUSTER_OPS if asked and 8 <= v <= 10 else None,
                              [(0, expect_topic), (3, expect_topic)]), (v, asked)
    for v in range(0, 3):
        for asked in (False, True):
            fields = {"include_cluster_authorized_operations": asked}
            if v >= 1:
                fields["endpoint_type"] = 1
            if v >= 2:
                fields["include_fenced_brokers"] = False
            kafka, sluice = pair.both(DescribeClusterRequest(**fields), v)
            assert kafka.authorized_operations == sluice.authorized_operations == (CLUSTER_OPS if asked else None)
    for v in range(0, 7):
        for asked in (False, True):
            fields = {"groups": [group, unique("nobody")]}
            if v >= 3:
                fields["include_authorized_operations"] = asked
            kafka, sluice = pair.both(DescribeGroupsRequest(**fields), v)
            got = [[(g.error_code, g.group_state, g.authorized_operations if v >= 3 else None) for g in r.groups]
                   for r in (kafka, sluice)]
            assert got[0] == got[1], (v, asked, got)
            ops = GROUP_OPS if asked and v >= 3 else None
            assert got[1] == [(0, "Empty", ops), (69, "Dead", None) if v >= 6 else (0, "Dead", ops)]

    # the admin client asks for them as the wire did
    expected_topic = {AclOperation[n] for n in ("READ", "WRITE", "CREATE", "DELETE", "ALTER", "DESCRIBE",
                                               "DESCRIBE_CONFIGS", "ALTER_CONFIGS")}
    expected_cluster = {AclOperation[n] for n in ("CREATE", "ALTER", "DESCRIBE", "CLUSTER_ACTION",
                                                 "DESCRIBE_CONFIGS", "ALTER_CONFIGS", "IDEMPOTENT_WRITE")}
    expected_group = {AclOperation[n] for n in ("READ", "DELETE", "DESCRIBE", "DESCRIBE_CONFIGS",
                                               "ALTER_CONFIGS")}
    for side, admin in pair.admins().items():
        desc = until(f"{side}: {topic}", lambda: _describe_topic(admin, topic, include_authorized_operations=True))
        assert set(desc.authorized_operations) == expected_topic, side
        assert _describe_topic(admin, topic).authorized_operations is None, side
        cluster = admin.describe_cluster(include_authorized_operations=True, request_timeout=10).result(15)
        assert set(cluster.authorized_operations) == expected_cluster, side
        assert admin.describe_cluster(request_timeout=10).result(15).authorized_operations is None, side
        g = admin.describe_consumer_groups([group], include_authorized_operations=True,
                                           request_timeout=10)[group].result(15)
        assert set(g.authorized_operations) == expected_group, side


def test_group_describe_apis_answer_authorized_operations_as_kafka(pair):
    """ConsumerGroupDescribe and ShareGroupDescribe (KIP-848, KIP-932): every group
    operation for a group of the API's kind, when asked; "not requested" for a
    group answered with an error (unknown, of another kind, an invalid id), each
    error with Kafka's code and words."""
    topic, consumer_group, share_group = unique("ops-kinds"), unique("ops-consumer"), unique("ops-share")
    classic_group, member = unique("ops-classic"), uuid.uuid4().hex[:22]
    OT = OffsetCommitRequest.OffsetCommitRequestTopic
    simple_commit = OffsetCommitRequest(    # an Empty classic group, as a consumer without a group commits
        group_id=classic_group, generation_id_or_member_epoch=-1, member_id="", group_instance_id=None,
        retention_time_ms=-1, topics=[OT(name=topic, partitions=[OT.OffsetCommitRequestPartition(
            partition_index=0, committed_offset=0, committed_leader_epoch=-1, committed_metadata="")])])
    for side, admin in pair.admins().items():
        admin.create_topics([NewTopic(topic, 1, 1)], request_timeout=15)[topic].result(15)
        port = pair.kafka_port if side == "kafka" else pair.sluice_port
        with WireClient(port, timeout=20) as c:
            # Kafka creates its offsets topic on the first FindCoordinator, then loads it
            until(f"{side}: coordinator", lambda c=c: c.request(FindCoordinatorRequest(
                key_type=0, coordinator_keys=[consumer_group]), 4).coordinators[0].error_code == 0)
            until(f"{side}: consumer group joined", lambda c=c: c.request(ConsumerGroupHeartbeatRequest(
                group_id=consumer_group, member_id=member, member_epoch=0, instance_id=None, rack_id=None,
                rebalance_timeout_ms=30000, subscribed_topic_names=[topic], subscribed_topic_regex=None,
                server_assignor=None, topic_partitions=[]), 1).error_code == 0)
            until(f"{side}: classic group committed",
                  lambda c=c: c.request(simple_commit, 8).topics[0].partitions[0].error_code == 0)
            until(f"{side}: share group joined", lambda c=c: c.request(ShareGroupHeartbeatRequest(
                group_id=share_group, member_id=member, member_epoch=0, rack_id=None,
                subscribed_topic_names=[topic]), 1).error_code == 0)
    groups = [consumer_group, share_group, classic_group, unique("nobody"), ""]
    for api, versions in ((ConsumerGroupDescribeRequest, (0, 1)), (ShareGroupDescribeRequest, (1,))):
        for v in versions:
            for asked in (False, True):
                kafka, sluice = pair.both(api(group_ids=groups, include_authorized_operations=asked), v)
                # by group id: Kafka answers the invalid id first, Sluice in the request's order
                got = [sorted((g.group_id, g.error_code, g.error_message, g.authorized_operations) for g in r.groups)
                       for r in (kafka, sluice)]
                assert got[0] == got[1], (api.__name__, v, asked, [x for x in zip(*got) if x[0] != x[1]])
                own = consumer_group if api is ConsumerGroupDescribeRequest else share_group
                assert [ops for gid, code, _, ops in got[1] if code == 0] == [GROUP_OPS if asked else None]
                assert [gid for gid, code, _, _ in got[1] if code == 0] == [own]
    for v in range(3, 7):            # DescribeGroups, the classic groups' API, on the same groups
        for asked in (False, True):
            kafka, sluice = pair.both(DescribeGroupsRequest(groups=groups, include_authorized_operations=asked), v)
            got = [sorted((g.group_id, g.error_code, g.error_message if v >= 6 else None, g.group_state,
                           g.authorized_operations) for g in r.groups) for r in (kafka, sluice)]
            assert got[0] == got[1], ("DescribeGroups", v, asked, [x for x in zip(*got) if x[0] != x[1]])
            assert [g[-1] for g in got[1] if g[0] == classic_group] == [GROUP_OPS if asked else None]


def _commit(consumer: Consumer, topic: str) -> bool:
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
        return True
    except KafkaException:
        return False          # the coordinator may still be loading (Kafka's __consumer_offsets)


# ------------------------------------------------------------------ item 4: broker and group configs
def alter(pair: Pair, resources, *, validate_only: bool):
    """(Kafka's, Sluice's) [(error code, message)] per resource of one IncrementalAlterConfigs."""
    request = IncrementalAlterConfigsRequest(validate_only=validate_only, resources=[
        AR(resource_type=rt, resource_name=name, configs=[AC(name=n, config_operation=op, value=v)
                                                          for n, op, v in ops])
        for rt, name, ops in resources])
    return tuple([(r.error_code, r.error_message) for r in resp.responses] for resp in pair.both(request, 1))


def describe(pair: Pair, rtype: int, name: str, keys: list[str] | None = None):
    """(Kafka's, Sluice's) (error code, {config: (value, source, read only, type, synonyms)})."""
    request = DescribeConfigsRequest(resources=[DR(resource_type=rtype, resource_name=name, configuration_keys=keys)],
                                     include_synonyms=True, include_documentation=False)
    out = []
    for resp in pair.both(request, 4):
        [r] = resp.results
        out.append((r.error_code, {e.name: (e.value, e.config_source, e.read_only, e.config_type,
                                            [(s.name, s.source, s.value) for s in e.synonyms])
                                   for e in r.configs}))
    return tuple(out)


# (resource type, name, ops) -> expected code when Sluice answers unlike Kafka (module docstring), else the same
ALTER_CASES: list[tuple[int, str, list, int | None]] = [
    (BROKER, "1", [("log.retention.ms", SET, "60000")], None),
    (BROKER, "", [("log.retention.ms", SET, "60000")], None),
    (BROKER, "1", [("message.max.bytes", SET, "2000000"), ("log.retention.bytes", SET, "-1")], None),
    (BROKER, "1", [("log.message.timestamp.type", SET, "LogAppendTime")], None),
    (BROKER, "1", [("remote.log.manager.fetch.max.bytes.per.second", SET, "1048576")], None),
    (BROKER, "1", [("log.retention.ms", SET, " 5000 ")], None),
    (BROKER, "1", [("log.retention.ms", SET, "-5")], None),
    (BROKER, "1", [("log.retention.ms", DELETE, None), ("num.partitions", DELETE, None)], None),
    (BROKER, "1", [("leader.replication.throttled.rate", SET, "100"), ("log.retention.ms", SET, "1")], None),
    (BROKER, "1", [], None),
    (BROKER, "7", [("log.retention.ms", SET, "60000")], None),
    (BROKER, "x", [("log.retention.ms", SET, "60000")], None),
    (BROKER, "1", [("log.retention.ms", SET, "abc")], None),
    (BROKER, "1", [("log.retention.ms", SET, None)], None),
    (BROKER, "1", [("log.retention.ms", APPEND, "5")], None),
    (BROKER, "1", [("log.retention.ms", 9, "5")], None),
    (BROKER, "1", [("log.retention.ms", SET, "1"), ("log.retention.ms", DELETE, None)], None),
    (BROKER, "1", [("num.partitions", SET, "3")], None),
    (BROKER, "", [("num.partitions", SET, "3"), ("auto.create.topics.enable", SET, "false")], None),
    (BROKER, "1", [("log.retention.check.interval.ms", SET, "1000")], None),
    (BROKER, "1", [("message.max.bytes", SET, "-1")], None),
    (BROKER, "1", [("message.max.bytes", SET, "2147483648")], None),
    (BROKER, "1", [("log.message.timestamp.type", SET, "logappendtime")], None),
    (BROKER, "1", [("remote.log.manager.fetch.max.bytes.per.second", SET, "0")], None),
    (BROKER, "1", [("leader.replication.throttled.rate", SET, "x")], None),
    (BROKER, "1", [("leader.replication.throttled.rate", SET, "-1")], None),
    (BROKER, "1", [("compression.type", SET, "zstd")], 42),          # Kafka: 0 (Sluice does not recompress)
    (BROKER, "1", [("producer.id.expiration.ms", SET, "1000")], 42),  # Kafka: 0 (Sluice does not expire them)
    (BROKER, "1", [("my.custom.config", SET, "1")], 42),             # Kafka: 0 (a custom config)
    (GROUP, "g-conf", [("consumer.session.timeout.ms", SET, "50000")], None),
    (GROUP, "g-conf", [("consumer.heartbeat.interval.ms", SET, "6000"),
                       ("share.record.lock.duration.ms", SET, "15000")], None),
    (GROUP, "g-conf", [("share.auto.offset.reset", SET, "by_duration:P1DT2H3M4.5S")], None),
    (GROUP, "g-conf", [("streams.rack.aware.assignment.tags", SET, "zone,rack")], None),
    (GROUP, "g-conf", [("errors.deadletterqueue.copy.record.enable", SET, "TRUE")], None),
    (GROUP, "g-conf", [("nope", DELETE, None), ("consumer.session.timeout.ms", DELETE, None)], None),
    (GROUP, "", [("consumer.session.timeout.ms", SET, "50000")], None),
    (GROUP, "g-conf", [("consumer.session.timeout.ms", SET, "1000")], None),
    (GROUP, "g-conf", [("consumer.session.timeout.ms", SET, "0")], None),
    (GROUP, "g-conf", [("consumer.session.timeout.ms", SET, "x")], None),
    (GROUP, "g-conf", [("consumer.session.timeout.ms", SET, None)], None),
    (GROUP, "g-conf", [("consumer.session.timeout.ms", APPEND, "1")], None),
    (GROUP, "g-conf", [("streams.rack.aware.assignment.tags", APPEND, "x")], None),
    (GROUP, "g-conf", [("nope", SET, "1")], None),
    (GROUP, "g-conf", [("share.delivery.count.limit", SET, "99")], None),
    (GROUP, "g-conf", [("share.partition.max.record.locks", SET, "99")], None),
    (GROUP, "g-conf", [("streams.num.standby.replicas", SET, "5")], None),
    (GROUP, "g-conf", [("streams.assignor.name", SET, "STICKY")], None),
    (GROUP, "g-conf", [("share.auto.offset.reset", SET, "by_duration:-PT1H")], None),
    (GROUP, "g-conf", [("share.isolation.level", SET, "READ_COMMITTED")], None),
    (GROUP, "g-conf", [("share.renew.acknowledge.enable", SET, "yes")], None),
    (GROUP, "g-conf", [("errors.deadletterqueue.topic.name", SET, "__dlq")], None),
    (GROUP, "g-conf", [("consumer.assignment.interval.ms", SET, "2147483647")], None),
]


def test_alter_configs_refused_and_accepted_as_kafka(pair):
    """Validate-only IncrementalAlterConfigs, one resource a request: Kafka's code
    and message, but where the module docstring says Sluice must differ."""
    for rtype, name, ops, sluice_code in ALTER_CASES:
        [kafka], [sluice] = alter(pair, [(rtype, name, ops)], validate_only=True)
        if sluice_code is None:
            assert kafka == sluice, (rtype, name, ops)
        else:
            assert kafka[0] == 0 and sluice[0] == sluice_code, (rtype, name, ops, kafka, sluice)
            assert sluice[1] == f"Cannot update these configs dynamically: [{ops[0][0]}]"
    twice = (BROKER, "1", [("log.retention.bytes", SET, "1")])
    kafka, sluice = alter(pair, [twice, twice], validate_only=True)
    assert kafka == sluice == [(42, "Each resource must appear at most once.")] * 2


BROKER_SET = {"log.retention.ms": "3600000", "message.max.bytes": "2000000",
              "remote.log.manager.fetch.max.bytes.per.second": "10485760"}
DEFAULT_SET = {"log.retention.bytes": "1073741824", "message.max.bytes": "1500000"}
GROUP_SET = {"consumer.session.timeout.ms": "50000", "share.record.lock.duration.ms": "20000",
             "share.isolation.level": "read_committed"}


def test_broker_and_group_configs_are_described_as_kafka(pair):
    """Set for broker 1, as the cluster-wide default and for a group on both,
    then described alike: values, sources, types, read-only, the dynamic
    synonyms; the group's every config exactly. Then deleted again."""
    group = unique("g-conf")
    kafka, sluice = alter(pair, [
        (BROKER, "1", [(k, SET, v) for k, v in BROKER_SET.items()]),
        (BROKER, "", [(k, SET, v) for k, v in DEFAULT_SET.items()]),
        (GROUP, group, [(k, SET, v) for k, v in GROUP_SET.items()])], validate_only=False)
    assert kafka == sluice == [(0, None)] * 3
    try:
        keys = sorted(set(BROKER_SET) | set(DEFAULT_SET))

        def settled():
            got = describe(pair, BROKER, "1", keys)
            return got if all(got[0][1][k][0] == BROKER_SET.get(k, DEFAULT_SET.get(k)) for k in keys) else None
        (k_err, k_conf), (s_err, s_conf) = until("Kafka applies the broker configs", settled)
        assert k_err == s_err == 0
        for key in keys:
            kv, ks, kro, kt, ksyn = k_conf[key]
            sv, ss, sro, st, ssyn = s_conf[key]
            assert (kv, ks, kro, kt) == (sv, ss, sro, st), key
            dynamic = [x for x in ksyn if x[1] in (DYNAMIC_BROKER, DYNAMIC_DEFAULT)]      # module docstring
            assert dynamic == [x for x in ssyn if x[1] in (DYNAMIC_BROKER, DYNAMIC_DEFAULT)], key
        assert s_conf["message.max.bytes"][:2] == ("2000000", DYNAMIC_BROKER)
        assert s_conf["log.retention.bytes"][:2] == ("1073741824", DYNAMIC_DEFAULT)
        assert s_conf["message.max.bytes"][4] == [("message.max.bytes", DYNAMIC_BROKER, "2000000"),
                                                  ("message.max.bytes", DYNAMIC_DEFAULT, "1500000"),
                                                  ("message.max.bytes", DEFAULT, "1048588")]

        (k_err, k_default), (s_err, s_default) = describe(pair, BROKER, "")
        assert k_err == s_err == 0
        assert {k: v for k, v in k_default.items() if k != "min.insync.replicas"} == s_default   # docstring
        assert {k: v[:2] for k, v in s_default.items()} == {k: (v, DYNAMIC_DEFAULT) for k, v in DEFAULT_SET.items()}

        # every broker config Sluice has: read-only alike, but Kafka's dynamic configs Sluice does not act on
        (_, k_all), (_, s_all) = describe(pair, BROKER, "1")
        writable = {k for k, v in s_all.items() if not v[2]}
        assert writable == set(BROKER_SET) | set(DEFAULT_SET) | {"log.message.timestamp.type"}
        differ = {k for k in s_all if k in k_all and k_all[k][2] != s_all[k][2]}
        assert differ == {"compression.type", "producer.id.expiration.ms"}
        assert all(k_all[k][2] is False and s_all[k][2] is True for k in differ)

        # a topic without overrides takes them, with their source
        topic = unique("inherits")
        for admin in pair.admins().values():
            admin.create_topics([NewTopic(topic, 1, 1)], request_timeout=15)[topic].result(15)

        def topic_known():
            got = describe(pair, TOPIC, topic, ["retention.ms", "retention.bytes", "max.message.bytes"])
            return got if got[0][0] == got[1][0] == 0 else None
        (_, k_topic), (_, s_topic) = until("the topic is known", topic_known)
        assert {k: v[:2] for k, v in k_topic.items()} == {k: v[:2] for k, v in s_topic.items()} == {
            "retention.ms": ("3600000", DYNAMIC_BROKER), "retention.bytes": ("1073741824", DYNAMIC_DEFAULT),
            "max.message.bytes": ("2000000", DYNAMIC_BROKER)}

        (k_err, k_group), (s_err, s_group) = until("Kafka applies the group configs", lambda: _same_group(pair, group))
        assert k_err == s_err == 0 and len(s_group) == 21
        assert k_group == s_group
        assert {k: v[0] for k, v in s_group.items() if v[1] == GROUP_CONFIG} == GROUP_SET
        assert s_group["consumer.session.timeout.ms"] == ("50000", GROUP_CONFIG, False, 3, [
            ("consumer.session.timeout.ms", GROUP_CONFIG, "50000"),
            ("group.consumer.session.timeout.ms", DEFAULT, "45000")])
        kafka, sluice = describe(pair, GROUP, "")
        assert kafka[0] == sluice[0] == 42
    finally:
        kafka, sluice = alter(pair, [
            (BROKER, "1", [(k, DELETE, None) for k in BROKER_SET]),
            (BROKER, "", [(k, DELETE, None) for k in DEFAULT_SET]),
            (GROUP, group, [(k, DELETE, None) for k in GROUP_SET])], validate_only=False)
        assert kafka == sluice == [(0, None)] * 3
    (_, k_group), (_, s_group) = until("Kafka deletes the group configs", lambda: _same_group(pair, group))
    assert k_group == s_group and {v[1] for v in s_group.values()} == {DEFAULT}


def _same_group(pair: Pair, group: str):
    """Both descriptions of the group's configs, once they are the same (Kafka applies changes asynchronously)."""
    got = describe(pair, GROUP, group)
    return got if got[0] == got[1] else None


def test_admin_client_alters_a_broker_config(pair):
    """confluent-kafka's incremental_alter_configs on broker 1, then
    describe_configs: the value, as a DYNAMIC_BROKER_CONFIG, on both; a
    read-only config refused alike; DELETE brings the default back."""
    for side, admin in pair.admins().items():
        res = ConfigResource(ResourceType.BROKER, "1", incremental_configs=[
            ConfigEntry("log.retention.bytes", "536870912", incremental_operation=AlterConfigOpType.SET)])
        admin.incremental_alter_configs([res])[res].result(15)

        def entry(admin=admin):
            described = ConfigResource(ResourceType.BROKER, "1")
            e = admin.describe_configs([described], request_timeout=10)[described].result(15)["log.retention.bytes"]
            return e if e.value == "536870912" else None
        e = until(f"{side}: log.retention.bytes", entry)
        assert e.source == ConfigSource.DYNAMIC_BROKER_CONFIG.value and not e.is_read_only, side

        res = ConfigResource(ResourceType.BROKER, "1", incremental_configs=[
            ConfigEntry("num.partitions", "3", incremental_operation=AlterConfigOpType.SET)])
        with pytest.raises(KafkaException) as ei:
            admin.incremental_alter_configs([res])[res].result(15)
        assert ei.value.args[0].name() == "INVALID_REQUEST", side
        assert "Cannot update these configs dynamically: [num.partitions]" in ei.value.args[0].str(), side

        res = ConfigResource(ResourceType.BROKER, "1", incremental_configs=[
            ConfigEntry("log.retention.bytes", None, incremental_operation=AlterConfigOpType.DELETE)])
        admin.incremental_alter_configs([res])[res].result(15)


def test_kafka_configs_sets_broker_defaults_and_group_configs_on_sluice(pair, kafka_tools):
    """Kafka's own kafka-configs against Sluice: the cluster-wide broker default
    (--entity-default) and a group's config, altered and described."""
    b = pair.sluice_bootstrap
    group = unique("tool-group")
    kafka_tools.run_many([
        ("kafka-configs", ("--bootstrap-server", b, "--entity-type", "brokers", "--entity-default", "--alter",
                           "--add-config", "log.retention.ms=7200000")),
        ("kafka-configs", ("--bootstrap-server", b, "--entity-type", "groups", "--entity-name", group, "--alter",
                           "--add-config", "consumer.heartbeat.interval.ms=6000")),
    ])
    default, grp = kafka_tools.run_many([
        ("kafka-configs", ("--bootstrap-server", b, "--entity-type", "brokers", "--entity-default", "--describe")),
        ("kafka-configs", ("--bootstrap-server", b, "--entity-type", "groups", "--entity-name", group, "--describe")),
    ])
    assert "Default configs for brokers in the cluster are:" in default.stdout, default.describe()
    assert ("log.retention.ms=7200000 sensitive=false "
            "synonyms={DYNAMIC_DEFAULT_BROKER_CONFIG:log.retention.ms=7200000}") in default.stdout, default.describe()
    assert f"Dynamic configs for group {group} are:" in grp.stdout, grp.describe()
    assert "consumer.heartbeat.interval.ms=6000 sensitive=false" in grp.stdout, grp.describe()
    refused = kafka_tools.run("kafka-configs", "--bootstrap-server", b, "--entity-type", "brokers",
                              "--entity-default", "--alter", "--add-config", "num.partitions=3", check=False)
    assert refused.returncode != 0
    assert "Cannot update these configs dynamically: [num.partitions]" in refused.stdout + refused.stderr, \
        refused.describe()
    kafka_tools.run_many([
        ("kafka-configs", ("--bootstrap-server", b, "--entity-type", "brokers", "--entity-default", "--alter",
                           "--delete-config", "log.retention.ms")),
        ("kafka-configs", ("--bootstrap-server", b, "--entity-type", "groups", "--entity-name", group, "--alter",
                           "--delete-config", "consumer.heartbeat.interval.ms")),
    ])
