"""KIP-848 consumer groups (``group.protocol=consumer``): Kafka 4's consumer group protocol.

One request, ConsumerGroupHeartbeat, carries membership, subscription and
assignment; the coordinator assigns partitions itself (``assignors.py``) and
hands them out incrementally, as Kafka's GroupMetadataManager does:

- The *group epoch* rises whenever membership or a subscription changes (or
  the partition count of a subscribed topic). On the next heartbeat the
  *target assignment* is computed for it (its epoch, the assignment epoch,
  becomes the group epoch). Kafka 4.4 batches that computation
  (``group.consumer.assignment.interval.ms``); here it runs at once.
- Each member moves towards its target alone (Kafka's CurrentAssignmentBuilder):
  partitions it must give up are first revoked (the member keeps its epoch and
  is UNREVOKED_PARTITIONS until a heartbeat no longer lists them as owned);
  partitions it gains are handed over only once no other member holds them
  (assigned or pending revocation), else it waits UNRELEASED_PARTITIONS at the
  new epoch; with nothing left to move it is STABLE at the target epoch. So a
  partition never has two owners.
- Member epoch checks: a heartbeat with an epoch above the member's, or below
  it other than the previous epoch with owned partitions inside the current
  assignment (a lost response), is FENCED_MEMBER_EPOCH. Epoch 0 joins (or
  rejoins, keeping the member), -1 leaves, -2 leaves a static member
  (``group.instance.id``) keeping its assignment until its session expires or
  a new member with that instance id takes it over (before that, another
  member with the instance id gets UNRELEASED_INSTANCE_ID).
- Sessions: ``group.consumer.session.timeout.ms`` (45 s) without a heartbeat
  removes the member; a member that does not revoke within its rebalance
  timeout is removed too. Heartbeats are asked for every
  ``group.consumer.heartbeat.interval.ms`` (5 s). A group's own
  ``consumer.session.timeout.ms`` / ``consumer.heartbeat.interval.ms`` (group
  configs, ``kafka-configs --entity-type groups``) win, as in Kafka.
- Subscriptions: topic names and/or a regex (``subscribed_topic_regex``,
  RE2/J in Kafka, matched against the whole name). Python's ``re`` is used:
  it agrees with RE2 on the common syntax (classes, alternation, repetition,
  anchors); RE2-only or Python-only constructs (e.g. backreferences, which
  RE2 refuses) may be judged differently.

Offsets are the classic coordinator's (``group.py``): one store per group id,
with the member epoch checked here (OffsetCommit v9+ / OffsetFetch v9+). The
group id space is shared: an empty classic group becomes a consumer group on a
member's first heartbeat (and an empty consumer group a classic one on a
JoinGroup), as Kafka converts empty groups; live groups migrate online
(``classic_members.py``, under ``group.consumer.migration.policy``): a joining
member upgrades a classic group with members, classic members are served
inside a consumer group (``ConsumerMember.classic``), and the group is
downgraded when a leaving member leaves only classic ones.

Durable as Kafka's ConsumerGroup* records in ``__consumer_offsets`` are: each
change of a group's state (members, epochs, subscriptions, current and target
assignments) is one entry of the classic coordinator's group log (in the
broker, a WAL entry of kind 4 with the group id as key, snapshotted with the
group's coordinator partition), appended before the heartbeat is answered:
``u8 op`` 32 + the group's state as JSON (the whole group; it is small and
the last entry wins; a classic member's entry has a ``classic`` key: its session
timeout and protocols), 33 = the consumer group is gone. A restarted broker, or
the new coordinator of a moved partition, replays them: members keep their
epochs and assignments and their sessions start again. An entry equal to the
last one written is not written again, so a steady group's heartbeats write
nothing.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

from ..clock import Clock, TimerHandle
from ..config import group_config_int
from ..errors import ErrorCode
from .assignors import ASSIGNORS, Assignment, MemberSubscription

log = logging.getLogger(__name__)

LEAVE_EPOCH = -1
STATIC_LEAVE_EPOCH = -2

# group log entry ops (group.py's ops are below 32 and route these here; 34 and 35,
# share groups', go on to share_group.py)
OP_CONSUMER_GROUP, OP_CONSUMER_GROUP_DELETE = 32, 33
OP_SHARE_GROUP, OP_SHARE_GROUP_DELETE = 34, 35

# member states (Kafka's MemberState)
STABLE = "STABLE"
UNREVOKED = "UNREVOKED_PARTITIONS"
UNRELEASED = "UNRELEASED_PARTITIONS"

# group states (Kafka's ConsumerGroup.ConsumerGroupState)
G_EMPTY, G_ASSIGNING, G_RECONCILING, G_STABLE = "Empty", "Assigning", "Reconciling", "Stable"


class TopicInfo(Protocol):
    topic_id: uuid.UUID
    partitions: int


class ConsumerGroupError(Exception):
    """A heartbeat's answer when it is an error: Kafka's code and message."""

    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _copy(a: Assignment) -> Assignment:
    return {t: set(p) for t, p in a.items() if p}


def _same(a: Assignment, b: Assignment) -> bool:
    return _copy(a) == _copy(b)


@dataclass(slots=True)
class ClassicMetadata:
    """Kafka's ClassicMemberMetadata: what a classic member joined with."""
    session_timeout_ms: int
    protocols: list[tuple[str, bytes]]   # (name, ConsumerProtocolSubscription), in its order


@dataclass(eq=False)
class ConsumerMember:
    member_id: str
    instance_id: str | None = None
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    rebalance_timeout_ms: int = 300000
    subscribed_topic_names: list[str] = field(default_factory=list)
    subscribed_topic_regex: str | None = None
    server_assignor: str | None = None
    member_epoch: int = 0
    previous_member_epoch: int = -1
    state: str = STABLE
    assigned: Assignment = field(default_factory=dict)
    pending_revocation: Assignment = field(default_factory=dict)
    session_timer: TimerHandle | None = None
    rebalance_timer: TimerHandle | None = None
    # a member speaking the classic protocol inside this group (online migration,
    # ``classic_members.py``): its JoinGroup's session timeout and protocols
    classic: ClassicMetadata | None = None
    classic_timer: TimerHandle | None = None   # its JoinGroup or SyncGroup deadline

    def owned(self) -> Assignment:
        """What the member may still hold: assigned plus pending revocation."""
        out = _copy(self.assigned)
        for t, ps in self.pending_revocation.items():
            out.setdefault(t, set()).update(ps)
        return out


@dataclass(eq=False)
class ConsumerGroup:
    group_id: str
    group_epoch: int = 0
    assignment_epoch: int = 0
    assignor_name: str = ""
    members: dict[str, ConsumerMember] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)   # instance id -> member id
    target: dict[str, Assignment] = field(default_factory=dict)    # member id -> target assignment
    topic_partitions: dict[str, int] = field(default_factory=dict)  # subscribed topic -> partitions, at the epoch
    persisted: bytes = b""          # the last state entry written or replayed

    @property
    def state(self) -> str:
        if not self.members:
            return G_EMPTY
        if self.assignment_epoch < self.group_epoch:
            return G_ASSIGNING
        if any(m.member_epoch != self.assignment_epoch or m.state != STABLE for m in self.members.values()):
            return G_RECONCILING
        return G_STABLE

    def held_by_others(self, member_id: str) -> set[tuple[uuid.UUID, int]]:
        """The partitions members other than ``member_id`` still hold (assigned or being revoked)."""
        return {(tid, p) for mid, m in self.members.items() if mid != member_id
                for tid, ps in m.owned().items() for p in ps}


@dataclass(slots=True)
class HeartbeatResult:
    error: int = ErrorCode.NONE
    message: str | None = None
    member_id: str | None = None
    member_epoch: int = 0
    heartbeat_interval_ms: int = 0
    assignment: Assignment | None = None
    durable: asyncio.Future | None = None   # the state entry to wait for before answering


class ConsumerGroupCoordinator:
    """The consumer groups this broker coordinates. Dependencies: the broker's
    config, a clock, the classic coordinator (shared group ids, offsets,
    which coordinator partitions are ours) and the topics (name -> id and
    partition count)."""

    def __init__(self, config: Any, clock: Clock, classic: Any,
                 topics: Callable[[], Mapping[str, TopicInfo]],
                 group_configs: Callable[[str], Mapping[str, str]] = lambda group_id: {}) -> None:
        self.config = config
        self.clock = clock
        self.classic = classic
        self.topics = topics
        self.group_configs = group_configs   # kafka-configs --entity-type groups, by group id
        self.groups: dict[str, ConsumerGroup] = {}
        self.share: Any = None      # the share group coordinator: its ids are not consumer groups
        # classic_members.ClassicMembers (set by the broker; it builds on this module):
        # online migration and classic members inside; None: live groups never convert
        self.classic_protocol: Any = None

    # ------------------------------------------------------------- config
    def assignor_names(self) -> list[str]:
        return [a.strip() for a in str(self.config["group.consumer.assignors"]).split(",") if a.strip()]

    def _session_ms(self, group_id: str) -> int:
        """The group's ``consumer.session.timeout.ms`` if set (within the broker's
        bounds), else the broker's, as Kafka."""
        return group_config_int(self.group_configs(group_id), "consumer.session.timeout.ms", self.config)

    def _interval_ms(self, group_id: str) -> int:
        return group_config_int(self.group_configs(group_id), "consumer.heartbeat.interval.ms", self.config)

    # ------------------------------------------------------------ lookups
    def get(self, group_id: str) -> ConsumerGroup | None:
        return self.groups.get(group_id)

    def unload(self, belongs: Callable[[str], bool]) -> int:
        """Forget the groups whose coordinator partition moved away (members rejoin there)."""
        gone = [gid for gid in self.groups if belongs(gid)]
        for gid in gone:
            self._cancel(self.groups.pop(gid))
        if self.share is not None:
            self.share.unload(belongs)
        return len(gone)

    def shutdown(self) -> None:
        for g in self.groups.values():
            self._cancel(g)

    @staticmethod
    def _cancel(g: ConsumerGroup) -> None:
        for m in g.members.values():
            for t in (m.session_timer, m.rebalance_timer, m.classic_timer):
                if t is not None:
                    t.cancel()

    def delete_empty(self, group_id: str) -> bool:
        """Drop an empty consumer group (DeleteGroups, or a classic JoinGroup
        converting it back); False if it has members."""
        g = self.groups.get(group_id)
        if g is None:
            return True
        if g.members:
            return False
        del self.groups[group_id]
        fut = self._append(group_id, bytes([OP_CONSUMER_GROUP_DELETE]))
        if fut is not None:
            fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        return True

    def expire_empty(self, has_offsets: Callable[[str], bool]) -> int:
        """Kafka's offset-expiry cycle also deletes an empty consumer group with no offsets left."""
        gone = [gid for gid, g in self.groups.items() if not g.members and not has_offsets(gid)]
        for gid in gone:
            self.delete_empty(gid)
            log.info("consumer group %s: removed (empty, no offsets)", gid)
        return len(gone)

    # ---------------------------------------------------------- heartbeat
    def heartbeat(self, *, version: int, group_id: str, member_id: str, member_epoch: int,
                  instance_id: str | None, rack_id: str | None, rebalance_timeout_ms: int,
                  subscribed_topic_names: list[str] | None, subscribed_topic_regex: str | None,
                  server_assignor: str | None, owned: Assignment | None,
                  client_id: str, client_host: str) -> HeartbeatResult:
        existed = group_id in self.groups
        try:
            self._validate(version, group_id, member_id, member_epoch, instance_id, rack_id, rebalance_timeout_ms,
                           subscribed_topic_names, subscribed_topic_regex, server_assignor, owned)
            err = self.classic.group_error(group_id)
            if err:
                raise ConsumerGroupError(err)
            if not member_id and member_epoch == 0:  # v0: the coordinator names the member (as Kafka's Uuid)
                member_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
            if member_epoch in (LEAVE_EPOCH, STATIC_LEAVE_EPOCH):
                res = self._leave(group_id, member_id, instance_id, member_epoch)
            else:
                res = self._heartbeat(group_id, member_id, member_epoch, instance_id, rack_id,
                                      rebalance_timeout_ms, subscribed_topic_names, subscribed_topic_regex,
                                      server_assignor, owned, client_id, client_host)
        except ConsumerGroupError as e:
            created = self.groups.get(group_id)
            if not existed and created is not None and not created.members:
                del self.groups[group_id]   # as Kafka: a failed request creates nothing
            return HeartbeatResult(e.code, e.message)
        g = self.groups.get(group_id)
        if g is not None:
            res.durable = self._persist(g)
        return res

    def _validate(self, version: int, group_id: str, member_id: str, member_epoch: int,
                  instance_id: str | None, rack_id: str | None, rebalance_timeout_ms: int, names: list[str] | None,
                  regex: str | None, assignor: str | None, owned: Assignment | None) -> None:
        """Kafka's ConsumerGroupHeartbeatRequest checks, in its order and words."""
        def invalid(msg: str) -> ConsumerGroupError:
            return ConsumerGroupError(ErrorCode.INVALID_REQUEST, msg)
        if not group_id:
            raise invalid("GroupId can't be empty.")
        if instance_id is not None and not instance_id:
            raise invalid("InstanceId can't be empty.")
        if rack_id is not None and not rack_id:
            raise invalid("RackId can't be empty.")
        if version >= 1 and not member_id:
            raise invalid("MemberId can't be empty.")
        if member_epoch == 0:
            if rebalance_timeout_ms == -1:
                raise invalid("RebalanceTimeoutMs must be provided in first request.")
            if owned is None or any(owned.values()):
                raise invalid("TopicPartitions must be empty when (re-)joining.")
            if names is None and regex is None:
                raise invalid("Either SubscribedTopicNames or SubscribedTopicRegex must be non-null "
                              "when (re-)joining.")
        elif member_epoch == STATIC_LEAVE_EPOCH:
            if instance_id is None:
                raise invalid("InstanceId can't be null.")
        elif member_epoch < STATIC_LEAVE_EPOCH:
            raise invalid("MemberEpoch is invalid.")
        if version < 1 and not member_id and member_epoch != 0:
            raise invalid("MemberId can't be empty.")
        if assignor is not None and assignor not in self.assignor_names():
            raise ConsumerGroupError(ErrorCode.UNSUPPORTED_ASSIGNOR,
                                     f"ServerAssignor {assignor} is not supported. Supported assignors: "
                                     f"{', '.join(self.assignor_names())}.")
        if regex is not None:
            try:
                re.compile(regex)
            except re.error as e:
                raise ConsumerGroupError(ErrorCode.INVALID_REGULAR_EXPRESSION,
                                         f"SubscribedTopicRegex `{regex}` is not a valid regular "
                                         f"expression: {e}.") from None

    def _group(self, group_id: str, create: bool) -> ConsumerGroup:
        g = self.groups.get(group_id)
        if g is not None:
            return g
        if self.share is not None and self.share.get(group_id) is not None:
            raise ConsumerGroupError(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a consumer group.")
        classic = self.classic.groups.get(group_id)
        if classic is not None and (classic.members or classic.state != "Empty"):
            if create and self.classic_protocol is None:
                raise ConsumerGroupError(ErrorCode.GROUP_ID_NOT_FOUND,
                                         f"Cannot upgrade classic group {group_id} to consumer group "
                                         f"because online upgrade is disabled.")
            if create:   # online upgrade (raises Kafka's refusal when it may not)
                g = self.classic_protocol.upgrade(classic)
                self.groups[group_id] = g
                return g
            raise ConsumerGroupError(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a consumer group.")
        if not create:
            raise ConsumerGroupError(ErrorCode.GROUP_ID_NOT_FOUND, f"Consumer group {group_id} not found.")
        # an empty classic group (offsets only) becomes a consumer group; its offsets stay
        g = self.groups[group_id] = ConsumerGroup(group_id)
        log.info("consumer group %s: created", group_id)
        return g

    @staticmethod
    def _unknown(g: ConsumerGroup, member_id: str) -> ConsumerGroupError:
        return ConsumerGroupError(ErrorCode.UNKNOWN_MEMBER_ID,
                                  f"Member {member_id} is not a member of group {g.group_id}.")

    @staticmethod
    def _check_epoch(m: ConsumerMember, epoch: int, owned: Assignment | None) -> None:
        """Kafka's throwIfConsumerGroupMemberEpochIsInvalid (epoch 0 rejoins and is not checked)."""
        if epoch == 0:
            return
        if epoch > m.member_epoch:
            raise ConsumerGroupError(
                ErrorCode.FENCED_MEMBER_EPOCH,
                f"The consumer group member has a greater member epoch ({epoch}) than the one known by "
                f"the group coordinator ({m.member_epoch}). The member must abandon all its partitions "
                f"and rejoin.")
        if epoch < m.member_epoch:
            subset = owned is None or all(ps <= m.assigned.get(t, set()) for t, ps in owned.items())
            if epoch != m.previous_member_epoch or not subset:
                raise ConsumerGroupError(
                    ErrorCode.FENCED_MEMBER_EPOCH,
                    f"The consumer group member has a smaller member epoch ({epoch}) than the one known by "
                    f"the group coordinator ({m.member_epoch}). The member must abandon all its partitions "
                    f"and rejoin.")

    def _member(self, g: ConsumerGroup, member_id: str, epoch: int, instance_id: str | None,
                owned: Assignment | None) -> tuple[ConsumerMember, bool]:
        """The member (created or replacing a static one when joining); True if new."""
        if instance_id is None:
            m = g.members.get(member_id)
            if m is None:
                if epoch != 0:
                    raise self._unknown(g, member_id)
                return ConsumerMember(member_id), True
            self._check_epoch(m, epoch, owned)
            return m, False
        current_id = g.static_members.get(instance_id)
        current = g.members.get(current_id) if current_id is not None else None
        if epoch == 0:
            if current is None:
                m = g.members.get(member_id)
                return (m, False) if m is not None else (ConsumerMember(member_id, instance_id), True)
            if current.member_id == member_id:
                return current, False
            if current.member_epoch != STATIC_LEAVE_EPOCH:
                raise ConsumerGroupError(
                    ErrorCode.UNRELEASED_INSTANCE_ID,
                    f"Static member {member_id} with instance id {instance_id} cannot join the group because "
                    f"the instance id is owned by {current.member_id} member.")
            # the new member takes the old one's place, assignment and all
            m = ConsumerMember(member_id, instance_id, current.rack_id, current.client_id, current.client_host,
                               current.rebalance_timeout_ms, list(current.subscribed_topic_names),
                               current.subscribed_topic_regex, current.server_assignor, 0, 0, current.state,
                               _copy(current.assigned), _copy(current.pending_revocation))
            self._drop(g, current)
            g.members[member_id] = m
            g.static_members[instance_id] = member_id
            if current.member_id in g.target:
                g.target[member_id] = g.target.pop(current.member_id)
            log.info("consumer group %s: static member %s replaced %s", g.group_id, member_id, current.member_id)
            return m, False
        if current is None:
            raise ConsumerGroupError(ErrorCode.UNKNOWN_MEMBER_ID, f"Instance id {instance_id} is unknown.")
        if current.member_id != member_id:
            raise ConsumerGroupError(ErrorCode.FENCED_INSTANCE_ID,
                                     f"The static member {member_id} with instance id {instance_id} is fenced "
                                     f"by member {current.member_id}.")
        self._check_epoch(current, epoch, owned)
        return current, False

    def _heartbeat(self, group_id: str, member_id: str, epoch: int, instance_id: str | None,
                   rack_id: str | None, rebalance_timeout_ms: int, names: list[str] | None,
                   regex: str | None, assignor: str | None, owned: Assignment | None,
                   client_id: str, client_host: str) -> HeartbeatResult:
        g = self._group(group_id, create=epoch == 0)
        m, new = self._member(g, member_id, epoch, instance_id, owned)
        bump = new
        if new and len(g.members) >= self.config["group.consumer.max.size"]:
            raise ConsumerGroupError(ErrorCode.GROUP_MAX_SIZE_REACHED,
                                     f"The consumer group has reached its maximum capacity of "
                                     f"{self.config['group.consumer.max.size']} members.")
        if new:
            g.members[m.member_id] = m
            if instance_id is not None:
                g.static_members[instance_id] = m.member_id
            log.info("consumer group %s: member %s joined", group_id, m.member_id)
        m.client_id, m.client_host = client_id, client_host
        if rack_id is not None:
            m.rack_id = rack_id
        if rebalance_timeout_ms != -1:
            m.rebalance_timeout_ms = rebalance_timeout_ms
        if names is not None and sorted(names) != sorted(m.subscribed_topic_names):
            m.subscribed_topic_names, bump = list(names), True
        if regex is not None and (regex or None) != m.subscribed_topic_regex:
            m.subscribed_topic_regex, bump = regex or None, True
        if assignor is not None and assignor != m.server_assignor:
            m.server_assignor, bump = assignor, True
        if epoch == 0 and not new and m.member_epoch == STATIC_LEAVE_EPOCH:
            m.member_epoch = 0
        self._advance(g, bump)
        before = _copy(m.assigned)
        self._reconcile(g, m, owned)
        self._schedule_session(g, m)
        # as Kafka: the assignment goes out on a full request or when it changed (not for a new epoch alone)
        full = rebalance_timeout_ms != -1 and (names is not None or regex is not None) and owned is not None
        changed = before != _copy(m.assigned)
        return HeartbeatResult(ErrorCode.NONE, None, m.member_id, m.member_epoch, self._interval_ms(group_id),
                               _copy(m.assigned) if full or changed or new else None)

    # --------------------------------------------------------- assignment
    def _subscribed(self, m: ConsumerMember, topics: Mapping[str, TopicInfo]) -> set[str]:
        out = {n for n in m.subscribed_topic_names if n in topics}
        if m.subscribed_topic_regex:
            try:
                pattern = re.compile(m.subscribed_topic_regex)
            except re.error:
                return out
            out |= {n for n in topics if not n.startswith("__") and pattern.fullmatch(n)}
        return out

    def subscribed_topics(self, g: ConsumerGroup) -> set[str]:
        """The existing topics some member subscribes to (by name or regex)."""
        return set(self._subscribed_sizes(g))

    def _advance(self, g: ConsumerGroup, bump: bool) -> None:
        """A new group epoch if a member's subscription changed (``bump``) or the
        partition counts of what the group subscribes to did (topics created,
        grown, deleted); then a target assignment for it if there is none yet."""
        sizes = self._subscribed_sizes(g)
        if sizes != g.topic_partitions:
            g.topic_partitions, bump = sizes, True
        if bump:
            g.group_epoch += 1
        if g.assignment_epoch < g.group_epoch:
            self._assign(g)

    def _subscribed_sizes(self, g: ConsumerGroup) -> dict[str, int]:
        topics = self.topics()
        names: set[str] = set()
        for m in g.members.values():
            names |= self._subscribed(m, topics)
        return {n: topics[n].partitions for n in sorted(names)}

    def _assignor(self, g: ConsumerGroup) -> str:
        """Kafka: the server assignor most members ask for, else the first configured."""
        votes: dict[str, int] = {}
        for m in g.members.values():
            if m.server_assignor:
                votes[m.server_assignor] = votes.get(m.server_assignor, 0) + 1
        if votes:
            return max(sorted(votes), key=lambda n: votes[n])
        return self.assignor_names()[0]

    def _assign(self, g: ConsumerGroup) -> None:
        topics = self.topics()
        subs = [MemberSubscription(m.member_id, m.instance_id,
                                   frozenset(topics[n].topic_id for n in self._subscribed(m, topics)))
                for m in g.members.values()]
        sizes = {t.topic_id: t.partitions for n, t in topics.items() if n in g.topic_partitions}
        g.assignor_name = self._assignor(g)
        g.target = ASSIGNORS[g.assignor_name](subs, sizes, g.target)
        g.assignment_epoch = g.group_epoch
        log.info("consumer group %s: target assignment at epoch %d (%s, %d members)", g.group_id,
                 g.assignment_epoch, g.assignor_name, len(g.members))

    def _reconcile(self, g: ConsumerGroup, m: ConsumerMember, owned: Assignment | None) -> None:
        """Kafka's CurrentAssignmentBuilder: one step of the member towards its target."""
        if m.member_epoch == STATIC_LEAVE_EPOCH:
            return
        if m.state == UNREVOKED:
            still = owned is None or any(ps & owned.get(t, set()) for t, ps in m.pending_revocation.items())
            if still:
                return
            m.pending_revocation = {}
            self._next(g, m, owned)
        elif m.member_epoch != g.assignment_epoch or m.state == UNRELEASED:
            self._next(g, m, owned)

    def _next(self, g: ConsumerGroup, m: ConsumerMember, owned: Assignment | None) -> None:
        target = g.target.get(m.member_id, {})
        keep: Assignment = {}
        revoke: Assignment = {}
        gain: Assignment = {}
        unreleased = False
        held = g.held_by_others(m.member_id)
        for tid in set(target) | set(m.assigned):
            cur, tgt = m.assigned.get(tid, set()), target.get(tid, set())
            if cur & tgt:
                keep[tid] = cur & tgt
            if cur - tgt:
                revoke[tid] = cur - tgt
            for p in tgt - cur:
                if (tid, p) in held:
                    unreleased = True
                else:
                    gain.setdefault(tid, set()).add(p)
        owns_revoked = owned is None or any(ps & owned.get(t, set()) for t, ps in revoke.items())
        if revoke and owns_revoked:
            m.assigned, m.pending_revocation = keep, revoke
            m.state = UNREVOKED
            self._schedule_revocation(g, m)
            return
        for tid, ps in gain.items():
            keep.setdefault(tid, set()).update(ps)
        m.assigned, m.pending_revocation = keep, {}
        if m.member_epoch != g.assignment_epoch:
            m.previous_member_epoch, m.member_epoch = m.member_epoch, g.assignment_epoch
        m.state = UNRELEASED if unreleased else STABLE
        self._cancel_revocation(m)

    # ------------------------------------------------------------- leaving
    def _leave(self, group_id: str, member_id: str, instance_id: str | None, epoch: int) -> HeartbeatResult:
        g = self.groups.get(group_id)
        if g is None:
            if self.classic.groups.get(group_id) is not None:
                raise ConsumerGroupError(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a consumer group.")
            raise ConsumerGroupError(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} not found.")
        if instance_id is None:
            m = g.members.get(member_id)
            if m is None:
                raise self._unknown(g, member_id)
        else:
            mid = g.static_members.get(instance_id)
            m = g.members.get(mid) if mid is not None else None
            if m is None:
                raise ConsumerGroupError(ErrorCode.UNKNOWN_MEMBER_ID, f"Instance id {instance_id} is unknown.")
            if m.member_id != member_id:
                raise ConsumerGroupError(ErrorCode.FENCED_INSTANCE_ID,
                                         f"The static member {member_id} with instance id {instance_id} is "
                                         f"fenced by member {m.member_id}.")
            if epoch == STATIC_LEAVE_EPOCH:
                # keeps its assignment for the session: the same instance may come back
                m.member_epoch = STATIC_LEAVE_EPOCH
                self._cancel_revocation(m)
                log.info("consumer group %s: static member %s (%s) left temporarily", group_id, member_id,
                         instance_id)
                return HeartbeatResult(ErrorCode.NONE, None, member_id, epoch, 0, None)
        log.info("consumer group %s: member %s left", group_id, m.member_id)
        durable = self._fence(g, m)
        return HeartbeatResult(ErrorCode.NONE, None, member_id, epoch, 0, None, durable=durable)

    def _drop(self, g: ConsumerGroup, m: ConsumerMember) -> None:
        g.members.pop(m.member_id, None)
        if m.instance_id and g.static_members.get(m.instance_id) == m.member_id:
            del g.static_members[m.instance_id]
        for t in (m.session_timer, m.rebalance_timer, m.classic_timer):
            if t is not None:
                t.cancel()
        m.session_timer = m.rebalance_timer = m.classic_timer = None

    def _fence(self, g: ConsumerGroup, m: ConsumerMember) -> asyncio.Future | None:
        """Kafka's consumerGroupFenceMember: the member goes; if only classic
        members remain and the policy allows, the group becomes a classic one
        again (the future: its entries, written), else a new epoch."""
        if self.classic_protocol is not None and self.classic_protocol.downgrade_allowed(g, m):
            return self.classic_protocol.downgrade(g, m)
        self._remove(g, m)
        return None

    def _remove(self, g: ConsumerGroup, m: ConsumerMember) -> None:
        """The member is gone (left, expired, fenced): its partitions are free; new epoch."""
        self._drop(g, m)
        g.target.pop(m.member_id, None)
        g.group_epoch += 1
        g.topic_partitions = self._subscribed_sizes(g)

    # ---------------------------------------------------------- durability
    def _append(self, group_id: str, data: bytes) -> asyncio.Future | None:
        return append_entry(self.classic, group_id, data)

    def _persist(self, g: ConsumerGroup) -> asyncio.Future | None:
        """Append the group's state if it changed since the last entry."""
        return persist_state(self.classic, g, OP_CONSUMER_GROUP, _encode(g))

    def replay(self, group_id: str, data: bytes) -> None:
        """A consumer group entry from the log or a snapshot (the last one wins);
        a share group's (ops 34, 35) goes to the share group coordinator."""
        if data[0] in (OP_SHARE_GROUP, OP_SHARE_GROUP_DELETE):
            if self.share is not None:
                self.share.replay(group_id, data)
            return
        old = self.groups.pop(group_id, None)
        if old is not None:
            self._cancel(old)
        if data[0] == OP_CONSUMER_GROUP_DELETE:
            return
        g = _decode(group_id, json.loads(data[1:]))
        g.persisted = bytes(data)
        self.groups[group_id] = g
        try:   # sessions start again now (needs the running loop with the system clock)
            for m in g.members.values():
                self._schedule_session(g, m)
                if m.state == UNREVOKED:
                    self._schedule_revocation(g, m)
        except RuntimeError:
            pass

    def entries(self, selected: Callable[[str], bool]) -> list[tuple[bytes, bytes]]:
        """Snapshot payloads of the selected groups (one state entry each)."""
        own = [(gid.encode(), bytes([OP_CONSUMER_GROUP]) + json.dumps(_encode(g), separators=(",", ":")).encode())
               for gid, g in self.groups.items() if selected(gid)]
        return own + (self.share.entries(selected) if self.share is not None else [])

    # -------------------------------------------------------------- timers
    def _schedule_session(self, g: ConsumerGroup, m: ConsumerMember) -> None:
        if m.session_timer is not None:
            m.session_timer.cancel()
        ms = m.classic.session_timeout_ms if m.classic is not None else self._session_ms(g.group_id)
        m.session_timer = self.clock.call_later(ms / 1000, self._expired, g, m, "session")

    def _schedule_revocation(self, g: ConsumerGroup, m: ConsumerMember) -> None:
        self._cancel_revocation(m)
        m.rebalance_timer = self.clock.call_later(m.rebalance_timeout_ms / 1000, self._expired, g, m,
                                                  "rebalance")

    @staticmethod
    def _cancel_revocation(m: ConsumerMember) -> None:
        if m.rebalance_timer is not None:
            m.rebalance_timer.cancel()
            m.rebalance_timer = None

    def _expired(self, g: ConsumerGroup, m: ConsumerMember, why: str) -> None:
        if g.members.get(m.member_id) is not m or self.groups.get(g.group_id) is not g:
            return
        if why == "rebalance":
            m.rebalance_timer = None
            if m.state != UNREVOKED:
                return
            log.info("consumer group %s: member %s did not revoke in its rebalance timeout", g.group_id,
                     m.member_id)
        elif why in ("join", "sync"):
            m.classic_timer = None
            log.info("consumer group %s: classic member %s did not send its %s in its rebalance timeout",
                     g.group_id, m.member_id, "JoinGroup" if why == "join" else "SyncGroup")
        else:
            m.session_timer = None
            log.info("consumer group %s: member %s session expired", g.group_id, m.member_id)
        fut = self._fence(g, m)
        if self.groups.get(g.group_id) is g:
            fut = self._persist(g)
        if fut is not None:
            fut.add_done_callback(lambda f: f.cancelled() or f.exception())

    # ------------------------------------------------------------- offsets
    def check_commit(self, g: ConsumerGroup, member_id: str, epoch: int, version: int) -> int:
        """Kafka's ConsumerGroup.validateOffsetCommit: a simple commit (epoch < 0)
        into an empty group passes; else the member must exist, use v9+ and
        name its current epoch (STALE_MEMBER_EPOCH otherwise)."""
        if epoch < 0 and not g.members:
            return ErrorCode.NONE
        m = g.members.get(member_id)
        if m is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if m.classic is not None:   # a classic member names its generation, the member epoch
            return ErrorCode.ILLEGAL_GENERATION if epoch != m.member_epoch else ErrorCode.NONE
        if version < 9:
            return ErrorCode.UNSUPPORTED_VERSION
        if epoch != m.member_epoch:
            return ErrorCode.STALE_MEMBER_EPOCH
        return ErrorCode.NONE

    def check_fetch(self, g: ConsumerGroup, member_id: str | None, epoch: int) -> int:
        """Kafka's ConsumerGroup.validateOffsetFetch: no member id and epoch -1 (admin) pass."""
        if member_id is None and epoch < 0:
            return ErrorCode.NONE
        m = g.members.get(member_id or "")
        if m is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if epoch != m.member_epoch:
            return ErrorCode.ILLEGAL_GENERATION if m.classic is not None else ErrorCode.STALE_MEMBER_EPOCH
        return ErrorCode.NONE


class _Persisted(Protocol):
    group_id: str
    persisted: bytes


def append_entry(classic: object, group_id: str, data: bytes) -> asyncio.Future | None:
    """Append an entry to the group log of the classic coordinator (None without one: tests)."""
    log_ = getattr(classic, "log", None)
    return log_.append(group_id, data) if log_ is not None else None


def persist_state(classic: object, g: _Persisted, op: int, state: dict[str, Any]) -> asyncio.Future | None:
    """Append a group's whole state (op, then JSON) unless it is the entry last
    written or replayed: consumer and share groups keep their state this way."""
    data = bytes([op]) + json.dumps(state, separators=(",", ":")).encode()
    if data == g.persisted:
        return None
    g.persisted = data
    return append_entry(classic, g.group_id, data)


def _enc_assignment(a: Assignment) -> dict[str, list[int]]:
    return {str(t): sorted(ps) for t, ps in sorted(a.items(), key=lambda kv: str(kv[0])) if ps}


def _dec_assignment(d: dict[str, list[int]]) -> Assignment:
    return {uuid.UUID(t): set(ps) for t, ps in d.items()}


def _encode(g: ConsumerGroup) -> dict[str, Any]:
    return {
        "epoch": g.group_epoch, "assignment_epoch": g.assignment_epoch, "assignor": g.assignor_name,
        "topic_partitions": g.topic_partitions,
        "target": {mid: _enc_assignment(a) for mid, a in sorted(g.target.items())},
        "members": [{
            "id": m.member_id, "instance": m.instance_id, "rack": m.rack_id, "client_id": m.client_id,
            "client_host": m.client_host, "rebalance_timeout_ms": m.rebalance_timeout_ms,
            "topics": m.subscribed_topic_names, "regex": m.subscribed_topic_regex,
            "assignor": m.server_assignor, "epoch": m.member_epoch, "previous_epoch": m.previous_member_epoch,
            "state": m.state, "assigned": _enc_assignment(m.assigned),
            "revoking": _enc_assignment(m.pending_revocation),
            **({"classic": {"session_timeout_ms": m.classic.session_timeout_ms,
                            "protocols": [[n, base64.b64encode(meta).decode()] for n, meta in m.classic.protocols]}}
               if m.classic is not None else {})} for m in g.members.values()],
    }


def _decode(group_id: str, d: dict[str, Any]) -> ConsumerGroup:
    g = ConsumerGroup(group_id, d["epoch"], d["assignment_epoch"], d["assignor"],
                      target={mid: _dec_assignment(a) for mid, a in d["target"].items()},
                      topic_partitions=dict(d["topic_partitions"]))
    for x in d["members"]:
        m = ConsumerMember(x["id"], x["instance"], x["rack"], x["client_id"], x["client_host"],
                           x["rebalance_timeout_ms"], list(x["topics"]), x["regex"], x["assignor"], x["epoch"],
                           x["previous_epoch"], x["state"], _dec_assignment(x["assigned"]),
                           _dec_assignment(x["revoking"]))
        if "classic" in x:   # since online migration; older entries have consumer members only
            c = x["classic"]
            m.classic = ClassicMetadata(c["session_timeout_ms"],
                                        [(n, base64.b64decode(meta)) for n, meta in c["protocols"]])
        g.members[m.member_id] = m
        if m.instance_id:
            g.static_members[m.instance_id] = m.member_id
    return g
