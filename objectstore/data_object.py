"""Data objects: one upload packs the pending record batches of many partitions.

An uploader gathers, for every partition it owns, the durable record batches
that are not uploaded yet, and writes them as ONE object, grouped by
partition, with an index at the end (format in docs/storage.md)::

    [chunk 0][chunk 1]...[chunk n-1][index][u32 index_len][u32 crc32c(index)]["SLDO" u32 version]

    index  = u32 count, then count entries of 64 bytes, in chunk order:
             partition_key 20s (topic id 16 bytes + i32 partition)
             first_offset i64, last_offset i64, max_timestamp i64,
             position u64, length u64, crc32c(chunk) u32

Chunks are packed from byte 0 in index order, sorted by partition key, with
no gap, so the object's size is implied by the index (and checked). A chunk
is whole Kafka record batches (magic 2) as the broker stored them, offsets
assigned; this module reads only their 61-byte headers.

Writing::

    keys = ObjectKeys(broker_id)
    body, refs = build([(partition_key(tid, 0), [batch, batch]), (partition_key(tid, 1), [buf])])
    key = keys.next()
    await store.put(key, body)                 # refs: where each partition's chunk is

Reading (a manifest already holds each chunk's position, length and crc)::

    data = await read_chunk(store, key, ref)   # one ranged GET, crc32c checked
    span = find_batch(data, offset)            # the batch holding offset

Reading the index itself (recovery, garbage collection, tools)::

    index = await read_footer(store, key)      # HEAD + one ranged GET of the tail
                                               # (+ one more if the index is bigger)

Errors: bytes that do not match the format raise CorruptObject (from
objectstore.base); bad arguments to ``build`` raise ValueError.
"""
from __future__ import annotations

import struct
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, Union, cast

import crc32c

from .base import CorruptObject, ObjectStore

Buffer = Union[bytes, bytearray, memoryview]

MAGIC = b"SLDO"
VERSION = 1
TRAILER = MAGIC + struct.pack(">I", VERSION)      # b"SLDO\x00\x00\x00\x01"
FOOTER = struct.Struct(">II8s")                   # index_len, crc32c(index), magic+version
FOOTER_SIZE = FOOTER.size                         # 16
INDEX_COUNT = struct.Struct(">I")
ENTRY = struct.Struct(">20sqqqQQI")               # see the module docstring
ENTRY_SIZE = ENTRY.size                           # 64
PARTITION_KEY = struct.Struct(">16si")
PARTITION_KEY_SIZE = PARTITION_KEY.size           # 20
DEFAULT_TAIL_READ = 64 * 1024                     # first ranged GET of read_footer

# Kafka record batch header (magic 2): the fields read here.
BATCH_HEADER_SIZE = 61
LOG_OVERHEAD = 12                                 # baseOffset + batchLength
_BATCH_PREFIX = struct.Struct(">qi")              # baseOffset @0, batchLength @8
_MAGIC_AT = 16
_LAST_OFFSET_DELTA = struct.Struct(">i")          # @23
_MAX_TIMESTAMP = struct.Struct(">q")              # @35

OBJECT_PREFIX = "data/"
OBJECT_SUFFIX = ".sldo"
SEQUENCE_DIGITS = 20


# -- partition keys ------------------------------------------------------------


def partition_key(topic_id: bytes, partition: int) -> bytes:
    """The 20-byte key of a partition: topic id (16 bytes) + big-endian i32
    partition, the same key the WAL uses."""
    if len(topic_id) != 16:
        raise ValueError(f"topic id must be 16 bytes, not {len(topic_id)}")
    return PARTITION_KEY.pack(topic_id, partition)


def split_partition_key(key: bytes) -> tuple[bytes, int]:
    """(topic id, partition) of a 20-byte partition key."""
    if len(key) != PARTITION_KEY_SIZE:
        raise ValueError(f"partition key must be {PARTITION_KEY_SIZE} bytes, not {len(key)}")
    return PARTITION_KEY.unpack(key)


# -- object keys -------------------------------------------------------------------


def object_key(broker_id: int, sequence: int, unique: str | None = None) -> str:
    """``data/<broker-id>/<20-digit sequence>-<uuid4 hex>.sldo``.

    Keys of one broker sort (as S3 lists them) by sequence; the uuid makes a
    key unique even if a sequence repeats (a clock stepped back, two processes
    with the same broker id), so a data object is never overwritten.
    """
    if broker_id < 0 or not 0 <= sequence < 10 ** SEQUENCE_DIGITS:
        raise ValueError(f"bad broker id {broker_id} or sequence {sequence}")
    return (f"{OBJECT_PREFIX}{broker_id}/{sequence:0{SEQUENCE_DIGITS}d}-"
            f"{unique or uuid.uuid4().hex}{OBJECT_SUFFIX}")


def parse_object_key(key: str) -> tuple[int, int]:
    """(broker id, sequence) of a data object key; ValueError if it is not one."""
    try:
        prefix, broker, name = key.split("/")
        seq, rest = name.split("-", 1)
        unique = rest.removesuffix(OBJECT_SUFFIX)
        if (prefix + "/" != OBJECT_PREFIX or not rest.endswith(OBJECT_SUFFIX)
                or len(seq) != SEQUENCE_DIGITS or not seq.isdigit() or not broker.isdigit()
                or len(unique) != 32):
            raise ValueError
        int(unique, 16)
        return int(broker), int(seq)
    except ValueError:
        raise ValueError(f"not a data object key: {key!r}") from None


class ObjectKeys:
    """Fresh data object keys for one broker, with strictly increasing
    sequences: nanoseconds since the epoch, bumped past the last one issued."""

    def __init__(self, broker_id: int) -> None:
        self.broker_id = broker_id
        self._last = 0

    def next(self) -> str:
        self._last = max(time.time_ns(), self._last + 1)
        return object_key(self.broker_id, self._last)


# -- record batch headers --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchSpan:
    """Where one record batch sits in a buffer, and its offsets."""

    position: int
    size: int             # batchLength + 12
    base_offset: int
    last_offset: int
    max_timestamp: int

    @property
    def end(self) -> int:
        return self.position + self.size


def iter_batches(buf: Buffer | Sequence[Buffer], *, key: str | None = None) -> Iterator[BatchSpan]:
    """The record batches in ``buf`` (whole batches back to back), in order.

    ``buf`` may also be a list of buffers that are consecutive pieces of one
    range (a segment as block views, never joined); positions are then within
    the whole range. Reads only header fields (baseOffset, batchLength, magic,
    lastOffsetDelta, maxTimestamp). Raises CorruptObject on a truncated
    batch, an impossible length or a magic other than 2; ``key`` only names
    the object in the message.
    """
    # (pieces come as a list or tuple; anything else is one buffer)
    parts = [memoryview(p) for p in buf] if isinstance(buf, (list, tuple)) else [memoryview(cast(Buffer, buf))]
    size = sum(len(p) for p in parts)
    pos = 0
    idx, part_start = 0, 0
    mv: memoryview | bytes
    while pos < size:
        if size - pos < BATCH_HEADER_SIZE:
            raise CorruptObject(key, f"truncated batch header at byte {pos} "
                                     f"({size - pos} of {BATCH_HEADER_SIZE} bytes)")
        while pos >= part_start + len(parts[idx]):
            part_start += len(parts[idx])
            idx += 1
        mv, at = parts[idx], pos - part_start
        if at + BATCH_HEADER_SIZE > len(mv):    # the header straddles two pieces
            mv, at = _gather(parts, idx, at, BATCH_HEADER_SIZE), 0
        base_offset, batch_length = _BATCH_PREFIX.unpack_from(mv, at)
        total = batch_length + LOG_OVERHEAD
        if total < BATCH_HEADER_SIZE or total > size - pos:
            raise CorruptObject(key, f"batch at byte {pos} has batchLength {batch_length}, "
                                     f"{size - pos} bytes left")
        if mv[at + _MAGIC_AT] != 2:
            raise CorruptObject(key, f"batch at byte {pos} has magic {mv[at + _MAGIC_AT]}, not 2")
        (delta,) = _LAST_OFFSET_DELTA.unpack_from(mv, at + 23)
        (max_ts,) = _MAX_TIMESTAMP.unpack_from(mv, at + 35)
        if delta < 0:
            raise CorruptObject(key, f"batch at byte {pos} has lastOffsetDelta {delta}")
        yield BatchSpan(pos, total, base_offset, base_offset + delta, max_ts)
        pos += total


def _gather(parts: list[memoryview], idx: int, at: int, n: int) -> bytes:
    """``n`` bytes from offset ``at`` of ``parts[idx]`` on, across the pieces after it."""
    out = bytearray(parts[idx][at:at + n])
    while len(out) < n:
        idx += 1
        out += parts[idx][:n - len(out)]
    return bytes(out)


def find_batch(chunk: Buffer, offset: int, *, key: str | None = None) -> BatchSpan | None:
    """The first batch in ``chunk`` whose last offset is >= ``offset`` (the
    batch containing it, or the next one if it fell in a gap), or None if
    every batch ends before ``offset``. A Kafka fetch at ``offset`` starts
    with this batch. Linear in the number of batches (header reads only)."""
    for span in iter_batches(chunk, key=key):
        if span.last_offset >= offset:
            return span
    return None


# -- building ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """One partition's chunk in a data object: what the index entry says."""

    partition_key: bytes
    first_offset: int
    last_offset: int
    max_timestamp: int
    position: int
    length: int
    crc: int              # crc32c of the chunk's bytes

    @property
    def topic_id(self) -> bytes:
        return self.partition_key[:16]

    @property
    def partition(self) -> int:
        return split_partition_key(self.partition_key)[1]

    @property
    def end(self) -> int:
        return self.position + self.length


def build(chunks: Mapping[bytes, Sequence[Buffer]] | Iterable[tuple[bytes, Sequence[Buffer]]]
          ) -> tuple[bytes, list[ChunkRef]]:
    """``build_parts`` joined into one bytes object."""
    parts, refs = build_parts(chunks)
    return b"".join(parts), refs


def build_parts(chunks: Mapping[bytes, Sequence[Buffer]] | Iterable[tuple[bytes, Sequence[Buffer]]]
                ) -> tuple[list[Buffer], list[ChunkRef]]:
    """One data object from ``{partition_key: buffers}`` or ``(partition_key,
    buffers)`` pairs, as the list of its parts in order (``ObjectStore.put``
    takes them as they are: a 64 MiB join would hold the GIL ~50 ms).

    A partition's buffers (bytes, bytearray or memoryview; never copied)
    hold whole record batches back to back; a batch may straddle two of them
    (a merge reads segments in pieces). Its batches must be in increasing
    offset order. First and last offset and
    max timestamp come from the batch headers. A partition with no bytes is
    left out. Returns the object and its chunk refs (sorted by partition key,
    as in the index). Raises ValueError for a malformed batch, offsets out of
    order, a partition given twice, or nothing to write at all.
    """
    pending: dict[bytes, list[memoryview]] = {}
    if isinstance(chunks, Mapping):
        chunks = chunks.items()
    for pkey, buffers in chunks:
        pkey = bytes(pkey)
        split_partition_key(pkey)
        if pkey in pending:
            raise ValueError(f"partition key {pkey.hex()} given twice")
        pending[pkey] = [memoryview(b) for b in buffers if len(b)]

    parts: list[Buffer] = []
    refs: list[ChunkRef] = []
    position = 0
    for pkey in sorted(pending):
        views = pending[pkey]
        if not views:
            continue
        crc = 0
        length = 0
        first: int | None = None
        last: int | None = None
        max_ts = 0    # (the first batch's timestamp replaces it)
        try:
            for span in iter_batches(views):
                if last is not None and span.base_offset <= last:
                    raise ValueError(
                        f"partition {pkey.hex()}: batch at offset {span.base_offset} "
                        f"does not follow offset {last}")
                if first is None:
                    first = span.base_offset
                    max_ts = span.max_timestamp
                last = span.last_offset
                max_ts = max(max_ts, span.max_timestamp)
        except CorruptObject as e:
            raise ValueError(f"partition {pkey.hex()}: {e}") from e
        assert first is not None and last is not None  # views hold bytes: a batch or CorruptObject
        for view in views:
            crc = crc32c.crc32c(view, crc)
            length += len(view)
            parts.append(view)
        refs.append(ChunkRef(pkey, first, last, max_ts, position, length, crc))
        position += length
    if not refs:
        raise ValueError("no record batches to write")

    index = encode_index(refs)
    parts.append(index)
    parts.append(FOOTER.pack(len(index), crc32c.crc32c(index), TRAILER))
    return parts, refs


def encode_index(refs: Sequence[ChunkRef]) -> bytes:
    out = bytearray(INDEX_COUNT.pack(len(refs)))
    for r in refs:
        out += ENTRY.pack(r.partition_key, r.first_offset, r.last_offset, r.max_timestamp,
                          r.position, r.length, r.crc)
    return bytes(out)


# -- reading the index -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NeedMore:
    """``parse_index`` needs the last ``tail_bytes`` bytes of the object
    (counted from its end), more than it was given."""

    tail_bytes: int


@dataclass(frozen=True, slots=True)
class DataObjectIndex:
    """The parsed index of a data object."""

    chunks: tuple[ChunkRef, ...]
    object_size: int
    _by_key: dict[bytes, ChunkRef] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_key", {c.partition_key: c for c in self.chunks})

    @property
    def data_size(self) -> int:
        """Bytes of chunks (where the index starts)."""
        return self.chunks[-1].end if self.chunks else 0

    def get(self, partition_key: bytes) -> ChunkRef | None:
        return self._by_key.get(bytes(partition_key))

    def __len__(self) -> int:
        return len(self.chunks)

    def __iter__(self) -> Iterator[ChunkRef]:
        return iter(self.chunks)


def parse_index(tail: Buffer, *, object_size: int | None = None,
                key: str | None = None) -> DataObjectIndex | NeedMore:
    """Parse the index from the last ``len(tail)`` bytes of a data object.

    Returns the index, or NeedMore(n) when the index does not fit in
    ``tail``: fetch the last n bytes and call again. ``object_size``, if
    known, is checked against the size the index implies (and lets a tail
    that is the whole object be judged too short rather than incomplete).
    Raises CorruptObject for a bad magic or version, an index crc mismatch,
    or entries that do not describe chunks packed from byte 0.
    """
    mv = memoryview(tail)
    if object_size is not None and len(mv) > object_size:
        raise ValueError(f"tail of {len(mv)} bytes from an object of {object_size}")
    if len(mv) < FOOTER_SIZE:
        if object_size is not None and object_size < FOOTER_SIZE:
            raise CorruptObject(key, f"{object_size} bytes: too small for a data object")
        return NeedMore(FOOTER_SIZE)
    index_len, index_crc, trailer = FOOTER.unpack_from(mv, len(mv) - FOOTER_SIZE)
    if trailer != TRAILER:
        if trailer[:4] == MAGIC:
            raise CorruptObject(key, f"data object version {struct.unpack('>I', trailer[4:])[0]} "
                                     f"is not supported (this reader knows {VERSION})")
        raise CorruptObject(key, f"not a data object: trailer {trailer!r}")
    needed = index_len + FOOTER_SIZE
    if index_len < INDEX_COUNT.size or (index_len - INDEX_COUNT.size) % ENTRY_SIZE:
        raise CorruptObject(key, f"bad index length {index_len}")
    if object_size is not None and needed > object_size:
        raise CorruptObject(key, f"index of {index_len} bytes in an object of {object_size}")
    if len(mv) < needed:
        return NeedMore(needed)
    index = mv[len(mv) - needed:len(mv) - FOOTER_SIZE]
    if crc32c.crc32c(index) != index_crc:
        raise CorruptObject(key, "index crc32c mismatch")
    (count,) = INDEX_COUNT.unpack_from(index, 0)
    if INDEX_COUNT.size + count * ENTRY_SIZE != index_len:
        raise CorruptObject(key, f"index says {count} entries in {index_len} bytes")

    chunks = []
    position = 0
    prev_key = b""
    for i in range(count):
        pkey, first, last, max_ts, pos, length, crc = ENTRY.unpack_from(
            index, INDEX_COUNT.size + i * ENTRY_SIZE)
        if pkey <= prev_key and i:
            raise CorruptObject(key, f"index entry {i}: partition keys not in ascending order")
        if pos != position or length == 0 or first > last:
            raise CorruptObject(key, f"index entry {i}: chunk at {pos} (+{length}) offsets "
                                     f"{first}..{last}; expected a chunk at {position}")
        chunks.append(ChunkRef(pkey, first, last, max_ts, pos, length, crc))
        position += length
        prev_key = pkey
    size = position + needed
    if object_size is not None and size != object_size:
        raise CorruptObject(key, f"index describes {size} bytes, the object has {object_size}")
    return DataObjectIndex(tuple(chunks), size)


async def read_footer(store: ObjectStore, key: str, *, object_size: int | None = None,
                      first_read: int = DEFAULT_TAIL_READ) -> DataObjectIndex:
    """The index of the data object ``key``: a HEAD (skipped if
    ``object_size`` is given), a ranged GET of the last ``first_read`` bytes,
    and one more ranged GET for the rest only if the index is larger.
    Raises NotFound or CorruptObject."""
    if object_size is None:
        object_size = (await store.head(key)).size
    start = max(0, object_size - max(first_read, FOOTER_SIZE))
    tail = await store.get_range(key, start, object_size)
    for _ in range(2):
        if len(tail) != object_size - start:
            raise CorruptObject(key, f"read {len(tail)} bytes at {start}, "
                                     f"expected {object_size - start}")
        result = parse_index(tail, object_size=object_size, key=key)
        if isinstance(result, DataObjectIndex):
            return result
        new_start = object_size - result.tail_bytes
        tail = await store.get_range(key, new_start, start) + tail
        start = new_start
    raise CorruptObject(key, "index still incomplete after reading its declared length")


class HasRange(Protocol):
    """Read-only, so a frozen dataclass (ChunkRef, the manifest's SegmentRef) fits."""

    @property
    def position(self) -> int: ...
    @property
    def length(self) -> int: ...
    @property
    def crc(self) -> int: ...


def verify_chunk(data: Buffer | Sequence[Buffer], ref: HasRange, *, key: str | None = None) -> None:
    """Raise CorruptObject unless ``data`` (or the pieces of it, in order) is
    the chunk ``ref`` describes."""
    parts = data if isinstance(data, (list, tuple)) else (data,)
    length, crc = 0, 0
    for part in parts:
        length += len(part)
        crc = crc32c.crc32c(part, crc)
    if length != ref.length:
        raise CorruptObject(key, f"chunk at {ref.position}: got {length} bytes, "
                                 f"expected {ref.length}")
    if crc != ref.crc:
        raise CorruptObject(key, f"chunk at {ref.position} (+{ref.length}): crc32c mismatch")


async def read_chunk(store: ObjectStore, key: str, ref: HasRange) -> bytes | bytearray:
    """One partition's chunk (a ChunkRef or a manifest SegmentRef) with one
    ranged GET, its length and crc32c verified."""
    data = await store.get_range(key, ref.position, ref.position + ref.length)
    verify_chunk(data, ref, key=key)
    return data
