"""ShareFetch (78): records acquired for one share-group member, acknowledgements piggybacked.

At the partition owner (docs/share-groups.md §4.1-4.2). The share session
(``share/sessions.py``) names the partitions; acknowledgements are applied
first (all or nothing per partition, answered once durable); then, per
session partition, the share-partition (created at the group's
``share.auto.offset.reset`` on first use) says where to read
(``next_fetch_offset``), the log is read as Fetch reads it, and the records
of the batches read are acquired for the member under the acquisition lock
(``acquired_records``: the client hands out only those). Nothing acquirable:
the request waits up to ``max_wait_ms`` for the high watermark to move or
records to come back (a release, a lock expiry). Epoch 0 with
acknowledgements is INVALID_REQUEST ("Acknowledge data present in Initial
Fetch Request"); epoch -1 applies the acknowledgements, fetches nothing and
closes the session, releasing what the member still holds there.
"""
from __future__ import annotations

import asyncio
import time

from objectstore import ObjectStoreError

from ..errors import ErrorCode
from ..log.records import read_header
from ..share.partition import AcquiredRecords, AcquireMode
from ..share.sessions import FINAL_EPOCH, INITIAL_EPOCH, ShareSessionError
from .registry import RequestContext, api
from .share_common import TP, ack_batches, acknowledge, close_session, leader_hints, resolve
from .specs import ShareFetchRequest, ShareFetchResponse

R = ShareFetchResponse
T = R.ShareFetchableTopicResponse
P = T.PartitionData


def _error(v: int, code: int, message: str | None) -> ShareFetchResponse:
    return R(version=v, throttle_time_ms=0, error_code=code, error_message=message,
             acquisition_lock_timeout_ms=0, responses=[], node_endpoints=[])


def _batches(chunks: list) -> list[tuple[int, int]]:
    """(base offset, last offset) of each record batch in the chunks read."""
    out = []
    for chunk in chunks:
        view = memoryview(chunk)
        pos = 0
        while pos + 61 <= len(view):
            h = read_header(view, pos)
            out.append((h.base_offset, h.last_offset))
            pos += h.size
    return out


@api(ShareFetchRequest, ShareFetchResponse)
async def handle(ctx: RequestContext, request: ShareFetchRequest) -> ShareFetchResponse:
    b = ctx.broker
    v = ctx.version
    group_id, member_id, epoch = request.group_id or "", request.member_id or "", request.share_session_epoch
    if not group_id:
        return _error(v, ErrorCode.INVALID_GROUP_ID, "The group id must not be empty.")
    if not member_id:
        return _error(v, ErrorCode.INVALID_REQUEST, "The member id must not be empty.")
    requested: list[TP] = [(t.topic_id, p.partition_index) for t in request.topics for p in t.partitions]
    acks = {(t.topic_id, p.partition_index): ack_batches(p.acknowledgement_batches)
            for t in request.topics for p in t.partitions if p.acknowledgement_batches}
    if epoch == INITIAL_EPOCH and acks:
        return _error(v, ErrorCode.INVALID_REQUEST, None)    # acks in the initial fetch (Kafka: no message)
    forgotten = [(f.topic_id, p) for f in request.forgotten_topics_data for p in f.partitions]
    try:
        session = b.share_sessions.resolve(group_id, member_id, epoch, ctx.connection_id, requested, forgotten)
    except ShareSessionError as e:
        return _error(v, e.code, None)          # as Kafka 4.4: no message
    ack_results = await acknowledge(ctx, group_id, member_id, acks) if acks else {}
    lock_ms = b.share_partitions.lock_duration_ms(group_id)
    fetched: dict[TP, tuple[int, list, list[AcquiredRecords]]] = {}
    if epoch == FINAL_EPOCH:
        await close_session(ctx, session)
    else:
        mode = AcquireMode(request.share_acquire_mode) if v >= 2 and request.share_acquire_mode in (0, 1) \
            else AcquireMode.BATCH_OPTIMIZED
        deadline = time.monotonic() + max(request.max_wait_ms, 0) / 1000
        while True:
            fetched = await _collect(ctx, group_id, member_id, list(session.partitions), request, mode)
            got = any(acq or err for err, _, acq in fetched.values())
            remaining = deadline - time.monotonic()
            if got or ack_results or remaining <= 0 or not session.partitions:
                break
            await _wait(ctx, list(session.partitions), remaining)
    return _response(ctx, v, lock_ms, fetched, ack_results)


async def _collect(ctx: RequestContext, group_id: str, member_id: str, parts: list[TP],
                   request: ShareFetchRequest, mode: AcquireMode) -> dict[TP, tuple[int, list, list[AcquiredRecords]]]:
    b = ctx.broker
    out: dict[TP, tuple[int, list, list[AcquiredRecords]]] = {}
    total = 0
    max_bytes = request.max_bytes if request.max_bytes > 0 else 2**31 - 1
    max_records = request.max_records if request.max_records > 0 else 500
    acquired_total = 0
    for tp in parts:
        r = resolve(ctx, *tp)
        p = r.partition
        if p is None:
            out[tp] = (r.error, [], [])
            continue
        key = (group_id, tp[0], tp[1])

        def by_time(ts: int, p=p) -> int | None:
            found = p.offset_for_timestamp(ts)
            return None if found is None else found[1]
        sp = b.share_partitions.get_or_create(key, log_start=p.log_start_offset, log_end=p.high_watermark,
                                              leader_epoch=p.leader_epoch, offset_for_timestamp=by_time)
        if acquired_total >= max_records or total >= max_bytes or not sp.can_acquire():
            continue
        offset = max(sp.next_fetch_offset(), p.log_start_offset)
        if offset >= p.high_watermark:
            continue
        try:
            chunks = await p.read(offset, max_bytes - total, min_one=(total == 0))
        except ObjectStoreError as exc:
            b.replicas.storage_error("share fetch", exc)
            out[tp] = (ErrorCode.KAFKA_STORAGE_ERROR, [], [])
            continue
        batches = _batches(chunks)
        if not batches:
            continue
        acquired = b.share_partitions.acquire(key, sp, member_id, offset, batches, max_records - acquired_total,
                                              batch_size=request.batch_size if request.batch_size > 0 else None,
                                              mode=mode)
        if acquired:
            acquired_total += sum(a.last_offset - a.first_offset + 1 for a in acquired)
            total += sum(len(c) for c in chunks)
            out[tp] = (ErrorCode.NONE, chunks, acquired)
    return out


async def _wait(ctx: RequestContext, parts: list[TP], timeout: float) -> None:
    b = ctx.broker
    fut = asyncio.get_running_loop().create_future()
    watched = []
    for tp in parts:
        p = resolve(ctx, *tp).partition
        if p is not None:
            p.add_waiter(fut)
            watched.append(p)
    b.share_partitions.add_waiter(fut)
    try:
        await asyncio.wait_for(asyncio.shield(fut), timeout)
    except asyncio.TimeoutError:
        pass
    finally:
        b.share_partitions.remove_waiter(fut)
        for p in watched:
            p.remove_waiter(fut)


def _response(ctx: RequestContext, v: int, lock_ms: int, fetched: dict[TP, tuple[int, list, list[AcquiredRecords]]],
              acks: dict[TP, tuple[int, str | None]]) -> ShareFetchResponse:
    topics: dict = {}
    rows = []
    for tp in list(fetched) + [tp for tp in acks if tp not in fetched]:
        error, chunks, acquired = fetched.get(tp, (ErrorCode.NONE, [], []))
        ack_error, ack_message = acks.get(tp, (ErrorCode.NONE, None))
        leader = P.LeaderIdAndEpoch(leader_id=-1, leader_epoch=-1)
        part = P(partition_index=tp[1], error_code=error, error_message=None,
                 acknowledge_error_code=ack_error, acknowledge_error_message=ack_message,
                 current_leader=leader, records=b"".join(bytes(c) for c in chunks),   # never null from v1
                 acquired_records=[P.AcquiredRecords(first_offset=a.first_offset, last_offset=a.last_offset,
                                                     delivery_count=a.delivery_count) for a in acquired])
        topics.setdefault(tp[0], []).append(part)
        t = ctx.broker.replicas.topic_by_id(tp[0])
        rows.append((t.name if t else None, tp[1], error, leader))
    endpoints = leader_hints(ctx, rows)
    return R(version=v, throttle_time_ms=0, error_code=ErrorCode.NONE, error_message=None,
             acquisition_lock_timeout_ms=lock_ms,
             responses=[T(topic_id=tid, partitions=ps) for tid, ps in topics.items()],
             node_endpoints=[R.NodeEndpoint(node_id=e.node_id, host=e.host, port=e.port, rack=e.rack)
                             for e in endpoints])
