"""Fetch (1): whole batches below the high watermark, long poll, fetch sessions.

Size rules as Kafka's: ``partition_max_bytes`` per partition and ``max_bytes``
per response, except that the first batch found is returned even when larger
(KIP-74), so a consumer never gets stuck. With less than ``min_bytes`` ready
the request waits up to ``max_wait_ms`` for high watermarks to move.
"""
from __future__ import annotations

import asyncio
import time

from kafka.protocol.consumer import FetchRequest, FetchResponse

from objectstore import ObjectStoreError

from ..errors import ErrorCode
from ..fetch_session import FetchSessionError, SessionPartition
from .fetch_response import NODE_ENDPOINTS_FROM, FetchPartition, FetchResponseParts, FetchTopic
from .leader_epoch import check_leader_epoch
from .leaders import FETCH_ERRORS, LeaderHints
from .registry import RequestContext, api


@api(FetchRequest, FetchResponse)
async def handle(ctx: RequestContext, request: FetchRequest) -> FetchResponse:
    b = ctx.broker
    v = ctx.version
    by_id = v >= 13
    requested = [SessionPartition(t.topic if not by_id else None, t.topic_id if by_id else None,
                                  p.partition, p.fetch_offset, p.partition_max_bytes,
                                  _current_epoch(p.current_leader_epoch) if v >= 9 else -1)
                 for t in request.topics for p in t.partitions]
    if by_id:
        for sp in requested:
            topic = b.replicas.topic_by_id(sp.topic_id)
            sp.topic = topic.name if topic else None
    session = None
    incremental = False
    if v >= 7:
        forgotten = [(f.topic_id if by_id else f.topic, p)
                     for f in request.forgotten_topics_data for p in f.partitions]
        try:
            session, parts, incremental = b.fetch_sessions.resolve(
                request.session_id, request.session_epoch, requested, forgotten)
        except FetchSessionError as exc:
            return FetchResponse(version=v, throttle_time_ms=0, error_code=exc.code,
                                 session_id=0, responses=[])
    else:
        parts = requested
    max_bytes = request.max_bytes if v >= 3 else 2**31 - 1
    deadline = time.monotonic() + max(request.max_wait_ms, 0) / 1000
    pacer = b.replicas.read_pacer
    remote = False
    while True:
        charged = pacer.charged_total
        rows, total, has_error = await _collect(b, parts, max_bytes)
        # A collect from the tails never awaits, so only object-store reads move this.
        remote = pacer.charged_total != charged
        remaining = deadline - time.monotonic()
        if total >= request.min_bytes or has_error or remaining <= 0 or not parts:
            break
        await _wait_for_data(b, parts, remaining)
    out_bytes = 0
    topics: list[FetchTopic] = []
    by_topic: dict = {}
    for sp, error, hw, log_start, chunks in rows:
        if incremental and not chunks and error == ErrorCode.NONE \
                and hw == sp.last_hw and log_start == sp.last_log_start:
            continue
        sp.last_hw, sp.last_log_start = hw, log_start
        out_bytes += sum(map(len, chunks))
        tkey = sp.topic_id if by_id else sp.topic
        tr = by_topic.get(tkey)
        if tr is None:
            tr = by_topic[tkey] = FetchTopic(sp.topic, sp.topic_id, [])
            topics.append(tr)
        tr.partitions.append(FetchPartition(sp.partition, error, hw, log_start, chunks))
    b.metrics.bytes_out(out_bytes)
    if remote and pacer.enabled:
        # Catch-up bytes yield to produce (read_pacer): hold the answer back.
        b.metrics.remote_fetch_paced(await pacer.pace(), pacer.rate)
    response = FetchResponseParts(topics, session_id=session.id if session else 0)
    if has_error and v >= NODE_ENDPOINTS_FROM:
        _add_leaders(b, response)
    return response


def _current_epoch(epoch: int) -> int:
    """Fetch checks any epoch >= 0; a negative one, not just -1, means no
    check (Kafka's ``FetchRequest.optionalEpoch``; ListOffsets and
    OffsetForLeaderEpoch check everything but -1)."""
    return epoch if epoch >= 0 else -1


def _add_leaders(b, response: FetchResponseParts) -> None:
    """KIP-951, as Kafka from v16: a partition answered NOT_LEADER_OR_FOLLOWER
    (or FENCED_LEADER_EPOCH) names its current leader, and the response the
    endpoints of the leaders named. (Only when some partition has an error:
    the common path never walks the partitions twice.)"""
    hints: LeaderHints | None = None
    for t in response.topics:
        for p in t.partitions:
            if p.error_code in FETCH_ERRORS:
                if hints is None:
                    hints = LeaderHints(b.cluster)
                p.current_leader = hints.leader(t.name, p.index)
    if hints is not None:
        response.node_endpoints = hints.node_endpoints()


def _remote_budget(b, charged: int) -> int | None:
    """Object-store bytes this answer may still read (None: not paced now)."""
    pacer = b.replicas.read_pacer
    limit = pacer.fetch_limit()
    return None if limit is None else max(0, limit - (pacer.charged_total - charged))


async def _collect(b, parts: list[SessionPartition], max_bytes: int):
    rows = []
    total = 0
    has_error = False
    charged = b.replicas.read_pacer.charged_total
    for sp in parts:
        p = b.replicas.get(sp.topic, sp.partition) if sp.topic is not None else None
        if p is None:
            code = ErrorCode.UNKNOWN_TOPIC_ID if sp.topic is None else b.replicas.missing(sp.topic, sp.partition)
            rows.append((sp, code, -1, -1, []))
            has_error = True
            continue
        hw, log_start = p.high_watermark, p.log_start_offset
        code = check_leader_epoch(p, sp.current_leader_epoch)
        if code:
            rows.append((sp, code, -1, -1, []))
            has_error = True
            continue
        if p.storage.offline:
            rows.append((sp, ErrorCode.KAFKA_STORAGE_ERROR, hw, log_start, []))
            has_error = True
            continue
        if sp.fetch_offset < log_start or sp.fetch_offset > hw:
            rows.append((sp, ErrorCode.OFFSET_OUT_OF_RANGE, hw, log_start, []))
            has_error = True
            continue
        limit = min(sp.max_bytes, max_bytes - total)
        try:
            chunks = await p.read(sp.fetch_offset, limit, min_one=(total == 0),
                                  remote_max_bytes=_remote_budget(b, charged)) \
                if limit > 0 or total == 0 else []
        except ObjectStoreError as exc:  # unreachable or corrupt object: retriable for clients
            b.replicas.storage_error("fetch", exc)
            rows.append((sp, ErrorCode.KAFKA_STORAGE_ERROR, hw, log_start, []))
            has_error = True
            continue
        total += sum(len(c) for c in chunks)
        rows.append((sp, ErrorCode.NONE, hw, log_start, chunks))
    return rows, total, has_error


async def _wait_for_data(b, parts: list[SessionPartition], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    watched = []
    for sp in parts:
        p = b.replicas.get(sp.topic, sp.partition) if sp.topic is not None else None
        if p is not None:
            p.add_waiter(fut)
            watched.append(p)
    try:
        await asyncio.wait_for(asyncio.shield(fut), timeout)
    except asyncio.TimeoutError:
        pass
    finally:
        for p in watched:
            p.remove_waiter(fut)
