"""AlterConfigs (33): the non-incremental config change, which kafkajs's
``admin.alterConfigs`` (and older admin clients) send.

Kafka's semantics: the configs given become the resource's whole set of
dynamic configs; every stored one not given is removed (``legacyAlterConfigs``
in Kafka's controller). So each resource is turned into IncrementalAlterConfigs
operations, SET for every config given and DELETE for every stored one left
out, and goes through that API's checks and its one metadata update
(incremental_alter_configs.py): the same resource types (topic, broker by this
broker's id or "" for the cluster default, group), validation, error codes and
``validate_only``. Checked first, as Kafka's broker does: a resource named
twice, a config named twice, a null value (INVALID_REQUEST); there are no
APPEND or SUBTRACT here.
"""
from __future__ import annotations

from kafka.protocol.admin import AlterConfigsRequest, AlterConfigsResponse

from .incremental_alter_configs import (
    DELETE,
    SET,
    Op,
    Resource,
    alter_resources,
    check_names_and_values,
    stored_configs,
)
from .registry import RequestContext, api

Result = AlterConfigsResponse.AlterConfigsResourceResponse


@api(AlterConfigsRequest, AlterConfigsResponse)
async def handle(ctx: RequestContext, request) -> AlterConfigsResponse:
    outcomes = await alter_resources(ctx, request.resources, request.validate_only, as_ops=replace_all)
    return AlterConfigsResponse(version=ctx.version, throttle_time_ms=0, responses=[
        Result(error_code=error, error_message=message, resource_type=res.resource_type,
               resource_name=res.resource_name) for res, (error, message) in zip(request.resources, outcomes)])


def replace_all(ctx: RequestContext, res) -> Resource:
    """The operations that make ``res.configs`` the resource's whole set."""
    ops = [Op(c.name, c.value, SET) for c in res.configs]
    check_names_and_values(ops)
    given = {op.name for op in ops}
    ops += [Op(name, None, DELETE) for name in sorted(stored_configs(ctx, res.resource_type, res.resource_name))
            if name not in given]
    return Resource(res.resource_type, res.resource_name, ops)
