"""Message classes kafka-python 3.0.12 does not have, built from Kafka's own JSON specs.

The ``*.json`` files here are copied unchanged from Apache Kafka 4.4.0's
``kafka-clients-4.4.0.jar`` (``common/message/``; Apache License 2.0, header
kept in each file). kafka-python generates its message classes from the same
specs, so ``class X(ApiMessage, load_json=<this package>)`` gives a class that
encodes and decodes exactly as its own do (flexible versions, tagged fields,
nullable fields). Read from the package, never from the jar at run time.
"""
from __future__ import annotations

import sys

from kafka.protocol.api_message import ApiMessage

_HERE = sys.modules[__name__]


class ConsumerGroupHeartbeatRequest(ApiMessage, load_json=_HERE):  # type: ignore[call-arg]
    pass


class ConsumerGroupHeartbeatResponse(ApiMessage, load_json=_HERE):  # type: ignore[call-arg]
    pass


class ConsumerGroupDescribeRequest(ApiMessage, load_json=_HERE):  # type: ignore[call-arg]
    pass


class ConsumerGroupDescribeResponse(ApiMessage, load_json=_HERE):  # type: ignore[call-arg]
    @classmethod
    def json_patch(cls, json):  # type: ignore[no-untyped-def]
        # the groups' authorized operations: a set, as kafka-python's DescribeGroupsResponse has it
        groups = next(f for f in json["fields"] if f["name"] == "Groups")
        next(f for f in groups["fields"] if f["name"] == "AuthorizedOperations")["type"] = "bitfield"
        return json


class ShareGroupHeartbeatRequest(ApiMessage, load_json=_HERE):  # type: ignore[call-arg]
    pass


class ShareGroupHeartbeatResponse(ApiMessage, load_json=_HERE):  # type: ignore[call-arg]
    pass


class ShareGroupDescribeRequest(ApiMessage, load_json=_HERE):  # type: ignore[call-arg]
    pass


class ShareGroupDescribeResponse(ApiMessage, load_json=_HERE):  # type: ignore[call-arg]
    @classmethod
    def json_patch(cls, json):  # type: ignore[no-untyped-def]
        # as ConsumerGroupDescribeResponse: the authorized operations as a set
        groups = next(f for f in json["fields"] if f["name"] == "Groups")
        next(f for f in groups["fields"] if f["name"] == "AuthorizedOperations")["type"] = "bitfield"
        return json


class ShareFetchRequest(ApiMessage, load_json=_HERE):  # type: ignore[call-arg]
    pass


class ShareFetchResponse(ApiMessage, load_json=_HERE):  # type: ignore[call-arg]
    pass


class ShareAcknowledgeRequest(ApiMessage, load_json=_HERE):  # type: ignore[call-arg]
    pass


class ShareAcknowledgeResponse(ApiMessage, load_json=_HERE):  # type: ignore[call-arg]
    pass


class DescribeShareGroupOffsetsRequest(ApiMessage, load_json=_HERE):  # type: ignore[call-arg]
    pass


class DescribeShareGroupOffsetsResponse(ApiMessage, load_json=_HERE):  # type: ignore[call-arg]
    pass


class AlterShareGroupOffsetsRequest(ApiMessage, load_json=_HERE):  # type: ignore[call-arg]
    pass


class AlterShareGroupOffsetsResponse(ApiMessage, load_json=_HERE):  # type: ignore[call-arg]
    pass


class DeleteShareGroupOffsetsRequest(ApiMessage, load_json=_HERE):  # type: ignore[call-arg]
    pass


class DeleteShareGroupOffsetsResponse(ApiMessage, load_json=_HERE):  # type: ignore[call-arg]
    pass


__all__ = ["AlterShareGroupOffsetsRequest", "AlterShareGroupOffsetsResponse",
           "DeleteShareGroupOffsetsRequest", "DeleteShareGroupOffsetsResponse",
           "DescribeShareGroupOffsetsRequest", "DescribeShareGroupOffsetsResponse",
           "ConsumerGroupDescribeRequest", "ConsumerGroupDescribeResponse",
           "ConsumerGroupHeartbeatRequest", "ConsumerGroupHeartbeatResponse",
           "ShareAcknowledgeRequest", "ShareAcknowledgeResponse", "ShareFetchRequest", "ShareFetchResponse",
           "ShareGroupDescribeRequest", "ShareGroupDescribeResponse",
           "ShareGroupHeartbeatRequest", "ShareGroupHeartbeatResponse"]
