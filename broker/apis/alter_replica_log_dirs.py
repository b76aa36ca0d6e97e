"""AlterReplicaLogDirs (34): keep a replica in the broker's one log directory.

There is one directory per broker (log_dirs.py), so nothing ever moves; the
answer is Kafka's ``ReplicaManager.alterReplicaLogDirs`` for that one
directory, per partition: a path that is not this broker's directory
LOG_DIR_NOT_FOUND; a partition this broker owns NONE (it is there already);
one that exists but is owned elsewhere (or not loaded yet) REPLICA_NOT_AVAILABLE,
which kafka-reassign-partitions retries until the reassignment brings it
here; an unknown one UNKNOWN_TOPIC_OR_PARTITION. This is what executing the
rollback plan kafka-reassign-partitions prints (which names each replica's
directory) asks for.
"""
from kafka.protocol.admin import AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse

from ..errors import ErrorCode
from .log_dirs import log_dir
from .registry import RequestContext, api

T = AlterReplicaLogDirsResponse.AlterReplicaLogDirTopicResult
P = T.AlterReplicaLogDirPartitionResult


@api(AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse)
async def handle(ctx: RequestContext, request) -> AlterReplicaLogDirsResponse:
    b = ctx.broker
    mine = log_dir(b)
    dirs: dict[tuple[str, int], str] = {}       # as Kafka's partitionDirs map: a later path wins
    for d in request.dirs:
        for t in d.topics:
            for i in t.partitions:
                dirs[(t.name, i)] = d.path
    results: dict[str, list] = {}
    for (topic, index), path in dirs.items():
        if path != mine:
            error = ErrorCode.LOG_DIR_NOT_FOUND
        else:
            p = b.replicas.get(topic, index)
            if p is not None and not p.storage.fenced:
                error = ErrorCode.NONE
            else:
                error = b.replicas.missing(topic, index)
                if error == ErrorCode.NOT_LEADER_OR_FOLLOWER:   # Kafka keeps the older code here
                    error = ErrorCode.REPLICA_NOT_AVAILABLE
        results.setdefault(topic, []).append(P(partition_index=index, error_code=error))
    return AlterReplicaLogDirsResponse(version=ctx.version, throttle_time_ms=0, results=[
        T(topic_name=topic, partitions=parts) for topic, parts in results.items()])
