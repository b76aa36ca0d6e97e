"""ListPartitionReassignments (46): the partitions with a move pending.

A pending move of partition P from its owner A to B (docs/cluster.md
sections 7 and 11) is listed as Kafka lists a reassignment in progress:
``replicas = [B, A]``, ``adding = [B]``, ``removing = [A]``. A move is
pending from the metadata update that set its target until the old owner's
flip. The answer is read from the metadata document after a refresh (HEAD,
+ GET when it changed), so a move that completed on another broker is not
listed for a heartbeat longer; if the bucket cannot be reached, from this
broker's cache. ``topics = null`` lists every topic; named topics or
partitions that do not exist are left out (as Kafka).
"""
from __future__ import annotations

import logging

from kafka.protocol.admin import ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse

from objectstore import ObjectStoreError

from ..errors import ErrorCode
from .registry import RequestContext, api

log = logging.getLogger(__name__)

TopicReassignment = ListPartitionReassignmentsResponse.OngoingTopicReassignment
PartitionReassignment = TopicReassignment.OngoingPartitionReassignment


@api(ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse)
async def handle(ctx: RequestContext, request) -> ListPartitionReassignmentsResponse:
    cluster = ctx.broker.cluster
    try:
        await cluster.metadata.refresh()
    except ObjectStoreError as exc:
        log.warning("ListPartitionReassignments: answering from the cache: %s", exc)
    wanted: dict[str, set[int]] | None = None
    if request.topics is not None:
        wanted = {}
        for t in request.topics:
            wanted.setdefault(t.name, set()).update(t.partition_indexes)
    by_topic: dict[str, list] = {}
    for topic, index, owner, target in cluster.reassignments():
        if wanted is not None and index not in wanted.get(topic.name, ()):
            continue
        by_topic.setdefault(topic.name, []).append(PartitionReassignment(
            partition_index=index, replicas=[target, owner], adding_replicas=[target],
            removing_replicas=[owner]))
    topics = [TopicReassignment(name=name, partitions=sorted(parts, key=lambda p: p.partition_index))
              for name, parts in sorted(by_topic.items())]
    return ListPartitionReassignmentsResponse(version=ctx.version, throttle_time_ms=0,
                                              error_code=ErrorCode.NONE, error_message=None, topics=topics)
