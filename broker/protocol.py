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


class FrameTooLarge(ProtocolError):
    pass


class FrameDecoder:
    """Accumulates received bytes and yields complete frames (without the size prefix).

    A declared size above ``max_frame_bytes`` raises FrameTooLarge before any of
    the frame body is buffered, so an oversized or hostile length cannot make
    the broker allocate it.
    """

    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._need: int | None = None

    def feed(self, data) -> list[bytes]:
        self._buf += data
        frames: list[bytes] = []
        buf = self._buf
        start = 0
        while True:
            if self._need is None:
                if len(buf) - start < 4:
                    break
                size = _I32.unpack_from(buf, start)[0]
                if size < 0:
                    raise ProtocolError(f"negative frame size {size}")
                if size > self.max_frame_bytes:
                    raise FrameTooLarge(
                        f"frame of {size} bytes exceeds socket.request.max.bytes={self.max_frame_bytes}")
                self._need = size
                start += 4
            if len(buf) - start < self._need:
                break
            end = start + self._need
            frames.append(bytes(buf[start:end]))
            start = end
            self._need = None
        if start:
            del buf[:start]
        return frames

    @property
    def buffered(self) -> int:
        return len(self._buf)


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


def frame_response(correlation_id: int, body: bytes, *, flexible_header: bool) -> list[bytes]:
    """Size prefix + response header; returned as parts for writelines (no body copy)."""
    head_len = 5 if flexible_header else 4
    prefix = _I32.pack(head_len + len(body)) + _I32.pack(correlation_id)
    if flexible_header:
        prefix += b"\x00"  # no tagged fields
    return [prefix, body]
