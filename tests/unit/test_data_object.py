"""Data objects (objectstore/data_object.py): build, index parsing, ranged chunk reads,
batch location, corruption. Batches are real Kafka v2 record batches built with
kafka-python; stores are the filesystem backend and a real MinIO (no mocks)."""
from __future__ import annotations

import struct
import uuid

import crc32c
import pytest
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from minio_server import open_test_store

from objectstore import CorruptObject, NotFound
from objectstore import data_object as do

TS0 = 1_700_000_000_000


@pytest.fixture(params=["filesystem", pytest.param("s3", marks=pytest.mark.minio)])
async def store(request, tmp_path):
    s = open_test_store(request, tmp_path)
    yield s
    await s.close()


def kafka_batch(base_offset: int, n: int, *, ts: int = TS0, codec: int = 0,
                value_size: int = 20) -> bytes:
    """A real magic-2 batch of n records, with baseOffset patched as the broker does."""
    b = DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=False,
                                  producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                  batch_size=1 << 20)
    for i in range(n):
        b.append(i, timestamp=ts + i, key=b"k%d" % i,
                 value=(b"v%d-" % (base_offset + i)).ljust(value_size, b"x"), headers=[])
    buf = b.build()
    struct.pack_into(">q", buf, 0, base_offset)
    return bytes(buf)


def batches_for(first: int, sizes: list[int], *, ts: int = TS0) -> list[bytes]:
    out, off = [], first
    for n in sizes:
        out.append(kafka_batch(off, n, ts=ts + off))
        off += n
    return out


TOPIC_A = uuid.UUID(int=0xA).bytes
TOPIC_B = uuid.UUID(int=0xB).bytes


def test_round_trip_several_partitions_with_an_empty_one():
    a0 = batches_for(0, [3, 1, 5])                  # offsets 0..8
    a1 = batches_for(100, [2])                      # 100..101
    b0 = batches_for(7, [4, 4])                     # 7..14
    chunks = [
        (do.partition_key(TOPIC_B, 0), [memoryview(b) for b in b0]),
        (do.partition_key(TOPIC_A, 1), a1),
        (do.partition_key(TOPIC_A, 2), []),         # nothing pending: left out
        (do.partition_key(TOPIC_A, 3), [b"", memoryview(b"")]),
        (do.partition_key(TOPIC_A, 0), [bytearray(b"".join(a0[:2])), a0[2]]),
    ]
    body, refs = do.build(chunks)

    assert [(r.topic_id, r.partition) for r in refs] == [(TOPIC_A, 0), (TOPIC_A, 1), (TOPIC_B, 0)]
    assert [(r.first_offset, r.last_offset) for r in refs] == [(0, 8), (100, 101), (7, 14)]
    assert refs[0].max_timestamp == TS0 + 6 + 2      # last batch of a0: base 4, 3rd record
    assert refs[0].position == 0 and body[:refs[0].length] == b"".join(a0)
    assert body[refs[1].position:refs[1].end] == b"".join(a1)
    assert body[refs[2].position:refs[2].end] == b"".join(b0)
    for r in refs:
        assert r.crc == crc32c.crc32c(body[r.position:r.end])
    assert body.endswith(b"SLDO\x00\x00\x00\x01")

    index = do.parse_index(body)
    assert isinstance(index, do.DataObjectIndex)
    assert list(index) == refs and index.object_size == len(body)
    assert index.get(do.partition_key(TOPIC_A, 1)) == refs[1]
    assert index.get(do.partition_key(TOPIC_A, 2)) is None
    # the records inside are intact Kafka batches
    chunk = body[refs[2].position:refs[2].end]
    vals = [r.value for s in do.iter_batches(chunk)
            for r in DefaultRecordBatch(chunk[s.position:s.end])]
    assert vals[0].startswith(b"v7-") and vals[-1].startswith(b"v14-") and len(vals) == 8


async def test_store_round_trip_and_ranged_chunk_reads(store):
    keys = do.ObjectKeys(broker_id=3)
    parts = {p: batches_for(p * 1000, [10, 20, 30], ts=TS0 + p) for p in range(5)}
    body, refs = do.build({do.partition_key(TOPIC_A, p): bs for p, bs in parts.items()})
    key = keys.next()
    await store.put(key, body)

    index = await do.read_footer(store, key)
    assert list(index) == refs
    for ref in refs:
        data = await do.read_chunk(store, key, ref)
        assert data == b"".join(parts[ref.partition])
        span = do.find_batch(data, ref.first_offset + 15)
        assert (span.base_offset, span.last_offset) == (ref.first_offset + 10, ref.first_offset + 29)
        # the batch found is real: its records carry the offsets asked for
        batch = DefaultRecordBatch(data[span.position:span.end])
        assert [r.offset for r in batch][5] == ref.first_offset + 15


def test_find_batch_edges():
    chunk = b"".join(batches_for(50, [1, 4, 2]))      # 50 | 51..54 | 55..56
    spans = list(do.iter_batches(chunk))
    assert [(s.base_offset, s.last_offset) for s in spans] == [(50, 50), (51, 54), (55, 56)]
    assert spans[0].position == 0 and spans[-1].end == len(chunk)
    assert do.find_batch(chunk, 0).base_offset == 50           # below: the first batch
    assert do.find_batch(chunk, 50).base_offset == 50
    assert do.find_batch(chunk, 51).base_offset == 51
    assert do.find_batch(chunk, 54).base_offset == 51
    assert do.find_batch(chunk, 56).base_offset == 55
    assert do.find_batch(chunk, 57) is None
    assert do.find_batch(b"", 0) is None
    # a gap (as after a merge): the next batch
    gappy = kafka_batch(10, 2) + kafka_batch(20, 2)
    assert do.find_batch(gappy, 15).base_offset == 20


def test_compressed_batches_are_opaque():
    b = DefaultRecordBatchBuilder(magic=2, compression_type=1, is_transactional=False,
                                  producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                  batch_size=1 << 20)
    for i in range(50):
        b.append(i, timestamp=TS0 + i, key=None, value=b"z" * 100, headers=[])
    gz = b.build()
    struct.pack_into(">q", gz, 0, 1000)
    body, [ref] = do.build([(do.partition_key(TOPIC_A, 0), [gz])])
    assert (ref.first_offset, ref.last_offset, ref.max_timestamp) == (1000, 1049, TS0 + 49)


def test_index_larger_than_the_first_tail_read():
    n = 1500                                        # 4 + 1500 * 64 bytes > 64 KiB
    one = kafka_batch(0, 1)
    body, refs = do.build((do.partition_key(TOPIC_A, p), [one]) for p in range(n))
    index_len = 4 + n * do.ENTRY_SIZE
    assert index_len > do.DEFAULT_TAIL_READ
    result = do.parse_index(body[-do.DEFAULT_TAIL_READ:])
    assert result == do.NeedMore(index_len + do.FOOTER_SIZE)
    assert do.parse_index(body[-8:]) == do.NeedMore(do.FOOTER_SIZE)
    index = do.parse_index(body[-result.tail_bytes:])
    assert len(index) == n and index.object_size == len(body)
    assert index.get(do.partition_key(TOPIC_A, 777)).position == 777 * len(one)


async def test_read_footer_fetches_the_rest_of_a_large_index(store):
    one = kafka_batch(0, 1)
    body, refs = do.build((do.partition_key(TOPIC_A, p), [one]) for p in range(1200))
    await store.put("data/1/big.sldo", body)
    index = await do.read_footer(store, "data/1/big.sldo")
    assert list(index) == refs
    small = await do.read_footer(store, "data/1/big.sldo", object_size=len(body), first_read=100)
    assert list(small) == refs
    # a first read larger than the object reads it whole
    body2, refs2 = do.build([(do.partition_key(TOPIC_B, 0), [one])])
    await store.put("data/1/small.sldo", body2)
    assert list(await do.read_footer(store, "data/1/small.sldo")) == refs2
    with pytest.raises(NotFound):
        await do.read_footer(store, "data/1/missing.sldo")


def _object() -> tuple[bytes, list[do.ChunkRef]]:
    return do.build([(do.partition_key(TOPIC_A, p), batches_for(0, [2, 3])) for p in range(3)])


def test_corrupt_footer_and_index_raise_clear_errors():
    body, refs = _object()
    index_len = 4 + 3 * do.ENTRY_SIZE
    cases = {
        "not a data object": body[:-8] + b"PARQUET1",
        "version 2 is not supported": body[:-4] + struct.pack(">I", 2),
        "index crc32c mismatch": body[:-do.FOOTER_SIZE - 5] + b"\xff" + body[-do.FOOTER_SIZE - 4:],
        "bad index length": body[:-16] + struct.pack(">I", 7) + body[-12:],
    }
    for expected, bad in cases.items():
        with pytest.raises(CorruptObject, match=expected):
            do.parse_index(bad)
    # index length beyond the object
    bad = body[:-16] + struct.pack(">I", 4 + 10_000 * 64) + body[-12:]
    with pytest.raises(CorruptObject, match="in an object of"):
        do.parse_index(bad, object_size=len(bad))
    # too small to be a data object at all
    with pytest.raises(CorruptObject, match="too small"):
        do.parse_index(b"SLDO", object_size=4)
    # a valid index whose chunks do not add up to the object's size (bytes cut off the front)
    with pytest.raises(CorruptObject, match="index describes"):
        do.parse_index(body[10:], object_size=len(body) - 10)
    # entries re-signed with a correct crc but describing a hole between chunks
    index = bytearray(body[-do.FOOTER_SIZE - index_len:-do.FOOTER_SIZE])
    struct.pack_into(">Q", index, 4 + do.ENTRY_SIZE + 44, refs[1].position + 1)
    forged = body[:refs[-1].end] + bytes(index) + struct.pack(
        ">II8s", index_len, crc32c.crc32c(index), do.TRAILER)
    with pytest.raises(CorruptObject, match="index entry 1"):
        do.parse_index(forged)


async def test_corrupt_chunk_is_detected_on_read(store):
    body, refs = _object()
    flipped = bytearray(body)
    flipped[refs[1].position + 30] ^= 0x01
    await store.put("data/1/flipped.sldo", bytes(flipped))
    index = await do.read_footer(store, "data/1/flipped.sldo")     # the index itself is fine
    assert await do.read_chunk(store, "data/1/flipped.sldo", index.chunks[0]) == \
        body[refs[0].position:refs[0].end]
    with pytest.raises(CorruptObject, match="crc32c mismatch"):
        await do.read_chunk(store, "data/1/flipped.sldo", index.chunks[1])
    # truncated object: the footer is gone
    await store.put("data/1/cut.sldo", body[:-3])
    with pytest.raises(CorruptObject):
        await do.read_footer(store, "data/1/cut.sldo")


def test_truncated_or_malformed_batches():
    good = kafka_batch(0, 3)
    with pytest.raises(CorruptObject, match="truncated batch header"):
        list(do.iter_batches(good + good[:30]))
    with pytest.raises(CorruptObject, match="batchLength"):
        list(do.iter_batches(good[:-1]))
    old_magic = bytearray(good)
    old_magic[16] = 1
    with pytest.raises(CorruptObject, match="magic 1"):
        list(do.iter_batches(old_magic))
    # build refuses the same, as a caller error
    with pytest.raises(ValueError, match="batchLength"):
        do.build([(do.partition_key(TOPIC_A, 0), [good[:-1]])])


def test_build_refuses_bad_input():
    pk = do.partition_key(TOPIC_A, 0)
    with pytest.raises(ValueError, match="no record batches"):
        do.build([])
    with pytest.raises(ValueError, match="no record batches"):
        do.build([(pk, [])])
    with pytest.raises(ValueError, match="given twice"):
        do.build([(pk, [kafka_batch(0, 1)]), (pk, [kafka_batch(1, 1)])])
    with pytest.raises(ValueError, match="does not follow"):
        do.build([(pk, [kafka_batch(5, 2), kafka_batch(6, 1)])])
    with pytest.raises(ValueError, match="20 bytes"):
        do.build([(b"short", [kafka_batch(0, 1)])])
    with pytest.raises(ValueError, match="16 bytes"):
        do.partition_key(b"x", 0)


def test_object_keys_are_unique_and_sort_by_sequence():
    keys = do.ObjectKeys(broker_id=7)
    made = [keys.next() for _ in range(1000)]
    assert len(set(made)) == 1000
    assert made == sorted(made)                      # list order == creation order
    broker, seq = do.parse_object_key(made[0])
    assert broker == 7 and made[0] == f"data/7/{seq:020d}-{made[0][-37:-5]}.sldo"
    assert [do.parse_object_key(k)[1] for k in made] == sorted({do.parse_object_key(k)[1] for k in made})
    assert do.object_key(1, 42, "ab" * 16) == f"data/1/{42:020d}-{'ab' * 16}.sldo"
    for bad in ("data/7/123-abc.sldo", "manifests/x/0.json", made[0][:-1], "data/x/" + made[0][7:]):
        with pytest.raises(ValueError):
            do.parse_object_key(bad)


def test_batches_and_crc_of_a_chunk_in_pieces_match_the_joined_chunk():
    """A segment read as block views (never joined) indexes and verifies the
    same as the joined bytes, wherever the pieces split it, batch headers included."""
    chunk = b"".join(batches_for(0, [3 + i % 4 for i in range(12)]))
    whole = [(s.position, s.size, s.base_offset, s.last_offset, s.max_timestamp)
             for s in do.iter_batches(chunk)]
    assert len(whole) == 12
    ref = do.ChunkRef(b"p" * 20, whole[0][2], whole[-1][3], max(w[4] for w in whole), 0, len(chunk),
                      crc32c.crc32c(chunk))
    for cuts in ([1], [30], [61], [62], [len(chunk) // 2], [5, 200, 201, len(chunk) - 3],
                 list(range(7, len(chunk), 97))):
        bounds = [0, *cuts, len(chunk)]
        parts = [memoryview(chunk)[a:b] for a, b in zip(bounds, bounds[1:])]
        got = [(s.position, s.size, s.base_offset, s.last_offset, s.max_timestamp)
               for s in do.iter_batches(parts)]
        assert got == whole, cuts
        do.verify_chunk(parts, ref)
    with pytest.raises(do.CorruptObject):
        do.verify_chunk([chunk[:10], chunk[11:]], ref)
    with pytest.raises(do.CorruptObject):
        list(do.iter_batches([chunk[:100], chunk[100:-1]]))
