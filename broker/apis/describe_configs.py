"""DescribeConfigs (32): topic, broker and group configs, with their sources as Kafka names them.

- TOPIC: every topic config, set (TOPIC_CONFIG) or inherited from the broker
  config it defaults to (whose source it takes).
- BROKER with this broker's id: every broker config, effective value and
  source: DYNAMIC_BROKER_CONFIG (set for this broker), DYNAMIC_DEFAULT_BROKER_CONFIG
  (the cluster-wide default), STATIC_BROKER_CONFIG (config file or
  ``--override``), DEFAULT_CONFIG; read-only but for the dynamic ones
  (``DYNAMIC_BROKER_CONFIGS``). With the name "": the cluster-wide dynamic
  defaults that are set, only (Kafka's ``--entity-default``). Another id is
  Kafka's INVALID_REQUEST (the admin client asks each broker itself).
- GROUP: every group config, set for the group (GROUP_CONFIG) or Kafka's
  default (DEFAULT_CONFIG, synonym the broker config it comes from), whether
  or not the group exists.
"""
from kafka.protocol.admin import DescribeConfigsRequest, DescribeConfigsResponse

from ..config import (
    BROKER_DEFAULTS,
    DYNAMIC_BROKER_CONFIGS,
    GROUP_CONFIGS,
    TOPIC_CONFIGS,
    TYPE_BOOLEAN,
    TYPE_DOUBLE,
    TYPE_LONG,
    TYPE_STRING,
    _bool,
    broker_config_type,
)
from ..errors import ErrorCode
from .registry import RequestContext, api

TOPIC, BROKER, BROKER_LOGGER, GROUP = 2, 4, 8, 32
SOURCES = {"TOPIC_CONFIG": 1, "DYNAMIC_BROKER_CONFIG": 2, "DYNAMIC_DEFAULT_BROKER_CONFIG": 3,
           "STATIC_BROKER_CONFIG": 4, "DEFAULT_CONFIG": 5, "GROUP_CONFIG": 8}
SRC_TOPIC, SRC_DYNAMIC_BROKER, SRC_DYNAMIC_DEFAULT, SRC_STATIC_BROKER, SRC_DEFAULT, SRC_GROUP = 1, 2, 3, 4, 5, 8
Result = DescribeConfigsResponse.DescribeConfigsResult
Entry = Result.DescribeConfigsResourceResult
Synonym = Entry.DescribeConfigsSynonym


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


@api(DescribeConfigsRequest, DescribeConfigsResponse)
async def handle(ctx: RequestContext, request: DescribeConfigsRequest) -> DescribeConfigsResponse:
    results = []
    for res in request.resources:
        keys = set(res.configuration_keys) if res.configuration_keys is not None else None
        if res.resource_type == TOPIC:
            results.append(_topic(ctx, res, keys, request.include_synonyms))
        elif res.resource_type == BROKER:
            results.append(_broker(ctx, res, keys, request.include_synonyms))
        elif res.resource_type == GROUP:
            results.append(_group(ctx, res, keys, request.include_synonyms))
        else:
            results.append(_error(res, ErrorCode.INVALID_REQUEST,
                                  f"resource type {res.resource_type} is not supported"))
    return DescribeConfigsResponse(version=ctx.version, throttle_time_ms=0, results=results)


def _entry(name: str, value, source: int, read_only: bool, config_type: int, synonyms: list):
    return Entry(name=name, value=_text(value), read_only=read_only, config_source=source,
                 is_default=source == SRC_DEFAULT, is_sensitive=False, synonyms=synonyms,
                 config_type=config_type, documentation=None)


def _ok(res, entries: list):
    return Result(error_code=0, error_message=None, resource_type=res.resource_type,
                  resource_name=res.resource_name, configs=entries)


def _topic(ctx: RequestContext, res, keys: set[str] | None, include_synonyms: bool):
    b = ctx.broker
    topic = b.replicas.metadata.topics.get(res.resource_name)
    if topic is None:
        return _error(res, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Topic {res.resource_name} does not exist")
    entries = []
    for name in sorted(TOPIC_CONFIGS):
        if keys is not None and name not in keys:
            continue
        parser, broker_key, _ = TOPIC_CONFIGS[name]
        is_set = name in topic.configs
        value = b.replicas.topic_config(topic, name)
        broker_syn = _broker_synonyms(b.config, broker_key) if broker_key else []
        src = SRC_TOPIC if is_set else broker_syn[0].source if broker_syn else SRC_DEFAULT
        synonyms = []
        if include_synonyms:
            if is_set:
                synonyms.append(Synonym(name=name, value=topic.configs[name], source=SRC_TOPIC))
            synonyms += broker_syn
        entries.append(_entry(name, topic.configs[name] if is_set else value, src, False,
                              _topic_type(parser), synonyms))
    return _ok(res, entries)


def _topic_type(parser) -> int:
    return {int: TYPE_LONG, float: TYPE_DOUBLE, _bool: TYPE_BOOLEAN}.get(parser, TYPE_STRING)


def _broker(ctx: RequestContext, res, keys: set[str] | None, include_synonyms: bool):
    b = ctx.broker
    config = b.config
    name = res.resource_name
    if name and not name.lstrip("-").isdigit():
        return _error(res, ErrorCode.INVALID_REQUEST, f"Broker id must be an integer, but it is: {name}")
    if name and int(name) != b.node_id:
        return _error(res, ErrorCode.INVALID_REQUEST,
                      f"Unexpected broker id, expected {b.node_id} or empty string, but received {name}")
    entries = []
    if not name:        # the cluster-wide default: what is set of it
        for key in sorted(config.dynamic_default):
            if keys is None or key in keys:
                value = config.dynamic_default[key]
                syn = [Synonym(name=key, value=_text(value), source=SRC_DYNAMIC_DEFAULT)] if include_synonyms else []
                entries.append(_entry(key, value, SRC_DYNAMIC_DEFAULT, False, broker_config_type(key), syn))
        return _ok(res, entries)
    for key in sorted(BROKER_DEFAULTS):
        if keys is not None and key not in keys:
            continue
        synonyms = _broker_synonyms(config, key)
        entries.append(_entry(key, config[key], SOURCES[config.source(key)], key not in DYNAMIC_BROKER_CONFIGS,
                              broker_config_type(key), synonyms if include_synonyms else []))
    return _ok(res, entries)


def _broker_synonyms(config, key: str) -> list:
    """A broker config's sources, most specific first, as Kafka lists them:
    this broker's dynamic value, the cluster-wide dynamic default, the static
    value (config file or override) when not the default, the default."""
    _, default = BROKER_DEFAULTS[key]
    out = []
    if key in config.dynamic_broker:
        out.append(Synonym(name=key, value=_text(config.dynamic_broker[key]), source=SRC_DYNAMIC_BROKER))
    if key in config.dynamic_default:
        out.append(Synonym(name=key, value=_text(config.dynamic_default[key]), source=SRC_DYNAMIC_DEFAULT))
    value = config.values[key]
    if value != default:
        out.append(Synonym(name=key, value=_text(value), source=SRC_STATIC_BROKER))
    out.append(Synonym(name=key, value=_text(default), source=SRC_DEFAULT))
    return out


def _group(ctx: RequestContext, res, keys: set[str] | None, include_synonyms: bool):
    if not res.resource_name:
        return _error(res, ErrorCode.INVALID_REQUEST, "Group name must not be empty")
    stored = ctx.broker.cluster.metadata.image.group_configs.get(res.resource_name, {})
    entries = []
    for name in sorted(GROUP_CONFIGS):
        if keys is not None and name not in keys:
            continue
        spec, default, synonym = GROUP_CONFIGS[name]
        synonyms = [Synonym(name=synonym, value=default, source=SRC_DEFAULT)]
        if name in stored:
            synonyms.insert(0, Synonym(name=name, value=stored[name], source=SRC_GROUP))
        entries.append(_entry(name, stored.get(name, default), SRC_GROUP if name in stored else SRC_DEFAULT,
                              False, spec.type, synonyms if include_synonyms else []))
    return _ok(res, entries)


def _error(res, code: ErrorCode, message: str):
    return Result(error_code=code, error_message=message, resource_type=res.resource_type,
                  resource_name=res.resource_name, configs=[])
