"""IncrementalAlterConfigs (44): SET / DELETE / APPEND / SUBTRACT on topic, broker and group configs.

Every change is one conditional update of the cluster metadata document
(docs/cluster.md section 4), checked first as Kafka checks it, with Kafka's
error codes (INVALID_REQUEST where Kafka's broker refuses, INVALID_CONFIG
where its controller does):

- any resource: an unknown operation, a config named twice, a SET without a
  value; a resource named twice in one request (each answers INVALID_REQUEST);
- TOPIC: the topic configs Sluice knows (``TOPIC_CONFIGS``); APPEND and
  SUBTRACT only on ``cleanup.policy``, the one list;
- BROKER, by this broker's id (the admin client sends each broker its own)
  or "" (the cluster-wide default): the dynamic broker configs Sluice
  honours at run time (``DYNAMIC_BROKER_CONFIGS``), with Kafka's types and
  bounds. Any other config is refused as Kafka refuses a read-only one
  ("Cannot update these configs dynamically"): Kafka's other dynamic configs
  (threads, listeners, quotas, ...) and names Kafka would store as custom
  configs, because a config Sluice accepts must act as Kafka's does. Every
  broker applies the stored values when it reads the document (at once for
  the one that wrote it, within a heartbeat for the others);
- GROUP, by group id (not ""): Kafka 4.4's group configs (``GROUP_CONFIGS``),
  with Kafka's bounds (the consumer session and heartbeat: the broker's
  ``group.consumer.{min,max}.*``), then the group's whole resulting set as
  Kafka's controller checks it (each session above its heartbeat interval);
  APPEND and SUBTRACT refused as Kafka refuses them. Consumer, share and
  share-partition code reads a group's configs at each use, so a change
  applies at once (within a heartbeat on other brokers).

AlterConfigs (alter_configs.py) goes through the same ``alter_resources``,
its resources turned into SET and DELETE operations first.

The replication throttles that Kafka's kafka-reassign-partitions sets
(``--throttle``, ``--replica-alter-log-dirs-throttle``) and clears
(``--verify``, ``--cancel``) on brokers and topics are checked as Kafka
checks them and then dropped: a move copies no data (docs/cluster.md section
11), so there is nothing to throttle; they are not stored and DescribeConfigs
does not list them.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Any, Callable, NamedTuple

from kafka.protocol.admin import IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse

from objectstore import ObjectStoreError

from ..cluster import UnknownTopic
from ..config import (
    BROKER_DEFAULTS,
    DYNAMIC_BROKER_CONFIGS,
    TOPIC_CONFIGS,
    TYPE_LONG,
    ConfigSpec,
    validate_group_config,
    validate_group_configs,
    validate_topic_config,
)
from ..errors import ErrorCode
from .registry import RequestContext, api

TOPIC, BROKER, GROUP = 2, 4, 32
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
OP_NAMES = {APPEND: ("append", "APPEND"), SUBTRACT: ("subtract", "SUBTRACT")}
LIST_CONFIGS = {"cleanup.policy"}
# kafka-reassign-partitions' throttles: checked, and nothing to throttle (see the module docstring)
BROKER_THROTTLES = {"leader.replication.throttled.rate", "follower.replication.throttled.rate",
                    "replica.alter.log.dirs.io.max.bytes.per.second"}
THROTTLE_RATE = ConfigSpec(TYPE_LONG, at_least=0)
TOPIC_THROTTLES = {"leader.replication.throttled.replicas", "follower.replication.throttled.replicas"}
THROTTLED_REPLICA = re.compile(r"^\d+:\d+$")
Result = IncrementalAlterConfigsResponse.AlterConfigsResourceResponse
Change = Callable[[dict[str, str]], None]


class Refused(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Op(NamedTuple):
    """One config change, shaped as the request's AlterableConfig."""
    name: str
    value: str | None
    config_operation: int


class Resource(NamedTuple):
    """One resource's changes, shaped as the request's AlterConfigsResource."""
    resource_type: int
    resource_name: str
    configs: list


@api(IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse)
async def handle(ctx: RequestContext, request):
    outcomes = await alter_resources(ctx, request.resources, request.validate_only)
    results = [Result(error_code=error, error_message=message, resource_type=res.resource_type,
                      resource_name=res.resource_name) for res, (error, message) in zip(request.resources, outcomes)]
    return IncrementalAlterConfigsResponse(version=ctx.version, throttle_time_ms=0, responses=results)


async def alter_resources(ctx: RequestContext, resources, validate_only: bool,
                          as_ops: Callable[[RequestContext, Any], Resource] | None = None,
                          ) -> list[tuple[ErrorCode, str | None]]:
    """(error, message) per resource, each checked and applied on its own.
    ``as_ops`` turns a resource of another request (AlterConfigs) into SET and
    DELETE operations; it may raise Refused, as the checks do."""
    cluster = ctx.broker.cluster
    if any(r.resource_type == TOPIC and r.resource_name not in cluster.metadata.topics for r in resources):
        try:        # created on another broker since this one's last heartbeat?
            await cluster.metadata.refresh()
        except ObjectStoreError:
            pass
    counts = Counter((r.resource_type, r.resource_name) for r in resources)
    outcomes: list[tuple[ErrorCode, str | None]] = []
    for res in resources:
        error, message = ErrorCode.NONE, None
        try:
            if counts[(res.resource_type, res.resource_name)] > 1:
                raise Refused(ErrorCode.INVALID_REQUEST, "Each resource must appear at most once.")
            if as_ops is not None:
                res = as_ops(ctx, res)
            if res.resource_type == TOPIC:
                await _alter_topic(ctx, res, validate_only)
            elif res.resource_type == BROKER:
                await _alter_broker(ctx, res, validate_only)
            elif res.resource_type == GROUP:
                await _alter_group(ctx, res, validate_only)
            else:
                raise Refused(ErrorCode.INVALID_REQUEST, f"Unknown resource type {res.resource_type}")
        except Refused as exc:
            error, message = exc.code, exc.message
        except ObjectStoreError as exc:
            error, message = ErrorCode.REQUEST_TIMED_OUT, f"cluster metadata not stored: {exc}"
        outcomes.append((error, message))
    return outcomes


def stored_configs(ctx: RequestContext, resource_type: int, name: str) -> dict[str, str]:
    """The dynamic configs stored for a resource (none for an unknown one)."""
    cluster = ctx.broker.cluster
    if resource_type == TOPIC:
        topic = cluster.metadata.topics.get(name)
        return dict(topic.configs) if topic is not None else {}
    if resource_type == BROKER:
        return dict(cluster.metadata.image.broker_configs.get(name, {}))
    if resource_type == GROUP:
        return dict(cluster.metadata.image.group_configs.get(name, {}))
    return {}


def check_names_and_values(ops) -> None:
    """Kafka's first checks of a resource's configs, in its order: a name
    twice, then null values (all of them named)."""
    names = [op.name for op in ops]
    if len(set(names)) != len(names):
        raise Refused(ErrorCode.INVALID_REQUEST, "Error due to duplicate config keys")
    nulls = [op.name for op in ops if op.config_operation != DELETE and op.value is None]
    if nulls:
        raise Refused(ErrorCode.INVALID_REQUEST, f"Null value not supported for : {', '.join(nulls)}")


def _check_ops(ops) -> None:
    """What Kafka's broker refuses in any resource before looking at names."""
    for op in ops:
        if op.config_operation not in (SET, DELETE, APPEND, SUBTRACT):
            raise Refused(ErrorCode.INVALID_REQUEST, f"Unknown operations type {op.config_operation}")
    check_names_and_values(ops)


def _applier(ops, dropped: frozenset[str] | set[str] = frozenset()) -> Change:
    """SET and DELETE as a pure change of stored configs (names in ``dropped`` are left out)."""
    def change(configs: dict[str, str]) -> None:
        for op in ops:
            if op.name in dropped:
                continue
            if op.config_operation == SET:
                configs[op.name] = op.value
            elif op.config_operation == DELETE:
                configs.pop(op.name, None)
    return change


# ------------------------------------------------------------------ topics
async def _alter_topic(ctx: RequestContext, res, validate_only: bool) -> None:
    cluster = ctx.broker.cluster
    _check_ops(res.configs)
    topic = cluster.metadata.topics.get(res.resource_name)
    if topic is None:
        raise Refused(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"The topic '{res.resource_name}' does not exist.")
    try:
        updated = _apply_topic(dict(topic.configs), res.configs)
    except ValueError as exc:
        raise Refused(ErrorCode.INVALID_CONFIG, str(exc)) from None
    if validate_only or all(op.name in TOPIC_THROTTLES for op in res.configs):
        return
    try:
        await cluster.alter_topic_configs(topic.name, updated)
    except UnknownTopic:
        raise Refused(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                      f"The topic '{res.resource_name}' does not exist.") from None


def _check_throttled_replicas(name: str, value: str | None) -> None:
    """Kafka's format for ``*.replication.throttled.replicas``: ``*``, or
    ``partition:broker`` pairs separated by commas (possibly none)."""
    items = [x.strip() for x in (value or "").split(",") if x.strip()]
    if items == ["*"] or all(THROTTLED_REPLICA.match(x) for x in items):
        return
    raise ValueError(f"Invalid value {value} for configuration {name}: must be the wildcard (*) or a list "
                     "of replicas in the format [partitionId]:[brokerId],[partitionId]:[brokerId],...")


def _apply_topic(configs: dict[str, str], ops) -> dict[str, str]:
    for op in ops:
        name, value = op.name, op.value
        if name in TOPIC_THROTTLES:          # checked, then nothing to throttle (module docstring)
            if op.config_operation != DELETE:
                _check_throttled_replicas(name, value)
        elif op.config_operation == SET:
            validate_topic_config(name, value)
            configs[name] = value
        elif op.config_operation == DELETE:
            if name not in TOPIC_CONFIGS:
                raise ValueError(f"unknown topic config {name!r}")
            configs.pop(name, None)
        else:
            if name not in LIST_CONFIGS:
                raise ValueError(f"Can't {OP_NAMES[op.config_operation][1]} to key {name} because its type "
                                 "is not LIST.")
            current = [x for x in configs.get(name, "").split(",") if x]
            items = [x for x in (value or "").split(",") if x]
            if op.config_operation == APPEND:
                current += [x for x in items if x not in current]
            else:
                current = [x for x in current if x not in items]
            joined = ",".join(current)
            validate_topic_config(name, joined or "delete")
            configs[name] = joined
    return configs


# ------------------------------------------------------------------ brokers
async def _alter_broker(ctx: RequestContext, res, validate_only: bool) -> None:
    b = ctx.broker
    name = res.resource_name
    if name and not name.lstrip("-").isdigit():
        raise Refused(ErrorCode.INVALID_REQUEST, f"Node id must be an integer, but it is: {name}")
    if name and int(name) != b.node_id:
        raise Refused(ErrorCode.INVALID_REQUEST, f"Unexpected broker id, expected {b.node_id}, but received {name}")
    ops = res.configs
    _check_ops(ops)
    for op in ops:
        if op.config_operation in (APPEND, SUBTRACT):
            verb = OP_NAMES[op.config_operation][0]
            if op.name in BROKER_DEFAULTS or op.name in BROKER_THROTTLES:
                raise Refused(ErrorCode.INVALID_CONFIG,
                              f"Config value {verb} is not allowed for config key: {op.name}")
            raise Refused(ErrorCode.INVALID_CONFIG, f"Unknown config name: {op.name}")
    fixed = [op.name for op in ops if op.config_operation == SET
             and op.name not in DYNAMIC_BROKER_CONFIGS and op.name not in BROKER_THROTTLES]
    if fixed:
        raise Refused(ErrorCode.INVALID_REQUEST, f"Cannot update these configs dynamically: [{', '.join(fixed)}]")
    for op in ops:
        if op.config_operation == SET:
            spec = THROTTLE_RATE if op.name in BROKER_THROTTLES else DYNAMIC_BROKER_CONFIGS[op.name]
            try:
                spec.parse(op.name, op.value)
            except ValueError as exc:
                raise Refused(ErrorCode.INVALID_REQUEST, str(exc)) from None
    change = _applier(ops, dropped=BROKER_THROTTLES)
    stored = b.cluster.metadata.image.broker_configs.get(name, {})
    updated = dict(stored)
    change(updated)
    if not validate_only and updated != stored:
        await b.cluster.alter_broker_configs(name, change)


# ------------------------------------------------------------------ groups
async def _alter_group(ctx: RequestContext, res, validate_only: bool) -> None:
    cluster = ctx.broker.cluster
    group = res.resource_name
    if not group:
        raise Refused(ErrorCode.INVALID_REQUEST, "Default group resources are not allowed.")
    ops = res.configs
    _check_ops(ops)
    for op in ops:
        if op.config_operation in (APPEND, SUBTRACT):
            raise Refused(ErrorCode.INVALID_CONFIG, f"Can't {OP_NAMES[op.config_operation][1]} to key {op.name} "
                                                    "because its type is not LIST.")
    change = _applier(ops)
    stored = cluster.metadata.image.group_configs.get(group, {})
    updated = dict(stored)
    change(updated)
    try:
        for op in ops:
            if op.config_operation == SET:
                validate_group_config(op.name, op.value, ctx.broker.config)
        validate_group_configs(updated, ctx.broker.config)     # the whole resulting set, as Kafka's controller
    except ValueError as exc:
        raise Refused(ErrorCode.INVALID_CONFIG, str(exc)) from None
    if not validate_only and updated != stored:
        await cluster.alter_group_configs(group, change)

