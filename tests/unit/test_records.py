"""broker.records: batch header parsing, validation and in-place patching (magic 2)."""
from __future__ import annotations

import struct

import crc32c
import pytest
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.legacy_records import LegacyRecordBatchBuilder

from broker.errors import ErrorCode
from broker.log.records import (
    ATTRIBUTES_OFFSET,
    CONTROL_BIT,
    CRC_OFFSET,
    HEADER_SIZE,
    InvalidBatch,
    assign_offset,
    iter_records,
    parse_batches,
    read_header,
    set_log_append_time,
)

CODEC_GZIP, CODEC_LZ4, CODEC_ZSTD = 1, 3, 4


def build(n: int = 3, *, codec: int = 0, pid: int = -1, epoch: int = -1, seq: int = -1,
          ts0: int = 1_700_000_000_000, value_size: int = 10) -> bytearray:
    b = DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=False,
                                  producer_id=pid, producer_epoch=epoch, base_sequence=seq,
                                  batch_size=1 << 20)
    for i in range(n):
        b.append(i, timestamp=ts0 + i, key=b"key-%d" % i, value=(b"v%d-" % i).ljust(value_size, b"x"),
                 headers=[])
    return b.build()


def values(buf) -> list[bytes]:
    return [r.value for r in DefaultRecordBatch(bytes(buf))]


def recompute_crc(buf: bytearray, pos: int = 0) -> None:
    size = struct.unpack_from(">i", buf, pos + 8)[0] + 12
    crc = crc32c.crc32c(bytes(buf[pos + ATTRIBUTES_OFFSET:pos + size]))
    struct.pack_into(">I", buf, pos + CRC_OFFSET, crc)


def expect_invalid(buf, code: ErrorCode) -> InvalidBatch:
    with pytest.raises(InvalidBatch) as ei:
        parse_batches(buf)
    assert ei.value.code == code, str(ei.value)
    return ei.value


# ----------------------------------------------------------------- parsing
def test_parse_single_uncompressed_batch():
    buf = build(5)
    [h] = parse_batches(buf)
    assert h.position == 0
    assert h.size == len(buf)
    assert h.records_count == 5
    assert h.last_offset_delta == 4
    assert h.base_timestamp == 1_700_000_000_000
    assert h.max_timestamp == 1_700_000_000_004
    assert h.attributes & 0x07 == 0
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (-1, -1, -1)
    assert h.last_sequence == -1
    assert not h.is_transactional and not h.is_control
    assert h.last_offset == h.base_offset + 4


@pytest.mark.parametrize("codec", [CODEC_GZIP, CODEC_LZ4, CODEC_ZSTD])
def test_parse_compressed_batch(codec):
    buf = build(50, codec=codec, value_size=200)
    assert len(buf) < 50 * 200  # really compressed
    [h] = parse_batches(buf)
    assert h.attributes & 0x07 == codec
    assert h.records_count == 50 and h.last_offset_delta == 49
    assert h.size == len(buf)
    # The broker never decompresses on the produce path, but the bytes stay a valid batch.
    assert [r.value[:4] for r in iter_records(bytes(buf))][:3] == [b"v0-x", b"v1-x", b"v2-x"]


def test_parse_several_batches_in_one_record_set():
    a, b, c = build(1), build(4, codec=CODEC_GZIP), build(2)
    buf = a + b + c
    hs = parse_batches(buf)
    assert [h.position for h in hs] == [0, len(a), len(a) + len(b)]
    assert [h.size for h in hs] == [len(a), len(b), len(c)]
    assert [h.records_count for h in hs] == [1, 4, 2]


def test_idempotent_producer_fields_and_last_sequence():
    buf = build(3, pid=42, epoch=7, seq=10)
    [h] = parse_batches(buf)
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (42, 7, 10)
    assert h.last_sequence == 12
    wrap = build(3, pid=42, epoch=7, seq=2**31 - 2)
    [h] = parse_batches(wrap)
    assert h.last_sequence == 0  # sequences wrap at 2**31


def test_base_offset_and_leader_epoch_are_outside_the_crc():
    buf = build(2)
    struct.pack_into(">q", buf, 0, 123456)
    struct.pack_into(">i", buf, 12, 99)
    [h] = parse_batches(buf)
    assert h.base_offset == 123456


# ------------------------------------------------------------- rejections
@pytest.mark.parametrize("where", ["attributes", "max_timestamp", "producer_id", "records", "last_byte"])
def test_crc_mismatch_is_corrupt_message(where):
    buf = build(3)
    pos = {"attributes": ATTRIBUTES_OFFSET + 1, "max_timestamp": 40, "producer_id": 50,
           "records": HEADER_SIZE + 3, "last_byte": len(buf) - 1}[where]
    buf[pos] ^= 0x01
    err = expect_invalid(buf, ErrorCode.CORRUPT_MESSAGE)
    assert "CRC" in str(err)


def test_crc_mismatch_in_compressed_batch():
    buf = build(20, codec=CODEC_ZSTD, value_size=100)
    buf[HEADER_SIZE + 5] ^= 0x40
    expect_invalid(buf, ErrorCode.CORRUPT_MESSAGE)


def test_crc_mismatch_in_second_batch_rejects_the_record_set():
    good, bad = build(2), build(2)
    bad[-1] ^= 0xFF
    expect_invalid(good + bad, ErrorCode.CORRUPT_MESSAGE)


def test_verify_crc_false_skips_the_check():
    buf = build(3)
    buf[-1] ^= 0xFF
    [h] = parse_batches(buf, verify_crc=False)
    assert h.records_count == 3


@pytest.mark.parametrize("magic", [0, 1])
def test_old_magic_is_unsupported_for_message_format(magic):
    b = LegacyRecordBatchBuilder(magic=magic, compression_type=0, batch_size=1 << 20)
    for i in range(3):
        b.append(i, timestamp=1_700_000_000_000 if magic else None, key=b"k", value=b"v%d" % i)
    buf = b.build()
    assert buf[16] == magic  # legacy messages keep magic at the same byte as v2 batches
    expect_invalid(buf, ErrorCode.UNSUPPORTED_FOR_MESSAGE_FORMAT)


def test_magic_1_patched_into_a_v2_batch_is_unsupported():
    buf = build(2)
    buf[16] = 1
    expect_invalid(buf, ErrorCode.UNSUPPORTED_FOR_MESSAGE_FORMAT)


@pytest.mark.parametrize("keep", [1, 5, 16, 17, 30, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 1, -1])
def test_truncated_batch_is_corrupt_message(keep):
    buf = build(3)
    cut = buf[:keep] if keep >= 0 else buf[:-1]
    expect_invalid(cut, ErrorCode.CORRUPT_MESSAGE)


def test_truncated_second_batch_is_corrupt_message():
    buf = build(2) + build(2)[:40]
    expect_invalid(buf, ErrorCode.CORRUPT_MESSAGE)


def test_empty_record_set_is_corrupt_message():
    expect_invalid(b"", ErrorCode.CORRUPT_MESSAGE)


def test_batch_length_smaller_than_a_header_is_corrupt_message():
    buf = build(2)
    struct.pack_into(">i", buf, 8, 10)
    expect_invalid(buf, ErrorCode.CORRUPT_MESSAGE)


def test_records_count_disagreeing_with_last_offset_delta_is_invalid_record():
    buf = build(3)
    struct.pack_into(">i", buf, 57, 5)
    recompute_crc(buf)
    expect_invalid(buf, ErrorCode.INVALID_RECORD)


def test_control_batch_from_a_client_is_invalid_record():
    buf = build(1)
    attrs = struct.unpack_from(">h", buf, ATTRIBUTES_OFFSET)[0]
    struct.pack_into(">h", buf, ATTRIBUTES_OFFSET, attrs | CONTROL_BIT)
    recompute_crc(buf)
    expect_invalid(buf, ErrorCode.INVALID_RECORD)


# ---------------------------------------------------------------- patching
@pytest.mark.parametrize("codec", [0, CODEC_GZIP, CODEC_LZ4])
def test_assign_offset_keeps_crc_valid(codec):
    first, second = build(3, codec=codec), build(4, codec=codec)
    buf = bytearray(first + second)
    hs = parse_batches(buf)
    assign_offset(buf, hs[0], 1000, 5)
    assign_offset(buf, hs[1], 1003, 5)
    assert hs[0].base_offset == 1000 and hs[1].base_offset == 1003
    b1 = DefaultRecordBatch(bytes(buf[:len(first)]))
    b2 = DefaultRecordBatch(bytes(buf[len(first):]))
    assert b1.validate_crc() and b2.validate_crc()
    assert b1.base_offset == 1000 and b1.leader_epoch == 5
    assert b2.base_offset == 1003 and b2.leader_epoch == 5
    assert [r.offset for r in b1] == [1000, 1001, 1002]
    assert [r.offset for r in b2] == [1003, 1004, 1005, 1006]
    # Still passes the broker's own check, and the rest of the header is unchanged.
    again = parse_batches(buf)
    assert [h.base_offset for h in again] == [1000, 1003]
    assert [h.records_count for h in again] == [3, 4]


def test_set_log_append_time_recomputes_a_valid_crc():
    buf = build(3, pid=9, epoch=1, seq=0)
    [h] = parse_batches(buf)
    assign_offset(buf, h, 77, 0)
    now = 1_800_000_000_123
    set_log_append_time(buf, h, now)
    assert h.max_timestamp == now
    assert h.attributes & 0x08
    batch = DefaultRecordBatch(bytes(buf))
    assert batch.validate_crc()
    assert batch.timestamp_type == 1  # LogAppendTime
    assert batch.max_timestamp == now
    assert batch.base_offset == 77
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (9, 1, 0)
    # Consumers see the append time as every record's timestamp.
    assert [r.timestamp for r in batch] == [now] * 3
    [h2] = parse_batches(buf)
    assert h2.max_timestamp == now and h2.attributes == h.attributes


def test_set_log_append_time_on_second_batch_leaves_first_untouched():
    a, b = build(2), build(2, codec=CODEC_GZIP)
    buf = bytearray(a + b)
    hs = parse_batches(buf)
    set_log_append_time(buf, hs[1], 5)
    assert bytes(buf[:len(a)]) == bytes(a)
    assert DefaultRecordBatch(bytes(buf[len(a):])).validate_crc()
    assert parse_batches(buf)[1].max_timestamp == 5


def test_read_header_at_position():
    a, b = build(1), build(2, pid=3, epoch=0, seq=5)
    buf = a + b
    h = read_header(buf, len(a))
    assert h.position == len(a) and h.size == len(b)
    assert (h.producer_id, h.base_sequence, h.records_count) == (3, 5, 2)


def test_iter_records_decodes_values():
    buf = build(3)
    assert [r.value for r in iter_records(bytes(buf))] == values(buf)
