"""Failover in the in-process rig (docs/failover.md): with ``wal.type=s3`` a
dead broker's partitions and coordinator partitions are taken over by the
survivors, which replay its WAL tail from the bucket first; a paused broker
that comes back finds its WAL fenced and rejoins; a broker restarted on an
empty disk recovers its own tail from the bucket. On the rig's clock, for
several seeds."""
from __future__ import annotations

import asyncio
import shutil

import pytest
from cluster_rig import ClusterRig
from kafka.protocol.consumer import OffsetCommitRequest, OffsetFetchRequest
from test_cluster_rig import create_topic, fetch, leaders, metadata, produce
from test_handoff import produce_batch
from wire import make_batch

from broker.coordinator.log import partition_for
from broker.errors import ErrorCode
from broker.log.takeover import wal_prefix
from wal.object_log import fence_generation

S3_WAL = {"wal.type": "s3"}
SEEDS = [41, 42, 43]
SESSION = 12.0      # past broker.session.timeout.ms (9 s) and a heartbeat, then the controller acts


def values(records) -> list[bytes]:
    return [v for _, _, v in records]


async def wal_objects(rig: ClusterRig, node: int) -> tuple[int, int]:
    """(WAL objects, fences) of ``node`` in the bucket."""
    keys = await rig.store.list(wal_prefix(node))
    fences = 0
    for k in keys:
        if fence_generation(await rig.store.get(k)) is not None:
            fences += 1
    return len(keys) - fences, fences


@pytest.mark.parametrize("seed", SEEDS)
async def test_a_dead_brokers_partitions_serve_everything_it_acknowledged(tmp_path, seed):
    """Node 1 acknowledges records, some uploaded, most only in its WAL, and
    dies. The controller gives its partitions to the survivors at epoch 2;
    they serve every acknowledged record and carry on at the next offset.
    The recover markers are cleared and node 1's WAL is deleted below the fence."""
    async with ClusterRig(tmp_path, seed=seed, overrides=S3_WAL) as rig:
        await create_topic(rig, 1, "orders", 6)
        await rig.advance(rig.heartbeat)
        mine = [i for i, o in enumerate(rig.owners("orders")) if o == 1]
        assert len(mine) == 2
        sent: dict[int, list[bytes]] = {i: [] for i in mine}
        for i in mine:
            for n in range(3):
                v = b"p%d-%d" % (i, n)
                assert await produce(rig, 1, "orders", i, [v]) == (0, n)
                sent[i].append(v)
        if rig.rng.random() < 0.5:
            assert await rig.upload(1)
        for i in mine:
            v = b"p%d-tail" % i
            assert await produce(rig, 1, "orders", i, [v]) == (0, len(sent[i]))
            sent[i].append(v)
        await rig.remove_broker(1, clean=False)
        await rig.advance(SESSION + 3 * rig.heartbeat)
        owners = leaders(await metadata(rig, 2), "orders")
        for i in mine:
            new, epoch = owners[i]
            assert new in (2, 3) and epoch == 2
            assert await fetch(rig, new, "orders", i) == (0, [(n, None, v) for n, v in enumerate(sent[i])])
            assert await produce(rig, new, "orders", i, [b"next"]) == (0, len(sent[i]))
        image = rig.brokers[2].cluster.metadata.image
        assert all(r is None for t in image.owned_topics() for r in t.recover)
        assert await wal_objects(rig, 1) == (0, 1)


async def test_an_owner_that_dies_before_it_recovered_passes_the_takeover_on(tmp_path):
    """Node 1 dies with acknowledged records only in its WAL; the partition
    goes to node 2, which does not get to read node 1's WAL and dies
    too. Node 3 recovers from both, node 1's first: nothing is lost."""
    async with ClusterRig(tmp_path, seed=49, overrides=S3_WAL) as rig:
        await create_topic(rig, 1, "chain", 3)
        await rig.advance(rig.heartbeat)
        for n in range(3):
            assert await produce(rig, 1, "chain", 0, [b"c%d" % n]) == (0, n)
        rig.delay_store("list", "wal/1/", 3600.0, node=2)      # node 2 never gets to read it
        await rig.remove_broker(1, clean=False)
        await rig.advance(SESSION + 3 * rig.heartbeat)
        image = rig.brokers[3].cluster.metadata.image
        t = image.topics["chain"]
        assert t.owners[0] == 2     # the seed's choice (node 3 would have nothing to pass on)
        assert t.recover[0] is not None and t.recover[0][0][0] == 1
        await rig.remove_broker(2, clean=False)
        await rig.advance(SESSION + 3 * rig.heartbeat)
        t = rig.brokers[3].cluster.metadata.image.topics["chain"]
        assert t.owners[0] == 3 and t.recover[0] is None
        assert values((await fetch(rig, 3, "chain", 0))[1]) == [b"c0", b"c1", b"c2"]
        assert await produce(rig, 3, "chain", 0, [b"c3"]) == (0, 3)


async def test_an_idempotent_producer_carries_on_after_a_takeover(tmp_path):
    """Producer state travels in the dead broker's WAL: a retried batch is a
    duplicate on the survivor, the next sequence continues."""
    async with ClusterRig(tmp_path, seed=44, overrides=S3_WAL) as rig:
        await create_topic(rig, 1, "pay", 3)
        await rig.advance(rig.heartbeat)
        pid = 7000
        batches = [make_batch([b"b%d" % n], producer_id=pid, producer_epoch=0, base_sequence=n,
                              timestamp_ms=rig.clock.now_ms()) for n in range(4)]
        for n in range(3):
            assert await produce_batch(rig, 1, "pay", 0, batches[n]) == (0, n)
        await rig.remove_broker(1, clean=False)
        await rig.advance(SESSION + 3 * rig.heartbeat)
        new = leaders(await metadata(rig, 2), "pay")[0][0]
        assert new in (2, 3)
        assert await produce_batch(rig, new, "pay", 0, batches[2]) == (0, 2)     # a duplicate
        assert await produce_batch(rig, new, "pay", 0, batches[3]) == (0, 3)
        assert values((await fetch(rig, new, "pay", 0))[1]) == [b"b0", b"b1", b"b2", b"b3"]


async def test_a_dead_coordinators_groups_are_taken_over_with_their_offsets(tmp_path):
    """Offsets committed to node 1 (in its WAL only: no snapshot was written)
    are served by the coordinator partition's new owner."""
    T = OffsetCommitRequest.OffsetCommitRequestTopic
    P = T.OffsetCommitRequestPartition
    async with ClusterRig(tmp_path, seed=45, overrides=S3_WAL) as rig:
        await create_topic(rig, 1, "carts", 3)
        await rig.advance(rig.heartbeat)
        offsets = rig.brokers[1].cluster.metadata.image.offsets
        assert offsets is not None
        group = next(g for g in (f"g{n}" for n in range(1000)) if offsets.owners[partition_for(g, 50)] == 1)
        for committed in (5, 9):
            r = await rig.request(1, OffsetCommitRequest(
                group_id=group, generation_id_or_member_epoch=-1, member_id="", group_instance_id=None,
                topics=[T(name="carts", partitions=[P(partition_index=p, committed_offset=committed + p,
                                                      committed_leader_epoch=-1, committed_metadata=None)
                                                    for p in range(3)])]), version=8)
            assert [p.error_code for p in r.topics[0].partitions] == [0, 0, 0]
        await rig.remove_broker(1, clean=False)
        await rig.advance(SESSION + 3 * rig.heartbeat)
        offsets = rig.brokers[2].cluster.metadata.image.offsets
        assert offsets is not None
        new = offsets.owners[partition_for(group, 50)]
        assert new in (2, 3)
        got = await rig.request(new, OffsetFetchRequest(group_id=group, topics=None, require_stable=False),
                                version=7)
        assert got.error_code == 0
        assert sorted((p.partition_index, p.committed_offset) for t in got.topics for p in t.partitions) == \
            [(0, 9), (1, 10), (2, 11)]


async def test_a_paused_broker_finds_its_wal_fenced_and_rejoins(tmp_path):
    """Node 1 stops beating and reading the metadata (as if paused) and is
    taken over. Resumed, it still believes it owns its partition: a produce
    there is refused (its WAL commit hits the fence: NOT_LEADER_OR_FOLLOWER),
    never acknowledged, never visible. It then rejoins as a new incarnation
    owning nothing, and is live again."""
    async with ClusterRig(tmp_path, seed=46, overrides=S3_WAL) as rig:
        await create_topic(rig, 1, "stock", 3)
        await rig.advance(rig.heartbeat)
        assert await produce(rig, 1, "stock", 0, [b"acked"]) == (0, 0)
        incarnation = rig.brokers[1].cluster.incarnation
        for op in ("put", "head", "get", "list"):     # its heartbeat reaches nothing (the lease neither)
            rig.store.fail(op, "cluster/", times=10_000, when=rig.on_node(1))
        await rig.advance(SESSION + 3 * rig.heartbeat)
        new, epoch = leaders(await metadata(rig, 2), "stock")[0]
        assert new in (2, 3) and epoch == 2
        rig.store.clear_faults()
        assert rig.brokers[1].replicas.get("stock", 0) is not None      # it does not know yet
        assert (await produce(rig, 1, "stock", 0, [b"late"]))[0] == ErrorCode.NOT_LEADER_OR_FOLLOWER
        await rig.advance(2 * rig.heartbeat)
        b1 = rig.brokers[1]
        assert b1.cluster.incarnation != incarnation
        assert not b1.replicas.partitions and not b1.cluster.owns_anything()
        assert 1 in [b.node_id for b in (await metadata(rig, 2)).brokers]
        assert await fetch(rig, new, "stock", 0) == (0, [(0, None, b"acked")])
        assert await produce(rig, new, "stock", 0, [b"next"]) == (0, 1)


async def test_a_paused_broker_that_writes_nothing_still_finds_out_and_rejoins(tmp_path):
    """Resumed with nothing to write, the broker notices the gap in its own
    heartbeat, finds the takeover's fence in its WAL and rejoins at once."""
    async with ClusterRig(tmp_path, seed=48, overrides=S3_WAL) as rig:
        await create_topic(rig, 1, "idle", 3)
        await rig.advance(rig.heartbeat)
        incarnation = rig.brokers[1].cluster.incarnation
        for op in ("put", "head", "get", "list"):
            rig.store.fail(op, "cluster/", times=10_000, when=rig.on_node(1))
        await rig.advance(SESSION + 3 * rig.heartbeat)
        assert 1 not in rig.owners("idle", node=2)
        rig.store.clear_faults()
        await rig.advance(2 * rig.heartbeat)
        b1 = rig.brokers[1]
        assert b1.cluster.incarnation != incarnation
        assert b1.replicas.wal.fenced_at is None           # a new life, past the fence
        assert not b1.replicas.partitions


async def test_a_broker_restarted_on_an_empty_disk_recovers_its_tail_from_the_bucket(tmp_path):
    """With wal.type=s3 nothing of a broker is local: killed and restarted on
    an empty data dir before anyone took over, it serves what it acknowledged."""
    async with ClusterRig(tmp_path, seed=47, overrides=S3_WAL) as rig:
        await create_topic(rig, 1, "views", 3)
        await rig.advance(rig.heartbeat)
        for n in range(3):
            assert await produce(rig, 1, "views", 0, [b"v%d" % n]) == (0, n)
        await rig.remove_broker(1, clean=False)
        shutil.rmtree(tmp_path / "broker-1")
        await rig.add_broker(1)
        await rig.advance(rig.heartbeat)
        assert rig.owners("views")[0] == 1
        assert values((await fetch(rig, 1, "views", 0))[1]) == [b"v0", b"v1", b"v2"]
        assert await produce(rig, 1, "views", 0, [b"v3"]) == (0, 3)


@pytest.mark.parametrize("seed", [51, 52, 53, 54, 55, 56])
async def test_random_kills_and_restarts_lose_and_duplicate_nothing(tmp_path, seed):
    """Produce to random partitions through whoever owns them; kill a random
    broker (restart it at once on an empty disk, or only after its takeover),
    upload at random. After every step each partition serves exactly the
    records acknowledged for it, in order."""
    async with ClusterRig(tmp_path, seed=seed, overrides=S3_WAL) as rig:
        await create_topic(rig, 1, "random", 6)
        await rig.advance(rig.heartbeat)
        acked: dict[int, list[bytes]] = {i: [] for i in range(6)}
        counter = 0
        for step in range(6):
            for _ in range(rig.rng.randrange(3, 8)):
                i = rig.rng.randrange(6)
                owner = leaders(await metadata(rig, min(rig.brokers)), "random")[i][0]
                if owner not in rig.brokers:
                    continue
                counter += 1
                v = b"s%d-%d" % (step, counter)
                err, base = await produce(rig, owner, "random", i, [v])
                if err == 0:
                    assert base == len(acked[i])
                    acked[i].append(v)
            if rig.rng.random() < 0.4:
                await rig.upload(rig.rng.choice(sorted(rig.brokers)))
            victim = rig.rng.choice(sorted(rig.brokers))
            await rig.remove_broker(victim, clean=False)
            shutil.rmtree(tmp_path / f"broker-{victim}", ignore_errors=True)
            if rig.rng.random() < 0.5:
                await rig.add_broker(victim)                        # back before a takeover
                await rig.advance(2 * rig.heartbeat)
            else:
                await rig.advance(SESSION + 3 * rig.heartbeat)      # taken over first
                assert victim not in rig.owners("random", node=min(rig.brokers))
                await rig.add_broker(victim)
                await rig.advance(2 * rig.heartbeat)
            owners = leaders(await metadata(rig, min(rig.brokers)), "random")
            for i in range(6):
                owner = owners[i][0]
                assert owner in rig.brokers, (step, i, owners)
                assert await fetch(rig, owner, "random", i) == \
                    (0, [(n, None, v) for n, v in enumerate(acked[i])]), (step, i)


async def test_a_partition_handed_over_while_the_broker_starts_is_loaded_before_it_serves(tmp_path):
    """Node 3 restarts; while it reads its WAL (held here on the clock) node 2
    hands it a partition with records in the bucket. Gained before the start
    was done, it is loaded like the ones the start began with: it serves at
    the manifest's end, never from offset 0 (which lost acknowledged records)."""
    async with ClusterRig(tmp_path, seed=44, overrides=S3_WAL) as rig:
        await create_topic(rig, 1, "orders", 3)
        await rig.advance(rig.heartbeat)
        part = rig.owners("orders").index(2)
        for n in range(3):
            assert await produce(rig, 2, "orders", part, [b"v%d" % n]) == (0, n)
        await rig.remove_broker(3)
        await rig.advance(rig.heartbeat)
        rig.delay_store("list", wal_prefix(3), 4 * rig.heartbeat, node=3)   # node 3's start reads its WAL
        starting = asyncio.create_task(rig.add_broker(3))
        await rig.advance(rig.heartbeat)
        assert not starting.done()
        assert await rig.reassign("orders", part, 3) is None
        await rig.advance(6 * rig.heartbeat)
        await starting
        await rig.advance(rig.heartbeat)
        assert rig.owners("orders")[part] == 3
        assert await fetch(rig, 3, "orders", part) == (0, [(n, None, b"v%d" % n) for n in range(3)])
        assert await produce(rig, 3, "orders", part, [b"next"]) == (0, 3)


@pytest.mark.parametrize("notices", [True, False], ids=["notices", "notices-lost"])
@pytest.mark.parametrize("seed", [61, 62, 63, 64])
async def test_a_dead_broker_is_declared_dead_a_session_after_its_last_beat(tmp_path, seed, notices):
    """Killed anywhere between two beats, a broker is declared dead (its
    partitions placed elsewhere) one session after its last beat, as Kafka's
    controller times it from the last heartbeat: the beat notices date each
    beat. With every notice lost it is still declared dead, up to one
    heartbeat later (the controller's next LIST after the beat)."""
    async with ClusterRig(tmp_path, seed=seed, brokers=1, overrides=S3_WAL) as rig:
        rig.beat_notices = notices
        for _ in range(2):      # heartbeats out of phase with the controller's, as in life
            await rig.advance(rig.rng.uniform(0.2, rig.heartbeat - 0.2))
            await rig.add_broker()
        await rig.advance(rig.heartbeat)
        await create_topic(rig, 1, "orders", 6)
        await rig.advance(rig.heartbeat)
        controller = rig.brokers[1].cluster
        assert controller.controller.is_mine(rig.clock.now_ms())
        victim = 2
        assert victim in rig.owners("orders", node=1)
        await rig.advance(rig.rng.uniform(0, rig.heartbeat))
        await rig.remove_broker(victim, clean=False)
        session = controller.config["broker.session.timeout.ms"] / 1000
        dead_at = rig.last_beat[victim] + session          # Kafka's moment
        late = 0.0 if notices else rig.heartbeat
        await rig.advance(dead_at - rig.clock.monotonic() - 0.05)
        assert victim in rig.owners("orders", node=1), "declared dead before its session ran out"
        await rig.advance(late + 0.2)
        assert victim not in rig.owners("orders", node=1), "still not declared dead"
