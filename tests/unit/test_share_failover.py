"""Share-partition state through a failover, in the in-process rig
(docs/share-groups.md §4.7): the owner of a partition acknowledges share
records (WAL kind 5, ``wal.type=s3``) and dies; the survivor that takes the
partition over replays those entries from the dead broker's WAL, so no
acknowledgement is lost and only the released records are delivered again."""
from __future__ import annotations

import uuid

from cluster_rig import ClusterRig
from test_cluster_rig import create_topic, produce
from test_failover import S3_WAL, SESSION

from broker.apis.specs import ShareAcknowledgeRequest, ShareFetchRequest

F = ShareFetchRequest
A = ShareAcknowledgeRequest


async def share_fetch(rig: ClusterRig, node: int, topic_id: uuid.UUID, member: str, epoch: int):
    resp = await rig.request(node, F(
        group_id="g", member_id=member, share_session_epoch=epoch, max_wait_ms=0, min_bytes=1,
        max_bytes=1 << 20, max_records=100, batch_size=100, share_acquire_mode=0, is_renew_ack=False,
        topics=[F.FetchTopic(topic_id=topic_id, partitions=[F.FetchTopic.FetchPartition(
            partition_index=0, acknowledgement_batches=[])])], forgotten_topics_data=[]), version=2)
    assert resp.error_code == 0, resp
    return {o: a.delivery_count for t in resp.responses for p in t.partitions for a in p.acquired_records
            for o in range(a.first_offset, a.last_offset + 1)}


async def test_acknowledgements_survive_a_takeover(tmp_path):
    async with ClusterRig(tmp_path, seed=5, overrides=S3_WAL) as rig:
        await create_topic(rig, 1, "q", 1)
        await rig.advance(rig.heartbeat)
        [owner] = rig.owners("q")
        topic_id = rig.brokers[owner].cluster.metadata.topics["q"].topic_id
        assert await share_fetch(rig, owner, topic_id, "m1", 0) == {}     # starts at the log end, 0
        for n in range(10):
            assert await produce(rig, owner, "q", 0, [b"v%d" % n]) == (0, n)
        assert await share_fetch(rig, owner, topic_id, "m1", 1) == {o: 1 for o in range(10)}
        B = A.AcknowledgeTopic.AcknowledgePartition.AcknowledgementBatch
        ack = await rig.request(owner, A(group_id="g", member_id="m1", share_session_epoch=2, is_renew_ack=False,
                                         topics=[A.AcknowledgeTopic(topic_id=topic_id, partitions=[
                                             A.AcknowledgeTopic.AcknowledgePartition(
                                                 partition_index=0, acknowledgement_batches=[
                                                     B(first_offset=0, last_offset=4, acknowledge_types=[1]),
                                                     B(first_offset=5, last_offset=9, acknowledge_types=[2])])])]),
                                version=2)
        assert ack.responses[0].partitions[0].error_code == 0
        await rig.remove_broker(owner, clean=False)
        await rig.advance(SESSION + 3 * rig.heartbeat)
        survivor = next(n for n in rig.brokers if n != owner)
        [new] = rig.owners("q", node=survivor)
        assert new != owner
        assert await share_fetch(rig, new, topic_id, "m2", 0) == {o: 2 for o in range(5, 10)}


async def test_share_state_moves_with_a_handed_off_partition(tmp_path):
    """A reassignment (docs/cluster.md §7): the old owner's forced upload writes
    the share state into the manifest before the flip; the new owner loads it;
    the old one answers NOT_LEADER_OR_FOLLOWER."""
    async with ClusterRig(tmp_path, seed=6) as rig:
        await create_topic(rig, 1, "q", 1)
        await rig.advance(rig.heartbeat)
        [owner] = rig.owners("q")
        topic_id = rig.brokers[owner].cluster.metadata.topics["q"].topic_id
        assert await share_fetch(rig, owner, topic_id, "m1", 0) == {}
        for n in range(6):
            assert await produce(rig, owner, "q", 0, [b"v%d" % n]) == (0, n)
        assert await share_fetch(rig, owner, topic_id, "m1", 1) == {o: 1 for o in range(6)}
        B = A.AcknowledgeTopic.AcknowledgePartition.AcknowledgementBatch
        ack = await rig.request(owner, A(group_id="g", member_id="m1", share_session_epoch=2, is_renew_ack=False,
                                         topics=[A.AcknowledgeTopic(topic_id=topic_id, partitions=[
                                             A.AcknowledgeTopic.AcknowledgePartition(
                                                 partition_index=0, acknowledgement_batches=[
                                                     B(first_offset=0, last_offset=2, acknowledge_types=[1])])])]),
                                version=2)
        assert ack.responses[0].partitions[0].error_code == 0
        target = next(n for n in rig.brokers if n != owner)
        assert await rig.reassign("q", 0, target) is None
        await rig.advance(2 * rig.heartbeat)
        assert rig.owners("q", node=target) == [target]
        # 3..5 were acquired when the state moved: a move is a lock expiry (delivered once)
        assert await share_fetch(rig, target, topic_id, "m2", 0) == {3: 2, 4: 2, 5: 2}
        stale = await rig.request(owner, F(
            group_id="g", member_id="m3", share_session_epoch=0, max_wait_ms=0, min_bytes=1, max_bytes=1 << 20,
            max_records=100, batch_size=100, share_acquire_mode=0, is_renew_ack=False,
            topics=[F.FetchTopic(topic_id=topic_id, partitions=[F.FetchTopic.FetchPartition(
                partition_index=0, acknowledgement_batches=[])])], forgotten_topics_data=[]), version=2)
        part = stale.responses[0].partitions[0]
        assert (part.error_code, part.current_leader.leader_id) == (6, target)
