"""What a coordinator writes to, and which coordinator partition a key is in.

A coordinator (groups now, transactions later) does not know the Broker: it
appends its entries to a ``GroupLog`` and learns of their durability from the
returned future. The broker's adapter (``WalGroupLog``) writes them to the WAL
as kind-3 entries (key = group id) and tells the snapshots which coordinator
partition changed.

Keys map to coordinator partitions exactly as Kafka maps a group id to a
``__consumer_offsets`` partition (``partition_for``), so that a coordinator's
state can be kept, and later moved, per partition.
"""
from __future__ import annotations

import asyncio
from functools import lru_cache
from typing import Callable, Protocol


class GroupLog(Protocol):
    def append(self, group_id: str, data: bytes) -> asyncio.Future:
        """Queue one entry of ``group_id``; the future resolves (None) once it is
        durable (fsynced), or fails with the log's error. Entries of one log are
        durable in the order they were appended."""
        ...


class WalGroupLog:
    """A ``GroupLog`` over the broker's WAL (``ReplicaManager.append_group_entry``).

    ``on_append(group_id)`` is called after each entry is queued, and again
    once it is durable and its writer's callback applied it in memory: the
    group snapshots mark that group's coordinator partition dirty (set by the
    Broker once the snapshots exist). The second mark matters: a snapshot
    stored between the two holds the shard without the entry, and the WAL
    segment holding it must not be trimmed before a snapshot with it is."""

    def __init__(self, append_entry: Callable[[str, bytes], asyncio.Future],
                 on_append: Callable[[str], None] | None = None) -> None:
        self._append_entry = append_entry
        self.on_append = on_append

    def append(self, group_id: str, data: bytes) -> asyncio.Future:
        fut = self._append_entry(group_id, data)
        if self.on_append is not None:
            self.on_append(group_id)
            # Registered before the writer's own callback (it gets ``fut`` from us),
            # so call_soon puts the second mark after the entry is applied.
            fut.add_done_callback(lambda _f: asyncio.get_running_loop().call_soon(self._noted_again, group_id))
        return fut

    def _noted_again(self, group_id: str) -> None:
        if self.on_append is not None:
            self.on_append(group_id)


def java_string_hashcode(s: str) -> int:
    """Java's ``String.hashCode``: ``s[0]*31^(n-1) + ... + s[n-1]`` over UTF-16
    code units (a character outside the BMP counts as its two surrogates), in
    32-bit two's complement arithmetic."""
    h = 0
    units = s.encode("utf-16-be", "surrogatepass")
    for i in range(0, len(units), 2):
        h = (31 * h + (units[i] << 8 | units[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def kafka_abs(n: int) -> int:
    """Kafka's ``Utils.abs``: ``(n == Integer.MIN_VALUE) ? 0 : Math.abs(n)``
    (apache/kafka clients/src/main/java/org/apache/kafka/common/utils/Utils.java;
    not ``Utils.toPositive``, which is ``n & 0x7fffffff``; the two agree only
    for non-negative n and for MIN_VALUE)."""
    return 0 if n == -(1 << 31) else abs(n)


@lru_cache(maxsize=1 << 16)
def partition_for(group_id: str, partitions: int) -> int:
    """The ``__consumer_offsets`` partition of a group, as Kafka computes it:
    ``Utils.abs(groupId.hashCode()) % numPartitions`` (GroupCoordinatorService
    .partitionFor in group-coordinator/; GroupMetadataManager.partitionFor,
    the same formula, in Kafka 3's core), with ``numPartitions`` =
    ``offsets.topic.num.partitions``."""
    if partitions < 1:
        raise ValueError(f"offsets.topic.num.partitions must be >= 1, not {partitions}")
    return kafka_abs(java_string_hashcode(group_id)) % partitions
