"""DeleteGroups (42): delete empty groups and their committed offsets (a durable tombstone).
A KIP-848 consumer group with members answers NON_EMPTY_GROUP, as a classic one. An
empty share group goes with the state of its share-partitions this broker owns
(``kafka-share-groups --delete``; another owner's stay, as offset resets do)."""
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
    b = ctx.broker
    if not b.share_groups.delete_empty(gid):
        return ErrorCode.NON_EMPTY_GROUP
    for tid, index in sorted(b.share_partitions.groups_of(gid)):
        t = b.replicas.topic_by_id(tid)
        p = b.replicas.get(t.name, index) if t is not None else None
        if p is None:
            continue
        fut = b.share_partitions.reset((gid, tid, index), -1, leader_epoch=p.leader_epoch)
        if fut is not None:
            try:
                await fut
            except WalError:
                return ErrorCode.KAFKA_STORAGE_ERROR
    return ErrorCode.NONE
