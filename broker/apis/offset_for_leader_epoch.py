"""OffsetForLeaderEpoch (23, KIP-320): where a leader epoch ended.

Consumers (the Java client, librdkafka) ask after a leader change whether
their position, fetched under some epoch, still lies within that epoch's
history here; a position past the epoch's end means log truncation. The
answer comes from the partition's leader-epoch history
(``broker/log/leader_epochs.py``), in memory: no object-store request.
"""
from __future__ import annotations

from kafka.protocol.consumer import OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse

from ..errors import ErrorCode
from .leader_epoch import check_leader_epoch
from .registry import RequestContext, api

TopicResult = OffsetForLeaderEpochResponse.OffsetForLeaderTopicResult
EpochEndOffset = TopicResult.EpochEndOffset


@api(OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse)
async def handle(ctx: RequestContext, request: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse:
    rm = ctx.broker.replicas
    topics = []
    for t in request.topics:
        parts = []
        for rp in t.partitions:
            p = rm.get(t.topic, rp.partition)
            if p is None:
                code = rm.missing(t.topic, rp.partition)
            else:
                code = check_leader_epoch(p, rp.current_leader_epoch)
                if not code and p.storage.offline:
                    code = ErrorCode.KAFKA_STORAGE_ERROR
            if code or p is None:
                parts.append(EpochEndOffset(error_code=code, partition=rp.partition,
                                            leader_epoch=-1, end_offset=-1))
                continue
            epoch, end = p.leader_epochs.end_offset_for(rp.leader_epoch, p.log_end_offset)
            parts.append(EpochEndOffset(error_code=ErrorCode.NONE, partition=rp.partition,
                                        leader_epoch=epoch if end >= 0 else -1, end_offset=end))
        topics.append(TopicResult(topic=t.topic, partitions=parts))
    return OffsetForLeaderEpochResponse(version=ctx.version, throttle_time_ms=0, topics=topics)
