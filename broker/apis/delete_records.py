"""DeleteRecords (21): advance the log start offset, durably, before answering."""
import asyncio

from kafka.protocol.admin import DeleteRecordsRequest, DeleteRecordsResponse

from ..errors import ErrorCode
from .registry import RequestContext, api

TopicResult = DeleteRecordsResponse.DeleteRecordsTopicResult
PartResult = TopicResult.DeleteRecordsPartitionResult
HIGH_WATERMARK = -1


@api(DeleteRecordsRequest, DeleteRecordsResponse)
async def handle(ctx: RequestContext, request) -> DeleteRecordsResponse:
    rm = ctx.broker.replicas
    topics, waits = [], []
    for t in request.topics:
        parts = []
        for rp in t.partitions:
            p = rm.get_for_write(t.name, rp.partition_index)
            if p is None:
                parts.append(PartResult(partition_index=rp.partition_index, low_watermark=-1,
                                        error_code=rm.missing(t.name, rp.partition_index)))
                continue
            offset = p.high_watermark if rp.offset == HIGH_WATERMARK else rp.offset
            if offset < 0 or offset > p.high_watermark:
                parts.append(PartResult(partition_index=rp.partition_index,
                                        low_watermark=p.log_start_offset,
                                        error_code=ErrorCode.OFFSET_OUT_OF_RANGE))
                continue
            if offset > p.log_start_offset:
                waits.append(rm.delete_records(p, offset))
            parts.append(PartResult(partition_index=rp.partition_index,
                                    low_watermark=p.log_start_offset, error_code=0))
        topics.append(TopicResult(name=t.name, partitions=parts))
    results = await asyncio.gather(*waits, return_exceptions=True)
    if any(isinstance(r, BaseException) for r in results):
        for t in topics:
            for pr in t.partitions:
                if pr.error_code == 0:
                    pr.error_code = ErrorCode.KAFKA_STORAGE_ERROR
    return DeleteRecordsResponse(version=ctx.version, throttle_time_ms=0, topics=topics)
