"""Metadata (3): brokers, topics and partitions; auto-creates topics when allowed."""
from kafka.protocol.metadata import MetadataRequest, MetadataResponse

from ..errors import ErrorCode
from ..cluster.metadata import topic_name_error
from . import RequestContext, api

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
    topics = []
    for name in names:
        topics.append(_describe(ctx, name, allow_auto))
    brokers = [R.MetadataResponseBroker(node_id=b.node_id, host=b.advertised_host,
                                        port=b.advertised_port, rack=None)]
    return R(version=v, throttle_time_ms=0, brokers=brokers, cluster_id=rm.metadata.cluster_id,
             controller_id=b.node_id, topics=topics, authorized_operations=None,
             error_code=0)


def _describe(ctx: RequestContext, name: str | None, allow_auto: bool):
    b = ctx.broker
    rm = b.replicas
    T = R.MetadataResponseTopic
    if name is None:
        return T(error_code=ErrorCode.UNKNOWN_TOPIC_ID, name=None, topic_id=None,
                 is_internal=False, partitions=[], authorized_operations=None)
    topic = rm.metadata.topics.get(name)
    if topic is None:
        if allow_auto:
            error = b.auto_create(name)
        else:  # as Kafka: an invalid name is INVALID_TOPIC_EXCEPTION, not unknown
            error = (ErrorCode.INVALID_TOPIC_EXCEPTION if topic_name_error(name)
                     else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        topic = rm.metadata.topics.get(name)
        if topic is None or error:
            return T(error_code=error or ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, name=name,
                     topic_id=None, is_internal=False, partitions=[],
                     authorized_operations=None)
    P = R.MetadataResponseTopic.MetadataResponsePartition
    parts = [P(error_code=0, partition_index=i, leader_id=b.node_id,
               leader_epoch=rm.get(name, i).leader_epoch, replica_nodes=[b.node_id],
               isr_nodes=[b.node_id], offline_replicas=[])
             for i in range(topic.partitions)]
    return T(error_code=0, name=name, topic_id=topic.topic_id, is_internal=False,
             partitions=parts, authorized_operations=None)
