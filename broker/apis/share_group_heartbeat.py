"""ShareGroupHeartbeat (76): a share group member's join, heartbeat and leave (KIP-932).

Decoding and encoding only; membership and the simple assignment are
``coordinator/share_group.py``. The assignment goes out by topic id; the
answer waits for the group's new state to be durable (COORDINATOR_NOT_AVAILABLE
if that write fails: the client retries)."""
from __future__ import annotations

from wal import WalError

from ..coordinator.assignors import Assignment
from ..errors import ErrorCode
from .registry import RequestContext, api
from .specs import ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse

R = ShareGroupHeartbeatResponse


def _assignment(a: Assignment | None):
    if a is None:
        return None
    return R.Assignment(topic_partitions=[
        R.Assignment.TopicPartitions(topic_id=tid, partitions=sorted(ps))
        for tid, ps in sorted(a.items(), key=lambda kv: str(kv[0])) if ps])


@api(ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse)
async def handle(ctx: RequestContext, request: ShareGroupHeartbeatRequest) -> ShareGroupHeartbeatResponse:
    res = ctx.broker.share_groups.heartbeat(
        group_id=request.group_id or "", member_id=request.member_id or "", member_epoch=request.member_epoch,
        rack_id=request.rack_id, subscribed_topic_names=request.subscribed_topic_names,
        client_id=ctx.header.client_id or "", client_host=ctx.client_host)
    if res.durable is not None:
        try:
            await res.durable
        except WalError:
            return R(version=ctx.version, throttle_time_ms=0, error_code=ErrorCode.COORDINATOR_NOT_AVAILABLE,
                     error_message="The group's state could not be written.", member_id=None, member_epoch=0,
                     heartbeat_interval_ms=0, assignment=None)
    return R(version=ctx.version, throttle_time_ms=0, error_code=res.error, error_message=res.message,
             member_id=res.member_id, member_epoch=res.member_epoch,
             heartbeat_interval_ms=res.heartbeat_interval_ms, assignment=_assignment(res.assignment))
