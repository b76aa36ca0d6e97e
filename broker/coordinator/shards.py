"""Which group coordinator partitions this broker serves, and in what state.

A group belongs to coordinator partition ``abs(hash(group id)) %
offsets.topic.num.partitions`` (Kafka's ``__consumer_offsets`` partition);
the cluster metadata names each partition's owner. The broker changes the
states below as it gains, loads, seals (to hand off) and loses partitions;
the group coordinator asks ``error(group_id)`` before answering for a group:

==========  =================================================================
state       group APIs answer
==========  =================================================================
(absent)    NOT_COORDINATOR: another broker owns it (clients look it up again)
loading     COORDINATOR_LOAD_IN_PROGRESS: gained, its snapshot not read yet
sealed      NOT_COORDINATOR: being handed off (docs/cluster.md section 7)
active      answered here
==========  =================================================================
"""
from __future__ import annotations

from ..errors import ErrorCode
from .log import partition_for

LOADING, SEALED, ACTIVE = "loading", "sealed", "active"


class CoordinatorShards:
    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.state: dict[int, str] = {}

    def shard_of(self, group_id: str) -> int:
        return partition_for(group_id, self.partitions)

    def error(self, group_id: str) -> int:
        st = self.state.get(self.shard_of(group_id))
        if st == ACTIVE:
            return ErrorCode.NONE
        if st == LOADING:
            return ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        return ErrorCode.NOT_COORDINATOR
