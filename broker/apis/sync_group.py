"""SyncGroup (14): the leader hands out assignments; followers wait for theirs."""
from kafka.protocol.consumer import SyncGroupRequest, SyncGroupResponse

from .registry import RequestContext, api


@api(SyncGroupRequest, SyncGroupResponse)
async def handle(ctx: RequestContext, request: SyncGroupRequest) -> SyncGroupResponse:
    v = ctx.version
    err, assignment, g = await ctx.broker.groups.sync_group(
        group_id=request.group_id, generation=request.generation_id, member_id=request.member_id,
        group_instance_id=request.group_instance_id if v >= 3 else None,
        protocol_type=request.protocol_type if v >= 5 else None,
        protocol_name=request.protocol_name if v >= 5 else None,
        assignments={a.member_id: bytes(a.assignment) for a in request.assignments})
    return SyncGroupResponse(
        version=v, throttle_time_ms=0, error_code=err,
        protocol_type=g.protocol_type if g is not None and not err else None,
        protocol_name=g.protocol_name if g is not None and not err else None,
        assignment=assignment)
