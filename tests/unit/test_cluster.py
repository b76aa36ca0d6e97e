"""The cluster package over a real (filesystem) store: bucket-first metadata,
ownership deltas, producer-id blocks, membership and the controller lease.
Time is a ManualClock, so heartbeats run only when a test advances it."""
from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from broker.clock import ManualClock
from broker.cluster import NO_OWNER, Cluster, ClusterImage, OwnershipDelta, Topic, TopicExists, ownership_delta
from broker.cluster.controller import CONTROLLER_KEY
from broker.config import BrokerConfig
from objectstore import CLUSTER_METADATA_KEY, FilesystemObjectStore, ManifestStore


def config(node: int, **overrides) -> BrokerConfig:
    return BrokerConfig.load(overrides=[f"node.id={node}"] + [f"{k}={v}" for k, v in overrides.items()])


class Node:
    """One broker's cluster view and the deltas it was given."""

    def __init__(self, store, node: int, clock: ManualClock, **overrides) -> None:
        self.cluster = Cluster(config(node, **overrides), store, host="127.0.0.1", port=9000 + node,
                               clock=clock)
        self.deltas: list[OwnershipDelta] = []

    async def start(self, **kw) -> OwnershipDelta:
        return await self.cluster.start(self.deltas.append, **kw)

    def owned(self) -> set[tuple[str, int, int]]:
        """(topic, partition, epoch) this node was last told it owns."""
        out: dict[tuple[str, int], int] = {}
        for d in self.deltas:
            for loss in d.lost:
                out.pop((loss.topic.name, loss.index), None)
            for g in d.gained:
                out[(g.topic.name, g.index)] = g.epoch
        return {(t, i, e) for (t, i), e in out.items()}


@pytest.fixture
def store(tmp_path):
    return FilesystemObjectStore(str(tmp_path / "objects"))


def image(*topics: Topic) -> ClusterImage:
    return ClusterImage("c", 1, 0, {t.name: t for t in topics})


def test_delta_gains_losses_and_deleted_topics():
    a = Topic("a", uuid.uuid4(), 2, owners=[1, 2], epochs=[1, 1])
    b = Topic("b", uuid.uuid4(), 1, owners=[1], epochs=[3])
    old = image(a, b)
    moved = Topic("a", a.topic_id, 2, owners=[2, 1], epochs=[2, 2])
    new = image(moved)                                  # b deleted, a's partitions swapped owners
    d = ownership_delta(old, new, 1)
    assert [(g.topic.name, g.index, g.epoch) for g in d.gained] == [("a", 1, 2)]
    assert sorted((x.topic.name, x.index) for x in d.lost) == [("a", 0), ("b", 0)]
    assert [t.name for t in d.deleted_topics] == ["b"]
    assert not ownership_delta(new, new, 1)
    first = ownership_delta(None, new, 2)               # a start: everything owned, nothing lost
    assert [(g.index, g.epoch) for g in first.gained] == [(0, 2)] and not first.lost


def test_legacy_topic_documents_read_as_unowned():
    t = Topic.from_json({"name": "x", "id": str(uuid.uuid4()), "partitions": 3})
    assert t.owners == [NO_OWNER] * 3 and t.epochs == [0] * 3


async def test_one_broker_owns_everything_and_a_restart_bumps_every_epoch(store):
    clock = ManualClock()
    n = Node(store, 1, clock)
    first = await n.start()
    assert not first.gained and n.cluster.controller_id == 1
    assert first.coordinators_gained == [(shard, 1) for shard in range(50)]   # offsets.topic.num.partitions
    assert n.cluster.coordinator(7)[0].node_id == 1
    await n.cluster.create_topic("t", 3)
    assert n.owned() == {("t", 0, 1), ("t", 1, 1), ("t", 2, 1)}
    await n.cluster.halt()                              # a crash: still registered

    again = Node(store, 1, clock)
    await again.start()
    assert again.owned() == {("t", 0, 2), ("t", 1, 2), ("t", 2, 2)}   # "all partitions, epoch N"
    assert again.deltas[0].coordinators_gained[0] == (0, 2)          # the coordinator's too
    doc = json.loads(await store.get(CLUSTER_METADATA_KEY))
    assert doc["topics"][0]["epochs"] == [2, 2, 2] and doc["topics"][0]["owners"] == [1, 1, 1]
    await again.cluster.stop(deregister=True)


async def test_two_brokers_share_the_document_and_never_share_a_producer_id(store):
    clock = ManualClock()
    a, b = Node(store, 1, clock), Node(store, 2, clock)
    await a.start()
    await b.start()
    await a.cluster.tick()                              # a hears of b on its next heartbeat
    await asyncio.gather(a.cluster.create_topic("x", 2), b.cluster.create_topic("y", 2))
    with pytest.raises(TopicExists):
        await b.cluster.create_topic("x", 1)
    pids = await asyncio.gather(*(c.next_producer_id() for c in (a.cluster, b.cluster) for _ in range(5)))
    assert len(set(pids)) == 10
    await a.cluster.tick()                              # a reads b's change
    assert set(a.cluster.metadata.topics) == {"x", "y"}
    owners = [o for t in a.cluster.metadata.topics.values() for o in t.owners]
    assert sorted(owners) == [1, 1, 2, 2]               # spread over both members
    mine = {(t, i) for t, i, _ in a.owned()} | {(t, i) for t, i, _ in b.owned()}
    assert len(mine) == 4 and not ({(t, i) for t, i, _ in a.owned()} & {(t, i) for t, i, _ in b.owned()})
    assert [r.node_id for r in a.cluster.brokers()] == [1, 2]
    shards = [a.cluster.coordinator(s)[0].node_id for s in range(a.cluster.coordinator_partitions)]
    assert set(shards) == {1}             # b found every coordinator partition owned by a live member
    for n in (a, b):
        await n.cluster.stop(deregister=True)


async def test_the_controller_lease_is_held_by_one_and_taken_over_after_it_expires(store):
    clock = ManualClock()
    a, b = Node(store, 1, clock), Node(store, 2, clock)
    await a.start()
    await b.start()
    assert a.cluster.controller_id == 1 and b.cluster.controller_id == 1
    lease = json.loads(await store.get(CONTROLLER_KEY))
    await a.cluster.halt()                              # a dies holding the lease
    clock.advance(5)
    await b.cluster.tick()
    assert b.cluster.controller_id == 1                 # not expired yet (broker.session.timeout.ms 9 s)
    clock.advance(5)
    await b.cluster.tick()
    assert b.cluster.controller.holder == 2
    assert json.loads(await store.get(CONTROLLER_KEY))["epoch"] == lease["epoch"] + 1
    await b.cluster.stop(deregister=True)


async def test_a_cleanly_stopped_brokers_partitions_go_to_the_others(store):
    clock = ManualClock()
    a, b = Node(store, 1, clock), Node(store, 2, clock)
    await a.start()
    await b.start()
    await a.cluster.tick()
    await a.cluster.create_topic("t", 4)
    await b.cluster.tick()
    assert len(b.owned()) == 2
    await b.cluster.stop(deregister=True)               # drained: everything it held is uploaded
    await a.cluster.tick()                              # the controller adopts the orphans
    assert {(t, i) for t, i, _ in a.owned()} == {("t", i) for i in range(4)}
    epochs = {i: e for _, i, e in a.owned()}
    assert sorted(epochs.values()) == [1, 1, 2, 2]      # the moved ones at epoch + 1
    await a.cluster.stop(deregister=True)


async def test_claims_start_above_a_legacy_manifest_epoch(store, tmp_path):
    """A bucket from before ownership: the topic has no owners or epochs, its
    manifest an epoch from restarts. The first claim must go above it."""
    tid = uuid.uuid4()
    manifests = ManifestStore(store)
    for _ in range(7):
        await manifests.claim(tid.bytes, 0, 1)
    data = tmp_path / "data"
    data.mkdir()
    (data / "metadata.json").write_text(json.dumps({     # the old local copy, newer than the bucket
        "cluster_id": "old", "generation": 5, "producer_id_block_end": 2000,
        "topics": [{"name": "t", "id": str(tid), "partitions": 1, "configs": {}}]}))
    n = Node(store, 1, ManualClock())
    await n.start(legacy_dir=str(data))
    assert n.owned() == {("t", 0, 8)}
    assert not (data / "metadata.json").exists()        # migrated to the bucket, then removed
    assert await n.cluster.next_producer_id() >= 2000   # never reuses a block handed out before
    m, _ = await manifests.load(tid.bytes, 0)
    assert m.epoch == 7                                 # the ReplicaManager claims 8 when it applies the delta
    assert n.cluster.metadata.cluster_id == "old"
    await n.cluster.stop(deregister=True)
