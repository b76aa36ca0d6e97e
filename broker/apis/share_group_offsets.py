"""AlterShareGroupOffsets (91) and DeleteShareGroupOffsets (92): ``kafka-share-groups
--reset-offsets`` and ``--delete-offsets``.

At the group coordinator; the group must be empty (NON_EMPTY_GROUP), as in
Kafka. A reset gives the share-partition a new state epoch, nothing in
flight and the start offset asked for; a delete drops its state, so the next
fetch starts at ``share.auto.offset.reset``. The state has one writer, the
partition's owner, wherever it is: the change goes to it through the
cluster metadata (``share/resets.py``, docs/share-groups.md §10), and each
partition is answered once its owner applied it (a WAL snapshot entry, kind
5, and its manifest): COORDINATOR_NOT_AVAILABLE when the owner is not live,
REQUEST_TIMED_OUT when it did not apply it within
``share.coordinator.write.timeout.ms``. An unknown group is created empty by
a reset (Kafka's getOrMaybeCreatePersistedShareGroup) and answers
GROUP_ID_NOT_FOUND to a delete.
"""
from __future__ import annotations

import uuid

from wal import WalError

from ..errors import ErrorCode
from .registry import RequestContext, api
from .specs import (
    AlterShareGroupOffsetsRequest,
    AlterShareGroupOffsetsResponse,
    DeleteShareGroupOffsetsRequest,
    DeleteShareGroupOffsetsResponse,
)

_NOT_HOSTED = "This server does not host this topic-partition."   # Kafka's message for the code

AR = AlterShareGroupOffsetsResponse
AT = AR.AlterShareGroupOffsetsResponseTopic
AP = AT.AlterShareGroupOffsetsResponsePartition
DR = DeleteShareGroupOffsetsResponse
DT = DR.DeleteShareGroupOffsetsResponseTopic


def _group_error(ctx: RequestContext, gid: str, create: bool) -> tuple[int, str | None]:
    b = ctx.broker
    if not gid:
        return ErrorCode.INVALID_GROUP_ID, None
    err = b.groups.group_error(gid)
    if err:
        return err, None
    if b.share_groups.is_other_kind(gid):
        return ErrorCode.GROUP_ID_NOT_FOUND, f"Group {gid} is not a share group."
    g = b.share_groups.get(gid)
    if g is None:
        if not create:
            return ErrorCode.GROUP_ID_NOT_FOUND, f"Group {gid} not found."
        g = b.share_groups.create_empty(gid)
    if g.members:
        return ErrorCode.NON_EMPTY_GROUP, "The group is not empty."
    return ErrorCode.NONE, None


async def _note(ctx: RequestContext, gid: str, topics: set[str], *, initialized: bool) -> None:
    """The group's topics with offsets (for a describe of all its topics), durably."""
    fut = ctx.broker.share_groups.offsets_changed(gid, topics, initialized=initialized) if topics else None
    if fut is not None:
        try:
            await fut
        except WalError:
            pass        # the offsets changed all the same; a describe of all topics may miss them


@api(AlterShareGroupOffsetsRequest, AlterShareGroupOffsetsResponse)
async def alter(ctx: RequestContext, request: AlterShareGroupOffsetsRequest) -> AlterShareGroupOffsetsResponse:
    gid = request.group_id or ""
    err, msg = _group_error(ctx, gid, create=True)
    if err:
        return AR(version=ctx.version, throttle_time_ms=0, error_code=err, error_message=msg, responses=[])
    topics = ctx.broker.cluster.metadata.topics
    # as Kafka 4.4: the unknown topics' results first
    ordered = sorted(request.topics, key=lambda t: t.topic_name in topics)
    wanted = [(topics[t.topic_name], rp.partition_index, rp.start_offset) for t in ordered
              if t.topic_name in topics for rp in t.partitions
              if 0 <= rp.partition_index < topics[t.topic_name].partitions and rp.start_offset >= 0]
    results = await ctx.broker.share_resets.request(gid, wanted) if wanted else {}
    await _note(ctx, gid, {topic.name for topic, index, _ in wanted if not results[(topic.topic_id, index)][0]},
                initialized=True)
    out = []
    for t in ordered:
        topic = topics.get(t.topic_name)
        parts = []
        for rp in t.partitions:
            if topic is None or not 0 <= rp.partition_index < topic.partitions:
                code, message = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, _NOT_HOSTED
            elif rp.start_offset < 0:
                code, message = ErrorCode.INVALID_REQUEST, "The start offset must not be negative."
            else:
                code, message = results[(topic.topic_id, rp.partition_index)]
            parts.append(AP(partition_index=rp.partition_index, error_code=code, error_message=message))
        out.append(AT(topic_name=t.topic_name, topic_id=topic.topic_id if topic else uuid.UUID(int=0),
                      partitions=parts))
    return AR(version=ctx.version, throttle_time_ms=0, error_code=ErrorCode.NONE, error_message=None,
              responses=out)


@api(DeleteShareGroupOffsetsRequest, DeleteShareGroupOffsetsResponse)
async def delete(ctx: RequestContext, request: DeleteShareGroupOffsetsRequest) -> DeleteShareGroupOffsetsResponse:
    gid = request.group_id or ""
    err, msg = _group_error(ctx, gid, create=False)
    if err:
        return DR(version=ctx.version, throttle_time_ms=0, error_code=err, error_message=msg, responses=[])
    topics = ctx.broker.cluster.metadata.topics
    wanted = [(topics[t.topic_name], index, -1) for t in request.topics if t.topic_name in topics
              for index in range(topics[t.topic_name].partitions)]
    results = await ctx.broker.share_resets.request(gid, wanted) if wanted else {}
    await _note(ctx, gid, {t.name for t in {topic.name: topic for topic, _, _ in wanted}.values()
                           if not any(results[(t.topic_id, i)][0] for i in range(t.partitions))}, initialized=False)
    out = []
    for t in request.topics:
        topic = topics.get(t.topic_name)
        code, message = ErrorCode.NONE, None
        if topic is None:
            code, message = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, _NOT_HOSTED
        else:
            for index in range(topic.partitions):
                c, m = results[(topic.topic_id, index)]
                if c and not code:
                    code, message = c, m
        out.append(DT(topic_name=t.topic_name, topic_id=topic.topic_id if topic else uuid.UUID(int=0),
                      error_code=code, error_message=message))
    return DR(version=ctx.version, throttle_time_ms=0, error_code=ErrorCode.NONE, error_message=None,
              responses=out)
