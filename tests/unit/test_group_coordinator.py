"""The classic group coordinator driven by a fake in-memory log and a ManualClock:
timers fire only when the test advances time, so nothing here sleeps."""
import asyncio
import inspect

import pytest

import broker.coordinator.group as group_module
from broker.clock import ManualClock
from broker.config import BrokerConfig
from broker.coordinator.group import (
    COMPLETING,
    DEAD,
    EMPTY,
    PREPARING,
    STABLE,
    VALID_PREVIOUS,
    GroupCoordinator,
    IllegalGroupTransition,
)
from broker.errors import ErrorCode

START_MS = 1_000_000


class FakeLog:
    """A GroupLog in memory: entries are durable at once (or fail, when told to)."""

    def __init__(self):
        self.entries = []
        self.fail = False

    def append(self, group_id, data):
        fut = asyncio.get_running_loop().create_future()
        if self.fail:
            fut.set_exception(OSError("disk gone"))
        else:
            self.entries.append((group_id.encode(), data))
            fut.set_result(None)
        return fut


def make(delay_ms=0):
    config = BrokerConfig()
    config.set("group.initial.rebalance.delay.ms", str(delay_ms))
    clock = ManualClock(start_ms=START_MS)
    gc = GroupCoordinator(config, FakeLog(), clock)
    gc.finish_loading()
    return gc, clock


def join(gc, member_id="", *, group="g", version=3, session=10_000, rebalance=30_000):
    return asyncio.create_task(gc.join_group(
        version=version, group_id=group, member_id=member_id, group_instance_id=None,
        client_id="c", client_host="h", session_timeout_ms=session, rebalance_timeout_ms=rebalance,
        protocol_type="consumer", protocols=[("range", b"meta")]))


async def settle():
    for _ in range(5):
        await asyncio.sleep(0)


async def sync(gc, member_id, generation, assignments=None, group="g"):
    err, assignment, _ = await gc.sync_group(
        group_id=group, generation=generation, member_id=member_id, group_instance_id=None,
        protocol_type="consumer", protocol_name="range", assignments=assignments or {})
    return err, assignment


async def stable_pair(gc, **kw):
    """Two members in a Stable group at generation 2; returns (leader id, follower id)."""
    t1 = join(gc, **kw)
    await settle()
    r1 = t1.result()
    assert (r1.error, r1.generation) == (ErrorCode.NONE, 1)
    t2 = join(gc, **kw)
    await settle()
    assert gc.groups["g"].state == PREPARING and not t2.done()
    t1 = join(gc, r1.member_id, **kw)  # the leader rejoins
    await settle()
    r1, r2 = t1.result(), t2.result()
    assert r1.generation == r2.generation == 2 and r1.leader == r1.member_id
    assert gc.groups["g"].state == COMPLETING
    assert await sync(gc, r1.member_id, 2, {r1.member_id: b"a1", r2.member_id: b"a2"}) == (ErrorCode.NONE, b"a1")
    assert await sync(gc, r2.member_id, 2) == (ErrorCode.NONE, b"a2")
    assert gc.groups["g"].state == STABLE
    return r1.member_id, r2.member_id


async def test_session_expiry_removes_the_member_and_rebalances():
    gc, clock = make()
    leader, follower = await stable_pair(gc)
    for _ in range(4):  # the follower heartbeats every 3 s, the leader is silent
        clock.advance(3)
        if gc.groups["g"].state == STABLE:
            assert gc.heartbeat("g", 2, follower, None) == ErrorCode.NONE
    g = gc.groups["g"]
    assert leader not in g.members and follower in g.members  # expired after 10 s
    assert g.state == PREPARING
    assert gc.heartbeat("g", 2, follower, None) == ErrorCode.REBALANCE_IN_PROGRESS
    assert gc.heartbeat("g", 2, leader, None) == ErrorCode.UNKNOWN_MEMBER_ID
    t = join(gc, follower)
    await settle()
    r = t.result()
    assert (r.error, r.generation, r.leader) == (ErrorCode.NONE, 3, follower)
    assert g.state == COMPLETING and set(g.members) == {follower}


async def test_rebalance_timeout_drops_a_member_that_did_not_rejoin():
    gc, clock = make()
    # sessions outlive the rebalance timeout, so only the rebalance timer can drop anyone
    leader, follower = await stable_pair(gc, session=60_000, rebalance=10_000)
    t3 = join(gc, session=60_000, rebalance=10_000)  # a new member: rebalance
    t1 = join(gc, leader, session=60_000, rebalance=10_000)
    await settle()
    assert gc.groups["g"].state == PREPARING and not t1.done() and not t3.done()
    clock.advance(9.9)
    await settle()
    assert not t1.done()
    clock.advance(0.1)
    await settle()
    r1, r3 = t1.result(), t3.result()
    assert r1.error == r3.error == ErrorCode.NONE and r1.generation == r3.generation == 3
    g = gc.groups["g"]
    assert set(g.members) == {leader, r3.member_id} and g.state == COMPLETING
    assert gc.heartbeat("g", 3, follower, None) == ErrorCode.UNKNOWN_MEMBER_ID


async def test_initial_delay_waits_for_members_arriving_together():
    gc, clock = make(delay_ms=3000)
    t1 = join(gc)
    await settle()
    g = gc.groups["g"]
    assert g.state == PREPARING and g.initial_delay_pending
    clock.advance(2)
    t2 = join(gc)  # arrives during the delay: one more delay (Kafka's InitialDelayedJoin)
    await settle()
    clock.advance(1)  # t = 3 s: the first delay ends, a member arrived, wait again
    await settle()
    assert not t1.done() and not t2.done() and g.generation == 0
    clock.advance(2.9)
    await settle()
    assert not t1.done()
    clock.advance(0.1)  # t = 6 s: nobody new, the join completes
    await settle()
    r1, r2 = t1.result(), t2.result()
    assert r1.generation == r2.generation == 1  # one rebalance for both
    assert g.state == COMPLETING and len(g.members) == 2


async def test_initial_delay_alone_completes_after_one_delay():
    gc, clock = make(delay_ms=3000)
    t1 = join(gc)
    await settle()
    clock.advance(2.999)
    await settle()
    assert not t1.done()
    clock.advance(0.001)
    await settle()
    assert t1.result().generation == 1


async def test_pending_member_expires_and_unblocks_the_rebalance():
    gc, clock = make()
    leader, follower = await stable_pair(gc)
    g = gc.groups["g"]
    pending = join(gc, version=5)  # KIP-394: the member must come back with its id
    await settle()
    r = pending.result()
    assert r.error == ErrorCode.MEMBER_ID_REQUIRED and r.member_id in g.pending_members
    assert g.state == STABLE  # a pending member does not rebalance yet
    t1 = join(gc, leader)  # the leader rejoins: rebalance, waits for the follower and the pending id
    t2 = join(gc, follower)
    await settle()
    assert g.state == PREPARING and not t1.done() and not t2.done()
    clock.advance(10)  # the pending id's session timeout
    await settle()
    assert r.member_id not in g.pending_members
    assert t1.result().generation == t2.result().generation == 3
    late = join(gc, r.member_id, version=5)
    await settle()
    assert late.result().error == ErrorCode.UNKNOWN_MEMBER_ID


async def test_transition_table_is_kafkas_and_rejects_illegal_transitions():
    assert VALID_PREVIOUS == {
        EMPTY: {PREPARING},
        PREPARING: {STABLE, COMPLETING, EMPTY},
        COMPLETING: {PREPARING},
        STABLE: {COMPLETING},
        DEAD: {STABLE, PREPARING, COMPLETING, EMPTY, DEAD},
    }
    gc, clock = make()
    await gc.commit_offsets("g", [("t", 0, group_module.OffsetAndMetadata(1, -1, None, START_MS))])
    await settle()  # the commit applies in the fsync callback
    g = gc.groups["g"]
    assert g.state == EMPTY
    for bad in (STABLE, COMPLETING, EMPTY):
        with pytest.raises(IllegalGroupTransition):
            gc._transition(g, bad)
        assert g.state == EMPTY
    clock.advance(5)
    gc._transition(g, PREPARING)
    assert (g.state, g.state_timestamp) == (PREPARING, None)
    with pytest.raises(IllegalGroupTransition):
        gc._transition(g, STABLE)
    clock.advance(1)
    gc._transition(g, COMPLETING)  # the state timestamp: entering Empty or CompletingRebalance
    assert (g.state, g.state_timestamp) == (COMPLETING, START_MS + 6000)
    with pytest.raises(IllegalGroupTransition):
        gc._transition(g, EMPTY)
    with pytest.raises(IllegalGroupTransition):  # a revert goes back only where it came from
        gc._transition(g, STABLE, revert=True)


async def test_delete_group_reverts_to_empty_when_the_tombstone_fails():
    gc, clock = make()
    await gc.commit_offsets("g", [("t", 0, group_module.OffsetAndMetadata(1, -1, None, START_MS))])
    await settle()  # the commit applies in the fsync callback
    g = gc.groups["g"]
    gc.log.fail = True
    with pytest.raises(OSError):
        await gc.delete_group("g")
    await settle()
    assert g.state == EMPTY and gc.groups["g"] is g and g.state_timestamp is None
    gc.log.fail = False
    assert await gc.delete_group("g") == ErrorCode.NONE
    await settle()
    assert g.state == DEAD and "g" not in gc.groups


def test_no_wall_clock_or_loop_timers_in_the_coordinator():
    src = inspect.getsource(group_module)
    assert "import time" not in src and "time.time" not in src and "time.monotonic" not in src
    assert "loop.call_later" not in src and "get_running_loop().call_later" not in src


# ------------------------------------------------------------ error precedence
# Kafka's ClassicGroup / GroupMetadataManager order, for every API that names a
# member: group unknown or Dead; the member (an unknown instance id is
# UNKNOWN_MEMBER_ID, one mapped to another member FENCED_INSTANCE_ID, then the
# member id); the generation; only then the group's state. The e2e twin,
# tests/e2e/test_group_conformance.py, sends the same to Kafka itself.
E = ErrorCode


def join_as(gc, member_id="", *, meta=b"meta", instance=None, group="g", version=5):
    return asyncio.create_task(gc.join_group(
        version=version, group_id=group, member_id=member_id, group_instance_id=instance,
        client_id="c", client_host="h", session_timeout_ms=10_000, rebalance_timeout_ms=30_000,
        protocol_type="consumer", protocols=[("range", meta)]))


async def preparing_trio(gc):
    """A Stable pair at generation 2, then a third member joins: PreparingRebalance
    (still generation 2), the third one's JoinGroup waiting."""
    leader, follower = await stable_pair(gc)
    third = join(gc)
    await settle()
    assert gc.groups["g"].state == PREPARING and not third.done()
    return leader, follower, third


async def completing_trio(gc):
    """All three rejoined: CompletingRebalance at generation 3, nobody synced."""
    leader, follower, third = await preparing_trio(gc)
    t1, t2 = join(gc, leader), join(gc, follower)
    await settle()
    assert t1.result().generation == t2.result().generation == third.result().generation == 3
    assert gc.groups["g"].state == COMPLETING
    return leader, follower, third.result().member_id


async def test_offset_commit_checks_member_and_generation_before_rebalance():
    gc, _ = make()
    assert gc.check_commit("none", -1, "", None, 8) == E.NONE            # a simple commit creates it
    assert gc.check_commit("none", 1, "m", None, 8) == E.ILLEGAL_GENERATION
    assert gc.check_commit("none", 1, "m", None, 9) == E.GROUP_ID_NOT_FOUND
    leader, follower, third = await completing_trio(gc)
    rows = [  # generation, member, instance id -> answer (CompletingRebalance, generation 3)
        (2, leader, None, E.ILLEGAL_GENERATION),        # the issue: a gone generation, not "rebalancing"
        (3, leader, None, E.REBALANCE_IN_PROGRESS),
        (4, third, None, E.ILLEGAL_GENERATION),
        (3, "nobody", None, E.UNKNOWN_MEMBER_ID),
        (2, "nobody", None, E.UNKNOWN_MEMBER_ID),
        (-1, "", None, E.UNKNOWN_MEMBER_ID),
        (3, leader, "ghost", E.UNKNOWN_MEMBER_ID),
    ]
    assert [gc.check_commit("g", gen, m, i, 8) for gen, m, i, _ in rows] == [want for *_, want in rows]
    assert await sync(gc, leader, 3) == (E.NONE, b"")
    assert gc.check_commit("g", 3, follower, None, 8) == E.NONE


async def test_offset_commit_in_preparing_and_stable():
    gc, _ = make()
    leader, follower, third = await preparing_trio(gc)
    rows = [(2, leader, E.NONE), (1, leader, E.ILLEGAL_GENERATION), (2, "nobody", E.UNKNOWN_MEMBER_ID),
            (-1, leader, E.ILLEGAL_GENERATION), (-1, "", E.UNKNOWN_MEMBER_ID)]
    assert [gc.check_commit("g", gen, m, None, 8) for gen, m, _ in rows] == [want for *_, want in rows]
    third.cancel()


async def test_heartbeat_checks_generation_before_rebalance():
    gc, _ = make()
    assert gc.heartbeat("none", 1, "m", None) == E.UNKNOWN_MEMBER_ID
    leader, follower, third = await preparing_trio(gc)
    rows = [  # PreparingRebalance, generation 2
        (2, leader, None, E.REBALANCE_IN_PROGRESS),
        (1, leader, None, E.ILLEGAL_GENERATION),        # an older generation: rejoin without partitions
        (3, leader, None, E.ILLEGAL_GENERATION),
        (1, "nobody", None, E.UNKNOWN_MEMBER_ID),
        (2, leader, "ghost", E.UNKNOWN_MEMBER_ID),
    ]
    assert [gc.heartbeat("g", gen, m, i) for gen, m, i, _ in rows] == [want for *_, want in rows]
    t1, t2 = join(gc, leader), join(gc, follower)
    await settle()
    assert gc.groups["g"].state == COMPLETING
    assert [gc.heartbeat("g", 3, follower, None), gc.heartbeat("g", 2, follower, None)] == \
        [E.NONE, E.ILLEGAL_GENERATION]
    assert t1.done() and t2.done() and third.done()


async def test_sync_group_precedence():
    gc, _ = make()
    await gc.commit_offsets("e", [("t", 0, group_module.OffsetAndMetadata(1, -1, None, START_MS))])
    await settle()
    assert await sync(gc, "", 0, group="e") == (E.UNKNOWN_MEMBER_ID, b"")   # Empty group
    leader, follower, third = await preparing_trio(gc)

    async def sync_as(gen, member, *, instance=None, name="range"):
        err, _, _ = await gc.sync_group(group_id="g", generation=gen, member_id=member, group_instance_id=instance,
                                        protocol_type="consumer", protocol_name=name, assignments={})
        return err
    assert await sync_as(2, leader) == E.REBALANCE_IN_PROGRESS
    assert await sync_as(1, leader) == E.ILLEGAL_GENERATION                  # generation before state
    assert await sync_as(2, leader, name="roundrobin") == E.INCONSISTENT_GROUP_PROTOCOL
    assert await sync_as(2, leader, instance="ghost") == E.UNKNOWN_MEMBER_ID
    third.cancel()


async def test_join_with_an_unknown_instance_id_is_refused_without_a_rebalance():
    gc, _ = make()
    leader, follower = await stable_pair(gc)
    t = join_as(gc, leader, instance="ghost")   # the leader rejoining would rebalance
    await settle()
    assert t.result().error == E.UNKNOWN_MEMBER_ID
    assert gc.groups["g"].state == STABLE and gc.groups["g"].generation == 2


async def test_leave_group_precedence():
    gc, _ = make()
    assert gc.leave_group("none", [("m", None)]) == (E.NONE, [E.UNKNOWN_MEMBER_ID])
    t = join_as(gc, instance="i1")
    await settle()
    static = t.result()
    assert await sync(gc, static.member_id, static.generation) == (E.NONE, b"")
    assert gc.leave_group("g", [("x", "i1"), ("", "i2"), (static.member_id, "ghost"), ("", None)]) == \
        (E.NONE, [E.FENCED_INSTANCE_ID, E.UNKNOWN_MEMBER_ID, E.UNKNOWN_MEMBER_ID, E.UNKNOWN_MEMBER_ID])
    assert gc.groups["g"].members
    assert gc.leave_group("g", [("", "i1")]) == (E.NONE, [E.NONE])          # by instance id alone
    assert not gc.groups["g"].members


# ------------------------------------------------- joins racing leaves and syncs
# The leader assigns from the metadata the JoinGroup response hands it (a
# cooperative assignor reads each member's owned partitions there): it must be
# what each member sent last, whatever raced the join.
async def test_leave_racing_sync_next_leader_sees_the_latest_metadata():
    gc, _ = make()
    leader, follower, third = await completing_trio(gc)
    waiting = asyncio.create_task(sync(gc, follower, 3))
    await settle()
    assert not waiting.done()
    assert gc.leave_group("g", [(third, None)]) == (E.NONE, [E.NONE])   # the leave beats the leader's sync
    await settle()
    assert waiting.result() == (E.REBALANCE_IN_PROGRESS, b"")
    assert await sync(gc, leader, 3, {leader: b"x", follower: b"y"}) == (E.REBALANCE_IN_PROGRESS, b"")
    assert gc.check_commit("g", 2, follower, None, 8) == E.ILLEGAL_GENERATION
    t1, t2 = join_as(gc, leader, meta=b"leader-owns-0-1"), join_as(gc, follower, meta=b"follower-owns-2")
    await settle()
    r1, r2 = t1.result(), t2.result()
    assert (r1.generation, r1.leader) == (r2.generation, r2.leader) == (4, leader) and r2.members == []
    assert sorted((m, meta) for m, _, meta in r1.members) == sorted(
        [(leader, b"leader-owns-0-1"), (follower, b"follower-owns-2")])
    t2s = asyncio.create_task(sync(gc, follower, 4))
    assert await sync(gc, leader, 4, {leader: b"0,1", follower: b"2"}) == (E.NONE, b"0,1")
    assert await t2s == (E.NONE, b"2")


async def test_rejoin_racing_completing_rebalance():
    """In CompletingRebalance a member rejoining with what it sent before gets the
    current generation back (it lost the response); with new metadata (it owns
    other partitions now) it starts the next rebalance, and the leader of that
    one sees the new metadata."""
    gc, _ = make()
    leader, follower, third = await completing_trio(gc)
    same = join(gc, follower)
    await settle()
    assert (same.result().generation, gc.groups["g"].state) == (3, COMPLETING)
    changed = join_as(gc, follower, meta=b"owns-less")
    await settle()
    assert gc.groups["g"].state == PREPARING and not changed.done()
    t1, t3 = join(gc, leader), join(gc, third)
    await settle()
    r1 = t1.result()
    assert r1.generation == changed.result().generation == t3.result().generation == 4
    assert dict((m, meta) for m, _, meta in r1.members)[follower] == b"owns-less"


async def test_leave_racing_join_completes_the_rebalance_without_the_leaver():
    gc, _ = make()
    leader, follower, third = await preparing_trio(gc)
    t1 = join(gc, leader)
    await settle()
    assert not t1.done()                        # waiting for the follower
    assert gc.leave_group("g", [(follower, None)]) == (E.NONE, [E.NONE])
    await settle()
    r1, r3 = t1.result(), third.result()
    assert r1.generation == r3.generation == 3 and r1.leader == leader
    assert {m for m, _, _ in r1.members} == {leader, r3.member_id}
    assert gc.heartbeat("g", 3, follower, None) == E.UNKNOWN_MEMBER_ID
