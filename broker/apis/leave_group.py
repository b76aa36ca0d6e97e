"""LeaveGroup (13): one member (v0-2) or a batch of members (v3+, KIP-345) leave."""
from kafka.protocol.consumer import LeaveGroupRequest, LeaveGroupResponse

from .registry import RequestContext, api


@api(LeaveGroupRequest, LeaveGroupResponse)
async def handle(ctx: RequestContext, request: LeaveGroupRequest) -> LeaveGroupResponse:
    v = ctx.version
    if v <= 2:
        top, errors = ctx.broker.groups.leave_group(request.group_id, [(request.member_id, None)])
        return LeaveGroupResponse(version=v, throttle_time_ms=0, error_code=top or (errors[0] if errors else 0))
    members = [(m.member_id, m.group_instance_id) for m in request.members]
    top, errors = ctx.broker.groups.leave_group(request.group_id, members)
    R = LeaveGroupResponse.MemberResponse
    return LeaveGroupResponse(version=v, throttle_time_ms=0, error_code=top, members=[
        R(member_id=mid, group_instance_id=iid, error_code=e) for (mid, iid), e in zip(members, errors)])
