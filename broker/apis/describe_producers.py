"""DescribeProducers (61): the active idempotent producers of each partition
(``kafka-transactions describe-producers``), from the owner's producer state.

As Kafka's ``UnifiedLog.activeProducers``: producer id, epoch, last sequence
and the max timestamp of its last batch; Sluice has no transactions, so the
coordinator epoch is always -1 and no transaction is open (start offset -1).
"""
from __future__ import annotations

from kafka.protocol.admin import DescribeProducersRequest, DescribeProducersResponse

from ..errors import ErrorCode
from .registry import RequestContext, api

TopicResponse = DescribeProducersResponse.TopicResponse
PartitionResponse = TopicResponse.PartitionResponse
ProducerState = PartitionResponse.ProducerState

NO_COORDINATOR_EPOCH = -1
NO_TXN_START_OFFSET = -1
UNKNOWN_MESSAGE = "This server does not host this topic-partition."


@api(DescribeProducersRequest, DescribeProducersResponse)
async def handle(ctx: RequestContext, request: DescribeProducersRequest) -> DescribeProducersResponse:
    rm = ctx.broker.replicas
    topics = []
    for t in request.topics:
        parts = []
        for index in t.partition_indexes:
            p = rm.get(t.name, index)
            if p is None:
                code = rm.missing(t.name, index)
                # Kafka words only an unknown topic (its own check); a missing partition
                # or another owner comes from its replica manager, without a message
                message = UNKNOWN_MESSAGE if t.name not in rm.metadata.topics else None
                parts.append(PartitionResponse(partition_index=index, error_code=code,
                                               error_message=message, active_producers=[]))
                continue
            if p.storage.offline:
                parts.append(PartitionResponse(partition_index=index, error_code=ErrorCode.KAFKA_STORAGE_ERROR,
                                               error_message=None, active_producers=[]))
                continue
            producers = [ProducerState(producer_id=pid, producer_epoch=e.epoch, last_sequence=e.last_seq,
                                       last_timestamp=e.last_timestamp, coordinator_epoch=NO_COORDINATOR_EPOCH,
                                       current_txn_start_offset=NO_TXN_START_OFFSET)
                         for pid, e in p.producers.items()]
            parts.append(PartitionResponse(partition_index=index, error_code=ErrorCode.NONE,
                                           error_message=None, active_producers=producers))
        topics.append(TopicResponse(name=t.name, partitions=parts))
    return DescribeProducersResponse(version=ctx.version, throttle_time_ms=0, topics=topics)
