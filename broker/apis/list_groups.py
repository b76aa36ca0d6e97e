"""ListGroups (16): every group this coordinator knows, filtered by state (v4+) and type (v5+).
Classic groups have type "classic"; KIP-848 consumer groups "consumer" (protocol type "consumer");
share groups (KIP-932) "share" (protocol type "share").
While the coordinator loads: COORDINATOR_LOAD_IN_PROGRESS and no groups (Kafka lists the groups
of the partitions already loaded with that error; here nothing is loaded yet)."""
from kafka.protocol.admin import ListGroupsRequest, ListGroupsResponse

from ..coordinator.group import DEAD
from ..errors import ErrorCode
from .registry import RequestContext, api


@api(ListGroupsRequest, ListGroupsResponse)
async def handle(ctx: RequestContext, request: ListGroupsRequest) -> ListGroupsResponse:
    v = ctx.version
    states = {s.lower() for s in (request.states_filter or [])} if v >= 4 else set()
    types = {t.lower() for t in (request.types_filter or [])} if v >= 5 else set()
    L = ListGroupsResponse.ListedGroup
    groups = []
    if ctx.broker.groups.loading:
        return ListGroupsResponse(version=v, throttle_time_ms=0,
                                  error_code=ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, groups=groups)
    cgc = ctx.broker.consumer_groups
    if not types or "classic" in types:
        gc = ctx.broker.groups
        for g in gc.groups.values():
            if g.state == DEAD or (states and g.state.lower() not in states) or gc.shard_error(g.group_id):
                continue
            if cgc.get(g.group_id) is not None:   # the offsets of a consumer group
                continue
            groups.append(L(group_id=g.group_id, protocol_type=g.protocol_type or "",
                            group_state=g.state, group_type="classic"))
    if not types or "consumer" in types:
        for cg in cgc.groups.values():
            state = cg.state
            if (states and state.lower() not in states) or ctx.broker.groups.shard_error(cg.group_id):
                continue
            groups.append(L(group_id=cg.group_id, protocol_type="consumer", group_state=state,
                            group_type="consumer"))
    if not types or "share" in types:
        for sg in ctx.broker.share_groups.groups.values():
            state = sg.state
            if (states and state.lower() not in states) or ctx.broker.groups.shard_error(sg.group_id):
                continue
            groups.append(L(group_id=sg.group_id, protocol_type="share", group_state=state, group_type="share"))
    return ListGroupsResponse(version=v, throttle_time_ms=0, error_code=ErrorCode.NONE, groups=groups)
