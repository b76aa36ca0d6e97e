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
        self.held = None  # a list: entries are appended but their futures wait there

    def append(self, group_id, data):
        fut = asyncio.get_running_loop().create_future()
        if self.held is not None:
            self.entries.append((group_id.encode(), data))
            self.held.append(fut)
        elif self.fail:
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


async def test_a_parked_join_whose_client_disconnects_still_counts_as_joined():
    """A consumer closing while its JoinGroup is parked (its LeaveGroup queued
    behind it on the same connection) cancels the handler, not the member's
    join: as in Kafka, the join completes once the others are in, with it,
    and its session (not the rebalance timeout, 5 minutes for librdkafka)
    decides when it goes. Before, the cancelled join left the two others
    parked without partitions until the leaver's session or the rebalance
    timeout ran out."""
    gc, clock = make()
    leader, follower, third = await preparing_trio(gc)   # the third's JoinGroup is parked
    third.cancel()                                        # its connection closed
    await settle()
    t1, t2 = join(gc, leader), join(gc, follower)
    await settle()
    r1, r2 = t1.result(), t2.result()
    g = gc.groups["g"]
    assert r1.generation == r2.generation == 3 and g.state == COMPLETING
    assert len(r1.members) == 3                           # the leader assigns to all three
    (gone,) = set(g.members) - {leader, follower}
    assert await sync(gc, leader, 3, {leader: b"a", follower: b"b", gone: b"c"}) == (E.NONE, b"a")
    for _ in range(4):                                    # the two heartbeat; the third is silent
        clock.advance(3)
        await settle()
        assert gc.heartbeat("g", g.generation, leader, None) in (E.NONE, E.REBALANCE_IN_PROGRESS)
        assert gc.heartbeat("g", g.generation, follower, None) in (E.NONE, E.REBALANCE_IN_PROGRESS)
    assert gone not in g.members and g.state == PREPARING  # its session expired: the next rebalance


# ------------------------------------------------------- durable membership
# Kafka's GroupMetadataValue: written at the leader's SyncGroup (members and
# assignments), when the group becomes Empty and when a static member replaces
# its old id; replayed as Stable (members) or Empty, sessions from load time.
def reloaded(gc, *, finish=True, **overrides):
    """A new coordinator that replays every entry ``gc`` wrote (a restart a
    minute later, longer than any session), and its clock."""
    config = BrokerConfig()
    for k, v in overrides.items():
        config.set(k, str(v))
    clock = ManualClock(start_ms=START_MS + 60_000)
    again = GroupCoordinator(config, FakeLog(), clock)
    for key, data in gc.log.entries:
        again.replay(key, data)
    if finish:
        again.finish_loading()
    return again, clock


async def rebalance(gc, leader, follower):
    """Both members of a Stable pair rejoin: CompletingRebalance at the next generation."""
    j1, j2 = join(gc, leader), join(gc, follower)
    await settle()
    assert j1.result().generation == j2.result().generation == gc.groups["g"].generation
    assert gc.groups["g"].state == COMPLETING


def metas(gc):
    return [d for _, d in gc.log.entries if d[0] == group_module.OP_GROUP_META]


async def test_members_survive_a_restart_as_stable():
    gc, clock = make()
    leader, follower = await stable_pair(gc)
    assert len(metas(gc)) == 1  # one record per rebalance: the leader's SyncGroup (none at Completing)
    g = gc.groups["g"]
    again, clock = reloaded(gc)  # a minute later: the sessions count from the load
    h = again.groups["g"]
    assert (h.state, h.generation, h.protocol_type, h.protocol_name, h.leader_id) == \
        (STABLE, 2, "consumer", "range", leader)
    assert list(h.members) == [leader, follower]
    for mid in (leader, follower):
        m, before = h.members[mid], g.members[mid]
        assert (m.client_id, m.client_host, m.session_timeout_ms, m.rebalance_timeout_ms, m.assignment) == \
            (before.client_id, before.client_host, 10_000, 30_000, before.assignment)
        assert m.protocols == [("range", b"meta")] and not m.is_new
    assert h.state_timestamp == g.state_timestamp  # when it entered CompletingRebalance
    # the consumers carry on: heartbeats, commits and SyncGroup of generation 2 work
    assert again.heartbeat("g", 2, follower, None) == ErrorCode.NONE
    assert again.check_commit("g", 2, leader, None, 8) == ErrorCode.NONE
    assert await sync(again, follower, 2) == (ErrorCode.NONE, b"a2")
    assert again.heartbeat("g", 1, follower, None) == ErrorCode.ILLEGAL_GENERATION
    assert again.heartbeat("g", 2, "stranger", None) == ErrorCode.UNKNOWN_MEMBER_ID


async def test_a_member_that_never_comes_back_expires_after_load_and_the_group_rebalances():
    gc, clock = make()
    leader, follower = await stable_pair(gc)
    again, clock = reloaded(gc)
    for _ in range(4):  # only the follower came back; 12 s > the 10 s session
        clock.advance(3)
        if again.groups["g"].state == STABLE:
            assert again.heartbeat("g", 2, follower, None) == ErrorCode.NONE
    h = again.groups["g"]
    assert set(h.members) == {follower} and h.state == PREPARING
    assert again.heartbeat("g", 2, follower, None) == ErrorCode.REBALANCE_IN_PROGRESS
    t = join(again, follower)
    await settle()
    r = t.result()
    assert (r.error, r.generation, r.leader) == (ErrorCode.NONE, 3, follower)
    assert await sync(again, follower, 3, {follower: b"all"}) == (ErrorCode.NONE, b"all")
    # and the group that nobody returns to at all ends Empty, durably
    clock.advance(11)
    await settle()
    assert h.state == EMPTY and h.generation == 4 and not h.members
    last = reloaded(again)[0].groups["g"]
    assert (last.state, last.generation, last.members) == (EMPTY, 4, {})


async def test_loading_waits_for_finish_loading_before_sessions_start():
    gc, clock = make()
    await stable_pair(gc)
    again, clock = reloaded(gc, finish=False)
    assert all(m.timer is None for m in again.groups["g"].members.values())
    clock.advance(60)  # a long load: nobody expires before it ends
    assert again.groups["g"].state == STABLE and len(again.groups["g"].members) == 2
    again.finish_loading()
    clock.advance(9.9)
    assert again.groups["g"].state == STABLE
    clock.advance(0.2)  # both expired: the rebalance ends without members, Empty
    assert again.groups["g"].state == EMPTY and not again.groups["g"].members


async def test_sync_group_answers_after_the_write_and_a_failed_write_rebalances():
    gc, clock = make()
    leader, follower = await stable_pair(gc)
    await rebalance(gc, leader, follower)
    gc.log.held = []
    s1 = asyncio.create_task(sync(gc, leader, 3, {leader: b"x", follower: b"y"}))
    s2 = asyncio.create_task(sync(gc, follower, 3))
    await settle()
    g = gc.groups["g"]
    assert g.state == COMPLETING and not s1.done() and not s2.done()  # until the fsync
    assert gc.check_commit("g", 3, leader, None, 8) == ErrorCode.REBALANCE_IN_PROGRESS
    gc.log.held.pop().set_result(None)
    await settle()
    assert g.state == STABLE and s1.result() == (ErrorCode.NONE, b"x") and s2.result() == (ErrorCode.NONE, b"y")
    stored = metas(gc)[-1]

    # generation 4: the write fails; both are told NOT_COORDINATOR (Kafka's answer to a
    # storage error), nobody gets an assignment and the group prepares a rebalance
    await rebalance(gc, leader, follower)
    s1 = asyncio.create_task(sync(gc, leader, 4, {leader: b"x2", follower: b"y2"}))
    s2 = asyncio.create_task(sync(gc, follower, 4))
    await settle()
    gc.log.held.pop().set_exception(OSError("disk gone"))
    await settle()
    assert s1.result() == s2.result() == (ErrorCode.NOT_COORDINATOR, b"")
    assert g.state == PREPARING and all(m.assignment == b"" for m in g.members.values())
    # the record of generation 4 is not the group's: a snapshot keeps generation 3's
    [entry] = [d for _, d in gc.snapshot_entries() if d[0] == group_module.OP_GROUP_META]
    assert entry == stored


async def test_a_sync_write_landing_after_the_group_moved_on_changes_nothing():
    gc, clock = make()
    t1 = join(gc)
    await settle()
    leader = t1.result().member_id
    gc.log.held = []
    s1 = asyncio.create_task(sync(gc, leader, 1, {leader: b"x"}))
    await settle()
    third = join(gc)  # a member joins while the write is in flight: PreparingRebalance
    await settle()
    gc.log.held.pop().set_result(None)
    await settle()
    assert gc.groups["g"].state == PREPARING
    assert s1.result() == (ErrorCode.REBALANCE_IN_PROGRESS, b"")
    third.cancel()


async def test_old_group_meta_entries_replay_as_empty_groups():
    """Entries written before issue 15 (no members), and before issue 4 (no timestamp)."""
    import struct
    gc, clock = make()
    old = b"\x03" + struct.pack(">i", 7) + struct.pack(">H", 8) + b"consumer"
    gc.replay(b"g", old)
    gc.replay(b"h", old + struct.pack(">q", 123_456))
    gc.replay(b"s", b"\x03" + struct.pack(">i", 0) + struct.pack(">H", 0))
    g, h, s = gc.groups["g"], gc.groups["h"], gc.groups["s"]
    assert (g.state, g.generation, g.protocol_type, g.state_timestamp, g.members) == \
        (EMPTY, 7, "consumer", None, {})
    assert (h.state, h.generation, h.state_timestamp) == (EMPTY, 7, 123_456)
    assert (s.state, s.generation, s.protocol_type) == (EMPTY, 0, None)
    # a snapshot keeps them as they were read; a newer entry replaces one with members
    assert dict(gc.snapshot_entries())[b"h"] == old + struct.pack(">q", 123_456)


async def test_static_member_replacement_is_stored_and_reverted_if_the_write_fails():
    gc, clock = make()
    t = join_as(gc, instance="i1")
    await settle()
    r = t.result()
    assert r.error == ErrorCode.NONE and r.generation == 1
    assert await sync(gc, r.member_id, 1, {r.member_id: b"mine"}) == (ErrorCode.NONE, b"mine")
    # the instance restarts: a new member id, no rebalance, stored before the answer
    gc.log.held = []
    t = join_as(gc, instance="i1")
    await settle()
    assert not t.done()
    gc.log.held.pop().set_result(None)
    await settle()
    r2 = t.result()
    assert (r2.error, r2.generation) == (ErrorCode.NONE, 1) and r2.member_id != r.member_id
    h = reloaded(gc)[0].groups["g"]
    assert list(h.members) == [r2.member_id] and h.static_members == {"i1": r2.member_id}
    assert (h.leader_id, h.members[r2.member_id].assignment) == (r2.member_id, b"mine")
    # once more, and the write fails: the old member id stays, the new one is refused
    t = join_as(gc, instance="i1")
    await settle()
    gc.log.held.pop().set_exception(OSError("disk gone"))
    await settle()
    r3 = t.result()
    assert (r3.error, r3.member_id) == (ErrorCode.NOT_COORDINATOR, "")
    g = gc.groups["g"]
    assert list(g.members) == [r2.member_id] and g.static_members == {"i1": r2.member_id}
    assert g.leader_id == r2.member_id and g.state == STABLE
    assert gc.heartbeat("g", 1, r2.member_id, "i1") == ErrorCode.NONE


async def test_a_loaded_group_above_group_max_size_rebalances():
    gc, clock = make()
    await stable_pair(gc)
    again, _ = reloaded(gc, **{"group.max.size": 1})
    assert again.groups["g"].state == PREPARING and len(again.groups["g"].members) == 2


def test_a_big_group_record_round_trips():
    """1000 members, 1 KiB of subscription and of assignment each: one record of about 2 MiB."""
    g = group_module.Group("big", state=STABLE, generation=9, protocol_type="consumer",
                           protocol_name="range", state_timestamp=START_MS)
    for i in range(1000):
        mid = f"consumer-{i}-{'x' * 36}"
        g.members[mid] = group_module.Member(mid, f"inst-{i}" if i % 2 else None, f"client-{i}", "/127.0.0.1",
                                             45_000, 300_000, "consumer", [("range", bytes([i % 256]) * 1024)])
    g.leader_id = next(iter(g.members))
    assignment = {mid: b"a" * 1024 for mid in g.members}
    entry = group_module._encode_group_meta(g, assignment)
    assert 2 * 1024 * 1000 < len(entry) < 2 * 1024 * 1000 + 150 * 1000
    gc, clock = make()
    gc.replay(b"big", entry)
    h = gc.groups["big"]
    assert (h.state, h.generation, h.leader_id, len(h.members)) == (STABLE, 9, g.leader_id, 1000)
    for mid, m in g.members.items():
        r = h.members[mid]
        assert (r.group_instance_id, r.client_id, r.client_host, r.protocols, r.assignment) == \
            (m.group_instance_id, m.client_id, m.client_host, m.protocols, assignment[mid])
    assert h.static_members == {m.group_instance_id: mid for mid, m in g.members.items() if m.group_instance_id}


async def test_a_static_member_restarting_after_a_load_keeps_the_generation():
    """A restored member supports only the chosen protocol; its instance restarts
    with its full list: the selected protocol stays, so no rebalance (Kafka's
    selectProtocol check), and the other member is untouched."""
    gc, clock = make()
    t1 = join_as(gc, instance="i1")
    await settle()
    r1 = t1.result()
    t2 = join_as(gc, instance="i2")
    await settle()
    assert gc.groups["g"].state == PREPARING
    t1 = join_as(gc, r1.member_id, instance="i1")
    await settle()
    r1, r2 = t1.result(), t2.result()
    assert r1.generation == r2.generation == 2
    assert await sync(gc, r1.leader, 2, {r1.member_id: b"one", r2.member_id: b"two"}) == \
        (ErrorCode.NONE, b"one" if r1.leader == r1.member_id else b"two")
    again, clock = reloaded(gc)
    t = asyncio.create_task(again.join_group(
        version=5, group_id="g", member_id="", group_instance_id="i2", client_id="c", client_host="h",
        session_timeout_ms=10_000, rebalance_timeout_ms=30_000, protocol_type="consumer",
        protocols=[("range", b"meta"), ("roundrobin", b"meta")]))
    await settle()
    r = t.result()
    assert (r.error, r.generation, r.protocol_name) == (ErrorCode.NONE, 2, "range")
    g = again.groups["g"]
    assert g.state == STABLE and set(g.members) == {r1.member_id, r.member_id}
    assert await sync(again, r.member_id, 2) == (ErrorCode.NONE, b"two")
    assert again.heartbeat("g", 2, r1.member_id, None) == ErrorCode.NONE
