"""The consumer's embedded protocol (Kafka's ConsumerProtocol): the bytes a
classic consumer puts in JoinGroup (ConsumerProtocolSubscription: topics,
owned partitions, rack) and gets back in SyncGroup (ConsumerProtocolAssignment).

The coordinator reads them only where groups migrate between the classic and
the KIP-848 protocols (``classic_members.py``): there the coordinator itself
assigns classic members, so it must understand what they subscribe to and own,
and write their assignments as the leader's assignor would. kafka-python's
schemas do the encoding; versions above the highest known read as it (as
Kafka's ConsumerProtocol does).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from kafka.protocol.consumer.metadata import ConsumerProtocolAssignment, ConsumerProtocolSubscription

PROTOCOL_TYPE = "consumer"
MAX_VERSION = 3


class MalformedProtocol(ValueError):
    """The embedded protocol's bytes cannot be read (Kafka's SchemaException)."""


@dataclass(slots=True)
class Subscription:
    version: int
    topics: list[str]
    owned: dict[str, set[int]] = field(default_factory=dict)
    rack_id: str | None = None


def version_of(data: bytes) -> int:
    """The version a member speaks (the first i16 of its metadata), capped at the highest known."""
    if len(data) < 2:
        return 0
    return max(0, min(int.from_bytes(data[:2], "big", signed=True), MAX_VERSION))


def parse_subscription(data: bytes) -> Subscription:
    try:
        s = ConsumerProtocolSubscription.decode(bytes(data))
    except Exception as e:
        raise MalformedProtocol(str(e)) from None
    owned: dict[str, set[int]] = {}
    for tp in getattr(s, "owned_partitions", None) or ():
        owned.setdefault(tp.topic, set()).update(tp.partitions)
    return Subscription(s.version, list(s.topics or ()), owned, getattr(s, "rack_id", None))


def parse_assignment(data: bytes) -> tuple[dict[str, set[int]], bytes | None]:
    """(partitions by topic name, user data); empty bytes are an empty assignment."""
    if not data:
        return {}, None
    try:
        a = ConsumerProtocolAssignment.decode(bytes(data))
    except Exception as e:
        raise MalformedProtocol(str(e)) from None
    out: dict[str, set[int]] = {}
    for tp in a.assigned_partitions or ():
        out.setdefault(tp.topic, set()).update(tp.partitions)
    return out, (bytes(a.user_data) if a.user_data else None)


def encode_assignment(partitions: Mapping[str, Iterable[int]], version: int) -> bytes:
    v = max(0, min(version, MAX_VERSION))
    TP = ConsumerProtocolAssignment.TopicPartition
    return ConsumerProtocolAssignment(
        version=v, assigned_partitions=[TP(topic=t, partitions=sorted(ps)) for t, ps in sorted(partitions.items())
                                        if ps],
        user_data=None).encode()
