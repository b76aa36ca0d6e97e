"""Metadata (3): the cluster's brokers, topics and partition leaders (owners and
epochs from the cluster metadata); auto-creates topics when allowed. Authorized
operations (KIP-430) when asked: every topic named (not an unknown topic id),
and the cluster's at v8-10, as Kafka without an authorizer answers them."""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from kafka.protocol.metadata import MetadataRequest, MetadataResponse

from ..cluster.metadata import topic_name_error
from ..errors import ErrorCode
from .authorized import CLUSTER_OPERATIONS, TOPIC_OPERATIONS, operations
from .registry import RequestContext, api

if TYPE_CHECKING:
    from ..cluster import Cluster
    from ..cluster.metadata import Topic

R = MetadataResponse


@api(MetadataRequest, MetadataResponse)
async def handle(ctx: RequestContext, request: MetadataRequest) -> MetadataResponse:
    b = ctx.broker
    rm = b.replicas
    v = ctx.version
    if request.topics is None or (v == 0 and not request.topics):
        names = sorted(rm.metadata.topics)  # all topics
    else:
        names = []
        for t in request.topics:
            name = t.name
            if name is None and v >= 10 and t.topic_id is not None:
                topic = rm.topic_by_id(t.topic_id)
                name = topic.name if topic else None
            names.append(name)
    allow_auto = request.allow_auto_topic_creation if v >= 4 else True
    topic_ops = v >= 8 and request.include_topic_authorized_operations
    cluster_ops = 8 <= v <= 10 and request.include_cluster_authorized_operations
    topics = []
    for name in names:
        topic = await _describe(ctx, name, allow_auto)
        if topic.name is not None:
            topic.authorized_operations = operations(TOPIC_OPERATIONS, topic_ops)
        topics.append(topic)
    brokers = [R.MetadataResponseBroker(node_id=r.node_id, host=r.host, port=r.port, rack=r.rack)
               for r in b.cluster.brokers()]
    return R(version=v, throttle_time_ms=0, brokers=brokers, cluster_id=rm.metadata.cluster_id,
             controller_id=b.cluster.controller_id, topics=topics,
             authorized_operations=operations(CLUSTER_OPERATIONS, cluster_ops),
             error_code=0)


async def _describe(ctx: RequestContext, name: str | None, allow_auto: bool):
    b = ctx.broker
    rm = b.replicas
    T = R.MetadataResponseTopic
    if name is None:
        return T(error_code=ErrorCode.UNKNOWN_TOPIC_ID, name=None, topic_id=None,
                 is_internal=False, partitions=[], authorized_operations=None)
    topic = rm.metadata.topics.get(name)
    if topic is None:
        if allow_auto:
            error = await b.auto_create(name)
        else:  # as Kafka: an invalid name is INVALID_TOPIC_EXCEPTION, not unknown
            error = (ErrorCode.INVALID_TOPIC_EXCEPTION if topic_name_error(name)
                     else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        topic = rm.metadata.topics.get(name)
        if topic is None or error:
            return T(error_code=error or ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, name=name,
                     topic_id=None, is_internal=False, partitions=[],
                     authorized_operations=None)
    P = R.MetadataResponseTopic.MetadataResponsePartition
    parts = []
    for i in range(topic.partitions):
        r = partition_replicas(b.cluster, topic, i)
        parts.append(P(error_code=0 if r.leader >= 0 else ErrorCode.LEADER_NOT_AVAILABLE,
                       partition_index=i, leader_id=r.leader, leader_epoch=r.epoch,
                       replica_nodes=r.replicas, isr_nodes=r.isr, offline_replicas=r.offline))
    return T(error_code=0, name=name, topic_id=topic.topic_id, is_internal=False,
             partitions=parts, authorized_operations=None)


class PartitionReplicas(NamedTuple):
    leader: int             # -1 while the owner is not live
    epoch: int
    replicas: list[int]
    isr: list[int]
    offline: list[int]


def partition_replicas(cluster: "Cluster", topic: "Topic", index: int) -> PartitionReplicas:
    """A partition as Kafka's APIs describe it (Metadata, DescribeTopicPartitions):
    its one replica is its owner, in sync and leading while the owner is live,
    offline otherwise (docs/cluster.md section 11)."""
    leader, epoch = cluster.leader(topic, index)
    owner = topic.owners[index]
    live = leader >= 0
    return PartitionReplicas(leader, epoch, [owner], [owner] if live else [], [] if live else [owner])
