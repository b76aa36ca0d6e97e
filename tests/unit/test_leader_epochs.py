"""Leader-epoch history (broker/log/leader_epochs.py), its manifest field, and
OffsetForLeaderEpoch / current_leader_epoch checks across moves in the rig."""
from __future__ import annotations

import json

import pytest
from cluster_rig import ClusterRig
from kafka.protocol.consumer import ListOffsetsRequest, OffsetForLeaderEpochRequest
from test_cluster_rig import create_topic, fetch, produce

from broker.errors import ErrorCode
from broker.log.leader_epochs import LeaderEpochCache
from objectstore.base import CorruptObject
from objectstore.manifest import Manifest

FENCED, UNKNOWN = ErrorCode.FENCED_LEADER_EPOCH, ErrorCode.UNKNOWN_LEADER_EPOCH


# --------------------------------------------------------------------- cache
def test_end_offsets_as_kafka_answers():
    c = LeaderEpochCache([(1, 0), (3, 10), (4, 25)])
    assert c.end_offset_for(4, 40) == (4, 40)     # current epoch: log end
    assert c.end_offset_for(3, 40) == (3, 25)     # next epoch's start
    assert c.end_offset_for(2, 40) == (1, 10)     # unknown between: the floor epoch
    assert c.end_offset_for(1, 40) == (1, 10)
    assert c.end_offset_for(0, 40) == (0, 0)      # older than all: itself, first start
    assert c.end_offset_for(5, 40) == (-1, -1)    # newer than all
    assert c.end_offset_for(-1, 40) == (-1, -1)
    assert LeaderEpochCache().end_offset_for(1, 5) == (-1, -1)


def test_assign_truncates_as_kafka():
    c = LeaderEpochCache()
    assert c.assign(1, 0)
    assert not c.assign(1, 5)                  # same epoch, later offset: no change
    assert c.assign(2, 5) and c.assign(3, 5)   # an epoch with no batch gives way to the next
    assert c.entries == ((1, 0), (3, 5))
    assert c.assign(4, 3)                      # an earlier start drops what starts after it
    assert c.entries == ((1, 0), (4, 3))
    assert not c.assign(-1, 7) and c.latest_epoch == 4
    assert c.upto(2) == ((1, 0),) and c.upto(3) == ((1, 0), (4, 3))


def test_log_start_truncates_from_start_as_kafka():
    c = LeaderEpochCache([(1, 0), (3, 10), (4, 25)])
    c.truncate_from_start(5)
    assert c.entries == ((1, 5), (3, 10), (4, 25))
    c.truncate_from_start(12)
    assert c.entries == ((3, 12), (4, 25))
    assert c.end_offset_for(2, 40) == (2, 12)     # older than any left: itself, the log start
    c.truncate_from_start(30)
    assert c.entries == ((4, 30),)
    c.truncate_from_start(30)
    assert c.entries == ((4, 30),)
    LeaderEpochCache().truncate_from_start(3)   # nothing to truncate


# ------------------------------------------------------------------ manifest
def test_manifest_keeps_leader_epochs_and_reads_older_ones():
    m = Manifest(b"\x01" * 16, 0, 3, 2, leader_epochs=((1, 0), (3, 7)))
    assert Manifest.decode(m.encode()).leader_epochs == ((1, 0), (3, 7))
    old = json.loads(m.encode())
    del old["leader_epochs"]                   # written before the field existed
    assert Manifest.decode(json.dumps(old).encode()).leader_epochs == ()
    old["leader_epochs"] = [[3, 0], [2, 5]]    # epochs must increase
    with pytest.raises(CorruptObject):
        Manifest.decode(json.dumps(old).encode())


# ---------------------------------------------------------------------- rig
def ofle(topic: str, partition: int, epoch: int, current: int = -1) -> OffsetForLeaderEpochRequest:
    T = OffsetForLeaderEpochRequest.OffsetForLeaderTopic
    return OffsetForLeaderEpochRequest(replica_id=-1, topics=[T(topic=topic, partitions=[
        T.OffsetForLeaderPartition(partition=partition, current_leader_epoch=current, leader_epoch=epoch)])])


async def end_offset(rig: ClusterRig, node: int, topic: str, epoch: int, current: int = -1):
    resp = await rig.request(node, ofle(topic, 0, epoch, current), version=4)
    [p] = resp.topics[0].partitions
    return p.error_code, p.leader_epoch, p.end_offset


async def move(rig: ClusterRig, topic: str, to_node: int) -> None:
    assert await rig.reassign(topic, 0, to_node) is None
    for _ in range(10):
        await rig.advance(rig.heartbeat)
        if rig.owners(topic)[0] == to_node and (await fetch(rig, to_node, topic, 0))[0] == 0:
            return
    raise AssertionError(f"{topic}-0 did not move to node {to_node}")


async def test_epochs_recorded_across_moves_give_end_offsets(tmp_path):
    async with ClusterRig(tmp_path, seed=5, brokers=2) as rig:
        await create_topic(rig, 1, "epochs", 1)
        await rig.advance(rig.heartbeat)
        a = rig.owners("epochs")[0]
        b = 3 - a
        assert await produce(rig, a, "epochs", 0, [b"a", b"b"]) == (0, 0)      # epoch 1: 0..1
        await move(rig, "epochs", b)
        assert await produce(rig, b, "epochs", 0, [b"c", b"d", b"e"]) == (0, 2)   # epoch 2: 2..4
        await move(rig, "epochs", a)                                              # epoch 3 from 5
        assert await end_offset(rig, a, "epochs", 3) == (0, 3, 5)   # current, nothing appended yet
        assert await produce(rig, a, "epochs", 0, [b"f"]) == (0, 5)
        assert await end_offset(rig, a, "epochs", 1) == (0, 1, 2)
        assert await end_offset(rig, a, "epochs", 2) == (0, 2, 5)
        assert await end_offset(rig, a, "epochs", 3, current=3) == (0, 3, 6)
        assert await end_offset(rig, a, "epochs", 0) == (0, 0, 0)
        assert await end_offset(rig, a, "epochs", 7) == (0, -1, -1)
        assert await end_offset(rig, a, "epochs", 1, current=2) == (FENCED, -1, -1)
        assert await end_offset(rig, a, "epochs", 1, current=4) == (UNKNOWN, -1, -1)
        assert (await end_offset(rig, b, "epochs", 1))[0] == ErrorCode.NOT_LEADER_OR_FOLLOWER
        assert (await end_offset(rig, a, "nope", 1))[0] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        # the history is in the manifest, for the next owner
        assert await rig.upload(a)
        m, _ = await rig.brokers[a].replicas.manifests.load(rig.brokers[a].replicas.get("epochs", 0).topic_id, 0)
        assert m is not None and m.leader_epochs == ((1, 0), (2, 2), (3, 5))
        # Fetch and ListOffsets check current_leader_epoch as Kafka does
        L = ListOffsetsRequest.ListOffsetsTopic
        for current, code in ((2, FENCED), (4, UNKNOWN), (3, 0), (-1, 0)):
            resp = await rig.request(a, ListOffsetsRequest(replica_id=-1, isolation_level=0, topics=[
                L(name="epochs", partitions=[L.ListOffsetsPartition(
                    partition_index=0, current_leader_epoch=current, timestamp=-1)])]), version=7)
            assert resp.topics[0].partitions[0].error_code == code
            assert (await fetch_at(rig, a, "epochs", current)) == code


async def fetch_at(rig: ClusterRig, node: int, topic: str, current: int) -> int:
    from kafka.protocol.consumer import FetchRequest
    FT = FetchRequest.FetchTopic
    resp = await rig.request(node, FetchRequest(
        replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=1 << 20, isolation_level=0,
        session_id=0, session_epoch=-1, topics=[FT(topic=topic, partitions=[FT.FetchPartition(
            partition=0, current_leader_epoch=current, fetch_offset=0, log_start_offset=-1,
            partition_max_bytes=1 << 20)])], forgotten_topics_data=[], rack_id=""), version=12)
    return resp.responses[0].partitions[0].error_code


async def test_history_survives_a_crash_through_manifest_and_wal(tmp_path):
    """Epoch 1's start comes back from the manifest, the batches only in the
    WAL keep their epoch, and the restarted owner's epoch begins at its log end."""
    async with ClusterRig(tmp_path, seed=3, brokers=1) as rig:
        await create_topic(rig, 1, "crash", 1)
        assert await produce(rig, 1, "crash", 0, [b"a", b"b"]) == (0, 0)
        assert await rig.upload(1)
        assert await produce(rig, 1, "crash", 0, [b"c"]) == (0, 2)       # in the WAL only
        await rig.remove_broker(1, clean=False)
        await rig.add_broker(1)
        for _ in range(10):
            if (await fetch(rig, 1, "crash", 0))[0] == 0:
                break
            await rig.advance(rig.heartbeat)
        p = rig.brokers[1].replicas.get("crash", 0)
        epoch = p.leader_epoch
        assert epoch > 1 and p.leader_epochs.entries == ((1, 0), (epoch, 3))   # a restart claims anew
        assert await end_offset(rig, 1, "crash", 1) == (0, 1, 3)
        assert await produce(rig, 1, "crash", 0, [b"d"]) == (0, 3)
        assert await end_offset(rig, 1, "crash", epoch) == (0, epoch, 4)
