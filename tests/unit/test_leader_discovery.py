"""KIP-951 leader discovery: a broker answering NOT_LEADER_OR_FOLLOWER names the
partition's current leader and epoch (Produce v10+, Fetch v16+) and the
endpoints of the leaders it names, so a client re-routes without Metadata.

Through the cluster rig (three real brokers, requests encoded and decoded as a
client would), and LeaderHints against a stand-in cluster for what the rig does
not reach easily (a leader that is not live)."""
from __future__ import annotations

from types import SimpleNamespace

from cluster_rig import ClusterRig
from kafka.protocol.consumer import FetchRequest
from kafka.protocol.producer import ProduceRequest
from test_cluster_rig import create_topic, metadata
from wire import make_batch

from broker.apis.leaders import LeaderHints
from broker.apis.produce_response import NodeEndpoint

NOT_LEADER = 6
FT = FetchRequest.FetchTopic
PD = ProduceRequest.TopicProduceData


def produce_req(rig: ClusterRig, topic: str, topic_id, partitions: list[int]) -> ProduceRequest:
    return ProduceRequest(transactional_id=None, acks=-1, timeout_ms=10_000, topic_data=[
        PD(name=topic, topic_id=topic_id, partition_data=[
            PD.PartitionProduceData(index=i, records=make_batch([b"v%d" % i], timestamp_ms=rig.clock.now_ms()))
            for i in partitions])])


def fetch_req(topic: str, topic_id, partitions: list[int]) -> FetchRequest:
    return FetchRequest(
        replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=1 << 20, isolation_level=0,
        session_id=0, session_epoch=-1, topics=[FT(topic=topic, topic_id=topic_id, partitions=[
            FT.FetchPartition(partition=i, current_leader_epoch=-1, fetch_offset=0, log_start_offset=-1,
                              partition_max_bytes=1 << 20) for i in partitions])],
        forgotten_topics_data=[], rack_id="")


def leader_of(p) -> tuple[int, int] | None:
    cl = getattr(p, "current_leader", None)
    return None if cl is None else (cl.leader_id, cl.leader_epoch)


def endpoints(resp) -> list[tuple[int, str, int, str | None]]:
    return sorted((e.node_id, e.host, e.port, e.rack) for e in getattr(resp, "node_endpoints", None) or [])


async def test_not_leader_names_the_current_leader_and_its_endpoint(tmp_path):
    async with ClusterRig(tmp_path, seed=21) as rig:
        await create_topic(rig, 1, "clicks", 6)
        await rig.advance(rig.heartbeat)
        md = await metadata(rig, 1)
        [t] = [t for t in md.topics if t.name == "clicks"]
        owners = {p.partition_index: (p.leader_id, p.leader_epoch) for p in t.partitions}
        assert sorted(o for o, _ in owners.values()) == [1, 1, 2, 2, 3, 3]
        mine = [i for i, (o, _) in owners.items() if o == 1]
        others = {i: owner for i, owner in owners.items() if owner[0] != 1}
        every = sorted(owners)
        expect_endpoints = [(2, "127.0.0.1", 9002, None), (3, "127.0.0.1", 9003, None)]

        # Produce, by name (v10) and by topic id (v13): the partitions broker 1
        # does not own name their owners; those it owns are acknowledged as usual
        for version in (10, 13):
            resp = await rig.request(1, produce_req(rig, "clicks", t.topic_id, every), version=version)
            parts = {p.index: p for r in resp.responses for p in r.partition_responses}
            for i in mine:
                assert (parts[i].error_code, leader_of(parts[i])) == (0, None)
            for i, owner in others.items():
                assert (parts[i].error_code, leader_of(parts[i])) == (NOT_LEADER, owner)
            assert endpoints(resp) == expect_endpoints       # each leader named once

        # v9 has no such fields: the error alone
        resp = await rig.request(1, produce_req(rig, "clicks", t.topic_id, sorted(others)), version=9)
        assert [(p.error_code, leader_of(p)) for p in resp.responses[0].partition_responses] == \
            [(NOT_LEADER, None)] * len(others)
        assert endpoints(resp) == []

        # Fetch v16 (by id) and v18, the highest
        for version in (16, 18):
            resp = await rig.request(1, fetch_req("clicks", t.topic_id, every), version=version)
            parts = {p.partition_index: p for r in resp.responses for p in r.partitions}
            for i in mine:
                assert (parts[i].error_code, leader_of(parts[i])) == (0, None)
            for i, owner in others.items():
                assert (parts[i].error_code, leader_of(parts[i])) == (NOT_LEADER, owner)
            assert endpoints(resp) == expect_endpoints

        # Fetch v12-15 carry CurrentLeader in the schema, but Kafka fills it in from v16 only
        resp = await rig.request(1, fetch_req("clicks", t.topic_id, sorted(others)), version=15)
        assert [(p.error_code, leader_of(p)) for p in resp.responses[0].partitions] == \
            [(NOT_LEADER, None)] * len(others)

        # only one owner named: only its endpoint
        i, (owner, epoch) = next(iter(others.items()))
        resp = await rig.request(1, fetch_req("clicks", t.topic_id, [i]), version=16)
        assert leader_of(resp.responses[0].partitions[0]) == (owner, epoch)
        assert endpoints(resp) == [(owner, "127.0.0.1", 9000 + owner, None)]

        # no error, no fields
        resp = await rig.request(1, fetch_req("clicks", t.topic_id, mine), version=18)
        assert endpoints(resp) == [] and all(leader_of(p) is None for p in resp.responses[0].partitions)

        # other errors name no leader: an unknown topic
        resp = await rig.request(1, produce_req(rig, "nope", None, [0]), version=10)
        p = resp.responses[0].partition_responses[0]
        assert (p.error_code, leader_of(p), endpoints(resp)) == (3, None, [])


async def test_a_moved_partition_names_its_new_owner_and_epoch(tmp_path):
    """After a move, the old owner points at the new one, at the new epoch."""
    async with ClusterRig(tmp_path, seed=22) as rig:
        await create_topic(rig, 1, "moves", 3)
        await rig.advance(rig.heartbeat)
        assert rig.owners("moves") == [1, 2, 3]
        assert await rig.upload(1)
        assert await rig.move_partition("moves", 0, to_node=3) == 2
        await rig.advance(rig.heartbeat)
        tid = next(t.topic_id for t in (await metadata(rig, 1)).topics if t.name == "moves")
        resp = await rig.request(1, produce_req(rig, "moves", tid, [0]), version=13)
        p = resp.responses[0].partition_responses[0]
        assert (p.error_code, leader_of(p), endpoints(resp)) == \
            (NOT_LEADER, (3, 2), [(3, "127.0.0.1", 9003, None)])
        resp = await rig.request(1, fetch_req("moves", tid, [0]), version=18)
        p = resp.responses[0].partitions[0]
        assert (p.error_code, leader_of(p), endpoints(resp)) == \
            (NOT_LEADER, (3, 2), [(3, "127.0.0.1", 9003, None)])


class FakeCluster:
    """What LeaderHints reads of broker.cluster.Cluster."""

    def __init__(self, owners: list[int], epochs: list[int], live: dict[int, tuple[str, int, str | None]]):
        self.metadata = SimpleNamespace(topics={"t": SimpleNamespace(partitions=len(owners),
                                                                     owners=owners, epochs=epochs)})
        self._live = live
        self.listed = 0

    def leader(self, topic, index: int) -> tuple[int, int]:
        owner = topic.owners[index]
        return (owner if owner in self._live else -1), topic.epochs[index]

    def brokers(self):
        self.listed += 1
        return [SimpleNamespace(node_id=n, host=h, port=p, rack=r) for n, (h, p, r) in sorted(self._live.items())]


def test_leader_hints():
    c = FakeCluster(owners=[2, 3, 2, 4], epochs=[5, 6, 7, 8],
                    live={1: ("a", 1, None), 2: ("b", 2, "r2"), 3: ("c", 3, None)})
    hints = LeaderHints(c)  # type: ignore[arg-type]
    assert hints.leader("t", 2) == (2, 7)
    assert hints.leader("t", 0) == (2, 5)
    assert hints.leader("t", 3) == (-1, 8)       # owner 4 is not live: leader -1, its epoch, no endpoint
    assert hints.leader("t", 1) == (3, 6)
    assert hints.leader("t", 9) == (-1, -1)      # no such partition
    assert hints.leader("u", 0) == (-1, -1)      # no such topic
    assert hints.leader(None, 0) == (-1, -1)
    assert hints.node_endpoints() == [NodeEndpoint(2, "b", 2, "r2"), NodeEndpoint(3, "c", 3, None)]
    assert c.listed == 1                         # the live brokers are listed once per response
