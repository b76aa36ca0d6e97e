"""DescribeConfigs (32): topic configs (set or default) and the broker's static configs."""
from kafka.protocol.admin import DescribeConfigsRequest, DescribeConfigsResponse

from ..config import BROKER_DEFAULTS, TOPIC_CONFIGS, _bool
from ..errors import ErrorCode
from .registry import RequestContext, api

TOPIC, BROKER, BROKER_LOGGER = 2, 4, 8
SRC_TOPIC, SRC_STATIC_BROKER, SRC_DEFAULT = 1, 4, 5
Result = DescribeConfigsResponse.DescribeConfigsResult
Entry = Result.DescribeConfigsResourceResult
Synonym = Entry.DescribeConfigsSynonym
TYPE_BOOLEAN, TYPE_STRING, TYPE_LONG, TYPE_DOUBLE = 1, 2, 5, 6


def _config_type(parser) -> int:
    return {int: TYPE_LONG, float: TYPE_DOUBLE, _bool: TYPE_BOOLEAN}.get(parser, TYPE_STRING)


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


@api(DescribeConfigsRequest, DescribeConfigsResponse)
async def handle(ctx: RequestContext, request: DescribeConfigsRequest) -> DescribeConfigsResponse:
    b = ctx.broker
    results = []
    for res in request.resources:
        keys = set(res.configuration_keys) if res.configuration_keys is not None else None
        if res.resource_type == TOPIC:
            topic = b.replicas.metadata.topics.get(res.resource_name)
            if topic is None:
                results.append(_error(res, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                      f"Topic {res.resource_name} does not exist"))
                continue
            entries = []
            for name in sorted(TOPIC_CONFIGS):
                if keys is not None and name not in keys:
                    continue
                parser, broker_key, _ = TOPIC_CONFIGS[name]
                is_set = name in topic.configs
                value = b.replicas.topic_config(topic, name)
                broker_syn = _broker_synonyms(b, broker_key) if broker_key else []
                src = SRC_TOPIC if is_set else broker_syn[0].source if broker_syn else SRC_DEFAULT
                synonyms = []
                if request.include_synonyms:
                    if is_set:
                        synonyms.append(Synonym(name=name, value=topic.configs[name], source=SRC_TOPIC))
                    synonyms += broker_syn
                entries.append(Entry(name=name, value=_text(topic.configs[name] if is_set else value),
                                     read_only=False, config_source=src,
                                     is_default=src == SRC_DEFAULT, is_sensitive=False, synonyms=synonyms,
                                     config_type=_config_type(parser), documentation=None))
            results.append(Result(error_code=0, error_message=None, resource_type=TOPIC,
                                  resource_name=res.resource_name, configs=entries))
        elif res.resource_type == BROKER:
            if res.resource_name not in ("", str(b.node_id)):
                results.append(_error(res, ErrorCode.INVALID_REQUEST,
                                      f"unknown broker id {res.resource_name}"))
                continue
            entries = []
            for name in sorted(BROKER_DEFAULTS):
                if keys is not None and name not in keys:
                    continue
                parser, default = BROKER_DEFAULTS[name]
                value = b.config[name]
                src = SRC_DEFAULT if value == default else SRC_STATIC_BROKER
                synonyms = _broker_synonyms(b, name) if request.include_synonyms else []
                entries.append(Entry(name=name, value=_text(value), read_only=True, config_source=src,
                                     is_default=src == SRC_DEFAULT, is_sensitive=False,
                                     synonyms=synonyms, config_type=_config_type(parser), documentation=None))
            results.append(Result(error_code=0, error_message=None, resource_type=BROKER,
                                  resource_name=res.resource_name, configs=entries))
        else:
            results.append(_error(res, ErrorCode.INVALID_REQUEST,
                                  f"resource type {res.resource_type} is not supported"))
    return DescribeConfigsResponse(version=ctx.version, throttle_time_ms=0, results=results)


def _broker_synonyms(b, key: str) -> list:
    """A broker config's sources, most specific first, as Kafka lists them:
    STATIC_BROKER_CONFIG when set in the config file or an override, then DEFAULT_CONFIG."""
    _, default = BROKER_DEFAULTS[key]
    value = b.config[key]
    out = []
    if value != default:
        out.append(Synonym(name=key, value=_text(value), source=SRC_STATIC_BROKER))
    out.append(Synonym(name=key, value=_text(default), source=SRC_DEFAULT))
    return out


def _error(res, code: ErrorCode, message: str):
    return Result(error_code=code, error_message=message, resource_type=res.resource_type,
                  resource_name=res.resource_name, configs=[])
