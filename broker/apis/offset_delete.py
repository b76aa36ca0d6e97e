"""OffsetDelete (47): drop committed offsets of topics the group is not subscribed to.
A KIP-848 consumer group is subscribed to what its members subscribe to, by name or regex."""
from kafka.protocol.consumer import OffsetDeleteRequest, OffsetDeleteResponse

from wal import WalError

from ..coordinator.group import DEAD, EMPTY
from ..errors import ErrorCode
from .registry import RequestContext, api

T = OffsetDeleteResponse.OffsetDeleteResponseTopic
P = T.OffsetDeleteResponsePartition


def _exists(ctx: RequestContext, name: str, index: int) -> bool:
    """The partition exists in the cluster (on whichever broker owns it)."""
    topic = ctx.broker.cluster.metadata.topics.get(name)
    return topic is not None and 0 <= index < topic.partitions


@api(OffsetDeleteRequest, OffsetDeleteResponse)
async def handle(ctx: RequestContext, request: OffsetDeleteRequest) -> OffsetDeleteResponse:
    v = ctx.version
    gc = ctx.broker.groups
    g = gc.groups.get(request.group_id)
    if not request.group_id:
        return OffsetDeleteResponse(version=v, error_code=ErrorCode.INVALID_GROUP_ID, throttle_time_ms=0, topics=[])
    err = gc.group_error(request.group_id)
    if err:
        return OffsetDeleteResponse(version=v, error_code=err,
                                    throttle_time_ms=0, topics=[])
    cg = ctx.broker.consumer_groups.get(request.group_id)
    if cg is None and (g is None or g.state == DEAD):
        return OffsetDeleteResponse(version=v, error_code=ErrorCode.GROUP_ID_NOT_FOUND, throttle_time_ms=0, topics=[])
    subscribed: set[str] = set()
    if cg is not None:
        subscribed = ctx.broker.consumer_groups.subscribed_topics(cg)
    elif g is not None and g.state != EMPTY:
        subscribed = g.subscribed_topics()
        if subscribed is None:  # not a consumer group: only an empty group may lose offsets
            return OffsetDeleteResponse(version=v, error_code=ErrorCode.NON_EMPTY_GROUP, throttle_time_ms=0, topics=[])
    rows, keys = [], []
    for t in request.topics:
        parts = []
        rows.append((t.name, parts))
        for p in t.partitions:
            if t.name in subscribed:
                err = ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC
            elif not _exists(ctx, t.name, p.partition_index):
                err = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            else:
                err = ErrorCode.NONE
                keys.append((t.name, p.partition_index))
            parts.append([p.partition_index, err])
    try:
        if g is not None:   # a consumer group that never committed has nothing to delete
            await gc.delete_offsets(request.group_id, keys)
    except WalError:
        return OffsetDeleteResponse(version=v, error_code=ErrorCode.KAFKA_STORAGE_ERROR, throttle_time_ms=0, topics=[])
    return OffsetDeleteResponse(version=v, error_code=ErrorCode.NONE, throttle_time_ms=0, topics=[
        T(name=name, partitions=[P(partition_index=i, error_code=e) for i, e in parts]) for name, parts in rows])
