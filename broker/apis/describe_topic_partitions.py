"""DescribeTopicPartitions (75): topics and their partitions, paginated.

Kafka 4's admin client describes topics with it (``kafka-topics --describe``;
it falls back to Metadata only when a broker does not advertise it). Answered
as Kafka's ``DescribeTopicPartitionsRequestHandler`` and
``KRaftMetadataCache.describeTopicResponse`` answer:

- no topics named: every topic, in name order; named topics: those, sorted
  and de-duplicated; with a cursor, only names at or after the cursor's
  topic, whose first partition is the cursor's index. A cursor whose topic is
  not among the named ones, or with a negative partition, is
  INVALID_REQUEST for every named topic (Kafka's error response).
- at most ``min(response_partition_limit, 2000)`` partitions (at least 1;
  2000 is Kafka's ``max.request.partition.size.limit`` default): a topic cut
  short sets ``next_cursor`` to its next partition; when the limit is used up
  exactly, to partition 0 of the next topic.
- a named topic that does not exist: UNKNOWN_TOPIC_OR_PARTITION (an invalid
  name: INVALID_TOPIC_EXCEPTION), no partitions, topic id zero; when listing
  every topic none can be missing.
- partitions as Metadata answers them (``metadata.partition_replicas``), but
  with no partition error (Kafka leaves it 0 and the leader -1), and empty
  eligible-leader / last-known-ELR lists (one replica: no ELR).
- authorized operations always (no include flag here): every topic
  operation, as Kafka without an authorizer.
"""
from __future__ import annotations

from kafka.protocol.admin import DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse

from ..cluster.metadata import topic_name_error
from ..errors import ErrorCode
from .authorized import TOPIC_OPERATIONS, bitfield
from .metadata import partition_replicas
from .registry import RequestContext, api

R = DescribeTopicPartitionsResponse
T = R.DescribeTopicPartitionsResponseTopic
P = T.DescribeTopicPartitionsResponsePartition
MAX_REQUEST_PARTITION_SIZE_LIMIT = 2000     # Kafka's max.request.partition.size.limit default
NOT_REQUESTED = -2147483648                 # the field's default, which Kafka's error response keeps


@api(DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse)
async def handle(ctx: RequestContext, request) -> DescribeTopicPartitionsResponse:
    b = ctx.broker
    topics = b.replicas.metadata.topics
    cursor = request.cursor
    after = cursor.topic_name if cursor is not None else ""
    fetch_all = not request.topics
    candidates = topics.keys() if fetch_all else {t.name for t in request.topics}
    names = sorted(n for n in candidates if n >= after)
    if cursor is not None and (cursor.partition_index < 0 or (not fetch_all and cursor.topic_name not in names)):
        return R(version=ctx.version, throttle_time_ms=0, next_cursor=None,
                 topics=[T(error_code=ErrorCode.INVALID_REQUEST, name=t.name, topic_id=None, is_internal=False,
                           partitions=[], topic_authorized_operations=NOT_REQUESTED) for t in request.topics])
    remaining = max(min(MAX_REQUEST_PARTITION_SIZE_LIMIT, request.response_partition_limit), 1)
    out: list = []
    next_cursor = None
    ops = bitfield(TOPIC_OPERATIONS)
    for name in names:
        if remaining <= 0:
            next_cursor = R.Cursor(topic_name=name, partition_index=0)
            break
        topic = topics.get(name)
        if topic is None:
            if not fetch_all:
                error = (ErrorCode.INVALID_TOPIC_EXCEPTION if topic_name_error(name)
                         else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
                out.append(T(error_code=error, name=name, topic_id=None, is_internal=False, partitions=[],
                             topic_authorized_operations=ops))
            continue
        start = cursor.partition_index if cursor is not None and name == cursor.topic_name else 0
        end = min(topic.partitions, start + remaining)
        parts = []
        for i in range(start, end):
            r = partition_replicas(b.cluster, topic, i)
            parts.append(P(error_code=ErrorCode.NONE, partition_index=i, leader_id=r.leader, leader_epoch=r.epoch,
                           replica_nodes=r.replicas, isr_nodes=r.isr, eligible_leader_replicas=[],
                           last_known_elr=[], offline_replicas=r.offline))
        out.append(T(error_code=ErrorCode.NONE, name=name, topic_id=topic.topic_id, is_internal=False,
                     partitions=parts, topic_authorized_operations=ops))
        if end < topic.partitions:
            next_cursor = R.Cursor(topic_name=name, partition_index=end)
            break
        remaining -= len(parts)
    return R(version=ctx.version, throttle_time_ms=0, topics=out, next_cursor=next_cursor)
