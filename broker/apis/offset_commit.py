"""OffsetCommit (8): group commits checked against generation and member; answered after
the covering WAL fsync. v10 (topic ids, KIP-848 consumers) is not offered."""
import time

from kafka.protocol.consumer import OffsetCommitRequest, OffsetCommitResponse

from wal import WalError

from ..errors import ErrorCode
from ..group_coordinator import OffsetAndMetadata
from . import RequestContext, api

T = OffsetCommitResponse.OffsetCommitResponseTopic
P = T.OffsetCommitResponsePartition


@api(OffsetCommitRequest, OffsetCommitResponse, max_version=9)
async def handle(ctx: RequestContext, request: OffsetCommitRequest) -> OffsetCommitResponse:
    v = ctx.version
    b = ctx.broker
    gc = b.groups
    rm = b.replicas
    now = int(time.time() * 1000)
    if not request.group_id:
        group_err = ErrorCode.INVALID_GROUP_ID
    else:
        group_err = gc.check_commit(request.group_id, request.generation_id_or_member_epoch,
                                    request.member_id or "",
                                    request.group_instance_id if v >= 7 else None)
    max_md = b.config["offset.metadata.max.bytes"]
    rows = []  # (topic name, [[partition, error]])
    commits = []
    for t in request.topics:
        parts = []
        rows.append((t.name, parts))
        for p in t.partitions:
            err = group_err
            if not err:
                if rm.get(t.name, p.partition_index) is None:
                    err = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                elif p.committed_metadata is not None and len(p.committed_metadata.encode()) > max_md:
                    err = ErrorCode.OFFSET_METADATA_TOO_LARGE
                else:
                    epoch = p.committed_leader_epoch if v >= 6 else -1
                    commits.append((t.name, p.partition_index,
                                    OffsetAndMetadata(p.committed_offset, epoch, p.committed_metadata, now)))
            parts.append([p.partition_index, err])
    if commits:
        try:
            await gc.commit_offsets(request.group_id, commits)
        except WalError:
            for _, parts in rows:
                for row in parts:
                    if not row[1]:
                        row[1] = ErrorCode.KAFKA_STORAGE_ERROR
    return OffsetCommitResponse(version=v, throttle_time_ms=0, topics=[
        T(name=name, partitions=[P(partition_index=i, error_code=e) for i, e in parts])
        for name, parts in rows])
