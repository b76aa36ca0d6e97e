"""Share-group offset resets and deletes for partitions another broker owns
(docs/share-groups.md §4.10), in the in-process rig: the group coordinator's
broker records them in the cluster metadata, the partition's owner applies
them through its own WAL, and the answer waits for that. Also while the
partition moves (the reset applied once, before or after the hand-off), a
takeover with the entry pending, and the error codes when no owner can
apply it."""
from __future__ import annotations

import asyncio
import uuid

import pytest
from cluster_rig import ClusterRig
from test_cluster_rig import create_topic, produce
from test_failover import S3_WAL, SESSION

from broker.apis.specs import (
    AlterShareGroupOffsetsRequest,
    DeleteShareGroupOffsetsRequest,
    DescribeShareGroupOffsetsRequest,
    ShareAcknowledgeRequest,
    ShareFetchRequest,
)
from broker.errors import ErrorCode

F = ShareFetchRequest
A = ShareAcknowledgeRequest
AT = AlterShareGroupOffsetsRequest.AlterShareGroupOffsetsRequestTopic
AB = A.AcknowledgeTopic.AcknowledgePartition.AcknowledgementBatch


async def share_fetch(rig: ClusterRig, node: int, group: str, topic_id: uuid.UUID, member: str,
                      epoch: int = 0) -> dict[int, int]:
    """offset -> delivery count of what one ShareFetch acquired."""
    resp = await rig.request(node, F(
        group_id=group, member_id=member, share_session_epoch=epoch, max_wait_ms=0, min_bytes=1,
        max_bytes=1 << 20, max_records=100, batch_size=100, share_acquire_mode=0, is_renew_ack=False,
        topics=[F.FetchTopic(topic_id=topic_id, partitions=[F.FetchTopic.FetchPartition(
            partition_index=0, acknowledgement_batches=[])])], forgotten_topics_data=[]), version=2)
    assert resp.error_code == 0, resp
    parts = [p for t in resp.responses for p in t.partitions]     # those with nothing acquired are left out
    assert all(p.error_code == 0 for p in parts), parts
    return {o: a.delivery_count for p in parts for a in p.acquired_records
            for o in range(a.first_offset, a.last_offset + 1)}


async def acknowledge(rig: ClusterRig, node: int, group: str, topic_id: uuid.UUID, member: str, epoch: int,
                      first: int, last: int, kind: int) -> None:
    batch = AB(first_offset=first, last_offset=last, acknowledge_types=[kind])
    resp = await rig.request(node, A(group_id=group, member_id=member, share_session_epoch=epoch, is_renew_ack=False,
                                     topics=[A.AcknowledgeTopic(topic_id=topic_id, partitions=[
                                         A.AcknowledgeTopic.AcknowledgePartition(partition_index=0,
                                                                                 acknowledgement_batches=[batch])])]),
                             version=2)
    assert resp.responses[0].partitions[0].error_code == 0, resp


def coordinator_of(rig: ClusterRig, group: str) -> int:
    b = next(iter(rig.brokers.values()))
    shard = b.coordinator_shards.shard_of(group)
    offsets = b.cluster.metadata.image.offsets
    assert offsets is not None
    return offsets.owners[shard]


def group_coordinated_elsewhere(rig: ClusterRig, owner: int) -> tuple[str, int]:
    """A group id whose coordinator is not ``owner``, and that coordinator."""
    for n in range(1000):
        group = f"g{n}"
        coordinator = coordinator_of(rig, group)
        if coordinator != owner:
            return group, coordinator
    raise AssertionError("every group is coordinated by the owner")


async def answer(rig: ClusterRig, task: asyncio.Task, beats: int = 12):
    """The answer of a request started with ``start_request``, heartbeat by
    heartbeat (each hop, coordinator -> owner -> coordinator, is up to one
    heartbeat in the rig, which delivers no metadata notices)."""
    for _ in range(beats):
        if task.done():
            break
        await rig.advance(rig.heartbeat / 4)
        await asyncio.wait({task}, timeout=0.05)     # its last step may be a WAL fsync (a thread)
    return await asyncio.wait_for(task, 10)


async def reset(rig: ClusterRig, node: int, group: str, offset: int) -> tuple[int, str | None]:
    """AlterShareGroupOffsets of q-0 sent to ``node``."""
    task = rig.start_request(node, AlterShareGroupOffsetsRequest(group_id=group, topics=[
        AT(topic_name="q", partitions=[AT.AlterShareGroupOffsetsRequestPartition(partition_index=0,
                                                                                 start_offset=offset)])]), version=0)
    resp = await answer(rig, task)
    assert resp.error_code == 0, resp
    [p] = resp.responses[0].partitions
    return p.error_code, p.error_message


async def described(rig: ClusterRig, node: int, group: str) -> list[tuple[int, int]]:
    """(partition, start offset) of q as DescribeShareGroupOffsets at ``node`` answers."""
    D = DescribeShareGroupOffsetsRequest
    resp = await rig.request(node, D(groups=[D.DescribeShareGroupOffsetsRequestGroup(group_id=group, topics=[
        D.DescribeShareGroupOffsetsRequestGroup.DescribeShareGroupOffsetsRequestTopic(topic_name="q",
                                                                                      partitions=[0])])]), version=1)
    [g] = resp.groups
    return [(p.partition_index, p.start_offset) for t in g.topics for p in t.partitions]


def pending(rig: ClusterRig) -> dict:
    return next(iter(rig.brokers.values())).cluster.metadata.image.share_resets


async def setup(rig: ClusterRig) -> tuple[int, str, int, uuid.UUID]:
    """q (1 partition) with 10 records; a group coordinated by another broker
    than q-0's owner, its share-partition at offset 10 (latest)."""
    await create_topic(rig, 1, "q", 1)
    await rig.advance(rig.heartbeat)
    [owner] = rig.owners("q")
    if all(coordinator_of(rig, f"g{n}") == owner for n in range(100)):   # node 1 starts with them all
        assert await rig.reassign("q", 0, owner % len(rig.brokers) + 1) is None
        await rig.advance(2 * rig.heartbeat)
        [owner] = rig.owners("q")
    topic_id = rig.brokers[owner].cluster.metadata.topics["q"].topic_id
    for n in range(10):
        assert await produce(rig, owner, "q", 0, [b"v%d" % n]) == (0, n)
    group, coordinator = group_coordinated_elsewhere(rig, owner)
    assert await share_fetch(rig, owner, group, topic_id, "m0") == {}     # latest: starts at 10
    return owner, group, coordinator, topic_id


@pytest.mark.parametrize("seed,when", [(1, "with"), (2, "with"), (3, "sealed")])
async def test_reset_applied_by_the_owner_and_once_across_a_move(tmp_path, seed, when):
    async with ClusterRig(tmp_path, seed=seed, overrides={"share.coordinator.write.timeout.ms": 30_000}) as rig:
        owner, group, coordinator, topic_id = await setup(rig)
        assert await reset(rig, coordinator, group, 2) == (0, None)
        assert pending(rig) == {}
        assert await described(rig, coordinator, group) == [(0, 2)]    # the owner recorded its manifest
        assert await share_fetch(rig, owner, group, topic_id, "m1") == {o: 1 for o in range(2, 10)}
        await acknowledge(rig, owner, group, topic_id, "m1", 1, 2, 4, 1)
        await acknowledge(rig, owner, group, topic_id, "m1", 2, 5, 9, 2)
        await rig.upload(owner)     # describe reads another owner's manifest: as of its last update
        assert await described(rig, coordinator, group) == [(0, 5)]
        assert await produce(rig, owner, "q", 0, [b"v10"]) == (0, 10)   # the hand-off has to record it

        target = next(n for n in sorted(rig.brokers) if n != owner)
        applied = sum(b.share_resets.applied for b in rig.brokers.values())
        if when == "with":      # the owner hears of the move and the reset in one document version
            assert await rig.reassign("q", 0, target) is None
            code = await reset(rig, coordinator, group, 1)
        else:                   # the owner is sealed, its hand-off upload held: the new owner applies it
            rig.delay_store("put", "manifests/", 3 * rig.heartbeat, node=owner)
            assert await rig.reassign("q", 0, target) is None
            await rig.advance(rig.heartbeat)
            assert rig.brokers[owner].replicas.get("q", 0).sealed
            code = await reset(rig, coordinator, group, 1)
        assert code == (0, None)
        await rig.advance(rig.heartbeat)
        assert rig.owners("q") == [target]
        assert pending(rig) == {}
        assert sum(b.share_resets.applied for b in rig.brokers.values()) == applied + 1     # once
        assert await described(rig, coordinator, group) == [(0, 1)]
        # a new state epoch: nothing acknowledged or delivered before counts
        assert await share_fetch(rig, target, group, topic_id, "m2") == {o: 1 for o in range(1, 11)}
        await acknowledge(rig, target, group, topic_id, "m2", 1, 1, 10, 2)

        task = rig.start_request(coordinator, DeleteShareGroupOffsetsRequest(group_id=group, topics=[
            DeleteShareGroupOffsetsRequest.DeleteShareGroupOffsetsRequestTopic(topic_name="q")]), version=0)
        deleted = await answer(rig, task)
        assert [(t.topic_name, t.error_code) for t in deleted.responses] == [("q", 0)]
        assert await described(rig, coordinator, group) == [(0, -1)]
        assert await share_fetch(rig, target, group, topic_id, "m3") == {}    # again at latest (11)


async def test_a_takeover_applies_a_reset_its_dead_owner_had_not(tmp_path):
    """The owner dies with the entry pending (it never heard of it); the
    survivor replays its WAL, then applies the reset, and the coordinator's
    next request finds nothing left over."""
    async with ClusterRig(tmp_path, seed=11, overrides={**S3_WAL, "share.coordinator.write.timeout.ms": 60_000}) as rig:
        owner, group, coordinator, topic_id = await setup(rig)
        await rig.remove_broker(owner, clean=False)
        task = rig.start_request(coordinator, AlterShareGroupOffsetsRequest(group_id=group, topics=[
            AT(topic_name="q", partitions=[AT.AlterShareGroupOffsetsRequestPartition(partition_index=0,
                                                                                     start_offset=4)])]), version=0)
        resp = await answer(rig, task, beats=4 * round((SESSION + 4 * rig.heartbeat) / rig.heartbeat))
        assert resp.responses[0].partitions[0].error_code == 0, resp
        [new] = rig.owners("q", node=coordinator)
        assert new != owner and pending(rig) == {}
        assert await share_fetch(rig, new, group, topic_id, "m1") == {o: 1 for o in range(4, 10)}


async def test_no_live_owner_and_a_timeout_answer_as_kafka(tmp_path):
    async with ClusterRig(tmp_path, seed=21, overrides={"share.coordinator.write.timeout.ms": 3000}) as rig:
        owner, group, coordinator, topic_id = await setup(rig)
        # the owner is sealed for good (its hand-off upload never lands): nobody applies it in time
        rig.delay_store("put", "manifests/", 3600, node=owner)
        third = next(n for n in sorted(rig.brokers) if n not in (owner,))
        assert await rig.reassign("q", 0, third) is None
        await rig.advance(rig.heartbeat)
        code, message = await reset(rig, coordinator, group, 0)
        assert code == ErrorCode.REQUEST_TIMED_OUT and message
        assert pending(rig) == {}                       # withdrawn: applied later by nobody
        assert await rig.reassign("q", 0, None) is None  # cancel the move; the owner serves again
        rig.store.delay = None
        await rig.advance(rig.heartbeat)
        # a crashed owner (wal.type=file: its partitions wait for it): COORDINATOR_NOT_AVAILABLE at once
        await rig.remove_broker(owner, clean=False)
        await rig.advance(SESSION)
        task = rig.start_request(coordinator, AlterShareGroupOffsetsRequest(group_id=group, topics=[
            AT(topic_name="q", partitions=[AT.AlterShareGroupOffsetsRequestPartition(partition_index=0,
                                                                                     start_offset=0)])]), version=0)
        resp = await answer(rig, task)
        [p] = resp.responses[0].partitions
        assert p.error_code == ErrorCode.COORDINATOR_NOT_AVAILABLE and p.error_message
        assert pending(rig) == {}
