"""ShareGroupDescribe (77): share groups as ``kafka-share-groups --describe --members/--state`` reads them.

Per group: state (Empty, Stable), group and assignment epochs, the assignor
("simple"), and per member its epoch, subscription and assignment (topics by
id and name). Errors as ConsumerGroupDescribe: "" INVALID_GROUP_ID; an
unknown id, or another kind of group's, GROUP_ID_NOT_FOUND; the
coordinator's error when loading or not ours."""
from __future__ import annotations

from ..coordinator.assignors import Assignment
from ..errors import ErrorCode
from .authorized import GROUP_OPERATIONS, operations
from .consumer_group_describe import described_assignment, described_error
from .registry import RequestContext, api
from .specs import ShareGroupDescribeRequest, ShareGroupDescribeResponse

G = ShareGroupDescribeResponse.DescribedGroup
M = G.Member
A = M.Assignment
TP = A.TopicPartitions


def _assignment(ctx: RequestContext, a: Assignment) -> A:
    return described_assignment(ctx, a, A, TP)


def _error(gid: str, err: int, message: str | None = None) -> G:
    return described_error(gid, err, message, G)


@api(ShareGroupDescribeRequest, ShareGroupDescribeResponse)
async def handle(ctx: RequestContext, request: ShareGroupDescribeRequest) -> ShareGroupDescribeResponse:
    ops = operations(GROUP_OPERATIONS, request.include_authorized_operations)
    sgc = ctx.broker.share_groups
    out = []
    for gid in request.group_ids:
        if not gid:
            out.append(_error(gid, ErrorCode.INVALID_GROUP_ID))
            continue
        err = ctx.broker.groups.group_error(gid)
        if err:
            out.append(_error(gid, err))
            continue
        g = sgc.get(gid)
        if g is None:
            msg = f"Group {gid} is not a share group." if sgc.is_other_kind(gid) else f"Group {gid} not found."
            out.append(_error(gid, ErrorCode.GROUP_ID_NOT_FOUND, msg))
            continue
        members = [M(member_id=m.member_id, rack_id=m.rack_id, member_epoch=m.member_epoch,
                     client_id=m.client_id, client_host=m.client_host,
                     subscribed_topic_names=sorted(m.subscribed_topic_names),
                     assignment=_assignment(ctx, m.assigned))
                   for m in g.members.values()]
        out.append(G(error_code=ErrorCode.NONE, error_message=None, group_id=gid, group_state=g.state,
                     group_epoch=g.group_epoch, assignment_epoch=g.assignment_epoch, assignor_name="simple",
                     members=members, authorized_operations=ops))
    return ShareGroupDescribeResponse(version=ctx.version, throttle_time_ms=0, groups=out)
