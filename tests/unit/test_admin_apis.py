"""Explicit replica assignments and the replication factor (CreateTopics,
CreatePartitions), authorized operations (KIP-430: Metadata, DescribeCluster,
DescribeGroups), and dynamic broker and group configs (IncrementalAlterConfigs,
DescribeConfigs) through the in-process cluster rig: Kafka's answers, what a
cluster of three does with them, and what the bucket keeps across a restart.
The same requests against Apache Kafka are tests/e2e/test_admin_conformance.py."""
from __future__ import annotations

from cluster_rig import ClusterRig
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
from test_cluster_rig import create_topic, leaders, metadata, produce

from broker.apis.authorized import CLUSTER_OPERATIONS, GROUP_OPERATIONS, TOPIC_OPERATIONS
from broker.errors import ErrorCode

NONE = ErrorCode.NONE
ASSIGNMENT = ErrorCode.INVALID_REPLICA_ASSIGNMENT
RF = ErrorCode.INVALID_REPLICATION_FACTOR
INVALID_REQUEST, INVALID_CONFIG = ErrorCode.INVALID_REQUEST, ErrorCode.INVALID_CONFIG
CT = CreateTopicsRequest.CreatableTopic
CP = CreatePartitionsRequest.CreatePartitionsTopic
AR = IncrementalAlterConfigsRequest.AlterConfigsResource
AC = AR.AlterableConfig
DR = DescribeConfigsRequest.DescribeConfigsResource
TOPIC, BROKER, GROUP = 2, 4, 32
SET, DELETE, APPEND = 0, 1, 2
DYNAMIC_BROKER, DYNAMIC_DEFAULT, STATIC, DEFAULT, GROUP_CONFIG = 2, 3, 4, 5, 8


def rig_of(tmp_path, seed: int) -> ClusterRig:
    return ClusterRig(tmp_path, seed=seed)


def topic(name: str, assign: list[list[int]] | None = None, *, partitions: int = -1, rf: int = -1,
          indexes: list[int] | None = None):
    assignments = [CT.CreatableReplicaAssignment(partition_index=i, broker_ids=b)
                   for i, b in zip(indexes or range(len(assign or [])), assign or [])]
    return CT(name=name, num_partitions=partitions, replication_factor=rf, assignments=assignments, configs=[])


async def create(rig: ClusterRig, node: int, *topics, validate_only: bool = False):
    """{name: (error code, message, partitions, replication factor)} of one CreateTopics."""
    resp = await rig.request(node, CreateTopicsRequest(topics=list(topics), timeout_ms=10_000,
                                                       validate_only=validate_only), version=7)
    return {t.name: (t.error_code, t.error_message, t.num_partitions, t.replication_factor) for t in resp.topics}


async def grow(rig: ClusterRig, node: int, name: str, count: int, assign: list[list[int]] | None):
    resp = await rig.request(node, CreatePartitionsRequest(topics=[CP(
        name=name, count=count, assignments=None if assign is None else [
            CP.CreatePartitionsAssignment(broker_ids=b) for b in assign])], timeout_ms=10_000,
        validate_only=False), version=3)
    [r] = resp.results
    return r.error_code, r.error_message


def replicas(resp, name: str) -> list[list[int]]:
    [t] = [t for t in resp.topics if t.name == name]
    return [list(p.replica_nodes) for p in sorted(t.partitions, key=lambda p: p.partition_index)]


# ------------------------------------------------------------------ replica assignments
async def test_explicit_replica_assignments_place_each_partition_on_its_first_live_broker(tmp_path):
    """Every list names registered brokers: the first live one owns the
    partition, and every broker lists it there. Refusals as Kafka's
    controller words them; a replication factor up to the registered brokers
    is accepted (one copy, answered as 1), above them INVALID_REPLICATION_FACTOR."""
    async with rig_of(tmp_path, 41) as rig:
        got = await create(rig, 1, topic("placed", [[2, 1], [3, 1], [1, 3]]))
        assert got == {"placed": (NONE, None, 3, 1)}
        assert rig.owners("placed") == [2, 3, 1]
        await rig.advance(rig.heartbeat)
        for node in (1, 2, 3):
            md = await metadata(rig, node)
            assert replicas(md, "placed") == [[2], [3], [1]]
            assert {p: leader for p, (leader, _) in leaders(md, "placed").items()} == {0: 2, 1: 3, 2: 1}
        assert await produce(rig, 3, "placed", 1, [b"on three"]) == (0, 0)

        refused = await create(
            rig, 2,
            topic("unknown", [[1], [9]]), topic("twice", [[1, 2, 1]]), topic("empty", [[]]),
            topic("uneven", [[1], [1, 2]]), topic("gap", [[1], [2]], indexes=[0, 2]),
            topic("again", [[1], [2]], indexes=[0, 0]), topic("with-rf", [[1]], rf=1),
            topic("with-count", [[1]], partitions=1), topic("rf4", partitions=1, rf=4),
            topic("rf0", partitions=0, rf=0), topic("count0", partitions=0, rf=3))
        assert {n: (e, m) for n, (e, m, _, _) in refused.items()} == {
            "unknown": (ASSIGNMENT, "The manual partition assignment includes broker 9, but no such broker is "
                                    "registered."),
            "twice": (ASSIGNMENT, "The manual partition assignment includes the broker 1 more than once."),
            "empty": (ASSIGNMENT, "The manual partition assignment includes an empty replica list."),
            "uneven": (ASSIGNMENT, "The manual partition assignment includes a partition with 2 replica(s), but "
                                   "this is not consistent with previous partitions, which have 1 replica(s)."),
            "gap": (ASSIGNMENT, "partitions should be a consecutive 0-based integer sequence"),
            "again": (ASSIGNMENT, "Found multiple manual partition assignments for partition 0"),
            "with-rf": (INVALID_REQUEST, "A manual partition assignment was specified, but replication factor "
                                         "was not set to -1."),
            "with-count": (INVALID_REQUEST, "A manual partition assignment was specified, but numPartitions was "
                                            "not set to -1."),
            "rf4": (RF, "Unable to replicate the partition 4 time(s): The target replication factor of 4 cannot "
                        "be reached because only 3 broker(s) are registered."),
            "rf0": (RF, "Replication factor must be larger than 0, or -1 to use the default value."),
            "count0": (ErrorCode.INVALID_PARTITIONS, "Number of partitions was set to an invalid non-positive "
                                                     "value."),
        }
        # a replication factor the cluster could hold: one copy all the same (docs/cluster.md section 4)
        assert await create(rig, 2, topic("rf3", partitions=2, rf=3)) == {"rf3": (NONE, None, 2, 1)}
        assert await create(rig, 2, topic("dry", [[3], [2]]), validate_only=True) == {"dry": (NONE, None, 2, 1)}
        assert "dry" not in rig.brokers[2].cluster.metadata.topics

        # CreatePartitions: one list per new partition, one replica each (as the topic's)
        assert await grow(rig, 1, "placed", 5, [[3], [2, 1]]) == (
            ASSIGNMENT, "The manual partition assignment includes a partition with 2 replica(s), but this is not "
                        "consistent with previous partitions, which have 1 replica(s).")
        assert await grow(rig, 1, "placed", 5, [[3]]) == (
            ASSIGNMENT, "Attempted to add 2 additional partition(s), but only 1 assignment(s) were specified.")
        assert await grow(rig, 1, "placed", 4, []) == (
            ASSIGNMENT, "Attempted to add 1 additional partition(s), but only 0 assignment(s) were specified.")
        assert await grow(rig, 1, "placed", 3, [[3]]) == (ErrorCode.INVALID_PARTITIONS,
                                                          "Topic already has 3 partition(s).")
        assert await grow(rig, 1, "placed", 5, [[3], [2]]) == (NONE, None)
        assert rig.owners("placed") == [2, 3, 1, 3, 2]

        # node 3 crashes: registered, not live after the session timeout
        await rig.remove_broker(3, clean=False)
        await rig.advance(rig.brokers[1].config["broker.session.timeout.ms"] / 1000 + rig.heartbeat)
        assert await create(rig, 1, topic("skip-dead", [[3, 2]])) == {"skip-dead": (NONE, None, 1, 1)}
        assert rig.owners("skip-dead") == [2]
        assert await create(rig, 1, topic("all-dead", [[3]])) == {"all-dead": (
            ASSIGNMENT, "All brokers specified in the manual partition assignment for partition 0 are fenced or "
                        "in controlled shutdown.", -1, -1)}
        assert (await create(rig, 1, topic("rf3-still", partitions=1, rf=3)))["rf3-still"][0] == NONE
        # node 2 drains: it takes nothing, and counts no more for the replication factor
        await rig.brokers[1].cluster.set_draining(2, True)
        assert (await create(rig, 1, topic("to-draining", [[2]])))["to-draining"][0] == ASSIGNMENT
        assert (await create(rig, 1, topic("rf3-now", partitions=1, rf=3)))["rf3-now"][:2] == (
            RF, "Unable to replicate the partition 3 time(s): The target replication factor of 3 cannot be "
                "reached because only 2 broker(s) are registered.")


# ------------------------------------------------------------------ authorized operations
async def test_authorized_operations_are_every_operation_of_the_resource_type(tmp_path):
    """No authorizer: all of a resource type's operations when asked, "not
    requested" (None: -2147483648 on the wire) otherwise; cluster operations
    in Metadata only at v8-10; a group answered with an error gets none."""
    async with ClusterRig(tmp_path, seed=42, brokers=1) as rig:
        await create_topic(rig, 1, "ops", 1)
        for v in (8, 10, 12):
            for asked in (False, True):
                resp = await rig.request(1, MetadataRequest(
                    topics=[MetadataRequest.MetadataRequestTopic(name=n) for n in ("ops", "missing")],
                    allow_auto_topic_creation=False, include_cluster_authorized_operations=asked,
                    include_topic_authorized_operations=asked), version=v)
                ops = set(TOPIC_OPERATIONS) if asked else None
                assert [(t.name, t.authorized_operations) for t in resp.topics] == [("ops", ops), ("missing", ops)]
                assert resp.authorized_operations == (set(CLUSTER_OPERATIONS) if asked and v <= 10 else None)
        for v in (0, 1, 2):
            for asked in (False, True):
                kw = {"endpoint_type": 1} if v >= 1 else {}
                if v >= 2:
                    kw["include_fenced_brokers"] = False
                resp = await rig.request(1, DescribeClusterRequest(include_cluster_authorized_operations=asked,
                                                                   **kw), version=v)
                assert resp.authorized_operations == (set(CLUSTER_OPERATIONS) if asked else None)
        OT = OffsetCommitRequest.OffsetCommitRequestTopic
        resp = await rig.request(1, OffsetCommitRequest(
            group_id="simple", generation_id_or_member_epoch=-1, member_id="", group_instance_id=None,
            retention_time_ms=-1, topics=[OT(name="ops", partitions=[OT.OffsetCommitRequestPartition(
                partition_index=0, committed_offset=1, committed_leader_epoch=-1, committed_metadata="")])]),
            version=8)
        assert resp.topics[0].partitions[0].error_code == 0
        for v in (3, 5, 6):
            resp = await rig.request(1, DescribeGroupsRequest(groups=["simple", "nobody"],
                                                              include_authorized_operations=True), version=v)
            ops = set(GROUP_OPERATIONS)
            assert [(g.group_id, g.authorized_operations) for g in resp.groups] == [
                ("simple", ops), ("nobody", None if v >= 6 else ops)]      # v6: GROUP_ID_NOT_FOUND
            resp = await rig.request(1, DescribeGroupsRequest(groups=["simple"], include_authorized_operations=False),
                                     version=v)
            assert resp.groups[0].authorized_operations is None


# ------------------------------------------------------------------ configs
async def alter_configs(rig: ClusterRig, node: int, resources, *, validate_only: bool = False):
    """[(error code, message)] of one IncrementalAlterConfigs, per resource."""
    resp = await rig.request(node, IncrementalAlterConfigsRequest(validate_only=validate_only, resources=[
        AR(resource_type=rt, resource_name=name,
           configs=[AC(name=n, config_operation=op, value=v) for n, op, v in ops])
        for rt, name, ops in resources]), version=1)
    return [(r.error_code, r.error_message) for r in resp.responses]


async def describe(rig: ClusterRig, node: int, rtype: int, name: str, keys: list[str] | None = None):
    """(error code, {config: (value, source, read only, [(synonym, source, value)])})."""
    resp = await rig.request(node, DescribeConfigsRequest(
        resources=[DR(resource_type=rtype, resource_name=name, configuration_keys=keys)],
        include_synonyms=True, include_documentation=False), version=4)
    [r] = resp.results
    return r.error_code, {e.name: (e.value, e.config_source, e.read_only,
                                   [(s.name, s.source, s.value) for s in e.synonyms]) for e in r.configs}


async def test_dynamic_broker_configs_are_kept_in_the_bucket_and_act_on_every_broker(tmp_path):
    """A cluster-wide default set through node 1 acts on every broker once it
    has read the document; a per-broker value on that broker only and over
    the default; both survive a restart (they are in the bucket); DELETE
    brings back the static value. Sources as Kafka names them."""
    async with rig_of(tmp_path, 43) as rig:
        await create_topic(rig, 1, "sized", 3)
        await rig.advance(rig.heartbeat)
        assert await alter_configs(rig, 1, [(BROKER, "", [("log.retention.ms", SET, "3600000"),
                                                          ("message.max.bytes", SET, "4000")])]) == [(NONE, None)]
        assert rig.brokers[1].config["log.retention.ms"] == 3600000            # the writer: at once
        await rig.advance(rig.heartbeat)
        assert [rig.brokers[n].config["message.max.bytes"] for n in (1, 2, 3)] == [4000] * 3
        assert await alter_configs(rig, 2, [(BROKER, "2", [("message.max.bytes", SET, "1000")])]) == [(NONE, None)]
        await rig.advance(rig.heartbeat)
        assert [rig.brokers[n].config["message.max.bytes"] for n in (1, 2, 3)] == [4000, 1000, 4000]

        # it acts: a 2 kB batch is too large for node 2's partition only
        owners = rig.owners("sized")
        big = [b"x" * 2000]
        for p, node in enumerate(owners):
            error, _ = await produce(rig, node, "sized", p, big)
            assert error == (ErrorCode.MESSAGE_TOO_LARGE if node == 2 else NONE), (p, node)

        error, got = await describe(rig, 2, BROKER, "2", ["message.max.bytes", "log.retention.ms", "num.partitions"])
        assert error == NONE and got == {
            "message.max.bytes": ("1000", DYNAMIC_BROKER, False, [("message.max.bytes", DYNAMIC_BROKER, "1000"),
                                                                  ("message.max.bytes", DYNAMIC_DEFAULT, "4000"),
                                                                  ("message.max.bytes", DEFAULT, "1048588")]),
            "log.retention.ms": ("3600000", DYNAMIC_DEFAULT, False, [("log.retention.ms", DYNAMIC_DEFAULT, "3600000"),
                                                                     ("log.retention.ms", DEFAULT, "604800000")]),
            "num.partitions": ("1", DEFAULT, True, [("num.partitions", DEFAULT, "1")])}
        assert await describe(rig, 3, BROKER, "") == (NONE, {
            "log.retention.ms": ("3600000", DYNAMIC_DEFAULT, False, [("log.retention.ms", DYNAMIC_DEFAULT, "3600000")]),
            "message.max.bytes": ("4000", DYNAMIC_DEFAULT, False, [("message.max.bytes", DYNAMIC_DEFAULT, "4000")])})
        error, got = await describe(rig, 1, TOPIC, "sized", ["retention.ms"])
        assert got["retention.ms"][:2] == ("3600000", DYNAMIC_DEFAULT)       # the topic inherits it
        assert (await describe(rig, 1, BROKER, "2"))[0] == INVALID_REQUEST   # the admin client asks node 2

        # the read pacer's cap follows its config
        pacer = rig.brokers[3].replicas.read_pacer
        assert pacer.max_rate == float("inf")
        assert await alter_configs(rig, 3, [(BROKER, "3", [("remote.log.manager.fetch.max.bytes.per.second",
                                                            SET, "8388608")])]) == [(NONE, None)]
        assert pacer.max_rate == pacer.rate == 8388608

        # kept in the bucket: node 2 restarts with its value
        await rig.remove_broker(2)
        await rig.add_broker(2)
        assert rig.brokers[2].config["message.max.bytes"] == 1000
        assert rig.brokers[2].config.source("message.max.bytes") == "DYNAMIC_BROKER_CONFIG"

        # DELETE: the cluster default again, then the static value
        assert await alter_configs(rig, 2, [(BROKER, "2", [("message.max.bytes", DELETE, None)])]) == [(NONE, None)]
        assert rig.brokers[2].config["message.max.bytes"] == 4000
        assert await alter_configs(rig, 3, [(BROKER, "", [("message.max.bytes", DELETE, None),
                                                          ("log.retention.ms", DELETE, None)]),
                                            (BROKER, "3", [("remote.log.manager.fetch.max.bytes.per.second",
                                                            DELETE, None)])]) == [(NONE, None)] * 2
        assert pacer.max_rate == pacer.rate == float("inf")
        await rig.advance(rig.heartbeat)
        assert [rig.brokers[n].config["message.max.bytes"] for n in (1, 2, 3)] == [1048588] * 3
        assert rig.brokers[1].cluster.metadata.image.broker_configs == {}
        assert "broker_configs" not in rig.brokers[1].cluster.metadata.image.to_doc()

        # validate_only stores nothing; the bucket refusing the write is REQUEST_TIMED_OUT
        assert await alter_configs(rig, 1, [(BROKER, "", [("log.retention.bytes", SET, "100")])],
                                   validate_only=True) == [(NONE, None)]
        rig.store.fail("put", "cluster/metadata.json", times=None)
        [(error, _)] = await alter_configs(rig, 1, [(BROKER, "", [("log.retention.bytes", SET, "100")])])
        assert error == ErrorCode.REQUEST_TIMED_OUT
        rig.store.clear_faults()
        assert rig.brokers[1].cluster.metadata.image.broker_configs == {}


async def test_broker_config_changes_are_refused_as_kafka_refuses_them(tmp_path):
    async with ClusterRig(tmp_path, seed=44, brokers=1) as rig:
        cases = [
            ("1", [("num.partitions", SET, "3")], INVALID_REQUEST,
             "Cannot update these configs dynamically: [num.partitions]"),
            ("", [("num.partitions", SET, "3"), ("auto.create.topics.enable", SET, "false")], INVALID_REQUEST,
             "Cannot update these configs dynamically: [num.partitions, auto.create.topics.enable]"),
            # Kafka's dynamic configs Sluice does not act on, and custom names Kafka would keep
            ("1", [("compression.type", SET, "zstd")], INVALID_REQUEST,
             "Cannot update these configs dynamically: [compression.type]"),
            ("1", [("my.custom", SET, "1")], INVALID_REQUEST, "Cannot update these configs dynamically: [my.custom]"),
            ("1", [("log.retention.ms", SET, "abc")], INVALID_REQUEST,
             "Invalid value abc for configuration log.retention.ms: Not a number of type LONG"),
            ("1", [("message.max.bytes", SET, "-1")], INVALID_REQUEST,
             "Invalid value -1 for configuration message.max.bytes: Value must be at least 0"),
            ("1", [("message.max.bytes", SET, "2147483648")], INVALID_REQUEST,
             "Invalid value 2147483648 for configuration message.max.bytes: Not a number of type INT"),
            ("1", [("log.message.timestamp.type", SET, "logappendtime")], INVALID_REQUEST,
             "Invalid value logappendtime for configuration log.message.timestamp.type: String must be one of: "
             "CreateTime, LogAppendTime"),
            ("1", [("remote.log.manager.fetch.max.bytes.per.second", SET, "0")], INVALID_REQUEST,
             "Invalid value 0 for configuration remote.log.manager.fetch.max.bytes.per.second: Value must be at "
             "least 1"),
            ("1", [("log.retention.ms", SET, None)], INVALID_REQUEST,
             "Null value not supported for : log.retention.ms"),
            ("1", [("log.retention.ms", SET, "1"), ("log.retention.ms", DELETE, None)], INVALID_REQUEST,
             "Error due to duplicate config keys"),
            ("1", [("log.retention.ms", 9, "1")], INVALID_REQUEST, "Unknown operations type 9"),
            ("1", [("log.retention.ms", APPEND, "1")], INVALID_CONFIG,
             "Config value append is not allowed for config key: log.retention.ms"),
            ("1", [("my.custom", APPEND, "1")], INVALID_CONFIG, "Unknown config name: my.custom"),
            ("7", [("log.retention.ms", SET, "1")], INVALID_REQUEST,
             "Unexpected broker id, expected 1, but received 7"),
            ("x", [("log.retention.ms", SET, "1")], INVALID_REQUEST, "Node id must be an integer, but it is: x"),
        ]
        for name, ops, code, message in cases:
            assert await alter_configs(rig, 1, [(BROKER, name, ops)]) == [(code, message)], ops
        # accepted: DELETE of anything (nothing to delete), a LONG with spaces, a negative retention
        assert await alter_configs(rig, 1, [(BROKER, "1", [("num.partitions", DELETE, None),
                                                           ("my.custom", DELETE, None),
                                                           ("log.retention.ms", SET, " -5 ")])]) == [(NONE, None)]
        assert rig.brokers[1].config["log.retention.ms"] == -5
        twice = (BROKER, "1", [("log.retention.bytes", SET, "1")])
        assert await alter_configs(rig, 1, [twice, twice]) == [
            (INVALID_REQUEST, "Each resource must appear at most once.")] * 2


async def test_group_configs_are_checked_as_kafka_checks_them_and_kept(tmp_path):
    """Kafka 4.4's group configs: stored per group in the bucket whether or not
    the group exists, described with GROUP_CONFIG / DEFAULT_CONFIG sources and
    the broker config each defaults to, refused with Kafka's messages."""
    async with rig_of(tmp_path, 45) as rig:
        assert await alter_configs(rig, 1, [(GROUP, "payments", [
            ("consumer.session.timeout.ms", SET, "50000"), ("share.record.lock.duration.ms", SET, "15000"),
            ("share.auto.offset.reset", SET, "by_duration:P1DT2H"), ("consumer.assignment.interval.ms", DELETE, None),
        ])]) == [(NONE, None)]
        await rig.advance(rig.heartbeat)
        error, got = await describe(rig, 2, GROUP, "payments")
        assert error == NONE and len(got) == 21
        assert got["consumer.session.timeout.ms"] == ("50000", GROUP_CONFIG, False, [
            ("consumer.session.timeout.ms", GROUP_CONFIG, "50000"),
            ("group.consumer.session.timeout.ms", DEFAULT, "45000")])
        assert got["consumer.heartbeat.interval.ms"] == ("5000", DEFAULT, False, [
            ("group.consumer.heartbeat.interval.ms", DEFAULT, "5000")])
        assert got["share.auto.offset.reset"][:2] == ("by_duration:P1DT2H", GROUP_CONFIG)
        assert got["share.isolation.level"] == ("read_uncommitted", DEFAULT, False, [
            ("share.isolation.level", DEFAULT, "read_uncommitted")])
        assert (await describe(rig, 3, GROUP, "other", ["consumer.session.timeout.ms"]))[1] == {
            "consumer.session.timeout.ms": ("45000", DEFAULT, False, [
                ("group.consumer.session.timeout.ms", DEFAULT, "45000")])}
        assert (await describe(rig, 3, GROUP, ""))[0] == INVALID_REQUEST

        cases = [
            ("", [("consumer.session.timeout.ms", SET, "50000")], INVALID_REQUEST,
             "Default group resources are not allowed."),
            ("g", [("consumer.session.timeout.ms", SET, "1000")], INVALID_CONFIG,
             "consumer.session.timeout.ms must be in the range 45000 to 60000 inclusive."),
            ("g", [("consumer.session.timeout.ms", SET, "0")], INVALID_CONFIG,
             "Invalid value 0 for configuration consumer.session.timeout.ms: Value must be at least 1"),
            ("g", [("consumer.heartbeat.interval.ms", SET, "x")], INVALID_CONFIG,
             "Invalid value x for configuration consumer.heartbeat.interval.ms: Not a number of type INT"),
            ("g", [("share.record.lock.duration.ms", SET, "500")], INVALID_CONFIG,
             "Invalid value 500 for configuration share.record.lock.duration.ms: Value must be at least 1000"),
            ("g", [("streams.num.standby.replicas", SET, "5")], INVALID_CONFIG,
             "streams.num.standby.replicas must be less than or equal to 2"),
            ("g", [("share.isolation.level", SET, "READ_COMMITTED")], INVALID_CONFIG,
             "Invalid value READ_COMMITTED for configuration share.isolation.level: String must be one of: "
             "read_committed, read_uncommitted"),
            ("g", [("share.renew.acknowledge.enable", SET, "yes")], INVALID_CONFIG,
             "Invalid value yes for configuration share.renew.acknowledge.enable: Expected value to be either true "
             "or false"),
            ("g", [("streams.assignor.name", SET, "STICKY")], INVALID_CONFIG,
             "streams.assignor.name 'STICKY' is not a registered task assignor. Registered assignors are: [sticky]."),
            ("g", [("errors.deadletterqueue.topic.name", SET, "__dlq")], INVALID_CONFIG,
             "errors.deadletterqueue.topic.name: DLQ topic name must not start with '__'"),
            ("g", [("nope", SET, "1")], INVALID_CONFIG, "Unknown group config name: nope"),
            ("g", [("nope", APPEND, "1")], INVALID_CONFIG, "Can't APPEND to key nope because its type is not LIST."),
            ("g", [("consumer.session.timeout.ms", SET, None)], INVALID_REQUEST,
             "Null value not supported for : consumer.session.timeout.ms"),
        ]
        for name, ops, code, message in cases:
            assert await alter_configs(rig, 1, [(GROUP, name, ops)]) == [(code, message)], ops
        bad = ("share.auto.offset.reset", SET, "by_duration:-PT1H")
        [(error, message)] = await alter_configs(rig, 1, [(GROUP, "g", [bad])])
        assert error == INVALID_CONFIG and "'by_duration:<PnDTnHnMn.nS>'" in message
        assert rig.brokers[1].cluster.metadata.image.group_configs == {"payments": {
            "consumer.session.timeout.ms": "50000", "share.record.lock.duration.ms": "15000",
            "share.auto.offset.reset": "by_duration:P1DT2H"}}

        assert await alter_configs(rig, 3, [(GROUP, "payments", [("consumer.session.timeout.ms", DELETE, None),
                                                                 ("share.record.lock.duration.ms", DELETE, None),
                                                                 ("share.auto.offset.reset", DELETE, None),
                                                                 ("nope", DELETE, None)])]) == [(NONE, None)]
        assert rig.brokers[3].cluster.metadata.image.group_configs == {}
        await rig.advance(rig.heartbeat)
        assert rig.brokers[1].cluster.metadata.image.group_configs == {}
        resp = await rig.request(1, FindCoordinatorRequest(key_type=0, coordinator_keys=["payments"]), version=4)
        assert resp.coordinators[0].error_code == 0         # the group itself was never involved
