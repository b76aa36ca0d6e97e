"""AlterPartitionReassignments (45): start or cancel partition moves.

A partition has one replica, its owner: the bucket holds the one copy, so
``replicas = [B]`` names the broker the partition moves to, by the hand-off
(docs/cluster.md sections 7 and 11): this handler only sets the target, in
one conditional update of the metadata document for the whole request, and
answers; the old owner seals, uploads and flips the partition afterwards
(ListPartitionReassignments shows it until then). ``replicas = null``
cancels a pending move. Errors per partition, by Kafka's codes:

- UNKNOWN_TOPIC_OR_PARTITION: no such topic or partition;
- INVALID_REPLICA_ASSIGNMENT: an empty list, a broker named twice, more than
  one broker, or a broker that is not live (or is draining);
- INVALID_REPLICATION_FACTOR: more than one broker while the request (v1)
  forbids changing the replication factor;
- NO_REASSIGNMENT_IN_PROGRESS: cancelling a partition with no move pending;
- REQUEST_TIMED_OUT: the bucket refused the metadata write (nothing changed).
"""
from __future__ import annotations

from kafka.protocol.admin import AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse

from objectstore import ObjectStoreError

from ..errors import ErrorCode
from .registry import RequestContext, api

TopicResponse = AlterPartitionReassignmentsResponse.ReassignableTopicResponse
PartitionResponse = TopicResponse.ReassignablePartitionResponse

Key = tuple[str, int]
Refusal = tuple[ErrorCode, str]

ONE_COPY = ("Sluice keeps one copy of a partition, in the object store (replication is the bucket's): "
            "a reassignment names one broker, the partition's new owner")


def _refusal(replicas: list[int], allow_rf_change: bool) -> Refusal | None:
    """Why a replica list cannot be a target, in Kafka's order of checks; None if it can."""
    if not replicas:
        return ErrorCode.INVALID_REPLICA_ASSIGNMENT, "The manual partition assignment includes an empty replica list."
    dup = next((r for i, r in enumerate(replicas) if r in replicas[:i]), None)
    if dup is not None:
        return (ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                f"The manual partition assignment includes the broker {dup} more than once.")
    if len(replicas) > 1:
        if not allow_rf_change:
            return (ErrorCode.INVALID_REPLICATION_FACTOR,
                    f"The replication factor is changed from 1 to {len(replicas)}; {ONE_COPY}.")
        return ErrorCode.INVALID_REPLICA_ASSIGNMENT, f"{ONE_COPY}; got {len(replicas)} replicas {replicas}."
    return None


def _not_live(ctx: RequestContext, node: int) -> Refusal:
    c = ctx.broker.cluster
    if c.membership.is_live(node) and node in c.metadata.image.draining:
        return ErrorCode.INVALID_REPLICA_ASSIGNMENT, f"Broker {node} is draining: it takes no partitions."
    return (ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            f"The manual partition assignment includes broker {node}, but it is not a live broker.")


@api(AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse)
async def handle(ctx: RequestContext, request) -> AlterPartitionReassignmentsResponse:
    cluster = ctx.broker.cluster
    allow_rf_change = request.allow_replication_factor_change if ctx.version >= 1 else True
    moves: dict[Key, int | None] = {}
    refused: dict[Key, Refusal] = {}
    for t in request.topics:
        for p in t.partitions:
            key = (t.name, p.partition_index)
            why = None if p.replicas is None else _refusal(list(p.replicas), allow_rf_change)
            if why is not None:
                refused[key] = why
            else:
                moves[key] = None if p.replicas is None else p.replicas[0]
    for key in refused:             # a partition named twice, once wrongly: nothing happens to it
        moves.pop(key, None)
    # As Kafka, an unknown partition is that whatever its list: checked here for the
    # refused ones (by Cluster.reassign for the others), on a fresh document if the
    # cache does not know one (created on another broker since this one's heartbeat).
    if any(not _known(cluster, key) for key in refused):
        try:
            await cluster.metadata.refresh()
        except ObjectStoreError:
            pass
    for key in refused:
        if not _known(cluster, key):
            refused[key] = _unknown(key)
    results: dict[Key, str | None] = {}
    failed: str | None = None
    if moves:
        try:
            results = await cluster.reassign(moves)
        except ObjectStoreError as exc:
            failed = f"cluster metadata not stored: {exc}"
    out = []
    for t in request.topics:
        parts = []
        for p in t.partitions:
            key = (t.name, p.partition_index)
            if key in refused:
                error, message = refused[key]
            elif failed is not None:
                error, message = ErrorCode.REQUEST_TIMED_OUT, failed
            else:
                error, message = _answer(ctx, key, moves[key], results.get(key, "unknown"))
            parts.append(PartitionResponse(partition_index=p.partition_index, error_code=error,
                                           error_message=message))
        out.append(TopicResponse(name=t.name, partitions=parts))
    return AlterPartitionReassignmentsResponse(
        version=ctx.version, throttle_time_ms=0, allow_replication_factor_change=allow_rf_change,
        error_code=ErrorCode.NONE, error_message=None, responses=out)


def _known(cluster, key: Key) -> bool:
    topic = cluster.metadata.topics.get(key[0])
    return topic is not None and 0 <= key[1] < topic.partitions


def _unknown(key: Key) -> Refusal:
    return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Unable to find partition {key[0]}-{key[1]}."


def _answer(ctx: RequestContext, key: Key, node: int | None, result: str | None) -> tuple[ErrorCode, str | None]:
    """A ``Cluster.reassign`` result as Kafka's error code and message."""
    if result is None:
        return ErrorCode.NONE, None
    if result == "unknown":
        return _unknown(key)
    if result == "none pending":
        return (ErrorCode.NO_REASSIGNMENT_IN_PROGRESS,
                f"No reassignment of partition {key[0]}-{key[1]} is in progress.")
    if result == "not live" and node is not None:
        return _not_live(ctx, node)
    return ErrorCode.UNKNOWN_SERVER_ERROR, f"reassignment refused: {result}"
