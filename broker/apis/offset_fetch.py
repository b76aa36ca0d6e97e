"""OffsetFetch (9): committed offsets of one group (v1-7) or several (v8+); null topics = all.
v10 (topic ids, KIP-848 consumers) is not offered."""
from kafka.protocol.consumer import OffsetFetchRequest, OffsetFetchResponse

from ..errors import ErrorCode
from . import RequestContext, api


def _lookup(ctx: RequestContext, group_id: str, topics) -> list[tuple[str, list]]:
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
            if om is None:
                rows.append((p, -1, -1, "", ErrorCode.NONE))
            else:
                rows.append((p, om.offset, om.leader_epoch, om.metadata, ErrorCode.NONE))
        out.append((name, rows))
    return out


@api(OffsetFetchRequest, OffsetFetchResponse, max_version=9)
async def handle(ctx: RequestContext, request: OffsetFetchRequest) -> OffsetFetchResponse:
    v = ctx.version
    if v <= 7:
        T = OffsetFetchResponse.OffsetFetchResponseTopic
        P = T.OffsetFetchResponsePartition
        topics = None if request.topics is None else [(t.name, t.partition_indexes) for t in request.topics]
        result = _lookup(ctx, request.group_id, topics)
        return OffsetFetchResponse(version=v, throttle_time_ms=0, error_code=ErrorCode.NONE, topics=[
            T(name=name, partitions=[P(partition_index=p, committed_offset=o, committed_leader_epoch=e,
                                       metadata=md, error_code=err) for p, o, e, md, err in rows])
            for name, rows in result])
    G = OffsetFetchResponse.OffsetFetchResponseGroup
    T = G.OffsetFetchResponseTopics
    P = T.OffsetFetchResponsePartitions
    groups = []
    for rg in request.groups:
        topics = None if rg.topics is None else [(t.name, t.partition_indexes) for t in rg.topics]
        result = _lookup(ctx, rg.group_id, topics)
        groups.append(G(group_id=rg.group_id, error_code=ErrorCode.NONE, topics=[
            T(name=name, partitions=[P(partition_index=p, committed_offset=o, committed_leader_epoch=e,
                                       metadata=md, error_code=err) for p, o, e, md, err in rows])
            for name, rows in result]))
    return OffsetFetchResponse(version=v, throttle_time_ms=0, groups=groups)
