"""InitProducerId (22): producer ids for idempotent producers.

Ids are unique across restarts and brokers (blocks of 1000 are reserved in
the bucket's cluster metadata, by conditional write, before use). Given an
existing id and epoch (KIP-360, v3+), the epoch is bumped
so the producer can reset its sequences. Transactions are not supported: a
transactional id is refused rather than silently treated as idempotent-only.
"""
from kafka.protocol.producer import InitProducerIdRequest, InitProducerIdResponse

from objectstore import ObjectStoreError

from ..errors import ErrorCode
from .registry import RequestContext, api

MAX_EPOCH = 32767


@api(InitProducerIdRequest, InitProducerIdResponse)
async def handle(ctx: RequestContext, request) -> InitProducerIdResponse:
    v = ctx.version

    def reply(error=ErrorCode.NONE, pid=-1, epoch=-1):
        return InitProducerIdResponse(version=v, throttle_time_ms=0, error_code=error,
                                      producer_id=pid, producer_epoch=epoch,
                                      ongoing_txn_producer_id=-1, ongoing_txn_producer_epoch=-1)

    if request.transactional_id is not None:
        return reply(ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    if v >= 3 and request.producer_id >= 0 and 0 <= request.producer_epoch < MAX_EPOCH - 1:
        return reply(pid=request.producer_id, epoch=request.producer_epoch + 1)
    try:
        pid = await ctx.broker.cluster.next_producer_id()
    except ObjectStoreError:   # the block could not be reserved in the bucket; clients retry
        return reply(ErrorCode.COORDINATOR_NOT_AVAILABLE)
    return reply(pid=pid, epoch=0)
