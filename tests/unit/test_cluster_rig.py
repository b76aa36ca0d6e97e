"""The in-process cluster rig (tests/cluster_rig.py): three real brokers over one
in-memory store and one manual clock, driven by Kafka requests through the API
table, with control hooks, failure points and seeded runs."""
from __future__ import annotations

import asyncio
import time

import pytest
from cluster_rig import ClusterRig, RequestDropped
from kafka.protocol.admin import CreateTopicsRequest
from kafka.protocol.api_key import ApiKey
from kafka.protocol.consumer import FetchRequest
from kafka.protocol.metadata import MetadataRequest
from kafka.protocol.producer import ProduceRequest
from wire import decode_records, make_batch

from broker import failpoints
from broker.errors import ErrorCode

NOT_LEADER = ErrorCode.NOT_LEADER_OR_FOLLOWER
CT = CreateTopicsRequest.CreatableTopic
FT = FetchRequest.FetchTopic
PD = ProduceRequest.TopicProduceData


@pytest.fixture(autouse=True)
def _disarm():
    yield
    failpoints.disarm_all()


# ------------------------------------------------------------------ requests
async def create_topic(rig: ClusterRig, node: int, name: str, partitions: int) -> None:
    resp = await rig.request(node, CreateTopicsRequest(
        topics=[CT(name=name, num_partitions=partitions, replication_factor=-1, assignments=[],
                   configs=[])], timeout_ms=10_000, validate_only=False), version=7)
    assert [(t.name, t.error_code) for t in resp.topics] == [(name, 0)]


async def metadata(rig: ClusterRig, node: int):
    return await rig.request(node, MetadataRequest(topics=None, allow_auto_topic_creation=False), version=12)


def leaders(resp, topic: str) -> dict[int, tuple[int, int]]:
    """partition -> (leader, leader epoch)."""
    [t] = [t for t in resp.topics if t.name == topic]
    assert t.error_code == 0
    return {p.partition_index: (p.leader_id, p.leader_epoch) for p in t.partitions}


async def produce(rig: ClusterRig, node: int, topic: str, partition: int, values: list[bytes]):
    """(error code, base offset) of one acks=-1 produce of one batch."""
    resp = await rig.request(node, ProduceRequest(
        transactional_id=None, acks=-1, timeout_ms=10_000, topic_data=[
            PD(name=topic, partition_data=[PD.PartitionProduceData(
                index=partition, records=make_batch(values, timestamp_ms=rig.clock.now_ms()))])]),
        version=9)
    [tr] = resp.responses
    [pr] = tr.partition_responses
    return pr.error_code, pr.base_offset


async def fetch(rig: ClusterRig, node: int, topic: str, partition: int, offset: int = 0):
    """(error code, [(offset, key, value)]) of one fetch that does not wait."""
    resp = await rig.request(node, FetchRequest(
        replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=1 << 20, isolation_level=0,
        session_id=0, session_epoch=-1, topics=[FT(topic=topic, partitions=[FT.FetchPartition(
            partition=partition, current_leader_epoch=-1, fetch_offset=offset, log_start_offset=-1,
            partition_max_bytes=1 << 20)])], forgotten_topics_data=[], rack_id=""), version=12)
    [tr] = resp.responses
    [pr] = tr.partitions
    return pr.error_code, decode_records(pr.records)


# ------------------------------------------------------------------ scenarios
async def three_brokers(rig: ClusterRig) -> None:
    """(a) as a function of the rig, so that (b) can run it twice."""
    await rig.start()
    await create_topic(rig, 1, "clicks", 6)
    await rig.advance(rig.heartbeat)          # brokers 2 and 3 read the new document
    for node in (1, 2, 3):
        resp = await metadata(rig, node)
        assert sorted((b.node_id, b.host, b.port) for b in resp.brokers) == \
            [(1, "127.0.0.1", 9001), (2, "127.0.0.1", 9002), (3, "127.0.0.1", 9003)]
        owners = leaders(resp, "clicks")
        assert sorted(owners) == list(range(6))
        per_node = {n: sum(1 for leader, _ in owners.values() if leader == n) for n in (1, 2, 3)}
        assert per_node == {1: 2, 2: 2, 3: 2}, owners
        assert {epoch for _, epoch in owners.values()} == {1}
    owners = leaders(await metadata(rig, 1), "clicks")
    p = rig.rng.randrange(6)
    owner = owners[p][0]
    other = rig.rng.choice([n for n in (1, 2, 3) if n != owner])
    assert await produce(rig, owner, "clicks", p, [b"one", b"two"]) == (0, 0)
    assert await fetch(rig, owner, "clicks", p) == (0, [(0, None, b"one"), (1, None, b"two")])
    assert (await produce(rig, other, "clicks", p, [b"nope"]))[0] == NOT_LEADER
    assert (await fetch(rig, other, "clicks", p))[0] == NOT_LEADER
    await rig.stop()


async def test_three_brokers_start_serve_and_stop(tmp_path):
    rig = ClusterRig(tmp_path, seed=1)
    started = time.perf_counter()
    await three_brokers(rig)
    wall = time.perf_counter() - started
    print(f"\n3-broker scenario: {wall * 1000:.0f} ms wall, {rig.elapsed_ms} ms on the clock, "
          f"{len(rig.trace)} trace lines")
    assert not rig.brokers


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
async def test_a_seed_replays_the_same_run(tmp_path, seed):
    traces = []
    for run in range(2):
        rig = ClusterRig(tmp_path / f"run{run}", seed=seed)
        await three_brokers(rig)
        traces.append(rig.trace)
    assert traces[0] == traces[1]
    assert any("applies +clicks-" in line for line in traces[0])


# ------------------------------------------------------------------ transitions
async def test_move_a_partition(tmp_path):
    """(c) Ownership moves in the metadata document; after one heartbeat the new
    owner serves what the old one uploaded, and the old one refuses."""
    async with ClusterRig(tmp_path, seed=11) as rig:
        await create_topic(rig, 1, "moves", 3)
        await rig.advance(rig.heartbeat)
        assert rig.owners("moves") == [1, 2, 3]
        a, b = 1, 2
        assert await produce(rig, a, "moves", 0, [b"before"]) == (0, 0)
        assert await rig.upload(a)
        assert await rig.move_partition("moves", 0, to_node=b) == 2
        assert await fetch(rig, b, "moves", 0) == (NOT_LEADER, [])   # not heard of it yet
        await rig.advance(rig.heartbeat)
        assert await fetch(rig, b, "moves", 0) == (0, [(0, None, b"before")])
        assert await produce(rig, b, "moves", 0, [b"after"]) == (0, 1)
        assert await fetch(rig, b, "moves", 0) == (0, [(0, None, b"before"), (1, None, b"after")])
        assert (await produce(rig, a, "moves", 0, [b"stale"]))[0] == NOT_LEADER
        assert (await fetch(rig, a, "moves", 0))[0] == NOT_LEADER
        for node in (1, 2, 3):
            assert leaders(await metadata(rig, node), "moves")[0] == (b, 2)
        assert "node 1 applies -moves-0" in "\n".join(rig.trace)
        assert "node 2 applies +moves-0@2" in "\n".join(rig.trace)


async def test_clean_removal_gives_the_partitions_to_the_others(tmp_path):
    """(d) A broker that closes cleanly uploads everything and deregisters; on
    its next heartbeat the controller places that broker's partitions on the
    others (fewest first), at epoch 2. A broker whose heartbeat in that round
    came before the controller's write learns of it on its next one (until
    then it answers leader -1 for them): after two heartbeats all agree."""
    async with ClusterRig(tmp_path, seed=12) as rig:
        await create_topic(rig, 1, "spread", 6)
        await rig.advance(rig.heartbeat)
        before = rig.owners("spread")
        assert sorted(before) == [1, 1, 2, 2, 3, 3]
        p = before.index(3)
        assert await produce(rig, 3, "spread", p, [b"kept"]) == (0, 0)
        await rig.remove_broker(3, clean=True)
        await rig.advance(rig.heartbeat)
        controller = (await metadata(rig, 1)).controller_id
        assert controller in (1, 2)
        views = [controller]
        for _ in range(2):
            for node in views:
                resp = await metadata(rig, node)
                assert sorted(b.node_id for b in resp.brokers) == [1, 2]
                owners = leaders(resp, "spread")
                assert sorted(leader for leader, _ in owners.values()) == [1, 1, 1, 2, 2, 2]
                for i, owner in enumerate(before):   # only the removed broker's partitions moved
                    assert owners[i] == ((owner, 1) if owner != 3 else (owners[i][0], 2))
            await rig.advance(rig.heartbeat)
            views = [1, 2]
        new_owner = leaders(await metadata(rig, 1), "spread")[p][0]
        assert await fetch(rig, new_owner, "spread", p) == (0, [(0, None, b"kept")])
        assert await produce(rig, new_owner, "spread", p, [b"more"]) == (0, 1)


# ------------------------------------------------------------- failure points
async def test_armed_failpoint_fires_for_its_broker_only(tmp_path):
    """(e) ``arm(name, node)`` raises InjectedFailure at that point of that
    broker alone; the broker, dropped as crashed and restarted on its data dir,
    replays its WAL: nothing acknowledged is lost."""
    async with ClusterRig(tmp_path, seed=13) as rig:
        await create_topic(rig, 1, "crash", 2)
        await rig.advance(rig.heartbeat)
        assert rig.owners("crash") == [1, 2]
        assert await produce(rig, 1, "crash", 0, [b"acked"]) == (0, 0)
        assert await produce(rig, 2, "crash", 1, [b"safe"]) == (0, 0)
        armed = failpoints.arm("upload.after_put", 1)
        assert await rig.upload(2)                       # armed for node 1 only
        with pytest.raises(failpoints.InjectedFailure):
            await rig.upload(1)                          # the data object is in, no manifest
        assert armed.hits == 1
        await rig.remove_broker(1, clean=False)
        await rig.add_broker(1)
        assert await fetch(rig, 1, "crash", 0) == (0, [(0, None, b"acked")])
        assert leaders(await metadata(rig, 1), "crash")[0] == (1, 2)    # re-claimed: epoch + 1
        assert await rig.upload(1)                       # fired once: disarmed now
        assert await produce(rig, 1, "crash", 0, [b"again"]) == (0, 1)


# ------------------------------------------------------------------- requests
async def test_dropped_and_delayed_requests(tmp_path):
    """(e) ``drop``: the caller gets RequestDropped; unprocessed nothing was
    appended, processed the append happened and only the answer was lost.
    ``delay``: the request completes when the clock reaches it."""
    async with ClusterRig(tmp_path, seed=14) as rig:
        await create_topic(rig, 1, "hooks", 3)
        await rig.advance(rig.heartbeat)
        rig.drop(2, ApiKey.Produce)
        with pytest.raises(RequestDropped):
            await produce(rig, 2, "hooks", 1, [b"lost"])
        assert await fetch(rig, 2, "hooks", 1) == (0, [])
        rig.drop(2, ApiKey.Produce, processed=True)
        with pytest.raises(RequestDropped):
            await produce(rig, 2, "hooks", 1, [b"landed"])
        assert await fetch(rig, 2, "hooks", 1) == (0, [(0, None, b"landed")])
        assert await produce(rig, 2, "hooks", 1, [b"answered"]) == (0, 1)

        rig.delay(3, ApiKey.Metadata, 1.5)
        pending = asyncio.ensure_future(metadata(rig, 3))
        await rig.advance(1.0)
        assert not pending.done()
        assert leaders(await metadata(rig, 3), "hooks")[2] == (3, 1)    # only the next one waits
        await rig.advance(0.5)
        assert pending.done()
        assert leaders(pending.result(), "hooks")[2] == (3, 1)


async def test_store_faults_reach_one_broker(tmp_path):
    """A store fault for one broker (``when=rig.on_node``) fails its heartbeat
    step, which retries on the next one; the others are unaffected."""
    async with ClusterRig(tmp_path, seed=15) as rig:
        fault = rig.store.fail("list", "cluster/brokers/", times=1, when=rig.on_node(2))
        await rig.add_broker()                           # node 4
        await rig.advance(rig.heartbeat)
        assert fault.hits == 1
        brokers = {n: sorted(b.node_id for b in (await metadata(rig, n)).brokers) for n in (1, 2, 3)}
        assert brokers == {1: [1, 2, 3, 4], 2: [1, 2, 3], 3: [1, 2, 3, 4]}
        await rig.advance(rig.heartbeat)
        assert sorted(b.node_id for b in (await metadata(rig, 2)).brokers) == [1, 2, 3, 4]


async def test_store_delay_for_one_broker_waits_on_the_clock(tmp_path):
    """``delay_store``: broker 1's metadata writes take 1 s of clock time; its
    CreateTopics completes when the clock gets there, the others meanwhile
    serve (and read the old document)."""
    async with ClusterRig(tmp_path, seed=16) as rig:
        rig.delay_store("put", "cluster/metadata.json", 1.0, node=1)
        creating = asyncio.ensure_future(create_topic(rig, 1, "slow", 3))
        await rig.advance(0.5)
        assert not creating.done()
        assert [t.name for t in (await metadata(rig, 2)).topics] == []     # not there yet
        await rig.advance(0.5)
        assert creating.done()
        creating.result()
        await rig.advance(rig.heartbeat)
        assert len(leaders(await metadata(rig, 2), "slow")) == 3


async def test_stop_lifts_hooks_and_releases_what_sleeps_on_the_clock(tmp_path):
    """Claims sleeping on a store delay, a store fault armed for ever, a request
    hook armed: stop() lifts them all, so the brokers close (and upload)."""
    rig = ClusterRig(tmp_path, seed=17)
    await rig.start()
    rig.delay_store("*", "manifests/", 60.0)
    await create_topic(rig, 1, "held", 3)
    await rig.advance(rig.heartbeat)                 # brokers 2, 3 gain theirs: claims sleep
    assert (await produce(rig, 1, "held", 0, [b"x"]))[0] == 0
    rig.store.fail("list", times=None)
    rig.drop(2, ApiKey.Metadata)
    await asyncio.wait_for(rig.stop(), 60)           # a hang guard, not a timing assertion
    assert not rig.brokers
    assert not any(key.startswith("cluster/brokers/") for key in await rig.store.list())
