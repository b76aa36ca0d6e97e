"""Moves with a hand-off in the in-process rig (docs/cluster.md sections 7-10):
the old owner seals, uploads and flips, the new owner claims at epoch + 1 and
serves every acknowledged record; the balancer, draining, unclean election
and a coordinator partition's move, on the rig's clock, for several seeds."""
from __future__ import annotations

import asyncio

import pytest
from cluster_rig import ClusterRig
from kafka.protocol.consumer import OffsetCommitRequest, OffsetFetchRequest
from kafka.protocol.metadata import FindCoordinatorRequest
from kafka.protocol.producer import InitProducerIdRequest, ProduceRequest
from test_cluster_rig import create_topic, fetch, leaders, metadata, produce
from wire import make_batch

from broker import failpoints
from broker.cluster import MetadataStore
from broker.coordinator.log import partition_for
from broker.coordinator.shards import ACTIVE
from broker.errors import ErrorCode

NOT_LEADER = ErrorCode.NOT_LEADER_OR_FOLLOWER
PD = ProduceRequest.TopicProduceData
SEEDS = [21, 22, 23]


@pytest.fixture(autouse=True)
def _disarm():
    yield
    failpoints.disarm_all()


async def produce_batch(rig: ClusterRig, node: int, topic: str, partition: int, batch: bytes):
    resp = await rig.request(node, ProduceRequest(
        transactional_id=None, acks=-1, timeout_ms=10_000, topic_data=[
            PD(name=topic, partition_data=[PD.PartitionProduceData(index=partition, records=batch)])]),
        version=9)
    [tr] = resp.responses
    [pr] = tr.partition_responses
    return pr.error_code, pr.base_offset


def values(records) -> list[bytes]:
    return [v for _, _, v in records]


@pytest.mark.parametrize("seed", SEEDS)
async def test_a_move_hands_off_every_acknowledged_record(tmp_path, seed):
    """Nothing uploaded by hand: the old owner's hand-off uploads the tail,
    the new owner serves it at epoch 2, the old one refuses."""
    async with ClusterRig(tmp_path, seed=seed) as rig:
        await create_topic(rig, 1, "moves", 3)
        await rig.advance(rig.heartbeat)
        assert rig.owners("moves") == [1, 2, 3]
        for i in range(3):
            assert await produce(rig, 1, "moves", 0, [b"r%d" % i]) == (0, i)
        via = rig.rng.choice([1, 2, 3])
        assert await rig.reassign("moves", 0, 2, via=via) is None
        await rig.advance(2 * rig.heartbeat)
        assert rig.owners("moves", node=1)[0] == 2
        assert await fetch(rig, 2, "moves", 0) == (0, [(0, None, b"r0"), (1, None, b"r1"), (2, None, b"r2")])
        assert await produce(rig, 2, "moves", 0, [b"after"]) == (0, 3)
        assert (await produce(rig, 1, "moves", 0, [b"stale"]))[0] == NOT_LEADER
        for node in (1, 2, 3):
            assert leaders(await metadata(rig, node), "moves")[0] == (2, 2)
        assert rig.brokers[1].handoffs.moved == 1
        assert rig.brokers[1].cluster.reassignments() == []


async def test_an_idempotent_producer_carries_on_after_a_move(tmp_path):
    """The producer state travels in the manifest: a retry of the last batch
    sent to the old owner is a duplicate at the new one, the next sequence
    continues, a gap is OUT_OF_ORDER_SEQUENCE_NUMBER."""
    async with ClusterRig(tmp_path, seed=24) as rig:
        await create_topic(rig, 1, "idem", 3)
        await rig.advance(rig.heartbeat)
        init = await rig.request(1, InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=-1,
                                                          producer_id=-1, producer_epoch=-1), version=4)
        pid = init.producer_id
        first = make_batch([b"a", b"b"], producer_id=pid, producer_epoch=0, base_sequence=0)
        second = make_batch([b"c"], producer_id=pid, producer_epoch=0, base_sequence=2)
        assert await produce_batch(rig, 1, "idem", 0, first) == (0, 0)
        assert await produce_batch(rig, 1, "idem", 0, second) == (0, 2)
        assert await rig.reassign("idem", 0, 3) is None
        await rig.advance(2 * rig.heartbeat)
        assert await produce_batch(rig, 3, "idem", 0, second) == (0, 2)      # a retry: no copy
        third = make_batch([b"d"], producer_id=pid, producer_epoch=0, base_sequence=3)
        assert await produce_batch(rig, 3, "idem", 0, third) == (0, 3)
        gap = make_batch([b"x"], producer_id=pid, producer_epoch=0, base_sequence=9)
        assert (await produce_batch(rig, 3, "idem", 0, gap))[0] == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
        assert values((await fetch(rig, 3, "idem", 0))[1]) == [b"a", b"b", b"c", b"d"]


async def test_a_sealed_partition_refuses_appends_until_it_has_moved(tmp_path):
    """While the hand-off's upload waits (manifest writes take 1 s of clock),
    the old owner answers NOT_LEADER_OR_FOLLOWER to Produce and still serves
    Fetch; when it completes, the new owner has everything."""
    async with ClusterRig(tmp_path, seed=25) as rig:
        await create_topic(rig, 1, "seal", 3)
        await rig.advance(rig.heartbeat)
        assert await produce(rig, 1, "seal", 0, [b"one"]) == (0, 0)
        rig.delay_store("put", "manifests/", 1.0, node=1)
        assert await rig.reassign("seal", 0, 3, via=2) is None
        await rig.advance(rig.heartbeat)                    # node 1 seals and starts uploading
        assert (await produce(rig, 1, "seal", 0, [b"refused"]))[0] == NOT_LEADER
        assert await fetch(rig, 1, "seal", 0) == (0, [(0, None, b"one")])
        await rig.advance(1.0)                              # the manifest update lands, node 1 flips
        await rig.advance(rig.heartbeat)                    # node 3 takes it
        assert await fetch(rig, 3, "seal", 0) == (0, [(0, None, b"one")])
        assert await produce(rig, 3, "seal", 0, [b"two"]) == (0, 1)


async def test_a_cancelled_move_leaves_the_partition_where_it_is(tmp_path):
    async with ClusterRig(tmp_path, seed=26) as rig:
        await create_topic(rig, 1, "stay", 3)
        await rig.advance(rig.heartbeat)
        assert await rig.reassign("stay", 1, 3) is None
        assert [(t.name, i, o, x) for t, i, o, x in rig.brokers[1].cluster.reassignments()] == [("stay", 1, 2, 3)]
        assert await rig.reassign("stay", 1, None) is None
        assert await rig.reassign("stay", 1, None) == "none pending"
        assert await rig.reassign("stay", 7, 3) == "unknown"
        assert await rig.reassign("stay", 1, 9) == "not live"
        await rig.advance(2 * rig.heartbeat)
        assert rig.owners("stay") == [1, 2, 3]
        assert await produce(rig, 2, "stay", 1, [b"here"]) == (0, 0)


async def test_new_brokers_get_their_share_without_an_operator(tmp_path):
    """One broker with 6 partitions (and all 50 coordinator partitions); two
    brokers join: within a few heartbeats each owns 2 partitions and about a
    third of the coordinator partitions, and every record is where it was."""
    async with ClusterRig(tmp_path, seed=27, brokers=1,
                          overrides={"autobalancer.controller.enable": True}) as rig:
        await create_topic(rig, 1, "grow", 6)
        for i in range(6):
            assert await produce(rig, 1, "grow", i, [b"p%d" % i]) == (0, 0)
        await rig.add_broker()
        await rig.add_broker()
        for _ in range(4):
            await rig.advance(rig.heartbeat)
        owners = rig.owners("grow")
        assert sorted(owners.count(n) for n in (1, 2, 3)) == [2, 2, 2], owners
        offsets = rig.brokers[1].cluster.metadata.image.offsets
        assert offsets is not None
        assert sorted(offsets.owners.count(n) for n in (1, 2, 3)) == [16, 17, 17]
        for i, owner in enumerate(owners):
            assert await fetch(rig, owner, "grow", i) == (0, [(0, None, b"p%d" % i)])


async def test_a_draining_broker_hands_everything_off(tmp_path):
    async with ClusterRig(tmp_path, seed=28) as rig:
        await create_topic(rig, 1, "drain", 6)
        await rig.advance(rig.heartbeat)
        mine = [i for i, o in enumerate(rig.owners("drain")) if o == 3]
        for i in mine:
            assert await produce(rig, 3, "drain", i, [b"d%d" % i]) == (0, 0)
        draining = asyncio.ensure_future(rig._run_as(3, rig.brokers[3].drain(60.0)))
        # heartbeats: the controller sets the targets, node 3 hands off, the others learn
        for _ in range(4):
            await rig.advance(rig.heartbeat)
        assert draining.done() and draining.result() is True
        image = rig.brokers[1].cluster.metadata.image
        assert 3 not in rig.owners("drain", node=1)
        assert image.offsets is not None and 3 not in image.offsets.owners
        for i in mine:
            owner = rig.owners("drain", node=1)[i]
            assert await fetch(rig, owner, "drain", i) == (0, [(0, None, b"d%d" % i)])
        assert 3 in image.draining


async def test_unclean_election_fences_the_old_owners_late_writes(tmp_path):
    """The owner of a partition stops proving liveness (its registration
    writes fail) and stops reading the metadata document, as if paused. An
    unclean election gives its partition to another broker, which serves what
    was uploaded; a record the old owner acknowledges afterwards (it does not
    know yet) is never visible: its upload's manifest update is fenced."""
    async with ClusterRig(tmp_path, seed=29) as rig:
        await create_topic(rig, 1, "fence", 3)
        await rig.advance(rig.heartbeat)
        assert await produce(rig, 1, "fence", 0, [b"uploaded"]) == (0, 0)
        assert await rig.upload(1)
        rig.store.fail("put", "cluster/brokers/1.beat", times=10_000, when=rig.on_node(1))
        rig.store.fail("head", "cluster/metadata.json", times=10_000, when=rig.on_node(1))
        await rig.advance(12.0)                  # past broker.session.timeout.ms (+ a heartbeat)
        assert [b.node_id for b in (await metadata(rig, 2)).brokers] == [2, 3]
        assert leaders(await metadata(rig, 2), "fence")[0] == (-1, 1)
        result = await rig._run_as(2, rig.brokers[2].cluster.elect_unclean([("fence", 0)]), busy=True)
        assert result == {("fence", 0): None}
        await rig.advance(rig.heartbeat)
        new_owner, epoch = leaders(await metadata(rig, 2), "fence")[0]
        assert new_owner in (2, 3) and epoch == 2
        assert await produce(rig, 1, "fence", 0, [b"late"]) == (0, 1)    # node 1 does not know
        await rig.upload(1)
        assert rig.brokers[1].replicas.get("fence", 0).storage.fenced
        assert await fetch(rig, new_owner, "fence", 0) == (0, [(0, None, b"uploaded")])
        assert await produce(rig, new_owner, "fence", 0, [b"next"]) == (0, 1)
        assert await fetch(rig, new_owner, "fence", 0) == (0, [(0, None, b"uploaded"), (1, None, b"next")])


async def test_a_group_moves_with_its_coordinator_partition(tmp_path):
    """Committed offsets travel in the coordinator partition's snapshot: the
    old coordinator answers NOT_COORDINATOR, FindCoordinator names the new
    one, which answers OffsetFetch with the offsets."""
    T = OffsetCommitRequest.OffsetCommitRequestTopic
    P = T.OffsetCommitRequestPartition
    async with ClusterRig(tmp_path, seed=30) as rig:
        await create_topic(rig, 1, "orders", 3)
        await rig.advance(rig.heartbeat)
        shard = partition_for("billing", 50)

        def owner_of_shard() -> int:
            offsets = rig.brokers[1].cluster.metadata.image.offsets
            assert offsets is not None
            return offsets.owners[shard]
        old = owner_of_shard()
        r = await rig.request(old, OffsetCommitRequest(
            group_id="billing", generation_id_or_member_epoch=-1, member_id="", group_instance_id=None,
            topics=[T(name="orders", partitions=[P(partition_index=p, committed_offset=10 + p,
                                                   committed_leader_epoch=-1, committed_metadata=None)
                                                 for p in range(3)])]), version=8)
        assert [p.error_code for p in r.topics[0].partitions] == [0, 0, 0]
        new = rig.rng.choice([n for n in (1, 2, 3) if n != old])

        def target(image) -> None:
            image.offsets.targets[shard] = new
        await MetadataStore(rig.store).update(target)
        await rig.advance(2 * rig.heartbeat)
        for _ in range(10):     # the hand-off's retries wait in wall time: a busy machine may need a beat more
            if rig.brokers[new].coordinator_shards.state.get(shard) == ACTIVE:
                break
            await rig.advance(rig.heartbeat)
        assert owner_of_shard() == new
        fetch_req = OffsetFetchRequest(group_id="billing", topics=None, require_stable=False)
        assert (await rig.request(old, fetch_req, version=7)).error_code == ErrorCode.NOT_COORDINATOR
        got = await rig.request(new, fetch_req, version=7)
        assert got.error_code == 0
        assert sorted((p.partition_index, p.committed_offset) for t in got.topics for p in t.partitions) == \
            [(0, 10), (1, 11), (2, 12)]
        for node in (1, 2, 3):
            fc = await rig.request(node, FindCoordinatorRequest(key="billing", key_type=0), version=3)
            assert (fc.error_code, fc.node_id) == (0, new)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("point", ["handoff.before_flip", "handoff.after_flip"])
async def test_the_old_owner_crashing_mid_hand_off_loses_nothing(tmp_path, seed, point):
    """The old owner dies (a failpoint, as SIGKILL) after the hand-off's upload
    and before or after its flip. Before: the target stays; restarted on its
    data dir it claims the partition at the next epoch and hands it off again.
    After: the new owner has it. Either way every acknowledged record is
    served by the new owner, once."""
    async with ClusterRig(tmp_path, seed=seed) as rig:
        await create_topic(rig, 1, "crashy", 3)
        await rig.advance(rig.heartbeat)
        for i in range(3):
            assert await produce(rig, 1, "crashy", 0, [b"c%d" % i]) == (0, i)
        armed = failpoints.arm(point, 1)
        assert await rig.reassign("crashy", 0, 2, via=rig.rng.choice([2, 3])) is None
        await rig.advance(rig.heartbeat)
        assert armed.hits == 1
        await rig.remove_broker(1, clean=False)
        await rig.add_broker(1)
        for _ in range(3):
            await rig.advance(rig.heartbeat)
        assert rig.owners("crashy", node=3)[0] == 2
        assert await fetch(rig, 2, "crashy", 0) == (0, [(0, None, b"c0"), (1, None, b"c1"), (2, None, b"c2")])
        assert await produce(rig, 2, "crashy", 0, [b"more"]) == (0, 3)
        assert rig.brokers[2].cluster.reassignments() == []


async def test_the_balancer_separates_hot_partitions(tmp_path):
    """Counts are even (2/2/2) but both busy partitions are on one broker: the
    balancer, reading the brokers' beats, swaps one of them with an idle
    partition of the idlest broker; the counts stay even."""
    async with ClusterRig(tmp_path, seed=31, overrides={"autobalancer.controller.enable": True}) as rig:
        await create_topic(rig, 1, "hot", 6)
        await rig.advance(rig.heartbeat)
        owners = rig.owners("hot")
        assert sorted(owners.count(n) for n in (1, 2, 3)) == [2, 2, 2]
        busy = [i for i, o in enumerate(owners) if o == 1]
        payload = b"x" * 100_000
        for i in busy:                          # 1 MB each within one beat: 0.5 MB/s
            for _ in range(10):
                assert (await produce(rig, 1, "hot", i, [payload]))[0] == 0
        for _ in range(4):
            await rig.advance(rig.heartbeat)
        after = rig.owners("hot")
        assert sorted(after.count(n) for n in (1, 2, 3)) == [2, 2, 2], after
        assert after[busy[0]] != after[busy[1]], after
        for i in busy:
            code, records = await fetch(rig, after[i], "hot", i)
            assert code == 0 and len(records) >= 1


@pytest.mark.parametrize("seed,crashes", [(s, False) for s in range(40, 60)] + [(s, True) for s in range(60, 72)])
async def test_random_moves_under_produce_lose_and_duplicate_nothing(tmp_path, seed, crashes):
    """A seeded mix of produces, reassignments (some cancelled), uploads and
    clock steps on 3 brokers (and, with ``crashes``, brokers killed and
    restarted on their data dirs): afterwards every partition's owner serves
    exactly the records that were acknowledged, in order."""
    async with ClusterRig(tmp_path, seed=seed) as rig:
        rng = rig.rng
        await create_topic(rig, 1, "mix", 4)
        await rig.advance(rig.heartbeat)
        acked: dict[int, list[bytes]] = {i: [] for i in range(4)}
        n = 0
        for _ in range(30):
            action = rng.random()
            if action < 0.5:
                i = rng.randrange(4)
                owner = rig.owners("mix", node=rng.choice(sorted(rig.brokers)))[i]
                n += 1
                value = b"m%d" % n
                code, offset = await produce(rig, owner, "mix", i, [value])
                if code == 0:
                    assert offset == len(acked[i]), (i, offset, acked[i])
                    acked[i].append(value)
                else:
                    assert code == NOT_LEADER
            elif action < 0.7:
                i = rng.randrange(4)
                await rig.reassign("mix", i, rng.choice([1, 2, 3]), via=rng.choice([1, 2, 3]))
            elif action < 0.75:
                await rig.reassign("mix", rng.randrange(4), None, via=rng.choice([1, 2, 3]))
            elif action < 0.85:
                await rig.upload(rng.choice([1, 2, 3]))
            elif crashes and action < 0.9:
                node = rng.choice([1, 2, 3])
                await rig.remove_broker(node, clean=False)
                await rig.add_broker(node)
            else:
                await rig.advance(rng.choice([0.5, 1.0, rig.heartbeat]))
        for _ in range(4):
            await rig.advance(rig.heartbeat)
        for i in range(4):
            owner = rig.owners("mix", node=1)[i]
            code, records = await fetch(rig, owner, "mix", i)
            assert code == 0
            assert values(records) == acked[i], (i, owner)
        moved = sum(b.handoffs.moved for b in rig.brokers.values())
        print(f"\nseed {seed}: {sum(map(len, acked.values()))} records acknowledged, {moved} hand-offs")
