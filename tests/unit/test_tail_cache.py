"""TailCache: byte-bounded, oldest-appended evicted first, slices held without copies
and without objects the garbage collector tracks."""
import gc

from cache import TailCache


def test_slices_read_back_uncopied_and_bytes_bound_the_cache():
    c = TailCache(max_bytes=100)
    buf = bytearray(b"a" * 40 + b"b" * 40 + b"c" * 40)
    c.put_slice("p", 0, buf, 0, 40)
    c.put_slice("p", 10, buf, 40, 80)
    got = c.get("p", 10)
    assert bytes(got) == b"b" * 40 and got.obj is buf          # a view into the request buffer
    assert c.size_bytes == 80
    c.put_slice("p", 20, buf, 80, 120)                          # 120 > 100: the oldest goes
    assert c.get("p", 0) is None and bytes(c.get("p", 20)) == b"c" * 40
    assert c.size_bytes == 80 and (c.hits, c.misses) == (2, 1)
    c.put("q", 0, b"x" * 30)                                    # whole bytes (WAL recovery) mix in
    assert c.get("q", 0) == b"x" * 30 and c.size_bytes == 70
    assert bytes(c.peek("p", 20)) == b"c" * 40 and (c.hits, c.misses) == (3, 1)
    c.put_slice("big", 0, bytearray(101), 0, 101)               # larger than the cache: not kept
    assert c.peek("big", 0) is None
    c.discard_partition("p")
    assert c.size_bytes == 30 and c.peek("p", 20) is None


def test_a_full_cache_adds_nothing_to_garbage_collections():
    c = TailCache(max_bytes=1 << 30)
    bufs = [bytearray(8192) for _ in range(100)]
    for i in range(2000):
        c.put_slice(b"partition-key", i, bufs[i % 100], (i % 8) * 1024, (i % 8 + 1) * 1024)
    gc.collect()
    assert not any(gc.is_tracked(v) for v in c._entries.values())
    assert not any(gc.is_tracked(k) for k in c._entries)
