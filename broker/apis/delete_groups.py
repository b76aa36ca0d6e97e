"""DeleteGroups (42): delete empty groups and their committed offsets (a durable tombstone).
A KIP-848 consumer group with members answers NON_EMPTY_GROUP, as a classic one."""
from kafka.protocol.admin import DeleteGroupsRequest, DeleteGroupsResponse

from wal import WalError

from ..errors import ErrorCode
from .registry import RequestContext, api


@api(DeleteGroupsRequest, DeleteGroupsResponse)
async def handle(ctx: RequestContext, request: DeleteGroupsRequest) -> DeleteGroupsResponse:
    R = DeleteGroupsResponse.DeletableGroupResult
    results = []
    for gid in request.groups_names:
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
