"""AlterPartitionReassignments, ListPartitionReassignments and ElectLeaders, and
the replication throttles of IncrementalAlterConfigs, through the in-process
cluster rig (docs/cluster.md sections 7, 10 and 11): error codes as Kafka's,
a move that completes by the hand-off with every record kept, and an unclean
election of a crashed broker's partition."""
from __future__ import annotations

import os
import time

import pytest
from cluster_rig import ClusterRig
from kafka.protocol.admin import (
    AlterPartitionReassignmentsRequest,
    AlterReplicaLogDirsRequest,
    DescribeLogDirsRequest,
    ElectLeadersRequest,
    IncrementalAlterConfigsRequest,
    ListPartitionReassignmentsRequest,
)
from kafka.protocol.consumer import OffsetCommitRequest, OffsetFetchRequest
from kafka.protocol.metadata import ApiVersionsRequest, FindCoordinatorRequest
from test_cluster_rig import create_topic, fetch, leaders, metadata, produce

from broker.apis.log_dirs import log_dir
from broker.cluster import MetadataStore
from broker.errors import ErrorCode

NONE = ErrorCode.NONE
UNKNOWN = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
INVALID_ASSIGNMENT = ErrorCode.INVALID_REPLICA_ASSIGNMENT
NOT_NEEDED = ErrorCode.ELECTION_NOT_NEEDED
NOT_LEADER = ErrorCode.NOT_LEADER_OR_FOLLOWER

RT = AlterPartitionReassignmentsRequest.ReassignableTopic
RP = RT.ReassignablePartition
LT = ListPartitionReassignmentsRequest.ListPartitionReassignmentsTopics
ET = ElectLeadersRequest.TopicPartitions
AR = IncrementalAlterConfigsRequest.AlterConfigsResource
AC = AR.AlterableConfig
PREFERRED, UNCLEAN = 0, 1
TOPIC, BROKER = 2, 4
SET, DELETE = 0, 1

# the balancer would even out what a test moves by hand
NO_BALANCER = {"autobalancer.controller.enable": False}


def rig_of(tmp_path, seed: int) -> ClusterRig:
    return ClusterRig(tmp_path, seed=seed, overrides=NO_BALANCER)


async def alter(rig: ClusterRig, node: int, moves: dict[tuple[str, int], list[int] | None], *,
                version: int = 1, allow_rf_change: bool = True) -> dict[tuple[str, int], tuple[int, str | None]]:
    """{(topic, partition): (error code, message)} of one AlterPartitionReassignments."""
    by_topic: dict[str, list] = {}
    for (topic, index), replicas in moves.items():
        by_topic.setdefault(topic, []).append(RP(partition_index=index, replicas=replicas))
    resp = await rig.request(node, AlterPartitionReassignmentsRequest(
        timeout_ms=10_000, allow_replication_factor_change=allow_rf_change,
        topics=[RT(name=t, partitions=ps) for t, ps in by_topic.items()]), version=version)
    assert resp.error_code == 0
    return {(t.name, p.partition_index): (p.error_code, p.error_message)
            for t in resp.responses for p in t.partitions}


async def listed(rig: ClusterRig, node: int, topics: dict[str, list[int]] | None = None):
    """{(topic, partition): (replicas, adding, removing)} of one ListPartitionReassignments."""
    req_topics = None if topics is None else [LT(name=t, partition_indexes=ps) for t, ps in topics.items()]
    resp = await rig.request(node, ListPartitionReassignmentsRequest(timeout_ms=10_000, topics=req_topics),
                             version=0)
    assert resp.error_code == 0
    return {(t.name, p.partition_index): (list(p.replicas), list(p.adding_replicas), list(p.removing_replicas))
            for t in resp.topics for p in t.partitions}


async def elect(rig: ClusterRig, node: int, election: int, parts: dict[str, list[int]] | None, *,
                version: int = 2):
    """(top-level error, {topic: {partition: error code}}) of one ElectLeaders."""
    tps = None if parts is None else [ET(topic=t, partitions=ps) for t, ps in parts.items()]
    resp = await rig.request(node, ElectLeadersRequest(election_type=election, topic_partitions=tps,
                                                       timeout_ms=10_000), version=version)
    top = resp.error_code if version >= 1 else 0
    return top, {r.topic: {p.partition_id: p.error_code for p in r.partition_result}
                 for r in resp.replica_election_results}


Ops = list[tuple[str, int, str | None]]


async def alter_configs(rig: ClusterRig, node: int, resources: list[tuple[int, str, Ops]]):
    """[(error code, message)] of one IncrementalAlterConfigs, per resource."""
    resp = await rig.request(node, IncrementalAlterConfigsRequest(validate_only=False, resources=[
        AR(resource_type=rt, resource_name=name,
           configs=[AC(name=n, config_operation=op, value=v) for n, op, v in ops])
        for rt, name, ops in resources]), version=1)
    return [(r.error_code, r.error_message) for r in resp.responses]


# ------------------------------------------------------------------ a move
async def test_a_move_through_alter_partition_reassignments_keeps_every_record(tmp_path):
    """[2] for a partition of node 1, sent to node 3: listed as in progress
    (replicas [2, 1], adding [2], removing [1]) until node 1 hands it off on its
    heartbeat; then node 2 leads it at epoch 2 and serves every record produced
    before, uploaded or still only in node 1's WAL, and node 1 refuses it."""
    async with rig_of(tmp_path, 21) as rig:
        await create_topic(rig, 1, "moves", 3)
        await rig.advance(rig.heartbeat)
        assert rig.owners("moves") == [1, 2, 3]
        assert await produce(rig, 1, "moves", 0, [b"a", b"b"]) == (0, 0)
        assert await rig.upload(1)
        assert await produce(rig, 1, "moves", 0, [b"c"]) == (0, 2)      # only in node 1's WAL

        assert await alter(rig, 3, {("moves", 0): [2]}) == {("moves", 0): (NONE, None)}
        assert await listed(rig, 3) == {("moves", 0): ([2, 1], [2], [1])}
        assert await listed(rig, 1, {"moves": [0, 1]}) == {("moves", 0): ([2, 1], [2], [1])}
        assert await listed(rig, 1, {"moves": [1, 2], "nope": [0]}) == {}

        await rig.advance(2 * rig.heartbeat)     # node 1 hands off; node 2 hears of it
        for node in (1, 2, 3):
            assert await listed(rig, node) == {}
            assert leaders(await metadata(rig, node), "moves")[0] == (2, 2)
        assert rig.brokers[1].handoffs.moved == 1
        assert await fetch(rig, 2, "moves", 0) == (0, [(0, None, b"a"), (1, None, b"b"), (2, None, b"c")])
        assert await produce(rig, 2, "moves", 0, [b"d"]) == (0, 3)
        assert (await produce(rig, 1, "moves", 0, [b"stale"]))[0] == NOT_LEADER
        assert rig.owners("moves") == [2, 2, 3]


async def test_a_move_to_the_owner_is_done_at_once_and_a_cancel_clears_the_target(tmp_path):
    async with rig_of(tmp_path, 22) as rig:
        await create_topic(rig, 1, "stay", 2)
        assert await alter(rig, 2, {("stay", 0): [1]}) == {("stay", 0): (NONE, None)}
        assert await listed(rig, 2) == {}
        # node 3 owns neither: the owners hear of the moves only on their heartbeat
        assert await alter(rig, 3, {("stay", 0): [3], ("stay", 1): [1]}) == {
            ("stay", 0): (NONE, None), ("stay", 1): (NONE, None)}
        assert await listed(rig, 3) == {("stay", 0): ([3, 1], [3], [1]), ("stay", 1): ([1, 2], [1], [2])}
        # cancelled before they do: nothing moves
        assert await alter(rig, 3, {("stay", 0): None, ("stay", 1): None}) == {
            ("stay", 0): (NONE, None), ("stay", 1): (NONE, None)}
        assert await listed(rig, 3) == {}
        await rig.advance(2 * rig.heartbeat)
        assert rig.owners("stay") == [1, 2]
        assert leaders(await metadata(rig, 3), "stay") == {0: (1, 1), 1: (2, 1)}
        assert await produce(rig, 1, "stay", 0, [b"x"]) == (0, 0)


async def test_a_move_cancelled_while_the_owner_is_sealed_serves_again(tmp_path):
    """The owner sealed the partition and its upload hangs (the bucket is slow
    for it): produce answers NOT_LEADER_OR_FOLLOWER. Cancelled then, the owner
    unseals it and serves produce again; nothing moved."""
    async with rig_of(tmp_path, 23) as rig:
        await create_topic(rig, 1, "sealed", 1)
        assert await produce(rig, 1, "sealed", 0, [b"one"]) == (0, 0)
        rig.delay_store("put", "data/", 30.0, node=1)      # node 1's data uploads wait 30 s on the clock
        assert await alter(rig, 2, {("sealed", 0): [3]}) == {("sealed", 0): (NONE, None)}
        await rig.advance(rig.heartbeat)
        assert rig.brokers[1].replicas.get("sealed", 0).sealed
        assert (await produce(rig, 1, "sealed", 0, [b"refused"]))[0] == NOT_LEADER
        assert await alter(rig, 2, {("sealed", 0): None}) == {("sealed", 0): (NONE, None)}
        await rig.advance(rig.heartbeat)
        assert not rig.brokers[1].replicas.get("sealed", 0).sealed
        assert await produce(rig, 1, "sealed", 0, [b"two"]) == (0, 1)
        assert rig.owners("sealed") == [1]
        rig.store.delay = None
        await rig.advance(30.0)
        assert rig.owners("sealed") == [1] and await listed(rig, 1) == {}


# ------------------------------------------------------------------ refusals
async def test_alter_refusals_have_kafkas_error_codes(tmp_path):
    async with rig_of(tmp_path, 24) as rig:
        await create_topic(rig, 1, "t", 2)
        got = await alter(rig, 2, {
            ("nope", 0): [2], ("t", 7): [2], ("t", -1): None, ("nope", 1): [],
            ("t", 0): [], ("t", 1): [3, 3],
        })
        assert {k: e for k, (e, _) in got.items()} == {
            ("nope", 0): UNKNOWN, ("t", 7): UNKNOWN, ("t", -1): UNKNOWN, ("nope", 1): UNKNOWN,
            ("t", 0): INVALID_ASSIGNMENT, ("t", 1): INVALID_ASSIGNMENT}
        assert "empty replica list" in got[("t", 0)][1]
        assert "broker 3 more than once" in got[("t", 1)][1]

        (error, message), = (await alter(rig, 2, {("t", 0): [2, 3]})).values()
        assert error == INVALID_ASSIGNMENT and "one copy" in message and "object store" in message
        (error, message), = (await alter(rig, 2, {("t", 0): [2, 3]}, allow_rf_change=False)).values()
        assert error == ErrorCode.INVALID_REPLICATION_FACTOR and "one copy" in message
        (error, message), = (await alter(rig, 2, {("t", 0): [2, 3]}, version=0)).values()
        assert error == INVALID_ASSIGNMENT

        (error, message), = (await alter(rig, 2, {("t", 0): [9]})).values()     # never registered
        assert error == INVALID_ASSIGNMENT and "broker 9" in message and "not a live broker" in message
        assert await alter(rig, 2, {("t", 0): None}) == {
            ("t", 0): (ErrorCode.NO_REASSIGNMENT_IN_PROGRESS, "No reassignment of partition t-0 is in progress.")}

        # a draining broker takes nothing
        await rig.brokers[1].cluster.set_draining(3, True)
        (error, message), = (await alter(rig, 2, {("t", 0): [3]})).values()
        assert error == INVALID_ASSIGNMENT and "draining" in message
        await rig.brokers[1].cluster.set_draining(3, False)

        # the bucket refuses the metadata write: REQUEST_TIMED_OUT, and nothing changed
        rig.store.fail("put", "cluster/metadata.json", times=None)
        got = await alter(rig, 2, {("t", 0): [3], ("t", 1): None, ("t", 5): [2]})
        assert {k: e for k, (e, _) in got.items()} == {
            ("t", 0): ErrorCode.REQUEST_TIMED_OUT, ("t", 1): ErrorCode.REQUEST_TIMED_OUT,
            ("t", 5): ErrorCode.REQUEST_TIMED_OUT}
        rig.store.clear_faults()
        assert await listed(rig, 2) == {}
        assert rig.owners("t") == [1, 2]
        assert nothing_pending(rig)

        # a broker that crashed is registered but, after the session timeout, not live
        await rig.remove_broker(3, clean=False)
        await rig.advance(rig.brokers[1].config["broker.session.timeout.ms"] / 1000 + rig.heartbeat)
        (error, message), = (await alter(rig, 2, {("t", 0): [3]})).values()
        assert error == INVALID_ASSIGNMENT and "not a live broker" in message
        assert nothing_pending(rig)


def nothing_pending(rig: ClusterRig) -> bool:
    return all(not b.cluster.reassignments() for b in rig.brokers.values())


# ------------------------------------------------------------------ elections
async def test_elect_leaders_preferred_and_unclean(tmp_path):
    """Owners live: PREFERRED and UNCLEAN need no election (and an "every
    partition" request leaves those out, as Kafka). Node 3 crashes: after the
    session timeout PREFERRED answers PREFERRED_LEADER_NOT_AVAILABLE for its
    partition; UNCLEAN gives it to a live broker at epoch + 1, which serves
    what node 3 had uploaded."""
    async with rig_of(tmp_path, 25) as rig:
        await create_topic(rig, 1, "e", 3)
        await create_topic(rig, 1, "f", 1)
        await rig.advance(rig.heartbeat)
        assert rig.owners("e") == [1, 2, 3]
        for version in (0, 1, 2):
            assert await elect(rig, 2, PREFERRED, {"e": [0, 1, 2], "nope": [0]}, version=version) == (
                0, {"e": {0: NOT_NEEDED, 1: NOT_NEEDED, 2: NOT_NEEDED}, "nope": {0: UNKNOWN}})
        assert await elect(rig, 2, PREFERRED, {"e": [5]}) == (0, {"e": {5: UNKNOWN}})
        assert await elect(rig, 2, PREFERRED, None) == (0, {"e": {}, "f": {}})
        assert await elect(rig, 2, UNCLEAN, None) == (0, {"e": {}, "f": {}})
        assert await elect(rig, 2, UNCLEAN, {"e": [0, 9]}) == (0, {"e": {0: NOT_NEEDED, 9: UNKNOWN}})
        resp = await rig.request(2, ElectLeadersRequest(election_type=7, topic_partitions=None, timeout_ms=1),
                                 version=2)
        assert resp.error_code == ErrorCode.INVALID_REQUEST

        assert await produce(rig, 3, "e", 2, [b"kept"]) == (0, 0)
        assert await rig.upload(3)
        assert await produce(rig, 3, "e", 2, [b"lost"]) == (0, 1)       # in node 3's WAL only
        await rig.remove_broker(3, clean=False)
        await rig.advance(rig.brokers[1].config["broker.session.timeout.ms"] / 1000 + rig.heartbeat)
        assert leaders(await metadata(rig, 1), "e")[2] == (-1, 1)
        assert await elect(rig, 1, PREFERRED, {"e": [1, 2]}) == (
            0, {"e": {1: NOT_NEEDED, 2: ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE}})
        assert await elect(rig, 1, PREFERRED, None) == (
            0, {"e": {2: ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE}, "f": {}})

        # the bucket refuses: REQUEST_TIMED_OUT, nothing changed
        rig.store.fail("put", "cluster/metadata.json", times=None)
        assert await elect(rig, 1, UNCLEAN, {"e": [2]}) == (0, {"e": {2: ErrorCode.REQUEST_TIMED_OUT}})
        rig.store.clear_faults()
        assert rig.owners("e") == [1, 2, 3]

        assert await elect(rig, 1, UNCLEAN, {"e": [1, 2]}) == (0, {"e": {1: NOT_NEEDED, 2: NONE}})
        new_owner = rig.owners("e")[2]
        assert new_owner in (1, 2)
        await rig.advance(rig.heartbeat)
        for node in (1, 2):
            assert leaders(await metadata(rig, node), "e")[2] == (new_owner, 2)
        assert await fetch(rig, new_owner, "e", 2) == (0, [(0, None, b"kept")])
        assert await produce(rig, new_owner, "e", 2, [b"next"]) == (0, 1)
        assert await elect(rig, 1, UNCLEAN, {"e": [2]}) == (0, {"e": {2: NOT_NEEDED}})


# ------------------------------------------------------------------ throttles
THROTTLE_RATES = ["leader.replication.throttled.rate", "follower.replication.throttled.rate",
                  "replica.alter.log.dirs.io.max.bytes.per.second"]
THROTTLED_REPLICAS = ["leader.replication.throttled.replicas", "follower.replication.throttled.replicas"]


async def test_reassignment_throttles_are_accepted_and_change_nothing(tmp_path):
    """What kafka-reassign-partitions sends: --verify DELETEs the throttles on
    every broker (each broker's resource to that broker, as the admin client
    routes it) and on the plan's topics; --throttle SETs them. Accepted (a
    move copies no data: nothing to throttle), checked as Kafka checks them
    (INVALID_REQUEST for a bad rate, as Kafka's broker), not stored, and no
    bucket write. Next to a dynamic broker config, that one is stored."""
    async with rig_of(tmp_path, 26) as rig:
        await create_topic(rig, 1, "th", 2)
        configs_before = dict(rig.brokers[1].cluster.metadata.topics["th"].configs)
        rig.store.fail("put", "cluster/metadata.json", times=None)   # no write is needed
        for n in (1, 2, 3):
            assert await alter_configs(rig, n, [(BROKER, str(n), [(c, DELETE, None) for c in THROTTLE_RATES])]) \
                == [(NONE, None)]
        assert await alter_configs(rig, 2, [(TOPIC, "th", [(c, DELETE, None) for c in THROTTLED_REPLICAS])]) \
            == [(NONE, None)]
        assert await alter_configs(rig, 1, [
            (BROKER, "1", [(THROTTLE_RATES[0], SET, "1000"), (THROTTLE_RATES[1], SET, "1000")]),
            (BROKER, "", [(THROTTLE_RATES[2], SET, "0")]),
            (TOPIC, "th", [(THROTTLED_REPLICAS[0], SET, "0:1,1:2"), (THROTTLED_REPLICAS[1], SET, "*")]),
        ]) == [(NONE, None)] * 3
        assert await alter_configs(rig, 1, [(TOPIC, "th", [(THROTTLED_REPLICAS[1], SET, "")])]) == [(NONE, None)]
        rig.store.clear_faults()
        assert rig.brokers[1].cluster.metadata.topics["th"].configs == configs_before
        assert rig.brokers[1].cluster.metadata.image.broker_configs == {}

        got = await alter_configs(rig, 1, [
            (BROKER, "1", [(THROTTLE_RATES[0], SET, "fast")]),
            (BROKER, "", [(THROTTLE_RATES[0], SET, "-1")]),
            (TOPIC, "th", [(THROTTLED_REPLICAS[0], SET, "0-1")]),
        ])
        assert got == [
            (ErrorCode.INVALID_REQUEST, f"Invalid value fast for configuration {THROTTLE_RATES[0]}: "
                                        "Not a number of type LONG"),
            (ErrorCode.INVALID_REQUEST, f"Invalid value -1 for configuration {THROTTLE_RATES[0]}: "
                                        "Value must be at least 0"),
            (ErrorCode.INVALID_CONFIG, got[2][1])]
        got = await alter_configs(rig, 1, [(BROKER, "x", [(THROTTLE_RATES[0], DELETE, None)])])
        assert got == [(ErrorCode.INVALID_REQUEST, "Node id must be an integer, but it is: x")]
        got = await alter_configs(rig, 1, [(BROKER, "2", [(THROTTLE_RATES[0], DELETE, None)])])
        assert got == [(ErrorCode.INVALID_REQUEST, "Unexpected broker id, expected 1, but received 2")]
        assert await alter_configs(rig, 1, [(BROKER, "1", [])]) == [(NONE, None)]

        # a throttle next to a dynamic broker config, or a real topic config: the real one is stored
        assert await alter_configs(rig, 1, [(BROKER, "1", [(THROTTLE_RATES[0], SET, "5"),
                                                            ("log.retention.ms", SET, "1000")])]) == [(NONE, None)]
        assert rig.brokers[1].cluster.metadata.image.broker_configs == {"1": {"log.retention.ms": "1000"}}
        assert await alter_configs(rig, 2, [(TOPIC, "th", [(THROTTLED_REPLICAS[0], DELETE, None),
                                                            ("retention.ms", SET, "60000")])]) == [(NONE, None)]
        assert rig.brokers[2].cluster.metadata.topics["th"].configs == {"retention.ms": "60000"}


# ------------------------------------------------------------------ ApiVersions
@pytest.mark.parametrize("key,versions", [(43, (0, 2)), (45, (0, 1)), (46, (0, 0)), (35, (1, 5))])
async def test_api_versions_advertises_the_reassignment_apis(tmp_path, key, versions):
    async with ClusterRig(tmp_path, seed=27, brokers=1) as rig:
        resp = await rig.request(1, ApiVersionsRequest(client_software_name="t", client_software_version="1"),
                                 version=3)
        assert {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys}[key] == versions


# ------------------------------------------------------------------ draining
async def test_a_drain_written_to_the_bucket_empties_the_broker(tmp_path):
    """What `sluice drain` does: add the node to the document's draining list
    from outside any broker. The controller gives each of its partitions and
    coordinator partitions a target, it hands them off, and sees itself
    drained (its `drained` event: `sluice serve` then shuts down)."""
    async with rig_of(tmp_path, 28) as rig:
        await create_topic(rig, 1, "d", 3)
        await rig.advance(rig.heartbeat)
        assert await produce(rig, 2, "d", 1, [b"x", b"y"]) == (0, 0)

        def drain(image) -> None:
            image.draining.append(2)
        await MetadataStore(rig.store).update(drain)
        for _ in range(10):
            await rig.advance(rig.heartbeat)
            if rig.brokers[2].cluster.drained.is_set():
                break
        assert rig.brokers[2].cluster.drained.is_set()
        image = rig.brokers[2].cluster.metadata.image
        assert 2 not in [o for t in image.owned_topics() for o in t.owners]
        assert not rig.brokers[1].cluster.drained.is_set()
        await rig.advance(rig.heartbeat)        # every broker hears of the last hand-off
        owner = rig.owners("d")[1]
        assert owner in (1, 3) and 2 not in rig.owners("d")
        assert await fetch(rig, owner, "d", 1) == (0, [(0, None, b"x"), (1, None, b"y")])
        (error, message), = (await alter(rig, 1, {("d", 1): [2]})).values()
        assert error == INVALID_ASSIGNMENT and "draining" in message


async def test_a_draining_broker_that_no_other_can_relieve_keeps_its_partitions(tmp_path):
    """Draining the only live broker: nobody can take its partitions, so none
    gets a target (it must not hand them to itself, epoch after epoch)."""
    async with rig_of(tmp_path, 29) as rig:
        await create_topic(rig, 1, "alone", 2)
        for node in (2, 3):
            await rig.remove_broker(node, clean=False)
        await rig.advance(rig.brokers[1].config["broker.session.timeout.ms"] / 1000 + rig.heartbeat)
        await rig.brokers[1].cluster.set_draining(1, True)
        epochs = list(rig.brokers[1].cluster.metadata.topics["alone"].epochs)
        await rig.advance(3 * rig.heartbeat)
        t = rig.brokers[1].cluster.metadata.topics["alone"]
        assert (t.owners, t.epochs, t.targets) == ([1, 2], epochs, [-1, -1])
        assert await produce(rig, 1, "alone", 0, [b"still"]) == (0, 0)


# ------------------------------------------------------------------ group offsets
async def test_a_groups_offsets_for_every_partition_are_kept_across_a_move(tmp_path):
    """A group's coordinator commits offsets for partitions other brokers own
    (it checks only that they exist), and they are still there once one of
    them has moved."""
    async with rig_of(tmp_path, 30) as rig:
        await create_topic(rig, 1, "g", 3)
        await rig.advance(rig.heartbeat)
        resp = await rig.request(1, FindCoordinatorRequest(key_type=0, coordinator_keys=["grp"]), version=4)
        [c] = resp.coordinators
        assert c.error_code == 0
        coordinator = c.node_id
        OT = OffsetCommitRequest.OffsetCommitRequestTopic
        resp = await rig.request(coordinator, OffsetCommitRequest(
            group_id="grp", generation_id_or_member_epoch=-1, member_id="", group_instance_id=None,
            retention_time_ms=-1, topics=[OT(name="g", partitions=[
                OT.OffsetCommitRequestPartition(partition_index=i, committed_offset=10 + i,
                                                committed_leader_epoch=-1, committed_metadata="")
                for i in range(3)] + [OT.OffsetCommitRequestPartition(
                    partition_index=7, committed_offset=1, committed_leader_epoch=-1, committed_metadata="")])]),
            version=8)
        assert [(p.partition_index, p.error_code) for t in resp.topics for p in t.partitions] == [
            (0, 0), (1, 0), (2, 0), (7, UNKNOWN)]

        mover = next(i for i, o in enumerate(rig.owners("g")) if o != coordinator)
        to = next(n for n in (1, 2, 3) if n not in (rig.owners("g")[mover], coordinator))
        assert await alter(rig, coordinator, {("g", mover): [to]}) == {("g", mover): (NONE, None)}
        await rig.advance(2 * rig.heartbeat)
        assert rig.owners("g")[mover] == to
        FT_ = OffsetFetchRequest.OffsetFetchRequestTopic
        resp = await rig.request(coordinator, OffsetFetchRequest(
            group_id="grp", topics=[FT_(name="g", partition_indexes=[0, 1, 2])], require_stable=False), version=7)
        assert [(p.partition_index, p.committed_offset) for t in resp.topics for p in t.partitions] == [
            (0, 10), (1, 11), (2, 12)]


async def test_the_last_broker_to_stop_does_not_wait_for_a_drain_nobody_can_take(tmp_path):
    """Node 1 stops (here without a drain) and node 2 gets SIGTERM right
    after, before its heartbeat saw node 1 leave: its controlled shutdown
    starts a drain to node 1, and must give up once it sees that nobody is
    left to take its partitions, not wait out s3.shutdown.timeout.ms. What
    it holds is in the bucket for the next broker to start."""
    rig = ClusterRig(tmp_path / "first", seed=31, brokers=2, overrides={
        **NO_BALANCER, "controlled.shutdown.enable": True, "s3.shutdown.timeout.ms": 20_000})
    await rig.start()
    await create_topic(rig, 1, "last", 2)
    await rig.advance(rig.heartbeat)
    assert await produce(rig, 2, "last", 1, [b"kept"]) == (0, 0)
    rig.brokers[1].config.values["controlled.shutdown.enable"] = False
    await rig.remove_broker(1)
    started = time.monotonic()
    await rig.remove_broker(2)          # no heartbeat in between: node 1 still looks live
    assert time.monotonic() - started < 5
    again = ClusterRig(tmp_path / "again", seed=31, brokers=1)
    again.store = rig.store
    async with again:
        assert await fetch(again, 1, "last", 1) == (0, [(0, None, b"kept")])


async def test_describe_log_dirs_reports_each_owned_partition_with_its_bytes(tmp_path):
    """One log dir per broker, named after the object store and the WAL,
    holding the partitions it owns; a partition's size is its bytes in the
    bucket per the manifest plus what the WAL holds above it."""
    async with ClusterRig(tmp_path, seed=32, brokers=2) as rig:
        await create_topic(rig, 1, "ld", 2)
        await rig.advance(rig.heartbeat)
        assert rig.owners("ld") == [1, 2]
        assert await produce(rig, 1, "ld", 0, [b"x" * 100]) == (0, 0)
        assert await rig.upload(1)
        assert await produce(rig, 1, "ld", 0, [b"y" * 50]) == (0, 1)
        p = rig.brokers[1].replicas.get("ld", 0)
        batches = [size for _, _, _, size, _ in p.entries_from(0)]
        assert len(batches) == 2
        manifest_bytes = sum(s.length for s in p.storage.manifest.segments)
        assert manifest_bytes == batches[0]
        for version in (1, 4, 5):
            resp = await rig.request(1, DescribeLogDirsRequest(topics=None), version=version)
            assert version < 3 or resp.error_code == 0
            [d] = resp.results
            assert d.error_code == 0 and d.log_dir.startswith("MemoryObjectStore:#wal=")
            assert d.log_dir.endswith(os.path.join("broker-1", "wal")), d.log_dir
            assert [(t.name, [(q.partition_index, q.partition_size, q.offset_lag, q.is_future_key)
                              for q in t.partitions]) for t in d.topics] == [("ld", [(0, sum(batches), 0, False)])]
            if version >= 4:        # no volume under a bucket: Kafka's "unknown"
                assert (d.total_bytes, d.usable_bytes) == (-1, -1)
        # named partitions: only those this broker holds, as Kafka
        DT = DescribeLogDirsRequest.DescribableLogDirTopic
        resp = await rig.request(1, DescribeLogDirsRequest(topics=[DT(topic="ld", partitions=[1])]), version=4)
        assert resp.results[0].topics == []
        resp = await rig.request(2, DescribeLogDirsRequest(topics=[DT(topic="ld", partitions=[1])]), version=4)
        assert [(t.name, [q.partition_index for q in t.partitions]) for t in resp.results[0].topics] == \
            [("ld", [1])]

        # AlterReplicaLogDirs: keep a replica where it is, as Kafka answers
        one, two = (rig.brokers[n] for n in (1, 2))
        AD = AlterReplicaLogDirsRequest.AlterReplicaLogDir
        request = AlterReplicaLogDirsRequest(dirs=[
            AD(path=log_dir(one), topics=[AD.AlterReplicaLogDirTopic(name="ld", partitions=[0, 1]),
                                          AD.AlterReplicaLogDirTopic(name="gone", partitions=[0])]),
            AD(path=log_dir(two), topics=[AD.AlterReplicaLogDirTopic(name="ld2", partitions=[0])])])
        resp = await rig.request(1, request, version=2)
        got = {(t.topic_name, q.partition_index): q.error_code for t in resp.results for q in t.partitions}
        assert got == {("ld", 0): ErrorCode.NONE, ("ld", 1): ErrorCode.REPLICA_NOT_AVAILABLE,
                       ("gone", 0): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ("ld2", 0): ErrorCode.LOG_DIR_NOT_FOUND}
