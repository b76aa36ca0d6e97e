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
