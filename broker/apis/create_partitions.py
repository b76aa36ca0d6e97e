"""CreatePartitions (37): grow a topic's partition count.

Checked in Kafka's order (its controller's ``createPartitions``): the topic,
the count (an increase), then an explicit ``assignments`` (one list per new
partition, each checked as Kafka checks it against the topic's one replica
per partition; its first live broker owns the partition, see assignments.py).
"""
from kafka.protocol.admin import CreatePartitionsRequest, CreatePartitionsResponse

from objectstore import ObjectStoreError

from ..cluster import UnknownTopic
from ..errors import ErrorCode
from .assignments import AssignmentError, new_partition_owners
from .registry import RequestContext, api

Result = CreatePartitionsResponse.CreatePartitionsTopicResult
# As CreateTopics (Kafka's controller caps the records of one request at 10,000):
# growing a topic by more than this in one request is refused, not attempted.
MAX_NEW_PARTITIONS_PER_REQUEST = 10_000


@api(CreatePartitionsRequest, CreatePartitionsResponse)
async def handle(ctx: RequestContext, request: CreatePartitionsRequest) -> CreatePartitionsResponse:
    cluster = ctx.broker.cluster
    results = []
    for t in request.topics:
        topic = cluster.metadata.topics.get(t.name)
        error, message = ErrorCode.NONE, None
        owners: list[int] | None = None
        if topic is None:
            error, message = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"topic {t.name} does not exist"
        elif t.count == topic.partitions:
            error, message = ErrorCode.INVALID_PARTITIONS, f"Topic already has {topic.partitions} partition(s)."
        elif t.count < topic.partitions:
            error = ErrorCode.INVALID_PARTITIONS
            message = (f"The topic {t.name} currently has {topic.partitions} partition(s); {t.count} would not "
                       "be an increase.")
        elif t.count - topic.partitions > MAX_NEW_PARTITIONS_PER_REQUEST:
            error, message = ErrorCode.POLICY_VIOLATION, "Excessively large number of partitions per request."
        elif t.assignments is not None:
            additional = t.count - topic.partitions
            try:
                if len(t.assignments) != additional:
                    raise AssignmentError(
                        ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                        f"Attempted to add {additional} additional partition(s), but only {len(t.assignments)} "
                        "assignment(s) were specified.")
                owners = new_partition_owners(t.assignments, topic.partitions, cluster.registered(),
                                              cluster.usable())
            except AssignmentError as exc:
                error, message = exc.code, exc.message
        if not error and not request.validate_only:
            try:
                await cluster.add_partitions(t.name, t.count, owners=owners)
            except UnknownTopic:
                error, message = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"topic {t.name} does not exist"
            except ObjectStoreError as exc:
                error, message = ErrorCode.REQUEST_TIMED_OUT, f"cluster metadata not stored: {exc}"
        results.append(Result(name=t.name, error_code=error, error_message=message))
    return CreatePartitionsResponse(version=ctx.version, throttle_time_ms=0, results=results)
