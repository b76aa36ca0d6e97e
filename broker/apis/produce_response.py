"""ProduceResponse encoded by hand: the one response on the hot path.

Building kafka-python message objects for every partition of every produce
request took ~13 % of the event loop in the profile (BENCHMARKS.md). This
writes the same bytes directly, for versions 3-13; tests compare it with
kafka-python's encoder at every version.

Layout (v9+ is flexible: compact arrays/strings, tagged-field sections):
  responses[]: name (v3-12) | topic_id (v13), partitions[]:
      index i32, error_code i16, base_offset i64, log_append_time_ms i64,
      log_start_offset i64 (v5+), record_errors[] (v8+, always empty here),
      error_message nullable string (v8+),
      current_leader: tag 0 (v10+): leader_id i32, leader_epoch i32
  throttle_time_ms i32
  node_endpoints: tag 0 (v10+): [node_id i32, host, port i32, rack nullable]

The tagged fields (KIP-951) are written as Kafka's generated code writes them:
only when not the default (a leader of (-1, -1), no endpoints). The handler
fills them in for NOT_LEADER_OR_FOLLOWER only (leaders.py). A response without
them has ``node_endpoints`` None, and then no partition's ``current_leader`` is
even looked at: the common path costs what it did before.
"""
from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

_I32 = struct.Struct(">i")
_I16 = struct.Struct(">h")
_PART = struct.Struct(">ihqq")
_I64 = struct.Struct(">q")
FLEXIBLE_FROM = 9
LEADER_FROM = 10      # current_leader and node_endpoints (KIP-951)
TOPIC_ID_FROM = 13
# one tagged field: count 1, tag, size 9, then leader id, leader epoch, empty nested tags
_LEADER_TAG = struct.Struct(">BBBiiB")


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@dataclass(slots=True)
class PartitionResult:
    index: int
    error_code: int
    base_offset: int
    log_append_time_ms: int
    log_start_offset: int
    error_message: str | None
    current_leader: tuple[int, int] | None = None   # (leader id, epoch): v10+, tag 0


class NodeEndpoint(NamedTuple):
    """A broker named as a current leader (Produce v10+, Fetch v16+ node_endpoints)."""
    node_id: int
    host: str
    port: int
    rack: str | None


@dataclass(slots=True)
class TopicResult:
    name: str | None
    topic_id: object  # uuid.UUID for v13+
    partitions: list[PartitionResult]


@dataclass(slots=True)
class ProduceResponseBytes:
    """Quacks like a kafka-python response for the server: ``encode(version=)``."""

    topics: list[TopicResult]
    error_code: int = 0  # top level: none (read by the request metrics)
    # v10+, tag 0. None: no partition names a leader (their current_leader is not
    # read); a sequence, maybe empty: partitions may (leaders.LeaderHints).
    node_endpoints: Sequence[NodeEndpoint] | None = None

    def encode(self, version: int) -> bytes:
        flexible = version >= FLEXIBLE_FROM
        leaders = self.node_endpoints is not None and version >= LEADER_FROM
        out: list[bytes] = [_count(len(self.topics), flexible)]
        for t in self.topics:
            if version >= TOPIC_ID_FROM:
                out.append(t.topic_id.bytes if t.topic_id is not None else bytes(16))
            else:
                out.append(_string(t.name, flexible))
            out.append(_count(len(t.partitions), flexible))
            for p in t.partitions:
                out.append(_PART.pack(p.index, p.error_code, p.base_offset, p.log_append_time_ms))
                if version >= 5:
                    out.append(_I64.pack(p.log_start_offset))
                if version >= 8:
                    out.append(_count(0, flexible))  # record_errors
                    out.append(_string(p.error_message, flexible))
                if flexible:  # partition tagged fields
                    out.append(leader_tags(0, p.current_leader) if leaders and p.current_leader is not None
                               else b"\x00")
            if flexible:
                out.append(b"\x00")  # topic tagged fields
        out.append(_I32.pack(0))  # throttle_time_ms
        if flexible:
            out.append(endpoint_tags(0, self.node_endpoints) if leaders and self.node_endpoints
                       else b"\x00")
        return b"".join(out)


def leader_tags(tag: int, leader: tuple[int, int]) -> bytes:
    """A tagged-field section holding only a LeaderIdAndEpoch under ``tag``
    (empty when it is the default (-1, -1), as Kafka writes it)."""
    if leader == (-1, -1):
        return b"\x00"
    return _LEADER_TAG.pack(1, tag, 9, leader[0], leader[1], 0)


def endpoint_tags(tag: int, endpoints: Sequence[NodeEndpoint]) -> bytes:
    """A tagged-field section holding only a NodeEndpoint array under ``tag``."""
    body = bytearray(_uvarint(len(endpoints) + 1))
    for e in endpoints:
        body += _I32.pack(e.node_id)
        body += _string(e.host, True)
        body += _I32.pack(e.port)
        body += _string(e.rack, True)
        body += b"\x00"
    return b"\x01" + _uvarint(tag) + _uvarint(len(body)) + body


def _count(n: int, flexible: bool) -> bytes:
    return _uvarint(n + 1) if flexible else _I32.pack(n)


def _string(s: str | None, flexible: bool) -> bytes:
    if s is None:
        return b"\x00" if flexible else _I16.pack(-1)
    raw = s.encode()
    return (_uvarint(len(raw) + 1) if flexible else _I16.pack(len(raw))) + raw
