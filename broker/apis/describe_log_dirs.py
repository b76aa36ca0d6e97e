"""DescribeLogDirs (35): no log directories.

A Sluice broker keeps no partition in a log directory of its own: its data
dir holds one write-ahead log shared by every partition, and a partition's
data lives in the object store, readable by whichever broker owns it. So the
answer lists no log directory (and no error). Kafka's tools read that as
"any": kafka-reassign-partitions (which since Kafka 4 asks for the current
log directories in --generate and --execute) writes ``"log_dirs": ["any"]``
and never needs AlterReplicaLogDirs (docs/cluster.md section 11).
"""
from kafka.protocol.admin import DescribeLogDirsRequest, DescribeLogDirsResponse

from ..errors import ErrorCode
from .registry import RequestContext, api


@api(DescribeLogDirsRequest, DescribeLogDirsResponse)
async def handle(ctx: RequestContext, request) -> DescribeLogDirsResponse:
    return DescribeLogDirsResponse(version=ctx.version, throttle_time_ms=0, error_code=ErrorCode.NONE, results=[])
