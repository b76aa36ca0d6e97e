"""DescribeCluster (60): the registered brokers and the controller lease's holder;
the cluster's authorized operations when asked (KIP-430, authorized.py)."""
from kafka.protocol.admin import DescribeClusterRequest, DescribeClusterResponse

from ..errors import ErrorCode
from .authorized import CLUSTER_OPERATIONS, operations
from .registry import RequestContext, api

BROKERS, CONTROLLERS = 1, 2
Broker = DescribeClusterResponse.DescribeClusterBroker


@api(DescribeClusterRequest, DescribeClusterResponse)
async def handle(ctx: RequestContext, request) -> DescribeClusterResponse:
    b = ctx.broker
    endpoint_type = request.endpoint_type if ctx.version >= 1 else BROKERS
    error, message = ErrorCode.NONE, None
    if endpoint_type not in (BROKERS, CONTROLLERS):
        error, message = ErrorCode.UNSUPPORTED_ENDPOINT_TYPE, f"endpoint type {endpoint_type}"
    brokers = [Broker(broker_id=r.node_id, host=r.host, port=r.port, rack=r.rack, is_fenced=False)
               for r in b.cluster.brokers()] if not error else []
    return DescribeClusterResponse(
        version=ctx.version, throttle_time_ms=0, error_code=error, error_message=message,
        endpoint_type=endpoint_type, cluster_id=b.replicas.metadata.cluster_id,
        controller_id=b.cluster.controller_id, brokers=brokers,
        authorized_operations=operations(CLUSTER_OPERATIONS, request.include_cluster_authorized_operations))
