"""CreateTopics (19)."""
from kafka.protocol.admin import CreateTopicsRequest, CreateTopicsResponse

from objectstore import ObjectStoreError

from ..cluster import TopicExists
from ..cluster.metadata import topic_name_error
from ..config import validate_topic_config
from ..errors import ErrorCode
from .registry import RequestContext, api

Result = CreateTopicsResponse.CreatableTopicResult
ConfigOut = Result.CreatableTopicConfigs
SOURCE_TOPIC, SOURCE_DEFAULT = 1, 5
# Kafka's cap (ReplicationControlManager, KAFKA-17870): one request may not ask for
# more partitions in total; above it the whole request fails with POLICY_VIOLATION.
MAX_PARTITIONS_PER_REQUEST = 10_000
TOO_MANY_PARTITIONS = "Excessively large number of partitions per request."


@api(CreateTopicsRequest, CreateTopicsResponse)
async def handle(ctx: RequestContext, request: CreateTopicsRequest) -> CreateTopicsResponse:
    b = ctx.broker
    rm = b.replicas
    results = []
    seen: set[str] = set()
    default_partitions = b.config["num.partitions"]
    total = sum(len(t.assignments) if t.assignments else
                default_partitions if t.num_partitions == -1 else max(t.num_partitions, 0)
                for t in request.topics)
    for t in request.topics:
        if total > MAX_PARTITIONS_PER_REQUEST:
            error, message = ErrorCode.POLICY_VIOLATION, TOO_MANY_PARTITIONS
        else:
            error, message = _validate(b, t, seen)
        seen.add(t.name)
        topic = None
        if not error and not request.validate_only:
            partitions = t.num_partitions if t.num_partitions != -1 else b.config["num.partitions"]
            try:
                topic = await b.cluster.create_topic(t.name, partitions, {c.name: c.value for c in t.configs})
            except TopicExists:
                error, message = ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{t.name}' already exists."
            except ObjectStoreError as exc:
                error, message = ErrorCode.REQUEST_TIMED_OUT, f"cluster metadata not stored: {exc}"
        partitions = topic.partitions if topic else (
            t.num_partitions if t.num_partitions > 0 else b.config["num.partitions"])
        configs = []
        if not error and topic is not None:
            from ..config import TOPIC_CONFIGS
            for name in sorted(TOPIC_CONFIGS):
                value = rm.topic_config(topic, name)
                configs.append(ConfigOut(name=name, value=None if value is None else str(value),
                                         read_only=False,
                                         config_source=SOURCE_TOPIC if name in topic.configs else SOURCE_DEFAULT,
                                         is_sensitive=False))
        results.append(Result(name=t.name, topic_id=topic.topic_id if topic else None,
                              error_code=error, error_message=message if error else None,
                              num_partitions=partitions if not error else -1,
                              replication_factor=1 if not error else -1, configs=configs))
    return CreateTopicsResponse(version=ctx.version, throttle_time_ms=0, topics=results)


def _validate(b, t, seen) -> tuple[ErrorCode, str | None]:
    reason = topic_name_error(t.name)
    if reason:
        return ErrorCode.INVALID_TOPIC_EXCEPTION, reason
    if t.name in seen:
        return ErrorCode.INVALID_REQUEST, "topic named twice in one request"
    if t.name in b.replicas.metadata.topics:
        return ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{t.name}' already exists."
    if t.assignments:
        return ErrorCode.INVALID_REPLICA_ASSIGNMENT, "manual replica assignment is not supported"
    if t.num_partitions == 0 or t.num_partitions < -1:
        return ErrorCode.INVALID_PARTITIONS, "Number of partitions must be larger than 0."
    if t.replication_factor not in (-1, 1) and t.replication_factor <= 0:
        return ErrorCode.INVALID_REPLICATION_FACTOR, "Replication factor must be larger than 0."
    for c in t.configs:
        try:
            validate_topic_config(c.name, c.value)
        except ValueError as exc:
            return ErrorCode.INVALID_CONFIG, str(exc)
    return ErrorCode.NONE, None
