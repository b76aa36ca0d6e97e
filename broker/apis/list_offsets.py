"""ListOffsets (2): earliest (-2), latest (-1), max timestamp (-3), by timestamp."""
from kafka.protocol.consumer import ListOffsetsRequest, ListOffsetsResponse

from objectstore import ObjectStoreError

from ..errors import ErrorCode
from ..log.records import iter_records
from .leader_epoch import check_leader_epoch
from .registry import RequestContext, api

LATEST, EARLIEST, MAX_TIMESTAMP = -1, -2, -3
EARLIEST_LOCAL, LATEST_TIERED = -4, -5
TopicResp = ListOffsetsResponse.ListOffsetsTopicResponse
PartResp = TopicResp.ListOffsetsPartitionResponse


@api(ListOffsetsRequest, ListOffsetsResponse)
async def handle(ctx: RequestContext, request: ListOffsetsRequest) -> ListOffsetsResponse:
    rm = ctx.broker.replicas
    topics = []
    for t in request.topics:
        parts = []
        for rp in t.partitions:
            p = rm.get(t.name, rp.partition_index)
            if p is None:
                parts.append(PartResp(partition_index=rp.partition_index,
                                      error_code=rm.missing(t.name, rp.partition_index),
                                      timestamp=-1, offset=-1, leader_epoch=-1))
                continue
            code = check_leader_epoch(p, rp.current_leader_epoch if ctx.version >= 4 else -1)
            if code:
                parts.append(PartResp(partition_index=rp.partition_index, error_code=code,
                                      timestamp=-1, offset=-1, leader_epoch=-1))
                continue
            try:
                ts, offset = await lookup(p, rp.timestamp)
            except ObjectStoreError as exc:
                rm.storage_error("list_offsets", exc)
                parts.append(PartResp(partition_index=rp.partition_index,
                                      error_code=ErrorCode.KAFKA_STORAGE_ERROR,
                                      timestamp=-1, offset=-1, leader_epoch=-1))
                continue
            parts.append(PartResp(partition_index=rp.partition_index, error_code=0,
                                  timestamp=ts, offset=offset, leader_epoch=p.leader_epoch))
        topics.append(TopicResp(name=t.name, partitions=parts))
    return ListOffsetsResponse(version=ctx.version, throttle_time_ms=0, topics=topics)


async def _find(p, find):
    """Index position ``find()`` gives, at batch granularity: an uploaded
    segment known only as a whole is expanded and the search repeated."""
    while True:
        i = find()
        if i is None or not p.is_segment(i):
            return i
        await p.expand_at(i)


async def lookup(p, timestamp: int) -> tuple[int, int]:
    """(timestamp, offset) as Kafka answers; offset -1 when no record qualifies."""
    if timestamp in (LATEST, LATEST_TIERED):
        return -1, p.high_watermark
    if timestamp in (EARLIEST, EARLIEST_LOCAL):
        return -1, p.log_start_offset
    if timestamp == MAX_TIMESTAMP:
        i = await _find(p, p.max_timestamp_batch)
        if i is None:
            return -1, -1
        return await _first_record(p, i, lambda r_ts, max_ts: r_ts == max_ts, None)
    found = await _find(p, lambda: (f := p.offset_for_timestamp(timestamp)) and f[0])
    if found is None:
        return -1, -1
    return await _first_record(p, found, lambda r_ts, _: r_ts >= timestamp, timestamp)


async def _first_record(p, i: int, match, target):
    """Decode one batch (off the hot path) to find the matching record's offset."""
    from ..log.records import TIMESTAMP_TYPE_BIT, read_header

    data = await p.batch_at(i)
    h = read_header(data)
    if h.attributes & TIMESTAMP_TYPE_BIT:  # LogAppendTime: every record has maxTimestamp
        return h.max_timestamp, max(h.base_offset, p.log_start_offset)
    for rec in iter_records(data):
        if rec.offset >= p.log_start_offset and match(rec.timestamp, h.max_timestamp):
            return rec.timestamp, rec.offset
    return -1, -1
