"""OffsetFetch (9): committed offsets of one group (v1-7) or several (v8+); null topics = all.

v10 (KIP-848) names topics by id, as Kafka: an unknown id answers
UNKNOWN_TOPIC_ID for its partitions, and "all topics" leaves out offsets of
topics that no longer exist (they have no id to name them by). While the
coordinator loads, the group answers COORDINATOR_LOAD_IN_PROGRESS: per
partition at v1 (no group-level error code yet), else for the group.
v9+ names the member of a KIP-848 consumer group (``check_fetch``): an unknown
member or another epoch answers UNKNOWN_MEMBER_ID / STALE_MEMBER_EPOCH for the group;
no member id with epoch -1 (an admin) is not checked."""
from __future__ import annotations

import uuid

from kafka.protocol.consumer import OffsetFetchRequest, OffsetFetchResponse

from ..errors import ErrorCode
from .registry import RequestContext, api

BY_ID_VERSION = 10
Row = tuple[int, int, int, str | None, int]  # partition, offset, leader epoch, metadata, error
TopicRows = tuple[str, uuid.UUID | None, list[Row]]  # name, id (v10), rows


def _no_offset(p: int, err: int = ErrorCode.NONE) -> Row:
    return p, -1, -1, "", err


def _lookup(ctx: RequestContext, group_id: str, topics) -> list[tuple[str, list[Row]]]:
    """topics: [(name, [partitions])] or None for everything committed."""
    g = ctx.broker.groups.groups.get(group_id)
    offsets = g.offsets if g is not None else {}
    if topics is None:
        by_topic: dict[str, list] = {}
        for (t, p) in sorted(offsets):
            by_topic.setdefault(t, []).append(p)
        topics = list(by_topic.items())
    out = []
    for name, parts in topics:
        rows = []
        for p in parts:
            om = offsets.get((name, p))
            rows.append(_no_offset(p) if om is None
                        else (p, om.offset, om.leader_epoch, om.metadata, ErrorCode.NONE))
        out.append((name, rows))
    return out


def _all_topics(ctx: RequestContext, group_id: str) -> list[TopicRows]:
    """Everything committed; at v10 only topics that exist, named by their id."""
    result = _lookup(ctx, group_id, None)
    if ctx.version < BY_ID_VERSION:
        return [(name, None, rows) for name, rows in result]
    known = ctx.broker.replicas.metadata.topics
    return [(name, known[name].topic_id, rows) for name, rows in result if name in known]


def _some_topics(ctx: RequestContext, group_id: str, topics) -> list[TopicRows]:
    """The requested topics in request order; at v10 an unknown id answers UNKNOWN_TOPIC_ID."""
    if ctx.version < BY_ID_VERSION:
        return [(name, None, rows) for name, rows in
                _lookup(ctx, group_id, [(t.name, t.partition_indexes) for t in topics])]
    out = []
    for t in topics:
        topic = ctx.broker.replicas.topic_by_id(t.topic_id)
        if topic is None:
            out.append(("", t.topic_id, [_no_offset(p, ErrorCode.UNKNOWN_TOPIC_ID)
                                         for p in t.partition_indexes]))
            continue
        [(name, rows)] = _lookup(ctx, group_id, [(topic.name, t.partition_indexes)])
        out.append((name, t.topic_id, rows))
    return out


def _groups_response(ctx: RequestContext, request: OffsetFetchRequest) -> OffsetFetchResponse:
    """v8+: one answer per group."""
    G = OffsetFetchResponse.OffsetFetchResponseGroup
    T = G.OffsetFetchResponseTopics
    P = T.OffsetFetchResponsePartitions
    groups = []
    for rg in request.groups:
        err = ctx.broker.groups.group_error(rg.group_id)
        cg = ctx.broker.consumer_groups.get(rg.group_id)
        if not err and cg is not None and ctx.version >= 9:  # KIP-848: the member epoch
            err = ctx.broker.consumer_groups.check_fetch(cg, rg.member_id, rg.member_epoch)
        if err:
            groups.append(G(group_id=rg.group_id, error_code=err, topics=[]))
            continue
        result = (_all_topics(ctx, rg.group_id) if rg.topics is None
                  else _some_topics(ctx, rg.group_id, rg.topics))
        groups.append(G(group_id=rg.group_id, error_code=ErrorCode.NONE, topics=[
            T(name=name, topic_id=tid, partitions=[
                P(partition_index=p, committed_offset=o, committed_leader_epoch=e, metadata=md, error_code=err)
                for p, o, e, md, err in rows])
            for name, tid, rows in result]))
    return OffsetFetchResponse(version=ctx.version, throttle_time_ms=0, groups=groups)


def _single_group_response(ctx: RequestContext, request: OffsetFetchRequest) -> OffsetFetchResponse:
    """v1-7: one group; loading is a top-level error from v2, per partition at v1."""
    v = ctx.version
    T = OffsetFetchResponse.OffsetFetchResponseTopic
    P = T.OffsetFetchResponsePartition
    topics = None if request.topics is None else [(t.name, t.partition_indexes) for t in request.topics]
    error = ErrorCode.NONE
    err = ctx.broker.groups.group_error(request.group_id)
    if not err:
        result = _lookup(ctx, request.group_id, topics)
    elif v >= 2:
        error, result = err, []
    else:
        result = [(name, [_no_offset(p, err) for p in parts]) for name, parts in topics or []]
    return OffsetFetchResponse(version=v, throttle_time_ms=0, error_code=error, topics=[
        T(name=name, partitions=[P(partition_index=p, committed_offset=o, committed_leader_epoch=e,
                                   metadata=md, error_code=err) for p, o, e, md, err in rows])
        for name, rows in result])


@api(OffsetFetchRequest, OffsetFetchResponse)
async def handle(ctx: RequestContext, request: OffsetFetchRequest) -> OffsetFetchResponse:
    if ctx.version <= 7:
        return _single_group_response(ctx, request)
    return _groups_response(ctx, request)
