"""What ShareFetch (78) and ShareAcknowledge (79) share: partitions by topic id,
acknowledgements applied at the partition owner, the share session's close.

Not an API module. An acknowledgement is answered once its state change is
durable (the manager's ``persist`` future); per partition all or nothing.
"""
from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any, Iterable

from wal import WalError

from ..errors import ErrorCode
from ..log.partition import Partition
from ..share.errors import ShareErrorCode
from ..share.partition import AcknowledgementBatch
from ..share.sessions import ShareSession
from .leaders import FETCH_ERRORS, LeaderHints
from .registry import RequestContext

TP = tuple[uuid.UUID, int]


@dataclass(slots=True)
class Resolved:
    """A requested partition at this broker: its log, or the error answered instead."""

    partition: Partition | None
    error: int
    topic_name: str | None


def resolve(ctx: RequestContext, topic_id: uuid.UUID, index: int) -> Resolved:
    b = ctx.broker
    t = b.replicas.topic_by_id(topic_id)
    if t is None:
        return Resolved(None, ErrorCode.UNKNOWN_TOPIC_ID, None)
    p = b.replicas.get(t.name, index)
    if p is None:
        return Resolved(None, b.replicas.missing(t.name, index), t.name)
    if p.sealed:    # being handed off: its share state must not change after the last manifest update
        return Resolved(None, ErrorCode.NOT_LEADER_OR_FOLLOWER, t.name)
    if p.storage.offline:
        return Resolved(None, ErrorCode.KAFKA_STORAGE_ERROR, t.name)
    return Resolved(p, ErrorCode.NONE, t.name)


def ack_batches(batches: Iterable[Any]) -> list[AcknowledgementBatch]:
    return [AcknowledgementBatch(b.first_offset, b.last_offset, tuple(b.acknowledge_types)) for b in batches]


async def acknowledge(ctx: RequestContext, group_id: str, member_id: str,
                      acks: dict[TP, list[AcknowledgementBatch]]) -> dict[TP, tuple[int, str | None]]:
    """Apply each partition's acknowledgements; (error, message) per partition once durable."""
    b = ctx.broker
    out: dict[TP, tuple[int, str | None]] = {}
    pending: list[tuple[TP, asyncio.Future]] = []
    renew = b.share_partitions.renew_allowed(group_id)
    for tp, batches in acks.items():
        r = resolve(ctx, *tp)
        if r.partition is None:
            out[tp] = (r.error, None)
            continue
        key = (group_id, tp[0], tp[1])
        sp = b.share_partitions.get(key)
        if sp is None:
            out[tp] = (ShareErrorCode.INVALID_RECORD_STATE,
                       "Batch record not found. The request batch offsets are not found in the cache.")
            continue
        outcome, fut = b.share_partitions.acknowledge(key, sp, member_id, batches, renew_allowed=renew)
        out[tp] = (outcome.error, outcome.message)
        if fut is not None:
            pending.append((tp, fut))
    for tp, fut in pending:
        try:
            await fut
        except WalError:
            out[tp] = (ErrorCode.KAFKA_STORAGE_ERROR, "The acknowledgement could not be written.")
    return out


async def close_session(ctx: RequestContext, session: ShareSession) -> None:
    """Epoch -1: the member's records still acquired in the session's partitions go back."""
    b = ctx.broker
    keys = [(session.group_id, tid, idx) for tid, idx in session.partitions]
    b.share_sessions.close(session)
    for fut in b.share_partitions.release_member(session.group_id, session.member_id, keys):
        try:
            await fut
        except WalError:
            pass


def leader_hints(ctx: RequestContext, rows: Iterable[tuple[str | None, int, int, Any]]) -> list[Any]:
    """KIP-951: set ``current_leader`` on rows answered NOT_LEADER_OR_FOLLOWER; the endpoints."""
    hints: LeaderHints | None = None
    for name, index, error, leader in rows:
        if error in FETCH_ERRORS and name is not None:
            if hints is None:
                hints = LeaderHints(ctx.broker.cluster)
            leader.leader_id, leader.leader_epoch = hints.leader(name, index)
    return hints.node_endpoints() if hints is not None else []
