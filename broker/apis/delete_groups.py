"""DeleteGroups (42): delete empty groups and their committed offsets (a durable tombstone)."""
from kafka.protocol.admin import DeleteGroupsRequest, DeleteGroupsResponse

from wal import WalError

from ..errors import ErrorCode
from .registry import RequestContext, api


@api(DeleteGroupsRequest, DeleteGroupsResponse)
async def handle(ctx: RequestContext, request: DeleteGroupsRequest) -> DeleteGroupsResponse:
    R = DeleteGroupsResponse.DeletableGroupResult
    results = []
    for gid in request.groups_names:
        try:
            err = await ctx.broker.groups.delete_group(gid)
        except WalError:
            err = ErrorCode.KAFKA_STORAGE_ERROR
        results.append(R(group_id=gid, error_code=err))
    return DeleteGroupsResponse(version=ctx.version, throttle_time_ms=0, results=results)
