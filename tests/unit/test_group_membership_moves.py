"""Durable group membership when a coordinator partition changes owner, in the
in-process rig: a hand-off (the old owner's snapshot) and a takeover of a dead
coordinator (its WAL entries replayed). Either way the new coordinator has the
group Stable with the same member, generation and assignment, and the member's
heartbeat and commit of that generation succeed there: no rejoin."""
from __future__ import annotations

import asyncio

from cluster_rig import ClusterRig
from kafka.protocol.consumer import (
    HeartbeatRequest,
    JoinGroupRequest,
    OffsetCommitRequest,
    SyncGroupRequest,
)
from test_cluster_rig import create_topic

from broker.cluster import MetadataStore
from broker.coordinator.log import partition_for
from broker.errors import ErrorCode

FAST_GROUPS = {"group.initial.rebalance.delay.ms": 0}
SESSION_MS = 300_000   # outlives the rig's heartbeats and the takeover below


def owner_of(rig: ClusterRig, group: str, node: int) -> int:
    offsets = rig.brokers[node].cluster.metadata.image.offsets
    assert offsets is not None
    return offsets.owners[partition_for(group, 50)]


async def stable_member(rig: ClusterRig, node: int, group: str) -> tuple[str, int]:
    """One consumer joins (v3: no member-id round) and syncs; (member id, generation)."""
    P = JoinGroupRequest.JoinGroupRequestProtocol
    join = await rig.request(node, JoinGroupRequest(
        group_id=group, session_timeout_ms=SESSION_MS, rebalance_timeout_ms=SESSION_MS, member_id="",
        protocol_type="consumer", protocols=[P(name="range", metadata=b"subscription")]), version=3)
    assert join.error_code == 0 and join.leader == join.member_id
    A = SyncGroupRequest.SyncGroupRequestAssignment
    sync = await rig.request(node, SyncGroupRequest(
        group_id=group, generation_id=join.generation_id, member_id=join.member_id,
        group_instance_id=None, protocol_type="consumer", protocol_name="range",
        assignments=[A(member_id=join.member_id, assignment=b"partitions")]), version=5)
    assert (sync.error_code, sync.assignment) == (0, b"partitions")
    return join.member_id, join.generation_id


async def carries_on(rig: ClusterRig, node: int, group: str, member: str, generation: int) -> None:
    """The member's heartbeat and commit of its generation work at ``node``; the group is Stable there."""
    hb = await rig.request(node, HeartbeatRequest(group_id=group, generation_id=generation,
                                                  member_id=member, group_instance_id=None), version=4)
    assert hb.error_code == 0
    T = OffsetCommitRequest.OffsetCommitRequestTopic
    P = T.OffsetCommitRequestPartition
    r = await rig.request(node, OffsetCommitRequest(
        group_id=group, generation_id_or_member_epoch=generation, member_id=member, group_instance_id=None,
        topics=[T(name="items", partitions=[P(partition_index=0, committed_offset=7,
                                               committed_leader_epoch=-1, committed_metadata=None)])]),
        version=8)
    assert r.topics[0].partitions[0].error_code == 0
    g = rig.brokers[node].groups.groups[group]
    assert (g.state, g.generation, list(g.members)) == ("Stable", generation, [member])
    assert g.members[member].assignment == b"partitions"
    assert g.members[member].timer is not None   # its session runs at the new coordinator


async def test_a_handed_off_group_keeps_its_members(tmp_path):
    async with ClusterRig(tmp_path, seed=51, overrides=FAST_GROUPS) as rig:
        await create_topic(rig, 1, "items", 1)
        await rig.advance(rig.heartbeat)
        group = "movers"
        old = owner_of(rig, group, 1)
        member, generation = await stable_member(rig, old, group)
        new = rig.rng.choice([n for n in (1, 2, 3) if n != old])
        shard = partition_for(group, 50)

        def target(image) -> None:
            image.offsets.targets[shard] = new
        await MetadataStore(rig.store).update(target)
        await rig.advance(2 * rig.heartbeat)
        assert owner_of(rig, group, 1) == new
        for _ in range(50):   # the new owner loads the snapshot in a task of its own
            if not rig.brokers[new].groups.group_error(group):
                break
            await asyncio.sleep(0.01)
        hb = await rig.request(old, HeartbeatRequest(group_id=group, generation_id=generation,
                                                     member_id=member, group_instance_id=None), version=4)
        assert hb.error_code == ErrorCode.NOT_COORDINATOR
        await carries_on(rig, new, group, member, generation)


async def test_a_dead_coordinators_members_are_taken_over(tmp_path):
    """Node 1 held the group's record in its WAL only (no snapshot written), and dies."""
    async with ClusterRig(tmp_path, seed=52, overrides={"wal.type": "s3", **FAST_GROUPS}) as rig:
        await create_topic(rig, 1, "items", 1)
        await rig.advance(rig.heartbeat)
        group = next(g for g in (f"g{n}" for n in range(1000)) if owner_of(rig, g, 1) == 1)
        member, generation = await stable_member(rig, 1, group)
        await rig.remove_broker(1, clean=False)
        await rig.advance(12.0 + 3 * rig.heartbeat)   # past the broker session: the controller acts
        new = owner_of(rig, group, 2)
        assert new in (2, 3)
        for _ in range(50):
            if not rig.brokers[new].groups.group_error(group):
                break
            await asyncio.sleep(0.01)
        await carries_on(rig, new, group, member, generation)
