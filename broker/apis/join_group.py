"""JoinGroup (11): join a group; answered when the rebalance completes (group_coordinator.py).

A non-empty KIP-848 consumer group of that id takes the member as a classic
member inside it (online migration, coordinator/classic_members.py); an empty
one becomes a classic group, as Kafka converts an empty group."""
from kafka.protocol.consumer import JoinGroupRequest, JoinGroupResponse

from .registry import RequestContext, api


@api(JoinGroupRequest, JoinGroupResponse)
async def handle(ctx: RequestContext, request: JoinGroupRequest) -> JoinGroupResponse:
    v = ctx.version
    res = await ctx.broker.groups.join_group(
        version=v, group_id=request.group_id, member_id=request.member_id or "",
        group_instance_id=request.group_instance_id if v >= 5 else None,
        client_id=ctx.header.client_id or "", client_host=ctx.client_host,
        session_timeout_ms=request.session_timeout_ms,
        rebalance_timeout_ms=request.rebalance_timeout_ms if v >= 1 else request.session_timeout_ms,
        protocol_type=request.protocol_type,
        protocols=[(p.name, bytes(p.metadata)) for p in request.protocols])
    M = JoinGroupResponse.JoinGroupResponseMember
    proto_name = res.protocol_name
    if proto_name is None and v < 7:
        proto_name = ""
    return JoinGroupResponse(
        version=v, throttle_time_ms=0, error_code=res.error, generation_id=res.generation,
        protocol_type=res.protocol_type, protocol_name=proto_name, leader=res.leader,
        skip_assignment=False, member_id=res.member_id,
        members=[M(member_id=mid, group_instance_id=iid, metadata=meta) for mid, iid, meta in res.members])
