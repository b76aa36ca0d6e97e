"""ElectLeaders (43): preferred and unclean leader election (docs/cluster.md section 10).

A partition has one replica, its owner, which is therefore its preferred
leader:

- PREFERRED: ELECTION_NOT_NEEDED when the owner is live (it leads already),
  PREFERRED_LEADER_NOT_AVAILABLE when it is not (there is no other replica
  to elect; the owner leads again once it is back).
- UNCLEAN: a partition whose owner is not live goes to the live broker with
  the fewest partitions at epoch + 1 (``Cluster.elect_unclean``, one
  conditional update for the whole request), without the owner's hand-off:
  what the owner acknowledged but had not recorded in the manifest is lost,
  as Kafka's unclean election loses what the new leader lacks.
  ELECTION_NOT_NEEDED when the owner is live; REQUEST_TIMED_OUT when the
  bucket refused the write.

``topic_partitions = null`` means every partition of every topic, and then,
as Kafka's controller does, the partitions that needed no election are left
out of the answer (each topic is still listed, possibly with no partitions).
"""
from __future__ import annotations

from kafka.protocol.admin import ElectLeadersRequest, ElectLeadersResponse

from objectstore import ObjectStoreError

from ..errors import ErrorCode
from .registry import RequestContext, api

PREFERRED, UNCLEAN = 0, 1
Result = ElectLeadersResponse.ReplicaElectionResult
PartitionResult = Result.PartitionResult

Key = tuple[str, int]

_UNCLEAN_ANSWERS: dict[str, tuple[ErrorCode, str]] = {
    "unknown": (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "The partition does not exist."),
    "not needed": (ErrorCode.ELECTION_NOT_NEEDED, "The partition's owner is live: it leads already."),
    "no live broker": (ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE, "No live broker can take the partition."),
}


@api(ElectLeadersRequest, ElectLeadersResponse)
async def handle(ctx: RequestContext, request) -> ElectLeadersResponse:
    cluster = ctx.broker.cluster
    v = ctx.version
    election = request.election_type if v >= 1 else PREFERRED
    every = request.topic_partitions is None
    asked: list[tuple[str, list[int]]]
    if every:
        asked = [(t.name, list(range(t.partitions))) for t in
                 sorted(cluster.metadata.topics.values(), key=lambda t: t.name)]
    else:
        asked = [(t.topic, list(t.partitions)) for t in request.topic_partitions]
    if election not in (PREFERRED, UNCLEAN):
        return ElectLeadersResponse(version=v, throttle_time_ms=0, error_code=ErrorCode.INVALID_REQUEST,
                                    replica_election_results=[])
    answers: dict[Key, tuple[ErrorCode, str | None]] = {}
    if election == PREFERRED:
        for name, parts in asked:
            for i in parts:
                answers[(name, i)] = _preferred(ctx, name, i)
    else:
        keys = [(name, i) for name, parts in asked for i in parts]
        try:
            results = await cluster.elect_unclean(keys) if keys else {}
        except ObjectStoreError as exc:
            failed = (ErrorCode.REQUEST_TIMED_OUT, f"cluster metadata not stored: {exc}")
            results = {}
            answers = {k: failed for k in keys}
        for key, result in results.items():
            answers[key] = (ErrorCode.NONE, None) if result is None else _UNCLEAN_ANSWERS.get(
                result, (ErrorCode.UNKNOWN_SERVER_ERROR, f"election refused: {result}"))
    out = []
    for name, parts in asked:
        rows = []
        for i in parts:
            error, message = answers.get((name, i), (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, None))
            if every and error == ErrorCode.ELECTION_NOT_NEEDED:
                continue        # as Kafka: "we do not return partitions which already have the desired leader"
            rows.append(PartitionResult(partition_id=i, error_code=error, error_message=message))
        out.append(Result(topic=name, partition_result=rows))
    return ElectLeadersResponse(version=v, throttle_time_ms=0, error_code=ErrorCode.NONE,
                                replica_election_results=out)


def _preferred(ctx: RequestContext, name: str, index: int) -> tuple[ErrorCode, str]:
    cluster = ctx.broker.cluster
    topic = cluster.metadata.topics.get(name)
    if topic is None or not 0 <= index < topic.partitions:
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "The partition does not exist."
    owner = topic.owners[index]
    if cluster.membership.is_live(owner):
        return ErrorCode.ELECTION_NOT_NEEDED, "Leader election not needed for topic partition."
    return (ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE,
            f"The preferred leader, broker {owner} (the partition's one replica), is not live.")
