"""CreateTopics (19).

Checked in Kafka's order (its controller's ``createTopic``): the name, a topic
named twice, one that exists, the configs; then either the explicit replica
assignment (``assignments``: replication factor and partition count must be
-1, every list checked as Kafka checks it, its first live broker owns the
partition, see assignments.py) or the replication factor (given or
``default.replication.factor``: above 0, and at most the registered brokers)
and the partition count. A topic has one replica per partition, so the answer
gives replication factor 1, what Metadata lists.
"""
from kafka.protocol.admin import CreateTopicsRequest, CreateTopicsResponse

from objectstore import ObjectStoreError

from ..cluster import TopicExists
from ..cluster.metadata import topic_name_error
from ..config import validate_topic_config
from ..errors import ErrorCode
from .assignments import AssignmentError, replication_factor_refusal, topic_owners
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
        owners: list[int] | None = None
        if total > MAX_PARTITIONS_PER_REQUEST:
            error, message = ErrorCode.POLICY_VIOLATION, TOO_MANY_PARTITIONS
        else:
            error, message = _validate(b, t, seen)
            if not error and t.assignments:
                try:
                    owners = topic_owners(t.assignments, b.cluster.registered(), b.cluster.usable())
                except AssignmentError as exc:
                    error, message = exc.code, exc.message
        seen.add(t.name)
        topic = None
        if not error and not request.validate_only:
            partitions = t.num_partitions if t.num_partitions != -1 else b.config["num.partitions"]
            try:
                topic = await b.cluster.create_topic(t.name, partitions, {c.name: c.value for c in t.configs},
                                                     owners=owners)
            except TopicExists:
                error, message = ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{t.name}' already exists."
            except ObjectStoreError as exc:
                error, message = ErrorCode.REQUEST_TIMED_OUT, f"cluster metadata not stored: {exc}"
        partitions = topic.partitions if topic else len(owners) if owners is not None else (
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
    """Everything but the explicit assignment's lists (assignments.py)."""
    reason = topic_name_error(t.name)
    if reason:
        return ErrorCode.INVALID_TOPIC_EXCEPTION, reason
    if t.name in seen:
        return ErrorCode.INVALID_REQUEST, "topic named twice in one request"
    if t.name in b.replicas.metadata.topics:
        return ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{t.name}' already exists."
    for c in t.configs:
        try:
            validate_topic_config(c.name, c.value)
        except ValueError as exc:
            return ErrorCode.INVALID_CONFIG, str(exc)
    if t.assignments:
        if t.replication_factor != -1:
            return ErrorCode.INVALID_REQUEST, ("A manual partition assignment was specified, but replication "
                                               "factor was not set to -1.")
        if t.num_partitions != -1:
            return ErrorCode.INVALID_REQUEST, ("A manual partition assignment was specified, but numPartitions "
                                               "was not set to -1.")
        return ErrorCode.NONE, None
    if t.replication_factor < -1 or t.replication_factor == 0:
        return ErrorCode.INVALID_REPLICATION_FACTOR, ("Replication factor must be larger than 0, or -1 to use "
                                                      "the default value.")
    if t.num_partitions == 0 or t.num_partitions < -1:
        return ErrorCode.INVALID_PARTITIONS, "Number of partitions was set to an invalid non-positive value."
    rf = t.replication_factor if t.replication_factor != -1 else b.config["default.replication.factor"]
    brokers = len(b.cluster.registered() - set(b.cluster.metadata.image.draining))
    return replication_factor_refusal(rf, brokers) or (ErrorCode.NONE, None)
