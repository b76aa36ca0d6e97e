"""DeleteGroups (42): delete empty groups and their committed offsets (a durable tombstone).
A KIP-848 consumer group with members answers NON_EMPTY_GROUP, as a classic one. An
empty share group goes with the state of its share-partitions, at whichever
broker owns each (``kafka-share-groups --delete``; share/resets.py)."""
from kafka.protocol.admin import DeleteGroupsRequest, DeleteGroupsResponse

from wal import WalError

from ..errors import ErrorCode
from .registry import RequestContext, api


@api(DeleteGroupsRequest, DeleteGroupsResponse)
async def handle(ctx: RequestContext, request: DeleteGroupsRequest) -> DeleteGroupsResponse:
    R = DeleteGroupsResponse.DeletableGroupResult
    results = []
    for gid in request.groups_names:
        sgc = ctx.broker.share_groups
        if sgc.get(gid) is not None and not ctx.broker.groups.group_error(gid):
            results.append(R(group_id=gid, error_code=await _delete_share_group(ctx, gid)))
            continue
        cgc = ctx.broker.consumer_groups
        if cgc.get(gid) is not None and not ctx.broker.groups.group_error(gid):
            # KIP-848: an empty consumer group goes, with its offsets (if it has any)
            if not cgc.delete_empty(gid):
                results.append(R(group_id=gid, error_code=ErrorCode.NON_EMPTY_GROUP))
                continue
            if gid not in ctx.broker.groups.groups:
                results.append(R(group_id=gid, error_code=ErrorCode.NONE))
                continue
        try:
            err = await ctx.broker.groups.delete_group(gid)
        except WalError:
            err = ErrorCode.KAFKA_STORAGE_ERROR
        results.append(R(group_id=gid, error_code=err))
    return DeleteGroupsResponse(version=ctx.version, throttle_time_ms=0, results=results)


async def _delete_share_group(ctx: RequestContext, gid: str) -> int:
    """An empty share group goes after the state of its share-partitions has,
    at each partition's owner (share/resets.py, as offset deletes): if an owner
    cannot delete it, the group stays and the error is the answer."""
    b = ctx.broker
    g = b.share_groups.get(gid)
    if g is not None and g.members:
        return ErrorCode.NON_EMPTY_GROUP
    names = set(g.initialized) if g is not None else set()
    for tid, _index in b.share_partitions.groups_of(gid):     # state here the group forgot
        t = b.replicas.topic_by_id(tid)
        if t is not None:
            names.add(t.name)
    topics = b.cluster.metadata.topics
    wanted = [(topics[n], i, -1) for n in sorted(names) if n in topics for i in range(topics[n].partitions)]
    results = await b.share_resets.request(gid, wanted) if wanted else {}
    for code, _message in results.values():
        if code and code != ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
            return code
    if not b.share_groups.delete_empty(gid):
        return ErrorCode.NON_EMPTY_GROUP
    return ErrorCode.NONE
