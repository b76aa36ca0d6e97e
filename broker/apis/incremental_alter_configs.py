"""IncrementalAlterConfigs (44): SET / DELETE / APPEND / SUBTRACT on topic configs."""
from kafka.protocol.admin import IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse

from objectstore import ObjectStoreError

from ..cluster import UnknownTopic
from ..config import TOPIC_CONFIGS, validate_topic_config
from ..errors import ErrorCode
from .registry import RequestContext, api

TOPIC = 2
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
LIST_CONFIGS = {"cleanup.policy"}
Result = IncrementalAlterConfigsResponse.AlterConfigsResourceResponse


@api(IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse)
async def handle(ctx: RequestContext, request):
    rm = ctx.broker.replicas
    results = []
    for res in request.resources:
        error, message = ErrorCode.NONE, None
        topic = rm.metadata.topics.get(res.resource_name) if res.resource_type == TOPIC else None
        if res.resource_type != TOPIC:
            error, message = ErrorCode.INVALID_REQUEST, "only topic configs can be altered"
        elif topic is None:
            error, message = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Topic {res.resource_name} does not exist"
        else:
            try:
                updated = _apply(dict(topic.configs), res.configs)
            except ValueError as exc:
                error, message = ErrorCode.INVALID_CONFIG, str(exc)
            else:
                if not request.validate_only:
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


def _apply(configs: dict[str, str], ops) -> dict[str, str]:
    for op in ops:
        name, value = op.name, op.value
        if op.config_operation == SET:
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
