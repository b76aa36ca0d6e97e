"""BlockCache: exact bytes, one fetch per missing run, shared in-flight fetches,
LRU bound, readahead, prefetch, and a real FilesystemObjectStore as the fetch."""
from __future__ import annotations

import asyncio
import logging
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cache import BlockCache, ShortRead
from objectstore import FilesystemObjectStore, NotFound


class FakeStore:
    """In-memory objects; records every fetch; can hold fetches on a gate or fail them."""

    def __init__(self, **objects: bytes) -> None:
        self.objects = dict(objects)
        self.calls: list[tuple[str, int, int]] = []
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None

    async def fetch(self, key: str, start: int, end: int) -> bytes:
        self.calls.append((key, start, end))
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)
        if self.fail is not None:
            raise self.fail
        return self.objects[key][start:end]

    async def fetch_parts(self, key: str, start: int, end: int, part_size: int) -> list:
        data = await self.fetch(key, start, end)
        return [bytearray(data[o:o + part_size]) for o in range(0, len(data), part_size)]


def data(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


def cache_over(store: FakeStore, max_bytes: int = 1000, block_size: int = 10,
               readahead: int = 0) -> BlockCache:
    return BlockCache(max_bytes, block_size, fetch=store.fetch, readahead_blocks=readahead)


@settings(max_examples=200, deadline=None)
@given(size=st.integers(0, 120), block_size=st.integers(1, 17), readahead=st.integers(0, 3),
       max_bytes=st.integers(0, 80),
       ranges=st.lists(st.tuples(st.integers(0, 130), st.integers(0, 40)), min_size=1, max_size=15),
       in_parts=st.booleans())
def test_random_ranges_match_slicing(size, block_size, readahead, max_bytes, ranges, in_parts):
    src = os.urandom(size)
    store = FakeStore(k=src)
    cache = BlockCache(max_bytes, block_size, fetch=store.fetch, readahead_blocks=readahead,
                       fetch_parts=store.fetch_parts if in_parts else None)

    async def main():
        for start, length in ranges:
            end = start + length
            if end > size and length:
                with pytest.raises(ShortRead):
                    await cache.read("k", start, end)
            else:
                assert await cache.read("k", start, end) == src[start:end]
                parts = await cache.read_parts("k", start, end)     # views, not joined
                assert b"".join(parts) == src[start:end]
                assert all(len(p) <= block_size for p in parts)
            assert cache.size_bytes <= max_bytes
            assert cache.size_bytes == sum(len(b) for b in cache._blocks.values())

    asyncio.run(main())


async def test_range_spanning_blocks_is_one_fetch():
    store = FakeStore(k=data(100))
    cache = cache_over(store)
    assert await cache.read("k", 5, 35) == data(100)[5:35]
    assert store.calls == [("k", 0, 40)]
    assert (cache.misses, cache.hits, cache.fetches, cache.bytes_fetched) == (4, 0, 1, 40)
    assert await cache.read("k", 12, 38) == data(100)[12:38]
    assert (cache.hits, cache.fetches, cache.bytes_from_cache) == (3, 1, 26)
    assert cache.hit_ratio == 3 / 7


async def test_last_short_block():
    store = FakeStore(k=data(25))
    cache = cache_over(store)
    assert await cache.read("k", 18, 25) == data(25)[18:25]
    assert await cache.read("k", 20, 25) == data(25)[20:25]
    assert await cache.read("k", 0, 25) == data(25)
    assert store.calls == [("k", 10, 30), ("k", 0, 10)]
    assert cache.size_bytes == 25


async def test_one_fetch_per_contiguous_missing_run():
    store = FakeStore(k=data(100))
    cache = cache_over(store)
    await cache.read("k", 10, 20)
    await cache.read("k", 30, 40)
    store.calls.clear()
    assert await cache.read("k", 0, 60) == data(100)[:60]
    assert store.calls == [("k", 0, 10), ("k", 20, 30), ("k", 40, 60)]
    assert (cache.hits, cache.misses) == (2, 6)


async def test_lru_evicts_least_recently_used_and_stays_bounded():
    store = FakeStore(k=data(100))
    cache = cache_over(store, max_bytes=30)
    for n in range(3):
        await cache.read("k", n * 10, n * 10 + 10)
    await cache.read("k", 0, 1)          # block 0 is now the most recent
    await cache.read("k", 30, 40)        # evicts block 1
    assert cache.size_bytes == 30
    store.calls.clear()
    await cache.read("k", 0, 10)
    await cache.read("k", 20, 40)
    assert store.calls == []
    await cache.read("k", 10, 20)
    assert store.calls == [("k", 10, 20)]
    assert cache.size_bytes == 30


async def test_zero_size_cache_still_reads():
    store = FakeStore(k=data(100))
    cache = cache_over(store, max_bytes=0, readahead=2)
    assert await cache.read("k", 5, 45) == data(100)[5:45]
    assert await cache.read("k", 5, 45) == data(100)[5:45]
    assert cache.size_bytes == 0 and cache.hits == 0 and len(store.calls) == 2


async def test_readahead_reduces_fetches_for_sequential_scan():
    src = data(1000)
    counts = {}
    for readahead in (0, 3):
        store = FakeStore(k=src)
        cache = cache_over(store, max_bytes=10_000, readahead=readahead)
        got = b"".join([await cache.read("k", off, off + 10) for off in range(0, 1000, 10)])
        assert got == src
        counts[readahead] = cache.fetches
    assert counts == {0: 100, 3: 25}


async def test_readahead_stops_at_object_end_and_remembers_size():
    store = FakeStore(k=data(25))
    cache = cache_over(store, readahead=5)
    assert await cache.read("k", 0, 5) == data(25)[:5]
    assert store.calls == [("k", 0, 60)]
    assert await cache.read("k", 5, 25) == data(25)[5:25]
    with pytest.raises(ShortRead):
        await cache.read("k", 20, 26)
    cache.prefetch("k", 0, 100)
    await cache.drain()
    assert len(store.calls) == 1         # size known: nothing asked past the end


async def test_no_readahead_for_a_random_jump():
    store = FakeStore(k=data(1000))
    cache = cache_over(store, readahead=2)
    await cache.read("k", 0, 10)
    await cache.read("k", 500, 510)
    assert store.calls == [("k", 0, 30), ("k", 500, 510)]
    await cache.read("k", 510, 520)      # sequential again
    assert store.calls[-1] == ("k", 510, 540)


async def test_concurrent_reads_share_one_fetch():
    store = FakeStore(k=data(100))
    store.gate = asyncio.Event()
    cache = cache_over(store)
    readers = [asyncio.create_task(cache.read("k", i, 30 + i)) for i in range(5)]
    await asyncio.sleep(0.01)
    store.gate.set()
    results = await asyncio.gather(*readers)
    assert results == [data(100)[i:30 + i] for i in range(5)]
    # the first reader fetched blocks 0-2; the others joined it and fetched only block 3
    assert store.calls == [("k", 0, 30), ("k", 30, 40)]
    assert cache.fetches == 2


async def test_failing_fetch_reaches_every_waiter_and_caches_nothing():
    store = FakeStore(k=data(100))
    store.gate = asyncio.Event()
    store.fail = OSError("store down")
    cache = cache_over(store)
    readers = [asyncio.create_task(cache.read("k", 0, 20)) for _ in range(3)]
    await asyncio.sleep(0.01)
    store.gate.set()
    results = await asyncio.gather(*readers, return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)
    assert len(store.calls) == 1 and cache.size_bytes == 0
    store.fail = None
    assert await cache.read("k", 0, 20) == data(100)[:20]
    assert len(store.calls) == 2


async def test_cancelled_reader_does_not_cancel_the_shared_fetch():
    store = FakeStore(k=data(100))
    store.gate = asyncio.Event()
    cache = cache_over(store)
    a = asyncio.create_task(cache.read("k", 0, 10))
    b = asyncio.create_task(cache.read("k", 0, 10))
    await asyncio.sleep(0.01)
    a.cancel()
    await asyncio.sleep(0)
    store.gate.set()
    assert await b == data(100)[:10]
    assert a.cancelled()
    assert len(store.calls) == 1 and cache.size_bytes == 10

    # the only reader cancelled: the fetch still finishes and fills the cache
    c = asyncio.create_task(cache.read("k", 50, 60))
    await asyncio.sleep(0)
    c.cancel()
    await cache.drain()
    assert cache.size_bytes == 20


async def test_prefetch_then_read_is_a_hit(caplog):
    store = FakeStore(k=data(100))
    cache = cache_over(store)
    await cache.read("k", 20, 30)
    cache.prefetch("k", 0, 60)
    await cache.drain()
    assert store.calls[1:] == [("k", 0, 20), ("k", 30, 60)]
    assert await cache.read("k", 0, 60) == data(100)[:60]
    assert (cache.hits, cache.fetches) == (6, 3)

    store.fail = OSError("boom")          # a failed prefetch is logged and swallowed
    with caplog.at_level(logging.DEBUG, logger="cache.block"):
        cache.prefetch("k", 60, 100)
        await cache.drain()
    assert "boom" in caplog.text and cache.size_bytes == 60


async def test_short_read_past_the_end():
    store = FakeStore(k=data(25))
    cache = cache_over(store)
    with pytest.raises(ShortRead):
        await cache.read("k", 15, 30)
    with pytest.raises(ShortRead):
        await cache.read("k", 26, 27)
    assert len(store.calls) == 1          # the second refusal needed no fetch
    with pytest.raises(ValueError):
        await cache.read("k", 5, 4)
    assert await cache.read("k", 25, 25) == b""


async def test_discard_drops_blocks_and_in_flight_results():
    store = FakeStore(k=data(100), j=data(50))
    cache = cache_over(store)
    await cache.read("k", 0, 30)
    await cache.read("j", 0, 10)
    cache.discard("k")
    assert cache.size_bytes == 10
    store.gate = asyncio.Event()
    reader = asyncio.create_task(cache.read("k", 0, 10))
    await asyncio.sleep(0)
    cache.discard("k")                    # deleted while its fetch is in flight
    store.gate.set()
    assert await reader == data(100)[:10]
    assert cache.size_bytes == 10
    await cache.read("k", 0, 10)
    assert len(store.calls) == 4


async def test_over_filesystem_object_store(tmp_path):
    store = FilesystemObjectStore(tmp_path / "objects")
    src = os.urandom(10_000)
    await store.put("topics/t/obj-1", src)
    cache = BlockCache(4096, 1024, fetch=store.get_range, readahead_blocks=2)
    for start, end in [(0, 100), (100, 3000), (2990, 10_000), (5000, 5001), (0, 10_000)]:
        assert await cache.read("topics/t/obj-1", start, end) == src[start:end]
        assert cache.size_bytes <= 4096
    with pytest.raises(ShortRead):
        await cache.read("topics/t/obj-1", 9000, 10_001)
    with pytest.raises(NotFound):
        await cache.read("topics/t/missing", 0, 10)
    assert cache.hits > 0


async def test_a_run_fetched_in_parts_is_cached_without_copies():
    store = FakeStore(k=data(100))
    fetched: list = []

    async def fetch_parts(key, start, end, part_size):
        parts = await store.fetch_parts(key, start, end, part_size)
        fetched.extend(parts)
        return parts
    cache = BlockCache(1000, 10, fetch=store.fetch, fetch_parts=fetch_parts, readahead_blocks=2)
    assert await cache.read("k", 5, 25) == data(100)[5:25]
    assert store.calls == [("k", 0, 50)]            # blocks 0-2 plus 2 of readahead, one request
    assert [id(b) for b in cache._blocks.values()] == [id(p) for p in fetched]   # the very buffers
