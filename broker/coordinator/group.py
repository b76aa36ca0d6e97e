"""Kafka's classic group coordinator (this broker coordinates every group).

Its dependencies are narrow: ``GroupCoordinator(config, log, clock)``. Every
durable change is appended to ``log`` (a ``GroupLog``: ``append(group_id,
data) -> future`` resolving once the entry is fsynced); every timer (session
expiry, rebalance and initial-delay timers, pending-member expiry, the offset
retention check) and every timestamp comes from ``clock`` (a
``broker.clock.Clock``). JoinGroup/SyncGroup waits are asyncio futures.

States and transitions: Kafka's ``ClassicGroupState`` (``GroupState`` in
Kafka 3), one table, ``VALID_PREVIOUS``; every change goes through
``_transition``, which refuses any other (``IllegalGroupTransition``, a bug)
and maintains the state timestamp used by offset retention: the time the group
entered Empty or CompletingRebalance, the two moments whose timestamp is
persisted (GROUP_META; Kafka's ``storeGroup`` runs in those states too), so a
group restored from a snapshot or from the WAL gets the same one::

    state                valid previous states         entered when
    Empty                PreparingRebalance            a rebalance completes without members
    PreparingRebalance   Stable, CompletingRebalance,  a member joins, rejoins with new metadata,
                         Empty                         leaves or its session expires; the leader rejoins
    CompletingRebalance  PreparingRebalance            every member rejoined, or the rebalance timeout
    Stable               CompletingRebalance           the leader's SyncGroup
    Dead                 Stable, PreparingRebalance,   DeleteGroups, or an Empty group's last offset
                         CompletingRebalance, Empty,   expired (only Empty ever reaches it here)
                         Dead

The one step back: a DeleteGroups whose tombstone cannot be written puts the
group back from Dead to Empty (``_transition(..., revert=True)``, only to the
state it came from), as Kafka 4 reverts the in-memory state of a failed write.

Error precedence is Kafka's (ClassicGroup.validateMember / validateOffsetCommit
and GroupMetadataManager), the same for every API that names a member: group
unknown or Dead; the member (an unknown instance id: UNKNOWN_MEMBER_ID; one
mapped to another member: FENCED_INSTANCE_ID; an unknown member id); the
generation (ILLEGAL_GENERATION); only then the group's state
(REBALANCE_IN_PROGRESS). The order matters to clients: ILLEGAL_GENERATION and
UNKNOWN_MEMBER_ID tell a member that its generation, and with it its
partitions, are gone; REBALANCE_IN_PROGRESS tells a cooperative consumer to
rejoin keeping them. ``tests/e2e/test_group_conformance.py`` holds the table
checked against Kafka.

Offsets, the group's existence and its membership are durable: every change
is a log entry (in the broker, a WAL entry of kind 4, ``KIND_GROUP_EPOCH``,
key = group id; kind 3 from older brokers replays the same). Data of one
entry (big-endian)::

    u8 op
    op 0 COMMIT / 1 DELETE_OFFSETS:
        u32 count, then per partition:
            u16 topic_len, topic, i32 partition,
            (COMMIT only) i64 offset, i32 leader_epoch, i64 commit_timestamp_ms,
                          i32 metadata_len (-1 = null), metadata
    op 2 DELETE_GROUP (tombstone: the group and its offsets are gone)
    op 3 GROUP_META: i32 generation, u16 len + protocol_type,
        then (optional, since issue 4) i64 state timestamp ms (-1: unknown),
        then (optional, since issue 15) Kafka's GroupMetadataValue members:
            u8 1 (version), str protocol name, str leader, u32 count, per member:
            str member id, str group instance id, str client id, str client host,
            i32 session timeout ms, i32 rebalance timeout ms,
            bytes subscription (the chosen protocol's metadata), bytes assignment
        (str / bytes: i32 length, -1 = null, then the bytes)

GROUP_META is written where Kafka's GroupMetadataManager writes the group's
record: the leader's SyncGroup (members and their assignments; the group
becomes Stable and every SyncGroup is answered only after the fsync; if the
write fails they get NOT_COORDINATOR and the group prepares a rebalance), a
rebalance that ends without members (Empty; not waited for), and a static
member replacing its old member id in a Stable group (the JoinGroup answer
waits; a failed write reverts the replacement). Replay restores a group as
Kafka's ``replay(GroupMetadataValue)`` does: Stable with those members if it
had any, else Empty; an entry without the members section (older brokers)
gives an Empty group. When loading ends (``on_loaded``, Kafka's ``onLoaded``)
each restored member gets a fresh session timer, so consumers that come back
within their session keep their member id, generation and partitions, and
their commits succeed; the others expire and the group rebalances. The last
GROUP_META of each group (``Group.meta_entry``) is what its snapshot stores:
the durable record, not the group's in-memory state mid-rebalance. One entry
holds every member's subscription and assignment, about their sizes summed
per rebalance (a 1000-member group with 1 KiB of each: 2 MiB), never per commit.
    op 32 and above: a KIP-848 consumer group's (``consumer_group.py``)

Snapshots (``snapshot_entries``, ``shard_entries``) are the same payloads:
GROUP_META and one COMMIT of all offsets per group; ``broker.coordinator.snapshot``
stores them per coordinator partition so the log entries they cover can go.

Offset retention (Kafka's ``offsets.retention.minutes``, checked every
``offsets.retention.check.interval.ms``): offsets of an Empty group expire the
retention after the group became Empty; offsets of a group without a protocol
type (simple commits) expire the retention after their commit; a Stable consumer
group loses offsets of topics it no longer subscribes to, by commit time.
Expiry writes DELETE_OFFSETS, and DELETE_GROUP once an Empty group has no
offsets left, so it survives restart.

Recovery replays them in log order (``replay``). Until that is done the
coordinator is ``loading``: FindCoordinator answers COORDINATOR_NOT_AVAILABLE,
and the group APIs answer as Kafka's coordinator does for a group whose
``__consumer_offsets`` partition is still loading: COORDINATOR_LOAD_IN_PROGRESS
(JoinGroup, LeaveGroup, OffsetCommit, DeleteGroups here; DescribeGroups,
ListGroups, OffsetFetch and OffsetDelete in their handlers), except SyncGroup,
which answers REBALANCE_IN_PROGRESS (older clients do not expect the loading
error there; they rejoin), and Heartbeat, which answers NONE blindly.
"""
from __future__ import annotations

import asyncio
import logging
import struct
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ..clock import Clock, TimerHandle
from ..errors import ErrorCode
from .log import GroupLog

log = logging.getLogger(__name__)

EMPTY = "Empty"
PREPARING = "PreparingRebalance"
COMPLETING = "CompletingRebalance"
STABLE = "Stable"
DEAD = "Dead"

# Kafka's ClassicGroupState.validPreviousStates (group-coordinator/.../classic/
# ClassicGroupState.java; GroupState in Kafka 3's GroupMetadata.scala): the
# states a group may be in to enter each state.
VALID_PREVIOUS: dict[str, frozenset[str]] = {
    EMPTY: frozenset({PREPARING}),
    PREPARING: frozenset({STABLE, COMPLETING, EMPTY}),
    COMPLETING: frozenset({PREPARING}),
    STABLE: frozenset({COMPLETING}),
    DEAD: frozenset({STABLE, PREPARING, COMPLETING, EMPTY, DEAD}),
}


# Entering these stamps the state timestamp (see the module docstring).
_STAMPED = frozenset({EMPTY, COMPLETING})


class IllegalGroupTransition(RuntimeError):
    """A state change the table does not allow: a coordinator bug, never a client error."""

    def __init__(self, group_id: str, old: str, new: str) -> None:
        super().__init__(f"group {group_id!r}: illegal transition {old} -> {new} "
                         f"(valid previous states of {new}: {sorted(VALID_PREVIOUS.get(new, ()))})")
        self.group_id, self.old, self.new = group_id, old, new

OP_COMMIT, OP_DELETE_OFFSETS, OP_DELETE_GROUP, OP_GROUP_META = 0, 1, 2, 3
OP_CONSUMER_FIRST = 32  # ops from here on are KIP-848 consumer groups' (consumer_group.py)

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_COMMIT = struct.Struct(">iqiq")  # partition, offset, leader epoch, commit timestamp


@dataclass(slots=True)
class OffsetAndMetadata:
    offset: int
    leader_epoch: int
    metadata: str | None
    commit_timestamp: int


@dataclass(eq=False)
class Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    join_future: asyncio.Future | None = None
    sync_future: asyncio.Future | None = None
    timer: TimerHandle | None = None
    is_new: bool = True

    def metadata_for(self, protocol: str) -> bytes:
        for name, meta in self.protocols:
            if name == protocol:
                return meta
        return b""

    def protocol_names(self) -> list[str]:
        return [n for n, _ in self.protocols]

    @property
    def awaiting(self) -> bool:
        return ((self.join_future is not None and not self.join_future.done())
                or (self.sync_future is not None and not self.sync_future.done()))


@dataclass(slots=True)
class JoinResult:
    error: int
    generation: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    member_id: str = ""
    members: list = field(default_factory=list)  # (member_id, group_instance_id, metadata)


@dataclass(eq=False)
class Group:
    group_id: str
    state: str = EMPTY
    generation: int = 0
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)  # instance id -> member id
    pending_members: dict[str, TimerHandle] = field(default_factory=dict)  # KIP-394
    offsets: dict[tuple[str, int], OffsetAndMetadata] = field(default_factory=dict)
    join_timer: TimerHandle | None = None
    initial_delay_pending: bool = False
    new_member_added: bool = False  # a member joined during the initial delay: wait one more
    # ms the group last entered Empty or CompletingRebalance (offset retention of an Empty
    # group counts from it; persisted in GROUP_META); None: not known (a group only
    # committed to, or loaded from an entry written before it was persisted)
    state_timestamp: int | None = None
    previous: tuple[str, int | None] | None = None  # (state, timestamp) before the last transition
    # the last GROUP_META written or replayed (what the snapshot stores); None: none yet
    meta_entry: bytes | None = None

    def subscribed_topics(self) -> set[str] | None:
        """Topics of the members' consumer subscriptions; None when unknown."""
        if self.protocol_type != "consumer" or self.protocol_name is None:
            return None
        topics: set[str] = set()
        for m in self.members.values():
            parsed = _parse_subscription(m.metadata_for(self.protocol_name))
            if parsed is None:
                return None
            topics |= parsed
        return topics


def _parse_subscription(meta: bytes) -> set[str] | None:
    try:
        pos = 2  # i16 version
        (n,) = _I32.unpack_from(meta, pos)
        pos += 4
        out = set()
        for _ in range(n):
            (ln,) = struct.unpack_from(">h", meta, pos)
            pos += 2
            out.add(bytes(meta[pos:pos + ln]).decode())
            pos += ln
        return out
    except Exception:
        return None


def _inconsistent(requested: str | None, current: str | None) -> bool:
    """SyncGroup's protocol check (Kafka's isProtocolInconsistent): only when both are set."""
    return requested is not None and current is not None and requested != current


async def _parked(fut: asyncio.Future) -> Any:
    """A JoinGroup or SyncGroup parked on its member's future. A handler can
    be cancelled (the broker closes its connection, or shuts down; a client's
    own disconnect does not: its requests still run, see broker/network/server.py);
    the member's future must not be: in Kafka the member still counts as
    having joined (or synced), so the join completes as soon as the others
    are in rather than at the rebalance timeout, and the member's session,
    not its socket, decides when it goes."""
    return await asyncio.shield(fut)


def _resolve(fut: asyncio.Future | None, value) -> None:
    if fut is not None and not fut.done():
        fut.set_result(value)


class GroupCoordinator:
    def __init__(self, config, log: GroupLog, clock: Clock) -> None:
        self.config = config
        self.log = log          # where durable changes go (the broker: the WAL)
        self.clock = clock      # every timer and timestamp
        self.groups: dict[str, Group] = {}
        self._expiry_timer: TimerHandle | None = None
        self._commits_in_flight: dict[str, int] = {}  # group id -> commits awaiting fsync
        self.loading = True  # until the snapshot and the WAL's group entries are replayed
        # Whether this broker coordinates a group now (the broker's CoordinatorShards:
        # NONE, NOT_COORDINATOR, or COORDINATOR_LOAD_IN_PROGRESS); everything, by default
        self.shard_error: Callable[[str], int] = lambda group_id: ErrorCode.NONE
        # The KIP-848 consumer groups (coordinator/consumer_group.py): they share this
        # coordinator's group ids, offsets and partitions, and unload and stop with it
        self.consumer: Any = None

    def group_error(self, group_id: str) -> int:
        """Why this broker cannot answer for ``group_id`` now (NONE if it can)."""
        if self.loading:
            return ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        return self.shard_error(group_id)

    def unload(self, belongs: Callable[[str], bool]) -> int:
        """Forget the groups ``belongs`` selects: their coordinator partition
        moved to another broker, which loads them from its snapshot. Members
        waiting in JoinGroup or SyncGroup are answered NOT_COORDINATOR (they
        find the new coordinator and rejoin there)."""
        gone = [gid for gid in self.groups if belongs(gid)]
        for gid in gone:
            g = self.groups.pop(gid)
            self._cancel_timers(g)
            for m in g.members.values():
                _resolve(m.join_future, JoinResult(ErrorCode.NOT_COORDINATOR, member_id=m.member_id))
                _resolve(m.sync_future, (ErrorCode.NOT_COORDINATOR, b""))
            self._commits_in_flight.pop(gid, None)
        if self.consumer is not None:
            self.consumer.unload(belongs)
        return len(gone)

    def finish_loading(self) -> None:
        """Replay is done: restored members' sessions start (``on_loaded``), group
        requests are answered, offset expiry starts (needs a running loop)."""
        self.loading = False
        self.on_loaded()
        self.start_expiry()
        log.info("group coordinator loaded: %d groups", len(self.groups))

    # ------------------------------------------------------------ durability
    def replay(self, key: bytes, data: bytes) -> None:
        group_id = key.decode()
        op = data[0]
        if op >= OP_CONSUMER_FIRST:  # a KIP-848 consumer group's entry (consumer_group.py)
            if self.consumer is not None:
                self.consumer.replay(group_id, data)
            return
        if op == OP_DELETE_GROUP:
            self.groups.pop(group_id, None)
            return
        g = self.groups.get(group_id)
        if g is None:
            g = self.groups[group_id] = Group(group_id)
        if op == OP_GROUP_META:
            self._restore(g, bytes(data))
            return
        for topic, partition, om in _decode_offsets(data):
            if op == OP_COMMIT:
                g.offsets[(topic, partition)] = om
            else:
                g.offsets.pop((topic, partition), None)

    def snapshot_entries(self) -> list[tuple[bytes, bytes]]:
        """Every durable fact as log-entry payloads (GROUP_META, then one COMMIT
        of all offsets per group): replaying them with ``replay`` rebuilds the
        durable state. Snapshots in the bucket let the log entries they cover
        be dropped; replaying an entry again on top of a newer snapshot is
        harmless because every entry sets or removes state, it never adds to it."""
        return self._entries(self.groups.values()) + self._consumer_entries(lambda gid: True)

    def _consumer_entries(self, selected: Callable[[str], bool]) -> list[tuple[bytes, bytes]]:
        return self.consumer.entries(selected) if self.consumer is not None else []

    def shard_entries(self, shard: int, shard_of: Callable[[str], int]) -> list[tuple[bytes, bytes]]:
        """``snapshot_entries`` of one coordinator partition: the groups with
        ``shard_of(group_id) == shard``."""
        return (self._entries(g for g in self.groups.values() if shard_of(g.group_id) == shard)
                + self._consumer_entries(lambda gid: shard_of(gid) == shard))

    def _restore(self, g: Group, data: bytes) -> None:
        """A GROUP_META replayed: the group as the entry describes it, as Kafka's
        ``replay(GroupMetadataKey, GroupMetadataValue)`` builds it: Stable with
        its members if it has any, else Empty (set directly: a load is not a
        transition). Timers start in ``on_loaded``."""
        meta = _decode_group_meta(data)
        self._cancel_timers(g)
        g.pending_members.clear()
        g.join_timer = None
        g.generation, g.protocol_type = meta.generation, meta.protocol_type
        g.state_timestamp = meta.state_timestamp
        g.protocol_name, g.leader_id = meta.protocol_name, meta.leader_id
        g.members = {m.member_id: m for m in meta.members(g.protocol_type or "")}
        g.static_members = {m.group_instance_id: m.member_id for m in g.members.values()
                            if m.group_instance_id}
        g.state = STABLE if g.members else EMPTY
        g.previous = None
        g.meta_entry = data

    def on_loaded(self, belongs: Callable[[str], bool] | None = None) -> None:
        """Kafka's ``GroupMetadataManager.onLoaded`` for the groups ``belongs``
        selects (all by default): every restored member's session starts now,
        and a group above ``group.max.size`` (the config may have changed)
        rebalances."""
        for g in self.groups.values():
            if belongs is not None and not belongs(g.group_id):
                continue
            for m in g.members.values():
                if m.timer is None:
                    self._schedule_session(g, m)
            if g.members:
                log.info("group %s: loaded at generation %d with %d members", g.group_id, g.generation,
                         len(g.members))
            if g.state == STABLE and len(g.members) > self.config["group.max.size"]:
                self._prepare_rebalance(g, f"freshly-loaded group (size {len(g.members)}) is over "
                                           f"capacity {self.config['group.max.size']}")

    @staticmethod
    def _entries(groups: Iterable[Group]) -> list[tuple[bytes, bytes]]:
        out = []
        for g in groups:
            if g.state == DEAD:
                continue
            key = g.group_id.encode()
            if g.meta_entry is not None:  # the durable record, whatever the group does meanwhile
                out.append((key, g.meta_entry))
            else:  # never rebalanced (offsets only, or its first rebalance under way): no members
                out.append((key, _encode_group_meta(g, None)))
            if g.offsets:
                out.append((key, _encode_offsets(OP_COMMIT, [(t, p, om) for (t, p), om in g.offsets.items()])))
        return out

    def _persist(self, group_id: str, data: bytes) -> asyncio.Future:
        return self.log.append(group_id, data)

    def _persist_meta(self, g: Group, assignment: dict[str, bytes] | None = None) -> asyncio.Future:
        """Write the group's GROUP_META (Kafka's group metadata record) with
        ``assignment`` (member id -> bytes; None: no members, Empty). It is the
        group's ``meta_entry`` from now (a failed write is put back). The
        future never raises out of a callback nobody awaits; a failure to
        queue (the WAL refuses) is returned as a failed future."""
        entry = _encode_group_meta(g, assignment)
        before, g.meta_entry = g.meta_entry, entry
        try:
            fut = self._persist(g.group_id, entry)
        except Exception as exc:
            fut = asyncio.get_running_loop().create_future()
            fut.set_exception(exc)

        def done(f: asyncio.Future) -> None:
            if (f.cancelled() or f.exception() is not None) and g.meta_entry is entry:
                g.meta_entry = before
        fut.add_done_callback(done)
        return fut

    # ------------------------------------------------------- offset retention
    def retention_ms(self) -> int:
        ms = self.config["offsets.retention.ms"]
        return ms if ms >= 0 else self.config["offsets.retention.minutes"] * 60_000

    def start_expiry(self) -> None:
        """Start the periodic offset-expiry check (needs a running loop)."""
        interval = self.config["offsets.retention.check.interval.ms"] / 1000
        self._expiry_timer = self.clock.call_later(interval, self._expiry_tick)

    def _expiry_tick(self) -> None:
        try:
            self.expire_offsets()
        except Exception:  # never stop checking
            log.exception("offset expiry failed")
        self.start_expiry()

    def expire_offsets(self, now_ms: int | None = None) -> int:
        """Kafka's GroupMetadata.removeExpiredOffsets for every group; returns how many expired."""
        now = self.clock.now_ms() if now_ms is None else now_ms
        retention = self.retention_ms()
        total = 0
        base: Callable[..., int]    # (om) -> the time its retention counts from
        keep: set[str] | None
        for g in list(self.groups.values()):
            if g.state == DEAD:
                continue
            live = self.consumer.get(g.group_id) if self.consumer is not None else None
            if live is not None and live.members:  # a consumer group with members keeps its offsets
                continue
            if g.protocol_type is not None and g.state == EMPTY:
                base, keep = (lambda om, ts=g.state_timestamp:
                              ts if ts is not None and ts >= 0 else om.commit_timestamp), None
            elif g.protocol_type is None:
                base, keep = (lambda om: om.commit_timestamp), None
            elif g.state == STABLE and (subscribed := g.subscribed_topics()) is not None:
                base, keep = (lambda om: om.commit_timestamp), subscribed
            else:
                continue
            expired = {k: om for k, om in g.offsets.items()
                       if (keep is None or k[0] not in keep) and now - base(om) >= retention}
            if expired:
                total += len(expired)
                log.info("group %s: %d offsets expired", g.group_id, len(expired))
            if expired or (g.state == EMPTY and not g.offsets):
                self._expire(g, expired)
        if self.consumer is not None:  # empty consumer groups without offsets go too, as in Kafka
            self.consumer.expire_empty(lambda gid: gid in self.groups and bool(self.groups[gid].offsets))
        return total

    def _expire(self, g: Group, expired: dict) -> None:
        """Tombstone ``expired``; an Empty group left without offsets is removed (Kafka: Dead)."""
        remove_group = (g.state == EMPTY and not g.members and not g.pending_members
                        and len(expired) == len(g.offsets)
                        and not self._commits_in_flight.get(g.group_id))
        if not remove_group and not expired:
            return
        fut: asyncio.Future | None = None
        if expired:
            fut = self._persist(g.group_id, _encode_offsets(OP_DELETE_OFFSETS, [(t, p, None) for t, p in expired]))
            fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        if remove_group:
            fut = self._persist(g.group_id, _U8.pack(OP_DELETE_GROUP))
        assert fut is not None  # expired or remove_group: see the return above

        def apply(f: asyncio.Future) -> None:  # the last entry's fsync covers both
            if f.cancelled() or f.exception() is not None:
                return
            for k, om in expired.items():
                if g.offsets.get(k) is om:  # not re-committed meanwhile
                    del g.offsets[k]
            if (remove_group and g.state == EMPTY and not g.members and not g.offsets
                    and self.groups.get(g.group_id) is g):
                self._transition(g, DEAD)
                del self.groups[g.group_id]
                log.info("group %s: removed (empty, all offsets expired)", g.group_id)
        fut.add_done_callback(apply)

    def shutdown(self) -> None:
        if self._expiry_timer:
            self._expiry_timer.cancel()
        if self.consumer is not None:
            self.consumer.shutdown()
        for g in self.groups.values():
            self._cancel_timers(g)

    @staticmethod
    def _cancel_timers(g: Group) -> None:
        """The group's rebalance, pending-member and session timers."""
        if g.join_timer:
            g.join_timer.cancel()
        for h in g.pending_members.values():
            h.cancel()
        for m in g.members.values():
            if m.timer:
                m.timer.cancel()

    # ----------------------------------------------------------------- states
    def _transition(self, g: Group, new_state: str, *, revert: bool = False) -> None:
        """The one place a group's state changes: only as ``VALID_PREVIOUS``
        allows (else IllegalGroupTransition); entering Empty or
        CompletingRebalance stamps the state timestamp.
        ``revert=True`` undoes the group's last transition (its write failed):
        only back to the state it came from, with that state's timestamp."""
        if revert:
            if g.previous is None or g.previous[0] != new_state:
                raise IllegalGroupTransition(g.group_id, g.state, new_state)
            g.state, g.state_timestamp = g.previous
            g.previous = None
            return
        if g.state not in VALID_PREVIOUS[new_state]:
            raise IllegalGroupTransition(g.group_id, g.state, new_state)
        g.previous = (g.state, g.state_timestamp)
        g.state = new_state
        if new_state in _STAMPED:
            g.state_timestamp = self.clock.now_ms()

    # ---------------------------------------------------------------- timers
    def _schedule_session(self, g: Group, m: Member, timeout_ms: int | None = None) -> None:
        if m.timer:
            m.timer.cancel()
        delay = (timeout_ms if timeout_ms is not None else m.session_timeout_ms) / 1000
        m.timer = self.clock.call_later(delay, self._session_expired, g, m)

    def _session_expired(self, g: Group, m: Member) -> None:
        m.timer = None
        if g.members.get(m.member_id) is not m:
            return
        if m.awaiting:  # a member blocked in JoinGroup / SyncGroup is alive
            self._schedule_session(g, m)
            return
        log.info("group %s: member %s session expired", g.group_id, m.member_id)
        self._remove_member(g, m, "session timeout")

    # ------------------------------------------------------------ rebalances
    def _remove_member(self, g: Group, m: Member, reason: str) -> None:
        g.members.pop(m.member_id, None)
        if m.group_instance_id and g.static_members.get(m.group_instance_id) == m.member_id:
            del g.static_members[m.group_instance_id]
        if m.timer:
            m.timer.cancel()
            m.timer = None
        _resolve(m.join_future, JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id=m.member_id))
        _resolve(m.sync_future, (ErrorCode.UNKNOWN_MEMBER_ID, b""))
        if g.state in (STABLE, COMPLETING):
            self._prepare_rebalance(g, reason)
        elif g.state == PREPARING:
            self._maybe_complete_join(g)

    def _prepare_rebalance(self, g: Group, reason: str) -> None:
        if g.state == COMPLETING:
            for m in g.members.values():
                m.assignment = b""
                _resolve(m.sync_future, (ErrorCode.REBALANCE_IN_PROGRESS, b""))
        was_empty = g.state == EMPTY
        self._transition(g, PREPARING)
        log.info("group %s: preparing rebalance (generation %d): %s", g.group_id, g.generation, reason)
        if g.join_timer:
            g.join_timer.cancel()
        rebalance_ms = max((m.rebalance_timeout_ms for m in g.members.values()), default=0)
        delay_ms = self.config["group.initial.rebalance.delay.ms"]
        if was_empty and delay_ms > 0:
            g.initial_delay_pending = True
            g.new_member_added = False
            self._schedule_initial_delay(g, delay_ms, max(rebalance_ms - delay_ms, 0))
        else:
            g.initial_delay_pending = False
            g.join_timer = self.clock.call_later(rebalance_ms / 1000, self._complete_join, g)

    def _schedule_initial_delay(self, g: Group, delay_ms: int, remaining_ms: int) -> None:
        g.join_timer = self.clock.call_later(delay_ms / 1000, self._initial_delay_done, g, delay_ms,
                                             remaining_ms)

    def _initial_delay_done(self, g: Group, delay_ms: int, remaining_ms: int) -> None:
        """Kafka's InitialDelayedJoin: while new members keep arriving, wait another
        delay, all of it within the rebalance timeout, so a group whose consumers
        start together forms in one rebalance instead of one per late member."""
        if g.new_member_added and remaining_ms > 0:
            g.new_member_added = False
            self._schedule_initial_delay(g, min(self.config["group.initial.rebalance.delay.ms"], remaining_ms),
                                         max(remaining_ms - delay_ms, 0))
            return
        g.initial_delay_pending = False
        g.join_timer = self.clock.call_later(remaining_ms / 1000, self._complete_join, g)
        self._maybe_complete_join(g)

    def _maybe_complete_join(self, g: Group) -> None:
        if g.state != PREPARING or g.initial_delay_pending:
            return
        if g.pending_members:
            return
        if all(m.join_future is not None and not m.join_future.done() for m in g.members.values()):
            self._complete_join(g)

    def _complete_join(self, g: Group) -> None:
        if g.state != PREPARING:
            return
        if g.join_timer:
            g.join_timer.cancel()
            g.join_timer = None
        g.initial_delay_pending = False
        for m in list(g.members.values()):
            if m.join_future is None or m.join_future.done():
                log.info("group %s: member %s did not rejoin in time", g.group_id, m.member_id)
                g.members.pop(m.member_id)
                if m.group_instance_id and g.static_members.get(m.group_instance_id) == m.member_id:
                    del g.static_members[m.group_instance_id]
                if m.timer:
                    m.timer.cancel()
                _resolve(m.sync_future, (ErrorCode.UNKNOWN_MEMBER_ID, b""))
        for _mid, h in list(g.pending_members.items()):
            h.cancel()
        g.pending_members.clear()
        g.generation += 1
        if not g.members:
            self._transition(g, EMPTY)
            g.protocol_name, g.leader_id = None, None
            self._persist_meta(g)
            log.info("group %s: empty at generation %d", g.group_id, g.generation)
            return
        g.protocol_name = self._select_protocol(g)
        if g.leader_id not in g.members:
            g.leader_id = next(iter(g.members))
        self._transition(g, COMPLETING)  # nothing written yet: the leader's SyncGroup writes it
        log.info("group %s: generation %d, protocol %s, leader %s, %d members", g.group_id,
                 g.generation, g.protocol_name, g.leader_id, len(g.members))
        everyone = [(m.member_id, m.group_instance_id, m.metadata_for(g.protocol_name))
                    for m in g.members.values()]
        for m in g.members.values():
            m.is_new = False
            m.assignment = b""
            _resolve(m.join_future, JoinResult(
                ErrorCode.NONE, g.generation, g.protocol_type, g.protocol_name, g.leader_id,
                m.member_id, everyone if m.member_id == g.leader_id else []))
            m.join_future = None
            self._schedule_session(g, m)

    @staticmethod
    def _candidates(g: Group, extra: list[str] | None = None) -> set[str]:
        sets = [set(m.protocol_names()) for m in g.members.values()]
        if extra is not None:
            sets.append(set(extra))
        return set.intersection(*sets) if sets else set()

    def _select_protocol(self, g: Group) -> str:
        candidates = self._candidates(g)
        votes: dict[str, int] = {}
        for m in g.members.values():
            choice = next(n for n in m.protocol_names() if n in candidates)
            votes[choice] = votes.get(choice, 0) + 1
        # Most votes wins; ties go to the leader's (first member's) preference order.
        first = next(iter(g.members.values())).protocol_names()
        return max(votes, key=lambda n: (votes[n], -first.index(n) if n in first else 0))

    # --------------------------------------------------------------- JoinGroup
    async def join_group(self, *, version: int, group_id: str, member_id: str,
                         group_instance_id: str | None, client_id: str, client_host: str,
                         session_timeout_ms: int, rebalance_timeout_ms: int,
                         protocol_type: str, protocols: list[tuple[str, bytes]]) -> JoinResult:
        if not group_id:
            return JoinResult(ErrorCode.INVALID_GROUP_ID, member_id=member_id)
        err = self.group_error(group_id)
        if err:
            return JoinResult(err, member_id=member_id)
        if not (self.config["group.min.session.timeout.ms"] <= session_timeout_ms
                <= self.config["group.max.session.timeout.ms"]):
            return JoinResult(ErrorCode.INVALID_SESSION_TIMEOUT, member_id=member_id)
        if rebalance_timeout_ms < 0:
            rebalance_timeout_ms = session_timeout_ms
        cg = self.consumer.get(group_id) if self.consumer is not None else None
        if cg is not None and cg.members and self.consumer.classic_protocol is None:
            return JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, member_id=member_id)
        if cg is not None and cg.members:   # a classic member inside a consumer group (online migration)
            res, durable = self.consumer.classic_protocol.join(
                cg, version=version, member_id=member_id, instance_id=group_instance_id, client_id=client_id,
                client_host=client_host, session_timeout_ms=session_timeout_ms,
                rebalance_timeout_ms=rebalance_timeout_ms, protocol_type=protocol_type, protocols=protocols)
            return await _answer_when_durable(res, durable, JoinResult(ErrorCode.NOT_COORDINATOR,
                                                                       member_id=member_id))
        if cg is not None:   # an empty consumer group becomes a classic group, as Kafka converts it
            self.consumer.delete_empty(group_id)
        g = self.groups.get(group_id)
        if g is None:
            if member_id:
                return JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id=member_id)
            g = self.groups[group_id] = Group(group_id)
        if g.state == DEAD:
            return JoinResult(ErrorCode.COORDINATOR_NOT_AVAILABLE, member_id=member_id)
        names = [n for n, _ in protocols]
        if not protocol_type or not protocols or (
                g.members and (protocol_type != g.protocol_type or not self._candidates(g, names))):
            return JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, member_id=member_id)

        def new_member(mid: str) -> Member:
            return Member(mid, group_instance_id, client_id, client_host, session_timeout_ms,
                          rebalance_timeout_ms, protocol_type, list(protocols))

        if not member_id:
            if len(g.members) >= self.config["group.max.size"]:
                return JoinResult(ErrorCode.GROUP_MAX_SIZE_REACHED)
            new_id = f"{group_instance_id or client_id or 'member'}-{uuid.uuid4()}"
            if group_instance_id:
                old_id = g.static_members.get(group_instance_id)
                if old_id is not None and old_id in g.members:
                    return await self._replace_static(g, g.members[old_id], new_member(new_id))
                new = new_member(new_id)
                g.static_members[group_instance_id] = new_id
                return await self._add_and_rebalance(g, new)
            if version >= 4:  # KIP-394: the member must come back with this id
                g.pending_members[new_id] = self.clock.call_later(
                    session_timeout_ms / 1000, self._pending_expired, g, new_id)
                return JoinResult(ErrorCode.MEMBER_ID_REQUIRED, member_id=new_id)
            return await self._add_and_rebalance(g, new_member(new_id))

        if member_id in g.pending_members:
            g.pending_members.pop(member_id).cancel()
            return await self._add_and_rebalance(g, new_member(member_id))
        err, m = self._validate_member(g, member_id, group_instance_id)
        if err:
            return JoinResult(err, member_id=member_id)
        assert m is not None  # _validate_member answered NONE
        m.client_id, m.client_host = client_id, client_host
        if g.state == PREPARING:
            return await self._update_and_wait(g, m, protocols, session_timeout_ms, rebalance_timeout_ms)
        if g.state == COMPLETING and m.protocols == list(protocols):
            return self._current(g, m)
        if g.state == STABLE and m.member_id != g.leader_id and m.protocols == list(protocols):
            self._schedule_session(g, m)
            return self._current(g, m)
        m.protocols = list(protocols)
        m.session_timeout_ms, m.rebalance_timeout_ms = session_timeout_ms, rebalance_timeout_ms
        fut = self._await_join(m)
        self._prepare_rebalance(g, f"member {member_id} rejoined")
        self._maybe_complete_join(g)
        return await _parked(fut)

    def _current(self, g: Group, m: Member) -> JoinResult:
        assert g.protocol_name is not None  # only answered in CompletingRebalance or Stable
        members = ([(x.member_id, x.group_instance_id, x.metadata_for(g.protocol_name))
                    for x in g.members.values()] if m.member_id == g.leader_id else [])
        return JoinResult(ErrorCode.NONE, g.generation, g.protocol_type, g.protocol_name,
                          g.leader_id or "", m.member_id, members)

    def _pending_expired(self, g: Group, member_id: str) -> None:
        if g.pending_members.pop(member_id, None) is not None:
            self._maybe_complete_join(g)

    def _await_join(self, m: Member) -> asyncio.Future:
        _resolve(m.join_future, JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id=m.member_id))
        m.join_future = asyncio.get_running_loop().create_future()
        return m.join_future

    async def _add_and_rebalance(self, g: Group, m: Member) -> JoinResult:
        if g.state == PREPARING and g.generation == 0:  # as Kafka: only a group's first rebalance
            g.new_member_added = True
        if not g.members:
            g.protocol_type = m.protocol_type
        g.members[m.member_id] = m
        fut = self._await_join(m)
        if g.state in (EMPTY, STABLE, COMPLETING):
            self._prepare_rebalance(g, f"member {m.member_id} joined")
        self._maybe_complete_join(g)
        return await _parked(fut)

    async def _update_and_wait(self, g, m, protocols, session_ms, rebalance_ms) -> JoinResult:
        m.protocols = list(protocols)
        m.session_timeout_ms, m.rebalance_timeout_ms = session_ms, rebalance_ms
        fut = self._await_join(m)
        self._maybe_complete_join(g)
        return await _parked(fut)

    async def _replace_static(self, g: Group, old: Member, m: Member) -> JoinResult:
        """A static member rejoined with an empty member id: it takes over the old id's place."""
        _resolve(old.join_future, JoinResult(ErrorCode.FENCED_INSTANCE_ID, member_id=old.member_id))
        _resolve(old.sync_future, (ErrorCode.FENCED_INSTANCE_ID, b""))
        if old.timer:
            old.timer.cancel()
        assert m.group_instance_id is not None  # only static members are replaced
        del g.members[old.member_id]
        m.assignment = old.assignment
        m.is_new = False
        g.members[m.member_id] = m
        g.static_members[m.group_instance_id] = m.member_id
        if g.leader_id == old.member_id:
            g.leader_id = m.member_id
        if g.state == STABLE and self._select_protocol(g) == g.protocol_name:
            # No rebalance while the group's protocol stays (Kafka's selectProtocol check; a
            # member restored by a load supports only that one): the member keeps its
            # assignment (it will SyncGroup for it). As Kafka, the group is stored with the
            # new member id before the answer; if that fails, the old member is put back
            # and the new one told the error.
            self._schedule_session(g, m)
            stored = self._persist_meta(g, {x.member_id: x.assignment for x in g.members.values()})
            try:
                await asyncio.shield(stored)
            except Exception as exc:
                if g.members.get(m.member_id) is m:
                    log.warning("group %s: storing static member %s failed (%s); reverting to %s",
                                g.group_id, m.member_id, exc, old.member_id)
                    if m.timer:
                        m.timer.cancel()
                    del g.members[m.member_id]
                    g.members[old.member_id] = old
                    g.static_members[m.group_instance_id] = old.member_id
                    if g.leader_id == m.member_id:
                        g.leader_id = old.member_id
                    self._schedule_session(g, old)
                return JoinResult(ErrorCode.NOT_COORDINATOR, g.generation, g.protocol_type,
                                  g.protocol_name, g.leader_id or "", "")
            log.info("group %s: static member %s replaced %s without rebalance", g.group_id,
                     m.member_id, old.member_id)
            return self._current(g, m)
        fut = self._await_join(m)
        if g.state == PREPARING:
            self._maybe_complete_join(g)
        else:
            self._prepare_rebalance(g, f"static member {m.group_instance_id} rejoined")
            self._maybe_complete_join(g)
        return await _parked(fut)

    # ------------------------------------------------- member checks (all APIs)
    @staticmethod
    def _validate_member(g: Group, member_id: str, instance_id: str | None) -> tuple[int, Member | None]:
        """Kafka's ClassicGroup.validateMember, shared by every API that names a
        member: an instance id must be a known static member's (else
        UNKNOWN_MEMBER_ID) and map to this member id (else FENCED_INSTANCE_ID);
        the member id must be known. Generation and state are checked after it,
        by the caller, in the order Kafka does."""
        if instance_id:  # an empty instance id counts as none, as JoinGroup treats it
            current = g.static_members.get(instance_id)
            if current is None:
                return ErrorCode.UNKNOWN_MEMBER_ID, None
            if current != member_id:
                return ErrorCode.FENCED_INSTANCE_ID, None
        m = g.members.get(member_id)
        if m is None:
            return ErrorCode.UNKNOWN_MEMBER_ID, None
        return ErrorCode.NONE, m

    # --------------------------------------------------------------- SyncGroup
    async def sync_group(self, *, group_id: str, generation: int, member_id: str,
                         group_instance_id: str | None, protocol_type: str | None,
                         protocol_name: str | None,
                         assignments: dict[str, bytes]) -> tuple[int, bytes, Group | SyncedProtocol | None]:
        """Kafka's order: unknown or Empty group, Dead, member, generation,
        protocol, then the state (PreparingRebalance: REBALANCE_IN_PROGRESS)."""
        if not group_id:
            return ErrorCode.INVALID_GROUP_ID, b"", None
        if self.loading:  # the rebalance is lost: the member must start over at JoinGroup
            return ErrorCode.REBALANCE_IN_PROGRESS, b"", None
        err = self.shard_error(group_id)
        if err:
            return (ErrorCode.REBALANCE_IN_PROGRESS if err == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
                    else err), b"", None
        cg = self._inside_consumer_group(group_id)
        if cg is not None:   # a classic member inside a consumer group
            err, assignment = self.consumer.classic_protocol.sync(
                cg, generation=generation, member_id=member_id, instance_id=group_instance_id,
                protocol_type=protocol_type, protocol_name=protocol_name)
            return err, assignment, SyncedProtocol(protocol_type, protocol_name)
        g = self.groups.get(group_id)
        if g is None or g.state == EMPTY:
            return ErrorCode.UNKNOWN_MEMBER_ID, b"", g
        if g.state == DEAD:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, b"", g
        err, m = self._validate_member(g, member_id, group_instance_id)
        if err:
            return err, b"", g
        assert m is not None  # _validate_member answered NONE
        if generation != g.generation:
            return ErrorCode.ILLEGAL_GENERATION, b"", g
        if _inconsistent(protocol_type, g.protocol_type) or _inconsistent(protocol_name, g.protocol_name):
            return ErrorCode.INCONSISTENT_GROUP_PROTOCOL, b"", g
        if g.state == PREPARING:
            return ErrorCode.REBALANCE_IN_PROGRESS, b"", g
        if g.state == STABLE:
            self._schedule_session(g, m)
            return ErrorCode.NONE, m.assignment, g
        # CompletingRebalance
        _resolve(m.sync_future, (ErrorCode.REBALANCE_IN_PROGRESS, b""))
        fut = m.sync_future = asyncio.get_running_loop().create_future()
        self._schedule_session(g, m)
        if member_id == g.leader_id:
            self._store_assignment(g, {x.member_id: assignments.get(x.member_id, b"")
                                       for x in g.members.values()})
        err, assignment = await _parked(fut)
        return err, assignment, g

    def _store_assignment(self, g: Group, assignment: dict[str, bytes]) -> None:
        """The leader's assignment: written with the members (Kafka's
        storeGroup), and only once durable applied, the group Stable and
        every waiting SyncGroup answered. If the group moved on meanwhile
        (a member joined or left), the write changes nothing here. A failed
        write answers them NOT_COORDINATOR (Kafka's mapping of a storage
        error) and the group prepares a rebalance."""
        generation = g.generation

        def stored(f: asyncio.Future) -> None:
            if g.state != COMPLETING or g.generation != generation or self.groups.get(g.group_id) is not g:
                return
            if f.cancelled() or f.exception() is not None:
                log.warning("group %s: storing the assignment of generation %d failed (%s); rebalancing",
                            g.group_id, generation, "cancelled" if f.cancelled() else f.exception())
                for x in g.members.values():
                    x.assignment = b""
                    _resolve(x.sync_future, (ErrorCode.NOT_COORDINATOR, b""))
                    x.sync_future = None
                self._prepare_rebalance(g, "error when storing group assignment during SyncGroup")
                return
            for x in g.members.values():
                x.assignment = assignment.get(x.member_id, b"")
            self._transition(g, STABLE)
            log.info("group %s: stable at generation %d", g.group_id, g.generation)
            for x in g.members.values():
                _resolve(x.sync_future, (ErrorCode.NONE, x.assignment))
                x.sync_future = None
        self._persist_meta(g, assignment).add_done_callback(stored)

    # ------------------------------------------- online migration (classic_members.py)
    def _inside_consumer_group(self, group_id: str) -> Any:
        """The non-empty consumer group of that id whose classic members are served
        by ``consumer.classic_protocol`` (None: a classic group's request)."""
        if self.consumer is None or self.consumer.classic_protocol is None:
            return None
        cg = self.consumer.get(group_id)
        return cg if cg is not None and cg.members else None

    def give_way(self, g: Group) -> None:
        """The group is upgraded to a consumer group (Kafka's convertToConsumerGroup):
        members waiting in JoinGroup or SyncGroup are told REBALANCE_IN_PROGRESS, and
        the group keeps only its offsets: Empty, its GROUP_META written without members
        (Kafka's classic group tombstone; the offsets stay)."""
        for m in g.members.values():
            _resolve(m.join_future, JoinResult(ErrorCode.REBALANCE_IN_PROGRESS, member_id=m.member_id))
            _resolve(m.sync_future, (ErrorCode.REBALANCE_IN_PROGRESS, b""))
            m.join_future = m.sync_future = None
        self._cancel_timers(g)
        g.members.clear()
        g.static_members.clear()
        g.pending_members.clear()
        g.join_timer = None
        g.initial_delay_pending = False
        g.protocol_name = g.leader_id = None
        g.state, g.previous, g.state_timestamp = EMPTY, None, self.clock.now_ms()   # a conversion, not a transition
        self._persist_meta(g).add_done_callback(lambda f: f.cancelled() or f.exception())

    def adopt(self, group_id: str, generation: int, members: list[Member],
              assignment: Callable[[Member, str], bytes], reason: str) -> asyncio.Future:
        """A consumer group downgraded (Kafka's convertToClassicGroup): the classic
        group gets ``members`` at ``generation``, Stable with ``assignment(member,
        protocol)`` each, written as GROUP_META; then it rebalances. Returns the write."""
        g = self.groups.get(group_id)
        if g is None:
            g = self.groups[group_id] = Group(group_id)
        self._cancel_timers(g)
        g.pending_members.clear()
        g.generation, g.protocol_type = generation, members[0].protocol_type
        g.members = {m.member_id: m for m in members}
        g.static_members = {m.group_instance_id: m.member_id for m in members if m.group_instance_id}
        g.protocol_name = self._select_protocol(g)
        g.leader_id = members[0].member_id
        for m in members:
            m.assignment = assignment(m, g.protocol_name)
        g.state, g.previous = STABLE, None   # a conversion, not a transition
        fut = self._persist_meta(g, {m.member_id: m.assignment for m in members})
        for m in members:
            self._schedule_session(g, m)
        self._prepare_rebalance(g, reason)
        return fut

    # --------------------------------------------------------------- Heartbeat
    def heartbeat(self, group_id: str, generation: int, member_id: str, instance_id: str | None) -> int:
        """Kafka's order: unknown group, Dead, member, generation, then the state:
        a heartbeat of an older generation is ILLEGAL_GENERATION even while the
        group prepares a rebalance (the member has missed one: it rejoins
        without its partitions rather than keep them)."""
        if not group_id:
            return ErrorCode.INVALID_GROUP_ID
        err = self.group_error(group_id)
        if err == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS:  # as Kafka: answered blindly until loaded
            return ErrorCode.NONE
        if err:
            return err
        cg = self._inside_consumer_group(group_id)
        if cg is not None:   # a classic member inside a consumer group
            err, durable = self.consumer.classic_protocol.heartbeat(cg, generation=generation, member_id=member_id,
                                                                     instance_id=instance_id)
            if durable is not None:
                durable.add_done_callback(lambda f: f.cancelled() or f.exception())
            return err
        g = self.groups.get(group_id)
        if g is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if g.state == DEAD:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        err, m = self._validate_member(g, member_id, instance_id)
        if err:
            return err
        assert m is not None  # _validate_member answered NONE
        if generation != g.generation:
            return ErrorCode.ILLEGAL_GENERATION
        if g.state == EMPTY:
            return ErrorCode.UNKNOWN_MEMBER_ID
        self._schedule_session(g, m)
        return ErrorCode.REBALANCE_IN_PROGRESS if g.state == PREPARING else ErrorCode.NONE

    # -------------------------------------------------------------- LeaveGroup
    def leave_group(self, group_id: str, members: list[tuple[str, str | None]]) -> tuple[int, list[int]]:
        """Per member, as Kafka: an empty member id leaves by instance id only;
        a pending (KIP-394) id leaves without a check; any other is validated
        like every member (unknown, fenced)."""
        if not group_id:
            return ErrorCode.INVALID_GROUP_ID, []
        err = self.group_error(group_id)
        if err:
            return err, []
        cg = self._inside_consumer_group(group_id)
        if cg is not None:   # classic members inside a consumer group
            left, durable = self.consumer.classic_protocol.leave(cg, members)
            if durable is not None:
                durable.add_done_callback(lambda f: f.cancelled() or f.exception())
            return ErrorCode.NONE, left
        g = self.groups.get(group_id)
        if g is None:
            return ErrorCode.NONE, [ErrorCode.UNKNOWN_MEMBER_ID] * len(members)
        if g.state == DEAD:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, []
        errors: list[int] = []
        for member_id, instance_id in members:
            m: Member | None = None
            if not member_id:  # an admin removing a static member by its instance id
                current = g.static_members.get(instance_id) if instance_id else None
                m = g.members.get(current) if current is not None else None
                err = ErrorCode.NONE if m is not None else ErrorCode.UNKNOWN_MEMBER_ID
            elif member_id in g.pending_members:
                g.pending_members.pop(member_id).cancel()
                self._maybe_complete_join(g)
                err = ErrorCode.NONE
            else:
                err, m = self._validate_member(g, member_id, instance_id)
            if m is not None:
                log.info("group %s: member %s left", g.group_id, m.member_id)
                self._remove_member(g, m, f"member {m.member_id} left")
            errors.append(err)
        return ErrorCode.NONE, errors

    # ----------------------------------------------------------------- offsets
    def check_commit(self, group_id: str, generation: int, member_id: str,
                     instance_id: str | None, version: int) -> int:
        """Kafka's ClassicGroup.validateOffsetCommit order: group Dead; a negative
        generation on an Empty group (a "simple" commit); the member (unknown,
        fenced); the generation (ILLEGAL_GENERATION); only then
        CompletingRebalance (REBALANCE_IN_PROGRESS). A commit of an older
        generation sent while the group completes a rebalance is therefore
        ILLEGAL_GENERATION: the client learns that generation is gone. A group
        that does not exist takes only simple commits; others get
        GROUP_ID_NOT_FOUND from v9, ILLEGAL_GENERATION before (as Kafka)."""
        err = self.group_error(group_id)
        if err:
            return err
        g = self.groups.get(group_id)
        if g is None:
            if generation < 0:
                return ErrorCode.NONE
            return ErrorCode.GROUP_ID_NOT_FOUND if version >= 9 else ErrorCode.ILLEGAL_GENERATION
        if g.state == DEAD:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        if generation < 0 and g.state == EMPTY:
            return ErrorCode.NONE  # a "simple" commit: no group membership involved
        if generation < 0 and not member_id and not instance_id:
            return ErrorCode.UNKNOWN_MEMBER_ID  # a simple commit into a group with members
        err, m = self._validate_member(g, member_id, instance_id)
        if err:
            return err
        assert m is not None  # _validate_member answered NONE
        if generation != g.generation:
            return ErrorCode.ILLEGAL_GENERATION
        if g.state == COMPLETING:
            return ErrorCode.REBALANCE_IN_PROGRESS
        self._schedule_session(g, m)
        return ErrorCode.NONE

    async def commit_offsets(self, group_id: str, commits: list[tuple[str, int, OffsetAndMetadata]]) -> None:
        """Make ``commits`` durable, then visible. Raises the WAL's error."""
        if not commits:
            return
        fut = self._persist(group_id, _encode_offsets(OP_COMMIT, commits))
        inflight = self._commits_in_flight
        inflight[group_id] = inflight.get(group_id, 0) + 1

        def apply(f: asyncio.Future) -> None:
            # In a callback, not after the await: a client that disconnects
            # (cancelling this handler) must not leave durable commits invisible.
            if inflight[group_id] <= 1:
                del inflight[group_id]
            else:
                inflight[group_id] -= 1
            if f.cancelled() or f.exception() is not None:
                return
            g = self.groups.get(group_id)
            if g is None:
                g = self.groups[group_id] = Group(group_id)
            for topic, partition, om in commits:
                g.offsets[(topic, partition)] = om
        fut.add_done_callback(apply)
        await fut

    async def delete_offsets(self, group_id: str, keys: list[tuple[str, int]]) -> None:
        if not keys:
            return
        fut = self._persist(group_id, _encode_offsets(OP_DELETE_OFFSETS, [(t, p, None) for t, p in keys]))

        def apply(f: asyncio.Future) -> None:
            if f.cancelled() or f.exception() is not None:
                return
            g = self.groups.get(group_id)
            if g is not None:
                for k in keys:
                    g.offsets.pop(k, None)
        fut.add_done_callback(apply)
        await fut

    async def delete_group(self, group_id: str) -> int:
        err = self.group_error(group_id)
        if err:
            return err
        g = self.groups.get(group_id)
        if g is None or g.state == DEAD:
            return ErrorCode.GROUP_ID_NOT_FOUND
        if g.state != EMPTY:
            return ErrorCode.NON_EMPTY_GROUP
        self._transition(g, DEAD)
        fut = self._persist(group_id, _U8.pack(OP_DELETE_GROUP))

        def apply(f: asyncio.Future) -> None:
            if f.cancelled() or f.exception() is not None:
                self._transition(g, EMPTY, revert=True)  # the tombstone is not durable
            elif self.groups.get(group_id) is g:
                del self.groups[group_id]
        fut.add_done_callback(apply)
        await fut
        return ErrorCode.NONE


@dataclass(slots=True)
class SyncedProtocol:
    """What a SyncGroup served inside a consumer group answers with (the request's own)."""
    protocol_type: str | None
    protocol_name: str | None


async def _answer_when_durable(res: JoinResult, durable: asyncio.Future | None, failed: JoinResult) -> JoinResult:
    """``res`` once ``durable`` (the group's new state) is written; ``failed`` if that fails."""
    if durable is None:
        return res
    try:
        await durable
    except Exception as exc:
        log.warning("group state not written (%s): JoinGroup answered %d", exc, failed.error)
        return failed
    return res


def _encode_offsets(op: int, items) -> bytes:
    out = [_U8.pack(op), _U32.pack(len(items))]
    for topic, partition, om in items:
        t = topic.encode()
        out.append(_U16.pack(len(t)) + t)
        if op == OP_COMMIT:
            out.append(_COMMIT.pack(partition, om.offset, om.leader_epoch, om.commit_timestamp))
            if om.metadata is None:
                out.append(_I32.pack(-1))
            else:
                md = om.metadata.encode()
                out.append(_I32.pack(len(md)) + md)
        else:
            out.append(_I32.pack(partition))
    return b"".join(out)


def _decode_offsets(data: bytes):
    op = data[0]
    (n,) = _U32.unpack_from(data, 1)
    pos = 5
    for _ in range(n):
        (ln,) = _U16.unpack_from(data, pos)
        pos += 2
        topic = data[pos:pos + ln].decode()
        pos += ln
        if op == OP_COMMIT:
            partition, offset, epoch, ts = _COMMIT.unpack_from(data, pos)
            pos += _COMMIT.size
            (mlen,) = _I32.unpack_from(data, pos)
            pos += 4
            md = None
            if mlen >= 0:
                md = data[pos:pos + mlen].decode()
                pos += mlen
            yield topic, partition, OffsetAndMetadata(offset, epoch, md, ts)
        else:
            (partition,) = _I32.unpack_from(data, pos)
            pos += 4
            yield topic, partition, None


_MEMBERS_V1 = 1
_TIMEOUTS = struct.Struct(">ii")  # session, rebalance timeout ms


def _put(out: list[bytes], b: bytes | None) -> None:
    """A str / bytes field of the members section: i32 length (-1 = null), then the bytes."""
    if b is None:
        out.append(_I32.pack(-1))
    else:
        out.append(_I32.pack(len(b)))
        out.append(b)


def _enc(s: str | None) -> bytes | None:
    return None if s is None else s.encode()


def _encode_group_meta(g: Group, assignment: dict[str, bytes] | None) -> bytes:
    """GROUP_META of ``g`` (see the module docstring): with its members and
    ``assignment`` (Kafka's storeGroup), or, when None, without members (the
    group is Empty, or never rebalanced)."""
    pt = (g.protocol_type or "").encode()
    out = [_U8.pack(OP_GROUP_META), _I32.pack(g.generation), _U16.pack(len(pt)), pt,
           struct.pack(">q", -1 if g.state_timestamp is None else g.state_timestamp),
           _U8.pack(_MEMBERS_V1)]
    members = list(g.members.values()) if assignment is not None else []
    _put(out, _enc(g.protocol_name if members else None))
    _put(out, _enc(g.leader_id if members else None))
    out.append(_U32.pack(len(members)))
    for m in members:
        _put(out, m.member_id.encode())
        _put(out, _enc(m.group_instance_id))
        _put(out, m.client_id.encode())
        _put(out, m.client_host.encode())
        out.append(_TIMEOUTS.pack(m.session_timeout_ms, m.rebalance_timeout_ms))
        _put(out, m.metadata_for(g.protocol_name) if g.protocol_name is not None else b"")
        _put(out, (assignment or {}).get(m.member_id, b""))
    return b"".join(out)


@dataclass(slots=True)
class _GroupMeta:
    """A decoded GROUP_META (members as tuples: Member objects are made per replay)."""
    generation: int
    protocol_type: str | None
    state_timestamp: int | None
    protocol_name: str | None = None
    leader_id: str | None = None
    # (member id, instance id, client id, host, session ms, rebalance ms, subscription, assignment)
    rows: list[tuple[str, str | None, str, str, int, int, bytes, bytes]] = field(default_factory=list)

    def members(self, protocol_type: str) -> list[Member]:
        name = self.protocol_name or ""
        return [Member(mid, iid, cid, host, sess, reb, protocol_type, [(name, sub)], assignment=asg,
                       is_new=False)
                for mid, iid, cid, host, sess, reb, sub, asg in self.rows]


def _decode_group_meta(data: bytes) -> _GroupMeta:
    """Any GROUP_META: the first form (generation, protocol type), with the
    state timestamp (issue 4), or with the members (issue 15)."""
    (generation,) = _I32.unpack_from(data, 1)
    (ln,) = _U16.unpack_from(data, 5)
    pos = 7 + ln
    meta = _GroupMeta(generation, data[7:pos].decode() or None, None)
    if len(data) < pos + 8:
        return meta
    (ts,) = struct.unpack_from(">q", data, pos)
    meta.state_timestamp = None if ts < 0 else ts
    pos += 8
    if len(data) <= pos:
        return meta
    if data[pos] != _MEMBERS_V1:
        raise ValueError(f"GROUP_META members section version {data[pos]} is not {_MEMBERS_V1}")
    pos += 1

    def take() -> bytes | None:
        nonlocal pos
        (n,) = _I32.unpack_from(data, pos)
        pos += 4
        if n < 0:
            return None
        if pos + n > len(data):
            raise ValueError("GROUP_META truncated")
        b = data[pos:pos + n]
        pos += n
        return b

    def text() -> str | None:
        b = take()
        return None if b is None else b.decode()

    meta.protocol_name, meta.leader_id = text(), text()
    (count,) = _U32.unpack_from(data, pos)
    pos += 4
    for _ in range(count):
        mid, iid, cid, host = text() or "", text(), text() or "", text() or ""
        sess, reb = _TIMEOUTS.unpack_from(data, pos)
        pos += _TIMEOUTS.size
        sub, asg = take() or b"", take() or b""
        meta.rows.append((mid, iid, cid, host, sess, reb, sub, asg))
    return meta
