"""FindCoordinator (10): this broker coordinates every group; transactions are unsupported.

While the group coordinator is still loading (replaying the group snapshot and
the WAL's group entries) it answers COORDINATOR_NOT_AVAILABLE, as Kafka does
while the group's ``__consumer_offsets`` partition has no online leader:
clients retry the lookup. A client that already knows this broker gets
COORDINATOR_LOAD_IN_PROGRESS from the group APIs meanwhile.
"""
from kafka.protocol.metadata import FindCoordinatorRequest, FindCoordinatorResponse

from ..errors import ErrorCode
from .registry import RequestContext, api

KEY_TYPE_GROUP = 0


def _answer(ctx: RequestContext, key_type: int):
    b = ctx.broker
    if key_type == KEY_TYPE_GROUP:
        if b.groups.loading:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, "the group coordinator is loading", -1, "", -1
        return ErrorCode.NONE, None, b.node_id, b.advertised_host, b.advertised_port
    if key_type == 1:
        return (ErrorCode.COORDINATOR_NOT_AVAILABLE, "transactions are not supported", -1, "", -1)
    return ErrorCode.INVALID_REQUEST, f"unknown key type {key_type}", -1, "", -1


@api(FindCoordinatorRequest, FindCoordinatorResponse)
async def handle(ctx: RequestContext, request: FindCoordinatorRequest) -> FindCoordinatorResponse:
    v = ctx.version
    key_type = request.key_type if v >= 1 else KEY_TYPE_GROUP
    err, msg, node, host, port = _answer(ctx, key_type)
    if v <= 3:
        return FindCoordinatorResponse(version=v, throttle_time_ms=0, error_code=err,
                                       error_message=msg, node_id=node, host=host, port=port)
    C = FindCoordinatorResponse.Coordinator
    return FindCoordinatorResponse(version=v, throttle_time_ms=0, coordinators=[
        C(key=k, node_id=node, host=host, port=port, error_code=err, error_message=msg)
        for k in request.coordinator_keys])
