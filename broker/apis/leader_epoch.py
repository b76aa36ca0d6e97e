"""The client's ``current_leader_epoch`` check (KIP-320), shared by Fetch,
ListOffsets and OffsetForLeaderEpoch: a client that names an epoch learns
whether its metadata is behind (FENCED_LEADER_EPOCH: refresh it) or ahead of
this broker's (UNKNOWN_LEADER_EPOCH: retry), as Kafka's
``Partition.checkCurrentLeaderEpoch`` answers."""
from __future__ import annotations

from ..errors import ErrorCode
from ..log.partition import Partition

NO_PARTITION_LEADER_EPOCH = -1


def check_leader_epoch(p: Partition, current_leader_epoch: int) -> ErrorCode:
    """NONE when the client's epoch is -1 (no check) or this partition's."""
    if current_leader_epoch == NO_PARTITION_LEADER_EPOCH or current_leader_epoch == p.leader_epoch:
        return ErrorCode.NONE
    if current_leader_epoch < p.leader_epoch:
        return ErrorCode.FENCED_LEADER_EPOCH
    return ErrorCode.UNKNOWN_LEADER_EPOCH
