"""broker.partition: idempotent-producer rules, read() size limits, high watermark."""
from __future__ import annotations

import asyncio
import threading

import pytest
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from broker.clock import ManualClock
from broker.cluster import Cluster
from broker.config import BrokerConfig
from broker.errors import ErrorCode
from broker.log.partition import PRODUCER_WINDOW, AppendError, Partition
from broker.log.records import parse_batches
from broker.log.replica_manager import ReplicaManager
from objectstore import FilesystemObjectStore


def batch(n: int = 1, *, pid: int = -1, epoch: int = -1, seq: int = -1, size: int = 10) -> bytearray:
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                  producer_id=pid, producer_epoch=epoch, base_sequence=seq,
                                  batch_size=1 << 22)
    for i in range(n):
        b.append(i, timestamp=1_700_000_000_000 + i, key=None, value=b"v" * size, headers=[])
    return b.build()


class MemStore:
    """BatchStore whose durability the test controls."""

    def __init__(self) -> None:
        self.data: dict[int, bytes] = {}
        self.futures: list[asyncio.Future] = []

    def write_batch(self, partition, base_offset, buf, start, end):
        self.data[base_offset] = bytes(buf[start:end])
        fut = asyncio.get_running_loop().create_future()
        self.futures.append(fut)
        return base_offset, fut

    def read_batch(self, partition, base_offset, location):
        assert location == base_offset
        return self.data[base_offset]

    def make_durable(self) -> None:
        for f in self.futures:
            if not f.done():
                f.set_result(None)


def new_partition() -> tuple[Partition, MemStore]:
    store = MemStore()
    return Partition(b"\x01" * 16, "t", 0, store), store


def append(p: Partition, buf: bytearray):
    return p.append(buf, parse_batches(buf))


def append_error(p: Partition, buf: bytearray) -> ErrorCode:
    leo = p.log_end_offset
    with pytest.raises(AppendError) as ei:
        append(p, buf)
    assert p.log_end_offset == leo  # nothing appended
    return ei.value.code


# ------------------------------------------------------------ producer state
async def test_sequential_batches_get_consecutive_offsets():
    p, _ = new_partition()
    r1 = append(p, batch(3, pid=1, epoch=0, seq=0))
    r2 = append(p, batch(2, pid=1, epoch=0, seq=3))
    assert (r1.base_offset, r2.base_offset) == (0, 3)
    assert not r1.duplicate and not r2.duplicate
    assert p.log_end_offset == 5
    assert p.producers[1].last_seq == 4


async def test_duplicate_returns_original_base_offset():
    p, store = new_partition()
    append(p, batch(1, size=5))  # someone else's record first, so offsets are not trivially 0
    first = batch(3, pid=7, epoch=0, seq=0)
    r1 = append(p, bytearray(first))
    append(p, batch(2, pid=7, epoch=0, seq=3))
    store.make_durable()
    leo = p.log_end_offset
    dup = append(p, bytearray(first))
    assert dup.duplicate is True
    assert dup.base_offset == r1.base_offset == 1
    assert dup.durable is None
    assert p.log_end_offset == leo  # not written again
    assert len(store.data) == 3


async def test_duplicate_of_any_batch_in_the_window_is_detected():
    p, _ = new_partition()
    bases = []
    for i in range(PRODUCER_WINDOW):
        bases.append(append(p, batch(2, pid=3, epoch=0, seq=2 * i)).base_offset)
    for i in range(PRODUCER_WINDOW):
        r = append(p, batch(2, pid=3, epoch=0, seq=2 * i))
        assert r.duplicate and r.base_offset == bases[i]


async def test_duplicate_older_than_the_window_is_not_appended():
    p, _ = new_partition()
    for i in range(PRODUCER_WINDOW + 1):
        append(p, batch(1, pid=3, epoch=0, seq=i))
    # seq 0 has left the 5-batch window: it can no longer be answered as a duplicate,
    # and it must not be appended a second time either.
    assert append_error(p, batch(1, pid=3, epoch=0, seq=0)) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


@pytest.mark.parametrize("seq", [4, 10, 2**31 - 1])
async def test_sequence_gap_is_out_of_order(seq):
    p, _ = new_partition()
    append(p, batch(3, pid=1, epoch=0, seq=0))  # next expected: 3
    assert append_error(p, batch(1, pid=1, epoch=0, seq=seq)) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert append(p, batch(1, pid=1, epoch=0, seq=3)).base_offset == 3  # the right one still works


async def test_overlapping_but_not_identical_batch_is_out_of_order():
    p, _ = new_partition()
    append(p, batch(3, pid=1, epoch=0, seq=0))
    assert append_error(p, batch(2, pid=1, epoch=0, seq=1)) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert append_error(p, batch(5, pid=1, epoch=0, seq=0)) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


async def test_old_epoch_is_invalid_producer_epoch():
    p, _ = new_partition()
    append(p, batch(1, pid=1, epoch=2, seq=0))
    assert append_error(p, batch(1, pid=1, epoch=1, seq=1)) == ErrorCode.INVALID_PRODUCER_EPOCH
    assert append_error(p, batch(1, pid=1, epoch=0, seq=0)) == ErrorCode.INVALID_PRODUCER_EPOCH


async def test_new_epoch_must_start_at_sequence_0():
    p, _ = new_partition()
    append(p, batch(5, pid=1, epoch=0, seq=0))
    assert append_error(p, batch(1, pid=1, epoch=1, seq=5)) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    r = append(p, batch(1, pid=1, epoch=1, seq=0))
    assert r.base_offset == 5 and not r.duplicate
    assert p.producers[1].epoch == 1
    # The bumped epoch fences the old one, and sequences continue in the new one.
    assert append_error(p, batch(1, pid=1, epoch=0, seq=5)) == ErrorCode.INVALID_PRODUCER_EPOCH
    assert append(p, batch(1, pid=1, epoch=1, seq=1)).base_offset == 6


async def test_unknown_producer_accepts_any_first_sequence():
    p, _ = new_partition()
    r = append(p, batch(2, pid=99, epoch=4, seq=1000))
    assert r.base_offset == 0 and not r.duplicate
    assert append(p, batch(1, pid=99, epoch=4, seq=1002)).base_offset == 2
    assert append_error(p, batch(1, pid=99, epoch=4, seq=1000)) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


async def test_producers_are_independent():
    p, _ = new_partition()
    append(p, batch(1, pid=1, epoch=0, seq=0))
    append(p, batch(1, pid=2, epoch=0, seq=0))
    assert append(p, batch(1, pid=1, epoch=0, seq=1)).base_offset == 2
    assert append(p, batch(1, pid=2, epoch=0, seq=0)).duplicate


async def test_sequence_wraps_after_int32_max():
    p, _ = new_partition()
    append(p, batch(2, pid=5, epoch=0, seq=2**31 - 2))  # covers 2**31-2 and 2**31-1
    r = append(p, batch(1, pid=5, epoch=0, seq=0))
    assert r.base_offset == 2 and not r.duplicate


async def test_non_idempotent_batches_are_never_deduplicated():
    p, _ = new_partition()
    b = batch(2)
    assert append(p, bytearray(b)).base_offset == 0
    assert append(p, bytearray(b)).base_offset == 2
    assert p.producers == {}


async def test_replayed_batches_rebuild_producer_state():
    p, store = new_partition()
    b1 = batch(2, pid=8, epoch=3, seq=0)
    b2 = batch(1, pid=8, epoch=3, seq=2)
    append(p, b1)
    append(p, b2)
    store.make_durable()
    # A fresh partition fed the stored (offset-assigned) batches, as WAL recovery does.
    q, _ = new_partition()
    for base in sorted(store.data):
        data = store.data[base]
        [h] = parse_batches(data)
        q.replay_batch(h, base)
    assert (q.log_end_offset, q.high_watermark) == (3, 3)
    assert append(q, bytearray(b2)).duplicate and append(q, bytearray(b2)).base_offset == 2
    assert append(q, batch(1, pid=8, epoch=3, seq=3)).base_offset == 3
    assert append_error(q, batch(1, pid=8, epoch=2, seq=0)) == ErrorCode.INVALID_PRODUCER_EPOCH


# ------------------------------------------------------------------- reads
async def _partition_with(sizes: list[int]) -> tuple[Partition, list[int]]:
    """A partition holding one durable single-record batch per size; returns batch byte sizes."""
    p, store = new_partition()
    out = []
    for s in sizes:
        buf = batch(1, size=s)
        out.append(len(buf))
        append(p, buf)
    store.make_durable()
    await asyncio.sleep(0)  # done-callbacks run on the next loop iteration
    assert p.high_watermark == len(sizes)
    return p, out


def offsets(chunks: list[bytes]) -> list[int]:
    return [DefaultRecordBatch(c).base_offset for c in chunks]


async def test_read_returns_whole_batches_within_max_bytes():
    p, sz = await _partition_with([100, 100, 100, 100])
    assert offsets(await p.read(0, sz[0] + sz[1], min_one=True)) == [0, 1]
    assert offsets(await p.read(0, sz[0] + sz[1] - 1, min_one=True)) == [0]  # no partial batch
    assert offsets(await p.read(1, 10**9, min_one=False)) == [1, 2, 3]
    assert offsets(await p.read(3, 10**9, min_one=True)) == [3]
    assert await p.read(4, 10**9, min_one=True) == []  # at the end: nothing
    assert sum(map(len, await p.read(0, 10**9, min_one=False))) == sum(sz)


async def test_read_min_one_returns_an_oversized_first_batch():
    p, sz = await _partition_with([5000, 10, 10])
    assert sz[0] > 1000
    assert offsets(await p.read(0, 1000, min_one=True)) == [0]  # KIP-74: progress is guaranteed
    assert await p.read(0, 1000, min_one=False) == []
    assert offsets(await p.read(0, 0, min_one=True)) == [0]


async def test_read_from_offset_inside_a_batch_returns_that_batch():
    p, store = new_partition()
    append(p, batch(5))
    append(p, batch(5))
    store.make_durable()
    await asyncio.sleep(0)
    assert offsets(await p.read(3, 10**9, min_one=True)) == [0, 5]
    assert offsets(await p.read(7, 10**9, min_one=True)) == [5]


async def test_read_stops_at_high_watermark():
    p, store = new_partition()
    append(p, batch(2))
    store.make_durable()
    await asyncio.sleep(0)
    append(p, batch(2))  # queued, not durable
    assert (p.high_watermark, p.log_end_offset) == (2, 4)
    assert offsets(await p.read(0, 10**9, min_one=True)) == [0]
    assert await p.read(2, 10**9, min_one=True) == []
    store.make_durable()
    await asyncio.sleep(0)
    assert offsets(await p.read(0, 10**9, min_one=True)) == [0, 2]


# ------------------------------------------------- high watermark over the WAL
class NoGroups:
    """The ReplicaManager hands group entries to the coordinator; none here."""

    def replay(self, key, data):
        raise AssertionError("no group entries expected")

    dirty: dict[int, int] = {}   # no coordinator partition waits for its snapshot

    async def flush(self):  # the upload task stores group snapshots: there are none
        return True


async def open_replicas(tmp_path, data: str = "data", config: BrokerConfig | None = None,
                        store=None, metrics=None) -> ReplicaManager:
    """A ReplicaManager with the one-broker cluster that tells it what it hosts
    (``rm.cluster``, a test-only attribute), time frozen (no heartbeats)."""
    config = config or BrokerConfig()
    store = store or FilesystemObjectStore(str(tmp_path / "objects"))
    cluster = Cluster(config, store, host="127.0.0.1", port=9092, clock=ManualClock())
    rm = ReplicaManager(config, str(tmp_path / data), store, metrics=metrics, metadata=cluster.metadata)
    await cluster.start(rm.apply_delta)
    await rm.start(NoGroups())
    rm.cluster = cluster
    return rm


async def create_topic(rm: ReplicaManager, name: str, partitions: int, configs=None):
    """CreateTopics as the handler does it, then wait for the manifests' claims."""
    topic = await rm.cluster.create_topic(name, partitions, configs)
    await rm.claims_settled()
    return topic


@pytest.fixture
async def replicas(tmp_path):
    rm = await open_replicas(tmp_path)
    yield rm
    await rm.close()


async def test_high_watermark_advances_only_after_the_wal_fsync(replicas, monkeypatch):
    rm = replicas
    await create_topic(rm, "hw", 1)
    p = rm.get("hw", 0)
    wal = rm.wal
    real = wal._write_and_sync
    in_fsync = threading.Event()
    release = threading.Event()

    def gated(batch_):
        in_fsync.set()
        assert release.wait(10)
        return real(batch_)

    monkeypatch.setattr(wal, "_write_and_sync", gated)
    waiter = asyncio.get_running_loop().create_future()
    p.add_waiter(waiter)
    res = append(p, batch(3, pid=1, epoch=0, seq=0))
    assert (res.base_offset, p.log_end_offset, p.high_watermark) == (0, 3, 0)
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, in_fsync.wait, 10)
    for _ in range(20):  # the loop keeps running while the fsync is blocked
        await asyncio.sleep(0)
    assert not res.durable.done()
    assert p.high_watermark == 0
    assert not waiter.done()
    assert await p.read(0, 10**9, min_one=True) == []  # nothing readable before it is durable
    release.set()
    await asyncio.wait_for(res.durable, 10)
    await asyncio.sleep(0)
    assert p.high_watermark == 3
    assert waiter.done()  # long-polling fetches are woken
    [data] = await p.read(0, 10**9, min_one=True)
    b = DefaultRecordBatch(bytes(data))
    assert b.validate_crc() and b.base_offset == 0 and b.records_count == 3


async def test_high_watermark_does_not_advance_when_the_wal_write_fails(replicas, monkeypatch):
    rm = replicas
    await create_topic(rm, "fail", 1)
    p = rm.get("fail", 0)

    def boom(batch_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rm.wal, "_write_and_sync", boom)
    res = append(p, batch(1))
    with pytest.raises(Exception):
        await asyncio.wait_for(res.durable, 10)
    await asyncio.sleep(0)
    assert p.log_end_offset == 1
    assert p.high_watermark == 0
    assert await p.read(0, 10**9, min_one=True) == []


async def test_state_survives_replica_manager_restart(tmp_path):
    rm = await open_replicas(tmp_path)
    await create_topic(rm, "r", 2)
    p0 = rm.get("r", 0)
    r1 = append(p0, batch(2, pid=4, epoch=1, seq=0))
    append(p0, batch(3, pid=4, epoch=1, seq=2))
    append(rm.get("r", 1), batch(1))
    await rm.wal.sync()
    await rm.close()

    rm2 = await open_replicas(tmp_path)
    try:
        q0, q1 = rm2.get("r", 0), rm2.get("r", 1)
        assert (q0.log_end_offset, q0.high_watermark) == (5, 5)
        assert (q1.log_end_offset, q1.high_watermark) == (1, 1)
        assert offsets(await q0.read(0, 10**9, min_one=True)) == [0, 2]
        dup = append(q0, batch(2, pid=4, epoch=1, seq=0))
        assert dup.duplicate and dup.base_offset == r1.base_offset == 0
        assert append(q0, batch(1, pid=4, epoch=1, seq=5)).base_offset == 5
    finally:
        await rm2.close()


async def test_cancelled_produce_waiter_does_not_stall_the_high_watermark(replicas):
    """A produce task cancelled while waiting for its fsync (its client disconnected)
    must not stop the batch, or other batches in the same group commit, from
    becoming visible."""
    rm = replicas
    await create_topic(rm, "cancel", 2)
    p0, p1 = rm.get("cancel", 0), rm.get("cancel", 1)
    r0 = append(p0, batch(2))
    r1 = append(p1, batch(3))

    async def produce_handler(fut):  # what the Produce handler does with its futures
        await asyncio.gather(fut, return_exceptions=True)
        assert fut.exception() is None

    doomed = asyncio.ensure_future(produce_handler(r0.durable))
    other = asyncio.ensure_future(produce_handler(r1.durable))
    await asyncio.sleep(0)
    doomed.cancel()
    await asyncio.wait_for(other, 10)
    await rm.wal.sync()
    await asyncio.sleep(0)
    assert (p0.high_watermark, p1.high_watermark) == (2, 3)
    assert offsets(await p0.read(0, 10**9, min_one=True)) == [0]
