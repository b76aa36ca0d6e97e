"""DescribeShareGroupOffsets (90): each share-partition's start offset (SPSO) and lag (v1).

At the group coordinator (docs/share-groups.md §4.9). The state lives at each
partition's owner: a partition this broker owns answers from memory (or the
state it loaded); another's from its manifest's ``share_state`` (1 GET; as
of that owner's last manifest update, Kafka's answer also trails its writes).
Topics null: the group's subscribed topics, the topics it has had offsets
in (``ShareGroup.initialized``: subscribed or reset since, not deleted) and
the partitions this broker has state of, only partitions with state
(Kafka's initialized ones); a named
partition without state answers start offset -1. Another kind of group's
id is GROUP_ID_NOT_FOUND for the group; an unknown
topic UNKNOWN_TOPIC_OR_PARTITION for its partitions (where Kafka 4.4 never
answers a partition index past the topic's). An unknown group has no
offsets (no error, as Kafka 4.4).
"""
from __future__ import annotations

import base64
import uuid

from objectstore import ObjectStoreError

from ..errors import ErrorCode
from ..share.manager import durable_summary
from ..share.state import DurableShareState, decode
from .registry import RequestContext, api
from .specs import DescribeShareGroupOffsetsRequest, DescribeShareGroupOffsetsResponse

R = DescribeShareGroupOffsetsResponse
G = R.DescribeShareGroupOffsetsResponseGroup
T = G.DescribeShareGroupOffsetsResponseTopic
P = T.DescribeShareGroupOffsetsResponsePartition


async def _summary(ctx: RequestContext, group_id: str, topic_id: uuid.UUID, name: str,
                   index: int) -> tuple[int, int, int] | None:
    """(start offset, leader epoch, lag), or None without state."""
    b = ctx.broker
    p = b.replicas.get(name, index)
    if p is not None:
        found = b.share_partitions.summary((group_id, topic_id, index), p.high_watermark)
        return None if found is None else (found[0], p.leader_epoch, found[1])
    try:
        m, _ = await b.replicas.manifests.load(topic_id.bytes, index)
    except ObjectStoreError:
        return None
    payload = dict(m.share_state).get(group_id) if m is not None else None
    if m is None or payload is None:
        return None
    durable = DurableShareState()
    durable.apply(decode(base64.b64decode(payload)))
    start, lag = durable_summary(durable, m.next_offset)
    return start, durable.leader_epoch, lag


@api(DescribeShareGroupOffsetsRequest, DescribeShareGroupOffsetsResponse)
async def handle(ctx: RequestContext, request: DescribeShareGroupOffsetsRequest) -> DescribeShareGroupOffsetsResponse:
    b = ctx.broker
    v = ctx.version
    out = []
    for rg in request.groups:
        gid = rg.group_id or ""
        err = b.groups.group_error(gid) if gid else ErrorCode.INVALID_GROUP_ID
        sg = b.share_groups.get(gid) if not err else None
        msg: str | None = None
        if not err and sg is None:
            if not b.share_groups.is_other_kind(gid):       # as Kafka 4.4: an unknown group has no offsets
                out.append(G(group_id=gid, topics=[], error_code=ErrorCode.NONE, error_message=None))
                continue
            err, msg = ErrorCode.GROUP_ID_NOT_FOUND, f"Group {gid} is not a share group."
        if err or sg is None:
            out.append(G(group_id=gid, topics=[], error_code=err, error_message=msg))
            continue
        topics = b.cluster.metadata.topics
        if rg.topics is None:
            named = {n: None for m in sg.members.values() for n in m.subscribed_topic_names if n in topics}
            named.update((n, None) for n in sg.initialized if n in topics)     # offsets other owners hold
            for tid, _ in b.share_partitions.groups_of(gid):
                t = b.replicas.topic_by_id(tid)
                if t is not None:
                    named.setdefault(t.name, None)
            wanted = [(n, list(range(topics[n].partitions)), True) for n in sorted(named)]
        else:
            wanted = [(t.topic_name, list(t.partitions), False) for t in rg.topics]
        rows = []
        for name, partitions, only_initialized in wanted:
            topic = topics.get(name)
            parts = []
            for index in partitions:
                if topic is None or not 0 <= index < topic.partitions:
                    parts.append(P(partition_index=index, start_offset=-1, leader_epoch=-1, lag=-1,
                                   error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, error_message=None))
                    continue
                found = await _summary(ctx, gid, topic.topic_id, name, index)
                if found is None:
                    if not only_initialized:
                        parts.append(P(partition_index=index, start_offset=-1, leader_epoch=-1, lag=-1,
                                       error_code=ErrorCode.NONE, error_message=None))
                    continue
                parts.append(P(partition_index=index, start_offset=found[0], leader_epoch=found[1],
                               lag=found[2], error_code=ErrorCode.NONE, error_message=None))
            if parts:
                rows.append(T(topic_name=name, topic_id=topic.topic_id if topic else uuid.UUID(int=0),
                              partitions=parts))
        out.append(G(group_id=gid, topics=rows, error_code=ErrorCode.NONE, error_message=None))
    return R(version=v, throttle_time_ms=0, groups=out)
