"""OffsetCommit (8): group commits checked against generation and member; answered after
the covering WAL fsync. v10 (KIP-848) names topics by id instead of name.

Error order as Kafka's: an unknown topic (id or name/partition) answers that
partition whatever the group's state (Kafka filters those before it asks the
coordinator); then the group's error (loading, then ``check_commit``'s order:
member, generation, rebalance) for every other partition; then metadata size.
A KIP-848 consumer group checks the member epoch instead (consumer_group.py
``check_commit``: UNKNOWN_MEMBER_ID, UNSUPPORTED_VERSION below v9,
STALE_MEMBER_EPOCH); its offsets are stored as a classic group's."""
from __future__ import annotations

import time

from kafka.protocol.consumer import OffsetCommitRequest, OffsetCommitResponse

from wal import WalError

from ..coordinator.group import OffsetAndMetadata
from ..errors import ErrorCode
from .registry import RequestContext, api

T = OffsetCommitResponse.OffsetCommitResponseTopic
P = T.OffsetCommitResponsePartition
BY_ID_VERSION = 10  # topics are named by topic id from here on


def topic_name(ctx: RequestContext, topic) -> str | None:
    """The request topic's name; at v10 resolved from its id (None: unknown id)."""
    if ctx.version < BY_ID_VERSION:
        return topic.name
    t = ctx.broker.replicas.topic_by_id(topic.topic_id)
    return t.name if t is not None else None


def _group_error(ctx: RequestContext, request: OffsetCommitRequest) -> int:
    # No INVALID_GROUP_ID: Kafka takes "" like any group id here (a simple commit
    # into group "" succeeds), unlike the membership APIs.
    cg = ctx.broker.consumer_groups.get(request.group_id or "")
    if cg is not None:  # KIP-848: the member epoch, not a generation
        return (ctx.broker.groups.group_error(cg.group_id)
                or ctx.broker.consumer_groups.check_commit(cg, request.member_id or "",
                                                           request.generation_id_or_member_epoch, ctx.version))
    return ctx.broker.groups.check_commit(request.group_id or "", request.generation_id_or_member_epoch,
                                          request.member_id or "",
                                          request.group_instance_id if ctx.version >= 7 else None,
                                          ctx.version)


def _partition_error(ctx: RequestContext, name: str | None, p, group_err: int) -> int:
    if name is None:
        return ErrorCode.UNKNOWN_TOPIC_ID
    topic = ctx.broker.cluster.metadata.topics.get(name)   # owned by any broker of the cluster
    if topic is None or not 0 <= p.partition_index < topic.partitions:
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    if group_err:
        return group_err
    md = p.committed_metadata
    if md is not None and len(md.encode()) > ctx.broker.config["offset.metadata.max.bytes"]:
        return ErrorCode.OFFSET_METADATA_TOO_LARGE
    return ErrorCode.NONE


@api(OffsetCommitRequest, OffsetCommitResponse)
async def handle(ctx: RequestContext, request: OffsetCommitRequest) -> OffsetCommitResponse:
    v = ctx.version
    now = int(time.time() * 1000)
    group_err = _group_error(ctx, request)
    rows = []  # (request topic, [[partition, error]])
    commits = []
    for t in request.topics:
        name = topic_name(ctx, t)
        parts = []
        rows.append((t, parts))
        for p in t.partitions:
            err = _partition_error(ctx, name, p, group_err)
            if not err:
                epoch = p.committed_leader_epoch if v >= 6 else -1
                commits.append((name, p.partition_index,
                                OffsetAndMetadata(p.committed_offset, epoch, p.committed_metadata, now)))
            parts.append([p.partition_index, err])
    if commits:
        try:
            await ctx.broker.groups.commit_offsets(request.group_id, commits)
        except WalError:
            for _, parts in rows:
                for row in parts:
                    if not row[1]:
                        row[1] = ErrorCode.KAFKA_STORAGE_ERROR
    return OffsetCommitResponse(version=v, throttle_time_ms=0, topics=[
        T(name=t.name, topic_id=t.topic_id, partitions=[P(partition_index=i, error_code=e) for i, e in parts])
        for t, parts in rows])
