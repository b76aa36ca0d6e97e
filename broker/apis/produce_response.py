"""ProduceResponse encoded by hand: the one response on the hot path.

Building kafka-python message objects for every partition of every produce
request took ~13 % of the event loop in the profile (BENCHMARKS.md). This
writes the same bytes directly, for versions 3-13; tests compare it with
kafka-python's encoder at every version.

Layout (v9+ is flexible: compact arrays/strings and empty tagged-field sections):
  responses[]: name (v3-12) | topic_id (v13), partitions[]:
      index i32, error_code i16, base_offset i64, log_append_time_ms i64,
      log_start_offset i64 (v5+), record_errors[] (v8+, always empty here),
      error_message nullable string (v8+)
  throttle_time_ms i32
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

_I32 = struct.Struct(">i")
_I16 = struct.Struct(">h")
_PART = struct.Struct(">ihqq")
_I64 = struct.Struct(">q")
FLEXIBLE_FROM = 9
TOPIC_ID_FROM = 13


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

    def encode(self, version: int) -> bytes:
        flexible = version >= FLEXIBLE_FROM
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
                if flexible:
                    out.append(b"\x00")  # partition tagged fields
            if flexible:
                out.append(b"\x00")  # topic tagged fields
        out.append(_I32.pack(0))  # throttle_time_ms
        if flexible:
            out.append(b"\x00")
        return b"".join(out)


def _count(n: int, flexible: bool) -> bytes:
    return _uvarint(n + 1) if flexible else _I32.pack(n)


def _string(s: str | None, flexible: bool) -> bytes:
    if s is None:
        return b"\x00" if flexible else _I16.pack(-1)
    raw = s.encode()
    return (_uvarint(len(raw) + 1) if flexible else _I16.pack(len(raw))) + raw
