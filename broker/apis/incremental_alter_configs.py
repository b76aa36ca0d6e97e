"""IncrementalAlterConfigs (44): SET / DELETE / APPEND / SUBTRACT on topic configs.

Broker configs cannot be altered (INVALID_REQUEST), with one exception: the
replication throttles that Kafka's kafka-reassign-partitions sets
(``--throttle``, ``--replica-alter-log-dirs-throttle``) and clears
(``--verify``, ``--cancel``) on brokers and topics. A move copies no data
(docs/cluster.md section 11), so there is nothing to throttle: SET and
DELETE of those configs are checked as Kafka checks them and then change
nothing (and are not listed by DescribeConfigs).
"""
import re

from kafka.protocol.admin import IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse

from objectstore import ObjectStoreError

from ..cluster import UnknownTopic
from ..config import TOPIC_CONFIGS, validate_topic_config
from ..errors import ErrorCode
from .registry import RequestContext, api

TOPIC, BROKER = 2, 4
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
LIST_CONFIGS = {"cleanup.policy"}
# kafka-reassign-partitions' throttles: accepted, and nothing to throttle (see the module docstring)
BROKER_THROTTLES = {"leader.replication.throttled.rate", "follower.replication.throttled.rate",
                    "replica.alter.log.dirs.io.max.bytes.per.second"}
TOPIC_THROTTLES = {"leader.replication.throttled.replicas", "follower.replication.throttled.replicas"}
THROTTLED_REPLICA = re.compile(r"^\d+:\d+$")
Result = IncrementalAlterConfigsResponse.AlterConfigsResourceResponse


@api(IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse)
async def handle(ctx: RequestContext, request):
    rm = ctx.broker.replicas
    if any(r.resource_type == TOPIC and r.resource_name not in rm.metadata.topics for r in request.resources):
        try:        # created on another broker since this one's last heartbeat?
            await ctx.broker.cluster.metadata.refresh()
        except ObjectStoreError:
            pass
    results = []
    for res in request.resources:
        error, message = ErrorCode.NONE, None
        topic = rm.metadata.topics.get(res.resource_name) if res.resource_type == TOPIC else None
        if res.resource_type == BROKER and _only_broker_throttles(res.configs):
            error, message = _check_broker_throttles(res.resource_name, res.configs)
        elif res.resource_type != TOPIC:
            error, message = ErrorCode.INVALID_REQUEST, "only topic configs can be altered"
        elif topic is None:
            error, message = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Topic {res.resource_name} does not exist"
        else:
            try:
                updated = _apply(dict(topic.configs), res.configs)
            except ValueError as exc:
                error, message = ErrorCode.INVALID_CONFIG, str(exc)
            else:
                throttles_only = all(op.name in TOPIC_THROTTLES for op in res.configs)
                if not request.validate_only and not throttles_only:
                    try:
                        await ctx.broker.cluster.alter_topic_configs(topic.name, updated)
                    except UnknownTopic:
                        error, message = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, \
                            f"Topic {res.resource_name} does not exist"
                    except ObjectStoreError as exc:
                        error, message = ErrorCode.REQUEST_TIMED_OUT, f"cluster metadata not stored: {exc}"
        results.append(Result(error_code=error, error_message=message,
                              resource_type=res.resource_type, resource_name=res.resource_name))
    return IncrementalAlterConfigsResponse(version=ctx.version, throttle_time_ms=0, responses=results)


def _only_broker_throttles(ops) -> bool:
    return bool(ops) and all(op.name in BROKER_THROTTLES and op.config_operation in (SET, DELETE) for op in ops)


def _check_broker_throttles(resource_name: str, ops) -> tuple[ErrorCode, str | None]:
    """A broker's replication throttle rates: validated (a broker id or "" for
    the cluster default; a rate in bytes/s >= 0), then nothing to do."""
    if resource_name and not resource_name.isdigit():
        return ErrorCode.INVALID_REQUEST, f"broker id must be an integer, got {resource_name!r}"
    for op in ops:
        if op.config_operation == SET:
            try:
                ok = int(op.value or "") >= 0
            except ValueError:
                ok = False
            if not ok:
                return ErrorCode.INVALID_CONFIG, f"Invalid value {op.value} for configuration {op.name}: " \
                    "a rate in bytes/s, at least 0"
    return ErrorCode.NONE, None


def _check_throttled_replicas(name: str, value: str | None) -> None:
    """Kafka's format for ``*.replication.throttled.replicas``: ``*``, or
    ``partition:broker`` pairs separated by commas (possibly none)."""
    items = [x.strip() for x in (value or "").split(",") if x.strip()]
    if items == ["*"] or all(THROTTLED_REPLICA.match(x) for x in items):
        return
    raise ValueError(f"Invalid value {value} for configuration {name}: must be the wildcard (*) or a list "
                     "of replicas in the format [partitionId]:[brokerId],[partitionId]:[brokerId],...")


def _apply(configs: dict[str, str], ops) -> dict[str, str]:
    for op in ops:
        name, value = op.name, op.value
        if name in TOPIC_THROTTLES:          # checked, then nothing to throttle (module docstring)
            if op.config_operation in (SET, APPEND, SUBTRACT):
                _check_throttled_replicas(name, value)
            elif op.config_operation != DELETE:
                raise ValueError(f"unknown config operation {op.config_operation}")
        elif op.config_operation == SET:
            validate_topic_config(name, value)
            configs[name] = value
        elif op.config_operation == DELETE:
            if name not in TOPIC_CONFIGS:
                raise ValueError(f"unknown topic config {name!r}")
            configs.pop(name, None)
        elif op.config_operation in (APPEND, SUBTRACT):
            if name not in LIST_CONFIGS:
                raise ValueError(f"{name} is not a list config; APPEND/SUBTRACT do not apply")
            current = [x for x in configs.get(name, "").split(",") if x]
            items = [x for x in (value or "").split(",") if x]
            if op.config_operation == APPEND:
                current += [x for x in items if x not in current]
            else:
                current = [x for x in current if x not in items]
            joined = ",".join(current)
            validate_topic_config(name, joined or "delete")
            configs[name] = joined
        else:
            raise ValueError(f"unknown config operation {op.config_operation}")
    return configs
