"""Explicit replica assignments (CreateTopics, CreatePartitions), checked as
Kafka's controller checks them (``ReplicationControlManager``), and the
replication factor's meaning in Sluice.

A partition has one replica, its owner: the bucket holds the one copy, and
its durability is the object store's (docs/cluster.md section 4). A replica
list still names brokers as Kafka's does; its first broker that is live and
not draining owns the partition (Kafka's leader is the first replica in the
ISR), and the others hold nothing. So a list is checked as Kafka checks it
(not empty, every broker registered and named once, as many replicas per
partition as the others, at least one broker that can serve), and a
replication factor, given or the default, is refused above the number of
registered brokers (not draining) as Kafka refuses it, then answered as 1:
what Metadata then lists.
"""
from __future__ import annotations

from ..errors import ErrorCode

Refusal = tuple[ErrorCode, str]


class AssignmentError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _refuse(message: str) -> AssignmentError:
    return AssignmentError(ErrorCode.INVALID_REPLICA_ASSIGNMENT, message)


def check_replicas(replicas: list[int], registered: set[int], replication_factor: int | None) -> None:
    """Kafka's ``validateManualPartitionAssignment``: brokers checked in ascending
    id order, so the message names the least offender."""
    if not replicas:
        raise _refuse("The manual partition assignment includes an empty replica list.")
    previous = None
    for broker in sorted(replicas):
        if broker not in registered:
            raise _refuse(f"The manual partition assignment includes broker {broker}, but no such broker "
                          "is registered.")
        if broker == previous:
            raise _refuse(f"The manual partition assignment includes the broker {broker} more than once.")
        previous = broker
    if replication_factor is not None and len(replicas) != replication_factor:
        raise _refuse(f"The manual partition assignment includes a partition with {len(replicas)} replica(s), "
                      "but this is not consistent with previous partitions, which have "
                      f"{replication_factor} replica(s).")


def owner_of(replicas: list[int], usable: set[int], partition: int) -> int:
    """The broker that owns a partition assigned to ``replicas``: the first that
    is live and not draining (Kafka: the first replica in the ISR, which holds
    only unfenced brokers not in controlled shutdown)."""
    for broker in replicas:
        if broker in usable:
            return broker
    raise _refuse(f"All brokers specified in the manual partition assignment for partition {partition} are "
                  "fenced or in controlled shutdown.")


def topic_owners(assignments, registered: set[int], usable: set[int]) -> list[int]:
    """CreateTopics' ``assignments`` (partition index, broker ids) as one owner per
    partition, in index order; AssignmentError as Kafka answers."""
    owners: dict[int, int] = {}
    rf = None
    for a in assignments:
        if a.partition_index in owners:
            raise _refuse(f"Found multiple manual partition assignments for partition {a.partition_index}")
        replicas = list(a.broker_ids)
        check_replicas(replicas, registered, rf)
        rf = len(replicas)
        owners[a.partition_index] = owner_of(replicas, usable, a.partition_index)
    if sorted(owners) != list(range(len(owners))):
        raise _refuse("partitions should be a consecutive 0-based integer sequence")
    return [owners[i] for i in range(len(owners))]


def new_partition_owners(assignments, start: int, registered: set[int], usable: set[int]) -> list[int]:
    """CreatePartitions' ``assignments`` for the partitions from ``start`` on: one
    owner each. Every existing partition has one replica, so each list must too."""
    return [_owner_checked(list(a.broker_ids), start + i, registered, usable) for i, a in enumerate(assignments)]


def _owner_checked(replicas: list[int], partition: int, registered: set[int], usable: set[int]) -> int:
    check_replicas(replicas, registered, 1)
    return owner_of(replicas, usable, partition)


def replication_factor_refusal(rf: int, brokers: int) -> Refusal | None:
    """A replication factor placed by the broker (no explicit assignment): Kafka's
    INVALID_REPLICATION_FACTOR for one above the registered brokers."""
    if rf > brokers:
        return (ErrorCode.INVALID_REPLICATION_FACTOR,
                f"Unable to replicate the partition {rf} time(s): The target replication factor of {rf} "
                f"cannot be reached because only {brokers} broker(s) are registered.")
    return None
