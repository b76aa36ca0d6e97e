"""Online migration between the classic and the KIP-848 consumer group protocols
(coordinator/classic_members.py), on a ManualClock with an in-memory log: the
upgrade with live classic members, classic members reconciled inside the
consumer group, the downgrade, the migration policy, and replay of what was written."""
from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from kafka.protocol.consumer.metadata import ConsumerProtocolSubscription as Sub

from broker.clock import ManualClock
from broker.config import BrokerConfig
from broker.coordinator.classic_members import ClassicMembers
from broker.coordinator.consumer_group import ConsumerGroupCoordinator
from broker.coordinator.consumer_protocol import encode_assignment, parse_assignment
from broker.coordinator.group import EMPTY, PREPARING, STABLE, GroupCoordinator, OffsetAndMetadata
from broker.errors import ErrorCode as E

T1 = uuid.UUID(int=1)
G = 2   # the classic generation before the upgrade


@dataclass
class FakeTopic:
    topic_id: uuid.UUID
    partitions: int


class FakeLog:
    def __init__(self):
        self.entries = []

    def append(self, group_id, data):
        self.entries.append((group_id.encode(), bytes(data)))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def make(**overrides):
    config = BrokerConfig()
    config.set("group.initial.rebalance.delay.ms", "0")
    for k, v in overrides.items():
        config.set(k, str(v))
    clock = ManualClock(start_ms=1_000_000)
    gc = GroupCoordinator(config, FakeLog(), clock)
    topics = {"t": FakeTopic(T1, 6)}
    gc.consumer = ConsumerGroupCoordinator(config, clock, gc, lambda: topics)
    gc.consumer.classic_protocol = ClassicMembers(gc.consumer)
    gc.finish_loading()
    return gc, clock


def meta(owned=()):
    return Sub(version=1, topics=["t"], user_data=None,
               owned_partitions=[Sub.TopicPartition(topic="t", partitions=sorted(owned))] if owned else []).encode()


async def cjoin(gc, member_id="", owned=(), instance=None):
    return await gc.join_group(version=5, group_id="g", member_id=member_id, group_instance_id=instance,
                               client_id="c", client_host="h", session_timeout_ms=10_000,
                               rebalance_timeout_ms=30_000, protocol_type="consumer",
                               protocols=[("range", meta(owned))])


async def csync(gc, member_id, generation, assignments=None):
    err, data, _ = await gc.sync_group(group_id="g", generation=generation, member_id=member_id,
                                       group_instance_id=None, protocol_type="consumer", protocol_name="range",
                                       assignments=assignments or {})
    return err, sorted(parse_assignment(data)[0].get("t", ())) if not err else None


def hb(gc, member_id, epoch, owned=None):
    return gc.consumer.heartbeat(
        version=1, group_id="g", member_id=member_id, member_epoch=epoch, instance_id=None, rack_id=None,
        rebalance_timeout_ms=30_000 if epoch == 0 else -1, subscribed_topic_names=["t"] if epoch == 0 else None,
        subscribed_topic_regex=None, server_assignor=None,
        owned={} if epoch == 0 else ({T1: set(owned)} if owned is not None else None),
        client_id="n", client_host="h")


def join_task(gc, member_id="", client="c"):
    return asyncio.create_task(gc.join_group(
        version=3, group_id="g", member_id=member_id, group_instance_id=None, client_id=client, client_host="h",
        session_timeout_ms=10_000, rebalance_timeout_ms=30_000, protocol_type="consumer",
        protocols=[("range", meta())]))


async def settle():
    for _ in range(5):
        await asyncio.sleep(0)


async def stable_classic(gc):
    """A Stable classic group at generation G = 2: a (the leader) owns 0-2, b 3-5; an offset committed."""
    t1 = join_task(gc, client="a")
    await settle()
    a = t1.result().member_id
    t2 = join_task(gc, client="b")
    await settle()
    t1 = join_task(gc, a)
    await settle()
    r1, r2 = t1.result(), t2.result()
    assert r1.generation == r2.generation == G and r1.leader == a
    b = r2.member_id
    asg = {a: encode_assignment({"t": [0, 1, 2]}, 1), b: encode_assignment({"t": [3, 4, 5]}, 1)}
    s2 = asyncio.create_task(csync(gc, b, G))
    assert await csync(gc, a, G, asg) == (E.NONE, [0, 1, 2])
    assert await s2 == (E.NONE, [3, 4, 5])
    await gc.commit_offsets("g", [("t", 0, OffsetAndMetadata(7, -1, None, 1))])
    await settle()   # applied in the write's callback
    return a, b


def owners(gc):
    """Partition -> members holding it (assigned or being revoked): never two."""
    out: dict[int, list[str]] = {}
    for m in gc.consumer.get("g").members.values():
        for p in m.owned().get(T1, ()):
            out.setdefault(p, []).append(m.member_id)
    assert all(len(v) == 1 for v in out.values()), out
    return {p: v[0] for p, v in out.items()}


async def test_upgrade_with_live_classic_members_moves_partitions_without_two_owners():
    gc, _ = make()
    a, b = await stable_classic(gc)
    r = hb(gc, "n", 0)                                    # a consumer-protocol member joins: the group upgrades
    assert r.error == E.NONE and r.member_epoch == G + 1 and not r.assignment
    cg = gc.consumer.get("g")
    assert cg is not None and (cg.group_epoch, len(cg.members)) == (G + 1, 3)
    assert cg.members[a].classic is not None and cg.members[a].member_epoch == G
    husk = gc.groups["g"]
    assert (husk.state, husk.members, husk.offsets[("t", 0)].offset) == (EMPTY, {}, 7)
    assert owners(gc) == {0: a, 1: a, 2: a, 3: b, 4: b, 5: b}
    # classic members: told to rejoin; their commits still name generation 1
    assert gc.heartbeat("g", G, a, None) == E.REBALANCE_IN_PROGRESS
    assert gc.consumer.check_commit(cg, a, G, 8) == E.NONE
    assert gc.consumer.check_commit(cg, a, G + 1, 8) == E.ILLEGAL_GENERATION
    ra = await cjoin(gc, a, owned=[0, 1, 2])              # rejoins owning 0-2: must give one up first
    assert (ra.error, ra.generation, ra.leader, ra.members) == (E.NONE, G, "", [])
    err, kept = await csync(gc, a, G)
    assert err == E.NONE and len(kept) == 2
    assert gc.heartbeat("g", G, a, None) == E.REBALANCE_IN_PROGRESS   # still revoking
    ra = await cjoin(gc, a, owned=kept)                   # revoked
    assert ra.generation == G + 1 and (await csync(gc, a, G + 1)) == (E.NONE, kept)
    rb = await cjoin(gc, b, owned=[3, 4, 5])
    err, kept_b = await csync(gc, b, rb.generation)
    rb = await cjoin(gc, b, owned=kept_b)
    assert rb.generation == G + 1 and gc.heartbeat("g", G + 1, b, None) == E.NONE
    r = hb(gc, "n", G + 1, owned=[])
    assert r.error == E.NONE and len(r.assignment[T1]) == 2
    final = owners(gc)
    assert sorted(final) == list(range(6)) and sorted(final.values()).count("n") == 2


async def test_upgrade_refusals_follow_the_policy_and_the_protocol_type():
    for policy, ok in (("disabled", False), ("downgrade", False), ("upgrade", True), ("bidirectional", True)):
        gc, _ = make(**{"group.consumer.migration.policy": policy})
        await stable_classic(gc)
        r = hb(gc, "n", 0)
        assert (r.error == E.NONE) is ok, policy
        if not ok:
            assert (r.error, r.message) == (
                E.GROUP_ID_NOT_FOUND, "Cannot upgrade classic group g to consumer group because online upgrade "
                                      "is disabled.")
            assert gc.groups["g"].state == STABLE and gc.consumer.get("g") is None
    gc, _ = make(**{"group.consumer.max.size": 1})
    await stable_classic(gc)
    assert hb(gc, "n", 0).message == ("Cannot upgrade classic group g to consumer group because the group size "
                                      "exceeds the consumer group maximum size.")


async def test_classic_join_into_a_consumer_group_and_the_disabled_policy():
    gc, _ = make()
    assert hb(gc, "n", 0).error == E.NONE
    r = await gc.join_group(version=9, group_id="g", member_id="", group_instance_id=None, client_id="c",
                            client_host="h", session_timeout_ms=10_000, rebalance_timeout_ms=30_000,
                            protocol_type="consumer", protocols=[("range", meta())])
    assert r.error == E.MEMBER_ID_REQUIRED and r.member_id
    r = await cjoin(gc, r.member_id)
    assert r.error == E.NONE and r.generation == 2      # nothing free yet: n holds all six
    assert await csync(gc, r.member_id, 2) == (E.NONE, [])
    assert gc.heartbeat("g", 2, r.member_id, None) == E.NONE   # waits: n has not released any yet
    gc2, _ = make(**{"group.consumer.migration.policy": "disabled"})
    assert hb(gc2, "n", 0).error == E.NONE
    assert (await cjoin(gc2, "x")).error == E.INCONSISTENT_GROUP_PROTOCOL


async def test_downgrade_when_the_last_consumer_member_leaves_and_replay():
    gc, _ = make()
    a, b = await stable_classic(gc)
    hb(gc, "n", 0)
    for m, owned in ((a, [0, 1, 2]), (b, [3, 4, 5])):
        r = await cjoin(gc, m, owned=owned)
        _, kept = await csync(gc, m, r.generation)
        await cjoin(gc, m, owned=kept)
    assert hb(gc, "n", G + 1, owned=[]).error == E.NONE
    # a restart now replays the consumer group with its classic members
    again, _ = make()
    for key, data in gc.log.entries:
        again.replay(key, data)
    cg = again.consumer.get("g")
    assert cg is not None and cg.members[a].classic is not None and cg.members[a].classic.session_timeout_ms == 10_000
    assert again.groups["g"].members == {} and again.groups["g"].offsets[("t", 0)].offset == 7
    # the consumer-protocol member leaves: a classic group again, rebalancing, each member with its target
    target_a = sorted(gc.consumer.get("g").target[a][T1])
    r = hb(gc, "n", -1)
    assert r.error == E.NONE and gc.consumer.get("g") is None
    g = gc.groups["g"]
    # as Kafka: the generation is the group epoch (G + 1), the rebalance makes the next
    assert (g.state, g.generation, sorted(g.members)) == (PREPARING, G + 1, sorted([a, b]))
    assert sorted(parse_assignment(g.members[a].assignment)[0]["t"]) == target_a
    assert gc.heartbeat("g", G + 1, a, None) == E.REBALANCE_IN_PROGRESS
    replayed, _ = make()
    for key, data in gc.log.entries:
        replayed.replay(key, data)
    assert replayed.consumer.get("g") is None
    assert sorted(replayed.groups["g"].members) == sorted([a, b]) and replayed.groups["g"].generation == G + 1


async def test_no_downgrade_under_the_upgrade_policy_and_classic_leave():
    gc, _ = make(**{"group.consumer.migration.policy": "upgrade"})
    a, b = await stable_classic(gc)
    hb(gc, "n", 0)
    assert hb(gc, "n", -1).error == E.NONE
    cg = gc.consumer.get("g")
    assert cg is not None and sorted(cg.members) == sorted([a, b])
    assert gc.leave_group("g", [(a, None), ("zz", None)]) == (E.NONE, [E.NONE, E.UNKNOWN_MEMBER_ID])
    assert sorted(cg.members) == [b]


async def test_a_classic_member_that_does_not_rejoin_is_removed():
    gc, clock = make()
    a, b = await stable_classic(gc)
    hb(gc, "n", 0)
    assert gc.heartbeat("g", G, a, None) == E.REBALANCE_IN_PROGRESS
    for _ in range(7):                  # b rejoins when told; a does not JoinGroup within 30 s
        clock.advance(5)
        mb = gc.consumer.get("g").members[b]
        if gc.heartbeat("g", mb.member_epoch, b, None) == E.REBALANCE_IN_PROGRESS:
            r = await cjoin(gc, b, owned=sorted(mb.assigned.get(T1, ())))
            assert (await csync(gc, b, r.generation))[0] == E.NONE
        n = gc.consumer.get("g").members["n"]
        hb(gc, "n", n.member_epoch, owned=sorted(n.assigned.get(T1, ())))
    assert a not in gc.consumer.get("g").members and b in gc.consumer.get("g").members
