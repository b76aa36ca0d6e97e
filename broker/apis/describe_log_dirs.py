"""DescribeLogDirs (35): the broker's one log directory, with its partitions' sizes.

The directory, its name and what a partition's size counts are
``log_dirs.py``'s. Answered as Kafka's ``ReplicaManager.describeLogDirs``:
``topics = null`` asks for every partition the broker hosts, else the ones
named (a topic with none of them here is left out).
Offset lag 0 (the log is its own end), never a future replica; total and
usable bytes are the object store's volume for ``file://``, -1 (unknown) for
a bucket.

kafka-log-dirs --describe prints it. kafka-reassign-partitions (Kafka 4)
writes a partition's current directory into the rollback plan it prints in
--generate and --execute; executing that plan asks AlterReplicaLogDirs to
keep each replica there, which answers as Kafka does for a replica already
in place (alter_replica_log_dirs.py). Its proposed plans say "any".
"""
from kafka.protocol.admin import DescribeLogDirsRequest, DescribeLogDirsResponse

from ..errors import ErrorCode
from .log_dirs import hosted, log_dir, partition_size, volume_bytes
from .registry import RequestContext, api

R = DescribeLogDirsResponse.DescribeLogDirsResult
T = R.DescribeLogDirsTopic
P = T.DescribeLogDirsPartition


@api(DescribeLogDirsRequest, DescribeLogDirsResponse)
async def handle(ctx: RequestContext, request) -> DescribeLogDirsResponse:
    b = ctx.broker
    wanted = None if request.topics is None else {(t.topic, i) for t in request.topics for i in t.partitions}
    topics = []
    for name, parts in hosted(b).items():
        listed = [P(partition_index=p.index, partition_size=partition_size(p), offset_lag=0, is_future_key=False)
                  for p in parts if wanted is None or (name, p.index) in wanted]
        if listed:
            topics.append(T(name=name, partitions=listed))
    total, usable = volume_bytes(b)
    result = R(error_code=ErrorCode.NONE, log_dir=log_dir(b), topics=topics, total_bytes=total,
               usable_bytes=usable, is_cordoned=False)
    return DescribeLogDirsResponse(version=ctx.version, throttle_time_ms=0, error_code=ErrorCode.NONE,
                                   results=[result])
