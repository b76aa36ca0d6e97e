"""Share groups' membership (KIP-932): ShareGroupHeartbeat at the group coordinator.

The KIP-848 shape without reconciliation: a share-partition may be fetched
by many members at once (the partition's owner hands each record to one
member at a time, ``broker/share/``), so nothing is revoked before it is
given elsewhere. Kafka's simple assignor with a homogeneous subscription
gives every member every subscribed partition while members <= partitions
is not the concern (Kafka's ``SimpleHomogeneousAssignmentBuilder`` on one
partition: all members share it); here each member gets every partition of
the topics it subscribes to, which is that answer for the one-partition
case and a superset otherwise.

- The group epoch rises with a join, a leave, an expiry, a subscription
  change or a subscribed topic's partition count; a member's epoch is the
  group epoch it last heard of (Kafka's share member epochs; the previous
  epoch is accepted once, for a lost response).
- Sessions: ``share.session.timeout.ms`` (group config) or
  ``group.share.session.timeout.ms`` without a heartbeat removes the member;
  heartbeats every ``group.share.heartbeat.interval.ms``.
- Group ids are shared with classic and consumer groups: an id one of those
  holds answers GROUP_ID_NOT_FOUND ("Group X is not a share group.").

Durable as consumer groups are (``consumer_group.py``): each change of a
group's membership is one entry of the group log (WAL kind 4 with the group
id as key, in the coordinator partition's snapshot), ``u8 op`` 34 + the
group as JSON (the last entry wins), 35 = the group is gone; written before
the heartbeat is answered, replayed by a restarted or new coordinator
(sessions start again). The share-partition state itself lives at each
partition's owner (``broker/share/``).
"""
from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..clock import Clock, TimerHandle
from ..config import group_config_int
from ..errors import ErrorCode
from .assignors import Assignment
from .consumer_group import TopicInfo, append_entry, persist_state

log = logging.getLogger(__name__)

LEAVE_EPOCH = -1
OP_SHARE_GROUP, OP_SHARE_GROUP_DELETE = 34, 35     # group log ops (consumer_group.py routes them here)
G_EMPTY, G_STABLE = "Empty", "Stable"


class ShareGroupError(Exception):
    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(eq=False)
class ShareMember:
    member_id: str
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    subscribed_topic_names: list[str] = field(default_factory=list)
    member_epoch: int = 0
    previous_member_epoch: int = -1
    assigned: Assignment = field(default_factory=dict)
    session_timer: TimerHandle | None = None


@dataclass(eq=False)
class ShareGroup:
    group_id: str
    group_epoch: int = 0
    assignment_epoch: int = 0
    members: dict[str, ShareMember] = field(default_factory=dict)
    topic_partitions: dict[str, int] = field(default_factory=dict)
    # topics the group has had offsets in (subscribed, or reset), until their
    # offsets are deleted: what DescribeShareGroupOffsets of all topics reads
    # (Kafka's initialized share-group partitions), whichever broker holds them
    initialized: set[str] = field(default_factory=set)
    persisted: bytes = b""          # the last state entry written or replayed

    @property
    def state(self) -> str:
        return G_STABLE if self.members else G_EMPTY


@dataclass(slots=True)
class ShareHeartbeatResult:
    error: int = ErrorCode.NONE
    message: str | None = None
    member_id: str | None = None
    member_epoch: int = 0
    heartbeat_interval_ms: int = 0
    assignment: Assignment | None = None
    durable: asyncio.Future | None = None   # the state entry to wait for before answering


class ShareGroupCoordinator:
    """The share groups this broker coordinates. ``classic`` is the classic
    coordinator (which groups are ours, ids of other kinds), ``consumer``
    the KIP-848 one (its ids), ``topics`` name -> id and partition count."""

    def __init__(self, config: Any, clock: Clock, classic: Any, consumer: Any,
                 topics: Callable[[], Mapping[str, TopicInfo]],
                 group_configs: Callable[[str], Mapping[str, str]] = lambda group_id: {}) -> None:
        self.config = config
        self.clock = clock
        self.classic = classic
        self.consumer = consumer
        self.topics = topics
        self.group_configs = group_configs
        self.groups: dict[str, ShareGroup] = {}
        self.on_member_gone: Callable[[str, str], None] = lambda group_id, member_id: None

    def session_ms(self, group_id: str) -> int:
        """The group's ``share.session.timeout.ms``, else the broker's, read at each use as Kafka."""
        return group_config_int(self.group_configs(group_id), "share.session.timeout.ms", self.config)

    def interval_ms(self, group_id: str) -> int:
        return group_config_int(self.group_configs(group_id), "share.heartbeat.interval.ms", self.config)

    def get(self, group_id: str) -> ShareGroup | None:
        return self.groups.get(group_id)

    def is_other_kind(self, group_id: str) -> bool:
        """A classic (non-dead) or consumer group holds this id."""
        classic = self.classic.groups.get(group_id)
        return (self.consumer.get(group_id) is not None
                or (classic is not None and classic.state != "Dead"))

    def shutdown(self) -> None:
        for g in self.groups.values():
            for m in g.members.values():
                if m.session_timer is not None:
                    m.session_timer.cancel()

    def unload(self, belongs: Callable[[str], bool]) -> int:
        gone = [gid for gid in self.groups if belongs(gid)]
        for gid in gone:
            g = self.groups.pop(gid)
            for m in g.members.values():
                if m.session_timer is not None:
                    m.session_timer.cancel()
        return len(gone)

    def delete_empty(self, group_id: str) -> bool:
        g = self.groups.get(group_id)
        if g is None:
            return True
        if g.members:
            return False
        del self.groups[group_id]
        _background(self._append(group_id, bytes([OP_SHARE_GROUP_DELETE])))
        return True

    def create_empty(self, group_id: str) -> ShareGroup:
        """An empty share group (AlterShareGroupOffsets of an unknown group, as Kafka)."""
        g = self.groups[group_id] = ShareGroup(group_id)
        _background(self._persist(g))
        return g

    def offsets_changed(self, group_id: str, topics: set[str], *, initialized: bool) -> asyncio.Future | None:
        """AlterShareGroupOffsets (``initialized``) or DeleteShareGroupOffsets
        changed the group's offsets in ``topics``: noted durably."""
        g = self.groups.get(group_id)
        if g is None:
            return None
        g.initialized = (g.initialized | topics) if initialized else (g.initialized - topics)
        return self._persist(g)

    # ---------------------------------------------------------- durability
    def _append(self, group_id: str, data: bytes) -> asyncio.Future | None:
        return append_entry(self.classic, group_id, data)

    def _persist(self, g: ShareGroup) -> asyncio.Future | None:
        return persist_state(self.classic, g, OP_SHARE_GROUP, _encode(g))

    def replay(self, group_id: str, data: bytes) -> None:
        """A share group entry from the log or a snapshot (the last one wins)."""
        old = self.groups.pop(group_id, None)
        if old is not None:
            for m in old.members.values():
                if m.session_timer is not None:
                    m.session_timer.cancel()
        if data[0] == OP_SHARE_GROUP_DELETE:
            return
        g = _decode(group_id, json.loads(data[1:]))
        g.persisted = bytes(data)
        self.groups[group_id] = g
        try:   # sessions start again now (needs the running loop with the system clock)
            for m in g.members.values():
                self._schedule_session(g, m)
        except RuntimeError:
            pass

    def entries(self, selected: Callable[[str], bool]) -> list[tuple[bytes, bytes]]:
        """Snapshot payloads of the selected groups (one state entry each)."""
        return [(gid.encode(), bytes([OP_SHARE_GROUP]) + json.dumps(_encode(g), separators=(",", ":")).encode())
                for gid, g in self.groups.items() if selected(gid)]

    # ---------------------------------------------------------- heartbeat
    def heartbeat(self, *, group_id: str, member_id: str, member_epoch: int, rack_id: str | None,
                  subscribed_topic_names: list[str] | None, client_id: str,
                  client_host: str) -> ShareHeartbeatResult:
        try:
            self._validate(group_id, member_id, member_epoch, rack_id, subscribed_topic_names)
            err = self.classic.group_error(group_id)
            if err:
                raise ShareGroupError(err)
            if self.is_other_kind(group_id):
                raise ShareGroupError(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a share group.")
            if member_epoch == LEAVE_EPOCH:
                res = self._leave(group_id, member_id)
            else:
                res = self._heartbeat(group_id, member_id, member_epoch, rack_id, subscribed_topic_names,
                                      client_id, client_host)
        except ShareGroupError as e:
            return ShareHeartbeatResult(e.code, e.message)
        g = self.groups.get(group_id)
        if g is not None:
            res.durable = self._persist(g)
        return res

    @staticmethod
    def _validate(group_id: str, member_id: str, epoch: int, rack_id: str | None,
                  names: list[str] | None) -> None:
        """Kafka's ShareGroupHeartbeatRequest checks, in its order and words."""
        def invalid(msg: str) -> ShareGroupError:
            return ShareGroupError(ErrorCode.INVALID_REQUEST, msg)
        if not group_id:
            raise invalid("GroupId can't be empty.")
        if rack_id is not None and not rack_id:
            raise invalid("RackId can't be empty.")
        if not member_id:
            raise ShareGroupError(ErrorCode.INVALID_REQUEST)     # Kafka 4.4 answers this one without a message
        if epoch == 0:
            if not names:
                raise invalid("SubscribedTopicNames must be set in first request.")
        elif epoch < LEAVE_EPOCH:
            raise invalid("MemberEpoch is invalid.")

    def _heartbeat(self, group_id: str, member_id: str, epoch: int, rack_id: str | None,
                   names: list[str] | None, client_id: str, client_host: str) -> ShareHeartbeatResult:
        g = self.groups.get(group_id)
        if g is None:
            if epoch != 0:
                raise ShareGroupError(ErrorCode.GROUP_ID_NOT_FOUND, f"Share group {group_id} not found.")
            g = self.groups[group_id] = ShareGroup(group_id)
            log.info("share group %s: created", group_id)
        m = g.members.get(member_id)
        bump = False
        if m is None:
            if epoch != 0:
                raise ShareGroupError(ErrorCode.UNKNOWN_MEMBER_ID,
                                      f"Member {member_id} is not a member of group {group_id}.")
            if len(g.members) >= int(self.config["group.share.max.size"]):
                raise ShareGroupError(ErrorCode.GROUP_MAX_SIZE_REACHED,
                                      f"The share group has reached its maximum capacity of "
                                      f"{self.config['group.share.max.size']} members.")
            m = g.members[member_id] = ShareMember(member_id)
            bump = True
            log.info("share group %s: member %s joined", group_id, member_id)
        elif epoch != 0 and epoch != m.member_epoch and epoch != m.previous_member_epoch:
            raise ShareGroupError(
                ErrorCode.FENCED_MEMBER_EPOCH,
                f"The share group member has a {'greater' if epoch > m.member_epoch else 'smaller'} member "
                f"epoch ({epoch}) than the one known by the group coordinator ({m.member_epoch}). "
                f"The member must abandon all its partitions and rejoin.")
        m.client_id, m.client_host = client_id, client_host
        if rack_id is not None:
            m.rack_id = rack_id
        if names is not None and sorted(names) != sorted(m.subscribed_topic_names):
            m.subscribed_topic_names, bump = list(names), True
        sizes = self._subscribed_sizes(g)
        if sizes != g.topic_partitions:
            g.topic_partitions, bump = sizes, True
        g.initialized |= set(sizes)
        if bump:
            g.group_epoch += 1
        if g.assignment_epoch < g.group_epoch:
            self._assign(g)
        self._schedule_session(g, m)
        before = m.assigned
        m.assigned = self._target(m)
        if m.member_epoch != g.assignment_epoch:
            m.previous_member_epoch, m.member_epoch = m.member_epoch, g.assignment_epoch
        send = epoch == 0 or names is not None or before != m.assigned
        return ShareHeartbeatResult(ErrorCode.NONE, None, m.member_id, m.member_epoch,
                                    self.interval_ms(group_id), dict(m.assigned) if send else None)

    def _subscribed_sizes(self, g: ShareGroup) -> dict[str, int]:
        topics = self.topics()
        names = {n for m in g.members.values() for n in m.subscribed_topic_names if n in topics}
        return {n: topics[n].partitions for n in sorted(names)}

    def _target(self, m: ShareMember) -> Assignment:
        topics = self.topics()
        return {topics[n].topic_id: set(range(topics[n].partitions))
                for n in m.subscribed_topic_names if n in topics and topics[n].partitions > 0}

    def _assign(self, g: ShareGroup) -> None:
        g.assignment_epoch = g.group_epoch
        log.info("share group %s: assignment at epoch %d (simple, %d members)", g.group_id,
                 g.assignment_epoch, len(g.members))

    def target_assignment(self, g: ShareGroup, member_id: str) -> Assignment:
        m = g.members.get(member_id)
        return self._target(m) if m is not None else {}

    # ------------------------------------------------------------- leaving
    def _leave(self, group_id: str, member_id: str) -> ShareHeartbeatResult:
        g = self.groups.get(group_id)
        if g is None:
            raise ShareGroupError(ErrorCode.GROUP_ID_NOT_FOUND, f"Share group {group_id} not found.")
        m = g.members.get(member_id)
        if m is None:
            raise ShareGroupError(ErrorCode.UNKNOWN_MEMBER_ID,
                                  f"Member {member_id} is not a member of group {group_id}.")
        log.info("share group %s: member %s left", group_id, member_id)
        self._remove(g, m)
        return ShareHeartbeatResult(ErrorCode.NONE, None, member_id, LEAVE_EPOCH, 0, None)

    def _remove(self, g: ShareGroup, m: ShareMember) -> None:
        g.members.pop(m.member_id, None)
        if m.session_timer is not None:
            m.session_timer.cancel()
            m.session_timer = None
        g.group_epoch += 1
        g.topic_partitions = self._subscribed_sizes(g)
        self.on_member_gone(g.group_id, m.member_id)

    def _schedule_session(self, g: ShareGroup, m: ShareMember) -> None:
        if m.session_timer is not None:
            m.session_timer.cancel()
        m.session_timer = self.clock.call_later(self.session_ms(g.group_id) / 1000, self._expired, g, m)

    def _expired(self, g: ShareGroup, m: ShareMember) -> None:
        if g.members.get(m.member_id) is not m or self.groups.get(g.group_id) is not g:
            return
        m.session_timer = None
        log.info("share group %s: member %s session expired", g.group_id, m.member_id)
        self._remove(g, m)
        _background(self._persist(g))


def _background(fut: asyncio.Future | None) -> None:
    if fut is not None:
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())


def _encode(g: ShareGroup) -> dict[str, Any]:
    return {"epoch": g.group_epoch, "assignment_epoch": g.assignment_epoch, "topic_partitions": g.topic_partitions,
            "initialized": sorted(g.initialized),
            "members": [{"id": m.member_id, "rack": m.rack_id, "client_id": m.client_id,
                         "client_host": m.client_host, "topics": m.subscribed_topic_names,
                         "epoch": m.member_epoch, "previous_epoch": m.previous_member_epoch,
                         "assigned": {str(t): sorted(ps) for t, ps in m.assigned.items() if ps}}
                        for m in g.members.values()]}


def _decode(group_id: str, d: dict[str, Any]) -> ShareGroup:
    g = ShareGroup(group_id, d["epoch"], d["assignment_epoch"], topic_partitions=dict(d["topic_partitions"]),
                   initialized=set(d.get("initialized", ())))
    for x in d["members"]:
        g.members[x["id"]] = ShareMember(x["id"], x["rack"], x["client_id"], x["client_host"], list(x["topics"]),
                                         x["epoch"], x["previous_epoch"],
                                         {uuid.UUID(t): set(ps) for t, ps in x["assigned"].items()})
    return g
