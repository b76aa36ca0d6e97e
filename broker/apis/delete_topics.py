"""DeleteTopics (20)."""
from kafka.protocol.admin import DeleteTopicsRequest, DeleteTopicsResponse

from objectstore import ObjectStoreError

from ..cluster import UnknownTopic
from ..errors import ErrorCode
from .registry import RequestContext, api

Result = DeleteTopicsResponse.DeletableTopicResult


@api(DeleteTopicsRequest, DeleteTopicsResponse)
async def handle(ctx: RequestContext, request: DeleteTopicsRequest) -> DeleteTopicsResponse:
    rm = ctx.broker.replicas
    if ctx.version >= 6:
        wanted = [(t.name, t.topic_id) for t in request.topics]
    else:
        wanted = [(name, None) for name in request.topic_names]
    results = []
    for name, topic_id in wanted:
        topic = rm.metadata.topics.get(name) if name else None
        if topic is None and topic_id is not None and topic_id.int != 0:
            topic = rm.topic_by_id(topic_id)
        if topic is None:
            code = ErrorCode.UNKNOWN_TOPIC_ID if (name is None and ctx.version >= 6) \
                else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            results.append(Result(name=name, topic_id=topic_id, error_code=code,
                                  error_message="This server does not host this topic"))
            continue
        if not ctx.broker.config["delete.topic.enable"]:
            results.append(Result(name=topic.name, topic_id=topic.topic_id,
                                  error_code=ErrorCode.TOPIC_DELETION_DISABLED,
                                  error_message="topic deletion is disabled"))
            continue
        code, message = ErrorCode.NONE, None
        try:
            await ctx.broker.cluster.delete_topic(topic.name)
        except UnknownTopic:
            code, message = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "This server does not host this topic"
        except ObjectStoreError as exc:
            code, message = ErrorCode.REQUEST_TIMED_OUT, f"cluster metadata not stored: {exc}"
        results.append(Result(name=topic.name, topic_id=topic.topic_id, error_code=code,
                              error_message=message))
    return DeleteTopicsResponse(version=ctx.version, throttle_time_ms=0, responses=results)
