"""A tiny synchronous raw Kafka client for tests: one socket, one request at a time.

It speaks exactly what the test asks for (a request object at a version, or
raw bytes) and hands back what the broker sent, so tests can check the
broker's answers to malformed, pipelined or unusual traffic that real client
libraries never produce.

    with WireClient(broker.port) as c:
        resp = c.request(MetadataRequest(topics=None), version=12)
        c.send_raw(b"\\x00\\x00\\x00\\x02\\x00")
        assert c.closed_by_peer()
"""
from __future__ import annotations

import socket
import struct
import time
from typing import Any

from kafka.protocol.api_header import ResponseClassRegistry
from kafka.protocol.api_key import ApiKey
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords

_I32 = struct.Struct(">i")


class ConnectionClosed(Exception):
    """The broker closed the connection (EOF or reset) before a full frame arrived."""


class WireClient:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0,
                 client_id: str = "wire-test") -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client_id = client_id
        self._next_correlation = 1
        # correlation id -> (response class at its version, flexible response header?)
        self._expected: dict[int, tuple[type, bool]] = {}

    # ------------------------------------------------------------------ life
    def __enter__(self) -> "WireClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # -------------------------------------------------------------- requests
    def encode(self, request: Any, version: int, correlation_id: int | None = None) -> tuple[bytes, int]:
        """A complete frame for ``request`` at ``version``, and its correlation id."""
        if correlation_id is None:
            correlation_id = self._next_correlation
            self._next_correlation += 1
        return encode_request(request, version, correlation_id, self.client_id), correlation_id

    def _expect(self, request: Any, version: int, cid: int) -> None:
        if request.expect_response():
            resp_cls = response_class(request.API_KEY, version)
            flexible = (request.API_KEY != ApiKey.ApiVersions
                        and request.flexible_version_q(version))
            self._expected[cid] = (resp_cls, flexible)

    def send(self, request: Any, version: int, correlation_id: int | None = None) -> int:
        """Send ``request`` at ``version``; returns its correlation id."""
        frame, cid = self.encode(request, version, correlation_id)
        self._expect(request, version, cid)
        self.sock.sendall(frame)
        return cid

    def pipeline(self, requests: list[tuple[Any, int]], trailing: bytes = b"") -> list[int]:
        """Send every (request, version), then ``trailing`` raw bytes, in one write
        before reading anything; returns the correlation ids."""
        blob = bytearray()
        cids = []
        for request, version in requests:
            frame, cid = self.encode(request, version)
            self._expect(request, version, cid)
            blob += frame
            cids.append(cid)
        self.sock.sendall(blob + trailing)
        return cids

    def receive(self) -> tuple[int, Any]:
        """Read one response frame; returns (correlation id, decoded response)."""
        frame = self.read_frame()
        cid = _I32.unpack_from(frame, 0)[0]
        if cid not in self._expected:
            raise AssertionError(f"response with unexpected correlation id {cid}")
        resp_cls, flexible = self._expected.pop(cid)
        pos = 4
        if flexible:
            pos = _skip_tagged_fields(frame, pos)
        return cid, resp_cls.decode(frame[pos:], version=resp_cls._class_version)

    def request(self, request: Any, version: int) -> Any:
        """Send and wait for the matching response."""
        cid = self.send(request, version)
        got, resp = self.receive()
        assert got == cid, f"correlation id {got} != {cid}"
        return resp

    # ------------------------------------------------------------- raw bytes
    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_frame(self) -> bytes:
        """One size-prefixed frame, without the size; ConnectionClosed on EOF/reset."""
        size = _I32.unpack(self._read_exact(4))[0]
        return self._read_exact(size)

    def _read_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except ConnectionResetError as exc:
                raise ConnectionClosed(str(exc)) from exc
            if not chunk:
                raise ConnectionClosed(f"EOF after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True once the broker closes the connection (EOF or RST) within ``timeout``.

        Any bytes the broker sends instead are a failure: it should answer a
        request it cannot parse with nothing but a close.
        """
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not data:
                return True
            raise AssertionError(f"expected the broker to close, got {len(data)} bytes: {data[:64]!r}")


def encode_request(request: Any, version: int, correlation_id: int, client_id: str = "wire-test") -> bytes:
    """A complete frame (size, request header, body) for ``request`` at ``version``."""
    request.API_VERSION = version
    request.with_header(correlation_id=correlation_id, client_id=client_id)
    return bytes(request.encode(header=True, framed=True))


def response_class(api_key: int, version: int) -> type:
    """kafka-python's response message class for an API key, at ``version``."""
    return ResponseClassRegistry._response_class_registry[api_key][version]


def response_header_size(api_key: int, version: int, request_cls: Any) -> int:
    """Bytes of response header: correlation id, plus the tag byte of flexible
    versions (never for ApiVersions, whose response header is always v0)."""
    return 5 if api_key != ApiKey.ApiVersions and request_cls.flexible_version_q(version) else 4


def _skip_tagged_fields(buf: bytes, pos: int) -> int:
    count, pos = _read_uvarint(buf, pos)
    for _ in range(count):
        _tag, pos = _read_uvarint(buf, pos)
        size, pos = _read_uvarint(buf, pos)
        pos += size
    return pos


def _read_uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


# ---------------------------------------------------------------- record batches
def make_batch(values: list[bytes], *, producer_id: int = -1, producer_epoch: int = -1,
               base_sequence: int = -1, timestamp_ms: int | None = None) -> bytes:
    """One uncompressed magic-2 batch holding ``values`` (keys None)."""
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                        producer_id=producer_id, producer_epoch=producer_epoch,
                                        base_sequence=base_sequence, batch_size=1 << 20)
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    for i, v in enumerate(values):
        builder.append(i, timestamp=ts, key=None, value=v, headers=[])
    return bytes(builder.build())


def decode_records(data: bytes | None) -> list[tuple[int, bytes | None, bytes | None]]:
    """(offset, key, value) of every record in a fetched record set."""
    out: list[tuple[int, bytes | None, bytes | None]] = []
    if not data:
        return out
    records = MemoryRecords(bytes(data))
    while (batch := records.next_batch()) is not None:
        for rec in batch:
            out.append((rec.offset, rec.key, rec.value))
    return out
