"""FindCoordinator (10): the owner of the group's coordinator partition; transactions are unsupported.

A transaction coordinator lookup answers TRANSACTIONAL_ID_AUTHORIZATION_FAILED
with a message saying why: clients treat it as fatal and fail at once, where
COORDINATOR_NOT_AVAILABLE kept them retrying until their timeout.

A group maps to coordinator partition ``abs(hash(group id)) %
offsets.topic.num.partitions`` as Kafka maps it to a ``__consumer_offsets``
partition, and that partition's owner in the cluster metadata coordinates it.
While the group coordinator is still loading (replaying the group snapshots
and the WAL's group entries), or the partition's owner is not a member, it
answers COORDINATOR_NOT_AVAILABLE, as Kafka does while the group's
``__consumer_offsets`` partition has no online leader: clients retry the
lookup. A client that already knows this broker gets
COORDINATOR_LOAD_IN_PROGRESS from the group APIs meanwhile.
"""
from dataclasses import dataclass

from kafka.protocol.metadata import FindCoordinatorRequest, FindCoordinatorResponse

from ..coordinator.log import partition_for
from ..errors import ErrorCode
from .registry import RequestContext, api

KEY_TYPE_GROUP = 0
KEY_TYPE_TRANSACTION = 1


@dataclass(frozen=True, slots=True)
class Answer:
    error: ErrorCode
    message: str | None = None
    node_id: int = -1
    host: str = ""
    port: int = -1


def _answer(ctx: RequestContext, key_type: int, key: str) -> Answer:
    b = ctx.broker
    if key_type == KEY_TYPE_GROUP:
        if b.groups.loading:
            return Answer(ErrorCode.COORDINATOR_NOT_AVAILABLE, "the group coordinator is loading")
        owner, _epoch = b.cluster.coordinator(partition_for(key, b.cluster.coordinator_partitions))
        if owner is None:
            return Answer(ErrorCode.COORDINATOR_NOT_AVAILABLE, "the group's coordinator partition has no owner")
        if owner.node_id == b.node_id:
            return Answer(ErrorCode.NONE, None, b.node_id, b.advertised_host, b.advertised_port)
        return Answer(ErrorCode.NONE, None, owner.node_id, owner.host, owner.port)
    if key_type == KEY_TYPE_TRANSACTION:
        # COORDINATOR_NOT_AVAILABLE made transactional clients retry for a minute;
        # this code is fatal in the Java client and librdkafka: they fail at once.
        return Answer(ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                      "Sluice does not support transactions (yet): transactional.id cannot be used")
    return Answer(ErrorCode.INVALID_REQUEST, f"unknown key type {key_type}")


@api(FindCoordinatorRequest, FindCoordinatorResponse)
async def handle(ctx: RequestContext, request: FindCoordinatorRequest) -> FindCoordinatorResponse:
    v = ctx.version
    key_type = request.key_type if v >= 1 else KEY_TYPE_GROUP
    if v <= 3:
        a = _answer(ctx, key_type, request.key)
        return FindCoordinatorResponse(version=v, throttle_time_ms=0, error_code=a.error,
                                       error_message=a.message, node_id=a.node_id, host=a.host,
                                       port=a.port)
    C = FindCoordinatorResponse.Coordinator
    coordinators = []
    for k in request.coordinator_keys:
        a = _answer(ctx, key_type, k)
        coordinators.append(C(key=k, node_id=a.node_id, host=a.host, port=a.port, error_code=a.error,
                              error_message=a.message))
    return FindCoordinatorResponse(version=v, throttle_time_ms=0, coordinators=coordinators)
