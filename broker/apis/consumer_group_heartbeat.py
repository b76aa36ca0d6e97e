"""ConsumerGroupHeartbeat (68): the KIP-848 consumer protocol's one membership request.

Decoding and encoding only; the protocol is ``coordinator/consumer_group.py``.
Topics travel by id: owned partitions come in as (topic id, partitions), the
assignment goes out the same way. Answered once the group's new state is
durable (as Kafka answers after its records are committed); if that write
fails, COORDINATOR_NOT_AVAILABLE (the client retries, with its epoch)."""
from __future__ import annotations

from wal import WalError

from ..coordinator.assignors import Assignment
from ..errors import ErrorCode
from .registry import RequestContext, api
from .specs import ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse

R = ConsumerGroupHeartbeatResponse


def _owned(request: ConsumerGroupHeartbeatRequest) -> Assignment | None:
    if request.topic_partitions is None:
        return None
    out: Assignment = {}
    for t in request.topic_partitions:
        out.setdefault(t.topic_id, set()).update(t.partitions)
    return out


def _assignment(a: Assignment | None):
    if a is None:
        return None
    return R.Assignment(topic_partitions=[
        R.Assignment.TopicPartitions(topic_id=tid, partitions=sorted(ps))
        for tid, ps in sorted(a.items(), key=lambda kv: str(kv[0])) if ps])


@api(ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse)
async def handle(ctx: RequestContext, request: ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse:
    v = ctx.version
    res = ctx.broker.consumer_groups.heartbeat(
        version=v, group_id=request.group_id or "", member_id=request.member_id or "",
        member_epoch=request.member_epoch, instance_id=request.instance_id, rack_id=request.rack_id,
        rebalance_timeout_ms=request.rebalance_timeout_ms,
        subscribed_topic_names=request.subscribed_topic_names,
        subscribed_topic_regex=request.subscribed_topic_regex if v >= 1 else None,
        server_assignor=request.server_assignor, owned=_owned(request),
        client_id=ctx.header.client_id or "", client_host=ctx.client_host)
    if res.durable is not None:
        try:
            await res.durable
        except WalError:
            return R(version=v, throttle_time_ms=0, error_code=ErrorCode.COORDINATOR_NOT_AVAILABLE,
                     error_message="The group's state could not be written.", member_id=None, member_epoch=0,
                     heartbeat_interval_ms=0, assignment=None)
    return R(version=v, throttle_time_ms=0, error_code=res.error, error_message=res.message,
             member_id=res.member_id, member_epoch=res.member_epoch,
             heartbeat_interval_ms=res.heartbeat_interval_ms, assignment=_assignment(res.assignment))
