"""ShareAcknowledge (79): acknowledgements without a fetch (KafkaShareConsumer's
commitSync/commitAsync, and its close with epoch -1).

Same session rules as ShareFetch, except that epoch 0 is
INVALID_SHARE_SESSION_EPOCH (a session is opened only by a fetch). Each
partition's result is answered once its state change is durable; epoch -1
closes the session after the acknowledgements, releasing what the member
still holds in it.
"""
from __future__ import annotations

from ..errors import ErrorCode
from ..share.errors import ShareErrorCode
from ..share.sessions import FINAL_EPOCH, INITIAL_EPOCH, ShareSessionError
from .registry import RequestContext, api
from .share_common import TP, ack_batches, acknowledge, close_session, leader_hints
from .specs import ShareAcknowledgeRequest, ShareAcknowledgeResponse

R = ShareAcknowledgeResponse
T = R.ShareAcknowledgeTopicResponse
P = T.PartitionData


def _error(v: int, code: int, message: str | None) -> ShareAcknowledgeResponse:
    return R(version=v, throttle_time_ms=0, error_code=code, error_message=message,
             acquisition_lock_timeout_ms=0, responses=[], node_endpoints=[])


@api(ShareAcknowledgeRequest, ShareAcknowledgeResponse)
async def handle(ctx: RequestContext, request: ShareAcknowledgeRequest) -> ShareAcknowledgeResponse:
    b = ctx.broker
    v = ctx.version
    group_id, member_id, epoch = request.group_id or "", request.member_id or "", request.share_session_epoch
    if not group_id:
        return _error(v, ErrorCode.INVALID_GROUP_ID, "The group id must not be empty.")
    if not member_id:
        return _error(v, ErrorCode.INVALID_REQUEST, "The member id must not be empty.")
    if epoch == INITIAL_EPOCH:
        return _error(v, ShareErrorCode.INVALID_SHARE_SESSION_EPOCH, None)   # a ShareFetch opens a session
    acks: dict[TP, list] = {}
    for t in request.topics:
        for p in t.partitions:
            acks.setdefault((t.topic_id, p.partition_index), []).extend(ack_batches(p.acknowledgement_batches))
    try:
        session = b.share_sessions.resolve(group_id, member_id, epoch, ctx.connection_id, [], [])
    except ShareSessionError as e:
        return _error(v, e.code, None)          # as Kafka 4.4: no message
    results = await acknowledge(ctx, group_id, member_id, acks)
    if epoch == FINAL_EPOCH:
        await close_session(ctx, session)
    topics: dict = {}
    rows = []
    for tp, (error, message) in results.items():
        leader = P.LeaderIdAndEpoch(leader_id=-1, leader_epoch=-1)
        topics.setdefault(tp[0], []).append(P(partition_index=tp[1], error_code=error, error_message=message,
                                              current_leader=leader))
        t = b.replicas.topic_by_id(tp[0])
        rows.append((t.name if t else None, tp[1], error, leader))
    endpoints = leader_hints(ctx, rows)
    return R(version=v, throttle_time_ms=0, error_code=ErrorCode.NONE, error_message=None,
             acquisition_lock_timeout_ms=b.share_partitions.lock_duration_ms(group_id),
             responses=[T(topic_id=tid, partitions=ps) for tid, ps in topics.items()],
             node_endpoints=[R.NodeEndpoint(node_id=e.node_id, host=e.host, port=e.port, rack=e.rack)
                             for e in endpoints])
