"""Kafka framing and request headers: bytes in, frames and headers out. No I/O.

A Kafka connection carries size-prefixed frames (int32 big-endian length, then
that many bytes). A request frame starts with a request header:

    v0: api_key int16, api_version int16, correlation_id int32
    v1: + client_id nullable string (int16 length)
    v2: + tagged fields (flexible versions; client_id stays a classic string)

Which header version applies depends on the API and version: flexible API
versions use v2, others v1. A response header is correlation_id (v0), plus
tagged fields (v1) for flexible versions, except ApiVersions which always uses
v0 so that a client can read it before it knows what the broker speaks.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

_I32 = struct.Struct(">i")
_HEAD = struct.Struct(">hhi")
_I16 = struct.Struct(">h")


class ProtocolError(Exception):
    """The peer sent bytes that are not a valid Kafka request: close the connection."""

    # FrameDecoder.feed: the complete frames that came before the bad input
    frames: list[bytes] = []


class FrameTooLarge(ProtocolError):
    pass


class FrameDecoder:
    """Accumulates received bytes and yields complete frames (without the size prefix).

    A declared size above ``max_frame_bytes`` raises FrameTooLarge before any of
    the frame body is buffered, so an oversized or hostile length cannot make
    the broker allocate it. A frame's buffer is allocated once its (allowed)
    size is known and filled in place, so received bytes are copied exactly
    once and the frame is handed over without another copy (as Kafka's
    NetworkReceive does).
    """

    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._head = bytearray()               # size prefix, while incomplete
        self._frame: bytearray | None = None   # frame being filled
        self._filled = 0

    def feed(self, data) -> list[bytearray]:
        frames: list[bytearray] = []
        view = memoryview(data).cast("B")
        pos, end = 0, len(view)
        while pos < end:
            frame = self._frame
            if frame is None:
                take = min(4 - len(self._head), end - pos)
                self._head += view[pos:pos + take]
                pos += take
                if len(self._head) < 4:
                    break
                size = _I32.unpack(self._head)[0]
                self._head.clear()
                if size < 0 or size > self.max_frame_bytes:
                    exc = ProtocolError(f"negative frame size {size}") if size < 0 else FrameTooLarge(
                        f"frame of {size} bytes exceeds socket.request.max.bytes={self.max_frame_bytes}")
                    exc.frames = frames
                    raise exc
                frame = self._frame = bytearray(size)
                self._filled = 0
            take = min(len(frame) - self._filled, end - pos)
            if take:
                frame[self._filled:self._filled + take] = view[pos:pos + take]
                self._filled += take
                pos += take
            if self._filled == len(frame):
                frames.append(frame)
                self._frame = None
                self._filled = 0
        return frames

    @property
    def buffered(self) -> int:
        return len(self._head) + self._filled


@dataclass(slots=True)
class RequestHeader:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body_offset: int


def peek_api(frame) -> tuple[int, int, int]:
    """api_key, api_version, correlation_id: readable from every header version."""
    if len(frame) < _HEAD.size:
        raise ProtocolError("request shorter than a request header")
    return _HEAD.unpack_from(frame, 0)


def _read_uvarint(buf, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise ProtocolError("truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 28:
            raise ProtocolError("varint too long")


def parse_request_header(frame, *, flexible: bool) -> RequestHeader:
    """Parse header v1 (or v2 when ``flexible``); skip tagged fields."""
    api_key, api_version, correlation_id = peek_api(frame)
    pos = _HEAD.size
    if pos + 2 > len(frame):
        raise ProtocolError("truncated client_id")
    n = _I16.unpack_from(frame, pos)[0]
    pos += 2
    client_id = None
    if n >= 0:
        if pos + n > len(frame):
            raise ProtocolError("truncated client_id")
        client_id = bytes(frame[pos:pos + n]).decode("utf-8", "replace")
        pos += n
    elif n != -1:
        raise ProtocolError("bad client_id length")
    if flexible:
        count, pos = _read_uvarint(frame, pos)
        for _ in range(count):
            _tag, pos = _read_uvarint(frame, pos)
            size, pos = _read_uvarint(frame, pos)
            pos += size
            if pos > len(frame):
                raise ProtocolError("truncated tagged field")
    return RequestHeader(api_key, api_version, correlation_id, client_id, pos)


_NULLABLE_KINDS = ("string", "bytes", "records")
_null_plans: dict[tuple[int, int], tuple] = {}


def _null_plan(struct, version: int) -> tuple:
    """(name, may be null?, plan for its items/fields or None) for the fields that need a look."""
    key = (id(struct), version)
    plan = _null_plans.get(key)
    if plan is None:
        out = []
        for f in struct.untagged_fields(version):
            nullable_kind = f.is_array() or f.type_str in _NULLABLE_KINDS
            may_be_null = not nullable_kind or f.nullable_for_version_q(version)
            sub = _null_plan(f, version) if (f.is_struct_array() or f.is_struct()) else ()
            if not may_be_null or sub:
                out.append((f.name, may_be_null, sub or None, f.is_struct_array()))
        plan = _null_plans[key] = (tuple(out), struct)  # keep struct alive: id() stays unique
    return plan[0]


def null_field(struct, obj, version: int) -> str | None:
    """The name of a field that decoded to null where the schema forbids null
    at ``version``, else None. The decoder accepts length -1 (or compact 0)
    everywhere; Kafka refuses such a request as unparseable, and so must we
    before any handler sees it. ``struct`` is a message class's ``_struct``."""
    return _check_nulls(_null_plan(struct, version), obj)


def _check_nulls(plan: tuple, obj) -> str | None:
    for name, may_be_null, sub, is_array in plan:
        value = getattr(obj, name, None)
        if value is None:
            if not may_be_null:
                return name
        elif sub is not None:
            for item in (value if is_array else (value,)):
                bad = _check_nulls(sub, item)
                if bad:
                    return f"{name}.{bad}"
    return None


def frame_response(correlation_id: int, body, *, flexible_header: bool) -> list:
    """Size prefix + response header, then the body's parts (one bytes object,
    or a list of buffers), for writelines: the body is never copied."""
    parts = body if isinstance(body, list) else [body]
    head_len = 5 if flexible_header else 4
    prefix = _I32.pack(head_len + sum(map(len, parts))) + _I32.pack(correlation_id)
    if flexible_header:
        prefix += b"\x00"  # no tagged fields
    return [prefix, *parts]
