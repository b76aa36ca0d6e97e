"""objectstore.memory: what the contract suite does not cover: the key rules
it shares with the filesystem store, and its fault hooks (fail, delay, rng)."""
from __future__ import annotations

import asyncio
import random

import pytest

from objectstore import (
    InvalidKey,
    MemoryObjectStore,
    NotFound,
    PreconditionFailed,
    StoreUnavailable,
    conditional_update,
)


async def test_a_key_cannot_also_be_a_prefix():
    """As on the filesystem (test_filesystem_key_that_is_another_keys_prefix)."""
    store = MemoryObjectStore()
    await store.put("a/b", b"1")
    for op in (store.get("a"), store.head("a"), store.get_range("a", 0, 1)):
        with pytest.raises(NotFound):
            await op
    with pytest.raises(PreconditionFailed):
        await store.put_if_match("a", b"x", '"00"')
    for op in (store.put("a", b"x"), store.put_if_absent("a", b"x")):
        with pytest.raises(InvalidKey):
            await op
    await store.put("c", b"2")
    with pytest.raises(InvalidKey):
        await store.put("c/d", b"3")
    await store.delete("a")
    assert await store.list() == ["a/b", "c"]
    await store.delete("a/b")
    await store.put("a", b"now a key")          # the prefix is free again
    assert await store.list() == ["a", "c"]


async def test_the_body_is_copied():
    store = MemoryObjectStore()
    buf = bytearray(b"abc")
    await store.put("k", [buf, memoryview(b"def")])
    buf[0] = ord("x")
    assert await store.get("k") == b"abcdef"


async def test_fail_before_and_after():
    store = MemoryObjectStore()
    fault = store.fail("put", "cluster/")
    with pytest.raises(StoreUnavailable):
        await store.put("cluster/m", b"1")
    assert not await store.exists("cluster/m") and fault.hits == 1
    await store.put("cluster/m", b"1")          # times=1: spent
    store.fail("put", "cluster/", after=True)
    with pytest.raises(StoreUnavailable):
        await store.put("cluster/m", b"2")
    assert await store.get("cluster/m") == b"2"   # it happened; only the answer was lost
    store.fail("get", exc=NotFound)
    with pytest.raises(NotFound) as ei:
        await store.get("cluster/m")
    assert ei.value.key == "cluster/m"


async def test_fail_many_times_any_op_and_when():
    store = MemoryObjectStore()
    on = [True]
    fault = store.fail("*", "x/", times=None, when=lambda: on[0])
    for op in (store.put("x/1", b""), store.list("x/"), store.list_info("x/"), store.head("x/1"),
               store.delete("x/1")):
        with pytest.raises(StoreUnavailable):
            await op
    await store.put("y", b"")                   # other keys
    on[0] = False
    await store.put("x/1", b"")
    assert fault.hits == 5
    store.clear_faults()
    on[0] = True
    assert await store.list("x/") == ["x/1"]
    with pytest.raises(ValueError):
        store.fail("gets")


async def test_an_ambiguous_conditional_put_then_retried():
    """StoreUnavailable after the write: the retry's If-Match fails although
    the first attempt won; conditional_update re-reads and sees its own change."""
    store = MemoryObjectStore()
    await store.put("n", b"0")
    store.fail("put", "n", after=True)

    def incr(cur: bytes | None) -> bytes:
        return str(int(cur or b"0") + 1).encode()
    with pytest.raises(StoreUnavailable):
        await conditional_update(store, "n", incr, lambda b: b, lambda b: b)
    assert await store.get("n") == b"1"


async def test_delay_hook_is_awaited_before_the_operation():
    store = MemoryObjectStore()
    gate = asyncio.Event()
    seen = []

    def delay(op: str, key: str):
        seen.append((op, key))
        return gate.wait() if key == "slow" else None
    store.delay = delay
    put = asyncio.ensure_future(store.put("slow", b"1"))
    await store.put("fast", b"2")
    await asyncio.sleep(0)
    assert not put.done() and await store.list() == ["fast"]
    gate.set()
    await put
    assert await store.get("slow") == b"1"
    assert seen == [("put", "fast"), ("put", "slow"), ("list", ""), ("get", "slow")]


async def test_rng_interleaves_racing_operations_the_same_way_per_seed():
    async def race(seed: int) -> list[str]:
        store = MemoryObjectStore(rng=random.Random(seed))
        order: list[str] = []

        async def writer(name: str) -> None:
            for i in range(5):
                await store.put(f"{name}/{i}", b"")
                order.append(f"{name}{i}")
        await asyncio.gather(writer("a"), writer("b"), writer("c"))
        return order
    runs = {seed: await race(seed) for seed in range(6)}
    for seed, order in runs.items():
        assert await race(seed) == order
    assert len({tuple(o) for o in runs.values()}) > 1


async def test_close_keeps_the_store_usable():
    store = MemoryObjectStore()
    await store.put("k", b"v")
    await store.close()
    assert await store.get("k") == b"v"
