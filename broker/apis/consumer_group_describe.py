"""ConsumerGroupDescribe (69): KIP-848 consumer groups, as ``kafka-consumer-groups --describe`` reads them.

Per group: state, group and assignment epochs, the assignor, and per member its
epoch, subscription, current assignment and target assignment (topics by id
and name). Errors as Kafka: "" INVALID_GROUP_ID; an unknown id, or a classic
group's or a share group's, GROUP_ID_NOT_FOUND; loading or not ours, the coordinator's error."""
from __future__ import annotations

from ..coordinator.assignors import Assignment
from ..errors import ErrorCode
from .authorized import GROUP_OPERATIONS, operations
from .registry import RequestContext, api
from .specs import ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse

G = ConsumerGroupDescribeResponse.DescribedGroup
M = G.Member
A = M.Assignment
TP = A.TopicPartitions


def described_assignment(ctx: RequestContext, a: Assignment, assignment=A, topic_partitions=TP):
    """An assignment as ``assignment``/``topic_partitions`` (this API's classes, or
    ShareGroupDescribe's, which have the same fields): topics by id and name."""
    out = []
    for tid, ps in sorted(a.items(), key=lambda kv: str(kv[0])):
        t = ctx.broker.replicas.topic_by_id(tid)
        if ps and t is not None:
            out.append(topic_partitions(topic_id=tid, topic_name=t.name, partitions=sorted(ps)))
    return assignment(topic_partitions=out)


def described_error(gid: str, err: int, message: str | None = None, group=G):
    """A group that could not be described, as ``group`` (this API's class or ShareGroupDescribe's)."""
    return group(error_code=err, error_message=message, group_id=gid, group_state="", group_epoch=0,
                 assignment_epoch=0, assignor_name="", members=[], authorized_operations=None)


def _assignment(ctx: RequestContext, a: Assignment) -> A:
    return described_assignment(ctx, a)


def _error(gid: str, err: int, message: str | None = None) -> G:
    return described_error(gid, err, message)


@api(ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse)
async def handle(ctx: RequestContext, request: ConsumerGroupDescribeRequest) -> ConsumerGroupDescribeResponse:
    ops = operations(GROUP_OPERATIONS, request.include_authorized_operations)
    out = []
    for gid in request.group_ids:
        if not gid:
            out.append(_error(gid, ErrorCode.INVALID_GROUP_ID))
            continue
        err = ctx.broker.groups.group_error(gid)
        if err:
            out.append(_error(gid, err))
            continue
        g = ctx.broker.consumer_groups.get(gid)
        if g is None:
            classic = ctx.broker.groups.groups.get(gid)
            other = (classic is not None and classic.state != "Dead") or ctx.broker.share_groups.get(gid) is not None
            msg = f"Group {gid} is not a consumer group." if other else f"Group {gid} not found."
            out.append(_error(gid, ErrorCode.GROUP_ID_NOT_FOUND, msg))
            continue
        members = [M(member_id=m.member_id, instance_id=m.instance_id, rack_id=m.rack_id,
                     member_epoch=m.member_epoch, client_id=m.client_id, client_host=m.client_host,
                     subscribed_topic_names=sorted(m.subscribed_topic_names),
                     subscribed_topic_regex=m.subscribed_topic_regex or "",
                     assignment=_assignment(ctx, m.owned()),   # as Kafka: with partitions being revoked
                     target_assignment=_assignment(ctx, g.target.get(m.member_id, {})),
                     member_type=0 if m.classic is not None else 1)   # KIP-1099: classic 0, consumer 1
                   for m in g.members.values()]
        out.append(G(error_code=ErrorCode.NONE, error_message=None, group_id=gid, group_state=g.state,
                     group_epoch=g.group_epoch, assignment_epoch=g.assignment_epoch,
                     assignor_name=g.assignor_name or ctx.broker.consumer_groups.assignor_names()[0],
                     members=members,
                     authorized_operations=ops))
    return ConsumerGroupDescribeResponse(version=ctx.version, throttle_time_ms=0, groups=out)
