"""Heartbeat (12): keeps a member's session alive; tells it when to rejoin."""
from kafka.protocol.consumer import HeartbeatRequest, HeartbeatResponse

from .registry import RequestContext, api


@api(HeartbeatRequest, HeartbeatResponse)
async def handle(ctx: RequestContext, request: HeartbeatRequest) -> HeartbeatResponse:
    err = ctx.broker.groups.heartbeat(request.group_id, request.generation_id, request.member_id,
                                      request.group_instance_id if ctx.version >= 3 else None)
    return HeartbeatResponse(version=ctx.version, throttle_time_ms=0, error_code=err)
