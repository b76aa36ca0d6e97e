"""Record batches (magic 2) as opaque bytes: read the header, check, patch.

The broker never decodes individual records on the produce or fetch path.
It reads the 61-byte batch header, verifies the CRC32C (which covers
``attributes`` to the end, so not ``baseOffset`` or ``partitionLeaderEpoch``),
and patches ``baseOffset`` and ``partitionLeaderEpoch`` in place.

Header layout (big-endian)::

    0  baseOffset int64        35 maxTimestamp int64
    8  batchLength int32       43 producerId int64
    12 partitionLeaderEpoch    51 producerEpoch int16
    16 magic int8              53 baseSequence int32
    17 crc uint32              57 recordsCount int32
    21 attributes int16        61 records...
    23 lastOffsetDelta int32
    27 baseTimestamp int64
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import crc32c

from ..errors import ErrorCode

HEADER_SIZE = 61
LOG_OVERHEAD = 12  # baseOffset + batchLength: bytes not counted in batchLength
MAGIC_OFFSET = 16
CRC_OFFSET = 17
ATTRIBUTES_OFFSET = 21
MAX_TIMESTAMP_OFFSET = 35

TIMESTAMP_TYPE_BIT = 0x08
TRANSACTIONAL_BIT = 0x10
CONTROL_BIT = 0x20
COMPRESSION_MASK = 0x07

_HEADER = struct.Struct(">qiibIhiqqqhii")
_I64 = struct.Struct(">q")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_ATTR_MAXTS_AFTER_ATTR = struct.Struct(">h")


class InvalidBatch(Exception):
    """A batch the broker refuses; carries the Kafka error code to answer."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class BatchHeader:
    """The fields of one batch header the broker needs (no record decoding)."""

    position: int         # where the batch starts in its buffer
    size: int             # total bytes including the 12-byte log overhead
    base_offset: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int
    partition_leader_epoch: int = -1   # as read; assign_offset stamps the owner's

    @property
    def last_sequence(self) -> int:
        if self.base_sequence < 0:
            return -1
        return (self.base_sequence + self.last_offset_delta) % (1 << 31)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_BIT)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_BIT)

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta


def read_header(buf, position: int = 0) -> BatchHeader:
    (base_offset, batch_length, epoch, _magic, _crc, attributes, last_delta,
     base_ts, max_ts, pid, pepoch, base_seq, count) = _HEADER.unpack_from(buf, position)
    return BatchHeader(position, batch_length + LOG_OVERHEAD, base_offset, attributes,
                       last_delta, base_ts, max_ts, pid, pepoch, base_seq, count, epoch)


def parse_batches(buf, *, verify_crc: bool = True) -> list[BatchHeader]:
    """Split a produce request's record set into checked batch headers.

    Raises InvalidBatch with CORRUPT_MESSAGE (bad CRC, truncated, bad sizes),
    UNSUPPORTED_FOR_MESSAGE_FORMAT (magic 0 or 1) or INVALID_RECORD.
    """
    view = memoryview(buf)
    end = len(view)
    if end == 0:
        raise InvalidBatch(ErrorCode.CORRUPT_MESSAGE, "empty record set")
    headers: list[BatchHeader] = []
    pos = 0
    while pos < end:
        if end - pos < MAGIC_OFFSET + 1:
            raise InvalidBatch(ErrorCode.CORRUPT_MESSAGE, "truncated batch header")
        magic = view[pos + MAGIC_OFFSET]
        if magic != 2:
            raise InvalidBatch(ErrorCode.UNSUPPORTED_FOR_MESSAGE_FORMAT,
                               f"record batch magic {magic} is not supported (only 2)")
        if end - pos < HEADER_SIZE:
            raise InvalidBatch(ErrorCode.CORRUPT_MESSAGE, "truncated batch header")
        h = read_header(view, pos)
        if h.size < HEADER_SIZE or pos + h.size > end:
            raise InvalidBatch(ErrorCode.CORRUPT_MESSAGE,
                               f"batch length {h.size} does not fit the record set")
        if verify_crc:
            stored = _U32.unpack_from(view, pos + CRC_OFFSET)[0]
            if crc32c.crc32c(view[pos + ATTRIBUTES_OFFSET:pos + h.size]) != stored:
                raise InvalidBatch(ErrorCode.CORRUPT_MESSAGE, "record batch CRC mismatch")
        if h.records_count <= 0 or h.last_offset_delta != h.records_count - 1:
            raise InvalidBatch(ErrorCode.INVALID_RECORD,
                               "recordsCount does not match lastOffsetDelta")
        if h.is_control:
            raise InvalidBatch(ErrorCode.INVALID_RECORD, "clients may not send control batches")
        headers.append(h)
        pos += h.size
    return headers


def assign_offset(buf: bytearray, header: BatchHeader, base_offset: int,
                  leader_epoch: int) -> None:
    """Patch baseOffset and partitionLeaderEpoch in place (outside the CRC)."""
    _I64.pack_into(buf, header.position, base_offset)
    _I32.pack_into(buf, header.position + 12, leader_epoch)
    header.base_offset = base_offset
    header.partition_leader_epoch = leader_epoch


def set_log_append_time(buf: bytearray, header: BatchHeader, now_ms: int) -> None:
    """Rewrite maxTimestamp as LogAppendTime and recompute the CRC."""
    pos = header.position
    attributes = header.attributes | TIMESTAMP_TYPE_BIT
    _ATTR_MAXTS_AFTER_ATTR.pack_into(buf, pos + ATTRIBUTES_OFFSET, attributes)
    _I64.pack_into(buf, pos + MAX_TIMESTAMP_OFFSET, now_ms)
    crc = crc32c.crc32c(memoryview(buf)[pos + ATTRIBUTES_OFFSET:pos + header.size])
    _U32.pack_into(buf, pos + CRC_OFFSET, crc)
    header.attributes = attributes
    header.max_timestamp = now_ms


def iter_records(batch: bytes):
    """Decode the records of one stored batch (for timestamp look-ups only)."""
    from kafka.record.default_records import DefaultRecordBatch

    return iter(DefaultRecordBatch(bytes(batch)))
