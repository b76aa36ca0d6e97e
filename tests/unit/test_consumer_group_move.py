"""A KIP-848 consumer group moves with its coordinator partition (in-process rig):
the new coordinator loads the group's state from the partition's snapshot, so
members keep their epochs and assignments; the old one answers NOT_COORDINATOR."""
from __future__ import annotations

from cluster_rig import ClusterRig
from test_cluster_rig import create_topic

from broker.apis.specs import ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest
from broker.cluster import MetadataStore
from broker.coordinator.log import partition_for
from broker.errors import ErrorCode


def heartbeat(member: str, epoch: int, **kw) -> ConsumerGroupHeartbeatRequest:
    d = dict(group_id="billing", member_id=member, member_epoch=epoch, instance_id=None, rack_id=None,
             rebalance_timeout_ms=30000 if epoch == 0 else -1,
             subscribed_topic_names=["orders"] if epoch == 0 else None, subscribed_topic_regex=None,
             server_assignor=None, topic_partitions=[] if epoch == 0 else None)
    d.update(kw)
    return ConsumerGroupHeartbeatRequest(**d)


async def test_a_consumer_group_moves_with_its_coordinator_partition(tmp_path):
    async with ClusterRig(tmp_path, seed=31) as rig:
        await create_topic(rig, 1, "orders", 4)
        await rig.advance(rig.heartbeat)
        shard = partition_for("billing", 50)

        def owner_of_shard() -> int:
            offsets = rig.brokers[1].cluster.metadata.image.offsets
            assert offsets is not None
            return offsets.owners[shard]
        old = owner_of_shard()
        a = await rig.request(old, heartbeat("a", 0), version=1)
        b = await rig.request(old, heartbeat("b", 0), version=1)
        assert (a.error_code, b.error_code) == (0, 0)
        a = await rig.request(old, heartbeat("a", a.member_epoch), version=1)     # asked to revoke two
        mine = sorted(a.assignment.topic_partitions[0].partitions)
        assert len(mine) == 2
        new = rig.rng.choice([n for n in (1, 2, 3) if n != old])

        def target(image) -> None:
            image.offsets.targets[shard] = new
        await MetadataStore(rig.store).update(target)
        await rig.advance(2 * rig.heartbeat)
        assert owner_of_shard() == new
        r = await rig.request(old, heartbeat("a", a.member_epoch), version=1)
        assert r.error_code == ErrorCode.NOT_COORDINATOR
        d = await rig.request(new, ConsumerGroupDescribeRequest(group_ids=["billing"],
                                                                include_authorized_operations=False), version=1)
        assert d.groups[0].error_code == 0
        assert {m.member_id: m.member_epoch for m in d.groups[0].members} == {"a": a.member_epoch,
                                                                               "b": b.member_epoch}
        # a finishes its revocation at the new coordinator; then b gets the rest
        T = ConsumerGroupHeartbeatRequest.TopicPartitions
        tid = a.assignment.topic_partitions[0].topic_id
        r = await rig.request(new, heartbeat("a", a.member_epoch, topic_partitions=[T(topic_id=tid, partitions=mine)]),
                              version=1)
        assert r.error_code == 0 and r.member_epoch > a.member_epoch
        r = await rig.request(new, heartbeat("b", b.member_epoch), version=1)
        assert r.error_code == 0
        assert sorted(r.assignment.topic_partitions[0].partitions) == sorted(set(range(4)) - set(mine))
