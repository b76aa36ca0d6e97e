"""One module per Kafka API; each registers itself here, and ApiVersions reads the table.

Every handler has one shape::

    async def handle(ctx: RequestContext, request) -> response | None

Per-partition errors go into the response. A handler raises only for a
request the broker cannot answer at all, which closes the connection.
Supported versions come from the message class's JSON spec (``validVersions``),
so what ApiVersions advertises is what the decoder accepts.
"""
from __future__ import annotations

from .registry import API_TABLE, Api, CloseConnection, Handler, RequestContext, api

__all__ = ["API_TABLE", "Api", "CloseConnection", "Handler", "RequestContext", "api", "load_all"]


def load_all() -> dict[int, Api]:
    """Import every API module so each registers itself."""
    from . import (  # noqa: F401  # noqa: F401
        alter_configs,
        alter_partition_reassignments,
        alter_replica_log_dirs,
        api_versions,
        consumer_group_describe,
        consumer_group_heartbeat,
        create_partitions,
        create_topics,
        delete_groups,
        delete_records,
        delete_topics,
        describe_cluster,
        describe_configs,
        describe_groups,
        describe_log_dirs,
        describe_producers,
        describe_share_group_offsets,
        describe_topic_partitions,
        elect_leaders,
        fetch,
        find_coordinator,
        heartbeat,
        incremental_alter_configs,
        init_producer_id,
        join_group,
        leave_group,
        list_groups,
        list_offsets,
        list_partition_reassignments,
        metadata,
        offset_commit,
        offset_delete,
        offset_fetch,
        offset_for_leader_epoch,
        produce,
        share_acknowledge,
        share_fetch,
        share_group_describe,
        share_group_heartbeat,
        share_group_offsets,
        sync_group,
        update_features,
    )

    return API_TABLE
