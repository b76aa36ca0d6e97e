"""Online migration between the classic and the KIP-848 consumer group protocols.

As Kafka 4's GroupMetadataManager, under ``group.consumer.migration.policy``
(``bidirectional``, ``upgrade``, ``downgrade``, ``disabled``):

- **Upgrade** (``convertToConsumerGroup``): a ConsumerGroupHeartbeat joining a
  classic group with members turns it into a consumer group, if the policy
  allows upgrades, the group's protocol type is ``consumer`` and it has no more
  members than ``group.consumer.max.size`` (else GROUP_ID_NOT_FOUND with
  Kafka's message). Each classic member becomes a member at the group's
  generation (= group and assignment epoch), Stable, owning its last assignment
  (its target too), subscribed to its ConsumerProtocolSubscription's topics;
  members waiting in JoinGroup or SyncGroup are answered REBALANCE_IN_PROGRESS.
  The joining member bumps the epoch, so the coordinator's assignor moves
  partitions as for any consumer group: revoked before they are handed over.
- **Classic members inside a consumer group** (``classicGroup*ToConsumerGroup``):
  JoinGroup, SyncGroup, Heartbeat and LeaveGroup of a non-empty consumer group
  are served here. A JoinGroup translates the member's ConsumerProtocolSubscription
  (topics, owned partitions, rack) into a subscription, reconciles the member
  one step (partitions still owned that must go stay pending revocation) and is
  answered at once: generation = member epoch, no leader (the coordinator
  assigns). SyncGroup returns the member's assigned partitions (not those being
  revoked) as a ConsumerProtocolAssignment; REBALANCE_IN_PROGRESS while the
  assignment epoch is ahead of the member's, unless it is revoking. A Heartbeat
  answers REBALANCE_IN_PROGRESS (rejoin) when the member is behind the
  assignment epoch, must revoke, or partitions it waited for are free; from
  then it has its rebalance timeout to JoinGroup, and after JoinGroup to
  SyncGroup, or it is removed. Its session is its JoinGroup's session timeout.
  With the policy ``disabled`` a classic member may not join a consumer group
  (INCONSISTENT_GROUP_PROTOCOL). Offset commits of classic members name the
  member epoch as their generation (ILLEGAL_GENERATION otherwise).
- **Downgrade** (``convertToClassicGroup``): when a member leaves or is fenced
  and only classic members remain (at least one), the policy allows downgrades
  and they fit ``group.max.size``, the group becomes a classic group again: the
  generation is the group epoch, each member's assignment its target, and a
  rebalance starts at once (the members rejoin as in any classic rebalance).

Durability: a conversion writes what Kafka's records say, in Sluice's group
log entries (``group.py``): the upgrade a GROUP_META without members (the
classic group keeps only its offsets) then the consumer group's state (op 32,
classic members with their session timeout and protocols); the downgrade the
consumer group's tombstone (op 33) then a GROUP_META with the members and their
assignments. Replaying them gives the converted group.

Not modelled: the downgrade Kafka does when a JoinGroup's static member
replaces the last consumer-protocol member (``validateOnlineDowngradeWithReplacedMember``).
"""
from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from typing import TYPE_CHECKING, Any, Mapping

from ..errors import ErrorCode
from .consumer_group import (
    OP_CONSUMER_GROUP_DELETE,
    STABLE,
    UNRELEASED,
    UNREVOKED,
    ClassicMetadata,
    ConsumerGroup,
    ConsumerGroupError,
    ConsumerMember,
    _copy,
)
from .consumer_protocol import (
    PROTOCOL_TYPE,
    MalformedProtocol,
    encode_assignment,
    parse_assignment,
    parse_subscription,
    version_of,
)
from .group import Group, JoinResult, Member

if TYPE_CHECKING:
    from .assignors import Assignment
    from .consumer_group import ConsumerGroupCoordinator

log = logging.getLogger(__name__)


def new_member_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


class ClassicMembers:
    """The classic protocol's side of the consumer group coordinator ``cgc``."""

    def __init__(self, cgc: ConsumerGroupCoordinator) -> None:
        self.cgc = cgc

    # ------------------------------------------------------------- policy
    def _policy(self) -> str:
        return str(self.cgc.config["group.consumer.migration.policy"])

    def _upgrade_enabled(self) -> bool:
        return self._policy() in ("bidirectional", "upgrade")

    def _downgrade_enabled(self) -> bool:
        return self._policy() in ("bidirectional", "downgrade")

    # ---------------------------------------------------------- topic names
    def _by_id(self, by_name: Mapping[str, set[int]]) -> Assignment:
        topics = self.cgc.topics()
        return {topics[n].topic_id: set(ps) for n, ps in by_name.items() if n in topics and ps}

    def _by_name(self, by_id: Assignment) -> dict[str, set[int]]:
        names = {t.topic_id: n for n, t in self.cgc.topics().items()}
        return {names[t]: set(ps) for t, ps in by_id.items() if t in names and ps}

    # ------------------------------------------------------------ upgrade
    def upgrade(self, classic: Group) -> ConsumerGroup:
        """Kafka's validateOnlineUpgrade + convertToConsumerGroup: the consumer group
        that replaces ``classic`` (raises Kafka's refusal)."""
        gid = classic.group_id

        def refuse(why: str) -> ConsumerGroupError:
            log.info("classic group %s: not upgraded to a consumer group: %s", gid, why)
            return ConsumerGroupError(ErrorCode.GROUP_ID_NOT_FOUND,
                                      f"Cannot upgrade classic group {gid} to consumer group because {why}")
        if not self._upgrade_enabled():
            raise refuse("online upgrade is disabled.")
        if classic.protocol_type != PROTOCOL_TYPE:
            raise refuse("the group does not use the consumer embedded protocol.")
        if len(classic.members) > self.cgc.config["group.consumer.max.size"]:
            raise refuse("the group size exceeds the consumer group maximum size.")
        generation = classic.generation
        members = []
        for cm in classic.members.values():
            meta = (cm.metadata_for(classic.protocol_name) if classic.protocol_name
                    else (cm.protocols[0][1] if cm.protocols else b""))
            try:
                assigned, user_data = parse_assignment(cm.assignment)
                sub = parse_subscription(meta)
            except MalformedProtocol:
                raise refuse("the embedded consumer protocol is malformed.") from None
            if user_data:
                raise refuse("an unsupported custom assignor is in use. Please refer to the documentation or "
                             "switch to a default assignor before re-attempting the upgrade.")
            members.append(ConsumerMember(
                cm.member_id, cm.group_instance_id, sub.rack_id, cm.client_id, cm.client_host,
                cm.rebalance_timeout_ms, list(sub.topics), None, None, generation, generation, STABLE,
                self._by_id(assigned), classic=ClassicMetadata(cm.session_timeout_ms, list(cm.protocols))))
        self.cgc.classic.give_way(classic)
        g = ConsumerGroup(gid, generation, generation)
        for m in members:
            g.members[m.member_id] = m
            if m.instance_id:
                g.static_members[m.instance_id] = m.member_id
            g.target[m.member_id] = _copy(m.assigned)
        g.topic_partitions = self.cgc._subscribed_sizes(g)
        for m in members:
            self.cgc._schedule_session(g, m)
        log.info("classic group %s: converted to a consumer group at epoch %d (%d members)", gid, generation,
                 len(members))
        return g

    # ---------------------------------------------------------- downgrade
    def downgrade_allowed(self, g: ConsumerGroup, leaving: ConsumerMember) -> bool:
        """Kafka's validateOnlineDowngradeWithFencedMembers."""
        rest = [m for m in g.members.values() if m is not leaving]
        if not rest or any(m.classic is None for m in rest):
            return False
        if not self._downgrade_enabled():
            log.info("consumer group %s: not downgraded to a classic group: the online downgrade is disabled",
                     g.group_id)
            return False
        if len(rest) > self.cgc.config["group.max.size"]:
            log.info("consumer group %s: not downgraded: more members than the classic group max size", g.group_id)
            return False
        return True

    def downgrade(self, g: ConsumerGroup, leaving: ConsumerMember) -> asyncio.Future | None:
        """Kafka's convertToClassicGroup (a member leaving): the classic group takes
        the other members, each assigned its target, and rebalances. Returns the
        future of the entries written."""
        cgc = self.cgc
        cgc._drop(g, leaving)
        cgc._cancel(g)
        del cgc.groups[g.group_id]
        fut = cgc._append(g.group_id, bytes([OP_CONSUMER_GROUP_DELETE]))
        if fut is not None:
            fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        members = []
        for m in g.members.values():
            assert m.classic is not None  # downgrade_allowed: every remaining member is classic
            members.append(Member(m.member_id, m.instance_id, m.client_id, m.client_host,
                                  m.classic.session_timeout_ms, m.rebalance_timeout_ms, PROTOCOL_TYPE,
                                  list(m.classic.protocols), is_new=False))
        targets = {mid: self._by_name(a) for mid, a in g.target.items()}

        def assignment(member: Member, protocol: str) -> bytes:
            return encode_assignment(targets.get(member.member_id, {}), version_of(member.metadata_for(protocol)))
        log.info("consumer group %s: converted to a classic group at generation %d (%d members)", g.group_id,
                 g.group_epoch, len(members))
        return cgc.classic.adopt(g.group_id, g.group_epoch, members, assignment,
                                 f"Downgrade group {g.group_id} from consumer to classic for member leaving.")

    # ------------------------------------------------------ member checks
    @staticmethod
    def _validate(g: ConsumerGroup, member_id: str, instance_id: str | None) -> tuple[int, ConsumerMember | None]:
        """Kafka's validateConsumerGroupMember then throwIfMemberDoesNotUseClassicProtocol."""
        if instance_id:
            mid = g.static_members.get(instance_id)
            m = g.members.get(mid) if mid is not None else None
            if m is None:
                return ErrorCode.UNKNOWN_MEMBER_ID, None
            if m.member_id != member_id:
                return ErrorCode.FENCED_INSTANCE_ID, None
        else:
            m = g.members.get(member_id)
            if m is None:
                return ErrorCode.UNKNOWN_MEMBER_ID, None
        if m.classic is None:
            return ErrorCode.UNKNOWN_MEMBER_ID, None
        return ErrorCode.NONE, m

    def _join_timeout(self, g: ConsumerGroup, m: ConsumerMember, why: str, replace: bool) -> None:
        if m.classic_timer is not None:
            if not replace:
                return
            m.classic_timer.cancel()
        m.classic_timer = self.cgc.clock.call_later(m.rebalance_timeout_ms / 1000, self.cgc._expired, g, m, why)

    # ------------------------------------------------------------ JoinGroup
    def join(self, g: ConsumerGroup, *, version: int, member_id: str, instance_id: str | None, client_id: str,
             client_host: str, session_timeout_ms: int, rebalance_timeout_ms: int, protocol_type: str,
             protocols: list[tuple[str, bytes]]) -> tuple[JoinResult, asyncio.Future | None]:
        """Kafka's classicGroupJoinToConsumerGroup: answered at once (after the write)."""
        cgc = self.cgc

        def error(code: int, mid: str = member_id) -> tuple[JoinResult, None]:
            return JoinResult(code, member_id=mid), None
        if self._policy() == "disabled":
            log.info("consumer group %s: classic member refused: the group migration is disabled", g.group_id)
            return error(ErrorCode.INCONSISTENT_GROUP_PROTOCOL)
        unknown = not member_id
        if unknown:
            member_id = new_member_id()
        if len(g.members) >= cgc.config["group.consumer.max.size"] and member_id not in g.members:
            return error(ErrorCode.GROUP_MAX_SIZE_REACHED)
        classic = [m for m in g.members.values() if m.classic is not None]
        names = [n for n, _ in protocols]
        if (protocol_type != PROTOCOL_TYPE or not names
                or not any(all(n in {p for p, _ in m.classic.protocols} for m in classic if m.classic)
                           for n in names)):
            return error(ErrorCode.INCONSISTENT_GROUP_PROTOCOL)
        if version >= 4 and unknown and not instance_id:
            log.info("consumer group %s: classic member needs a member id: %s", g.group_id, member_id)
            return error(ErrorCode.MEMBER_ID_REQUIRED, member_id)
        try:
            sub = parse_subscription(protocols[0][1])
        except MalformedProtocol:
            return error(ErrorCode.UNKNOWN_SERVER_ERROR)
        m, new = self._join_member(g, member_id, instance_id or None, unknown)
        if m is None:
            return error(ErrorCode.FENCED_INSTANCE_ID)
        bump = new
        if new:
            g.members[m.member_id] = m
            if m.instance_id:
                g.static_members[m.instance_id] = m.member_id
            log.info("consumer group %s: member %s joins with the classic protocol", g.group_id, m.member_id)
        m.client_id, m.client_host = client_id, client_host
        if sub.rack_id is not None:
            m.rack_id = sub.rack_id
        if rebalance_timeout_ms > 0:
            m.rebalance_timeout_ms = rebalance_timeout_ms
        if sorted(sub.topics) != sorted(m.subscribed_topic_names):
            m.subscribed_topic_names, bump = list(sub.topics), True
        m.classic = ClassicMetadata(session_timeout_ms, list(protocols))
        cgc._advance(g, bump)
        cgc._reconcile(g, m, self._by_id(sub.owned))
        cgc._schedule_session(g, m)
        self._join_timeout(g, m, "sync", replace=True)
        return (JoinResult(ErrorCode.NONE, m.member_epoch, PROTOCOL_TYPE, protocols[0][0], "", m.member_id, []),
                cgc._persist(g))

    def _join_member(self, g: ConsumerGroup, member_id: str, instance_id: str | None,
                     unknown: bool) -> tuple[ConsumerMember | None, bool]:
        """The joining member (None: fenced by the instance id's owner); True if new.
        A static member joining without a member id takes its instance's place."""
        if instance_id is None:
            m = g.members.get(member_id)
            return (m, False) if m is not None else (ConsumerMember(member_id), True)
        current_id = g.static_members.get(instance_id)
        current = g.members.get(current_id) if current_id is not None else None
        if current is None:
            m = g.members.get(member_id)
            return (m, False) if m is not None else (ConsumerMember(member_id, instance_id), True)
        if not unknown:
            return (current, False) if current.member_id == member_id else (None, False)
        m = ConsumerMember(member_id, instance_id, current.rack_id, current.client_id, current.client_host,
                           current.rebalance_timeout_ms, list(current.subscribed_topic_names), None, None,
                           current.member_epoch, current.previous_member_epoch, current.state,
                           _copy(current.assigned), _copy(current.pending_revocation))
        self.cgc._drop(g, current)
        g.members[member_id] = m
        g.static_members[instance_id] = member_id
        if current.member_id in g.target:
            g.target[member_id] = g.target.pop(current.member_id)
        log.info("consumer group %s: static member %s replaced %s", g.group_id, member_id, current.member_id)
        return m, False

    # ------------------------------------------------------------ SyncGroup
    def sync(self, g: ConsumerGroup, *, generation: int, member_id: str, instance_id: str | None,
             protocol_type: str | None, protocol_name: str | None) -> tuple[int, bytes]:
        """Kafka's classicGroupSyncToConsumerGroup: the member's assigned partitions."""
        err, m = self._validate(g, member_id, instance_id)
        if err:
            return err, b""
        assert m is not None and m.classic is not None  # _validate answered NONE
        if generation != m.member_epoch:
            return ErrorCode.ILLEGAL_GENERATION, b""
        first, meta = m.classic.protocols[0]
        if (protocol_type is not None and protocol_type != PROTOCOL_TYPE) or (
                protocol_name is not None and protocol_name != first):
            return ErrorCode.INCONSISTENT_GROUP_PROTOCOL, b""
        if g.assignment_epoch > m.member_epoch and m.state != UNREVOKED:
            self._join_timeout(g, m, "join", replace=False)
            return ErrorCode.REBALANCE_IN_PROGRESS, b""
        if m.classic_timer is not None:
            m.classic_timer.cancel()
            m.classic_timer = None
        self.cgc._schedule_session(g, m)
        return ErrorCode.NONE, encode_assignment(self._by_name(m.assigned), version_of(meta))

    # ------------------------------------------------------------ Heartbeat
    def heartbeat(self, g: ConsumerGroup, *, generation: int, member_id: str,
                  instance_id: str | None) -> tuple[int, asyncio.Future | None]:
        """Kafka's classicGroupHeartbeatToConsumerGroup: REBALANCE_IN_PROGRESS asks the member to rejoin."""
        err, m = self._validate(g, member_id, instance_id)
        if err:
            return err, None
        assert m is not None
        if generation != m.member_epoch:
            return ErrorCode.ILLEGAL_GENERATION, None
        self.cgc._schedule_session(g, m)
        durable = None
        if g.assignment_epoch < g.group_epoch:   # Kafka computes it on its own; here the next request does
            self.cgc._assign(g)
            durable = self.cgc._persist(g)
        if (m.member_epoch < g.assignment_epoch or m.state == UNREVOKED
                or (m.state == UNRELEASED and not self._waiting(g, m))):
            self._join_timeout(g, m, "join", replace=False)
            return ErrorCode.REBALANCE_IN_PROGRESS, durable
        return ErrorCode.NONE, durable

    @staticmethod
    def _waiting(g: ConsumerGroup, m: ConsumerMember) -> bool:
        """Kafka's waitingOnUnreleasedPartition: a target partition another member still holds."""
        held = g.held_by_others(m.member_id)
        return any((tid, p) in held for tid, ps in g.target.get(m.member_id, {}).items()
                   for p in ps - m.assigned.get(tid, set()))

    # ----------------------------------------------------------- LeaveGroup
    def leave(self, g: ConsumerGroup, members: list[tuple[str, str | None]]) -> tuple[list[int],
                                                                                      asyncio.Future | None]:
        """Kafka's classicGroupLeaveToConsumerGroup: per member its error; those
        valid go, with one new group epoch."""
        errors: list[int] = []
        leaving: dict[str, ConsumerMember] = {}
        for member_id, instance_id in members:
            m: Any
            if instance_id:
                mid = g.static_members.get(instance_id)
                m = g.members.get(mid) if mid is not None else None
                if m is None:
                    errors.append(ErrorCode.UNKNOWN_MEMBER_ID)
                    continue
                if member_id and m.member_id != member_id:
                    errors.append(ErrorCode.FENCED_INSTANCE_ID)
                    continue
                if member_id and m.classic is None:
                    errors.append(ErrorCode.UNKNOWN_MEMBER_ID)
                    continue
            else:
                m = g.members.get(member_id)
                if m is None or m.classic is None:
                    errors.append(ErrorCode.UNKNOWN_MEMBER_ID)
                    continue
            errors.append(ErrorCode.NONE)
            leaving[m.member_id] = m
        if not leaving:
            return errors, None
        for m in leaving.values():
            log.info("consumer group %s: classic member %s left", g.group_id, m.member_id)
            self.cgc._drop(g, m)
            g.target.pop(m.member_id, None)
        g.group_epoch += 1
        g.topic_partitions = self.cgc._subscribed_sizes(g)
        return errors, self.cgc._persist(g)
