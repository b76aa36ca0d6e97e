"""DescribeGroups (15): state, protocol and members (metadata and assignment when Stable).
While the coordinator loads, each group answers COORDINATOR_LOAD_IN_PROGRESS (Kafka's groupError).
Authorized operations (v3+, KIP-430) when asked, for every group answered without
an error (an unknown group before v6 too: Kafka's Dead group), as Kafka does.
A KIP-848 consumer group or a share group is described as Kafka does: Dead,
and from v6 GROUP_ID_NOT_FOUND ("not a classic group")."""
from kafka.protocol.admin import DescribeGroupsRequest, DescribeGroupsResponse

from ..coordinator.group import DEAD, STABLE
from ..errors import ErrorCode
from .authorized import GROUP_OPERATIONS, operations
from .registry import RequestContext, api

G = DescribeGroupsResponse.DescribedGroup
M = G.DescribedGroupMember


@api(DescribeGroupsRequest, DescribeGroupsResponse)
async def handle(ctx: RequestContext, request: DescribeGroupsRequest) -> DescribeGroupsResponse:
    v = ctx.version
    ops = operations(GROUP_OPERATIONS, v >= 3 and request.include_authorized_operations)
    out = []
    for gid in request.groups:
        err = ctx.broker.groups.group_error(gid)
        if err:
            out.append(G(error_code=err, error_message=None, group_id=gid,
                         group_state="", protocol_type="", protocol_data="", members=[],
                         authorized_operations=None))
            continue
        if ctx.broker.consumer_groups.get(gid) is not None or ctx.broker.share_groups.get(gid) is not None:
            err = ErrorCode.GROUP_ID_NOT_FOUND if v >= 6 else ErrorCode.NONE
            out.append(G(error_code=err, error_message=f"Group {gid} is not a classic group." if err else None,
                         group_id=gid, group_state=DEAD, protocol_type="", protocol_data="",
                         members=[], authorized_operations=None if err else ops))
            continue
        g = ctx.broker.groups.groups.get(gid)
        if g is None or g.state == DEAD:
            err = ErrorCode.GROUP_ID_NOT_FOUND if v >= 6 else ErrorCode.NONE
            out.append(G(error_code=err, error_message=f"Group {gid} not found." if err else None,
                         group_id=gid, group_state=DEAD, protocol_type="", protocol_data="",
                         members=[], authorized_operations=None if err else ops))
            continue
        stable = g.state == STABLE
        members = [M(member_id=m.member_id, group_instance_id=m.group_instance_id,
                     client_id=m.client_id, client_host=m.client_host,
                     member_metadata=m.metadata_for(g.protocol_name) if stable else b"",
                     member_assignment=m.assignment if stable else b"")
                   for m in g.members.values()]
        out.append(G(error_code=ErrorCode.NONE, error_message=None, group_id=gid,
                     group_state=g.state, protocol_type=g.protocol_type or "",
                     protocol_data=(g.protocol_name or "") if stable else "",
                     members=members, authorized_operations=ops))
    return DescribeGroupsResponse(version=v, throttle_time_ms=0, groups=out)
