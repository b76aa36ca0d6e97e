"""Produce (0): validate batches, assign offsets, ack after the covering WAL fsync.

Everything up to queueing the WAL write runs without awaiting, so pipelined
requests on a connection append in the order they arrived.
"""
import asyncio
import time

from kafka.protocol.producer import ProduceRequest, ProduceResponse

from wal import WalError
from wal.object_log import WalFenced

from ..errors import ErrorCode
from ..log.partition import AppendError
from ..log.records import InvalidBatch, parse_batches
from .leaders import PRODUCE_ERRORS, LeaderHints
from .produce_response import LEADER_FROM, PartitionResult, ProduceResponseBytes, TopicResult
from .registry import CloseConnection, RequestContext, api


@api(ProduceRequest, ProduceResponse)
async def handle(ctx: RequestContext, request: ProduceRequest):
    # How long produce requests wait steers catch-up reads (read_pacer).
    pacer = ctx.broker.replicas.read_pacer
    token = object()
    pacer.produce_started(token)
    try:
        return await _handle(ctx, request)
    finally:
        pacer.observe_produce(token)


async def _handle(ctx: RequestContext, request: ProduceRequest):
    b = ctx.broker
    rm = b.replicas
    v = ctx.version
    acks = request.acks
    results: list[tuple[object, str | None, list[list]]] = []
    waits: list[asyncio.Future] = []
    now_ms = int(time.time() * 1000)
    # Backpressure: past wal.max.bytes the object store is behind (or down);
    # wait for uploads to free room, up to the request's timeout, as Kafka
    # would wait for replicas, then answer REQUEST_TIMED_OUT.
    full = not rm.wal_room.is_set() and not await rm.wait_for_wal_room(max(request.timeout_ms, 0) / 1000)
    if full:
        b.metrics.produce_error(ErrorCode.REQUEST_TIMED_OUT)
    bytes_in = 0
    for td in request.topic_data:
        topic = rm.topic_by_id(td.topic_id) if v >= 13 else rm.metadata.topics.get(td.name)
        unknown = ErrorCode.UNKNOWN_TOPIC_ID if v >= 13 else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        parts = []
        for pd in td.partition_data:
            # [index, error, base_offset, log_append_time, log_start, message, durable_future]
            row = [pd.index, ErrorCode.NONE, -1, -1, -1, None, None]
            parts.append(row)
            if acks not in (0, 1, -1):
                row[1] = ErrorCode.INVALID_REQUIRED_ACKS
                continue
            p = rm.get_for_write(topic.name, pd.index) if topic is not None else None
            if p is None:
                row[1] = rm.missing(topic.name if topic is not None else None, pd.index, unknown)
                continue
            if full or p.storage.offline:
                row[1] = ErrorCode.REQUEST_TIMED_OUT if full else ErrorCode.KAFKA_STORAGE_ERROR
                continue
            row[4] = p.log_start_offset
            records = pd.records
            try:
                if records is None:
                    raise InvalidBatch(ErrorCode.CORRUPT_MESSAGE, "null record set")
                headers = parse_batches(records)
                if len(headers) != 1:  # Kafka: produce v3+ carries exactly one batch per partition
                    raise InvalidBatch(ErrorCode.INVALID_RECORD,
                                       "Produce requests with version 3+ may contain exactly one record "
                                       "batch per partition")
                max_bytes = rm.topic_config(topic, "max.message.bytes")
                if any(h.size > max_bytes for h in headers):
                    raise InvalidBatch(ErrorCode.MESSAGE_TOO_LARGE,
                                       f"batch larger than max.message.bytes={max_bytes}")
                lat = now_ms if rm.topic_config(topic, "message.timestamp.type") == "LogAppendTime" else None
                res = p.append(bytearray(records), headers, log_append_time_ms=lat)
            except (InvalidBatch, AppendError) as exc:
                row[1], row[5] = exc.code, str(exc)
                b.metrics.produce_error(exc.code)
                continue
            except WalError as exc:     # fenced: declared dead, the partition is elsewhere now
                row[1] = ErrorCode.NOT_LEADER_OR_FOLLOWER if isinstance(exc, WalFenced) \
                    else ErrorCode.KAFKA_STORAGE_ERROR
                row[5] = str(exc)
                continue
            row[2], row[3] = res.base_offset, res.log_append_time
            bytes_in += len(records)
            fut = res.durable if res.durable is not None else asyncio.ensure_future(rm.wal.sync())
            row[6] = fut
            waits.append(fut)
        results.append((td, topic.name if topic is not None else None, parts))
    if bytes_in:
        b.metrics.bytes_in(bytes_in)
    if acks == 0:
        # No answer is expected; an error closes the connection so that the
        # client notices and refreshes its metadata (Kafka's KafkaApis does this).
        errors = [f"{td.name!r:.60}-{row[0]}: {ErrorCode(row[1]).name}"
                  for td, _, parts in results for row in parts if row[1]]
        if errors:
            raise CloseConnection(f"error in acks=0 produce: {', '.join(errors[:5])}")
        return None
    # Appends of one request usually share one group-commit future: wait once per future.
    # (Group-commit futures refuse cancel(), so a disconnect cannot cancel others' durability.)
    for fut in dict.fromkeys(waits):
        try:
            await fut
        except WalError:
            pass
    topics = []
    hints: LeaderHints | None = None     # KIP-951: made only for an error that names a leader
    for td, name, parts in results:
        prs = []
        for index, error, base, lat, lso, message, fut in parts:
            if fut is not None and fut.exception() is not None:
                exc = fut.exception()
                error = ErrorCode.NOT_LEADER_OR_FOLLOWER if isinstance(exc, WalFenced) \
                    else ErrorCode.KAFKA_STORAGE_ERROR
                message, base = str(exc), -1
            pr = PartitionResult(index, error, base, lat, lso, None)
            if error:
                pr.error_message = message
                if error in PRODUCE_ERRORS and v >= LEADER_FROM:
                    if hints is None:
                        hints = LeaderHints(b.cluster)
                    pr.current_leader = hints.leader(name, index)
            prs.append(pr)
        topics.append(TopicResult(td.name, td.topic_id, prs))
    if hints is not None:
        return ProduceResponseBytes(topics, node_endpoints=hints.node_endpoints())
    return ProduceResponseBytes(topics)
