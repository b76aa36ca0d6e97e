"""CreatePartitions (37): grow a topic's partition count."""
from kafka.protocol.admin import CreatePartitionsRequest, CreatePartitionsResponse

from objectstore import ObjectStoreError

from ..cluster import UnknownTopic
from ..errors import ErrorCode
from .registry import RequestContext, api

Result = CreatePartitionsResponse.CreatePartitionsTopicResult
# As CreateTopics (Kafka's controller caps the records of one request at 10,000):
# growing a topic by more than this in one request is refused, not attempted.
MAX_NEW_PARTITIONS_PER_REQUEST = 10_000


@api(CreatePartitionsRequest, CreatePartitionsResponse)
async def handle(ctx: RequestContext, request: CreatePartitionsRequest) -> CreatePartitionsResponse:
    rm = ctx.broker.replicas
    results = []
    for t in request.topics:
        topic = rm.metadata.topics.get(t.name)
        error, message = ErrorCode.NONE, None
        if topic is None:
            error, message = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"topic {t.name} does not exist"
        elif t.count <= topic.partitions:
            error = ErrorCode.INVALID_PARTITIONS
            message = (f"Topic currently has {topic.partitions} partitions, which is higher than "
                       f"or equal to the requested {t.count}.")
        elif t.assignments:
            error, message = ErrorCode.INVALID_REPLICA_ASSIGNMENT, "manual assignment is not supported"
        elif t.count - topic.partitions > MAX_NEW_PARTITIONS_PER_REQUEST:
            error, message = ErrorCode.POLICY_VIOLATION, "Excessively large number of partitions per request."
        elif not request.validate_only:
            try:
                await ctx.broker.cluster.add_partitions(t.name, t.count)
            except UnknownTopic:
                error, message = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"topic {t.name} does not exist"
            except ObjectStoreError as exc:
                error, message = ErrorCode.REQUEST_TIMED_OUT, f"cluster metadata not stored: {exc}"
        results.append(Result(name=t.name, error_code=error, error_message=message))
    return CreatePartitionsResponse(version=ctx.version, throttle_time_ms=0, results=results)
